/*
 * map.c - MAP, a map of lattices: field name -> an LWW part and a COUNTER
 * part, with observed-remove of fields (add-wins).
 *
 * Encoding: count u32, then count field records strictly increasing by
 * name; a record is (string name, nl u32, nl x LWW entry, nc u32, nc x
 * COUNTER entry) with nl + nc >= 1 and each list strictly increasing by
 * writer:
 *   LWW entry     writer u64, add u64, rm u64, string value
 *                 add >= 1, rm <= add, value empty when rm == add
 *   COUNTER entry writer u64, inc u64, dec u64, rinc u64, rdec u64
 *                 (inc, dec) != (0, 0), rinc <= inc, rdec <= dec
 *
 * An LWW entry is one writer's latest value of the field, written at the
 * HLC stamp `add`; `rm` is the highest of that writer's stamps a remover
 * had observed. A COUNTER entry holds the writer's cumulative totals and,
 * in (rinc, rdec), the totals a remover had observed. An entry is live
 * while add > rm, or inc > rinc or dec > rdec; a field is present while
 * one of its entries is live. Merge: per name, per writer, the maximum of
 * every mark (an LWW value follows the greater add, ties the greater
 * bytes), then at most LAT_MAP_MAX_FIELDS records, the smallest names.
 */

#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

#define MAP_LWW_FIXED   24 /* writer, add, rm */
#define MAP_LWW_MIN     (MAP_LWW_FIXED + LAT_U32_SIZE)
#define MAP_CTR_ENTRY   40                 /* writer, inc, dec, rinc, rdec */
#define MAP_FIELD_FIXED (3 * LAT_U32_SIZE) /* name length, nl, nc */
#define MAP_MIN_FIELD   (MAP_FIELD_FIXED + MAP_LWW_MIN)

/* A field record of a valid state, parsed in place. */
typedef struct map_rec {
    lat_slice name;
    uint32_t nl, nc;
    const uint8_t *lww, *lww_end; /* nl LWW entries */
    const uint8_t *ctr, *ctr_end; /* nc COUNTER entries; ctr_end ends the record */
} map_rec;

/* An LWW entry of a valid state, parsed in place. */
typedef struct map_lww {
    uint64_t writer, add, rm;
    lat_slice value;
    const uint8_t *end;
} map_lww;

static map_lww lww_at(const uint8_t *p)
{
    map_lww e;
    e.writer = lat_get_u64(p);
    e.add = lat_get_u64(p + LAT_U64_SIZE);
    e.rm = lat_get_u64(p + 2 * LAT_U64_SIZE);
    p += MAP_LWW_FIXED;
    e.value = lat_take_str(&p);
    e.end = p;
    return e;
}

/* The i-th u64 of the COUNTER entry at e: 0 writer, 1 inc, 2 dec, 3 rinc,
 * 4 rdec. */
static uint64_t ctr_get(const uint8_t *e, int i)
{
    return lat_get_u64(e + (size_t)i * LAT_U64_SIZE);
}

static int ctr_live(const uint8_t *e)
{
    return ctr_get(e, 1) > ctr_get(e, 3) || ctr_get(e, 2) > ctr_get(e, 4);
}

static map_rec rec_at(const uint8_t *p)
{
    map_rec r;
    r.name = lat_take_str(&p);
    r.nl = lat_get_u32(p);
    r.lww = p + LAT_U32_SIZE;
    p = r.lww;
    for (uint32_t i = 0; i < r.nl; i++)
        p = lww_at(p).end;
    r.lww_end = p;
    r.nc = lat_get_u32(p);
    r.ctr = p + LAT_U32_SIZE;
    r.ctr_end = r.ctr + (size_t)r.nc * MAP_CTR_ENTRY;
    return r;
}

/* ---- validation ------------------------------------------------------------ */

static int validate_lww(lat_rd *r, size_t name_len)
{
    uint32_t n;
    uint64_t last = 0;
    if (!lat_rd_count(r, MAP_LWW_MIN, &n))
        return -1;
    for (uint32_t j = 0; j < n; j++) {
        uint64_t writer, add, rm;
        lat_slice v;
        if (!lat_rd_u64(r, &writer) || !lat_rd_u64(r, &add) || !lat_rd_u64(r, &rm) ||
            !lat_rd_str(r, &v))
            return -1;
        if ((j > 0 && writer <= last) || add == 0 || rm > add || (rm == add && v.len > 0) ||
            v.len > LAT_MAP_MAX_FIELD_BYTES - name_len)
            return -1;
        last = writer;
    }
    return (int)(n > 0);
}

