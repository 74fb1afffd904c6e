/*
 * tkv.c - a small synchronous client for tests (see tkv.h).
 */
#include "tkv.h"

#include "base/kvop.h"
#include "placement/ring_wire.h"
#include "tframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "base/net.h"

static char tkv_token[256];

void tkv_set_token(const char *token)
{
    snprintf(tkv_token, sizeof(tkv_token), "%s", token ? token : "");
}

static wire_limits tkv_limits(void)
{
    wire_limits lim;
    wire_limits_default(&lim);
    /* Replies to tests may be large (a big SET); accept what a node sends. */
    lim.max_message = 64 << 20;
    return lim;
}

int tkv_call(const char *url, Trellis__Envelope *env, int timeout_ms, wire_arena *a,
             Trellis__Envelope **reply)
{
    wire_limits lim = tkv_limits();
    return rpc_call_url(url, NULL, &lim, tkv_token, env, timeout_ms, a, reply);
}

int tkv_call_raw(const char *url, const void *body, size_t len, int timeout_ms, wire_arena *a,
                 Trellis__Envelope **reply)
{
    *reply = NULL;
    wire_limits lim = tkv_limits();
    nng_socket s;
    int rv = nng_req0_open(&s);
    if (rv != 0)
        return net_status(rv);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, lim.max_message);
    int rc = net_dial(s, url, NULL);
    nng_msg *m = NULL;
    if (rc == TRELLIS_OK && (rv = nng_msg_alloc(&m, 0)) != 0)
        rc = net_status(rv);
    if (rc == TRELLIS_OK && len && (rv = nng_msg_append(m, body, len)) != 0)
        rc = net_status(rv);
    if (rc == TRELLIS_OK) {
        if ((rv = nng_sendmsg(s, m, 0)) != 0)
            rc = net_status(rv);
        else
            m = NULL;
    }
    if (m)
        nng_msg_free(m);
    if (rc == TRELLIS_OK) {
        if ((rv = nng_recvmsg(s, &m, 0)) != 0) {
            rc = net_status(rv);
        } else {
            rc = wire_decode(a, nng_msg_body(m), nng_msg_len(m), &lim, reply);
            nng_msg_free(m);
        }
    }
    nng_close(s);
    return rc;
}

/* As kvs/node.c builds a ring from a snapshot. */
static int ring_of_snapshot(const Trellis__RingSnapshot *rs, ring **out)
{
    size_t nn = rs->n_nodes;
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
    for (size_t i = 0; i < rs->n_overrides; i++) {
        ov[i].key = rs->overrides[i]->key.data;
        ov[i].klen = rs->overrides[i]->key.len;
        ov[i].memory = rs->overrides[i]->memory;
        ov[i].disk = rs->overrides[i]->disk;
        ov[i].version = rs->overrides[i]->version;
    }
    ring_params p = {rs->vnodes, rs->memory_replicas, rs->disk_replicas};
    int rc = ring_build(nodes, k, ov, rs->n_overrides, &p, rs->epoch, out);
    free(nodes);
    free(ov);
    return rc;
}

static int fetch_snapshot(const char *router_url, wire_arena *a, Trellis__RingSnapshot **out)
{
    Trellis__Envelope env, *reply;
    Trellis__RingRequest rq;
    wire_envelope_init(&env, 0, NULL);
    trellis__ring_request__init(&rq);
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    int rc = tkv_call(router_url, &env, TKV_TIMEOUT_MS, a, &reply);
    if (rc != TRELLIS_OK)
        return rc;
    if (reply->body_case != TRELLIS__ENVELOPE__BODY_RING)
        return TRELLIS_MALFORMED;
    *out = reply->ring;
    return TRELLIS_OK;
}

int tkv_fetch_ring(const char *router_url, ring **out, uint64_t *epoch)
{
    *out = NULL;
    wire_arena *a = wire_arena_new();
    if (!a)
        return TRELLIS_INTERNAL;
    Trellis__RingSnapshot *rs;
    int rc = fetch_snapshot(router_url, a, &rs);
    if (rc == TRELLIS_OK) {
        if (epoch)
            *epoch = rs->epoch;
        rc = ring_of_snapshot(rs, out);
    }
    wire_arena_free(a);
    return rc;
}

int tkv_node_state(const char *router_url, const char *id, uint64_t *generation)
{
    wire_arena *a = wire_arena_new();
    if (!a)
        return 0;
    Trellis__RingSnapshot *rs;
    int state = 0;
    if (fetch_snapshot(router_url, a, &rs) == TRELLIS_OK)
        for (size_t i = 0; i < rs->n_nodes; i++)
            if (rs->nodes[i]->id && strcmp(rs->nodes[i]->id, id) == 0) {
                state = (int)rs->nodes[i]->state;
                if (generation)
                    *generation = rs->nodes[i]->generation;
            }
    wire_arena_free(a);
    return state;
}

/* The nth replica of key in tier and the shard that holds it there;
 * NULL when the key has fewer replicas. */
