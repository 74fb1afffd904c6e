/*
 * test_membership.c - the membership lattice: merge laws, the epoch, state
 * order, overrides, validation and limits, and the ring built from it.
 *
 * Randomised tests print their seed; TRELLIS_SEED=<seed> replays one.
 */
#include "routing_test.h"

#define MEM  RING_TIER_MEMORY
#define DISK RING_TIER_DISK

/* One update: a node record or an override. */
typedef struct op {
    int is_node;
    ring_node node;
    uint8_t key[4];
    ring_override ov;
} op;

static const char *const endpoints[] = {"tcp://10.0.0.1:6500", "tcp://10.0.0.2:6500",
                                        "ipc:///run/trellis/x"};
static const char *const admins[] = {"", "tcp://10.0.0.1:6400"};
static const struct {
    const char *bytes;
    size_t len;
} keys[] = {{"", 0}, {"a", 1}, {"ab", 2}, {"b", 1}, {"a\0", 2}};

/* A random update over a small space of ids and keys, so that updates of
 * one id collide often (including exact ties on (generation, state)). */
static op random_op(rt_rng *g)
{
    op o;
    memset(&o, 0, sizeof o);
    o.is_node = rt_below(g, 3) != 0;
    if (o.is_node) {
        char id[8];
        snprintf(id, sizeof id, "n%u", rt_below(g, 8));
        o.node = rt_node(id, 1 + (int)rt_below(g, 2), 1 + (int)rt_below(g, 5), rt_below(g, 4));
        o.node.shards = 1 + rt_below(g, 3);
        snprintf(o.node.endpoint, sizeof o.node.endpoint, "%s", endpoints[rt_below(g, 3)]);
        snprintf(o.node.admin_url, sizeof o.node.admin_url, "%s", admins[rt_below(g, 2)]);
    } else {
        uint32_t k = rt_below(g, 5);
        memcpy(o.key, keys[k].bytes, keys[k].len);
        o.ov.klen = keys[k].len;
        o.ov.memory = rt_below(g, 4);
        o.ov.disk = rt_below(g, 4);
        o.ov.version = 1 + rt_below(g, 4);
    }
    return o;
}

static int apply(membership *m, op *o)
{
    if (o->is_node)
        return membership_merge_node(m, &o->node);
    o->ov.key = o->key; /* ops get copied around; point at this copy */
    return membership_merge_override(m, &o->ov);
}

/* Merges every record of src into dst. */
static void merge_all(membership *dst, const membership *src)
{
    for (size_t i = 0; i < membership_count(src); i++)
        cr_assert_geq(membership_merge_node(dst, membership_node_at(src, i)), 0);
    for (size_t i = 0; i < membership_override_count(src); i++)
        cr_assert_geq(membership_merge_override(dst, membership_override_at(src, i)), 0);
}

/* The epoch by its definition. */
static uint64_t epoch_of(const membership *m)
{
    uint64_t e = 0;
    for (size_t i = 0; i < membership_count(m); i++) {
        const ring_node *n = membership_node_at(m, i);
        e += n->generation * 8 + (uint64_t)n->state;
    }
    for (size_t i = 0; i < membership_override_count(m); i++)
        e += membership_override_at(m, i)->version;
    return e;
}

static void assert_same(const membership *a, const membership *b, const char *what)
{
    cr_assert_eq(membership_count(a), membership_count(b), "seed %" PRIu64 ": %s", rt_seed_value,
                 what);
    for (size_t i = 0; i < membership_count(a); i++)
        cr_assert_eq(memcmp(membership_node_at(a, i), membership_node_at(b, i), sizeof(ring_node)),
                     0, "seed %" PRIu64 ": %s: node %zu", rt_seed_value, what, i);
    cr_assert_eq(membership_override_count(a), membership_override_count(b));
    for (size_t i = 0; i < membership_override_count(a); i++) {
        const ring_override *x = membership_override_at(a, i), *y = membership_override_at(b, i);
        cr_assert(x->klen == y->klen && memcmp(x->key, y->key, x->klen) == 0 &&
                      x->memory == y->memory && x->disk == y->disk && x->version == y->version,
                  "seed %" PRIu64 ": %s: override %zu", rt_seed_value, what, i);
    }
    cr_assert_eq(membership_epoch(a), membership_epoch(b), "seed %" PRIu64 ": %s", rt_seed_value,
                 what);
    cr_assert_eq(membership_epoch(a), epoch_of(a));
}

