/*
 * test_kvs_frames.c - the data plane against real storage nodes on
 * loopback: binary frames to the shard that owns each key (placement from
 * the router's ring, as clients do). Every lattice type written and read
 * back; many requests pipelined on one connection, each answered once by
 * id; WRONG_SHARD with the shard's epoch; bad operations failing alone;
 * malformed frames (closed, or answered and the connection kept, as
 * docs/protocol.md says); authentication once per connection; large
 * values read in place; the rate cap's OVERLOADED answers; the port in
 * the membership; frames and the request/reply path sharing the store;
 * expiry, map and key-space operations with their arguments and results
 * in values, and SCAN's limits; connections closed on SIGTERM.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/kvop.h"
#include "tsupport.h"
#include "tframe.h"

static tcluster cl;
static ring *rg;
static uint64_t rg_epoch;
static tnode *mem;

#define TOKEN "frame-token-42"

/* A cluster of a router and a memory node of two shards; `extra` pairs
 * for every process (NULL-terminated, may be NULL). */
static void start(const char *name, const char *const *sets)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    for (size_t i = 0; sets && sets[i]; i++)
        tcluster_set(&cl, sets[i]);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    mem = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(mem, "memory node did not start");
    CHECK(tcluster_wait_state(&cl, mem, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, &rg_epoch) == TRELLIS_OK, "no ring");
}

static void setup(void)
{
    start("frames", NULL);
}

static void teardown(void)
{
    ring_free(rg);
    rg = NULL;
    tkv_set_token(NULL);
    tcluster_fini(&cl);
}

TestSuite(kvs_frames, .init = setup, .fini = teardown, .timeout = 90);

static tframe *conn_for(const char *key)
{
    tframe *t;
    CHECK(tframe_connect_key(rg, RING_TIER_MEMORY, 0, key, strlen(key), &t) == TRELLIS_OK,
          "no data-plane connection for %s", key);
    return t;
}

static tframe_op op_get(const char *key, uint8_t type)
{
    return (tframe_op){FRAME_OP_GET, type, key, strlen(key), NULL, 0};
}

static tframe_op op_put(const char *key, uint8_t type, const lat_buf *v)
{
    return (tframe_op){FRAME_OP_PUT, type, key, strlen(key), v->data, v->len};
}

Test(kvs_frames, the_node_advertises_its_data_port)
{
    int idx = ring_find_node(rg, mem->id);
    CHECK(idx >= 0, "node not in the ring");
    const ring_node *rn = ring_node_at(rg, (size_t)idx);
    cr_assert_eq(rn->data_port, (uint32_t)tcluster_node_data_port(mem, 0));
    char host[64];
    int port, tls;
    cr_assert_eq(ring_shard_data_addr(rn, 1, host, sizeof(host), &port, &tls), TRELLIS_OK);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, tcluster_node_data_port(mem, 1));
    cr_assert_eq(tls, 0);
}

Test(kvs_frames, every_type_written_and_read_back)
{
    lat_buf v;
    lat_buf_init(&v);
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        char key[32];
        snprintf(key, sizeof(key), "frame-type-%d", t);
        cr_assert_eq(tkv_sample((lat_type)t, 7, 1, &v), TRELLIS_OK);
        tframe *c = conn_for(key);
        tframe_op ops[2] = {op_put(key, (uint8_t)t, &v), op_get(key, 0)};
        tframe_reply r;
        CHECK(tframe_call(c, ops, 2, 0, &r) == TRELLIS_OK, "no reply for type %d", t);
        cr_assert_eq(r.h.status, TRELLIS_OK);
        cr_assert_eq(r.h.epoch, rg_epoch, "the reply carries the shard's epoch");
        cr_assert_neq(r.h.clock, 0, "and its clock");
        cr_assert_eq(r.nres, 2);
        cr_assert_eq(r.res[0].status, TRELLIS_OK, "PUT of type %d: %s", t,
                     trellis_status_name(r.res[0].status));
        cr_assert_eq(r.res[0].type, t);
        cr_assert_eq(r.res[1].status, TRELLIS_OK);
        cr_assert_eq(r.res[1].type, t);
        cr_assert_eq(r.res[1].vlen, v.len, "type %d: %zu bytes read, %zu written", t, r.res[1].vlen,
                     v.len);
        cr_assert(memcmp(r.res[1].value, v.data, v.len) == 0, "type %d: the state read back", t);
        tframe_reply_free(&r);
        tframe_close(c);
    }
    lat_buf_free(&v);
}

/* Keys that all live on shard `shard` of the node. */
static size_t keys_of_shard(uint32_t shard, size_t n, char (*keys)[32])
{
    size_t k = 0;
    for (int i = 0; k < n && i < 100000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "pipe-%d", i);
        if (ring_local_shard(key, strlen(key), 2) == shard)
            snprintf(keys[k++], 32, "%s", key);
    }
    return k;
}

