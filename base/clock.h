/*
 * clock.h - time sources: wall clock in microseconds, monotonic time in
 * microseconds and milliseconds.
 */
#ifndef TRELLIS_CLOCK_H
#define TRELLIS_CLOCK_H

#include <stdint.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t clock_wall_us(void);
/* Microseconds of CLOCK_MONOTONIC: for durations and timers only. */
uint64_t clock_mono_us(void);
/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t clock_mono_ms(void);

#endif
