/*
 * make_seeds.c - writes the seed corpus of the fuzz harnesses: valid
 * messages of every kind, so that fuzzing starts from deep inside the
 * request paths. Run once; the output is committed under tests/fuzz/corpus.
 *   fuzz_make_seeds DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lattices/lattice.h"
#include "proto/trellis.pb-c.h"
#include "base/frame.h"
#include "base/kvop.h"
#include "base/wire.h"

static const char *outdir;
static int seq;

static void write_file(const char *sub, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", outdir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/seed-%03d", outdir, sub, seq++);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void write_env(const char *sub, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    size_t n = trellis__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    trellis__envelope__pack(env, buf);
    write_file(sub, buf, n);
    free(buf);
}

/* One state of each type, through the builders. */
static void state_of(lat_type t, lat_buf *b)
{
    lat_slice m[2] = {{(const uint8_t *)"a", 1}, {(const uint8_t *)"bb", 2}};
    switch (t) {
    case LAT_LWW:
        lat_lww_encode(1000, 7, 0, "value", 5, b);
        break;
    case LAT_SET:
        lat_set_encode(m, 2, b);
        break;
    case LAT_ORSET:
        lat_orset_add("x", 1, 7, 1000, b);
        break;
    case LAT_COUNTER:
        lat_counter_encode(7, 5, 2, b);
        break;
    case LAT_MAX:
        lat_max_encode(-42, b);
        break;
    case LAT_CAUSAL:
        lat_causal_put(NULL, 0, 7, 1, "v", 1, 0, b);
        break;
    case LAT_PRIORITY:
        lat_priority_encode(3, 7, "p", 1, b);
        break;
    case LAT_MAP:
        lat_map_set(NULL, 0, "f", 1, 7, 1000, "v", 1, b);
        break;
    default:
        b->len = 0;
        break;
    }
}

static void kv_seeds(void)
{
    lat_buf b;
    lat_buf_init(&b);
    Trellis__KeyOp ops[32];
    Trellis__KeyOp *pops[32];
    size_t n = 0;
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        state_of((lat_type)t, &b);
        uint8_t *v = malloc(b.len);
        memcpy(v, b.data, b.len);
        char *key = malloc(16);
        snprintf(key, 16, "key%d", t);
        for (int op = 0; op < 4; op++) {
            Trellis__KeyOp *o = &ops[n];
            trellis__key_op__init(o);
            o->op = (Trellis__OpCode)op;
            o->key.data = (uint8_t *)key;
            o->key.len = strlen(key);
            o->type = (Trellis__LatticeType)t;
            o->value.data = v;
            o->value.len = b.len;
            o->timestamp = 2000;
            o->writer = 9;
            pops[n] = o;
            n++;
            /* A single-op request of each kind as its own seed too. */
            Trellis__Envelope env;
            Trellis__KvRequest kv;
            trellis__envelope__init(&env);
            trellis__kv_request__init(&kv);
            kv.ops = &pops[n - 1];
            kv.n_ops = 1;
            env.body_case = TRELLIS__ENVELOPE__BODY_KV;
            env.kv = &kv;
            write_env("kvs_request", &env);
        }
    }
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    trellis__envelope__init(&env);
    trellis__kv_request__init(&kv);
    kv.ops = pops;
    kv.n_ops = n;
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    write_env("kvs_request", &env);

    /* Replication and anti-entropy. */
    Trellis__ReplicaEntry e[LAT_TYPE_LAST];
    Trellis__ReplicaEntry *pe[LAT_TYPE_LAST];
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        trellis__replica_entry__init(&e[t - 1]);
        e[t - 1].key = ops[(t - 1) * 4].key;
        e[t - 1].type = (Trellis__LatticeType)t;
        e[t - 1].state = ops[(t - 1) * 4].value;
        pe[t - 1] = &e[t - 1];
    }
    Trellis__ReplicaBatch rb;
    trellis__replica_batch__init(&rb);
    rb.entries = pe;
    rb.n_entries = LAT_TYPE_LAST;
    rb.node_id = "m2";
    rb.kind = TRELLIS__REPLICA_KIND__HANDOFF;
    rb.last = 1;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE;
    env.replicate = &rb;
    write_env("kvs_request", &env);
    Trellis__ArcDigest ad;
    Trellis__ArcDigest *pad = &ad;
    trellis__arc_digest__init(&ad);
    ad.token = 12345;
    ad.digest = 99;
    ad.count = 3;
    Trellis__KeyDigest kd;
    Trellis__KeyDigest *pkd = &kd;
    trellis__key_digest__init(&kd);
    kd.key = ops[0].key;
    kd.hash = 77;
    Trellis__DigestRequest dr;
    trellis__digest_request__init(&dr);
    dr.node_id = "m1";
    dr.arcs = &pad;
    dr.n_arcs = 1;
    trellis__envelope__init(&env);
    env.ring_epoch = 42;
    env.body_case = TRELLIS__ENVELOPE__BODY_DIGEST;
    env.digest = &dr;
    write_env("kvs_request", &env);
    dr.keys_stage = 1;
    dr.keys = &pkd;
    dr.n_keys = 1;
    write_env("kvs_request", &env);
    lat_buf_free(&b);
}

