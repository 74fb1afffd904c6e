/*
 * test_kvs_badinput.c - hostile input over real sockets to a memory node
 * and a disk node with small limits: random bytes, truncated protobufs, a
 * raw TCP peer that completes the SP handshake and announces a message of
 * gigabytes, a flood of decode bombs, key operations on the control plane
 * (peers' fetches only), batches over max_ops_per_batch,
 * unknown lattice types and opcodes, keys, values and sets over the limits,
 * bad replication and digest bodies. Each gets an error reply or a dropped
 * connection; the node keeps serving and its resident memory stays bounded.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;
static ring *rg;
static tnode *nodes[2];

#define MAX_OPS     64
#define MAX_VALUE   (64 * 1024)
#define MAX_MEMBERS 100
#define MAX_MSG     (1 << 20)
/* Growth of a node's resident memory the whole test may cause (a flood
 * queues ~120 MiB of messages in the socket). Under AddressSanitizer freed
 * memory waits in its quarantine (256 MiB by default) before reuse. */
#ifdef TRELLIS_SANITIZED
#define RSS_SLACK_KB (640 * 1024)
#else
#define RSS_SLACK_KB (160 * 1024)
#endif

static void setup(void)
{
    cr_assert_eq(tcluster_init(&cl, "bad"), 0);
    tcluster_set(&cl, "limits.max_ops_per_batch=64");
    tcluster_set(&cl, "limits.max_value_bytes=64KiB");
    tcluster_set(&cl, "limits.max_set_members=100");
    tcluster_set(&cl, "limits.max_message_bytes=1MiB");
    tcluster_set(&cl, "kvs.capacity=64MiB");
    tcluster_set(&cl, "kvs.rocksdb_cache_bytes=8MiB");
    tcluster_set(&cl, "kvs.rocksdb_write_buffer_bytes=4MiB");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    nodes[0] = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    nodes[1] = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(nodes[0] && nodes[1], "nodes did not start");
    for (int i = 0; i < 2; i++)
        CHECK(tcluster_wait_state(&cl, nodes[i], NODE_ACTIVE, 15000) == 0, "node not ACTIVE");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "no ring");
}

static void teardown(void)
{
    ring_free(rg);
    rg = NULL;
    tcluster_fini(&cl);
}

TestSuite(kvs_badinput, .init = setup, .fini = teardown, .timeout = 80);

/* A known key on each node, written at the start; still readable means the
 * node still serves. */
static void put_probe(int tier)
{
    wire_arena *a = wire_arena_new();
    char url[RING_MAX_URL + 1];
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
    CHECK(tkv_replica_url(rg, tier, 0, "probe", 5, url, sizeof(url)) == TRELLIS_OK, "url");
    Trellis__KeyOp *op = tkv_op_put(a, "probe", 5, LAT_LWW, &v);
    Trellis__KvReply *rep;
    CHECK(tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
              rep->results[0]->status == TRELLIS__STATUS__OK,
          "probe put");
    lat_buf_free(&v);
    wire_arena_free(a);
}

static void assert_serving(int tier, const char *after)
{
    wire_arena *a = wire_arena_new();
    char url[RING_MAX_URL + 1];
    CHECK(tkv_replica_url(rg, tier, 0, "probe", 5, url, sizeof(url)) == TRELLIS_OK, "url");
    Trellis__KeyOp *op = tkv_op_get(a, "probe", 5, LAT_LWW);
    Trellis__KvReply *rep;
    int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
    CHECK(rc == TRELLIS_OK && rep->results[0]->status == TRELLIS__STATUS__OK,
          "%s node stopped serving after %s (%s)", tier == RING_TIER_MEMORY ? "memory" : "disk",
          after, trellis_strerror(rc));
    tnode *n = nodes[tier - 1];
    CHECK(tproc_running(n->p), "the node exited after %s", after);
    wire_arena_free(a);
}

static long rss(int tier)
{
    return tproc_rss_kb(tproc_pid(nodes[tier - 1]->p));
}

static void assert_rss(int tier, long base, const char *after)
{
    long now = rss(tier);
    cr_log_info("%s node RSS after %s: %ld KiB (started at %ld KiB)",
                tier == RING_TIER_MEMORY ? "memory" : "disk", after, now, base);
    CHECK(now > 0 && now < base + RSS_SLACK_KB, "RSS %ld KiB after %s, %ld KiB at the start", now,
          after, base);
}

