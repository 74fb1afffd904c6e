/*
 * slices.c - sorting caller-given member lists into the byte order the SET,
 * ORSET and MAP encodings keep, and the frame of an observed remove of
 * listed members or fields.
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

/* See lat_impl.h. */
int lat__pick_more(const lat__pick *p)
{
    return p->all || p->k < p->n;
}

/* See lat_impl.h. Skips the wanted names below name. */
int lat__pick_take(lat__pick *p, const uint8_t *name, size_t nlen)
{
    if (p->all)
        return 1;
    int c = -1;
    while (p->k < p->n &&
           (c = lat_bytes_cmp(p->want[p->k].data, p->want[p->k].len, name, nlen)) < 0)
        p->k++;
    if (c != 0)
        return 0;
    p->k++;
    return 1;
}

/* See lat_impl.h. */
int lat__observed_remove(const uint8_t *state, size_t slen, const lat_slice *names, size_t n,
                         int all, lat__remove_fn build, lat_buf *out)
{
    lat__pick pick = {all, NULL, 0, 0};
    lat_slice *want = NULL;
    if (!all) {
        int rc = lat__sorted_slices(names, n, &want, &pick.n);
        if (rc != TRELLIS_OK)
            return rc;
        pick.want = want;
    }
    int alias = lat__buf_holds(out, state, slen);
    for (size_t i = 0; i < pick.n; i++)
        alias |= lat__buf_holds(out, want[i].data, want[i].len);
    lat_buf tmp;
    lat_buf *dst = lat__out_begin_alias(out, &tmp, alias);
    int rc = build(state, slen, &pick, dst);
    free(want);
    return lat__out_end(out, &tmp, dst, rc);
}
