/*
 * test_wire.c - envelopes and the budgeted decode arena: round trips,
 * random and truncated input (an error, never a crash), the allocation
 * budget against protobuf-c's amplification, versions, limits, the token
 * comparison and arena reuse.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tsupport.h"
#include "base/wire.h"

TestSuite(wire, .timeout = 60);

static wire_limits limits(void)
{
    wire_limits lim;
    wire_limits_default(&lim);
    return lim;
}

/* A KvRequest envelope with n operations. */
static void build_kv(Trellis__Envelope *env, Trellis__KvRequest *kv, Trellis__KeyOp *ops,
                     Trellis__KeyOp **pops, size_t n)
{
    wire_envelope_init(env, 42, "secret");
    trellis__kv_request__init(kv);
    for (size_t i = 0; i < n; i++) {
        trellis__key_op__init(&ops[i]);
        ops[i].op = (Trellis__OpCode)(i % 4);
        ops[i].type = (Trellis__LatticeType)(i % 8);
        ops[i].key.data = (uint8_t *)"k\0ey";
        ops[i].key.len = 4;
        ops[i].value.data = (uint8_t *)"value bytes";
        ops[i].value.len = 11 - i % 5;
        ops[i].timestamp = UINT64_MAX - i;
        ops[i].writer = i * 77;
        pops[i] = &ops[i];
    }
    kv->ops = pops;
    kv->n_ops = n;
    kv->client_clock = 123456789;
    env->body_case = TRELLIS__ENVELOPE__BODY_KV;
    env->kv = kv;
}

static uint8_t *pack(const Trellis__Envelope *env, size_t *len)
{
    *len = trellis__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    cr_assert_not_null(buf);
    trellis__envelope__pack(env, buf);
    return buf;
}

Test(wire, kv_round_trip)
{
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    Trellis__KeyOp ops[9], *pops[9];
    build_kv(&env, &kv, ops, pops, 9);
    size_t len;
    uint8_t *buf = pack(&env, &len);
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope *out;
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK);
    cr_assert_eq(out->version, WIRE_VERSION);
    cr_assert_eq(out->ring_epoch, 42);
    cr_assert_eq(out->auth.len, 6);
    cr_assert(memcmp(out->auth.data, "secret", 6) == 0);
    cr_assert_eq(out->body_case, TRELLIS__ENVELOPE__BODY_KV);
    cr_assert_eq(out->kv->n_ops, 9);
    cr_assert_eq(out->kv->client_clock, 123456789);
    for (size_t i = 0; i < 9; i++) {
        const Trellis__KeyOp *o = out->kv->ops[i];
        cr_assert_eq((int)o->op, (int)(i % 4));
        cr_assert_eq((int)o->type, (int)(i % 8));
        cr_assert_eq(o->key.len, 4);
        cr_assert(memcmp(o->key.data, "k\0ey", 4) == 0, "keys are bytes, NULs included");
        cr_assert_eq(o->value.len, ops[i].value.len);
        cr_assert_eq(o->timestamp, UINT64_MAX - i);
        cr_assert_eq(o->writer, i * 77);
    }
    /* Canonical: re-encoding the decoded message gives the same bytes. */
    size_t len2;
    uint8_t *buf2 = pack(out, &len2);
    cr_assert_eq(len2, len);
    cr_assert(memcmp(buf, buf2, len) == 0);

    /* wire_to_msg and wire_append carry the same bytes, after a header. */
    nng_msg *m;
    cr_assert_eq(wire_to_msg(&env, &m), TRELLIS_OK);
    cr_assert_eq(nng_msg_len(m), len);
    cr_assert(memcmp(nng_msg_body(m), buf, len) == 0);
    nng_msg_free(m);
    cr_assert_eq(nng_msg_alloc(&m, 0), 0);
    cr_assert_eq(nng_msg_header_append_u32(m, 0x80000001u), 0);
    cr_assert_eq(nng_msg_append(m, "xy", 2), 0);
    cr_assert_eq(wire_append(m, &env), TRELLIS_OK);
    cr_assert_eq(nng_msg_header_len(m), 4);
    cr_assert_eq(nng_msg_len(m), len + 2);
    cr_assert(memcmp((uint8_t *)nng_msg_body(m) + 2, buf, len) == 0);
    nng_msg_free(m);
    free(buf);
    free(buf2);
    wire_arena_free(a);
}

