/*
 * ref.c - the reference decoder (see ref.h): a cursor that turns sticky-bad
 * when it runs out of bytes, and the rules of docs/lattices.md checked one
 * by one on the parsed values.
 */
#include "ref.h"

typedef struct cur {
    const uint8_t *p;
    size_t n, i;
    int ok;
} cur;

/* Reads a k-byte big-endian integer; 0 and ok = 0 when bytes run out. */
static uint64_t take(cur *c, size_t k)
{
    uint64_t v = 0;
    if (!c->ok || c->n - c->i < k) {
        c->ok = 0;
        return 0;
    }
    for (size_t j = 0; j < k; j++)
        v = v << 8 | c->p[c->i + j];
    c->i += k;
    return v;
}

typedef struct str {
    const uint8_t *p;
    uint64_t n;
} str;

static str take_str(cur *c)
{
    str s = {0, 0};
    uint64_t n = take(c, 4);
    if (!c->ok || c->n - c->i < n) {
        c->ok = 0;
        return s;
    }
    s.p = c->p + c->i;
    s.n = n;
    c->i += n;
    return s;
}

/* Byte order: the first differing byte decides, else the shorter first. */
static int str_less(str a, str b)
{
    for (uint64_t j = 0; j < a.n && j < b.n; j++) {
        if (a.p[j] != b.p[j])
            return a.p[j] < b.p[j];
    }
    return a.n < b.n;
}

static int done(const cur *c)
{
    return c->ok && c->i == c->n;
}

static int ref_set(cur *c)
{
    uint64_t count = take(c, 4);
    str prev = {0, 0};
    for (uint64_t k = 0; k < count && c->ok; k++) {
        str s = take_str(c);
        if (c->ok && k > 0 && !str_less(prev, s))
            return 0;
        prev = s;
    }
    return done(c);
}

static int ref_orset(cur *c)
{
    uint64_t count = take(c, 4);
    str prev = {0, 0};
    for (uint64_t k = 0; k < count && c->ok; k++) {
        str s = take_str(c);
        if (c->ok && k > 0 && !str_less(prev, s))
            return 0;
        prev = s;
        uint64_t n = take(c, 4), last = 0;
        if (c->ok && n == 0)
            return 0;
        for (uint64_t j = 0; j < n && c->ok; j++) {
            uint64_t w = take(c, 8), add = take(c, 8), rm = take(c, 8);
            if (c->ok && ((j > 0 && w <= last) || (add == 0 && rm == 0)))
                return 0;
            last = w;
        }
    }
    return done(c);
}

static int ref_counter(cur *c)
{
    uint64_t count = take(c, 4), last = 0;
    for (uint64_t k = 0; k < count && c->ok; k++) {
        uint64_t w = take(c, 8), inc = take(c, 8), dec = take(c, 8);
        if (c->ok && ((k > 0 && w <= last) || (inc == 0 && dec == 0)))
            return 0;
        last = w;
    }
    return done(c);
}

/* The clock entry of writer w in the n-entry clock starting at byte off. */
static uint64_t clock_of(const uint8_t *p, size_t off, uint64_t n, uint64_t w)
{
    cur c = {p, off + n * 16, off, 1};
    for (uint64_t k = 0; k < n; k++) {
        uint64_t cw = take(&c, 8), cc = take(&c, 8);
        if (cw == w)
            return cc;
    }
    return 0;
}

static int ref_causal(cur *c)
{
    uint64_t n = take(c, 4), last = 0;
    size_t clock_at = c->i;
    for (uint64_t k = 0; k < n && c->ok; k++) {
        uint64_t w = take(c, 8), counter = take(c, 8);
        if (c->ok && ((k > 0 && w <= last) || counter == 0))
            return 0;
        last = w;
    }
    uint64_t m = take(c, 4), lw = 0, lc = 0;
    for (uint64_t k = 0; k < m && c->ok; k++) {
        uint64_t w = take(c, 8), counter = take(c, 8);
        take_str(c);
        if (!c->ok)
            break;
        if (k > 0 && (w < lw || (w == lw && counter <= lc)))
            return 0;
        if (counter == 0 || counter > clock_of(c->p, clock_at, n, w))
            return 0;
        lw = w;
        lc = counter;
    }
    return done(c);
}