Test(kvs_frames, pipelined_requests_are_each_answered_once)
{
    enum { N = 300 };
    char(*keys)[32] = calloc(N, 32);
    cr_assert_eq(keys_of_shard(1, N, keys), N);
    tframe *c;
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 1, &c) == TRELLIS_OK, "connect");
    lat_buf v;
    lat_buf_init(&v);
    /* Every request goes out before any reply is read. */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tkv_sample(LAT_LWW, 3, (uint64_t)i, &v), TRELLIS_OK);
        tframe_op ops[2] = {op_put(keys[i], LAT_LWW, &v), op_get(keys[i], LAT_LWW)};
        cr_assert_eq(tframe_request(c, 1000 + (uint64_t)i, rg_epoch, 0, ops, 2), TRELLIS_OK);
    }
    uint8_t *seen = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        tframe_reply r;
        CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "reply %d missing", i);
        cr_assert_eq(r.h.kind, FRAME_REPLY);
        cr_assert(r.h.id >= 1000 && r.h.id < 1000 + N, "id %llu", (unsigned long long)r.h.id);
        size_t k = r.h.id - 1000;
        cr_assert_not(seen[k], "request %zu answered twice", k);
        seen[k] = 1;
        cr_assert_eq(r.nres, 2);
        cr_assert_eq(r.res[0].status, TRELLIS_OK);
        cr_assert_eq(r.res[1].status, TRELLIS_OK);
        cr_assert_eq(tkv_sample(LAT_LWW, 3, k, &v), TRELLIS_OK);
        cr_assert(r.res[1].vlen == v.len && memcmp(r.res[1].value, v.data, v.len) == 0);
        tframe_reply_free(&r);
    }
    free(seen);
    free(keys);
    lat_buf_free(&v);
    tframe_close(c);
}

Test(kvs_frames, wrong_shard_carries_the_shards_epoch)
{
    char keys[1][32];
    cr_assert_eq(keys_of_shard(0, 1, keys), 1);
    tframe *c;
    /* A key of shard 0 sent to shard 1. */
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 1, &c) == TRELLIS_OK, "connect");
    tframe_op op = op_get(keys[0], 0);
    tframe_reply r;
    CHECK(tframe_call(c, &op, 1, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.res[0].status, TRELLIS_WRONG_SHARD);
    cr_assert_eq(r.h.epoch, rg_epoch);
    tframe_reply_free(&r);
    tframe_close(c);
}

