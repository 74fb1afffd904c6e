/*
 * test_cluster_elastic.c - membership changes that hide nothing and lose
 * nothing (docs/consistency.md, "Membership changes").
 *
 *  - Nodes join, leave, join during a departure, and a joining node is
 *    killed, while writers add and remove set members, increment counters
 *    and overwrite registers with ack=one and ack=all, and 20% of the
 *    replication messages are lost. After each change completes, every key
 *    is read once: what was acknowledged before the read is there, what was
 *    removed stays removed. The seed (printed) drives the writers' losses.
 *  - A join during which another member dies ends with the joining node
 *    holding every key it owns in the final ring.
 *  - A join that cannot complete stays JOINING and serves nothing; the
 *    operator's override turns a node ACTIVE anyway, says so, and its
 *    unconfirmed ranges refuse observed removes until they confirm.
 *  - A departure whose receiver is paused goes on past the drain timeout
 *    and a second SIGTERM, and completes once the receiver resumes; with
 *    kvs.force_depart it ends, exit status 1, naming the keys it takes.
 *  - With 2 memory nodes and 1 disk node, kill -9 of the disk node does not
 *    slow ack=one writes down; restarted, it catches up.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "cstate.h"
#include "ework.h"
#include "tsupport.h"

static tcluster cl;
static cs_set keys;
static ewriter w[2];
static int have_keys;

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        ew_free(&w[i]);
    tcluster_fini(&cl);
    if (have_keys)
        cs_fini(&keys);
}

TestSuite(elastic, .fini = teardown, .timeout = 240);

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* The seed: TRELLIS_SEED, or the clock; printed so that a run's message
 * losses can be replayed (kvs.fault_seed). */
static uint64_t test_seed(const char *name)
{
    const char *env = getenv("TRELLIS_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : clock_wall_us() % 1000000007u;
    if (!seed)
        seed = 1;
    fprintf(stderr, "%s: seed %" PRIu64 " (replay with TRELLIS_SEED=%" PRIu64 ")\n", name, seed,
            seed);
    return seed;
}

/* Writes n keys of every type to their replicas (nth 0..copies-1 in tier)
 * and expects them. */
static void preload(const char *name, size_t n, int tier, size_t copies)
{
    cr_assert_eq(cs_init(&keys, name, n), 0);
    have_keys = 1;
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    for (size_t from = 0; from < n; from += 1000) {
        size_t m = n - from < 1000 ? n - from : 1000;
        Trellis__KeyOp *ops[1000];
        Trellis__KeyResult *res[1000];
        for (size_t q = 0; q < m; q++) {
            cs_key *k = &keys.k[from + q];
            cr_assert_eq(tkv_sample(k->type, 3, from + q, &v), TRELLIS_OK);
            cr_assert_eq(cs_expect(&keys, from + q, v.data, v.len), TRELLIS_OK);
            ops[q] = tkv_op_put(a, k->key, k->klen, k->type, &v);
        }
        for (size_t c = 0; c < copies; c++) {
            int rc = tkv_send_routed(r, tier, c, ops, m, TKV_TIMEOUT_MS, a, res);
            CHECK(rc == TRELLIS_OK, "preload: %s", trellis_strerror(rc));
            for (size_t q = 0; q < m; q++)
                CHECK(res[q]->status == TRELLIS__STATUS__OK, "preload %s: %s", keys.k[from + q].key,
                      trellis_status_name((int)res[q]->status));
        }
        wire_arena_reset(a);
    }
    lat_buf_free(&v);
    wire_arena_free(a);
    ring_free(r);
}

/* Waits until every writer has done `ops` more operations. */
static void writers_progress(int nw, uint64_t ops, int timeout_ms)
{
    uint64_t base[2];
    for (int i = 0; i < nw; i++)
        base[i] = atomic_load(&w[i].done);
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < nw; i++)
            all &= atomic_load(&w[i].done) >= base[i] + ops;
        if (all)
            return;
        CHECK(clock_mono_ms() < end, "the writers made no progress (%s / %s)", w[0].first_error,
              w[1].first_error);
        sleep_ms(20);
    }
}

