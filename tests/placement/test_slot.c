/*
 * test_slot.c - key slots as Redis Cluster computes them (CRC16 and hash
 * tags, checked against values Redis gives), and placement by slot: every
 * key of a slot has the slot's replicas and shard, positions keep slots in
 * order, and tokens never split a slot.
 *
 * Randomised tests print their seed; TRELLIS_SEED=<seed> replays one.
 */
#include "placement/slotmap.h"
#include "routing_test.h"

#define MEM RING_TIER_MEMORY

Test(slot, crc16_and_redis_keyslots)
{
    cr_assert_eq(slot_crc16("123456789", 9), 0x31c3); /* the CRC's check value */
    cr_assert_eq(slot_crc16(NULL, 0), 0);
    /* What CLUSTER KEYSLOT answers in Redis 7. */
    struct {
        const char *key;
        uint32_t slot;
    } k[] = {
        {"foo", 12182}, {"bar", 5061}, {"hello", 866}, {"somekey", 11058},   {"user1000", 3443},
        {"", 0},        {"{}", 15257}, {"a{b", 13340}, {"foo{}{bar}", 8363}, /* an empty tag: the
                                                                                whole key */
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        cr_assert_eq(slot_of(k[i].key, strlen(k[i].key)), k[i].slot, "key \"%s\"", k[i].key);
    /* Hash tags: the first '{' and the first '}' after it. */
    struct {
        const char *key, *same;
    } t[] = {
        {"{user1000}.following", "user1000"},
        {"{user1000}.followers", "user1000"},
        {"foo{{bar}}zap", "{bar"},
        {"foo{bar}{zap}", "bar"},
        {"x{a}", "a"},
        {"}{a}", "a"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_assert_eq(slot_of(t[i].key, strlen(t[i].key)), slot_of(t[i].same, strlen(t[i].same)),
                     "key \"%s\"", t[i].key);
    /* Binary keys: a NUL is a byte like any other. */
    cr_assert_eq(slot_of("{a\0b}c", 6), slot_of("a\0b", 3));
    cr_assert_neq(slot_of("a\0b", 3), slot_of("a", 1));
}

Test(slot, positions_order_slots_and_tell_keys_apart)
{
    rt_rng g = rt_rng_init();
    for (int i = 0; i < 20000; i++) {
        uint8_t k[32];
        size_t len = rt_key(&g, k);
        uint64_t h = ring_hash(k, len);
        uint32_t slot = slot_of(k, len);
        cr_assert_eq(ring_hash_slot(h), slot);
        cr_assert(h >= ring_slot_pos(slot) && h <= (ring_slot_pos(slot) | RING_SLOT_LOW));
    }
    /* Keys of one slot: one slot, different positions. */
    uint64_t a = ring_hash("{t}1", 4), b = ring_hash("{t}2", 4);
    cr_assert_eq(ring_hash_slot(a), ring_hash_slot(b));
    cr_assert_neq(a, b);
}

/* Keys sharing a hash tag have the same replicas in every tier and view,
 * the same shard, and lie in the same arc, whatever the ring. */
Test(slot, keys_of_a_slot_are_placed_together)
{
    rt_rng g = rt_rng_init();
    static const int states[] = {NODE_ACTIVE, NODE_ACTIVE, NODE_JOINING, NODE_LEAVING};
    for (int round = 0; round < 4; round++) {
        int n = 2 + (int)rt_below(&g, 12);
        ring_node nodes[16];
        for (int i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof id, "s%d-%d", round, i);
            nodes[i] =
                rt_node(id, rt_below(&g, 3) ? MEM : RING_TIER_DISK, states[rt_below(&g, 4)], 1);
            nodes[i].shards = 1 + rt_below(&g, 8);
        }
        ring_params p = {1 + rt_below(&g, 256), 1 + rt_below(&g, 3), rt_below(&g, 3)};
        ring *r;
        cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &r), 0);
        for (size_t i = 1; i < ring_arc_count(r); i++)
            cr_assert_eq(ring_arc_token(r, i) & RING_SLOT_LOW, RING_SLOT_LOW,
                         "a token inside a slot");
        for (int i = 0; i < 300; i++) {
            char tag[24], k1[48], k2[48];
            snprintf(tag, sizeof tag, "%u", (unsigned)rt_next(&g));
            int l1 = snprintf(k1, sizeof k1, "{%s}:%u", tag, (unsigned)rt_next(&g));
            int l2 = snprintf(k2, sizeof k2, "x{%s}", tag);
            uint64_t h1 = ring_hash(k1, (size_t)l1), h2 = ring_hash(k2, (size_t)l2);
            cr_assert_eq(ring_arc_of(r, h1), ring_arc_of(r, h2));
            cr_assert_eq(ring_arc_of(r, h1), ring_arc_of(r, ring_slot_pos(ring_hash_slot(h1))));
            for (int view = RING_CURRENT; view <= RING_FUTURE; view++) {
                for (int tier = MEM; tier <= RING_TIER_DISK; tier++) {
                    int x[16], y[16];
                    size_t nx = ring_replicas(r, view, tier, k1, (size_t)l1, x, 16);
                    size_t ny = ring_replicas(r, view, tier, k2, (size_t)l2, y, 16);
                    cr_assert_eq(nx, ny, "seed %" PRIu64, rt_seed_value);
                    cr_assert(memcmp(x, y, nx * sizeof x[0]) == 0, "seed %" PRIu64, rt_seed_value);
                }
            }
            for (uint32_t sh = 1; sh <= 8; sh++)
                cr_assert_eq(ring_local_shard(k1, (size_t)l1, sh),
                             ring_local_shard(k2, (size_t)l2, sh));
        }
        ring_free(r);
    }
}

