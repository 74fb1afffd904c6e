/*
 * test_lww.c - LWW: encoding, the decoder's edge cases, deterministic ties,
 * tombstones and revival.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define TIE_ROUNDS 200 /* random delivery orders of a tie */

static void lww(uint64_t ts, uint64_t writer, int tomb, const char *v, lat_buf *out)
{
    cr_assert(eq(int, lat_lww_encode(ts, writer, tomb, v, v ? strlen(v) : 0, out), TRELLIS_OK));
}

static void merge(const lat_buf *a, const lat_buf *b, lat_buf *out)
{
    cr_assert(eq(int, lat_merge(LAT_LWW, a->data, a->len, b->data, b->len, out), TRELLIS_OK));
}

Test(lww, encoding_layout, .timeout = 10)
{
    lat_buf b = {0};
    lww(0x0102030405060708ULL, 0x1112131415161718ULL, 0, "hi", &b);
    static const uint8_t want[] = {1,    2,    3,    4,    5,    6,    7, 8,   0x11, 0x12,
                                   0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 'h', 'i'};
    cr_assert(eq(sz, b.len, sizeof want));
    cr_assert(eq(int, memcmp(b.data, want, sizeof want), 0));
    cr_assert(eq(int, lat_validate(LAT_LWW, b.data, b.len), TRELLIS_OK));

    uint64_t ts, writer;
    int tomb;
    lat_slice v;
    lat_lww_view(b.data, b.len, &ts, &writer, &tomb, &v);
    cr_assert(eq(u64, ts, 0x0102030405060708ULL));
    cr_assert(eq(u64, writer, 0x1112131415161718ULL));
    cr_assert(eq(int, tomb, 0));
    cr_assert(eq(sz, v.len, 2));
    cr_assert(eq(int, memcmp(v.data, "hi", 2), 0));
    cr_assert(eq(int, lat_is_empty(LAT_LWW, b.data, b.len), 0));

    /* An empty value is a value, not a tombstone. */
    lww(1, 1, 0, "", &b);
    cr_assert(eq(sz, b.len, 17));
    cr_assert(eq(int, lat_validate(LAT_LWW, b.data, b.len), TRELLIS_OK));
    cr_assert(eq(int, lat_is_empty(LAT_LWW, b.data, b.len), 0));
    lat_buf_free(&b);
}

Test(lww, decoder_edges, .timeout = 10)
{
    uint8_t enc[20] = {0};
    for (size_t n = 0; n < 17; n++)
        cr_assert(eq(int, lat_validate(LAT_LWW, enc, n), TRELLIS_MALFORMED), "short %zu", n);
    cr_assert(eq(int, lat_validate(LAT_LWW, enc, 17), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_LWW, enc, 20), TRELLIS_OK));
    enc[16] = 1; /* tombstone */
    cr_assert(eq(int, lat_validate(LAT_LWW, enc, 17), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_LWW, enc, 18), TRELLIS_MALFORMED), "tombstone with value");
    for (int f = 2; f < 256; f++) {
        enc[16] = (uint8_t)f;
        cr_assert(eq(int, lat_validate(LAT_LWW, enc, 17), TRELLIS_MALFORMED), "flags %d", f);
    }
}

Test(lww, builder_errors, .timeout = 10)
{
    lat_buf b = {0};
    cr_assert(eq(int, lat_lww_encode(1, 1, 1, "x", 1, &b), TRELLIS_INVALID));
    cr_assert(eq(int, lat_lww_encode(1, 1, 0, NULL, 3, &b), TRELLIS_INVALID));
    cr_assert(eq(int, lat_lww_encode(1, 1, 0, NULL, 0, &b), TRELLIS_OK));
    lat_buf_free(&b);
}

Test(lww, greater_timestamp_wins, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, m = {0};
    lww(5, 9, 0, "old", &a);
    lww(6, 1, 0, "new", &b);
    merge(&a, &b, &m);
    cr_assert(eq(int, memcmp(m.data, b.data, b.len), 0));
    merge(&b, &a, &m);
    cr_assert(eq(int, memcmp(m.data, b.data, b.len), 0));
    lat_order o;
    cr_assert(eq(int, lat_compare(LAT_LWW, a.data, a.len, b.data, b.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_LESS));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&m);
}

