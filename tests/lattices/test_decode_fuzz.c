/*
 * test_decode_fuzz.c - the decoders and the tagged merge on hostile input:
 * random bytes, truncations, bit flips and smashed length fields of valid
 * encodings. lat_validate must answer OK or MALFORMED without reading out
 * of bounds (every input sits in an exactly sized heap block, so ASan sees
 * any overread), agree with the reference decoder of ref.c, and whatever it
 * accepts must re-validate and keep the lattice laws with other states.
 * lat_tagged_merge must be total.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"
#include "ref.h"

#define FUZZ_CASES   GEN_CASES(100000) /* inputs per type */
#define TAGGED_CASES GEN_CASES(100000) /* operand triples for the tagged merge */
#define RANDOM_MAX   64                /* longest random input */
#define FLIPS_MAX    4

/* An exactly sized heap copy of [p, p + n), so any overread trips ASan. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n > 0 ? n : 1);
    cr_assert_not_null(q);
    if (n > 0)
        memcpy(q, p, n);
    return q;
}

/* Values that make length and count fields interesting. */
static uint32_t nasty_u32(gen_rng *r, size_t len)
{
    static const uint32_t v[] = {0,          1,          2,          3,          0x7fffffff,
                                 0x80000000, 0xfffffffe, 0xffffffff, 0x10000000, 0x00010000};
    if (gen_chance(r, 30))
        return (uint32_t)(len + gen_below(r, 5)) - 2;
    return v[gen_below(r, sizeof v / sizeof v[0])];
}

/* Mutates a valid encoding in buf (len bytes, cap room) in one of several
 * ways; returns the new length. kind 0 = random bytes, 1 = truncation,
 * 2 = bit flips, 3 = smashed field or inserted/removed byte, 4 = spliced
 * with the tail of another (other, olen). (fuzz_type adds kind 5, the
 * concatenation of two states.) */
