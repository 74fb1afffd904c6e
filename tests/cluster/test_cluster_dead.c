/*
 * test_cluster_dead.c - a dead storage node is marked DEAD by the routers
 * within route.node_timeout_ms, and clients route around it.
 *
 * Two routers that gossip membership, three memory nodes and a disk node,
 * one replica of every key per tier, heartbeats every 100 ms and a node
 * timeout of 1 s. Keys of every type are written and replicated; then the
 * memory node holding some of them stops answering, killed (SIGKILL: its
 * port refuses connections) or paused (SIGSTOP: connections stay open and
 * requests hang). Meanwhile a client (libtrellis, a 4 s deadline, its ring
 * fetched before) keeps reading every key the node held and incrementing
 * a counter it held. Then:
 *  - both routers list the node DEAD within the node timeout plus one
 *    failure-detection round (200 ms), one router gossip period and 300 ms
 *    of scheduling slack;
 *  - every client call succeeds with the right value, none later than the
 *    node timeout plus 1 s after the node stopped answering: the ring
 *    gives its keys to the other memory nodes, which read them from the
 *    disk tier;
 *  - a paused node that resumes finds itself DEAD, rejoins under a new
 *    generation and becomes ACTIVE, and every replica converges.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cstate.h"
#include "tsupport.h"
#include "trellis/trellis.h"

static tcluster cl;
static cs_set keys;
static char router2_url[64];

static void teardown(void)
{
    tcluster_fini(&cl);
    cs_fini(&keys);
}

TestSuite(dead, .fini = teardown, .timeout = 90);

#define NODE_TIMEOUT_MS 1000
#define ROUTE_CHECK_MS  200 /* routing/route.c: how often routers look for silent nodes */
#define ROUTE_GOSSIP_MS 100
#define CLIENT_DEADLINE 4000
#define NKEYS           210

