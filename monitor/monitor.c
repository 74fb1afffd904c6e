/*
 * monitor.c - trellis-monitor.
 *
 * One thread runs one loop: poll the listening socket (storage nodes and
 * clients push StatsReport, the CLI and tests ask StatsRequest), the replies
 * to the monitor's own requests (a peer_pool: ring snapshots and commands to
 * routers and nodes), and a signalfd (SIGTERM, SIGINT, SIGCHLD). Every
 * period it fetches the ring from a router, and when the snapshot (or its
 * failure) arrives it aggregates the latest reports, runs the policies
 * (mon_policy.c) and pushes the aggregates to the routers. Adding and
 * removing nodes take seconds (a drain, a kubectl run): they are operations
 * advanced a step per loop turn, never waited for, so statistics keep
 * flowing while they run.
 */
#include "monitor/monitor.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/metrics.h"
#include "monitor/mon_log.h"
#include "monitor/mon_policy.h"
#include "monitor/mon_prov.h"
#include "monitor/mon_stats.h"
#include "base/net.h"
#include "server/peer.h"
#include "placement/ring.h"
#include "placement/ring_wire.h"
#include "base/wire.h"

#define MON_MAX_FDS        64
#define MON_DRAIN          512   /* messages handled per loop turn */
#define MON_RPC_TIMEOUT_MS 1000  /* a router or node must answer within this */
#define MON_DEPART_TRIES   5     /* CMD_DEPART sends before waiting for DEAD only */
#define MON_MAX_OPS        16    /* node additions and removals in progress */
#define MON_RING_STALE     3     /* periods without a ring before policies pause */
#define MON_JOIN_GRACE_MS  30000 /* beyond kvs.join_timeout_ms, for a new node to be ACTIVE */
#define MON_MAX_CHANGES    64    /* hot-key changes per period */
#define MON_MAX_PROMOTES   256   /* promotions per period (monitor.promote_max is lower) */
#define MON_SUMMARY_MAX_MS 10000 /* time one summary line may cover */
#define MON_MAX_COUNTERS   48    /* (policy, action, result) triples counted for /metrics */

enum { OP_PROVISION = 1, OP_JOINING, OP_DEPART, OP_DRAINING, OP_FINISH };

typedef struct mon_op {
    int used;
    uint64_t id;
    int kind; /* MON_ADD, MON_REMOVE */
    int tier;
    int stage;
    mon_job job;
    uint64_t decided_ms, decided_wall_us, stage_ms;
    int depart_tries, depart_inflight, depart_acked;
    uint64_t depart_sent_ms;
    char admin_url[RING_MAX_URL + 1];
    char reason[MON_REASON_MAX];
    mon_elastic_inputs in;
    char note[160];
} mon_op;

/* A CMD_SET_OVERRIDES sent to every router: logged when all answered. */
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

/* A command to one node (CMD_DEPART, CMD_DEMOTE). */
typedef struct node_ctx {
    monitor *m;
    uint64_t op_id;
    char node[RING_MAX_NODE_ID + 1];
} node_ctx;

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

/* What the policies left alone over one or more periods in a row in which
 * the same kinds of things were left alone: one summary line in the
 * decision log for all of them (docs/monitor.md). */
typedef struct mon_summary {
    uint64_t first_ms, last_ms, first_wall_us;
    int periods;
    mon_hot_skips hot;
    mon_promote_skips promote;
    int demote_sweeps; /* sweeps sent (what they moved is logged as it is reported) */
    unsigned shape;    /* summary_kinds of the periods it covers */
    int elastic_grace, elastic_changing, elastic_at_max;
} mon_summary;

typedef struct counter {
    const char *policy, *action;
    int ok;
    uint64_t n;
} counter;

/* What /metrics shows, copied under metrics_lock every period. */
typedef struct mon_snapshot {
    mon_tier tiers[RING_TIERS];
    int nodes[RING_TIERS + 1][NODE_LEFT + 1];
    uint64_t client_p99_us;
    size_t hot_in_force;
    uint64_t reports, rejected, periods, ring_epoch;
    int ops, own_nodes;
    counter counters[MON_MAX_COUNTERS];
    int ncounters;
    struct snap_node {
        char id[RING_MAX_NODE_ID + 1];
        int tier, state;
        double busy, ops_per_sec, cpu_used, cpu_allotted, throttled;
        uint64_t p99_us, bytes, keys;
    } * per_node;
    size_t nper_node;
} mon_snapshot;

struct monitor {
    config cfg;
    char url[CONFIG_STR_MAX + 32];      /* where we listen */
    char self_url[CONFIG_STR_MAX + 32]; /* what nodes are told */
    nng_socket rep;
    int rep_open, rep_fd;
    int sigfd;
    net_tls *tls;
    wire_limits lim;
    wire_arena *arena;
    peer_pool *peers;
    metrics_server *metrics;
    pthread_mutex_t metrics_lock;
    mon_snapshot snap;
    mon_log *dlog;
    mbuf line;
    mon_prov *prov;
    int stop;

    uint64_t start_ms, period_ms, next_period_ms, periods;
    /* the ring */
    ring *ring;
    uint64_t ring_epoch, ring_ms; /* ring_ms: when the last snapshot arrived (0: never) */
    int ring_inflight, router_idx, eval_due;
    uint64_t ring_asked_ms;
    int ring_warned;
    mon_view view;

    /* policies */
    mon_elastic_cfg ecfg[RING_TIERS + 1];
    mon_elastic_state est[RING_TIERS + 1];
    mon_hot_cfg hcfg;
    mon_hot_state hst;
    mon_tiering_cfg tcfg;
    mon_tiering_state tst;
    mon_op ops[MON_MAX_OPS];
    uint64_t next_op_id;
    counter counters[MON_MAX_COUNTERS];
    int ncounters;
    int push_inflight[CONFIG_LIST_MAX];
    int closing;          /* requests failing at close only free their contexts */
    mon_summary sum_open; /* the summary being gathered (periods 0: none) */
    mon_summary sum_cur;  /* this evaluation's */
};

/* Completions of the monitor's requests (see "replies to our requests"). */
static void ring_done(void *arg, int status, const Trellis__Envelope *reply);
static void push_done(void *arg, int status, const Trellis__Envelope *reply);
static void overrides_req_done(void *arg, int status, const Trellis__Envelope *reply);
static void depart_done(void *arg, int status, const Trellis__Envelope *reply);
static void demote_done(void *arg, int status, const Trellis__Envelope *reply);
static void promote_done(void *arg, int status, const Trellis__Envelope *reply);
static void summary_flush(monitor *m);

static uint64_t since_start(const monitor *m, uint64_t ms)
{
    return ms >= m->start_ms ? ms - m->start_ms : 0;
}

