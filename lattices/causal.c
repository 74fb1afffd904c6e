/*
 * causal.c - CAUSAL, the multi-value register with a dotted version
 * vector: n u32, n x (writer u64, counter u64) - the clock, writers strictly
 * increasing, counters >= 1 - then m u32, m x (writer u64, counter u64,
 * string value), strictly increasing by dot (writer, counter), every dot
 * covered by the clock.
 *
 * Per dot a state is unknown (not covered), present with a value, or
 * removed (covered, absent); merge is the per-dot join of the flat lattice
 * unknown < present(v) < removed, where two different values at one dot
 * join to removed, and the per-writer maximum of the clocks.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* The sections of a valid state. */
typedef struct causal_view {
    uint32_t n;            /* clock entries */
    const uint8_t *clock;  /* n x (writer, counter) */
    uint32_t m;            /* values */
    const uint8_t *values; /* m x (writer, counter, string) */
    const uint8_t *end;
} causal_view;

/* Locates the sections of a valid state. */
static causal_view view_of(const uint8_t *buf, size_t len)
{
    causal_view v;
    v.n = lat_get_u32(buf);
    v.clock = buf + LAT_U32_SIZE;
    v.m = lat_get_u32(v.clock + (size_t)v.n * LAT_CAUSAL_CLOCK);
    v.values = v.clock + (size_t)v.n * LAT_CAUSAL_CLOCK + LAT_U32_SIZE;
    v.end = buf + len;
    return v;
}

/* The clock entry of writer, moving *cur forward through a clock ending at
 * end; writers must be asked in non-decreasing order. 0 when absent. */
static uint64_t clock_seek(const uint8_t **cur, const uint8_t *end, uint64_t writer)
{
    while (*cur < end && lat_get_u64(*cur) < writer)
        *cur += LAT_CAUSAL_CLOCK;
    if (*cur < end && lat_get_u64(*cur) == writer)
        return lat_get_u64(*cur + LAT_U64_SIZE);
    return 0;
}

/* TRELLIS_OK for a canonical CAUSAL, TRELLIS_MALFORMED otherwise. Dots
 * must have counter >= 1, like clock entries: a dot (w, 0) would count as
 * seen by every state. */
int lat__causal_validate(const uint8_t *buf, size_t len)
{
    lat_rd r = lat_rd_make(buf, len);
    uint32_t n, m;
    if (!lat_rd_count(&r, LAT_CAUSAL_CLOCK, &n))
        return TRELLIS_MALFORMED;
    const uint8_t *clock = r.p + r.pos, *clock_end = clock + (size_t)n * LAT_CAUSAL_CLOCK;
    uint64_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* lat_rd_count checked the room for all n entries */
        const uint8_t *e = clock + (size_t)i * LAT_CAUSAL_CLOCK;
        uint64_t writer = lat_get_u64(e);
        if ((i > 0 && writer <= last) || lat_get_u64(e + LAT_U64_SIZE) == 0)
            return TRELLIS_MALFORMED;
        last = writer;
    }
    r.pos += (size_t)n * LAT_CAUSAL_CLOCK;
    if (!lat_rd_count(&r, LAT_CAUSAL_VALUE, &m))
        return TRELLIS_MALFORMED;
    const uint8_t *cur = clock;
    uint64_t last_w = 0, last_c = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint64_t writer, counter;
        lat_slice value;
        if (!lat_rd_u64(&r, &writer) || !lat_rd_u64(&r, &counter) || !lat_rd_str(&r, &value))
            return TRELLIS_MALFORMED;
        if (i > 0 && (writer < last_w || (writer == last_w && counter <= last_c)))
            return TRELLIS_MALFORMED;
        if (counter == 0 || counter > clock_seek(&cur, clock_end, writer))
            return TRELLIS_MALFORMED;
        last_w = writer;
        last_c = counter;
    }
    return lat_rd_left(&r) == 0 ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* A value record of a valid state, parsed in place. */
typedef struct causal_val {
    uint64_t writer, counter;
    lat_slice value;
    const uint8_t *start, *end;
} causal_val;

/* Parses the value record at p of a valid state. */
static causal_val val_at(const uint8_t *p)
{
    causal_val v;
    v.start = p;
    v.writer = lat_get_u64(p);
    v.counter = lat_get_u64(p + LAT_U64_SIZE);
    p += 2 * LAT_U64_SIZE;
    v.value = lat_take_str(&p);
    v.end = p;
    return v;
}

/* <0, 0, >0 as a's dot sorts before, equal to or after b's. */
static int dot_cmp(const causal_val *a, const causal_val *b)
{
    int c = lat_u64_cmp(a->writer, b->writer);
    return c != 0 ? c : lat_u64_cmp(a->counter, b->counter);
}

