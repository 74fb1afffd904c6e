/*
 * test_counter.c - COUNTER: cumulative per-writer totals, duplicate and
 * stale deliveries, wrapping sums, lat_counter_entry, the delete delta and
 * the decoder.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define DELETE_CASES 3000 /* random states to delete */

static void ctr(uint64_t w, uint64_t inc, uint64_t dec, lat_buf *out)
{
    cr_assert(eq(int, lat_counter_encode(w, inc, dec, out), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_COUNTER, out->data, out->len), TRELLIS_OK));
}

static void merge_into(lat_buf *acc, const lat_buf *d)
{
    cr_assert(
        eq(int, lat_merge(LAT_COUNTER, acc->data, acc->len, d->data, d->len, acc), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_COUNTER, acc->data, acc->len), TRELLIS_OK));
}

static int64_t value(const lat_buf *b)
{
    return lat_counter_value(b->data, b->len);
}

Test(counter, encoding_and_entries, .timeout = 10)
{
    lat_buf s = {0}, d = {0};
    ctr(2, 5, 1, &s);
    static const uint8_t want[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0,
                                   0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1};
    cr_assert(eq(sz, s.len, sizeof want));
    cr_assert(eq(int, memcmp(s.data, want, sizeof want), 0));
    ctr(9, 0, 10, &d);
    merge_into(&s, &d);
    ctr(1, 3, 0, &d);
    merge_into(&s, &d);
    cr_assert(eq(i64, value(&s), 5 - 1 - 10 + 3));
    uint64_t inc, dec;
    lat_counter_entry(s.data, s.len, 9, &inc, &dec);
    cr_assert(eq(u64, inc, 0));
    cr_assert(eq(u64, dec, 10));
    lat_counter_entry(s.data, s.len, 1, &inc, &dec);
    cr_assert(eq(u64, inc, 3));
    lat_counter_entry(s.data, s.len, 2, &inc, &dec);
    cr_assert(eq(u64, inc, 5));
    cr_assert(eq(u64, dec, 1));
    lat_counter_entry(s.data, s.len, 5, &inc, &dec);
    cr_assert(eq(u64, inc, 0));
    cr_assert(eq(u64, dec, 0));
    lat_counter_entry(s.data, s.len, UINT64_MAX, &inc, &dec);
    cr_assert(eq(u64, inc, 0));
    /* (0, 0) is neutral: the empty counter. */
    ctr(4, 0, 0, &d);
    cr_assert(eq(sz, d.len, 4));
    cr_assert(eq(i64, value(&d), 0));
    cr_assert(eq(int, lat_is_empty(LAT_COUNTER, d.data, d.len), 0), "a counter reads 0");
    lat_buf_free(&s);
    lat_buf_free(&d);
}

Test(counter, duplicates_and_stale_totals_do_not_count_twice, .timeout = 10)
{
    lat_buf s = {0}, d1 = {0}, d2 = {0}, d3 = {0}, before = {0};
    ctr(1, 3, 0, &d1); /* writer 1 after +3 */
    ctr(1, 5, 1, &d2); /* writer 1 after +2 -1 more: cumulative */
    ctr(2, 4, 0, &d3);
    cr_assert(eq(int, lat_buf_set(&s, d1.data, d1.len), TRELLIS_OK));
    merge_into(&s, &d3);
    cr_assert(eq(i64, value(&s), 7));
    cr_assert(eq(int, lat_buf_set(&before, s.data, s.len), TRELLIS_OK));
    merge_into(&s, &d3); /* duplicated delivery */
    merge_into(&s, &d1);
    cr_assert(eq(int, gen_same_buf(&s, &before), 1));
    cr_assert(eq(i64, value(&s), 7));
    merge_into(&s, &d2);
    cr_assert(eq(i64, value(&s), 8));
    merge_into(&s, &d1); /* a stale total arriving late */
    merge_into(&s, &d2);
    cr_assert(eq(i64, value(&s), 8));
    lat_buf_free(&s);
    lat_buf_free(&d1);
    lat_buf_free(&d2);
    lat_buf_free(&d3);
    lat_buf_free(&before);
}

Test(counter, sum_wraps_as_two_complement, .timeout = 10)
{
    lat_buf s = {0}, d = {0};
    ctr(1, 0, 1, &s);
    cr_assert(eq(i64, value(&s), -1));
    ctr(2, (uint64_t)INT64_MAX, 0, &d);
    merge_into(&s, &d);
    cr_assert(eq(i64, value(&s), INT64_MAX - 1));
    ctr(3, 2, 0, &d);
    merge_into(&s, &d);
    cr_assert(eq(i64, value(&s), INT64_MIN), "INT64_MAX - 1 + 2 wraps");
    lat_buf_free(&s);
    lat_buf_free(&d);
}

/* DEL adds an entry that brings the observed sum to zero, and the result
 * survives a merge with the pre-delete state. */
