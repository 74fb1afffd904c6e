/*
 * lww.c - LWW, the last-writer-wins register: ts u64, writer u64, flags u8,
 * value to the end. The greater state by (ts, writer, flags, value) wins,
 * which is exactly the byte order of the encodings.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

#define LWW_FLAGS_AT  16
#define LWW_VALUE     0
#define LWW_TOMBSTONE 1

/* TRELLIS_OK for a full header with flags 0 (any value) or flags 1 with an
 * empty value; TRELLIS_MALFORMED otherwise. */
int lat__lww_validate(const uint8_t *buf, size_t len)
{
    if (len < LAT_LWW_HEADER)
        return TRELLIS_MALFORMED;
    uint8_t flags = buf[LWW_FLAGS_AT];
    if (flags == LWW_VALUE || (flags == LWW_TOMBSTONE && len == LAT_LWW_HEADER))
        return TRELLIS_OK;
    return TRELLIS_MALFORMED;
}

/* Appends the greater encoding in byte order. TRELLIS_INTERNAL on OOM. */
int lat__lww_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (lat_bytes_cmp(a, alen, b, blen) >= 0)
        return lat__buf_append(out, a, alen);
    return lat__buf_append(out, b, blen);
}

/* A total order: never CONCURRENT. Always TRELLIS_OK. */
int lat__lww_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_order *out)
{
    int c = lat_bytes_cmp(a, alen, b, blen);
    *out = c == 0 ? LAT_EQUAL : c < 0 ? LAT_LESS : LAT_GREATER;
    return TRELLIS_OK;
}

/* 1 for a tombstone. */
int lat__lww_is_empty(const uint8_t *buf, size_t len)
{
    (void)len;
    return buf[LWW_FLAGS_AT] == LWW_TOMBSTONE;
}

/* Builds an LWW state; out may alias value. Returns TRELLIS_OK, or
 * TRELLIS_INVALID for a tombstone with a value or a NULL value with
 * vlen > 0, TRELLIS_INTERNAL on OOM. */
int lat_lww_encode(uint64_t ts, uint64_t writer, int tombstone, const void *value, size_t vlen,
                   lat_buf *out)
{
    if ((tombstone && vlen > 0) || (value == NULL && vlen > 0))
        return TRELLIS_INVALID;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, value, vlen, NULL, 0);
    int rc = lat_buf_reserve(dst, LAT_LWW_HEADER + vlen);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u64(w, ts);
        lat_put_u64(w + LAT_U64_SIZE, writer);
        w[LWW_FLAGS_AT] = tombstone ? LWW_TOMBSTONE : LWW_VALUE;
        lat_write_bytes(w + LAT_LWW_HEADER, value, vlen);
        dst->len += LAT_LWW_HEADER + vlen;
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* Fills the fields of a valid LWW state; any output pointer may be NULL.
 * value points into buf (empty for a tombstone). */
void lat_lww_view(const uint8_t *buf, size_t len, uint64_t *ts, uint64_t *writer, int *tombstone,
                  lat_slice *value)
{
    if (ts != NULL)
        *ts = lat_get_u64(buf);
    if (writer != NULL)
        *writer = lat_get_u64(buf + LAT_U64_SIZE);
    if (tombstone != NULL)
        *tombstone = buf[LWW_FLAGS_AT] == LWW_TOMBSTONE;
    if (value != NULL) {
        value->data = buf + LAT_LWW_HEADER;
        value->len = len - LAT_LWW_HEADER;
    }
}