/* Writes the per-writer maximum of two clocks at w; returns the cursor past
 * it and the entry count in *n. */
static uint8_t *merge_clocks(uint8_t *w, const causal_view *a, const causal_view *b, uint64_t *n)
{
    const uint8_t *ca = a->clock, *cb = b->clock;
    const uint8_t *ea = ca + (size_t)a->n * LAT_CAUSAL_CLOCK;
    const uint8_t *eb = cb + (size_t)b->n * LAT_CAUSAL_CLOCK;
    *n = 0;
    while (ca < ea && cb < eb) {
        uint64_t wa = lat_get_u64(ca), wb = lat_get_u64(cb);
        if (wa < wb) {
            w = lat_write_bytes(w, ca, LAT_CAUSAL_CLOCK);
            ca += LAT_CAUSAL_CLOCK;
        } else if (wa > wb) {
            w = lat_write_bytes(w, cb, LAT_CAUSAL_CLOCK);
            cb += LAT_CAUSAL_CLOCK;
        } else {
            uint64_t xa = lat_get_u64(ca + LAT_U64_SIZE), xb = lat_get_u64(cb + LAT_U64_SIZE);
            w = lat_write_bytes(w, xa >= xb ? ca : cb, LAT_CAUSAL_CLOCK);
            ca += LAT_CAUSAL_CLOCK;
            cb += LAT_CAUSAL_CLOCK;
        }
        (*n)++;
    }
    *n += (uint64_t)(ea - ca) / LAT_CAUSAL_CLOCK + (uint64_t)(eb - cb) / LAT_CAUSAL_CLOCK;
    w = lat_write_bytes(w, ca, (size_t)(ea - ca));
    return lat_write_bytes(w, cb, (size_t)(eb - cb));
}

/* Appends the merge: the clocks' maximum, then the values that survive -
 * a value only one side has survives if the other has not seen its dot, a
 * value both have survives if the bytes agree. Returns TRELLIS_OK,
 * TRELLIS_TOO_LARGE past a u32 count, TRELLIS_INTERNAL on OOM. */
