/*
 * mon_serve.c - the listening socket and the statistics served
 * (mon_serve.h).
 */
#include "monitor/mon_serve.h"

#include "monitor/mon_impl.h"

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
    o->rep.epoch = m->rs.epoch;
    o->rep.tiers = o->pts;
    o->rep.n_tiers = RING_TIERS;
    o->rep.hot_keys = (uint32_t)mon_hot_in_force(&m->hot.st);
    o->rep.client_p99_us = mon_view_client_p99(&m->view, now);
}

/* arg: the router's push_inflight flag. */
static void push_done(void *arg, int status, const Trellis__Envelope *reply)
{
    (void)status;
    (void)reply;
    *(int *)arg = 0;
}

/* Routers answer the CLI's STATS with these figures merged into their own. */
void mon_serve_push(monitor *m, uint64_t now)
{
    stats_out o;
    build_stats(m, now, &o);
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REPLY;
    env.stats_reply = &o.rep;
    for (int i = 0; i < m->cfg.cluster.routers.n && i < CONFIG_LIST_MAX; i++) {
        if (m->serve.push_inflight[i])
            continue;
        if (peer_send(m->peers, m->cfg.cluster.routers.v[i], &env, MON_RPC_TIMEOUT_MS, m->rs.epoch,
                      0, push_done, &m->serve.push_inflight[i]) == TRELLIS_OK)
            m->serve.push_inflight[i] = 1;
    }
}

/* ---- the listening socket --------------------------------------------------------------- */

static void send_reply(monitor *m, nng_msg *req, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    env->ring_epoch = m->rs.epoch;
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

static void send_status(monitor *m, nng_msg *req, int status, const char *text)
{
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    if (status == TRELLIS_OK) {
        Trellis__CommandReply cr;
        trellis__command_reply__init(&cr);
        env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
        env.command_reply = &cr;
        send_reply(m, req, &env);
        return;
    }
    Trellis__ErrorReply er;
    trellis__error_reply__init(&er);
    er.status = (Trellis__Status)status;
    er.message = (char *)text;
    env.body_case = TRELLIS__ENVELOPE__BODY_ERROR;
    env.error = &er;
    send_reply(m, req, &env);
}

void mon_serve_handle(monitor *m, nng_msg *msg, uint64_t now)
{
    Trellis__Envelope *env = NULL;
    int rc = wire_decode(m->arena, nng_msg_body(msg), nng_msg_len(msg), &m->lim, &env);
    if (rc != TRELLIS_OK) {
        send_status(m, msg, rc, "undecodable message or unsupported version");
        return;
    }
    if (!wire_auth_ok(env, m->cfg.auth.token)) {
        send_status(m, msg, TRELLIS_UNAUTHORIZED, "missing or wrong token");
        return;
    }
    switch (env->body_case) {
    case TRELLIS__ENVELOPE__BODY_STATS:
        rc = mon_view_report(&m->view, env->stats, now);
        send_status(m, msg, rc, trellis_strerror(rc));
        break;
    case TRELLIS__ENVELOPE__BODY_STATS_REQUEST: {
        stats_out o;
        build_stats(m, now, &o);
        Trellis__Envelope out;
        trellis__envelope__init(&out);
        out.body_case = TRELLIS__ENVELOPE__BODY_STATS_REPLY;
        out.stats_reply = &o.rep;
        send_reply(m, msg, &out);
        break;
    }
    default:
        send_status(m, msg, TRELLIS_MALFORMED, "the monitor serves stats and stats_request");
        break;
    }
}
