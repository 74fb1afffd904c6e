/*
 * test_lattice.c - the generic layer: type names, lat_buf, dispatch on
 * invalid types, and lat_delete_delta for every type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gen.h"

#define DELETE_CASES 2000 /* random states per type */

Test(lattice, type_names, .timeout = 10)
{
    static const char *names[] = {"NONE", "LWW",    "SET",      "ORSET", "COUNTER",
                                  "MAX",  "CAUSAL", "PRIORITY", "MAP"};
    for (int t = 0; t <= LAT_TYPE_LAST; t++)
        cr_assert(eq(str, (char *)lat_type_name((lat_type)t), (char *)names[t]));
    cr_assert(eq(str, (char *)lat_type_name((lat_type)9), "?"));
    cr_assert(eq(str, (char *)lat_type_name((lat_type)-1), "?"));

    lat_type t = LAT_NONE;
    cr_assert(eq(int, lat_type_parse("orset", &t), TRELLIS_OK));
    cr_assert(eq(int, t, LAT_ORSET));
    cr_assert(eq(int, lat_type_parse("Priority", &t), TRELLIS_OK));
    cr_assert(eq(int, t, LAT_PRIORITY));
    cr_assert(eq(int, lat_type_parse("LWW", &t), TRELLIS_OK));
    cr_assert(eq(int, t, LAT_LWW));
    for (int i = LAT_TYPE_FIRST; i <= LAT_TYPE_LAST; i++) {
        cr_assert(eq(int, lat_type_parse(names[i], &t), TRELLIS_OK));
        cr_assert(eq(int, t, i));
    }
    const char *bad[] = {
        "", "NONE", "none", "lw", "LWWW", "PRIORITYX", "set ", "?", "PRIORITYPRIORITY"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = LAT_MAX;
        cr_assert(eq(int, lat_type_parse(bad[i], &t), TRELLIS_INVALID), "%s", bad[i]);
        cr_assert(eq(int, t, LAT_MAX), "unchanged on failure");
    }
    cr_assert(eq(int, lat_type_parse(NULL, &t), TRELLIS_INVALID));

    for (int i = -1; i < 10; i++)
        cr_assert(eq(int, lat_type_valid(i), i >= 1 && i <= 8));
}

Test(lattice, buffers, .timeout = 10)
{
    lat_buf b;
    lat_buf_init(&b);
    cr_assert_null(b.data);
    cr_assert(eq(sz, b.len, 0));
    cr_assert(eq(int, lat_buf_reserve(&b, 10), TRELLIS_OK));
    cr_assert(ge(sz, b.cap, 10));
    cr_assert(eq(int, lat_buf_set(&b, "hello", 5), TRELLIS_OK));
    cr_assert(eq(sz, b.len, 5));
    /* Growth keeps the contents. */
    cr_assert(eq(int, lat_buf_reserve(&b, 1000), TRELLIS_OK));
    cr_assert(ge(sz, b.cap, 1005));
    cr_assert(eq(int, memcmp(b.data, "hello", 5), 0));
    /* Setting from its own bytes. */
    cr_assert(eq(int, lat_buf_set(&b, b.data + 1, 3), TRELLIS_OK));
    cr_assert(eq(sz, b.len, 3));
    cr_assert(eq(int, memcmp(b.data, "ell", 3), 0));
    cr_assert(eq(int, lat_buf_set(&b, NULL, 0), TRELLIS_OK));
    cr_assert(eq(sz, b.len, 0));
    /* A size that cannot exist fails cleanly. */
    cr_assert(eq(int, lat_buf_set(&b, "ab", 2), TRELLIS_OK));
    cr_assert(eq(int, lat_buf_reserve(&b, SIZE_MAX), TRELLIS_INTERNAL));
    cr_assert(eq(int, lat_buf_reserve(&b, SIZE_MAX - 2), TRELLIS_INTERNAL));
    cr_assert(eq(sz, b.len, 2));
    cr_assert(eq(int, memcmp(b.data, "ab", 2), 0));
    lat_buf_free(&b);
    cr_assert_null(b.data);
    lat_buf_free(&b); /* freeing twice is harmless */
}

