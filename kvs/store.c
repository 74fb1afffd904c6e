/*
 * store.c - store dispatch and the memory tier, with its expiry sweep.
 */
#include "kvs/store.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "kvs/memtable.h"
#include "kvs/store_impl.h"

int store_gone(const uint8_t *val, size_t vlen, uint64_t grace_ms)
{
    return vlen > 0 && !lat_type_valid(val[0]) &&
           lat_tagged_collectable(val, vlen, clock_wall_us() / 1000, grace_ms);
}

int store_is_disk(const store *s)
{
    return s->disk;
}

uint64_t store_capacity(const store *s)
{
    return s->capacity;
}

int store_get(store *s, uint64_t h, const void *key, size_t klen, lat_buf *out)
{
    return s->vt->get(s, h, key, klen, out);
}

int store_read(store *s, uint64_t h, const void *key, size_t klen, lat_buf *buf, uint32_t now_s,
               lat_slice *out)
{
    if (s->vt->read)
        return s->vt->read(s, h, key, klen, now_s, out);
    int rc = s->vt->get(s, h, key, klen, buf);
    if (rc != TRELLIS_OK)
        return rc;
    if (now_s)
        s->vt->touch(s, h, key, klen, now_s);
    out->data = buf->data;
    out->len = buf->len;
    return TRELLIS_OK;
}

void store_prefetch(store *s, uint64_t h, int stage)
{
    if (s->vt->prefetch)
        s->vt->prefetch(s, h, stage);
}

lat_type store_type(store *s, uint64_t h, const void *key, size_t klen)
{
    return s->vt->type(s, h, key, klen);
}

int store_merge(store *s, uint64_t h, const void *key, size_t klen, const uint8_t *tagged,
                size_t tlen, int *changed)
{
    int dummy;
    return s->vt->merge(s, h, key, klen, tagged, tlen, changed ? changed : &dummy);
}

int store_delete(store *s, uint64_t h, const void *key, size_t klen)
{
    return s->vt->del(s, h, key, klen);
}

void store_touch(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s)
{
    s->vt->touch(s, h, key, klen, now_s);
}

int store_contains(store *s, uint64_t h, const void *key, size_t klen)
{
    return s->vt->contains(s, h, key, klen);
}

int store_plain_type(store *s, uint64_t h, const void *key, size_t klen, lat_type *t)
{
    return s->vt->plain_type ? s->vt->plain_type(s, h, key, klen, t) : 0;
}

void store_sweep(store *s, uint64_t now_ms, uint64_t grace_ms, size_t budget, size_t *examined,
                 size_t *changed)
{
    *examined = *changed = 0;
    if (s->vt->sweep)
        s->vt->sweep(s, now_ms, grace_ms, budget, examined, changed);
}

void store_compact(store *s)
{
    if (s->vt->compact)
        s->vt->compact(s);
}

void store_stats_get(store *s, store_stats *out)
{
    memset(out, 0, sizeof(*out));
    s->vt->stats(s, out);
}

int store_iter_new(store *s, uint64_t lo, uint64_t hi, store_iter **out)
{
    return s->vt->iter_new(s, lo, hi, out);
}

/* Every iterator starts with a pointer to its store. */
struct store_iter {
    store *s;
};

int store_iter_next(store_iter *it, store_item *out)
{
    return it->s->vt->iter_next(it, out);
}

void store_iter_free(store_iter *it)
{
    if (it)
        it->s->vt->iter_free(it);
}

/* The walk in ring order over an iterator (the disk tier): it may stop
 * after `want` counted keys where the next key's hash differs from the
 * last one's. */
static int iter_scan(store *s, uint64_t lo, uint64_t hi, size_t want, store_scan_fn fn, void *arg,
                     int *done, uint64_t *next)
{
    store_iter *it;
    int rc = store_iter_new(s, lo, hi, &it);
    if (rc != TRELLIS_OK)
        return rc;
    store_item item;
    size_t counted = 0;
    uint64_t last = 0;
    int any = 0;
    *done = 1;
    while (store_iter_next(it, &item)) {
        if (counted >= want && any && item.hash != last) {
            *done = 0;
            *next = item.hash;
            break;
        }
        counted += (size_t)fn(arg, &item);
        last = item.hash;
        any = 1;
    }
    store_iter_free(it);
    return TRELLIS_OK;
}

