/*
 * test_client.c - libtrellis against real trellis-route and trellis-kvs
 * processes: every operation of every lattice type, batches spanning
 * shards, replica spreading and ack=all, type mismatches, retries after
 * WRONG_SHARD when the ring changes, deadlines with a stopped node, and a
 * client shared by threads.
 *
 * The tests link the shared library, so they see exactly what a user does.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trellis/trellis.h"
#include "tsupport.h"

static tcluster cluster;
static trellis_client *cli;

static void stop_all(void)
{
    trellis_close(cli);
    cli = NULL;
    tcluster_fini(&cluster);
}

/* What a test changes in its cluster: replicas per key, gossip too slow
 * to matter during the test, heartbeats (0: every 100 ms). */
typedef struct copts {
    int memory_replicas;
    int disk_replicas;
    int slow_gossip;
    int heartbeat_ms;
} copts;

/* Starts a cluster of nmem memory and ndisk disk nodes of two shards and
 * connects a client with opts (NULL: defaults). */
static void up(const char *name, int nmem, int ndisk, const copts *o, const trellis_options *opts)
{
    cr_assert(eq(int, tcluster_init(&cluster, name), 0));
    tcluster_set_client(&cluster); /* one replica per tier */
    char pair[64];
    if (o) {
        snprintf(pair, sizeof(pair), "cluster.memory_replicas=%d", o->memory_replicas);
        tcluster_set(&cluster, pair);
        snprintf(pair, sizeof(pair), "cluster.disk_replicas=%d", o->disk_replicas);
        tcluster_set(&cluster, pair);
    }
    if (o && o->slow_gossip) {
        tcluster_set(&cluster, "kvs.gossip_period_ms=60000");
        tcluster_set(&cluster, "kvs.anti_entropy_period_ms=3600000");
    }
    if (o && o->heartbeat_ms) {
        snprintf(pair, sizeof(pair), "kvs.heartbeat_period_ms=%d", o->heartbeat_ms);
        tcluster_set(&cluster, pair);
    }
    cr_assert(eq(int, tcluster_start(&cluster, nmem, ndisk, 2, NULL), 0), "cluster start");
    int rc = trellis_connect(cluster.router_url, opts, &cli);
    cr_assert(eq(int, rc, TRELLIS_OK), "connect: %s", trellis_strerror(rc));
}

#define K(s) (s), strlen(s)

static trellis_bytes B(const char *s)
{
    trellis_bytes b = {s, strlen(s)};
    return b;
}

/* ---- every operation of every type ------------------------------------------------------- */

Test(client, lww, .fini = stop_all, .timeout = 60)
{
    up("lww", 2, 1, NULL, NULL);
    void *v;
    size_t n;
    cr_assert(eq(int, trellis_get(cli, K("nokey"), &v, &n), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_put(cli, K("k"), "v1", 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_put(cli, K("k"), "value two", 9), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, K("k"), &v, &n), TRELLIS_OK));
    cr_assert(eq(sz, n, 9));
    cr_assert(eq(str, (char *)v, "value two"));
    trellis_free(v);

    /* Binary keys and values, and an empty value. */
    const char bk[] = {'b', 0, 'k', (char)0xff};
    const char bv[] = {0, 1, 2, (char)0xfe, 0, '\n'};
    cr_assert(eq(int, trellis_put(cli, bk, sizeof(bk), bv, sizeof(bv)), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, bk, sizeof(bk), &v, &n), TRELLIS_OK));
    cr_assert(eq(sz, n, sizeof(bv)));
    cr_assert(eq(int, memcmp(v, bv, n), 0));
    trellis_free(v);
    cr_assert(eq(int, trellis_put(cli, K("empty"), "", 0), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, K("empty"), &v, &n), TRELLIS_OK));
    cr_assert(eq(sz, n, 0));
    trellis_free(v);

    /* Delete, then a later write revives the key. */
    cr_assert(eq(int, trellis_del(cli, K("k")), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, K("k"), &v, &n), TRELLIS_NOT_FOUND));
    trellis_type t;
    cr_assert(eq(int, trellis_type_of(cli, K("k"), &t), TRELLIS_OK));
    cr_assert(eq(int, t, TRELLIS_TYPE_LWW), "a deleted LWW key keeps its type");
    cr_assert(eq(int, trellis_del(cli, K("never-written")), TRELLIS_OK));
    cr_assert(eq(int, trellis_put(cli, K("k"), "back", 4), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, K("k"), &v, &n), TRELLIS_OK));
    cr_assert(eq(str, (char *)v, "back"));
    trellis_free(v);

    /* The generic read returns the winner's timestamp and our writer id. */
    trellis_value *val;
    cr_assert(eq(int, trellis_get_value(cli, K("k"), &val), TRELLIS_OK));
    cr_assert(eq(int, val->type, TRELLIS_TYPE_LWW));
    cr_assert(eq(u64, val->writer, trellis_writer_id(cli)));
    cr_assert(val->timestamp > 0);
    cr_assert(eq(sz, val->count, 1));
    trellis_value_free(val);
    cr_assert(eq(int, trellis_type_of(cli, K("nokey"), &t), TRELLIS_OK));
    cr_assert(eq(int, t, TRELLIS_TYPE_NONE));
    cr_assert(eq(int, trellis_put(cli, "", 0, "x", 1), TRELLIS_INVALID), "empty key");
}

