/*
 * test_client_ttlmap.c - libtrellis's expiry, map and key-space calls
 * against real trellis-route and trellis-kvs processes: deadlines set,
 * read, conditioned and removed; a key written again after its deadline
 * holds only the new value (counters and map counters start again from
 * zero); every map call; SCAN finding every key once across shards and
 * tiers, with MATCH and TYPE, and across a node joining mid-walk; DBSIZE.
 *
 * The tests link the shared library, so they see exactly what a user does.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "placement/ring.h"
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

static void up(const char *name, int nmem, int ndisk)
{
    cr_assert(eq(int, tcluster_init(&cluster, name), 0));
    tcluster_set_client(&cluster); /* one replica per tier */
    cr_assert(eq(int, tcluster_start(&cluster, nmem, ndisk, 2, NULL), 0), "cluster start");
    int rc = trellis_connect(cluster.router_url, NULL, &cli);
    cr_assert(eq(int, rc, TRELLIS_OK), "connect: %s", trellis_strerror(rc));
}

#define K(s) (s), strlen(s)

static void expect_value(const char *key, const char *want)
{
    void *v = NULL;
    size_t n;
    int rc = trellis_get(cli, K(key), &v, &n);
    if (!want) {
        cr_assert(eq(int, rc, TRELLIS_NOT_FOUND), "%s: %s", key, trellis_status_name(rc));
        return;
    }
    cr_assert(eq(int, rc, TRELLIS_OK), "%s: %s", key, trellis_status_name(rc));
    cr_assert(eq(str, (char *)v, (char *)want));
    trellis_free(v);
}

/* ---- expiry ------------------------------------------------------------------------------ */

