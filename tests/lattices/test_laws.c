/*
 * test_laws.c - the lattice laws for every type on random states drawn
 * from shared histories: associativity, commutativity, idempotence,
 * inflation, validity of merges, lat_compare agreeing with the merge,
 * aliasing outputs, and canonical bytes whatever the merge order or shape.
 * The same laws for tagged states with expiry (incarnations, registers,
 * tombstones) over every type, and for MAP under a small field cap.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define LAW_CASES       GEN_CASES(60000) /* random (a, b, c) triples per type */
#define CANONICAL_CASES GEN_CASES(10000) /* random histories per type */
#define CANONICAL_MAX   16               /* deltas per history */

/* The record count at the front of a SET, ORSET, COUNTER or MAP. */
static size_t record_count(const uint8_t *p)
{
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

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
    }                                                                                              \
    Test(laws, name##_canonical, .timeout = 60)                                                    \
    {                                                                                              \
        check_canonical(type, "laws::" #name "_canonical");                                        \
    }

LAW_TESTS(lww, LAT_LWW)
LAW_TESTS(set, LAT_SET)
LAW_TESTS(orset, LAT_ORSET)
LAW_TESTS(counter, LAT_COUNTER)
LAW_TESTS(max, LAT_MAX)
LAW_TESTS(causal, LAT_CAUSAL)
LAW_TESTS(priority, LAT_PRIORITY)
LAW_TESTS(map, LAT_MAP)

/* ---- tagged states with expiry ------------------------------------------- */

static void tmerge_ok(gen_rng *r, const lat_buf *a, const lat_buf *b, lat_buf *out)
{
    unsigned bad = 0;
    GEN_CHECK(r, lat_tagged_merge(a->data, a->len, b->data, b->len, out, &bad) == TRELLIS_OK,
              "tagged merge");
    GEN_CHECK(r, bad == 0, "no malformed operand");
    GEN_CHECK(r, lat_tagged_validate(out->data, out->len) == TRELLIS_OK, "merge result validates");
}

/* The laws for the tagged merge; the order is the one the merge defines
 * (a <= b iff merge(a, b) == b), so inflation reads merge(merge(a, b), a)
 * == merge(a, b). Also: the order keeps visibility monotone in the sense
 * that matters, a tombstone's incarnation never goes back. */
static void check_tagged_laws(lat_type t, const char *name)
{
    enum { AB, BA, BC, AB_C, A_BC, X, NBUF };
    gen_rng r;
    lat_buf s[3], m[NBUF];
    gen_begin(&r, name);
    for (int i = 0; i < 3; i++)
        lat_buf_init(&s[i]);
    for (int i = 0; i < NBUF; i++)
        lat_buf_init(&m[i]);
    long kinds[4] = {0}, epochs = 0;
    for (r.iter = 0; r.iter < LAW_CASES; r.iter++) {
        gen_tagged_states(&r, t, s, 3);
        const lat_buf *a = &s[0], *b = &s[1], *c = &s[2];
        for (int i = 0; i < 3; i++)
            GEN_CHECK(&r, lat_tagged_validate(s[i].data, s[i].len) == TRELLIS_OK,
                      "state validates");
        tmerge_ok(&r, a, b, &m[AB]);
        tmerge_ok(&r, b, a, &m[BA]);
        GEN_CHECK_SAME(&r, m[AB].data, m[AB].len, m[BA].data, m[BA].len, "commutativity");
        tmerge_ok(&r, b, c, &m[BC]);
        tmerge_ok(&r, &m[AB], c, &m[AB_C]);
        tmerge_ok(&r, a, &m[BC], &m[A_BC]);
        GEN_CHECK_SAME(&r, m[AB_C].data, m[AB_C].len, m[A_BC].data, m[A_BC].len, "associativity");
        tmerge_ok(&r, a, a, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, a->data, a->len, "idempotence");
        tmerge_ok(&r, &m[AB], a, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len,
                       "inflation: merge(a, b) >= a");
        tmerge_ok(&r, &m[AB], b, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len,
                       "inflation: merge(a, b) >= b");

        lat_stored sa, sab;
        GEN_CHECK(&r, lat_tagged_parse(a->data, a->len, &sa) == TRELLIS_OK, "parse");
        GEN_CHECK(&r, lat_tagged_parse(m[AB].data, m[AB].len, &sab) == TRELLIS_OK, "parse");
        GEN_CHECK(&r, sab.epoch >= sa.epoch, "the incarnation never goes back");
        kinds[sa.tombstone ? 0 : sa.type == LAT_NONE ? 1 : sa.has_ttl ? 2 : 3]++;
        epochs += sa.epoch > 0;

        /* Byte equality is state equality: rebuilding from the parse gives
         * the same bytes. */
        GEN_CHECK(&r, lat_tagged_build(&sab, &m[X]) == TRELLIS_OK, "rebuild");
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len, "canonical rebuild");

        /* The output may alias either input. */
        GEN_CHECK(&r, lat_buf_set(&m[X], a->data, a->len) == TRELLIS_OK, "copy");
        GEN_CHECK(&r,
                  lat_tagged_merge(m[X].data, m[X].len, b->data, b->len, &m[X], NULL) == TRELLIS_OK,
                  "aliased merge");
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len, "aliased merge result");
    }
    cr_log_info("%s: %ld cases: first operand tombstone %ld, register alone %ld, value with "
                "register %ld, value only %ld; past incarnation 0: %ld",
                name, r.iter, kinds[0], kinds[1], kinds[2], kinds[3], epochs);
    /* The generator must reach every kind of state, or the laws say little. */
    for (int i = 0; i < 4; i++)
        cr_assert(gt(long, kinds[i], 0), "%s: no state of kind %d", name, i);
    gen_free_all(s, 3);
    gen_free_all(m, NBUF);
}

