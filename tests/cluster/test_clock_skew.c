/*
 * test_clock_skew.c - what clock skew does to LWW registers
 * (docs/consistency.md, "Timestamps and clock skew"), with libfaketime
 * moving one writer's wall clock two hours ahead.
 *
 * Two memory replicas and a disk replica per key. Writer A, two hours
 * ahead, sets a register; writer B, on the real clock, sets it later:
 *  - B's write is hidden behind A's future timestamp, and every replica
 *    agrees on A's value byte for byte;
 *  - every replica's reply carries a clock at least as late as the value
 *    it returns, whichever replica took A's write;
 *  - so a writer that reads the key and then writes it, in one client,
 *    stamps its write above the value it read and wins, whatever replica
 *    answered its read and whatever its own clock says (the client sends
 *    its clock with every request and moves it up to every reply's).
 * Skipped when faketime is not installed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cstate.h"
#include "base/hlc.h"
#include "tkv.h"

static tcluster cl;
static cs_set keys;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcluster_dump(&cl);                                                                    \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

static void teardown(void)
{
    int reports = tcluster_sanitizer_reports(&cl);
    tcluster_fini(&cl);
    cs_fini(&keys);
    cr_assert_eq(reports, 0, "%d processes reported sanitizer errors", reports);
}

TestSuite(clock_skew, .fini = teardown, .timeout = 60);

#define FAKETIME "/usr/bin/faketime"
#define AHEAD_S  (2 * 3600)

/* Runs a shell command (trellis-cli somewhere in it) and returns its exit
 * status; its standard output, one line, goes to out. */