int store_scan(store *s, uint64_t lo, uint64_t hi, size_t want, store_scan_fn fn, void *arg,
               int *done, uint64_t *next)
{
    *next = lo;
    if (s->vt->scan)
        return s->vt->scan(s, lo, hi, want, fn, arg, done, next);
    return iter_scan(s, lo, hi, want, fn, arg, done, next);
}

void store_close(store *s)
{
    if (s)
        s->vt->close(s);
}

/* ---- memory tier ---------------------------------------------------------- */

typedef struct mem_store {
    store base;
    memtable *t;
    lat_buf scratch; /* merge results */
    uint64_t type_conflicts;
    uint64_t malformed;
    size_t sweep_cursor; /* the expiry sweep's next slot */
    uint64_t expired, collected;
} mem_store;

typedef struct mem_iter {
    store *s; /* first, as in store_iter */
    mt_range range;
} mem_iter;

static int mem_get(store *s, uint64_t h, const void *key, size_t klen, lat_buf *out)
{
    mem_store *m = (mem_store *)s;
    mt_entry_view v;
    if (!memtable_get(m->t, h, key, klen, &v))
        return TRELLIS_NOT_FOUND;
    return lat_buf_set(out, v.val, v.vlen);
}

static lat_type mem_type(store *s, uint64_t h, const void *key, size_t klen)
{
    mem_store *m = (mem_store *)s;
    mt_entry_view v;
    if (!memtable_get(m->t, h, key, klen, &v))
        return LAT_NONE;
    return lat_tagged_type(v.val, v.vlen);
}

static int mem_contains(store *s, uint64_t h, const void *key, size_t klen)
{
    mt_entry_view v;
    return memtable_get(((mem_store *)s)->t, h, key, klen, &v);
}

/* Plain states (the first byte a type) are skipped at once; a state with
 * a header is parsed, and replaced by its tombstone or dropped. */
static void mem_sweep(store *s, uint64_t now_ms, uint64_t grace_ms, size_t budget, size_t *examined,
                      size_t *changed)
{
    mem_store *m = (mem_store *)s;
    mt_entry_view v;
    while (memtable_walk(m->t, &m->sweep_cursor, &budget, &v)) {
        (*examined)++;
        if (v.vlen == 0 || lat_type_valid(v.val[0]))
            continue;
        if (lat_tagged_collectable(v.val, v.vlen, now_ms, grace_ms)) {
            memtable_del(m->t, v.hash, v.key, v.klen);
            m->collected++;
            (*changed)++;
        } else if (lat_tagged_tombstone(v.val, v.vlen, now_ms, &m->scratch) == TRELLIS_OK &&
                   memtable_put(m->t, v.hash, v.key, v.klen, m->scratch.data, m->scratch.len) ==
                       0) {
            m->expired++;
            (*changed)++;
        }
    }
}

