/*
 * mon_tiers.c - demotion sweeps and promotions (mon_tiers.h).
 */
#include "monitor/mon_tiers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "monitor/mon_impl.h"

/* A demotion sweep sent to one node. */
typedef struct demote_ctx {
    monitor *m;
    char node[RING_MAX_NODE_ID + 1];
} demote_ctx;

/* A batch of promotions: reads through one memory shard. */
typedef struct promote_ctx {
    monitor *m;
    uint64_t decided_ms, decided_wall_us;
    char node[RING_MAX_NODE_ID + 1];
    char url[RING_MAX_URL + 1];
    size_t n;
    struct promote_key {
        uint8_t key[MON_HOT_KEY_MAX];
        uint32_t klen;
        uint64_t count; /* reads that found it on the disk tier, in the period */
    } keys[];
} promote_ctx;

static void demote_done(void *arg, int status, const Trellis__Envelope *reply);
static void promote_done(void *arg, int status, const Trellis__Envelope *reply);

/* Demotion sweeps: CMD_DEMOTE to every ACTIVE memory node (under storage
 * pressure, to the full ones, with a bound). They are not decisions of
 * their own: what a node moves is logged when it reports it
 * (log_demotions). */
static void demote_sweep(monitor *m, int trigger, uint64_t now)
{
    for (size_t i = 0; i < m->view.nnodes; i++) {
        mon_node *n = &m->view.nodes[i];
        if (n->tier != RING_TIER_MEMORY || n->state != NODE_ACTIVE || !n->admin_url[0])
            continue;
        uint64_t idle = m->tiers.cfg.demote_idle_ms, max_keys = 0;
        if (trigger == MON_DEMOTE_CAPACITY) {
            if (!mon_node_fresh(&m->view, n, now))
                continue;
            idle = mon_tiering_pressure_idle_ms(&m->tiers.cfg);
            max_keys = mon_tiering_pressure_keys(&m->tiers.cfg, n->keys, n->bytes, n->capacity);
            if (!max_keys)
                continue; /* this node is not the one that is full */
            log_info("tiering: %s is %.0f%% full: moving up to %llu keys idle for %llu ms to the "
                     "disk tier",
                     n->id, n->capacity ? 100.0 * (double)n->bytes / (double)n->capacity : 0.0,
                     (unsigned long long)max_keys, (unsigned long long)idle);
        }
        demote_ctx *c = calloc(1, sizeof(*c));
        if (!c)
            continue;
        c->m = m;
        snprintf(c->node, sizeof(c->node), "%s", n->id);
        n->sweep.trigger = trigger;
        n->sweep.idle_ms = idle;
        n->sweep.max_keys = max_keys;
        Trellis__Envelope env;
        Trellis__Command cmd;
        trellis__envelope__init(&env);
        trellis__command__init(&cmd);
        cmd.code = TRELLIS__COMMAND_CODE__CMD_DEMOTE;
        cmd.idle_ms = idle;
        cmd.max_keys = max_keys;
        env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        if (peer_send(m->peers, n->admin_url, &env, MON_RPC_TIMEOUT_MS, m->rs.epoch, 0, demote_done,
                      c) != TRELLIS_OK) {
            log_warn("tiering: cannot send a demotion sweep to %s", n->id);
            free(c);
            continue;
        }
        m->rec.cur.demote_sweeps++;
    }
}

/* One decision line for each memory node that reported keys moved to the
 * disk tier: what the sweeps changed. */