Test(membership, merge_is_commutative_associative_idempotent)
{
    rt_rng g = rt_rng_init();
    enum { OPS = 300 };
    static op ops[OPS], perm[OPS], twice[2 * OPS];
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < OPS; i++)
            ops[i] = random_op(&g);
        membership *seq, *shuf, *dup, *part[3];
        cr_assert_eq(membership_new(&seq), 0);
        cr_assert_eq(membership_new(&shuf), 0);
        cr_assert_eq(membership_new(&dup), 0);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(membership_new(&part[i]), 0);

        for (int i = 0; i < OPS; i++)
            cr_assert_geq(apply(seq, &ops[i]), 0);
        memcpy(perm, ops, sizeof ops);
        rt_shuffle(&g, perm, OPS, sizeof perm[0]);
        for (int i = 0; i < OPS; i++)
            cr_assert_geq(apply(shuf, &perm[i]), 0);
        memcpy(twice, ops, sizeof ops);
        memcpy(twice + OPS, ops, sizeof ops);
        rt_shuffle(&g, twice, 2 * OPS, sizeof twice[0]);
        for (int i = 0; i < 2 * OPS; i++)
            cr_assert_geq(apply(dup, &twice[i]), 0);
        /* Grouping: three partial memberships joined in a random shape. */
        for (int i = 0; i < OPS; i++)
            cr_assert_geq(apply(part[rt_below(&g, 3)], &ops[i]), 0);
        int a = (int)rt_below(&g, 3), b = (a + 1 + (int)rt_below(&g, 2)) % 3, c = 3 - a - b;
        merge_all(part[b], part[a]); /* (a ⊔ b) */
        merge_all(part[c], part[b]); /* ... ⊔ c */

        assert_same(seq, shuf, "permuted order");
        assert_same(seq, dup, "duplicated updates");
        assert_same(seq, part[c], "regrouped merges");

        /* Idempotence: merging a membership into itself changes nothing. */
        uint64_t e = membership_epoch(seq);
        for (size_t i = 0; i < membership_count(seq); i++) {
            ring_node copy = *membership_node_at(seq, i);
            cr_assert_eq(membership_merge_node(seq, &copy), 0);
        }
        for (size_t i = 0; i < membership_override_count(seq); i++) {
            ring_override copy = *membership_override_at(seq, i);
            cr_assert_eq(membership_merge_override(seq, &copy), 0);
        }
        cr_assert_eq(membership_epoch(seq), e);

        /* Each id holds the largest (generation, state) it was given. */
        for (int i = 0; i < OPS; i++) {
            if (!ops[i].is_node)
                continue;
            const ring_node *n = membership_find(seq, ops[i].node.id);
            cr_assert_not_null(n);
            cr_assert(n->generation > ops[i].node.generation ||
                      (n->generation == ops[i].node.generation && n->state >= ops[i].node.state));
        }
        for (size_t i = 1; i < membership_count(seq); i++)
            cr_assert(strcmp(membership_node_at(seq, i - 1)->id, membership_node_at(seq, i)->id) <
                      0);

        membership_free(seq);
        membership_free(shuf);
        membership_free(dup);
        for (int i = 0; i < 3; i++)
            membership_free(part[i]);
    }
}

