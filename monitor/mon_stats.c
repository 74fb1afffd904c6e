/*
 * mon_stats.c - the monitor's view of the cluster (see mon_stats.h).
 */
#include "monitor/mon_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mon_view_init(mon_view *v, uint64_t min_period_ms)
{
    memset(v, 0, sizeof(*v));
    v->min_period_ms = min_period_ms ? min_period_ms : 1000;
}

static void node_clear_report(mon_node *n)
{
    free(n->hot);
    n->hot = NULL;
    n->nhot = n->nfound = 0;
    n->has_report = 0;
}

void mon_view_fini(mon_view *v)
{
    for (size_t i = 0; i < v->nnodes; i++)
        node_clear_report(&v->nodes[i]);
    free(v->nodes);
    v->nodes = NULL;
    v->nnodes = v->capnodes = 0;
}

mon_node *mon_view_find(mon_view *v, const char *id)
{
    for (size_t i = 0; i < v->nnodes; i++)
        if (strcmp(v->nodes[i].id, id) == 0)
            return &v->nodes[i];
    return NULL;
}

static mon_node *node_add(mon_view *v, const char *id)
{
    if (v->nnodes >= RING_MAX_NODES)
        return NULL;
    if (v->nnodes == v->capnodes) {
        size_t cap = v->capnodes ? v->capnodes * 2 : 16;
        mon_node *n = realloc(v->nodes, cap * sizeof(*n));
        if (!n)
            return NULL;
        v->nodes = n;
        v->capnodes = cap;
    }
    mon_node *n = &v->nodes[v->nnodes++];
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    return n;
}

static void node_remove(mon_view *v, size_t i)
{
    node_clear_report(&v->nodes[i]);
    v->nodes[i] = v->nodes[--v->nnodes];
}

static uint64_t fresh_window(const mon_view *v, uint64_t period_ms)
{
    uint64_t p = period_ms > v->min_period_ms ? period_ms : v->min_period_ms;
    return MON_STALE_PERIODS * p;
}

int mon_node_fresh(const mon_view *v, const mon_node *n, uint64_t now_ms)
{
    return n->has_report && now_ms - n->report_ms <= fresh_window(v, n->period_ms);
}

int mon_view_set_ring(mon_view *v, const ring *r, uint64_t now_ms)
{
    int rc = TRELLIS_OK;
    for (size_t i = 0; i < v->nnodes; i++)
        v->nodes[i].state = 0;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *rn = ring_node_at(r, i);
        mon_node *n = mon_view_find(v, rn->id);
        if (!n && !(n = node_add(v, rn->id))) {
            rc = TRELLIS_INTERNAL;
            continue;
        }
        if (n->generation != rn->generation && n->has_report)
            node_clear_report(n); /* a report of another incarnation */
        n->tier = rn->tier;
        n->state = rn->state;
        n->generation = rn->generation;
        n->shards = rn->shards;
        snprintf(n->admin_url, sizeof(n->admin_url), "%s", rn->admin_url);
        snprintf(n->endpoint, sizeof(n->endpoint), "%s", rn->endpoint);
    }
    for (size_t i = v->nnodes; i-- > 0;)
        if (v->nodes[i].state == 0 && !mon_node_fresh(v, &v->nodes[i], now_ms))
            node_remove(v, i);
    return rc;
}

static int client_report(mon_view *v, const Trellis__StatsReport *rep, uint64_t now_ms)
{
    if (strlen(rep->client_id) > MON_MAX_CLIENT_ID)
        return TRELLIS_INVALID;
    mon_client *c = NULL;
    for (size_t i = 0; i < v->nclients && !c; i++)
        if (strcmp(v->clients[i].id, rep->client_id) == 0)
            c = &v->clients[i];
    if (!c) {
        /* Reuse the slot of a client that went quiet. */
        for (size_t i = 0; i < v->nclients && !c; i++)
            if (now_ms - v->clients[i].report_ms > fresh_window(v, v->clients[i].period_ms))
                c = &v->clients[i];
        if (!c && v->nclients < MON_MAX_CLIENTS)
            c = &v->clients[v->nclients++];
        if (!c)
            return TRELLIS_TOO_LARGE;
        memset(c, 0, sizeof(*c));
        snprintf(c->id, sizeof(c->id), "%s", rep->client_id);
    }
    c->report_ms = now_ms;
    c->period_ms = rep->period_ms;
    c->ops = rep->client_ops;
    c->p50_us = rep->client_p50_us;
    c->p99_us = rep->client_p99_us;
    return TRELLIS_OK;
}

/* Copies up to cap sketch entries into out with their certain counts;
 * returns how many. */
static size_t take_keys(Trellis__HotKey *const *in, size_t n, mon_hot *out, size_t cap,
                        double period_s)
{
    size_t m = 0;
    for (size_t k = 0; k < n && m < cap; k++) {
        const Trellis__HotKey *hk = in[k];
        if (hk->key.len == 0 || hk->key.len > MON_HOT_KEY_MAX)
            continue;
        memcpy(out[m].key, hk->key.data, hk->key.len);
        out[m].klen = (uint32_t)hk->key.len;
        out[m].count = hk->count > hk->error ? hk->count - hk->error : 0;
        out[m].rate = (double)out[m].count / period_s;
        m++;
    }
    return m;
}