static void log_demotions(monitor *m, uint64_t now)
{
    for (size_t i = 0; i < m->view.nnodes; i++) {
        mon_node *n = &m->view.nodes[i];
        if (n->tier != RING_TIER_MEMORY || !n->has_report || n->demoted_logged || !n->demoted)
            continue;
        n->demoted_logged = 1;
        mon_log_begin(&m->line, clock_wall_us(), mon_since_start(m, now), "tiering", "demote");
        mon_json_str(&m->line, "tier", "memory");
        mon_json_str(&m->line, "node", n->id);
        mon_json_u64(&m->line, "moved", n->demoted);
        mon_json_open(&m->line, "inputs");
        mon_json_str(&m->line, "trigger",
                     n->sweep.trigger == MON_DEMOTE_CAPACITY ? "capacity" : "schedule");
        mon_json_u64(&m->line, "idle_ms", n->sweep.idle_ms);
        mon_json_u64(&m->line, "max_keys", n->sweep.max_keys);
        mon_json_dbl(&m->line, "node_use",
                     n->capacity ? (double)n->bytes / (double)n->capacity : 0.0);
        mon_json_dbl(&m->line, "capacity_high", m->tiers.cfg.capacity_high);
        mon_json_dbl(&m->line, "capacity_low", m->tiers.cfg.capacity_low);
        mon_json_close(&m->line);
        mon_record_end(m, "tiering", "demote", 1, NULL);
    }
}

/* Sends a batch of promotions: one request of reads through the keys'
 * memory shard (a memory shard fetches a key it lacks from the disk tier
 * and keeps it). Takes c. */
static void promote_send(monitor *m, promote_ctx *c)
{
    Trellis__KeyOp *ops = calloc(c->n, sizeof(*ops));
    Trellis__KeyOp **pops = calloc(c->n, sizeof(*pops));
    if (!ops || !pops) {
        free(ops);
        free(pops);
        free(c);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        trellis__key_op__init(&ops[i]);
        ops[i].op = TRELLIS__OP_CODE__GET;
        ops[i].key.data = c->keys[i].key;
        ops[i].key.len = c->keys[i].klen;
        pops[i] = &ops[i];
    }
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    trellis__envelope__init(&env);
    trellis__kv_request__init(&kv);
    kv.ops = pops;
    kv.n_ops = c->n;
    kv.stored = 1; /* a peer's fetch: the shard's socket serves no other key operation */
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    log_info("tiering: promoting %zu keys read often on the disk tier (through %s)", c->n, c->node);
    if (peer_send(m->peers, c->url, &env, MON_RPC_TIMEOUT_MS, m->rs.epoch, 0, promote_done, c) !=
        TRELLIS_OK)
        promote_done(c, TRELLIS_UNAVAILABLE, NULL);
    free(ops);
    free(pops);
}

/* The promotions of this evaluation, grouped by the memory shard that
 * reads them through: one request and one decision line per group. */
static void run_promotions(monitor *m, uint64_t now, int memory_nodes)
{
    mon_key_stats ks;
    if (mon_view_key_stats(&m->view, RING_TIER_DISK, MON_KEYS_FOUND,
                           (uint32_t)m->cfg.cluster.disk_replicas, now, &ks) != TRELLIS_OK) {
        mon_key_stats_free(&ks);
        return;
    }
    size_t idx[MON_MAX_PROMOTES];
    mon_promote_skips sk;
    size_t n = mon_tiering_promote(&m->tiers.cfg, &m->tiers.st, &ks, memory_nodes, now, idx,
                                   MON_MAX_PROMOTES, &sk);
    m->rec.cur.promote.recent += sk.recent;
    m->rec.cur.promote.bounded += sk.bounded;
    promote_ctx **groups = n ? calloc(n, sizeof(*groups)) : NULL;
    size_t ng = 0;
    for (size_t i = 0; groups && i < n; i++) {
        const mon_key_rate *k = &ks.keys[idx[i]];
        int rep[RING_MAX_REPLICAS];
        size_t nr = ring_replicas(m->rs.ring, RING_CURRENT, RING_TIER_MEMORY, k->key, k->klen, rep,
                                  RING_MAX_REPLICAS);
        const ring_node *rn = nr ? ring_node_at(m->rs.ring, (size_t)rep[0]) : NULL;
        char url[RING_MAX_URL + 1];
        if (!rn || ring_shard_url(rn, ring_local_shard(k->key, k->klen, rn->shards), url,
                                  sizeof(url)) != TRELLIS_OK)
            continue;
        size_t g = 0;
        while (g < ng && strcmp(groups[g]->url, url) != 0)
            g++;
        if (g == ng) {
            promote_ctx *c = calloc(1, sizeof(*c) + n * sizeof(c->keys[0]));
            if (!c)
                continue;
            c->m = m;
            c->decided_ms = now;
            c->decided_wall_us = clock_wall_us();
            snprintf(c->node, sizeof(c->node), "%s", rn->id);
            snprintf(c->url, sizeof(c->url), "%s", url);
            groups[ng++] = c;
        }
        struct promote_key *pk = &groups[g]->keys[groups[g]->n++];
        memcpy(pk->key, k->key, k->klen);
        pk->klen = (uint32_t)k->klen;
        pk->count = k->count;
    }
    for (size_t g = 0; g < ng; g++)
        promote_send(m, groups[g]);
    free(groups);
    mon_key_stats_free(&ks);
}

