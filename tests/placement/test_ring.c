/*
 * test_ring.c - placement: balance, movement on joins and departures,
 * bounded walks, views, local shards, determinism and pinned hash values,
 * overrides, arcs, shard addresses and input validation.
 *
 * Randomised tests print their seed; TRELLIS_SEED=<seed> replays one.
 */
#include <math.h>
#include <xxhash.h>

#include "placement/slot.h"

#include "routing_test.h"

#define MEM  RING_TIER_MEMORY
#define DISK RING_TIER_DISK

/* A ring over n memory-tier ACTIVE nodes named <prefix>0..<prefix>(n-1). */
static ring *build_named(const char *prefix, int n, uint32_t vnodes, uint32_t mem_rep)
{
    ring_node nodes[64];
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        nodes[i] = rt_node(id, MEM, NODE_ACTIVE, 1);
    }
    ring_params p = {vnodes, mem_rep, 0};
    ring *r = NULL;
    cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &r), TRELLIS_OK);
    return r;
}

/* ---- balance ------------------------------------------------------------------------ */

/* Fraction of the largest deviation from the mean of a node's primary
 * count. */
static double max_deviation(const ring *r, int nodes, int keys, rt_rng *g)
{
    static int count[64];
    memset(count, 0, sizeof count);
    uint8_t k[32];
    for (int i = 0; i < keys; i++) {
        size_t len = rt_key(g, k);
        int idx[1];
        cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, k, len, idx, 1), 1);
        count[idx[0]]++;
    }
    double mean = (double)keys / nodes, worst = 0;
    for (int i = 0; i < nodes; i++) {
        double d = fabs(count[i] / mean - 1.0);
        if (d > worst)
            worst = d;
    }
    return worst;
}

/*
 * 10 nodes, 200k random keys. With V virtual nodes a member's share has a
 * relative spread of about 1/sqrt(V); over 1000 random sets of 10 ids the
 * largest deviation of any node stayed within 10% for 41% of the sets at
 * 256 vnodes, 86% at 512, 97% at 768 and 99% at 1024 (mean largest
 * deviation 11%, 7.8%, 6.3%, 5.5%). So ±10% needs 1024 virtual nodes
 * (RING_MAX_VNODES); the ids used here happen to do well from 256 on.
 */
Test(ring, balance_within_ten_percent)
{
    rt_rng g = rt_rng_init();
    ring *r = build_named("m", 10, 1024, 1);
    double dev = max_deviation(r, 10, 200000, &g);
    cr_log_info("1024 vnodes: largest deviation %.2f%%", dev * 100);
    cr_assert(dev < 0.10, "seed %" PRIu64 ": deviation %.2f%% at 1024 vnodes", rt_seed_value,
              dev * 100);
    ring_free(r);

    /* For the record, and loosely bounded. */
    uint32_t vs[] = {64, 256};
    for (size_t i = 0; i < 2; i++) {
        r = build_named("m", 10, vs[i], 1);
        dev = max_deviation(r, 10, 50000, &g);
        cr_log_info("%u vnodes: largest deviation %.2f%%", vs[i], dev * 100);
        cr_assert(dev < 0.5, "seed %" PRIu64 ": deviation %.2f%%", rt_seed_value, dev * 100);
        ring_free(r);
    }
}

/* ---- movement on joins and departures ------------------------------------------------ */

/* Replica ids of a key, in walk order. */
static size_t replica_ids(const ring *r, const uint8_t *k, size_t klen, const char **ids)
{
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas(r, RING_CURRENT, MEM, k, klen, idx, RING_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++)
        ids[i] = ring_node_at(r, (size_t)idx[i])->id;
    return n;
}

/* a minus `skip` (when present) equals the first entries of b. */
static int is_prefix_without(const char **a, size_t na, const char **b, size_t nb, const char *skip)
{
    size_t j = 0;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i], skip) == 0)
            continue;
        if (j >= nb || strcmp(a[i], b[j]) != 0)
            return 0;
        j++;
    }
    return 1;
}

Test(ring, adding_a_node_moves_a_fair_share_only_to_it)
{
    rt_rng g = rt_rng_init();
    const int n = 10, keys = 100000;
    ring_node nodes[11];
    for (int i = 0; i <= n; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        nodes[i] = rt_node(id, MEM, NODE_ACTIVE, 1);
    }
    ring_params p = {256, 3, 0};
    ring *before, *after;
    cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &before), 0);
    cr_assert_eq(ring_build(nodes, (size_t)n + 1, NULL, 0, &p, 2, &after), 0);

    int moved = 0;
    uint8_t k[32];
    for (int i = 0; i < keys; i++) {
        size_t len = rt_key(&g, k);
        const char *a[RING_MAX_REPLICAS], *b[RING_MAX_REPLICAS];
        size_t na = replica_ids(before, k, len, a), nb = replica_ids(after, k, len, b);
        cr_assert(na == 3 && nb == 3);
        if (strcmp(a[0], b[0]) != 0) {
            moved++;
            cr_assert_str_eq(b[0], "m10", "seed %" PRIu64 ": key moved to %s", rt_seed_value, b[0]);
        }
        /* The new member is inserted into the walk; nothing else changes. */
        cr_assert(is_prefix_without(b, nb, a, na, "m10"), "seed %" PRIu64, rt_seed_value);
    }
    double frac = (double)moved / keys, expect = 1.0 / (n + 1);
    cr_log_info("moved %.2f%% of keys, ideal %.2f%%", frac * 100, expect * 100);
    cr_assert(fabs(frac - expect) < 0.3 * expect, "seed %" PRIu64 ": moved %.3f, expected %.3f",
              rt_seed_value, frac, expect);
    ring_free(before);
    ring_free(after);
}