Test(membership, epoch_grows_with_every_change)
{
    rt_rng g = rt_rng_init();
    membership *m;
    cr_assert_eq(membership_new(&m), 0);
    cr_assert_eq(membership_epoch(m), 0);
    for (int i = 0; i < 5000; i++) {
        op o = random_op(&g);
        uint64_t before = membership_epoch(m);
        ring_node old = {0};
        ring_override oldov = {0};
        const ring_node *prev = NULL;
        const ring_override *prevov = NULL;
        if (o.is_node) {
            prev = membership_find(m, o.node.id);
            if (prev != NULL)
                old = *prev;
        } else {
            for (size_t j = 0; j < membership_override_count(m); j++) {
                const ring_override *x = membership_override_at(m, j);
                if (x->klen == o.ov.klen && memcmp(x->key, o.key, o.ov.klen) == 0)
                    prevov = x, oldov = *x;
            }
        }
        int rc = apply(m, &o);
        uint64_t after = membership_epoch(m);
        cr_assert_geq(rc, 0);
        cr_assert_eq(after, epoch_of(m));
        if (rc == 0) {
            cr_assert_eq(after, before, "seed %" PRIu64, rt_seed_value);
            continue;
        }
        /* A change in (generation, state), a new id, a new override or a new
         * version raises the epoch; only tie-breaks on the other fields do
         * not (see ring.h). */
        int tie;
        if (o.is_node)
            tie = prev != NULL && old.generation == o.node.generation && old.state == o.node.state;
        else
            tie = prevov != NULL && oldov.version == o.ov.version;
        if (tie)
            cr_assert_eq(after, before, "seed %" PRIu64, rt_seed_value);
        else
            cr_assert_gt(after, before, "seed %" PRIu64 ": epoch %" PRIu64 " -> %" PRIu64,
                         rt_seed_value, before, after);
    }
    membership_free(m);
}

Test(membership, states_only_move_up)
{
    membership *m;
    cr_assert_eq(membership_new(&m), 0);
    ring_node n = rt_node("m1", MEM, NODE_JOINING, 1);
    cr_assert_eq(membership_merge_node(m, &n), 1);
    int up[] = {NODE_ACTIVE, NODE_LEAVING, NODE_LEFT};
    for (int i = 0; i < 3; i++) {
        uint64_t e = membership_epoch(m);
        n.state = up[i];
        cr_assert_eq(membership_merge_node(m, &n), 1);
        cr_assert_eq(membership_find(m, "m1")->state, up[i]);
        cr_assert_gt(membership_epoch(m), e);
    }
    /* Back down at the same generation: ignored. */
    for (int s = NODE_JOINING; s < NODE_LEFT; s++) {
        n.state = s;
        cr_assert_eq(membership_merge_node(m, &n), 0);
        cr_assert_eq(membership_find(m, "m1")->state, NODE_LEFT);
    }
    /* A node that comes back does so with a new generation. */
    uint64_t e = membership_epoch(m);
    n.generation = 2;
    n.state = NODE_JOINING;
    cr_assert_eq(membership_merge_node(m, &n), 1);
    cr_assert_eq(membership_find(m, "m1")->state, NODE_JOINING);
    cr_assert_eq(membership_find(m, "m1")->generation, 2);
    cr_assert_gt(membership_epoch(m), e);
    n.generation = 1;
    n.state = NODE_LEFT;
    cr_assert_eq(membership_merge_node(m, &n), 0);
    cr_assert_eq(membership_count(m), 1);
    membership_free(m);
}

Test(membership, overrides_merge_by_version)
{
    membership *m;
    cr_assert_eq(membership_new(&m), 0);
    uint8_t key[] = {'h', 'o', 't', 0, 'x'};
    uint8_t *scratch = malloc(sizeof key);
    cr_assert_not_null(scratch);
    memcpy(scratch, key, sizeof key);
    ring_override o = {scratch, 3, 4, 1, 5};
    cr_assert_eq(membership_merge_override(m, &o), 1);
    cr_assert_eq(membership_epoch(m), 5);
    free(scratch); /* the membership kept its own copy */
    cr_assert_eq(memcmp(membership_override_at(m, 0)->key, "hot", 3), 0);
    ring_override older = {key, 3, 9, 9, 4};
    cr_assert_eq(membership_merge_override(m, &older), 0);
    ring_override tie = {key, 3, 4, 2, 5}; /* same version, larger (memory, disk) */
    cr_assert_eq(membership_merge_override(m, &tie), 1);
    cr_assert_eq(membership_override_at(m, 0)->disk, 2);
    cr_assert_eq(membership_epoch(m), 5);
    ring_override smaller = {key, 3, 4, 0, 5};
    cr_assert_eq(membership_merge_override(m, &smaller), 0);
    ring_override newer = {key, 3, 1, 1, 9};
    cr_assert_eq(membership_merge_override(m, &newer), 1);
    cr_assert_eq(membership_override_at(m, 0)->memory, 1);
    cr_assert_eq(membership_epoch(m), 9);
    /* Keys are bytes: "hot\0x" and "hot\0" and "hot" are three keys. */
    ring_override longer = {key, 5, 2, 2, 1}, shorter = {key, 4, 2, 2, 1};
    cr_assert_eq(membership_merge_override(m, &longer), 1);
    cr_assert_eq(membership_merge_override(m, &shorter), 1);
    cr_assert_eq(membership_override_count(m), 3);
    cr_assert_eq(membership_override_at(m, 0)->klen, 3);
    cr_assert_eq(membership_override_at(m, 2)->klen, 5);
    cr_assert_null(membership_override_at(m, 3));
    membership_free(m);
}

