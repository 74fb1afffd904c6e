/*
 * counter.c - COUNTER, a PN-counter of per-writer cumulative totals:
 * count u32, then count x (writer u64, inc u64, dec u64), writers strictly
 * increasing, no (0, 0) entry. Merge keeps per writer the maximum inc and
 * the maximum dec; the value is sum(inc) - sum(dec), wrapping.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* Fields of the entry at e of a valid state. */
static uint64_t ent_writer(const uint8_t *e)
{
    return lat_get_u64(e);
}

static uint64_t ent_inc(const uint8_t *e)
{
    return lat_get_u64(e + LAT_U64_SIZE);
}

static uint64_t ent_dec(const uint8_t *e)
{
    return lat_get_u64(e + 2 * LAT_U64_SIZE);
}

/* TRELLIS_OK for a canonical COUNTER, TRELLIS_MALFORMED otherwise. */
int lat__counter_validate(const uint8_t *buf, size_t len)
{
    lat_rd r = lat_rd_make(buf, len);
    uint32_t count;
    uint64_t last = 0;
    if (!lat_rd_count(&r, LAT_COUNTER_ENTRY, &count))
        return TRELLIS_MALFORMED;
    if (lat_rd_left(&r) != (size_t)count * LAT_COUNTER_ENTRY)
        return TRELLIS_MALFORMED;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = r.p + r.pos + (size_t)i * LAT_COUNTER_ENTRY;
        uint64_t writer = ent_writer(e);
        if ((i > 0 && writer <= last) || (ent_inc(e) == 0 && ent_dec(e) == 0))
            return TRELLIS_MALFORMED;
        last = writer;
    }
    return TRELLIS_OK;
}

/* Appends the per-writer maximum, one sorted walk. Returns TRELLIS_OK,
 * TRELLIS_TOO_LARGE past a u32 count, TRELLIS_INTERNAL on OOM. */
