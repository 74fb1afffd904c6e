/*
 * test_clock_skew.c - what clock skew does to LWW, and what it does not
 * (docs/consistency.md, "Timestamps and clock skew").
 *
 * Writers are skew_client processes (libtrellis clients driven line by
 * line); writer b runs under libfaketime (LD_PRELOAD,
 * FAKETIME_DONT_FAKE_MONOTONIC=1 so that only the wall clock moves, and a
 * timestamp file so that the test can step it while b runs), two hours
 * ahead of writer a and of the servers. The cluster has two memory nodes
 * and a disk node: three replicas per key, read one by one (cstate.h).
 *
 *  - writer_ahead_hides_later_writes: b sets a register, a sets it later;
 *    every replica agrees, byte for byte, on b's value stamped two hours
 *    ahead, readers see it, and every replica's reply carries a clock at
 *    least as late as the value it returns;
 *  - lww_resolves_identically: both writers overwrite the same keys in
 *    turn; afterwards every replica of every key holds the same bytes, the
 *    value is one of the last round's, and b has hidden at least one later
 *    write of a (the first one, stamped before a had heard any server's
 *    clock): skew decides, but it decides the same everywhere;
 *  - reader_that_writes_wins: a writer that reads the key first stamps its
 *    write above the value it read, however far ahead that value's clock,
 *    whichever replica answered its reads;
 *  - writer_monotonic: b's timestamps only grow, across a step of its wall
 *    clock five hours back while it runs;
 *  - causal_keeps_both: CAUSAL keeps the two concurrent writes side by
 *    side, whatever the clocks say, until a write that observed both.
 *
 * Skipped when libfaketime is not installed (Debian package faketime).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/hlc.h"
#include "cstate.h"
#include "tsupport.h"

#define HOUR_US  (3600ull * 1000000ull)
#define SLACK_US (60ull * 1000000ull)

extern char **environ;

static tcluster cl;
static cs_set keys;

/* ---- skew_client processes --------------------------------------------------------------- */

typedef struct writer {
    tproc *p;
    FILE *to, *from;
    char name[8];
    char skew_file[4200]; /* libfaketime's timestamp file ("" for the true clock) */
} writer;

static writer wa, wb;

static const char *faketime_lib(void)
{
    static const char *const libs[] = {
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    };
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++)
        if (access(libs[i], R_OK) == 0)
            return libs[i];
    return NULL;
}

/* Sets the skewed writer's offset ("+2h", "-3h"): libfaketime reads the
 * file on every clock call. */
static void set_skew(const writer *w, const char *spec)
{
    FILE *f = fopen(w->skew_file, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", spec);
    fclose(f);
}

/* Starts a writer; with skew (e.g. "+2h") under libfaketime. */
static void writer_start(writer *w, const char *name, const char *skew)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->name, sizeof(w->name), "%s", name);
    char prog[4200], log[4200];
    snprintf(prog, sizeof(prog), "%s/skew_client", cl.bin);
    snprintf(log, sizeof(log), "%s/%s.log", cl.dir, name);
    char *env[256];
    size_t ne = 0;
    for (char **e = environ; *e && ne < 240; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "FAKETIME", 8) != 0)
            env[ne++] = *e;
    static char preload[512], file[4300];
    if (skew) {
        snprintf(w->skew_file, sizeof(w->skew_file), "%s/%s.faketime", cl.dir, name);
        set_skew(w, skew);
        snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", faketime_lib());
        snprintf(file, sizeof(file), "FAKETIME_TIMESTAMP_FILE=%s", w->skew_file);
        env[ne++] = preload;
        env[ne++] = file;
        env[ne++] = "FAKETIME_NO_CACHE=1";
        env[ne++] = "FAKETIME_DONT_FAKE_MONOTONIC=1";
    }
    env[ne] = NULL;
    int to = -1, from = -1;
    char *argv[] = {prog, cl.router_url, NULL};
    tproc_opts o = {.envp = env, .to_stdin = &to, .from_stdout = &from};
    CHECK(tproc_start(argv, log, &o, &w->p) == 0, "cannot start %s", prog);
    w->to = fdopen(to, "w");
    w->from = fdopen(from, "r");
    cr_assert(w->to && w->from);
}