Test(membership, rejects_invalid_input)
{
    membership *m;
    cr_assert_eq(membership_new(&m), 0);
    cr_assert_eq(membership_new(NULL), TRELLIS_INVALID);
    ring_node good = rt_node("m1", MEM, NODE_ACTIVE, 1);
    cr_assert_eq(membership_merge_node(m, &good), 1);
    uint64_t e = membership_epoch(m);

    ring_node bad[13];
    for (int i = 0; i < 13; i++)
        bad[i] = rt_node("m2", DISK, NODE_ACTIVE, 1);
    bad[0].id[0] = '\0';
    memset(bad[1].id, 'a', sizeof bad[1].id); /* no terminator */
    strcpy(bad[2].id, "m\x01");
    strcpy(bad[3].id, "m 2");
    bad[4].tier = 0;
    bad[5].tier = 3;
    bad[6].state = 0;
    bad[7].state = 6;
    bad[8].shards = 0;
    bad[9].shards = RING_MAX_SHARDS + 1;
    bad[10].endpoint[0] = '\0';
    memset(bad[11].endpoint, 'e', sizeof bad[11].endpoint);
    memset(bad[12].admin_url, 'e', sizeof bad[12].admin_url);
    for (int i = 0; i < 13; i++) {
        cr_assert_eq(membership_merge_node(m, &bad[i]), -TRELLIS_INVALID, "case %d", i);
        cr_assert_eq(ring_node_validate(&bad[i]), TRELLIS_INVALID, "case %d", i);
    }
    /* A bad record of an existing id cannot replace it either. */
    ring_node worse = good;
    worse.generation = 99;
    worse.shards = 0;
    cr_assert_eq(membership_merge_node(m, &worse), -TRELLIS_INVALID);
    cr_assert_eq(membership_merge_node(m, NULL), -TRELLIS_INVALID);
    cr_assert_eq(membership_merge_node(NULL, &good), -TRELLIS_INVALID);

    ring_override zero = {(const uint8_t *)"k", 1, 1, 1, 0};
    cr_assert_eq(membership_merge_override(m, &zero), -TRELLIS_INVALID);
    ring_override nokey = {NULL, 1, 1, 1, 1};
    cr_assert_eq(membership_merge_override(m, &nokey), -TRELLIS_INVALID);
    cr_assert_eq(membership_merge_override(m, NULL), -TRELLIS_INVALID);
    static uint8_t longkey[RING_MAX_OVERRIDE_KEY + 1];
    ring_override lng = {longkey, sizeof longkey, 1, 1, 1};
    cr_assert_eq(membership_merge_override(m, &lng), -TRELLIS_TOO_LARGE);
    ring_override empty = {NULL, 0, 1, 1, 1};
    cr_assert_eq(membership_merge_override(m, &empty), 1);

    cr_assert_eq(membership_count(m), 1);
    cr_assert_eq(membership_override_count(m), 1);
    cr_assert_eq(membership_epoch(m), e + 1);
    cr_assert_null(membership_find(m, "m2"));
    cr_assert_null(membership_find(m, NULL));
    cr_assert_null(membership_node_at(m, 1));
    membership_free(m);
    membership_free(NULL);
}

