/*
 * mon_elasticity.c - node additions and removals as operations advanced a
 * step per loop turn (mon_elasticity.h).
 */
#include "monitor/mon_elasticity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "monitor/mon_impl.h"

enum { OP_PROVISION = 1, OP_JOINING, OP_DEPART, OP_DRAINING, OP_FINISH };

/* A CMD_DEPART to the node an operation drains. */
typedef struct depart_ctx {
    monitor *m;
    uint64_t op_id;
} depart_ctx;

static void depart_done(void *arg, int status, const Trellis__Envelope *reply);

static mon_op *op_find(monitor *m, uint64_t id)
{
    for (int i = 0; i < MON_MAX_OPS; i++)
        if (m->el.ops[i].used && m->el.ops[i].id == id)
            return &m->el.ops[i];
    return NULL;
}

static int ops_on_tier(const monitor *m, int tier)
{
    int n = 0;
    for (int i = 0; i < MON_MAX_OPS; i++)
        n += m->el.ops[i].used && m->el.ops[i].tier == tier;
    return n;
}

static void op_log_inputs(monitor *m, const mon_op *op)
{
    const mon_elastic_cfg *c = &m->el.cfg[op->tier];
    const mon_elastic_inputs *in = &op->in;
    mon_json_str(&m->line, "tier", ring_tier_name(op->tier));
    if (op->job.node[0])
        mon_json_str(&m->line, "node", op->job.node);
    mon_json_str(&m->line, "reason", op->reason);
    mon_json_open(&m->line, "inputs");
    mon_json_int(&m->line, "active", in->active);
    mon_json_int(&m->line, "joining", in->joining);
    mon_json_int(&m->line, "leaving", in->leaving);
    mon_json_int(&m->line, "reporting", in->reporting);
    mon_json_dbl(&m->line, "busy_avg", in->busy_avg);
    mon_json_dbl(&m->line, "busy_max", in->busy_max);
    mon_json_dbl(&m->line, "capacity_use", in->cap_use);
    mon_json_dbl(&m->line, "capacity_max", in->cap_max);
    mon_json_dbl(&m->line, "cpu_used", in->cpu_used);
    mon_json_dbl(&m->line, "cpu_allotted", in->cpu_allotted);
    mon_json_dbl(&m->line, "throttled_max", in->throttled_max);
    mon_json_u64(&m->line, "p99_us", in->p99_us);
    mon_json_u64(&m->line, "client_p99_us", in->client_p99_us);
    mon_json_int(&m->line, "over_periods", in->over_streak);
    mon_json_u64(&m->line, "low_for_ms", in->low_for_ms);
    mon_json_dbl(&m->line, "ops_per_sec", in->ops_per_sec);
    mon_json_dbl(&m->line, "saturated_ops_per_node", in->sat_ops_per_node);
    mon_json_dbl(&m->line, "busy_high", c->busy_high);
    mon_json_dbl(&m->line, "busy_low", c->busy_low);
    mon_json_dbl(&m->line, "capacity_high", c->capacity_high);
    mon_json_dbl(&m->line, "capacity_low", c->capacity_low);
    mon_json_u64(&m->line, "latency_slo_us", c->latency_slo_us);
    mon_json_int(&m->line, "min_nodes", c->min_nodes);
    mon_json_int(&m->line, "max_nodes", c->max_nodes);
    mon_json_close(&m->line);
    mon_json_str(&m->line, "provisioner", mon_prov_name(m->prov));
}

static void op_finish(monitor *m, mon_op *op, int ok, const char *failure)
{
    const char *action = op->kind == MON_ADD ? "add" : "remove";
    mon_log_begin(&m->line, op->decided_wall_us, mon_since_start(m, op->decided_ms), "elasticity",
                  action);
    op_log_inputs(m, op);
    if (op->note[0])
        mon_json_str(&m->line, "note", op->note);
    mon_record_end(m, "elasticity", action, ok, failure);
    if (ok)
        log_info("elasticity: %s %s node %s: done (%s)", action, ring_tier_name(op->tier),
                 op->job.node, op->note[0] ? op->note : op->reason);
    else
        log_warn("elasticity: %s %s node %s: failed: %s", action, ring_tier_name(op->tier),
                 op->job.node[0] ? op->job.node : "(none)", failure ? failure : "");
    memset(op, 0, sizeof(*op));
}

