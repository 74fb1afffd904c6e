/*
 * test_tagged.c - stored states [type][encoding]: validation, merges of one
 * type, the larger type winning a conflict, malformed operands ranking
 * below valid ones, and the malformed count. Then expiry: the header's
 * bytes, plain states unchanged, visibility from the deadline on, EXPIRE
 * and PERSIST by stamp, a write after the deadline starting fresh,
 * tombstones, what may be collected, and the decoder's rules.
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
    t.data[0] = 9;
    cr_assert(eq(int, lat_tagged_validate(t.data, t.len), TRELLIS_MALFORMED));
    cr_assert(eq(int, lat_tagged_validate(t.data, 0), TRELLIS_MALFORMED));
    cr_assert(eq(int, lat_tagged_validate(NULL, 9), TRELLIS_MALFORMED));
    lat_buf_free(&s);
    lat_buf_free(&t);
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
}

/* ---- expiry ------------------------------------------------------------------ */

static void ok(int rc)
{
    cr_assert(eq(int, rc, TRELLIS_OK));
}

/* out = merge(a, b), checked both ways round. */
static void join(const lat_buf *a, const lat_buf *b, lat_buf *out)
{
    lat_buf other = {0};
    ok(lat_tagged_merge(a->data, a->len, b->data, b->len, out, NULL));
    ok(lat_tagged_merge(b->data, b->len, a->data, a->len, &other, NULL));
    cr_assert(eq(int, gen_same_buf(out, &other), 1), "commutative");
    ok(lat_tagged_validate(out->data, out->len));
    lat_buf_free(&other);
}

static void counter_write(uint64_t epoch, uint64_t writer, uint64_t inc, lat_buf *out)
{
    lat_buf v = {0};
    ok(lat_counter_encode(writer, inc, 0, &v));
    ok(lat_tagged_wrap(epoch, LAT_COUNTER, v.data, v.len, out));
    lat_buf_free(&v);
}

static int64_t counter_of(const lat_buf *b)
{
    lat_stored s;
    ok(lat_tagged_parse(b->data, b->len, &s));
    cr_assert(eq(int, (int)s.type, LAT_COUNTER));
    return lat_counter_value(s.value.data, s.value.len);
}

static void same_bytes(const lat_buf *b, const uint8_t *want, size_t n)
{
    cr_assert(eq(sz, b->len, n));
    cr_assert(eq(int, memcmp(b->data, want, n), 0));
}

/* Every header form, byte for byte (docs/lattices.md), and the plain form
 * left exactly as before. */