Test(client, sets, .fini = stop_all, .timeout = 60)
{
    up("sets", 2, 1, NULL, NULL);
    trellis_bytes m[] = {B("pear"), B("apple"), B("fig"), B("apple")};
    cr_assert(eq(int, trellis_sadd(cli, K("s"), m, 4), TRELLIS_OK));
    trellis_value *v;
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_OK));
    cr_assert(eq(int, v->type, TRELLIS_TYPE_ORSET));
    cr_assert(eq(sz, v->count, 3));
    cr_assert(eq(str, (char *)v->items[0].data, "apple"), "byte order");
    cr_assert(eq(str, (char *)v->items[1].data, "fig"));
    cr_assert(eq(str, (char *)v->items[2].data, "pear"));
    trellis_value_free(v);

    trellis_bytes r[] = {B("fig"), B("nope")};
    cr_assert(eq(int, trellis_srem(cli, K("s"), r, 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 2));
    cr_assert(eq(str, (char *)v->items[1].data, "pear"));
    trellis_value_free(v);
    /* Removed members can come back. */
    trellis_bytes fig = B("fig");
    cr_assert(eq(int, trellis_sadd(cli, K("s"), &fig, 1), TRELLIS_OK));
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 3));
    trellis_value_free(v);
    /* Removing everything reads as not found; so does DEL. */
    trellis_bytes all[] = {B("apple"), B("fig"), B("pear")};
    cr_assert(eq(int, trellis_srem(cli, K("s"), all, 3), TRELLIS_OK));
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_sadd(cli, K("s"), all, 3), TRELLIS_OK));
    cr_assert(eq(int, trellis_del(cli, K("s")), TRELLIS_OK));
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_srem(cli, K("missing-set"), all, 1), TRELLIS_OK));

    /* Grow-only SET: gadd creates it, sadd adds to it, srem and del refuse. */
    cr_assert(eq(int, trellis_gadd(cli, K("g"), m, 2), TRELLIS_OK));
    trellis_bytes z = B("zebra");
    cr_assert(eq(int, trellis_sadd(cli, K("g"), &z, 1), TRELLIS_OK), "SADD on a SET key");
    cr_assert(eq(int, trellis_smembers(cli, K("g"), &v), TRELLIS_OK));
    cr_assert(eq(int, v->type, TRELLIS_TYPE_SET));
    cr_assert(eq(sz, v->count, 3));
    cr_assert(eq(str, (char *)v->items[2].data, "zebra"));
    trellis_value_free(v);
    cr_assert(eq(int, trellis_srem(cli, K("g"), &z, 1), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_del(cli, K("g")), TRELLIS_INVALID), "a SET only grows");

    /* Binary members. */
    const char b1[] = {0, 'x'}, b2[] = {(char)0xff};
    trellis_bytes bm[] = {{b2, 1}, {b1, 2}};
    cr_assert(eq(int, trellis_sadd(cli, K("bin"), bm, 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_smembers(cli, K("bin"), &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 2));
    cr_assert(eq(sz, v->items[0].len, 2));
    cr_assert(eq(int, memcmp(v->items[0].data, b1, 2), 0));
    trellis_value_free(v);
    cr_assert(eq(int, trellis_sadd(cli, K("s"), m, 0), TRELLIS_INVALID), "no members");
}

Test(client, counter, .fini = stop_all, .timeout = 60)
{
    trellis_options o;
    trellis_options_init(&o);
    o.counter_cache = 2; /* forces evictions and read-backs */
    up("counter", 2, 1, NULL, &o);
    int64_t v = 0;
    cr_assert(eq(int, trellis_counter_get(cli, K("c"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_incrby(cli, K("c"), 5, &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 5));
    cr_assert(eq(int, trellis_incrby(cli, K("c"), -7, &v), TRELLIS_OK));
    cr_assert(eq(i64, v, -2));
    cr_assert(eq(int, trellis_incrby(cli, K("c"), 1, NULL), TRELLIS_OK));
    cr_assert(eq(int, trellis_counter_get(cli, K("c"), &v), TRELLIS_OK));
    cr_assert(eq(i64, v, -1));

    /* Ten keys through a cache of two: every key's totals are read back
     * from the store when it was evicted, so nothing counts twice or is
     * lost. */
    char key[16];
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < 10; k++) {
            snprintf(key, sizeof(key), "ck%d", k);
            cr_assert(eq(int, trellis_incrby(cli, K(key), k + 1, NULL), TRELLIS_OK));
        }
    for (int k = 0; k < 10; k++) {
        snprintf(key, sizeof(key), "ck%d", k);
        cr_assert(eq(int, trellis_counter_get(cli, K(key), &v), TRELLIS_OK));
        cr_assert(eq(i64, v, 3 * (k + 1)), "%s", key);
    }

    /* A second client is another writer: both count. */
    trellis_client *other;
    cr_assert(eq(int, trellis_connect(cluster.router_url, NULL, &other), TRELLIS_OK));
    cr_assert(trellis_writer_id(other) != trellis_writer_id(cli));
    cr_assert(eq(int, trellis_incrby(other, K("c"), 100, &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 99));
    trellis_close(other);

    /* DEL brings the counter back to zero; increments go on from there. */
    cr_assert(eq(int, trellis_del(cli, K("c")), TRELLIS_OK));
    cr_assert(eq(int, trellis_counter_get(cli, K("c"), &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 0));
    cr_assert(eq(int, trellis_incrby(cli, K("c"), 3, &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 3));
}

Test(client, max_priority_causal, .fini = stop_all, .timeout = 60)
{
    up("mpc", 2, 1, NULL, NULL);
    int64_t v;
    cr_assert(eq(int, trellis_max_put(cli, K("m"), 5), TRELLIS_OK));
    cr_assert(eq(int, trellis_max_put(cli, K("m"), -3), TRELLIS_OK));
    cr_assert(eq(int, trellis_max_get(cli, K("m"), &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 5));
    cr_assert(eq(int, trellis_max_put(cli, K("m"), 42), TRELLIS_OK));
    cr_assert(eq(int, trellis_max_get(cli, K("m"), &v), TRELLIS_OK));
    cr_assert(eq(i64, v, 42));
    cr_assert(eq(int, trellis_del(cli, K("m")), TRELLIS_INVALID), "a MAX only grows");

    void *p;
    size_t n;
    int64_t prio;
    cr_assert(eq(int, trellis_priority_put(cli, K("p"), 10, "ten", 3), TRELLIS_OK));
    cr_assert(eq(int, trellis_priority_put(cli, K("p"), 3, "three", 5), TRELLIS_OK));
    cr_assert(eq(int, trellis_priority_put(cli, K("p"), 7, "seven", 5), TRELLIS_OK));
    cr_assert(eq(int, trellis_priority_get(cli, K("p"), &prio, &p, &n), TRELLIS_OK));
    cr_assert(eq(str, (char *)p, "three"), "the lowest priority wins");
    cr_assert(eq(i64, prio, 3));
    trellis_free(p);

    /* CAUSAL: two blind writes are concurrent; a write over what was read
     * supersedes both. */
    trellis_value *c;
    cr_assert(eq(int, trellis_causal_get(cli, K("cz"), &c), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_causal_put(cli, K("cz"), NULL, "a", 1), TRELLIS_OK));
    trellis_client *other;
    cr_assert(eq(int, trellis_connect(cluster.router_url, NULL, &other), TRELLIS_OK));
    cr_assert(eq(int, trellis_causal_put(other, K("cz"), NULL, "b", 1), TRELLIS_OK));
    cr_assert(eq(int, trellis_causal_get(cli, K("cz"), &c), TRELLIS_OK));
    cr_assert(eq(sz, c->count, 2), "concurrent values are both kept");
    cr_assert(eq(sz, c->clock_count, 2));
    cr_assert(c->items[0].dot.writer != 0);
    cr_assert(eq(int, trellis_causal_put(other, K("cz"), c, "merged", 6), TRELLIS_OK));
    trellis_value_free(c);
    cr_assert(eq(int, trellis_causal_get(cli, K("cz"), &c), TRELLIS_OK));
    cr_assert(eq(sz, c->count, 1));
    cr_assert(eq(str, (char *)c->items[0].data, "merged"));
    cr_assert(eq(u64, c->items[0].dot.writer, trellis_writer_id(other)));
    trellis_value_free(c);
    trellis_close(other);
    cr_assert(eq(int, trellis_del(cli, K("cz")), TRELLIS_OK));
    cr_assert(eq(int, trellis_causal_get(cli, K("cz"), &c), TRELLIS_NOT_FOUND));
}

Test(client, get_any_type, .fini = stop_all, .timeout = 60)
{
    up("any", 1, 1, NULL, NULL);
    trellis_bytes m[] = {B("x"), B("y")};
    cr_assert(eq(int, trellis_put(cli, K("t-lww"), "v", 1), TRELLIS_OK));
    cr_assert(eq(int, trellis_gadd(cli, K("t-set"), m, 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_sadd(cli, K("t-orset"), m, 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_incrby(cli, K("t-counter"), 9, NULL), TRELLIS_OK));
    cr_assert(eq(int, trellis_max_put(cli, K("t-max"), 8), TRELLIS_OK));
    cr_assert(eq(int, trellis_causal_put(cli, K("t-causal"), NULL, "c", 1), TRELLIS_OK));
    cr_assert(eq(int, trellis_priority_put(cli, K("t-priority"), 1, "p", 1), TRELLIS_OK));
    const char *keys[] = {"t-lww", "t-set",    "t-orset",   "t-counter",
                          "t-max", "t-causal", "t-priority"};
    for (int i = 0; i < 7; i++) {
        trellis_value *v;
        cr_assert(eq(int, trellis_get_value(cli, K(keys[i]), &v), TRELLIS_OK), "%s", keys[i]);
        cr_assert(eq(int, v->type, i + 1), "%s", keys[i]);
        cr_assert(v->state_len > 0);
        trellis_type t;
        cr_assert(eq(int, trellis_type_of(cli, K(keys[i]), &t), TRELLIS_OK));
        cr_assert(eq(int, t, i + 1));
        cr_assert(eq(str, (char *)trellis_type_name(t), (char *)trellis_type_name(v->type)));
        if (v->type == TRELLIS_TYPE_COUNTER)
            cr_assert(eq(i64, v->integer, 9));
        if (v->type == TRELLIS_TYPE_MAX)
            cr_assert(eq(i64, v->integer, 8));
        trellis_value_free(v);
    }
}

Test(client, disk_tier_only, .fini = stop_all, .timeout = 60)
{
    /* No memory tier: reads and writes go to the disk replicas. */
    up("disk", 0, 2, NULL, NULL);
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "dk%d", i);
        cr_assert(eq(int, trellis_put(cli, K(key), K(key)), TRELLIS_OK));
        cr_assert(eq(int, trellis_incrby(cli, K("dcount"), 2, NULL), TRELLIS_OK));
    }
    for (int i = 0; i < 50; i++) {
        void *v;
        size_t n;
        snprintf(key, sizeof(key), "dk%d", i);
        cr_assert(eq(int, trellis_get(cli, K(key), &v, &n), TRELLIS_OK));
        cr_assert(eq(str, (char *)v, key));
        trellis_free(v);
    }
    int64_t c;
    cr_assert(eq(int, trellis_counter_get(cli, K("dcount"), &c), TRELLIS_OK));
    cr_assert(eq(i64, c, 100));
    trellis_node *nodes;
    size_t nn;
    cr_assert(eq(int, trellis_nodes(cli, &nodes, &nn), TRELLIS_OK));
    cr_assert(eq(sz, nn, 2));
    for (size_t i = 0; i < nn; i++) {
        cr_assert(eq(int, nodes[i].tier, TRELLIS_TIER_DISK));
        cr_assert(eq(int, nodes[i].state, TRELLIS_NODE_ACTIVE));
        cr_assert(eq(u32, nodes[i].shards, 2));
        cr_assert(eq(str, (char *)trellis_tier_name(nodes[i].tier), "disk"));
    }
    trellis_free(nodes);
    trellis_stats st;
    cr_assert(eq(int, trellis_stats_get(cli, &st), TRELLIS_OK));
    cr_assert(eq(sz, st.tier_count, 2));
    cr_assert(eq(int, trellis_ping(cli), TRELLIS_OK));
}

Test(client, lattice_mismatch, .fini = stop_all, .timeout = 60)
{
    up("mismatch", 2, 1, NULL, NULL);
    cr_assert(eq(int, trellis_put(cli, K("lww"), "v", 1), TRELLIS_OK));
    trellis_bytes m = B("x");
    cr_assert(eq(int, trellis_incrby(cli, K("lww"), 1, NULL), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_sadd(cli, K("lww"), &m, 1), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_gadd(cli, K("lww"), &m, 1), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_max_put(cli, K("lww"), 1), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_causal_put(cli, K("lww"), NULL, "c", 1), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_priority_put(cli, K("lww"), 1, "p", 1), TRELLIS_LATTICE_MISMATCH));
    trellis_value *v;
    int64_t i;
    cr_assert(eq(int, trellis_smembers(cli, K("lww"), &v), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_counter_get(cli, K("lww"), &i), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_incrby(cli, K("cnt"), 1, NULL), TRELLIS_OK));
    cr_assert(eq(int, trellis_put(cli, K("cnt"), "v", 1), TRELLIS_LATTICE_MISMATCH));
    void *p;
    size_t n;
    cr_assert(eq(int, trellis_get(cli, K("cnt"), &p, &n), TRELLIS_LATTICE_MISMATCH));
    /* The key keeps its value and type. */
    cr_assert(eq(int, trellis_get(cli, K("lww"), &p, &n), TRELLIS_OK));
    trellis_free(p);
    cr_assert(eq(int, trellis_counter_get(cli, K("cnt"), &i), TRELLIS_OK));
    cr_assert(eq(i64, i, 1));
    cr_assert(eq(str, (char *)trellis_strerror(TRELLIS_LATTICE_MISMATCH),
                 "lattice type does not match the key's type"));
}

/* ---- batches ------------------------------------------------------------------------------ */

Test(client, batch_spans_shards, .fini = stop_all, .timeout = 60)
{
    up("batch", 2, 1, NULL, NULL); /* two memory nodes of two shards each */
    trellis_batch *b = trellis_batch_new();
    cr_assert_not_null(b);
    enum { N = 400 };
    char key[32], val[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "bk%d", i);
        snprintf(val, sizeof(val), "bv%d", i);
        cr_assert(eq(int, trellis_batch_put(b, K(key), K(val)), 2 * i));
        /* A read after a write of the same key sees it. */
        cr_assert(eq(int, trellis_batch_get(b, K(key), TRELLIS_TYPE_NONE), 2 * i + 1));
    }
    trellis_bytes m = B("member");
    int si = trellis_batch_sadd(b, K("bset"), &m, 1);
    int ci = trellis_batch_incrby(b, K("bcnt"), 7);
    int ci2 = trellis_batch_incrby(b, K("bcnt"), 3);
    int mi = trellis_batch_max(b, K("bmax"), 11);
    int pi = trellis_batch_priority_put(b, K("bprio"), 2, "two", 3);
    int zi = trellis_batch_causal_put(b, K("bcausal"), NULL, "cv", 2);
    int di = trellis_batch_del(b, K("bk0"));
    int gi = trellis_batch_get(b, K("bk0"), TRELLIS_TYPE_LWW);
    int xi = trellis_batch_incrby(b, K("bk1"), 1); /* wrong type */
    int ni = trellis_batch_get(b, K("nothing"), TRELLIS_TYPE_NONE);
    cr_assert(xi > 0 && ni == xi + 1);
    cr_assert(eq(int, trellis_batch_get(b, "", 0, TRELLIS_TYPE_NONE), -TRELLIS_INVALID));
    size_t count = trellis_batch_count(b);
    cr_assert(eq(sz, count, 2 * N + 10));

    trellis_counters before, after;
    trellis_get_counters(cli, &before);
    long long t0 = tnow_ms();
    int rc = trellis_batch_exec(cli, b);
    long long took = tnow_ms() - t0;
    trellis_get_counters(cli, &after);
    cr_assert(eq(int, rc, TRELLIS_LATTICE_MISMATCH), "the first failed operation's status");
    /* One request per shard: 2 memory nodes x 2 shards. */
    cr_assert(le(u64, after.requests - before.requests, 4), "requests %llu",
              (unsigned long long)(after.requests - before.requests));
    cr_assert(ge(u64, after.requests - before.requests, 2));
    cr_log_info("batch of %zu operations: %lld ms, %llu requests", count, took,
                (unsigned long long)(after.requests - before.requests));

    for (int i = 1; i < N; i++) {
        snprintf(val, sizeof(val), "bv%d", i);
        cr_assert(eq(int, trellis_batch_status(b, 2 * i), TRELLIS_OK));
        cr_assert(eq(int, trellis_batch_status(b, 2 * i + 1), TRELLIS_OK), "get %d", i);
        const trellis_value *v = trellis_batch_value(b, 2 * i + 1);
        cr_assert_not_null(v);
        cr_assert(eq(str, (char *)v->items[0].data, val));
        cr_assert_null(trellis_batch_value(b, 2 * i));
    }
    cr_assert(eq(int, trellis_batch_status(b, si), TRELLIS_OK));
    cr_assert(eq(int, trellis_batch_status(b, ci), TRELLIS_OK));
    cr_assert(eq(i64, trellis_batch_value(b, ci)->integer, 7));
    cr_assert(eq(i64, trellis_batch_value(b, ci2)->integer, 10));
    cr_assert(eq(int, trellis_batch_status(b, mi), TRELLIS_OK));
    cr_assert(eq(int, trellis_batch_status(b, pi), TRELLIS_OK));
    cr_assert(eq(int, trellis_batch_status(b, zi), TRELLIS_OK));
    cr_assert(eq(int, trellis_batch_status(b, di), TRELLIS_OK));
    cr_assert(eq(int, trellis_batch_status(b, gi), TRELLIS_NOT_FOUND), "get after del");
    cr_assert(eq(int, trellis_batch_status(b, xi), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_batch_status(b, ni), TRELLIS_NOT_FOUND));
    cr_assert_null(trellis_batch_value(b, ni));
    cr_assert(eq(int, trellis_batch_status(b, count), TRELLIS_INVALID));

    /* Reuse: clear and fill again with reads only. */
    trellis_batch_clear(b);
    cr_assert(eq(sz, trellis_batch_count(b), 0));
    for (int i = 1; i < N; i++) {
        snprintf(key, sizeof(key), "bk%d", i);
        trellis_batch_get(b, K(key), TRELLIS_TYPE_LWW);
    }
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    for (int i = 1; i < N; i++) {
        snprintf(val, sizeof(val), "bv%d", i);
        cr_assert(eq(str, (char *)trellis_batch_value(b, (size_t)i - 1)->items[0].data, val));
    }
    trellis_batch_free(b);
}

Test(client, big_batch_is_split, .fini = stop_all, .timeout = 60)
{
    trellis_options o;
    trellis_options_init(&o);
    o.max_message_bytes = 64 * 1024; /* forces several requests per shard */
    up("split", 1, 0, NULL, &o);
    trellis_batch *b = trellis_batch_new();
    enum { N = 3000 };
    char key[32], val[100];
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "split%d", i);
        trellis_batch_put(b, K(key), val, sizeof(val));
        trellis_batch_get(b, K(key), TRELLIS_TYPE_LWW);
    }
    trellis_counters before, after;
    trellis_get_counters(cli, &before);
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    trellis_get_counters(cli, &after);
    cr_assert(gt(u64, after.requests - before.requests, 4), "split into several requests");
    for (int i = 0; i < N; i++)
        cr_assert(eq(int, trellis_batch_status(b, 2 * (size_t)i + 1), TRELLIS_OK), "%d", i);
    trellis_batch_free(b);
}

/* Reads of large values: a request of small GETs may bring a reply far
 * above the message limit. It is taken whole, and later requests are cut
 * so that their replies stay near the limit. */
Test(client, large_values_read_back_in_bounded_replies, .fini = stop_all, .timeout = 60)
{
    up("large", 1, 0, NULL, NULL);
    enum { N = 300, V = 32 << 10 };
    char key[32];
    char *val = malloc(V);
    trellis_batch *b = trellis_batch_new();
    for (int i = 0; i < N; i++) {
        memset(val, 'a' + i % 26, V);
        snprintf(key, sizeof(key), "large%d", i);
        trellis_batch_put(b, K(key), val, V);
    }
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    for (int i = 0; i < N; i++)
        cr_assert(eq(int, trellis_batch_status(b, (size_t)i), TRELLIS_OK), "put %d", i);
    trellis_batch_free(b);
    /* About 4.8 MiB of values per shard, more than the 4 MiB limit. */
    for (int round = 0; round < 2; round++) {
        b = trellis_batch_new();
        for (int i = 0; i < N; i++) {
            snprintf(key, sizeof(key), "large%d", i);
            trellis_batch_get(b, K(key), TRELLIS_TYPE_LWW);
        }
        trellis_counters before, after;
        trellis_get_counters(cli, &before);
        cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
        trellis_get_counters(cli, &after);
        for (int i = 0; i < N; i++) {
            cr_assert(eq(int, trellis_batch_status(b, (size_t)i), TRELLIS_OK), "round %d, get %d",
                      round, i);
            const trellis_value *v = trellis_batch_value(b, (size_t)i);
            cr_assert(v && v->count == 1 && v->items[0].len == V, "round %d, get %d", round, i);
            cr_assert(eq(u8, ((const uint8_t *)v->items[0].data)[V - 1], 'a' + i % 26));
        }
        cr_log_info("round %d: %llu requests for %d GETs", round,
                    (unsigned long long)(after.requests - before.requests), N);
        if (round == 1)
            cr_assert(ge(u64, after.requests - before.requests, 4),
                      "the second round's requests were cut by their replies' size");
        trellis_batch_free(b);
    }
    free(val);
}

/* ---- replicas ------------------------------------------------------------------------------ */

Test(client, reads_spread_and_ack_all, .fini = stop_all, .timeout = 60)
{
    /* Two memory replicas per key, and replication slowed down so that
     * a write reaches only the replicas the client sent it to. */
    copts o = {.memory_replicas = 2, .disk_replicas = 0, .slow_gossip = 1};
    up("ack", 2, 0, &o, NULL);
    enum { N = 40 };
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "one%d", i);
        cr_assert(eq(int, trellis_put(cli, K(key), "x", 1), TRELLIS_OK));
    }
    /* ack=one wrote to one replica; reads take the replicas in turn, so of
     * two reads in a row of a key, exactly one finds it. */
    for (int i = 0; i < N; i++) {
        int found = 0;
        snprintf(key, sizeof(key), "one%d", i);
        for (int round = 0; round < 2; round++) {
            void *v;
            size_t n;
            int rc = trellis_get(cli, K(key), &v, &n);
            cr_assert(rc == TRELLIS_OK || rc == TRELLIS_NOT_FOUND);
            if (rc == TRELLIS_OK) {
                found++;
                trellis_free(v);
            }
        }
        cr_assert(eq(int, found, 1), "%s: read from each replica once", key);
    }

    trellis_options ao;
    trellis_options_init(&ao);
    ao.ack = TRELLIS_ACK_ALL;
    trellis_client *all;
    cr_assert(eq(int, trellis_connect(cluster.router_url, &ao, &all), TRELLIS_OK));
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "all%d", i);
        cr_assert(eq(int, trellis_put(all, K(key), "y", 1), TRELLIS_OK));
        int64_t cv;
        cr_assert(eq(int, trellis_incrby(all, K("allcnt"), 1, &cv), TRELLIS_OK));
        cr_assert(eq(i64, cv, i + 1));
    }
    trellis_close(all);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            void *v;
            size_t n;
            snprintf(key, sizeof(key), "all%d", i);
            cr_assert(eq(int, trellis_get(cli, K(key), &v, &n), TRELLIS_OK), "%s", key);
            trellis_free(v);
            int64_t cv;
            cr_assert(eq(int, trellis_counter_get(cli, K("allcnt"), &cv), TRELLIS_OK));
            cr_assert(eq(i64, cv, N), "every replica has every increment");
        }
}

