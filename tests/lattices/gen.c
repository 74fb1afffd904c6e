/*
 * gen.c - seeded random generators for the lattice tests (see gen.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define GEN_REPLICAS     3 /* simulated replicas producing a history */
#define GEN_WRITERS      3 /* writer ids 0..2: shared writers are frequent */
#define GEN_HISTORY_MAX  12
#define GEN_SHUFFLE_ITEM 64
#define GEN_DUMP_MAX     96

/* The seed of this test process (Criterion runs each test in its own), for
 * the messages of failures inside the generators. */
static uint64_t gen_run_seed;

void gen_begin(gen_rng *r, const char *test)
{
    trand_begin(&r->r, test);
    r->seed = r->r.seed;
    gen_run_seed = r->seed;
    r->iter = -1;
}

uint64_t gen_u64(gen_rng *r)
{
    return trand_u64(&r->r);
}

uint64_t gen_below(gen_rng *r, uint64_t n)
{
    return gen_u64(r) % n;
}

int gen_chance(gen_rng *r, unsigned percent)
{
    return gen_below(r, 100) < percent;
}

void gen_shuffle(gen_rng *r, void *items, size_t n, size_t sz)
{
    uint8_t tmp[GEN_SHUFFLE_ITEM], *p = items;
    cr_assert(sz <= sizeof tmp);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)gen_below(r, i);
        memcpy(tmp, p + (i - 1) * sz, sz);
        memcpy(p + (i - 1) * sz, p + j * sz, sz);
        memcpy(p + j * sz, tmp, sz);
    }
}

lat_slice gen_word(gen_rng *r)
{
    static const struct {
        const char *s;
        size_t n;
    } words[] = {{"", 0},    {"a", 1},  {"b", 1},    {"ab", 2},  {"ba", 2},
                 {"abc", 3}, {"\0", 1}, {"\xff", 1}, {"a\0", 2}, {"zzzz", 4}};
    size_t i = (size_t)gen_below(r, sizeof words / sizeof words[0]);
    lat_slice s = {(const uint8_t *)words[i].s, words[i].n};
    return s;
}

static void must(int rc, const char *what)
{
    cr_assert(eq(int, rc, TRELLIS_OK), "%s failed (TRELLIS_SEED=%llu)", what,
              (unsigned long long)gen_run_seed);
}

static int64_t gen_i64(gen_rng *r)
{
    static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1};
    if (gen_chance(r, 10))
        return edges[gen_below(r, 4)];
    return (int64_t)gen_below(r, 7) - 3;
}

void gen_delta(gen_rng *r, lat_type t, const lat_buf *obs, uint64_t self, const lat_buf *hist,
               size_t nhist, lat_buf *out)
{
    const uint8_t *o = obs ? obs->data : NULL;
    size_t olen = obs ? obs->len : 0;
    uint64_t writer = gen_chance(r, 70) ? self : gen_below(r, GEN_WRITERS);
    uint64_t ts = gen_below(r, 4);
    lat_slice w = gen_word(r);
    lat_slice ws[3] = {w, gen_word(r), gen_word(r)};
    unsigned pick = (unsigned)gen_below(r, 100);

    switch (t) {
    case LAT_LWW:
        if (pick < 15)
            must(lat_delete_delta(t, o, olen, writer, ts, out), "lww delete");
        else
            must(lat_lww_encode(ts, writer, 0, w.data, w.len, out), "lww encode");
        break;
    case LAT_SET:
        must(lat_set_encode(ws, 1 + (size_t)gen_below(r, 3), out), "set encode");
        break;
    case LAT_ORSET:
        if (pick < 55)
            must(lat_orset_add(w.data, w.len, writer, 1 + ts, out), "orset add");
        else if (pick < 80)
            must(lat_orset_remove(o, olen, ws, 1 + (size_t)gen_below(r, 3), out), "orset remove");
        else if (pick < 90)
            must(lat_orset_remove_all(o, olen, out), "orset remove_all");
        else
            must(lat_delete_delta(t, o, olen, writer, ts, out), "orset delete");
        break;
    case LAT_COUNTER:
        if (pick < 15) {
            must(lat_delete_delta(t, o, olen, writer, ts, out), "counter delete");
        } else {
            uint64_t inc = gen_below(r, 6), dec = gen_below(r, 6);
            if (pick < 20)
                inc = UINT64_MAX - inc; /* the sum wraps */
            must(lat_counter_encode(gen_below(r, GEN_WRITERS + 1), inc, dec, out),
                 "counter encode");
        }
        break;
    case LAT_MAX:
        must(lat_max_encode(gen_i64(r), out), "max encode");
        break;
    case LAT_CAUSAL:
        if (pick < 20 && nhist > 0) {
            /* Observes another replica's delta instead of its own state. */
            const lat_buf *h = &hist[gen_below(r, nhist)];
            o = h->data;
            olen = h->len;
        }
        if (pick >= 20 && pick < 40) {
            /* A blind write: may reuse a dot with another value. */
            must(lat_causal_put(NULL, 0, writer, 1 + gen_below(r, 4), w.data, w.len, 0, out),
                 "causal blind put");
        } else {
            uint64_t c = (o ? lat_causal_clock_get(o, olen, writer) : 0) + 1 + gen_below(r, 2);
            if (pick >= 85)
                must(lat_delete_delta(t, o, olen, writer, c, out), "causal delete");
            else
                must(lat_causal_put(o, olen, writer, c, w.data, w.len, 0, out), "causal put");
        }
        break;
    case LAT_PRIORITY:
        must(lat_priority_encode(gen_i64(r), gen_below(r, GEN_WRITERS), w.data, w.len, out),
             "priority encode");
        break;
    case LAT_MAP:
        if (pick < 40) {
            lat_slice v = gen_word(r);
            must(lat_map_set(o, olen, w.data, w.len, writer, 1 + ts, v.data, v.len, out),
                 "map set");
        } else if (pick < 62) {
            uint64_t inc = gen_below(r, 6), dec = gen_below(r, 4);
            if (pick < 45)
                inc = UINT64_MAX - inc; /* the sum wraps */
            must(lat_map_counter(w.data, w.len, writer, inc, dec, out), "map counter");
        } else if (pick < 85) {
            must(lat_map_remove(o, olen, ws, 1 + (size_t)gen_below(r, 3), out), "map remove");
        } else if (pick < 93) {
            must(lat_map_remove_all(o, olen, out), "map remove_all");
        } else {
            must(lat_delete_delta(t, o, olen, writer, ts, out), "map delete");
        }
        break;
    default:
        cr_fail("bad type %d", (int)t);
    }
    cr_assert(eq(int, lat_validate(t, out->data, out->len), TRELLIS_OK),
              "builder output invalid (TRELLIS_SEED=%llu)", (unsigned long long)gen_run_seed);
}