Test(kvs_frames, bad_operations_fail_alone)
{
    const char *key = "frame-bad-ops";
    tframe *c = conn_for(key);
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
    size_t big = (1u << 20) + 1; /* limits.max_value_bytes + 1 */
    uint8_t *huge = calloc(1, big);
    uint8_t key_too_long[1025];
    memset(key_too_long, 'k', sizeof(key_too_long));
    tframe_op ops[] = {
        {FRAME_OP_GET, 0, "", 0, NULL, 0},                              /* empty key */
        {FRAME_OP_GET, 0, key_too_long, sizeof(key_too_long), NULL, 0}, /* key over the limit */
        {FRAME_OP_PUT, LAT_SET, key, strlen(key), huge, big},           /* value over the limit */
        {9, 0, key, strlen(key), NULL, 0},                              /* unknown op */
        {FRAME_OP_DELETE, 0, key, strlen(key), "abc", 3},        /* DELETE arg not 16 bytes */
        {FRAME_OP_PUT, LAT_LWW, key, strlen(key), "garbage", 7}, /* not an LWW state */
        {FRAME_OP_PUT, 99, key, strlen(key), v.data, v.len},     /* unknown type */
        op_put(key, LAT_LWW, &v),                                /* fine */
        {FRAME_OP_PUT, LAT_MAX, key, strlen(key), "\0\0\0\0\0\0\0\1", 8}, /* another type */
        op_get(key, LAT_LWW),                                             /* fine */
    };
    const int want[] = {TRELLIS_INVALID,   TRELLIS_TOO_LARGE, TRELLIS_TOO_LARGE,
                        TRELLIS_MALFORMED, TRELLIS_MALFORMED, TRELLIS_MALFORMED,
                        TRELLIS_MALFORMED, TRELLIS_OK,        TRELLIS_LATTICE_MISMATCH,
                        TRELLIS_OK};
    size_t n = sizeof(ops) / sizeof(ops[0]);
    tframe_reply r;
    CHECK(tframe_call(c, ops, n, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.nres, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(r.res[i].status, want[i], "operation %zu: %s, not %s", i,
                     trellis_status_name(r.res[i].status), trellis_status_name(want[i]));
    cr_assert_eq(r.res[8].type, LAT_LWW, "a mismatch names the key's type");
    cr_assert(r.res[9].vlen == v.len && memcmp(r.res[9].value, v.data, v.len) == 0);
    tframe_reply_free(&r);
    free(huge);
    lat_buf_free(&v);
    tframe_close(c);
}

/* A request whose operations do not fill its body. */
static void send_short_body(tframe *c, uint64_t id)
{
    uint8_t buf[FRAME_HEADER_SIZE + FRAME_OP_HEADER + 4];
    frame_header h = {.kind = FRAME_REQUEST, .length = FRAME_OP_HEADER + 4, .id = id, .count = 1};
    frame_header_encode(&h, buf);
    frame_put_op_header(buf + FRAME_HEADER_SIZE, FRAME_OP_GET, 0, 10, 0); /* 10 > 4 */
    memcpy(buf + FRAME_HEADER_SIZE + FRAME_OP_HEADER, "abcd", 4);
    cr_assert_eq(tframe_send_raw(c, buf, sizeof(buf)), TRELLIS_OK);
}

/* Sends the header h alone on a new connection to key's shard: the shard
 * answers `status` for h's id (no answer when status is OK) and closes
 * the connection. */
static void expect_refused(const char *key, const frame_header *h, int status)
{
    tframe *c = conn_for(key);
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_header_encode(h, hdr);
    tframe_send_raw(c, hdr, sizeof(hdr));
    if (status != TRELLIS_OK) {
        tframe_reply r;
        CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no answer");
        cr_assert_eq(r.h.id, h->id);
        cr_assert_eq(r.h.status, status, "%s, not %s", trellis_status_name(r.h.status),
                     trellis_status_name(status));
        tframe_reply_free(&r);
    }
    cr_assert(tframe_closed(c, TFRAME_TIMEOUT_MS), "the connection stays open");
    tframe_close(c);
}

Test(kvs_frames, malformed_frames)
{
    const char *key = "frame-malformed";
    tframe_reply r;
    /* Operations that do not add up: MALFORMED for that id, and the
     * connection goes on. */
    tframe *c = conn_for(key);
    send_short_body(c, 77);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no answer");
    cr_assert_eq(r.h.id, 77);
    cr_assert_eq(r.h.status, TRELLIS_MALFORMED);
    cr_assert_eq(r.h.count, 0);
    tframe_reply_free(&r);
    tframe_op op = op_get(key, 0);
    CHECK(tframe_call(c, &op, 1, 0, &r) == TRELLIS_OK, "the connection went on");
    cr_assert_eq(r.res[0].status, TRELLIS_NOT_FOUND);
    tframe_reply_free(&r);
    tframe_close(c);

    /* A header that is not one: closed. */
    c = conn_for(key);
    uint8_t junk[FRAME_HEADER_SIZE];
    memset(junk, '*', sizeof(junk));
    tframe_send_raw(c, junk, sizeof(junk));
    cr_assert(tframe_closed(c, TFRAME_TIMEOUT_MS), "a bad magic closes the connection");
    tframe_close(c);

    /* A length over limits.max_message_bytes: TOO_LARGE for that id, then
     * closed, the body never read. More operations than
     * limits.max_ops_per_batch: likewise. A frame a shard does not take (a
     * reply): closed. */
    frame_header big = {.kind = FRAME_REQUEST, .length = (8u << 20), .id = 5, .count = 1};
    expect_refused(key, &big, TRELLIS_TOO_LARGE);
    frame_header many = {.kind = FRAME_REQUEST, .length = 8 * 5000, .id = 6, .count = 5000};
    expect_refused(key, &many, TRELLIS_TOO_LARGE);
    frame_header reply = {.kind = FRAME_REPLY, .id = 1};
    expect_refused(key, &reply, TRELLIS_OK);

    /* The node still serves. */
    c = conn_for(key);
    CHECK(tframe_call(c, &op, 1, 0, &r) == TRELLIS_OK, "the node stopped serving");
    tframe_reply_free(&r);
    tframe_close(c);
}

Test(kvs_frames, large_values_leave_from_the_store)
{
    enum { N = 16, SZ = 32 << 10 };
    char(*keys)[32] = calloc(N, 32);
    cr_assert_eq(keys_of_shard(0, N, keys), N);
    tframe *c;
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 0, &c) == TRELLIS_OK, "connect");
    lat_buf v[N];
    uint8_t *raw = malloc(SZ);
    tframe_op puts[N], gets[N];
    for (int i = 0; i < N; i++) {
        lat_buf_init(&v[i]);
        memset(raw, 'a' + i, SZ);
        cr_assert_eq(lat_lww_encode(1000 + (uint64_t)i, 9, 0, raw, SZ, &v[i]), TRELLIS_OK);
        puts[i] = op_put(keys[i], LAT_LWW, &v[i]);
        gets[i] = op_get(keys[i], LAT_LWW);
    }
    tframe_reply r;
    CHECK(tframe_call(c, puts, N, 0, &r) == TRELLIS_OK, "puts");
    for (int i = 0; i < N; i++)
        cr_assert_eq(r.res[i].status, TRELLIS_OK);
    tframe_reply_free(&r);
    /* Reads of large states, pipelined several times over. */
    for (int rep = 0; rep < 4; rep++)
        cr_assert_eq(tframe_request(c, 500 + (uint64_t)rep, 0, 0, gets, N), TRELLIS_OK);
    for (int rep = 0; rep < 4; rep++) {
        CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "gets");
        cr_assert_eq(r.nres, N);
        for (int i = 0; i < N; i++) {
            cr_assert_eq(r.res[i].status, TRELLIS_OK);
            cr_assert(r.res[i].vlen == v[i].len && memcmp(r.res[i].value, v[i].data, v[i].len) == 0,
                      "value %d of read %d", i, rep);
        }
        tframe_reply_free(&r);
    }
    /* A read, a write of the same key and a read again in one request: the
     * first read keeps the state it saw. */
    lat_buf newer;
    lat_buf_init(&newer);
    memset(raw, 'z', SZ);
    cr_assert_eq(lat_lww_encode(5000, 9, 0, raw, SZ, &newer), TRELLIS_OK);
    tframe_op mixed[3] = {gets[0], op_put(keys[0], LAT_LWW, &newer), gets[0]};
    CHECK(tframe_call(c, mixed, 3, 0, &r) == TRELLIS_OK, "mixed");
    cr_assert(r.res[0].vlen == v[0].len && memcmp(r.res[0].value, v[0].data, v[0].len) == 0,
              "the read before the write");
    cr_assert_eq(r.res[1].status, TRELLIS_OK);
    cr_assert(r.res[2].vlen == newer.len && memcmp(r.res[2].value, newer.data, newer.len) == 0,
              "the read after it");
    tframe_reply_free(&r);
    for (int i = 0; i < N; i++)
        lat_buf_free(&v[i]);
    lat_buf_free(&newer);
    free(raw);
    free(keys);
    tframe_close(c);
}

