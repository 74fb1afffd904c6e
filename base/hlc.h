/*
 * hlc.h - hybrid logical clocks.
 *
 * A timestamp is a uint64: the wall clock in microseconds shifted left by
 * HLC_LOGICAL_BITS, plus a logical counter in the low bits. hlc_now never
 * returns a value less than or equal to one it returned before, and never
 * less than one passed to hlc_observe, so a writer never goes backwards even
 * when its wall clock does; when the clocks of two machines disagree the
 * timestamps follow the one that is ahead, by at most the skew
 * (docs/consistency.md).
 *
 * A struct hlc is safe to share between threads (it updates with atomics).
 */
#ifndef TRELLIS_HLC_H
#define TRELLIS_HLC_H

#include <stdatomic.h>
#include <stdint.h>

#define HLC_LOGICAL_BITS 12

typedef struct hlc {
    _Atomic uint64_t last;
} hlc;

void hlc_init(hlc *h);
/* A fresh timestamp, greater than every earlier result and observation. */
uint64_t hlc_now(hlc *h);
/* Folds in a timestamp seen from elsewhere (a reply, a stored LWW state). */
void hlc_observe(hlc *h, uint64_t remote);
/* The wall-clock microseconds of a timestamp. */
uint64_t hlc_wall_us(uint64_t ts);
/* The timestamp whose physical part is `us` and logical part 0. */
uint64_t hlc_from_us(uint64_t us);

#endif