Test(ring, removing_a_node_moves_only_its_keys)
{
    rt_rng g = rt_rng_init();
    const int n = 10, keys = 100000;
    ring_node nodes[10];
    for (int i = 0; i < n; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        nodes[i] = rt_node(id, MEM, NODE_ACTIVE, 1);
    }
    ring_params p = {256, 3, 0};
    ring *before, *after;
    cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &before), 0);
    nodes[3].state = NODE_LEFT; /* m3 departs */
    cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 2, &after), 0);

    int owned = 0;
    uint8_t k[32];
    for (int i = 0; i < keys; i++) {
        size_t len = rt_key(&g, k);
        const char *a[RING_MAX_REPLICAS], *b[RING_MAX_REPLICAS];
        size_t na = replica_ids(before, k, len, a), nb = replica_ids(after, k, len, b);
        cr_assert(na == 3 && nb == 3);
        if (strcmp(a[0], "m3") == 0)
            owned++;
        else
            cr_assert_str_eq(a[0], b[0], "seed %" PRIu64, rt_seed_value);
        /* The departed member drops out of the walk; the rest keep their order. */
        cr_assert(is_prefix_without(a, na, b, nb, "m3"), "seed %" PRIu64, rt_seed_value);
        for (size_t j = 0; j < nb; j++)
            cr_assert_str_neq(b[j], "m3");
    }
    cr_assert(owned > keys / n / 2 && owned < keys / n * 2);
    ring_free(before);
    ring_free(after);
}

/* ---- bounded walks ---------------------------------------------------------------------- */

/* Checks that every walk returns exactly `expect` distinct indexes. */
static void check_walks(const ring *r, int view, int tier, uint32_t count, size_t expect, rt_rng *g)
{
    uint64_t edge[] = {0, 1, UINT64_MAX, UINT64_MAX - 1};
    for (int i = 0; i < 2000; i++) {
        uint64_t h = i < 4 ? edge[i] : rt_next(g);
        int idx[RING_MAX_REPLICAS];
        size_t got = ring_replicas_hashed(r, view, tier, h, count, idx, RING_MAX_REPLICAS);
        cr_assert_eq(got, expect, "seed %" PRIu64 ": hash %" PRIx64 " gave %zu, want %zu",
                     rt_seed_value, h, got, expect);
        for (size_t a = 0; a < got; a++) {
            cr_assert_eq(ring_node_at(r, (size_t)idx[a])->tier, tier);
            for (size_t b = a + 1; b < got; b++)
                cr_assert_neq(idx[a], idx[b]);
        }
    }
}

Test(ring, walks_end_when_replication_exceeds_members)
{
    rt_rng g = rt_rng_init();
    ring_params p = {8, 16, 16};
    ring *r;

    /* No members at all. */
    cr_assert_eq(ring_build(NULL, 0, NULL, 0, &p, 0, &r), 0);
    check_walks(r, RING_CURRENT, MEM, 16, 0, &g);
    check_walks(r, RING_FUTURE, DISK, 16, 0, &g);
    int idx[RING_MAX_REPLICAS];
    cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, "k", 1, idx, RING_MAX_REPLICAS), 0);
    ring_free(r);

    /* Members only in the other tier, or only DEAD and LEFT ones. */
    ring_node nodes[5] = {rt_node("d1", DISK, NODE_ACTIVE, 1), rt_node("d2", DISK, NODE_ACTIVE, 1),
                          rt_node("m1", MEM, NODE_DEAD, 1), rt_node("m2", MEM, NODE_LEFT, 1),
                          rt_node("m3", MEM, NODE_ACTIVE, 1)};
    cr_assert_eq(ring_build(nodes, 4, NULL, 0, &p, 0, &r), 0);
    check_walks(r, RING_CURRENT, MEM, 16, 0, &g);
    check_walks(r, RING_FUTURE, MEM, 16, 0, &g);
    check_walks(r, RING_CURRENT, DISK, 16, 2, &g);
    ring_free(r);

    /* One member. */
    cr_assert_eq(ring_build(nodes, 5, NULL, 0, &p, 0, &r), 0);
    check_walks(r, RING_CURRENT, MEM, 3, 1, &g);
    check_walks(r, RING_CURRENT, MEM, 1, 1, &g);
    check_walks(r, RING_CURRENT, MEM, 0, 0, &g);
    ring_free(r);

    /* Replication 16 over 3 members, with 1 and with 64 virtual nodes. */
    ring_node three[3] = {rt_node("a", MEM, NODE_ACTIVE, 1), rt_node("b", MEM, NODE_ACTIVE, 1),
                          rt_node("c", MEM, NODE_LEAVING, 1)};
    for (uint32_t v = 1; v <= 64; v *= 64) {
        ring_params q = {v, 16, 1};
        cr_assert_eq(ring_build(three, 3, NULL, 0, &q, 0, &r), 0);
        check_walks(r, RING_CURRENT, MEM, 16, 3, &g);
        check_walks(r, RING_FUTURE, MEM, 16, 2, &g);
        check_walks(r, RING_CURRENT, MEM, 1000000, 3, &g);
        cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, "key", 3, idx, RING_MAX_REPLICAS), 3);
        cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, "key", 3, idx, 2), 2);
        cr_assert_eq(ring_replicas(r, RING_CURRENT, DISK, "key", 3, idx, 2), 0);
        /* Unknown views and tiers. */
        cr_assert_eq(ring_replicas(r, 2, MEM, "key", 3, idx, 16), 0);
        cr_assert_eq(ring_replicas(r, RING_CURRENT, 0, "key", 3, idx, 16), 0);
        cr_assert_eq(ring_replicas(r, RING_CURRENT, 3, "key", 3, idx, 16), 0);
        ring_free(r);
    }

    /* More members than the cap: never more than RING_MAX_REPLICAS. */
    ring *big = build_named("n", 40, 4, 16);
    check_walks(big, RING_CURRENT, MEM, 100, RING_MAX_REPLICAS, &g);
    ring_free(big);
}

/* ---- views ------------------------------------------------------------------------------ */

