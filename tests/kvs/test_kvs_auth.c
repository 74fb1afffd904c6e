/*
 * test_kvs_auth.c - a cluster with a shared token (auth.token_file):
 * requests without the token or with a wrong one are refused with
 * UNAUTHORIZED by shards and router alike, a request without it larger
 * than limits.unauth_message_bytes is refused unread (the data plane
 * closes the connection; the control-plane sockets drop it unanswered),
 * and with the token everything works, replication between the nodes
 * included. A peer that floods a node's control-plane socket and a router
 * with such messages changes nothing: both keep serving clients on time,
 * count what they dropped, and exit cleanly on SIGTERM in the middle of
 * the flood.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;

#define TOKEN "s3cret-token-0123456789"

static void teardown(void)
{
    tkv_set_token(NULL);
    tcluster_fini(&cl);
}

TestSuite(kvs_auth, .fini = teardown, .timeout = 60);

static int get_status(const char *url, const char *key, wire_arena *a)
{
    Trellis__KeyOp *op = tkv_op_get(a, key, strlen(key), LAT_NONE);
    Trellis__KvReply *rep;
    int rc = tkv_batch(url, &op, 1, 1500, a, &rep);
    if (rc == TRELLIS_OK)
        rc = (int)rep->results[0]->status;
    wire_arena_reset(a);
    return rc;
}

/* A cluster directory whose processes all need TOKEN (in a token file),
 * and requests of this test that present it. */
static void init_with_token(const char *name)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    cr_assert_eq(tcluster_set_token(&cl, TOKEN), 0);
    tkv_set_token(TOKEN);
}

Test(kvs_auth, shared_token)
{
    init_with_token("auth");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 1, NULL);
    CHECK(m && d, "nodes");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node (with the token)");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node (with the token)");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring with the token");
    wire_arena *a = wire_arena_new();
    char murl[RING_MAX_URL + 1], durl[RING_MAX_URL + 1];
    tcluster_node_data_url(m, 0, murl, sizeof(murl));
    tcluster_node_data_url(d, 0, durl, sizeof(durl));

    /* With the token: a write on the memory node reaches the disk node. */
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(tkv_sample(LAT_SET, 1, 1, &v), TRELLIS_OK);
    Trellis__KeyOp *op = tkv_op_put(a, "guarded", 7, LAT_SET, &v);
    Trellis__KvReply *rep;
    CHECK(tkv_batch(murl, &op, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
              rep->results[0]->status == TRELLIS__STATUS__OK,
          "put with the token");
    wire_arena_reset(a);
    uint64_t t0 = clock_mono_ms();
    int st;
    while ((st = get_status(durl, "guarded", a)) != TRELLIS_OK && clock_mono_ms() - t0 < 5000)
        usleep(50000);
    CHECK(st == TRELLIS_OK, "the write did not replicate between authenticated nodes: %s",
          trellis_status_name(st));

    /* Without the token, with a wrong one, with a prefix of it. */
    static const char *const bad[] = {NULL, "s3cret-token-0123456788", "s3cret", TOKEN "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tkv_set_token(bad[i]);
        CHECK(get_status(murl, "guarded", a) == TRELLIS_UNAUTHORIZED,
              "memory shard, token %zu: not refused", i);
        CHECK(get_status(durl, "guarded", a) == TRELLIS_UNAUTHORIZED,
              "disk shard, token %zu: not refused", i);
        ring *r2 = NULL;
        CHECK(tkv_fetch_ring(cl.router_url, &r2, NULL) == TRELLIS_UNAUTHORIZED,
              "router, token %zu: not refused", i);
        ring_free(r2);
    }

    /* An unauthenticated request over limits.unauth_message_bytes (4 KiB)
     * is refused unread, and its connection closed. */
    tkv_set_token(NULL);
    static char big[8192];
    memset(big, 'k', sizeof(big));
    cr_assert_eq(lat_lww_encode(1, 1, 0, big, 6000, &v), TRELLIS_OK);
    op = tkv_op_put(a, "guarded2", 8, LAT_LWW, &v);
    int rc = tkv_batch(murl, &op, 1, 1000, a, &rep);
    CHECK(rc == TRELLIS_UNAUTHORIZED, "a large unauthenticated request: %s", trellis_strerror(rc));
    wire_arena_reset(a);

    /* Nothing of that was stored, and the nodes still serve. */
    tkv_set_token(TOKEN);
    CHECK(get_status(murl, "guarded", a) == TRELLIS_OK, "memory node stopped serving");
    CHECK(get_status(durl, "guarded", a) == TRELLIS_OK, "disk node stopped serving");
    char url[RING_MAX_URL + 1];
    CHECK(tkv_replica_url(rg, RING_TIER_MEMORY, 0, "guarded2", 8, url, sizeof(url)) == TRELLIS_OK,
          "url");
    CHECK(get_status(url, "guarded2", a) == TRELLIS_NOT_FOUND,
          "an unauthenticated write was stored");
    lat_buf_free(&v);
    wire_arena_free(a);
    ring_free(rg);
}

/* ---- a flood of large unauthenticated messages ------------------------------------------ */

#define FLOOD_MAX_MESSAGE 65536 /* limits.max_message_bytes of this test */
#define FLOOD_SERVE_MS    3000  /* authenticated traffic during the flood */

/* Sends messages without the token to url as fast as the connection takes
 * them: random bytes of 5-32 KiB (over limits.unauth_message_bytes, so the
 * server drops them), and every 16th over limits.max_message_bytes (which
 * nng itself refuses by closing the connection; the dialer reconnects). A
 * req socket abandons its previous request with every send, so nothing
 * waits for answers. */
typedef struct flooder {
    char url[RING_MAX_URL + 1];
    pthread_t th;
    atomic_int stop;
    atomic_long sent;
} flooder;

