/*
 * test_convergence.c - replicas that receive the same multiset of updates
 * in different orders, with duplicates, end byte-identical and equal to the
 * merge of everything; per type and for tagged states of mixed types,
 * where the larger type wins and malformed operands drop out. With expiry:
 * replicas that also end incarnations by their own clocks converge, nothing
 * of an ended incarnation survives in any merge, an expired key never
 * reappears, and a removed MAP field never reappears either.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define CONV_RUNS      GEN_CASES(2000) /* random histories per type */
#define CONV_REPLICAS  5
#define CONV_UPDATES   32 /* most deltas in one history */
#define CONV_DUP_MAX   3  /* deliveries of one delta */
#define TAGGED_RUNS    GEN_CASES(2000)
#define TAGGED_GARBAGE 4 /* most malformed operands mixed in */

/* Fills order with every index of [0, n) delivered 1..CONV_DUP_MAX times,
 * shuffled; returns its length. */
static size_t deliveries(gen_rng *r, size_t n, size_t *order)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t times = 1 + (size_t)gen_below(r, CONV_DUP_MAX);
        for (size_t j = 0; j < times; j++)
            order[k++] = i;
    }
    gen_shuffle(r, order, k, sizeof order[0]);
    return k;
}

static void converge(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf d[CONV_UPDATES], all, rep;
    size_t order[CONV_UPDATES * CONV_DUP_MAX];
    gen_begin(&r, name);
    for (size_t i = 0; i < CONV_UPDATES; i++)
        lat_buf_init(&d[i]);
    lat_buf_init(&all);
    lat_buf_init(&rep);
    for (r.iter = 0; r.iter < CONV_RUNS; r.iter++) {
        size_t n = 1 + (size_t)gen_below(&r, CONV_UPDATES);
        gen_history(&r, t, d, n);
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        gen_fold(t, d, order, n, &all);
        for (int k = 0; k < CONV_REPLICAS; k++) {
            size_t m = deliveries(&r, n, order);
            gen_fold(t, d, order, m, &rep);
            GEN_CHECK_SAME(&r, rep.data, rep.len, all.data, all.len,
                           "replica equals the merge of all updates");
        }
    }
    gen_free_all(d, CONV_UPDATES);
    lat_buf_free(&all);
    lat_buf_free(&rep);
}

