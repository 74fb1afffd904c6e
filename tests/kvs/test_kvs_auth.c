/*
 * test_kvs_auth.c - a cluster with a shared token (auth.token_file):
 * requests without the token or with a wrong one are refused with
 * UNAUTHORIZED by shards and router alike, an unauthenticated peer sending
 * more than limits.unauth_message_bytes loses its connection, and with the
 * token everything works, replication between the nodes included.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "tcluster.h"
#include "tkv.h"
#include "trand.h"

static tcluster cl;

#define TOKEN "s3cret-token-0123456789"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcluster_dump(&cl);                                                                    \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

static void teardown(void)
{
    tkv_set_token(NULL);
    int reports = tcluster_sanitizer_reports(&cl);
    tcluster_fini(&cl);
    cr_assert_eq(reports, 0, "%d processes reported sanitizer errors", reports);
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

Test(kvs_auth, shared_token)
{
    cr_assert_eq(tcluster_init(&cl, "auth"), 0);
    char path[4200], pair[4300];
    snprintf(path, sizeof(path), "%s/token", cl.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(TOKEN "\n", f);
    fclose(f);
    snprintf(pair, sizeof(pair), "auth.token_file=%s", path);
    tcluster_set(&cl, pair);
    tkv_set_token(TOKEN);
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
    tcluster_node_url(m, 0, murl, sizeof(murl));
    tcluster_node_url(d, 0, durl, sizeof(durl));

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

    /* An unauthenticated message over limits.unauth_message_bytes (4 KiB)
     * is not answered: the peer loses its connection. */
    tkv_set_token(NULL);
    static char big[8192];
    memset(big, 'k', sizeof(big));
    cr_assert_eq(lat_lww_encode(1, 1, 0, big, 6000, &v), TRELLIS_OK);
    op = tkv_op_put(a, "guarded2", 8, LAT_LWW, &v);
    int rc = tkv_batch(murl, &op, 1, 1000, a, &rep);
    CHECK(rc == TRELLIS_TIMEOUT || rc == TRELLIS_UNAUTHORIZED || rc == TRELLIS_UNAVAILABLE,
          "a large unauthenticated request: %s", trellis_strerror(rc));
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