Test(ring, views_follow_states)
{
    rt_rng g = rt_rng_init();
    ring_node nodes[] = {
        rt_node("active", MEM, NODE_ACTIVE, 1),   rt_node("joining", MEM, NODE_JOINING, 1),
        rt_node("leaving", MEM, NODE_LEAVING, 1), rt_node("dead", MEM, NODE_DEAD, 1),
        rt_node("left", MEM, NODE_LEFT, 1),       rt_node("disk1", DISK, NODE_ACTIVE, 1),
        rt_node("disk2", DISK, NODE_ACTIVE, 1),
    };
    ring_params p = {32, 16, 16};
    ring *r;
    cr_assert_eq(ring_build(nodes, 7, NULL, 0, &p, 5, &r), 0);
    int active = ring_find_node(r, "active"), joining = ring_find_node(r, "joining"),
        leaving = ring_find_node(r, "leaving"), dead = ring_find_node(r, "dead"),
        left = ring_find_node(r, "left");
    cr_assert(active >= 0 && joining >= 0 && leaving >= 0 && dead >= 0 && left >= 0);

    uint8_t k[32];
    for (int i = 0; i < 2000; i++) {
        size_t len = rt_key(&g, k);
        int cur[16], fut[16];
        size_t nc = ring_replicas(r, RING_CURRENT, MEM, k, len, cur, 16);
        size_t nf = ring_replicas(r, RING_FUTURE, MEM, k, len, fut, 16);
        cr_assert_eq(nc, 2);
        cr_assert_eq(nf, 2);
        cr_assert((cur[0] == active && cur[1] == leaving) ||
                  (cur[0] == leaving && cur[1] == active));
        cr_assert((fut[0] == active && fut[1] == joining) ||
                  (fut[0] == joining && fut[1] == active));
        cr_assert(ring_is_replica(r, RING_CURRENT, leaving, k, len));
        cr_assert(!ring_is_replica(r, RING_CURRENT, joining, k, len));
        cr_assert(ring_is_replica(r, RING_FUTURE, joining, k, len));
        cr_assert(!ring_is_replica(r, RING_FUTURE, leaving, k, len));
        cr_assert(!ring_is_replica(r, RING_CURRENT, dead, k, len));
        cr_assert(!ring_is_replica(r, RING_FUTURE, left, k, len));
        /* The disk tier has no moving members: both views agree. */
        int dc[16], df[16];
        size_t ndc = ring_replicas(r, RING_CURRENT, DISK, k, len, dc, 16);
        size_t ndf = ring_replicas(r, RING_FUTURE, DISK, k, len, df, 16);
        cr_assert(ndc == 2 && ndf == 2 && dc[0] == df[0] && dc[1] == df[1]);
    }
    cr_assert(!ring_is_replica(r, RING_CURRENT, -1, "k", 1));
    cr_assert(!ring_is_replica(r, RING_CURRENT, 7, "k", 1));
    ring_free(r);
}

/* ---- pending replicas ------------------------------------------------------------------- */

/* 1 if x is among v[0..n). */
static int in_set(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

/* Checks one key against ring r and the rings reach[0..nreach) that
 * completing the changes in progress can lead to. */
static void check_pending_key(const ring *r, ring *const *reach, int nreach, int nmoving,
                              const uint8_t *k, size_t len)
{
    int cur[RING_MAX_REPLICAS], pend[RING_MAX_PENDING], want[RING_MAX_PENDING];
    size_t nc = ring_replicas(r, RING_CURRENT, MEM, k, len, cur, RING_MAX_REPLICAS);
    size_t np = ring_pending(r, MEM, k, len, pend, RING_MAX_PENDING);
    cr_assert_eq(ring_pending(r, DISK, k, len, pend + np, RING_MAX_PENDING - np), 0);
    if (nmoving == 0)
        cr_assert_eq(np, 0);
    size_t nw = 0;
    for (int mask = 0; mask < nreach; mask++) {
        int o[RING_MAX_REPLICAS];
        size_t no = ring_replicas(reach[mask], RING_CURRENT, MEM, k, len, o, RING_MAX_REPLICAS);
        for (size_t j = 0; j < no; j++)
            if (!in_set(cur, nc, o[j]) && !in_set(want, nw, o[j]))
                want[nw++] = o[j];
    }
    for (size_t j = 0; j < np; j++)
        cr_assert(!in_set(cur, nc, pend[j]), "seed %" PRIu64 ": %s is current and pending",
                  rt_seed_value, ring_node_at(r, (size_t)pend[j])->id);
    cr_assert_eq(np, nw, "seed %" PRIu64 ": %zu pending replicas, %zu owners to come",
                 rt_seed_value, np, nw);
    for (size_t j = 0; j < nw; j++)
        cr_assert(in_set(pend, np, want[j]),
                  "seed %" PRIu64 ": %s may own a key but is not pending", rt_seed_value,
                  ring_node_at(r, (size_t)want[j])->id);
}

/*
 * Random memberships of one tier with up to four members joining or
 * leaving, random replication. For every key, the members that own it in
 * any ring reached by completing any subset of the changes (joins turned
 * ACTIVE, departures LEFT) are exactly its current replicas plus its
 * pending replicas; no current replica is pending; a tier that is not
 * moving has none. Random keys, and in the first rounds one key in every
 * slot (a token lies inside a slot and owns all of it: the keys after the
 * token's hash in its slot are where a walk of raw hashes goes wrong).
 */
Test(ring, pending_replicas_cover_every_order_of_completion)
{
    rt_rng g = rt_rng_init();
    /* A hash tag for every slot. */
    static char tags[SLOT_COUNT][12];
    size_t found = 0;
    for (uint32_t t = 0; found < SLOT_COUNT; t++) {
        char tag[12];
        int tl = snprintf(tag, sizeof tag, "%x", t);
        uint32_t sl = slot_crc16(tag, (size_t)tl) % SLOT_COUNT;
        if (!tags[sl][0]) {
            memcpy(tags[sl], tag, (size_t)tl + 1);
            found++;
        }
    }
    for (int round = 0; round < 60; round++) {
        ring_node nodes[12];
        int n = 3 + (int)rt_below(&g, 8);
        int moving[4], nmoving = 0;
        for (int i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof id, "n%d", i);
            int st = NODE_ACTIVE;
            if (nmoving < 4 && rt_below(&g, 3) == 0) {
                st = rt_below(&g, 2) ? NODE_JOINING : NODE_LEAVING;
                moving[nmoving++] = i;
            }
            nodes[i] = rt_node(id, MEM, st, 1);
        }
        uint32_t rep = 1 + rt_below(&g, 3);
        ring_params p = {16, rep, 0};
        ring *r;
        cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &r), TRELLIS_OK);
        cr_assert_eq(ring_is_moving(r, MEM), nmoving > 0);
        cr_assert_eq(ring_is_moving(r, DISK), 0);
        /* Every ring reachable by completing a subset of the changes. */
        ring *reach[16];
        int nreach = 1 << nmoving;
        for (int mask = 0; mask < nreach; mask++) {
            ring_node v[12];
            memcpy(v, nodes, sizeof(ring_node) * (size_t)n);
            for (int b = 0; b < nmoving; b++)
                if (mask & (1 << b))
                    v[moving[b]].state =
                        v[moving[b]].state == NODE_JOINING ? NODE_ACTIVE : NODE_LEFT;
            cr_assert_eq(ring_build(v, (size_t)n, NULL, 0, &p, 1, &reach[mask]), TRELLIS_OK);
        }
        uint8_t k[32];
        for (int i = 0; i < 300; i++) {
            size_t len = rt_key(&g, k);
            check_pending_key(r, reach, nreach, nmoving, k, len);
        }
        for (uint32_t sl = 0; round < 4 && sl < SLOT_COUNT; sl++) {
            int len =
                snprintf((char *)k, sizeof k, "{%s}%u", tags[sl], (unsigned)rt_below(&g, 1000));
            check_pending_key(r, reach, nreach, nmoving, k, (size_t)len);
        }
        for (int mask = 0; mask < nreach; mask++)
            ring_free(reach[mask]);
        ring_free(r);
    }
}