Test(kvs_frames, frames_and_the_request_reply_path_share_the_store)
{
    const char *key = "frame-shared";
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_ORSET, 4, 2, &v), TRELLIS_OK);
    tframe *c = conn_for(key);
    tframe_op op = op_put(key, LAT_ORSET, &v);
    tframe_reply r;
    CHECK(tframe_call(c, &op, 1, FRAME_F_ACK_ALL, &r) == TRELLIS_OK, "put");
    cr_assert_eq(r.res[0].status, TRELLIS_OK);
    tframe_reply_free(&r);
    char url[RING_MAX_URL + 1];
    cr_assert_eq(tkv_replica_url(rg, RING_TIER_MEMORY, 0, key, strlen(key), url, sizeof(url)),
                 TRELLIS_OK);
    wire_arena *a = wire_arena_new();
    Trellis__KeyOp *g = tkv_op_get(a, key, strlen(key), LAT_ORSET);
    Trellis__KvReply *rep;
    CHECK(tkv_batch(url, &g, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK,
          "get on a connection of its own");
    cr_assert_eq(rep->results[0]->status, TRELLIS__STATUS__OK);
    cr_assert(rep->results[0]->value.len == v.len &&
              memcmp(rep->results[0]->value.data, v.data, v.len) == 0);
    wire_arena_free(a);
    lat_buf_free(&v);
    tframe_close(c);
}

/* The operations of expiry, maps and key-space walks carry their
 * arguments and results in values (base/kvop.h): the same bytes on frames
 * as on the request/reply path. Bad arguments fail alone and change
 * nothing. */