Test(tagged, header_bytes, .timeout = 10)
{
    lat_buf b = {0}, v = {0};
    ok(lat_max_encode(1, &v));
    ok(lat_tagged_wrap(0, LAT_MAX, v.data, v.len, &b));
    static const uint8_t plain[] = {5, 0, 0, 0, 0, 0, 0, 0, 1};
    same_bytes(&b, plain, sizeof plain);
    ok(lat_tagged_wrap(2, LAT_MAX, v.data, v.len, &b));
    static const uint8_t epoch[] = {0x81, 0, 0, 0, 0, 0, 0, 0, 2, 5, 0, 0, 0, 0, 0, 0, 0, 1};
    same_bytes(&b, epoch, sizeof epoch);
    ok(lat_tagged_expiry(0, 7, 1000, &b));
    static const uint8_t reg[] = {0x82, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0};
    same_bytes(&b, reg, sizeof reg);
    ok(lat_tagged_expiry(3, 7, 0, &b));
    static const uint8_t reg3[] = {0x83, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0,
                                   0,    0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    same_bytes(&b, reg3, sizeof reg3);
    ok(lat_tagged_tombstone(reg, sizeof reg, 1000, &b));
    static const uint8_t tomb[] = {0x85, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x03, 0xe8};
    same_bytes(&b, tomb, sizeof tomb);
    /* Rebuilding a parse gives the same bytes. */
    const uint8_t *all[] = {plain, epoch, reg, reg3, tomb};
    size_t lens[] = {sizeof plain, sizeof epoch, sizeof reg, sizeof reg3, sizeof tomb};
    for (int i = 0; i < 5; i++) {
        lat_stored st;
        ok(lat_tagged_parse(all[i], lens[i], &st));
        ok(lat_tagged_build(&st, &b));
        same_bytes(&b, all[i], lens[i]);
    }
    lat_buf_free(&b);
    lat_buf_free(&v);
}

/* States without expiry merge to plain states, byte for byte as before. */
Test(tagged, plain_states_stay_plain, .timeout = 20)
{
    gen_rng r;
    lat_buf s[2] = {{0}}, ta = {0}, tb = {0}, m = {0}, want = {0};
    gen_begin(&r, "tagged::plain_states_stay_plain");
    for (r.iter = 0; r.iter < 2000; r.iter++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + gen_below(&r, LAT_TYPE_LAST));
        gen_states(&r, t, s, 2);
        tag(t, &s[0], &ta);
        tag(t, &s[1], &tb);
        join(&ta, &tb, &m);
        ok(lat_merge(t, s[0].data, s[0].len, s[1].data, s[1].len, &want));
        GEN_CHECK(&r,
                  m.len == want.len + 1 && m.data[0] == (uint8_t)t &&
                      memcmp(m.data + 1, want.data, want.len) == 0,
                  "[t][merge]");
        lat_stored st;
        ok(lat_tagged_parse(m.data, m.len, &st));
        GEN_CHECK(&r, st.epoch == 0 && !st.has_ttl && !st.tombstone && st.type == t, "plain view");
        GEN_CHECK(&r, lat_tagged_live(m.data, m.len, UINT64_MAX), "never expires");
    }
    gen_free_all(s, 2);
    lat_buf_free(&ta);
    lat_buf_free(&tb);
    lat_buf_free(&m);
    lat_buf_free(&want);
}

/* A key is live before its deadline and invisible from it on; EXPIRE and
 * PERSIST resolve by stamp (last writer wins), a tie by the deadline. */
Test(tagged, deadline_and_registers, .timeout = 10)
{
    lat_buf w = {0}, e = {0}, p = {0}, s = {0};
    counter_write(0, 1, 5, &w);
    ok(lat_tagged_expiry(0, 10, 1000, &e));
    join(&w, &e, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 999), 1));
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 1000), 0), "invisible at the deadline");
    cr_assert(eq(int, lat_tagged_expired(s.data, s.len, 999), 0));
    cr_assert(eq(int, lat_tagged_expired(s.data, s.len, 1000), 1));
    cr_assert(eq(i64, counter_of(&s), 5));
    /* A PERSIST with a later stamp clears the deadline; with an earlier one
     * it loses. */
    ok(lat_tagged_expiry(0, 11, 0, &p));
    join(&s, &p, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, UINT64_MAX), 1));
    ok(lat_tagged_expiry(0, 9, 0, &p));
    join(&w, &e, &s);
    join(&s, &p, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 1000), 0));
    /* A later EXPIRE may shorten a deadline. */
    ok(lat_tagged_expiry(0, 12, 500, &p));
    join(&s, &p, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 500), 0));
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 499), 1));
    /* Same stamp: the larger deadline, whatever the order. */
    ok(lat_tagged_expiry(0, 12, 600, &e));
    join(&s, &e, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 599), 1));
    /* A register alone has no value: invisible until the value comes. */
    ok(lat_tagged_expiry(0, 20, 2000, &e));
    cr_assert(eq(int, lat_tagged_live(e.data, e.len, 0), 0));
    cr_assert(eq(int, (int)lat_tagged_type(e.data, e.len), LAT_NONE));
    join(&e, &w, &s);
    cr_assert(eq(int, lat_tagged_live(s.data, s.len, 1999), 1));
    cr_assert(eq(int, (int)lat_tagged_type(s.data, s.len), LAT_COUNTER));
    lat_buf_free(&w);
    lat_buf_free(&e);
    lat_buf_free(&p);
    lat_buf_free(&s);
}

