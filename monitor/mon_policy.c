/*
 * mon_policy.c - elasticity, hot-key and tiering decisions (see
 * mon_policy.h for the rules).
 */
#include "monitor/mon_policy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes a reason; buf may be NULL. */
static void say(char *buf, size_t cap, const char *fmt, ...)
{
    if (!buf || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* ---- elasticity ----------------------------------------------------------- */

int mon_elastic_decide(const mon_elastic_cfg *cfg, mon_elastic_state *st, const mon_tier *t,
                       uint64_t client_p99_us, int pending, uint64_t now_ms, char *reason,
                       size_t reason_cap, mon_elastic_inputs *in)
{
    say(reason, reason_cap, "%s", "");
    int n = t->active, j = t->joining;
    int new_data = t->reporting > 0 && t->data_ms != st->last_data_ms;
    if (new_data)
        st->last_data_ms = t->data_ms;

    /* The latency objective is the clients' when clients report (what
     * callers see, the network and client included); else the shards'
     * service time. */
    uint64_t lat = client_p99_us ? client_p99_us : t->p99_us;
    double cap = t->cap_use > t->cap_max ? t->cap_use : t->cap_max;
    int over_cap = cap > cfg->capacity_high;
    /* A membership change slows callers for a while (clients move to the
     * new ring, the hand-off competes with serving): the latency measured
     * during one and for a grace period after it, or after an action of
     * the monitor's own, says nothing about the tier's capacity, and
     * counting it added a node right after every removal. After a
     * departure the nodes that stay also spend a while merging what the
     * leaving node handed them: their busy figure measures the move, not
     * the load (which the projection that allowed a removal said fits),
     * so busy counts again a grace period after the last departure. */
    int changing = pending > 0 || j > 0 || t->leaving > 0;
    if (changing)
        st->changed_ms = now_ms;
    if (t->leaving > 0)
        st->left_ms = now_ms;
    uint64_t since = st->changed_ms > st->last_action_ms ? st->changed_ms : st->last_action_ms;
    int settled = !since || now_ms - since >= cfg->grace_ms;
    int absorbing = st->left_ms && now_ms - st->left_ms < cfg->grace_ms;
    int over_busy = t->busy_avg > cfg->busy_high && !absorbing;
    int over_lat = cfg->latency_slo_us && lat > cfg->latency_slo_us && settled;
    int over = t->reporting > 0 && (over_busy || over_cap || over_lat);
    if (new_data)
        st->over_streak = over ? st->over_streak + 1 : 0;
    else if (t->reporting == 0)
        st->over_streak = 0;
    /* Only busy time says the nodes are at their capacity: a missed latency
     * objective at a low rate (a burst, a hand-off, a slow disk) would make
     * the tier look saturated at that rate and block scale-in for good. */
    if (new_data && over_busy && t->reporting > 0 && t->ops_per_sec > 0)
        st->sat_ops_per_node = t->ops_per_sec / t->reporting;
    double sat = st->sat_ops_per_node;
    if (st->over_streak == 0)
        st->holding = 0;

    /* Scale-in only when the smaller tier would still be below the high
     * marks, or it would scale out again at once. */
    int under =
        n >= 2 && t->active_reporting == n && !over && t->busy_max < cfg->busy_low &&
        t->cap_max < cfg->capacity_low && (!cfg->latency_slo_us || lat <= cfg->latency_slo_us) &&
        t->busy_avg * n / (n - 1) < cfg->busy_high &&
        t->cap_use * n / (n - 1) < cfg->capacity_high &&
        (sat <= 0 ||
         (t->ops_max < cfg->busy_low * sat && t->ops_per_sec / (n - 1) < cfg->busy_high * sat));
    if (!under)
        st->low_since_ms = 0;
    else if (!st->low_since_ms)
        st->low_since_ms = now_ms;

    if (n + j < cfg->min_nodes)
        st->below_min_streak++;
    else
        st->below_min_streak = 0;

    if (in) {
        in->active = n;
        in->joining = j;
        in->leaving = t->leaving;
        in->reporting = t->reporting;
        in->pending = pending;
        in->busy_avg = t->busy_avg;
        in->busy_max = t->busy_max;
        in->cap_use = t->cap_use;
        in->cap_max = t->cap_max;
        in->cpu_used = t->cpu_used;
        in->cpu_allotted = t->cpu_allotted;
        in->throttled_max = t->throttled_max;
        in->p99_us = t->p99_us;
        in->client_p99_us = client_p99_us;
        in->over_streak = st->over_streak;
        in->low_for_ms = st->low_since_ms ? now_ms - st->low_since_ms : 0;
        in->ops_per_sec = t->ops_per_sec;
        in->sat_ops_per_node = sat;
        in->held = MON_HELD_NONE;
    }

    int in_grace = st->last_action_ms && now_ms - st->last_action_ms < cfg->grace_ms;
    int floor = cfg->min_nodes > 1 ? cfg->min_nodes : 1;
    int decision = MON_NONE;
    if (changing || in_grace) {
        decision = MON_NONE;
        int due = st->over_streak >= cfg->slo_periods ||
                  (under && now_ms - st->low_since_ms >= cfg->grace_ms && n - 1 >= floor);
        if (in && due)
            in->held = changing ? MON_HELD_CHANGING : MON_HELD_GRACE;
    } else if (st->below_min_streak >= MON_MIN_STREAK && n + j < cfg->max_nodes) {
        decision = MON_ADD;
        say(reason, reason_cap, "%d nodes, below the minimum of %d", n + j, cfg->min_nodes);
    } else if (st->over_streak >= cfg->slo_periods) {
        char why[96];
        if (over_busy)
            snprintf(why, sizeof(why), "busy %.2f > %.2f", t->busy_avg, cfg->busy_high);
        else if (over_cap)
            snprintf(why, sizeof(why), "storage use %.2f > %.2f", cap, cfg->capacity_high);
        else
            snprintf(why, sizeof(why), "p99 %llu us > objective %llu us", (unsigned long long)lat,
                     (unsigned long long)cfg->latency_slo_us);
        if (n + j >= cfg->max_nodes) {
            if (in)
                in->held = MON_HELD_AT_MAX;
            if (!st->holding) {
                decision = MON_HOLD;
                st->holding = 1;
                say(reason, reason_cap, "%s for %d periods, but at the maximum of %d nodes", why,
                    st->over_streak, cfg->max_nodes);
            }
        } else {
            decision = MON_ADD;
            say(reason, reason_cap, "%s for %d periods", why, st->over_streak);
        }
    } else if (under && now_ms - st->low_since_ms >= cfg->grace_ms && n - 1 >= floor) {
        decision = MON_REMOVE;
        say(reason, reason_cap,
            "every node below the low marks (busy %.2f < %.2f, storage %.2f < %.2f) for %llu ms",
            t->busy_max, cfg->busy_low, t->cap_max, cfg->capacity_low,
            (unsigned long long)(now_ms - st->low_since_ms));
    }
    if (decision == MON_REMOVE)
        st->left_ms = now_ms;
    if (decision == MON_ADD || decision == MON_REMOVE) {
        st->last_action_ms = now_ms;
        st->over_streak = 0;
        st->low_since_ms = 0;
        st->below_min_streak = 0;
        st->holding = 0;
    }
    return decision;
}

/* ---- hot keys ------------------------------------------------------------- */

void mon_hot_state_free(mon_hot_state *st)
{
    free(st->e);
    memset(st, 0, sizeof(*st));
}

static mon_hot_entry *hot_find(mon_hot_state *st, const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->e[i].klen == klen && memcmp(st->e[i].key, key, klen) == 0)
            return &st->e[i];
    return NULL;
}

/* A new entry; when the table is full, the entry not in force that changed
 * longest ago is forgotten. NULL if every entry is in force or OOM. */
static mon_hot_entry *hot_add(mon_hot_state *st, const uint8_t *key, size_t klen)
{
    if (klen == 0 || klen >= MON_HOT_KEY_MAX)
        return NULL;
    mon_hot_entry *e = NULL;
    if (st->n < MON_HOT_TABLE_MAX) {
        if (st->n == st->cap) {
            size_t cap = st->cap ? st->cap * 2 : 16;
            mon_hot_entry *ne = realloc(st->e, cap * sizeof(*ne));
            if (!ne)
                return NULL;
            st->e = ne;
            st->cap = cap;
        }
        e = &st->e[st->n++];
    } else {
        for (size_t i = 0; i < st->n; i++)
            if (!st->e[i].hot && (!e || st->e[i].changed_ms < e->changed_ms))
                e = &st->e[i];
        if (!e)
            return NULL;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, klen);
    e->klen = (uint32_t)klen;
    return e;
}

int mon_hot_adopt(const mon_hot_cfg *cfg, mon_hot_state *st, const uint8_t *key, size_t klen,
                  uint32_t memory, uint32_t disk, uint64_t version)
{
    mon_hot_entry *e = hot_find(st, key, klen);
    if (e && e->version >= version)
        return 0;
    if (!e && !(e = hot_add(st, key, klen)))
        return -1;
    e->version = version;
    e->memory = memory;
    e->disk = disk;
    e->hot = memory != cfg->default_memory || disk != cfg->default_disk;
    e->cool_streak = 0;
    return 0;
}

size_t mon_hot_in_force(const mon_hot_state *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += st->e[i].hot != 0;
    return n;
}

void mon_hot_moments(const mon_key_stats *ks, double *mean, double *stddev)
{
    *mean = *stddev = 0;
    double nkeys = ks->nkeys;
    if (nkeys <= 0)
        return;
    double named = 0;
    for (size_t i = 0; i < ks->n; i++)
        named += ks->keys[i].rate;
    /* The sketches overestimate; never let the named keys exceed the total. */
    double total = ks->total_rate > named ? ks->total_rate : named;
    double mu = total / nkeys;
    double rest = nkeys - (double)ks->n;
    double rho = rest > 0 ? (total - named) / rest : 0;
    double ss = 0;
    for (size_t i = 0; i < ks->n; i++) {
        double d = ks->keys[i].rate - mu;
        ss += d * d;
    }
    if (rest > 0)
        ss += rest * (rho - mu) * (rho - mu);
    *mean = mu;
    *stddev = sqrt(ss / nkeys);
}

static double key_rate(const mon_key_stats *ks, const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].klen == klen && memcmp(ks->keys[i].key, key, klen) == 0)
            return ks->keys[i].rate;
    return 0;
}

