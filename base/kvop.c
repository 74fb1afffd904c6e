/*
 * kvop.c - arguments and results of key operations carried in values
 * (kvop.h, docs/protocol.md).
 */
#include "base/kvop.h"

#include <string.h>

#include "base/frame.h"

/* ---- EXPIRE ------------------------------------------------------------------ */

size_t kvop_expire_arg_encode(uint8_t *out, uint64_t deadline_ms, uint64_t stamp, int cond)
{
    frame_put_expire_arg(out, deadline_ms, stamp);
    if (cond == KVOP_EXPIRE_ALWAYS)
        return FRAME_EXPIRE_ARG;
    out[FRAME_EXPIRE_ARG] = (uint8_t)cond;
    return FRAME_EXPIRE_ARG + 1;
}

int kvop_expire_cond_decode(const uint8_t *v, size_t n, int *cond)
{
    if (n == 0) {
        *cond = KVOP_EXPIRE_ALWAYS;
        return TRELLIS_OK;
    }
    if (n != 1 || v[0] > KVOP_EXPIRE_LT)
        return TRELLIS_MALFORMED;
    *cond = v[0];
    return TRELLIS_OK;
}

int kvop_expire_arg_decode(const uint8_t *v, size_t n, uint64_t *deadline_ms, uint64_t *stamp,
                           int *cond)
{
    if (n < FRAME_EXPIRE_ARG)
        return TRELLIS_MALFORMED;
    int rc = kvop_expire_cond_decode(v + FRAME_EXPIRE_ARG, n - FRAME_EXPIRE_ARG, cond);
    if (rc != TRELLIS_OK)
        return rc;
    *deadline_ms = frame_rd64(v);
    *stamp = frame_rd64(v + 8);
    return TRELLIS_OK;
}

void kvop_expire_result_encode(uint8_t *out, uint64_t prev_deadline_ms, int applied)
{
    frame_le64(out, prev_deadline_ms);
    out[8] = applied ? 1 : 0;
}

int kvop_expire_result_decode(const uint8_t *v, size_t n, uint64_t *prev_deadline_ms, int *applied)
{
    if (n != KVOP_EXPIRE_RESULT || v[8] > 1)
        return TRELLIS_MALFORMED;
    *prev_deadline_ms = frame_rd64(v);
    *applied = v[8];
    return TRELLIS_OK;
}

int kvop_deadline_ms(uint64_t now_ms, int unit, int64_t t, uint64_t *out)
{
    if (unit == KVOP_IN_S || unit == KVOP_AT_S) {
        if (t > INT64_MAX / 1000 || t < INT64_MIN / 1000)
            return -1;
        t *= 1000;
    }
    if (unit == KVOP_IN_S || unit == KVOP_IN_MS) {
        if (t > 0 && (uint64_t)t > UINT64_MAX - now_ms)
            return -1;
        *out = t > 0 ? now_ms + (uint64_t)t : 1;
    } else {
        *out = t > 0 ? (uint64_t)t : 1;
    }
    return 0;
}

/* ---- HEAD -------------------------------------------------------------------- */

void kvop_head_result_encode(uint8_t *out, uint64_t deadline_ms)
{
    frame_le64(out, deadline_ms);
}

int kvop_head_result_decode(const uint8_t *v, size_t n, uint64_t *deadline_ms)
{
    if (n != KVOP_HEAD_RESULT)
        return TRELLIS_MALFORMED;
    *deadline_ms = frame_rd64(v);
    return TRELLIS_OK;
}

/* ---- PUT_EX ------------------------------------------------------------------ */

void kvop_put_ex_header(uint8_t *out, unsigned flags, uint64_t deadline_ms, uint64_t epoch)
{
    out[0] = (uint8_t)flags;
    frame_le64(out + 1, deadline_ms);
    frame_le64(out + 9, epoch);
}

int kvop_put_ex_decode(const uint8_t *v, size_t n, kvop_put_ex *out)
{
    if (n < KVOP_PUT_EX_HEADER || (v[0] & ~KVOP_PX_FLAGS) != 0)
        return TRELLIS_MALFORMED;
    out->flags = v[0];
    out->deadline_ms = frame_rd64(v + 1);
    out->epoch = frame_rd64(v + 9);
    if ((out->flags & KVOP_PX_DEADLINE) && out->deadline_ms == 0)
        return TRELLIS_MALFORMED;
    out->state = v + KVOP_PUT_EX_HEADER;
    out->slen = n - KVOP_PUT_EX_HEADER;
    return TRELLIS_OK;
}

