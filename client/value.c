/*
 * value.c - decoding lattice states read from shards into trellis_value
 * objects: one allocation holding the value, its items, its clock and a
 * copy of the state the items point into.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_impl.h"

typedef struct value_block {
    trellis_value v;
    /* then: items[], clock[], and the state followed by NUL-terminated item copies */
} value_block;

void trellis_value_free(trellis_value *v)
{
    free(v); /* the value is the first member of its block */
}

#define MAP_NUMBER_MAX 21 /* a signed 64-bit integer in decimal */

static size_t align_up(size_t n)
{
    return (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
}

/* Counts the items of a valid state and the bytes their NUL-terminated
 * copies need. */
static void count_items(lat_type t, const uint8_t *s, size_t len, size_t *n, size_t *bytes,
                        size_t *nclock)
{
    size_t pos = 0;
    lat_slice m;
    *n = *bytes = *nclock = 0;
    switch (t) {
    case LAT_LWW: {
        uint64_t ts, w;
        int tomb;
        lat_lww_view(s, len, &ts, &w, &tomb, &m);
        if (!tomb) {
            *n = 1;
            *bytes = m.len + 1;
        }
        break;
    }
    case LAT_PRIORITY: {
        int64_t p;
        uint64_t w;
        lat_priority_view(s, len, &p, &w, &m);
        *n = 1;
        *bytes = m.len + 1;
        break;
    }
    case LAT_SET:
        while (lat_set_next(s, len, &pos, &m)) {
            (*n)++;
            *bytes += m.len + 1;
        }
        break;
    case LAT_ORSET:
        while (lat_orset_next(s, len, &pos, &m)) {
            (*n)++;
            *bytes += m.len + 1;
        }
        break;
    case LAT_CAUSAL:
        while (lat_causal_next(s, len, &pos, NULL, &m)) {
            (*n)++;
            *bytes += m.len + 1;
        }
        *nclock = lat_causal_clock_count(s, len);
        break;
    case LAT_MAP: {
        lat_map_field f;
        while (lat_map_next(s, len, &pos, &f)) {
            *n += 2;
            *bytes += f.name.len + 1 + (f.counter ? MAP_NUMBER_MAX : f.value.len) + 1;
        }
        break;
    }
    default:
        break;
    }
}

int cl_value_new(lat_type t, const uint8_t *state, size_t len, trellis_value **out)
{
    if (!lat_type_valid((int)t) || lat_validate(t, state, len) != TRELLIS_OK)
        return TRELLIS_MALFORMED;
    size_t n, bytes, nclock;
    count_items(t, state, len, &n, &bytes, &nclock);
    size_t off_items = align_up(sizeof(value_block));
    size_t off_clock = align_up(off_items + n * sizeof(trellis_item));
    size_t off_state = align_up(off_clock + nclock * sizeof(trellis_dot));
    size_t off_copies = off_state + len + 1;
    if (n > SIZE_MAX / sizeof(trellis_item) || bytes > SIZE_MAX - off_copies)
        return TRELLIS_TOO_LARGE;
    uint8_t *blk = malloc(off_copies + bytes);
    if (!blk)
        return TRELLIS_INTERNAL;
    trellis_value *v = &((value_block *)(void *)blk)->v;
    memset(v, 0, sizeof(*v));
    trellis_item *items = (trellis_item *)(void *)(blk + off_items);
    trellis_dot *clock = (trellis_dot *)(void *)(blk + off_clock);
    uint8_t *st = blk + off_state;
    uint8_t *copy = blk + off_copies;
    if (len)
        memcpy(st, state, len);
    st[len] = 0;
    v->type = (trellis_type)t;
    v->state = st;
    v->state_len = len;
    v->items = items;
    v->clock = clock;

    /* Items get their own NUL-terminated copies so that each can be used as
     * a C string; they point into the block, not into the state. */
    size_t pos = 0, k = 0;
    lat_slice m;
    lat_dot d;
#define PUSH(slice, dotv)                                                                          \
    do {                                                                                           \
        memcpy(copy, (slice).data, (slice).len);                                                   \
        copy[(slice).len] = 0;                                                                     \
        items[k].data = copy;                                                                      \
        items[k].len = (slice).len;                                                                \
        items[k].dot = (dotv);                                                                     \
        copy += (slice).len + 1;                                                                   \
        k++;                                                                                       \
    } while (0)
    const trellis_dot none = {0, 0};
    switch (t) {
    case LAT_LWW: {
        int tomb;
        lat_lww_view(st, len, &v->timestamp, &v->writer, &tomb, &m);
        if (!tomb)
            PUSH(m, none);
        break;
    }
    case LAT_PRIORITY:
        lat_priority_view(st, len, &v->integer, &v->writer, &m);
        PUSH(m, none);
        break;
    case LAT_SET:
        while (lat_set_next(st, len, &pos, &m))
            PUSH(m, none);
        break;
    case LAT_ORSET:
        while (lat_orset_next(st, len, &pos, &m))
            PUSH(m, none);
        break;
    case LAT_CAUSAL:
        while (lat_causal_next(st, len, &pos, &d, &m)) {
            trellis_dot td = {d.writer, d.counter};
            PUSH(m, td);
        }
        for (size_t i = 0; i < nclock; i++) {
            lat_dot cd = lat_causal_clock_at(st, len, i);
            clock[i].writer = cd.writer;
            clock[i].counter = cd.counter;
        }
        v->clock_count = nclock;
        break;
    case LAT_COUNTER:
        v->integer = lat_counter_value(st, len);
        break;
    case LAT_MAX:
        v->integer = lat_max_value(st, len);
        break;
    case LAT_MAP: {
        lat_map_field f;
        char num[MAP_NUMBER_MAX + 1];
        while (lat_map_next(st, len, &pos, &f)) {
            PUSH(f.name, none);
            if (f.counter) {
                int w = snprintf(num, sizeof(num), "%" PRId64, f.number);
                lat_slice text = {(const uint8_t *)num, (size_t)w};
                PUSH(text, none);
            } else {
                PUSH(f.value, none);
            }
            v->integer++;
        }
        break;
    }
    default:
        break;
    }
#undef PUSH
    v->count = k;
    *out = v;
    return TRELLIS_OK;
}

/* A block with room for n items and `bytes` of NUL-terminated copies, no
 * state. */
static trellis_value *value_alloc(trellis_type t, size_t n, size_t bytes, uint8_t **copies)
{
    size_t off_items = align_up(sizeof(value_block));
    size_t off_copies = align_up(off_items + n * sizeof(trellis_item));
    if (n > SIZE_MAX / sizeof(trellis_item) || bytes > SIZE_MAX - off_copies - 1)
        return NULL;
    uint8_t *blk = malloc(off_copies + bytes + 1);
    if (!blk)
        return NULL;
    trellis_value *v = &((value_block *)(void *)blk)->v;
    memset(v, 0, sizeof(*v));
    v->type = t;
    v->items = (trellis_item *)(void *)(blk + off_items);
    *copies = blk + off_copies;
    (*copies)[bytes] = 0;
    v->state = *copies + bytes; /* an empty state */
    return v;
}

int cl_value_int(trellis_type t, int64_t i, trellis_value **out)
{
    uint8_t *copies;
    trellis_value *v = value_alloc(t, 0, 0, &copies);
    if (!v)
        return TRELLIS_INTERNAL;
    v->integer = i;
    *out = v;
    return TRELLIS_OK;
}

int cl_value_bytes(const uint8_t *p, size_t n, trellis_value **out)
{
    uint8_t *copies;
    trellis_value *v = value_alloc(TRELLIS_TYPE_NONE, 0, n, &copies);
    if (!v)
        return TRELLIS_INTERNAL;
    if (n)
        memcpy(copies, p, n);
    v->state = copies;
    v->state_len = n;
    *out = v;
    return TRELLIS_OK;
}

int cl_value_items(trellis_type t, const trellis_bytes *items, size_t n, trellis_value **out)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += items[i].data ? items[i].len + 1 : 0;
    uint8_t *copy;
    trellis_value *v = value_alloc(t, n, bytes, &copy);
    if (!v)
        return TRELLIS_INTERNAL;
    trellis_item *it = (trellis_item *)v->items;
    for (size_t i = 0; i < n; i++) {
        memset(&it[i], 0, sizeof(it[i]));
        if (!items[i].data)
            continue;
        if (items[i].len)
            memcpy(copy, items[i].data, items[i].len);
        copy[items[i].len] = 0;
        it[i].data = copy;
        it[i].len = items[i].len;
        copy += items[i].len + 1;
    }
    v->count = n;
    *out = v;
    return TRELLIS_OK;
}
