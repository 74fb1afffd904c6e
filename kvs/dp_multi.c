/*
 * dp_multi.c - the transaction state of a RESP connection (dp_multi.h).
 */
#include "kvs/dp_multi.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kvs/shard_impl.h"

/* Fingerprints that are no hash of a state. */
enum { FP_ABSENT = 1, FP_GONE, FP_UNKNOWN, FP_FIRST_HASH };

dp_cmd *dp_cmd_copy(const resp_cmd_def *d, const resp_command *c)
{
    size_t total = 0;
    for (size_t i = 0; i < c->argc; i++)
        total += c->argl[i];
    /* One allocation: the struct, the word pointers, their lengths, the bytes. */
    size_t bytes = sizeof(dp_cmd) + c->argc * (sizeof(uint8_t *) + sizeof(size_t)) + total;
    dp_cmd *p = calloc(1, bytes);
    if (!p)
        return NULL;
    const uint8_t **argv = (const uint8_t **)(p + 1);
    size_t *argl = (size_t *)(argv + c->argc);
    uint8_t *w = (uint8_t *)(argl + c->argc);
    for (size_t i = 0; i < c->argc; i++) {
        if (c->argl[i])
            memcpy(w, c->argv[i], c->argl[i]);
        argv[i] = w;
        argl[i] = c->argl[i];
        w += c->argl[i];
    }
    p->def = d;
    p->c = (resp_command){c->argc, argv, argl};
    return p;
}

void dp_cmd_free(dp_cmd *p)
{
    if (p)
        free(p->err);
    free(p);
}

int dp_multi_queue(dp_multi *m, const resp_cmd_def *d, const resp_command *c, size_t max_cmds,
                   size_t max_bytes)
{
    size_t bytes = 0;
    for (size_t i = 0; i < c->argc; i++)
        bytes += c->argl[i];
    if (m->ncmds >= max_cmds || m->bytes + bytes > max_bytes)
        return TRELLIS_TOO_LARGE;
    if (m->ncmds == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        dp_cmd **v = realloc(m->cmds, cap * sizeof(*v));
        if (!v)
            return TRELLIS_INTERNAL;
        m->cmds = v;
        m->cap = cap;
    }
    dp_cmd *p = dp_cmd_copy(d, c);
    if (!p)
        return TRELLIS_INTERNAL;
    m->cmds[m->ncmds++] = p;
    m->bytes += bytes;
    return TRELLIS_OK;
}

void dp_multi_end(dp_multi *m)
{
    for (size_t i = 0; i < m->ncmds; i++)
        dp_cmd_free(m->cmds[i]);
    m->ncmds = 0;
    m->bytes = 0;
    m->active = 0;
    m->dirty = 0;
}

int dp_multi_watch(dp_multi *m, const uint8_t *key, size_t klen, size_t max)
{
    for (size_t i = 0; i < m->nwatch; i++)
        if (m->watch[i].klen == klen && memcmp(m->watch[i].key, key, klen) == 0)
            return TRELLIS_OK;
    if (m->nwatch >= max)
        return TRELLIS_TOO_LARGE;
    if (m->nwatch == m->wcap) {
        size_t cap = m->wcap ? m->wcap * 2 : 4;
        dp_watch *v = realloc(m->watch, cap * sizeof(*v));
        if (!v)
            return TRELLIS_INTERNAL;
        m->watch = v;
        m->wcap = cap;
    }
    uint8_t *k = malloc(klen ? klen : 1);
    if (!k)
        return TRELLIS_INTERNAL;
    memcpy(k, key, klen);
    m->watch[m->nwatch++] = (dp_watch){k, klen, 0};
    return TRELLIS_OK;
}

void dp_multi_watch_take(shard *s, dp_multi *m)
{
    for (size_t i = 0; i < m->nwatch; i++)
        if (m->watch[i].fp == 0)
            m->watch[i].fp = dp_multi_fingerprint(s, m->watch[i].key, m->watch[i].klen);
}

int dp_multi_watch_changed(shard *s, const dp_multi *m)
{
    for (size_t i = 0; i < m->nwatch; i++)
        if (dp_multi_fingerprint(s, m->watch[i].key, m->watch[i].klen) != m->watch[i].fp)
            return 1;
    return 0;
}

void dp_multi_unwatch(dp_multi *m)
{
    for (size_t i = 0; i < m->nwatch; i++)
        free(m->watch[i].key);
    m->nwatch = 0;
}

void dp_multi_clear(dp_multi *m)
{
    dp_multi_end(m);
    dp_multi_unwatch(m);
    free(m->cmds);
    free(m->watch);
    memset(m, 0, sizeof(*m));
}

uint64_t dp_multi_fingerprint(shard *s, const uint8_t *key, size_t klen)
{
    if (klen == 0 || klen > s->lim.max_key)
        return FP_ABSENT;
    uint64_t h = ring_hash(key, klen);
    if (!s->rr || s->self < 0 || !shard_owns(s, key, klen, h))
        return FP_GONE;
    shard_key_view kv;
    if (shard_view_key(s, h, key, klen, 1, &kv) != TRELLIS_OK)
        return FP_UNKNOWN;
    if (!kv.have || !kv.live)
        return FP_ABSENT;
    /* The whole stored state: value, incarnation, deadline and stamps. */
    uint64_t f = XXH3_64bits(kv.state.data, kv.state.len);
    return f < FP_FIRST_HASH ? f + FP_FIRST_HASH : f;
}