/* ---- tagged states with expiry ------------------------------------------ */

/* The value of a replica's tagged state that a write of type t observes:
 * its encoding while it is live and of type t, none otherwise. */
static int observed_value(const lat_buf *state, int have, lat_type t, uint64_t now, lat_buf *value)
{
    lat_stored s;
    if (!have || lat_tagged_parse(state->data, state->len, &s) != TRELLIS_OK ||
        !lat_tagged_live(state->data, state->len, now) || s.type != t)
        return 0;
    must(lat_buf_set(value, s.value.data, s.value.len), "observed copy");
    return 1;
}

void gen_tagged_delta(gen_rng *r, lat_type t, const lat_buf *state, int have, uint64_t self,
                      uint64_t now, uint64_t *stamp, lat_buf *out)
{
    const uint8_t *st = have ? state->data : NULL;
    size_t slen = have ? state->len : 0;
    unsigned pick = (unsigned)gen_below(r, 100);
    uint64_t epoch;
    if (have && lat_tagged_expired(st, slen, now) && pick < 40) {
        must(lat_tagged_tombstone(st, slen, now, out), "tombstone");
    } else if (pick < 75) {
        /* A write, sometimes of another type: it lands in the incarnation
         * the replica's clock puts the key in. */
        lat_type wt =
            gen_chance(r, 6) ? (lat_type)(LAT_TYPE_FIRST + gen_below(r, LAT_TYPE_LAST)) : t;
        lat_buf obs, v;
        lat_buf_init(&obs);
        lat_buf_init(&v);
        int seen = observed_value(state, have, wt, now, &obs);
        gen_delta(r, wt, seen ? &obs : NULL, self, NULL, 0, &v);
        must(lat_tagged_write_epoch(st, slen, now, &epoch), "write epoch");
        must(lat_tagged_wrap(epoch, wt, v.data, v.len, out), "wrap");
        lat_buf_free(&obs);
        lat_buf_free(&v);
    } else {
        /* EXPIRE (some deadlines already past) or PERSIST; stamps mostly
         * rise, sometimes tie. */
        uint64_t deadline = 0;
        if (pick < 92) /* now >= 10: never 0 */
            deadline = now + gen_below(r, 6) - (gen_chance(r, 20) ? 3 : 0);
        *stamp += gen_chance(r, 15) ? 0 : 1 + gen_below(r, 2);
        must(lat_tagged_write_epoch(st, slen, now, &epoch), "write epoch");
        must(lat_tagged_expiry(epoch, *stamp, deadline, out), "expiry");
    }
    cr_assert(eq(int, lat_tagged_validate(out->data, out->len), TRELLIS_OK),
              "tagged delta invalid (TRELLIS_SEED=%llu)", (unsigned long long)gen_run_seed);
}

/* Merges d into a replica's state rep (a copy when it has none yet). */
static void absorb(lat_type t, int tagged, lat_buf *rep, int *have, const lat_buf *d)
{
    if (!*have)
        must(lat_buf_set(rep, d->data, d->len), "copy");
    else if (tagged)
        must(lat_tagged_merge(rep->data, rep->len, d->data, d->len, rep, NULL), "tagged merge");
    else
        must(lat_merge(t, rep->data, rep->len, d->data, d->len, rep), "merge");
    *have = 1;
}