Test(wire, replicate_and_ring_round_trip)
{
    Trellis__Envelope env;
    Trellis__ReplicaBatch rb;
    Trellis__ReplicaEntry e[3], *pe[3];
    wire_envelope_init(&env, 7, NULL);
    trellis__replica_batch__init(&rb);
    for (int i = 0; i < 3; i++) {
        trellis__replica_entry__init(&e[i]);
        e[i].key.data = (uint8_t *)"key";
        e[i].key.len = (size_t)i + 1;
        e[i].type = TRELLIS__LATTICE_TYPE__ORSET;
        e[i].state.data = (uint8_t *)"\x00\x01\x02";
        e[i].state.len = 3;
        pe[i] = &e[i];
    }
    rb.kind = TRELLIS__REPLICA_KIND__HANDOFF;
    rb.entries = pe;
    rb.n_entries = 3;
    rb.node_id = (char *)"m6500";
    rb.shard = 3;
    rb.last = 1;
    rb.handoff_epoch = 99;
    env.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE;
    env.replicate = &rb;
    size_t len;
    uint8_t *buf = pack(&env, &len);
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope *out;
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK);
    cr_assert_eq(out->auth.len, 0);
    cr_assert_eq(out->body_case, TRELLIS__ENVELOPE__BODY_REPLICATE);
    cr_assert_str_eq(out->replicate->node_id, "m6500");
    cr_assert_eq(out->replicate->n_entries, 3);
    cr_assert_eq(out->replicate->entries[2]->key.len, 3);
    cr_assert_eq(out->replicate->handoff_epoch, 99);
    cr_assert(out->replicate->last);
    free(buf);

    Trellis__RingSnapshot rs;
    Trellis__NodeInfo ni, *pni = &ni;
    wire_envelope_init(&env, 5, NULL);
    trellis__ring_snapshot__init(&rs);
    trellis__node_info__init(&ni);
    ni.id = (char *)"d1";
    ni.tier = TRELLIS__TIER__DISK;
    ni.state = TRELLIS__NODE_STATE__ACTIVE;
    ni.shards = 4;
    ni.endpoint = (char *)"tcp://127.0.0.1:7000";
    rs.epoch = 5;
    rs.nodes = &pni;
    rs.n_nodes = 1;
    rs.vnodes = 64;
    env.body_case = TRELLIS__ENVELOPE__BODY_RING;
    env.ring = &rs;
    buf = pack(&env, &len);
    wire_arena_reset(a);
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK);
    cr_assert_eq(out->ring->n_nodes, 1);
    cr_assert_str_eq(out->ring->nodes[0]->endpoint, "tcp://127.0.0.1:7000");
    cr_assert_eq(out->ring->nodes[0]->shards, 4);
    free(buf);
    wire_arena_free(a);
}

Test(wire, versions)
{
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope env, *out;
    Trellis__RingRequest rq;
    trellis__ring_request__init(&rq);
    static const uint32_t versions[] = {0, 2, 3, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        wire_envelope_init(&env, 0, NULL);
        env.version = versions[i];
        env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
        env.ring_request = &rq;
        size_t len;
        uint8_t *buf = pack(&env, &len);
        cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_MALFORMED, "version %u",
                     versions[i]);
        cr_assert_null(out);
        free(buf);
    }
    /* An empty message is version 0. */
    cr_assert_eq(wire_decode(a, "", 0, &lim, &out), TRELLIS_MALFORMED);
    wire_envelope_init(&env, 0, NULL);
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    size_t len;
    uint8_t *buf = pack(&env, &len);
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK);
    free(buf);
    wire_arena_free(a);
}

Test(wire, random_bytes_never_crash)
{
    trand r;
    trand_begin(&r, "wire_random_bytes");
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    uint8_t buf[512];
    long ok = 0, bad = 0;
    for (int i = 0; i < 200000; i++) {
        size_t len = (size_t)trand_below(&r, sizeof(buf) + 1);
        trand_bytes(&r, buf, len);
        if (trand_chance(&r, 50) && len >= 2) {
            /* Start like an envelope so that decoding goes deeper. */
            buf[0] = 0x08;
            buf[1] = 0x01;
        }
        Trellis__Envelope *out;
        int rc = wire_decode(a, buf, len, &lim, &out);
        cr_assert(rc == TRELLIS_OK || rc == TRELLIS_MALFORMED,
                  "rc %d on case %d (TRELLIS_SEED=%llu)", rc, i, (unsigned long long)r.seed);
        if (rc == TRELLIS_OK) {
            ok++;
            cr_assert_eq(out->version, WIRE_VERSION);
        } else {
            bad++;
            cr_assert_null(out);
        }
        if (i % 64 == 0)
            wire_arena_reset(a);
    }
    cr_log_info("random envelopes: %ld decoded, %ld refused", ok, bad);
    cr_assert_gt(bad, 0);
    wire_arena_free(a);
}