static int validate_ctr(lat_rd *r)
{
    uint32_t n;
    uint64_t last = 0;
    if (!lat_rd_count(r, MAP_CTR_ENTRY, &n))
        return -1;
    for (uint32_t j = 0; j < n; j++) {
        const uint8_t *e = r->p + r->pos + (size_t)j * MAP_CTR_ENTRY;
        uint64_t writer = ctr_get(e, 0), inc = ctr_get(e, 1), dec = ctr_get(e, 2);
        if ((j > 0 && writer <= last) || (inc == 0 && dec == 0) || ctr_get(e, 3) > inc ||
            ctr_get(e, 4) > dec)
            return -1;
        last = writer;
    }
    r->pos += (size_t)n * MAP_CTR_ENTRY;
    return (int)(n > 0);
}

/* TRELLIS_OK for a canonical MAP within the named limits, TRELLIS_MALFORMED
 * otherwise. */
int lat__map_validate(const uint8_t *buf, size_t len)
{
    lat_rd r = lat_rd_make(buf, len);
    uint32_t count;
    lat_slice prev = {NULL, 0}, name;
    if (!lat_rd_count(&r, MAP_MIN_FIELD, &count) || count > LAT_MAP_MAX_FIELDS)
        return TRELLIS_MALFORMED;
    for (uint32_t i = 0; i < count; i++) {
        if (!lat_rd_str(&r, &name) || name.len > LAT_MAP_MAX_FIELD_BYTES)
            return TRELLIS_MALFORMED;
        if (i > 0 && lat_bytes_cmp(prev.data, prev.len, name.data, name.len) >= 0)
            return TRELLIS_MALFORMED;
        prev = name;
        int nl = validate_lww(&r, name.len);
        if (nl < 0)
            return TRELLIS_MALFORMED;
        int nc = validate_ctr(&r);
        if (nc < 0 || nl + nc == 0)
            return TRELLIS_MALFORMED;
    }
    return lat_rd_left(&r) == 0 ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* ---- merge ----------------------------------------------------------------- */

/* Writes an LWW entry at w (the value dropped when rm == add) and returns
 * the cursor past it. */
static uint8_t *write_lww(uint8_t *w, uint64_t writer, uint64_t add, uint64_t rm, lat_slice v)
{
    lat_put_u64(w, writer);
    lat_put_u64(w + LAT_U64_SIZE, add);
    lat_put_u64(w + 2 * LAT_U64_SIZE, rm);
    if (rm >= add)
        v.len = 0;
    return lat_write_str(w + MAP_LWW_FIXED, v.data, v.len);
}

static uint8_t *write_ctr(uint8_t *w, uint64_t writer, uint64_t inc, uint64_t dec, uint64_t rinc,
                          uint64_t rdec)
{
    lat_put_u64(w, writer);
    lat_put_u64(w + LAT_U64_SIZE, inc);
    lat_put_u64(w + 2 * LAT_U64_SIZE, dec);
    lat_put_u64(w + 3 * LAT_U64_SIZE, rinc);
    lat_put_u64(w + 4 * LAT_U64_SIZE, rdec);
    return w + MAP_CTR_ENTRY;
}

/* The join of two LWW entries of one writer: the value of the greater add
 * (ties: the greater bytes), the greater rm. */
static uint8_t *join_lww(uint8_t *w, const map_lww *a, const map_lww *b)
{
    const map_lww *win = a;
    if (b->add > a->add || (b->add == a->add && lat_bytes_cmp(b->value.data, b->value.len,
                                                              a->value.data, a->value.len) > 0))
        win = b;
    return write_lww(w, a->writer, win->add, lat_max_u64(a->rm, b->rm), win->value);
}

/* Writes the per-writer join of two LWW lists at w; *n gets the count. */
static uint8_t *merge_lww(uint8_t *w, const map_rec *ra, const map_rec *rb, uint32_t *n)
{
    const uint8_t *pa = ra->lww, *pb = rb->lww;
    *n = 0;
    while (pa < ra->lww_end || pb < rb->lww_end) {
        if (pa < ra->lww_end && pb < rb->lww_end) {
            map_lww ea = lww_at(pa), eb = lww_at(pb);
            if (ea.writer == eb.writer) {
                w = join_lww(w, &ea, &eb);
                pa = ea.end;
                pb = eb.end;
            } else if (ea.writer < eb.writer) {
                w = lat_write_bytes(w, pa, (size_t)(ea.end - pa));
                pa = ea.end;
            } else {
                w = lat_write_bytes(w, pb, (size_t)(eb.end - pb));
                pb = eb.end;
            }
        } else if (pa < ra->lww_end) {
            map_lww ea = lww_at(pa);
            w = lat_write_bytes(w, pa, (size_t)(ea.end - pa));
            pa = ea.end;
        } else {
            map_lww eb = lww_at(pb);
            w = lat_write_bytes(w, pb, (size_t)(eb.end - pb));
            pb = eb.end;
        }
        (*n)++;
    }
    return w;
}

/* Writes the per-writer, per-component maximum of two COUNTER lists. */
static uint8_t *merge_ctr(uint8_t *w, const map_rec *ra, const map_rec *rb, uint32_t *n)
{
    const uint8_t *ea = ra->ctr, *eb = rb->ctr;
    *n = 0;
    while (ea < ra->ctr_end && eb < rb->ctr_end) {
        uint64_t wa = ctr_get(ea, 0), wb = ctr_get(eb, 0);
        if (wa < wb) {
            w = lat_write_bytes(w, ea, MAP_CTR_ENTRY);
            ea += MAP_CTR_ENTRY;
        } else if (wa > wb) {
            w = lat_write_bytes(w, eb, MAP_CTR_ENTRY);
            eb += MAP_CTR_ENTRY;
        } else {
            w = write_ctr(w, wa, lat_max_u64(ctr_get(ea, 1), ctr_get(eb, 1)),
                          lat_max_u64(ctr_get(ea, 2), ctr_get(eb, 2)),
                          lat_max_u64(ctr_get(ea, 3), ctr_get(eb, 3)),
                          lat_max_u64(ctr_get(ea, 4), ctr_get(eb, 4)));
            ea += MAP_CTR_ENTRY;
            eb += MAP_CTR_ENTRY;
        }
        (*n)++;
    }
    *n += (uint32_t)((size_t)(ra->ctr_end - ea) / MAP_CTR_ENTRY +
                     (size_t)(rb->ctr_end - eb) / MAP_CTR_ENTRY);
    w = lat_write_bytes(w, ea, (size_t)(ra->ctr_end - ea));
    return lat_write_bytes(w, eb, (size_t)(rb->ctr_end - eb));
}

/* Writes the join of two records of one name at w. Entry counts stay far
 * below u32: every entry takes 28 or more bytes of an input, and inputs
 * are bounded by the value limits long before. */
static uint8_t *merge_records(uint8_t *w, const map_rec *ra, const map_rec *rb)
{
    uint32_t n;
    w = lat_write_str(w, ra->name.data, ra->name.len);
    uint8_t *count_at = w;
    w = merge_lww(w + LAT_U32_SIZE, ra, rb, &n);
    lat_put_u32(count_at, n);
    count_at = w;
    w = merge_ctr(w + LAT_U32_SIZE, ra, rb, &n);
    lat_put_u32(count_at, n);
    return w;
}

/* See lattice.h. Appends the capped join; a state with more than
 * max_fields records keeps its first max_fields. */
static int merge_capped(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                        size_t max_fields, lat_buf *out)
{
    if (alen > SIZE_MAX - blen || lat_buf_reserve(out, alen + blen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint32_t na = lat_get_u32(a), nb = lat_get_u32(b);
    const uint8_t *pa = a + LAT_U32_SIZE, *pb = b + LAT_U32_SIZE;
    uint8_t *start = out->data + out->len, *w = start + LAT_U32_SIZE;
    size_t n = 0;
    while ((na > 0 || nb > 0) && n < max_fields) {
        int c;
        map_rec ra = {0}, rb = {0};
        if (na > 0 && nb > 0) {
            ra = rec_at(pa);
            rb = rec_at(pb);
            c = lat_bytes_cmp(ra.name.data, ra.name.len, rb.name.data, rb.name.len);
        } else if (na > 0) {
            ra = rec_at(pa);
            c = -1;
        } else {
            rb = rec_at(pb);
            c = 1;
        }
        if (c < 0) {
            w = lat_write_bytes(w, pa, (size_t)(ra.ctr_end - pa));
            pa = ra.ctr_end;
            na--;
        } else if (c > 0) {
            w = lat_write_bytes(w, pb, (size_t)(rb.ctr_end - pb));
            pb = rb.ctr_end;
            nb--;
        } else {
            w = merge_records(w, &ra, &rb);
            pa = ra.ctr_end;
            pb = rb.ctr_end;
            na--;
            nb--;
        }
        n++;
    }
    lat_put_u32(start, (uint32_t)n);
    out->len = (size_t)(w - out->data);
    return TRELLIS_OK;
}

/* Appends the join capped at LAT_MAP_MAX_FIELDS. TRELLIS_INTERNAL on OOM. */
int lat__map_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    return merge_capped(a, alen, b, blen, LAT_MAP_MAX_FIELDS, out);
}

/* The join with another field cap (see lattice.h); out may alias a or b.
 * TRELLIS_INVALID for a cap of 0, TRELLIS_INTERNAL on OOM. */
int lat_map_merge_cap(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      size_t max_fields, lat_buf *out)
{
    if (max_fields == 0)
        return TRELLIS_INVALID;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, a, alen, b, blen);
    int rc = merge_capped(a, alen, b, blen, max_fields, dst);
    return lat__out_end(out, &tmp, dst, rc);
}

/* By the merge: the cap makes a direct walk no cheaper to get right. */
int lat__map_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_order *out)
{
    return lat__compare_by_merge(LAT_MAP, a, alen, b, blen, out);
}

