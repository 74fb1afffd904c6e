/*
 * sampler.c - latency windows of a client's calls (see sampler.h).
 */
#include "client/sampler.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One stripe per recording thread (threads share stripes beyond
 * CL_SAMPLER_STRIPES): monotonic bucket counters. */
typedef struct stripe {
    alignas(64) atomic_uint_fast64_t b[HIST_BUCKETS];
} stripe;

struct cl_sampler {
    stripe st[CL_SAMPLER_STRIPES];
    uint64_t seen[HIST_BUCKETS]; /* totals at the previous take (the taker's) */
};

/* A thread's stripe, chosen once: 0 means not chosen yet. */
static _Thread_local unsigned my_stripe;
static atomic_uint next_stripe;

cl_sampler *cl_sampler_new(void)
{
    cl_sampler *s = aligned_alloc(64, (sizeof(cl_sampler) + 63) / 64 * 64);
    if (!s)
        return NULL;
    for (int k = 0; k < CL_SAMPLER_STRIPES; k++)
        for (int i = 0; i < HIST_BUCKETS; i++)
            atomic_init(&s->st[k].b[i], 0);
    memset(s->seen, 0, sizeof(s->seen));
    return s;
}

void cl_sampler_free(cl_sampler *s)
{
    free(s);
}

uint64_t cl_sampler_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void cl_sampler_record(cl_sampler *s, uint64_t latency_us)
{
    if (!s)
        return;
    if (!my_stripe)
        my_stripe =
            atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % CL_SAMPLER_STRIPES +
            1;
    atomic_fetch_add_explicit(&s->st[my_stripe - 1].b[hist_bucket_of(latency_us)], 1,
                              memory_order_relaxed);
}

void cl_sampler_done(cl_sampler *s, uint64_t start_us)
{
    if (!s)
        return;
    uint64_t now = cl_sampler_now_us();
    cl_sampler_record(s, now > start_us ? now - start_us : 0);
}

void cl_sampler_take(cl_sampler *s, histogram *w)
{
    hist_reset(w);
    for (int i = 0; i < HIST_BUCKETS; i++) {
        uint64_t total = 0;
        for (int k = 0; k < CL_SAMPLER_STRIPES; k++)
            total += atomic_load_explicit(&s->st[k].b[i], memory_order_relaxed);
        uint64_t n = total - s->seen[i];
        s->seen[i] = total;
        if (!n)
            continue;
        w->buckets[i] = n;
        w->count += n;
        w->sum += n * hist_bucket_low(i);
        uint64_t hi = i + 1 < HIST_BUCKETS ? hist_bucket_low(i + 1) - 1 : UINT64_MAX;
        w->max = hi;
    }
}
