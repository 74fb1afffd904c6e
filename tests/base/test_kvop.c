/*
 * test_kvop.c - the arguments and results of key operations carried in
 * values (base/kvop.c): round trips of every encoding; rejection of every
 * truncation, of trailing bytes, of unknown flags and of counts the bytes
 * cannot hold; random bytes never decode past their buffer. And the glob
 * patterns of SCAN and KEYS (base/glob.c) against Redis's own cases.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "base/frame.h"
#include "base/glob.h"
#include "base/kvop.h"
#include "trand.h"

TestSuite(kvop, .timeout = 60);

/* Every strict prefix of v[0..n) must fail to decode with `decode`, and
 * so must v with a byte appended. */
#define CHECK_EXACT(decode_call_on, v, n)                                                          \
    do {                                                                                           \
        uint8_t *copy_ = malloc((n) + 1);                                                          \
        memcpy(copy_, (v), (n));                                                                   \
        copy_[(n)] = 0x5a;                                                                         \
        for (size_t k_ = 0; k_ < (n); k_++)                                                        \
            cr_assert_neq(decode_call_on(copy_, k_), TRELLIS_OK, "a %zu-byte prefix decoded", k_); \
        cr_assert_neq(decode_call_on(copy_, (n) + 1), TRELLIS_OK, "a trailing byte decoded");      \
        cr_assert_eq(decode_call_on(copy_, (n)), TRELLIS_OK);                                      \
        free(copy_);                                                                               \
    } while (0)

static int expire_arg(const uint8_t *v, size_t n)
{
    uint64_t d, s;
    int c;
    int rc = kvop_expire_arg_decode(v, n, &d, &s, &c);
    return rc == TRELLIS_OK && n == KVOP_EXPIRE_ARG_MAX ? rc : rc == TRELLIS_OK ? -1 : rc;
}

Test(kvop, expire)
{
    uint8_t v[KVOP_EXPIRE_ARG_MAX];
    cr_assert_eq(kvop_expire_arg_encode(v, 123456, 7, KVOP_EXPIRE_ALWAYS), FRAME_EXPIRE_ARG);
    uint64_t s, d;
    int c;
    cr_assert_eq(kvop_expire_arg_decode(v, FRAME_EXPIRE_ARG, &d, &s, &c), TRELLIS_OK);
    cr_assert(s == 7 && d == 123456 && c == KVOP_EXPIRE_ALWAYS);
    /* The frame's own reading of the first 16 bytes agrees. */
    frame_op fo = {FRAME_OP_EXPIRE, 0, (const uint8_t *)"k", 1, v, FRAME_EXPIRE_ARG};
    cr_assert_eq(frame_get_expire_arg(&fo, &d, &s), TRELLIS_OK);
    cr_assert(s == 7 && d == 123456);
    cr_assert_eq(kvop_expire_arg_encode(v, 0, 9, KVOP_EXPIRE_GT), KVOP_EXPIRE_ARG_MAX);
    cr_assert_eq(kvop_expire_arg_decode(v, sizeof(v), &d, &s, &c), TRELLIS_OK);
    cr_assert(s == 9 && d == 0 && c == KVOP_EXPIRE_GT);
    CHECK_EXACT(expire_arg, v, sizeof(v));
    v[FRAME_EXPIRE_ARG] = KVOP_EXPIRE_LT + 1;
    cr_assert_eq(kvop_expire_arg_decode(v, sizeof(v), &d, &s, &c), TRELLIS_MALFORMED);
    for (int bad = KVOP_EXPIRE_LT + 1; bad < 256; bad++) {
        uint8_t b = (uint8_t)bad;
        cr_assert_eq(kvop_expire_cond_decode(&b, 1, &c), TRELLIS_MALFORMED);
    }
    uint8_t r[KVOP_EXPIRE_RESULT];
    uint64_t prev;
    int applied;
    kvop_expire_result_encode(r, 99, 1);
    cr_assert_eq(kvop_expire_result_decode(r, sizeof(r), &prev, &applied), TRELLIS_OK);
    cr_assert(prev == 99 && applied == 1);
    r[8] = 2;
    cr_assert_eq(kvop_expire_result_decode(r, sizeof(r), &prev, &applied), TRELLIS_MALFORMED);
    cr_assert_eq(kvop_expire_result_decode(r, 8, &prev, &applied), TRELLIS_MALFORMED);
}