/* MAP: docs/lattices.md, with the limits of lattice.h. */
static int ref_map(cur *c)
{
    uint64_t count = take(c, 4);
    str prev = {0, 0};
    if (count > LAT_MAP_MAX_FIELDS)
        return 0;
    for (uint64_t k = 0; k < count && c->ok; k++) {
        str name = take_str(c);
        if (!c->ok)
            break;
        if ((k > 0 && !str_less(prev, name)) || name.n > LAT_MAP_MAX_FIELD_BYTES)
            return 0;
        prev = name;
        uint64_t nl = take(c, 4), last = 0;
        for (uint64_t j = 0; j < nl && c->ok; j++) {
            uint64_t w = take(c, 8), add = take(c, 8), rm = take(c, 8);
            str v = take_str(c);
            if (!c->ok)
                break;
            if ((j > 0 && w <= last) || add == 0 || rm > add || (rm == add && v.n > 0) ||
                name.n + v.n > LAT_MAP_MAX_FIELD_BYTES)
                return 0;
            last = w;
        }
        uint64_t nc = take(c, 4);
        last = 0;
        if (c->ok && nl + nc == 0)
            return 0;
        for (uint64_t j = 0; j < nc && c->ok; j++) {
            uint64_t w = take(c, 8), inc = take(c, 8), dec = take(c, 8);
            uint64_t rinc = take(c, 8), rdec = take(c, 8);
            if (c->ok &&
                ((j > 0 && w <= last) || (inc == 0 && dec == 0) || rinc > inc || rdec > dec))
                return 0;
            last = w;
        }
    }
    return done(c);
}

int ref_validate(lat_type t, const uint8_t *p, size_t n)
{
    cur c = {p, p ? n : 0, 0, p != NULL};
    int ok = 0;
    switch (t) {
    case LAT_LWW:
        ok = n >= 17 && (p[16] == 0 || (p[16] == 1 && n == 17));
        break;
    case LAT_SET:
        ok = ref_set(&c);
        break;
    case LAT_ORSET:
        ok = ref_orset(&c);
        break;
    case LAT_COUNTER:
        ok = ref_counter(&c);
        break;
    case LAT_MAX:
        ok = n == 8;
        break;
    case LAT_CAUSAL:
        ok = ref_causal(&c);
        break;
    case LAT_PRIORITY:
        ok = n >= 16;
        break;
    case LAT_MAP:
        ok = ref_map(&c);
        break;
    default:
        break;
    }
    return p != NULL && ok ? TRELLIS_OK : TRELLIS_MALFORMED;
}

int ref_tagged_validate(const uint8_t *p, size_t n)
{
    if (p == NULL || n < 1)
        return TRELLIS_MALFORMED;
    if (p[0] >= LAT_TYPE_FIRST && p[0] <= LAT_TYPE_LAST)
        return ref_validate((lat_type)p[0], p + 1, n - 1);
    cur c = {p, n, 1, 1};
    int epoch = p[0] == 0x81 || p[0] == 0x83 || p[0] == 0x85;
    int ttl = p[0] == 0x82 || p[0] == 0x83;
    int tomb = p[0] == 0x85;
    if (!epoch && !ttl)
        return TRELLIS_MALFORMED;
    if (epoch) {
        uint64_t e = take(&c, 8);
        if (e == 0 || e > UINT64_MAX / 2)
            return TRELLIS_MALFORMED;
    }
    if (ttl && take(&c, 8) == 0)
        return TRELLIS_MALFORMED; /* stamp 0 */
    if (ttl)
        take(&c, 8);
    if (tomb) {
        take(&c, 8);
        return done(&c) ? TRELLIS_OK : TRELLIS_MALFORMED;
    }
    uint64_t t = take(&c, 1);
    if (!c.ok)
        return TRELLIS_MALFORMED;
    if (t == 0)
        return ttl && done(&c) ? TRELLIS_OK : TRELLIS_MALFORMED;
    if (t > LAT_TYPE_LAST)
        return TRELLIS_MALFORMED;
    return ref_validate((lat_type)t, p + c.i, n - c.i);
}