static void count_decision(monitor *m, const char *policy, const char *action, int ok)
{
    for (int i = 0; i < m->ncounters; i++)
        if (m->counters[i].ok == ok && strcmp(m->counters[i].policy, policy) == 0 &&
            strcmp(m->counters[i].action, action) == 0) {
            m->counters[i].n++;
            return;
        }
    if (m->ncounters < MON_MAX_COUNTERS)
        m->counters[m->ncounters++] = (counter){policy, action, ok, 1};
}

/* Ends a decision line with its result and writes it. */
static void decision_end(monitor *m, const char *policy, const char *action, int ok,
                         const char *failure)
{
    mon_json_u64(&m->line, "done_ms", since_start(m, clock_mono_ms()));
    if (ok) {
        mon_json_str(&m->line, "result", "ok");
    } else {
        char r[320];
        snprintf(r, sizeof(r), "failed: %s", failure ? failure : "unknown");
        mon_json_str(&m->line, "result", r);
    }
    mon_log_write(m->dlog, &m->line);
    count_decision(m, policy, action, ok);
}

/* ---- rings -------------------------------------------------------------------------- */

static int mon_ring_from_snapshot(const Trellis__RingSnapshot *rs, ring **out)
{
    size_t nn = rs->n_nodes;
    if (nn > RING_MAX_NODES || rs->n_overrides > RING_MAX_OVERRIDES)
        return TRELLIS_TOO_LARGE;
    ring_node *nodes = calloc(nn ? nn : 1, sizeof(*nodes));
    ring_override *ov = calloc(rs->n_overrides ? rs->n_overrides : 1, sizeof(*ov));
    if (!nodes || !ov) {
        free(nodes);
        free(ov);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0;
    for (size_t i = 0; i < nn; i++) {
        if (ring_node_from_info(rs->nodes[i], &nodes[k]) == TRELLIS_OK)
            k++;
    }
    size_t no = 0;
    for (size_t i = 0; i < rs->n_overrides; i++) {
        const Trellis__KeyOverride *ko = rs->overrides[i];
        if (ko->key.len == 0 || ko->key.len > RING_MAX_OVERRIDE_KEY)
            continue;
        ov[no++] = (ring_override){ko->key.data, ko->key.len, ko->memory, ko->disk, ko->version};
    }
    ring_params p = {rs->vnodes ? rs->vnodes : 1, rs->memory_replicas, rs->disk_replicas};
    int rc = ring_build(nodes, k, ov, no, &p, rs->epoch, out);
    free(nodes);
    free(ov);
    return rc;
}

static void on_ring(monitor *m, const Trellis__RingSnapshot *rs, uint64_t now)
{
    m->ring_ms = now;
    if (rs->unchanged && m->ring)
        return;
    ring *r;
    int rc = mon_ring_from_snapshot(rs, &r);
    if (rc != TRELLIS_OK) {
        log_warn("ring snapshot at epoch %llu rejected: %s", (unsigned long long)rs->epoch,
                 trellis_strerror(rc));
        return;
    }
    ring_free(m->ring);
    m->ring = r;
    if (m->ring_epoch != rs->epoch)
        log_debug("ring epoch %llu: %zu nodes", (unsigned long long)rs->epoch, ring_node_count(r));
    m->ring_epoch = rs->epoch;
    mon_view_set_ring(&m->view, r, now);
    /* Overrides someone else set (or an earlier monitor): remember them so
     * that they can cool, and never reuse their versions. */
    for (size_t i = 0; i < ring_override_count(r); i++) {
        const ring_override *o = ring_override_at(r, i);
        if (o->klen < MON_HOT_KEY_MAX)
            mon_hot_adopt(&m->hcfg, &m->hst, o->key, o->klen, o->memory, o->disk, o->version);
    }
}

static void ask_ring(monitor *m, uint64_t now)
{
    int n = m->cfg.cluster.routers.n;
    if (n == 0 || m->ring_inflight)
        return;
    Trellis__Envelope env;
    Trellis__RingRequest rq;
    trellis__envelope__init(&env);
    trellis__ring_request__init(&rq);
    rq.known_epoch = m->ring ? m->ring_epoch : 0;
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    const char *url = m->cfg.cluster.routers.v[m->router_idx % n];
    if (peer_send(m->peers, url, &env, MON_RPC_TIMEOUT_MS, m->ring_epoch, 0, ring_done, m) ==
        TRELLIS_OK) {
        m->ring_inflight = 1;
        m->ring_asked_ms = now;
    } else {
        m->router_idx++;
        m->eval_due = 1;
    }
}

/* ---- statistics served ----------------------------------------------------------------- */

typedef struct stats_out {
    Trellis__StatsReply rep;
    Trellis__TierStats ts[RING_TIERS];
    Trellis__TierStats *pts[RING_TIERS];
} stats_out;

static void build_stats(monitor *m, uint64_t now, stats_out *o)
{
    trellis__stats_reply__init(&o->rep);
    for (int t = 0; t < RING_TIERS; t++) {
        mon_tier agg;
        mon_view_tier(&m->view, t + 1, now, &agg);
        Trellis__TierStats *ts = &o->ts[t];
        trellis__tier_stats__init(ts);
        ts->tier = (Trellis__Tier)(t + 1);
        ts->nodes = (uint32_t)(agg.active + agg.leaving);
        ts->keys = agg.keys;
        ts->bytes = agg.bytes;
        ts->capacity = agg.capacity;
        ts->ops_per_sec = agg.ops_per_sec;
        ts->busy = agg.busy_avg;
        ts->p99_us = agg.p99_us;
        o->pts[t] = ts;
    }
    o->rep.epoch = m->ring_epoch;
    o->rep.tiers = o->pts;
    o->rep.n_tiers = RING_TIERS;
    o->rep.hot_keys = (uint32_t)mon_hot_in_force(&m->hst);
    o->rep.client_p99_us = mon_view_client_p99(&m->view, now);
}

/* Routers answer the CLI's STATS with these figures merged into their own. */
static void push_stats(monitor *m, uint64_t now)
{
    stats_out o;
    build_stats(m, now, &o);
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REPLY;
    env.stats_reply = &o.rep;
    for (int i = 0; i < m->cfg.cluster.routers.n && i < CONFIG_LIST_MAX; i++) {
        if (m->push_inflight[i])
            continue;
        if (peer_send(m->peers, m->cfg.cluster.routers.v[i], &env, MON_RPC_TIMEOUT_MS,
                      m->ring_epoch, 0, push_done, &m->push_inflight[i]) == TRELLIS_OK)
            m->push_inflight[i] = 1;
    }
}

/* ---- the listening socket --------------------------------------------------------------- */

static void mon_send(monitor *m, nng_msg *req, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    env->ring_epoch = m->ring_epoch;
    nng_msg *out;
    if (nng_msg_alloc(&out, 0) != 0) {
        nng_msg_free(req);
        return;
    }
    /* Raw rep: the reply travels back along the request's backtrace. */
    if (nng_msg_header_append(out, nng_msg_header(req), nng_msg_header_len(req)) != 0 ||
        wire_append(out, env) != TRELLIS_OK) {
        nng_msg_free(out);
        nng_msg_free(req);
        return;
    }
    nng_msg_free(req);
    if (nng_sendmsg(m->rep, out, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(out);
}

static void mon_reply_status(monitor *m, nng_msg *req, int status, const char *text)
{
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    if (status == TRELLIS_OK) {
        Trellis__CommandReply cr;
        trellis__command_reply__init(&cr);
        env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
        env.command_reply = &cr;
        mon_send(m, req, &env);
        return;
    }
    Trellis__ErrorReply er;
    trellis__error_reply__init(&er);
    er.status = (Trellis__Status)status;
    er.message = (char *)text;
    env.body_case = TRELLIS__ENVELOPE__BODY_ERROR;
    env.error = &er;
    mon_send(m, req, &env);
}

static void mon_handle(monitor *m, nng_msg *msg, uint64_t now)
{
    Trellis__Envelope *env = NULL;
    int rc = wire_decode(m->arena, nng_msg_body(msg), nng_msg_len(msg), &m->lim, &env);
    if (rc != TRELLIS_OK) {
        mon_reply_status(m, msg, rc, "undecodable message or unsupported version");
        return;
    }
    if (!wire_auth_ok(env, m->cfg.auth.token)) {
        mon_reply_status(m, msg, TRELLIS_UNAUTHORIZED, "missing or wrong token");
        return;
    }
    switch (env->body_case) {
    case TRELLIS__ENVELOPE__BODY_STATS:
        rc = mon_view_report(&m->view, env->stats, now);
        mon_reply_status(m, msg, rc, trellis_strerror(rc));
        break;
    case TRELLIS__ENVELOPE__BODY_STATS_REQUEST: {
        stats_out o;
        build_stats(m, now, &o);
        Trellis__Envelope out;
        trellis__envelope__init(&out);
        out.body_case = TRELLIS__ENVELOPE__BODY_STATS_REPLY;
        out.stats_reply = &o.rep;
        mon_send(m, msg, &out);
        break;
    }
    default:
        mon_reply_status(m, msg, TRELLIS_MALFORMED, "the monitor serves stats and stats_request");
        break;
    }
}

/* ---- operations: adding and removing nodes ------------------------------------------------ */

static mon_op *op_find(monitor *m, uint64_t id)
{
    for (int i = 0; i < MON_MAX_OPS; i++)
        if (m->ops[i].used && m->ops[i].id == id)
            return &m->ops[i];
    return NULL;
}

static int ops_on_tier(const monitor *m, int tier)
{
    int n = 0;
    for (int i = 0; i < MON_MAX_OPS; i++)
        n += m->ops[i].used && m->ops[i].tier == tier;
    return n;
}

static void op_log_inputs(monitor *m, const mon_op *op)
{
    const mon_elastic_cfg *c = &m->ecfg[op->tier];
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
    mon_log_begin(&m->line, op->decided_wall_us, since_start(m, op->decided_ms), "elasticity",
                  action);
    op_log_inputs(m, op);
    if (op->note[0])
        mon_json_str(&m->line, "note", op->note);
    decision_end(m, "elasticity", action, ok, failure);
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
        mon_op *op = &m->ops[i];
        if (op->used)
            continue;
        memset(op, 0, sizeof(*op));
        op->used = 1;
        op->id = ++m->next_op_id;
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
    node_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->m = m;
    c->op_id = op->id;
    op->depart_tries++;
    op->depart_sent_ms = now;
    if (peer_send(m->peers, op->admin_url, &env, MON_RPC_TIMEOUT_MS, m->ring_epoch, 0, depart_done,
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

static void ops_advance(monitor *m, uint64_t now)
{
    for (int i = 0; i < MON_MAX_OPS; i++)
        if (m->ops[i].used)
            op_step(m, &m->ops[i], now);
}

/* ---- policies ------------------------------------------------------------------------------ */

static void run_elasticity(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99)
{
    for (int t = RING_TIER_MEMORY; t <= RING_TIER_DISK; t++) {
        const mon_tier *agg = &tiers[t - 1];
        /* Clients read from the memory tier first: their latency is its. */
        int client_tier = tiers[0].active > 0 ? RING_TIER_MEMORY : RING_TIER_DISK;
        char reason[MON_REASON_MAX];
        mon_elastic_inputs in;
        int d = mon_elastic_decide(&m->ecfg[t], &m->est[t], agg, t == client_tier ? client_p99 : 0,
                                   ops_on_tier(m, t), now, reason, sizeof(reason), &in);
        m->sum_cur.elastic_grace += in.held == MON_HELD_GRACE;
        m->sum_cur.elastic_changing += in.held == MON_HELD_CHANGING;
        m->sum_cur.elastic_at_max += in.held == MON_HELD_AT_MAX;
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
            mon_prov_remove(m->prov, t, m->ring, &op->job);
        op_step(m, op, now);
    }
}

static void overrides_done(monitor *m, overrides_ctx *c, int status, const char *text);

static void send_overrides(monitor *m, const mon_hot_change *ch, size_t n, const mon_key_stats *ks,
                           uint64_t now)
{
    int nr = m->cfg.cluster.routers.n;
    overrides_ctx *c = calloc(1, sizeof(*c) + n * sizeof(c->changes[0]));
    Trellis__KeyOverride *ko = calloc(n, sizeof(*ko));
    Trellis__KeyOverride **pko = calloc(n, sizeof(*pko));
    if (!c || !ko || !pko) {
        free(c);
        free(ko);
        free(pko);
        return;
    }
    c->m = m;
    c->decided_ms = now;
    c->decided_wall_us = clock_wall_us();
    c->nkeys = ks->nkeys;
    c->total_rate = ks->total_rate;
    c->n = n;
    memcpy(c->changes, ch, n * sizeof(*ch));
    for (size_t i = 0; i < n; i++) {
        trellis__key_override__init(&ko[i]);
        ko[i].key.data = c->changes[i].key;
        ko[i].key.len = c->changes[i].klen;
        ko[i].memory = c->changes[i].memory;
        ko[i].disk = c->changes[i].disk;
        ko[i].version = c->changes[i].version;
        pko[i] = &ko[i];
        log_info("hot keys: %s replication of a key (%.0f accesses/s, threshold %.0f): "
                 "memory %u, disk %u",
                 ch[i].raise ? "raising" : "lowering", ch[i].rate, ch[i].threshold, ch[i].memory,
                 ch[i].disk);
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
    for (int i = 0; i < nr; i++)
        if (peer_send(m->peers, m->cfg.cluster.routers.v[i], &env, MON_RPC_TIMEOUT_MS,
                      m->ring_epoch, 0, overrides_req_done, c) == TRELLIS_OK)
            c->pending++;
    free(ko);
    free(pko);
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
        mon_log_begin(&m->line, c->decided_wall_us, since_start(m, c->decided_ms), "hot_keys",
                      action);
        mon_json_bytes(&m->line, "key", ch->key, ch->klen);
        mon_json_open(&m->line, "inputs");
        mon_json_dbl(&m->line, "rate", ch->rate);
        mon_json_dbl(&m->line, "threshold", ch->threshold);
        mon_json_dbl(&m->line, "mean", ch->mean);
        mon_json_dbl(&m->line, "stddev", ch->stddev);
        mon_json_dbl(&m->line, "k", m->hcfg.k);
        mon_json_dbl(&m->line, "min_rate", m->hcfg.min_rate);
        mon_json_dbl(&m->line, "min_share", m->hcfg.min_share);
        mon_json_dbl(&m->line, "cool_ratio", m->hcfg.cool_ratio);
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
        decision_end(m, "hot_keys", action, c->ok > 0, why);
    }
    free(c);
}

/* Returns how many overrides it sent (all in one command to each router:
 * one ring epoch). */
static size_t run_hot_keys(monitor *m, uint64_t now, const mon_tier *tiers)
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
        n = mon_hot_decide(&m->hcfg, &m->hst, &ks, tiers[0].active, tiers[1].active, now,
                           clock_wall_us() / 1000, ch, MON_MAX_CHANGES, &sk);
        m->sum_cur.hot.unplaceable += sk.unplaceable;
        m->sum_cur.hot.below_share += sk.below_share;
        m->sum_cur.hot.held += sk.held;
        m->sum_cur.hot.grace += sk.grace;
        m->sum_cur.hot.bounded += sk.bounded;
        if (n)
            send_overrides(m, ch, n, &ks, now);
        free(ch);
    }
    mon_key_stats_free(&ks);
    return n;
}

/* Overrides we sent that the routers' ring does not show some periods
 * later (a lost message, a restarted router) are sent again. */
static void reconcile_overrides(monitor *m, uint64_t now)
{
    if (!m->ring || m->periods % 5 != 0)
        return;
    mon_hot_change ch[MON_MAX_CHANGES];
    size_t n = 0;
    for (size_t i = 0; i < m->hst.n && n < MON_MAX_CHANGES; i++) {
        const mon_hot_entry *e = &m->hst.e[i];
        if (!e->changed_ms || now - e->changed_ms < 3 * m->period_ms)
            continue;
        int seen = 0;
        for (size_t j = 0; j < ring_override_count(m->ring) && !seen; j++) {
            const ring_override *o = ring_override_at(m->ring, j);
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
    Trellis__KeyOverride ko[MON_MAX_CHANGES], *pko[MON_MAX_CHANGES];
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
        peer_send(m->peers, m->cfg.cluster.routers.v[i], &env, MON_RPC_TIMEOUT_MS, m->ring_epoch, 0,
                  NULL, NULL);
}

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
        uint64_t idle = m->tcfg.demote_idle_ms, max_keys = 0;
        if (trigger == MON_DEMOTE_CAPACITY) {
            if (!mon_node_fresh(&m->view, n, now))
                continue;
            idle = mon_tiering_pressure_idle_ms(&m->tcfg);
            max_keys = mon_tiering_pressure_keys(&m->tcfg, n->keys, n->bytes, n->capacity);
            if (!max_keys)
                continue; /* this node is not the one that is full */
            log_info("tiering: %s is %.0f%% full: moving up to %llu keys idle for %llu ms to the "
                     "disk tier",
                     n->id, n->capacity ? 100.0 * (double)n->bytes / (double)n->capacity : 0.0,
                     (unsigned long long)max_keys, (unsigned long long)idle);
        }
        node_ctx *c = calloc(1, sizeof(*c));
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
        if (peer_send(m->peers, n->admin_url, &env, MON_RPC_TIMEOUT_MS, m->ring_epoch, 0,
                      demote_done, c) != TRELLIS_OK) {
            log_warn("tiering: cannot send a demotion sweep to %s", n->id);
            free(c);
            continue;
        }
        m->sum_cur.demote_sweeps++;
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
        mon_log_begin(&m->line, clock_wall_us(), since_start(m, now), "tiering", "demote");
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
        mon_json_dbl(&m->line, "capacity_high", m->tcfg.capacity_high);
        mon_json_dbl(&m->line, "capacity_low", m->tcfg.capacity_low);
        mon_json_close(&m->line);
        decision_end(m, "tiering", "demote", 1, NULL);
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
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    log_info("tiering: promoting %zu keys read often on the disk tier (through %s)", c->n, c->node);
    if (peer_send(m->peers, c->url, &env, MON_RPC_TIMEOUT_MS, m->ring_epoch, 0, promote_done, c) !=
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
    size_t n =
        mon_tiering_promote(&m->tcfg, &m->tst, &ks, memory_nodes, now, idx, MON_MAX_PROMOTES, &sk);
    m->sum_cur.promote.recent += sk.recent;
    m->sum_cur.promote.bounded += sk.bounded;
    promote_ctx **groups = n ? calloc(n, sizeof(*groups)) : NULL;
    size_t ng = 0;
    for (size_t i = 0; groups && i < n; i++) {
        const mon_key_rate *k = &ks.keys[idx[i]];
        int rep[RING_MAX_REPLICAS];
        size_t nr = ring_replicas(m->ring, RING_CURRENT, RING_TIER_MEMORY, k->key, k->klen, rep,
                                  RING_MAX_REPLICAS);
        const ring_node *rn = nr ? ring_node_at(m->ring, (size_t)rep[0]) : NULL;
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

static void run_tiering(monitor *m, uint64_t now, const mon_tier *tiers)
{
    const mon_tier *mem = &tiers[0], *disk = &tiers[1];
    int d = mon_tiering_demote(&m->tcfg, &m->tst, mem, disk, now);
    if (d != MON_DEMOTE_NONE)
        demote_sweep(m, d, now);
    log_demotions(m, now);
    if (m->ring)
        run_promotions(m, now, mem->active);
}

/* ---- the summary of what was left alone ------------------------------------------------------ */

/* A bit for each policy that left something alone: consecutive periods
 * in which the same policies did share one line (whatever the counts).
 * Routine demotion sweeps are counted but give a line no shape of their
 * own. */
static unsigned summary_kinds(const mon_summary *s)
{
    unsigned hot =
        s->hot.unplaceable || s->hot.below_share || s->hot.held || s->hot.grace || s->hot.bounded;
    unsigned tier = s->promote.recent || s->promote.bounded;
    unsigned elastic = s->elastic_grace || s->elastic_changing || s->elastic_at_max;
    return hot | tier << 1 | elastic << 2;
}

static void summary_add(mon_summary *to, const mon_summary *p)
{
    to->hot.unplaceable += p->hot.unplaceable;
    to->hot.below_share += p->hot.below_share;
    to->hot.held += p->hot.held;
    to->hot.grace += p->hot.grace;
    to->hot.bounded += p->hot.bounded;
    to->promote.recent += p->promote.recent;
    to->promote.bounded += p->promote.bounded;
    to->demote_sweeps += p->demote_sweeps;
    to->elastic_grace += p->elastic_grace;
    to->elastic_changing += p->elastic_changing;
    to->elastic_at_max += p->elastic_at_max;
}

static void sum_field(mbuf *b, const char *name, int v)
{
    if (v)
        mon_json_int(b, name, v);
}

/* Writes the summary being gathered, if any, and starts none. */
static void summary_flush(monitor *m)
{
    mon_summary *s = &m->sum_open;
    if (!s->periods)
        return;
    mon_log_begin(&m->line, s->first_wall_us, since_start(m, s->first_ms), "summary", "skipped");
    mon_json_int(&m->line, "periods", s->periods);
    mon_json_u64(&m->line, "until_ms", since_start(m, s->last_ms));
    mon_json_open(&m->line, "skipped");
    if (s->hot.unplaceable || s->hot.below_share || s->hot.held || s->hot.grace || s->hot.bounded) {
        mon_json_open(&m->line, "hot_keys");
        sum_field(&m->line, "unplaceable", s->hot.unplaceable);
        sum_field(&m->line, "below_share", s->hot.below_share);
        sum_field(&m->line, "held", s->hot.held);
        sum_field(&m->line, "grace", s->hot.grace);
        sum_field(&m->line, "bounded", s->hot.bounded);
        mon_json_close(&m->line);
    }
    if (s->promote.recent || s->promote.bounded || s->demote_sweeps) {
        mon_json_open(&m->line, "tiering");
        sum_field(&m->line, "promote_recent", s->promote.recent);
        sum_field(&m->line, "promote_bounded", s->promote.bounded);
        sum_field(&m->line, "demote_sweeps", s->demote_sweeps);
        mon_json_close(&m->line);
    }
    if (s->elastic_grace || s->elastic_changing || s->elastic_at_max) {
        mon_json_open(&m->line, "elasticity");
        sum_field(&m->line, "grace", s->elastic_grace);
        sum_field(&m->line, "changing", s->elastic_changing);
        sum_field(&m->line, "at_max", s->elastic_at_max);
        mon_json_close(&m->line);
    }
    mon_json_close(&m->line);
    mon_log_write(m->dlog, &m->line);
    memset(s, 0, sizeof(*s));
}

/* Folds this evaluation's skips into the summary being gathered, or
 * writes that one and starts another when the kinds differ. */
static void summary_period(monitor *m, uint64_t now)
{
    mon_summary *cur = &m->sum_cur, *open = &m->sum_open;
    unsigned kinds = summary_kinds(cur);
    int sweeps_only = !kinds && cur->demote_sweeps;
    if (open->periods &&
        ((!sweeps_only && open->shape != kinds) || now - open->first_ms >= MON_SUMMARY_MAX_MS))
        summary_flush(m);
    if (kinds || sweeps_only) {
        if (!open->periods) {
            open->first_ms = now;
            open->first_wall_us = clock_wall_us();
            open->shape = kinds;
        }
        summary_add(open, cur);
        open->periods++;
        open->last_ms = now;
    }
    memset(cur, 0, sizeof(*cur));
}

static void snapshot_update(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99);

/* The period's work, once the ring snapshot is in (or failed). */
static void evaluate(monitor *m, uint64_t now)
{
    m->eval_due = 0;
    mon_tier tiers[RING_TIERS];
    for (int t = 0; t < RING_TIERS; t++)
        mon_view_tier(&m->view, t + 1, now, &tiers[t]);
    uint64_t client_p99 = mon_view_client_p99(&m->view, now);
    int ring_ok = m->ring && now - m->ring_ms <= MON_RING_STALE * m->period_ms;
    if (!ring_ok) {
        if (!m->ring_warned)
            log_warn("no ring snapshot from the routers for %d periods: policies paused",
                     MON_RING_STALE);
        m->ring_warned = 1;
    } else {
        m->ring_warned = 0;
        if (m->cfg.monitor.elasticity)
            run_elasticity(m, now, tiers, client_p99);
        /* A period's overrides go out together; the ones the routers miss
         * go again in a period without new ones. */
        if (m->cfg.monitor.hot_keys && run_hot_keys(m, now, tiers) == 0)
            reconcile_overrides(m, now);
        if (m->cfg.monitor.tiering)
            run_tiering(m, now, tiers);
        summary_period(m, now);
    }
    push_stats(m, now);
    snapshot_update(m, now, tiers, client_p99);
}

/* ---- replies to our requests ------------------------------------------------------------------
 */

/* Each request carries its own completion. While the monitor closes they
 * only free their contexts. An ErrorReply becomes its status and text. */
static int reply_status(int status, const Trellis__Envelope *reply, const char **text)
{
    *text = NULL;
    if (status == TRELLIS_OK && reply && reply->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
        *text = reply->error->message;
        return (int)reply->error->status ? (int)reply->error->status : TRELLIS_INTERNAL;
    }
    return status;
}

/* 1 for a CommandReply with status OK. */
static int command_ok(int status, const Trellis__Envelope *reply)
{
    return status == TRELLIS_OK && reply->body_case == TRELLIS__ENVELOPE__BODY_COMMAND_REPLY &&
           reply->command_reply->status == TRELLIS__STATUS__OK;
}

static void ring_done(void *arg, int status, const Trellis__Envelope *reply)
{
    monitor *m = arg;
    const char *text;
    if (m->closing)
        return;
    status = reply_status(status, reply, &text);
    m->ring_inflight = 0;
    if (status == TRELLIS_OK && reply->body_case == TRELLIS__ENVELOPE__BODY_RING)
        on_ring(m, reply->ring, clock_mono_ms());
    else
        m->router_idx++;
    m->eval_due = 1;
}

/* arg: the router's push_inflight flag. */
static void push_done(void *arg, int status, const Trellis__Envelope *reply)
{
    (void)status;
    (void)reply;
    *(int *)arg = 0;
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
    status = reply_status(status, reply, &text);
    int ok = command_ok(status, reply);
    overrides_done(m, c, ok ? TRELLIS_OK : status ? status : TRELLIS_INVALID, text);
}

static void depart_done(void *arg, int status, const Trellis__Envelope *reply)
{
    node_ctx *c = arg;
    monitor *m = c->m;
    const char *text;
    mon_op *op = m->closing ? NULL : op_find(m, c->op_id);
    status = reply_status(status, reply, &text);
    if (op) {
        op->depart_inflight = 0;
        int ok = command_ok(status, reply);
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

/* A demotion sweep's answer: only failures are worth a word. */
static void demote_done(void *arg, int status, const Trellis__Envelope *reply)
{
    node_ctx *c = arg;
    monitor *m = c->m;
    const char *text;
    if (!m->closing) {
        status = reply_status(status, reply, &text);
        if (!command_ok(status, reply)) {
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
        status = reply_status(status, reply, &text);
        const Trellis__KvReply *kr =
            status == TRELLIS_OK && reply && reply->body_case == TRELLIS__ENVELOPE__BODY_KV_REPLY
                ? reply->kv_reply
                : NULL;
        size_t ok = 0;
        for (size_t i = 0; kr && i < kr->n_results && i < c->n; i++)
            ok += kr->results[i]->status == TRELLIS__STATUS__OK;
        mon_log_begin(&m->line, c->decided_wall_us, since_start(m, c->decided_ms), "tiering",
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
        mon_json_u64(&m->line, "promote_reads", m->tcfg.promote_reads);
        mon_json_u64(&m->line, "promote_max", m->tcfg.promote_max);
        mon_json_close(&m->line);
        char why[200];
        if (!kr)
            snprintf(why, sizeof(why), "%s", text ? text : trellis_strerror(status));
        else
            snprintf(why, sizeof(why), "no key read through the memory replica");
        decision_end(m, "tiering", "promote", ok > 0, why);
    }
    free(c);
}

/* ---- metrics
 * ---------------------------------------------------------------------------------------- */

static void snapshot_update(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99)
{
    struct snap_node *pn = calloc(m->view.nnodes + 1, sizeof(*pn));
    size_t npn = 0;
    for (size_t i = 0; pn && i < m->view.nnodes; i++) {
        const mon_node *n = &m->view.nodes[i];
        if (!n->state)
            continue;
        struct snap_node *s = &pn[npn++];
        snprintf(s->id, sizeof(s->id), "%s", n->id);
        s->tier = n->tier;
        s->state = n->state;
        int fresh = mon_node_fresh(&m->view, n, now);
        s->busy = fresh ? n->busy : 0;
        s->ops_per_sec = fresh ? n->ops_per_sec : 0;
        s->cpu_used = fresh ? n->cpu_used : 0;
        s->cpu_allotted = n->cpu_allotted;
        s->throttled = fresh ? n->throttled : 0;
        s->p99_us = fresh ? n->p99_us : 0;
        s->bytes = n->bytes;
        s->keys = n->keys;
    }
    pthread_mutex_lock(&m->metrics_lock);
    mon_snapshot *s = &m->snap;
    memcpy(s->tiers, tiers, sizeof(s->tiers));
    memset(s->nodes, 0, sizeof(s->nodes));
    for (size_t i = 0; i < m->view.nnodes; i++) {
        const mon_node *n = &m->view.nodes[i];
        if (n->tier >= 1 && n->tier <= RING_TIERS && n->state >= 1 && n->state <= NODE_LEFT)
            s->nodes[n->tier][n->state]++;
    }
    s->client_p99_us = client_p99;
    s->hot_in_force = mon_hot_in_force(&m->hst);
    s->reports = m->view.reports;
    s->rejected = m->view.rejected;
    s->periods = m->periods;
    s->ring_epoch = m->ring_epoch;
    s->ops = 0;
    for (int i = 0; i < MON_MAX_OPS; i++)
        s->ops += m->ops[i].used;
    s->own_nodes = mon_prov_own_count(m->prov);
    memcpy(s->counters, m->counters, sizeof(s->counters));
    s->ncounters = m->ncounters;
    free(s->per_node);
    s->per_node = pn;
    s->nper_node = pn ? npn : 0;
    pthread_mutex_unlock(&m->metrics_lock);
}

static void render_metrics(void *arg, mbuf *b)
{
    monitor *m = arg;
    pthread_mutex_lock(&m->metrics_lock);
    const mon_snapshot *s = &m->snap;
#define TIER_FAMILY(name, help, fmt, expr)                                                         \
    do {                                                                                           \
        metrics_family(b, name, "gauge", help);                                                    \
        for (int t = 0; t < RING_TIERS; t++) {                                                     \
            const mon_tier *a = &s->tiers[t];                                                      \
            mbuf_printf(b, "%s{tier=\"%s\"} " fmt "\n", name, ring_tier_name(t + 1), expr);        \
        }                                                                                          \
    } while (0)
    TIER_FAMILY("trellis_monitor_tier_active_nodes", "ACTIVE nodes by tier.", "%d", a->active);
    TIER_FAMILY("trellis_monitor_tier_busy_ratio", "Average busy fraction of a tier's nodes.",
                "%.4f", a->busy_avg);
    TIER_FAMILY("trellis_monitor_tier_busy_max_ratio", "Busiest node of a tier.", "%.4f",
                a->busy_max);
    TIER_FAMILY("trellis_monitor_tier_cpu_used_cores", "CPU used by a tier's nodes.", "%.4f",
                a->cpu_used);
    TIER_FAMILY("trellis_monitor_tier_cpu_allotted_cores", "CPU allotted to a tier's nodes.",
                "%.4f", a->cpu_allotted);
    TIER_FAMILY("trellis_monitor_tier_ops_per_second", "Operations per second by tier.", "%.1f",
                a->ops_per_sec);
    TIER_FAMILY("trellis_monitor_tier_p99_microseconds", "Worst shard p99 service time by tier.",
                "%llu", (unsigned long long)a->p99_us);
    TIER_FAMILY("trellis_monitor_tier_keys", "Keys stored by tier.", "%llu",
                (unsigned long long)a->keys);
    TIER_FAMILY("trellis_monitor_tier_bytes", "Bytes stored by tier.", "%llu",
                (unsigned long long)a->bytes);
    TIER_FAMILY("trellis_monitor_tier_capacity_bytes", "Capacity by tier.", "%llu",
                (unsigned long long)a->capacity);
    TIER_FAMILY("trellis_monitor_tier_storage_ratio", "Bytes over capacity by tier.", "%.4f",
                a->cap_use);
#undef TIER_FAMILY
    metrics_family(b, "trellis_monitor_nodes", "gauge", "Storage nodes by tier and state.");
    for (int t = 1; t <= RING_TIERS; t++)
        for (int st = 1; st <= NODE_LEFT; st++)
            mbuf_printf(b, "trellis_monitor_nodes{tier=\"%s\",state=\"%s\"} %d\n",
                        ring_tier_name(t), ring_state_name(st), s->nodes[t][st]);
    metrics_family(b, "trellis_monitor_node_ops_per_second", "gauge",
                   "Operations per second of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(
            b, "trellis_monitor_node_ops_per_second{node=\"%s\",tier=\"%s\",state=\"%s\"} %.1f\n",
            s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
            ring_state_name(s->per_node[i].state), s->per_node[i].ops_per_sec);
    metrics_family(b, "trellis_monitor_node_busy_ratio", "gauge",
                   "Busy fraction of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_busy_ratio{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier), s->per_node[i].busy);
    metrics_family(b, "trellis_monitor_node_cpu_used_cores", "gauge",
                   "CPU used by each node (all its threads), last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_cpu_used_cores{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].cpu_used);
    metrics_family(b, "trellis_monitor_node_cpu_allotted_cores", "gauge",
                   "CPU each node may use (its quota, or its CPUs), last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_cpu_allotted_cores{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].cpu_allotted);
    metrics_family(b, "trellis_monitor_node_throttled_ratio", "gauge",
                   "Share of CPU quota periods each node was throttled in, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_throttled_ratio{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].throttled);
    metrics_family(b, "trellis_monitor_node_p99_microseconds", "gauge",
                   "Worst shard p99 service time of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_p99_microseconds{node=\"%s\",tier=\"%s\"} %llu\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    (unsigned long long)s->per_node[i].p99_us);
    metrics_family(b, "trellis_monitor_decisions_total", "counter",
                   "Decisions taken, by policy, action and result.");
    for (int i = 0; i < s->ncounters; i++)
        mbuf_printf(
            b, "trellis_monitor_decisions_total{policy=\"%s\",action=\"%s\",result=\"%s\"} %llu\n",
            s->counters[i].policy, s->counters[i].action, s->counters[i].ok ? "ok" : "failed",
            (unsigned long long)s->counters[i].n);
    metrics_family(b, "trellis_monitor_hot_keys", "gauge",
                   "Keys with a replication override in force.");
    mbuf_printf(b, "trellis_monitor_hot_keys %zu\n", s->hot_in_force);
    metrics_family(b, "trellis_monitor_client_p99_microseconds", "gauge",
                   "Worst end-to-end p99 reported by clients.");
    mbuf_printf(b, "trellis_monitor_client_p99_microseconds %llu\n",
                (unsigned long long)s->client_p99_us);
    metrics_family(b, "trellis_monitor_reports_total", "counter", "Statistics reports accepted.");
    mbuf_printf(b, "trellis_monitor_reports_total %llu\n", (unsigned long long)s->reports);
    metrics_family(b, "trellis_monitor_reports_rejected_total", "counter",
                   "Statistics reports refused or ignored.");
    mbuf_printf(b, "trellis_monitor_reports_rejected_total %llu\n",
                (unsigned long long)s->rejected);
    metrics_family(b, "trellis_monitor_periods_total", "counter", "Policy evaluations.");
    mbuf_printf(b, "trellis_monitor_periods_total %llu\n", (unsigned long long)s->periods);
    metrics_family(b, "trellis_monitor_operations", "gauge",
                   "Node additions and removals in progress.");
    mbuf_printf(b, "trellis_monitor_operations %d\n", s->ops);
    metrics_family(b, "trellis_monitor_local_nodes", "gauge",
                   "Nodes the local provisioner started that run.");
    mbuf_printf(b, "trellis_monitor_local_nodes %d\n", s->own_nodes);
    metrics_family(b, "trellis_ring_epoch", "gauge", "Ring epoch the monitor last saw.");
    mbuf_printf(b, "trellis_ring_epoch %llu\n", (unsigned long long)s->ring_epoch);
    pthread_mutex_unlock(&m->metrics_lock);
}

static int metrics_ready(void *arg)
{
    monitor *m = arg;
    pthread_mutex_lock(&m->metrics_lock);
    int ready = m->snap.ring_epoch != 0;
    pthread_mutex_unlock(&m->metrics_lock);
    return ready;
}

/* ---- the loop
 * -------------------------------------------------------------------------------------------- */

static void on_node_exit(void *arg, const char *id, int status)
{
    (void)arg;
    log_warn("node %s, started by this monitor, exited unexpectedly (wait status %d)", id, status);
}

static void monitor_step(monitor *m, int timeout_ms)
{
    struct pollfd fds[MON_MAX_FDS];
    fds[0] = (struct pollfd){.fd = m->rep_fd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
    int n = 2 + peer_pollfds(m->peers, fds + 2, MON_MAX_FDS - 2);
    uint64_t now = clock_mono_ms();
    uint64_t next = m->next_period_ms;
    uint64_t pd = peer_next_deadline(m->peers);
    if (pd < next)
        next = pd;
    int t = next > now ? (int)(next - now) : 0;
    for (int i = 0; i < MON_MAX_OPS; i++)
        if (m->ops[i].used && t > 50)
            t = 50; /* operations watch child processes and the ring */
    if (t > timeout_ms)
        t = timeout_ms;
    if (poll(fds, (nfds_t)n, t) < 0 && errno != EINTR)
        return;
    if (fds[1].revents) {
        struct signalfd_siginfo si;
        while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGCHLD)
                continue; /* children are reaped below, by pid */
            log_info("signal %u: stopping", si.ssi_signo);
            m->stop = 1;
        }
    }
    now = clock_mono_ms();
    for (int i = 0; i < MON_DRAIN; i++) {
        nng_msg *msg;
        if (nng_recvmsg(m->rep, &msg, NNG_FLAG_NONBLOCK) != 0)
            break;
        mon_handle(m, msg, now);
        wire_arena_reset(m->arena);
    }
    peer_process(m->peers, now);
    now = clock_mono_ms();
    if (now >= m->next_period_ms) {
        m->periods++;
        m->next_period_ms += m->period_ms;
        if (m->next_period_ms <= now)
            m->next_period_ms = now + m->period_ms;
        mon_prov_reap(m->prov, on_node_exit, m);
        ask_ring(m, now);
    }
    /* The ring reply (or its failure) triggers the evaluation; a router
     * that does not answer must not stall it past its deadline. */
    if (m->eval_due || (m->ring_inflight && now - m->ring_asked_ms > MON_RPC_TIMEOUT_MS + 100)) {
        if (m->ring_inflight && !m->eval_due)
            log_debug("ring request still pending; evaluating with the previous ring");
        evaluate(m, now);
    }
    ops_advance(m, now);
    wire_arena_reset(m->arena);
}

int monitor_run(monitor *m)
{
    while (!m->stop)
        monitor_step(m, 1000);
    return 0;
}

static void setup_policies(monitor *m)
{
    const config *c = &m->cfg;
    for (int t = RING_TIER_MEMORY; t <= RING_TIER_DISK; t++) {
        mon_elastic_cfg *e = &m->ecfg[t];
        e->min_nodes =
            (int)(t == RING_TIER_MEMORY ? c->monitor.min_memory_nodes : c->monitor.min_disk_nodes);
        e->max_nodes =
            (int)(t == RING_TIER_MEMORY ? c->monitor.max_memory_nodes : c->monitor.max_disk_nodes);
        e->busy_high = c->monitor.busy_high;
        e->busy_low = c->monitor.busy_low;
        e->capacity_high = c->monitor.capacity_high;
        e->capacity_low = c->monitor.capacity_low;
        e->latency_slo_us = (uint64_t)c->monitor.latency_slo_us;
        e->slo_periods = (int)c->monitor.slo_periods;
        e->grace_ms = (uint64_t)c->monitor.grace_ms;
    }
    m->hcfg.k = c->monitor.hot_k;
    m->hcfg.min_rate = (double)c->monitor.hot_min_rate;
    m->hcfg.min_share = c->monitor.hot_min_share;
    m->hcfg.cool_ratio = c->monitor.hot_cool_ratio;
    m->hcfg.hot_replicas = (uint32_t)c->monitor.hot_replicas;
    m->hcfg.default_memory = (uint32_t)c->cluster.memory_replicas;
    m->hcfg.default_disk = (uint32_t)c->cluster.disk_replicas;
    m->hcfg.cool_periods = (int)c->monitor.cool_periods;
    m->hcfg.grace_ms = (uint64_t)c->monitor.grace_ms;
    m->tcfg.demote_idle_ms = (uint64_t)c->monitor.demote_idle_ms;
    m->tcfg.promote_reads = (uint64_t)c->monitor.promote_reads;
    m->tcfg.promote_max = (size_t)c->monitor.promote_max;
    m->tcfg.capacity_high = c->monitor.capacity_high;
    m->tcfg.capacity_low = c->monitor.capacity_low;
    m->tcfg.grace_ms = (uint64_t)c->monitor.grace_ms;
    m->tcfg.period_ms = m->period_ms;
}

int monitor_open(const monitor_opts *o, monitor **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    snprintf(errbuf, errlen, "%s", "");
    monitor *m = calloc(1, sizeof(*m));
    if (!m)
        return TRELLIS_INTERNAL;
    m->cfg = *o->cfg;
    m->rep_fd = -1;
    m->sigfd = -1;
    pthread_mutex_init(&m->metrics_lock, NULL);
    log_init("monitor", "");
    m->start_ms = clock_mono_ms();
    m->period_ms = (uint64_t)m->cfg.monitor.period_ms;
    m->next_period_ms = m->start_ms + m->period_ms;
    mon_view_init(&m->view, m->period_ms);
    setup_policies(m);
    config_wire_limits(&m->cfg, &m->lim);

    char err[CONFIG_ERR_MAX];
    int rc = config_tls_new(&m->cfg, &m->tls, err, sizeof(err));
    if (rc != TRELLIS_OK) {
        snprintf(errbuf, errlen, "%s", err);
        monitor_close(m);
        return TRELLIS_INVALID;
    }
    const char *scheme = m->tls ? "tls+tcp" : "tcp";
    snprintf(m->url, sizeof(m->url), "%s://%s:%lld", scheme, m->cfg.monitor.listen,
             (long long)m->cfg.monitor.port);
    const char *host = m->cfg.monitor.listen;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1"; /* the nodes the local provisioner starts run here */
    snprintf(m->self_url, sizeof(m->self_url), "%s://%s:%lld", scheme, host,
             (long long)m->cfg.monitor.port);

    if (!(m->arena = wire_arena_new())) {
        monitor_close(m);
        return TRELLIS_INTERNAL;
    }
    mon_prov_opts po = {&m->cfg, o->config_path, m->self_url, o->self_exe};
    if ((rc = mon_prov_new(&po, &m->prov, err, sizeof(err))) != TRELLIS_OK) {
        snprintf(errbuf, errlen, "%s", err);
        monitor_close(m);
        return rc;
    }
    if ((rc = mon_log_open(m->cfg.monitor.log_file, &m->dlog)) != TRELLIS_OK) {
        snprintf(errbuf, errlen, "monitor.log_file %s cannot be opened for appending",
                 m->cfg.monitor.log_file);
        monitor_close(m);
        return TRELLIS_INVALID;
    }
    if ((rc = peer_pool_new(m->tls, &m->lim, m->cfg.auth.token, &m->peers)) != TRELLIS_OK) {
        monitor_close(m);
        return rc;
    }
    int rv = nng_rep0_open_raw(&m->rep);
    if (rv != 0) {
        monitor_close(m);
        return net_status(rv);
    }
    m->rep_open = 1;
    nng_socket_set_int(m->rep, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_int(m->rep, NNG_OPT_RECVBUF, 1024);
    if ((rc = net_set_limits(m->rep, m->lim.max_message, 0, 0)) != TRELLIS_OK ||
        (rc = net_listen(m->rep, m->url, m->tls, NULL)) != TRELLIS_OK ||
        nng_socket_get_int(m->rep, NNG_OPT_RECVFD, &m->rep_fd) != 0) {
        monitor_close(m);
        return rc != TRELLIS_OK ? rc : TRELLIS_INTERNAL;
    }
    if (m->cfg.monitor.metrics_port > 0 &&
        (rc = metrics_start(m->cfg.monitor.listen, (int)m->cfg.monitor.metrics_port, render_metrics,
                            metrics_ready, m, &m->metrics)) != TRELLIS_OK) {
        monitor_close(m);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        monitor_close(m);
        return TRELLIS_INTERNAL;
    }
    log_info("serving on %s; period %llu ms; provisioner %s; decisions to %s; %d routers", m->url,
             (unsigned long long)m->period_ms, mon_prov_name(m->prov),
             m->cfg.monitor.log_file[0] ? m->cfg.monitor.log_file : "(nowhere)",
             m->cfg.cluster.routers.n);
    *out = m;
    return TRELLIS_OK;
}

int monitor_close_wait_ms(const monitor *m)
{
    return m->prov && mon_prov_own_count(m->prov) > 0 ? MON_STOP_WAIT_MS : 0;
}

void monitor_close(monitor *m)
{
    if (!m)
        return;
    metrics_stop(m->metrics);
    m->metrics = NULL;
    /* Operations in progress are abandoned, and logged as such. */
    for (int i = 0; i < MON_MAX_OPS; i++) {
        mon_op *op = &m->ops[i];
        if (!op->used)
            continue;
        if (m->prov)
            mon_prov_abort(m->prov, &op->job);
        if (m->dlog)
            op_finish(m, op, 0, "aborted: the monitor stopped");
    }
    if (m->dlog)
        summary_flush(m);
    /* The nodes the local provisioner started stop first: nothing below
     * may keep them running unowned. */
    mon_prov_free(m->prov);
    m->prov = NULL;
    /* Requests in flight get their replies or their deadlines first
     * (their completions then only free their contexts): nng 1.5.2's nng_close of a
     * raw req socket with requests in flight was seen to block forever. */
    m->closing = 1;
    uint64_t end = clock_mono_ms() + MON_RPC_TIMEOUT_MS + 200;
    while (m->peers && peer_total_inflight(m->peers) > 0 && clock_mono_ms() < end) {
        struct pollfd fds[MON_MAX_FDS];
        int n = peer_pollfds(m->peers, fds, MON_MAX_FDS);
        poll(fds, (nfds_t)n, 20);
        peer_process(m->peers, clock_mono_ms());
    }
    peer_pool_free(m->peers);
    m->peers = NULL;
    if (m->rep_open)
        nng_close(m->rep);
    mon_log_close(m->dlog);
    mbuf_free(&m->line);
    ring_free(m->ring);
    mon_view_fini(&m->view);
    mon_hot_state_free(&m->hst);
    net_tls_free(m->tls);
    wire_arena_free(m->arena);
    free(m->snap.per_node);
    if (m->sigfd >= 0)
        close(m->sigfd);
    pthread_mutex_destroy(&m->metrics_lock);
    free(m);
}