/* A req socket kept open for many raw requests. */
static nng_socket raw_open(const char *url)
{
    nng_socket s;
    cr_assert_eq(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 3000);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 64 << 20);
    cr_assert_eq(nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK), 0);
    return s;
}

/* Sends body, expects a reply: an ErrorReply whose status is returned, or
 * some other envelope (TRELLIS_OK). -1 when no reply came. */
static int raw_req(nng_socket s, const void *body, size_t len, wire_arena *a)
{
    nng_msg *m;
    cr_assert_eq(nng_msg_alloc(&m, 0), 0);
    if (len)
        cr_assert_eq(nng_msg_append(m, body, len), 0);
    if (nng_sendmsg(s, m, 0) != 0) {
        nng_msg_free(m);
        return -1;
    }
    if (nng_recvmsg(s, &m, 0) != 0)
        return -1;
    wire_limits lim;
    wire_limits_default(&lim);
    lim.max_message = 64 << 20;
    Trellis__Envelope *env;
    wire_arena_reset(a);
    int rc = wire_decode(a, nng_msg_body(m), nng_msg_len(m), &lim, &env);
    nng_msg_free(m);
    CHECK(rc == TRELLIS_OK, "the node's reply does not decode");
    if (env->body_case == TRELLIS__ENVELOPE__BODY_ERROR)
        return (int)env->error->status;
    return TRELLIS_OK;
}

static uint8_t *pack(const Trellis__Envelope *env, size_t *len)
{
    *len = trellis__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len + 1);
    trellis__envelope__pack(env, buf);
    return buf;
}

Test(kvs_badinput, random_and_truncated_messages)
{
    trand r;
    trand_begin(&r, "kvs_bad_random");
    long base[3] = {0, rss(1), rss(2)};
    wire_arena *a = wire_arena_new();
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        put_probe(tier);
        char url[RING_MAX_URL + 1];
        tcluster_node_url(nodes[tier - 1], 0, url, sizeof(url));
        nng_socket s = raw_open(url);
        uint8_t buf[2048];
        int errors = 0, others = 0;
        for (int i = 0; i < 1500; i++) {
            size_t len = (size_t)trand_below(&r, sizeof(buf));
            trand_bytes(&r, buf, len);
            if (len >= 2 && trand_chance(&r, 50)) {
                buf[0] = 0x08; /* version 1 */
                buf[1] = 0x01;
                if (len >= 3)
                    buf[2] = (uint8_t)(0x52 + 8 * trand_below(&r, 3)); /* kv, .., replicate */
            }
            int rc = raw_req(s, buf, len, a);
            CHECK(rc >= 0, "no reply to random message %d (TRELLIS_SEED=%llu)", i,
                  (unsigned long long)r.seed);
            if (rc == TRELLIS_OK)
                others++;
            else
                errors++;
        }
        cr_log_info("random messages: %d error replies, %d other replies", errors, others);
        CHECK(errors > 1000, "only %d error replies", errors);

        /* Every prefix of a valid request with many operations. */
        Trellis__Envelope env;
        Trellis__KvRequest kv;
        Trellis__KeyOp *ops[40];
        lat_buf v;
        lat_buf_init(&v);
        wire_arena *b = wire_arena_new();
        for (int i = 0; i < 40; i++) {
            char key[16];
            int kl = snprintf(key, sizeof(key), "t%d", i);
            lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
            cr_assert_eq(tkv_sample(t, 3, (uint64_t)i, &v), TRELLIS_OK);
            ops[i] = tkv_op_put(b, key, (size_t)kl, t, &v);
        }
        wire_envelope_init(&env, 0, NULL);
        trellis__kv_request__init(&kv);
        kv.ops = ops;
        kv.n_ops = 40;
        env.body_case = TRELLIS__ENVELOPE__BODY_KV;
        env.kv = &kv;
        size_t len;
        uint8_t *full = pack(&env, &len);
        for (size_t n = 0; n < len; n += 1 + n / 64) {
            int rc = raw_req(s, full, n, a);
            CHECK(rc >= 0, "no reply to a %zu-byte prefix", n);
        }
        /* Whole, it is refused: clients' operations go to the data plane,
         * and nothing of it is written. */
        int rc = raw_req(s, full, len, a);
        CHECK(rc == TRELLIS_MALFORMED, "key operations on the control plane: %s",
              trellis_status_name(rc));
        free(full);
        for (int i = 0; i < 40; i++) {
            char key[16], durl[RING_MAX_URL + 1];
            int kl = snprintf(key, sizeof(key), "t%d", i);
            Trellis__KeyOp *get = tkv_op_get(b, key, (size_t)kl, LAT_NONE);
            Trellis__KvReply *rep;
            CHECK(tkv_replica_url(rg, tier, 0, key, (size_t)kl, durl, sizeof(durl)) == TRELLIS_OK,
                  "url");
            rc = tkv_batch(durl, &get, 1, TKV_TIMEOUT_MS, b, &rep);
            CHECK(rc == TRELLIS_OK && rep->results[0]->status == TRELLIS__STATUS__NOT_FOUND,
                  "key %s was written by a refused request", key);
        }
        /* A peer's fetch (whole stored states, GETs only) is served. */
        kv.stored = 1;
        Trellis__KeyOp *get = tkv_op_get(b, "probe", 5, LAT_NONE);
        kv.ops = &get;
        kv.n_ops = 1;
        full = pack(&env, &len);
        rc = raw_req(s, full, len, a);
        CHECK(rc == TRELLIS_OK, "a fetch: %s", trellis_status_name(rc));
        free(full);
        lat_buf_free(&v);
        wire_arena_free(b);
        nng_close(s);
        assert_serving(tier, "random and truncated messages");
        assert_rss(tier, base[tier], "random and truncated messages");
    }
    wire_arena_free(a);
}