/* ---- local shards ----------------------------------------------------------------------- */

Test(ring, local_shards_hold_consecutive_slots_evenly)
{
    rt_rng g = rt_rng_init();
    enum { KEYS = 200000 };
    static uint8_t keys[KEYS][32];
    static uint8_t lens[KEYS];
    for (int i = 0; i < KEYS; i++)
        lens[i] = (uint8_t)rt_key(&g, keys[i]);
    cr_assert_eq(ring_local_shard("x", 1, 0), 0);
    cr_assert_eq(ring_local_shard("x", 1, 1), 0);

    for (uint32_t s = 2; s <= 16; s++) {
        /* Each shard holds one range of consecutive slots, of equal size
         * give or take one slot. */
        uint32_t prev = 0;
        for (uint32_t slot = 0; slot < SLOT_COUNT; slot++) {
            uint32_t sh = slot_shard(slot, s);
            cr_assert(sh == prev || sh == prev + 1, "%u shards: slot %u on shard %u after %u", s,
                      slot, sh, prev);
            if (sh != prev || slot == 0)
                cr_assert_eq(slot_shard_first(sh, s), slot, "%u shards: shard %u", s, sh);
            prev = sh;
        }
        cr_assert_eq(prev, s - 1);
        cr_assert_eq(slot_shard_first(s, s), SLOT_COUNT);
        for (uint32_t j = 0; j < s; j++) {
            uint32_t size = slot_shard_first(j + 1, s) - slot_shard_first(j, s);
            cr_assert(size == SLOT_COUNT / s || size == SLOT_COUNT / s + 1);
        }
        /* Keys follow their slots, and spread evenly. */
        uint32_t count[16] = {0};
        for (int i = 0; i < KEYS; i++) {
            uint32_t sh = ring_local_shard(keys[i], lens[i], s);
            cr_assert_eq(sh, slot_shard(slot_of(keys[i], lens[i]), s));
            cr_assert_eq(sh, ring_hash_shard(ring_hash(keys[i], lens[i]), s));
            count[sh]++;
        }
        double mean = (double)KEYS / s;
        for (uint32_t j = 0; j < s; j++)
            cr_assert(fabs(count[j] / mean - 1) < 0.10, "seed %" PRIu64 ": %u shards, shard %u: %u",
                      rt_seed_value, s, j, count[j]);
    }
}

/* ---- determinism and pinned values --------------------------------------------------------- */

Test(ring, build_ignores_input_order)
{
    rt_rng g = rt_rng_init();
    enum { N = 30, NOV = 20 };
    ring_node nodes[N];
    static const int states[] = {NODE_ACTIVE,  NODE_ACTIVE, NODE_ACTIVE, NODE_JOINING,
                                 NODE_LEAVING, NODE_DEAD,   NODE_LEFT};
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "node-%02d", i);
        nodes[i] = rt_node(id, i % 2 ? MEM : DISK, states[rt_below(&g, 7)], 1);
    }
    uint8_t okeys[NOV][32];
    ring_override ov[NOV];
    for (int i = 0; i < NOV; i++) {
        ov[i].klen = rt_key(&g, okeys[i]);
        okeys[i][0] = (uint8_t)i; /* distinct */
        ov[i].key = okeys[i];
        ov[i].memory = rt_below(&g, 5);
        ov[i].disk = rt_below(&g, 5);
        ov[i].version = 1;
    }
    ring_params p = {64, 3, 2};
    ring *ref;
    cr_assert_eq(ring_build(nodes, N, ov, NOV, &p, 9, &ref), 0);
    for (size_t i = 1; i < ring_node_count(ref); i++)
        cr_assert(strcmp(ring_node_at(ref, i - 1)->id, ring_node_at(ref, i)->id) < 0);

    for (int round = 0; round < 5; round++) {
        rt_shuffle(&g, nodes, N, sizeof nodes[0]);
        rt_shuffle(&g, ov, NOV, sizeof ov[0]);
        ring *r;
        cr_assert_eq(ring_build(nodes, N, ov, NOV, &p, 9, &r), 0);
        cr_assert_eq(ring_node_count(r), N);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(memcmp(ring_node_at(r, i), ring_node_at(ref, i), sizeof(ring_node)), 0);
        for (size_t i = 0; i < NOV; i++) {
            const ring_override *a = ring_override_at(r, i), *b = ring_override_at(ref, i);
            cr_assert(a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0);
        }
        cr_assert_eq(ring_arc_count(r), ring_arc_count(ref));
        for (size_t i = 0; i < ring_arc_count(r); i++)
            cr_assert_eq(ring_arc_token(r, i), ring_arc_token(ref, i));
        uint8_t k[32];
        for (int i = 0; i < 5000; i++) {
            size_t len = rt_key(&g, k);
            if (i < NOV) {
                memcpy(k, ov[i].key, ov[i].klen);
                len = ov[i].klen;
            }
            for (int view = 0; view < 2; view++) {
                for (int tier = MEM; tier <= DISK; tier++) {
                    int a[16], b[16];
                    size_t na = ring_replicas(r, view, tier, k, len, a, 16);
                    size_t nb = ring_replicas(ref, view, tier, k, len, b, 16);
                    cr_assert_eq(na, nb, "seed %" PRIu64, rt_seed_value);
                    cr_assert_eq(memcmp(a, b, na * sizeof a[0]), 0, "seed %" PRIu64, rt_seed_value);
                }
            }
        }
        ring_free(r);
    }
    ring_free(ref);
}

