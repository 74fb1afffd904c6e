/*
 * test_orset.c - ORSET: add-wins against a concurrent remove, observed
 * removes, re-adds, remove_all, the delta shapes and the decoder.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define ORDER_ROUNDS 100 /* random merge orders per scenario */

static lat_slice S(const char *s)
{
    lat_slice x = {(const uint8_t *)s, strlen(s)};
    return x;
}

static void add(const char *m, uint64_t writer, uint64_t ts, lat_buf *out)
{
    cr_assert(eq(int, lat_orset_add(m, strlen(m), writer, ts, out), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_ORSET, out->data, out->len), TRELLIS_OK));
}

static void merge_into(lat_buf *acc, const lat_buf *d)
{
    cr_assert(eq(int, lat_merge(LAT_ORSET, acc->data, acc->len, d->data, d->len, acc), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_ORSET, acc->data, acc->len), TRELLIS_OK));
}

static int has(const lat_buf *s, const char *m)
{
    return lat_orset_contains(s->data, s->len, m, strlen(m));
}

Test(orset, add_encoding_and_reads, .timeout = 10)
{
    lat_buf s = {0}, d = {0};
    add("x", 7, 3, &s);
    static const uint8_t want[] = {0, 0, 0, 1, 0, 0, 0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                   0, 7, 0, 0, 0, 0, 0, 0, 0,   3, 0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert(eq(sz, s.len, sizeof want));
    cr_assert(eq(int, memcmp(s.data, want, sizeof want), 0));
    add("a", 7, 1, &d);
    merge_into(&s, &d);
    add("", 2, 1, &d);
    merge_into(&s, &d);
    cr_assert(eq(sz, lat_orset_count(s.data, s.len), 3));
    const char *order[] = {"", "a", "x"};
    size_t pos = 0, i = 0;
    lat_slice m;
    while (lat_orset_next(s.data, s.len, &pos, &m)) {
        cr_assert(eq(sz, m.len, strlen(order[i])));
        cr_assert(eq(int, memcmp(m.data, order[i], m.len), 0));
        i++;
    }
    cr_assert(eq(sz, i, 3));
    cr_assert(eq(int, has(&s, "a"), 1));
    cr_assert(eq(int, has(&s, "b"), 0));
    cr_assert(eq(int, lat_orset_add("x", 1, 1, 0, &d), TRELLIS_INVALID), "ts 0");
    cr_assert(eq(int, lat_orset_add(NULL, 1, 1, 1, &d), TRELLIS_INVALID));
    lat_buf_free(&s);
    lat_buf_free(&d);
}

/* A replica removes x as it observed it while another adds x concurrently:
 * on every replica, in every order, the add wins. */
Test(orset, concurrent_add_wins, .timeout = 20)
{
    gen_rng r;
    lat_buf d[3] = {{0}}, seen = {0}, rep = {0};
    lat_slice x = S("x");
    gen_begin(&r, "orset::concurrent_add_wins");
    add("x", 1, 5, &d[0]); /* the observed add */
    cr_assert(eq(int, lat_orset_remove(d[0].data, d[0].len, &x, 1, &d[1]), TRELLIS_OK));
    add("x", 2, 5, &d[2]); /* concurrent add, another writer, same timestamp */
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[3] = {0, 1, 2};
        gen_shuffle(&r, order, 3, sizeof order[0]);
        gen_fold(LAT_ORSET, d, order, 3, &rep);
        GEN_CHECK(&r, has(&rep, "x"), "the concurrent add wins");
    }
    /* Same with a concurrent re-add by the same writer (a later mark). */
    add("x", 1, 6, &d[2]);
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[3] = {0, 1, 2};
        gen_shuffle(&r, order, 3, sizeof order[0]);
        gen_fold(LAT_ORSET, d, order, 3, &rep);
        GEN_CHECK(&r, has(&rep, "x"), "the concurrent re-add wins");
    }
    gen_free_all(d, 3);
    lat_buf_free(&seen);
    lat_buf_free(&rep);
}