/* ---- reading ---------------------------------------------------------------- */

/* Fills *f for a record; returns 1 if the field is present. The value is
 * the live LWW entry with the greatest (add, writer), else the live
 * COUNTER sum. */
static int rec_view(const map_rec *r, lat_map_field *f)
{
    int have_lww = 0, have_ctr = 0;
    uint64_t best_add = 0, best_writer = 0, sum = 0;
    f->name = r->name;
    f->counter = 0;
    f->value.data = NULL;
    f->value.len = 0;
    f->number = 0;
    f->stamp = 0;
    for (const uint8_t *p = r->lww; p < r->lww_end;) {
        map_lww e = lww_at(p);
        p = e.end;
        if (e.add <= e.rm)
            continue;
        if (!have_lww || e.add > best_add || (e.add == best_add && e.writer > best_writer)) {
            best_add = e.add;
            best_writer = e.writer;
            f->value = e.value;
        }
        have_lww = 1;
    }
    for (const uint8_t *e = r->ctr; e < r->ctr_end; e += MAP_CTR_ENTRY) {
        if (ctr_live(e))
            have_ctr = 1;
        sum += (ctr_get(e, 1) - ctr_get(e, 3)) - (ctr_get(e, 2) - ctr_get(e, 4));
    }
    if (have_lww) {
        f->stamp = best_add;
        return 1;
    }
    f->counter = 1;
    f->number = lat_u64_to_i64(sum);
    return have_ctr;
}

