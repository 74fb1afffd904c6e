/*
 * map.c - the calls on MAP keys (Redis hashes): fields set, read, removed
 * and counted. Writes are single operations (MAP_SET, REMOVE, PUT_EX of a
 * field's counter); reads fetch the map and pick from it.
 */
#include <stdlib.h>
#include <string.h>

#include "base/glob.h"
#include "client/client_impl.h"

int trellis_map_set(trellis_client *c, const void *key, size_t klen, const trellis_bytes *pairs,
                    size_t npairs, size_t *added)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_map_set(&o.b, key, klen, pairs, npairs, 0));
    if (rc == TRELLIS_OK && added)
        *added = (size_t)o.op.integer;
    cl_one_fini(&o);
    return rc;
}

int trellis_map_setnx(trellis_client *c, const void *key, size_t klen, const void *field,
                      size_t flen, const void *value, size_t vlen, int *set)
{
    trellis_bytes pair[2] = {{field, flen}, {value, vlen}};
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_map_set(&o.b, key, klen, pair, 1, 1));
    if (rc == TRELLIS_OK && set)
        *set = o.op.integer > 0;
    cl_one_fini(&o);
    return rc;
}

int trellis_map_del(trellis_client *c, const void *key, size_t klen, const trellis_bytes *fields,
                    size_t n, size_t *removed)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_map_del(&o.b, key, klen, fields, n));
    if (rc == TRELLIS_OK && removed)
        *removed = (size_t)o.op.integer;
    cl_one_fini(&o);
    return rc;
}

int trellis_map_incrby(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, int64_t delta, int64_t *value)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_map_incrby(&o.b, key, klen, field, flen, delta));
    if (rc == TRELLIS_OK && value)
        *value = o.op.integer;
    cl_one_fini(&o);
    return rc;
}

/* ---- reads ------------------------------------------------------------------------------- */

/* The map at key: TRELLIS_OK with *v, TRELLIS_NOT_FOUND (*v NULL) when
 * the key is missing or has no field, or the failure. */
static int map_read(trellis_client *c, const void *key, size_t klen, trellis_value **v)
{
    *v = NULL;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_get(&o.b, key, klen, TRELLIS_TYPE_MAP));
    if (rc == TRELLIS_OK)
        *v = cl_one_take(&o);
    else if (rc == TRELLIS_LATTICE_MISMATCH && o.op.rtype != TRELLIS_TYPE_NONE)
        cl_set_error("the key holds a %s, not a MAP", trellis_type_name(o.op.rtype));
    cl_one_fini(&o);
    return rc;
}

static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    return r ? r : (alen > blen) - (alen < blen);
}

/* The value item of field f in a map value (fields in name order), or
 * NULL. */
static const trellis_item *map_field(const trellis_value *v, const void *f, size_t flen)
{
    size_t lo = 0, hi = v ? v->count / 2 : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const trellis_item *name = &v->items[2 * mid];
        int r = bytes_cmp(name->data, name->len, f, flen);
        if (r == 0)
            return &v->items[2 * mid + 1];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* map_read for the calls that answer a missing key as an empty map. */
static int map_read_or_empty(trellis_client *c, const void *key, size_t klen, trellis_value **v)
{
    int rc = map_read(c, key, klen, v);
    return rc == TRELLIS_NOT_FOUND ? TRELLIS_OK : rc;
}

int trellis_map_getall(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    if (!out)
        return TRELLIS_INVALID;
    return map_read(c, key, klen, out);
}

int trellis_map_get(trellis_client *c, const void *key, size_t klen, const void *field, size_t flen,
                    void **value, size_t *vlen)
{
    trellis_value *v;
    if (!value || (!field && flen))
        return TRELLIS_INVALID;
    int rc = map_read(c, key, klen, &v);
    if (rc != TRELLIS_OK)
        return rc;
    const trellis_item *it = map_field(v, field, flen);
    rc = TRELLIS_NOT_FOUND;
    if (it) {
        uint8_t *p = malloc(it->len + 1);
        rc = p ? TRELLIS_OK : TRELLIS_INTERNAL;
        if (p) {
            memcpy(p, it->data, it->len + 1);
            *value = p;
            if (vlen)
                *vlen = it->len;
        }
    }
    trellis_value_free(v);
    return rc;
}

int trellis_map_mget(trellis_client *c, const void *key, size_t klen, const trellis_bytes *fields,
                     size_t n, trellis_value **out)
{
    trellis_value *v;
    if (!out || (n && !fields))
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc != TRELLIS_OK)
        return rc;
    trellis_bytes *items = calloc(n ? n : 1, sizeof(*items));
    rc = items ? TRELLIS_OK : TRELLIS_INTERNAL;
    for (size_t i = 0; items && i < n; i++) {
        const trellis_item *it = map_field(v, fields[i].data, fields[i].len);
        if (it) {
            items[i].data = it->data;
            items[i].len = it->len;
        }
    }
    if (rc == TRELLIS_OK)
        rc = cl_value_items(TRELLIS_TYPE_MAP, items, n, out);
    free(items);
    trellis_value_free(v);
    return rc;
}

