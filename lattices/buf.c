/*
 * buf.c - lat_buf, the caller-owned growable output buffer, and the helpers
 * that let an output alias an input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lattices/lat_impl.h"

/* Smallest allocation, so that small states do not realloc byte by byte. */
#define LAT_BUF_MIN_CAP 64
/* Largest buffer: no object may be larger, and cursors subtract pointers. */
#define LAT_BUF_MAX_CAP ((size_t)PTRDIFF_MAX)

/* Empties b without owning any memory. */
void lat_buf_init(lat_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Releases b's memory and leaves it empty and reusable. */
void lat_buf_free(lat_buf *b)
{
    free(b->data);
    lat_buf_init(b);
}

/* Ensures cap >= len + extra, growing geometrically. Returns TRELLIS_OK, or
 * TRELLIS_INTERNAL when the size passes LAT_BUF_MAX_CAP or realloc fails,
 * in which case b is unchanged. */
int lat_buf_reserve(lat_buf *b, size_t extra)
{
    if (extra > LAT_BUF_MAX_CAP - b->len)
        return TRELLIS_INTERNAL;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return TRELLIS_OK;
    size_t cap = b->cap < LAT_BUF_MIN_CAP ? LAT_BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > LAT_BUF_MAX_CAP / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return TRELLIS_INTERNAL;
    b->data = p;
    b->cap = cap;
    return TRELLIS_OK;
}

/* Whether [p, p + n) starts inside b's storage. Compared as integers since
 * p may belong to an unrelated object. */
int lat__buf_holds(const lat_buf *b, const void *p, size_t n)
{
    if (n == 0 || p == NULL || b->data == NULL)
        return 0;
    uintptr_t x = (uintptr_t)p, lo = (uintptr_t)b->data;
    return x >= lo && x - lo < b->cap;
}

/* Replaces b's contents with a copy of [p, p + n); p may point into b.
 * TRELLIS_INTERNAL on allocation failure (b then keeps its old contents). */
int lat_buf_set(lat_buf *b, const void *p, size_t n)
{
    if (lat__buf_holds(b, p, n)) {
        memmove(b->data, p, n);
        b->len = n;
        return TRELLIS_OK;
    }
    b->len = 0;
    if (lat_buf_reserve(b, n) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    if (n > 0)
        memcpy(b->data, p, n);
    b->len = n;
    return TRELLIS_OK;
}

/* Appends [p, p + n), which must not point into b. TRELLIS_INTERNAL on
 * allocation failure, b unchanged. */
int lat__buf_append(lat_buf *b, const void *p, size_t n)
{
    if (lat_buf_reserve(b, n) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return TRELLIS_OK;
}

/* See lat_impl.h. Never fails. */
lat_buf *lat__out_begin(lat_buf *out, lat_buf *tmp, const void *a, size_t alen, const void *b,
                        size_t blen)
{
    return lat__out_begin_alias(out, tmp,
                                lat__buf_holds(out, a, alen) || lat__buf_holds(out, b, blen));
}

/* See lat_impl.h. Never fails. */
lat_buf *lat__out_begin_alias(lat_buf *out, lat_buf *tmp, int alias)
{
    lat_buf_init(tmp);
    if (alias)
        return tmp;
    out->len = 0;
    return out;
}

/* See lat_impl.h. Returns rc. */
int lat__out_end(lat_buf *out, lat_buf *tmp, lat_buf *dst, int rc)
{
    if (dst != tmp)
        return rc;
    if (rc == TRELLIS_OK) {
        free(out->data);
        *out = *tmp;
        lat_buf_init(tmp);
    } else {
        lat_buf_free(tmp);
    }
    return rc;
}
