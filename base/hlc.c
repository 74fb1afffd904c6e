/*
 * hlc.c - hybrid logical clocks.
 */
#include "base/hlc.h"

#include "base/clock.h"

void hlc_init(hlc *h)
{
    atomic_init(&h->last, 0);
}

uint64_t hlc_from_us(uint64_t us)
{
    return us << HLC_LOGICAL_BITS;
}

uint64_t hlc_wall_us(uint64_t ts)
{
    return ts >> HLC_LOGICAL_BITS;
}

uint64_t hlc_now(hlc *h)
{
    uint64_t phys = hlc_from_us(clock_wall_us());
    uint64_t last = atomic_load_explicit(&h->last, memory_order_relaxed);
    for (;;) {
        /* The logical counter may carry into the physical part; that only
         * happens after 4096 timestamps within one microsecond and keeps the
         * order total. */
        uint64_t next = phys > last ? phys : last + 1;
        if (atomic_compare_exchange_weak_explicit(&h->last, &last, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return next;
    }
}

void hlc_observe(hlc *h, uint64_t remote)
{
    uint64_t last = atomic_load_explicit(&h->last, memory_order_relaxed);
    while (remote > last) {
        if (atomic_compare_exchange_weak_explicit(&h->last, &last, remote, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
}