int lat__causal_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (alen > SIZE_MAX - blen || lat_buf_reserve(out, alen + blen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    causal_view va = view_of(a, alen), vb = view_of(b, blen);
    uint8_t *start = out->data + out->len, *w;
    uint64_t n, m = 0;
    w = merge_clocks(start + LAT_U32_SIZE, &va, &vb, &n);
    uint8_t *m_at = w;
    w += LAT_U32_SIZE;

    /* Cursors into the other side's clock, for a's and for b's values. */
    const uint8_t *ka = va.clock, *kb = vb.clock;
    const uint8_t *ka_end = ka + (size_t)va.n * LAT_CAUSAL_CLOCK;
    const uint8_t *kb_end = kb + (size_t)vb.n * LAT_CAUSAL_CLOCK;
    const uint8_t *pa = va.values, *pb = vb.values;
    while (pa < va.end || pb < vb.end) {
        causal_val x = {0}, y = {0};
        if (pa < va.end)
            x = val_at(pa);
        if (pb < vb.end)
            y = val_at(pb);
        int c = pa >= va.end ? 1 : pb >= vb.end ? -1 : dot_cmp(&x, &y);
        int keep;
        if (c < 0)
            keep = x.counter > clock_seek(&kb, kb_end, x.writer);
        else if (c > 0)
            keep = y.counter > clock_seek(&ka, ka_end, y.writer);
        else
            keep = lat_bytes_cmp(x.value.data, x.value.len, y.value.data, y.value.len) == 0;
        if (keep) {
            const causal_val *k = c <= 0 ? &x : &y;
            w = lat_write_bytes(w, k->start, (size_t)(k->end - k->start));
            m++;
        }
        if (c <= 0)
            pa = x.end;
        if (c >= 0)
            pb = y.end;
    }
    if (n > LAT_MAX_U32 || m > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    lat_put_u32(start, (uint32_t)n);
    lat_put_u32(m_at, (uint32_t)m);
    out->len = (size_t)(w - out->data);
    return TRELLIS_OK;
}

/* The order of the per-dot lattice has no cheaper walk than the merge
 * itself. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
int lat__causal_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                        lat_order *out)
{
    return lat__compare_by_merge(LAT_CAUSAL, a, alen, b, blen, out);
}

/* 1 when the state holds no value. */
int lat__causal_is_empty(const uint8_t *buf, size_t len)
{
    return view_of(buf, len).m == 0;
}

/* A write with the dot (writer, counter) over the clock of observed (valid,
 * or NULL/0): the observed clock with writer's entry raised to counter, and
 * the one value, or none for a delete. out may alias observed or value.
 * Returns TRELLIS_OK; TRELLIS_INVALID for counter 0, a counter not above
 * observed's entry for writer, a NULL value with vlen > 0, or a
 * delete_only write with a value; TRELLIS_TOO_LARGE for a value beyond
 * u32 or a full clock; TRELLIS_INTERNAL on OOM. */
int lat_causal_put(const uint8_t *observed, size_t olen, uint64_t writer, uint64_t counter,
                   const void *value, size_t vlen, int delete_only, lat_buf *out)
{
    if (counter == 0 || (value == NULL && vlen > 0) || (delete_only && vlen > 0))
        return TRELLIS_INVALID;
    if (vlen > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    static const uint8_t empty[2 * LAT_U32_SIZE] = {0};
    if (observed == NULL || olen == 0) {
        observed = empty;
        olen = sizeof empty;
    }
    causal_view v = view_of(observed, olen);
    const uint8_t *cur = v.clock, *clock_end = v.clock + (size_t)v.n * LAT_CAUSAL_CLOCK;
    if (clock_seek(&cur, clock_end, writer) >= counter)
        return TRELLIS_INVALID;
    int replace = cur < clock_end && lat_get_u64(cur) == writer;
    if (!replace && v.n == LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;

    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, observed, olen, value, vlen);
    size_t size = 2 * LAT_U32_SIZE + ((size_t)v.n + !replace) * LAT_CAUSAL_CLOCK +
                  (delete_only ? 0 : LAT_CAUSAL_VALUE + vlen);
    int rc = lat_buf_reserve(dst, size);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u32(w, v.n + !replace);
        w = lat_write_bytes(w + LAT_U32_SIZE, v.clock, (size_t)(cur - v.clock));
        lat_put_u64(w, writer);
        lat_put_u64(w + LAT_U64_SIZE, counter);
        w += LAT_CAUSAL_CLOCK;
        if (replace)
            cur += LAT_CAUSAL_CLOCK;
        w = lat_write_bytes(w, cur, (size_t)(clock_end - cur));
        lat_put_u32(w, delete_only ? 0 : 1);
        w += LAT_U32_SIZE;
        if (!delete_only) {
            lat_put_u64(w, writer);
            lat_put_u64(w + LAT_U64_SIZE, counter);
            w = lat_write_str(w + 2 * LAT_U64_SIZE, value, vlen);
        }
        dst->len = (size_t)(w - dst->data);
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* The number of clock entries of a valid CAUSAL. */
size_t lat_causal_clock_count(const uint8_t *buf, size_t len)
{
    (void)len;
    return lat_get_u32(buf);
}

/* The i-th clock entry in writer order; {0, 0} past the end. */
lat_dot lat_causal_clock_at(const uint8_t *buf, size_t len, size_t i)
{
    (void)len;
    lat_dot d = {0, 0};
    if (i < lat_get_u32(buf)) {
        const uint8_t *e = buf + LAT_U32_SIZE + i * LAT_CAUSAL_CLOCK;
        d.writer = lat_get_u64(e);
        d.counter = lat_get_u64(e + LAT_U64_SIZE);
    }
    return d;
}

/* The clock entry of writer, 0 when absent: a binary search. */
uint64_t lat_causal_clock_get(const uint8_t *buf, size_t len, uint64_t writer)
{
    (void)len;
    size_t lo = 0, hi = lat_get_u32(buf);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = buf + LAT_U32_SIZE + mid * LAT_CAUSAL_CLOCK;
        uint64_t w = lat_get_u64(e);
        if (w == writer)
            return lat_get_u64(e + LAT_U64_SIZE);
        if (w < writer)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Iterates the values of a valid CAUSAL in dot order: *pos starts at 0,
 * then holds the byte offset of the next value. Returns 1 and fills *value
 * (pointing into buf) and *dot (if not NULL) while there is one, 0 at the
 * end. */
int lat_causal_next(const uint8_t *buf, size_t len, size_t *pos, lat_dot *dot, lat_slice *value)
{
    if (*pos == 0)
        *pos = (size_t)(view_of(buf, len).values - buf);
    if (*pos >= len)
        return 0;
    causal_val v = val_at(buf + *pos);
    if (dot != NULL) {
        dot->writer = v.writer;
        dot->counter = v.counter;
    }
    *value = v.value;
    *pos = (size_t)(v.end - buf);
    return 1;
}

/* The number of values of a valid CAUSAL. */
size_t lat_causal_count(const uint8_t *buf, size_t len)
{
    return view_of(buf, len).m;
}