static void router_seeds(void)
{
    Trellis__NodeInfo ni;
    Trellis__NodeInfo *pni = &ni;
    trellis__node_info__init(&ni);
    ni.id = "m1";
    ni.tier = TRELLIS__TIER__MEMORY;
    ni.state = TRELLIS__NODE_STATE__ACTIVE;
    ni.generation = 5;
    ni.shards = 2;
    ni.endpoint = "tcp://127.0.0.1:6500";
    ni.admin_url = "tcp://127.0.0.1:6502";
    Trellis__NodeHello h;
    trellis__node_hello__init(&h);
    h.node = &ni;
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    write_env("router", &env);
    Trellis__RingRequest rr;
    trellis__ring_request__init(&rr);
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rr;
    write_env("router", &env);
    Trellis__KeyOverride ko;
    Trellis__KeyOverride *pko = &ko;
    trellis__key_override__init(&ko);
    ko.key.data = (uint8_t *)"hot";
    ko.key.len = 3;
    ko.memory = 3;
    ko.disk = 1;
    ko.version = 10;
    Trellis__NodeSeen ns;
    Trellis__NodeSeen *pns = &ns;
    trellis__node_seen__init(&ns);
    ns.id = "m1";
    ns.generation = 5;
    ns.age_ms = 100;
    Trellis__MembershipGossip g;
    trellis__membership_gossip__init(&g);
    g.nodes = &pni;
    g.n_nodes = 1;
    g.overrides = &pko;
    g.n_overrides = 1;
    g.seen = &pns;
    g.n_seen = 1;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_MEMBERSHIP;
    env.membership = &g;
    write_env("router", &env);
    ProtobufCBinaryData keys[2] = {{3, (uint8_t *)"abc"}, {1, (uint8_t *)"z"}};
    Trellis__LookupRequest lr;
    trellis__lookup_request__init(&lr);
    lr.keys = keys;
    lr.n_keys = 2;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_LOOKUP;
    env.lookup = &lr;
    write_env("router", &env);
    Trellis__StatsRequest sr;
    trellis__stats_request__init(&sr);
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &sr;
    write_env("router", &env);
    Trellis__Command c;
    trellis__command__init(&c);
    c.code = TRELLIS__COMMAND_CODE__CMD_SET_OVERRIDES;
    c.overrides = &pko;
    c.n_overrides = 1;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
    env.command = &c;
    write_env("router", &env);
    c.code = TRELLIS__COMMAND_CODE__CMD_MARK_DEAD;
    c.node_id = "m1";
    write_env("router", &env);
}