#define TAGGED_LAW_TEST(name, type)                                                                \
    Test(laws, expiry_##name, .timeout = 90)                                                       \
    {                                                                                              \
        check_tagged_laws(type, "laws::expiry_" #name);                                            \
    }

TAGGED_LAW_TEST(lww, LAT_LWW)
TAGGED_LAW_TEST(set, LAT_SET)
TAGGED_LAW_TEST(orset, LAT_ORSET)
TAGGED_LAW_TEST(counter, LAT_COUNTER)
TAGGED_LAW_TEST(max, LAT_MAX)
TAGGED_LAW_TEST(causal, LAT_CAUSAL)
TAGGED_LAW_TEST(priority, LAT_PRIORITY)
TAGGED_LAW_TEST(map, LAT_MAP)

/* ---- MAP under a small field cap ------------------------------------------ */

static void cap_merge_ok(gen_rng *r, const lat_buf *a, const lat_buf *b, size_t cap, lat_buf *out)
{
    GEN_CHECK(r, lat_map_merge_cap(a->data, a->len, b->data, b->len, cap, out) == TRELLIS_OK,
              "capped merge");
    GEN_CHECK(r, lat_validate(LAT_MAP, out->data, out->len) == TRELLIS_OK,
              "capped merge validates");
}

/* With a cap of 1 to 4 records the union of random maps passes it most of
 * the time: the capped merge must still be a semilattice on capped states,
 * keep the smallest names, and capping before or after a merge must not
 * matter (the property that makes it convergent). */
Test(laws, map_field_cap, .timeout = 90)
{
    enum { AB, BA, BC, AB_C, A_BC, X, Y, NBUF };
    gen_rng r;
    lat_buf raw[3], s[3], m[NBUF];
    gen_begin(&r, "laws::map_field_cap");
    for (int i = 0; i < 3; i++) {
        lat_buf_init(&raw[i]);
        lat_buf_init(&s[i]);
    }
    for (int i = 0; i < NBUF; i++)
        lat_buf_init(&m[i]);
    long capped = 0;
    for (r.iter = 0; r.iter < LAW_CASES; r.iter++) {
        size_t cap = 1 + (size_t)gen_below(&r, 4);
        gen_states(&r, LAT_MAP, raw, 3);
        for (int i = 0; i < 3; i++)
            cap_merge_ok(&r, &raw[i], &raw[i], cap, &s[i]);
        const lat_buf *a = &s[0], *b = &s[1], *c = &s[2];
        cap_merge_ok(&r, a, b, cap, &m[AB]);
        cap_merge_ok(&r, b, a, cap, &m[BA]);
        GEN_CHECK_SAME(&r, m[AB].data, m[AB].len, m[BA].data, m[BA].len, "commutativity");
        cap_merge_ok(&r, b, c, cap, &m[BC]);
        cap_merge_ok(&r, &m[AB], c, cap, &m[AB_C]);
        cap_merge_ok(&r, a, &m[BC], cap, &m[A_BC]);
        GEN_CHECK_SAME(&r, m[AB_C].data, m[AB_C].len, m[A_BC].data, m[A_BC].len, "associativity");
        cap_merge_ok(&r, a, a, cap, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, a->data, a->len, "idempotence");
        cap_merge_ok(&r, &m[AB], a, cap, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len, "inflation");
        /* cap(merge(raw a, raw b)) == cap(merge(cap a, cap b)) */
        GEN_CHECK(&r,
                  lat_merge(LAT_MAP, raw[0].data, raw[0].len, raw[1].data, raw[1].len, &m[Y]) ==
                      TRELLIS_OK,
                  "merge");
        cap_merge_ok(&r, &m[Y], &m[Y], cap, &m[X]);
        GEN_CHECK_SAME(&r, m[X].data, m[X].len, m[AB].data, m[AB].len,
                       "capping commutes with merging");
        size_t u = lat_map_union_count(a->data, a->len, b->data, b->len);
        capped += u > cap;
        GEN_CHECK(&r, record_count(m[AB].data) == (u < cap ? u : cap), "keeps min(union, cap)");
    }
    cr_log_info("map_field_cap: %ld cases, %ld unions past the cap", r.iter, capped);
    cr_assert(gt(long, capped, LAW_CASES / 10), "the cap must be exercised");
    gen_free_all(raw, 3);
    gen_free_all(s, 3);
    gen_free_all(m, NBUF);
}
