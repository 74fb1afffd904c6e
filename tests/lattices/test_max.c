/*
 * test_max.c - MAX: signed comparison (negative numbers do not rank above
 * positive ones as their bytes would), the decoder, no deletes.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

static int64_t merged(int64_t x, int64_t y)
{
    lat_buf a = {0}, b = {0}, m = {0};
    cr_assert(eq(int, lat_max_encode(x, &a), TRELLIS_OK));
    cr_assert(eq(int, lat_max_encode(y, &b), TRELLIS_OK));
    cr_assert(eq(int, lat_merge(LAT_MAX, a.data, a.len, b.data, b.len, &m), TRELLIS_OK));
    cr_assert(eq(sz, m.len, 8));
    int64_t v = lat_max_value(m.data, m.len);
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&m);
    return v;
}

Test(max, negative_numbers, .timeout = 10)
{
    cr_assert(eq(i64, merged(-5, -3), -3));
    cr_assert(eq(i64, merged(-1, 1), 1));
    cr_assert(eq(i64, merged(1, -1), 1));
    cr_assert(eq(i64, merged(INT64_MIN, -1), -1));
    cr_assert(eq(i64, merged(INT64_MIN, INT64_MAX), INT64_MAX));
    cr_assert(eq(i64, merged(0, INT64_MIN), 0));
    cr_assert(eq(i64, merged(-7, -7), -7));
}

Test(max, encoding_and_order, .timeout = 10)
{
    lat_buf a = {0}, b = {0};
    cr_assert(eq(int, lat_max_encode(-2, &a), TRELLIS_OK));
    static const uint8_t want[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
    cr_assert(eq(sz, a.len, 8));
    cr_assert(eq(int, memcmp(a.data, want, 8), 0));
    cr_assert(eq(i64, lat_max_value(a.data, a.len), -2));
    cr_assert(eq(int, lat_max_encode(3, &b), TRELLIS_OK));
    lat_order o;
    cr_assert(eq(int, lat_compare(LAT_MAX, a.data, a.len, b.data, b.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_LESS));
    cr_assert(eq(int, lat_compare(LAT_MAX, b.data, b.len, a.data, a.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_GREATER));
    cr_assert(eq(int, lat_compare(LAT_MAX, a.data, a.len, a.data, a.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_EQUAL));
    cr_assert(eq(int, lat_is_empty(LAT_MAX, a.data, a.len), 0));
    cr_assert(eq(int, lat_delete_delta(LAT_MAX, a.data, a.len, 1, 1, &b), TRELLIS_INVALID));
    lat_buf_free(&a);
    lat_buf_free(&b);
}

Test(max, decoder_edges, .timeout = 10)
{
    uint8_t b[16] = {0};
    for (size_t n = 0; n <= sizeof b; n++)
        cr_assert(eq(int, lat_validate(LAT_MAX, b, n), n == 8 ? TRELLIS_OK : TRELLIS_MALFORMED),
                  "length %zu", n);
}