/* ---- the Redis Cluster view (slotmap.h) ------------------------------------------------- */

/* The ranges cover every slot once, in order, and say what the ring says
 * of every key: its replicas in walk order, on the shard holding its slot. */
Test(slot, the_cluster_view_is_the_placement_of_keys)
{
    rt_rng g = rt_rng_init();
    for (int round = 0; round < 4; round++) {
        int n = 1 + (int)rt_below(&g, 10);
        ring_node nodes[16];
        for (int i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof id, "v%d-%d", round, i);
            nodes[i] = rt_node(id, i % 3 == 2 ? RING_TIER_DISK : MEM, NODE_ACTIVE, 1);
            nodes[i].shards = 1 + rt_below(&g, 8);
        }
        ring_params p = {1 + rt_below(&g, 64), 1 + rt_below(&g, 3), 1};
        ring *r;
        cr_assert_eq(ring_build(nodes, (size_t)n, NULL, 0, &p, 1, &r), 0);
        cr_assert_eq(slotmap_tier(r), MEM);
        size_t nr;
        slot_range *v = slotmap_ranges(r, MEM, &nr);
        cr_assert_not_null(v);
        uint32_t next = 0;
        for (size_t i = 0; i < nr; i++) {
            cr_assert_eq(v[i].first, next, "seed %" PRIu64 ": range %zu", rt_seed_value, i);
            cr_assert_geq(v[i].last, v[i].first);
            cr_assert_geq(v[i].n, 1);
            if (i > 0) /* neighbours differ, or they would be one range */
                cr_assert(v[i - 1].n != v[i].n ||
                          memcmp(v[i - 1].rep, v[i].rep, v[i].n * sizeof(slot_owner)) != 0);
            for (uint32_t slot = v[i].first; slot <= v[i].last; slot++) {
                slot_owner o[RING_MAX_REPLICAS];
                size_t m = slotmap_owners(r, MEM, slot, o, RING_MAX_REPLICAS);
                cr_assert_eq(m, v[i].n);
                cr_assert(memcmp(o, v[i].rep, m * sizeof(o[0])) == 0);
            }
            next = v[i].last + 1;
        }
        cr_assert_eq(next, SLOT_COUNT);
        for (int i = 0; i < 2000; i++) {
            uint8_t k[32];
            size_t len = rt_key(&g, k);
            int idx[RING_MAX_REPLICAS];
            size_t m = ring_replicas(r, RING_CURRENT, MEM, k, len, idx, RING_MAX_REPLICAS);
            slot_owner o[RING_MAX_REPLICAS];
            cr_assert_eq(slotmap_owners(r, MEM, slot_of(k, len), o, RING_MAX_REPLICAS), m);
            for (size_t j = 0; j < m; j++) {
                cr_assert_eq(o[j].node, idx[j], "seed %" PRIu64, rt_seed_value);
                cr_assert_eq(o[j].shard, ring_local_shard(k, len, nodes[idx[j]].shards));
            }
        }
        free(v);
        ring_free(r);
    }
}

Test(slot, the_cluster_view_takes_the_tier_with_replicas)
{
    ring_node nodes[2] = {rt_node("d0", RING_TIER_DISK, NODE_ACTIVE, 1),
                          rt_node("m0", MEM, NODE_JOINING, 1)};
    ring_params p = {16, 1, 1};
    ring *r;
    /* The memory node is not in the current view yet: the disk tier serves. */
    cr_assert_eq(ring_build(nodes, 2, NULL, 0, &p, 1, &r), 0);
    cr_assert_eq(slotmap_tier(r), RING_TIER_DISK);
    ring_free(r);
    nodes[1].state = NODE_ACTIVE;
    cr_assert_eq(ring_build(nodes, 2, NULL, 0, &p, 1, &r), 0);
    cr_assert_eq(slotmap_tier(r), MEM);
    ring_free(r);
    p.memory_replicas = 0; /* keys have no memory replicas */
    cr_assert_eq(ring_build(nodes, 2, NULL, 0, &p, 1, &r), 0);
    cr_assert_eq(slotmap_tier(r), RING_TIER_DISK);
    size_t nr;
    cr_assert_null(slotmap_ranges(r, MEM, &nr));
    cr_assert_eq(nr, 0);
    ring_free(r);
    cr_assert_eq(ring_build(NULL, 0, NULL, 0, &p, 1, &r), 0);
    cr_assert_eq(slotmap_tier(r), -1);
    ring_free(r);
}

Test(slot, cluster_node_ids_are_hex_and_distinct)
{
    char seen[64][41];
    int k = 0;
    for (int i = 0; i < 8; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%d", i);
        ring_node nd = rt_node(id, MEM, NODE_ACTIVE, 1);
        for (uint32_t sh = 0; sh < 8; sh++, k++) {
            slotmap_node_id(&nd, sh, seen[k]);
            cr_assert_eq(strlen(seen[k]), 40);
            cr_assert_eq(strspn(seen[k], "0123456789abcdef"), 40);
            for (int j = 0; j < k; j++)
                cr_assert_str_neq(seen[j], seen[k]);
            char again[41];
            slotmap_node_id(&nd, sh, again);
            cr_assert_str_eq(again, seen[k]);
        }
    }
}