/* ---- failures ---------------------------------------------------------------------------- */

Test(client, stopped_node_unavailable_within_deadline, .fini = stop_all, .timeout = 60)
{
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = 800;
    up("stopped", 2, 0, NULL, &o); /* no disk tier: a key has one replica */
    /* About half of these keys live on m2, the node that stops. */
    enum { N = 40 };
    char keys[N][32];
    for (int i = 0; i < N; i++)
        snprintf(keys[i], sizeof(keys[i]), "stop%d", i);
    for (int i = 0; i < N; i++)
        cr_assert(eq(int, trellis_put(cli, K(keys[i]), "v", 1), TRELLIS_OK));

    tproc_kill9(cluster.nodes[1].p); /* the second memory node */
    trellis_batch *b = trellis_batch_new();
    for (int i = 0; i < N; i++)
        trellis_batch_get(b, K(keys[i]), TRELLIS_TYPE_LWW);
    long long t0 = tnow_ms();
    int rc = trellis_batch_exec(cli, b);
    long long took = tnow_ms() - t0;
    cr_assert(eq(int, rc, TRELLIS_UNAVAILABLE));
    cr_assert(le(i64, took, 800 + 400), "returned after %lld ms", took);
    cr_assert(ge(i64, took, 700), "kept retrying until the deadline (%lld ms)", took);
    int ok = 0, unavailable = 0;
    for (int i = 0; i < N; i++) {
        int st = trellis_batch_status(b, (size_t)i);
        cr_assert(st == TRELLIS_OK || st == TRELLIS_UNAVAILABLE, "status %d", st);
        ok += st == TRELLIS_OK;
        unavailable += st == TRELLIS_UNAVAILABLE;
    }
    cr_assert(ok > 0 && unavailable > 0, "%d ok, %d unavailable", ok, unavailable);
    trellis_batch_free(b);

    /* Single calls too, and writes. */
    int seen = 0;
    for (int i = 0; i < N && !seen; i++) {
        t0 = tnow_ms();
        rc = trellis_put(cli, K(keys[i]), "w", 1);
        took = tnow_ms() - t0;
        if (rc == TRELLIS_UNAVAILABLE) {
            seen = 1;
            cr_assert(le(i64, took, 800 + 400), "put returned after %lld ms", took);
        } else {
            cr_assert(eq(int, rc, TRELLIS_OK));
        }
    }
    cr_assert(seen);
}