/* Iterates the present fields of a valid MAP in name order: *pos starts at
 * 0. Returns 1 with *f filled while there is one, 0 at the end. */
int lat_map_next(const uint8_t *buf, size_t len, size_t *pos, lat_map_field *f)
{
    if (*pos < LAT_U32_SIZE)
        *pos = LAT_U32_SIZE;
    while (*pos < len) {
        map_rec r = rec_at(buf + *pos);
        *pos = (size_t)(r.ctr_end - buf);
        if (rec_view(&r, f))
            return 1;
    }
    return 0;
}

/* The number of present fields. */
size_t lat_map_count(const uint8_t *buf, size_t len)
{
    size_t pos = 0, n = 0;
    lat_map_field f;
    while (lat_map_next(buf, len, &pos, &f))
        n++;
    return n;
}

/* 1 when no field is present. */
int lat__map_is_empty(const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    lat_map_field f;
    return !lat_map_next(buf, len, &pos, &f);
}

/* The record of name in a valid MAP (or NULL/0); 1 if there is one. */
static int find_rec(const uint8_t *buf, size_t len, const void *name, size_t nlen, map_rec *out)
{
    if (buf == NULL || len < LAT_U32_SIZE)
        return 0;
    for (size_t pos = LAT_U32_SIZE; pos < len;) {
        map_rec r = rec_at(buf + pos);
        int c = lat_bytes_cmp(r.name.data, r.name.len, name, nlen);
        if (c >= 0) {
            *out = r;
            return c == 0;
        }
        pos = (size_t)(r.ctr_end - buf);
    }
    return 0;
}

/* Fills *f and returns 1 if the field is present in the valid MAP; 0
 * otherwise. */