/* Values computed once with xxhash 0.8.1; they are protocol, so a change
 * here means every deployed placement moves. */
Test(ring, golden_values)
{
    struct {
        const char *key;
        uint64_t hash;
        uint32_t shard16, shard5;
    } g[] = {
        {"", UINT64_C(0x00036350208a9fba), 0, 0},             /* slot 0 */
        {"a", UINT64_C(0xf21ee5d33042e391), 15, 4},           /* slot 15495 */
        {"trellis", UINT64_C(0xd9700c8d13b87300), 13, 4},     /* slot 13916 */
        {"user:42", UINT64_C(0xf820226204d2f1d8), 15, 4},     /* slot 15880 */
        {"{user:42}.x", UINT64_C(0xf82158edd4ff4bac), 15, 4}, /* the same slot */
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        size_t len = strlen(g[i].key);
        cr_assert_eq(ring_hash(g[i].key, len), g[i].hash, "key \"%s\"", g[i].key);
        cr_assert_eq(ring_local_shard(g[i].key, len, 16), g[i].shard16);
        cr_assert_eq(ring_local_shard(g[i].key, len, 5), g[i].shard5);
    }
    cr_assert_eq(ring_hash(NULL, 0), UINT64_C(0x00036350208a9fba));

    /* The tokens of member "m1" with 4 virtual nodes, in ring order: the
     * arcs of a one-member ring. */
    ring_node n = rt_node("m1", MEM, NODE_ACTIVE, 1);
    ring_params p = {4, 1, 1};
    ring *r;
    cr_assert_eq(ring_build(&n, 1, NULL, 0, &p, 0, &r), 0);
    uint64_t tok[] = {UINT64_C(0x1e5bffffffffffff), UINT64_C(0xb593ffffffffffff),
                      UINT64_C(0xd493ffffffffffff), UINT64_C(0xf75fffffffffffff)};
    cr_assert_eq(ring_arc_count(r), 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(ring_arc_token(r, i), tok[i], "token %zu", i);
    /* And the definition: XXH3 of the id followed by the big-endian index,
     * up to the last position of its slot. */
    uint64_t direct[4];
    for (uint32_t i = 0; i < 4; i++) {
        uint8_t buf[6] = {'m', '1', 0, 0, 0, (uint8_t)i};
        direct[i] = XXH3_64bits_withSeed(buf, sizeof buf, RING_SEED) | RING_SLOT_LOW;
    }
    for (size_t i = 0; i < 4; i++) {
        int found = 0;
        for (size_t j = 0; j < 4; j++)
            found |= direct[j] == tok[i];
        cr_assert(found, "token %zu is not XXH3(id || be32(i)) | RING_SLOT_LOW", i);
    }
    /* A key maps to the first token at or after its hash. */
    cr_assert_eq(ring_arc_of(r, 0), 0);
    cr_assert_eq(ring_arc_of(r, tok[1]), 1);
    cr_assert_eq(ring_arc_of(r, tok[1] + 1), 2);
    cr_assert_eq(ring_arc_of(r, UINT64_MAX), 0);
    ring_free(r);
}

/* ---- overrides ------------------------------------------------------------------------------ */

Test(ring, overrides_change_only_their_key)
{
    rt_rng g = rt_rng_init();
    ring_node nodes[12];
    for (int i = 0; i < 12; i++) {
        char id[8];
        snprintf(id, sizeof id, "n%d", i);
        nodes[i] = rt_node(id, i < 8 ? MEM : DISK, NODE_ACTIVE, 1);
    }
    const uint8_t hot[] = "hot", cold[] = "cold", big[] = "big", nul[] = {'h', 'o', 't', 0};
    ring_override ov[] = {
        {hot, 3, 5, 2, 7},
        {cold, 4, 0, 0, 1},
        {big, 3, 1000, 1, 1},
        {NULL, 0, 2, 3, 1}, /* the empty key */
    };
    ring_params p = {32, 1, 1};
    ring *r, *plain;
    cr_assert_eq(ring_build(nodes, 12, ov, 4, &p, 1, &r), 0);
    cr_assert_eq(ring_build(nodes, 12, NULL, 0, &p, 1, &plain), 0);
    cr_assert_eq(ring_override_count(r), 4);
    cr_assert_eq(ring_override_at(r, 0)->klen, 0); /* key order: "" < "big" < "cold" < "hot" */
    cr_assert_eq(ring_override_at(r, 3)->version, 7);
    cr_assert_eq(ring_override_at(r, 1)->memory, 1000); /* kept as given */

    uint32_t m, d;
    int idx[16];
    ring_replication(r, hot, 3, &m, &d);
    cr_assert(m == 5 && d == 2);
    cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, hot, 3, idx, 16), 5);
    cr_assert_eq(ring_replicas(r, RING_CURRENT, DISK, hot, 3, idx, 16), 2);
    ring_replication(r, cold, 4, &m, &d);
    cr_assert(m == 0 && d == 0);
    cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, cold, 4, idx, 16), 0);
    ring_replication(r, big, 3, &m, &d);
    cr_assert(m == RING_MAX_REPLICAS && d == 1);
    cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, big, 3, idx, 16), 8);
    ring_replication(r, "", 0, &m, &d);
    cr_assert(m == 2 && d == 3);
    ring_replication(r, nul, 4, &m, &d); /* "hot\0" is another key */
    cr_assert(m == 1 && d == 1);
    cr_assert(ring_has_override(r, hot, 3) && ring_has_override(r, "", 0));
    cr_assert(!ring_has_override(r, nul, 4) && !ring_has_override(r, hot, 2));
    cr_assert(!ring_has_override(plain, hot, 3));

    /* Every other key: defaults, and the same replicas as without overrides. */
    uint8_t k[32];
    for (int i = 0; i < 20000; i++) {
        size_t len = rt_key(&g, k);
        if (ring_has_override(r, k, len))
            continue;
        ring_replication(r, k, len, &m, &d);
        cr_assert(m == 1 && d == 1, "seed %" PRIu64, rt_seed_value);
        for (int tier = MEM; tier <= DISK; tier++) {
            int a[16], b[16];
            size_t na = ring_replicas(r, RING_CURRENT, tier, k, len, a, 16);
            size_t nb = ring_replicas(plain, RING_CURRENT, tier, k, len, b, 16);
            cr_assert(na == 1 && nb == 1 && a[0] == b[0]);
        }
    }
    /* The overridden key's walk starts where the plain one does. */
    int a[16], b[16];
    cr_assert_eq(ring_replicas(r, RING_CURRENT, MEM, hot, 3, a, 16), 5);
    cr_assert_eq(ring_replicas(plain, RING_CURRENT, MEM, hot, 3, b, 16), 1);
    cr_assert_eq(a[0], b[0]);

    /* Many overrides: every one found, nothing else. */
    enum { MANY = 3000 };
    static uint8_t mk[MANY][8];
    static ring_override mo[MANY];
    for (int i = 0; i < MANY; i++) {
        memcpy(mk[i], &i, sizeof i);
        memset(mk[i] + sizeof i, 'k', 4);
        mo[i] = (ring_override){mk[i], 8, (uint32_t)i % 7, (uint32_t)i % 5, 1};
    }
    ring *many;
    cr_assert_eq(ring_build(nodes, 12, mo, MANY, &p, 1, &many), 0);
    for (int i = 0; i < MANY; i++) {
        ring_replication(many, mk[i], 8, &m, &d);
        cr_assert(m == (uint32_t)i % 7 && d == (uint32_t)i % 5);
        cr_assert(!ring_has_override(many, mk[i], 7));
    }
    ring_free(many);
    ring_free(r);
    ring_free(plain);
}