/* After the deadline a write starts a fresh value in the next incarnation;
 * nothing of the old one comes back, whatever arrives late and in which
 * order. */
Test(tagged, write_after_deadline_starts_fresh, .timeout = 20)
{
    gen_rng r;
    enum { OLD = 4 };
    lat_buf d[OLD + 2] = {{0}}, s = {0}, tomb = {0};
    gen_begin(&r, "tagged::write_after_deadline_starts_fresh");
    counter_write(0, 1, 5, &d[0]);
    counter_write(0, 2, 7, &d[1]);
    ok(lat_tagged_expiry(0, 10, 1000, &d[2]));
    ok(lat_tagged_expiry(0, 5, 0, &d[3])); /* an older PERSIST */
    size_t order[OLD + 2] = {0, 1, 2, 3};
    ok(lat_buf_set(&s, d[0].data, d[0].len));
    for (int i = 1; i < OLD; i++)
        join(&s, &d[i], &s);
    uint64_t epoch = 99;
    ok(lat_tagged_write_epoch(s.data, s.len, 999, &epoch));
    cr_assert(eq(u64, epoch, 0), "live: the same incarnation");
    ok(lat_tagged_write_epoch(s.data, s.len, 1000, &epoch));
    cr_assert(eq(u64, epoch, 1), "expired: the next one");
    ok(lat_tagged_write_epoch(NULL, 0, 1000, &epoch));
    cr_assert(eq(u64, epoch, 0), "absent key");
    counter_write(1, 1, 6, &d[OLD]); /* writer 1 again, totals 6: counts 6 from zero */
    ok(lat_tagged_tombstone(s.data, s.len, 1000, &tomb));
    cr_assert(eq(int, lat_tagged_tombstone(s.data, s.len, 999, &d[OLD + 1]), TRELLIS_INVALID));
    ok(lat_buf_set(&d[OLD + 1], tomb.data, tomb.len));
    ok(lat_tagged_write_epoch(tomb.data, tomb.len, 5000, &epoch));
    cr_assert(eq(u64, epoch, 1), "a tombstone's writes share its incarnation");
    for (r.iter = 0; r.iter < 500; r.iter++) {
        size_t n = OLD + 2;
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        gen_shuffle(&r, order, n, sizeof order[0]);
        ok(lat_buf_set(&s, d[order[0]].data, d[order[0]].len));
        for (size_t i = 1; i < n; i++)
            join(&s, &d[order[i]], &s);
        cr_assert(eq(int, lat_tagged_live(s.data, s.len, UINT64_MAX), 1), "fresh, no deadline");
        cr_assert(eq(i64, counter_of(&s), 6), "only the fresh write counts");
        /* Without the fresh write: the tombstone, invisible for good. */
        ok(lat_buf_set(&s, tomb.data, tomb.len));
        for (size_t i = 0; i < n; i++)
            if (order[i] < OLD)
                join(&s, &d[order[i]], &s);
        cr_assert(eq(int, gen_same_buf(&s, &tomb), 1), "the tombstone dominates incarnation 0");
        cr_assert(eq(int, lat_tagged_live(s.data, s.len, 0), 0));
    }
    gen_free_all(d, OLD + 2);
    lat_buf_free(&s);
    lat_buf_free(&tomb);
}

/* The tombstone depends on the state only, not on the clock that saw it
 * expire; concurrent tombstones of one incarnation join; a fresh write of
 * another (smaller) type replaces an expired key's type. */