static void merge_seeds(void)
{
    lat_buf b;
    lat_buf_init(&b);
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        state_of((lat_type)t, &b);
        size_t n = 2 * (b.len + 1) + 3;
        uint8_t *buf = malloc(n);
        buf[0] = (uint8_t)t;
        memcpy(buf + 1, b.data, b.len);
        memcpy(buf + 1 + b.len, "\xff\xfe\xfd", 3);
        buf[4 + b.len] = (uint8_t)t;
        memcpy(buf + 5 + b.len, b.data, b.len);
        write_file("merge", buf, n);
        free(buf);
    }
    /* Stored states with expiry: a value in incarnation 2 with a deadline,
     * the register alone, and the tombstone that ends incarnation 2. */
    lat_buf v, ops[3];
    lat_buf_init(&v);
    for (int i = 0; i < 3; i++)
        lat_buf_init(&ops[i]);
    state_of(LAT_COUNTER, &v);
    lat_tagged_wrap(2, LAT_COUNTER, v.data, v.len, &ops[0]);
    lat_tagged_expiry(2, 5000, 1700000000000ULL, &ops[1]);
    lat_tagged_merge(ops[0].data, ops[0].len, ops[1].data, ops[1].len, &b, NULL);
    lat_tagged_tombstone(b.data, b.len, 1700000000000ULL, &ops[2]);
    lat_buf_set(&v, b.data, b.len);
    for (int i = 0; i < 3; i++) {
        lat_buf_reserve(&v, 3 + ops[i].len);
        memcpy(v.data + v.len, "\xff\xfe\xfd", 3);
        memcpy(v.data + v.len + 3, ops[i].data, ops[i].len);
        v.len += 3 + ops[i].len;
    }
    write_file("merge", v.data, v.len);
    lat_buf_free(&v);
    for (int i = 0; i < 3; i++)
        lat_buf_free(&ops[i]);
    lat_buf_free(&b);
}

static void config_seeds(const char *yml)
{
    FILE *f = fopen(yml, "rb");
    if (!f)
        return;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    write_file("config", buf, n);
    const char *small =
        "kvs:\n  tier: disk\n  threads: 4\ncluster:\n  routers: [tcp://a:1, tcp://b:2]\n";
    write_file("config", small, strlen(small));
}

/* Data-plane frames: a stream of HELLO, a request with every operation on
 * every type, its reply, a HELLO_REPLY and an error reply; and each alone. */
