/*
 * ref.h - a reference decoder for the lattice encodings, written for
 * clarity rather than speed and independently of lattices/, against which
 * the fuzz tests check lat_validate's verdict on every input.
 */
#ifndef TRELLIS_TESTS_LATTICES_REF_H
#define TRELLIS_TESTS_LATTICES_REF_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"

/* TRELLIS_OK if [p, n) is a canonical encoding of type t per
 * docs/lattices.md, TRELLIS_MALFORMED otherwise. */
int ref_validate(lat_type t, const uint8_t *p, size_t n);

/* TRELLIS_OK if [p, n) is a canonical tagged state (plain or with an
 * expiry header) per docs/lattices.md, TRELLIS_MALFORMED otherwise. */
int ref_tagged_validate(const uint8_t *p, size_t n);

#endif
