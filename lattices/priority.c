/*
 * priority.c - PRIORITY: priority i64, writer u64, value to the end. The
 * smaller state by (priority, writer, value) wins.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* TRELLIS_OK for a full header followed by any value. */
int lat__priority_validate(const uint8_t *buf, size_t len)
{
    (void)buf;
    return len >= LAT_PRIORITY_HEADER ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* <0, 0, >0 as a ranks before, equal to or after b; the first ranked wins. */
static int priority_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int64_t pa = lat_get_i64(a), pb = lat_get_i64(b);
    if (pa != pb)
        return pa < pb ? -1 : 1;
    int c = lat_u64_cmp(lat_get_u64(a + LAT_U64_SIZE), lat_get_u64(b + LAT_U64_SIZE));
    if (c != 0)
        return c;
    return lat_bytes_cmp(a + LAT_PRIORITY_HEADER, alen - LAT_PRIORITY_HEADER,
                         b + LAT_PRIORITY_HEADER, blen - LAT_PRIORITY_HEADER);
}

/* Appends the winner, the smaller by (priority, writer, value).
 * TRELLIS_INTERNAL on OOM. */
int lat__priority_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    if (priority_cmp(a, alen, b, blen) <= 0)
        return lat__buf_append(out, a, alen);
    return lat__buf_append(out, b, blen);
}

/* A total order in which the winner is the greater state. Always
 * TRELLIS_OK. */
int lat__priority_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                          lat_order *out)
{
    int c = priority_cmp(a, alen, b, blen);
    *out = c == 0 ? LAT_EQUAL : c < 0 ? LAT_GREATER : LAT_LESS;
    return TRELLIS_OK;
}

/* A PRIORITY always has a value. */
int lat__priority_is_empty(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 0;
}

/* Builds a PRIORITY state; out may alias value. Returns TRELLIS_OK, or
 * TRELLIS_INVALID for a NULL value with vlen > 0, TRELLIS_INTERNAL on
 * OOM. */
int lat_priority_encode(int64_t priority, uint64_t writer, const void *value, size_t vlen,
                        lat_buf *out)
{
    if (value == NULL && vlen > 0)
        return TRELLIS_INVALID;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, value, vlen, NULL, 0);
    int rc = lat_buf_reserve(dst, LAT_PRIORITY_HEADER + vlen);
    if (rc == TRELLIS_OK) {
        uint8_t *w = dst->data + dst->len;
        lat_put_u64(w, (uint64_t)priority);
        lat_put_u64(w + LAT_U64_SIZE, writer);
        lat_write_bytes(w + LAT_PRIORITY_HEADER, value, vlen);
        dst->len += LAT_PRIORITY_HEADER + vlen;
    }
    return lat__out_end(out, &tmp, dst, rc);
}

/* Fills the fields of a valid PRIORITY state; any output pointer may be
 * NULL. value points into buf. */
void lat_priority_view(const uint8_t *buf, size_t len, int64_t *priority, uint64_t *writer,
                       lat_slice *value)
{
    if (priority != NULL)
        *priority = lat_get_i64(buf);
    if (writer != NULL)
        *writer = lat_get_u64(buf + LAT_U64_SIZE);
    if (value != NULL) {
        value->data = buf + LAT_PRIORITY_HEADER;
        value->len = len - LAT_PRIORITY_HEADER;
    }
}