/* ---- arcs ----------------------------------------------------------------------------------- */

Test(ring, arcs_agree_with_walks)
{
    rt_rng g = rt_rng_init();
    static const int states[] = {NODE_ACTIVE,  NODE_ACTIVE,  NODE_ACTIVE,
                                 NODE_JOINING, NODE_LEAVING, NODE_DEAD};
    for (int round = 0; round < 4; round++) {
        int n = 3 + (int)rt_below(&g, 20);
        ring_node nodes[32];
        for (int i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof id, "a%d-%d", round, i);
            nodes[i] = rt_node(id, rt_below(&g, 2) ? MEM : DISK, states[rt_below(&g, 6)], 1);
        }
        ring_params p = {1 + rt_below(&g, 64), rt_below(&g, 4), rt_below(&g, 4)};
        ring *r;
        cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &r), 0);
        size_t narcs = ring_arc_count(r);
        for (size_t i = 1; i < narcs; i++)
            cr_assert(ring_arc_token(r, i - 1) < ring_arc_token(r, i));
        for (int i = 0; i < 3000; i++) {
            uint64_t h;
            uint8_t k[32];
            size_t len = rt_key(&g, k);
            h = ring_hash(k, len);
            size_t arc = ring_arc_of(r, h);
            if (narcs == 0) {
                cr_assert_eq(arc, 0);
                cr_assert(!ring_arc_has_replica(r, 0, 0));
                continue;
            }
            /* h lies in (token(arc - 1), token(arc)], wrapping. */
            uint64_t end = ring_arc_token(r, arc),
                     start = ring_arc_token(r, arc ? arc - 1 : narcs - 1);
            if (arc == 0)
                cr_assert(h <= end || h > start);
            else
                cr_assert(h <= end && h > start);
            int rep[2][16];
            size_t nrep[2];
            for (int tier = MEM; tier <= DISK; tier++)
                nrep[tier - 1] = ring_replicas(r, RING_CURRENT, tier, k, len, rep[tier - 1], 16);
            for (int node = 0; node < n; node++) {
                int t = ring_node_at(r, (size_t)node)->tier - 1, in = 0;
                for (size_t j = 0; j < nrep[t]; j++)
                    in |= rep[t][j] == node;
                cr_assert_eq(ring_arc_has_replica(r, arc, node), in,
                             "seed %" PRIu64 ": arc %zu node %d", rt_seed_value, arc, node);
            }
        }
        cr_assert(!ring_arc_has_replica(r, narcs, 0));
        cr_assert(!ring_arc_has_replica(r, 0, -1));
        cr_assert(!ring_arc_has_replica(r, 0, n));
        cr_assert_eq(ring_arc_token(r, narcs), 0);
        ring_free(r);
    }
}

/* ---- shard addresses ------------------------------------------------------------------------- */