size_t kvop_put_ex_result_encode(uint8_t *out, uint64_t epoch, int has_int, int64_t v)
{
    frame_le64(out, epoch);
    if (!has_int)
        return KVOP_PUT_EX_RESULT;
    frame_le64(out + 8, (uint64_t)v);
    return KVOP_PUT_EX_RESULT_INT;
}

int kvop_put_ex_result_decode(const uint8_t *v, size_t n, uint64_t *epoch, int *has_int,
                              int64_t *value)
{
    if (n != KVOP_PUT_EX_RESULT && n != KVOP_PUT_EX_RESULT_INT)
        return TRELLIS_MALFORMED;
    *epoch = frame_rd64(v);
    *has_int = n == KVOP_PUT_EX_RESULT_INT;
    *value = *has_int ? (int64_t)frame_rd64(v + 8) : 0;
    return TRELLIS_OK;
}

/* ---- MAP_SET ----------------------------------------------------------------- */

size_t kvop_map_set_size(const size_t *nlen, const size_t *vlen, size_t count)
{
    size_t n = KVOP_MAP_SET_HEADER;
    for (size_t i = 0; i < count; i++)
        n += 8 + nlen[i] + vlen[i];
    return n;
}

uint8_t *kvop_map_set_header(uint8_t *out, unsigned flags, uint64_t stamp, uint64_t writer,
                             uint32_t count)
{
    out[0] = (uint8_t)flags;
    frame_le64(out + 1, stamp);
    frame_le64(out + 9, writer);
    frame_le32(out + 17, count);
    return out + KVOP_MAP_SET_HEADER;
}

static uint8_t *put_str(uint8_t *w, const void *p, size_t n)
{
    frame_le32(w, (uint32_t)n);
    if (n)
        memcpy(w + 4, p, n);
    return w + 4 + n;
}

uint8_t *kvop_map_put_pair(uint8_t *w, const void *name, size_t nlen, const void *value,
                           size_t vlen)
{
    return put_str(put_str(w, name, nlen), value, vlen);
}

/* Reads a length-prefixed string at *p (before end); 0 when it runs past. */
static int get_str(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n)
{
    if ((size_t)(end - *p) < 4)
        return 0;
    uint32_t len = frame_rd32(*p);
    if ((size_t)(end - *p) - 4 < len)
        return 0;
    *s = *p + 4;
    *n = len;
    *p += 4 + (size_t)len;
    return 1;
}

int kvop_map_set_decode(const uint8_t *v, size_t n, kvop_map_set *out)
{
    if (n < KVOP_MAP_SET_HEADER || (v[0] & ~KVOP_MAP_NX) != 0)
        return TRELLIS_MALFORMED;
    out->flags = v[0];
    out->stamp = frame_rd64(v + 1);
    out->writer = frame_rd64(v + 9);
    out->count = frame_rd32(v + 17);
    out->pairs = v + KVOP_MAP_SET_HEADER;
    out->end = v + n;
    if (out->count == 0 || out->stamp == 0)
        return TRELLIS_MALFORMED;
    /* Each pair takes at least 8 bytes: a count beyond that is false. */
    if (out->count > (size_t)(out->end - out->pairs) / 8)
        return TRELLIS_MALFORMED;
    const uint8_t *p = out->pairs, *s;
    size_t sl;
    for (uint32_t i = 0; i < out->count; i++)
        if (!get_str(&p, out->end, &s, &sl) || !get_str(&p, out->end, &s, &sl))
            return TRELLIS_MALFORMED;
    return p == out->end ? TRELLIS_OK : TRELLIS_MALFORMED;
}

int kvop_map_next(kvop_map_set *m, const uint8_t **name, size_t *nlen, const uint8_t **value,
                  size_t *vlen)
{
    if (m->pairs >= m->end)
        return 0;
    return get_str(&m->pairs, m->end, name, nlen) && get_str(&m->pairs, m->end, value, vlen);
}

void kvop_count_result_encode(uint8_t *out, uint32_t count)
{
    frame_le32(out, count);
}

int kvop_count_result_decode(const uint8_t *v, size_t n, uint32_t *count)
{
    if (n != KVOP_COUNT_RESULT)
        return TRELLIS_MALFORMED;
    *count = frame_rd32(v);
    return TRELLIS_OK;
}

/* ---- SCAN -------------------------------------------------------------------- */

void kvop_scan_encode(uint8_t *out, const kvop_scan *a)
{
    out[0] = (uint8_t)a->flags;
    out[1] = a->type;
    frame_le64(out + 2, a->lo);
    frame_le64(out + 10, a->hi);
    frame_le32(out + 18, a->count);
    if (a->plen)
        memcpy(out + KVOP_SCAN_HEADER, a->pattern, a->plen);
}