static mon_op *op_new(monitor *m, int kind, int tier, const char *reason,
                      const mon_elastic_inputs *in, uint64_t now)
{
    for (int i = 0; i < MON_MAX_OPS; i++) {
        mon_op *op = &m->el.ops[i];
        if (op->used)
            continue;
        memset(op, 0, sizeof(*op));
        op->used = 1;
        op->id = ++m->el.next_op_id;
        op->kind = kind;
        op->tier = tier;
        op->stage = OP_PROVISION;
        op->decided_ms = op->stage_ms = now;
        op->decided_wall_us = clock_wall_us();
        snprintf(op->reason, sizeof(op->reason), "%s", reason);
        op->in = *in;
        return op;
    }
    return NULL;
}

static void send_depart(monitor *m, mon_op *op, uint64_t now)
{
    Trellis__Envelope env;
    Trellis__Command cmd;
    trellis__envelope__init(&env);
    trellis__command__init(&cmd);
    cmd.code = TRELLIS__COMMAND_CODE__CMD_DEPART;
    cmd.node_id = op->job.node;
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    depart_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->m = m;
    c->op_id = op->id;
    op->depart_tries++;
    op->depart_sent_ms = now;
    if (peer_send(m->peers, op->admin_url, &env, MON_RPC_TIMEOUT_MS, m->rs.epoch, 0, depart_done,
                  c) == TRELLIS_OK)
        op->depart_inflight = 1;
    else
        free(c);
}

/* The drain of a removal is over: left (dead = 0) or marked DEAD. */
static void op_drained(monitor *m, mon_op *op, int dead, const char *note, uint64_t now)
{
    if (note)
        snprintf(op->note, sizeof(op->note), "%s", note);
    op->stage = OP_FINISH;
    op->stage_ms = now;
    mon_prov_drained(m->prov, &op->job, dead);
}

/* Where a draining node is: 1 left, 2 dead, 0 still draining. */
static int drain_state(monitor *m, mon_op *op)
{
    mon_node *n = mon_view_find(&m->view, op->job.node);
    int state = n ? n->state : 0;
    if (state == NODE_LEFT)
        return 1;
    if (state == NODE_DEAD)
        return 2;
    int alive = mon_prov_node_alive(m->prov, op->job.node);
    if (alive == 0)
        return 1; /* our process exited: it announced LEFT first, or died (then DEAD follows) */
    return 0;
}

static void op_step(monitor *m, mon_op *op, uint64_t now)
{
    mon_job *job = &op->job;
    switch (op->stage) {
    case OP_PROVISION:
        mon_prov_poll(m->prov, job, now);
        if (job->status == MON_JOB_FAILED) {
            op_finish(m, op, 0, job->error);
        } else if (op->kind == MON_ADD && job->status == MON_JOB_OK) {
            if (mon_prov_node_alive(m->prov, job->node) >= 0) {
                op->stage = OP_JOINING; /* a local node: see it serve */
                op->stage_ms = now;
            } else {
                op_finish(m, op, 1, NULL);
            }
        } else if (op->kind == MON_REMOVE && job->status == MON_JOB_NEED_DRAIN) {
            mon_node *n = mon_view_find(&m->view, job->node);
            if (!n || n->state == 0 || n->state == NODE_LEFT) {
                op_drained(m, op, 0, "not serving: nothing to drain", now);
            } else if (n->state == NODE_DEAD) {
                op_drained(m, op, 1, "node was DEAD: nothing to drain", now);
            } else if (!n->admin_url[0]) {
                op_finish(m, op, 0, "the node has no control endpoint");
            } else {
                snprintf(op->admin_url, sizeof(op->admin_url), "%s", n->admin_url);
                op->stage = OP_DEPART;
                op->stage_ms = now;
                log_info("elasticity: draining %s node %s (%s)", ring_tier_name(op->tier),
                         job->node, op->reason);
                send_depart(m, op, now);
            }
        }
        break;
    case OP_JOINING: {
        mon_node *n = mon_view_find(&m->view, job->node);
        uint64_t wait = (uint64_t)m->cfg.kvs.join_timeout_ms + MON_JOIN_GRACE_MS;
        if (n && n->state == NODE_ACTIVE) {
            snprintf(op->note, sizeof(op->note), "ACTIVE after %llu ms",
                     (unsigned long long)(now - op->decided_ms));
            op_finish(m, op, 1, NULL);
        } else if (mon_prov_node_alive(m->prov, job->node) == 0) {
            op_finish(m, op, 0, "the new node exited before it served");
        } else if (now - op->stage_ms > wait) {
            char why[96];
            snprintf(why, sizeof(why), "the new node was not ACTIVE after %llu ms",
                     (unsigned long long)wait);
            op_finish(m, op, 0, why);
        }
        break;
    }
    case OP_DEPART:
    case OP_DRAINING: {
        int ds = drain_state(m, op);
        if (ds == 1) {
            op_drained(m, op, 0, NULL, now);
            break;
        }
        if (ds == 2) {
            log_warn("elasticity: node %s died during its drain", job->node);
            op_drained(m, op, 1, "node died during its drain (DEAD)", now);
            break;
        }
        uint64_t limit = 2 * (uint64_t)m->cfg.kvs.drain_timeout_ms + 10000;
        if (now - op->stage_ms > limit) {
            char why[128];
            snprintf(why, sizeof(why), "drain not complete after %llu ms; node left in place",
                     (unsigned long long)limit);
            op_finish(m, op, 0, why);
            break;
        }
        /* Unanswered: the node may be gone; ask again, then wait for DEAD. */
        if (op->stage == OP_DEPART && !op->depart_inflight && op->depart_tries < MON_DEPART_TRIES &&
            now - op->depart_sent_ms >= m->period_ms)
            send_depart(m, op, now);
        break;
    }
    case OP_FINISH:
        mon_prov_poll(m->prov, job, now);
        if (job->status == MON_JOB_OK) {
            if (job->dead)
                op_finish(m, op, 0, "node died during its drain; removed");
            else
                op_finish(m, op, 1, NULL);
        } else if (job->status == MON_JOB_FAILED) {
            op_finish(m, op, 0, job->error);
        }
        break;
    default:
        break;
    }
}

