/*
 * test_map.c - MAP: fields set, overwritten and removed as observed,
 * add-wins against concurrent writes without the removed value coming back,
 * counters that restart after a remove, the field cap and limits, and the
 * decoder's rules one by one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define ORDER_ROUNDS 200 /* random merge orders per scenario */

static lat_slice S(const char *s)
{
    lat_slice x = {(const uint8_t *)s, strlen(s)};
    return x;
}

static void ok(int rc)
{
    cr_assert(eq(int, rc, TRELLIS_OK));
}

static void valid(const lat_buf *b)
{
    cr_assert(eq(int, lat_validate(LAT_MAP, b->data, b->len), TRELLIS_OK));
}

static void hset(const lat_buf *state, const char *f, uint64_t writer, uint64_t ts, const char *v,
                 lat_buf *out)
{
    ok(lat_map_set(state ? state->data : NULL, state ? state->len : 0, f, strlen(f), writer, ts, v,
                   strlen(v), out));
    valid(out);
}

static void hdel(const lat_buf *state, const char *f, lat_buf *out)
{
    lat_slice x = S(f);
    ok(lat_map_remove(state->data, state->len, &x, 1, out));
    valid(out);
}

static void merge_into(lat_buf *acc, const lat_buf *d)
{
    ok(lat_merge(LAT_MAP, acc->data, acc->len, d->data, d->len, acc));
    valid(acc);
}

/* The field's LWW value as a C string in buf, "" when absent, "#N" for a
 * counter. */
static const char *field(const lat_buf *s, const char *f, char *buf, size_t cap)
{
    lat_map_field v;
    if (!lat_map_get(s->data, s->len, f, strlen(f), &v))
        return "";
    if (v.counter)
        snprintf(buf, cap, "#%lld", (long long)v.number);
    else
        snprintf(buf, cap, "%.*s", (int)v.value.len, (const char *)v.value.data);
    return buf;
}

#define FIELD_IS(s, f, want)                                                                       \
    do {                                                                                           \
        char fb_[64];                                                                              \
        cr_assert(eq(str, (char *)field((s), (f), fb_, sizeof fb_), (char *)(want)));              \
    } while (0)

/* Folds d[order[0..n)] into out. */
static void fold(const lat_buf *d, const size_t *order, size_t n, lat_buf *out)
{
    ok(lat_buf_set(out, d[order[0]].data, d[order[0]].len));
    for (size_t i = 1; i < n; i++)
        merge_into(out, &d[order[i]]);
}

Test(map, set_get_iterate, .timeout = 10)
{
    lat_buf s = {0}, d = {0};
    ok(lat_map_remove_all(NULL, 0, &s)); /* the empty map */
    valid(&s);
    cr_assert(eq(sz, s.len, 4));
    cr_assert(eq(int, lat_is_empty(LAT_MAP, s.data, s.len), 1));
    hset(&s, "b", 1, 10, "two", &d);
    merge_into(&s, &d);
    hset(&s, "a", 1, 11, "one", &d);
    merge_into(&s, &d);
    ok(lat_map_counter("c", 1, 9, 5, 2, &d));
    valid(&d);
    merge_into(&s, &d);
    cr_assert(eq(sz, lat_map_count(s.data, s.len), 3));
    cr_assert(eq(int, lat_is_empty(LAT_MAP, s.data, s.len), 0));
    FIELD_IS(&s, "a", "one");
    FIELD_IS(&s, "b", "two");
    FIELD_IS(&s, "c", "#3");
    FIELD_IS(&s, "d", "");
    const char *names[] = {"a", "b", "c"};
    size_t pos = 0, i = 0;
    lat_map_field f;
    while (lat_map_next(s.data, s.len, &pos, &f)) {
        cr_assert(eq(sz, f.name.len, 1));
        cr_assert(eq(chr, (char)f.name.data[0], names[i][0]));
        i++;
    }
    cr_assert(eq(sz, i, 3));
    uint64_t inc, dec;
    lat_map_counter_entry(s.data, s.len, "c", 1, 9, &inc, &dec);
    cr_assert(eq(u64, inc, 5));
    cr_assert(eq(u64, dec, 2));
    lat_map_counter_entry(s.data, s.len, "c", 1, 8, &inc, &dec);
    cr_assert(eq(u64, inc + dec, 0));
    /* Builders refuse what no state holds. */
    cr_assert(eq(int, lat_map_set(NULL, 0, "x", 1, 1, 0, "v", 1, &d), TRELLIS_INVALID), "ts 0");
    cr_assert(eq(int, lat_map_set(NULL, 0, NULL, 1, 1, 1, "v", 1, &d), TRELLIS_INVALID));
    cr_assert(eq(int, lat_map_counter(NULL, 2, 1, 1, 0, &d), TRELLIS_INVALID));
    ok(lat_map_counter("x", 1, 1, 0, 0, &d)); /* no change: the empty map */
    cr_assert(eq(sz, d.len, 4));
    lat_buf_free(&s);
    lat_buf_free(&d);
}

