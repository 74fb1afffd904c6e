/*
 * test_cluster_expiry.c - expiry across a cluster, replica by replica.
 *
 * Two memory and two disk nodes, every key on all four (two replicas per
 * tier). Keys of every type are written and converge; then:
 *  - their deadline is set (ack=all) and each replica is read straight
 *    from its shard: before the deadline every replica still holds the
 *    value, and a reading sent once the deadline has passed finds the key
 *    missing on every replica (the rule is the same everywhere: a replica
 *    answers by its own clock, here the same machine's, so the bound is
 *    the clock skew, 0);
 *  - the keys are written again: every replica converges to the new value
 *    alone, nothing of the old one;
 *  - a disk node is killed; keys it held expire while it is down (some
 *    had their deadline before it died, some were given one after); it
 *    restarts from its RocksDB: every replica, the restarted one included,
 *    ends with the keys missing, and the rewritten keys keep only their
 *    new values;
 *  - a third memory node joins and takes keys over by hand-off: on it as
 *    everywhere, the expired keys are missing and the rewritten ones hold
 *    their new values alone.
 * The test prints its seed; TRELLIS_SEED=<seed> replays the same writes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

#include "base/clock.h"
#include "cstate.h"
#include "trellis/trellis.h"
#include "tsupport.h"

static tcluster cl;
#define NKEYS 70 /* 10 of each type per set */

static cs_set again, gone;
static uint8_t again_applied[NKEYS], gone_applied[NKEYS];
static trellis_client *cli;

static void teardown(void)
{
    trellis_close(cli);
    cli = NULL;
    tcluster_fini(&cl);
    cs_fini(&again);
    cs_fini(&gone);
}

TestSuite(expiry, .fini = teardown, .timeout = 120);

#define NODE_TIMEOUT_MS 1000

/* Sets the deadline of every key of s (through the client: with ack=all
 * on every replica) and checks each was applied: on every key that reads
 * as a value; a key whose random writes left it empty (a deleted
 * register, an empty set) has nothing to expire, as in Redis (NOT_FOUND).
 * applied[i] says which did. */
static void expire_all(cs_set *s, uint64_t deadline, uint8_t *applied)
{
    trellis_batch *b = trellis_batch_new();
    CHECK(b != NULL, "no batch");
    for (size_t i = 0; i < s->n; i++)
        trellis_batch_expire(b, s->k[i].key, s->k[i].klen, deadline, TRELLIS_EXPIRE_ALWAYS);
    int rc = trellis_batch_exec(cli, b);
    CHECK(rc == TRELLIS_OK, "EXPIRE: %s", trellis_status_name(rc));
    size_t napplied = 0;
    for (size_t i = 0; i < s->n; i++) {
        trellis_result r;
        trellis_batch_result(b, i, &r);
        const cs_key *k = &s->k[i];
        int empty = lat_is_empty(k->type, k->want.data, k->want.len);
        applied[i] = r.status == TRELLIS_OK && r.integer == 1;
        napplied += applied[i];
        CHECK(empty ? r.status == TRELLIS_NOT_FOUND : applied[i],
              "EXPIRE of %s (%s): %s, applied %lld", k->key, empty ? "empty" : "a value",
              trellis_status_name(r.status), (long long)r.integer);
    }
    trellis_batch_free(b);
    CHECK(napplied * 2 > s->n, "only %zu of %zu keys read as values", napplied, s->n);
}

/* Every replica of every key of s must answer as expected now, in one
 * reading. */
static void read_once(cs_set *s, const char *what)
{
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    cs_report rep;
    CHECK(cs_read(s, r, 2000, &rep) == TRELLIS_OK, "reading failed");
    ring_free(r);
    CHECK(rep.complete == rep.keys && rep.replicas == 4,
          "%s: %zu of %zu keys as expected on %zu replicas; %s", what, rep.complete, rep.keys,
          rep.replicas, rep.first);
}

static void converge(cs_set *s, const char *what)
{
    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(s, cl.router_url, 20000, &took, &rep);
    CHECK(rc == 0, "%s: no convergence within 20 s: %zu of %zu keys complete; %s", what,
          rep.complete, rep.keys, rep.first);
    cr_log_info("%s: %zu keys x %zu replicas after %llu ms", what, rep.keys, rep.replicas,
                (unsigned long long)took);
}

/* The expected state of the keys of s that were given a deadline:
 * missing. */
static void expect_missing(cs_set *s, const uint8_t *applied)
{
    for (size_t i = 0; i < s->n; i++)
        if (applied[i])
            s->k[i].want.len = 0;
}

static void write_round(cs_set *s, trand *rnd)
{
    ring *r;
    char err[512];
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    int rc = cs_write_random(s, r, rnd, 4, err, sizeof(err));
    ring_free(r);
    CHECK(rc == TRELLIS_OK, "writes: %s (TRELLIS_SEED=%llu)", err, (unsigned long long)rnd->seed);
}

