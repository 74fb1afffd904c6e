/*
 * ring_private.h - helpers shared by ring.c and membership.c; not part of
 * the placement API.
 */
#ifndef TRELLIS_RING_PRIVATE_H
#define TRELLIS_RING_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "placement/ring.h"

/* Copies a record that passed ring_node_validate with the unused bytes of
 * its strings zeroed, so that equal records are equal byte for byte. */
void ring__node_copy(ring_node *dst, const ring_node *src);

/* Byte order of keys: memcmp over the common length, then the shorter
 * first ("a" < "ab" < "b"). Either pointer may be NULL when its length
 * is 0. */
int ring__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
