/*
 * shard_msg.c - the shard's nng socket: its peers' traffic. Replication,
 * anti-entropy, and fetches of whole stored states (a memory shard reading
 * through to the disk tier, the monitor promoting keys read often). Key
 * operations from clients travel on the data plane (dp.c) only.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

/* ---- replies ------------------------------------------------------------------ */

void shard_reply(shard *s, nng_msg *req, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    env->ring_epoch = s->epoch;
    nng_msg *m;
    int rc = wire_reply_msg(req, env, &m);
    nng_msg_free(req);
    if (rc != TRELLIS_OK)
        return;
    if (s->reply_hook) {
        s->reply_hook(s->reply_hook_arg, m);
        return;
    }
    /* Under a flood the socket's send queue (NNG_OPT_SENDBUF) fills faster
     * than nng's threads move replies to the connections: wait for room,
     * at most SHARD_REPLY_WAIT_MS (the shard takes no new requests
     * meanwhile), rather than drop the reply and leave the requester to
     * its deadline. */
    int rv = nng_sendmsg(s->rep, m, NNG_FLAG_NONBLOCK);
    if (rv == NNG_EAGAIN)
        rv = nng_sendmsg(s->rep, m, 0);
    if (rv != 0)
        nng_msg_free(m); /* the requester times out and retries */
}

void shard_reply_error(shard *s, nng_msg *req, int status, const char *text)
{
    Trellis__Envelope env;
    Trellis__ErrorReply er;
    wire_error_init(&env, &er, status, text);
    shard_count_error(s, status);
    shard_reply(s, req, &env);
}

/* ---- fetches: KvRequest with `stored`, GETs only --------------------------------------------- */

static void msg_reply(shard *s, shard_req *rq, const shard_res *res, size_t n)
{
    Trellis__KvReply rep;
    trellis__kv_reply__init(&rep);
    Trellis__KeyResult *r = n ? wire_arena_alloc(s->arena, n * sizeof(*r)) : NULL;
    Trellis__KeyResult **rp = n ? wire_arena_alloc(s->arena, n * sizeof(*rp)) : NULL;
    nng_msg *req = rq->sink_msg;
    rq->sink_msg = NULL;
    if (n && (!r || !rp)) {
        shard_reply_error(s, req, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        trellis__key_result__init(&r[i]);
        r[i].status = (Trellis__Status)res[i].status;
        r[i].type = (Trellis__LatticeType)res[i].type;
        ProtobufCBinaryData *v = res[i].stored ? &r[i].stored : &r[i].value;
        v->data = (uint8_t *)res[i].value;
        v->len = res[i].value ? res[i].vlen : 0;
        r[i].deadline_ms = res[i].deadline_ms;
        rp[i] = &r[i];
    }
    rep.n_results = n;
    rep.results = rp;
    rep.server_clock = hlc_now(&s->clock);
    Trellis__Envelope out;
    trellis__envelope__init(&out);
    out.body_case = TRELLIS__ENVELOPE__BODY_KV_REPLY;
    out.kv_reply = &rep;
    shard_reply(s, req, &out);
}

static void msg_fail(shard *s, shard_req *rq, int status, const char *text)
{
    nng_msg *req = rq->sink_msg;
    rq->sink_msg = NULL;
    if (!req)
        return;
    Trellis__Envelope env;
    Trellis__ErrorReply er;
    wire_error_init(&env, &er, status, text);
    shard_reply(s, req, &env);
}

static void msg_release(shard_req *rq)
{
    if (rq->sink_msg)
        nng_msg_free(rq->sink_msg);
    rq->sink_msg = NULL;
}

/* The message owns its bytes: nothing to copy for the reply address. */
static const shard_sink msg_sink = {msg_reply, msg_fail, NULL, msg_release};

/* A peer's fetch: the whole stored state of each key asked for (the read
 * goes through to the disk tier like a client's). Anything else in a
 * KvRequest is refused whole: clients' operations belong on the data
 * plane, where the rate cap, the token and the limits of frames apply. */
static void handle_fetch(shard *s, nng_msg *req, const Trellis__Envelope *env, uint64_t arrived_us)
{
    const Trellis__KvRequest *kv = env->kv;
    if (!kv->stored) {
        s->st_cur.total_malformed_msgs++;
        shard_reply_error(s, req, TRELLIS_MALFORMED,
                          "key operations go to the data plane; this socket serves peers");
        return;
    }
    if (kv->n_ops > s->lim.max_ops) {
        shard_reply_error(s, req, TRELLIS_TOO_LARGE, "too many operations in one request");
        return;
    }
    size_t n = kv->n_ops;
    shard_op *ops = n ? wire_arena_alloc(s->arena, n * sizeof(*ops)) : NULL;
    if (n && !ops) {
        shard_reply_error(s, req, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const Trellis__KeyOp *k = kv->ops[i];
        if (k->op != TRELLIS__OP_CODE__GET) {
            s->st_cur.total_malformed_msgs++;
            shard_reply_error(s, req, TRELLIS_MALFORMED, "a fetch carries only GETs");
            return;
        }
        ops[i] = (shard_op){FRAME_OP_GET,
                            (uint8_t)((unsigned)k->type < 256 ? k->type : 0xff),
                            k->key.data,
                            k->key.len,
                            NULL,
                            0,
                            0,
                            0,
                            0};
    }
    shard_req rq = {&msg_sink, req, 0, 0, ops, n, 0, 1, kv->client_clock, arrived_us, NULL};
    shard_exec(s, &rq, 1);
    msg_release(&rq);
}

void shard_handle_msg(shard *s, nng_msg *msg, uint64_t arrived_us)
{
    Trellis__Envelope *env = NULL;
    s->st_cur.total_requests++;
    if (s->token && !wire_peek_auth(nng_msg_body(msg), nng_msg_len(msg), s->token)) {
        /* Nothing is decoded for a peer without the token. A small message
         * is answered UNAUTHORIZED; a larger one is dropped unanswered and
         * counted, and the connection stays: a server closes no connection
         * on bad input (closing one under a peer that is still sending is
         * what wedged nng 1.5.2, docs/operations.md). */
        if (nng_msg_len(msg) > (size_t)s->cfg->limits.unauth_message_bytes) {
            s->st_cur.total_unauth_dropped++;
            nng_msg_free(msg);
            return;
        }
        shard_reply_error(s, msg, TRELLIS_UNAUTHORIZED, "missing or wrong token");
        return;
    }
    int rc = wire_decode(s->arena, nng_msg_body(msg), nng_msg_len(msg), &s->lim, &env);
    if (rc != TRELLIS_OK) {
        s->st_cur.total_malformed_msgs++;
        shard_reply_error(s, msg, rc,
                          rc == TRELLIS_TOO_LARGE ? "message exceeds a limit"
                                                  : "undecodable message or unsupported version");
        return;
    }
    if (env->ring_epoch > s->epoch)
        shard_note_epoch(s, env->ring_epoch, arrived_us / 1000);
    switch (env->body_case) {
    case TRELLIS__ENVELOPE__BODY_KV:
        handle_fetch(s, msg, env, arrived_us);
        break;
    case TRELLIS__ENVELOPE__BODY_REPLICATE:
        repl_handle_replicate(s, msg, env);
        break;
    case TRELLIS__ENVELOPE__BODY_DIGEST:
        ae_handle_digest(s, msg, env);
        break;
    default:
        shard_reply_error(s, msg, TRELLIS_MALFORMED,
                          "a shard's socket serves fetches, replicate and digest");
        break;
    }
}