Test(client_ttlmap, expiry, .fini = stop_all, .timeout = 90)
{
    up("expiry", 2, 1);
    int64_t ttl;
    int applied;
    cr_assert(eq(int, trellis_expire(cli, K("missing"), 10), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_ttl(cli, K("missing"), &ttl), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_put(cli, K("k"), "v", 1), TRELLIS_OK));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(eq(i64, ttl, -1));
    cr_assert(eq(int, trellis_expire(cli, K("k"), 100), TRELLIS_OK));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(ttl >= 99 && ttl <= 100, "ttl %lld", (long long)ttl);
    cr_assert(eq(int, trellis_pttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(ttl > 98000 && ttl <= 100000, "pttl %lld", (long long)ttl);

    /* Conditions, as Redis's EXPIRE NX/XX/GT/LT. */
    uint64_t now = trellis_clock_ms(cli);
    cr_assert(eq(int, trellis_pexpireat(cli, K("k"), now + 50000, TRELLIS_EXPIRE_NX, &applied),
                 TRELLIS_OK));
    cr_assert(eq(int, applied, 0));
    cr_assert(eq(int, trellis_pexpireat(cli, K("k"), now + 50000, TRELLIS_EXPIRE_GT, &applied),
                 TRELLIS_OK));
    cr_assert(eq(int, applied, 0));
    cr_assert(eq(int, trellis_pexpireat(cli, K("k"), now + 50000, TRELLIS_EXPIRE_LT, &applied),
                 TRELLIS_OK));
    cr_assert(eq(int, applied, 1));
    cr_assert(eq(int, trellis_pexpireat(cli, K("k"), now + 200000, TRELLIS_EXPIRE_XX, &applied),
                 TRELLIS_OK));
    cr_assert(eq(int, applied, 1));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(ttl > 190 && ttl <= 200, "ttl %lld", (long long)ttl);

    /* PERSIST says whether there was a deadline. */
    int removed;
    cr_assert(eq(int, trellis_persist(cli, K("k"), &removed), TRELLIS_OK));
    cr_assert(eq(int, removed, 1));
    cr_assert(eq(int, trellis_persist(cli, K("k"), &removed), TRELLIS_OK));
    cr_assert(eq(int, removed, 0));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(eq(i64, ttl, -1));

    /* A SET clears the deadline; with KEEPTTL it keeps it; with a
     * deadline it sets one. */
    cr_assert(eq(int, trellis_expire(cli, K("k"), 100), TRELLIS_OK));
    trellis_put_opts keep = {0, 1};
    cr_assert(eq(int, trellis_put_ex(cli, K("k"), "kept", 4, &keep), TRELLIS_OK));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(ttl > 90, "KEEPTTL kept %lld", (long long)ttl);
    cr_assert(eq(int, trellis_put(cli, K("k"), "plain", 5), TRELLIS_OK));
    cr_assert(eq(int, trellis_ttl(cli, K("k"), &ttl), TRELLIS_OK));
    cr_assert(eq(i64, ttl, -1));
    trellis_put_opts ex = {trellis_clock_ms(cli) + 400, 0};
    cr_assert(eq(int, trellis_put_ex(cli, K("short"), "soon gone", 9, &ex), TRELLIS_OK));
    trellis_put_opts both = {1000, 1};
    cr_assert(eq(int, trellis_put_ex(cli, K("short"), "x", 1, &both), TRELLIS_INVALID));
    expect_value("short", "soon gone");

    /* Expiry of every kind of value, then writes of the same keys: only
     * the new values are there. */
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, trellis_incrby(cli, K("hits"), 5, NULL), TRELLIS_OK));
    trellis_bytes f[] = {{"f", 1}, {"1", 1}, {"g", 1}, {"old", 3}};
    cr_assert(eq(int, trellis_map_set(cli, K("h"), f, 2, NULL), TRELLIS_OK));
    int64_t n;
    cr_assert(eq(int, trellis_map_incrby(cli, K("h"), K("c"), 7, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 7));
    trellis_bytes m[] = {{"a", 1}, {"b", 1}};
    cr_assert(eq(int, trellis_sadd(cli, K("s"), m, 2), TRELLIS_OK));
    cr_assert(eq(int, trellis_pexpire(cli, K("hits"), 300), TRELLIS_OK));
    cr_assert(eq(int, trellis_pexpire(cli, K("h"), 300), TRELLIS_OK));
    cr_assert(eq(int, trellis_pexpire(cli, K("s"), 300), TRELLIS_OK));
    usleep(600 * 1000);
    expect_value("short", NULL);
    trellis_value *v = NULL;
    cr_assert(eq(int, trellis_get_value(cli, K("hits"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_get_value(cli, K("h"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_smembers(cli, K("s"), &v), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_ttl(cli, K("hits"), &ttl), TRELLIS_NOT_FOUND));
    /* The counter's totals of the ended incarnation do not count. */
    cr_assert(eq(int, trellis_incrby(cli, K("hits"), 1, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 1), "INCR after expiry: %lld", (long long)n);
    cr_assert(eq(int, trellis_counter_get(cli, K("hits"), &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 1));
    cr_assert(eq(int, trellis_map_incrby(cli, K("h"), K("c"), 2, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 2), "HINCRBY after expiry: %lld", (long long)n);
    cr_assert(eq(int, trellis_map_getall(cli, K("h"), &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 2), "only the new field: %zu items", v->count);
    cr_assert(eq(str, (char *)v->items[0].data, "c"));
    cr_assert(eq(str, (char *)v->items[1].data, "2"));
    trellis_value_free(v);
    /* A new incarnation may have another type. */
    cr_assert(eq(int, trellis_put(cli, K("s"), "now a string", 12), TRELLIS_OK));
    expect_value("s", "now a string");
    /* A deadline in the past expires the key at once. */
    cr_assert(eq(int, trellis_expireat(cli, K("s"), 1), TRELLIS_OK));
    expect_value("s", NULL);
}

/* ---- maps -------------------------------------------------------------------------------- */

Test(client_ttlmap, maps, .fini = stop_all, .timeout = 90)
{
    up("maps", 2, 0);
    size_t added, removed, len;
    trellis_bytes p1[] = {{"name", 4}, {"ada", 3}, {"lang", 4}, {"c", 1}, {"name", 4}, {"bob", 3}};
    cr_assert(eq(int, trellis_map_set(cli, K("user"), p1, 3, &added), TRELLIS_OK));
    cr_assert(eq(sz, added, 2), "two fields new (name given twice)");
    void *val;
    size_t vl;
    cr_assert(eq(int, trellis_map_get(cli, K("user"), K("name"), &val, &vl), TRELLIS_OK));
    cr_assert(eq(str, (char *)val, "bob"), "the last of a repeated name wins");
    trellis_free(val);
    cr_assert(eq(int, trellis_map_get(cli, K("user"), K("none"), &val, &vl), TRELLIS_NOT_FOUND));
    cr_assert(eq(int, trellis_map_get(cli, K("nomap"), K("x"), &val, &vl), TRELLIS_NOT_FOUND));
    trellis_bytes p2[] = {{"lang", 4}, {"go", 2}, {"age", 3}, {"36", 2}};
    cr_assert(eq(int, trellis_map_set(cli, K("user"), p2, 2, &added), TRELLIS_OK));
    cr_assert(eq(sz, added, 1));

    trellis_value *v;
    cr_assert(eq(int, trellis_map_getall(cli, K("user"), &v), TRELLIS_OK));
    const char *want[] = {"age", "36", "lang", "go", "name", "bob"};
    cr_assert(eq(sz, v->count, 6));
    cr_assert(eq(i64, v->integer, 3));
    for (size_t i = 0; i < 6; i++)
        cr_assert(eq(str, (char *)v->items[i].data, (char *)want[i]));
    trellis_value_free(v);
    cr_assert(eq(int, trellis_map_keys(cli, K("user"), &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 3));
    cr_assert(eq(str, (char *)v->items[2].data, "name"));
    trellis_value_free(v);
    cr_assert(eq(int, trellis_map_vals(cli, K("user"), &v), TRELLIS_OK));
    cr_assert(eq(str, (char *)v->items[1].data, "go"));
    trellis_value_free(v);
    trellis_bytes q[] = {{"name", 4}, {"zip", 3}, {"age", 3}};
    cr_assert(eq(int, trellis_map_mget(cli, K("user"), q, 3, &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 3));
    cr_assert(eq(str, (char *)v->items[0].data, "bob"));
    cr_assert(v->items[1].data == NULL, "a missing field is NULL");
    cr_assert(eq(str, (char *)v->items[2].data, "36"));
    trellis_value_free(v);
    cr_assert(eq(int, trellis_map_len(cli, K("user"), &len), TRELLIS_OK));
    cr_assert(eq(sz, len, 3));
    cr_assert(eq(int, trellis_map_len(cli, K("nomap"), &len), TRELLIS_OK));
    cr_assert(eq(sz, len, 0));
    int ex;
    cr_assert(eq(int, trellis_map_exists(cli, K("user"), K("lang"), &ex), TRELLIS_OK));
    cr_assert(eq(int, ex, 1));
    cr_assert(eq(int, trellis_map_strlen(cli, K("user"), K("name"), &len), TRELLIS_OK));
    cr_assert(eq(sz, len, 3));
    int set;
    cr_assert(eq(int, trellis_map_setnx(cli, K("user"), K("name"), "eve", 3, &set), TRELLIS_OK));
    cr_assert(eq(int, set, 0));
    cr_assert(eq(int, trellis_map_setnx(cli, K("user"), K("zip"), "75001", 5, &set), TRELLIS_OK));
    cr_assert(eq(int, set, 1));

    /* Counters: a field holding an integer becomes its counter; another
     * value refuses; an HSET makes it a register again. */
    int64_t n;
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("age"), 1, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 37));
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("age"), -10, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 27));
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("name"), 1, &n), TRELLIS_INVALID));
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("visits"), 5, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 5));
    cr_assert(eq(int, trellis_map_get(cli, K("user"), K("visits"), &val, &vl), TRELLIS_OK));
    cr_assert(eq(str, (char *)val, "5"));
    trellis_free(val);
    trellis_bytes p3[] = {{"visits", 6}, {"100", 3}};
    cr_assert(eq(int, trellis_map_set(cli, K("user"), p3, 1, &added), TRELLIS_OK));
    cr_assert(eq(sz, added, 0));
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("visits"), 1, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 101), "HSET 100 then HINCRBY 1: %lld", (long long)n);

    /* Removes count what existed; a removed counter starts from zero. */
    trellis_bytes d[] = {{"visits", 6}, {"nope", 4}, {"lang", 4}};
    cr_assert(eq(int, trellis_map_del(cli, K("user"), d, 3, &removed), TRELLIS_OK));
    cr_assert(eq(sz, removed, 2));
    cr_assert(eq(int, trellis_map_incrby(cli, K("user"), K("visits"), 3, &n), TRELLIS_OK));
    cr_assert(eq(i64, n, 3));

    /* Iteration in name order, with a pattern. */
    cr_assert(eq(int, trellis_map_scan(cli, K("user"), NULL, 0, 2, NULL, 0, &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 4));
    cr_assert(eq(str, (char *)v->items[0].data, "age"));
    cr_assert(eq(str, (char *)v->items[2].data, "name"));
    trellis_value *rest;
    cr_assert(eq(
        int, trellis_map_scan(cli, K("user"), v->items[2].data, v->items[2].len, 0, NULL, 0, &rest),
        TRELLIS_OK));
    cr_assert(eq(sz, rest->count, 4), "visits and zip after name");
    cr_assert(eq(str, (char *)rest->items[2].data, "zip"));
    trellis_value_free(rest);
    trellis_value_free(v);
    cr_assert(eq(int, trellis_map_scan(cli, K("user"), NULL, 0, 0, "[nz]*", 5, &v), TRELLIS_OK));
    cr_assert(eq(sz, v->count, 4));
    trellis_value_free(v);

    /* Types: a typed read of another type says what reads it. */
    cr_assert(eq(int, trellis_incrby(cli, K("cnt"), 2, NULL), TRELLIS_OK));
    cr_assert(eq(int, trellis_get(cli, K("cnt"), &val, &vl), TRELLIS_LATTICE_MISMATCH));
    cr_assert(strstr(trellis_last_error(), "trellis_counter_get") != NULL, "hint: %s",
              trellis_last_error());
    cr_assert(eq(int, trellis_get(cli, K("user"), &val, &vl), TRELLIS_LATTICE_MISMATCH));
    cr_assert(strstr(trellis_last_error(), "trellis_map_getall") != NULL, "hint: %s",
              trellis_last_error());
    cr_assert(eq(int, trellis_map_set(cli, K("cnt"), p2, 1, NULL), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(int, trellis_map_getall(cli, K("cnt"), &v), TRELLIS_LATTICE_MISMATCH));
    cr_assert(eq(str, (char *)trellis_type_name(TRELLIS_TYPE_MAP), "MAP"));
    trellis_type t;
    cr_assert(eq(int, trellis_type_of(cli, K("user"), &t), TRELLIS_OK));
    cr_assert(eq(int, t, TRELLIS_TYPE_MAP));

    /* DEL of the whole map. */
    cr_assert(eq(int, trellis_del(cli, K("user")), TRELLIS_OK));
    cr_assert(eq(int, trellis_map_getall(cli, K("user"), &v), TRELLIS_NOT_FOUND));
}

/* ---- the key space ------------------------------------------------------------------------ */

#define NKEYS 400

/* Walks the whole key space with count per shard; marks seen[i] for key
 * "key:i" and returns how many keys came back in all (duplicates too). */
static size_t walk(const trellis_scan_opts *o, int *seen, int join_at_step)
{
    uint64_t cursor = 0;
    size_t total = 0;
    int steps = 0;
    do {
        trellis_value *keys;
        int rc = trellis_scan(cli, &cursor, o, &keys);
        cr_assert(eq(int, rc, TRELLIS_OK), "scan: %s", trellis_status_name(rc));
        for (size_t i = 0; i < keys->count; i++) {
            int k;
            cr_assert(sscanf((const char *)keys->items[i].data, "key:%d", &k) == 1, "key %s",
                      (const char *)keys->items[i].data);
            cr_assert(k >= 0 && k < NKEYS);
            seen[k]++;
        }
        total += keys->count;
        trellis_value_free(keys);
        if (++steps == join_at_step) {
            cr_assert(tcluster_start_node(&cluster, RING_TIER_MEMORY, 2, NULL) != NULL);
            cr_assert(eq(int, tcluster_wait_active(&cluster, 20000), 0), "the node joined");
        }
        cr_assert(steps < 100000);
    } while (cursor != 0);
    return total;
}

Test(client_ttlmap, keyspace, .fini = stop_all, .timeout = 120)
{
    up("keyspace", 2, 1);
    trellis_batch *b = trellis_batch_new();
    char key[32];
    for (int i = 0; i < NKEYS; i++) {
        int kl = snprintf(key, sizeof(key), "key:%d", i);
        if (i % 4 == 3) {
            trellis_bytes pair[] = {{"f", 1}, {"v", 1}};
            trellis_batch_map_set(b, key, (size_t)kl, pair, 1, 0);
        } else {
            trellis_batch_put(b, key, (size_t)kl, "v", 1);
        }
        if (i % 10 == 0)
            trellis_batch_expire(b, key, (size_t)kl, trellis_clock_ms(cli) + 3600000, 0);
    }
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    /* Deleted and expired keys are not keys. */
    trellis_batch_clear(b);
    trellis_batch_put(b, K("gone:deleted"), "x", 1);
    trellis_batch_del(b, K("gone:deleted"));
    trellis_batch_put(b, K("gone:expired"), "x", 1);
    trellis_batch_expire(b, K("gone:expired"), 1, 0);
    cr_assert(eq(int, trellis_batch_exec(cli, b), TRELLIS_OK));
    trellis_batch_free(b);

    uint64_t n, vol;
    cr_assert(eq(int, trellis_dbsize(cli, &n, &vol), TRELLIS_OK));
    cr_assert(eq(u64, n, NKEYS));
    cr_assert(eq(u64, vol, NKEYS / 10));

    /* Node by node: each key has one memory replica, which took its write. */
    trellis_node *nodes;
    size_t nn;
    cr_assert(eq(int, trellis_nodes(cli, &nodes, &nn), TRELLIS_OK));
    uint64_t mem = 0, mem_vol = 0;
    for (size_t i = 0; i < nn; i++) {
        uint64_t k, v;
        cr_assert(eq(int, trellis_node_dbsize(cli, nodes[i].id, &k, &v), TRELLIS_OK), "%s",
                  nodes[i].id);
        cr_assert(k <= NKEYS && v <= k, "%s: %llu keys, %llu volatile", nodes[i].id,
                  (unsigned long long)k, (unsigned long long)v);
        if (nodes[i].tier == TRELLIS_TIER_MEMORY) {
            mem += k;
            mem_vol += v;
        }
    }
    trellis_free(nodes);
    cr_assert(eq(u64, mem, NKEYS));
    cr_assert(eq(u64, mem_vol, NKEYS / 10));
    cr_assert(eq(int, trellis_node_dbsize(cli, "no-such-node", &n, NULL), TRELLIS_NOT_FOUND));
    cr_assert(strstr(trellis_last_error(), "no-such-node") != NULL, "why: %s",
              trellis_last_error());

    int seen[NKEYS];
    trellis_scan_opts o = {7, "key:*", 5, TRELLIS_TYPE_NONE};
    memset(seen, 0, sizeof(seen));
    walk(&o, seen, 0);
    for (int i = 0; i < NKEYS; i++)
        cr_assert(eq(int, seen[i], 1), "key:%d seen %d times", i, seen[i]);

    /* Only the maps; only keys ending in 7. */
    memset(seen, 0, sizeof(seen));
    o.type = TRELLIS_TYPE_MAP;
    o.count = 1000;
    cr_assert(eq(sz, walk(&o, seen, 0), NKEYS / 4));
    for (int i = 0; i < NKEYS; i++)
        cr_assert(eq(int, seen[i], i % 4 == 3), "key:%d", i);
    memset(seen, 0, sizeof(seen));
    trellis_scan_opts o7 = {50, "*7", 2, TRELLIS_TYPE_NONE};
    cr_assert(eq(sz, walk(&o7, seen, 0), NKEYS / 10));

    /* A node joins mid-walk: every key is still found, at least once. */
    memset(seen, 0, sizeof(seen));
    trellis_scan_opts small = {5, NULL, 0, TRELLIS_TYPE_NONE};
    walk(&small, seen, 3);
    for (int i = 0; i < NKEYS; i++)
        cr_assert(seen[i] >= 1, "key:%d lost across the join", i);
    cr_assert(eq(int, trellis_dbsize(cli, &n, NULL), TRELLIS_OK));
    cr_assert(eq(u64, n, NKEYS));

    /* Bad arguments change nothing. */
    uint64_t c0 = 0;
    trellis_value *k;
    trellis_scan_opts bad = {1, NULL, 3, TRELLIS_TYPE_NONE};
    cr_assert(eq(int, trellis_scan(cli, &c0, &bad, &k), TRELLIS_INVALID));
    cr_assert(eq(int, trellis_scan(cli, NULL, NULL, &k), TRELLIS_INVALID));
    static char longpat[4097]; /* KVOP_SCAN_MAX_PATTERN + 1 */
    memset(longpat, '*', sizeof(longpat));
    trellis_scan_opts toolong = {10, longpat, sizeof(longpat), TRELLIS_TYPE_NONE};
    cr_assert(eq(int, trellis_scan(cli, &c0, &toolong, &k), TRELLIS_TOO_LARGE));
    cr_assert(strstr(trellis_last_error(), "at most 4096") != NULL, "why: %s",
              trellis_last_error());
    cr_assert(eq(u64, c0, 0), "the cursor is left alone");
    toolong.match_len--;
    cr_assert(eq(int, trellis_scan(cli, &c0, &toolong, &k), TRELLIS_OK), "a pattern at the limit");
    trellis_value_free(k);
}
