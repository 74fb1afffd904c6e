/*
 * sampler.h - the latency callers of libtrellis see, gathered on the call's
 * completion path at the cost of one relaxed atomic increment, and read
 * off that path as windows (histograms of the calls since the previous
 * read). The client's reporting thread (report.h) sends each window to the
 * monitor, whose latency objective uses it.
 *
 * What a sample is: one public call (trellis_batch_exec, a single operation,
 * or an asynchronous execution), from the moment the caller made it to the
 * moment its results were ready (the callback about to run), in
 * microseconds, retries and waits for the ring included. A batch is one
 * call. Every data path of the client records its calls here, and nothing
 * else: internal calls (reading counter totals back) are not samples.
 *
 * Threads: any number of threads may record at once (each records into a
 * stripe of its own, chosen once per thread, so that they share no cache
 * line); one thread at a time takes windows. Nothing allocates after
 * cl_sampler_new.
 */
#ifndef TRELLIS_CLIENT_SAMPLER_H
#define TRELLIS_CLIENT_SAMPLER_H

#include <stdint.h>

#include "base/histogram.h"

#define CL_SAMPLER_STRIPES 8

typedef struct cl_sampler cl_sampler;

/* A new sampler (about 64 KiB), or NULL when out of memory. */
cl_sampler *cl_sampler_new(void);
/* Frees it; no thread may record any more. NULL is ignored. */
void cl_sampler_free(cl_sampler *s);

/* Monotonic microseconds: a call's start, for cl_sampler_done. */
uint64_t cl_sampler_now_us(void);

/* Records one call that took latency_us. Any thread; s may be NULL (then
 * nothing happens). */
void cl_sampler_record(cl_sampler *s, uint64_t latency_us);

/* Records one call that started at start_us (cl_sampler_now_us) and is done
 * now. */
void cl_sampler_done(cl_sampler *s, uint64_t start_us);

/* Fills *window with the calls recorded since the previous take (count,
 * buckets, sum and max as their buckets give them: within 1/16). One
 * thread at a time. */
void cl_sampler_take(cl_sampler *s, histogram *window);

#endif
