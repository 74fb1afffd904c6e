/*
 * expiry.c - deadlines of keys: EXPIRE and its variants, PERSIST, TTL, and
 * LWW writes with a deadline (SET ... EX).
 */
#include <stdint.h>

#include "client/client_impl.h"

uint64_t trellis_clock_ms(trellis_client *c)
{
    return hlc_wall_us(hlc_now(&c->clock)) / 1000;
}

int trellis_pexpireat(trellis_client *c, const void *key, size_t klen, uint64_t unix_ms, int cond,
                      int *applied)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_expire(&o.b, key, klen, unix_ms, cond));
    if (rc == TRELLIS_OK && applied)
        *applied = (int)o.op.integer;
    cl_one_fini(&o);
    return rc;
}

/* now + delta, with delta in ms; a result at or below now expires the key
 * at once (a deadline of 1 ms after the epoch is long past). */
static int deadline_after(trellis_client *c, int64_t delta_ms, uint64_t *out)
{
    if (!c)
        return TRELLIS_INVALID;
    uint64_t now = trellis_clock_ms(c);
    if (delta_ms <= 0) {
        *out = 1;
        return TRELLIS_OK;
    }
    if ((uint64_t)delta_ms > UINT64_MAX - now)
        return TRELLIS_INVALID;
    *out = now + (uint64_t)delta_ms;
    return TRELLIS_OK;
}

int trellis_pexpire(trellis_client *c, const void *key, size_t klen, int64_t ms)
{
    uint64_t at;
    int rc = deadline_after(c, ms, &at);
    return rc == TRELLIS_OK ? trellis_pexpireat(c, key, klen, at, TRELLIS_EXPIRE_ALWAYS, NULL) : rc;
}

int trellis_expire(trellis_client *c, const void *key, size_t klen, int64_t seconds)
{
    if (seconds > INT64_MAX / 1000 || seconds < INT64_MIN / 1000)
        return TRELLIS_INVALID;
    return trellis_pexpire(c, key, klen, seconds * 1000);
}

int trellis_expireat(trellis_client *c, const void *key, size_t klen, int64_t unix_seconds)
{
    if (unix_seconds > INT64_MAX / 1000)
        return TRELLIS_INVALID;
    uint64_t at = unix_seconds > 0 ? (uint64_t)unix_seconds * 1000 : 1;
    return trellis_pexpireat(c, key, klen, at, TRELLIS_EXPIRE_ALWAYS, NULL);
}

int trellis_persist(trellis_client *c, const void *key, size_t klen, int *removed)
{
    return trellis_pexpireat(c, key, klen, 0, TRELLIS_EXPIRE_ALWAYS, removed);
}

int trellis_pttl(trellis_client *c, const void *key, size_t klen, int64_t *ms)
{
    if (!ms)
        return TRELLIS_INVALID;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_head(&o.b, key, klen));
    if (rc == TRELLIS_OK) {
        uint64_t d = o.op.deadline, now = trellis_clock_ms(c);
        *ms = d == 0 ? -1 : d > now ? (int64_t)(d - now) : 0;
    }
    cl_one_fini(&o);
    return rc;
}

int trellis_ttl(trellis_client *c, const void *key, size_t klen, int64_t *seconds)
{
    int64_t ms;
    if (!seconds)
        return TRELLIS_INVALID;
    int rc = trellis_pttl(c, key, klen, &ms);
    if (rc == TRELLIS_OK)
        *seconds = ms < 0 ? -1 : (ms + 500) / 1000;
    return rc;
}

int trellis_put_ex(trellis_client *c, const void *key, size_t klen, const void *value, size_t vlen,
                   const trellis_put_opts *o)
{
    cl_one one;
    cl_one_init(&one);
    int rc = cl_one_run(c, &one, trellis_batch_put_ex(&one.b, key, klen, value, vlen, o));
    cl_one_fini(&one);
    return rc;
}
