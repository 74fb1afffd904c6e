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
} store_vtbl;

struct store {
    const store_vtbl *vt;
    uint64_t capacity;
    int disk;
};

#endif