/* Completes the SP handshake as a req peer over plain TCP, then sends a
 * length header of `claimed` bytes and a few bytes of body. Returns 1 if the
 * node closed the connection within a few seconds. */
static int tcp_big_header(int port, uint64_t claimed)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s", strerror(errno));
    /* SP over TCP: 0, 'S', 'P', 0, protocol (req0 = 0x30) big-endian, 0, 0. */
    const uint8_t hello[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};
    CHECK(write(fd, hello, 8) == 8, "write hello");
    uint8_t peer[8];
    size_t got = 0;
    uint64_t end = clock_mono_ms() + 3000;
    while (got < 8 && clock_mono_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, peer + got, 8 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    CHECK(got == 8 && peer[1] == 'S' && peer[2] == 'P' && peer[5] == 0x31,
          "no rep0 handshake from the node");
    uint8_t hdr[8 + 4 + 16];
    for (int i = 0; i < 8; i++)
        hdr[i] = (uint8_t)(claimed >> (56 - 8 * i));
    memcpy(hdr + 8, "\x80\x00\x00\x01", 4); /* a request id */
    memset(hdr + 12, 0x0a, 16);
    ssize_t w = write(fd, hdr, sizeof(hdr));
    (void)w;
    int closed = 0;
    end = clock_mono_ms() + 5000;
    while (!closed && clock_mono_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        uint8_t junk[64];
        ssize_t n = read(fd, junk, sizeof(junk));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            closed = 1;
    }
    close(fd);
    return closed;
}

Test(kvs_badinput, huge_length_header_drops_connection)
{
    long base[3] = {0, rss(1), rss(2)};
    static const uint64_t sizes[] = {UINT64_C(4) << 30, UINT64_C(1) << 40, UINT64_MAX, INT64_MAX,
                                     MAX_MSG + 1};
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        put_probe(tier);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            for (int shard = 0; shard < 2; shard++) {
                int port = nodes[tier - 1]->port_base + shard;
                CHECK(tcp_big_header(port, sizes[i]),
                      "the node kept a connection announcing %llu bytes",
                      (unsigned long long)sizes[i]);
            }
            assert_serving(tier, "a huge length header");
        }
        assert_rss(tier, base[tier], "huge length headers");
    }
}

/* version 1, then a KvRequest of n empty KeyOps: protobuf-c would allocate
 * ~50 bytes per input byte. */
static uint8_t *bomb(size_t n, size_t *len)
{
    size_t body = 2 * n;
    uint8_t *buf = malloc(body + 16);
    size_t k = 0;
    buf[k++] = 0x08;
    buf[k++] = 0x01;
    buf[k++] = 0x52;
    for (size_t v = body;; v >>= 7) {
        if (v < 0x80) {
            buf[k++] = (uint8_t)v;
            break;
        }
        buf[k++] = (uint8_t)(v | 0x80);
    }
    for (size_t i = 0; i < n; i++) {
        buf[k++] = 0x0a;
        buf[k++] = 0x00;
    }
    *len = k;
    return buf;
}