Test(tagged, tombstones, .timeout = 10)
{
    lat_buf v = {0}, s = {0}, e = {0}, t1 = {0}, t2 = {0}, m = {0}, w = {0};
    ok(lat_map_set(NULL, 0, "f", 1, 1, 1, "v", 1, &v));
    ok(lat_tagged_wrap(0, LAT_MAP, v.data, v.len, &s));
    ok(lat_tagged_expiry(0, 3, 100, &e));
    join(&s, &e, &s);
    ok(lat_tagged_tombstone(s.data, s.len, 100, &t1));
    ok(lat_tagged_tombstone(s.data, s.len, 1u << 30, &t2));
    cr_assert(eq(int, gen_same_buf(&t1, &t2), 1), "same state, same tombstone");
    lat_stored st;
    ok(lat_tagged_parse(t1.data, t1.len, &st));
    cr_assert(eq(int, st.tombstone, 1));
    cr_assert(eq(u64, st.epoch, 1));
    cr_assert(eq(u64, st.cleared_ms, 100));
    cr_assert(eq(int, (int)lat_tagged_type(t1.data, t1.len), LAT_NONE));
    /* Another replica saw a different deadline for incarnation 0 (a
     * concurrent EXPIRE): its tombstone is of the same incarnation, and the
     * later clearing is kept. */
    ok(lat_tagged_expiry(0, 2, 150, &e));
    ok(lat_tagged_wrap(0, LAT_MAP, v.data, v.len, &m));
    join(&m, &e, &m);
    ok(lat_tagged_tombstone(m.data, m.len, 150, &t2));
    join(&t1, &t2, &m);
    ok(lat_tagged_parse(m.data, m.len, &st));
    cr_assert(eq(u64, st.epoch, 1));
    cr_assert(eq(u64, st.cleared_ms, 150));
    /* A fresh LWW write in incarnation 1 replaces the expired MAP. */
    ok(lat_lww_encode(5, 1, 0, "x", 1, &v));
    ok(lat_tagged_wrap(1, LAT_LWW, v.data, v.len, &w));
    join(&m, &w, &m);
    join(&m, &s, &m);
    cr_assert(eq(int, (int)lat_tagged_type(m.data, m.len), LAT_LWW));
    cr_assert(eq(int, lat_tagged_live(m.data, m.len, UINT64_MAX), 1));
    /* An extension of incarnation 0 a replica had not seen when it ended
     * the incarnation loses to the tombstone (docs/lattices.md). */
    ok(lat_tagged_expiry(0, 9, 1u << 30, &e));
    join(&t1, &e, &m);
    cr_assert(eq(int, gen_same_buf(&m, &t1), 1));
    lat_buf_free(&v);
    lat_buf_free(&s);
    lat_buf_free(&e);
    lat_buf_free(&t1);
    lat_buf_free(&t2);
    lat_buf_free(&m);
    lat_buf_free(&w);
}

Test(tagged, collectable_after_grace, .timeout = 10)
{
    lat_buf s = {0}, t = {0};
    ok(lat_tagged_expiry(0, 1, 100, &s));
    ok(lat_tagged_tombstone(s.data, s.len, 100, &t));
    cr_assert(eq(int, lat_tagged_collectable(t.data, t.len, 149, 50), 0));
    cr_assert(eq(int, lat_tagged_collectable(t.data, t.len, 150, 50), 1));
    cr_assert(eq(int, lat_tagged_collectable(t.data, t.len, 10, 50), 0), "no wrap below grace");
    /* An expired state goes at the time its tombstone would. */
    cr_assert(eq(int, lat_tagged_collectable(s.data, s.len, 149, 50), 0));
    cr_assert(eq(int, lat_tagged_collectable(s.data, s.len, 150, 50), 1));
    /* Values without a deadline never go. */
    counter_write(3, 1, 1, &s);
    cr_assert(eq(int, lat_tagged_collectable(s.data, s.len, UINT64_MAX, 0), 0));
    ok(lat_tagged_expiry(2, 9, 0, &t));
    join(&s, &t, &s);
    cr_assert(eq(int, lat_tagged_collectable(s.data, s.len, UINT64_MAX, 0), 0), "PERSIST");
    lat_buf_free(&s);
    lat_buf_free(&t);
}

