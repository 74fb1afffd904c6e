/*
 * mon_hotkeys.c - replication overrides for hot keys (mon_hotkeys.h).
 */
#include "monitor/mon_hotkeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "monitor/mon_impl.h"

/* A CMD_SET_OVERRIDES sent to every router; the last answer logs it. */
typedef struct overrides_ctx {
    monitor *m;
    int pending, ok;
    char error[128];
    uint64_t decided_ms, decided_wall_us;
    double nkeys, total_rate;
    size_t n;
    mon_hot_change changes[];
} overrides_ctx;

static void overrides_done(monitor *m, overrides_ctx *c, int status, const char *text);
static void overrides_req_done(void *arg, int status, const Trellis__Envelope *reply);

/* Sends one CMD_SET_OVERRIDES with the n changes in ch to every router,
 * each answer to done(arg) (done may be NULL). Returns how many routers it
 * went to. */
static int send_set_overrides(monitor *m, mon_hot_change *ch, size_t n, peer_done_fn done,
                              void *arg)
{
    Trellis__KeyOverride *ko = calloc(n, sizeof(*ko));
    Trellis__KeyOverride **pko = calloc(n, sizeof(*pko));
    int sent = 0;
    if (ko && pko) {
        for (size_t i = 0; i < n; i++) {
            trellis__key_override__init(&ko[i]);
            ko[i].key.data = ch[i].key;
            ko[i].key.len = ch[i].klen;
            ko[i].memory = ch[i].memory;
            ko[i].disk = ch[i].disk;
            ko[i].version = ch[i].version;
            pko[i] = &ko[i];
        }
        Trellis__Envelope env;
        Trellis__Command cmd;
        trellis__envelope__init(&env);
        trellis__command__init(&cmd);
        cmd.code = TRELLIS__COMMAND_CODE__CMD_SET_OVERRIDES;
        cmd.overrides = pko;
        cmd.n_overrides = n;
        env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        for (int i = 0; i < m->cfg.cluster.routers.n; i++)
            sent += peer_send(m->peers, m->cfg.cluster.routers.v[i], &env, MON_RPC_TIMEOUT_MS,
                              m->rs.epoch, 0, done, arg) == TRELLIS_OK;
    }
    free(ko);
    free(pko);
    return sent;
}

static void send_overrides(monitor *m, const mon_hot_change *ch, size_t n, const mon_key_stats *ks,
                           uint64_t now)
{
    overrides_ctx *c = calloc(1, sizeof(*c) + n * sizeof(c->changes[0]));
    if (!c)
        return;
    c->m = m;
    c->decided_ms = now;
    c->decided_wall_us = clock_wall_us();
    c->nkeys = ks->nkeys;
    c->total_rate = ks->total_rate;
    c->n = n;
    memcpy(c->changes, ch, n * sizeof(*ch));
    for (size_t i = 0; i < n; i++)
        log_info("hot keys: %s replication of a key (%.0f accesses/s, threshold %.0f): "
                 "memory %u, disk %u",
                 ch[i].raise ? "raising" : "lowering", ch[i].rate, ch[i].threshold, ch[i].memory,
                 ch[i].disk);
    /* Answers cannot arrive before the loop runs again: pending is final. */
    c->pending = send_set_overrides(m, c->changes, n, overrides_req_done, c);
    if (c->pending == 0) {
        snprintf(c->error, sizeof(c->error), "no router could be reached");
        c->pending = 1;
        overrides_done(m, c, TRELLIS_UNAVAILABLE, NULL); /* logs and frees c */
    }
}

/* One router answered (or not) a CMD_SET_OVERRIDES; the last answer logs
 * the decisions and frees c. */