#define CONV_TEST(name, type)                                                                      \
    Test(convergence, name, .timeout = 60)                                                         \
    {                                                                                              \
        converge(type, "convergence::" #name);                                                     \
    }

CONV_TEST(lww, LAT_LWW)
CONV_TEST(set, LAT_SET)
CONV_TEST(orset, LAT_ORSET)
CONV_TEST(counter, LAT_COUNTER)
CONV_TEST(max, LAT_MAX)
CONV_TEST(causal, LAT_CAUSAL)
CONV_TEST(priority, LAT_PRIORITY)
CONV_TEST(map, LAT_MAP)

/* Appends [t][p, p + n) as a tagged operand. */
static void tag(lat_buf *out, lat_type t, const lat_buf *state)
{
    uint8_t type = (uint8_t)t;
    cr_assert(eq(int, lat_buf_set(out, &type, 1), TRELLIS_OK));
    cr_assert(eq(int, lat_buf_reserve(out, state->len), TRELLIS_OK));
    memcpy(out->data + 1, state->data, state->len);
    out->len = 1 + state->len;
}

Test(convergence, tagged_mixed_types, .timeout = 60)
{
    enum { PER_TYPE = 8, TYPES = 3, OPS = TYPES * PER_TYPE + TAGGED_GARBAGE };
    gen_rng r;
    lat_buf d[PER_TYPE], ops[OPS], want, all, rep, tmp;
    size_t order[OPS * CONV_DUP_MAX];
    gen_begin(&r, "convergence::tagged_mixed_types");
    for (size_t i = 0; i < PER_TYPE; i++)
        lat_buf_init(&d[i]);
    for (size_t i = 0; i < OPS; i++)
        lat_buf_init(&ops[i]);
    lat_buf_init(&want);
    lat_buf_init(&all);
    lat_buf_init(&rep);
    lat_buf_init(&tmp);
    for (r.iter = 0; r.iter < TAGGED_RUNS; r.iter++) {
        size_t n = 0;
        lat_type top = LAT_NONE;
        /* Updates of up to three types, as after conflicting first writes. */
        int types = 1 + (int)gen_below(&r, TYPES);
        for (int k = 0; k < types; k++) {
            lat_type t = (lat_type)(LAT_TYPE_FIRST + gen_below(&r, LAT_TYPE_LAST));
            size_t m = 1 + (size_t)gen_below(&r, PER_TYPE);
            gen_history(&r, t, d, m);
            for (size_t i = 0; i < m; i++)
                tag(&ops[n++], t, &d[i]);
            if (t > top) {
                size_t idx[PER_TYPE];
                for (size_t i = 0; i < m; i++)
                    idx[i] = i;
                gen_fold(t, d, idx, m, &tmp);
                tag(&want, t, &tmp);
                top = t;
            } else if (t == top) {
                /* The same type drawn twice: both histories join. */
                lat_buf cur;
                size_t idx[PER_TYPE];
                lat_buf_init(&cur);
                for (size_t i = 0; i < m; i++)
                    idx[i] = i;
                gen_fold(t, d, idx, m, &tmp);
                cr_assert(eq(int,
                             lat_merge(t, want.data + 1, want.len - 1, tmp.data, tmp.len, &cur),
                             TRELLIS_OK));
                tag(&want, t, &cur);
                lat_buf_free(&cur);
            }
        }
        /* Malformed operands: garbage, empty, an unknown type byte. */
        size_t garbage = (size_t)gen_below(&r, TAGGED_GARBAGE + 1);
        for (size_t g = 0; g < garbage; g++) {
            uint8_t junk[6];
            size_t jl = (size_t)gen_below(&r, sizeof junk + 1);
            for (size_t i = 0; i < jl; i++)
                junk[i] = (uint8_t)gen_u64(&r);
            if (jl > 0 && gen_chance(&r, 50))
                junk[0] = (uint8_t)(LAT_TYPE_LAST + 1 + gen_below(&r, 200));
            cr_assert(eq(int, lat_buf_set(&ops[n++], junk, jl), TRELLIS_OK));
        }

        for (int k = 0; k < CONV_REPLICAS + 1; k++) {
            size_t m = k == 0 ? n : deliveries(&r, n, order);
            if (k == 0) {
                for (size_t i = 0; i < n; i++)
                    order[i] = i;
            }
            lat_buf *acc = k == 0 ? &all : &rep;
            cr_assert(eq(int, lat_buf_set(acc, ops[order[0]].data, ops[order[0]].len), TRELLIS_OK));
            for (size_t i = 1; i < m; i++) {
                const lat_buf *o = &ops[order[i]];
                GEN_CHECK(&r,
                          lat_tagged_merge(acc->data, acc->len, o->data, o->len, acc, NULL) ==
                              TRELLIS_OK,
                          "tagged merge");
            }
            GEN_CHECK_SAME(&r, acc->data, acc->len, want.data, want.len,
                           "the larger type's merge wins, malformed operands drop out");
        }
    }
    gen_free_all(d, PER_TYPE);
    gen_free_all(ops, OPS);
    lat_buf_free(&want);
    lat_buf_free(&all);
    lat_buf_free(&rep);
    lat_buf_free(&tmp);
}

/* ---- expiry ------------------------------------------------------------------ */

#define EXP_RUNS    GEN_CASES(2000) /* random histories per type */
#define EXP_UPDATES 24              /* most deltas in one history */
#define EXP_TOMBS   (CONV_REPLICAS * EXP_UPDATES * CONV_DUP_MAX)

static uint64_t epoch_of(const lat_buf *b)
{
    lat_stored s;
    cr_assert(eq(int, lat_tagged_parse(b->data, b->len, &s), TRELLIS_OK));
    return s.epoch;
}

static void tjoin(lat_buf *acc, const lat_buf *d)
{
    cr_assert(
        eq(int, lat_tagged_merge(acc->data, acc->len, d->data, d->len, acc, NULL), TRELLIS_OK));
}

/* Five replicas receive a history with expiry in their own orders, with
 * duplicates, and each ends an incarnation whenever its own clock (skewed)
 * shows its state expired, adding its tombstone. After they exchange their
 * final states all hold the same bytes: the merge of the history and every
 * tombstone any of them made. */
static void converge_expiry(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf d[EXP_UPDATES], rep[CONV_REPLICAS], want, *tombs;
    size_t order[EXP_UPDATES * CONV_DUP_MAX], ntombs = 0;
    long ended = 0, live_end = 0;
    gen_begin(&r, name);
    tombs = calloc(EXP_TOMBS, sizeof *tombs);
    cr_assert_not_null(tombs);
    for (size_t i = 0; i < EXP_UPDATES; i++)
        lat_buf_init(&d[i]);
    for (int k = 0; k < CONV_REPLICAS; k++)
        lat_buf_init(&rep[k]);
    lat_buf_init(&want);
    for (r.iter = 0; r.iter < EXP_RUNS; r.iter++) {
        size_t n = 1 + (size_t)gen_below(&r, EXP_UPDATES);
        gen_tagged_history(&r, t, d, n);
        ntombs = 0;
        for (int k = 0; k < CONV_REPLICAS; k++) {
            size_t m = deliveries(&r, n, order);
            uint64_t now = 8 + gen_below(&r, 4);
            lat_buf_set(&rep[k], d[order[0]].data, d[order[0]].len);
            for (size_t i = 1; i < m; i++) {
                tjoin(&rep[k], &d[order[i]]);
                now += gen_below(&r, 3);
                if (gen_chance(&r, 30) && lat_tagged_expired(rep[k].data, rep[k].len, now)) {
                    lat_buf *tb = &tombs[ntombs++];
                    cr_assert(eq(int, lat_tagged_tombstone(rep[k].data, rep[k].len, now, tb),
                                 TRELLIS_OK));
                    tjoin(&rep[k], tb);
                    GEN_CHECK(&r, gen_same_buf(&rep[k], tb), "a tombstone dominates its state");
                    ended++;
                }
            }
        }
        /* The expected state: everything, in order. */
        lat_buf_set(&want, d[0].data, d[0].len);
        for (size_t i = 1; i < n; i++)
            tjoin(&want, &d[i]);
        for (size_t i = 0; i < ntombs; i++)
            tjoin(&want, &tombs[i]);
        /* Exchange: each replica merges the others' final states. */
        for (int k = 0; k < CONV_REPLICAS; k++) {
            for (int j = 0; j < CONV_REPLICAS; j++)
                if (j != k)
                    tjoin(&rep[k], &rep[(k + j) % CONV_REPLICAS]);
        }
        for (int k = 0; k < CONV_REPLICAS; k++)
            GEN_CHECK_SAME(&r, rep[k].data, rep[k].len, want.data, want.len,
                           "replicas converge on the merge of all updates and tombstones");
        live_end += lat_tagged_live(want.data, want.len, 0);
    }
    cr_log_info("%s: %d histories, %ld incarnations ended by replicas, %ld live at the end", name,
                EXP_RUNS, ended, live_end);
    cr_assert(gt(long, ended, EXP_RUNS / 4), "replicas must end incarnations");
    gen_free_all(d, EXP_UPDATES);
    gen_free_all(rep, CONV_REPLICAS);
    gen_free_all(tombs, EXP_TOMBS);
    free(tombs);
    lat_buf_free(&want);
}

/* In any subset of a history, merged in any order, nothing of an ended
 * incarnation survives: the merge equals the merge of the deltas of the
 * latest incarnation alone. And once a replica ended an incarnation, its
 * tombstone merged with any deltas of that or earlier incarnations stays
 * that tombstone: invisible at every clock. */
static void expired_never_reappears(lat_type t, const char *name)
{
    gen_rng r;
    lat_buf d[EXP_UPDATES + 1], acc, top, tomb;
    size_t order[EXP_UPDATES + 1];
    long checked = 0;
    gen_begin(&r, name);
    for (size_t i = 0; i <= EXP_UPDATES; i++)
        lat_buf_init(&d[i]);
    lat_buf_init(&acc);
    lat_buf_init(&top);
    lat_buf_init(&tomb);
    for (r.iter = 0; r.iter < EXP_RUNS; r.iter++) {
        size_t n = 1 + (size_t)gen_below(&r, EXP_UPDATES);
        gen_tagged_history(&r, t, d, n);
        /* A random subset, random order. */
        size_t m = 0;
        uint64_t emax = 0;
        for (size_t i = 0; i < n; i++) {
            if (gen_chance(&r, 60))
                order[m++] = i;
        }
        if (m == 0)
            order[m++] = 0;
        gen_shuffle(&r, order, m, sizeof order[0]);
        gen_tagged_fold(d, order, m, &acc);
        for (size_t i = 0; i < m; i++)
            if (epoch_of(&d[order[i]]) > emax)
                emax = epoch_of(&d[order[i]]);
        size_t k = 0;
        for (size_t i = 0; i < m; i++)
            if (epoch_of(&d[order[i]]) == emax)
                order[k++] = order[i];
        gen_tagged_fold(d, order, k, &top);
        GEN_CHECK_SAME(&r, acc.data, acc.len, top.data, top.len,
                       "only the latest incarnation counts");
        /* End it, then bring back everything of it and before. */
        uint64_t now = UINT64_MAX / 2;
        if (!lat_tagged_expired(acc.data, acc.len, now))
            continue;
        cr_assert(eq(int, lat_tagged_tombstone(acc.data, acc.len, now, &tomb), TRELLIS_OK));
        uint64_t ended = epoch_of(&acc);
        lat_buf_set(&acc, tomb.data, tomb.len);
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (epoch_of(&d[i]) <= ended)
                order[m++] = i;
        gen_shuffle(&r, order, m, sizeof order[0]);
        for (size_t i = 0; i < m; i++) {
            tjoin(&acc, &d[order[i]]);
            GEN_CHECK(&r, !lat_tagged_live(acc.data, acc.len, 0), "never live again");
        }
        GEN_CHECK_SAME(&r, acc.data, acc.len, tomb.data, tomb.len, "the tombstone stays");
        checked++;
    }
    cr_log_info("%s: %d histories, %ld ended incarnations replayed", name, EXP_RUNS, checked);
    cr_assert(gt(long, checked, EXP_RUNS / 10), "the replay must be exercised");
    gen_free_all(d, EXP_UPDATES + 1);
    lat_buf_free(&acc);
    lat_buf_free(&top);
    lat_buf_free(&tomb);
}

#define EXPIRY_TESTS(name, type)                                                                   \
    Test(convergence, expiry_##name, .timeout = 90)                                                \
    {                                                                                              \
        converge_expiry(type, "convergence::expiry_" #name);                                       \
    }                                                                                              \
    Test(convergence, expired_never_reappears_##name, .timeout = 90)                               \
    {                                                                                              \
        expired_never_reappears(type, "convergence::expired_never_reappears_" #name);              \
    }

EXPIRY_TESTS(lww, LAT_LWW)
EXPIRY_TESTS(set, LAT_SET)
EXPIRY_TESTS(orset, LAT_ORSET)
EXPIRY_TESTS(counter, LAT_COUNTER)
EXPIRY_TESTS(max, LAT_MAX)
EXPIRY_TESTS(causal, LAT_CAUSAL)
EXPIRY_TESTS(priority, LAT_PRIORITY)
EXPIRY_TESTS(map, LAT_MAP)

/* ---- removed MAP fields ------------------------------------------------------ */

#define RM_RUNS     GEN_CASES(3000)
#define RM_UPDATES  32
#define RM_REPLICAS 3

/* 1 if the MAP delta writes field name: holds a record of it with a live
 * entry (a record of removed entries only cannot show it). */
static int touches(const lat_buf *delta, lat_slice name)
{
    lat_map_field f;
    return lat_map_get(delta->data, delta->len, name.data, name.len, &f);
}

/* Replicas write, count and remove fields, syncing now and then. For each
 * remove made at a replica that had observed the deltas in mask M: the
 * remove merged, in any order, with any deltas of M and any deltas that do
 * not write the removed field, never shows the field. */
Test(convergence, removed_field_never_reappears, .timeout = 90)
{
    gen_rng r;
    lat_buf d[RM_UPDATES], rep[RM_REPLICAS], acc;
    uint64_t seen[RM_REPLICAS], observed[RM_UPDATES];
    size_t order[RM_UPDATES];
    long removes = 0, replays = 0;
    gen_begin(&r, "convergence::removed_field_never_reappears");
    for (size_t i = 0; i < RM_UPDATES; i++)
        lat_buf_init(&d[i]);
    for (int k = 0; k < RM_REPLICAS; k++)
        lat_buf_init(&rep[k]);
    lat_buf_init(&acc);
    for (r.iter = 0; r.iter < RM_RUNS; r.iter++) {
        lat_slice removed[RM_UPDATES];
        int is_rm[RM_UPDATES] = {0};
        for (int k = 0; k < RM_REPLICAS; k++) {
            lat_map_remove_all(NULL, 0, &rep[k]);
            seen[k] = 0;
        }
        for (size_t i = 0; i < RM_UPDATES; i++) {
            int k = (int)gen_below(&r, RM_REPLICAS), j = (int)gen_below(&r, RM_REPLICAS);
            if (j != k && gen_chance(&r, 30)) {
                cr_assert(eq(
                    int,
                    lat_merge(LAT_MAP, rep[k].data, rep[k].len, rep[j].data, rep[j].len, &rep[k]),
                    TRELLIS_OK));
                seen[k] |= seen[j];
            }
            lat_slice f = gen_word(&r);
            if (gen_chance(&r, 30) &&
                lat_map_get(rep[k].data, rep[k].len, f.data, f.len, &(lat_map_field){0})) {
                cr_assert(
                    eq(int, lat_map_remove(rep[k].data, rep[k].len, &f, 1, &d[i]), TRELLIS_OK));
                is_rm[i] = 1;
                removed[i] = f;
                observed[i] = seen[k];
            } else {
                gen_delta(&r, LAT_MAP, &rep[k], (uint64_t)k, d, i, &d[i]);
            }
            cr_assert(eq(int,
                         lat_merge(LAT_MAP, rep[k].data, rep[k].len, d[i].data, d[i].len, &rep[k]),
                         TRELLIS_OK));
            seen[k] |= 1ull << i;
        }
        for (size_t i = 0; i < RM_UPDATES; i++) {
            if (!is_rm[i])
                continue;
            removes++;
            size_t m = 0;
            for (size_t j = 0; j < RM_UPDATES; j++) {
                if (j == i || !gen_chance(&r, 70))
                    continue;
                if ((observed[i] >> j & 1) || !touches(&d[j], removed[i]))
                    order[m++] = j;
            }
            gen_shuffle(&r, order, m, sizeof order[0]);
            lat_buf_set(&acc, d[i].data, d[i].len);
            for (size_t j = 0; j < m; j++) {
                cr_assert(eq(
                    int,
                    lat_merge(LAT_MAP, acc.data, acc.len, d[order[j]].data, d[order[j]].len, &acc),
                    TRELLIS_OK));
                lat_map_field f;
                GEN_CHECK(&r, !lat_map_get(acc.data, acc.len, removed[i].data, removed[i].len, &f),
                          "a removed field stays removed");
            }
            replays += (long)m;
        }
    }
    cr_log_info("removed_field_never_reappears: %d histories, %ld removes, %ld replayed deltas",
                RM_RUNS, removes, replays);
    cr_assert(gt(long, removes, RM_RUNS), "removes must happen");
    gen_free_all(d, RM_UPDATES);
    gen_free_all(rep, RM_REPLICAS);
    lat_buf_free(&acc);
}