Test(client, paused_node_times_out, .fini = stop_all, .timeout = 60)
{
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = 600;
    up("paused", 2, 0, NULL, &o);
    char key[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "pz%d", i);
        cr_assert(eq(int, trellis_put(cli, K(key), "v", 1), TRELLIS_OK));
    }
    tproc_signal(cluster.nodes[0].p, SIGSTOP); /* stays connected but never answers */
    int timeouts = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "pz%d", i);
        void *v;
        size_t n;
        long long t0 = tnow_ms();
        int rc = trellis_get(cli, K(key), &v, &n);
        long long took = tnow_ms() - t0;
        cr_assert(le(i64, took, 600 + 400), "returned after %lld ms", took);
        if (rc == TRELLIS_OK)
            trellis_free(v);
        else
            cr_assert(eq(int, rc, TRELLIS_TIMEOUT), "a silent replica times out");
        timeouts += rc == TRELLIS_TIMEOUT;
        if (timeouts >= 2)
            break;
    }
    tproc_signal(cluster.nodes[0].p, SIGCONT);
    cr_assert(ge(int, timeouts, 1));
}

Test(client, retries_after_wrong_shard, .fini = stop_all, .timeout = 90)
{
    up("wrongshard", 2, 0, NULL, NULL);
    uint64_t epoch0 = trellis_ring_epoch(cli);
    char key[32];
    /* The ring grows by a node; this client does not know yet. */
    cr_assert_not_null(tcluster_start_node(&cluster, RING_TIER_MEMORY, 2, NULL));
    cr_assert(eq(int, tcluster_wait_active(&cluster, 20000), 0), "third node active");
    cr_assert(eq(u64, trellis_ring_epoch(cli), epoch0), "the client still has the old ring");

    trellis_batch *b = trellis_batch_new();
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "ws%d", i);
        trellis_batch_put(b, K(key), "v", 1);
    }
    trellis_counters before, after;
    trellis_get_counters(cli, &before);
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    trellis_get_counters(cli, &after);
    cr_assert(gt(u64, after.wrong_shard, before.wrong_shard), "old owners answered WRONG_SHARD");
    cr_assert(gt(u64, after.ring_fetches, before.ring_fetches), "the ring was refetched");
    cr_assert(gt(u64, after.retries, before.retries));
    cr_assert(ne(u64, trellis_ring_epoch(cli), epoch0));
    trellis_batch_free(b);
    /* And every key reads back through the new ring. */
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "ws%d", i);
        void *v;
        size_t n;
        cr_assert(eq(int, trellis_get(cli, K(key), &v, &n), TRELLIS_OK), "%s", key);
        trellis_free(v);
    }
}

