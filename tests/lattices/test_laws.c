/*
 * test_laws.c - the lattice laws for every type on random states drawn
 * from shared histories: associativity, commutativity, idempotence,
 * inflation, validity of merges, lat_compare agreeing with the merge,
 * aliasing outputs, and canonical bytes whatever the merge order or shape.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define LAW_CASES       60000 /* random (a, b, c) triples per type */
#define CANONICAL_CASES 10000 /* random histories per type */
#define CANONICAL_MAX   16    /* deltas per history */

static void merge_ok(gen_rng *r, lat_type t, const lat_buf *a, const lat_buf *b, lat_buf *out)
{
    GEN_CHECK(r, lat_merge(t, a->data, a->len, b->data, b->len, out) == TRELLIS_OK, "merge");
    GEN_CHECK(r, lat_validate(t, out->data, out->len) == TRELLIS_OK, "merge result validates");
}

static lat_order compare_ok(gen_rng *r, lat_type t, const lat_buf *a, const lat_buf *b)
{
    lat_order o = LAT_CONCURRENT;
    GEN_CHECK(r, lat_compare(t, a->data, a->len, b->data, b->len, &o) == TRELLIS_OK, "compare");
    return o;
}

static lat_order mirror(lat_order o)
{
    return o == LAT_LESS ? LAT_GREATER : o == LAT_GREATER ? LAT_LESS : o;
}

static void check_laws(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf s[3], ab, ba, bc, ab_c, a_bc, aa, alias;
    gen_begin(&r, name);
    for (int i = 0; i < 3; i++)
        lat_buf_init(&s[i]);
    lat_buf_init(&ab);
    lat_buf_init(&ba);
    lat_buf_init(&bc);
    lat_buf_init(&ab_c);
    lat_buf_init(&a_bc);
    lat_buf_init(&aa);
    lat_buf_init(&alias);
    long seen[4] = {0}, empty = 0;
    for (r.iter = 0; r.iter < LAW_CASES; r.iter++) {
        gen_states(&r, t, s, 3);
        const lat_buf *a = &s[0], *b = &s[1], *c = &s[2];
        for (int i = 0; i < 3; i++)
            GEN_CHECK(&r, lat_validate(t, s[i].data, s[i].len) == TRELLIS_OK, "state validates");

        merge_ok(&r, t, a, b, &ab);
        merge_ok(&r, t, b, a, &ba);
        GEN_CHECK_SAME(&r, ab.data, ab.len, ba.data, ba.len, "commutativity");

        merge_ok(&r, t, b, c, &bc);
        merge_ok(&r, t, &ab, c, &ab_c);
        merge_ok(&r, t, a, &bc, &a_bc);
        GEN_CHECK_SAME(&r, ab_c.data, ab_c.len, a_bc.data, a_bc.len, "associativity");

        merge_ok(&r, t, a, a, &aa);
        GEN_CHECK_SAME(&r, aa.data, aa.len, a->data, a->len, "idempotence");

        lat_order oa = compare_ok(&r, t, &ab, a), ob = compare_ok(&r, t, &ab, b);
        GEN_CHECK(&r, oa == LAT_EQUAL || oa == LAT_GREATER, "inflation: merge(a, b) >= a");
        GEN_CHECK(&r, ob == LAT_EQUAL || ob == LAT_GREATER, "inflation: merge(a, b) >= b");

        /* lat_compare agrees with the order the merge defines. */
        int a_le_b = gen_same_buf(&ab, b), b_le_a = gen_same_buf(&ab, a);
        lat_order want = a_le_b && b_le_a ? LAT_EQUAL
                         : a_le_b         ? LAT_LESS
                         : b_le_a         ? LAT_GREATER
                                          : LAT_CONCURRENT;
        lat_order o = compare_ok(&r, t, a, b);
        seen[o]++;
        empty += lat_is_empty(t, ab.data, ab.len);
        GEN_CHECK(&r, o == want, "compare agrees with merge");
        GEN_CHECK(&r, compare_ok(&r, t, b, a) == mirror(o), "compare is antisymmetric");
        GEN_CHECK(&r, (o == LAT_EQUAL) == gen_same_buf(a, b), "EQUAL iff same bytes");
        if (t == LAT_LWW || t == LAT_MAX || t == LAT_PRIORITY)
            GEN_CHECK(&r, o != LAT_CONCURRENT, "total order");

        /* The output may alias either input. */
        GEN_CHECK(&r, lat_buf_set(&alias, a->data, a->len) == TRELLIS_OK, "copy");
        GEN_CHECK(&r, lat_merge(t, alias.data, alias.len, b->data, b->len, &alias) == TRELLIS_OK,
                  "aliased merge");
        GEN_CHECK_SAME(&r, alias.data, alias.len, ab.data, ab.len, "aliased merge result");
        GEN_CHECK(&r, lat_buf_set(&alias, b->data, b->len) == TRELLIS_OK, "copy");
        GEN_CHECK(&r, lat_merge(t, a->data, a->len, alias.data, alias.len, &alias) == TRELLIS_OK,
                  "aliased merge");
        GEN_CHECK_SAME(&r, alias.data, alias.len, ab.data, ab.len, "aliased merge result (b)");

        /* Reading never goes backwards for the merge of a state with itself. */
        GEN_CHECK(&r, lat_is_empty(t, aa.data, aa.len) == lat_is_empty(t, a->data, a->len),
                  "is_empty stable under idempotent merge");
    }
    /* The mix of orders shows the generator reaches every relation. */
    cr_log_info("%s: %ld cases: equal %ld, less %ld, greater %ld, concurrent %ld, empty %ld", name,
                r.iter, seen[LAT_EQUAL], seen[LAT_LESS], seen[LAT_GREATER], seen[LAT_CONCURRENT],
                empty);
    gen_free_all(s, 3);
    lat_buf_free(&ab);
    lat_buf_free(&ba);
    lat_buf_free(&bc);
    lat_buf_free(&ab_c);
    lat_buf_free(&a_bc);
    lat_buf_free(&aa);
    lat_buf_free(&alias);
}