/* HSET after observing the field supersedes it; two HSETs that did not
 * observe each other resolve by stamp, then writer, in every order. */
Test(map, overwrite_and_concurrent_sets, .timeout = 10)
{
    gen_rng r;
    lat_buf d[3] = {{0}}, s = {0};
    gen_begin(&r, "map::overwrite_and_concurrent_sets");
    hset(NULL, "f", 1, 5, "old", &d[0]);
    hset(&d[0], "f", 2, 6, "new", &d[1]);  /* observed old */
    hset(NULL, "f", 3, 6, "rival", &d[2]); /* concurrent, same stamp, larger writer */
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[3] = {0, 1, 2};
        gen_shuffle(&r, order, 3, sizeof order[0]);
        fold(d, order, 3, &s);
        FIELD_IS(&s, "f", "rival");
    }
    /* Without the rival, the observed overwrite wins whatever the order. */
    size_t two[2] = {1, 0};
    fold(d, two, 2, &s);
    FIELD_IS(&s, "f", "new");
    gen_free_all(d, 3);
    lat_buf_free(&s);
}

/* A remove of an observed field against a concurrent HSET of it: the add
 * wins, and with the concurrent value, not the removed one, even when the
 * removed value had the greater stamp. */
Test(map, remove_add_wins_without_the_removed_value, .timeout = 10)
{
    gen_rng r;
    lat_buf d[3] = {{0}}, s = {0};
    gen_begin(&r, "map::remove_add_wins_without_the_removed_value");
    hset(NULL, "f", 1, 10, "removed", &d[0]);
    hdel(&d[0], "f", &d[1]);
    hset(NULL, "f", 2, 9, "concurrent", &d[2]);
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[3] = {0, 1, 2};
        gen_shuffle(&r, order, 3, sizeof order[0]);
        fold(d, order, 3, &s);
        FIELD_IS(&s, "f", "concurrent");
        size_t two[2] = {0, 1};
        gen_shuffle(&r, two, 2, sizeof two[0]);
        fold(d, two, 2, &s);
        FIELD_IS(&s, "f", "");
        cr_assert(eq(sz, lat_map_count(s.data, s.len), 0));
    }
    gen_free_all(d, 3);
    lat_buf_free(&s);
}

/* A counter field restarts from zero after a remove; an increment the
 * remover had not observed survives it. */