/* Closes its stdin (it exits at EOF) and waits for it. */
static void writer_stop(writer *w)
{
    if (w->to)
        fclose(w->to);
    if (w->from)
        fclose(w->from);
    w->to = w->from = NULL;
    for (int i = 0; i < 50 && w->p && tproc_running(w->p); i++)
        tsleep_ms(100);
    tproc_free(w->p);
    w->p = NULL;
}

/* Sends one command and returns its answer line (static buffer). */
static const char *call(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *call(writer *w, const char *fmt, ...)
{
    static char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->to, fmt, ap);
    va_end(ap);
    fputc('\n', w->to);
    fflush(w->to);
    CHECK(fgets(line, sizeof(line), w->from), "%s: no answer (see %s/%s.log)", w->name, cl.dir,
          w->name);
    line[strcspn(line, "\n")] = '\0';
    return line;
}

static uint64_t wall_us(writer *w)
{
    unsigned long long us = 0;
    cr_assert_eq(sscanf(call(w, "wall"), "wall %llu", &us), 1);
    return us;
}

/* ---- the cluster --------------------------------------------------------------------------- */

/* The writers stop (and their logs are scanned) with the cluster. */
static int writers_stop(void *unused)
{
    (void)unused;
    writer_stop(&wa);
    writer_stop(&wb);
    return 0;
}

static const tcheck_ops writers_ops = {NULL, writers_stop};

static void setup(void)
{
    if (!faketime_lib())
        cr_skip_test("libfaketime is not installed (Debian package faketime)");
    cr_assert_eq(tcluster_init(&cl, "skew"), 0);
    tcluster_set_small(&cl);
    tcluster_set(&cl, "cluster.memory_replicas=2");
    tcluster_set(&cl, "cluster.disk_replicas=1");
    tcluster_set(&cl, "kvs.gossip_period_ms=50");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=300");
    CHECK(tcluster_start(&cl, 2, 1, 1, NULL) == 0, "the cluster did not start");
    tcheck_watch(&wa, &writers_ops); /* after the cluster: stopped first */
    writer_start(&wa, "a", NULL);    /* the true clock */
    writer_start(&wb, "b", "+2h");   /* two hours ahead */
    /* libfaketime took effect: b's wall clock is two hours ahead. */
    uint64_t skew = wall_us(&wb) - clock_wall_us();
    CHECK(skew > 2 * HOUR_US - SLACK_US && skew < 2 * HOUR_US + SLACK_US,
          "b is %lld s ahead, not two hours", (long long)(skew / 1000000));
}

static void teardown(void)
{
    writer_stop(&wa);
    writer_stop(&wb);
    tcluster_fini(&cl);
    cs_fini(&keys);
}

TestSuite(clock_skew, .init = setup, .fini = teardown, .timeout = 120);

/* Waits until every replica of every key of `keys` holds the same bytes;
 * then each key's state is in keys.k[i].got. */
static void replicas_agree(void)
{
    uint64_t took;
    cs_report rep;
    CHECK(cs_wait(&keys, cl.router_url, 10000, &took, &rep) == 0, "the replicas do not agree: %s",
          rep.first);
    CHECK(rep.replicas == 3, "%zu replicas per key, not 2 + 1", rep.replicas);
}

/* keys: n LWW keys "<prefix>/<i>" whose replicas must agree on any state. */
static void lww_keys(const char *prefix, size_t n)
{
    cr_assert_eq(cs_init(&keys, prefix, n), 0);
    char key[CS_MAX_KEY];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s/%zu", prefix, i);
        cs_name(&keys, i, key, LAT_LWW);
        keys.k[i].inexact = 1;
    }
}

/* The value of key i's agreed state (NUL-terminated in buf), and its
 * timestamp. */
static uint64_t agreed_value(size_t i, char *buf, size_t cap)
{
    uint64_t ts = 0, wid;
    int tomb = 1;
    lat_slice v = {NULL, 0};
    lat_lww_view(keys.k[i].got.data, keys.k[i].got.len, &ts, &wid, &tomb, &v);
    CHECK(!tomb, "%s: no live LWW state", keys.k[i].key);
    snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.data);
    return ts;
}