static int sh(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    out[0] = '\0';
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* "trellis-cli -r ROUTER", two hours ahead when ahead is set. */
static void cli(char *buf, size_t cap, int ahead)
{
    snprintf(buf, cap, "%s%s/trellis-cli -r %s -t 3000",
             ahead ? "FAKETIME_DONT_FAKE_MONOTONIC=1 " FAKETIME " -f '+2h' " : "", cl.bin,
             cl.router_url);
}

/* A writes two hours ahead, B later on the real clock; the replicas agree
 * on A's value. Leaves the cluster running and the command prefixes in a
 * and b. */
static void ahead_then_behind(char *a, char *b, size_t cap, uint64_t *ts_out)
{
    if (access(FAKETIME, X_OK) != 0)
        cr_skip_test("libfaketime (" FAKETIME ") is not installed");
    cr_assert_eq(cs_init(&keys, "skew", 1), 0);
    cs_name(&keys, 0, "skew/register", LAT_LWW);
    keys.k[0].inexact = 1;
    cr_assert_eq(tcluster_init(&cl, "skew"), 0);
    const char *const sets[] = {"cluster.memory_replicas=2", "kvs.gossip_period_ms=50",
                                "kvs.anti_entropy_period_ms=300", NULL};
    CHECK(cs_cluster_start(&cl, 2, 1, sets, NULL, NULL) == 0, "the cluster did not start");

    char cmd[9000], out[512];
    cli(a, cap, 1);
    cli(b, cap, 0);
    /* libfaketime works here: A's clock reads two hours ahead. */
    snprintf(cmd, sizeof(cmd), "FAKETIME_DONT_FAKE_MONOTONIC=1 " FAKETIME " -f '+2h' date +%%s");
    CHECK(sh(cmd, out, sizeof(out)) == 0 &&
              atoll(out) > (long long)(clock_wall_us() / 1000000) + AHEAD_S - 60,
          "faketime does not move the clock: %s", out);

    snprintf(cmd, sizeof(cmd), "%s SET skew/register ahead", a);
    CHECK(sh(cmd, out, sizeof(out)) == 0 && strcmp(out, "OK") == 0, "A's SET: %s", out);
    usleep(100000);
    snprintf(cmd, sizeof(cmd), "%s SET skew/register behind", b);
    CHECK(sh(cmd, out, sizeof(out)) == 0 && strcmp(out, "OK") == 0, "B's SET: %s", out);

    /* Every replica holds A's value, byte for byte, stamped two hours ahead,
     * and that is what readers see. */
    uint64_t took;
    cs_report rep;
    CHECK(cs_wait(&keys, cl.router_url, 10000, &took, &rep) == 0, "the replicas do not agree: %s",
          rep.first);
    snprintf(cmd, sizeof(cmd), "%s GET skew/register", b);
    CHECK(sh(cmd, out, sizeof(out)) == 0 && strcmp(out, "ahead") == 0,
          "after A (2 h ahead) and then B wrote, a reader sees '%s', not A's value", out);
    uint64_t ts, writer;
    int tomb;
    lat_slice v;
    lat_lww_view(keys.k[0].got.data, keys.k[0].got.len, &ts, &writer, &tomb, &v);
    CHECK(v.len == 5 && memcmp(v.data, "ahead", 5) == 0, "the replicas agree on another value");
    uint64_t now_us = clock_wall_us();
    CHECK(hlc_wall_us(ts) > now_us + (uint64_t)(AHEAD_S - 60) * 1000000,
          "A's timestamp is not two hours ahead (%llu us vs now %llu us)",
          (unsigned long long)hlc_wall_us(ts), (unsigned long long)now_us);
    cr_log_info("%zu replicas agree on A's value, stamped %.0f s ahead", rep.replicas,
                (double)(hlc_wall_us(ts) - now_us) / 1e6);
    *ts_out = ts;
}

Test(clock_skew, a_writer_ahead_hides_later_writes_and_every_replica_clock_covers_it)
{
    char a[8192], b[8192];
    uint64_t ts;
    ahead_then_behind(a, b, sizeof(a), &ts);
    uint64_t now_us = clock_wall_us();

    /* Each replica's clock, as its replies carry it, covers what it serves. */
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    char urls[4][RING_MAX_URL + 1];
    int tiers[4];
    size_t n = cs_replica_urls(&keys, 0, r, urls, tiers, 4);
    ring_free(r);
    CHECK(n == 3, "%zu replicas, not 2 + 1", n);
    wire_arena *wa = wire_arena_new();
    for (size_t i = 0; i < n; i++) {
        Trellis__KeyOp *op = tkv_op_get(wa, "skew/register", 13, LAT_NONE);
        Trellis__KvReply *kr;
        int rc = tkv_batch(urls[i], &op, 1, TKV_TIMEOUT_MS, wa, &kr);
        CHECK(rc == TRELLIS_OK && kr->n_results == 1 &&
                  kr->results[0]->status == TRELLIS__STATUS__OK,
              "GET at %s: %s", urls[i], trellis_strerror(rc));
        CHECK(kr->server_clock >= ts,
              "the %s replica at %s answers A's value stamped %.3f s ahead with a clock %.3f s "
              "behind it: a reader of this replica writes below the value it read",
              tiers[i] == RING_TIER_MEMORY ? "memory" : "disk", urls[i],
              (double)(hlc_wall_us(ts) - now_us) / 1e6,
              (double)(hlc_wall_us(ts) - hlc_wall_us(kr->server_clock)) / 1e6);
        wire_arena_reset(wa);
    }
    wire_arena_free(wa);
}

Test(clock_skew, a_reader_that_writes_wins_over_a_writer_ahead)
{
    char a[8192], b[8192], cmd[9000], out[512];
    uint64_t ts, took;
    cs_report rep;
    ahead_then_behind(a, b, sizeof(a), &ts);
    /* B reads, then writes, in one client (its clock two hours behind the
     * value it reads): its write wins. Twice, each read twice, so that
     * reads go to both memory replicas (a client takes them in turn). */
    (void)ts;
    for (int round = 0; round < 2; round++) {
        snprintf(cmd, sizeof(cmd),
                 "{ echo 'GET skew/register'; sleep 0.3; echo 'GET skew/register'; sleep 0.3; "
                 "echo 'SET skew/register read-%d'; } | %s",
                 round, b);
        CHECK(sh(cmd, out, sizeof(out)) == 0, "B's reads and write: %s", out);
        /* Once every replica agrees (a write with ack=one reaches the other
         * replicas by gossip), they agree on B's value; so do readers. */
        char want[32];
        snprintf(want, sizeof(want), "read-%d", round);
        CHECK(cs_wait(&keys, cl.router_url, 10000, &took, &rep) == 0,
              "the replicas do not agree: %s", rep.first);
        uint64_t t2, w2;
        int tomb;
        lat_slice v;
        lat_lww_view(keys.k[0].got.data, keys.k[0].got.len, &t2, &w2, &tomb, &v);
        CHECK(v.len == strlen(want) && memcmp(v.data, want, v.len) == 0,
              "B read the register, then wrote '%s', but the replicas agree on '%.*s'", want,
              (int)v.len, (const char *)v.data);
        snprintf(cmd, sizeof(cmd), "%s GET skew/register", b);
        CHECK(sh(cmd, out, sizeof(out)) == 0 && strcmp(out, want) == 0,
              "B read the register, then wrote '%s', but readers see '%s'", want, out);
    }
}
