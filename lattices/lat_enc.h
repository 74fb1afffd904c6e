/*
 * lat_enc.h - encoding helpers shared by the lattice types: big-endian
 * integers, the byte order of strings, a bounds-checked reader for the
 * decoders and unchecked cursors for merges over validated states.
 *
 * Internal to lattices/: nothing here is part of lattice.h.
 */
#ifndef TRELLIS_LAT_ENC_H
#define TRELLIS_LAT_ENC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lattices/lattice.h"

/* The largest length or count a u32 field can carry. */
#define LAT_MAX_U32 UINT32_MAX

/* Encoded sizes of the fixed-width parts. */
#define LAT_U32_SIZE        4
#define LAT_U64_SIZE        8
#define LAT_LWW_HEADER      17 /* ts, writer, flags */
#define LAT_PRIORITY_HEADER 16 /* priority, writer */
#define LAT_MAX_SIZE        8  /* i64 */
#define LAT_ORSET_ENTRY     24 /* writer, add, rm */
#define LAT_COUNTER_ENTRY   24 /* writer, inc, dec */
#define LAT_CAUSAL_CLOCK    16 /* writer, counter */
#define LAT_CAUSAL_VALUE    20 /* writer, counter, string length */

/* ---- big-endian integers ------------------------------------------------ */

static inline uint32_t lat_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t lat_get_u64(const uint8_t *p)
{
    return (uint64_t)lat_get_u32(p) << 32 | lat_get_u32(p + 4);
}

static inline void lat_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void lat_put_u64(uint8_t *p, uint64_t v)
{
    lat_put_u32(p, (uint32_t)(v >> 32));
    lat_put_u32(p + 4, (uint32_t)v);
}

/* Two's complement reinterpretation without implementation-defined casts. */
static inline int64_t lat_u64_to_i64(uint64_t u)
{
    if (u <= (uint64_t)INT64_MAX)
        return (int64_t)u;
    return -(int64_t)(~u) - 1;
}

static inline int64_t lat_get_i64(const uint8_t *p)
{
    return lat_u64_to_i64(lat_get_u64(p));
}

/* ---- byte strings ------------------------------------------------------- */

/* Byte order of strings: memcmp over the common length, then the shorter
 * first. Returns <0, 0 or >0. Either pointer may be NULL when its length
 * is 0. */
static inline int lat_bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    if (n > 0) {
        int c = memcmp(a, b, n);
        if (c != 0)
            return c;
    }
    return (alen > blen) - (alen < blen);
}

static inline int lat_u64_cmp(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static inline uint64_t lat_max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* ---- bounds-checked reader (decoders) ----------------------------------- */

/* Reads [p, p + len) front to back. Invariant: pos <= len, so len - pos
 * never wraps. Every read returns 1 on success and 0, leaving the reader
 * unchanged, when fewer bytes remain than it needs. */
typedef struct lat_rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
} lat_rd;

static inline lat_rd lat_rd_make(const uint8_t *p, size_t len)
{
    lat_rd r = {p, p ? len : 0, 0};
    return r;
}

static inline size_t lat_rd_left(const lat_rd *r)
{
    return r->len - r->pos;
}

static inline int lat_rd_u32(lat_rd *r, uint32_t *v)
{
    if (lat_rd_left(r) < LAT_U32_SIZE)
        return 0;
    *v = lat_get_u32(r->p + r->pos);
    r->pos += LAT_U32_SIZE;
    return 1;
}

static inline int lat_rd_u64(lat_rd *r, uint64_t *v)
{
    if (lat_rd_left(r) < LAT_U64_SIZE)
        return 0;
    *v = lat_get_u64(r->p + r->pos);
    r->pos += LAT_U64_SIZE;
    return 1;
}

/* A u32-length-prefixed string; *s points into the reader's bytes. */
static inline int lat_rd_str(lat_rd *r, lat_slice *s)
{
    size_t start = r->pos;
    uint32_t n;
    if (!lat_rd_u32(r, &n))
        return 0;
    if (lat_rd_left(r) < n) {
        r->pos = start;
        return 0;
    }
    s->data = r->p + r->pos;
    s->len = n;
    r->pos += n;
    return 1;
}

/* A count of items each at least min_item bytes long: fails unless the
 * remaining bytes can hold them, so callers loop at most len / min_item
 * times whatever the count field claims. */
static inline int lat_rd_count(lat_rd *r, size_t min_item, uint32_t *count)
{
    size_t start = r->pos;
    if (!lat_rd_u32(r, count))
        return 0;
    if (*count > lat_rd_left(r) / min_item) {
        r->pos = start;
        return 0;
    }
    return 1;
}

/* ---- unchecked cursors (merges and views over validated states) --------- */

/* Reads a u32-length-prefixed string at *p and advances *p past it. */
static inline lat_slice lat_take_str(const uint8_t **p)
{
    lat_slice s;
    s.len = lat_get_u32(*p);
    s.data = *p + LAT_U32_SIZE;
    *p = s.data + s.len;
    return s;
}

/* Writes a u32-length-prefixed string at *w and advances *w; returns the
 * cursor past it. The caller has reserved room. */
static inline uint8_t *lat_write_str(uint8_t *w, const void *data, size_t len)
{
    lat_put_u32(w, (uint32_t)len);
    if (len > 0)
        memcpy(w + LAT_U32_SIZE, data, len);
    return w + LAT_U32_SIZE + len;
}

static inline uint8_t *lat_write_bytes(uint8_t *w, const void *data, size_t len)
{
    if (len > 0)
        memcpy(w, data, len);
    return w + len;
}

#endif