Test(wire, truncations_and_bit_flips)
{
    trand r;
    trand_begin(&r, "wire_truncations");
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    Trellis__KeyOp ops[20], *pops[20];
    build_kv(&env, &kv, ops, pops, 20);
    size_t len;
    uint8_t *buf = pack(&env, &len);
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope *out;
    for (size_t n = 0; n < len; n++) {
        int rc = wire_decode(a, buf, n, &lim, &out);
        cr_assert(rc == TRELLIS_OK || rc == TRELLIS_MALFORMED, "prefix %zu: rc %d", n, rc);
        wire_arena_reset(a);
    }
    uint8_t *copy = malloc(len);
    for (int i = 0; i < 50000; i++) {
        memcpy(copy, buf, len);
        int flips = 1 + (int)trand_below(&r, 4);
        for (int f = 0; f < flips; f++)
            copy[trand_below(&r, len)] ^= (uint8_t)(1u << trand_below(&r, 8));
        size_t n = trand_chance(&r, 30) ? (size_t)trand_below(&r, len + 1) : len;
        int rc = wire_decode(a, copy, n, &lim, &out);
        cr_assert(rc == TRELLIS_OK || rc == TRELLIS_MALFORMED,
                  "flip case %d: rc %d (TRELLIS_SEED=%llu)", i, rc, (unsigned long long)r.seed);
        wire_arena_reset(a);
    }
    free(copy);
    free(buf);
    wire_arena_free(a);
}

/* version 1, then a KvRequest of n empty KeyOps: 2 bytes of input per
 * KeyOp struct that protobuf-c allocates (~50x amplification). */
static uint8_t *empty_ops_message(size_t n, size_t *len)
{
    size_t body = 2 * n;
    uint8_t *buf = malloc(body + 16);
    cr_assert_not_null(buf);
    size_t k = 0;
    buf[k++] = 0x08; /* field 1 (version), varint */
    buf[k++] = 0x01;
    buf[k++] = 0x52; /* field 10 (kv), length-delimited */
    for (size_t v = body;; v >>= 7) {
        if (v < 0x80) {
            buf[k++] = (uint8_t)v;
            break;
        }
        buf[k++] = (uint8_t)(v | 0x80);
    }
    for (size_t i = 0; i < n; i++) {
        buf[k++] = 0x0a; /* KvRequest.ops, length 0 */
        buf[k++] = 0x00;
    }
    *len = k;
    return buf;
}

Test(wire, decode_budget_stops_amplification)
{
    size_t len;
    uint8_t *buf = empty_ops_message(500000, &len);
    cr_assert_gt(len, 1000000);
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope *out;
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_TOO_LARGE);
    cr_assert_null(out);
    size_t budget = 64 * 1024 + lim.budget_factor * len + lim.max_ops * 256;
    cr_assert_leq(wire_arena_used(a), budget, "used %zu over the budget %zu", wire_arena_used(a),
                  budget);
    /* Repeated failures into one arena stay bounded too: each decode gets
     * its own budget on top of what is already used, and a reset frees it. */
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_TOO_LARGE);
    cr_assert_leq(wire_arena_used(a), 2 * budget);
    wire_arena_reset(a);
    cr_assert_eq(wire_arena_used(a), 0);

    /* The same message with a budget large enough shows what was avoided. */
    wire_limits big = lim;
    big.budget_factor = 1024;
    cr_assert_eq(wire_decode(a, buf, len, &big, &out), TRELLIS_OK);
    cr_assert_eq(out->kv->n_ops, 500000);
    cr_log_info("1 MB of empty KeyOps decodes into %zu bytes", wire_arena_used(a));
    cr_assert_gt(wire_arena_used(a), 30 * len);
    wire_arena_reset(a);

    /* Above max_message nothing is decoded at all. */
    wire_limits small = lim;
    small.max_message = len - 1;
    cr_assert_eq(wire_decode(a, buf, len, &small, &out), TRELLIS_TOO_LARGE);
    cr_assert_eq(wire_arena_used(a), 0);
    free(buf);
    wire_arena_free(a);
}

/* Every batch within the limits decodes, however dense: max_ops GETs of
 * 1-byte keys, and the reply of as many results. */
