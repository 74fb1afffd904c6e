/*
 * max.c - MAX, a signed 64-bit maximum encoded as a big-endian i64.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* TRELLIS_OK for exactly eight bytes. */
int lat__max_validate(const uint8_t *buf, size_t len)
{
    (void)buf;
    return len == LAT_MAX_SIZE ? TRELLIS_OK : TRELLIS_MALFORMED;
}

/* Appends the greater integer. TRELLIS_INTERNAL on OOM. */
int lat__max_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out)
{
    (void)alen;
    (void)blen;
    return lat__buf_append(out, lat_get_i64(a) >= lat_get_i64(b) ? a : b, LAT_MAX_SIZE);
}

/* A total order. Always TRELLIS_OK. */
int lat__max_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_order *out)
{
    (void)alen;
    (void)blen;
    int64_t x = lat_get_i64(a), y = lat_get_i64(b);
    *out = x == y ? LAT_EQUAL : x < y ? LAT_LESS : LAT_GREATER;
    return TRELLIS_OK;
}

/* A MAX always has a value. */
int lat__max_is_empty(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 0;
}

/* Builds a MAX state. TRELLIS_OK or TRELLIS_INTERNAL on OOM. */
int lat_max_encode(int64_t v, lat_buf *out)
{
    uint8_t enc[LAT_MAX_SIZE];
    lat_put_u64(enc, (uint64_t)v);
    return lat_buf_set(out, enc, sizeof enc);
}

/* The integer of a valid MAX state. */
int64_t lat_max_value(const uint8_t *buf, size_t len)
{
    (void)len;
    return lat_get_i64(buf);
}