Test(map, counter_restarts_after_remove, .timeout = 10)
{
    gen_rng r;
    lat_buf d[4] = {{0}}, s = {0}, obs = {0};
    gen_begin(&r, "map::counter_restarts_after_remove");
    ok(lat_map_counter("n", 1, 1, 7, 0, &d[0])); /* writer 1: +7 */
    ok(lat_map_counter("n", 1, 2, 0, 3, &d[1])); /* writer 2: -3 */
    ok(lat_buf_set(&obs, d[0].data, d[0].len));
    merge_into(&obs, &d[1]);
    FIELD_IS(&obs, "n", "#4");
    hdel(&obs, "n", &d[2]);
    ok(lat_map_counter("n", 1, 1, 9, 0, &d[3])); /* writer 1, totals 9: +2 after the remove */
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[4] = {0, 1, 2, 3};
        gen_shuffle(&r, order, 4, sizeof order[0]);
        fold(d, order, 4, &s);
        FIELD_IS(&s, "n", "#2");
        size_t three[3] = {0, 1, 2};
        gen_shuffle(&r, three, 3, sizeof three[0]);
        fold(d, three, 3, &s);
        FIELD_IS(&s, "n", "");
    }
    /* The remove observed only writer 1: writer 2's decrement survives. */
    hdel(&d[0], "n", &d[2]);
    size_t order[3] = {0, 1, 2};
    fold(d, order, 3, &s);
    FIELD_IS(&s, "n", "#-3");
    gen_free_all(d, 4);
    lat_buf_free(&s);
    lat_buf_free(&obs);
}

/* A field holding both parts shows the LWW value; HSET over a counter
 * supersedes it, and HDEL then HSET gives just the new value. */
Test(map, lww_and_counter_parts, .timeout = 10)
{
    lat_buf s = {0}, d = {0};
    ok(lat_map_counter("f", 1, 1, 5, 0, &s));
    FIELD_IS(&s, "f", "#5");
    hset(&s, "f", 2, 20, "text", &d);
    merge_into(&s, &d);
    FIELD_IS(&s, "f", "text");
    ok(lat_map_counter("f", 1, 1, 6, 0, &d)); /* the old counter writer moves on */
    merge_into(&s, &d);
    FIELD_IS(&s, "f", "text");
    hdel(&s, "f", &d);
    merge_into(&s, &d);
    FIELD_IS(&s, "f", "");
    hset(&s, "f", 3, 30, "again", &d);
    merge_into(&s, &d);
    FIELD_IS(&s, "f", "again");
    cr_assert(eq(sz, lat_map_count(s.data, s.len), 1));
    lat_buf_free(&s);
    lat_buf_free(&d);
}

/* Re-delivering the deltas that built a removed field never brings it back. */
Test(map, stale_deltas_after_remove, .timeout = 10)
{
    gen_rng r;
    enum { N = 6 };
    lat_buf d[N] = {{0}}, s = {0}, rm = {0};
    gen_begin(&r, "map::stale_deltas_after_remove");
    hset(NULL, "f", 1, 1, "a", &d[0]);
    hset(&d[0], "f", 2, 2, "b", &d[1]);
    hset(NULL, "f", 3, 3, "c", &d[2]);
    ok(lat_map_counter("f", 1, 4, 3, 0, &d[3]));
    hset(NULL, "g", 1, 4, "other", &d[4]);
    ok(lat_map_counter("f", 1, 4, 2, 0, &d[5])); /* an older total of writer 4 */
    size_t all[N] = {0, 1, 2, 3, 4, 5};
    fold(d, all, N, &s);
    FIELD_IS(&s, "f", "c");
    hdel(&s, "f", &rm);
    for (r.iter = 0; r.iter < ORDER_ROUNDS; r.iter++) {
        size_t order[N + 1];
        size_t n = 0;
        for (size_t i = 0; i < N; i++)
            if (gen_chance(&r, 60))
                order[n++] = i;
        ok(lat_buf_set(&s, rm.data, rm.len));
        gen_shuffle(&r, order, n, sizeof order[0]);
        for (size_t i = 0; i < n; i++)
            merge_into(&s, &d[order[i]]);
        FIELD_IS(&s, "f", "");
    }
    gen_free_all(d, N);
    lat_buf_free(&s);
    lat_buf_free(&rm);
}

/* The cap keeps the smallest names; the count of the uncapped union is
 * what a writer checks. */
