/*
 * mon_ring.h - the ring as the routers have it: fetched from one router
 * every period (the routers in turn while one does not answer), kept as a
 * ring the policies read. Its arrival, or its failure, makes the period's
 * evaluation due (monitor.c). Private to monitor/.
 */
#ifndef TRELLIS_MON_RING_H
#define TRELLIS_MON_RING_H

#include <stdint.h>

#include "placement/ring.h"

#define MON_RING_STALE 3 /* periods without a ring before policies pause */

typedef struct monitor monitor;

typedef struct mon_ring_state {
    ring *ring;        /* the last snapshot; NULL before the first */
    uint64_t epoch;    /* its epoch */
    uint64_t ms;       /* when the last snapshot arrived (0: never) */
    int inflight;      /* a request is out */
    int router_idx;    /* which router is asked (advances on a failure) */
    uint64_t asked_ms; /* when the request went out */
    int warned;        /* "policies paused" logged */
} mon_ring_state;

/* Asks a router for its ring unless a request is out (none configured:
 * nothing). A request that cannot be sent makes the evaluation due. */
void mon_ring_ask(monitor *m, uint64_t now);
/* 1 while the ring is no older than MON_RING_STALE periods; logs (once)
 * when it becomes stale. */
int mon_ring_fresh(monitor *m, uint64_t now);
/* Frees the ring. */
void mon_ring_fini(monitor *m);

#endif
