/*
 * test_priority.c - PRIORITY: the lowest priority wins, ties go to the
 * lower writer and then the smaller value; signed priorities; no deletes.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

static void prio(int64_t p, uint64_t w, const char *v, lat_buf *out)
{
    cr_assert(eq(int, lat_priority_encode(p, w, v, strlen(v), out), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_PRIORITY, out->data, out->len), TRELLIS_OK));
}

/* The winner of merging a and b, checked in both orders. */
static void expect_winner(const lat_buf *a, const lat_buf *b, const lat_buf *want)
{
    lat_buf m = {0};
    cr_assert(eq(int, lat_merge(LAT_PRIORITY, a->data, a->len, b->data, b->len, &m), TRELLIS_OK));
    cr_assert(eq(int, gen_same_buf(&m, want), 1));
    cr_assert(eq(int, lat_merge(LAT_PRIORITY, b->data, b->len, a->data, a->len, &m), TRELLIS_OK));
    cr_assert(eq(int, gen_same_buf(&m, want), 1));
    lat_buf_free(&m);
}

Test(priority, lowest_wins_ties_by_writer_then_value, .timeout = 10)
{
    lat_buf a = {0}, b = {0};
    prio(5, 9, "five", &a);
    prio(3, 9, "three", &b);
    expect_winner(&a, &b, &b);

    prio(-1, 9, "neg", &a); /* signed: -1 < 3 although its bytes are larger */
    expect_winner(&a, &b, &a);
    prio(INT64_MIN, 100, "min", &b);
    expect_winner(&a, &b, &b);

    prio(4, 2, "zz", &a);
    prio(4, 1, "zzz", &b); /* tie on priority: lower writer wins */
    expect_winner(&a, &b, &b);

    prio(4, 1, "ab", &a);
    prio(4, 1, "b", &b); /* tie on writer: smaller value bytes */
    expect_winner(&a, &b, &a);
    prio(4, 1, "a", &b); /* a prefix is smaller */
    expect_winner(&a, &b, &b);

    lat_order o;
    cr_assert(eq(int, lat_compare(LAT_PRIORITY, a.data, a.len, b.data, b.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_LESS), "the winner is the greater state");

    int64_t p;
    uint64_t w;
    lat_slice v;
    lat_priority_view(b.data, b.len, &p, &w, &v);
    cr_assert(eq(i64, p, 4));
    cr_assert(eq(u64, w, 1));
    cr_assert(eq(sz, v.len, 1));
    cr_assert(eq(int, lat_is_empty(LAT_PRIORITY, b.data, b.len), 0));
    cr_assert(eq(int, lat_delete_delta(LAT_PRIORITY, b.data, b.len, 1, 1, &a), TRELLIS_INVALID));
    lat_buf_free(&a);
    lat_buf_free(&b);
}

Test(priority, decoder_and_builder_edges, .timeout = 10)
{
    uint8_t b[20] = {0};
    for (size_t n = 0; n <= sizeof b; n++)
        cr_assert(
            eq(int, lat_validate(LAT_PRIORITY, b, n), n >= 16 ? TRELLIS_OK : TRELLIS_MALFORMED),
            "length %zu", n);
    lat_buf out = {0};
    cr_assert(eq(int, lat_priority_encode(1, 1, NULL, 2, &out), TRELLIS_INVALID));
    cr_assert(eq(int, lat_priority_encode(1, 1, NULL, 0, &out), TRELLIS_OK));
    cr_assert(eq(sz, out.len, 16));
    lat_buf_free(&out);
}