Test(kvs_badinput, decode_bombs_and_oversized_messages)
{
    long base[3] = {0, rss(1), rss(2)};
    wire_arena *a = wire_arena_new();
    size_t len;
    uint8_t *b = bomb((MAX_MSG - 64) / 2, &len);
    CHECK(len < MAX_MSG, "bomb of %zu bytes", len);
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        put_probe(tier);
        char url[RING_MAX_URL + 1];
        tcluster_node_url(nodes[tier - 1], 0, url, sizeof(url));
        /* One at a time: each is refused as TOO_LARGE. */
        nng_socket s = raw_open(url);
        for (int i = 0; i < 5; i++) {
            int rc = raw_req(s, b, len, a);
            CHECK(rc == TRELLIS_TOO_LARGE, "decode bomb: %d", rc);
        }
        nng_close(s);
        /* Many at once, so that they queue up in the shard: the node must
         * not hold all their decodes at the same time. */
        nng_socket raw;
        cr_assert_eq(nng_req0_open_raw(&raw), 0);
        nng_socket_set_size(raw, NNG_OPT_RECVMAXSZ, 64 << 20);
        nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 20000);
        nng_socket_set_ms(raw, NNG_OPT_SENDTIMEO, 5000);
        nng_socket_set_int(raw, NNG_OPT_SENDBUF, 256);
        cr_assert_eq(nng_dial(raw, url, NULL, 0), 0);
        enum { FLOOD = 120 };
        for (uint32_t i = 0; i < FLOOD; i++) {
            nng_msg *m;
            cr_assert_eq(nng_msg_alloc(&m, 0), 0);
            cr_assert_eq(nng_msg_header_append_u32(m, 0x80000000u | (i + 1)), 0);
            cr_assert_eq(nng_msg_append(m, b, len), 0);
            CHECK(nng_sendmsg(raw, m, 0) == 0, "flood send %u", i);
        }
        long peak = 0;
        int replies = 0;
        for (int i = 0; i < FLOOD; i++) {
            nng_msg *m;
            if (nng_recvmsg(raw, &m, 0) != 0)
                break;
            replies++;
            nng_msg_free(m);
            long now = rss(tier);
            if (now > peak)
                peak = now;
        }
        nng_close(raw);
        cr_log_info("flood of %d decode bombs: %d replies, peak RSS %ld KiB", FLOOD, replies, peak);
        CHECK(replies == FLOOD, "%d replies to %d decode bombs", replies, FLOOD);
        CHECK(peak < base[tier] + RSS_SLACK_KB,
              "RSS peaked at %ld KiB under a flood of decode "
              "bombs (%ld KiB at the start)",
              peak, base[tier]);
        assert_serving(tier, "decode bombs");

        /* Over max_message_bytes: nng drops the connection, no reply. */
        uint8_t *big = calloc(1, MAX_MSG + 100);
        s = raw_open(url);
        nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 1000);
        CHECK(raw_req(s, big, MAX_MSG + 100, a) == -1, "a reply to an oversized message");
        nng_close(s);
        free(big);
        assert_serving(tier, "an oversized message");
        assert_rss(tier, base[tier], "decode bombs and oversized messages");
    }
    free(b);
    wire_arena_free(a);
}

static Trellis__KvReply *kv_call(const char *url, Trellis__KeyOp **ops, size_t n, wire_arena *a,
                                 int *rc)
{
    Trellis__KvReply *rep = NULL;
    *rc = tkv_batch(url, ops, n, TKV_TIMEOUT_MS, a, &rep);
    return rep;
}