/* A value of every name (which 0), every value (1) or both (2) of a map
 * whose names come after `after` and match the pattern, at most count
 * fields (0: all). */
static int map_pick(const trellis_value *v, int which, const void *after, size_t alen, size_t count,
                    const void *match, size_t mlen, trellis_value **out)
{
    size_t fields = v ? v->count / 2 : 0;
    trellis_bytes *items = calloc(fields ? 2 * fields : 1, sizeof(*items));
    if (!items)
        return TRELLIS_INTERNAL;
    size_t n = 0, taken = 0;
    for (size_t f = 0; f < fields && (count == 0 || taken < count); f++) {
        const trellis_item *name = &v->items[2 * f], *val = &v->items[2 * f + 1];
        if (alen && bytes_cmp(name->data, name->len, after, alen) <= 0)
            continue;
        if (mlen && !glob_match(match, mlen, name->data, name->len, 0))
            continue;
        taken++;
        if (which != 1)
            items[n++] = (trellis_bytes){name->data, name->len};
        if (which != 0)
            items[n++] = (trellis_bytes){val->data, val->len};
    }
    int rc = cl_value_items(TRELLIS_TYPE_MAP, items, n, out);
    if (rc == TRELLIS_OK && which == 2)
        (*out)->integer = (int64_t)taken;
    free(items);
    return rc;
}

static int map_list(trellis_client *c, const void *key, size_t klen, int which, trellis_value **out)
{
    trellis_value *v;
    if (!out)
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc == TRELLIS_OK)
        rc = map_pick(v, which, NULL, 0, 0, NULL, 0, out);
    trellis_value_free(v);
    return rc;
}

int trellis_map_keys(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    return map_list(c, key, klen, 0, out);
}

int trellis_map_vals(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    return map_list(c, key, klen, 1, out);
}

int trellis_map_scan(trellis_client *c, const void *key, size_t klen, const void *after,
                     size_t alen, size_t count, const void *match, size_t mlen, trellis_value **out)
{
    trellis_value *v;
    if (!out || (alen && !after) || (mlen && !match))
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc == TRELLIS_OK)
        rc = map_pick(v, 2, after, alen, count, match, mlen, out);
    trellis_value_free(v);
    return rc;
}

int trellis_map_len(trellis_client *c, const void *key, size_t klen, size_t *n)
{
    trellis_value *v;
    if (!n)
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc == TRELLIS_OK)
        *n = v ? v->count / 2 : 0;
    trellis_value_free(v);
    return rc;
}

int trellis_map_exists(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, int *exists)
{
    trellis_value *v;
    if (!exists || (!field && flen))
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc == TRELLIS_OK)
        *exists = map_field(v, field, flen) != NULL;
    trellis_value_free(v);
    return rc;
}

int trellis_map_strlen(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, size_t *len)
{
    trellis_value *v;
    if (!len || (!field && flen))
        return TRELLIS_INVALID;
    int rc = map_read_or_empty(c, key, klen, &v);
    if (rc == TRELLIS_OK) {
        const trellis_item *it = map_field(v, field, flen);
        *len = it ? it->len : 0;
    }
    trellis_value_free(v);
    return rc;
}
