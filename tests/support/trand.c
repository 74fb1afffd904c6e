/*
 * trand.c - seeded randomness and random lattice deltas (see trand.h).
 */
#include "trand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

uint64_t trand_pick_seed(void)
{
    const char *env = getenv("TRELLIS_SEED");
    if (env && *env)
        return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
}

void trand_seed(trand *r, uint64_t seed, const char *name)
{
    r->seed = seed;
    r->state = name ? seed ^ fnv1a(name) : seed;
}

void trand_begin(trand *r, const char *name)
{
    trand_seed(r, trand_pick_seed(), name);
    fprintf(stderr, "%s: TRELLIS_SEED=%llu\n", name, (unsigned long long)r->seed);
}

uint64_t trand_u64(trand *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t trand_below(trand *r, uint64_t n)
{
    return trand_u64(r) % n;
}

uint64_t trand_range(trand *r, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + trand_u64(r) % (hi - lo + 1);
}

int trand_chance(trand *r, unsigned percent)
{
    return trand_below(r, 100) < percent;
}

void trand_bytes(trand *r, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        uint64_t v = trand_u64(r);
        size_t k = n < 8 ? n : 8;
        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
}

static lat_slice word(trand *r)
{
    static const struct {
        const char *s;
        size_t n;
    } words[] = {{"", 0},   {"a", 1},    {"b", 1},    {"ab", 2},       {"ba", 2}, {"abc", 3},
                 {"\0", 1}, {"\xff", 1}, {"a\0b", 3}, {"zzzzzzzz", 8}, {"q", 1},  {"xy", 2}};
    size_t i = (size_t)trand_below(r, sizeof(words) / sizeof(words[0]));
    lat_slice s = {(const uint8_t *)words[i].s, words[i].n};
    return s;
}

static int64_t small_i64(trand *r)
{
    static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1};
    if (trand_chance(r, 10))
        return edges[trand_below(r, 4)];
    return (int64_t)trand_below(r, 21) - 10;
}

int trand_delta(trand *r, lat_type t, const uint8_t *obs, size_t olen, uint64_t writers,
                lat_buf *out)
{
    uint64_t writer = trand_below(r, writers ? writers : 1);
    uint64_t ts = 1 + trand_below(r, 8);
    lat_slice w = word(r);
    lat_slice ws[3] = {w, word(r), word(r)};
    unsigned pick = (unsigned)trand_below(r, 100);
    switch (t) {
    case LAT_LWW:
        if (pick < 15)
            return lat_delete_delta(t, obs, olen, writer, ts, out);
        return lat_lww_encode(ts, writer, 0, w.data, w.len, out);
    case LAT_SET:
        return lat_set_encode(ws, 1 + (size_t)trand_below(r, 3), out);
    case LAT_ORSET:
        if (pick < 60)
            return lat_orset_add(w.data, w.len, writer, ts, out);
        if (pick < 85)
            return lat_orset_remove(obs, olen, ws, 1 + (size_t)trand_below(r, 3), out);
        return lat_delete_delta(t, obs, olen, writer, ts, out);
    case LAT_COUNTER:
        if (pick < 10)
            return lat_delete_delta(t, obs, olen, writer, ts, out);
        return lat_counter_encode(writer, trand_below(r, 100), trand_below(r, 100), out);
    case LAT_MAX:
        return lat_max_encode(small_i64(r), out);
    case LAT_CAUSAL: {
        if (pick < 25)
            return lat_causal_put(NULL, 0, writer, 1 + trand_below(r, 4), w.data, w.len, 0, out);
        uint64_t c = (obs ? lat_causal_clock_get(obs, olen, writer) : 0) + 1 + trand_below(r, 2);
        if (pick >= 85)
            return lat_delete_delta(t, obs, olen, writer, c, out);
        return lat_causal_put(obs, olen, writer, c, w.data, w.len, 0, out);
    }
    case LAT_PRIORITY:
        return lat_priority_encode(small_i64(r), writer, w.data, w.len, out);
    case LAT_MAP:
        if (pick < 50)
            return lat_map_set(obs, olen, w.data, w.len, writer, ts, ws[1].data, ws[1].len, out);
        if (pick < 70)
            return lat_map_counter(w.data, w.len, writer, trand_below(r, 100), trand_below(r, 100),
                                   out);
        if (pick < 90)
            return lat_map_remove(obs, olen, ws, 1 + (size_t)trand_below(r, 3), out);
        return lat_delete_delta(t, obs, olen, writer, ts, out);
    default:
        return TRELLIS_INVALID;
    }
}
