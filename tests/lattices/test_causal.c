/*
 * test_causal.c - CAUSAL: concurrent writes side by side, a write that
 * observed them supersedes them, causal deletes, one dot carrying two
 * values, the clock readers, builder errors and the decoder.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define ORDER_ROUNDS 100

static void put(const lat_buf *obs, uint64_t w, uint64_t c, const char *v, lat_buf *out)
{
    cr_assert(eq(int,
                 lat_causal_put(obs ? obs->data : NULL, obs ? obs->len : 0, w, c, v,
                                v ? strlen(v) : 0, v == NULL, out),
                 TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, out->data, out->len), TRELLIS_OK));
}

static void merge(const lat_buf *a, const lat_buf *b, lat_buf *out)
{
    cr_assert(eq(int, lat_merge(LAT_CAUSAL, a->data, a->len, b->data, b->len, out), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, out->data, out->len), TRELLIS_OK));
}

/* The values of s in dot order joined by ',' into buf. */
static const char *values(const lat_buf *s, char *buf, size_t cap)
{
    size_t pos = 0, n = 0;
    lat_slice v;
    buf[0] = '\0';
    while (lat_causal_next(s->data, s->len, &pos, NULL, &v)) {
        cr_assert(lt(sz, n + v.len + 2, cap));
        if (n > 0)
            buf[n++] = ',';
        memcpy(buf + n, v.data, v.len);
        n += v.len;
        buf[n] = '\0';
    }
    return buf;
}

Test(causal, blind_write_encoding, .timeout = 10)
{
    lat_buf s = {0};
    put(NULL, 3, 1, "v", &s);
    static const uint8_t want[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0,
                                   0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                   0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 'v'};
    cr_assert(eq(sz, s.len, sizeof want));
    cr_assert(eq(int, memcmp(s.data, want, sizeof want), 0));
    cr_assert(eq(sz, lat_causal_count(s.data, s.len), 1));
    cr_assert(eq(sz, lat_causal_clock_count(s.data, s.len), 1));
    lat_dot d = lat_causal_clock_at(s.data, s.len, 0);
    cr_assert(eq(u64, d.writer, 3));
    cr_assert(eq(u64, d.counter, 1));
    d = lat_causal_clock_at(s.data, s.len, 1);
    cr_assert(eq(u64, d.writer, 0));
    cr_assert(eq(u64, d.counter, 0));
    size_t pos = 0;
    lat_slice v;
    cr_assert(eq(int, lat_causal_next(s.data, s.len, &pos, &d, &v), 1));
    cr_assert(eq(u64, d.writer, 3));
    cr_assert(eq(u64, d.counter, 1));
    cr_assert(eq(int, lat_causal_next(s.data, s.len, &pos, &d, &v), 0));
    lat_buf_free(&s);
}