Test(ring, shard_urls)
{
    struct {
        const char *endpoint;
        uint32_t shard;
        const char *want; /* NULL: TRELLIS_INVALID */
    } c[] = {
        {"tcp://10.0.0.5:6500", 0, "tcp://10.0.0.5:6500"},
        {"tcp://10.0.0.5:6500", 1, "tcp://10.0.0.5:6501"},
        {"tcp://kvs-mem-0.kvs-mem.default.svc:6500", 3, "tcp://kvs-mem-0.kvs-mem.default.svc:6503"},
        {"tls+tcp://[::1]:7000", 2, "tls+tcp://[::1]:7002"},
        {"tcp://[fe80::1%eth0]:9", 1, "tcp://[fe80::1%eth0]:10"},
        {"tcp6://[::1]:80", 1, "tcp6://[::1]:81"},
        {"tcp://h:65534", 1, "tcp://h:65535"},
        {"tcp://h:65535", 1, NULL},
        {"tcp://h:65536", 0, NULL},
        {"tcp://h:0", 1, NULL},
        {"tcp://h:0650", 1, NULL},
        {"tcp://h:", 1, NULL},
        {"tcp://h", 1, NULL},
        {"tcp://:6500", 1, NULL},
        {"tcp://h:65x", 1, NULL},
        {"tcp://h:6500/x", 1, NULL},
        {"tcp://a:b:6500", 1, NULL},
        {"tcp://[::1]6500", 1, NULL},
        {"tcp://[]:6500", 1, NULL},
        {"tcp://[::1:6500", 1, NULL},
        {"ipc:///run/t/m1", 0, "ipc:///run/t/m1"},
        {"ipc:///run/t/m1", 1, "ipc:///run/t/m1.1"},
        {"inproc://kvs-m1", 12, "inproc://kvs-m1.12"},
        {"m1:6500", 1, NULL},
        {"://x", 1, NULL},
        {"ipc://", 1, NULL},
        {"ipc:///x", 99, NULL}, /* shard out of range */
    };
    char buf[RING_MAX_URL + 1];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ring_node n = rt_node("m1", MEM, NODE_ACTIVE, 1);
        n.shards = 16;
        snprintf(n.endpoint, sizeof n.endpoint, "%s", c[i].endpoint);
        int rc = ring_shard_url(&n, c[i].shard, buf, sizeof buf);
        if (c[i].want == NULL) {
            cr_assert_eq(rc, TRELLIS_INVALID, "%s shard %u gave %s", c[i].endpoint, c[i].shard,
                         buf);
            cr_assert_str_eq(buf, "");
        } else {
            cr_assert_eq(rc, TRELLIS_OK, "%s shard %u", c[i].endpoint, c[i].shard);
            cr_assert_str_eq(buf, c[i].want);
        }
    }
    /* Too small a buffer: an error, never a truncated address. */
    ring_node n = rt_node("m1", MEM, NODE_ACTIVE, 1);
    snprintf(n.endpoint, sizeof n.endpoint, "tcp://10.0.0.5:6500");
    char small[20]; /* strlen("tcp://10.0.0.5:6501") + 1 */
    cr_assert_eq(ring_shard_url(&n, 1, small, sizeof small - 1), TRELLIS_INVALID);
    cr_assert_eq(ring_shard_url(&n, 1, small, sizeof small), TRELLIS_OK);
    cr_assert_str_eq(small, "tcp://10.0.0.5:6501");
    cr_assert_eq(ring_shard_url(&n, 1, NULL, 10), TRELLIS_INVALID);
    /* An unvalidated record with a huge shard count: no wrap-around. */
    n.shards = UINT32_MAX;
    cr_assert_eq(ring_shard_url(&n, UINT32_MAX - 65535, buf, sizeof buf), TRELLIS_INVALID);
    n.shards = 4;
    cr_assert_eq(ring_shard_url(NULL, 1, buf, sizeof buf), TRELLIS_INVALID);
    /* The longest endpoint still fits RING_MAX_URL + 1 for other schemes. */
    memset(n.endpoint, 'x', RING_MAX_URL);
    memcpy(n.endpoint, "ipc:///", 7);
    n.endpoint[RING_MAX_URL] = '\0';
    cr_assert_eq(ring_shard_url(&n, 0, buf, sizeof buf), TRELLIS_OK);
    cr_assert_eq(ring_shard_url(&n, 1, buf, sizeof buf), TRELLIS_INVALID);
}

/* ---- validation, names and accessors
 * ------------------------------------------------------------- */

Test(ring, build_rejects_bad_input)
{
    ring_node ok[2] = {rt_node("a", MEM, NODE_ACTIVE, 1), rt_node("b", DISK, NODE_JOINING, 1)};
    ring_params p = {16, 1, 1};
    ring *r = NULL;
    cr_assert_eq(ring_build(ok, 2, NULL, 0, &p, 1, NULL), TRELLIS_INVALID);
    cr_assert_eq(ring_build(ok, 2, NULL, 0, NULL, 1, &r), TRELLIS_INVALID);
    cr_assert_eq(ring_build(NULL, 2, NULL, 0, &p, 1, &r), TRELLIS_INVALID);
    ring_params bad[] = {{0, 1, 1},
                         {RING_MAX_VNODES + 1, 1, 1},
                         {1, RING_MAX_REPLICAS + 1, 1},
                         {1, 1, RING_MAX_REPLICAS + 1}};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(ring_build(ok, 2, NULL, 0, &bad[i], 1, &r), TRELLIS_INVALID);

    struct {
        const char *what;
        ring_node n;
    } nodes[12];
    for (int i = 0; i < 12; i++)
        nodes[i].n = rt_node("c", MEM, NODE_ACTIVE, 1);
    nodes[0].what = "duplicate id", nodes[0].n.id[0] = 'a';
    nodes[1].what = "tier 0", nodes[1].n.tier = 0;
    nodes[2].what = "tier 3", nodes[2].n.tier = 3;
    nodes[3].what = "state 0", nodes[3].n.state = 0;
    nodes[4].what = "state 6", nodes[4].n.state = 6;
    nodes[5].what = "0 shards", nodes[5].n.shards = 0;
    nodes[6].what = "too many shards", nodes[6].n.shards = RING_MAX_SHARDS + 1;
    nodes[7].what = "empty id", nodes[7].n.id[0] = '\0';
    nodes[8].what = "space in id", strcpy(nodes[8].n.id, "c d");
    nodes[9].what = "unterminated id", memset(nodes[9].n.id, 'c', sizeof nodes[9].n.id);
    nodes[10].what = "empty endpoint", nodes[10].n.endpoint[0] = '\0';
    nodes[11].what = "control byte in admin url", nodes[11].n.admin_url[2] = '\n';
    for (int i = 0; i < 12; i++) {
        ring_node three[3] = {ok[0], ok[1], nodes[i].n};
        r = NULL;
        cr_assert_eq(ring_build(three, 3, NULL, 0, &p, 1, &r), TRELLIS_INVALID, "%s",
                     nodes[i].what);
        cr_assert_null(r);
        if (i > 0)
            cr_assert_eq(ring_node_validate(&nodes[i].n), TRELLIS_INVALID, "%s", nodes[i].what);
    }
    cr_assert_eq(ring_node_validate(NULL), TRELLIS_INVALID);
    ring_node noadmin = rt_node("c", MEM, NODE_ACTIVE, 1);
    noadmin.admin_url[0] = '\0';
    cr_assert_eq(ring_node_validate(&noadmin), TRELLIS_OK);

    /* Overrides: duplicates, NULL keys, size limits. */
    const uint8_t key[] = "k";
    ring_override dup[2] = {{key, 1, 1, 1, 1}, {key, 1, 2, 2, 2}};
    cr_assert_eq(ring_build(ok, 2, dup, 2, &p, 1, &r), TRELLIS_INVALID);
    ring_override nul = {NULL, 1, 1, 1, 1};
    cr_assert_eq(ring_build(ok, 2, &nul, 1, &p, 1, &r), TRELLIS_INVALID);
    static uint8_t longkey[RING_MAX_OVERRIDE_KEY + 1];
    ring_override lng = {longkey, sizeof longkey, 1, 1, 1};
    cr_assert_eq(ring_build(ok, 2, &lng, 1, &p, 1, &r), TRELLIS_TOO_LARGE);
    lng.klen--;
    cr_assert_eq(ring_build(ok, 2, &lng, 1, &p, 1, &r), TRELLIS_OK);
    ring_free(r);

    /* Too many nodes. */
    ring_node *many = calloc(RING_MAX_NODES + 1, sizeof *many);
    cr_assert_not_null(many);
    for (int i = 0; i <= RING_MAX_NODES; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%d", i);
        many[i] = rt_node(id, 1 + i % 2, NODE_ACTIVE, 1);
    }
    cr_assert_eq(ring_build(many, RING_MAX_NODES + 1, NULL, 0, &p, 1, &r), TRELLIS_TOO_LARGE);
    ring_params one = {1, 1, 1};
    cr_assert_eq(ring_build(many, RING_MAX_NODES, NULL, 0, &one, 1, &r), TRELLIS_OK);
    cr_assert_eq(ring_node_count(r), RING_MAX_NODES);
    int idx[16];
    cr_assert_eq(ring_replicas(r, RING_CURRENT, DISK, "k", 1, idx, 16), 1);
    ring_free(r);
    free(many);
}