double mon_hot_threshold(const mon_hot_cfg *cfg, const mon_key_stats *ks, double *mean,
                         double *stddev)
{
    double mu, sd;
    mon_hot_moments(ks, &mu, &sd);
    if (mean)
        *mean = mu;
    if (stddev)
        *stddev = sd;
    double thr = mu + cfg->k * sd;
    if (thr < cfg->min_rate)
        thr = cfg->min_rate;
    if (thr < cfg->min_share * ks->total_rate)
        thr = cfg->min_share * ks->total_rate;
    return thr;
}

static void hot_change(mon_hot_entry *e, int raise, uint32_t memory, uint32_t disk, uint64_t now_ms,
                       uint64_t wall_ms, double rate, double thr, double mean, double sd,
                       mon_hot_change *out)
{
    e->hot = raise;
    e->memory = memory;
    e->disk = disk;
    e->version = wall_ms > e->version ? wall_ms : e->version + 1;
    e->cool_streak = 0;
    e->changed_ms = now_ms ? now_ms : 1;
    memset(out, 0, sizeof(*out));
    memcpy(out->key, e->key, e->klen);
    out->klen = e->klen;
    out->raise = raise;
    out->memory = memory;
    out->disk = disk;
    out->version = e->version;
    out->rate = rate;
    out->threshold = thr;
    out->mean = mean;
    out->stddev = sd;
}