int mon_view_report(mon_view *v, const Trellis__StatsReport *rep, uint64_t now_ms)
{
    if (rep->client_id && rep->client_id[0]) {
        int rc = client_report(v, rep, now_ms);
        v->reports += rc == TRELLIS_OK;
        v->rejected += rc != TRELLIS_OK;
        return rc;
    }
    const Trellis__NodeInfo *ni = rep->node;
    if (!ni || !ni->id || !ni->id[0] || strlen(ni->id) > RING_MAX_NODE_ID ||
        (ni->tier != TRELLIS__TIER__MEMORY && ni->tier != TRELLIS__TIER__DISK)) {
        v->rejected++;
        return TRELLIS_INVALID;
    }
    mon_node *n = mon_view_find(v, ni->id);
    if (n && n->state && n->generation != ni->generation) {
        v->rejected++;
        return TRELLIS_OK; /* not the incarnation the ring knows: ignored */
    }
    if (!n) {
        if (!(n = node_add(v, ni->id))) {
            v->rejected++;
            return TRELLIS_INTERNAL;
        }
        n->tier = (int)ni->tier;
        n->generation = ni->generation;
    }
    if (!n->state)
        n->generation = ni->generation;
    size_t nhot = 0, nfound = 0;
    for (size_t i = 0; i < rep->n_shards; i++) {
        nhot += rep->shards[i]->n_hot;
        nfound += rep->shards[i]->n_found;
    }
    if (nhot > MON_MAX_HOT_PER_NODE)
        nhot = MON_MAX_HOT_PER_NODE;
    if (nfound > MON_MAX_HOT_PER_NODE)
        nfound = MON_MAX_HOT_PER_NODE;
    mon_hot *hot = nhot + nfound ? calloc(nhot + nfound, sizeof(*hot)) : NULL;
    if (nhot + nfound && !hot) {
        v->rejected++;
        return TRELLIS_INTERNAL;
    }
    double period_s = (double)(rep->period_ms ? rep->period_ms : v->min_period_ms) / 1000.0;
    double busy = 0, busy_max = 0, ops = 0, reads = 0;
    uint64_t p50 = 0, p99 = 0, keys = 0, bytes = 0, overloaded = 0, demoted = 0;
    size_t h = 0, f = 0;
    for (size_t i = 0; i < rep->n_shards; i++) {
        const Trellis__ShardStats *s = rep->shards[i];
        double b = s->busy < 0 ? 0 : s->busy > 1 ? 1 : s->busy;
        busy += b;
        if (b > busy_max)
            busy_max = b;
        ops += (double)s->ops;
        reads += (double)s->reads;
        if (s->p50_us > p50)
            p50 = s->p50_us;
        if (s->p99_us > p99)
            p99 = s->p99_us;
        keys += s->keys;
        bytes += s->bytes;
        overloaded += s->overloaded;
        demoted += s->demoted;
        h += take_keys(s->hot, s->n_hot, hot + h, nhot - h, period_s);
        f += take_keys(s->found, s->n_found, hot + nhot + f, nfound - f, period_s);
    }
    /* The found keys follow the hot ones directly. */
    if (f && h < nhot)
        memmove(hot + h, hot + nhot, f * sizeof(*hot));
    node_clear_report(n);
    n->has_report = 1;
    n->report_ms = now_ms;
    n->period_ms = rep->period_ms;
    n->busy = rep->n_shards ? busy / (double)rep->n_shards : 0;
    if (rep->cpu_allotted > 0) /* a node that measures its CPU says how busy it is */
        n->busy = rep->busy < 0 ? 0 : rep->busy > 1 ? 1 : rep->busy;
    n->cpu_used = rep->cpu_used > 0 ? rep->cpu_used : 0;
    n->cpu_allotted = rep->cpu_allotted > 0 ? rep->cpu_allotted : 0;
    n->cpu_quota = rep->cpu_quota;
    n->throttled = rep->quota_periods && rep->throttled_periods <= rep->quota_periods
                       ? (double)rep->throttled_periods / (double)rep->quota_periods
                       : 0;
    n->busy_max = busy_max;
    n->ops_per_sec = ops / period_s;
    n->reads_per_sec = reads / period_s;
    n->p50_us = p50;
    n->p99_us = p99;
    n->keys = keys;
    n->bytes = bytes;
    n->capacity = rep->capacity;
    n->overloaded = overloaded;
    n->hot = hot;
    n->nhot = (int)h;
    n->nfound = (int)f;
    n->demoted = demoted;
    n->demoted_logged = 0;
    v->reports++;
    return TRELLIS_OK;
}

