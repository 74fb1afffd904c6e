/*
 * test_convergence.c - replicas that receive the same multiset of updates
 * in different orders, with duplicates, end byte-identical and equal to the
 * merge of everything; per type and for tagged states of mixed types,
 * where the larger type wins and malformed operands drop out.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define CONV_RUNS      2000 /* random histories per type */
#define CONV_REPLICAS  5
#define CONV_UPDATES   32 /* most deltas in one history */
#define CONV_DUP_MAX   3  /* deliveries of one delta */
#define TAGGED_RUNS    2000
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
        GEN_LEAK_CHECK();                                                                          \
    }

CONV_TEST(lww, LAT_LWW)
CONV_TEST(set, LAT_SET)
CONV_TEST(orset, LAT_ORSET)
CONV_TEST(counter, LAT_COUNTER)
CONV_TEST(max, LAT_MAX)
CONV_TEST(causal, LAT_CAUSAL)
CONV_TEST(priority, LAT_PRIORITY)

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
    GEN_LEAK_CHECK();
}