Test(membership, limits)
{
    membership *m;
    cr_assert_eq(membership_new(&m), 0);
    for (int i = 0; i < RING_MAX_NODES; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%05d", i);
        ring_node n = rt_node(id, 1 + i % 2, NODE_ACTIVE, 1);
        cr_assert_eq(membership_merge_node(m, &n), 1);
    }
    ring_node extra = rt_node("zzz", MEM, NODE_ACTIVE, 1);
    cr_assert_eq(membership_merge_node(m, &extra), -TRELLIS_TOO_LARGE);
    ring_node again = rt_node("n00007", DISK, NODE_LEAVING, 1);
    cr_assert_eq(membership_merge_node(m, &again), 1); /* known ids still merge */
    cr_assert_eq(membership_count(m), RING_MAX_NODES);

    for (uint32_t i = 0; i < RING_MAX_OVERRIDES; i++) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        ring_override o = {k, 4, 2, 2, 1};
        cr_assert_eq(membership_merge_override(m, &o), 1);
    }
    uint8_t k[5] = {0};
    ring_override o = {k, 5, 2, 2, 1};
    cr_assert_eq(membership_merge_override(m, &o), -TRELLIS_TOO_LARGE);
    o.klen = 4;
    o.version = 2;
    cr_assert_eq(membership_merge_override(m, &o), 1);

    ring_params p = {1, 1, 1};
    ring *r;
    cr_assert_eq(membership_ring(m, &p, &r), TRELLIS_OK);
    cr_assert_eq(ring_override_count(r), RING_MAX_OVERRIDES);
    cr_assert_eq(ring_epoch(r), membership_epoch(m));
    ring_free(r);
    membership_free(m);
}

Test(membership, ring_is_a_function_of_the_membership)
{
    rt_rng g = rt_rng_init();
    membership *a, *b;
    cr_assert_eq(membership_new(&a), 0);
    cr_assert_eq(membership_new(&b), 0);
    enum { OPS = 200 };
    static op ops[OPS];
    for (int i = 0; i < OPS; i++)
        ops[i] = random_op(&g);
    for (int i = 0; i < OPS; i++)
        cr_assert_geq(apply(a, &ops[i]), 0);
    rt_shuffle(&g, ops, OPS, sizeof ops[0]);
    for (int i = 0; i < OPS; i++)
        cr_assert_geq(apply(b, &ops[i]), 0);

    ring_params p = {32, 2, 1};
    ring *ra, *rb, *rc;
    cr_assert_eq(membership_ring(a, &p, &ra), 0);
    cr_assert_eq(membership_ring(b, &p, &rb), 0);
    cr_assert_eq(membership_ring(NULL, &p, &rc), TRELLIS_INVALID);
    ring_params bad = {0, 1, 1};
    cr_assert_eq(membership_ring(a, &bad, &rc), TRELLIS_INVALID);
    cr_assert_eq(ring_epoch(ra), membership_epoch(a));
    cr_assert_eq(ring_epoch(ra), ring_epoch(rb));
    cr_assert_eq(ring_node_count(ra), membership_count(a));
    cr_assert_eq(ring_override_count(ra), membership_override_count(a));
    for (size_t i = 0; i < membership_count(a); i++)
        cr_assert_eq(memcmp(ring_node_at(ra, i), membership_node_at(a, i), sizeof(ring_node)), 0);

    for (int i = 0; i < 5000; i++) {
        uint8_t k[32];
        size_t len = rt_key(&g, k);
        if (i < 5) {
            memcpy(k, keys[i].bytes, keys[i].len);
            len = keys[i].len;
        }
        uint32_t ma, da, mb, db;
        ring_replication(ra, k, len, &ma, &da);
        ring_replication(rb, k, len, &mb, &db);
        cr_assert(ma == mb && da == db);
        for (int view = 0; view < 2; view++) {
            for (int tier = MEM; tier <= DISK; tier++) {
                int x[16], y[16];
                size_t nx = ring_replicas(ra, view, tier, k, len, x, 16);
                size_t ny = ring_replicas(rb, view, tier, k, len, y, 16);
                cr_assert(nx == ny && memcmp(x, y, nx * sizeof x[0]) == 0, "seed %" PRIu64,
                          rt_seed_value);
            }
        }
    }
    ring_free(ra);
    ring_free(rb);
    membership_free(a);
    membership_free(b);
}
