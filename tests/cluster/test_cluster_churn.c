/*
 * test_cluster_churn.c - membership changes do not stall callers
 * (docs/protocol.md, "Membership changes").
 *
 * Callers keep a steady load of writes and reads on a one-node memory
 * tier while a second node joins, departs, joins again at the same
 * address (a new process, as the monitor's local provisioner and
 * deploy/cluster.sh re-add nodes) and departs again. What must not happen:
 *  - a call that waits out an attempt's share of its deadline for a node
 *    that left the ring (trellis_counters.unreachable_waits stays 0);
 *  - a write forwarded to the joining node that waits for its peers'
 *    connection to the address to come out of a back-off meant for the
 *    process that was there before (no forward batch is sent twice:
 *    trellis_forward_batches_resent_total stays 0 on the serving node);
 *  - a call that fails.
 * The callers' deadline is long (8 s, 2 s per attempt) so that a wait for
 * a departed node is unmistakable in the slowest call, which is printed.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "trellis/trellis.h"
#include "tsupport.h"

#define CALLERS 4
#define KEYS    200

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(churn, .fini = teardown, .timeout = 180);

typedef struct caller {
    pthread_t th;
    trellis_client *c;
    int id;
    atomic_int *stop;
    uint64_t calls, failed, slowest_us;
    char first_error[160];
} caller;

/* Writes and reads its keys, about one call every 2 ms, until told to
 * stop. */
static void *caller_main(void *arg)
{
    caller *k = arg;
    char key[64], val[64];
    for (uint64_t i = 0; !atomic_load(k->stop); i++) {
        snprintf(key, sizeof(key), "churn/%d/%" PRIu64, k->id, i % KEYS);
        uint64_t t0 = clock_mono_us();
        int rc;
        if (i % 2 == 0) {
            snprintf(val, sizeof(val), "v%" PRIu64, i);
            rc = trellis_put(k->c, key, strlen(key), val, strlen(val));
        } else {
            void *v = NULL;
            size_t vlen = 0;
            rc = trellis_get(k->c, key, strlen(key), &v, &vlen);
            trellis_free(v);
            if (rc == TRELLIS_NOT_FOUND)
                rc = TRELLIS_OK;
        }
        uint64_t dt = clock_mono_us() - t0;
        k->calls++;
        if (dt > k->slowest_us)
            k->slowest_us = dt;
        if (rc != TRELLIS_OK && k->failed++ == 0)
            snprintf(k->first_error, sizeof(k->first_error),
                     "%s of %s: %s (at %.3f s, %" PRIu64 " ms)", i % 2 ? "get" : "put", key,
                     trellis_strerror(rc), (double)clock_wall_us() / 1e6, dt / 1000);
        usleep(2000);
    }
    return NULL;
}

/* SIGTERM, then the node hands off, leaves and exits 0. */
static void depart(tnode *n)
{
    tproc_signal(n->p, SIGTERM);
    uint64_t end = clock_mono_ms() + 20000;
    while (tproc_running(n->p) && clock_mono_ms() < end)
        usleep(20000);
    int status = tproc_running(n->p) ? -1 : tproc_status(n->p);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s did not depart cleanly (wait status %d)", n->id, status);
    CHECK(tcluster_wait_state(&cl, n, NODE_LEFT, 5000) == 0, "the router does not list %s LEFT",
          n->id);
}

Test(churn, joins_and_departures_do_not_stall_callers)
{
    cr_assert_eq(tcluster_init(&cl, "churn"), 0);
    tcluster_set_small(&cl);
    int mport = tcluster_port(&cl);
    CHECK(mport > 0, "no port for metrics");
    char mp[16];
    snprintf(mp, sizeof(mp), "%d", mport);
    const char *m1_extra[] = {"--metrics-port", mp, NULL};
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m1 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, m1_extra);
    CHECK(m1 && tcluster_wait_state(&cl, m1, NODE_ACTIVE, 20000) == 0, "m1 not ACTIVE");

    atomic_int stop;
    atomic_init(&stop, 0);
    caller k[CALLERS];
    memset(k, 0, sizeof(k));
    for (int i = 0; i < CALLERS; i++) {
        trellis_options o;
        trellis_options_init(&o);
        o.timeout_ms = 8000;
        o.retries = 3;
        k[i].id = i;
        k[i].stop = &stop;
        CHECK(trellis_connect(cl.router_url, &o, &k[i].c) == TRELLIS_OK, "no client");
    }
    for (int i = 0; i < CALLERS; i++)
        CHECK(pthread_create(&k[i].th, NULL, caller_main, &k[i]) == 0, "no thread");
    usleep(500000);

    tnode *m2 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m2 && tcluster_wait_state(&cl, m2, NODE_ACTIVE, 20000) == 0, "m2 not ACTIVE");
    usleep(1000000);
    depart(m2);
    /* Long enough for the peers' dialers to back off to their longest
     * interval while nothing listens at m2's address. */
    usleep(3000000);
    uint64_t gen = 0;
    tkv_node_state(cl.router_url, m2->id, &gen);
    CHECK(tcluster_restart_node(&cl, m2) == 0, "%s did not start again", m2->id);
    CHECK(tcluster_wait_state_gen(&cl, m2, NODE_ACTIVE, gen, 20000) == 0, "%s not ACTIVE again",
          m2->id);
    usleep(1000000);
    depart(m2);
    usleep(500000);

    atomic_store(&stop, 1);
    uint64_t calls = 0, failed = 0, slowest = 0, waits = 0, unreachable = 0;
    const char *first_error = "";
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(k[i].th, NULL);
        trellis_counters cn;
        trellis_get_counters(k[i].c, &cn);
        waits += cn.unreachable_waits;
        unreachable += cn.unreachable;
        calls += k[i].calls;
        failed += k[i].failed;
        if (k[i].slowest_us > slowest)
            slowest = k[i].slowest_us;
        if (k[i].failed && !*first_error)
            first_error = k[i].first_error;
        trellis_close(k[i].c);
    }
    double resent = thttp_metric_sum(mport, "trellis_forward_batches_resent_total");
    double forwarded = thttp_metric_sum(mport, "trellis_forwarded_total");
    cr_log_info("%" PRIu64 " calls, slowest %" PRIu64 " ms, %" PRIu64
                " requests failed in transport, %" PRIu64
                " waits for unreachable shards; %s forwarded %.0f writes, %.0f batches again",
                calls, slowest / 1000, unreachable, waits, m1->id, forwarded, resent);
    CHECK(failed == 0, "%" PRIu64 " calls failed; the first: %s", failed, first_error);
    CHECK(calls > 1000, "only %" PRIu64 " calls", calls);
    CHECK(waits == 0,
          "%" PRIu64 " times a call waited out its attempt's share for an unreachable shard "
          "(slowest call %" PRIu64 " ms)",
          waits, slowest / 1000);
    CHECK(forwarded > 0, "%s forwarded nothing to the joining node", m1->id);
    CHECK(resent == 0,
          "%s sent %.0f forward batches again: writes waited for the joining node (slowest "
          "call %" PRIu64 " ms)",
          m1->id, resent, slowest / 1000);
}