Test(wire, densest_batches_within_limits_decode)
{
    wire_limits lim = limits();
    size_t n = lim.max_ops;
    Trellis__KeyOp *ops = calloc(n, sizeof(*ops));
    Trellis__KeyOp **pops = calloc(n, sizeof(*pops));
    Trellis__KeyResult *res = calloc(n, sizeof(*res));
    Trellis__KeyResult **pres = calloc(n, sizeof(*pres));
    for (size_t i = 0; i < n; i++) {
        trellis__key_op__init(&ops[i]);
        ops[i].key.data = (uint8_t *)"k";
        ops[i].key.len = 1;
        pops[i] = &ops[i];
        trellis__key_result__init(&res[i]);
        res[i].type = TRELLIS__LATTICE_TYPE__LWW;
        pres[i] = &res[i];
    }
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    wire_envelope_init(&env, 0, NULL);
    trellis__kv_request__init(&kv);
    kv.ops = pops;
    kv.n_ops = n;
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    size_t len;
    uint8_t *buf = pack(&env, &len);
    wire_arena *a = wire_arena_new();
    Trellis__Envelope *out;
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK,
                 "%zu GETs of 1-byte keys (%zu bytes) refused", n, len);
    cr_assert_eq(out->kv->n_ops, n);
    free(buf);
    wire_arena_reset(a);

    Trellis__KvReply rep;
    trellis__kv_reply__init(&rep);
    rep.results = pres;
    rep.n_results = n;
    rep.server_clock = UINT64_MAX;
    wire_envelope_init(&env, UINT64_MAX, NULL);
    env.body_case = TRELLIS__ENVELOPE__BODY_KV_REPLY;
    env.kv_reply = &rep;
    buf = pack(&env, &len);
    cr_assert_eq(wire_decode(a, buf, len, &lim, &out), TRELLIS_OK,
                 "a reply of %zu results (%zu bytes) refused", n, len);
    cr_assert_eq(out->kv_reply->n_results, n);
    free(buf);
    free(ops);
    free(pops);
    free(res);
    free(pres);
    wire_arena_free(a);
}

