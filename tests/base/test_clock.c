/*
 * test_clock.c - hybrid logical clocks (monotonic across threads and after
 * observations) and the log-linear histogram (quantiles within 1/16 of the
 * exact ones).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/histogram.h"
#include "base/hlc.h"
#include "tsupport.h"

TestSuite(hlc, .timeout = 60);
TestSuite(histogram, .timeout = 60);

#define HLC_THREADS 4
#define HLC_PER     200000

typedef struct hlc_job {
    hlc *h;
    uint64_t *out;
    int observe; /* also fold in "remote" timestamps ahead of the clock */
    int backwards;
} hlc_job;

static void *hlc_worker(void *arg)
{
    hlc_job *j = arg;
    uint64_t prev = 0;
    for (int i = 0; i < HLC_PER; i++) {
        if (j->observe && i % 1000 == 0)
            hlc_observe(j->h, hlc_now(j->h) + ((uint64_t)(i % 7) << HLC_LOGICAL_BITS));
        uint64_t t = hlc_now(j->h);
        if (t <= prev)
            j->backwards++;
        prev = t;
        j->out[i] = t;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run_threads(int observe)
{
    hlc h;
    hlc_init(&h);
    uint64_t *all = malloc(sizeof(uint64_t) * HLC_THREADS * HLC_PER);
    cr_assert_not_null(all);
    pthread_t th[HLC_THREADS];
    hlc_job jobs[HLC_THREADS];
    for (int i = 0; i < HLC_THREADS; i++) {
        jobs[i] = (hlc_job){&h, all + (size_t)i * HLC_PER, observe, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, hlc_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < HLC_THREADS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jobs[i].backwards, 0, "thread %d saw the clock go backwards", i);
    }
    /* Every timestamp handed out is unique. */
    size_t n = (size_t)HLC_THREADS * HLC_PER;
    qsort(all, n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < n; i++)
        cr_assert_neq(all[i], all[i - 1], "timestamp %llu handed out twice",
                      (unsigned long long)all[i]);
    /* And none is below the wall clock at the start by much. */
    free(all);
}

Test(hlc, monotonic_and_unique_across_threads)
{
    run_threads(0);
}

Test(hlc, monotonic_with_observations_across_threads)
{
    run_threads(1);
}

Test(hlc, observe)
{
    hlc h;
    hlc_init(&h);
    uint64_t t0 = hlc_now(&h);
    uint64_t wall = clock_wall_us();
    cr_assert_geq(hlc_wall_us(t0) + 1000000, wall);
    cr_assert_leq(hlc_wall_us(t0), wall);
    /* A remote clock an hour ahead: later timestamps follow it. */
    uint64_t ahead = hlc_from_us(wall + 3600ULL * 1000000);
    hlc_observe(&h, ahead);
    uint64_t t1 = hlc_now(&h);
    cr_assert_gt(t1, ahead);
    cr_assert_eq(hlc_wall_us(t1), hlc_wall_us(ahead), "logical counter, same physical part");
    /* One from the past changes nothing. */
    hlc_observe(&h, t0);
    uint64_t t2 = hlc_now(&h);
    cr_assert_gt(t2, t1);
    /* Observing the same value twice, and the maximum representable one. */
    hlc_observe(&h, t2);
    cr_assert_gt(hlc_now(&h), t2);
    cr_assert_eq(hlc_from_us(5) >> HLC_LOGICAL_BITS, 5);
    cr_assert_eq(hlc_wall_us(hlc_from_us(123456)), 123456);
    /* 5000 timestamps in a row: the logical counter carries, order stays. */
    uint64_t prev = hlc_now(&h);
    for (int i = 0; i < 5000; i++) {
        uint64_t t = hlc_now(&h);
        cr_assert_gt(t, prev);
        prev = t;
    }
}

/* ---- histogram ------------------------------------------------------------- */

static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
    uint64_t rank = (uint64_t)(q * (double)n);
    if (rank >= n)
        rank = n - 1;
    return sorted[rank];
}

static void check_quantiles(trand *r, const char *what, uint64_t (*draw)(trand *))
{
    size_t n = 1 + (size_t)trand_below(r, 50000);
    uint64_t *v = malloc(n * sizeof(*v));
    histogram *h = malloc(sizeof(*h)), *h2 = malloc(sizeof(*h2)), *sum = malloc(sizeof(*sum));
    hist_reset(h);
    hist_reset(h2);
    hist_reset(sum);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = draw(r);
        hist_record(i % 3 ? h : h2, v[i]);
        total += v[i];
    }
    hist_merge(sum, h);
    hist_merge(sum, h2);
    qsort(v, n, sizeof(uint64_t), cmp_u64);
    cr_assert_eq(sum->count, n);
    cr_assert_eq(sum->max, v[n - 1]);
    cr_assert_eq(sum->sum, total);
    static const double qs[] = {0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t exact = exact_quantile(v, n, qs[i]);
        uint64_t got = hist_quantile(sum, qs[i]);
        /* Never below the exact value, at most 1/16 above it. */
        long double hi = (long double)exact + (long double)exact / 16.0L;
        cr_assert(got >= exact && (long double)got <= hi,
                  "%s: q=%g of %zu values: got %llu, exact %llu (TRELLIS_SEED=%llu)", what, qs[i],
                  n, (unsigned long long)got, (unsigned long long)exact,
                  (unsigned long long)r->seed);
    }
    free(v);
    free(h);
    free(h2);
    free(sum);
}

static uint64_t draw_small(trand *r)
{
    return trand_below(r, 40);
}

static uint64_t draw_latency(trand *r)
{
    /* Log-uniform between 1 us and ~1 s. */
    return (uint64_t)1 << trand_below(r, 20) | trand_below(r, 1 << 20) >> trand_below(r, 20);
}

static uint64_t draw_any(trand *r)
{
    return trand_u64(r) >> trand_below(r, 64);
}

Test(histogram, quantiles_within_a_sixteenth)
{
    trand r;
    trand_begin(&r, "histogram_quantiles");
    for (int round = 0; round < 40; round++) {
        check_quantiles(&r, "small", draw_small);
        check_quantiles(&r, "latency", draw_latency);
        check_quantiles(&r, "any", draw_any);
    }
}

Test(histogram, buckets)
{
    /* Exact below 32; every value lies in [low(b), low(b + 1)). */
    for (uint64_t v = 0; v < 32; v++)
        cr_assert_eq(hist_bucket_of(v), (int)v);
    trand r;
    trand_begin(&r, "histogram_buckets");
    for (int i = 0; i < 1000000; i++) {
        uint64_t v = trand_u64(&r) >> trand_below(&r, 64);
        int b = hist_bucket_of(v);
        cr_assert(b >= 0 && b < HIST_BUCKETS, "bucket %d of %llu", b, (unsigned long long)v);
        cr_assert_leq(hist_bucket_low(b), v);
        if (b + 1 < HIST_BUCKETS)
            cr_assert_gt(hist_bucket_low(b + 1), v);
    }
    cr_assert_eq(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
    histogram h;
    hist_reset(&h);
    cr_assert_eq(hist_quantile(&h, 0.5), 0);
    cr_assert_float_eq(hist_mean(&h), 0.0, 1e-12);
    hist_record(&h, UINT64_MAX);
    cr_assert_eq(hist_quantile(&h, 0.99), UINT64_MAX);
    hist_record(&h, 0);
    cr_assert_eq(hist_quantile(&h, 0), 0);
    cr_assert_eq(hist_quantile(&h, -1), 0);
    cr_assert_eq(hist_quantile(&h, 2), UINT64_MAX);
}
