/*
 * store_impl.h - what the two store implementations share (private to kvs/).
 */
#ifndef TRELLIS_STORE_IMPL_H
#define TRELLIS_STORE_IMPL_H

#include "kvs/store.h"

typedef struct store_vtbl {
    int (*get)(store *s, uint64_t h, const void *key, size_t klen, lat_buf *out);
    lat_type (*type)(store *s, uint64_t h, const void *key, size_t klen);
    int (*merge)(store *s, uint64_t h, const void *key, size_t klen, const uint8_t *tagged,
                 size_t tlen, int *changed);
    int (*del)(store *s, uint64_t h, const void *key, size_t klen);
    void (*touch)(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s);
    void (*stats)(store *s, store_stats *out);
    int (*iter_new)(store *s, uint64_t lo, uint64_t hi, store_iter **out);
    int (*iter_next)(store_iter *it, store_item *out);
    void (*iter_free)(store_iter *it);
    void (*close)(store *s);
    /* optional: store_read without a copy; NULL: get into the buffer */
    int (*read)(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s, lat_slice *out);
    /* optional: cache hints; NULL: none */
    void (*prefetch)(store *s, uint64_t h, int stage);
    int (*contains)(store *s, uint64_t h, const void *key, size_t klen);
    /* optional: NULL answers 0 (read the state) */
    int (*plain_type)(store *s, uint64_t h, const void *key, size_t klen, lat_type *t);
    /* optional: NULL does nothing */
    void (*sweep)(store *s, uint64_t now_ms, uint64_t grace_ms, size_t budget, size_t *examined,
                  size_t *changed);
    void (*compact)(store *s);
    /* optional: store_scan; NULL: over iter_new/iter_next in ring order */
    int (*scan)(store *s, uint64_t lo, uint64_t hi, size_t want, store_scan_fn fn, void *arg,
                int *done, uint64_t *next);
} store_vtbl;

struct store {
    const store_vtbl *vt;
    uint64_t capacity;
    int disk;
    uint64_t grace_ms; /* kvs.expiry_grace_ms */
};

/* 1 if a stored value is one the store drops (lat_tagged_collectable at
 * the wall clock with grace_ms): a merge then takes it as absent, so that
 * a write made where it was already dropped is not swallowed by it. Plain
 * states never are; only they skip the clock. */
int store_gone(const uint8_t *val, size_t vlen, uint64_t grace_ms);

#endif
