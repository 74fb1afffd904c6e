/*
 * test_tagged.c - stored states [type][encoding]: validation, merges of one
 * type, the larger type winning a conflict, malformed operands ranking
 * below valid ones, and the malformed count.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

/* out = [t][state] */
static void tag(lat_type t, const lat_buf *state, lat_buf *out)
{
    uint8_t b = (uint8_t)t;
    cr_assert(eq(int, lat_buf_set(out, &b, 1), TRELLIS_OK));
    cr_assert(eq(int, lat_buf_reserve(out, state->len), TRELLIS_OK));
    memcpy(out->data + 1, state->data, state->len);
    out->len += state->len;
}

static void tmerge(const lat_buf *a, const lat_buf *b, lat_buf *out, unsigned want_bad)
{
    unsigned bad = 0;
    cr_assert(eq(int, lat_tagged_merge(a->data, a->len, b->data, b->len, out, &bad), TRELLIS_OK));
    cr_assert(eq(u32, bad, want_bad));
    cr_assert(eq(int, lat_tagged_merge(b->data, b->len, a->data, a->len, out, NULL), TRELLIS_OK));
}

Test(tagged, validate, .timeout = 10)
{
    lat_buf s = {0}, t = {0};
    cr_assert(eq(int, lat_max_encode(5, &s), TRELLIS_OK));
    tag(LAT_MAX, &s, &t);
    cr_assert(eq(int, lat_tagged_validate(t.data, t.len), TRELLIS_OK));
    t.data[0] = LAT_LWW; /* eight bytes are no LWW */
    cr_assert(eq(int, lat_tagged_validate(t.data, t.len), TRELLIS_MALFORMED));
    t.data[0] = 0;
    cr_assert(eq(int, lat_tagged_validate(t.data, t.len), TRELLIS_MALFORMED));
    t.data[0] = 8;
    cr_assert(eq(int, lat_tagged_validate(t.data, t.len), TRELLIS_MALFORMED));
    cr_assert(eq(int, lat_tagged_validate(t.data, 0), TRELLIS_MALFORMED));
    cr_assert(eq(int, lat_tagged_validate(NULL, 9), TRELLIS_MALFORMED));
    lat_buf_free(&s);
    lat_buf_free(&t);
    GEN_LEAK_CHECK();
}

Test(tagged, same_type_merges, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, ta = {0}, tb = {0}, m = {0}, want = {0}, raw = {0};
    cr_assert(eq(int, lat_counter_encode(1, 5, 0, &a), TRELLIS_OK));
    cr_assert(eq(int, lat_counter_encode(2, 0, 2, &b), TRELLIS_OK));
    tag(LAT_COUNTER, &a, &ta);
    tag(LAT_COUNTER, &b, &tb);
    tmerge(&ta, &tb, &m, 0);
    cr_assert(eq(int, lat_merge(LAT_COUNTER, a.data, a.len, b.data, b.len, &raw), TRELLIS_OK));
    tag(LAT_COUNTER, &raw, &want);
    cr_assert(eq(int, gen_same_buf(&m, &want), 1));
    cr_assert(eq(i64, lat_counter_value(m.data + 1, m.len - 1), 3));
    /* In place. */
    cr_assert(eq(int, lat_tagged_merge(ta.data, ta.len, tb.data, tb.len, &ta, NULL), TRELLIS_OK));
    cr_assert(eq(int, gen_same_buf(&ta, &want), 1));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&ta);
    lat_buf_free(&tb);
    lat_buf_free(&m);
    lat_buf_free(&want);
    lat_buf_free(&raw);
    GEN_LEAK_CHECK();
}

Test(tagged, larger_type_wins, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, ta = {0}, tb = {0}, m = {0};
    cr_assert(eq(int, lat_lww_encode(UINT64_MAX, 1, 0, "lww", 3, &a), TRELLIS_OK));
    cr_assert(eq(int, lat_max_encode(INT64_MIN, &b), TRELLIS_OK));
    tag(LAT_LWW, &a, &ta);
    tag(LAT_MAX, &b, &tb);
    tmerge(&ta, &tb, &m, 0);
    cr_assert(eq(int, gen_same_buf(&m, &tb), 1), "MAX (5) beats LWW (1)");
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&ta);
    lat_buf_free(&tb);
    lat_buf_free(&m);
    GEN_LEAK_CHECK();
}

Test(tagged, malformed_ranks_below_valid, .timeout = 10)
{
    lat_buf a = {0}, ta = {0}, junk = {0}, junk2 = {0}, empty = {0}, m = {0};
    cr_assert(eq(int, lat_lww_encode(1, 1, 0, "v", 1, &a), TRELLIS_OK));
    tag(LAT_LWW, &a, &ta);
    cr_assert(eq(int, lat_buf_set(&junk, "\x09garbage", 8), TRELLIS_OK));
    cr_assert(eq(int, lat_buf_set(&junk2, "\x09garbagf", 8), TRELLIS_OK));
    tmerge(&ta, &junk, &m, 1);
    cr_assert(eq(int, gen_same_buf(&m, &ta), 1));
    tmerge(&empty, &ta, &m, 1);
    cr_assert(eq(int, gen_same_buf(&m, &ta), 1));
    /* Two malformed operands: the bytewise greater one is kept. */
    tmerge(&junk, &junk2, &m, 2);
    cr_assert(eq(int, gen_same_buf(&m, &junk2), 1));
    tmerge(&junk, &empty, &m, 2);
    cr_assert(eq(int, gen_same_buf(&m, &junk), 1));
    tmerge(&empty, &empty, &m, 2);
    cr_assert(eq(sz, m.len, 0));
    /* A valid type byte over a broken encoding is malformed too. */
    ta.len = 5;
    tmerge(&ta, &junk2, &m, 2);
    cr_assert(eq(int, gen_same_buf(&m, &junk2), 1));
    lat_buf_free(&a);
    lat_buf_free(&ta);
    lat_buf_free(&junk);
    lat_buf_free(&junk2);
    lat_buf_free(&m);
    GEN_LEAK_CHECK();
}

/* A fold over many operands can pass one counter: each call adds. */
Test(tagged, malformed_count_accumulates, .timeout = 10)
{
    lat_buf s = {0}, ts = {0}, acc = {0};
    static const uint8_t junk[] = {0xee, 1, 2};
    unsigned bad = 0;
    cr_assert(eq(int, lat_max_encode(1, &s), TRELLIS_OK));
    tag(LAT_MAX, &s, &ts);
    cr_assert(eq(int, lat_buf_set(&acc, ts.data, ts.len), TRELLIS_OK));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, lat_tagged_merge(acc.data, acc.len, junk, sizeof junk, &acc, &bad),
                     TRELLIS_OK));
    cr_assert(eq(u32, bad, 3));
    cr_assert(eq(int, lat_tagged_merge(junk, sizeof junk, NULL, 0, &acc, &bad), TRELLIS_OK));
    cr_assert(eq(u32, bad, 5));
    cr_assert(eq(int, lat_tagged_merge(ts.data, ts.len, ts.data, ts.len, &acc, &bad), TRELLIS_OK));
    cr_assert(eq(u32, bad, 5));
    lat_buf_free(&s);
    lat_buf_free(&ts);
    lat_buf_free(&acc);
    GEN_LEAK_CHECK();
}