/* Merges d[0..n) pairwise, level by level, into out: another shape of
 * merge tree than the left fold. */
static void tree_merge(gen_rng *r, lat_type t, const lat_buf *d, size_t n, lat_buf *out)
{
    lat_buf level[CANONICAL_MAX];
    for (size_t i = 0; i < CANONICAL_MAX; i++)
        lat_buf_init(&level[i]);
    for (size_t i = 0; i < n; i++) {
        GEN_CHECK(r, lat_buf_set(&level[i], d[i].data, d[i].len) == TRELLIS_OK, "copy");
    }
    while (n > 1) {
        size_t k = 0;
        for (size_t i = 0; i + 1 < n; i += 2, k++)
            merge_ok(r, t, &level[i], &level[i + 1], &level[k]);
        if (n % 2 == 1) {
            GEN_CHECK(r, lat_buf_set(&level[k], level[n - 1].data, level[n - 1].len) == TRELLIS_OK,
                      "copy");
            k++;
        }
        n = k;
    }
    GEN_CHECK(r, lat_buf_set(out, level[0].data, level[0].len) == TRELLIS_OK, "copy");
    gen_free_all(level, CANONICAL_MAX);
}

static void check_canonical(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf d[CANONICAL_MAX], fold, shuffled, tree;
    size_t order[CANONICAL_MAX];
    gen_begin(&r, name);
    for (size_t i = 0; i < CANONICAL_MAX; i++)
        lat_buf_init(&d[i]);
    lat_buf_init(&fold);
    lat_buf_init(&shuffled);
    lat_buf_init(&tree);
    for (r.iter = 0; r.iter < CANONICAL_CASES; r.iter++) {
        size_t n = 1 + (size_t)gen_below(&r, CANONICAL_MAX);
        gen_history(&r, t, d, n);
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        gen_fold(t, d, order, n, &fold);
        gen_shuffle(&r, order, n, sizeof order[0]);
        gen_fold(t, d, order, n, &shuffled);
        GEN_CHECK_SAME(&r, fold.data, fold.len, shuffled.data, shuffled.len,
                       "same bytes in any merge order");
        gen_shuffle(&r, d, n, sizeof d[0]);
        tree_merge(&r, t, d, n, &tree);
        GEN_CHECK_SAME(&r, fold.data, fold.len, tree.data, tree.len,
                       "same bytes for any merge tree");
    }
    gen_free_all(d, CANONICAL_MAX);
    lat_buf_free(&fold);
    lat_buf_free(&shuffled);
    lat_buf_free(&tree);
}

#define LAW_TESTS(name, type)                                                                      \
    Test(laws, name, .timeout = 60)                                                                \
    {                                                                                              \
        check_laws(type, "laws::" #name);                                                          \
        GEN_LEAK_CHECK();                                                                          \
    }                                                                                              \
    Test(laws, name##_canonical, .timeout = 60)                                                    \
    {                                                                                              \
        check_canonical(type, "laws::" #name "_canonical");                                        \
        GEN_LEAK_CHECK();                                                                          \
    }

LAW_TESTS(lww, LAT_LWW)
LAW_TESTS(set, LAT_SET)
LAW_TESTS(orset, LAT_ORSET)
LAW_TESTS(counter, LAT_COUNTER)
LAW_TESTS(max, LAT_MAX)
LAW_TESTS(causal, LAT_CAUSAL)
LAW_TESTS(priority, LAT_PRIORITY)