Test(kvs_frames, expiry_maps_and_scan_travel_in_frames)
{
    const char *key = "frame-ttl", *mkey = "frame-map";
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_LWW, 3, 1, &v), TRELLIS_OK);
    uint64_t now = clock_wall_us() / 1000, deadline = now + 600000;
    uint8_t nx[KVOP_EXPIRE_ARG_MAX], bad_cond[KVOP_EXPIRE_ARG_MAX],
        too_long[KVOP_EXPIRE_ARG_MAX + 1];
    size_t nxlen = kvop_expire_arg_encode(nx, deadline, 0, KVOP_EXPIRE_NX);
    cr_assert_eq(nxlen, KVOP_EXPIRE_ARG_MAX);
    memcpy(bad_cond, nx, sizeof(nx));
    bad_cond[FRAME_EXPIRE_ARG] = KVOP_EXPIRE_LT + 1;
    memcpy(too_long, nx, sizeof(nx));
    too_long[KVOP_EXPIRE_ARG_MAX] = 0;
    tframe *c = conn_for(key);
    tframe_op ops[] = {
        op_put(key, LAT_LWW, &v),
        {FRAME_OP_EXPIRE, 0, key, strlen(key), bad_cond, sizeof(bad_cond)}, /* unknown condition */
        {FRAME_OP_EXPIRE, 0, key, strlen(key), too_long, sizeof(too_long)}, /* 18 bytes */
        {FRAME_OP_HEAD, 0, key, strlen(key), NULL, 0},                      /* no deadline yet */
        {FRAME_OP_EXPIRE, 0, key, strlen(key), nx, nxlen},
        {FRAME_OP_EXPIRE, 0, key, strlen(key), nx, nxlen}, /* NX: it has one now */
        {FRAME_OP_HEAD, 0, key, strlen(key), NULL, 0},
        op_get(key, 0),
    };
    const int want[] = {TRELLIS_OK, TRELLIS_MALFORMED, TRELLIS_MALFORMED, TRELLIS_OK,
                        TRELLIS_OK, TRELLIS_OK,        TRELLIS_OK,        TRELLIS_OK};
    size_t n = sizeof(ops) / sizeof(ops[0]);
    tframe_reply r;
    CHECK(tframe_call(c, ops, n, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.nres, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(r.res[i].status, want[i], "operation %zu: %s, not %s", i,
                     trellis_status_name(r.res[i].status), trellis_status_name(want[i]));
    uint64_t d, prev;
    int applied;
    cr_assert_eq(kvop_head_result_decode(r.res[3].value, r.res[3].vlen, &d), TRELLIS_OK);
    cr_assert_eq(d, 0, "the bad EXPIREs changed nothing");
    cr_assert_eq(r.res[3].type, LAT_LWW);
    cr_assert_eq(kvop_expire_result_decode(r.res[4].value, r.res[4].vlen, &prev, &applied),
                 TRELLIS_OK);
    cr_assert(prev == 0 && applied == 1, "EXPIRE NX: had %llu, applied %d",
              (unsigned long long)prev, applied);
    cr_assert_eq(kvop_expire_result_decode(r.res[5].value, r.res[5].vlen, &prev, &applied),
                 TRELLIS_OK);
    cr_assert(prev == deadline && applied == 0, "EXPIRE NX again: had %llu, applied %d",
              (unsigned long long)prev, applied);
    cr_assert_eq(kvop_head_result_decode(r.res[6].value, r.res[6].vlen, &d), TRELLIS_OK);
    cr_assert_eq(d, deadline);
    cr_assert_eq(r.res[7].deadline_ms, deadline, "GET carries the deadline");
    cr_assert(r.res[7].vlen == v.len && memcmp(r.res[7].value, v.data, v.len) == 0);
    tframe_reply_free(&r);
    tframe_close(c);

    /* PUT_EX with a deadline; MAP_SET and REMOVE of fields; SCAN of the
     * shard by pattern and type. */
    uint8_t px[KVOP_PUT_EX_HEADER + 64];
    cr_assert(v.len <= 64);
    kvop_put_ex_header(px, KVOP_PX_DEADLINE, deadline + 1, 0);
    memcpy(px + KVOP_PUT_EX_HEADER, v.data, v.len);
    size_t nlen[2] = {2, 2}, vlen[2] = {3, 1};
    uint8_t ms[64];
    cr_assert(kvop_map_set_size(nlen, vlen, 2) <= sizeof(ms));
    uint8_t *w = kvop_map_set_header(ms, 0, 7, 42, 2);
    w = kvop_map_put_pair(w, "f1", 2, "one", 3);
    w = kvop_map_put_pair(w, "f2", 2, "2", 1);
    size_t mslen = (size_t)(w - ms);
    lat_slice gone = {(const uint8_t *)"f1", 2};
    lat_buf rm;
    lat_buf_init(&rm);
    cr_assert_eq(lat_set_encode(&gone, 1, &rm), TRELLIS_OK);
    kvop_scan sa = {0, 0, 0, UINT64_MAX, 1000, (const uint8_t *)mkey, strlen(mkey)};
    uint8_t scan[KVOP_SCAN_HEADER + 16], scan_lww[KVOP_SCAN_HEADER + 16];
    kvop_scan_encode(scan, &sa);
    sa.type = LAT_LWW;
    kvop_scan_encode(scan_lww, &sa);
    size_t scanlen = KVOP_SCAN_HEADER + strlen(mkey);
    c = conn_for(mkey);
    tframe_op ops2[] = {
        {FRAME_OP_MAP_SET, LAT_MAP, mkey, strlen(mkey), ms, mslen - 1}, /* a pair cut short */
        {FRAME_OP_MAP_SET, LAT_MAP, mkey, strlen(mkey), ms, mslen},
        {FRAME_OP_REMOVE, LAT_MAP, mkey, strlen(mkey), rm.data, rm.len},
        {FRAME_OP_SCAN, 0, mkey, strlen(mkey), scan, scanlen},       /* SCAN takes no key */
        {FRAME_OP_SCAN, 0, "", 0, scan, scanlen - 1 - strlen(mkey)}, /* short */
        {FRAME_OP_SCAN, 0, "", 0, scan, scanlen},
        {FRAME_OP_SCAN, 0, "", 0, scan_lww, scanlen},
        {FRAME_OP_PUT_EX, LAT_LWW, mkey, strlen(mkey), px, KVOP_PUT_EX_HEADER + v.len},
        op_get(mkey, LAT_MAP),
    };
    const int want2[] = {TRELLIS_MALFORMED, TRELLIS_OK, TRELLIS_OK, TRELLIS_MALFORMED,
                         TRELLIS_MALFORMED, TRELLIS_OK, TRELLIS_OK, TRELLIS_LATTICE_MISMATCH,
                         TRELLIS_OK};
    n = sizeof(ops2) / sizeof(ops2[0]);
    CHECK(tframe_call(c, ops2, n, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.nres, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(r.res[i].status, want2[i], "operation %zu: %s, not %s", i,
                     trellis_status_name(r.res[i].status), trellis_status_name(want2[i]));
    uint32_t count;
    cr_assert_eq(kvop_count_result_decode(r.res[1].value, r.res[1].vlen, &count), TRELLIS_OK);
    cr_assert_eq(count, 2, "HSET added %u fields", count);
    cr_assert_eq(kvop_count_result_decode(r.res[2].value, r.res[2].vlen, &count), TRELLIS_OK);
    cr_assert_eq(count, 1, "HDEL removed %u fields", count);
    kvop_scan_result sr;
    cr_assert_eq(kvop_scan_result_decode(r.res[5].value, r.res[5].vlen, 0, &sr), TRELLIS_OK);
    cr_assert(sr.done && sr.nkeys == 1, "SCAN: done %d, %u keys", sr.done, sr.nkeys);
    const uint8_t *k;
    size_t kl;
    cr_assert_eq(kvop_scan_next_key(&sr, &k, &kl), 1);
    cr_assert(kl == strlen(mkey) && memcmp(k, mkey, kl) == 0);
    cr_assert_eq(kvop_scan_result_decode(r.res[6].value, r.res[6].vlen, 0, &sr), TRELLIS_OK);
    cr_assert(sr.done && sr.nkeys == 0, "SCAN TYPE string found %u keys", sr.nkeys);
    cr_assert_eq(r.res[7].type, LAT_MAP, "the mismatch names the map");
    lat_map_field f;
    cr_assert(!lat_map_get(r.res[8].value, r.res[8].vlen, "f1", 2, &f), "f1 was removed");
    cr_assert(lat_map_get(r.res[8].value, r.res[8].vlen, "f2", 2, &f) && f.value.len == 1 &&
              f.value.data[0] == '2');
    cr_assert_eq(r.res[8].deadline_ms, 0, "the refused PUT_EX set no deadline");
    tframe_reply_free(&r);

    /* A pattern over KVOP_SCAN_MAX_PATTERN is refused; a count over
     * KVOP_SCAN_MAX_COUNT is taken as that. */
    size_t plen = KVOP_SCAN_MAX_PATTERN + 1;
    uint8_t *long_scan = malloc(KVOP_SCAN_HEADER + plen);
    cr_assert_not_null(long_scan);
    memset(long_scan + KVOP_SCAN_HEADER, '*', plen);
    kvop_scan la = {0, 0, 0, UINT64_MAX, 10, long_scan + KVOP_SCAN_HEADER, plen};
    kvop_scan_encode(long_scan, &la);
    sa.type = 0;
    sa.count = UINT32_MAX;
    kvop_scan_encode(scan, &sa);
    tframe_op ops3[] = {
        {FRAME_OP_SCAN, 0, "", 0, long_scan, KVOP_SCAN_HEADER + plen},
        {FRAME_OP_SCAN, 0, "", 0, long_scan, KVOP_SCAN_HEADER + plen - 1}, /* at the limit */
        {FRAME_OP_SCAN, 0, "", 0, scan, scanlen},
    };
    CHECK(tframe_call(c, ops3, 3, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.nres, 3);
    cr_assert_eq(r.res[0].status, TRELLIS_TOO_LARGE, "a long pattern: %s",
                 trellis_status_name(r.res[0].status));
    cr_assert_eq(r.res[1].status, TRELLIS_OK, "a pattern at the limit: %s",
                 trellis_status_name(r.res[1].status));
    cr_assert_eq(r.res[2].status, TRELLIS_OK);
    cr_assert_eq(kvop_scan_result_decode(r.res[2].value, r.res[2].vlen, 0, &sr), TRELLIS_OK);
    cr_assert(sr.done && sr.nkeys == 1, "SCAN with the largest count: done %d, %u keys", sr.done,
              sr.nkeys);
    tframe_reply_free(&r);
    free(long_scan);
    tframe_close(c);
    lat_buf_free(&rm);
    lat_buf_free(&v);
}

Test(kvs_frames, sigterm_closes_the_connections)
{
    tframe *c = conn_for("frame-term");
    int status = -1;
    CHECK(tproc_stop(mem->p, 20000, &status) == 0, "the node did not stop by itself");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    cr_assert(tframe_closed(c, TFRAME_TIMEOUT_MS), "the connection was closed");
    tframe_close(c);
}

/* ---- a cluster with a token ----------------------------------------------------------------- */

static void setup_token(void)
{
    cr_assert_eq(tcluster_init(&cl, "frames-auth"), 0);
    cr_assert_eq(tcluster_set_token(&cl, TOKEN), 0);
    tcluster_set(&cl, "limits.unauth_message_bytes=4KiB");
    tcluster_set(&cl, "limits.handshake_ms=600");
    tkv_set_token(TOKEN);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    mem = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(mem, "memory node did not start");
    CHECK(tcluster_wait_state(&cl, mem, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, &rg_epoch) == TRELLIS_OK, "no ring");
}

TestSuite(kvs_frames_auth, .init = setup_token, .fini = teardown, .timeout = 90);

Test(kvs_frames_auth, once_per_connection)
{
    const char *key = "frame-auth";
    tframe_op op = op_get(key, 0);
    tframe_reply r;

    /* A request before any HELLO: refused, closed. */
    tframe *c = conn_for(key);
    CHECK(tframe_call(c, &op, 1, 0, &r) == TRELLIS_OK, "no answer");
    cr_assert_eq(r.h.status, TRELLIS_UNAUTHORIZED);
    tframe_reply_free(&r);
    cr_assert(tframe_closed(c, TFRAME_TIMEOUT_MS));
    tframe_close(c);

    /* A wrong token: refused, closed. */
    c = conn_for(key);
    cr_assert_eq(tframe_hello(c, 9, "not-" TOKEN), TRELLIS_OK);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no answer");
    cr_assert_eq(r.h.kind, FRAME_HELLO_REPLY);
    cr_assert_eq(r.h.id, 9);
    cr_assert_eq(r.h.status, TRELLIS_UNAUTHORIZED);
    tframe_reply_free(&r);
    cr_assert(tframe_closed(c, TFRAME_TIMEOUT_MS));
    tframe_close(c);

    /* Before authentication a large frame closes the connection unread. */
    frame_header h = {.kind = FRAME_REQUEST, .length = 64 << 10, .id = 3, .count = 1};
    expect_refused(key, &h, TRELLIS_UNAUTHORIZED);

    /* The token, with requests right behind it in the same write: all
     * served; the HELLO_REPLY carries the shard's limits. */
    c = conn_for(key);
    cr_assert_eq(tframe_hello(c, 1, TOKEN), TRELLIS_OK);
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_COUNTER, 5, 3, &v), TRELLIS_OK);
    tframe_op put = op_put(key, LAT_COUNTER, &v);
    cr_assert_eq(tframe_request(c, 2, 0, 0, &put, 1), TRELLIS_OK);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no HELLO_REPLY");
    cr_assert_eq(r.h.kind, FRAME_HELLO_REPLY);
    cr_assert_eq(r.h.status, TRELLIS_OK);
    frame_hello_info info;
    cr_assert_eq(frame_hello_decode(r.body, r.h.length, &info), TRELLIS_OK);
    cr_assert_eq(info.max_body, 4u << 20);
    cr_assert_eq(info.max_ops, 4096);
    cr_assert_eq(info.max_key, 1024);
    cr_assert_eq(info.max_value, 1u << 20);
    cr_assert_eq(info.shards, 2);
    tframe_reply_free(&r);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no reply to the request");
    cr_assert_eq(r.h.id, 2);
    cr_assert_eq(r.res[0].status, TRELLIS_OK);
    tframe_reply_free(&r);
    CHECK(tframe_call(c, &op, 1, 0, &r) == TRELLIS_OK, "no reply");
    cr_assert_eq(r.res[0].status, TRELLIS_OK, "the same connection stays authenticated");
    cr_assert_eq(r.res[0].type, LAT_COUNTER);
    tframe_reply_free(&r);
    lat_buf_free(&v);
    tframe_close(c);
}

/* A connection that stays silent, or sends only part of its first frame,
 * is closed after limits.handshake_ms; one that sent a whole frame stays
 * open however long it then waits. */
Test(kvs_frames_auth, a_silent_connection_is_closed_after_the_handshake_bound)
{
    const char *key = "frame-silent";
    tframe *silent = conn_for(key), *partial = conn_for(key), *hello = conn_for(key);
    uint64_t t0 = clock_mono_ms();
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_header h = {.kind = FRAME_HELLO, .length = (uint32_t)strlen(TOKEN), .id = 1};
    frame_header_encode(&h, hdr);
    cr_assert_eq(tframe_send_raw(partial, hdr, 20), TRELLIS_OK);
    cr_assert_eq(tframe_hello(hello, 1, TOKEN), TRELLIS_OK);
    tframe_reply r;
    CHECK(tframe_recv(hello, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "no HELLO_REPLY");
    cr_assert_eq(r.h.status, TRELLIS_OK);
    tframe_reply_free(&r);
    CHECK(tframe_closed(silent, TFRAME_TIMEOUT_MS), "a silent connection stays open");
    uint64_t took = clock_mono_ms() - t0;
    CHECK(took >= 500, "closed after %llu ms, before the bound", (unsigned long long)took);
    CHECK(tframe_closed(partial, TFRAME_TIMEOUT_MS), "a connection with half a header stays open");
    CHECK(!tframe_closed(hello, 1500), "a connection that said HELLO was closed");
    tframe_op op = op_get(key, 0);
    CHECK(tframe_call(hello, &op, 1, 0, &r) == TRELLIS_OK, "no reply after waiting");
    cr_assert_eq(r.res[0].status, TRELLIS_NOT_FOUND);
    tframe_reply_free(&r);
    tframe_close(silent);
    tframe_close(partial);
    tframe_close(hello);
}

/* ---- the rate cap -------------------------------------------------------------------------------
 */

static void setup_capped(void)
{
    const char *sets[] = {"kvs.max_ops_per_sec=100", "kvs.max_pending=4", NULL};
    start("frames-cap", sets);
}

TestSuite(kvs_frames_cap, .init = setup_capped, .fini = teardown, .timeout = 90);

Test(kvs_frames_cap, a_full_queue_answers_overloaded)
{
    enum { N = 60 };
    char(*keys)[32] = calloc(N, 32);
    cr_assert_eq(keys_of_shard(0, N, keys), N);
    tframe *c;
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 0, &c) == TRELLIS_OK, "connect");
    for (int i = 0; i < N; i++) {
        tframe_op op = op_get(keys[i], 0);
        cr_assert_eq(tframe_request(c, (uint64_t)i + 1, 0, 0, &op, 1), TRELLIS_OK);
    }
    int ok = 0, overloaded = 0;
    uint8_t seen[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        tframe_reply r;
        CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "reply %d missing", i);
        cr_assert(r.h.id >= 1 && r.h.id <= N && !seen[r.h.id]);
        seen[r.h.id] = 1;
        if (r.h.status == TRELLIS_OVERLOADED)
            overloaded++;
        else if (r.h.status == TRELLIS_OK && r.res[0].status == TRELLIS_NOT_FOUND)
            ok++;
        tframe_reply_free(&r);
    }
    cr_assert_eq(ok + overloaded, N);
    cr_assert_gt(overloaded, 0, "60 requests at once into a queue of 4");
    cr_assert_gt(ok, 0, "the queue's requests are served");
    free(keys);
    tframe_close(c);
}