/* Reads every key of the workload once; fails the test on any problem. */
static void check_once(const char *prefix, const char *after, int final)
{
    char msg[512];
    uint64_t members = 0;
    uint64_t t0 = clock_mono_ms();
    size_t problems =
        ew_check(cl.router_url, prefix, w, 2, final, 8000, &members, msg, sizeof(msg));
    cr_log_info("after %s: read %" PRIu64 " members once in %" PRIu64 " ms, %zu problems", after,
                members, clock_mono_ms() - t0, problems);
    CHECK(problems == 0, "after %s: %zu problems; the first: %s", after, problems, msg);
}

/* Waits for a node's departure: its process exits 0 and the router lists
 * it LEFT. */
static void wait_departed(tnode *n, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (tproc_running(n->p) && clock_mono_ms() < end)
        sleep_ms(20);
    int status = tproc_running(n->p) ? -1 : tproc_status(n->p);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s did not depart cleanly (wait status %d)", n->id, status);
    CHECK(tcluster_wait_state(&cl, n, NODE_LEFT, 5000) == 0, "the router does not list %s LEFT",
          n->id);
}

Test(elastic, joins_and_departures_hide_and_lose_nothing_with_20_percent_loss)
{
    const char *name = "elastic";
    uint64_t seed = test_seed(name);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set_small(&cl);
    char set[64];
    snprintf(set, sizeof(set), "kvs.fault_seed=%" PRIu64, seed);
    tcluster_set(&cl, set);
    tcluster_set(&cl, "kvs.fault_drop_percent=20");
    tcluster_set(&cl, "kvs.gossip_period_ms=50");
    /* No repair behind the protocol's back: what a read finds, the
     * membership change delivered. */
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=600000");
    tcluster_set(&cl, "kvs.handoff_batch_keys=64");
    tcluster_set(&cl, "kvs.join_timeout_ms=60000");
    tcluster_set(&cl, "kvs.drain_timeout_ms=60000");
    tcluster_set(&cl, "route.node_timeout_ms=1500");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m1 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *m2 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *d1 = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(m1 && m2 && d1, "nodes did not start");
    tnode *first[] = {m1, m2, d1};
    for (int i = 0; i < 3; i++)
        CHECK(tcluster_wait_state(&cl, first[i], NODE_ACTIVE, 20000) == 0, "%s not ACTIVE",
              first[i]->id);
    /* Keys that make each hand-off take a while. */
    preload(name, 6000, RING_TIER_MEMORY, 1);

    CHECK(ew_start(&w[0], 1, name, cl.router_url, TRELLIS_ACK_ONE, 8000) == 0, "writer 1");
    CHECK(ew_start(&w[1], 2, name, cl.router_url, TRELLIS_ACK_ALL, 8000) == 0, "writer 2");
    writers_progress(2, 100, 20000);

    /* A node joins each tier. */
    uint64_t t0 = clock_mono_ms();
    tnode *m3 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *d2 = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(m3 && d2, "the joining nodes did not start");
    CHECK(tcluster_wait_state(&cl, m3, NODE_ACTIVE, 60000) == 0, "%s not ACTIVE", m3->id);
    CHECK(tcluster_wait_state(&cl, d2, NODE_ACTIVE, 60000) == 0, "%s not ACTIVE", d2->id);
    cr_log_info("%s and %s joined in %" PRIu64 " ms", m3->id, d2->id, clock_mono_ms() - t0);
    check_once(name, "a join in each tier", 0);

    /* A node departs. */
    writers_progress(2, 50, 20000);
    t0 = clock_mono_ms();
    kill(tproc_pid(m1->p), SIGTERM);
    wait_departed(m1, 60000);
    cr_log_info("%s departed in %" PRIu64 " ms", m1->id, clock_mono_ms() - t0);
    check_once(name, "a departure", 0);

    /* A node joins while another departs. */
    writers_progress(2, 50, 20000);
    t0 = clock_mono_ms();
    kill(tproc_pid(m2->p), SIGTERM);
    tnode *m4 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m4, "the joining node did not start");
    wait_departed(m2, 60000);
    CHECK(tcluster_wait_state(&cl, m4, NODE_ACTIVE, 60000) == 0, "%s not ACTIVE", m4->id);
    cr_log_info("%s joined while %s departed, in %" PRIu64 " ms", m4->id, m2->id,
                clock_mono_ms() - t0);
    check_once(name, "a join during a departure", 0);

    /* A joining node is killed, then starts again and joins. */
    writers_progress(2, 50, 20000);
    t0 = clock_mono_ms();
    tnode *m5 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m5, "the joining node did not start");
    CHECK(tcluster_wait_state(&cl, m5, NODE_JOINING, 20000) == 0, "%s not JOINING", m5->id);
    uint64_t gen = 0;
    tkv_node_state(cl.router_url, m5->id, &gen);
    sleep_ms(150);
    tproc_kill9(m5->p);
    CHECK(tcluster_wait_state_gen(&cl, m5, NODE_DEAD, 0, 20000) == 0, "%s not DEAD", m5->id);
    writers_progress(2, 20, 20000);
    CHECK(tcluster_restart_node(&cl, m5) == 0, "%s did not start again", m5->id);
    CHECK(tcluster_wait_state_gen(&cl, m5, NODE_ACTIVE, gen, 60000) == 0, "%s not ACTIVE again",
          m5->id);
    cr_log_info("%s was killed while joining and joined again, in %" PRIu64 " ms", m5->id,
                clock_mono_ms() - t0);
    check_once(name, "a node killed while joining", 0);

    /* The end: every write's final state. */
    writers_progress(2, 50, 20000);
    for (int i = 0; i < 2; i++)
        ew_stop(&w[i], 50);
    for (int i = 0; i < 2; i++)
        cr_log_info("writer %d (ack=%s): %" PRIu64 " acknowledged, %" PRIu64
                    " failed, slowest %" PRIu64 " ms",
                    w[i].id, i ? "all" : "one", w[i].ok, w[i].failed, w[i].max_ack_us / 1000);
    check_once(name, "the writers stopped", 1);
    CHECK(w[0].failed + w[1].failed == 0, "%" PRIu64 " writes failed; the first: %s",
          w[0].failed + w[1].failed, w[0].first_error[0] ? w[0].first_error : w[1].first_error);
}

