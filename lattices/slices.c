/*
 * slices.c - sorting caller-given member lists into the byte order the SET
 * and ORSET encodings keep.
 */
#include <stdlib.h>

#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* qsort comparator over lat_slice in byte order. */
static int slice_cmp(const void *x, const void *y)
{
    const lat_slice *a = x, *b = y;
    return lat_bytes_cmp(a->data, a->len, b->data, b->len);
}

/* See lat_impl.h. */
int lat__sorted_slices(const lat_slice *members, size_t n, lat_slice **sorted, size_t *count)
{
    *sorted = NULL;
    *count = 0;
    if (n == 0)
        return TRELLIS_OK;
    if (members == NULL)
        return TRELLIS_INVALID;
    if (n > LAT_MAX_U32)
        return TRELLIS_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        if (members[i].data == NULL && members[i].len > 0)
            return TRELLIS_INVALID;
        if (members[i].len > LAT_MAX_U32)
            return TRELLIS_TOO_LARGE;
    }
    lat_slice *v = malloc(n * sizeof *v);
    if (v == NULL)
        return TRELLIS_INTERNAL;
    for (size_t i = 0; i < n; i++)
        v[i] = members[i];
    qsort(v, n, sizeof *v, slice_cmp);
    size_t k = 1;
    for (size_t i = 1; i < n; i++) {
        if (slice_cmp(&v[k - 1], &v[i]) != 0)
            v[k++] = v[i];
    }
    *sorted = v;
    *count = k;
    return TRELLIS_OK;
}