/* The last incarnation cannot end: no tombstone, no next epoch. */
Test(tagged, epoch_limit, .timeout = 10)
{
    lat_buf s = {0}, t = {0};
    uint64_t e;
    ok(lat_tagged_expiry(LAT_EPOCH_MAX, 1, 100, &s));
    cr_assert(eq(int, lat_tagged_tombstone(s.data, s.len, 100, &t), TRELLIS_INVALID));
    cr_assert(eq(int, lat_tagged_write_epoch(s.data, s.len, 100, &e), TRELLIS_INVALID));
    ok(lat_tagged_write_epoch(s.data, s.len, 99, &e));
    cr_assert(eq(u64, e, LAT_EPOCH_MAX));
    cr_assert(eq(int, lat_tagged_expiry(LAT_EPOCH_MAX + 1, 1, 100, &s), TRELLIS_INVALID));
    lat_buf_free(&s);
    lat_buf_free(&t);
}

/* What the builder refuses, and what the decoder refuses. */
Test(tagged, header_rules, .timeout = 10)
{
    lat_buf b = {0};
    lat_stored s = {0};
    s.tombstone = 1; /* epoch 0 */
    cr_assert(eq(int, lat_tagged_build(&s, &b), TRELLIS_INVALID));
    s.epoch = 1;
    s.has_ttl = 1;
    s.ttl_stamp = 1;
    cr_assert(eq(int, lat_tagged_build(&s, &b), TRELLIS_INVALID), "tombstone with a register");
    memset(&s, 0, sizeof s);
    s.epoch = 1; /* no type, no register */
    cr_assert(eq(int, lat_tagged_build(&s, &b), TRELLIS_INVALID));
    s.has_ttl = 1; /* stamp 0 */
    cr_assert(eq(int, lat_tagged_build(&s, &b), TRELLIS_INVALID));
    cr_assert(eq(int, lat_tagged_expiry(0, 0, 5, &b), TRELLIS_INVALID));
    cr_assert(eq(int, lat_tagged_wrap(0, LAT_NONE, NULL, 0, &b), TRELLIS_INVALID));

    static const uint8_t good[] = {0x83, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7,
                                   0,    0, 0, 0, 0, 0, 0, 9, 5, 0, 0, 0, 0, 0, 0, 0, 1};
    ok(lat_tagged_validate(good, sizeof good));
    uint8_t x[sizeof good];
    struct {
        size_t at;
        uint8_t v;
        const char *why;
    } cases[] = {
        {0, 0x80, "a header with no flags"},
        {0, 0x84, "a tombstone without epoch"},
        {0, 0x86, "tombstone with register"},
        {0, 0x87, "all flags"},
        {0, 0x88, "unknown flag"},
        {0, 0xc3, "unknown flag"},
        {8, 0, "epoch 0"},
        {16, 0, "stamp 0"},
        {25, 9, "unknown type"},
        {25, 1, "value invalid for its type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(x, good, sizeof x);
        x[cases[i].at] = cases[i].v;
        cr_assert(eq(int, lat_tagged_validate(x, sizeof x), TRELLIS_MALFORMED), "%s", cases[i].why);
    }
    memcpy(x, good, sizeof x);
    x[1] = 0x80; /* epoch beyond LAT_EPOCH_MAX */
    cr_assert(eq(int, lat_tagged_validate(x, sizeof x), TRELLIS_MALFORMED));
    for (size_t n = 0; n < sizeof good; n++)
        cr_assert(eq(int, lat_tagged_validate(good, n), TRELLIS_MALFORMED), "truncated at %zu", n);
    /* A register alone ends at its type byte 0; a value-less 0x81 is none. */
    static const uint8_t alone[] = {0x82, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ok(lat_tagged_validate(alone, sizeof alone));
    static const uint8_t alone_tail[] = {0x82, 0, 0, 0, 0, 0, 0, 0, 1, 0,
                                         0,    0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert(eq(int, lat_tagged_validate(alone_tail, sizeof alone_tail), TRELLIS_MALFORMED));
    static const uint8_t epoch_none[] = {0x81, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    cr_assert(eq(int, lat_tagged_validate(epoch_none, sizeof epoch_none), TRELLIS_MALFORMED));
    static const uint8_t tomb_tail[] = {0x85, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 5};
    cr_assert(eq(int, lat_tagged_validate(tomb_tail, sizeof tomb_tail), TRELLIS_MALFORMED));
    lat_buf_free(&b);
}