/* Waits until a node's log says a shard of `from` confirmed its hand-off. */
static void wait_confirmed(tnode *n, const tnode *from, int shard)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "hand-off confirmed by %s/s%d ", from->id, shard);
    CHECK(tproc_wait_log(n->p, needle, 30000) == 0, "%s: no marker from %s/s%d", n->id, from->id,
          shard);
}

Test(elastic, a_join_whose_ring_changes_holds_every_key_of_the_final_ring)
{
    const char *name = "elasticring";
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set_small(&cl);
    tcluster_set(&cl, "cluster.memory_replicas=2");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.handoff_batch_keys=64");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=600000");
    tcluster_set(&cl, "kvs.join_timeout_ms=60000");
    tcluster_set(&cl, "route.node_timeout_ms=1000");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    /* x loses every replication message: its hand-off never completes. */
    const char *lossy[] = {"--set", "kvs.fault_drop_percent=100", NULL};
    tnode *x = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, lossy);
    CHECK(a && b && x, "nodes did not start");
    tnode *first[] = {a, b, x};
    for (int i = 0; i < 3; i++)
        CHECK(tcluster_wait_state(&cl, first[i], NODE_ACTIVE, 20000) == 0, "%s not ACTIVE",
              first[i]->id);
    preload(name, 20000, RING_TIER_MEMORY, 2);

    /* c joins; a and b confirm, x cannot; then x dies and the ring
     * changes under the join. */
    tnode *c = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(c, "the joining node did not start");
    for (int sh = 0; sh < 2; sh++) {
        wait_confirmed(c, a, sh);
        wait_confirmed(c, b, sh);
    }
    CHECK(tkv_node_state(cl.router_url, c->id, NULL) == NODE_JOINING,
          "%s is not JOINING while %s has not confirmed", c->id, x->id);
    tproc_kill9(x->p);
    CHECK(tcluster_wait_state(&cl, x, NODE_DEAD, 20000) == 0, "%s not DEAD", x->id);
    CHECK(tcluster_wait_state(&cl, c, NODE_ACTIVE, 60000) == 0, "%s not ACTIVE", c->id);

    /* Read once, right away, from c: every key it owns holds its state. */
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    int ci = ring_find_node(r, c->id);
    wire_arena *wa = wire_arena_new();
    size_t owned = 0, wrong = 0;
    char first_bad[256] = "";
    for (size_t i = 0; i < keys.n; i++) {
        const cs_key *k = &keys.k[i];
        if (!ring_is_replica(r, RING_CURRENT, ci, k->key, k->klen))
            continue;
        owned++;
        char url[64];
        tcluster_node_data_url(c, (int)ring_local_shard(k->key, k->klen, 2), url, sizeof(url));
        Trellis__KeyOp *op = tkv_op_get(wa, k->key, k->klen, LAT_NONE);
        Trellis__KvReply *rep;
        int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, wa, &rep);
        const Trellis__KeyResult *res = rc == TRELLIS_OK ? rep->results[0] : NULL;
        if (!res || res->status != TRELLIS__STATUS__OK || res->value.len != k->want.len ||
            memcmp(res->value.data, k->want.data, k->want.len) != 0) {
            if (!wrong++)
                snprintf(first_bad, sizeof(first_bad), "%s: %s", k->key,
                         res ? trellis_status_name((int)res->status) : trellis_strerror(rc));
        }
        wire_arena_reset(wa);
    }
    wire_arena_free(wa);
    ring_free(r);
    cr_log_info("%s owns %zu of %zu keys at the final epoch; %zu lack their state", c->id, owned,
                keys.n, wrong);
    CHECK(owned > 0, "%s owns no key", c->id);
    CHECK(wrong == 0, "%zu of the %zu keys %s owns lack their state; the first: %s", wrong, owned,
          c->id, first_bad);
}