Test(map, field_cap_keeps_smallest_names, .timeout = 10)
{
    lat_buf a = {0}, b = {0}, d = {0}, m = {0};
    const char *an[] = {"a", "c", "e"}, *bn[] = {"b", "c", "d"};
    ok(lat_map_remove_all(NULL, 0, &a));
    ok(lat_map_remove_all(NULL, 0, &b));
    for (int i = 0; i < 3; i++) {
        hset(&a, an[i], 1, 1, "x", &d);
        merge_into(&a, &d);
        hset(&b, bn[i], 2, 1, "y", &d);
        merge_into(&b, &d);
    }
    cr_assert(eq(sz, lat_map_union_count(a.data, a.len, b.data, b.len), 5));
    cr_assert(eq(sz, lat_map_union_count(a.data, a.len, NULL, 0), 3));
    ok(lat_map_merge_cap(a.data, a.len, b.data, b.len, 3, &m));
    valid(&m);
    cr_assert(eq(sz, lat_map_count(m.data, m.len), 3));
    FIELD_IS(&m, "a", "x");
    FIELD_IS(&m, "b", "y");
    FIELD_IS(&m, "c", "y"); /* both wrote c at stamp 1: the larger writer */
    FIELD_IS(&m, "d", "");
    cr_assert(eq(int, lat_map_merge_cap(a.data, a.len, b.data, b.len, 0, &m), TRELLIS_INVALID));
    /* The full merge keeps all five. */
    ok(lat_merge(LAT_MAP, a.data, a.len, b.data, b.len, &m));
    cr_assert(eq(sz, lat_map_count(m.data, m.len), 5));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&d);
    lat_buf_free(&m);
}

/* LAT_MAP_MAX_FIELDS records pass, one more does not; the merge of two
 * full maps with different names stays at the limit. */
Test(map, field_count_limit, .timeout = 30)
{
    lat_buf a = {0}, b = {0}, m = {0};
    char name[16];
    /* Built directly: count, then records ("%07u", nl 1, one LWW entry, nc 0). */
    for (int side = 0; side < 2; side++) {
        lat_buf *s = side ? &b : &a;
        size_t rec = 4 + 7 + 4 + 28 + 4;
        ok(lat_buf_reserve(s, 4 + (size_t)LAT_MAP_MAX_FIELDS * rec));
        uint8_t *w = s->data;
        w[0] = 0;
        w[1] = (uint8_t)(LAT_MAP_MAX_FIELDS >> 16);
        w[2] = (uint8_t)(LAT_MAP_MAX_FIELDS >> 8);
        w[3] = (uint8_t)LAT_MAP_MAX_FIELDS;
        w += 4;
        for (unsigned i = 0; i < LAT_MAP_MAX_FIELDS; i++) {
            snprintf(name, sizeof name, "%07u", 2 * i + (unsigned)side);
            static const uint8_t len7[] = {0, 0, 0, 7}, one[] = {0, 0, 0, 1}, zero[4] = {0};
            memcpy(w, len7, 4);
            memcpy(w + 4, name, 7);
            memcpy(w + 11, one, 4);
            memset(w + 15, 0, 28);
            w[15 + 7] = 1;  /* writer 1 */
            w[15 + 15] = 1; /* add 1 */
            memcpy(w + 43, zero, 4);
            w += rec;
        }
        s->len = (size_t)(w - s->data);
        valid(s);
    }
    ok(lat_merge(LAT_MAP, a.data, a.len, b.data, b.len, &m));
    valid(&m);
    cr_assert(eq(sz, lat_map_count(m.data, m.len), LAT_MAP_MAX_FIELDS));
    cr_assert(eq(sz, lat_map_union_count(a.data, a.len, b.data, b.len), 2 * LAT_MAP_MAX_FIELDS));
    lat_map_field f;
    cr_assert(eq(int, lat_map_get(m.data, m.len, "0065535", 7, &f), 1), "last kept name");
    cr_assert(eq(int, lat_map_get(m.data, m.len, "0065536", 7, &f), 0), "first dropped name");
    /* One record more than the limit is malformed. */
    ok(lat_buf_reserve(&a, 47));
    memcpy(a.data + a.len, a.data + a.len - 47, 47);
    memcpy(a.data + a.len + 4, "9999999", 7);
    a.len += 47;
    a.data[1] = (uint8_t)((LAT_MAP_MAX_FIELDS + 1) >> 16);
    a.data[2] = (uint8_t)((LAT_MAP_MAX_FIELDS + 1) >> 8);
    a.data[3] = (uint8_t)(LAT_MAP_MAX_FIELDS + 1);
    cr_assert(eq(int, lat_validate(LAT_MAP, a.data, a.len), TRELLIS_MALFORMED));
    lat_buf_free(&a);
    lat_buf_free(&b);
    lat_buf_free(&m);
}