Test(kvs_badinput, limits_and_unknown_values)
{
    long base[3] = {0, rss(1), rss(2)};
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        put_probe(tier);
        char url[RING_MAX_URL + 1], ctl[RING_MAX_URL + 1];
        CHECK(tkv_replica_url(rg, tier, 0, "lim", 3, url, sizeof(url)) == TRELLIS_OK, "url");
        CHECK(tkv_replica_ctl_url(rg, tier, 0, "lim", 3, ctl, sizeof(ctl)) == TRELLIS_OK, "url");
        int rc;
        /* A batch over max_ops_per_batch is refused as a whole. */
        Trellis__KeyOp *ops[MAX_OPS + 1];
        for (int i = 0; i <= MAX_OPS; i++)
            ops[i] = tkv_op_get(a, "lim", 3, LAT_NONE);
        kv_call(url, ops, MAX_OPS + 1, a, &rc);
        CHECK(rc == TRELLIS_TOO_LARGE, "a batch of %d: %s", MAX_OPS + 1, trellis_strerror(rc));
        Trellis__KvReply *rep = kv_call(url, ops, MAX_OPS, a, &rc);
        CHECK(rc == TRELLIS_OK && rep->n_results == MAX_OPS, "a batch of %d: %s", MAX_OPS,
              trellis_strerror(rc));
        wire_arena_reset(a);

        /* Per-operation refusals, one batch. */
        size_t n = 0;
        int want[16];
        cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
        ops[n] = tkv_op_put(a, "lim", 3, LAT_LWW, &v); /* unknown type */
        ops[n]->type = (Trellis__LatticeType)99;
        want[n++] = TRELLIS_MALFORMED;
        ops[n] = tkv_op_put(a, "lim", 3, LAT_LWW, &v); /* LATTICE_NONE */
        ops[n]->type = TRELLIS__LATTICE_TYPE__LATTICE_NONE;
        want[n++] = TRELLIS_MALFORMED;
        ops[n] = tkv_op_put(a, "lim", 3, LAT_LWW, &v); /* unknown opcode */
        ops[n]->op = (Trellis__OpCode)17;
        want[n++] = TRELLIS_MALFORMED;
        ops[n] = tkv_op(a, TRELLIS__OP_CODE__PUT, "lim", 3, LAT_LWW, "\x01\x02", 2); /* bad bytes */
        want[n++] = TRELLIS_MALFORMED;
        ops[n] = tkv_op(a, TRELLIS__OP_CODE__PUT, "lim", 3, LAT_COUNTER, NULL, 0);
        want[n++] = TRELLIS_MALFORMED;
        ops[n] = tkv_op_put(a, "", 0, LAT_LWW, &v); /* empty key */
        want[n++] = TRELLIS_INVALID;
        static char bigkey[2000];
        memset(bigkey, 'k', sizeof(bigkey));
        ops[n] = tkv_op_put(a, bigkey, 1025, LAT_LWW, &v); /* key over 1 KiB */
        want[n++] = TRELLIS_TOO_LARGE;
        ops[n] = tkv_op_get(a, bigkey, 1025, LAT_NONE);
        want[n++] = TRELLIS_TOO_LARGE;
        static char bigval[MAX_VALUE + 10];
        memset(bigval, 'v', sizeof(bigval));
        cr_assert_eq(lat_lww_encode(5, 1, 0, bigval, MAX_VALUE + 1, &v), TRELLIS_OK);
        ops[n] = tkv_op_put(a, "lim", 3, LAT_LWW, &v); /* value over the limit */
        want[n++] = TRELLIS_TOO_LARGE;
        lat_slice members[MAX_MEMBERS + 1];
        static char mbuf[MAX_MEMBERS + 1][8];
        for (int i = 0; i <= MAX_MEMBERS; i++) {
            snprintf(mbuf[i], sizeof(mbuf[i]), "m%d", i);
            members[i].data = (const uint8_t *)mbuf[i];
            members[i].len = strlen(mbuf[i]);
        }
        cr_assert_eq(lat_set_encode(members, MAX_MEMBERS + 1, &v), TRELLIS_OK);
        ops[n] = tkv_op_put(a, "lim", 3, LAT_SET, &v); /* too many members */
        want[n++] = TRELLIS_TOO_LARGE;
        /* Exactly the limit is accepted: a key of the same shard as "lim",
         * so that nothing but the limit decides. */
        char limkey[32], kurl[RING_MAX_URL + 1] = "";
        for (int k = 0; k < 1000 && strcmp(kurl, url) != 0; k++) {
            snprintf(limkey, sizeof(limkey), "limset%d", k);
            CHECK(tkv_replica_url(rg, tier, 0, limkey, strlen(limkey), kurl, sizeof(kurl)) ==
                      TRELLIS_OK,
                  "url of %s", limkey);
        }
        CHECK(strcmp(kurl, url) == 0, "no key of the shard at %s", url);
        cr_assert_eq(lat_set_encode(members, MAX_MEMBERS, &v), TRELLIS_OK);
        ops[n] = tkv_op_put(a, limkey, strlen(limkey), LAT_SET, &v);
        want[n++] = TRELLIS_OK;
        rep = kv_call(url, ops, n, a, &rc);
        CHECK(rc == TRELLIS_OK && rep->n_results == n, "batch: %s", trellis_strerror(rc));
        for (size_t i = 0; i < n; i++) {
            int st = (int)rep->results[i]->status;
            CHECK(st == want[i], "tier %d op %zu: %s, expected %s", tier, i,
                  trellis_status_name(st), trellis_status_name(want[i]));
        }
        wire_arena_reset(a);
        /* Nothing of the refused writes was stored. */
        Trellis__KeyOp *g = tkv_op_get(a, "lim", 3, LAT_NONE);
        rep = kv_call(url, &g, 1, a, &rc);
        CHECK(rc == TRELLIS_OK && rep->results[0]->status == TRELLIS__STATUS__NOT_FOUND,
              "a refused write was stored: %s", trellis_status_name((int)rep->results[0]->status));
        wire_arena_reset(a);

        /* On its control-plane socket: envelopes a shard does not serve,
         * wrong versions, bad replication. */
        Trellis__Envelope env, *reply;
        Trellis__RingRequest rq;
        wire_envelope_init(&env, 0, NULL);
        trellis__ring_request__init(&rq);
        env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
        env.ring_request = &rq;
        CHECK(tkv_call(ctl, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_MALFORMED, "ring request");
        size_t len;
        env.version = 2;
        uint8_t *buf = pack(&env, &len);
        CHECK(tkv_call_raw(ctl, buf, len, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
                  reply->body_case == TRELLIS__ENVELOPE__BODY_ERROR &&
                  reply->error->status == TRELLIS__STATUS__MALFORMED,
              "version 2");
        free(buf);
        Trellis__ReplicaBatch rb;
        Trellis__ReplicaEntry e[4], *pe[4];
        trellis__replica_batch__init(&rb);
        for (int i = 0; i < 4; i++) {
            trellis__replica_entry__init(&e[i]);
            e[i].key.data = (uint8_t *)"rk";
            e[i].key.len = 2;
            e[i].type = TRELLIS__LATTICE_TYPE__SET;
            e[i].state.data = (uint8_t *)"\xff\xff\xff\xff";
            e[i].state.len = 4;
            pe[i] = &e[i];
        }
        e[1].type = (Trellis__LatticeType)42;
        e[2].key.len = 0;
        e[3].key.data = (uint8_t *)bigkey;
        e[3].key.len = 1025;
        rb.entries = pe;
        rb.n_entries = 4;
        rb.node_id = (char *)"intruder";
        rb.last = 1;
        wire_envelope_init(&env, 0, NULL);
        env.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE;
        env.replicate = &rb;
        CHECK(tkv_call(ctl, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
                  reply->body_case == TRELLIS__ENVELOPE__BODY_REPLICATE_ACK,
              "replicate");
        CHECK(reply->replicate_ack->applied == 0 && reply->replicate_ack->n_rejected == 4,
              "bad replicated entries: %u applied, %zu rejected", reply->replicate_ack->applied,
              reply->replicate_ack->n_rejected);
        Trellis__DigestRequest dr;
        Trellis__ArcDigest ad, *pad = &ad;
        trellis__digest_request__init(&dr);
        trellis__arc_digest__init(&ad);
        ad.token = 12345;
        dr.arcs = &pad;
        dr.n_arcs = 1;
        dr.node_id = (char *)"intruder";
        dr.shard = 77;
        wire_envelope_init(&env, 0, NULL);
        env.body_case = TRELLIS__ENVELOPE__BODY_DIGEST;
        env.digest = &dr;
        CHECK(tkv_call(ctl, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
                  reply->body_case == TRELLIS__ENVELOPE__BODY_DIGEST_REPLY &&
                  reply->digest_reply->status == TRELLIS__STATUS__WRONG_SHARD,
              "digest from an unknown node");
        wire_arena_reset(a);
        assert_serving(tier, "requests over the limits");
        assert_rss(tier, base[tier], "requests over the limits");
    }
    lat_buf_free(&v);
    wire_arena_free(a);
}