/* ---- the tests --------------------------------------------------------------------------- */

Test(clock_skew, writer_ahead_hides_later_writes)
{
    lww_keys("skew/register", 1);
    CHECK(strcmp(call(&wb, "put %s ahead", keys.k[0].key), "ok") == 0, "b's put");
    tsleep_ms(100);
    CHECK(strcmp(call(&wa, "put %s behind", keys.k[0].key), "ok") == 0, "a's put");
    /* Every replica holds b's value, byte for byte, stamped two hours
     * ahead, and that is what readers see. */
    replicas_agree();
    char val[64];
    uint64_t ts = agreed_value(0, val, sizeof(val));
    CHECK(strcmp(val, "ahead") == 0, "the replicas agree on '%s', not on b's value", val);
    const char *r = call(&wa, "get %s", keys.k[0].key);
    CHECK(strncmp(r, "val ahead ", 10) == 0,
          "after b (2 h ahead) and then a wrote, a reader sees '%s', not b's value", r);
    uint64_t now_us = clock_wall_us();
    CHECK(hlc_wall_us(ts) > now_us + 2 * HOUR_US - SLACK_US,
          "b's timestamp is not two hours ahead (%llu us vs now %llu us)",
          (unsigned long long)hlc_wall_us(ts), (unsigned long long)now_us);

    /* Each replica's clock, as its replies carry it, covers what it serves:
     * a reader of any replica writes above the value it read. */
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "no ring");
    char urls[4][RING_MAX_URL + 1];
    int tiers[4];
    size_t n = cs_replica_urls(&keys, 0, rg, urls, tiers, 4);
    ring_free(rg);
    CHECK(n == 3, "%zu replicas, not 2 + 1", n);
    wire_arena *a = wire_arena_new();
    for (size_t i = 0; i < n; i++) {
        Trellis__KeyOp *op = tkv_op_get(a, keys.k[0].key, keys.k[0].klen, LAT_NONE);
        Trellis__KvReply *kr;
        int rc = tkv_batch(urls[i], &op, 1, TKV_TIMEOUT_MS, a, &kr);
        CHECK(rc == TRELLIS_OK && kr->n_results == 1 &&
                  kr->results[0]->status == TRELLIS__STATUS__OK,
              "GET at %s: %s", urls[i], trellis_strerror(rc));
        CHECK(kr->server_clock >= ts,
              "the %s replica at %s answers b's value stamped %.3f s ahead with a clock %.3f s "
              "behind it: a reader of this replica writes below the value it read",
              tiers[i] == RING_TIER_MEMORY ? "memory" : "disk", urls[i],
              (double)(hlc_wall_us(ts) - now_us) / 1e6,
              (double)(hlc_wall_us(ts) - hlc_wall_us(kr->server_clock)) / 1e6);
        wire_arena_reset(a);
    }
    wire_arena_free(a);
}

Test(clock_skew, lww_resolves_identically)
{
    enum { KEYS = 20, ROUNDS = 3 };
    lww_keys("skew", KEYS);
    /* In turn: b writes a key, then a writes it (later in real time). */
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < KEYS; k++) {
            CHECK(strcmp(call(&wb, "put %s b%d", keys.k[k].key, r), "ok") == 0, "b put %s",
                  keys.k[k].key);
            CHECK(strcmp(call(&wa, "put %s a%d", keys.k[k].key, r), "ok") == 0, "a put %s",
                  keys.k[k].key);
        }
    replicas_agree();
    int hidden = 0;
    for (int k = 0; k < KEYS; k++) {
        char val[32];
        agreed_value((size_t)k, val, sizeof(val));
        CHECK((val[0] == 'a' || val[0] == 'b') && atoi(val + 1) == ROUNDS - 1,
              "%s holds %s, not a value of the last round", keys.k[k].key, val);
        hidden += val[0] == 'b'; /* a wrote after b, yet b's timestamp is larger */
        /* Every client reading it sees the same. */
        const char *ra = call(&wa, "get %s", keys.k[k].key);
        CHECK(strstr(ra, val) != NULL, "a reads %s, replicas hold %s", ra, val);
    }
    cr_log_info("b (two hours ahead) hid a's later write on %d of %d keys", hidden, KEYS);
    /* a's very first write was stamped before a had heard any server's
     * clock: b's older write wins key 0. */
    CHECK(hidden >= 1, "no write of a was hidden by b's clock");
}

