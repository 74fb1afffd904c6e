/*
 * set.c - SET, the grow-only set of byte strings: count u32, then count
 * strings strictly increasing in byte order. Merge is union.
 */
#include <stdlib.h>

#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* TRELLIS_OK for a canonical SET: a count the bytes can hold, strictly
 * increasing members, no trailing bytes. TRELLIS_MALFORMED otherwise. */
int lat__set_validate(const uint8_t *buf, size_t len)
{
    lat_rd r = lat_rd_make(buf, len);
    uint32_t count;
    lat_slice prev = {NULL, 0}, cur;
    if (!lat_rd_count(&r, LAT_U32_SIZE, &count))
        return TRELLIS_MALFORMED;
    for (uint32_t i = 0; i < count; i++) {
        if (!lat_rd_str(&r, &cur))
            return TRELLIS_MALFORMED;
        if (i > 0 && lat_bytes_cmp(prev.data, prev.len, cur.data, cur.len) >= 0)
            return TRELLIS_MALFORMED;
        prev = cur;
    }
    return lat_rd_left(&r) == 0 ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* Appends the union, one sorted walk over both encodings. Returns
 * TRELLIS_OK, TRELLIS_TOO_LARGE if the union would exceed a u32 count, or
 * TRELLIS_INTERNAL on OOM. */
int lat__set_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (alen > SIZE_MAX - blen || lat_buf_reserve(out, alen + blen) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint32_t na = lat_get_u32(a), nb = lat_get_u32(b);
    const uint8_t *pa = a + LAT_U32_SIZE, *pb = b + LAT_U32_SIZE;
    uint8_t *start = out->data + out->len, *w = start + LAT_U32_SIZE;
    uint64_t n = 0;
    while (na > 0 && nb > 0) {
        const uint8_t *qa = pa, *qb = pb;
        lat_slice sa = lat_take_str(&qa), sb = lat_take_str(&qb);
        int c = lat_bytes_cmp(sa.data, sa.len, sb.data, sb.len);
        if (c <= 0) {
            w = lat_write_bytes(w, pa, (size_t)(qa - pa));
            pa = qa;
            na--;
            if (c == 0) {
                pb = qb;
                nb--;
            }
        } else {
            w = lat_write_bytes(w, pb, (size_t)(qb - pb));
            pb = qb;
            nb--;
        }
        n++;
    }
    /* What is left of either side is already canonical: copy it whole. */
    n += (uint64_t)na + nb;
    if (n > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    w = lat_write_bytes(w, pa, (size_t)(a + alen - pa));
    w = lat_write_bytes(w, pb, (size_t)(b + blen - pb));
    lat_put_u32(start, (uint32_t)n);
    out->len = (size_t)(w - out->data);
    return TRELLIS_OK;
}

/* Subset walk. Always TRELLIS_OK. */
int lat__set_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_order *out)
{
    (void)alen;
    (void)blen;
    uint32_t na = lat_get_u32(a), nb = lat_get_u32(b);
    const uint8_t *pa = a + LAT_U32_SIZE, *pb = b + LAT_U32_SIZE;
    int a_le_b = 1, b_le_a = 1;
    while (na > 0 && nb > 0 && (a_le_b || b_le_a)) {
        const uint8_t *qa = pa, *qb = pb;
        lat_slice sa = lat_take_str(&qa), sb = lat_take_str(&qb);
        int c = lat_bytes_cmp(sa.data, sa.len, sb.data, sb.len);
        if (c <= 0) {
            pa = qa;
            na--;
        }
        if (c >= 0) {
            pb = qb;
            nb--;
        }
        if (c < 0)
            a_le_b = 0;
        else if (c > 0)
            b_le_a = 0;
    }
    if (na > 0)
        a_le_b = 0;
    if (nb > 0)
        b_le_a = 0;
    *out = lat__order_from(a_le_b, b_le_a);
    return TRELLIS_OK;
}

/* 1 for the empty set. */
int lat__set_is_empty(const uint8_t *buf, size_t len)
{
    (void)len;
    return lat_get_u32(buf) == 0;
}

/* Builds a canonical SET from members in any order; out may alias them.
 * Returns TRELLIS_OK or the errors of lat__sorted_slices. */
int lat_set_encode(const lat_slice *members, size_t n, lat_buf *out)
{
    lat_slice *v;
    size_t k;
    int rc = lat__sorted_slices(members, n, &v, &k);
    if (rc != TRELLIS_OK)
        return rc;
    size_t size = LAT_U32_SIZE;
    int alias = 0;
    for (size_t i = 0; i < k; i++) {
        if (v[i].len > SIZE_MAX - LAT_U32_SIZE - size) {
            free(v);
            return TRELLIS_TOO_LARGE;
        }
        size += LAT_U32_SIZE + v[i].len;
        alias |= lat__buf_holds(out, v[i].data, v[i].len);
    }
    lat_buf tmp;
    lat_buf *dst = lat__out_begin_alias(out, &tmp, alias);
    rc = lat_buf_reserve(dst, size);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u32(w, (uint32_t)k);
        w += LAT_U32_SIZE;
        for (size_t i = 0; i < k; i++)
            w = lat_write_str(w, v[i].data, v[i].len);
        dst->len += size;
    }
    free(v);
    return lat__out_end(out, &tmp, dst, rc);
}

/* The number of members of a valid SET. */
size_t lat_set_count(const uint8_t *buf, size_t len)
{
    (void)len;
    return lat_get_u32(buf);
}

/* Iterates the members of a valid SET in byte order: *pos starts at 0 (then
 * holds the byte offset of the next member). Returns 1 and fills *member
 * (pointing into buf) while there is one, 0 at the end. */
int lat_set_next(const uint8_t *buf, size_t len, size_t *pos, lat_slice *member)
{
    if (*pos < LAT_U32_SIZE)
        *pos = LAT_U32_SIZE;
    if (*pos >= len)
        return 0;
    const uint8_t *p = buf + *pos;
    *member = lat_take_str(&p);
    *pos = (size_t)(p - buf);
    return 1;
}

/* 1 if member is in the valid SET: a scan that stops at the first greater
 * member. */
int lat_set_contains(const uint8_t *buf, size_t len, const void *member, size_t mlen)
{
    size_t pos = 0;
    lat_slice s;
    while (lat_set_next(buf, len, &pos, &s)) {
        int c = lat_bytes_cmp(s.data, s.len, member, mlen);
        if (c >= 0)
            return c == 0;
    }
    return 0;
}
