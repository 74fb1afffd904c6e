/*
 * keygen.c - uniform and zipfian key numbers.
 */
#include "bench/keygen.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void kg_rng_seed(kg_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t kg_next(kg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double kg_unit(kg_rng *r)
{
    return (double)(kg_next(r) >> 11) * 0x1.0p-53;
}

uint64_t kg_below(kg_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias for n far below 2^64 is negligible
     * for a workload generator. */
    return (uint64_t)(((unsigned __int128)kg_next(r) * n) >> 64);
}

/* ---- rejection-inversion ------------------------------------------------------ */

/* log1p(x)/x, accurate near 0. */
static double helper1(double x)
{
    if (fabs(x) > 1e-8)
        return log1p(x) / x;
    return 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

/* expm1(x)/x, accurate near 0. */
static double helper2(double x)
{
    if (fabs(x) > 1e-8)
        return expm1(x) / x;
    return 1 + x * 0.5 * (1 + x * (1.0 / 3) * (1 + 0.25 * x));
}

/* h(x) = 1/x^s */
static double h(const keygen *g, double x)
{
    return exp(-g->s * log(x));
}

/* H(x), an integral of h with H(x) -> log(x) as s -> 1. */
static double h_integral(const keygen *g, double x)
{
    double lx = log(x);
    return helper2((1 - g->s) * lx) * lx;
}

static double h_integral_inverse(const keygen *g, double x)
{
    double t = x * (1 - g->s);
    if (t < -1)
        t = -1; /* rounding can push it just past the pole */
    return exp(helper1(t) * x);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

void keygen_init(keygen *g, uint64_t n, double s)
{
    g->n = n ? n : 1;
    g->s = s > 0 ? s : 0;
    /* A multiplier coprime with n makes rank -> rank * mult mod n a
     * bijection. */
    g->mult = UINT64_C(2654435761) % g->n;
    if (g->mult == 0)
        g->mult = 1;
    while (gcd_u64(g->mult, g->n) != 1)
        g->mult++;
    if (g->s > 0) {
        g->h_x1 = h_integral(g, 1.5) - 1;
        g->h_n = h_integral(g, (double)g->n + 0.5);
        g->shift = 2 - h_integral_inverse(g, h_integral(g, 2.5) - h(g, 2));
    }
}

static uint64_t zipf_rank(const keygen *g, kg_rng *r)
{
    for (;;) {
        double u = g->h_n + kg_unit(r) * (g->h_x1 - g->h_n);
        double x = h_integral_inverse(g, u);
        double kd = x + 0.5;
        uint64_t k;
        if (kd < 1)
            k = 1;
        else if (kd > (double)g->n)
            k = g->n;
        else
            k = (uint64_t)kd;
        if ((double)k - x <= g->shift || u >= h_integral(g, (double)k + 0.5) - h(g, (double)k))
            return k;
    }
}

uint64_t keygen_next(const keygen *g, kg_rng *r)
{
    if (g->s <= 0)
        return kg_below(r, g->n);
    uint64_t rank = zipf_rank(g, r) - 1;
    return (uint64_t)(((unsigned __int128)rank * g->mult) % g->n);
}