Test(clock_skew, reader_that_writes_wins)
{
    lww_keys("skew/read", 1);
    const char *key = keys.k[0].key;
    CHECK(strcmp(call(&wb, "put %s ahead", key), "ok") == 0, "b put");
    /* a reads (each reply carries a clock above b's timestamp), then
     * overwrites, in one client whose own clock is two hours behind the
     * value it reads: its write wins. Twice, each read twice, so that
     * reads go to both memory replicas (a client takes them in turn). */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2; i++) {
            const char *r = call(&wa, "get %s", key);
            CHECK(strncmp(r, "val ", 4) == 0, "a reads %s", r);
            CHECK(round > 0 || strncmp(r, "val ahead ", 10) == 0, "a reads %s, not b's value", r);
        }
        char want[32];
        snprintf(want, sizeof(want), "read-%d", round);
        CHECK(strcmp(call(&wa, "put %s %s", key, want), "ok") == 0, "a put");
        /* Once every replica agrees, they agree on a's value; so do
         * readers. */
        replicas_agree();
        char val[32];
        agreed_value(0, val, sizeof(val));
        CHECK(strcmp(val, want) == 0,
              "a read the register, then wrote '%s', but the replicas agree on '%s'", want, val);
        const char *r = call(&wb, "get %s", key);
        CHECK(strncmp(r, "val ", 4) == 0 && strncmp(r + 4, want, strlen(want)) == 0 &&
                  r[4 + strlen(want)] == ' ',
              "a read the register, then wrote '%s', but readers see '%s'", want, r);
    }
}

Test(clock_skew, writer_monotonic)
{
    unsigned long long ok1, first1, last1, ok2, first2, last2;
    int mono1, mono2;
    CHECK(sscanf(call(&wb, "seq skew/own 200"), "seq %llu %d %llu %llu", &ok1, &mono1, &first1,
                 &last1) == 4,
          "seq");
    CHECK(ok1 == 200 && mono1, "b's timestamps went backwards (%llu writes read back)", ok1);
    /* b's wall clock steps five hours back while it runs. */
    set_skew(&wb, "-3h");
    uint64_t behind = clock_wall_us() - wall_us(&wb);
    CHECK(behind > 3 * HOUR_US - SLACK_US, "b's clock did not step back");
    CHECK(sscanf(call(&wb, "seq skew/own 200"), "seq %llu %d %llu %llu", &ok2, &mono2, &first2,
                 &last2) == 4,
          "seq");
    CHECK(ok2 == 200 && mono2 && first2 > last1,
          "after its clock stepped back, b's timestamps went backwards (%llu after %llu)", first2,
          last1);
    /* a (true clock) shares the servers: its timestamps follow the larger
     * clock it heard of, and keep growing too. */
    CHECK(sscanf(call(&wa, "seq skew/own-a 100"), "seq %llu %d %llu %llu", &ok1, &mono1, &first1,
                 &last1) == 4 &&
              ok1 == 100 && mono1,
          "a's timestamps went backwards");
}

Test(clock_skew, causal_keeps_both)
{
    CHECK(strcmp(call(&wb, "cput skew/causal b"), "ok") == 0, "b cput");
    CHECK(strcmp(call(&wa, "cput skew/causal a"), "ok") == 0, "a cput");
    /* Neither observed the other: both values stay, whatever the clocks. */
    const char *r = call(&wa, "cget skew/causal");
    CHECK(strncmp(r, "causal 2 ", 9) == 0 && strstr(r, " a") && strstr(r, " b"),
          "a reads %s, not both concurrent values", r);
    r = call(&wb, "cget skew/causal");
    CHECK(strncmp(r, "causal 2 ", 9) == 0, "b reads %s", r);
    /* A write over what a read supersedes both. */
    CHECK(strcmp(call(&wa, "cputo skew/causal resolved"), "ok") == 0, "a cputo");
    r = call(&wb, "cget skew/causal");
    CHECK(strcmp(r, "causal 1 resolved") == 0, "b reads %s after the resolving write", r);
}
