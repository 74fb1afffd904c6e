/*
 * orset.c - ORSET, the add-wins observed-remove set: count u32, then per
 * member (string member, n u32, n x (writer u64, add u64, rm u64)), members
 * strictly increasing, entries strictly increasing by writer, n >= 1, no
 * entry with add = rm = 0. Merge keeps per member and writer the maximum
 * add and the maximum rm; a member is present while some add > rm.
 */

#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* Smallest member record: empty string, n, one entry. */
#define ORSET_MIN_RECORD (LAT_U32_SIZE + LAT_U32_SIZE + LAT_ORSET_ENTRY)

/* A member record of a valid state, parsed in place. */
typedef struct orset_rec {
    lat_slice member;
    uint32_t n;             /* entries */
    const uint8_t *entries; /* n x (writer, add, rm) */
    const uint8_t *end;     /* just past the record */
} orset_rec;

/* Parses the member record at p of a valid state. */
static orset_rec rec_at(const uint8_t *p)
{
    orset_rec r;
    r.member = lat_take_str(&p);
    r.n = lat_get_u32(p);
    r.entries = p + LAT_U32_SIZE;
    r.end = r.entries + (size_t)r.n * LAT_ORSET_ENTRY;
    return r;
}

/* Fields of the entry at e of a valid state. */
static uint64_t ent_writer(const uint8_t *e)
{
    return lat_get_u64(e);
}

static uint64_t ent_add(const uint8_t *e)
{
    return lat_get_u64(e + LAT_U64_SIZE);
}

static uint64_t ent_rm(const uint8_t *e)
{
    return lat_get_u64(e + 2 * LAT_U64_SIZE);
}

/* 1 if some writer's add mark is above its remove mark. */
static int rec_present(const orset_rec *r)
{
    for (const uint8_t *e = r->entries; e < r->end; e += LAT_ORSET_ENTRY) {
        if (ent_add(e) > ent_rm(e))
            return 1;
    }
    return 0;
}

/* TRELLIS_OK for a canonical ORSET, TRELLIS_MALFORMED otherwise. */
int lat__orset_validate(const uint8_t *buf, size_t len)
{
    lat_rd r = lat_rd_make(buf, len);
    uint32_t count;
    lat_slice prev = {NULL, 0}, cur;
    if (!lat_rd_count(&r, ORSET_MIN_RECORD, &count))
        return TRELLIS_MALFORMED;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t n;
        if (!lat_rd_str(&r, &cur))
            return TRELLIS_MALFORMED;
        if (i > 0 && lat_bytes_cmp(prev.data, prev.len, cur.data, cur.len) >= 0)
            return TRELLIS_MALFORMED;
        prev = cur;
        if (!lat_rd_count(&r, LAT_ORSET_ENTRY, &n) || n == 0)
            return TRELLIS_MALFORMED;
        uint64_t last = 0;
        /* lat_rd_count checked the room for all n entries */
        const uint8_t *e = r.p + r.pos;
        for (uint32_t j = 0; j < n; j++, e += LAT_ORSET_ENTRY) {
            uint64_t writer = ent_writer(e);
            if ((j > 0 && writer <= last) || (ent_add(e) == 0 && ent_rm(e) == 0))
                return TRELLIS_MALFORMED;
            last = writer;
        }
        r.pos += (size_t)n * LAT_ORSET_ENTRY;
    }
    return lat_rd_left(&r) == 0 ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* Writes the merge of two records of the same member at w; returns the
 * cursor past it, or NULL if the entries would exceed a u32 count. */
static uint8_t *merge_records(uint8_t *w, const orset_rec *ra, const orset_rec *rb)
{
    w = lat_write_str(w, ra->member.data, ra->member.len);
    uint8_t *count_at = w;
    w += LAT_U32_SIZE;
    const uint8_t *ea = ra->entries, *eb = rb->entries;
    uint64_t n = 0;
    while (ea < ra->end && eb < rb->end) {
        uint64_t wa = ent_writer(ea), wb = ent_writer(eb);
        if (wa < wb) {
            w = lat_write_bytes(w, ea, LAT_ORSET_ENTRY);
            ea += LAT_ORSET_ENTRY;
        } else if (wa > wb) {
            w = lat_write_bytes(w, eb, LAT_ORSET_ENTRY);
            eb += LAT_ORSET_ENTRY;
        } else {
            lat_put_u64(w, wa);
            lat_put_u64(w + LAT_U64_SIZE, lat_max_u64(ent_add(ea), ent_add(eb)));
            lat_put_u64(w + 2 * LAT_U64_SIZE, lat_max_u64(ent_rm(ea), ent_rm(eb)));
            w += LAT_ORSET_ENTRY;
            ea += LAT_ORSET_ENTRY;
            eb += LAT_ORSET_ENTRY;
        }
        n++;
    }
    n += (uint64_t)(ra->end - ea) / LAT_ORSET_ENTRY + (uint64_t)(rb->end - eb) / LAT_ORSET_ENTRY;
    if (n > LAT_MAX_U32)
        return NULL;
    w = lat_write_bytes(w, ea, (size_t)(ra->end - ea));
    w = lat_write_bytes(w, eb, (size_t)(rb->end - eb));
    lat_put_u32(count_at, (uint32_t)n);
    return w;
}