Test(client, node_with_an_old_ring_catches_up, .fini = stop_all, .timeout = 90)
{
    /* Heartbeats every 3 s: a node hears of a ring change from the router
     * only that rarely, unless something tells it sooner. */
    copts o = {.memory_replicas = 1, .disk_replicas = 0, .heartbeat_ms = 3000};
    up("oldring", 2, 0, &o, NULL);
    char key[32];
    /* The second node departs (handing its keys to the first) and leaves:
     * the first owns every key now, and its ring may be 3 s behind. */
    tproc_signal(cluster.nodes[1].p, SIGTERM);
    int left = 0;
    for (int i = 0; i < 200 && !left; i++) {
        trellis_node *nodes;
        size_t n;
        left = 1;
        if (trellis_nodes(cli, &nodes, &n) == TRELLIS_OK) {
            for (size_t k = 0; k < n; k++)
                if (strcmp(nodes[k].id, cluster.nodes[1].id) == 0 &&
                    nodes[k].state != TRELLIS_NODE_LEFT)
                    left = 0;
            trellis_free(nodes);
        } else {
            left = 0;
        }
        if (!left)
            usleep(20000);
    }
    cr_assert(left, "%s did not leave", cluster.nodes[1].id);
    /* New keys at once, half of them the departed node's: a request that
     * carries the client's newer ring makes the node fetch it, instead of
     * answering WRONG_SHARD until its next heartbeat. */
    long long t0 = tnow_ms();
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "after%d", i);
        int rc = trellis_put(cli, K(key), "v", 1);
        cr_assert(eq(int, rc, TRELLIS_OK), "%s: %s after %lld ms", key, trellis_strerror(rc),
                  tnow_ms() - t0);
    }
    cr_log_info("100 writes after the departure took %lld ms", tnow_ms() - t0);
    cr_assert(lt(i64, tnow_ms() - t0, 1500), "the node took a heartbeat period to catch up");
}