/* Builds [count 1]["f"][nl 1](writer 1, add 1, rm 0, vlen zero bytes)[nc 0]
 * into out, bypassing the builder's checks. */
static void one_value_map(size_t vlen, lat_buf *out)
{
    static const uint8_t head[] = {0, 0, 0, 1, 0, 0, 0, 1, 'f', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                   0, 1, 0, 0, 0, 0, 0, 0, 0,   1, 0, 0, 0, 0, 0, 0, 0, 0};
    out->len = 0;
    ok(lat_buf_reserve(out, sizeof head + 8 + vlen));
    memcpy(out->data, head, sizeof head);
    uint8_t *w = out->data + sizeof head;
    w[0] = (uint8_t)(vlen >> 24);
    w[1] = (uint8_t)(vlen >> 16);
    w[2] = (uint8_t)(vlen >> 8);
    w[3] = (uint8_t)vlen;
    memset(w + 4, 0, vlen + 4);
    out->len = sizeof head + 8 + vlen;
}

Test(map, field_size_limit, .timeout = 10)
{
    lat_buf d = {0}, m = {0};
    size_t big = LAT_MAP_MAX_FIELD_BYTES;
    char *v = calloc(1, big + 1);
    cr_assert_not_null(v);
    ok(lat_map_set(NULL, 0, "f", 1, 1, 1, v, big - 1, &d)); /* name + value == limit */
    valid(&d);
    one_value_map(big - 1, &m);
    cr_assert(eq(int, gen_same_buf(&d, &m), 1), "the builder's bytes");
    cr_assert(eq(int, lat_map_set(NULL, 0, "f", 1, 1, 1, v, big, &d), TRELLIS_TOO_LARGE));
    cr_assert(eq(int, lat_map_counter(v, big + 1, 1, 1, 0, &d), TRELLIS_TOO_LARGE));
    one_value_map(big, &m);
    cr_assert(eq(int, lat_validate(LAT_MAP, m.data, m.len), TRELLIS_MALFORMED), "one byte over");
    free(v);
    lat_buf_free(&d);
    lat_buf_free(&m);
}

