/*
 * hashidx.h - a compact set of 64-bit key hashes, each with a 5-bit tag
 * (1..31): 8 bytes per key. The disk tier keeps each key's lattice type in
 * one; the memory tier remembers which keys it demoted to the disk tier in
 * another. Two keys whose hashes agree in their top 59 bits share an entry:
 * callers treat a hit as "probably", and confirm when it matters.
 * Open addressing, linear probing, backward-shift deletion. One thread.
 */
#ifndef TRELLIS_HASHIDX_H
#define TRELLIS_HASHIDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct hashidx {
    uint64_t *slots; /* 0 = empty, else (hash & ~31) | tag */
    size_t cap;
    size_t count;
} hashidx;

/* 0, or -1 on allocation failure. */
int hidx_init(hashidx *t, size_t hint);
void hidx_free(hashidx *t);
/* The tag of h, 0 if absent. */
int hidx_get(const hashidx *t, uint64_t h);
/* Sets h's tag (1..31). 0, or -1 on allocation failure (unchanged). */
int hidx_set(hashidx *t, uint64_t h, int tag);
/* Removes h. */
void hidx_del(hashidx *t, uint64_t h);

#endif