static void sleep_until_wall(uint64_t unix_ms)
{
    uint64_t now;
    while ((now = clock_wall_us() / 1000) < unix_ms)
        usleep((useconds_t)((unix_ms - now) * 1000));
}

Test(expiry, on_every_replica_written_again_and_through_a_disk_restart)
{
    trand rnd;
    trand_begin(&rnd, "cluster_expiry");
    cr_assert_eq(cs_init(&again, "again", NKEYS), 0);
    cr_assert_eq(cs_init(&gone, "gone", NKEYS), 0);
    cr_assert_eq(tcluster_init(&cl, "expiry"), 0);
    char timeout[64];
    snprintf(timeout, sizeof(timeout), "route.node_timeout_ms=%d", NODE_TIMEOUT_MS);
    const char *const sets[] = {"cluster.memory_replicas=2",
                                "cluster.disk_replicas=2",
                                "kvs.gossip_period_ms=100",
                                "kvs.anti_entropy_period_ms=500",
                                "kvs.join_timeout_ms=10000",
                                timeout,
                                NULL};
    tcluster_set_small(&cl);
    tcluster_set_list(&cl, sets);
    CHECK(tcluster_start(&cl, 2, 2, 2, NULL) == 0, "the cluster did not start");
    trellis_options o;
    trellis_options_init(&o);
    o.ack = TRELLIS_ACK_ALL;
    CHECK(trellis_connect(cl.router_url, &o, &cli) == TRELLIS_OK, "connect");

    /* Values everywhere. */
    write_round(&again, &rnd);
    write_round(&gone, &rnd);
    converge(&again, "written");
    converge(&gone, "written");

    /* A deadline on every replica: still there before it, gone after. */
    uint64_t deadline = trellis_clock_ms(cli) + 2500;
    expire_all(&again, deadline, again_applied);
    read_once(&again, "before the deadline");
    sleep_until_wall(deadline + 1);
    expect_missing(&again, again_applied);
    read_once(&again, "after the deadline");

    /* Written again: the new values alone, everywhere. */
    write_round(&again, &rnd);
    converge(&again, "written again");

    /* A disk node goes down. Half of `gone` has its deadline before (on
     * every replica, the node's disk included), half after (not on it). */
    tnode *d = NULL;
    for (int i = 0; i < cl.nnodes; i++)
        if (cl.nodes[i].tier == RING_TIER_DISK)
            d = &cl.nodes[i];
    CHECK(d != NULL, "no disk node");
    cs_set first_half = {gone.k, gone.n / 2},
           second_half = {gone.k + gone.n / 2, gone.n - gone.n / 2};
    deadline = trellis_clock_ms(cli) + 1000;
    expire_all(&first_half, deadline, gone_applied);
    uint64_t gen = 0;
    CHECK(tkv_node_state(cl.router_url, d->id, &gen) == NODE_ACTIVE, "%s not ACTIVE", d->id);
    tproc_kill9(d->p);
    CHECK(tcluster_wait_state(&cl, d, NODE_DEAD, 10000) == 0, "%s was not marked DEAD", d->id);
    trellis_close(cli);
    o.ack = TRELLIS_ACK_ONE; /* one replica is down */
    CHECK(trellis_connect(cl.router_url, &o, &cli) == TRELLIS_OK, "connect");
    expire_all(&second_half, trellis_clock_ms(cli) + 500, gone_applied + gone.n / 2);
    sleep_until_wall(trellis_clock_ms(cli) + 600);
    sleep_until_wall(deadline + 1);

    CHECK(tcluster_restart_node(&cl, d) == 0, "%s did not restart", d->id);
    CHECK(tcluster_wait_state_gen(&cl, d, NODE_ACTIVE, gen, 20000) == 0,
          "%s did not rejoin as a new generation", d->id);
    expect_missing(&gone, gone_applied);
    converge(&gone, "expired while a disk node was down, after its restart");
    converge(&again, "written again, after the restart");
    for (size_t i = 0; i < gone.n; i++) {
        if (!gone_applied[i])
            continue;
        trellis_value *v = NULL;
        int rc = trellis_get_value(cli, gone.k[i].key, gone.k[i].klen, &v);
        CHECK(rc == TRELLIS_NOT_FOUND, "%s reads %s through the client", gone.k[i].key,
              trellis_status_name(rc));
    }

    /* A memory node joins: the keys it takes over by hand-off come with
     * their expiry, so nothing expired shows there either, and the keys
     * written again hold only their new values. */
    tnode *j = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(j != NULL, "the joining node did not start");
    CHECK(tcluster_wait_state(&cl, j, NODE_ACTIVE, 30000) == 0, "%s did not become ACTIVE", j->id);
    converge(&gone, "expired, after a memory node joined");
    converge(&again, "written again, after a memory node joined");
}