size_t mon_hot_decide(const mon_hot_cfg *cfg, mon_hot_state *st, const mon_key_stats *ks,
                      int memory_nodes, int disk_nodes, uint64_t now_ms, uint64_t wall_ms,
                      mon_hot_change *out, size_t max_out, mon_hot_skips *skips)
{
    mon_hot_skips none;
    if (!skips)
        skips = &none;
    memset(skips, 0, sizeof(*skips));
    if (ks->data_ms == 0 || ks->data_ms == st->last_data_ms)
        return 0;
    st->last_data_ms = ks->data_ms;
    double mean, sd;
    double thr = mon_hot_threshold(cfg, ks, &mean, &sd);
    double low = cfg->cool_ratio * thr;
    size_t nout = 0;

    /* Keys in force: lowered only well below the mark, after the hold. */
    for (size_t i = 0; i < st->n; i++) {
        mon_hot_entry *e = &st->e[i];
        if (!e->hot)
            continue;
        double r = key_rate(ks, e->key, e->klen);
        if (r >= low) {
            e->cool_streak = 0;
            continue;
        }
        e->cool_streak++;
        if (e->cool_streak < cfg->cool_periods) {
            skips->held++;
            continue;
        }
        if (e->changed_ms && now_ms - e->changed_ms < cfg->grace_ms) {
            skips->grace++;
            continue;
        }
        if (nout >= max_out) {
            skips->bounded++;
            continue;
        }
        hot_change(e, 0, cfg->default_memory, cfg->default_disk, now_ms, wall_ms, r, thr, mean, sd,
                   &out[nout++]);
    }

    /* New hot keys: as many replicas as the tier has nodes, at most
     * hot_replicas; none if that adds nothing over the default. */
    uint32_t memory = cfg->default_memory, disk = cfg->default_disk;
    uint32_t nodes = (uint32_t)(memory_nodes > 0 ? memory_nodes : disk_nodes > 0 ? disk_nodes : 0);
    uint32_t want = cfg->hot_replicas < nodes ? cfg->hot_replicas : nodes;
    if (memory_nodes > 0)
        memory = want > memory ? want : memory;
    else
        disk = want > disk ? want : disk;
    int placeable = memory != cfg->default_memory || disk != cfg->default_disk;
    double mark = mean + cfg->k * sd > cfg->min_rate ? mean + cfg->k * sd : cfg->min_rate;
    size_t in_force = mon_hot_in_force(st);
    for (size_t i = 0; i < ks->n; i++) {
        const mon_key_rate *kr = &ks->keys[i];
        if (kr->klen >= MON_HOT_KEY_MAX || kr->rate <= mark)
            continue;
        if (kr->rate <= thr) {
            skips->below_share++;
            continue;
        }
        mon_hot_entry *e = hot_find(st, kr->key, kr->klen);
        if (e && e->hot)
            continue;
        if (!placeable) {
            skips->unplaceable++;
            continue;
        }
        if (e && e->changed_ms && now_ms - e->changed_ms < cfg->grace_ms) {
            skips->grace++;
            continue;
        }
        if (nout >= max_out || in_force >= MON_MAX_HOT_KEYS) {
            skips->bounded++;
            continue;
        }
        if (!e && !(e = hot_add(st, kr->key, kr->klen))) {
            skips->bounded++;
            continue;
        }
        hot_change(e, 1, memory, disk, now_ms, wall_ms, kr->rate, thr, mean, sd, &out[nout++]);
        in_force++;
    }
    return nout;
}