static void overrides_done(monitor *m, overrides_ctx *c, int status, const char *text)
{
    if (status == TRELLIS_OK)
        c->ok++;
    else if (!c->error[0])
        snprintf(c->error, sizeof(c->error), "%s", text ? text : trellis_strerror(status));
    if (--c->pending > 0)
        return;
    for (size_t i = 0; i < c->n; i++) {
        const mon_hot_change *ch = &c->changes[i];
        const char *action = ch->raise ? "raise" : "lower";
        mon_log_begin(&m->line, c->decided_wall_us, mon_since_start(m, c->decided_ms), "hot_keys",
                      action);
        mon_json_bytes(&m->line, "key", ch->key, ch->klen);
        mon_json_open(&m->line, "inputs");
        mon_json_dbl(&m->line, "rate", ch->rate);
        mon_json_dbl(&m->line, "threshold", ch->threshold);
        mon_json_dbl(&m->line, "mean", ch->mean);
        mon_json_dbl(&m->line, "stddev", ch->stddev);
        mon_json_dbl(&m->line, "k", m->hot.cfg.k);
        mon_json_dbl(&m->line, "min_rate", m->hot.cfg.min_rate);
        mon_json_dbl(&m->line, "min_share", m->hot.cfg.min_share);
        mon_json_dbl(&m->line, "cool_ratio", m->hot.cfg.cool_ratio);
        mon_json_dbl(&m->line, "keys", c->nkeys);
        mon_json_dbl(&m->line, "total_rate", c->total_rate);
        mon_json_close(&m->line);
        mon_json_open(&m->line, "replicas");
        mon_json_u64(&m->line, "memory", ch->memory);
        mon_json_u64(&m->line, "disk", ch->disk);
        mon_json_close(&m->line);
        mon_json_u64(&m->line, "version", ch->version);
        char why[200];
        snprintf(why, sizeof(why), "%s (%d of %d routers)", c->error, c->ok,
                 m->cfg.cluster.routers.n);
        mon_record_end(m, "hot_keys", action, c->ok > 0, why);
    }
    free(c);
}

static void overrides_req_done(void *arg, int status, const Trellis__Envelope *reply)
{
    overrides_ctx *c = arg;
    monitor *m = c->m;
    const char *text;
    if (m->closing) {
        if (--c->pending == 0)
            free(c);
        return;
    }
    status = mon_reply_status(status, reply, &text);
    int ok = mon_command_ok(status, reply);
    overrides_done(m, c, ok ? TRELLIS_OK : status ? status : TRELLIS_INVALID, text);
}

size_t mon_hotkeys_run(monitor *m, uint64_t now, const mon_tier *tiers)
{
    int tier = tiers[0].active > 0 ? RING_TIER_MEMORY : RING_TIER_DISK;
    uint32_t def = (uint32_t)(tier == RING_TIER_MEMORY ? m->cfg.cluster.memory_replicas
                                                       : m->cfg.cluster.disk_replicas);
    mon_key_stats ks;
    if (mon_view_key_stats(&m->view, tier, MON_KEYS_ACCESSED, def, now, &ks) != TRELLIS_OK) {
        mon_key_stats_free(&ks);
        return 0;
    }
    size_t n = 0;
    mon_hot_change *ch = calloc(MON_MAX_CHANGES, sizeof(*ch));
    if (ch) {
        mon_hot_skips sk;
        n = mon_hot_decide(&m->hot.cfg, &m->hot.st, &ks, tiers[0].active, tiers[1].active, now,
                           clock_wall_us() / 1000, ch, MON_MAX_CHANGES, &sk);
        m->rec.cur.hot.unplaceable += sk.unplaceable;
        m->rec.cur.hot.below_share += sk.below_share;
        m->rec.cur.hot.held += sk.held;
        m->rec.cur.hot.grace += sk.grace;
        m->rec.cur.hot.bounded += sk.bounded;
        if (n)
            send_overrides(m, ch, n, &ks, now);
        free(ch);
    }
    mon_key_stats_free(&ks);
    return n;
}

void mon_hotkeys_reconcile(monitor *m, uint64_t now)
{
    if (!m->rs.ring || m->periods % 5 != 0)
        return;
    mon_hot_change ch[MON_MAX_CHANGES];
    size_t n = 0;
    for (size_t i = 0; i < m->hot.st.n && n < MON_MAX_CHANGES; i++) {
        const mon_hot_entry *e = &m->hot.st.e[i];
        if (!e->changed_ms || now - e->changed_ms < 3 * m->period_ms)
            continue;
        int seen = 0;
        for (size_t j = 0; j < ring_override_count(m->rs.ring) && !seen; j++) {
            const ring_override *o = ring_override_at(m->rs.ring, j);
            seen = o->klen == e->klen && memcmp(o->key, e->key, e->klen) == 0 &&
                   o->version >= e->version;
        }
        if (seen)
            continue;
        memset(&ch[n], 0, sizeof(ch[n]));
        memcpy(ch[n].key, e->key, e->klen);
        ch[n].klen = e->klen;
        ch[n].memory = e->memory;
        ch[n].disk = e->disk;
        ch[n].version = e->version;
        n++;
    }
    if (!n)
        return;
    log_warn("hot keys: %zu overrides missing from the ring; sending them again", n);
    send_set_overrides(m, ch, n, NULL, NULL);
}

void mon_hotkeys_fini(monitor *m)
{
    mon_hot_state_free(&m->hot.st);
}
