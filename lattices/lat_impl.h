/*
 * lat_impl.h - the per-type entry points behind the generic dispatch of
 * lattice.c, and the output-buffer helpers they share.
 *
 * Internal to lattices/. Every function taking an encoded state requires a
 * state that passed the type's validate, except validate itself. Merges
 * append their result to out (from out->len on) so that the tagged merge can
 * put the type byte first; they return TRELLIS_OK or TRELLIS_INTERNAL when
 * the buffer cannot grow.
 */
#ifndef TRELLIS_LAT_IMPL_H
#define TRELLIS_LAT_IMPL_H

#include "lattices/lattice.h"

/* ---- output buffers (buf.c) --------------------------------------------- */

/* Appends [p, p + n). TRELLIS_INTERNAL on allocation failure. */
int lat__buf_append(lat_buf *b, const void *p, size_t n);

/* Output that may alias an input. lat__out_begin returns the buffer to
 * write to: out itself (emptied) when neither [a, a + alen) nor
 * [b, b + blen) lies inside out's storage, otherwise tmp (initialised), so
 * that the inputs stay readable while the result is built. lat__out_end
 * moves a successful result from tmp into out, frees tmp, and returns rc. */
lat_buf *lat__out_begin(lat_buf *out, lat_buf *tmp, const void *a, size_t alen, const void *b,
                        size_t blen);
/* As lat__out_begin, for callers that checked the aliasing themselves. */
lat_buf *lat__out_begin_alias(lat_buf *out, lat_buf *tmp, int alias);
/* Whether [p, p + n) starts inside b's storage (0 when n is 0). */
int lat__buf_holds(const lat_buf *b, const void *p, size_t n);
int lat__out_end(lat_buf *out, lat_buf *tmp, lat_buf *dst, int rc);

/* ---- member lists (slices.c) ------------------------------------------- */

/* Copies members[0..n) into a new array sorted in byte order without
 * duplicates; *sorted (free() it; NULL when n is 0) and *count receive it.
 * Returns TRELLIS_OK, TRELLIS_INVALID for a NULL array with n > 0 or a NULL
 * member with a length, TRELLIS_TOO_LARGE for a member or a count beyond
 * u32, TRELLIS_INTERNAL on OOM. */
int lat__sorted_slices(const lat_slice *members, size_t n, lat_slice **sorted, size_t *count);

/* ---- observed removes (slices.c) ------------------------------------------ */

/* The names an observed remove selects: every present one (all), or those
 * of a sorted list, met in increasing order by lat__pick_take. */
typedef struct lat__pick {
    int all;
    const lat_slice *want;
    size_t n, k;
} lat__pick;

/* 1 if the pick may still select a name. */
int lat__pick_more(const lat__pick *p);
/* 1 if name is selected; names must come in strictly increasing order. */
int lat__pick_take(lat__pick *p, const uint8_t *name, size_t nlen);

/* Writes into dst the remove of the picked names as observed in state. */
typedef int (*lat__remove_fn)(const uint8_t *state, size_t slen, lat__pick *pick, lat_buf *dst);

/* Runs build over the names (sorted, duplicates dropped; all present names
 * when `all`), with out allowed to alias state or the names. Returns what
 * build returns, or the errors of lat__sorted_slices. */
int lat__observed_remove(const uint8_t *state, size_t slen, const lat_slice *names, size_t n,
                         int all, lat__remove_fn build, lat_buf *out);

/* ---- per-type operations ------------------------------------------------ */

#define LAT_DECLARE_OPS(name)                                                                      \
    int lat__##name##_validate(const uint8_t *buf, size_t len);                                    \
    int lat__##name##_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,          \
                            lat_buf *out);                                                         \
    int lat__##name##_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,        \
                              lat_order *out);                                                     \
    int lat__##name##_is_empty(const uint8_t *buf, size_t len);

LAT_DECLARE_OPS(lww)
LAT_DECLARE_OPS(set)
LAT_DECLARE_OPS(orset)
LAT_DECLARE_OPS(counter)
LAT_DECLARE_OPS(max)
LAT_DECLARE_OPS(causal)
LAT_DECLARE_OPS(priority)
LAT_DECLARE_OPS(map)

#undef LAT_DECLARE_OPS

/* Appends merge(a, b) of two valid states of type t to out.
 * TRELLIS_INVALID for an invalid t, TRELLIS_INTERNAL on OOM. */
int lat__merge_append(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      lat_buf *out);

/* Lattice order from the merge: EQUAL, LESS, GREATER or CONCURRENT after
 * comparing m = merge(a, b) with a and b. Used by types without a cheaper
 * direct comparison. TRELLIS_INTERNAL on OOM. */
int lat__compare_by_merge(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                          lat_order *out);

/* Order from the two containment flags of a walk: a_le_b means every part
 * of a is covered by b. */
lat_order lat__order_from(int a_le_b, int b_le_a);

/* The COUNTER delete delta (see lat_delete_delta), appended to out. */
int lat__counter_delete(const uint8_t *state, size_t slen, uint64_t writer, uint64_t ts,
                        lat_buf *out);

#endif