Test(client, connect_failures, .timeout = 30)
{
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = 300;
    trellis_client *c = NULL;
    long long t0 = tnow_ms();
    /* Nothing listens on port 1. */
    cr_assert(eq(int, trellis_connect("tcp://127.0.0.1:1", &o, &c), TRELLIS_UNAVAILABLE));
    cr_assert(le(i64, tnow_ms() - t0, 600));
    cr_assert_null(c);
    cr_assert(eq(int, trellis_connect("bogus://x", &o, &c), TRELLIS_INVALID));
    cr_assert(eq(int, trellis_connect("", &o, &c), TRELLIS_INVALID));
    cr_assert(eq(int, trellis_connect("tls+tcp://127.0.0.1:1", &o, &c), TRELLIS_INVALID),
              "tls+tcp without a CA file");
    o.timeout_ms = 0;
    cr_assert(eq(int, trellis_connect("tcp://127.0.0.1:1", &o, &c), TRELLIS_INVALID));
    trellis_options_init(&o);
    cr_assert(eq(int, o.timeout_ms, 2000), "defaults of the client section");
    cr_assert(eq(int, o.retries, 4));
    cr_assert(eq(int, o.ack, TRELLIS_ACK_ONE));
}

/* ---- threads ------------------------------------------------------------------------------ */