void mon_elasticity_advance(monitor *m, uint64_t now)
{
    for (int i = 0; i < MON_MAX_OPS; i++)
        if (m->el.ops[i].used)
            op_step(m, &m->el.ops[i], now);
}

void mon_elasticity_run(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99)
{
    for (int t = RING_TIER_MEMORY; t <= RING_TIER_DISK; t++) {
        const mon_tier *agg = &tiers[t - 1];
        /* Clients read from the memory tier first: their latency is its. */
        int client_tier = tiers[0].active > 0 ? RING_TIER_MEMORY : RING_TIER_DISK;
        char reason[MON_REASON_MAX];
        mon_elastic_inputs in;
        int d =
            mon_elastic_decide(&m->el.cfg[t], &m->el.st[t], agg, t == client_tier ? client_p99 : 0,
                               ops_on_tier(m, t), now, reason, sizeof(reason), &in);
        m->rec.cur.elastic_grace += in.held == MON_HELD_GRACE;
        m->rec.cur.elastic_changing += in.held == MON_HELD_CHANGING;
        m->rec.cur.elastic_at_max += in.held == MON_HELD_AT_MAX;
        if (d == MON_HOLD) {
            /* Nothing changes: the summary line counts it, period by period. */
            log_warn("elasticity: %s tier: %s", ring_tier_name(t), reason);
            continue;
        }
        if (d != MON_ADD && d != MON_REMOVE)
            continue;
        mon_op *op = op_new(m, d, t, reason, &in, now);
        if (!op) {
            log_warn("elasticity: too many operations in progress");
            continue;
        }
        log_info("elasticity: %s a %s node: %s", d == MON_ADD ? "adding" : "removing",
                 ring_tier_name(t), reason);
        if (d == MON_ADD)
            mon_prov_add(m->prov, t, &op->job);
        else
            mon_prov_remove(m->prov, t, m->rs.ring, &op->job);
        op_step(m, op, now);
    }
}

static void depart_done(void *arg, int status, const Trellis__Envelope *reply)
{
    depart_ctx *c = arg;
    monitor *m = c->m;
    const char *text;
    mon_op *op = m->closing ? NULL : op_find(m, c->op_id);
    status = mon_reply_status(status, reply, &text);
    if (op) {
        op->depart_inflight = 0;
        int ok = mon_command_ok(status, reply);
        if (ok && op->stage == OP_DEPART) {
            op->stage = OP_DRAINING;
            op->depart_acked = 1;
        } else if (!ok) {
            log_warn("elasticity: %s did not take CMD_DEPART: %s", op->job.node,
                     text ? text : trellis_strerror(status));
        }
    }
    free(c);
}

int mon_elasticity_ops(const monitor *m)
{
    int n = 0;
    for (int i = 0; i < MON_MAX_OPS; i++)
        n += m->el.ops[i].used;
    return n;
}

void mon_elasticity_abort(monitor *m)
{
    for (int i = 0; i < MON_MAX_OPS; i++) {
        mon_op *op = &m->el.ops[i];
        if (!op->used)
            continue;
        if (m->prov)
            mon_prov_abort(m->prov, &op->job);
        if (m->dlog)
            op_finish(m, op, 0, "aborted: the monitor stopped");
    }
}