static int put_ex(const uint8_t *v, size_t n)
{
    kvop_put_ex p;
    return kvop_put_ex_decode(v, n, &p);
}

Test(kvop, put_ex)
{
    uint8_t v[KVOP_PUT_EX_HEADER + 3];
    kvop_put_ex_header(v, KVOP_PX_DEADLINE | KVOP_PX_EPOCH, 1000, 42);
    memcpy(v + KVOP_PUT_EX_HEADER, "abc", 3);
    kvop_put_ex p;
    cr_assert_eq(kvop_put_ex_decode(v, sizeof(v), &p), TRELLIS_OK);
    cr_assert(p.flags == (KVOP_PX_DEADLINE | KVOP_PX_EPOCH) && p.deadline_ms == 1000 &&
              p.epoch == 42 && p.slen == 3 && memcmp(p.state, "abc", 3) == 0);
    /* The state runs to the end: only shorter headers fail. */
    for (size_t k = 0; k < KVOP_PUT_EX_HEADER; k++)
        cr_assert_eq(put_ex(v, k), TRELLIS_MALFORMED);
    v[0] = 0x08; /* an unknown flag */
    cr_assert_eq(put_ex(v, sizeof(v)), TRELLIS_MALFORMED);
    kvop_put_ex_header(v, KVOP_PX_DEADLINE, 0, 0); /* a deadline of 0 */
    cr_assert_eq(put_ex(v, sizeof(v)), TRELLIS_MALFORMED);
    uint8_t r[KVOP_PUT_EX_RESULT_INT];
    uint64_t e;
    int has;
    int64_t val;
    cr_assert_eq(kvop_put_ex_result_encode(r, 5, 1, -17), KVOP_PUT_EX_RESULT_INT);
    cr_assert_eq(kvop_put_ex_result_decode(r, sizeof(r), &e, &has, &val), TRELLIS_OK);
    cr_assert(e == 5 && has && val == -17);
    cr_assert_eq(kvop_put_ex_result_encode(r, 6, 0, 0), KVOP_PUT_EX_RESULT);
    cr_assert_eq(kvop_put_ex_result_decode(r, KVOP_PUT_EX_RESULT, &e, &has, &val), TRELLIS_OK);
    cr_assert(e == 6 && !has);
    cr_assert_eq(kvop_put_ex_result_decode(r, 12, &e, &has, &val), TRELLIS_MALFORMED);
}

static int map_set(const uint8_t *v, size_t n)
{
    kvop_map_set m;
    return kvop_map_set_decode(v, n, &m);
}

