/*
 * test_cluster_loss.c - replicas converge although replication messages
 * are lost.
 *
 * The cluster of test_cluster_converge (three memory and two disk nodes,
 * two replicas of every key per tier), every node dropping 30% of its
 * outgoing replication messages (kvs.fault_drop_percent: gossip, hand-off,
 * anti-entropy; not client traffic). Random deltas of every type go to
 * random replicas; then every replica of every key must come to hold
 * exactly the merge of all of them:
 *  - with gossip running (lost batches are resent after their deadline,
 *    and anti-entropy repairs the rest);
 *  - with gossip in effect off (a 60 s period): anti-entropy alone.
 * Every test prints its seed; TRELLIS_SEED=<seed> replays the same writes.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "base/clock.h"
#include "cstate.h"
#include "tsupport.h"

static tcluster cl;
static cs_set keys;

static void teardown(void)
{
    tcluster_fini(&cl);
    cs_fini(&keys);
}

TestSuite(loss, .fini = teardown, .timeout = 150);

#define NKEYS  350
#define ROUNDS 5

/* Writes, then waits up to limit_ms for every replica to converge. */
static void lossy(const char *name, const char *gossip, int limit_ms)
{
    trand rnd;
    trand_begin(&rnd, name);
    cr_assert_eq(cs_init(&keys, name, NKEYS), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    const char *const sets[] = {"cluster.memory_replicas=2",
                                "cluster.disk_replicas=2",
                                gossip,
                                "kvs.anti_entropy_period_ms=300",
                                "kvs.fault_drop_percent=30",
                                "kvs.join_timeout_ms=10000",
                                NULL};
    tcluster_set_small(&cl);
    tcluster_set_list(&cl, sets);
    CHECK(tcluster_start(&cl, 3, 2, 2, NULL) == 0, "the cluster did not start");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    char err[512];
    for (int round = 0; round < ROUNDS; round++) {
        int rc = cs_write_random(&keys, r, &rnd, 6, err, sizeof(err));
        CHECK(rc == TRELLIS_OK, "round %d: %s (TRELLIS_SEED=%llu)", round, err,
              (unsigned long long)rnd.seed);
    }
    ring_free(r);
    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(&keys, cl.router_url, limit_ms, &took, &rep);
    CHECK(rc == 0,
          "no convergence within %d ms with 30%% of replication lost: %zu of %zu keys "
          "complete, %zu identical, %zu reads failed; %s (TRELLIS_SEED=%llu)",
          limit_ms, rep.complete, rep.keys, rep.identical, rep.failed, rep.first,
          (unsigned long long)rnd.seed);
    cr_log_info("%s: %zu keys x %zu replicas converged %llu ms after the last write", name,
                rep.keys, rep.replicas, (unsigned long long)took);
}

Test(loss, replicas_converge_with_30_percent_of_replication_dropped)
{
    lossy("lossgossip", "kvs.gossip_period_ms=50", 60000);
}

Test(loss, anti_entropy_alone_converges_with_30_percent_dropped)
{
    /* Gossip runs once a minute, after the test: only anti-entropy can
     * spread the writes. */
    lossy("lossae", "kvs.gossip_period_ms=60000", 90000);
}