Test(causal, concurrent_writes_then_a_resolving_write, .timeout = 20)
{
    gen_rng r;
    char buf[64];
    lat_buf d[3] = {{0}}, both = {0}, rep = {0};
    gen_begin(&r, "causal::concurrent_writes_then_a_resolving_write");
    put(NULL, 1, 1, "left", &d[0]);
    put(NULL, 2, 1, "right", &d[1]);
    merge(&d[0], &d[1], &both);
    cr_assert(eq(sz, lat_causal_count(both.data, both.len), 2), "both concurrent values visible");
    cr_assert(eq(str, (char *)values(&both, buf, sizeof buf), "left,right"));
    cr_assert(eq(u64, lat_causal_clock_get(both.data, both.len, 1), 1));
    cr_assert(eq(u64, lat_causal_clock_get(both.data, both.len, 2), 1));
    cr_assert(eq(u64, lat_causal_clock_get(both.data, both.len, 9), 0));
    cr_assert(eq(int, lat_is_empty(LAT_CAUSAL, both.data, both.len), 0));

    /* Writer 1 read both and writes again: it supersedes both, in every
     * delivery order. */
    put(&both, 1, 2, "merged", &d[2]);
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[3] = {0, 1, 2};
        gen_shuffle(&r, order, 3, sizeof order[0]);
        gen_fold(LAT_CAUSAL, d, order, 3, &rep);
        GEN_CHECK(&r, lat_causal_count(rep.data, rep.len) == 1, "one value left");
        GEN_CHECK(&r, strcmp(values(&rep, buf, sizeof buf), "merged") == 0, "the new one");
    }
    lat_order o;
    cr_assert(
        eq(int, lat_compare(LAT_CAUSAL, both.data, both.len, rep.data, rep.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_LESS));
    cr_assert(
        eq(int, lat_compare(LAT_CAUSAL, d[0].data, d[0].len, d[1].data, d[1].len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_CONCURRENT));

    /* A write concurrent with the resolving one stays beside it. */
    lat_buf late = {0};
    put(&d[1], 2, 2, "late", &late);
    merge(&rep, &late, &rep);
    cr_assert(eq(str, (char *)values(&rep, buf, sizeof buf), "merged,late"));
    gen_free_all(d, 3);
    lat_buf_free(&both);
    lat_buf_free(&rep);
    lat_buf_free(&late);
}

Test(causal, causal_delete_leaves_no_values, .timeout = 10)
{
    char buf[64];
    lat_buf a = {0}, b = {0}, s = {0}, del = {0}, m = {0}, c = {0};
    put(NULL, 1, 1, "x", &a);
    put(NULL, 2, 4, "y", &b);
    merge(&a, &b, &s);
    cr_assert(eq(int, lat_delete_delta(LAT_CAUSAL, s.data, s.len, 3, 7, &del), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, del.data, del.len), TRELLIS_OK));
    cr_assert(eq(sz, lat_causal_count(del.data, del.len), 0));
    cr_assert(eq(u64, lat_causal_clock_get(del.data, del.len, 3), 7));
    cr_assert(eq(u64, lat_causal_clock_get(del.data, del.len, 2), 4), "over the observed clock");
    merge(&s, &del, &m);
    cr_assert(eq(int, lat_is_empty(LAT_CAUSAL, m.data, m.len), 1), "no values after DEL");
    cr_assert(eq(sz, lat_causal_count(m.data, m.len), 0));
    /* Re-delivering the deleted writes changes nothing. */
    merge(&m, &a, &m);
    merge(&m, &b, &m);
    cr_assert(eq(int, lat_is_empty(LAT_CAUSAL, m.data, m.len), 1));
    /* A write concurrent with the delete survives it. */
    put(&a, 1, 2, "z", &c);
    merge(&m, &c, &m);
    cr_assert(eq(str, (char *)values(&m, buf, sizeof buf), "z"));
    /* lat_causal_put's own delete form. */
    put(&m, 1, 3, NULL, &del);
    merge(&m, &del, &m);
    cr_assert(eq(int, lat_is_empty(LAT_CAUSAL, m.data, m.len), 1));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&s);
    lat_buf_free(&del);
    lat_buf_free(&m);
    lat_buf_free(&c);
}

/* Two states carrying the same dot with different values: per the flat
 * per-dot lattice the dot ends up removed, and the laws still hold. */
Test(causal, one_dot_two_values, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, c = {0}, ab = {0}, ba = {0}, abc = {0}, bc = {0}, a_bc = {0};
    put(NULL, 1, 1, "one", &a);
    put(NULL, 1, 1, "two", &b);
    put(NULL, 2, 1, "other", &c);
    merge(&a, &b, &ab);
    merge(&b, &a, &ba);
    cr_assert(eq(int, gen_same_buf(&ab, &ba), 1));
    cr_assert(eq(sz, lat_causal_count(ab.data, ab.len), 0), "the conflicting dot is removed");
    cr_assert(eq(u64, lat_causal_clock_get(ab.data, ab.len, 1), 1));
    merge(&ab, &c, &abc);
    merge(&b, &c, &bc);
    merge(&a, &bc, &a_bc);
    cr_assert(eq(int, gen_same_buf(&abc, &a_bc), 1));
    cr_assert(eq(sz, lat_causal_count(abc.data, abc.len), 1));
    merge(&abc, &a, &ab);
    cr_assert(eq(int, gen_same_buf(&ab, &abc), 1), "a value cannot come back");
    /* The same dot with the same value is one value. */
    merge(&a, &a, &ab);
    cr_assert(eq(int, gen_same_buf(&ab, &a), 1));
    lat_order o;
    cr_assert(eq(int, lat_compare(LAT_CAUSAL, a.data, a.len, b.data, b.len, &o), TRELLIS_OK));
    cr_assert(eq(int, o, LAT_CONCURRENT));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&c);
    lat_buf_free(&ab);
    lat_buf_free(&ba);
    lat_buf_free(&abc);
    lat_buf_free(&bc);
    lat_buf_free(&a_bc);
}

