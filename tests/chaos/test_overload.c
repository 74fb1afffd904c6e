/*
 * test_overload.c - a flood beyond a node's capacity is refused quickly,
 * with bounded memory, and the node recovers when it stops.
 *
 * One memory node with one shard capped at CAP operations a second
 * (kvs.max_ops_per_sec, standing in for a node's capacity) and a queue of
 * PENDING requests (kvs.max_pending). FLOOD_CONNS data-plane connections,
 * each keeping WINDOW writes in flight, offer many times the cap for
 * FLOOD_MS. Measured and checked:
 *  - every request is answered (OK or OVERLOADED), none times out;
 *  - OVERLOADED comes back fast: its p99 stays below the time a queued
 *    request waits, and below OVERLOAD_P99_MS (a client's default deadline
 *    is 2 s: it hears OVERLOADED long before);
 *  - the shard still serves up to CAP operations a second;
 *  - the node's resident memory grows by less than RSS_GROWTH_KB over
 *    its idle size and stops growing during the flood;
 *  - once the flood stops, the node answers every request OK again
 *    within a second, at the latency it had before.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "lattices/lattice.h"
#include "tframe.h"
#include "tsupport.h"

#define CAP             2000 /* operations per second */
#define PENDING         256  /* queued requests */
#define FLOOD_CONNS     32
#define WINDOW          48 /* requests in flight per connection */
#define FLOOD_MS        5000
#define REPLY_WAIT_MS   5000
#define OVERLOAD_P99_MS 1000
#define RSS_GROWTH_KB   (64 * 1024)
#define MAX_SAMPLES     400000

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(overload, .fini = teardown, .timeout = 120);

/* ---- one connection's flood -------------------------------------------------------------------
 */

typedef struct flood {
    int id;
    int port; /* the shard's data plane */
    atomic_int *stop;
    /* results */
    uint32_t *ok_us, *over_us; /* latencies */
    size_t nok, nover, nother, nlost, cap;
    char error[128];
} flood;

/* Sends write number seq of connection `conn` as request id. */
static int request(tframe *t, int conn, uint32_t seq, uint64_t id)
{
    char key[32], val[100];
    int kl = snprintf(key, sizeof(key), "ovl/%d/%u", conn, seq % 16);
    memset(val, 'v', sizeof(val));
    lat_buf v;
    lat_buf_init(&v);
    lat_lww_encode(((uint64_t)seq + 1) << 12, (uint64_t)conn + 1, 0, val, sizeof(val), &v);
    tframe_op op = {FRAME_OP_PUT, LAT_LWW, key, (size_t)kl, v.data, v.len};
    int rc = tframe_request(t, id, 0, 0, &op, 1);
    lat_buf_free(&v);
    return rc;
}

/* The status of a reply's single result (or of the whole reply). */
static int reply_status(const tframe_reply *r)
{
    if (r->h.status != TRELLIS_OK)
        return r->h.status;
    return r->nres == 1 ? r->res[0].status : TRELLIS_MALFORMED;
}

static void *flood_main(void *arg)
{
    flood *f = arg;
    tframe *t;
    if (tframe_connect("127.0.0.1", f->port, &t) != TRELLIS_OK) {
        snprintf(f->error, sizeof(f->error), "connect to port %d", f->port);
        return NULL;
    }
    uint64_t sent_at[WINDOW * 2];
    uint32_t seq = 0;
    int inflight = 0;
    for (;;) {
        int stopping = atomic_load(f->stop);
        while (!stopping && inflight < WINDOW) {
            sent_at[seq % (WINDOW * 2)] = clock_mono_us();
            if (request(t, f->id, seq, seq) != TRELLIS_OK) {
                snprintf(f->error, sizeof(f->error), "send failed");
                stopping = 1;
                break;
            }
            seq++;
            inflight++;
        }
        if (inflight == 0)
            break;
        tframe_reply r;
        if (tframe_recv(t, REPLY_WAIT_MS, &r) != TRELLIS_OK) {
            f->nlost += (size_t)inflight; /* no answer within REPLY_WAIT_MS */
            break;
        }
        uint64_t lat = clock_mono_us() - sent_at[r.h.id % (WINDOW * 2)];
        int st = reply_status(&r);
        tframe_reply_free(&r);
        inflight--;
        if (st == TRELLIS_OK && f->nok < f->cap)
            f->ok_us[f->nok++] = (uint32_t)lat;
        else if (st == TRELLIS_OVERLOADED && f->nover < f->cap)
            f->over_us[f->nover++] = (uint32_t)lat;
        else if (st != TRELLIS_OK && st != TRELLIS_OVERLOADED)
            f->nother++;
    }
    tframe_close(t);
    return NULL;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static uint32_t pct(uint32_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u32);
    size_t i = (size_t)(q * (double)(n - 1));
    return v[i];
}