typedef struct worker {
    int id;
    int errors;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char key[32], val[32];
    for (int i = 0; i < 150; i++) {
        if (trellis_incrby(cli, K("shared"), 1, NULL) != TRELLIS_OK)
            w->errors++;
        snprintf(key, sizeof(key), "t%d-%d", w->id, i);
        snprintf(val, sizeof(val), "v%d", i);
        if (trellis_put(cli, K(key), K(val)) != TRELLIS_OK)
            w->errors++;
        void *v;
        size_t n;
        if (trellis_get(cli, K(key), &v, &n) != TRELLIS_OK || strcmp(v, val) != 0)
            w->errors++;
        else
            trellis_free(v);
    }
    return NULL;
}

Test(client, shared_by_threads, .fini = stop_all, .timeout = 60)
{
    up("threads", 2, 1, NULL, NULL);
    enum { T = 4 };
    pthread_t th[T];
    worker w[T];
    for (int i = 0; i < T; i++) {
        w[i].id = i;
        w[i].errors = 0;
        cr_assert(eq(int, pthread_create(&th[i], NULL, work, &w[i]), 0));
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        cr_assert(eq(int, w[i].errors, 0), "thread %d", i);
    }
    int64_t v;
    cr_assert(eq(int, trellis_counter_get(cli, K("shared"), &v), TRELLIS_OK));
    cr_assert(eq(i64, v, T * 150), "no increment lost or counted twice");
}