static void frame_seeds(void)
{
    static uint8_t stream[1 << 16];
    size_t at = 0;
    frame_header h = {0};
    uint8_t *p;
    /* HELLO */
    h.kind = FRAME_HELLO;
    h.length = 6;
    h.id = 1;
    frame_header_encode(&h, stream + at);
    memcpy(stream + at + FRAME_HEADER_SIZE, "secret", 6);
    write_file("frame", stream + at, FRAME_HEADER_SIZE + 6);
    at += FRAME_HEADER_SIZE + 6;
    /* REQUEST */
    lat_buf b;
    lat_buf_init(&b);
    size_t start = at;
    p = stream + at + FRAME_HEADER_SIZE;
    uint32_t n = 0;
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        state_of((lat_type)t, &b);
        for (int op = 0; op < FRAME_OP_COUNT; op++) {
            char key[16];
            snprintf(key, sizeof(key), "key%d", t);
            size_t kl = strlen(key), vl = op == FRAME_OP_DELETE ? FRAME_DELETE_ARG : b.len;
            p = frame_put_op_header(p, (uint8_t)op, (uint8_t)t, kl, vl);
            memcpy(p, key, kl);
            p += kl;
            if (op == FRAME_OP_DELETE)
                frame_put_delete_arg(p, 2000, 9);
            else
                memcpy(p, b.data, b.len);
            p += vl;
            n++;
        }
    }
    h = (frame_header){.kind = FRAME_REQUEST, .id = 2, .epoch = 42, .clock = 1000, .count = n};
    h.length = (uint32_t)(p - (stream + at + FRAME_HEADER_SIZE));
    h.flags = FRAME_F_ACK_ALL;
    frame_header_encode(&h, stream + at);
    at = (size_t)(p - stream);
    write_file("frame", stream + start, at - start);
    /* REPLY: a result of every status. */
    start = at;
    p = stream + at + FRAME_HEADER_SIZE;
    for (int st = 0; st < TRELLIS_STATUS_COUNT; st++) {
        size_t vl = st == 0 ? b.len : 0;
        p = frame_put_result_header(p, (uint8_t)st, LAT_PRIORITY, st == 0 ? 1700000000000ull : 0,
                                    vl);
        memcpy(p, b.data, vl);
        p += vl;
    }
    h = (frame_header){.kind = FRAME_REPLY, .id = 2, .epoch = 43, .clock = 1001};
    h.count = TRELLIS_STATUS_COUNT;
    h.length = (uint32_t)(p - (stream + at + FRAME_HEADER_SIZE));
    frame_header_encode(&h, stream + at);
    at = (size_t)(p - stream);
    write_file("frame", stream + start, at - start);
    /* HELLO_REPLY */
    frame_hello_info info = {4u << 20, 4096, 1024, 1u << 20, 1, 2};
    h = (frame_header){.kind = FRAME_HELLO_REPLY, .id = 1, .length = FRAME_HELLO_INFO};
    frame_header_encode(&h, stream + at);
    frame_hello_encode(&info, stream + at + FRAME_HEADER_SIZE);
    write_file("frame", stream + at, FRAME_HEADER_SIZE + FRAME_HELLO_INFO);
    at += FRAME_HEADER_SIZE + FRAME_HELLO_INFO;
    /* An error reply. */
    h = (frame_header){.kind = FRAME_REPLY, .id = 3, .status = TRELLIS_OVERLOADED, .length = 10};
    frame_header_encode(&h, stream + at);
    memcpy(stream + at + FRAME_HEADER_SIZE, "queue full", 10);
    write_file("frame", stream + at, FRAME_HEADER_SIZE + 10);
    at += FRAME_HEADER_SIZE + 10;
    write_file("frame", stream, at);
    lat_buf_free(&b);
}

/* The operations of expiry, maps and key-space walks (arguments in
 * values, base/kvop.h): one request of each, and one with all of them on
 * one key, so that the fuzzer starts inside their decoders and writes. */
