/*
 * expiry.c - the shard's clock for expiry, the tombstones it no longer
 * keeps, and the memory tier's sweep (expiry.h).
 */
#include "kvs/expiry.h"

#include "base/clock.h"
#include "kvs/shard_impl.h"

uint64_t expiry_now_ms(void)
{
    return clock_wall_us() / 1000;
}

int expiry_gone(const shard *s, const uint8_t *tagged, size_t tlen, uint64_t now_ms)
{
    return lat_tagged_collectable(tagged, tlen, now_ms, (uint64_t)s->cfg->kvs.expiry_grace_ms);
}

void expiry_step(shard *s, uint64_t mono_ms)
{
    if (store_is_disk(s->st) || mono_ms < s->expiry.next_ms)
        return;
    size_t examined, changed;
    store_sweep(s->st, expiry_now_ms(), (uint64_t)s->cfg->kvs.expiry_grace_ms, EXPIRY_SWEEP_SLOTS,
                &examined, &changed);
    /* A step that changed a quarter of what it saw has a backlog behind it:
     * the next one runs on the next loop turn. */
    int backlog = changed > 0 && changed * 4 >= examined;
    s->expiry.next_ms = mono_ms + (backlog ? 0 : EXPIRY_SWEEP_PERIOD_MS);
}

uint64_t expiry_next_ms(const shard *s)
{
    return store_is_disk(s->st) ? UINT64_MAX : s->expiry.next_ms;
}