int lat_map_get(const uint8_t *buf, size_t len, const void *name, size_t nlen, lat_map_field *f)
{
    map_rec r;
    return find_rec(buf, len, name, nlen, &r) && rec_view(&r, f);
}

/* The cumulative totals of writer in the COUNTER part of a field of a
 * valid MAP (or NULL/0); (0, 0) when absent. */
void lat_map_counter_entry(const uint8_t *buf, size_t len, const void *name, size_t nlen,
                           uint64_t writer, uint64_t *inc, uint64_t *dec)
{
    map_rec r;
    *inc = 0;
    *dec = 0;
    if (!find_rec(buf, len, name, nlen, &r))
        return;
    for (const uint8_t *e = r.ctr; e < r.ctr_end; e += MAP_CTR_ENTRY) {
        if (ctr_get(e, 0) == writer) {
            *inc = ctr_get(e, 1);
            *dec = ctr_get(e, 2);
            return;
        }
    }
}

/* The number of distinct names in a and b (valid MAPs, either NULL/0):
 * the field count of their uncapped join. */
size_t lat_map_union_count(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uint32_t na = a && alen >= LAT_U32_SIZE ? lat_get_u32(a) : 0;
    uint32_t nb = b && blen >= LAT_U32_SIZE ? lat_get_u32(b) : 0;
    const uint8_t *pa = a ? a + LAT_U32_SIZE : NULL, *pb = b ? b + LAT_U32_SIZE : NULL;
    size_t n = 0;
    while (na > 0 && nb > 0) {
        map_rec ra = rec_at(pa), rb = rec_at(pb);
        int c = lat_bytes_cmp(ra.name.data, ra.name.len, rb.name.data, rb.name.len);
        if (c <= 0) {
            pa = ra.ctr_end;
            na--;
        }
        if (c >= 0) {
            pb = rb.ctr_end;
            nb--;
        }
        n++;
    }
    return n + na + nb;
}

/* ---- deltas ------------------------------------------------------------------ */

/* Writes at w the observed remove of record r: every entry with its
 * remove marks raised to what it shows, so that the delta alone hides the
 * field from whatever part of the history it meets. When `put` is not
 * NULL, its LWW entry joins the list in writer order (replacing the
 * writer's own). *n counts the entries written. Returns the cursor. */
static uint8_t *write_removal(uint8_t *w, const map_rec *r, const map_lww *put, uint32_t *n)
{
    uint8_t *count_at = w;
    uint32_t k = 0;
    int put_done = put == NULL;
    w += LAT_U32_SIZE;
    for (const uint8_t *p = r ? r->lww : NULL; r != NULL && p < r->lww_end;) {
        map_lww e = lww_at(p);
        p = e.end;
        if (!put_done && put->writer <= e.writer) {
            w = write_lww(w, put->writer, put->add, put->rm, put->value);
            k++;
            put_done = 1;
            if (put->writer == e.writer)
                continue;
        }
        w = write_lww(w, e.writer, e.add, e.add, e.value);
        k++;
    }
    if (!put_done) {
        w = write_lww(w, put->writer, put->add, put->rm, put->value);
        k++;
    }
    lat_put_u32(count_at, k);
    *n = k;
    count_at = w;
    w += LAT_U32_SIZE;
    k = 0;
    for (const uint8_t *e = r ? r->ctr : NULL; r != NULL && e < r->ctr_end; e += MAP_CTR_ENTRY) {
        uint64_t inc = ctr_get(e, 1), dec = ctr_get(e, 2);
        w = write_ctr(w, ctr_get(e, 0), inc, dec, inc, dec);
        k++;
    }
    lat_put_u32(count_at, k);
    *n += k;
    return w;
}

/* A delta setting field `name` to `value` as (writer, ts), superseding the
 * entries of the field observed in `state` (a valid MAP or NULL/0): an
 * HSET. out may alias any input. Returns TRELLIS_OK, TRELLIS_INVALID for
 * ts 0 or NULL pointers with lengths, TRELLIS_TOO_LARGE when name and
 * value pass LAT_MAP_MAX_FIELD_BYTES, TRELLIS_INTERNAL on OOM. */