/* Each rule of the encoding, broken one at a time on a valid state. */
Test(map, decoder_rules, .timeout = 10)
{
    /* count 1, "f", nl 1, (writer 2, add 5, rm 0, "v"), nc 1, (writer 3, inc 4, dec 1, rinc 2,
     * rdec 0) */
    static const uint8_t good[] = {
        0, 0, 0, 1, 0, 0, 0, 1, 'f', 0, 0, 0, 1,            /* count, name, nl */
        0, 0, 0, 0, 0, 0, 0, 2, 0,   0, 0, 0, 0,   0, 0, 5, /* writer, add */
        0, 0, 0, 0, 0, 0, 0, 0, 0,   0, 0, 1, 'v',          /* rm, value */
        0, 0, 0, 1,                                         /* nc */
        0, 0, 0, 0, 0, 0, 0, 3, 0,   0, 0, 0, 0,   0, 0, 4, /* writer, inc */
        0, 0, 0, 0, 0, 0, 0, 1, 0,   0, 0, 0, 0,   0, 0, 2, /* dec, rinc */
        0, 0, 0, 0, 0, 0, 0, 0};                            /* rdec */
    uint8_t b[sizeof good];
    enum {
        ADD = 13 + 15,
        RM = 13 + 23,
        VLEN = 13 + 27,
        INC = 46 + 15,
        DEC = 46 + 23,
        RINC = 46 + 31,
        RDEC = 46 + 39
    };
    cr_assert(eq(int, lat_validate(LAT_MAP, good, sizeof good), TRELLIS_OK));
    lat_map_field f;
    cr_assert(eq(int, lat_map_get(good, sizeof good, "f", 1, &f), 1));
    cr_assert(eq(int, f.counter, 0));
    struct {
        size_t at;
        uint8_t v;
        const char *why;
    } cases[] = {
        {ADD, 0, "add 0"},
        {RM, 6, "rm above add"},
        {RM, 5, "a removed entry with a value"},
        {INC, 1, "rinc above inc"},
        {RDEC, 2, "rdec above dec"},
        {VLEN, 2, "value length past the record"},
        {3, 2, "count past the bytes"},
        {12, 0, "nl 0: no entries, the rest misparsed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, sizeof b);
        b[cases[i].at] = cases[i].v;
        cr_assert(eq(int, lat_validate(LAT_MAP, b, sizeof b), TRELLIS_MALFORMED), "%s",
                  cases[i].why);
    }
    /* A counter entry with inc = dec = 0 (and so no removal marks). */
    memcpy(b, good, sizeof b);
    b[INC] = 0;
    b[DEC] = 0;
    b[RINC] = 0;
    cr_assert(eq(int, lat_validate(LAT_MAP, b, sizeof b), TRELLIS_MALFORMED), "neutral entry");
    /* A record with no entries at all. */
    static const uint8_t empty_rec[] = {0, 0, 0, 1, 0, 0, 0, 1, 'f', 0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert(eq(int, lat_validate(LAT_MAP, empty_rec, sizeof empty_rec), TRELLIS_MALFORMED));
    /* Names out of order, and writers out of order within a list. */
    lat_buf s = {0}, d = {0};
    hset(NULL, "b", 1, 1, "x", &s);
    hset(NULL, "a", 1, 1, "x", &d);
    merge_into(&s, &d);
    s.data[8] = 'b'; /* first record now named "b" too */
    cr_assert(eq(int, lat_validate(LAT_MAP, s.data, s.len), TRELLIS_MALFORMED), "duplicate name");
    hset(NULL, "f", 5, 1, "x", &s);
    hset(NULL, "f", 4, 1, "y", &d);
    merge_into(&s, &d);
    s.data[13 + 7] = 6; /* writer 4 -> 6, ahead of writer 5 */
    cr_assert(eq(int, lat_validate(LAT_MAP, s.data, s.len), TRELLIS_MALFORMED), "writer order");
    lat_buf_free(&s);
    lat_buf_free(&d);
}

/* The output may alias the state it observes. */
Test(map, aliased_outputs, .timeout = 10)
{
    lat_buf s = {0}, want = {0};
    hset(NULL, "f", 1, 1, "v", &s);
    ok(lat_map_set(s.data, s.len, "f", 1, 2, 2, "w", 1, &want));
    ok(lat_map_set(s.data, s.len, "f", 1, 2, 2, "w", 1, &s));
    cr_assert(eq(int, gen_same_buf(&s, &want), 1));
    ok(lat_map_remove_all(s.data, s.len, &want));
    ok(lat_map_remove_all(s.data, s.len, &s));
    cr_assert(eq(int, gen_same_buf(&s, &want), 1));
    ok(lat_delete_delta(LAT_MAP, s.data, s.len, 1, 1, &want));
    valid(&want);
    lat_buf_free(&s);
    lat_buf_free(&want);
}