/* The node's CMD_STATUS answer (JSON) into buf. */
static void node_status(const tnode *n, char *buf, size_t cap)
{
    char admin[64];
    snprintf(admin, sizeof(admin), "tcp://127.0.0.1:%d", n->port_base + n->threads);
    wire_arena *a = wire_arena_new();
    Trellis__Envelope env, *reply;
    Trellis__Command cmd;
    wire_envelope_init(&env, 0, NULL);
    trellis__command__init(&cmd);
    cmd.code = TRELLIS__COMMAND_CODE__CMD_STATUS;
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    buf[0] = '\0';
    if (tkv_call(admin, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
        reply->body_case == TRELLIS__ENVELOPE__BODY_COMMAND_REPLY && reply->command_reply->message)
        snprintf(buf, cap, "%s", reply->command_reply->message);
    wire_arena_free(a);
}

/* An observed remove of one member straight at the shard of node n that
 * holds key (n must own it); its status. */
static int remove_at(const tnode *n, const char *key)
{
    char url[64];
    tcluster_node_data_url(n, (int)ring_local_shard(key, strlen(key), (uint32_t)n->threads), url,
                           sizeof(url));
    wire_arena *a = wire_arena_new();
    lat_buf set;
    lat_buf_init(&set);
    lat_slice m = {(const uint8_t *)"no-such-member", 14};
    cr_assert_eq(lat_set_encode(&m, 1, &set), TRELLIS_OK);
    Trellis__KeyOp *op =
        tkv_op(a, TRELLIS__OP_CODE__REMOVE, key, strlen(key), LAT_ORSET, set.data, set.len);
    Trellis__KvReply *rep;
    int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
    if (rc == TRELLIS_OK)
        rc = (int)rep->results[0]->status;
    lat_buf_free(&set);
    wire_arena_free(a);
    return rc;
}

/* Set keys that the JOINING node n gains from a and from b (their current
 * owners), among the preloaded keys. */
static void gaining_keys(const tnode *n, const tnode *a, const tnode *b, const char **from_a,
                         const char **from_b)
{
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    int ni = ring_find_node(r, n->id), ai = ring_find_node(r, a->id), bi = ring_find_node(r, b->id);
    *from_a = *from_b = NULL;
    for (size_t i = 0; i < keys.n && (!*from_a || !*from_b); i++) {
        const cs_key *k = &keys.k[i];
        if (k->type != LAT_ORSET)
            continue;
        int fut[1], cur[1];
        if (ring_replicas(r, RING_FUTURE, RING_TIER_MEMORY, k->key, k->klen, fut, 1) != 1 ||
            fut[0] != ni ||
            ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, k->key, k->klen, cur, 1) != 1)
            continue;
        if (cur[0] == ai && !*from_a)
            *from_a = k->key;
        if (cur[0] == bi && !*from_b)
            *from_b = k->key;
    }
    ring_free(r);
    CHECK(*from_a && *from_b, "no set key moves from %s and %s to %s", a->id, b->id, n->id);
}