int lat_map_set(const uint8_t *state, size_t slen, const void *name, size_t nlen, uint64_t writer,
                uint64_t ts, const void *value, size_t vlen, lat_buf *out)
{
    if (ts == 0 || (name == NULL && nlen > 0) || (value == NULL && vlen > 0))
        return TRELLIS_INVALID;
    if (nlen > LAT_MAP_MAX_FIELD_BYTES || vlen > LAT_MAP_MAX_FIELD_BYTES - nlen)
        return TRELLIS_TOO_LARGE;
    map_rec r;
    int have = find_rec(state, slen, name, nlen, &r);
    map_lww put = {writer, ts, 0, {value, vlen}, NULL};
    int alias = lat__buf_holds(out, state, slen) || lat__buf_holds(out, name, nlen) ||
                lat__buf_holds(out, value, vlen);
    lat_buf tmp;
    lat_buf *dst = lat__out_begin_alias(out, &tmp, alias);
    size_t room = 2 * LAT_U32_SIZE + nlen + 2 * LAT_U32_SIZE + MAP_LWW_MIN + vlen +
                  (have ? (size_t)(r.ctr_end - r.lww) : 0);
    int rc = lat_buf_reserve(dst, room);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        uint32_t n;
        lat_put_u32(w, 1);
        w = lat_write_str(w + LAT_U32_SIZE, name, nlen);
        w = write_removal(w, have ? &r : NULL, &put, &n);
        dst->len = (size_t)(w - dst->data);
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* A delta holding writer's cumulative totals in the COUNTER part of field
 * `name`: an HINCRBY. (0, 0) gives the empty MAP. out may alias name.
 * Returns TRELLIS_OK, TRELLIS_INVALID for a NULL name with a length,
 * TRELLIS_TOO_LARGE for a name beyond LAT_MAP_MAX_FIELD_BYTES,
 * TRELLIS_INTERNAL on OOM. */
int lat_map_counter(const void *name, size_t nlen, uint64_t writer, uint64_t inc, uint64_t dec,
                    lat_buf *out)
{
    if (name == NULL && nlen > 0)
        return TRELLIS_INVALID;
    if (nlen > LAT_MAP_MAX_FIELD_BYTES)
        return TRELLIS_TOO_LARGE;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, name, nlen, NULL, 0);
    int one = inc != 0 || dec != 0;
    int rc = lat_buf_reserve(dst, LAT_U32_SIZE + MAP_FIELD_FIXED + nlen + MAP_CTR_ENTRY);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u32(w, (uint32_t)one);
        w += LAT_U32_SIZE;
        if (one) {
            w = lat_write_str(w, name, nlen);
            lat_put_u32(w, 0);
            lat_put_u32(w + LAT_U32_SIZE, 1);
            w = write_ctr(w + 2 * LAT_U32_SIZE, writer, inc, dec, 0, 0);
        }
        dst->len = (size_t)(w - dst->data);
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* Writes into dst the removal of the present fields of state that pick
 * selects. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
static int build_remove(const uint8_t *state, size_t slen, lat__pick *pick, lat_buf *dst)
{
    if (lat_buf_reserve(dst, LAT_U32_SIZE + slen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint8_t *start = dst->data + dst->len, *w = start + LAT_U32_SIZE;
    uint32_t count = 0;
    for (size_t pos = LAT_U32_SIZE; state != NULL && pos < slen && lat__pick_more(pick);) {
        map_rec r = rec_at(state + pos);
        lat_map_field f;
        uint32_t n;
        pos = (size_t)(r.ctr_end - state);
        if (!lat__pick_take(pick, r.name.data, r.name.len) || !rec_view(&r, &f))
            continue;
        w = lat_write_str(w, r.name.data, r.name.len);
        w = write_removal(w, &r, NULL, &n);
        count++;
    }
    lat_put_u32(start, count);
    dst->len = (size_t)(w - dst->data);
    return TRELLIS_OK;
}

/* A delta removing the given fields as observed in state (valid, or
 * NULL/0): an HDEL. Fields not present are skipped. out may alias any
 * input. Returns TRELLIS_OK, the errors of lat__sorted_slices, or
 * TRELLIS_INTERNAL on OOM. */
int lat_map_remove(const uint8_t *state, size_t slen, const lat_slice *names, size_t n,
                   lat_buf *out)
{
    return lat__observed_remove(state, slen, names, n, 0, build_remove, out);
}

/* A delta removing every field present in state (valid, or NULL/0); out
 * may alias state. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
int lat_map_remove_all(const uint8_t *state, size_t slen, lat_buf *out)
{
    return lat__observed_remove(state, slen, NULL, 0, 1, build_remove, out);
}