/* Appends the merge, one sorted walk over members and, for shared members,
 * over writers. Returns TRELLIS_OK, TRELLIS_TOO_LARGE past a u32 count,
 * TRELLIS_INTERNAL on OOM. */
int lat__orset_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (alen > SIZE_MAX - blen || lat_buf_reserve(out, alen + blen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint32_t na = lat_get_u32(a), nb = lat_get_u32(b);
    const uint8_t *pa = a + LAT_U32_SIZE, *pb = b + LAT_U32_SIZE;
    uint8_t *start = out->data + out->len, *w = start + LAT_U32_SIZE;
    uint64_t n = 0;
    while (na > 0 && nb > 0) {
        orset_rec ra = rec_at(pa), rb = rec_at(pb);
        int c = lat_bytes_cmp(ra.member.data, ra.member.len, rb.member.data, rb.member.len);
        if (c < 0) {
            w = lat_write_bytes(w, pa, (size_t)(ra.end - pa));
            pa = ra.end;
            na--;
        } else if (c > 0) {
            w = lat_write_bytes(w, pb, (size_t)(rb.end - pb));
            pb = rb.end;
            nb--;
        } else {
            w = merge_records(w, &ra, &rb);
            if (w == NULL)
                return TRELLIS_TOO_LARGE;
            pa = ra.end;
            pb = rb.end;
            na--;
            nb--;
        }
        n++;
    }
    n += (uint64_t)na + nb;
    if (n > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    w = lat_write_bytes(w, pa, (size_t)(a + alen - pa));
    w = lat_write_bytes(w, pb, (size_t)(b + blen - pb));
    lat_put_u32(start, (uint32_t)n);
    out->len = (size_t)(w - out->data);
    return TRELLIS_OK;
}

/* Clears *a_le_b or *b_le_a as the entries of one shared member show
 * either side above the other. */
static void compare_records(const orset_rec *ra, const orset_rec *rb, int *a_le_b, int *b_le_a)
{
    const uint8_t *ea = ra->entries, *eb = rb->entries;
    while (ea < ra->end && eb < rb->end) {
        uint64_t wa = ent_writer(ea), wb = ent_writer(eb);
        if (wa < wb) {
            *a_le_b = 0;
            ea += LAT_ORSET_ENTRY;
        } else if (wa > wb) {
            *b_le_a = 0;
            eb += LAT_ORSET_ENTRY;
        } else {
            uint64_t xa = ent_add(ea), xb = ent_add(eb), ya = ent_rm(ea), yb = ent_rm(eb);
            if (xa > xb || ya > yb)
                *a_le_b = 0;
            if (xb > xa || yb > ya)
                *b_le_a = 0;
            ea += LAT_ORSET_ENTRY;
            eb += LAT_ORSET_ENTRY;
        }
    }
    if (ea < ra->end)
        *a_le_b = 0;
    if (eb < rb->end)
        *b_le_a = 0;
}

/* Containment walk: every entry is nonzero, so an entry only one side has
 * puts that side above. Always TRELLIS_OK. */
int lat__orset_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_order *out)
{
    (void)alen;
    (void)blen;
    uint32_t na = lat_get_u32(a), nb = lat_get_u32(b);
    const uint8_t *pa = a + LAT_U32_SIZE, *pb = b + LAT_U32_SIZE;
    int a_le_b = 1, b_le_a = 1;
    while (na > 0 && nb > 0 && (a_le_b || b_le_a)) {
        orset_rec ra = rec_at(pa), rb = rec_at(pb);
        int c = lat_bytes_cmp(ra.member.data, ra.member.len, rb.member.data, rb.member.len);
        if (c < 0)
            a_le_b = 0;
        else if (c > 0)
            b_le_a = 0;
        else
            compare_records(&ra, &rb, &a_le_b, &b_le_a);
        if (c <= 0) {
            pa = ra.end;
            na--;
        }
        if (c >= 0) {
            pb = rb.end;
            nb--;
        }
    }
    if (na > 0)
        a_le_b = 0;
    if (nb > 0)
        b_le_a = 0;
    *out = lat__order_from(a_le_b, b_le_a);
    return TRELLIS_OK;
}

/* Iterates present members: *pos is 0 at first, then the byte offset of the
 * next record. Returns 1 with *member set while there is one, 0 at the end;
 * shared by lat_orset_next and the readers below. */
static int next_present(const uint8_t *buf, size_t len, size_t *pos, orset_rec *rec)
{
    if (*pos < LAT_U32_SIZE)
        *pos = LAT_U32_SIZE;
    while (*pos < len) {
        *rec = rec_at(buf + *pos);
        *pos = (size_t)(rec->end - buf);
        if (rec_present(rec))
            return 1;
    }
    return 0;
}

/* 1 when no member is present. */
int lat__orset_is_empty(const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    orset_rec rec;
    return !next_present(buf, len, &pos, &rec);
}

/* A delta adding member with the dot (writer, ts); out may alias member.
 * Returns TRELLIS_OK, TRELLIS_INVALID for ts 0 or a NULL member with
 * mlen > 0, TRELLIS_TOO_LARGE for a member beyond u32, TRELLIS_INTERNAL on
 * OOM. */
int lat_orset_add(const void *member, size_t mlen, uint64_t writer, uint64_t ts, lat_buf *out)
{
    if (ts == 0 || (member == NULL && mlen > 0))
        return TRELLIS_INVALID;
    if (mlen > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, member, mlen, NULL, 0);
    int rc = lat_buf_reserve(dst, ORSET_MIN_RECORD + LAT_U32_SIZE + mlen);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u32(w, 1);
        w = lat_write_str(w + LAT_U32_SIZE, member, mlen);
        lat_put_u32(w, 1);
        lat_put_u64(w + LAT_U32_SIZE, writer);
        lat_put_u64(w + LAT_U32_SIZE + LAT_U64_SIZE, ts);
        lat_put_u64(w + LAT_U32_SIZE + 2 * LAT_U64_SIZE, 0);
        dst->len = (size_t)(w + LAT_U32_SIZE + LAT_ORSET_ENTRY - dst->data);
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* Writes the remove of a present record at w: its entries with add > rm,
 * with rm raised to add. Returns the cursor past it. */
static uint8_t *write_remove(uint8_t *w, const orset_rec *r)
{
    w = lat_write_str(w, r->member.data, r->member.len);
    uint8_t *count_at = w;
    w += LAT_U32_SIZE;
    uint32_t n = 0;
    for (const uint8_t *e = r->entries; e < r->end; e += LAT_ORSET_ENTRY) {
        uint64_t add = ent_add(e);
        if (add > ent_rm(e)) {
            lat_put_u64(w, ent_writer(e));
            lat_put_u64(w + LAT_U64_SIZE, add);
            lat_put_u64(w + 2 * LAT_U64_SIZE, add);
            w += LAT_ORSET_ENTRY;
            n++;
        }
    }
    lat_put_u32(count_at, n);
    return w;
}

/* Writes into dst the remove delta of the present members of state that
 * pick selects. A remove is never larger than the state. TRELLIS_OK or
 * TRELLIS_INTERNAL on OOM. */
static int build_remove(const uint8_t *state, size_t slen, lat__pick *pick, lat_buf *dst)
{
    if (lat_buf_reserve(dst, LAT_U32_SIZE + slen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint8_t *start = dst->data + dst->len, *w = start + LAT_U32_SIZE;
    uint32_t n = 0;
    size_t pos = 0;
    orset_rec rec;
    while (state != NULL && slen > 0 && lat__pick_more(pick) &&
           next_present(state, slen, &pos, &rec)) {
        if (!lat__pick_take(pick, rec.member.data, rec.member.len))
            continue;
        w = write_remove(w, &rec);
        n++;
    }
    lat_put_u32(start, n);
    dst->len = (size_t)(w - dst->data);
    return TRELLIS_OK;
}

/* A delta removing the given members as observed in state (valid, or
 * NULL/0); out may alias state or the members. Returns TRELLIS_OK, the
 * errors of lat__sorted_slices, or TRELLIS_INTERNAL on OOM. */
int lat_orset_remove(const uint8_t *state, size_t slen, const lat_slice *members, size_t n,
                     lat_buf *out)
{
    return lat__observed_remove(state, slen, members, n, 0, build_remove, out);
}

/* A delta removing every member present in state (valid, or NULL/0); out
 * may alias state. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
int lat_orset_remove_all(const uint8_t *state, size_t slen, lat_buf *out)
{
    return lat__observed_remove(state, slen, NULL, 0, 1, build_remove, out);
}

/* Iterates the present members of a valid ORSET in byte order, as
 * lat_set_next does. */
int lat_orset_next(const uint8_t *buf, size_t len, size_t *pos, lat_slice *member)
{
    orset_rec rec;
    if (!next_present(buf, len, pos, &rec))
        return 0;
    *member = rec.member;
    return 1;
}

/* The number of present members. */
size_t lat_orset_count(const uint8_t *buf, size_t len)
{
    size_t pos = 0, n = 0;
    orset_rec rec;
    while (next_present(buf, len, &pos, &rec))
        n++;
    return n;
}

/* 1 if member is present in the valid ORSET. */
int lat_orset_contains(const uint8_t *buf, size_t len, const void *member, size_t mlen)
{
    size_t pos = LAT_U32_SIZE;
    while (pos < len) {
        orset_rec rec = rec_at(buf + pos);
        int c = lat_bytes_cmp(rec.member.data, rec.member.len, member, mlen);
        if (c >= 0)
            return c == 0 && rec_present(&rec);
        pos = (size_t)(rec.end - buf);
    }
    return 0;
}
