/*
 * tsupport.h - the test-support layer: include this one header.
 *
 * How to write a test
 * -------------------
 * 1. Register it in the CMakeLists.txt of its component's test folder:
 *        trellis_add_test(NAME kvs_foo SOURCES test_foo.c LIBS trellis_kvs
 *                         TIMEOUT 90 LABELS integration)
 *    (cmake/trellis.cmake: every test has a timeout and a label, unit by
 *    default; `integration` runs real processes, `cluster` runs whole
 *    clusters or takes long; see docs/testing.md for what runs when). A
 *    Criterion test links trellis_testsupport by itself. A shell test is
 *    registered with trellis_add_script_test and sources
 *    tests/support/lib.sh, the same layer for scripts.
 * 2. Start processes only through this layer, never with fork, system or a
 *    port of your own:
 *        static tcluster cl;
 *        static void fini(void) { tcluster_fini(&cl); }
 *        TestSuite(foo, .fini = fini, .timeout = 60);
 *        Test(foo, bar)
 *        {
 *            cr_assert_eq(tcluster_init(&cl, "foo"), 0);
 *            tcluster_set(&cl, "kvs.gossip_period_ms=50");
 *            CHECK(tcluster_start(&cl, 2, 1, 2, NULL) == 0, "no cluster");
 *            ... tkv_* requests, or a libtrellis client on cl.router_url ...
 *        }
 *    tcluster_init takes a temporary directory and a locked port range
 *    (tport.h: ports are never picked by hand; a test that needs more
 *    ports than a cluster's takes them with tcluster_port or tport_reserve).
 *    Other programs (a helper binary, a script) start with tproc_spawn or
 *    tproc_run, which tie them to the test's life.
 * 3. Assert with cr_assert, or with CHECK(cond, fmt, ...) when the
 *    processes' logs help to understand a failure (they are printed).
 * 4. Randomness comes from trand_begin (it prints the seed; TRELLIS_SEED
 *    replays it). Name r.seed in failure messages.
 * 5. Close what you open: free, close, ring_free, wire_arena_free. When the
 *    body returns, the cluster is stopped cleanly, its logs are scanned for
 *    sanitizer reports, and in a sanitized build LeakSanitizer checks the
 *    test process (tcheck.h); each of those fails the test. Nothing to
 *    call: do not stop the cluster yourself unless the test is about that.
 * 6. A test that needs a tool the machine may lack (faketime, openssl,
 *    root) skips: cr_skip_test in Criterion, exit 77 in a plain program or
 *    a script (SKIP_RETURN_CODE 77), never a silent pass.
 * 7. Plain programs (own main, e.g. for ThreadSanitizer, which cannot run
 *    Criterion) define TCHECK_PLAIN before including this header, print
 *    "N passed, M failed" and count tcheck_end()'s problems as failures.
 *
 * The modules: tport.h (ports), tproc.h (processes), tcluster.h (clusters
 * of routers, storage nodes and the monitor), tkv.h (requests in the wire
 * protocol), thttp.h (/metrics), trand.h (seeded randomness), tcheck.h
 * (CHECK, the checks at the end of every test).
 */
#ifndef TRELLIS_TESTS_SUPPORT_TSUPPORT_H
#define TRELLIS_TESTS_SUPPORT_TSUPPORT_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "tcheck.h"
#include "tcluster.h"
#include "thttp.h"
#include "tkv.h"
#include "tport.h"
#include "tproc.h"
#include "trand.h"

/* Milliseconds on the monotonic clock. */
static inline long long tnow_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds (the whole time, across signals). */
static inline void tsleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#endif