static const ring_node *replica_of(const ring *r, int tier, size_t nth, const void *key,
                                   size_t klen, uint32_t *shard)
{
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas(r, RING_CURRENT, tier, key, klen, idx, RING_MAX_REPLICAS);
    if (nth >= n)
        return NULL;
    const ring_node *node = ring_node_at(r, (size_t)idx[nth]);
    *shard = ring_local_shard(key, klen, node->shards);
    return node;
}

int tkv_replica_url(const ring *r, int tier, size_t nth, const void *key, size_t klen, char *url,
                    size_t cap)
{
    uint32_t sh;
    const ring_node *node = replica_of(r, tier, nth, key, klen, &sh);
    return node ? ring_shard_data_url(node, sh, url, cap) : TRELLIS_NOT_FOUND;
}

int tkv_replica_ctl_url(const ring *r, int tier, size_t nth, const void *key, size_t klen,
                        char *url, size_t cap)
{
    uint32_t sh;
    const ring_node *node = replica_of(r, tier, nth, key, klen, &sh);
    return node ? ring_shard_url(node, sh, url, cap) : TRELLIS_NOT_FOUND;
}

int tkv_wrong_url(const ring *r, int tier, const void *key, size_t klen, char *url, size_t cap)
{
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas(r, RING_CURRENT, tier, key, klen, idx, RING_MAX_REPLICAS);
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *node = ring_node_at(r, i);
        if (node->tier != tier || (node->state != NODE_ACTIVE && node->state != NODE_LEAVING))
            continue;
        uint32_t own = ring_local_shard(key, klen, node->shards);
        int replica = 0;
        for (size_t j = 0; j < n; j++)
            replica |= idx[j] == (int)i;
        for (uint32_t sh = 0; sh < node->shards; sh++) {
            if (replica && sh == own)
                continue;
            return ring_shard_data_url(node, sh, url, cap);
        }
    }
    return TRELLIS_NOT_FOUND;
}

Trellis__KeyOp *tkv_op(wire_arena *a, int opcode, const void *key, size_t klen, lat_type t,
                       const void *value, size_t vlen)
{
    Trellis__KeyOp *op = wire_arena_alloc(a, sizeof(*op));
    if (!op)
        return NULL;
    trellis__key_op__init(op);
    op->op = (Trellis__OpCode)opcode;
    op->type = (Trellis__LatticeType)t;
    op->key.data = wire_arena_dup(a, key, klen);
    op->key.len = klen;
    if (vlen) {
        op->value.data = wire_arena_dup(a, value, vlen);
        op->value.len = vlen;
    }
    return op;
}

Trellis__KeyOp *tkv_op_get(wire_arena *a, const void *key, size_t klen, lat_type t)
{
    return tkv_op(a, TRELLIS__OP_CODE__GET, key, klen, t, NULL, 0);
}

Trellis__KeyOp *tkv_op_put(wire_arena *a, const void *key, size_t klen, lat_type t,
                           const lat_buf *value)
{
    return tkv_op(a, TRELLIS__OP_CODE__PUT, key, klen, t, value->data, value->len);
}

int tkv_batch(const char *url, Trellis__KeyOp **ops, size_t n, int timeout_ms, wire_arena *a,
              Trellis__KvReply **out)
{
    *out = NULL;
    tframe *t;
    int rc = tframe_connect_url(url, &t);
    if (rc != TRELLIS_OK)
        return rc;
    /* The operations as frames: DELETE and EXPIRE carry their arguments as
     * the value. */
    tframe_op *fo = calloc(n ? n : 1, sizeof(*fo));
    uint8_t(*args)[KVOP_EXPIRE_ARG_MAX] = calloc(n ? n : 1, KVOP_EXPIRE_ARG_MAX);
    for (size_t i = 0; fo && args && i < n; i++) {
        const Trellis__KeyOp *k = ops[i];
        fo[i] = (tframe_op){(uint8_t)k->op, (uint8_t)k->type, k->key.data,
                            k->key.len,     k->value.data,    k->value.len};
        if (k->op == TRELLIS__OP_CODE__DELETE) {
            frame_put_delete_arg(args[i], k->timestamp, k->writer);
            fo[i].vlen = FRAME_DELETE_ARG;
        } else if (k->op == TRELLIS__OP_CODE__EXPIRE && k->value.len <= 1) {
            /* The condition byte, if any, follows (base/kvop.h). */
            frame_put_expire_arg(args[i], k->deadline_ms, k->timestamp);
            if (k->value.len)
                args[i][FRAME_EXPIRE_ARG] = k->value.data[0];
            fo[i].vlen = FRAME_EXPIRE_ARG + k->value.len;
        } else {
            continue; /* an EXPIRE with a longer value goes as it is: MALFORMED */
        }
        fo[i].value = args[i];
    }
    tframe_reply r = {0};
    rc = fo && args ? tframe_hello(t, 0, tkv_token) : TRELLIS_INTERNAL;
    if (rc == TRELLIS_OK)
        rc = tframe_request(t, 1, 0, 0, fo, n);
    /* The HELLO_REPLY first (or a refusal), then the reply. */
    while (rc == TRELLIS_OK) {
        rc = tframe_recv(t, timeout_ms, &r);
        if (rc != TRELLIS_OK)
            break;
        if (r.h.kind == FRAME_HELLO_REPLY && r.h.status != TRELLIS_OK)
            rc = r.h.status;
        else if (r.h.kind == FRAME_REPLY)
            break;
        tframe_reply_free(&r);
    }
    if (rc == TRELLIS_OK && r.h.status != TRELLIS_OK)
        rc = r.h.status;
    Trellis__KvReply *rep = rc == TRELLIS_OK ? wire_arena_alloc(a, sizeof(*rep)) : NULL;
    if (rc == TRELLIS_OK && !rep)
        rc = TRELLIS_INTERNAL;
    if (rc == TRELLIS_OK) {
        trellis__kv_reply__init(rep);
        rep->server_clock = r.h.clock;
        rep->n_results = r.nres;
        rep->results = wire_arena_alloc(a, (r.nres ? r.nres : 1) * sizeof(*rep->results));
        for (size_t i = 0; rep->results && i < r.nres; i++) {
            Trellis__KeyResult *k = wire_arena_alloc(a, sizeof(*k));
            trellis__key_result__init(k);
            k->status = (Trellis__Status)r.res[i].status;
            k->type = (Trellis__LatticeType)r.res[i].type;
            k->value.data = wire_arena_dup(a, r.res[i].value, r.res[i].vlen);
            k->value.len = r.res[i].vlen;
            k->deadline_ms = r.res[i].deadline_ms;
            rep->results[i] = k;
        }
        *out = rep;
    }
    tframe_reply_free(&r);
    free(fo);
    free(args);
    tframe_close(t);
    return rc;
}

