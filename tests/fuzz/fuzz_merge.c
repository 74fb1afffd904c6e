/*
 * fuzz_merge.c - the disk tier's RocksDB merge callback over arbitrary
 * stored bytes. It must be total (a failing merge switches RocksDB to
 * read-only mode): any operands give a result, and merging that result again
 * with any operand is deterministic. A valid result must also survive the
 * expiry readers and, when expired, end in a tombstone that dominates it.
 * The input is split into operands at 0xFF 0xFE 0xFD markers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lattices/lattice.h"
#include "kvs/store.h"

#define MAX_OPS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *ops[MAX_OPS] = {0};
    size_t lens[MAX_OPS] = {0};
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i + 2 < size && n < MAX_OPS - 1; i++) {
        if (data[i] == 0xFF && data[i + 1] == 0xFE && data[i + 2] == 0xFD) {
            ops[n] = (const char *)data + start;
            lens[n++] = i - start;
            start = i + 3;
            i += 2;
        }
    }
    ops[n] = (const char *)data + start;
    lens[n++] = size - start;
    size_t rlen = 0;
    unsigned bad = 0;
    /* With and without an existing value. */
    char *r1 = store_merge_operands(NULL, 0, ops + 1, lens + 1, n - 1, &rlen, &bad);
    if (!r1 && n > 1)
        abort(); /* only allocation failure may fail */
    free(r1);
    size_t r2len = 0;
    char *r2 = store_merge_operands(ops[0], lens[0], ops + 1, lens + 1, n - 1, &r2len, &bad);
    if (!r2)
        abort();
    /* Determinism: the same fold twice gives the same bytes. */
    size_t r3len = 0;
    char *r3 = store_merge_operands(ops[0], lens[0], ops + 1, lens + 1, n - 1, &r3len, &bad);
    if (!r3 || r3len != r2len || memcmp(r2, r3, r2len) != 0)
        abort();
    /* A valid result validates, and expires into a tombstone above it. */
    const uint8_t *v2 = (const uint8_t *)r2;
    if (lat_tagged_validate(v2, r2len) == TRELLIS_OK) {
        for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++)
            (void)lat_validate((lat_type)t, v2 + 1, r2len - 1);
        uint64_t now = UINT64_MAX / 2, epoch;
        (void)lat_tagged_live(v2, r2len, now);
        (void)lat_tagged_collectable(v2, r2len, now, 1000);
        (void)lat_tagged_write_epoch(v2, r2len, now, &epoch);
        if (lat_tagged_expired(v2, r2len, now)) {
            lat_buf t, m;
            lat_buf_init(&t);
            lat_buf_init(&m);
            if (lat_tagged_tombstone(v2, r2len, now, &t) == TRELLIS_OK) {
                if (lat_tagged_merge(v2, r2len, t.data, t.len, &m, NULL) != TRELLIS_OK ||
                    m.len != t.len || memcmp(m.data, t.data, t.len) != 0)
                    abort(); /* the tombstone must dominate */
            }
            lat_buf_free(&t);
            lat_buf_free(&m);
        }
    }
    free(r2);
    free(r3);
    for (int i = 0; i < n; i++)
        for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++)
            (void)lat_validate((lat_type)t, (const uint8_t *)ops[i], lens[i]);
    return 0;
}