Test(causal, builder_errors, .timeout = 10)
{
    lat_buf s = {0}, out = {0};
    put(NULL, 1, 5, "v", &s);
    cr_assert(eq(int, lat_causal_put(NULL, 0, 1, 0, "v", 1, 0, &out), TRELLIS_INVALID), "dot 0");
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 1, 5, "v", 1, 0, &out), TRELLIS_INVALID),
              "counter not above the clock");
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 1, 3, "v", 1, 0, &out), TRELLIS_INVALID));
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 1, 6, "v", 1, 1, &out), TRELLIS_INVALID),
              "delete with a value");
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 1, 6, NULL, 2, 0, &out), TRELLIS_INVALID));
    cr_assert(eq(int, lat_delete_delta(LAT_CAUSAL, s.data, s.len, 1, 5, &out), TRELLIS_INVALID));
    /* An empty value is a value. */
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 1, 6, NULL, 0, 0, &out), TRELLIS_OK));
    cr_assert(eq(sz, lat_causal_count(out.data, out.len), 1));
    /* The output may alias the observed state. */
    cr_assert(eq(int, lat_causal_put(s.data, s.len, 0, 1, "w", 1, 0, &s), TRELLIS_OK));
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, s.data, s.len), TRELLIS_OK));
    cr_assert(eq(sz, lat_causal_clock_count(s.data, s.len), 2));
    cr_assert(eq(u64, lat_causal_clock_get(s.data, s.len, 1), 5));
    cr_assert(eq(sz, lat_causal_count(s.data, s.len), 1));
    lat_buf_free(&s);
    lat_buf_free(&out);
}

Test(causal, decoder_edges, .timeout = 10)
{
    /* clock {1: 2}, values {(1, 2) "v"} */
    uint8_t ok[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0,  0,
                    1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 'v'};
    uint8_t b[sizeof ok + 1];
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, ok, sizeof ok), TRELLIS_OK));
    for (size_t n = 0; n < sizeof ok; n++)
        cr_assert(eq(int, lat_validate(LAT_CAUSAL, ok, n), TRELLIS_MALFORMED), "prefix %zu", n);
    memcpy(b, ok, sizeof ok);
    b[sizeof ok] = 0;
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok + 1), TRELLIS_MALFORMED), "trailing");
    memcpy(b, ok, sizeof ok);
    b[39] = 3; /* dot (1, 3) not covered by clock 2 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));
    b[39] = 0; /* dot (1, 0) */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[31] = 2; /* dot of writer 2, absent from the clock */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[19] = 0; /* clock counter 0 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[20] = 0x80; /* m near 2^31 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));
    memcpy(b, ok, sizeof ok);
    b[40] = 0xff; /* value length near 2^32 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, b, sizeof ok), TRELLIS_MALFORMED));

    /* Out-of-order and duplicate dots: clock {1: 2}, values (1, 2) then
     * (1, 1), which no merge produces. */
    uint8_t swapped[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0,
                         0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0,
                         0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, swapped, sizeof swapped), TRELLIS_MALFORMED));
    swapped[59] = 2; /* (1, 2) twice */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, swapped, sizeof swapped), TRELLIS_MALFORMED));
    swapped[39] = 1; /* (1, 1), (1, 2): ordered */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, swapped, sizeof swapped), TRELLIS_OK));
    uint8_t clock2[] = {0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
                        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, clock2, sizeof clock2), TRELLIS_MALFORMED));
    clock2[11] = 1; /* writers 1, 1 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, clock2, sizeof clock2), TRELLIS_MALFORMED));
    clock2[27] = 2; /* writers 1, 2 */
    cr_assert(eq(int, lat_validate(LAT_CAUSAL, clock2, sizeof clock2), TRELLIS_OK));
}