static int mem_merge(store *s, uint64_t h, const void *key, size_t klen, const uint8_t *tagged,
                     size_t tlen, int *changed)
{
    mem_store *m = (mem_store *)s;
    mt_entry_view v;
    *changed = 0;
    if (store_gone(tagged, tlen, s->grace_ms))
        return TRELLIS_OK; /* dropped here already */
    int have = memtable_get(m->t, h, key, klen, &v);
    if (!have || store_gone(v.val, v.vlen, s->grace_ms)) {
        /* A new key (or one whose state is as good as dropped): its entry,
         * key and value count against the capacity. */
        if (!have && memtable_bytes(m->t) + klen + tlen + 64 > s->capacity)
            return TRELLIS_OVERLOADED;
        if (memtable_put(m->t, h, key, klen, tagged, tlen) != 0)
            return TRELLIS_INTERNAL;
        *changed = 1;
        return TRELLIS_OK;
    }
    if (v.vlen == tlen && memcmp(v.val, tagged, tlen) == 0)
        return TRELLIS_OK; /* idempotent resend or echo */
    unsigned bad = 0;
    if (v.vlen > 0 && tlen > 0 && lat_type_valid(v.val[0]) && lat_type_valid(tagged[0]) &&
        v.val[0] != tagged[0])
        m->type_conflicts++;
    if (lat_tagged_merge(v.val, v.vlen, tagged, tlen, &m->scratch, &bad) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    m->malformed += bad;
    if (m->scratch.len == v.vlen && memcmp(m->scratch.data, v.val, v.vlen) == 0)
        return TRELLIS_OK; /* nothing new */
    if (m->scratch.len > v.vlen && memtable_bytes(m->t) + (m->scratch.len - v.vlen) > s->capacity)
        return TRELLIS_OVERLOADED;
    if (memtable_put(m->t, h, key, klen, m->scratch.data, m->scratch.len) != 0)
        return TRELLIS_INTERNAL;
    *changed = 1;
    return TRELLIS_OK;
}

static int mem_del(store *s, uint64_t h, const void *key, size_t klen)
{
    memtable_del(((mem_store *)s)->t, h, key, klen);
    return TRELLIS_OK;
}

static void mem_touch(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s)
{
    memtable_touch(((mem_store *)s)->t, h, key, klen, now_s);
}

static void mem_stats(store *s, store_stats *out)
{
    mem_store *m = (mem_store *)s;
    out->keys = memtable_count(m->t);
    out->bytes = memtable_bytes(m->t);
    out->type_conflicts = m->type_conflicts;
    out->malformed = m->malformed;
    out->expired = m->expired;
    out->collected = m->collected;
}

static int mem_iter_new(store *s, uint64_t lo, uint64_t hi, store_iter **out)
{
    mem_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return TRELLIS_INTERNAL;
    it->s = s;
    memtable_range_start(((mem_store *)s)->t, lo, hi, &it->range);
    *out = (store_iter *)it;
    return TRELLIS_OK;
}

static int mem_iter_next(store_iter *sit, store_item *out)
{
    mem_iter *it = (mem_iter *)sit;
    mt_entry_view v;
    if (!memtable_range_next(((mem_store *)it->s)->t, &it->range, &v))
        return 0;
    out->key.data = v.key;
    out->key.len = v.klen;
    out->val.data = v.val;
    out->val.len = v.vlen;
    out->hash = v.hash;
    out->atime = v.atime;
    return 1;
}

static void mem_iter_free(store_iter *it)
{
    free(it);
}

typedef struct mem_scan_arg {
    store_scan_fn fn;
    void *arg;
} mem_scan_arg;

static int mem_scan_one(void *arg, const mt_entry_view *v)
{
    const mem_scan_arg *a = arg;
    store_item item = {{v->key, v->klen}, {v->val, v->vlen}, v->hash, v->atime};
    return a->fn(a->arg, &item);
}

static int mem_scan(store *s, uint64_t lo, uint64_t hi, size_t want, store_scan_fn fn, void *arg,
                    int *done, uint64_t *next)
{
    mem_scan_arg a = {fn, arg};
    *done = memtable_scan(((mem_store *)s)->t, lo, hi, want, mem_scan_one, &a, next);
    return TRELLIS_OK;
}

static int mem_read(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s,
                    lat_slice *out)
{
    mt_entry_view v;
    if (!memtable_get_touch(((mem_store *)s)->t, h, key, klen, now_s, &v))
        return TRELLIS_NOT_FOUND;
    out->data = v.val;
    out->len = v.vlen;
    return TRELLIS_OK;
}

static void mem_prefetch(store *s, uint64_t h, int stage)
{
    memtable_prefetch(((mem_store *)s)->t, h, stage);
}

static void mem_close(store *s)
{
    mem_store *m = (mem_store *)s;
    memtable_free(m->t);
    lat_buf_free(&m->scratch);
    free(m);
}

static const store_vtbl mem_vtbl = {
    .get = mem_get,
    .type = mem_type,
    .merge = mem_merge,
    .del = mem_del,
    .touch = mem_touch,
    .stats = mem_stats,
    .iter_new = mem_iter_new,
    .iter_next = mem_iter_next,
    .iter_free = mem_iter_free,
    .close = mem_close,
    .read = mem_read,
    .prefetch = mem_prefetch,
    .contains = mem_contains,
    .sweep = mem_sweep,
    .scan = mem_scan,
};

int store_open_memory(uint64_t capacity, uint64_t grace_ms, store **out)
{
    mem_store *m = calloc(1, sizeof(*m));
    if (!m)
        return TRELLIS_INTERNAL;
    m->t = memtable_new_slotted(1024);
    if (!m->t) {
        free(m);
        return TRELLIS_INTERNAL;
    }
    m->base.vt = &mem_vtbl;
    m->base.capacity = capacity;
    m->base.grace_ms = grace_ms;
    lat_buf_init(&m->scratch);
    *out = &m->base;
    return TRELLIS_OK;
}