/* n deltas of type t made at GEN_REPLICAS replicas that sync now and then;
 * tagged ones at clocks that advance and differ by a small skew. */
static void history_of(gen_rng *r, lat_type t, int tagged, lat_buf *deltas, size_t n)
{
    lat_buf rep[GEN_REPLICAS];
    int have[GEN_REPLICAS] = {0};
    uint64_t skew[GEN_REPLICAS], clock = 10 + gen_below(r, 5), stamp = 1;
    for (int i = 0; i < GEN_REPLICAS; i++) {
        lat_buf_init(&rep[i]);
        skew[i] = gen_below(r, 3);
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)gen_below(r, GEN_REPLICAS), j = (size_t)gen_below(r, GEN_REPLICAS);
        if (j != k && have[j] && gen_chance(r, 30))
            absorb(t, tagged, &rep[k], &have[k], &rep[j]);
        clock += gen_below(r, 3);
        if (tagged)
            gen_tagged_delta(r, t, &rep[k], have[k], k, clock + skew[k], &stamp, &deltas[i]);
        else
            gen_delta(r, t, have[k] ? &rep[k] : NULL, k, deltas, i, &deltas[i]);
        absorb(t, tagged, &rep[k], &have[k], &deltas[i]);
    }
    gen_free_all(rep, GEN_REPLICAS);
}

void gen_history(gen_rng *r, lat_type t, lat_buf *deltas, size_t n)
{
    history_of(r, t, 0, deltas, n);
}

void gen_tagged_history(gen_rng *r, lat_type t, lat_buf *deltas, size_t n)
{
    history_of(r, t, 1, deltas, n);
}

/* out = deltas[order[0..n)] folded left to right, by the tagged merge
 * when tagged, else by the merge of type t. */
static void fold(lat_type t, int tagged, const lat_buf *deltas, const size_t *order, size_t n,
                 lat_buf *out)
{
    must(lat_buf_set(out, deltas[order[0]].data, deltas[order[0]].len), "fold copy");
    for (size_t i = 1; i < n; i++) {
        const lat_buf *d = &deltas[order[i]];
        must(tagged ? lat_tagged_merge(out->data, out->len, d->data, d->len, out, NULL)
                    : lat_merge(t, out->data, out->len, d->data, d->len, out),
             "fold merge");
    }
}

void gen_tagged_fold(const lat_buf *deltas, const size_t *order, size_t n, lat_buf *out)
{
    fold(LAT_NONE, 1, deltas, order, n, out);
}

void gen_fold(lat_type t, const lat_buf *deltas, const size_t *order, size_t n, lat_buf *out)
{
    fold(t, 0, deltas, order, n, out);
}

/* k states drawn from one history of type t (tagged or not): each the
 * merge of a random non-empty subset of it, in random order. One time in
 * ten every state gets a history of its own. */
static void states_of(gen_rng *r, lat_type t, int tagged, lat_buf *out, size_t k)
{
    lat_buf hist[GEN_HISTORY_MAX];
    size_t order[GEN_HISTORY_MAX];
    int independent = gen_chance(r, 10);
    size_t n = 1 + (size_t)gen_below(r, GEN_HISTORY_MAX);
    for (size_t i = 0; i < GEN_HISTORY_MAX; i++)
        lat_buf_init(&hist[i]);
    for (size_t j = 0; j < k; j++) {
        if (j == 0 || independent)
            (tagged ? gen_tagged_history : gen_history)(r, t, hist, n);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (gen_chance(r, 50))
                order[m++] = i;
        }
        if (m == 0)
            order[m++] = (size_t)gen_below(r, n);
        gen_shuffle(r, order, m, sizeof order[0]);
        fold(t, tagged, hist, order, m, &out[j]);
    }
    gen_free_all(hist, GEN_HISTORY_MAX);
}

void gen_tagged_states(gen_rng *r, lat_type t, lat_buf *out, size_t k)
{
    states_of(r, t, 1, out, k);
}

void gen_states(gen_rng *r, lat_type t, lat_buf *out, size_t k)
{
    states_of(r, t, 0, out, k);
}

void gen_state(gen_rng *r, lat_type t, lat_buf *out)
{
    gen_states(r, t, out, 1);
}

int gen_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

int gen_same_buf(const lat_buf *a, const lat_buf *b)
{
    return gen_same(a->data, a->len, b->data, b->len);
}

void gen_dump(const char *label, const uint8_t *p, size_t n)
{
    char hex[2 * GEN_DUMP_MAX + 4];
    size_t k = n < GEN_DUMP_MAX ? n : GEN_DUMP_MAX;
    for (size_t i = 0; i < k; i++)
        snprintf(hex + 2 * i, 3, "%02x", p[i]);
    hex[2 * k] = '\0';
    if (k < n)
        strcat(hex, "...");
    cr_log_error("%s (%zu bytes): %s", label, n, hex);
}

void gen_free_all(lat_buf *bufs, size_t k)
{
    for (size_t i = 0; i < k; i++)
        lat_buf_free(&bufs[i]);
}