int lat__counter_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (alen > SIZE_MAX - blen || lat_buf_reserve(out, alen + blen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    const uint8_t *ea = a + LAT_U32_SIZE, *eb = b + LAT_U32_SIZE;
    const uint8_t *enda = a + alen, *endb = b + blen;
    uint8_t *start = out->data + out->len, *w = start + LAT_U32_SIZE;
    while (ea < enda && eb < endb) {
        uint64_t wa = ent_writer(ea), wb = ent_writer(eb);
        if (wa < wb) {
            w = lat_write_bytes(w, ea, LAT_COUNTER_ENTRY);
            ea += LAT_COUNTER_ENTRY;
        } else if (wa > wb) {
            w = lat_write_bytes(w, eb, LAT_COUNTER_ENTRY);
            eb += LAT_COUNTER_ENTRY;
        } else {
            lat_put_u64(w, wa);
            lat_put_u64(w + LAT_U64_SIZE, lat_max_u64(ent_inc(ea), ent_inc(eb)));
            lat_put_u64(w + 2 * LAT_U64_SIZE, lat_max_u64(ent_dec(ea), ent_dec(eb)));
            w += LAT_COUNTER_ENTRY;
            ea += LAT_COUNTER_ENTRY;
            eb += LAT_COUNTER_ENTRY;
        }
    }
    w = lat_write_bytes(w, ea, (size_t)(enda - ea));
    w = lat_write_bytes(w, eb, (size_t)(endb - eb));
    size_t n = (size_t)(w - start - LAT_U32_SIZE) / LAT_COUNTER_ENTRY;
    if (n > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    lat_put_u32(start, (uint32_t)n);
    out->len = (size_t)(w - out->data);
    return TRELLIS_OK;
}

/* Per-writer dominance walk. Always TRELLIS_OK. */
int lat__counter_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                         lat_order *out)
{
    const uint8_t *ea = a + LAT_U32_SIZE, *eb = b + LAT_U32_SIZE;
    const uint8_t *enda = a + alen, *endb = b + blen;
    int a_le_b = 1, b_le_a = 1;
    while (ea < enda && eb < endb && (a_le_b || b_le_a)) {
        uint64_t wa = ent_writer(ea), wb = ent_writer(eb);
        if (wa < wb) {
            a_le_b = 0;
            ea += LAT_COUNTER_ENTRY;
        } else if (wa > wb) {
            b_le_a = 0;
            eb += LAT_COUNTER_ENTRY;
        } else {
            uint64_t ia = ent_inc(ea), ib = ent_inc(eb), da = ent_dec(ea), db = ent_dec(eb);
            if (ia > ib || da > db)
                a_le_b = 0;
            if (ib > ia || db > da)
                b_le_a = 0;
            ea += LAT_COUNTER_ENTRY;
            eb += LAT_COUNTER_ENTRY;
        }
    }
    if (ea < enda)
        a_le_b = 0;
    if (eb < endb)
        b_le_a = 0;
    *out = lat__order_from(a_le_b, b_le_a);
    return TRELLIS_OK;
}

/* A COUNTER always reads as a number. */
int lat__counter_is_empty(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 0;
}

/* Writes a one-entry COUNTER (or the empty one for (0, 0)) into out,
 * replacing its contents. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
static int write_single(uint64_t writer, uint64_t inc, uint64_t dec, lat_buf *out)
{
    uint8_t enc[LAT_U32_SIZE + LAT_COUNTER_ENTRY];
    int n = !(inc == 0 && dec == 0);
    lat_put_u32(enc, (uint32_t)n);
    lat_put_u64(enc + LAT_U32_SIZE, writer);
    lat_put_u64(enc + LAT_U32_SIZE + LAT_U64_SIZE, inc);
    lat_put_u64(enc + LAT_U32_SIZE + 2 * LAT_U64_SIZE, dec);
    return lat__buf_append(out, enc, n ? sizeof enc : LAT_U32_SIZE);
}

/* A delta holding one writer's cumulative totals ((0, 0) gives the empty
 * COUNTER). TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
int lat_counter_encode(uint64_t writer, uint64_t inc, uint64_t dec, lat_buf *out)
{
    out->len = 0;
    return write_single(writer, inc, dec, out);
}

/* The signed, wrapping sum of a valid COUNTER (0 for NULL). */
int64_t lat_counter_value(const uint8_t *buf, size_t len)
{
    uint64_t sum = 0;
    if (buf == NULL || len < LAT_U32_SIZE)
        return 0;
    for (const uint8_t *e = buf + LAT_U32_SIZE; e < buf + len; e += LAT_COUNTER_ENTRY)
        sum += ent_inc(e) - ent_dec(e);
    return lat_u64_to_i64(sum);
}

/* The totals of writer in a valid COUNTER (or NULL), (0, 0) when absent: a
 * binary search over the fixed-size entries. */
void lat_counter_entry(const uint8_t *buf, size_t len, uint64_t writer, uint64_t *inc,
                       uint64_t *dec)
{
    (void)len;
    size_t lo = 0, hi = buf == NULL || len < LAT_U32_SIZE ? 0 : lat_get_u32(buf);
    *inc = 0;
    *dec = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = buf + LAT_U32_SIZE + mid * LAT_COUNTER_ENTRY;
        uint64_t w = ent_writer(e);
        if (w == writer) {
            *inc = ent_inc(e);
            *dec = ent_dec(e);
            return;
        }
        if (w < writer)
            lo = mid + 1;
        else
            hi = mid;
    }
}

/* splitmix64's finaliser: a bijection, so distinct ts give distinct ids. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* See lat_delete_delta: one entry for the id writer ^ mix64(ts) whose
 * totals, once merged, bring the observed sum s to zero. Totals only grow,
 * so the entry raises dec by s when s > 0 and inc by -s when s < 0; modulo
 * 2^64 either is the same change of the sum, so the other serves if one
 * would wrap. Should both wrap, the next id writer ^ mix64(ts + k) is tried:
 * at most count of those are in the state. Appends to out; TRELLIS_OK or
 * TRELLIS_INTERNAL on OOM. */
int lat__counter_delete(const uint8_t *state, size_t slen, uint64_t writer, uint64_t ts,
                        lat_buf *out)
{
    uint64_t s = (uint64_t)lat_counter_value(state, slen);
    uint64_t count = state == NULL || slen < LAT_U32_SIZE ? 0 : lat_get_u32(state);
    int negative = lat_u64_to_i64(s) < 0;
    if (s == 0)
        return write_single(0, 0, 0, out);
    for (uint64_t k = 0; k <= count; k++) {
        uint64_t id = writer ^ mix64(ts + k), inc, dec;
        lat_counter_entry(state, slen, id, &inc, &dec);
        uint64_t up_dec = dec + s, up_inc = inc - s;
        int dec_ok = up_dec > dec, inc_ok = up_inc > inc; /* s != 0: no wrap */
        if (dec_ok && (!negative || !inc_ok))
            return write_single(id, inc, up_dec, out);
        if (inc_ok)
            return write_single(id, up_inc, dec, out);
    }
    return TRELLIS_INTERNAL; /* unreachable: some id among count + 1 is absent */
}