static void ttlmap_seeds(void)
{
    lat_buf lww, cnt;
    lat_buf_init(&lww);
    lat_buf_init(&cnt);
    state_of(LAT_LWW, &lww);
    state_of(LAT_COUNTER, &cnt);
    uint8_t px_lww[KVOP_PUT_EX_HEADER + 64], px_cnt[KVOP_PUT_EX_HEADER + 64];
    kvop_put_ex_header(px_lww, KVOP_PX_DEADLINE, 1800000000000ull, 0);
    memcpy(px_lww + KVOP_PUT_EX_HEADER, lww.data, lww.len);
    kvop_put_ex_header(px_cnt, KVOP_PX_EPOCH | KVOP_PX_KEEPTTL, 0, 0);
    memcpy(px_cnt + KVOP_PUT_EX_HEADER, cnt.data, cnt.len);
    uint8_t ms[64], *w = kvop_map_set_header(ms, 0, 1000, 7, 2);
    w = kvop_map_put_pair(w, "f", 1, "v", 1);
    w = kvop_map_put_pair(w, "n", 1, "41", 2);
    size_t mslen = (size_t)(w - ms);
    lat_slice f = {(const uint8_t *)"f", 1};
    lat_buf rm;
    lat_buf_init(&rm);
    lat_set_encode(&f, 1, &rm);
    uint8_t cond = KVOP_EXPIRE_GT;
    uint8_t scan[KVOP_SCAN_HEADER + 4], scan_count[KVOP_SCAN_HEADER];
    kvop_scan sa = {KVOP_SCAN_PRIMARY, 0, 0, UINT64_MAX, 10, (const uint8_t *)"key*", 4};
    kvop_scan_encode(scan, &sa);
    kvop_scan sc = {KVOP_SCAN_COUNT_ONLY, LAT_MAP, 0, UINT64_MAX, 100, NULL, 0};
    kvop_scan_encode(scan_count, &sc);
    struct {
        Trellis__OpCode op;
        Trellis__LatticeType type;
        const char *key;
        const void *value;
        size_t vlen;
    } want[] = {
        {TRELLIS__OP_CODE__PUT_EX, TRELLIS__LATTICE_TYPE__LWW, "ttl", px_lww,
         KVOP_PUT_EX_HEADER + lww.len},
        {TRELLIS__OP_CODE__HEAD, TRELLIS__LATTICE_TYPE__LATTICE_NONE, "ttl", NULL, 0},
        {TRELLIS__OP_CODE__EXPIRE, TRELLIS__LATTICE_TYPE__LATTICE_NONE, "ttl", &cond, 1},
        {TRELLIS__OP_CODE__PUT_EX, TRELLIS__LATTICE_TYPE__COUNTER, "hits", px_cnt,
         KVOP_PUT_EX_HEADER + cnt.len},
        {TRELLIS__OP_CODE__MAP_SET, TRELLIS__LATTICE_TYPE__MAP, "h", ms, mslen},
        {TRELLIS__OP_CODE__REMOVE, TRELLIS__LATTICE_TYPE__MAP, "h", rm.data, rm.len},
        {TRELLIS__OP_CODE__SCAN, TRELLIS__LATTICE_TYPE__LATTICE_NONE, "", scan, sizeof(scan)},
        {TRELLIS__OP_CODE__SCAN, TRELLIS__LATTICE_TYPE__LATTICE_NONE, "", scan_count,
         sizeof(scan_count)},
    };
    size_t n = sizeof(want) / sizeof(want[0]);
    Trellis__KeyOp ops[sizeof(want) / sizeof(want[0])];
    Trellis__KeyOp *pops[sizeof(want) / sizeof(want[0])];
    for (size_t i = 0; i < n; i++) {
        Trellis__KeyOp *o = &ops[i];
        trellis__key_op__init(o);
        o->op = want[i].op;
        o->type = want[i].type;
        o->key.data = (uint8_t *)want[i].key;
        o->key.len = strlen(want[i].key);
        o->value.data = (uint8_t *)want[i].value;
        o->value.len = want[i].vlen;
        if (want[i].op == TRELLIS__OP_CODE__EXPIRE) {
            o->timestamp = 3000;
            o->deadline_ms = 1900000000000ull;
        }
        pops[i] = o;
    }
    Trellis__Envelope env;
    Trellis__KvRequest kv;
    for (size_t i = 0; i <= n; i++) {
        trellis__envelope__init(&env);
        trellis__kv_request__init(&kv);
        kv.ops = i < n ? &pops[i] : pops; /* each alone, then all in one request */
        kv.n_ops = i < n ? 1 : n;
        env.body_case = TRELLIS__ENVELOPE__BODY_KV;
        env.kv = &kv;
        write_env("kvs_request", &env);
    }
    lat_buf_free(&lww);
    lat_buf_free(&cnt);
    lat_buf_free(&rm);
}

/* A client's bytes on a shard's data-plane connection (the kvs_request
 * harness sends inputs that start with a frame there): a request of every
 * operation on every type, each alone and all in one, then a HELLO
 * followed by two requests in one stream; and a peer's fetch on the nng
 * socket. */