Test(kvop, map_set)
{
    const char *names[] = {"f", "", "long name"}, *vals[] = {"1", "two", ""};
    size_t nl[3], vl[3];
    for (int i = 0; i < 3; i++) {
        nl[i] = strlen(names[i]);
        vl[i] = strlen(vals[i]);
    }
    size_t n = kvop_map_set_size(nl, vl, 3);
    uint8_t *v = malloc(n);
    uint8_t *w = kvop_map_set_header(v, KVOP_MAP_NX, 77, 88, 3);
    for (int i = 0; i < 3; i++)
        w = kvop_map_put_pair(w, names[i], nl[i], vals[i], vl[i]);
    cr_assert_eq((size_t)(w - v), n);
    kvop_map_set m;
    cr_assert_eq(kvop_map_set_decode(v, n, &m), TRELLIS_OK);
    cr_assert(m.flags == KVOP_MAP_NX && m.stamp == 77 && m.writer == 88 && m.count == 3);
    const uint8_t *name, *val;
    size_t nn, vv;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(kvop_map_next(&m, &name, &nn, &val, &vv), 1);
        cr_assert(nn == nl[i] && memcmp(name, names[i], nn) == 0);
        cr_assert(vv == vl[i] && memcmp(val, vals[i], vv) == 0);
    }
    cr_assert_eq(kvop_map_next(&m, &name, &nn, &val, &vv), 0);
    CHECK_EXACT(map_set, v, n);
    /* A count the bytes cannot hold, a count of 0, stamp 0, a flag. */
    uint8_t h[KVOP_MAP_SET_HEADER];
    kvop_map_set_header(h, 0, 1, 1, 0xffffffffu);
    cr_assert_eq(map_set(h, sizeof(h)), TRELLIS_MALFORMED);
    kvop_map_set_header(h, 0, 1, 1, 0);
    cr_assert_eq(map_set(h, sizeof(h)), TRELLIS_MALFORMED);
    kvop_map_set_header(v, 0, 0, 1, 3);
    cr_assert_eq(map_set(v, n), TRELLIS_MALFORMED);
    kvop_map_set_header(v, 0x80, 1, 1, 3);
    cr_assert_eq(map_set(v, n), TRELLIS_MALFORMED);
    free(v);
}

static unsigned result_flags;

static int scan_result(const uint8_t *v, size_t n)
{
    kvop_scan_result r;
    return kvop_scan_result_decode(v, n, result_flags, &r);
}

Test(kvop, scan)
{
    kvop_scan a = {KVOP_SCAN_PRIMARY | KVOP_SCAN_DEAD, 8, 10, 20, 5, (const uint8_t *)"k:*", 3};
    uint8_t v[KVOP_SCAN_HEADER + 3];
    kvop_scan_encode(v, &a);
    kvop_scan b;
    cr_assert_eq(kvop_scan_decode(v, sizeof(v), &b), TRELLIS_OK);
    cr_assert(b.flags == a.flags && b.type == 8 && b.lo == 10 && b.hi == 20 && b.count == 5 &&
              b.plen == 3 && memcmp(b.pattern, "k:*", 3) == 0);
    for (size_t k = 0; k < KVOP_SCAN_HEADER; k++)
        cr_assert_eq(kvop_scan_decode(v, k, &b), TRELLIS_MALFORMED);
    kvop_scan bad = a;
    bad.lo = 30; /* lo > hi */
    kvop_scan_encode(v, &bad);
    cr_assert_eq(kvop_scan_decode(v, sizeof(v), &b), TRELLIS_MALFORMED);
    bad = a;
    bad.count = 0;
    kvop_scan_encode(v, &bad);
    cr_assert_eq(kvop_scan_decode(v, sizeof(v), &b), TRELLIS_MALFORMED);
    bad = a;
    bad.flags = KVOP_SCAN_COUNT_ONLY | KVOP_SCAN_HASHES;
    kvop_scan_encode(v, &bad);
    cr_assert_eq(kvop_scan_decode(v, sizeof(v), &b), TRELLIS_MALFORMED);
    v[0] = 0x10;
    cr_assert_eq(kvop_scan_decode(v, sizeof(v), &b), TRELLIS_MALFORMED);

    /* A listing with dead hashes, keys by bytes. */
    uint8_t r[128];
    kvop_scan_result_head(r, 1234, 9, 0);
    uint8_t *p = r + KVOP_SCAN_RESULT;
    p[0] = 2;
    p[1] = p[2] = p[3] = 0;
    p = kvop_scan_put_key(p + 4, "ab", 2);
    p = kvop_scan_put_key(p, "", 0);
    p[0] = 1;
    p[1] = p[2] = p[3] = 0;
    memset(p + 4, 0x11, 8);
    p += 12;
    size_t n = (size_t)(p - r);
    kvop_scan_result res;
    result_flags = KVOP_SCAN_DEAD;
    cr_assert_eq(kvop_scan_result_decode(r, n, result_flags, &res), TRELLIS_OK);
    cr_assert(res.next == 1234 && res.epoch == 9 && !res.done && res.nkeys == 2 && res.ndead == 1 &&
              kvop_scan_dead_at(&res, 0) == 0x1111111111111111ull);
    const uint8_t *key;
    size_t kl;
    cr_assert(kvop_scan_next_key(&res, &key, &kl) && kl == 2 && memcmp(key, "ab", 2) == 0);
    cr_assert(kvop_scan_next_key(&res, &key, &kl) && kl == 0);
    cr_assert_eq(kvop_scan_next_key(&res, &key, &kl), 0);
    CHECK_EXACT(scan_result, r, n);
    /* Without DEAD the dead list is bytes left over. */
    cr_assert_eq(kvop_scan_result_decode(r, n, 0, &res), TRELLIS_MALFORMED);

    /* By hashes, and counts. */
    kvop_scan_result_head(r, 0, 3, 1);
    p = r + KVOP_SCAN_RESULT;
    p[0] = 1;
    p[1] = p[2] = p[3] = 0;
    p = kvop_scan_put_hash(p + 4, 0xabcdef, 1);
    n = (size_t)(p - r);
    result_flags = KVOP_SCAN_HASHES;
    cr_assert_eq(kvop_scan_result_decode(r, n, result_flags, &res), TRELLIS_OK);
    uint64_t h;
    int vol;
    cr_assert(res.done && kvop_scan_next_hash(&res, &h, &vol) && h == 0xabcdef && vol == 1);
    CHECK_EXACT(scan_result, r, n);
    p = r + KVOP_SCAN_RESULT;
    memset(p, 0, 16);
    p[0] = 7;
    p[8] = 2;
    result_flags = KVOP_SCAN_COUNT_ONLY;
    cr_assert_eq(kvop_scan_result_decode(r, KVOP_SCAN_RESULT + 16, result_flags, &res), TRELLIS_OK);
    cr_assert(res.total == 7 && res.volatile_keys == 2);
    CHECK_EXACT(scan_result, r, KVOP_SCAN_RESULT + 16);
}

