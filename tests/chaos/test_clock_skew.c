/*
 * test_clock_skew.c - what clock skew does to LWW, and what it does not
 * (docs/consistency.md, "Timestamps and clock skew").
 *
 * Writers are skew_client processes; one of them runs under libfaketime
 * (LD_PRELOAD, FAKETIME_DONT_FAKE_MONOTONIC=1 so that only the wall clock
 * moves, and a timestamp file so that the test can step it while the
 * writer runs), hours away from everyone else. Against a cluster of two
 * memory nodes and a disk node (three replicas per key):
 *
 *  - lww_resolves_identically: both writers overwrite the same keys in
 *    turn; afterwards every replica of every key holds the same bytes, the
 *    value is one of those written, and the writer two hours ahead has
 *    hidden at least one later write of the other (the first one, stamped
 *    before that writer had heard any server's clock): skew decides, but
 *    it decides the same everywhere;
 *  - read_then_write_wins: a writer that reads the key first stamps its
 *    write above the value it read, however far ahead that value's clock;
 *  - writer_monotonic: the skewed writer's timestamps only grow, across a
 *    step of its wall clock five hours back while it runs;
 *  - causal_keeps_both: CAUSAL keeps the two concurrent writes side by
 *    side, whatever the clocks say, until a write that observed both.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "lattices/lattice.h"
#include "placement/ring.h"
#include "tcheck.h"
#include "tcluster.h"
#include "tkv.h"

extern char **environ;

static tcluster cl;

#define HOUR_US (3600ull * 1000000ull)

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcluster_dump(&cl);                                                                    \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

/* ---- skew_client processes ---------------------------------------------------------------------
 */

typedef struct writer {
    pid_t pid;
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
    int in[2], out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    char *argv[] = {prog, cl.router_url, NULL};
    int rc = posix_spawn(&w->pid, prog, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    cr_assert_eq(rc, 0, "cannot start %s: %s", prog, strerror(rc));
    w->to = fdopen(in[1], "w");
    w->from = fdopen(out[0], "r");
    cr_assert(w->to && w->from);
}

static void writer_stop(writer *w)
{
    if (!w->pid)
        return;
    if (w->to)
        fclose(w->to); /* EOF: it exits */
    if (w->from)
        fclose(w->from);
    int st;
    for (int i = 0; i < 50 && waitpid(w->pid, &st, WNOHANG) == 0; i++) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(w->pid, SIGKILL);
    waitpid(w->pid, &st, 0);
    w->pid = 0;
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
    if (!fgets(line, sizeof(line), w->from)) {
        tcluster_dump(&cl);
        cr_assert_fail("%s: no answer (see %s/%s.log)", w->name, cl.dir, w->name);
    }
    line[strcspn(line, "\n")] = '\0';
    return line;
}

static uint64_t wall_us(writer *w)
{
    unsigned long long us = 0;
    cr_assert_eq(sscanf(call(w, "wall"), "wall %llu", &us), 1);
    return us;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- reading every replica ----------------------------------------------------------------------
 */

/* Waits until every replica of key (both tiers) answers the same LWW
 * state; copies it to out. 0, or -1 after 10 s. */
static int replicas_agree(const char *key, lat_buf *out)
{
    uint64_t end = clock_mono_ms() + 10000;
    wire_arena *a = wire_arena_new();
    int agreed = 0;
    while (!agreed && clock_mono_ms() < end) {
        ring *r;
        if (tkv_fetch_ring(cl.router_url, &r, NULL) != TRELLIS_OK)
            continue;
        int n = 0;
        agreed = 1;
        static const int tiers[] = {RING_TIER_MEMORY, RING_TIER_DISK};
        for (int t = 0; t < 2 && agreed; t++)
            for (size_t nth = 0; agreed; nth++) {
                char url[RING_MAX_URL + 1];
                if (tkv_replica_url(r, tiers[t], nth, key, strlen(key), url, sizeof(url)) !=
                    TRELLIS_OK)
                    break;
                Trellis__KeyOp *op = tkv_op_get(a, key, strlen(key), LAT_LWW);
                Trellis__KvReply *rep;
                if (tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep) != TRELLIS_OK ||
                    rep->results[0]->status != TRELLIS__STATUS__OK) {
                    agreed = 0;
                    break;
                }
                const ProtobufCBinaryData *v = &rep->results[0]->value;
                if (n++ == 0)
                    lat_buf_set(out, v->data, v->len);
                else if (v->len != out->len || memcmp(v->data, out->data, v->len) != 0)
                    agreed = 0;
                wire_arena_reset(a);
            }
        agreed = agreed && n == 3;
        ring_free(r);
        if (!agreed) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    wire_arena_free(a);
    return agreed ? 0 : -1;
}

/* ---- the cluster
 * ----------------------------------------------------------------------------------- */

static void setup(void)
{
    if (!faketime_lib())
        cr_skip_test("libfaketime is not installed (Debian package faketime)");
    cr_assert_eq(tcluster_init(&cl, "skew"), 0);
    tcluster_set(&cl, "cluster.memory_replicas=2");
    tcluster_set(&cl, "cluster.disk_replicas=1");
    tcluster_set(&cl, "kvs.gossip_period_ms=50");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=300");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *n[3] = {tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL),
                   tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL),
                   tcluster_start_node(&cl, RING_TIER_DISK, 1, NULL)};
    for (int i = 0; i < 3; i++)
        CHECK(n[i] && tcluster_wait_state(&cl, n[i], NODE_ACTIVE, 20000) == 0, "node %d", i);
    writer_start(&wa, "a", NULL);  /* the true clock */
    writer_start(&wb, "b", "+2h"); /* two hours ahead */
}