Test(orset, observed_remove_removes_and_readd_revives, .timeout = 10)
{
    lat_buf s = {0}, d = {0}, rm = {0};
    lat_slice x = S("x");
    add("x", 1, 5, &s);
    add("x", 2, 3, &d);
    merge_into(&s, &d);
    add("y", 1, 6, &d);
    merge_into(&s, &d);
    cr_assert(eq(int, lat_orset_remove(s.data, s.len, &x, 1, &rm), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_ORSET, rm.data, rm.len), TRELLIS_OK));
    /* The remove raises every observed rm mark to its add mark. */
    static const uint8_t want[] = {0, 0, 0, 1, 0, 0, 0, 1, 'x', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
                                   0, 0, 0, 0, 0, 0, 0, 5, 0,   0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0,
                                   0, 0, 2, 0, 0, 0, 0, 0, 0,   0, 3, 0, 0, 0, 0, 0, 0, 0, 3};
    cr_assert(eq(sz, rm.len, sizeof want));
    cr_assert(eq(int, memcmp(rm.data, want, sizeof want), 0));
    cr_assert(eq(int, lat_orset_count(rm.data, rm.len), 0), "a remove alone shows nothing");

    merge_into(&s, &rm);
    cr_assert(eq(int, has(&s, "x"), 0), "a remove after an observed add removes it");
    cr_assert(eq(int, has(&s, "y"), 1));
    cr_assert(eq(sz, lat_orset_count(s.data, s.len), 1));
    /* The removed member stays as a tombstone and merging again is a no-op. */
    merge_into(&s, &rm);
    cr_assert(eq(int, has(&s, "x"), 0));
    /* An older add of a writer already removed stays removed ... */
    add("x", 2, 2, &d);
    merge_into(&s, &d);
    cr_assert(eq(int, has(&s, "x"), 0));
    /* ... a newer add revives the member. */
    add("x", 2, 9, &d);
    merge_into(&s, &d);
    cr_assert(eq(int, has(&s, "x"), 1));
    /* Removing members that are not present gives an empty delta. */
    lat_slice absent[] = {S("q"), S("q"), S("")};
    cr_assert(eq(int, lat_orset_remove(s.data, s.len, absent, 3, &rm), TRELLIS_OK));
    cr_assert(eq(sz, rm.len, 4));
    cr_assert(eq(int, lat_orset_remove(NULL, 0, &x, 1, &rm), TRELLIS_OK));
    cr_assert(eq(sz, rm.len, 4));
    cr_assert(eq(int, lat_orset_remove(s.data, s.len, NULL, 1, &rm), TRELLIS_INVALID));
    lat_buf_free(&s);
    lat_buf_free(&d);
    lat_buf_free(&rm);
}

Test(orset, remove_all_and_delete, .timeout = 10)
{
    lat_buf s = {0}, d = {0}, rm = {0}, del = {0};
    const char *members[] = {"a", "b", "c", "dd"};
    cr_assert(eq(int, lat_orset_remove_all(NULL, 0, &s), TRELLIS_OK)); /* the empty set */
    for (int i = 0; i < 4; i++) {
        add(members[i], (uint64_t)i % 2, 1 + (uint64_t)i, &d);
        merge_into(&s, &d);
    }
    cr_assert(eq(sz, lat_orset_count(s.data, s.len), 4));
    cr_assert(eq(int, lat_orset_remove_all(s.data, s.len, &rm), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_ORSET, rm.data, rm.len), TRELLIS_OK));
    cr_assert(eq(int, lat_delete_delta(LAT_ORSET, s.data, s.len, 5, 100, &del), TRELLIS_OK));
    cr_assert(eq(int, gen_same_buf(&rm, &del), 1), "DEL removes every observed member");

    lat_buf concurrent = {0};
    add("e", 3, 1, &concurrent); /* not observed by the remove */
    merge_into(&s, &rm);
    cr_assert(eq(int, lat_is_empty(LAT_ORSET, s.data, s.len), 1));
    cr_assert(eq(sz, lat_orset_count(s.data, s.len), 0));
    merge_into(&s, &concurrent);
    cr_assert(eq(sz, lat_orset_count(s.data, s.len), 1));
    cr_assert(eq(int, has(&s, "e"), 1));
    /* remove_all in place: the output may alias the state. */
    cr_assert(eq(int, lat_orset_remove_all(s.data, s.len, &s), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_ORSET, s.data, s.len), TRELLIS_OK));
    cr_assert(eq(int, lat_orset_remove_all(NULL, 0, &rm), TRELLIS_OK));
    cr_assert(eq(sz, rm.len, 4));
    lat_buf_free(&s);
    lat_buf_free(&d);
    lat_buf_free(&rm);
    lat_buf_free(&del);
    lat_buf_free(&concurrent);
}

