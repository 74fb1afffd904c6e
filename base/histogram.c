/*
 * histogram.c - log-linear histogram.
 */
#include "base/histogram.h"

#include <string.h>

void hist_reset(histogram *h)
{
    memset(h, 0, sizeof(*h));
}

int hist_bucket_of(uint64_t v)
{
    if (v < 32)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* 5..63 */
    int m = (int)((v >> (e - 4)) & 15);
    return 32 + (e - 5) * 16 + m;
}

uint64_t hist_bucket_low(int i)
{
    if (i < 32)
        return (uint64_t)i;
    int e = (i - 32) / 16 + 5;
    int m = (i - 32) % 16;
    return (uint64_t)(16 + m) << (e - 4);
}

void hist_record(histogram *h, uint64_t v)
{
    h->buckets[hist_bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(histogram *dst, const histogram *src)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const histogram *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > rank) {
            uint64_t hi = i + 1 < HIST_BUCKETS ? hist_bucket_low(i + 1) - 1 : UINT64_MAX;
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

double hist_mean(const histogram *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