/* Equal timestamps from two writers: every replica picks the same winner,
 * whatever the delivery order (writer id, then flags, then value bytes). */
Test(lww, equal_timestamps_resolve_everywhere, .timeout = 20)
{
    gen_rng r;
    gen_begin(&r, "lww::equal_timestamps_resolve_everywhere");
    lat_buf w[5] = {{0}}, rep = {0};
    lww(7, 1, 0, "zzz", &w[0]);
    lww(7, 2, 0, "aaa", &w[1]); /* higher writer wins the tie */
    lww(7, 2, 0, "aa", &w[2]);  /* shorter value ranks lower */
    lww(7, 1, 1, NULL, &w[3]);  /* tombstone of the losing writer */
    lww(6, 3, 0, "late", &w[4]);
    for (r.iter = 0; r.iter < TIE_ROUNDS; r.iter++) {
        size_t order[5] = {0, 1, 2, 3, 4};
        gen_shuffle(&r, order, 5, sizeof order[0]);
        gen_fold(LAT_LWW, w, order, 5, &rep);
        GEN_CHECK_SAME(&r, rep.data, rep.len, w[1].data, w[1].len, "same winner everywhere");
    }
    /* At one (ts, writer), a tombstone beats a value (flags 1 > 0). */
    lww(8, 4, 0, "v", &w[0]);
    lww(8, 4, 1, NULL, &w[1]);
    merge(&w[0], &w[1], &rep);
    cr_assert(eq(int, lat_is_empty(LAT_LWW, rep.data, rep.len), 1));
    gen_free_all(w, 5);
    lat_buf_free(&rep);
}

Test(lww, tombstone_hides_and_later_write_revives, .timeout = 10)
{
    lat_buf v = {0}, del = {0}, m = {0}, again = {0};
    lww(10, 1, 0, "value", &v);
    cr_assert(eq(int, lat_delete_delta(LAT_LWW, v.data, v.len, 2, 11, &del), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_LWW, del.data, del.len), TRELLIS_OK));
    uint64_t ts, writer;
    int tomb;
    lat_slice val;
    lat_lww_view(del.data, del.len, &ts, &writer, &tomb, &val);
    cr_assert(eq(u64, ts, 11));
    cr_assert(eq(u64, writer, 2));
    cr_assert(eq(int, tomb, 1));
    cr_assert(eq(sz, val.len, 0));

    merge(&v, &del, &m);
    cr_assert(eq(int, lat_is_empty(LAT_LWW, m.data, m.len), 1), "the tombstone hides the value");
    /* An older write arriving late stays hidden. */
    lww(9, 7, 0, "stale", &again);
    merge(&m, &again, &m);
    cr_assert(eq(int, lat_is_empty(LAT_LWW, m.data, m.len), 1));
    /* A later write revives the key. */
    lww(12, 1, 0, "back", &again);
    merge(&m, &again, &m);
    cr_assert(eq(int, lat_is_empty(LAT_LWW, m.data, m.len), 0));
    lat_lww_view(m.data, m.len, NULL, NULL, &tomb, &val);
    cr_assert(eq(int, tomb, 0));
    cr_assert(eq(sz, val.len, 4));
    cr_assert(eq(int, memcmp(val.data, "back", 4), 0));
    lat_buf_free(&v);
    lat_buf_free(&del);
    lat_buf_free(&m);
    lat_buf_free(&again);
}

/* The output buffer may hold the value being encoded. */
Test(lww, encode_from_own_buffer, .timeout = 10)
{
    lat_buf b = {0};
    cr_assert(eq(int, lat_buf_set(&b, "payload", 7), TRELLIS_OK));
    cr_assert(eq(int, lat_lww_encode(3, 4, 0, b.data, b.len, &b), TRELLIS_OK));
    lat_slice v;
    lat_lww_view(b.data, b.len, NULL, NULL, NULL, &v);
    cr_assert(eq(sz, v.len, 7));
    cr_assert(eq(int, memcmp(v.data, "payload", 7), 0));
    lat_buf_free(&b);
}
