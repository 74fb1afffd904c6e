/*
 * report.h - a client's latency reports to the cluster's monitor.
 *
 * A thread of the client's own wakes every CL_REPORT_PERIOD_MS, takes the
 * sampler's window (sampler.h) and, when the window holds calls and the
 * cluster has a monitor, sends it as one StatsReport (client_id, the
 * period, calls, p50, p99) over nng, and waits at most CL_REPORT_TIMEOUT_MS
 * for the answer. Callers never wait for any of this: they only record
 * into the sampler. The monitor's address comes with the ring (the
 * routers' cluster.monitor): the thread starts when a ring first names
 * one, so a cluster without a monitor costs its clients nothing. A report
 * that fails is dropped (its window is not sent again) and logged nowhere:
 * the monitor treats a client that stops reporting as gone.
 */
#ifndef TRELLIS_CLIENT_REPORT_H
#define TRELLIS_CLIENT_REPORT_H

#include <stddef.h>

#include "base/net.h"
#include "base/wire.h"
#include "client/sampler.h"

#define CL_REPORT_PERIOD_MS  1000
#define CL_MAX_MONITOR_URL   256
#define CL_REPORT_TIMEOUT_MS 500
#define CL_REPORT_ID_MAX     63 /* bytes of a client id (the monitor's limit) */

typedef struct cl_report cl_report;

typedef struct cl_report_opts {
    const char *client_id;  /* copied; at most CL_REPORT_ID_MAX bytes are used */
    const net_tls *tls;     /* borrowed: outlives the reporter */
    const wire_limits *lim; /* copied */
    const char *token;      /* copied; "" or NULL: none */
    cl_sampler *sampler;    /* borrowed: outlives the reporter */
} cl_report_opts;

/* A reporter that does nothing until it learns where the monitor is.
 * TRELLIS_OK or TRELLIS_INTERNAL. */
int cl_report_new(const cl_report_opts *o, cl_report **out);

/* The monitor's URL, from a ring snapshot ("" or NULL: none, reports stop).
 * Starts the thread the first time it is given one. Any thread. */
void cl_report_set_monitor(cl_report *r, const char *url);

/* Reports sent and answered OK so far (for tests and statistics). */
unsigned long cl_report_sent(cl_report *r);

/* Stops the thread (within CL_REPORT_TIMEOUT_MS), closes its connection and
 * frees r. NULL is ignored. */
void cl_report_free(cl_report *r);

#endif