static void shard_frame_seeds(void)
{
    static uint8_t buf[1 << 16];
    lat_buf b;
    lat_buf_init(&b);
    uint8_t *all = buf + FRAME_HEADER_SIZE, *p = all;
    uint32_t n = 0;
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        state_of((lat_type)t, &b);
        for (int op = FRAME_OP_GET; op <= FRAME_OP_HEAD; op++) {
            char key[16];
            snprintf(key, sizeof(key), "key%d", t);
            uint8_t arg[FRAME_EXPIRE_ARG + 1];
            const uint8_t *v = b.data;
            size_t kl = strlen(key), vl = b.len;
            if (op == FRAME_OP_DELETE) {
                frame_put_delete_arg(arg, 2000, 9);
                v = arg;
                vl = FRAME_DELETE_ARG;
            } else if (op == FRAME_OP_EXPIRE) {
                vl = kvop_expire_arg_encode(arg, 1900000000000ull, 3000, KVOP_EXPIRE_GT);
                v = arg;
            } else if (op == FRAME_OP_GET || op == FRAME_OP_HEAD) {
                vl = 0;
            }
            uint8_t *one = p;
            p = frame_put_op_header(p, (uint8_t)op, (uint8_t)t, kl, vl);
            memcpy(p, key, kl);
            p += kl;
            memcpy(p, v, vl);
            p += vl;
            n++;
            /* Each alone too. */
            static uint8_t single[4096];
            size_t ol = (size_t)(p - one);
            frame_header h = {.kind = FRAME_REQUEST, .id = n, .epoch = 1, .clock = 1000};
            h.count = 1;
            h.length = (uint32_t)ol;
            frame_header_encode(&h, single);
            memcpy(single + FRAME_HEADER_SIZE, one, ol);
            write_file("kvs_request", single, FRAME_HEADER_SIZE + ol);
        }
    }
    frame_header h = {.kind = FRAME_REQUEST, .id = 100, .epoch = 1, .clock = 1000, .count = n};
    h.length = (uint32_t)(p - all);
    h.flags = FRAME_F_ACK_ALL;
    frame_header_encode(&h, buf);
    write_file("kvs_request", buf, FRAME_HEADER_SIZE + h.length);
    /* HELLO (no token), then two requests: a PUT and a GET of one key. */
    static uint8_t stream[4096];
    size_t at = 0;
    h = (frame_header){.kind = FRAME_HELLO, .id = 1};
    frame_header_encode(&h, stream);
    at += FRAME_HEADER_SIZE;
    state_of(LAT_LWW, &b);
    for (int op = FRAME_OP_PUT; op >= FRAME_OP_GET; op--) {
        size_t vl = op == FRAME_OP_PUT ? b.len : 0;
        uint8_t *q =
            frame_put_op_header(stream + at + FRAME_HEADER_SIZE, (uint8_t)op, LAT_LWW, 1, vl);
        *q++ = 'k';
        memcpy(q, b.data, vl);
        h = (frame_header){.kind = FRAME_REQUEST, .id = (uint64_t)(3 - op), .count = 1};
        h.length = (uint32_t)frame_op_size(1, vl);
        frame_header_encode(&h, stream + at);
        at += FRAME_HEADER_SIZE + h.length;
    }
    write_file("kvs_request", stream, at);
    /* A peer's fetch: whole stored states. */
    Trellis__KeyOp get;
    Trellis__KeyOp *pget = &get;
    trellis__key_op__init(&get);
    get.op = TRELLIS__OP_CODE__GET;
    get.key.data = (uint8_t *)"k";
    get.key.len = 1;
    Trellis__KvRequest kv;
    trellis__kv_request__init(&kv);
    kv.ops = &pget;
    kv.n_ops = 1;
    kv.stored = 1;
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    write_env("kvs_request", &env);
    lat_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_make_seeds OUTDIR TRELLIS_YML\n");
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    kv_seeds();
    router_seeds();
    merge_seeds();
    config_seeds(argv[2]);
    frame_seeds();
    ttlmap_seeds();      /* appended: the seeds before keep their numbers */
    shard_frame_seeds(); /* likewise */
    printf("%d seeds\n", seq);
    return 0;
}
