/*
 * histogram.h - a log-linear histogram of non-negative integers (latencies
 * in microseconds), HdrHistogram style: exact below 32, then 16 buckets per
 * power of two, so every recorded value is known within 1/16 (6.25 %).
 * Fixed size, no allocation; not thread-safe (one writer per histogram,
 * merge copies to aggregate).
 */
#ifndef TRELLIS_HISTOGRAM_H
#define TRELLIS_HISTOGRAM_H

#include <stdint.h>

#define HIST_BUCKETS (32 + 59 * 16)

typedef struct histogram {
    uint64_t count;
    uint64_t sum;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
} histogram;

void hist_reset(histogram *h);
void hist_record(histogram *h, uint64_t v);
/* Adds every count of src to dst. */
void hist_merge(histogram *dst, const histogram *src);
/* The value at quantile q in [0, 1] (the upper bound of its bucket, capped
 * at the maximum seen); 0 when empty. */
uint64_t hist_quantile(const histogram *h, double q);
double hist_mean(const histogram *h);
/* The smallest value that lands in bucket i, and the bucket of a value. */
uint64_t hist_bucket_low(int i);
int hist_bucket_of(uint64_t v);

#endif