Test(ring, names_and_accessors)
{
    cr_assert_str_eq(ring_tier_name(RING_TIER_MEMORY), "memory");
    cr_assert_str_eq(ring_tier_name(RING_TIER_DISK), "disk");
    cr_assert_str_eq(ring_tier_name(0), "unknown");
    int t = 0;
    cr_assert(ring_tier_parse("memory", &t) == TRELLIS_OK && t == RING_TIER_MEMORY);
    cr_assert(ring_tier_parse("DISK", &t) == TRELLIS_OK && t == RING_TIER_DISK);
    cr_assert(ring_tier_parse("ssd", &t) == TRELLIS_INVALID && t == RING_TIER_DISK);
    cr_assert_eq(ring_tier_parse(NULL, &t), TRELLIS_INVALID);
    const char *names[] = {"UNKNOWN", "JOINING", "ACTIVE", "LEAVING", "DEAD", "LEFT", "UNKNOWN"};
    for (int s = 0; s <= 6; s++)
        cr_assert_str_eq(ring_state_name(s), names[s]);

    ring_node nodes[3] = {rt_node("zeta", MEM, NODE_ACTIVE, 3),
                          rt_node("alpha", DISK, NODE_DEAD, 1),
                          rt_node("mid", MEM, NODE_JOINING, 2)};
    ring_params p = {8, 2, 1};
    ring *r;
    cr_assert_eq(ring_build(nodes, 3, NULL, 0, &p, 42, &r), 0);
    cr_assert_eq(ring_epoch(r), 42);
    cr_assert_eq(ring_get_params(r)->vnodes, 8);
    cr_assert_eq(ring_get_params(r)->memory_replicas, 2);
    cr_assert_eq(ring_node_count(r), 3);
    cr_assert_str_eq(ring_node_at(r, 0)->id, "alpha");
    cr_assert_str_eq(ring_node_at(r, 2)->id, "zeta");
    cr_assert_eq(ring_node_at(r, 2)->generation, 3);
    cr_assert_null(ring_node_at(r, 3));
    cr_assert_eq(ring_find_node(r, "mid"), 1);
    cr_assert_eq(ring_find_node(r, "zeta"), 2);
    cr_assert_eq(ring_find_node(r, "nope"), -1);
    cr_assert_eq(ring_find_node(r, NULL), -1);
    cr_assert_eq(ring_override_count(r), 0);
    cr_assert_null(ring_override_at(r, 0));
    /* Only "zeta" is in the current view; arcs are its tokens. */
    cr_assert_eq(ring_arc_count(r), 8);
    ring_free(r);
    ring_free(NULL);
}

/* Not a benchmark, a guard against an accidental slow path: logs the cost of
 * a lookup on a 100 + 100 node ring with 64 virtual nodes. */
Test(ring, lookup_cost)
{
    ring_node nodes[200];
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof id, "node-%03d", i);
        nodes[i] = rt_node(id, i < 100 ? MEM : DISK, NODE_ACTIVE, 1);
    }
    ring_params p = {64, 3, 2};
    ring *r;
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(ring_build(nodes, 200, NULL, 0, &p, 1, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    enum { OPS = 500000 };
    uint64_t sum = 0;
    for (uint32_t i = 0; i < OPS; i++) {
        int idx[RING_MAX_REPLICAS];
        uint64_t key = i * UINT64_C(0x9e3779b97f4a7c15);
        size_t n = ring_replicas(r, RING_CURRENT, i & 1 ? MEM : DISK, &key, sizeof key, idx,
                                 RING_MAX_REPLICAS);
        sum += n + (uint64_t)idx[0];
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double build = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    double op = ((t2.tv_sec - t1.tv_sec) * 1e9 + (t2.tv_nsec - t1.tv_nsec)) / OPS;
    cr_log_info("build %.2f ms, ring_replicas %.0f ns (checksum %" PRIu64 ")", build, op, sum);
    cr_assert(op < 20000, "ring_replicas took %.0f ns", op);
    ring_free(r);
}