static void teardown(void)
{
    writer_stop(&wa);
    writer_stop(&wb);
    int reports = tcluster_sanitizer_reports(&cl);
    tcluster_fini(&cl);
    cr_assert_eq(reports, 0, "%d processes reported sanitizer errors", reports);
}

TestSuite(clock_skew, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the tests
 * ------------------------------------------------------------------------------------------ */

Test(clock_skew, lww_resolves_identically)
{
    /* libfaketime took effect: b's wall clock is two hours ahead. */
    uint64_t skew = wall_us(&wb) - now_us();
    CHECK(skew > 2 * HOUR_US - 60000000ull && skew < 2 * HOUR_US + 60000000ull,
          "b is %lld s ahead, not two hours", (long long)(skew / 1000000));
    enum { KEYS = 20, ROUNDS = 3 };
    char key[64];
    /* In turn: b writes a key, then a writes it (later in real time). */
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof(key), "skew/%d", k);
            CHECK(strcmp(call(&wb, "put %s b%d", key, r), "ok") == 0, "b put %s", key);
            CHECK(strcmp(call(&wa, "put %s a%d", key, r), "ok") == 0, "a put %s", key);
        }
    lat_buf st;
    lat_buf_init(&st);
    int hidden = 0;
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "skew/%d", k);
        CHECK(replicas_agree(key, &st) == 0, "%s: the three replicas do not agree", key);
        uint64_t ts, wr;
        int tomb;
        lat_slice v;
        lat_lww_view(st.data, st.len, &ts, &wr, &tomb, &v);
        char val[32];
        snprintf(val, sizeof(val), "%.*s", (int)v.len, (const char *)v.data);
        CHECK(!tomb && (val[0] == 'a' || val[0] == 'b') && atoi(val + 1) == ROUNDS - 1,
              "%s holds %s, not a value of the last round", key, val);
        hidden += val[0] == 'b'; /* a wrote after b, yet b's timestamp is larger */
        /* Every client reading it sees the same. */
        const char *ra = call(&wa, "get %s", key);
        const char *want = strstr(ra, val);
        CHECK(want != NULL, "a reads %s, replicas hold %s", ra, val);
    }
    cr_log_info("b (two hours ahead) hid a's later write on %d of %d keys", hidden, KEYS);
    /* a's very first write was stamped before a had heard any server's
     * clock: b's older write wins key 0. */
    CHECK(hidden >= 1, "no write of a was hidden by b's clock");
    lat_buf_free(&st);
    TEST_LEAK_CHECK();
}

Test(clock_skew, read_then_write_wins)
{
    CHECK(strcmp(call(&wb, "put skew/read b"), "ok") == 0, "b put");
    /* a reads the key (the reply carries a clock above b's timestamp),
     * then overwrites it: its write wins despite b's clock. */
    const char *r = call(&wa, "get skew/read");
    CHECK(strncmp(r, "val b ", 6) == 0, "a reads %s", r);
    CHECK(strcmp(call(&wa, "put skew/read a"), "ok") == 0, "a put");
    lat_buf st;
    lat_buf_init(&st);
    CHECK(replicas_agree("skew/read", &st) == 0, "replicas do not agree");
    uint64_t ts, wr;
    int tomb;
    lat_slice v;
    lat_lww_view(st.data, st.len, &ts, &wr, &tomb, &v);
    CHECK(v.len == 1 && v.data[0] == 'a', "the read-then-write of a lost to b's clock");
    lat_buf_free(&st);
    TEST_LEAK_CHECK();
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
    uint64_t behind = now_us() - wall_us(&wb);
    CHECK(behind > 3 * HOUR_US - 60000000ull, "b's clock did not step back");
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
    TEST_LEAK_CHECK();
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
    TEST_LEAK_CHECK();
}