void mon_tiers_run(monitor *m, uint64_t now, const mon_tier *tiers)
{
    const mon_tier *mem = &tiers[0], *disk = &tiers[1];
    int d = mon_tiering_demote(&m->tiers.cfg, &m->tiers.st, mem, disk, now);
    if (d != MON_DEMOTE_NONE)
        demote_sweep(m, d, now);
    log_demotions(m, now);
    if (m->rs.ring)
        run_promotions(m, now, mem->active);
}

/* A demotion sweep's answer: only failures are worth a word. */
static void demote_done(void *arg, int status, const Trellis__Envelope *reply)
{
    demote_ctx *c = arg;
    monitor *m = c->m;
    const char *text;
    if (!m->closing) {
        status = mon_reply_status(status, reply, &text);
        if (!mon_command_ok(status, reply)) {
            if (!text && status != TRELLIS_OK)
                text = trellis_strerror(status);
            else if (!text && reply->body_case == TRELLIS__ENVELOPE__BODY_COMMAND_REPLY)
                text = reply->command_reply->message;
            log_warn("tiering: %s did not take a demotion sweep: %s", c->node,
                     text && text[0] ? text : "unexpected reply");
        }
    }
    free(c);
}

/* A batch of promotions answered (or not): one decision line. */
static void promote_done(void *arg, int status, const Trellis__Envelope *reply)
{
    promote_ctx *c = arg;
    monitor *m = c->m;
    const char *text = NULL;
    if (!m->closing) {
        status = mon_reply_status(status, reply, &text);
        const Trellis__KvReply *kr =
            status == TRELLIS_OK && reply && reply->body_case == TRELLIS__ENVELOPE__BODY_KV_REPLY
                ? reply->kv_reply
                : NULL;
        size_t ok = 0;
        for (size_t i = 0; kr && i < kr->n_results && i < c->n; i++)
            ok += kr->results[i]->status == TRELLIS__STATUS__OK;
        mon_log_begin(&m->line, c->decided_wall_us, mon_since_start(m, c->decided_ms), "tiering",
                      "promote");
        mon_json_str(&m->line, "tier", "memory");
        mon_json_str(&m->line, "node", c->node);
        mon_json_bytes(&m->line, "key", c->keys[0].key, c->keys[0].klen); /* the most read */
        mon_json_u64(&m->line, "keys", c->n);
        mon_json_u64(&m->line, "promoted", ok);
        mon_json_array_open(&m->line, "keys_hex");
        for (size_t i = 0; i < c->n; i++)
            mon_json_item_hex(&m->line, c->keys[i].key, c->keys[i].klen);
        mon_json_array_close(&m->line);
        mon_json_open(&m->line, "inputs");
        mon_json_u64(&m->line, "disk_reads_max", c->keys[0].count);
        mon_json_u64(&m->line, "disk_reads_min", c->keys[c->n - 1].count);
        mon_json_u64(&m->line, "promote_reads", m->tiers.cfg.promote_reads);
        mon_json_u64(&m->line, "promote_max", m->tiers.cfg.promote_max);
        mon_json_close(&m->line);
        char why[200];
        if (!kr)
            snprintf(why, sizeof(why), "%s", text ? text : trellis_strerror(status));
        else
            snprintf(why, sizeof(why), "no key read through the memory replica");
        mon_record_end(m, "tiering", "promote", ok > 0, why);
    }
    free(c);
}
