/*
 * test_cluster_converge.c - replicas converge to byte-identical states,
 * within the time the design promises.
 *
 * A cluster of three memory and two disk nodes with two replicas of every
 * key in each tier. Five rounds of random deltas of every lattice type are
 * written straight to the shards of randomly chosen replicas (either
 * tier); each key's expected state is the merge of every delta. After the
 * last write every replica of every key must hold exactly the expected
 * bytes within two gossip periods plus one anti-entropy period (100 ms and
 * 500 ms here). The test prints its seed; TRELLIS_SEED=<seed> replays the
 * same writes. It bounds a time, so ctest runs it alone (RUN_SERIAL).
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

TestSuite(converge, .fini = teardown, .timeout = 60);

#define NKEYS     350 /* 50 of each type */
#define ROUNDS    5
#define GOSSIP_MS 100
#define AE_MS     500

Test(converge, every_type_on_every_replica_within_two_gossip_periods_and_one_anti_entropy)
{
    trand rnd;
    trand_begin(&rnd, "converge");
    cr_assert_eq(cs_init(&keys, "converge", NKEYS), 0);
    cr_assert_eq(tcluster_init(&cl, "converge"), 0);
    char gossip[64], ae[64];
    snprintf(gossip, sizeof(gossip), "kvs.gossip_period_ms=%d", GOSSIP_MS);
    snprintf(ae, sizeof(ae), "kvs.anti_entropy_period_ms=%d", AE_MS);
    const char *const sets[] = {"cluster.memory_replicas=2", "cluster.disk_replicas=2", gossip, ae,
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
    /* Quiescence starts now: the last write was acknowledged. */
    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(&keys, cl.router_url, 10000, &took, &rep);
    CHECK(rc == 0,
          "no convergence within 10 s: %zu of %zu keys complete, %zu identical, %zu reads "
          "failed; %s (TRELLIS_SEED=%llu)",
          rep.complete, rep.keys, rep.identical, rep.failed, rep.first,
          (unsigned long long)rnd.seed);
    cr_log_info("%zu keys x %zu replicas identical and complete %llu ms after the last write",
                rep.keys, rep.replicas, (unsigned long long)took);
    CHECK(rep.replicas == 4, "%zu replicas per key, not 2 + 2", rep.replicas);
    CHECK(took <= 2 * GOSSIP_MS + AE_MS,
          "replicas converged after %llu ms, beyond 2 x %d ms gossip + %d ms anti-entropy "
          "(TRELLIS_SEED=%llu)",
          (unsigned long long)took, GOSSIP_MS, AE_MS, (unsigned long long)rnd.seed);
}