int kvop_scan_decode(const uint8_t *v, size_t n, kvop_scan *out)
{
    if (n < KVOP_SCAN_HEADER || (v[0] & ~KVOP_SCAN_FLAGS) != 0)
        return TRELLIS_MALFORMED;
    out->flags = v[0];
    out->type = v[1];
    out->lo = frame_rd64(v + 2);
    out->hi = frame_rd64(v + 10);
    out->count = frame_rd32(v + 18);
    out->pattern = v + KVOP_SCAN_HEADER;
    out->plen = n - KVOP_SCAN_HEADER;
    if (out->lo > out->hi || out->count == 0 ||
        ((out->flags & KVOP_SCAN_COUNT_ONLY) && (out->flags & (KVOP_SCAN_HASHES | KVOP_SCAN_DEAD))))
        return TRELLIS_MALFORMED;
    return TRELLIS_OK;
}

void kvop_scan_result_head(uint8_t *out, uint64_t next, uint64_t epoch, int done)
{
    frame_le64(out, next);
    frame_le64(out + 8, epoch);
    out[16] = done ? 1 : 0;
}

uint8_t *kvop_scan_put_key(uint8_t *w, const void *key, size_t klen)
{
    return put_str(w, key, klen);
}

uint8_t *kvop_scan_put_hash(uint8_t *w, uint64_t hash, int volatile_key)
{
    frame_le64(w, hash);
    w[8] = volatile_key ? 1 : 0;
    return w + KVOP_SCAN_HASH_ENTRY;
}

int kvop_scan_result_decode(const uint8_t *v, size_t n, unsigned flags, kvop_scan_result *out)
{
    memset(out, 0, sizeof(*out));
    out->flags = flags;
    if (n < KVOP_SCAN_RESULT || v[16] > 1)
        return TRELLIS_MALFORMED;
    out->next = frame_rd64(v);
    out->epoch = frame_rd64(v + 8);
    out->done = v[16];
    const uint8_t *p = v + KVOP_SCAN_RESULT, *end = v + n;
    if (flags & KVOP_SCAN_COUNT_ONLY) {
        if ((size_t)(end - p) != 16)
            return TRELLIS_MALFORMED;
        out->total = frame_rd64(p);
        out->volatile_keys = frame_rd64(p + 8);
        return TRELLIS_OK;
    }
    if ((size_t)(end - p) < 4)
        return TRELLIS_MALFORMED;
    out->nkeys = frame_rd32(p);
    p += 4;
    out->keys = p;
    if (flags & KVOP_SCAN_HASHES) {
        if (out->nkeys > (size_t)(end - p) / KVOP_SCAN_HASH_ENTRY)
            return TRELLIS_MALFORMED;
        p += (size_t)out->nkeys * KVOP_SCAN_HASH_ENTRY;
    } else {
        if (out->nkeys > (size_t)(end - p) / 4)
            return TRELLIS_MALFORMED;
        const uint8_t *k;
        size_t kl;
        for (uint32_t i = 0; i < out->nkeys; i++)
            if (!get_str(&p, end, &k, &kl))
                return TRELLIS_MALFORMED;
    }
    out->end = p;
    if (flags & KVOP_SCAN_DEAD) {
        if ((size_t)(end - p) < 4)
            return TRELLIS_MALFORMED;
        out->ndead = frame_rd32(p);
        p += 4;
        if (out->ndead > (size_t)(end - p) / 8)
            return TRELLIS_MALFORMED;
        out->dead = p;
        p += (size_t)out->ndead * 8;
    }
    return p == end ? TRELLIS_OK : TRELLIS_MALFORMED;
}

int kvop_scan_next_key(kvop_scan_result *r, const uint8_t **key, size_t *klen)
{
    if ((r->flags & KVOP_SCAN_HASHES) || r->keys >= r->end)
        return 0;
    return get_str(&r->keys, r->end, key, klen);
}

int kvop_scan_next_hash(kvop_scan_result *r, uint64_t *hash, int *volatile_key)
{
    if (!(r->flags & KVOP_SCAN_HASHES) || r->keys >= r->end)
        return 0;
    *hash = frame_rd64(r->keys);
    *volatile_key = r->keys[8] != 0;
    r->keys += KVOP_SCAN_HASH_ENTRY;
    return 1;
}

uint64_t kvop_scan_dead_at(const kvop_scan_result *r, uint32_t i)
{
    return frame_rd64(r->dead + 8 * (size_t)i);
}