/* ---- replies that wait ------------------------------------------------------------------------
 */

static void setup_held(void)
{
    const char *sets[] = {"kvs.fault_hold_ms=600", NULL};
    start("frames-held", sets);
}

TestSuite(kvs_frames_held, .init = setup_held, .fini = teardown, .timeout = 90);

Test(kvs_frames_held, a_held_write_is_overtaken_by_later_requests)
{
    char keys[2][32];
    cr_assert_eq(keys_of_shard(0, 2, keys), 2);
    tframe *c;
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 0, &c) == TRELLIS_OK, "connect");
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_LWW, 2, 9, &v), TRELLIS_OK);
    /* A write (held 600 ms), then a read of the key it wrote and a read of
     * another key, each in a request of its own on the same connection. */
    tframe_op put = op_put(keys[0], LAT_LWW, &v), get0 = op_get(keys[0], 0),
              get1 = op_get(keys[1], 0);
    cr_assert_eq(tframe_request(c, 1, 0, 0, &put, 1), TRELLIS_OK);
    cr_assert_eq(tframe_request(c, 2, 0, 0, &get0, 1), TRELLIS_OK);
    cr_assert_eq(tframe_request(c, 3, 0, 0, &get1, 1), TRELLIS_OK);
    tframe_reply r;
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "first reply");
    cr_assert_eq(r.h.id, 2, "the read overtakes the held write");
    cr_assert_eq(r.res[0].status, TRELLIS_OK, "the write applied at once; only its ack waits");
    cr_assert(r.res[0].vlen == v.len && memcmp(r.res[0].value, v.data, v.len) == 0);
    tframe_reply_free(&r);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "second reply");
    cr_assert_eq(r.h.id, 3);
    cr_assert_eq(r.res[0].status, TRELLIS_NOT_FOUND);
    tframe_reply_free(&r);
    CHECK(tframe_recv(c, TFRAME_TIMEOUT_MS, &r) == TRELLIS_OK, "the held reply");
    cr_assert_eq(r.h.id, 1);
    cr_assert_eq(r.res[0].status, TRELLIS_OK);
    cr_assert_eq(r.res[0].type, LAT_LWW);
    tframe_reply_free(&r);

    /* A connection that closes while its write is held loses the reply,
     * nothing else. */
    tframe *gone;
    CHECK(tframe_connect_node(rg, ring_find_node(rg, mem->id), 0, &gone) == TRELLIS_OK, "connect");
    cr_assert_eq(tframe_request(gone, 9, 0, 0, &put, 1), TRELLIS_OK);
    usleep(100 * 1000);
    tframe_close(gone);
    usleep(800 * 1000);
    CHECK(tframe_call(c, &get0, 1, 0, &r) == TRELLIS_OK, "the node still serves");
    cr_assert_eq(r.res[0].status, TRELLIS_OK);
    tframe_reply_free(&r);
    lat_buf_free(&v);
    tframe_close(c);
}
