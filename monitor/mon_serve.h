/*
 * mon_serve.h - the monitor's listening socket and the statistics it
 * serves: storage nodes and clients push StatsReport (taken into the view,
 * mon_stats.h), the CLI and tests ask StatsRequest; every period the
 * aggregates go to the routers, which merge them into their own STATS.
 * Private to monitor/.
 */
#ifndef TRELLIS_MON_SERVE_H
#define TRELLIS_MON_SERVE_H

#include <stdint.h>

#include <nng/nng.h>

#include "server/config.h"

typedef struct monitor monitor;

typedef struct mon_serve_state {
    int push_inflight[CONFIG_LIST_MAX]; /* per router: the last push is unanswered */
} mon_serve_state;

/* Answers one message of the listening socket; takes msg. */
void mon_serve_handle(monitor *m, nng_msg *msg, uint64_t now);
/* Sends the aggregates to every router whose last push was answered. */
void mon_serve_push(monitor *m, uint64_t now);

#endif