static void check_delete(gen_rng *r, const lat_buf *s, uint64_t writer, uint64_t ts)
{
    lat_buf del = {0}, m = {0};
    GEN_CHECK(r, lat_delete_delta(LAT_COUNTER, s->data, s->len, writer, ts, &del) == TRELLIS_OK,
              "delete delta");
    GEN_CHECK(r, lat_validate(LAT_COUNTER, del.data, del.len) == TRELLIS_OK, "delta validates");
    GEN_CHECK(r, lat_counter_value(del.data, del.len) == 0 || del.len == 28,
              "one entry (or nothing)");
    GEN_CHECK(r, lat_merge(LAT_COUNTER, s->data, s->len, del.data, del.len, &m) == TRELLIS_OK,
              "merge");
    GEN_CHECK(r, lat_counter_value(m.data, m.len) == 0, "the sum reads 0 after DEL");
    GEN_CHECK(r, lat_merge(LAT_COUNTER, m.data, m.len, s->data, s->len, &m) == TRELLIS_OK, "merge");
    GEN_CHECK(r, lat_counter_value(m.data, m.len) == 0, "and again after the old state");
    lat_buf_free(&del);
    lat_buf_free(&m);
}

Test(counter, delete_brings_sum_to_zero, .timeout = 30)
{
    gen_rng r;
    lat_buf s = {0}, d = {0}, del = {0}, m = {0};
    gen_begin(&r, "counter::delete_brings_sum_to_zero");
    r.iter = 0;
    ctr(1, 10, 3, &s);
    check_delete(&r, &s, 42, 1000);
    ctr(1, 0, 9, &s); /* negative sum */
    check_delete(&r, &s, 42, 1000);
    ctr(1, 0, 0, &s); /* zero sum */
    check_delete(&r, &s, 42, 1000);
    cr_assert(eq(int, lat_delete_delta(LAT_COUNTER, NULL, 0, 42, 1000, &del), TRELLIS_OK));
    cr_assert(eq(sz, del.len, 4), "no state: nothing to bring to zero");
    ctr(1, (uint64_t)INT64_MAX + 1, 0, &s); /* INT64_MIN */
    check_delete(&r, &s, 42, 1000);

    /* A second DEL with the same (writer, ts) finds its own entry in the
     * state and raises it further. */
    ctr(1, 10, 0, &s);
    cr_assert(eq(int, lat_delete_delta(LAT_COUNTER, s.data, s.len, 7, 7, &del), TRELLIS_OK));
    merge_into(&s, &del);
    ctr(1, 25, 0, &d);
    merge_into(&s, &d);
    cr_assert(eq(i64, value(&s), 15));
    check_delete(&r, &s, 7, 7);

    /* That entry near the top of u64 so that neither of its totals can
     * rise by the sum without wrapping: DEL moves on to another id. */
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | del.data[4 + i];
    lat_buf e = {0};
    ctr(id, (uint64_t)1 << 63, UINT64_MAX, &s);
    ctr(id ^ 1, ((uint64_t)1 << 63) + 16, 0, &e);
    merge_into(&s, &e);
    cr_assert(eq(i64, value(&s), 17));
    check_delete(&r, &s, 7, 7);
    cr_assert(eq(int, lat_delete_delta(LAT_COUNTER, s.data, s.len, 7, 7, &del), TRELLIS_OK));
    uint64_t other = 0;
    for (int i = 0; i < 8; i++)
        other = other << 8 | del.data[4 + i];
    cr_assert(ne(u64, other, id));
    lat_buf_free(&e);

    for (r.iter = 1; r.iter < DELETE_CASES; r.iter++) {
        gen_state(&r, LAT_COUNTER, &s);
        check_delete(&r, &s, gen_u64(&r), gen_below(&r, 4));
    }
    lat_buf_free(&s);
    lat_buf_free(&d);
    lat_buf_free(&del);
    lat_buf_free(&m);
}

Test(counter, decoder_edges, .timeout = 10)
{
    /* writers 1 and 2 */
    uint8_t ok[] = {0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
    cr_assert(eq(int, lat_validate(LAT_COUNTER, ok, sizeof ok), TRELLIS_OK));
    cr_assert(eq(i64, lat_counter_value(ok, sizeof ok), 1 - 3));
    for (size_t n = 0; n < sizeof ok; n++)
        cr_assert(eq(int, lat_validate(LAT_COUNTER, ok, n), TRELLIS_MALFORMED), "prefix %zu", n);
    uint8_t b[sizeof ok + 1];
    memcpy(b, ok, sizeof ok);
    b[sizeof ok] = 0;
    cr_assert(eq(int, lat_validate(LAT_COUNTER, b, sizeof ok + 1), TRELLIS_MALFORMED), "trailing");
    memcpy(b, ok, sizeof ok);
    b[35] = 1; /* writers 1, 1 */
    cr_assert(eq(int, lat_validate(LAT_COUNTER, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[19] = 0; /* (1, 0, 0) */
    cr_assert(eq(int, lat_validate(LAT_COUNTER, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[3] = 1; /* count 1 with two entries' bytes */
    cr_assert(eq(int, lat_validate(LAT_COUNTER, b, sizeof ok), TRELLIS_MALFORMED));
    b[0] = 0xff; /* count near 2^32 */
    cr_assert(eq(int, lat_validate(LAT_COUNTER, b, sizeof ok), TRELLIS_MALFORMED));
}