Test(orset, decoder_edges, .timeout = 10)
{
    /* one member "m", two entries (1, 2, 0), (3, 0, 4) */
    uint8_t ok[] = {0, 0, 0, 1, 0, 0, 0, 1, 'm', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
                    0, 0, 0, 0, 0, 0, 0, 2, 0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 3, 0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 4};
    cr_assert(eq(int, lat_validate(LAT_ORSET, ok, sizeof ok), TRELLIS_OK));
    cr_assert(eq(int, lat_orset_count(ok, sizeof ok), 1), "writer 1 has add > rm");
    for (size_t n = 0; n < sizeof ok; n++)
        cr_assert(eq(int, lat_validate(LAT_ORSET, ok, n), TRELLIS_MALFORMED), "prefix %zu", n);

    uint8_t b[sizeof ok];
    memcpy(b, ok, sizeof b);
    b[20] = 3; /* writers 3, 3: not strictly increasing */
    cr_assert(eq(int, lat_validate(LAT_ORSET, b, sizeof b), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof b);
    b[28] = 0; /* entry (1, 0, 0): neutral */
    cr_assert(eq(int, lat_validate(LAT_ORSET, b, sizeof b), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof b);
    b[12] = 0; /* n = 0 */
    cr_assert(eq(int, lat_validate(LAT_ORSET, b, 13), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof b);
    b[9] = 0xff; /* n near 2^32 */
    b[10] = 0xff;
    b[11] = 0xff;
    cr_assert(eq(int, lat_validate(LAT_ORSET, b, sizeof b), TRELLIS_MALFORMED));
    uint8_t trailing[sizeof ok + 1];
    memcpy(trailing, ok, sizeof ok);
    trailing[sizeof ok] = 0;
    cr_assert(eq(int, lat_validate(LAT_ORSET, trailing, sizeof trailing), TRELLIS_MALFORMED));
    /* Two members out of order. */
    lat_buf s = {0}, d = {0};
    add("b", 1, 1, &s);
    add("a", 1, 1, &d);
    lat_buf cat = {0};
    uint8_t two[4] = {0, 0, 0, 2};
    cr_assert(eq(int, lat_buf_set(&cat, two, 4), TRELLIS_OK));
    cr_assert(eq(int, lat_buf_reserve(&cat, s.len + d.len), TRELLIS_OK));
    memcpy(cat.data + 4, s.data + 4, s.len - 4);
    memcpy(cat.data + s.len, d.data + 4, d.len - 4);
    cat.len = s.len + d.len - 4;
    cr_assert(eq(int, lat_validate(LAT_ORSET, cat.data, cat.len), TRELLIS_MALFORMED));
    lat_buf_free(&s);
    lat_buf_free(&d);
    lat_buf_free(&cat);
}

/* The state and the members to remove may both live in the output buffer. */
Test(orset, remove_from_own_buffer, .timeout = 10)
{
    lat_buf s = {0}, d = {0}, want = {0};
    add("p", 1, 2, &s);
    add("q", 2, 3, &d);
    merge_into(&s, &d);
    lat_slice q = S("q");
    cr_assert(eq(int, lat_orset_remove(s.data, s.len, &q, 1, &want), TRELLIS_OK));
    /* s's bytes hold "q" itself: remove it through a slice into s. */
    size_t pos = 0;
    lat_slice m;
    cr_assert(eq(int, lat_orset_next(s.data, s.len, &pos, &m), 1));
    cr_assert(eq(int, lat_orset_next(s.data, s.len, &pos, &m), 1));
    cr_assert(eq(sz, m.len, 1));
    cr_assert(eq(int, lat_orset_remove(s.data, s.len, &m, 1, &s), TRELLIS_OK));
    cr_assert(eq(int, gen_same_buf(&s, &want), 1));
    lat_buf_free(&s);
    lat_buf_free(&d);
    lat_buf_free(&want);
}