static void *flood_main(void *arg)
{
    flooder *f = arg;
    nng_socket s;
    if (nng_req0_open(&s) != 0)
        return NULL;
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 100);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 50);
    nng_dial(s, f->url, NULL, NNG_FLAG_NONBLOCK);
    trand r;
    trand_begin(&r, f->url);
    for (long i = 0; !atomic_load(&f->stop); i++) {
        size_t len = i % 16 == 15 ? FLOOD_MAX_MESSAGE + 1024 : 5000 + trand_below(&r, 27768);
        nng_msg *m;
        if (nng_msg_alloc(&m, len) != 0)
            break;
        trand_bytes(&r, nng_msg_body(m), len);
        if (nng_sendmsg(s, m, 0) == 0)
            atomic_fetch_add(&f->sent, 1);
        else
            nng_msg_free(m);
    }
    nng_close(s);
    return NULL;
}

static void flood_start(flooder *f, const char *url)
{
    snprintf(f->url, sizeof(f->url), "%s", url);
    atomic_init(&f->stop, 0);
    atomic_init(&f->sent, 0);
    cr_assert_eq(pthread_create(&f->th, NULL, flood_main, f), 0);
}

static long flood_stop(flooder *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    return atomic_load(&f->sent);
}

/* SIGTERM during the flood: the process must exit by itself, with status
 * 0, and without its exit bound firing. */
static void stops_cleanly(tproc *p, const char *what)
{
    int status = -1;
    CHECK(tproc_stop(p, 20000, &status) == 0, "%s did not exit within 20 s of SIGTERM", what);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s ended with wait status %d", what,
          status);
    CHECK(!tproc_log_contains(p, "cleanup did not finish"), "%s's cleanup hung", what);
}

Test(kvs_auth, unauthenticated_flood)
{
    init_with_token("authflood");
    char pair[64], mport[32], rport[64];
    snprintf(pair, sizeof(pair), "limits.max_message_bytes=%d", FLOOD_MAX_MESSAGE);
    tcluster_set(&cl, pair);
    tcluster_set(&cl, "limits.max_value_bytes=16KiB");
    /* The metrics ports: the last two of the range. */
    int node_metrics = cl.port_base + TCLUSTER_PORTS - 1;
    int router_metrics = cl.port_base + TCLUSTER_PORTS - 2;
    snprintf(rport, sizeof(rport), "route.metrics_port=%d", router_metrics);
    const char *rextra[] = {"--set", rport, NULL};
    CHECK(tcluster_start_router(&cl, rextra) == 0, "router");
    snprintf(mport, sizeof(mport), "%d", node_metrics);
    const char *nextra[] = {"--metrics-port", mport, NULL};
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, nextra);
    CHECK(m && tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node");
    /* The flood hits the shard's control-plane socket (and the router);
     * clients are served on its data plane. */
    char murl[RING_MAX_URL + 1], nngurl[RING_MAX_URL + 1];
    tcluster_node_data_url(m, 0, murl, sizeof(murl));
    tcluster_node_url(m, 0, nngurl, sizeof(nngurl));

    flooder fl[3];
    flood_start(&fl[0], nngurl);
    flood_start(&fl[1], nngurl);
    flood_start(&fl[2], cl.router_url);

    /* Authenticated clients are served on time all along. */
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    char key[32];
    int served = 0;
    uint64_t t0 = clock_mono_ms();
    while (clock_mono_ms() - t0 < FLOOD_SERVE_MS) {
        snprintf(key, sizeof(key), "flood/%d", served);
        cr_assert_eq(lat_lww_encode(1, (uint64_t)served + 1, 0, key, strlen(key), &v), TRELLIS_OK);
        Trellis__KeyOp *op = tkv_op_put(a, key, strlen(key), LAT_LWW, &v);
        Trellis__KvReply *rep;
        uint64_t t1 = clock_mono_ms();
        int rc = tkv_batch(murl, &op, 1, 2000, a, &rep);
        CHECK(rc == TRELLIS_OK && rep->results[0]->status == TRELLIS__STATUS__OK,
              "put %d during the flood: %s after %llu ms", served, trellis_strerror(rc),
              (unsigned long long)(clock_mono_ms() - t1));
        wire_arena_reset(a);
        CHECK(get_status(murl, key, a) == TRELLIS_OK, "get %d during the flood", served);
        ring *rg = NULL;
        CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring during the flood");
        ring_free(rg);
        served++;
    }
    cr_log_info("%d authenticated put+get+ring rounds served during the flood", served);
    CHECK(served >= 10, "only %d rounds served in %d ms", served, FLOOD_SERVE_MS);

    /* What was dropped was counted, and never answered or stored. */
    double node_dropped = thttp_metric(node_metrics, "trellis_unauthenticated_dropped_total");
    double router_dropped =
        thttp_metric(router_metrics, "trellis_router_unauthenticated_dropped_total");
    CHECK(node_dropped > 0, "the node counted %.0f dropped messages", node_dropped);
    CHECK(router_dropped > 0, "the router counted %.0f dropped messages", router_dropped);
    cr_log_info("dropped: node %.0f, router %.0f", node_dropped, router_dropped);

    /* SIGTERM while the flood goes on: a clean exit, the node first. */
    stops_cleanly(m->p, "trellis-kvs");
    stops_cleanly(cl.routers[0].p, "trellis-route");
    long sent = flood_stop(&fl[0]) + flood_stop(&fl[1]) + flood_stop(&fl[2]);
    cr_log_info("%ld unauthenticated messages sent", sent);
    CHECK(sent >= 100, "the flood sent only %ld messages", sent);
    lat_buf_free(&v);
    wire_arena_free(a);
}