static size_t mutate(gen_rng *r, int kind, uint8_t *buf, size_t len, size_t cap,
                     const uint8_t *other, size_t olen)
{
    switch (kind) {
    case 4: {
        size_t at = (size_t)gen_below(r, len + 1), from = (size_t)gen_below(r, olen + 1);
        size_t n = olen - from < cap - at ? olen - from : cap - at;
        if (n > 0)
            memcpy(buf + at, other + from, n);
        return at + n;
    }
    case 0: {
        size_t n = (size_t)gen_below(r, RANDOM_MAX + 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = gen_chance(r, 60) ? (uint8_t)gen_below(r, 4) : (uint8_t)gen_u64(r);
        return n;
    }
    case 1:
        return len == 0 ? 0 : (size_t)gen_below(r, len);
    case 2: {
        int flips = 1 + (int)gen_below(r, FLIPS_MAX);
        for (int i = 0; i < flips && len > 0; i++)
            buf[gen_below(r, len)] ^= (uint8_t)(1u << gen_below(r, 8));
        return len;
    }
    default: {
        unsigned how = (unsigned)gen_below(r, 4);
        if (how == 0 && len >= 4) {
            size_t at = (size_t)gen_below(r, len - 3);
            uint32_t v = nasty_u32(r, len);
            buf[at] = (uint8_t)(v >> 24);
            buf[at + 1] = (uint8_t)(v >> 16);
            buf[at + 2] = (uint8_t)(v >> 8);
            buf[at + 3] = (uint8_t)v;
            return len;
        }
        if (how == 1 && len < cap) {
            size_t at = (size_t)gen_below(r, len + 1);
            memmove(buf + at + 1, buf + at, len - at);
            buf[at] = (uint8_t)gen_u64(r);
            return len + 1;
        }
        if (how == 2 && len > 0) {
            size_t at = (size_t)gen_below(r, len);
            memmove(buf + at, buf + at + 1, len - at - 1);
            return len - 1;
        }
        if (len < cap) {
            buf[len] = (uint8_t)gen_u64(r);
            return len + 1;
        }
        return len;
    }
    }
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The lists of two valid states a and b of a count-based type laid end to
 * end without merging, counts added: well-formed, but canonical only if
 * every item of a sorts before every item of b. Writes into buf (room for
 * alen + blen) and returns the length, or 0 for the other types. */
static size_t concatenate(lat_type t, const lat_buf *a, const lat_buf *b, uint8_t *buf)
{
    if (t == LAT_SET || t == LAT_ORSET || t == LAT_COUNTER || t == LAT_MAP) {
        put32(buf, get32(a->data) + get32(b->data));
        memcpy(buf + 4, a->data + 4, a->len - 4);
        memcpy(buf + a->len, b->data + 4, b->len - 4);
        return a->len + b->len - 4;
    }
    if (t == LAT_CAUSAL) {
        size_t ca = 4 + (size_t)get32(a->data) * 16, cb = 4 + (size_t)get32(b->data) * 16;
        size_t n = 0;
        put32(buf, get32(a->data) + get32(b->data));
        memcpy(buf + 4, a->data + 4, ca - 4);
        memcpy(buf + ca, b->data + 4, cb - 4);
        n = ca + cb - 4;
        put32(buf + n, get32(a->data + ca) + get32(b->data + cb));
        memcpy(buf + n + 4, a->data + ca + 4, a->len - ca - 4);
        n += 4 + a->len - ca - 4;
        memcpy(buf + n, b->data + cb + 4, b->len - cb - 4);
        return n + b->len - cb - 4;
    }
    return 0;
}

/* Checks the laws of an accepted input x against random valid states. */
static void laws_with(gen_rng *r, lat_type t, const uint8_t *x, size_t xlen)
{
    lat_buf s[2], m1, m2, m3, m4;
    lat_order o;
    for (int i = 0; i < 2; i++)
        lat_buf_init(&s[i]);
    lat_buf_init(&m1);
    lat_buf_init(&m2);
    lat_buf_init(&m3);
    lat_buf_init(&m4);
    gen_states(r, t, s, 2);
    GEN_CHECK(r, lat_merge(t, x, xlen, s[0].data, s[0].len, &m1) == TRELLIS_OK, "merge");
    GEN_CHECK(r, lat_validate(t, m1.data, m1.len) == TRELLIS_OK, "merge validates");
    GEN_CHECK(r, lat_merge(t, s[0].data, s[0].len, x, xlen, &m2) == TRELLIS_OK, "merge");
    GEN_CHECK_SAME(r, m1.data, m1.len, m2.data, m2.len, "commutativity");
    GEN_CHECK(r, lat_merge(t, x, xlen, x, xlen, &m2) == TRELLIS_OK, "merge");
    GEN_CHECK_SAME(r, m2.data, m2.len, x, xlen, "idempotence");
    /* (x s0) s1 == x (s0 s1) */
    GEN_CHECK(r, lat_merge(t, m1.data, m1.len, s[1].data, s[1].len, &m2) == TRELLIS_OK, "merge");
    GEN_CHECK(r, lat_merge(t, s[0].data, s[0].len, s[1].data, s[1].len, &m3) == TRELLIS_OK,
              "merge");
    GEN_CHECK(r, lat_merge(t, x, xlen, m3.data, m3.len, &m4) == TRELLIS_OK, "merge");
    GEN_CHECK_SAME(r, m2.data, m2.len, m4.data, m4.len, "associativity");
    GEN_CHECK(r, lat_compare(t, m1.data, m1.len, x, xlen, &o) == TRELLIS_OK, "compare");
    GEN_CHECK(r, o == LAT_EQUAL || o == LAT_GREATER, "inflation");
    gen_free_all(s, 2);
    lat_buf_free(&m1);
    lat_buf_free(&m2);
    lat_buf_free(&m3);
    lat_buf_free(&m4);
}

static void fuzz_type(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf two[2], tagged;
    long accepted = 0;
    gen_begin(&r, name);
    lat_buf_init(&two[0]);
    lat_buf_init(&two[1]);
    lat_buf_init(&tagged);
    for (r.iter = 0; r.iter < FUZZ_CASES; r.iter++) {
        int kind = (int)(r.iter % 6);
        gen_states(&r, t, two, 2);
        const lat_buf *seed = &two[0];
        size_t cap = seed->len + two[1].len + RANDOM_MAX + 1;
        uint8_t *work = malloc(cap);
        cr_assert_not_null(work);
        memcpy(work, seed->data, seed->len);
        size_t len = kind == 5 ? concatenate(t, &two[0], &two[1], work) : 0;
        if (len == 0)
            len = mutate(&r, kind % 5, work, seed->len, cap, two[1].data, two[1].len);
        uint8_t *in = dup_exact(work, len);
        free(work);

        int rc = lat_validate(t, in, len);
        GEN_CHECK(&r, rc == TRELLIS_OK || rc == TRELLIS_MALFORMED, "OK or MALFORMED");
        if (rc != ref_validate(t, in, len))
            gen_dump("input", in, len);
        GEN_CHECK(&r, rc == ref_validate(t, in, len), "agrees with the reference decoder");
        /* Fixed-layout prefixes of count-based encodings cannot be canonical. */
        if (kind == 1 && t != LAT_LWW && t != LAT_PRIORITY)
            GEN_CHECK(&r, rc == TRELLIS_MALFORMED, "a truncated state is MALFORMED");
        if (rc == TRELLIS_OK) {
            accepted++;
            GEN_CHECK(&r, lat_validate(t, in, len) == TRELLIS_OK, "re-validates");
            laws_with(&r, t, in, len);
        }
        /* The same bytes behind the type byte. */
        GEN_CHECK(&r, lat_buf_set(&tagged, &(uint8_t){(uint8_t)t}, 1) == TRELLIS_OK, "tag");
        GEN_CHECK(&r, lat_buf_reserve(&tagged, len) == TRELLIS_OK, "reserve");
        if (len > 0)
            memcpy(tagged.data + 1, in, len);
        tagged.len = 1 + len;
        uint8_t *tin = dup_exact(tagged.data, tagged.len);
        GEN_CHECK(&r, lat_tagged_validate(tin, tagged.len) == rc, "tagged validate agrees");
        free(tin);
        /* And behind an expiry header (incarnation 3, a register). */
        static const uint8_t hdr[] = {0x83, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0,
                                      0,    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9};
        GEN_CHECK(&r, lat_buf_set(&tagged, hdr, sizeof hdr) == TRELLIS_OK, "header");
        GEN_CHECK(&r, lat_buf_reserve(&tagged, 1 + len) == TRELLIS_OK, "reserve");
        tagged.data[tagged.len++] = (uint8_t)t;
        if (len > 0)
            memcpy(tagged.data + tagged.len, in, len);
        tagged.len += len;
        tin = dup_exact(tagged.data, tagged.len);
        GEN_CHECK(&r, lat_tagged_validate(tin, tagged.len) == rc, "validate behind a header");
        free(tin);
        free(in);
    }
    cr_log_info("%s: %d inputs, %ld accepted", name, FUZZ_CASES, accepted);
    gen_free_all(two, 2);
    lat_buf_free(&tagged);
}

#define FUZZ_TEST(name, type)                                                                      \
    Test(decode_fuzz, name, .timeout = 90)                                                         \
    {                                                                                              \
        fuzz_type(type, "decode_fuzz::" #name);                                                    \
    }

FUZZ_TEST(lww, LAT_LWW)
FUZZ_TEST(set, LAT_SET)
FUZZ_TEST(orset, LAT_ORSET)
FUZZ_TEST(counter, LAT_COUNTER)
FUZZ_TEST(max, LAT_MAX)
FUZZ_TEST(causal, LAT_CAUSAL)
FUZZ_TEST(priority, LAT_PRIORITY)
FUZZ_TEST(map, LAT_MAP)

/* Invalid types and NULL inputs are refused, not dereferenced. */
Test(decode_fuzz, invalid_types, .timeout = 10)
{
    static const uint8_t b[8] = {0};
    for (int t = -3; t < 300; t++) {
        if (lat_type_valid(t))
            continue;
        cr_assert(eq(int, lat_validate((lat_type)t, b, sizeof b), TRELLIS_MALFORMED));
    }
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        cr_assert(eq(int, lat_validate((lat_type)t, NULL, 0), TRELLIS_MALFORMED));
        cr_assert(eq(int, lat_validate((lat_type)t, NULL, 8), TRELLIS_MALFORMED));
    }
    cr_assert(eq(int, lat_tagged_validate(NULL, 0), TRELLIS_MALFORMED));
}

/* One tagged operand: a valid state of a random type (plain, or with
 * expiry: an incarnation, a register, a tombstone), a mutation of one,
 * random bytes or nothing; in an exactly sized heap block. */
static uint8_t *tagged_operand(gen_rng *r, size_t *len)
{
    lat_buf s;
    lat_buf_init(&s);
    lat_type t = (lat_type)(LAT_TYPE_FIRST + gen_below(r, LAT_TYPE_LAST));
    size_t n;
    uint8_t *work;
    size_t cap;
    if (gen_chance(r, 50)) {
        gen_tagged_states(r, t, &s, 1);
        cap = s.len + RANDOM_MAX + 1;
        work = malloc(cap);
        cr_assert_not_null(work);
        memcpy(work, s.data, s.len);
        n = s.len;
    } else {
        gen_state(r, t, &s);
        cap = 1 + s.len + RANDOM_MAX + 1;
        work = malloc(cap);
        cr_assert_not_null(work);
        work[0] = (uint8_t)t;
        memcpy(work + 1, s.data, s.len);
        n = 1 + s.len;
    }
    unsigned pick = (unsigned)gen_below(r, 100);
    if (pick < 10)
        n = 0;
    else if (pick < 55)
        n = mutate(r, (int)gen_below(r, 4), work, n, cap, NULL, 0);
    uint8_t *out = dup_exact(work, n);
    free(work);
    lat_buf_free(&s);
    *len = n;
    return out;
}

static void tagged_merge_ok(gen_rng *r, const uint8_t *a, size_t alen, const uint8_t *b,
                            size_t blen, lat_buf *out)
{
    unsigned bad = 0;
    GEN_CHECK(r, lat_tagged_validate(a, alen) == ref_tagged_validate(a, alen),
              "tagged validate agrees with the reference decoder");
    GEN_CHECK(r, lat_tagged_merge(a, alen, b, blen, out, &bad) == TRELLIS_OK, "tagged merge");
    unsigned want =
        (lat_tagged_validate(a, alen) != TRELLIS_OK) + (lat_tagged_validate(b, blen) != TRELLIS_OK);
    GEN_CHECK(r, bad == want, "malformed count");
    if (want < 2)
        GEN_CHECK(r, lat_tagged_validate(out->data, out->len) == TRELLIS_OK,
                  "a valid operand gives a valid result");
}

Test(decode_fuzz, tagged_merge, .timeout = 120)
{
    gen_rng r;
    lat_buf ab, ba, bc, ab_c, a_bc, aa;
    long bad_ops = 0;
    gen_begin(&r, "decode_fuzz::tagged_merge");
    lat_buf_init(&ab);
    lat_buf_init(&ba);
    lat_buf_init(&bc);
    lat_buf_init(&ab_c);
    lat_buf_init(&a_bc);
    lat_buf_init(&aa);
    for (r.iter = 0; r.iter < TAGGED_CASES; r.iter++) {
        size_t alen, blen, clen;
        uint8_t *a = tagged_operand(&r, &alen);
        uint8_t *b = tagged_operand(&r, &blen);
        uint8_t *c = tagged_operand(&r, &clen);
        bad_ops += lat_tagged_validate(a, alen) != TRELLIS_OK;
        tagged_merge_ok(&r, a, alen, b, blen, &ab);
        tagged_merge_ok(&r, b, blen, a, alen, &ba);
        GEN_CHECK_SAME(&r, ab.data, ab.len, ba.data, ba.len, "tagged commutativity");
        tagged_merge_ok(&r, a, alen, a, alen, &aa);
        GEN_CHECK_SAME(&r, aa.data, aa.len, a, alen, "tagged idempotence");
        tagged_merge_ok(&r, b, blen, c, clen, &bc);
        tagged_merge_ok(&r, ab.data, ab.len, c, clen, &ab_c);
        tagged_merge_ok(&r, a, alen, bc.data, bc.len, &a_bc);
        GEN_CHECK_SAME(&r, ab_c.data, ab_c.len, a_bc.data, a_bc.len, "tagged associativity");
        /* NULL operands count as empty, malformed ones. */
        tagged_merge_ok(&r, NULL, 5, a, alen, &aa);
        GEN_CHECK_SAME(&r, aa.data, aa.len, a, alen, "NULL operand is the bottom");
        free(a);
        free(b);
        free(c);
    }
    cr_log_info("tagged_merge: %d triples, %ld malformed first operands", TAGGED_CASES, bad_ops);
    lat_buf_free(&ab);
    lat_buf_free(&ba);
    lat_buf_free(&bc);
    lat_buf_free(&ab_c);
    lat_buf_free(&a_bc);
    lat_buf_free(&aa);
}

/* Tagged states with expiry headers under every mutation: the decoder
 * agrees with the reference, never reads outside its input, and what it
 * accepts parses, rebuilds to the same bytes and merges by the laws. */
Test(decode_fuzz, tagged_expiry, .timeout = 120)
{
    gen_rng r;
    lat_buf two[2], m1, m2, m3;
    long accepted = 0;
    gen_begin(&r, "decode_fuzz::tagged_expiry");
    lat_buf_init(&two[0]);
    lat_buf_init(&two[1]);
    lat_buf_init(&m1);
    lat_buf_init(&m2);
    lat_buf_init(&m3);
    for (r.iter = 0; r.iter < FUZZ_CASES; r.iter++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + gen_below(&r, LAT_TYPE_LAST));
        gen_tagged_states(&r, t, two, 2);
        size_t cap = two[0].len + two[1].len + RANDOM_MAX + 1;
        uint8_t *work = malloc(cap);
        cr_assert_not_null(work);
        memcpy(work, two[0].data, two[0].len);
        size_t len = mutate(&r, (int)(r.iter % 5), work, two[0].len, cap, two[1].data, two[1].len);
        if (r.iter % 7 == 0 && len > 0) /* a header byte among the interesting ones */
            work[0] = (uint8_t)(0x80 + gen_below(&r, 9));
        uint8_t *in = dup_exact(work, len);
        free(work);
        int rc = lat_tagged_validate(in, len);
        if (rc != ref_tagged_validate(in, len))
            gen_dump("input", in, len);
        GEN_CHECK(&r, rc == ref_tagged_validate(in, len), "agrees with the reference decoder");
        if (rc == TRELLIS_OK) {
            lat_stored st;
            accepted++;
            GEN_CHECK(&r, lat_tagged_parse(in, len, &st) == TRELLIS_OK, "parses");
            GEN_CHECK(&r, lat_tagged_build(&st, &m1) == TRELLIS_OK, "rebuilds");
            GEN_CHECK_SAME(&r, m1.data, m1.len, in, len, "canonical: the same bytes");
            GEN_CHECK(&r,
                      lat_tagged_merge(in, len, two[1].data, two[1].len, &m1, NULL) == TRELLIS_OK,
                      "merge");
            GEN_CHECK(&r,
                      lat_tagged_merge(two[1].data, two[1].len, in, len, &m2, NULL) == TRELLIS_OK,
                      "merge");
            GEN_CHECK_SAME(&r, m1.data, m1.len, m2.data, m2.len, "commutativity");
            GEN_CHECK(&r, lat_tagged_merge(m1.data, m1.len, in, len, &m3, NULL) == TRELLIS_OK,
                      "merge");
            GEN_CHECK_SAME(&r, m3.data, m3.len, m1.data, m1.len, "inflation");
            GEN_CHECK(&r, lat_tagged_merge(in, len, in, len, &m3, NULL) == TRELLIS_OK, "merge");
            GEN_CHECK_SAME(&r, m3.data, m3.len, in, len, "idempotence");
            (void)lat_tagged_live(in, len, gen_u64(&r));
            (void)lat_tagged_collectable(in, len, gen_u64(&r), gen_u64(&r));
        }
        free(in);
    }
    cr_log_info("tagged_expiry: %d inputs, %ld accepted", FUZZ_CASES, accepted);
    gen_free_all(two, 2);
    lat_buf_free(&m1);
    lat_buf_free(&m2);
    lat_buf_free(&m3);
}