Test(elastic, an_unconfirmed_join_stays_joining_and_the_override_is_explicit)
{
    const char *name = "elasticstuck";
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set_small(&cl);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.join_timeout_ms=1500");
    tcluster_set(&cl, "route.node_timeout_ms=120000"); /* a stopped node stays a member */
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && b, "nodes did not start");
    CHECK(tcluster_wait_state(&cl, a, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", a->id);
    CHECK(tcluster_wait_state(&cl, b, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", b->id);
    preload(name, 700, RING_TIER_MEMORY, 1);

    /* a is paused: it cannot hand anything off. */
    kill(tproc_pid(a->p), SIGSTOP);
    tnode *c = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(c, "the joining node did not start");
    char needle[128];
    snprintf(needle, sizeof(needle), "still JOINING");
    CHECK(tproc_wait_log(c->p, needle, 20000) == 0, "%s did not report its stuck join", c->id);
    snprintf(needle, sizeof(needle), "%s/s0", a->id);
    CHECK(tproc_log_contains(c->p, needle), "%s's log does not name %s as unconfirmed", c->id,
          a->id);
    CHECK(tkv_node_state(cl.router_url, c->id, NULL) == NODE_JOINING, "%s is not JOINING", c->id);
    char st[512];
    node_status(c, st, sizeof(st));
    CHECK(strstr(st, "\"state\":\"JOINING\"") && strstr(st, "\"unconfirmed\":2"), "%s's status: %s",
          c->id, st);
    /* It serves nothing: a read of a key it is gaining is refused. */
    const char *from_a, *from_b;
    gaining_keys(c, a, b, &from_a, &from_b);
    {
        char url[64];
        tcluster_node_data_url(c, (int)ring_local_shard(from_b, strlen(from_b), 2), url,
                               sizeof(url));
        wire_arena *wa = wire_arena_new();
        Trellis__KeyOp *op = tkv_op_get(wa, from_b, strlen(from_b), LAT_NONE);
        Trellis__KvReply *rep;
        CHECK(tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, wa, &rep) == TRELLIS_OK &&
                  rep->results[0]->status == TRELLIS__STATUS__WRONG_SHARD,
              "the JOINING node served a read");
        wire_arena_free(wa);
    }
    /* Stopped, it was never ACTIVE. */
    CHECK(!tproc_log_contains(c->p, "-> ACTIVE"), "%s turned ACTIVE", c->id);
    int status;
    tproc_stop(c->p, 10000, &status);

    /* The override: another node, told to serve after its join timeout. */
    const char *force[] = {"--force-active", NULL};
    tnode *d = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, force);
    CHECK(d, "the overriding node did not start");
    CHECK(tcluster_wait_state(&cl, d, NODE_JOINING, 20000) == 0, "%s not JOINING", d->id);
    gaining_keys(d, a, b, &from_a, &from_b);
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", d->id);
    CHECK(tproc_log_contains(d->p, "forced by kvs.force_active"), "%s does not say it was forced",
          d->id);
    node_status(d, st, sizeof(st));
    CHECK(strstr(st, "\"unconfirmed\":2"), "%s's status: %s", d->id, st);
    /* Observed removes where a's hand-off is unconfirmed are refused;
     * where b's is confirmed, they run. */
    int rc = remove_at(d, from_a);
    CHECK(rc == TRELLIS_UNAVAILABLE, "a remove on an unconfirmed range answered %s",
          trellis_status_name(rc));
    rc = remove_at(d, from_b);
    CHECK(rc == TRELLIS_OK, "a remove on a confirmed range answered %s", trellis_status_name(rc));

    /* a resumes, hands its keys over and confirms: removes run there too. */
    kill(tproc_pid(a->p), SIGCONT);
    snprintf(needle, sizeof(needle), "hand-off from %s/s%d confirmed after the forced start", a->id,
             (int)ring_local_shard(from_a, strlen(from_a), 2));
    CHECK(tproc_wait_log(d->p, needle, 30000) == 0, "%s never confirmed to %s", a->id, d->id);
    rc = remove_at(d, from_a);
    CHECK(rc == TRELLIS_OK, "a remove on a confirmed range answered %s", trellis_status_name(rc));
}

/* Reads every preloaded key once from each of its replicas in the current
 * ring: all of them hold their state. */
static void check_keys_once(const char *after)
{
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    cs_report rep;
    int rc = cs_read(&keys, r, TKV_TIMEOUT_MS, &rep);
    ring_free(r);
    CHECK(rc == TRELLIS_OK && rep.complete == rep.keys,
          "after %s: %zu of %zu keys complete (%zu reads failed); %s", after, rep.complete,
          rep.keys, rep.failed, rep.first);
}

Test(elastic, a_departure_that_cannot_complete_goes_on_unless_forced)
{
    const char *name = "elasticleave";
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set_small(&cl);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.drain_timeout_ms=1000");
    tcluster_set(&cl, "route.node_timeout_ms=120000"); /* a paused node stays a member */
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    /* a departs as a node does by default: without kvs.force_depart. */
    const char *noforce[] = {"--force-depart=false", NULL};
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, noforce);
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && b, "nodes did not start");
    CHECK(tcluster_wait_state(&cl, a, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", a->id);
    CHECK(tcluster_wait_state(&cl, b, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", b->id);
    preload(name, 700, RING_TIER_MEMORY, 1);

    /* b, the only other owner, is paused: a's departure cannot complete.
     * Neither the drain timeout nor a second SIGTERM ends it. */
    kill(tproc_pid(b->p), SIGSTOP);
    kill(tproc_pid(a->p), SIGTERM);
    CHECK(tproc_wait_log(a->p, "still handing off", 20000) == 0,
          "%s did not report its stuck departure", a->id);
    kill(tproc_pid(a->p), SIGTERM);
    CHECK(tproc_wait_log(a->p, "the departure goes on", 10000) == 0,
          "%s did not answer the second SIGTERM", a->id);
    CHECK(tproc_running(a->p), "%s exited with keys that only it holds", a->id);
    CHECK(tkv_node_state(cl.router_url, a->id, NULL) == NODE_LEAVING, "%s is not LEAVING", a->id);

    /* b resumes: the departure completes and every key is on b. */
    kill(tproc_pid(b->p), SIGCONT);
    wait_departed(a, 60000);
    check_keys_once("a departure that waited for its receiver");

    /* With kvs.force_depart, the drain timeout ends a departure that cannot
     * complete: the node exits 1 and names the keys that leave with it. */
    const char *force[] = {"--force-depart", NULL};
    tnode *c = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, force);
    CHECK(c, "the node did not start");
    CHECK(tcluster_wait_state(&cl, c, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", c->id);
    kill(tproc_pid(b->p), SIGSTOP);
    kill(tproc_pid(c->p), SIGTERM);
    uint64_t end = clock_mono_ms() + 20000;
    while (tproc_running(c->p) && clock_mono_ms() < end)
        sleep_ms(20);
    kill(tproc_pid(b->p), SIGCONT);
    int status = tproc_running(c->p) ? -1 : tproc_status(c->p);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
          "%s's forced departure: wait status %d", c->id, status);
    CHECK(tproc_log_contains(c->p, "stopping (kvs.force_depart)") &&
              tproc_log_contains(c->p, "forced departure: key \"") &&
              tproc_log_contains(c->p, "left with this node"),
          "%s's log does not say what its forced departure lost", c->id);
}

#define NEWKEYS 1000 /* keys written while the disk node is down: the odd numbers below it */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

Test(elastic, a_dead_disk_node_does_not_slow_memory_writes_and_catches_up)
{
    const char *name = "elasticdisk";
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set_small(&cl);
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=500");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m1 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *m2 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *d1 = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(m1 && m2 && d1, "nodes did not start");
    tnode *all[] = {m1, m2, d1};
    for (int i = 0; i < 3; i++)
        CHECK(tcluster_wait_state(&cl, all[i], NODE_ACTIVE, 20000) == 0, "%s not ACTIVE",
              all[i]->id);

    trellis_options o;
    trellis_options_init(&o);
    trellis_client *c;
    CHECK(trellis_connect(cl.router_url, &o, &c) == TRELLIS_OK, "no client");
    /* Existing keys, and the writes' usual latency. */
    char key[64], val[64];
    uint64_t usual = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "%s/old/%d", name, i);
        uint64_t t0 = clock_mono_us();
        CHECK(trellis_put(c, key, strlen(key), "v0", 2) == TRELLIS_OK, "put %s", key);
        uint64_t dt = clock_mono_us() - t0;
        usual = dt > usual ? dt : usual;
    }
    cr_log_info("before: the slowest of 300 writes took %" PRIu64 " us", usual);

    tproc_kill9(d1->p);
    /* New and existing keys, right away and until well after the routers
     * noticed, with ack=one: none may wait for the dead node. */
    enum { MAXW = 100000 };
    uint64_t *lat = calloc(MAXW, sizeof(*lat));
    cr_assert_not_null(lat);
    uint64_t t_end = clock_mono_ms() + 5000;
    int n = 0;
    while (clock_mono_ms() < t_end && n < MAXW) {
        snprintf(key, sizeof(key), n % 2 ? "%s/new/%d" : "%s/old/%d", name,
                 n % 2 ? n % NEWKEYS : n % 300);
        snprintf(val, sizeof(val), "v%d", n + 1);
        uint64_t t0 = clock_mono_us();
        int rc = trellis_put(c, key, strlen(key), val, strlen(val));
        lat[n] = clock_mono_us() - t0;
        CHECK(rc == TRELLIS_OK, "write %d of %s after the disk node died: %s", n, key,
              trellis_strerror(rc));
        n++;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
    uint64_t median = lat[n / 2], slowest = lat[n - 1];
    free(lat);
    cr_log_info("after kill -9 of %s: %d writes, median %" PRIu64 " us, slowest %" PRIu64 " us",
                d1->id, n, median, slowest);
    /* A write that waited for the disk tier would wait for its deadline
     * (FETCH_TIMEOUT_MS, 500 ms) at least, and half the writes are of new
     * keys; a loaded machine may delay some writes, not half of them. */
    CHECK(median < 50000 && slowest < 1000000,
          "writes while the disk node was dead: median %" PRIu64 " ms, slowest %" PRIu64 " ms",
          median / 1000, slowest / 1000);

    /* Back with its data, it catches up with what it missed. */
    uint64_t gen = 0;
    tkv_node_state(cl.router_url, d1->id, &gen);
    CHECK(tcluster_restart_node(&cl, d1) == 0, "%s did not start again", d1->id);
    CHECK(tcluster_wait_state_gen(&cl, d1, NODE_ACTIVE, gen, 20000) == 0, "%s not ACTIVE again",
          d1->id);
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    int missing = 0;
    uint64_t t0 = clock_mono_ms();
    do {
        missing = 0;
        for (int i = 1; i < n && i < NEWKEYS; i += 2) {
            snprintf(key, sizeof(key), "%s/new/%d", name, i);
            char url[RING_MAX_URL + 1];
            Trellis__KeyOp *op = tkv_op_get(a, key, strlen(key), LAT_LWW);
            Trellis__KvReply *rep;
            if (tkv_replica_url(r, RING_TIER_DISK, 0, key, strlen(key), url, sizeof(url)) !=
                    TRELLIS_OK ||
                tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep) != TRELLIS_OK ||
                rep->results[0]->status != TRELLIS__STATUS__OK)
                missing++;
            wire_arena_reset(a);
        }
        if (missing)
            sleep_ms(500);
    } while (missing && clock_mono_ms() - t0 < 30000);
    wire_arena_free(a);
    ring_free(r);
    cr_log_info("%s holds every key written while it was down after %" PRIu64 " ms", d1->id,
                clock_mono_ms() - t0);
    CHECK(missing == 0, "%d keys written while %s was down never reached it", missing, d1->id);
    trellis_close(c);
}