/* Sequential single requests; their p99 in us (all must be OK). */
static uint32_t probe(const char *url, int n, int *not_ok)
{
    wire_arena *a = wire_arena_new();
    uint32_t *lat = calloc((size_t)n, sizeof(*lat));
    char val[100];
    memset(val, 'p', sizeof(val));
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(lat_lww_encode(1, 99, 0, val, sizeof(val), &v), TRELLIS_OK);
    *not_ok = 0;
    for (int i = 0; i < n; i++) {
        Trellis__KeyOp *op = tkv_op_put(a, "ovl/probe", 9, LAT_LWW, &v);
        Trellis__KvReply *rep;
        uint64_t t = clock_mono_us();
        int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
        lat[i] = (uint32_t)(clock_mono_us() - t);
        if (rc != TRELLIS_OK || rep->results[0]->status != TRELLIS__STATUS__OK)
            (*not_ok)++;
        wire_arena_reset(a);
    }
    uint32_t p = pct(lat, (size_t)n, 0.99);
    free(lat);
    lat_buf_free(&v);
    wire_arena_free(a);
    return p;
}

Test(overload, flood_is_refused_fast_with_bounded_memory_and_the_node_recovers)
{
    cr_assert_eq(tcluster_init(&cl, "overload"), 0);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    char pending[64];
    snprintf(pending, sizeof(pending), "kvs.max_pending=%d", PENDING);
    tcluster_set(&cl, pending);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    char cap[16];
    snprintf(cap, sizeof(cap), "%d", CAP);
    const char *const extra[] = {"--max-ops-per-sec", cap, NULL};
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, extra);
    CHECK(m && tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "node");
    char url[RING_MAX_URL + 1];
    tcluster_node_data_url(m, 0, url, sizeof(url));
    pid_t pid = tproc_pid(m->p);

    int bad;
    uint32_t idle_p99 = probe(url, 100, &bad);
    CHECK(bad == 0, "%d of 100 requests failed before the flood", bad);
    long rss0 = tproc_rss_kb(pid);
    CHECK(rss0 > 0, "no RSS for pid %d", (int)pid);

    /* The flood. */
    static flood f[FLOOD_CONNS];
    static atomic_int stop;
    pthread_t th[FLOOD_CONNS];
    for (int i = 0; i < FLOOD_CONNS; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].id = i;
        f[i].port = tcluster_node_data_port(m, 0);
        f[i].stop = &stop;
        f[i].cap = MAX_SAMPLES / FLOOD_CONNS;
        f[i].ok_us = calloc(f[i].cap, sizeof(uint32_t));
        f[i].over_us = calloc(f[i].cap, sizeof(uint32_t));
        cr_assert(f[i].ok_us && f[i].over_us);
        cr_assert_eq(pthread_create(&th[i], NULL, flood_main, &f[i]), 0);
    }
    uint64_t t0 = clock_mono_ms();
    long rss_max = rss0, rss_1s = 0;
    while (clock_mono_ms() - t0 < FLOOD_MS) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        long r = tproc_rss_kb(pid);
        if (r > rss_max)
            rss_max = r;
        if (!rss_1s && clock_mono_ms() - t0 >= 1000)
            rss_1s = r;
    }
    long rss_end = tproc_rss_kb(pid);
    atomic_store(&stop, 1);
    for (int i = 0; i < FLOOD_CONNS; i++)
        pthread_join(th[i], NULL);
    uint64_t flood_ms = clock_mono_ms() - t0;

    /* Recovery: the queue drains at the cap; then every request is OK at
     * the latency of an idle node. */
    uint64_t tr = clock_mono_ms();
    int recovered = 0;
    uint32_t after_p99 = 0;
    while (!recovered && clock_mono_ms() - tr < 10000) {
        after_p99 = probe(url, 100, &bad);
        recovered = bad == 0;
    }
    uint64_t recovery_ms = clock_mono_ms() - tr;

    /* Findings. */
    size_t nok = 0, nover = 0, nother = 0, nlost = 0;
    for (int i = 0; i < FLOOD_CONNS; i++) {
        CHECK(!f[i].error[0], "connection %d: %s", i, f[i].error);
        nok += f[i].nok;
        nover += f[i].nover;
        nother += f[i].nother;
        nlost += f[i].nlost;
    }
    uint32_t *ok = malloc((nok + 1) * sizeof(*ok)), *over = malloc((nover + 1) * sizeof(*over));
    cr_assert(ok && over);
    size_t ko = 0, kv = 0;
    for (int i = 0; i < FLOOD_CONNS; i++) {
        memcpy(ok + ko, f[i].ok_us, f[i].nok * sizeof(*ok));
        ko += f[i].nok;
        memcpy(over + kv, f[i].over_us, f[i].nover * sizeof(*over));
        kv += f[i].nover;
        free(f[i].ok_us);
        free(f[i].over_us);
    }
    uint32_t over_p50 = pct(over, nover, 0.5), over_p99 = pct(over, nover, 0.99);
    uint32_t ok_p50 = pct(ok, nok, 0.5), ok_p99 = pct(ok, nok, 0.99);
    double ok_rate = (double)nok * 1000.0 / (double)flood_ms;
    double offered = (double)(nok + nover) * 1000.0 / (double)flood_ms;
    cr_log_info("flood: %d connections x %d in flight for %llu ms: %.0f requests/s answered, "
                "%.0f OK/s (cap %d), %zu OVERLOADED, %zu other, %zu unanswered",
                FLOOD_CONNS, WINDOW, (unsigned long long)flood_ms, offered, ok_rate, CAP, nover,
                nother, nlost);
    cr_log_info("latency: OVERLOADED p50 %u us p99 %u us; OK p50 %u us p99 %u us; idle p99 %u us",
                over_p50, over_p99, ok_p50, ok_p99, idle_p99);
    cr_log_info("RSS: idle %ld KiB, after 1 s %ld KiB, max %ld KiB, at the end %ld KiB", rss0,
                rss_1s, rss_max, rss_end);
    cr_log_info("recovery: every request OK %llu ms after the flood, p99 %u us",
                (unsigned long long)recovery_ms, after_p99);

    CHECK(nlost == 0 && nother == 0, "%zu requests unanswered, %zu failed otherwise", nlost,
          nother);
    CHECK(nover > nok, "the flood was not beyond capacity (%zu OK, %zu OVERLOADED)", nok, nover);
    CHECK(over_p99 < OVERLOAD_P99_MS * 1000u, "OVERLOADED p99 %u us", over_p99);
    CHECK(over_p99 < ok_p99, "OVERLOADED (p99 %u us) is not faster than queueing (p99 %u us)",
          over_p99, ok_p99);
    /* The flooding clients share the machine's cores with the node: it
     * may fall short of its cap, never exceed it by much. */
    CHECK(ok_rate > CAP * 0.25 && ok_rate < CAP * 1.2, "%.0f OK/s against a cap of %d", ok_rate,
          CAP);
    CHECK(rss_max - rss0 < RSS_GROWTH_KB, "RSS grew by %ld KiB", rss_max - rss0);
    CHECK(rss_end - rss_1s < 16 * 1024, "RSS still growing: %ld KiB after 1 s, %ld KiB at the end",
          rss_1s, rss_end);
    CHECK(recovered && recovery_ms < 3000, "not recovered %llu ms after the flood",
          (unsigned long long)recovery_ms);
    CHECK(after_p99 < idle_p99 * 4 + 20000, "p99 after the flood %u us, before %u us", after_p99,
          idle_p99);
    free(ok);
    free(over);
}
