/*
 * lattice.c - type names and the generic operations, dispatched by type to
 * the per-type files (lww.c, set.c, ...).
 */
#include <string.h>

#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* Longest type name, "PRIORITY", plus one to detect longer input. */
#define LAT_TYPE_NAME_MAX 9

/* Returns the name of t: "LWW", ... for valid types, "NONE" for LAT_NONE
 * and "?" for anything else. The string is static. */
const char *lat_type_name(lat_type t)
{
    switch (t) {
    case LAT_NONE:
        return "NONE";
    case LAT_LWW:
        return "LWW";
    case LAT_SET:
        return "SET";
    case LAT_ORSET:
        return "ORSET";
    case LAT_COUNTER:
        return "COUNTER";
    case LAT_MAX:
        return "MAX";
    case LAT_CAUSAL:
        return "CAUSAL";
    case LAT_PRIORITY:
        return "PRIORITY";
    case LAT_MAP:
        return "MAP";
    }
    return "?";
}

/* Returns 1 if t is one of the eight storable types, 0 otherwise. */
int lat_type_valid(int t)
{
    return t >= LAT_TYPE_FIRST && t <= LAT_TYPE_LAST;
}

/* Parses one of the eight storable type names, ignoring ASCII case.
 * Returns TRELLIS_OK and sets *out, or TRELLIS_INVALID (for NULL, unknown
 * names and "NONE"), leaving *out unchanged. */
int lat_type_parse(const char *name, lat_type *out)
{
    char up[LAT_TYPE_NAME_MAX + 1];
    size_t n = 0;
    if (name == NULL)
        return TRELLIS_INVALID;
    for (; name[n] != '\0'; n++) {
        if (n >= LAT_TYPE_NAME_MAX)
            return TRELLIS_INVALID;
        char c = name[n];
        up[n] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    up[n] = '\0';
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        if (strcmp(up, lat_type_name((lat_type)t)) == 0) {
            *out = (lat_type)t;
            return TRELLIS_OK;
        }
    }
    return TRELLIS_INVALID;
}

/* The decoder. Returns TRELLIS_OK if [buf, len) is a canonical state of
 * type t, TRELLIS_MALFORMED otherwise (also for an invalid t). Reads only
 * inside [buf, buf + len); buf may be NULL when len is 0. */
int lat_validate(lat_type t, const uint8_t *buf, size_t len)
{
    if (buf == NULL && len > 0)
        return TRELLIS_MALFORMED;
    switch (t) {
    case LAT_LWW:
        return lat__lww_validate(buf, len);
    case LAT_SET:
        return lat__set_validate(buf, len);
    case LAT_ORSET:
        return lat__orset_validate(buf, len);
    case LAT_COUNTER:
        return lat__counter_validate(buf, len);
    case LAT_MAX:
        return lat__max_validate(buf, len);
    case LAT_CAUSAL:
        return lat__causal_validate(buf, len);
    case LAT_PRIORITY:
        return lat__priority_validate(buf, len);
    case LAT_MAP:
        return lat__map_validate(buf, len);
    case LAT_NONE:
        break;
    }
    return TRELLIS_MALFORMED;
}

/* See lat_impl.h. */
int lat__merge_append(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      lat_buf *out)
{
    switch (t) {
    case LAT_LWW:
        return lat__lww_merge(a, alen, b, blen, out);
    case LAT_SET:
        return lat__set_merge(a, alen, b, blen, out);
    case LAT_ORSET:
        return lat__orset_merge(a, alen, b, blen, out);
    case LAT_COUNTER:
        return lat__counter_merge(a, alen, b, blen, out);
    case LAT_MAX:
        return lat__max_merge(a, alen, b, blen, out);
    case LAT_CAUSAL:
        return lat__causal_merge(a, alen, b, blen, out);
    case LAT_PRIORITY:
        return lat__priority_merge(a, alen, b, blen, out);
    case LAT_MAP:
        return lat__map_merge(a, alen, b, blen, out);
    case LAT_NONE:
        break;
    }
    return TRELLIS_INVALID;
}

/* out = merge(a, b) for valid states a and b of type t; out may alias a or
 * b. Returns TRELLIS_OK, TRELLIS_INVALID for an invalid t or
 * TRELLIS_INTERNAL on OOM (out's contents then unspecified). */
int lat_merge(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
              lat_buf *out)
{
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, a, alen, b, blen);
    int rc = lat__merge_append(t, a, alen, b, blen, dst);
    return lat__out_end(out, &tmp, dst, rc);
}