/* ---- tiering --------------------------------------------------------------- */

int mon_tiering_demote(const mon_tiering_cfg *cfg, mon_tiering_state *st, const mon_tier *mem,
                       const mon_tier *disk, uint64_t now_ms)
{
    if (!st->started_ms)
        st->started_ms = now_ms;
    if (mem->active == 0 || disk->active == 0)
        return MON_DEMOTE_NONE;
    uint64_t interval =
        cfg->demote_idle_ms / 2 > cfg->period_ms ? cfg->demote_idle_ms / 2 : cfg->period_ms;
    uint64_t since = now_ms - (st->last_demote_ms ? st->last_demote_ms : st->started_ms);
    double cap = mem->cap_use > mem->cap_max ? mem->cap_use : mem->cap_max;
    int decision = MON_DEMOTE_NONE;
    if (mem->reporting && cap > cfg->capacity_high &&
        (!st->last_demote_ms || since >= cfg->grace_ms))
        decision = MON_DEMOTE_CAPACITY;
    else if (since >= interval)
        decision = MON_DEMOTE_SCHEDULE;
    if (decision != MON_DEMOTE_NONE)
        st->last_demote_ms = now_ms;
    return decision;
}

uint64_t mon_tiering_pressure_idle_ms(const mon_tiering_cfg *cfg)
{
    uint64_t idle = 2 * cfg->period_ms > 1000 ? 2 * cfg->period_ms : 1000;
    return cfg->demote_idle_ms < idle ? cfg->demote_idle_ms : idle;
}