Test(lattice, invalid_types_are_refused, .timeout = 10)
{
    uint8_t enc[8] = {0};
    lat_buf out = {0};
    lat_order o = LAT_EQUAL;
    for (int t = -1; t < 12; t++) {
        if (lat_type_valid(t))
            continue;
        cr_assert(eq(int, lat_validate((lat_type)t, enc, sizeof enc), TRELLIS_MALFORMED));
        cr_assert(eq(int, lat_merge((lat_type)t, enc, 8, enc, 8, &out), TRELLIS_INVALID));
        cr_assert(eq(int, lat_compare((lat_type)t, enc, 8, enc, 8, &o), TRELLIS_INVALID));
        cr_assert(eq(int, lat_is_empty((lat_type)t, enc, 8), 0));
        cr_assert(eq(int, lat_delete_delta((lat_type)t, NULL, 0, 1, 1, &out), TRELLIS_INVALID));
    }
    lat_buf_free(&out);
}

/* DEL of every type over random observed states: an INVALID for the types
 * that only grow, a valid delta otherwise, after which the key reads as
 * deleted (COUNTER: 0) even once merged with the pre-delete state again. */
Test(lattice, delete_delta_every_type, .timeout = 30)
{
    gen_rng r;
    lat_buf s = {0}, del = {0}, m = {0};
    gen_begin(&r, "lattice::delete_delta_every_type");
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        for (r.iter = 0; r.iter < DELETE_CASES; r.iter++) {
            gen_state(&r, (lat_type)t, &s);
            /* A fresh writer id whose clock is beyond anything generated. */
            uint64_t writer = 1000 + gen_below(&r, 3), ts = 1000 + (uint64_t)r.iter;
            int rc = lat_delete_delta((lat_type)t, s.data, s.len, writer, ts, &del);
            if (t == LAT_SET || t == LAT_MAX || t == LAT_PRIORITY) {
                GEN_CHECK(&r, rc == TRELLIS_INVALID, "these types only grow");
                continue;
            }
            GEN_CHECK(&r, rc == TRELLIS_OK, "delete delta");
            GEN_CHECK(&r, lat_validate((lat_type)t, del.data, del.len) == TRELLIS_OK,
                      "delta validates");
            GEN_CHECK(&r,
                      lat_merge((lat_type)t, s.data, s.len, del.data, del.len, &m) == TRELLIS_OK,
                      "merge");
            for (int again = 0; again < 2; again++) {
                if (t == LAT_COUNTER)
                    GEN_CHECK(&r, lat_counter_value(m.data, m.len) == 0, "counter reads 0");
                else
                    GEN_CHECK(&r, lat_is_empty((lat_type)t, m.data, m.len), "reads as deleted");
                GEN_CHECK(&r,
                          lat_merge((lat_type)t, m.data, m.len, s.data, s.len, &m) == TRELLIS_OK,
                          "merge");
            }
        }
    }
    lat_buf_free(&s);
    lat_buf_free(&del);
    lat_buf_free(&m);
}

/* A zero-length observed state counts as none, even behind a non-NULL
 * pointer: nothing is read from it (ASan sees the 1-byte block). */
Test(lattice, zero_length_observed_state, .timeout = 10)
{
    uint8_t *none = malloc(1);
    lat_buf out = {0};
    lat_slice x = {(const uint8_t *)"x", 1};
    cr_assert_not_null(none);
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        int rc = lat_delete_delta((lat_type)t, none, 0, 1, 1, &out);
        cr_assert(eq(int, rc, lat_delete_delta((lat_type)t, NULL, 0, 1, 1, &out)));
        if (rc == TRELLIS_OK)
            cr_assert(eq(int, lat_validate((lat_type)t, out.data, out.len), TRELLIS_OK));
    }
    cr_assert(eq(int, lat_causal_put(none, 0, 1, 1, "v", 1, 0, &out), TRELLIS_OK));
    cr_assert(eq(int, lat_orset_remove(none, 0, &x, 1, &out), TRELLIS_OK));
    cr_assert(eq(sz, out.len, 4));
    cr_assert(eq(int, lat_orset_remove_all(none, 0, &out), TRELLIS_OK));
    cr_assert(eq(i64, lat_counter_value(none, 0), 0));
    free(none);
    lat_buf_free(&out);
}