int tkv_send_routed(const ring *r, int tier, size_t nth, Trellis__KeyOp **ops, size_t n,
                    int timeout_ms, wire_arena *a, Trellis__KeyResult **res)
{
    if (n == 0)
        return TRELLIS_OK;
    char(*urls)[RING_MAX_URL + 1] = calloc(n, sizeof(*urls));
    uint8_t *done = calloc(n, 1);
    Trellis__KeyOp **batch = calloc(n, sizeof(*batch));
    size_t *idx = calloc(n, sizeof(*idx));
    int rc = urls && done && batch && idx ? TRELLIS_OK : TRELLIS_INTERNAL;
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        res[i] = NULL;
        rc = tkv_replica_url(r, tier, nth, ops[i]->key.data, ops[i]->key.len, urls[i],
                             sizeof(urls[i]));
    }
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        if (done[i])
            continue;
        size_t m = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && strcmp(urls[j], urls[i]) == 0) {
                batch[m] = ops[j];
                idx[m++] = j;
                done[j] = 1;
            }
        Trellis__KvReply *rep;
        rc = tkv_batch(urls[i], batch, m, timeout_ms, a, &rep);
        if (rc == TRELLIS_OK && rep->n_results != m)
            rc = TRELLIS_MALFORMED;
        for (size_t k = 0; rc == TRELLIS_OK && k < m; k++)
            res[idx[k]] = rep->results[k];
    }
    free(urls);
    free(done);
    free(batch);
    free(idx);
    return rc;
}

int tkv_stored(lat_type t, const lat_buf *value, uint64_t epoch, uint64_t stamp,
               uint64_t deadline_ms, lat_buf *out)
{
    lat_stored st = {0};
    st.epoch = epoch;
    st.has_ttl = stamp != 0;
    st.ttl_stamp = stamp;
    st.deadline_ms = deadline_ms;
    st.type = t;
    st.value.data = value->data;
    st.value.len = value->len;
    return lat_tagged_build(&st, out);
}

int tkv_sample(lat_type t, uint64_t writer, uint64_t i, lat_buf *out)
{
    char text[64];
    lat_slice m;
    switch (t) {
    case LAT_LWW:
        snprintf(text, sizeof(text), "v%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        return lat_lww_encode(i + 1, writer, 0, text, strlen(text), out);
    case LAT_SET:
        snprintf(text, sizeof(text), "m%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        m.data = (const uint8_t *)text;
        m.len = strlen(text);
        return lat_set_encode(&m, 1, out);
    case LAT_ORSET:
        snprintf(text, sizeof(text), "m%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        return lat_orset_add(text, strlen(text), writer, i + 1, out);
    case LAT_COUNTER:
        return lat_counter_encode(writer, i + 1, 0, out);
    case LAT_MAX:
        return lat_max_encode((int64_t)i, out);
    case LAT_CAUSAL:
        snprintf(text, sizeof(text), "c%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        return lat_causal_put(NULL, 0, writer, i + 1, text, strlen(text), 0, out);
    case LAT_PRIORITY:
        snprintf(text, sizeof(text), "v%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        return lat_priority_encode((int64_t)i, writer, text, strlen(text), out);
    case LAT_MAP:
        snprintf(text, sizeof(text), "f%llu-%llu", (unsigned long long)writer,
                 (unsigned long long)i);
        return lat_map_set(NULL, 0, text, strlen(text), writer, i + 1, text, strlen(text), out);
    default:
        return TRELLIS_INVALID;
    }
}