/* Random bytes of every length decode or fail without reading past them
 * (AddressSanitizer watches the copies, each allocated to its length). */
Test(kvop, random_bytes)
{
    trand r;
    trand_begin(&r, "kvop_random");
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)trand_below(&r, 96);
        uint8_t *v = malloc(n ? n : 1);
        trand_bytes(&r, v, n);
        if (n && trand_chance(&r, 50))
            v[0] &= 0x0f;
        uint64_t a, b;
        int c, d;
        int64_t e;
        kvop_put_ex px;
        kvop_map_set ms;
        kvop_scan sc;
        kvop_scan_result sr;
        kvop_expire_arg_decode(v, n, &a, &b, &c);
        kvop_expire_result_decode(v, n, &a, &c);
        kvop_head_result_decode(v, n, &a);
        kvop_put_ex_decode(v, n, &px);
        kvop_put_ex_result_decode(v, n, &a, &d, &e);
        if (kvop_map_set_decode(v, n, &ms) == TRELLIS_OK) {
            const uint8_t *x, *y;
            size_t xl, yl;
            while (kvop_map_next(&ms, &x, &xl, &y, &yl))
                ;
        }
        kvop_scan_decode(v, n, &sc);
        for (unsigned f = 0; f <= KVOP_SCAN_FLAGS; f++)
            if (kvop_scan_result_decode(v, n, f, &sr) == TRELLIS_OK) {
                const uint8_t *k;
                size_t kl;
                while (kvop_scan_next_key(&sr, &k, &kl) || kvop_scan_next_hash(&sr, &a, &c))
                    ;
                for (uint32_t j = 0; j < sr.ndead; j++)
                    kvop_scan_dead_at(&sr, j);
            }
        free(v);
    }
}

static int gm(const char *p, const char *s)
{
    return glob_match((const uint8_t *)p, strlen(p), (const uint8_t *)s, strlen(s), 0);
}

