/*
 * test_set.c - SET: canonical building, iteration in byte order, union,
 * subset order and the decoder's edge cases.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

static lat_slice S(const char *s)
{
    lat_slice x = {(const uint8_t *)s, strlen(s)};
    return x;
}

static void set_of(lat_buf *out, size_t n, const lat_slice *m)
{
    cr_assert(eq(int, lat_set_encode(m, n, out), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_SET, out->data, out->len), TRELLIS_OK));
}

Test(set, encode_sorts_and_dedups, .timeout = 10)
{
    lat_buf b = {0};
    lat_slice m[] = {S("b"), S("a"), S("ab"), S("a"), S("")};
    set_of(&b, 5, m);
    static const uint8_t want[] = {0,   0, 0, 4, 0, 0,   0,   0, 0, 0, 0, 1,
                                   'a', 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'b'};
    cr_assert(eq(sz, b.len, sizeof want));
    cr_assert(eq(int, memcmp(b.data, want, sizeof want), 0));
    cr_assert(eq(sz, lat_set_count(b.data, b.len), 4));

    const char *order[] = {"", "a", "ab", "b"};
    size_t pos = 0, i = 0;
    lat_slice s;
    while (lat_set_next(b.data, b.len, &pos, &s)) {
        cr_assert(lt(sz, i, 4));
        cr_assert(eq(sz, s.len, strlen(order[i])));
        cr_assert(eq(int, memcmp(s.data, order[i], s.len), 0));
        i++;
    }
    cr_assert(eq(sz, i, 4));
    cr_assert(eq(int, lat_set_contains(b.data, b.len, "ab", 2), 1));
    cr_assert(eq(int, lat_set_contains(b.data, b.len, "", 0), 1));
    cr_assert(eq(int, lat_set_contains(b.data, b.len, "abc", 3), 0));
    cr_assert(eq(int, lat_set_contains(b.data, b.len, "c", 1), 0));
    cr_assert(eq(int, lat_is_empty(LAT_SET, b.data, b.len), 0));

    set_of(&b, 0, NULL);
    cr_assert(eq(sz, b.len, 4));
    cr_assert(eq(int, lat_is_empty(LAT_SET, b.data, b.len), 1));
    pos = 0;
    cr_assert(eq(int, lat_set_next(b.data, b.len, &pos, &s), 0));
    lat_buf_free(&b);
}

Test(set, builder_errors, .timeout = 10)
{
    lat_buf b = {0};
    lat_slice bad = {NULL, 3};
    cr_assert(eq(int, lat_set_encode(NULL, 2, &b), TRELLIS_INVALID));
    cr_assert(eq(int, lat_set_encode(&bad, 1, &b), TRELLIS_INVALID));
    lat_buf_free(&b);
}

Test(set, union_and_order, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, c = {0}, m = {0};
    lat_slice ma[] = {S("x"), S("y")}, mb[] = {S("y"), S("z")}, mc[] = {S("x")};
    set_of(&a, 2, ma);
    set_of(&b, 2, mb);
    set_of(&c, 1, mc);
    cr_assert(eq(int, lat_merge(LAT_SET, a.data, a.len, b.data, b.len, &m), TRELLIS_OK));
    cr_assert(eq(sz, lat_set_count(m.data, m.len), 3));
    lat_slice all[] = {S("z"), S("y"), S("x")};
    lat_buf want = {0};
    set_of(&want, 3, all);
    cr_assert(eq(int, gen_same_buf(&m, &want), 1));

    lat_order o;
    cr_assert(eq(int, lat_compare(LAT_SET, a.data, a.len, b.data, b.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_CONCURRENT));
    cr_assert(eq(int, lat_compare(LAT_SET, c.data, c.len, a.data, a.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_LESS));
    cr_assert(eq(int, lat_compare(LAT_SET, m.data, m.len, c.data, c.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_GREATER));
    cr_assert(eq(int, lat_compare(LAT_SET, m.data, m.len, want.data, want.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_EQUAL));
    /* SET only grows: no delete. */
    cr_assert(eq(int, lat_delete_delta(LAT_SET, m.data, m.len, 1, 1, &a), TRELLIS_INVALID));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&c);
    lat_buf_free(&m);
    lat_buf_free(&want);
}

Test(set, decoder_edges, .timeout = 10)
{
    /* count 2: "a", "b" */
    uint8_t ok[] = {0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'};
    cr_assert(eq(int, lat_validate(LAT_SET, ok, sizeof ok), TRELLIS_OK));
    for (size_t n = 0; n < sizeof ok; n++)
        cr_assert(eq(int, lat_validate(LAT_SET, ok, n), TRELLIS_MALFORMED), "prefix %zu", n);

    uint8_t unsorted[] = {0, 0, 0, 2, 0, 0, 0, 1, 'b', 0, 0, 0, 1, 'a'};
    cr_assert(eq(int, lat_validate(LAT_SET, unsorted, sizeof unsorted), TRELLIS_MALFORMED));
    uint8_t dup[] = {0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'a'};
    cr_assert(eq(int, lat_validate(LAT_SET, dup, sizeof dup), TRELLIS_MALFORMED));
    uint8_t prefix_order[] = {0, 0, 0, 2, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'a'};
    cr_assert(eq(int, lat_validate(LAT_SET, prefix_order, sizeof prefix_order), TRELLIS_MALFORMED));
    uint8_t trailing[] = {0, 0, 0, 0, 0};
    cr_assert(eq(int, lat_validate(LAT_SET, trailing, sizeof trailing), TRELLIS_MALFORMED));
    /* Counts and lengths near 2^32 over a short buffer. */
    uint8_t huge_count[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    cr_assert(eq(int, lat_validate(LAT_SET, huge_count, sizeof huge_count), TRELLIS_MALFORMED));
    uint8_t huge_len[] = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 'a'};
    cr_assert(eq(int, lat_validate(LAT_SET, huge_len, sizeof huge_len), TRELLIS_MALFORMED));
    uint8_t len_past[] = {0, 0, 0, 1, 0, 0, 0, 2, 'a'};
    cr_assert(eq(int, lat_validate(LAT_SET, len_past, sizeof len_past), TRELLIS_MALFORMED));
}

/* Members may point into the output buffer itself. */
Test(set, encode_from_own_buffer, .timeout = 10)
{
    lat_buf b = {0}, want = {0};
    cr_assert(eq(int, lat_buf_set(&b, "yx", 2), TRELLIS_OK));
    lat_slice m[] = {{b.data, 1}, {b.data + 1, 1}, {b.data, 2}};
    cr_assert(eq(int, lat_set_encode(m, 3, &b), TRELLIS_OK));
    lat_slice w[] = {S("x"), S("y"), S("yx")};
    set_of(&want, 3, w);
    cr_assert(eq(int, gen_same_buf(&b, &want), 1));
    lat_buf_free(&b);
    lat_buf_free(&want);
}