void mon_view_tier(const mon_view *v, int tier, uint64_t now_ms, mon_tier *out)
{
    memset(out, 0, sizeof(*out));
    out->tier = tier;
    uint64_t cap_reporting = 0, bytes_reporting = 0;
    for (size_t i = 0; i < v->nnodes; i++) {
        const mon_node *n = &v->nodes[i];
        if (n->tier != tier)
            continue;
        switch (n->state) {
        case NODE_JOINING:
            out->joining++;
            break;
        case NODE_ACTIVE:
            out->active++;
            break;
        case NODE_LEAVING:
            out->leaving++;
            break;
        case NODE_DEAD:
            out->dead++;
            break;
        default:
            break;
        }
        if ((n->state != NODE_ACTIVE && n->state != NODE_LEAVING) || !mon_node_fresh(v, n, now_ms))
            continue;
        out->reporting++;
        out->active_reporting += n->state == NODE_ACTIVE;
        out->busy_avg += n->busy;
        if (n->busy > out->busy_max)
            out->busy_max = n->busy;
        out->cpu_used += n->cpu_used;
        out->cpu_allotted += n->cpu_allotted;
        if (n->throttled > out->throttled_max)
            out->throttled_max = n->throttled;
        double use = n->capacity ? (double)n->bytes / (double)n->capacity : 0;
        if (use > out->cap_max)
            out->cap_max = use;
        cap_reporting += n->capacity;
        bytes_reporting += n->bytes;
        if (n->p99_us > out->p99_us)
            out->p99_us = n->p99_us;
        out->ops_per_sec += n->ops_per_sec;
        if (n->ops_per_sec > out->ops_max)
            out->ops_max = n->ops_per_sec;
        out->keys += n->keys;
        out->bytes += n->bytes;
        out->capacity += n->capacity;
        out->overloaded += n->overloaded;
        if (n->report_ms > out->data_ms)
            out->data_ms = n->report_ms;
    }
    if (out->reporting)
        out->busy_avg /= out->reporting;
    out->cap_use = cap_reporting ? (double)bytes_reporting / (double)cap_reporting : 0;
}

uint64_t mon_view_client_p99(const mon_view *v, uint64_t now_ms)
{
    uint64_t worst = 0;
    for (size_t i = 0; i < v->nclients; i++) {
        const mon_client *c = &v->clients[i];
        if (now_ms - c->report_ms <= fresh_window(v, c->period_ms) &&
            c->ops >= MON_CLIENT_MIN_CALLS && c->p99_us > worst)
            worst = c->p99_us;
    }
    return worst;
}

static int key_rate_cmp(const void *a, const void *b)
{
    const mon_key_rate *x = a, *y = b;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

void mon_key_stats_free(mon_key_stats *s)
{
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

int mon_view_key_stats(const mon_view *v, int tier, int which, uint32_t default_replicas,
                       uint64_t now_ms, mon_key_stats *out)
{
    memset(out, 0, sizeof(*out));
    size_t cap = 0;
    uint64_t keys = 0;
    for (size_t i = 0; i < v->nnodes; i++) {
        const mon_node *n = &v->nodes[i];
        if (n->tier != tier || (n->state != NODE_ACTIVE && n->state != NODE_LEAVING) ||
            !mon_node_fresh(v, n, now_ms))
            continue;
        cap += (size_t)(which == MON_KEYS_FOUND ? n->nfound : n->nhot);
        keys += n->keys;
        out->total_rate += n->ops_per_sec;
        if (n->report_ms > out->data_ms)
            out->data_ms = n->report_ms;
    }
    out->nkeys = (double)keys / (double)(default_replicas ? default_replicas : 1);
    if (cap == 0)
        return TRELLIS_OK;
    out->keys = calloc(cap, sizeof(*out->keys));
    if (!out->keys)
        return TRELLIS_INTERNAL;
    size_t m = 0;
    for (size_t i = 0; i < v->nnodes; i++) {
        const mon_node *n = &v->nodes[i];
        if (n->tier != tier || (n->state != NODE_ACTIVE && n->state != NODE_LEAVING) ||
            !mon_node_fresh(v, n, now_ms))
            continue;
        const mon_hot *list = which == MON_KEYS_FOUND ? n->hot + n->nhot : n->hot;
        int nl = which == MON_KEYS_FOUND ? n->nfound : n->nhot;
        for (int h = 0; h < nl; h++) {
            const mon_hot *hk = &list[h];
            if (hk->klen >= MON_HOT_KEY_MAX)
                continue; /* possibly truncated */
            out->keys[m].key = hk->key;
            out->keys[m].klen = hk->klen;
            out->keys[m].rate = hk->rate;
            out->keys[m].count = hk->count;
            m++;
        }
    }
    /* Sort by key, then sum the replicas of each key. */
    qsort(out->keys, m, sizeof(*out->keys), key_rate_cmp);
    for (size_t i = 0; i < m; i++) {
        if (out->n && key_rate_cmp(&out->keys[out->n - 1], &out->keys[i]) == 0) {
            out->keys[out->n - 1].rate += out->keys[i].rate;
            out->keys[out->n - 1].count += out->keys[i].count;
        } else {
            out->keys[out->n++] = out->keys[i];
        }
    }
    /* The sketches see at least the keys they report. */
    if (out->nkeys < (double)out->n)
        out->nkeys = (double)out->n;
    return TRELLIS_OK;
}
