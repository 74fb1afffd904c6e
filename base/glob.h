/*
 * glob.h - glob-style patterns as Redis matches them (KEYS, SCAN MATCH,
 * CONFIG GET): `*` any run of bytes, `?` any one byte, `[abc]`, `[^abc]`
 * and `[a-z]` classes, and `\` to take the next byte literally.
 *
 * Binary-safe and linear in practice: the matcher backtracks only to the
 * last `*` it met, so no pattern makes it take exponential time.
 */
#ifndef TRELLIS_GLOB_H
#define TRELLIS_GLOB_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..slen) matches pattern p[0..plen), 0 otherwise. With nocase,
 * ASCII letters match either case. An empty pattern matches only the
 * empty string; "*" matches everything. */
int glob_match(const uint8_t *p, size_t plen, const uint8_t *s, size_t slen, int nocase);

#endif