Test(wire, auth_compare)
{
    Trellis__Envelope env;
    wire_envelope_init(&env, 0, NULL);
    cr_assert(wire_auth_ok(&env, NULL), "authentication off");
    cr_assert(wire_auth_ok(&env, ""), "authentication off");
    cr_assert(!wire_auth_ok(&env, "tok"), "no token presented");
    static const struct {
        const char *presented;
        size_t len;
        int ok;
    } cases[] = {
        {"tok", 3, 1}, {"tol", 3, 0},    {"to", 2, 0},  {"tokk", 4, 0},        {"tok\0", 4, 0},
        {"TOK", 3, 0}, {"\0\0\0", 3, 0}, {"xok", 3, 0}, {"tok-longer", 10, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env.auth.data = (uint8_t *)cases[i].presented;
        env.auth.len = cases[i].len;
        cr_assert_eq(wire_auth_ok(&env, "tok"), cases[i].ok, "case %zu", i);
    }
    wire_envelope_init(&env, 0, "tok");
    cr_assert(wire_auth_ok(&env, "tok"));
    cr_assert(!wire_auth_ok(&env, "token"));
    cr_assert(!wire_auth_ok(&env, "to"));
}

/* The token check on undecoded bytes agrees with the check on the decoded
 * envelope whenever the bytes decode: same token, other tokens, none, a
 * repeated auth field (the last one counts), unknown fields around it. */
Test(wire, peek_auth_agrees_with_decode)
{
    trand r;
    trand_begin(&r, "wire_peek_auth");
    static const char *const tokens[] = {"tok", "token-2", "t", "tok\x01", ""};
    wire_arena *a = wire_arena_new();
    wire_limits lim = limits();
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    Trellis__KeyOp ops[3], *pops[3];
    uint8_t buf[1024];
    long checked = 0;
    for (int i = 0; i < 100000; i++) {
        build_kv(&env, &kv, ops, pops, (size_t)trand_below(&r, 4));
        const char *presented = tokens[trand_below(&r, 5)];
        env.auth.data = (uint8_t *)presented;
        env.auth.len = strlen(presented);
        size_t len = trellis__envelope__get_packed_size(&env);
        cr_assert_lt(len, sizeof(buf) / 2);
        trellis__envelope__pack(&env, buf);
        if (trand_chance(&r, 30)) {
            /* A second auth field after the body: it wins in both. */
            const char *t2 = tokens[trand_below(&r, 5)];
            buf[len++] = 0x12;
            buf[len++] = (uint8_t)strlen(t2);
            memcpy(buf + len, t2, strlen(t2));
            len += strlen(t2);
        }
        if (trand_chance(&r, 20)) {
            /* An unknown varint field (99) and a fixed64 one (100). */
            static const uint8_t unk[] = {0x98, 0x06, 0x05, 0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8};
            memcpy(buf + len, unk, sizeof(unk));
            len += sizeof(unk);
        }
        if (trand_chance(&r, 30)) {
            /* Damage: a byte flipped or the end cut off. */
            if (trand_chance(&r, 50))
                buf[trand_below(&r, len)] ^= (uint8_t)(1u << trand_below(&r, 8));
            else
                len = (size_t)trand_below(&r, len + 1);
        }
        const char *expected = tokens[trand_below(&r, 5)];
        Trellis__Envelope *out;
        wire_arena_reset(a);
        int peek = wire_peek_auth(buf, len, expected);
        if (wire_decode(a, buf, len, &lim, &out) != TRELLIS_OK)
            continue;
        checked++;
        cr_assert_eq(peek, wire_auth_ok(out, expected),
                     "case %d: peek says %d, the decoded envelope %d (TRELLIS_SEED=%llu)", i, peek,
                     wire_auth_ok(out, expected), (unsigned long long)r.seed);
    }
    cr_log_info("%ld decodable envelopes checked", checked);
    cr_assert_gt(checked, 50000);
    wire_arena_free(a);
}

Test(wire, check_key)
{
    wire_limits lim = limits();
    uint8_t big[2048] = {0};
    ProtobufCBinaryData k = {0, NULL};
    cr_assert_eq(wire_check_key(&k, &lim), TRELLIS_INVALID);
    k.data = big;
    k.len = 1;
    cr_assert_eq(wire_check_key(&k, &lim), TRELLIS_OK);
    k.len = lim.max_key;
    cr_assert_eq(wire_check_key(&k, &lim), TRELLIS_OK);
    k.len = lim.max_key + 1;
    cr_assert_eq(wire_check_key(&k, &lim), TRELLIS_TOO_LARGE);
}

Test(wire, arena_reset_and_reuse)
{
    trand r;
    trand_begin(&r, "wire_arena");
    wire_arena *a = wire_arena_new();
    cr_assert_not_null(a);
    cr_assert_eq(wire_arena_used(a), 0);
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    Trellis__KeyOp ops[64], *pops[64];
    build_kv(&env, &kv, ops, pops, 64);
    size_t len;
    uint8_t *buf = pack(&env, &len);
    wire_limits lim = limits();
    for (int round = 0; round < 2000; round++) {
        /* Caller allocations: aligned, writable, any size incl. 0 and
         * larger than a chunk. */
        size_t sizes[] = {0, 1, 7, 33, 4096, (size_t)trand_below(&r, 200000)};
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            uint8_t *p = wire_arena_alloc(a, sizes[i]);
            cr_assert_not_null(p);
            cr_assert_eq((uintptr_t)p % 16, 0, "misaligned");
            memset(p, 0xab, sizes[i]);
        }
        uint8_t *d = wire_arena_dup(a, "hello", 5);
        cr_assert(memcmp(d, "hello", 5) == 0);
        /* Decodes share the arena with those allocations. */
        int n = 1 + (int)trand_below(&r, 8);
        Trellis__Envelope *out[8], *failed;
        for (int i = 0; i < n; i++) {
            cr_assert_eq(wire_decode(a, buf, len, &lim, &out[i]), TRELLIS_OK);
            if (trand_chance(&r, 30)) /* a failure in between */
                cr_assert_eq(wire_decode(a, buf, len / 2, &lim, &failed), TRELLIS_MALFORMED);
        }
        for (int i = 0; i < n; i++)
            cr_assert_eq(out[i]->kv->n_ops, 64, "an earlier decode was overwritten");
        cr_assert_gt(wire_arena_used(a), 0);
        wire_arena_reset(a);
        cr_assert_eq(wire_arena_used(a), 0);
    }
    free(buf);
    wire_arena_free(a);
    wire_arena_free(NULL);
}

Test(wire, default_limits)
{
    wire_limits d = limits();
    cr_assert_eq(d.max_message, 4 << 20);
    cr_assert_eq(d.max_ops, 4096);
    cr_assert_eq(d.max_value, 1 << 20);
    cr_assert_eq(d.budget_factor, 16);
    cr_assert_str_eq(wire_body_name(TRELLIS__ENVELOPE__BODY_KV), "kv");
    cr_assert_str_eq(wire_body_name(999), "none");
}