/* See lat_impl.h. */
lat_order lat__order_from(int a_le_b, int b_le_a)
{
    if (a_le_b && b_le_a)
        return LAT_EQUAL;
    if (a_le_b)
        return LAT_LESS;
    if (b_le_a)
        return LAT_GREATER;
    return LAT_CONCURRENT;
}

/* See lat_impl.h. Canonical encodings make byte equality state equality. */
int lat__compare_by_merge(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                          lat_order *out)
{
    lat_buf m;
    lat_buf_init(&m);
    int rc = lat__merge_append(t, a, alen, b, blen, &m);
    if (rc == TRELLIS_OK) {
        int a_le_b = m.len == blen && lat_bytes_cmp(m.data, m.len, b, blen) == 0;
        int b_le_a = m.len == alen && lat_bytes_cmp(m.data, m.len, a, alen) == 0;
        *out = lat__order_from(a_le_b, b_le_a);
    }
    lat_buf_free(&m);
    return rc;
}

/* Sets *out to the lattice order of valid states a and b of type t.
 * Returns TRELLIS_OK, TRELLIS_INVALID for an invalid t, or
 * TRELLIS_INTERNAL on OOM (*out then unchanged). */
int lat_compare(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                lat_order *out)
{
    switch (t) {
    case LAT_LWW:
        return lat__lww_compare(a, alen, b, blen, out);
    case LAT_SET:
        return lat__set_compare(a, alen, b, blen, out);
    case LAT_ORSET:
        return lat__orset_compare(a, alen, b, blen, out);
    case LAT_COUNTER:
        return lat__counter_compare(a, alen, b, blen, out);
    case LAT_MAX:
        return lat__max_compare(a, alen, b, blen, out);
    case LAT_CAUSAL:
        return lat__causal_compare(a, alen, b, blen, out);
    case LAT_PRIORITY:
        return lat__priority_compare(a, alen, b, blen, out);
    case LAT_MAP:
        return lat__map_compare(a, alen, b, blen, out);
    case LAT_NONE:
        break;
    }
    return TRELLIS_INVALID;
}

/* Returns 1 if the valid state reads as "no value" (LWW tombstone, empty
 * SET, ORSET or MAP, CAUSAL without values), 0 otherwise, including for
 * COUNTER, MAX, PRIORITY and invalid types. */
int lat_is_empty(lat_type t, const uint8_t *buf, size_t len)
{
    switch (t) {
    case LAT_LWW:
        return lat__lww_is_empty(buf, len);
    case LAT_SET:
        return lat__set_is_empty(buf, len);
    case LAT_ORSET:
        return lat__orset_is_empty(buf, len);
    case LAT_COUNTER:
        return lat__counter_is_empty(buf, len);
    case LAT_MAX:
        return lat__max_is_empty(buf, len);
    case LAT_CAUSAL:
        return lat__causal_is_empty(buf, len);
    case LAT_PRIORITY:
        return lat__priority_is_empty(buf, len);
    case LAT_MAP:
        return lat__map_is_empty(buf, len);
    case LAT_NONE:
        break;
    }
    return 0;
}

/* The delta of a DEL (see lattice.h). state is a valid state of type t or
 * NULL/0; out may alias it. Returns TRELLIS_OK, TRELLIS_INVALID for SET,
 * MAX, PRIORITY, invalid types and a CAUSAL ts not above the observed clock
 * entry of writer, TRELLIS_INTERNAL on OOM. */
int lat_delete_delta(lat_type t, const uint8_t *state, size_t slen, uint64_t writer, uint64_t ts,
                     lat_buf *out)
{
    lat_buf tmp;
    lat_buf *dst;
    int rc;
    switch (t) {
    case LAT_LWW:
        return lat_lww_encode(ts, writer, 1, NULL, 0, out);
    case LAT_ORSET:
        return lat_orset_remove_all(state, slen, out);
    case LAT_MAP:
        return lat_map_remove_all(state, slen, out);
    case LAT_CAUSAL:
        return lat_causal_put(state, slen, writer, ts, NULL, 0, 1, out);
    case LAT_COUNTER:
        dst = lat__out_begin(out, &tmp, state, slen, NULL, 0);
        rc = lat__counter_delete(state, slen, writer, ts, dst);
        return lat__out_end(out, &tmp, dst, rc);
    case LAT_SET:
    case LAT_MAX:
    case LAT_PRIORITY:
    case LAT_NONE:
        break;
    }
    return TRELLIS_INVALID;
}