/* Redis's stringmatchlen cases (KEYS, SCAN MATCH). */
Test(kvop, glob)
{
    cr_assert(gm("*", "") && gm("*", "anything") && gm("", "") && !gm("", "a"));
    cr_assert(gm("h?llo", "hello") && gm("h?llo", "hallo") && !gm("h?llo", "hllo"));
    cr_assert(gm("h*llo", "hllo") && gm("h*llo", "heeeello") && !gm("h*llo", "hello!"));
    cr_assert(gm("h[ae]llo", "hello") && gm("h[ae]llo", "hallo") && !gm("h[ae]llo", "hillo"));
    cr_assert(gm("h[^e]llo", "hallo") && !gm("h[^e]llo", "hello"));
    cr_assert(gm("h[a-b]llo", "hbllo") && !gm("h[a-b]llo", "hcllo") && gm("h[b-a]llo", "hallo"));
    cr_assert(gm("h\\*llo", "h*llo") && !gm("h\\*llo", "hello"));
    cr_assert(gm("[\\]]", "]") && gm("a\\", "a") == 0 && gm("key:1??", "key:123"));
    cr_assert(gm("*a*b*c*", "xxaxxbxxcxx") && !gm("*a*b*c*", "xxaxxcxxbxx"));
    cr_assert(gm("[abc", "a"), "an unclosed class takes the rest of the pattern");
    cr_assert(glob_match((const uint8_t *)"MAX*", 4, (const uint8_t *)"maxmemory", 9, 1));
    cr_assert(!glob_match((const uint8_t *)"MAX*", 4, (const uint8_t *)"maxmemory", 9, 0));
    const uint8_t bin[] = {'k', 0, 'x'};
    cr_assert(glob_match((const uint8_t *)"k?x", 3, bin, 3, 0), "binary-safe");
    /* A pattern of many stars against a long string ends at once. */
    char star[201], s[2001];
    memset(star, '*', 200);
    star[200] = 0;
    star[199] = 'b';
    memset(s, 'a', 2000);
    s[2000] = 0;
    cr_assert(!gm(star, s));
}

/* Redis's times to deadlines: relative and absolute, in s and ms; a time
 * at or before now expires at once (1); overflow is refused. */
Test(kvop, deadlines)
{
    uint64_t now = 1800000000000ull, d = 7;
    cr_assert_eq(kvop_deadline_ms(now, KVOP_IN_S, 10, &d), 0);
    cr_assert_eq(d, now + 10000);
    cr_assert_eq(kvop_deadline_ms(now, KVOP_IN_MS, 10, &d), 0);
    cr_assert_eq(d, now + 10);
    cr_assert_eq(kvop_deadline_ms(now, KVOP_AT_S, 1900000000, &d), 0);
    cr_assert_eq(d, 1900000000000ull);
    cr_assert_eq(kvop_deadline_ms(now, KVOP_AT_MS, 5, &d), 0);
    cr_assert_eq(d, 5);
    for (int unit = KVOP_IN_S; unit <= KVOP_AT_MS; unit++) {
        cr_assert_eq(kvop_deadline_ms(now, unit, 0, &d), 0);
        cr_assert_eq(d, 1, "unit %d: a time of 0 expires at once", unit);
        cr_assert_eq(kvop_deadline_ms(now, unit, -5, &d), 0);
        cr_assert_eq(d, 1, "unit %d: a negative time expires at once", unit);
    }
    d = 7;
    cr_assert_eq(kvop_deadline_ms(now, KVOP_IN_S, INT64_MAX / 1000 + 1, &d), -1);
    cr_assert_eq(kvop_deadline_ms(now, KVOP_AT_S, INT64_MIN / 1000 - 1, &d), -1);
    cr_assert_eq(kvop_deadline_ms(UINT64_MAX - 5, KVOP_IN_MS, 6, &d), -1);
    cr_assert_eq(d, 7, "a refused time leaves *out alone");
    cr_assert_eq(kvop_deadline_ms(UINT64_MAX - 5, KVOP_IN_MS, 5, &d), 0);
    cr_assert_eq(d, UINT64_MAX);
}