uint64_t mon_tiering_pressure_keys(const mon_tiering_cfg *cfg, uint64_t keys, uint64_t bytes,
                                   uint64_t capacity)
{
    if (!capacity || !keys)
        return 0;
    double use = (double)bytes / (double)capacity;
    if (use <= cfg->capacity_low)
        return 0;
    double n = ceil((double)keys * (use - cfg->capacity_low) / use);
    return n < 1 ? 1 : (uint64_t)n;
}

typedef struct candidate {
    uint64_t count;
    size_t idx;
} candidate;

static int by_count_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : x->idx > y->idx;
}

size_t mon_tiering_promote(const mon_tiering_cfg *cfg, mon_tiering_state *st,
                           const mon_key_stats *found, int memory_nodes, uint64_t now_ms,
                           size_t *out, size_t max_out, mon_promote_skips *skips)
{
    mon_promote_skips none;
    if (!skips)
        skips = &none;
    memset(skips, 0, sizeof(*skips));
    if (found->data_ms == 0 || found->data_ms == st->last_data_ms)
        return 0;
    st->last_data_ms = found->data_ms;
    if (memory_nodes <= 0 || found->n == 0)
        return 0;
    size_t bound = cfg->promote_max && cfg->promote_max < max_out ? cfg->promote_max : max_out;
    candidate *cand = malloc(found->n * sizeof(*cand));
    if (!cand)
        return 0;
    size_t nc = 0;
    for (size_t i = 0; i < found->n; i++)
        if (found->keys[i].count >= cfg->promote_reads && found->keys[i].klen < MON_HOT_KEY_MAX)
            cand[nc++] = (candidate){found->keys[i].count, i};
    qsort(cand, nc, sizeof(*cand), by_count_desc);
    size_t n = 0;
    for (size_t c = 0; c < nc; c++) {
        const mon_key_rate *k = &found->keys[cand[c].idx];
        mon_promoted *slot = NULL, *oldest = NULL;
        for (size_t j = 0; j < st->npromoted && !slot; j++) {
            mon_promoted *p = &st->promoted[j];
            if (p->klen == k->klen && memcmp(p->key, k->key, k->klen) == 0)
                slot = p;
            else if (!oldest || p->at_ms < oldest->at_ms)
                oldest = p;
        }
        if (slot && now_ms - slot->at_ms < cfg->grace_ms) {
            skips->recent++;
            continue;
        }
        if (n >= bound) {
            skips->bounded++;
            continue;
        }
        if (!slot)
            slot = st->npromoted < MON_PROMOTE_MEMORY ? &st->promoted[st->npromoted++] : oldest;
        if (!slot)
            continue;
        memcpy(slot->key, k->key, k->klen);
        slot->klen = (uint32_t)k->klen;
        slot->at_ms = now_ms;
        out[n++] = cand[c].idx;
    }
    free(cand);
    return n;
}
