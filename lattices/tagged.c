/*
 * tagged.c - stored states, [type byte][canonical encoding], and their total
 * merge: the one the RocksDB merge operator runs on whatever bytes it finds.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

/* Returns TRELLIS_OK if [buf, len) is a valid type byte followed by a valid
 * encoding of that type, TRELLIS_MALFORMED otherwise (also for NULL). */
int lat_tagged_validate(const uint8_t *buf, size_t len)
{
    if (buf == NULL || len < 1 || !lat_type_valid(buf[0]))
        return TRELLIS_MALFORMED;
    return lat_validate((lat_type)buf[0], buf + 1, len - 1);
}

/* The join of two tagged states over all byte strings: malformed operands
 * rank below valid ones and among themselves in byte order; valid states of
 * different types rank by type id; states of one type merge. out may alias
 * a or b. When malformed is not NULL, the number of malformed operands of
 * this call (0 to 2) is added to *malformed. Returns TRELLIS_OK, or TRELLIS_INTERNAL on
 * OOM (out's contents then unspecified). */
int lat_tagged_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out,
                     unsigned *malformed)
{
    if (a == NULL)
        alen = 0;
    if (b == NULL)
        blen = 0;
    int a_ok = lat_tagged_validate(a, alen) == TRELLIS_OK;
    int b_ok = lat_tagged_validate(b, blen) == TRELLIS_OK;
    if (malformed != NULL)
        *malformed += (unsigned)!a_ok + (unsigned)!b_ok;

    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, a, alen, b, blen);
    int rc;
    if (a_ok && b_ok && a[0] == b[0]) {
        rc = lat__buf_append(dst, a, 1);
        if (rc == TRELLIS_OK)
            rc = lat__merge_append((lat_type)a[0], a + 1, alen - 1, b + 1, blen - 1, dst);
    } else {
        int take_a;
        if (a_ok != b_ok)
            take_a = a_ok;
        else if (a_ok)
            take_a = a[0] > b[0];
        else
            take_a = lat_bytes_cmp(a, alen, b, blen) >= 0;
        rc = take_a ? lat__buf_append(dst, a, alen) : lat__buf_append(dst, b, blen);
    }
    return lat__out_end(out, &tmp, dst, rc);
}