/* Two routers, each the other's peer, and the nodes. */
static void start(const char *name)
{
    cr_assert_eq(cs_init(&keys, name, NKEYS), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    int p1 = tcluster_port(&cl), p2 = tcluster_port(&cl);
    char router1_url[64];
    snprintf(router1_url, sizeof(router1_url), "tcp://127.0.0.1:%d", p1);
    snprintf(router2_url, sizeof(router2_url), "tcp://127.0.0.1:%d", p2);
    char timeout[64], gossip[64];
    snprintf(timeout, sizeof(timeout), "route.node_timeout_ms=%d", NODE_TIMEOUT_MS);
    snprintf(gossip, sizeof(gossip), "route.gossip_period_ms=%d", ROUTE_GOSSIP_MS);
    const char *const sets[] = {timeout,
                                gossip,
                                "kvs.gossip_period_ms=50",
                                "kvs.anti_entropy_period_ms=500",
                                "kvs.join_timeout_ms=10000",
                                NULL};
    const char *const r1extra[] = {"--peer", router2_url, NULL};
    const char *const r2extra[] = {"--peer", router1_url, NULL};
    const char *const nextra[] = {"--router", router2_url, NULL};
    tcluster_set_small(&cl);
    tcluster_set_list(&cl, sets);
    CHECK(tcluster_start_router_at(&cl, p1, r1extra) == 0, "router 1 did not start");
    CHECK(tcluster_start_router_at(&cl, p2, r2extra) == 0, "router 2 did not start");
    CHECK(tcluster_start(&cl, 3, 1, 2, nextra) == 0, "the cluster did not start");
}

/* What the client thread does while the node is away. */
typedef struct reader {
    trellis_client *c;
    const size_t *mine; /* indexes of the keys the victim held */
    size_t nmine;
    char counter[CS_MAX_KEY]; /* a COUNTER key the victim held */
    atomic_int stop;
    uint64_t t_stop; /* when the victim stopped answering (monotonic ms) */
    /* results */
    uint64_t calls, failed, wrong;
    uint64_t worst_ms;   /* longest call that began after t_stop */
    int64_t incremented; /* acknowledged increments */
    char first_error[256];
} reader;

static int state_matches(const cs_key *k, int rc, const trellis_value *v)
{
    if (rc == TRELLIS_NOT_FOUND)
        return k->want.len == 0 || lat_is_empty(k->type, k->want.data, k->want.len);
    return rc == TRELLIS_OK && (int)v->type == (int)k->type && v->state_len == k->want.len &&
           memcmp(v->state, k->want.data, v->state_len) == 0;
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    for (uint64_t round = 0; !atomic_load(&r->stop) && round < 100000; round++) {
        for (size_t j = 0; j < r->nmine && !atomic_load(&r->stop); j++) {
            const cs_key *k = &keys.k[r->mine[j]];
            uint64_t t0 = clock_mono_ms();
            trellis_value *v = NULL;
            int rc = trellis_get_value(r->c, k->key, k->klen, &v);
            uint64_t t1 = clock_mono_ms();
            r->calls++;
            if (r->t_stop && t0 >= r->t_stop && t1 - t0 > r->worst_ms)
                r->worst_ms = t1 - t0;
            if (rc != TRELLIS_OK && rc != TRELLIS_NOT_FOUND) {
                if (!r->failed++)
                    snprintf(r->first_error, sizeof(r->first_error), "read of %s: %s", k->key,
                             trellis_strerror(rc));
            } else if (!state_matches(k, rc, v)) {
                if (!r->wrong++)
                    snprintf(r->first_error, sizeof(r->first_error),
                             "read of %s: a state other than the one written", k->key);
            }
            trellis_value_free(v);
            if (j % 8 == 0) {
                t0 = clock_mono_ms();
                rc = trellis_incrby(r->c, r->counter, strlen(r->counter), 1, NULL);
                t1 = clock_mono_ms();
                r->calls++;
                if (r->t_stop && t0 >= r->t_stop && t1 - t0 > r->worst_ms)
                    r->worst_ms = t1 - t0;
                if (rc == TRELLIS_OK)
                    r->incremented++;
                else if (!r->failed++)
                    snprintf(r->first_error, sizeof(r->first_error), "increment of %s: %s",
                             r->counter, trellis_strerror(rc));
            }
        }
    }
    return NULL;
}

/* When a router lists the node DEAD (monotonic ms), or 0 if not within
 * timeout_ms of `from`. */
static void wait_dead(const tnode *v, uint64_t from, int timeout_ms, uint64_t *at1, uint64_t *at2)
{
    *at1 = *at2 = 0;
    while (clock_mono_ms() - from < (uint64_t)timeout_ms && (!*at1 || !*at2)) {
        if (!*at1 && tkv_node_state(cl.router_url, v->id, NULL) == NODE_DEAD)
            *at1 = clock_mono_ms();
        if (!*at2 && tkv_node_state(router2_url, v->id, NULL) == NODE_DEAD)
            *at2 = clock_mono_ms();
        usleep(10000);
    }
}

static void node_stops_answering(const char *name, int sig)
{
    start(name);
    trand rnd;
    trand_begin(&rnd, name);
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    char err[512];
    for (int round = 0; round < 3; round++)
        CHECK(cs_write_random(&keys, r, &rnd, 4, err, sizeof(err)) == TRELLIS_OK, "%s", err);
    uint64_t took;
    cs_report rep;
    CHECK(cs_wait(&keys, cl.router_url, 20000, &took, &rep) == 0,
          "the written keys did not converge: %s", rep.first);

    /* The victim: the memory node holding key 0; the keys it holds. */
    int idx[1];
    CHECK(ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, keys.k[0].key, keys.k[0].klen, idx, 1) ==
              1,
          "no memory replica");
    char vid[RING_MAX_NODE_ID + 1];
    snprintf(vid, sizeof(vid), "%s", ring_node_at(r, (size_t)idx[0])->id);
    tnode *v = NULL;
    for (int i = 0; i < cl.nnodes; i++)
        if (strcmp(cl.nodes[i].id, vid) == 0)
            v = &cl.nodes[i];
    CHECK(v != NULL, "no node %s", vid);
    size_t *mine = calloc(NKEYS, sizeof(*mine));
    size_t nmine = 0;
    for (size_t i = 0; i < NKEYS; i++)
        if (ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, keys.k[i].key, keys.k[i].klen, idx,
                          1) == 1 &&
            strcmp(ring_node_at(r, (size_t)idx[0])->id, vid) == 0)
            mine[nmine++] = i;
    reader rd;
    memset(&rd, 0, sizeof(rd));
    int found = 0;
    for (uint64_t i = 0; !found && i < 100000; i++) {
        snprintf(rd.counter, sizeof(rd.counter), "%s/hits/%llu", name, (unsigned long long)i);
        found = ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, rd.counter, strlen(rd.counter),
                              idx, 1) == 1 &&
                strcmp(ring_node_at(r, (size_t)idx[0])->id, vid) == 0;
    }
    CHECK(found, "no counter key on %s", vid);
    ring_free(r);
    uint64_t gen = 0;
    CHECK(tkv_node_state(cl.router_url, vid, &gen) == NODE_ACTIVE, "%s not ACTIVE", vid);

    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = CLIENT_DEADLINE;
    o.retries = 20;
    char urls[160];
    snprintf(urls, sizeof(urls), "%s,%s", cl.router_url, router2_url);
    CHECK(trellis_connect(urls, &o, &rd.c) == TRELLIS_OK, "client did not connect");
    rd.mine = mine;
    rd.nmine = nmine;
    atomic_init(&rd.stop, 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reader_main, &rd) == 0, "no thread");
    usleep(300000);

    uint64_t t0 = clock_mono_ms();
    rd.t_stop = t0;
    if (sig == SIGKILL)
        tproc_kill9(v->p);
    else
        kill(tproc_pid(v->p), sig);
    uint64_t at1, at2;
    wait_dead(v, t0, 10000, &at1, &at2);
    usleep((useconds_t)(NODE_TIMEOUT_MS + 1000) * 1000); /* the client goes on */
    atomic_store(&rd.stop, 1);
    pthread_join(th, NULL);
    trellis_close(rd.c);
    free(mine);
    /* The last heartbeat came at most a heartbeat period before the stop;
     * a router's next check after the timeout, the other router's next
     * gossip, and scheduling on a loaded machine (300 ms). */
    uint64_t bound = NODE_TIMEOUT_MS + ROUTE_CHECK_MS + ROUTE_GOSSIP_MS + 300;
    cr_log_info("%s stopped answering (signal %d); DEAD on router 1 after %lld ms, on router 2 "
                "after %lld ms (bound %llu ms)",
                vid, sig, at1 ? (long long)(at1 - t0) : -1LL, at2 ? (long long)(at2 - t0) : -1LL,
                (unsigned long long)bound);
    cr_log_info("client: %llu calls on %zu keys of %s, %llu failed, %llu wrong, slowest %llu ms",
                (unsigned long long)rd.calls, nmine, vid, (unsigned long long)rd.failed,
                (unsigned long long)rd.wrong, (unsigned long long)rd.worst_ms);
    CHECK(at1 && at1 - t0 <= bound, "router 1 marked %s DEAD after %lld ms (bound %llu ms)", vid,
          at1 ? (long long)(at1 - t0) : -1LL, (unsigned long long)bound);
    CHECK(at2 && at2 - t0 <= bound, "router 2 marked %s DEAD after %lld ms (bound %llu ms)", vid,
          at2 ? (long long)(at2 - t0) : -1LL, (unsigned long long)bound);
    CHECK(rd.failed == 0 && rd.wrong == 0, "%llu client calls failed, %llu read wrong values: %s",
          (unsigned long long)rd.failed, (unsigned long long)rd.wrong, rd.first_error);
    CHECK(rd.worst_ms <= NODE_TIMEOUT_MS + 1000,
          "a client call took %llu ms while %s was away (node timeout %d ms)",
          (unsigned long long)rd.worst_ms, vid, NODE_TIMEOUT_MS);

    if (sig == SIGSTOP) {
        /* It resumes, learns it was declared DEAD and comes back. */
        kill(tproc_pid(v->p), SIGCONT);
        CHECK(tcluster_wait_state_gen(&cl, v, NODE_ACTIVE, gen, 15000) == 0,
              "%s did not rejoin under a new generation after it resumed", vid);
        CHECK(tproc_log_contains(v->p, "marked DEAD by the routers; rejoining"),
              "%s did not say it rejoins", vid);
    }
    /* Every replica holds every key as written, and the counter holds every
     * acknowledged increment. */
    CHECK(cs_wait(&keys, cl.router_url, 20000, &took, &rep) == 0,
          "replicas did not converge after %s came back: %s", vid, rep.first);
    trellis_client *c2;
    CHECK(trellis_connect(cl.router_url, NULL, &c2) == TRELLIS_OK, "client did not connect");
    int64_t hits = -1;
    int rc = trellis_counter_get(c2, rd.counter, strlen(rd.counter), &hits);
    trellis_close(c2);
    CHECK(rc == TRELLIS_OK && hits == rd.incremented, "%s reads %lld (%s), %lld acknowledged",
          rd.counter, (long long)hits, trellis_strerror(rc), (long long)rd.incremented);
}

Test(dead, killed_node_is_marked_dead_and_clients_route_around_it)
{
    node_stops_answering("deadkill", SIGKILL);
}

Test(dead, paused_node_is_marked_dead_clients_route_around_it_and_it_rejoins)
{
    node_stops_answering("deadpause", SIGSTOP);
}
