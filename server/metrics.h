/*
 * metrics.h - the HTTP endpoint every daemon serves on its metrics port
 * (nng's HTTP server): GET /metrics in the Prometheus text format,
 * GET /healthz (200 once the process serves, 503 before: the readiness
 * probe), GET /livez (200 while the process runs).
 */
#ifndef TRELLIS_METRICS_H
#define TRELLIS_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A growable text buffer; the renderer appends to it. */
typedef struct mbuf {
    char *data;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed; the text is truncated */
} mbuf;

void mbuf_printf(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(mbuf *b);

/* Writes "# HELP"/"# TYPE" lines for a metric family. */
void metrics_family(mbuf *b, const char *name, const char *type, const char *help);

/* Renders the page; runs on an nng thread, so it must only read state that
 * is safe to read concurrently (snapshots under a lock). */
typedef void (*metrics_render_fn)(void *arg, mbuf *out);
/* 1 when the process is ready to serve. */
typedef int (*metrics_ready_fn)(void *arg);

typedef struct metrics_server metrics_server;

/* Starts serving on host:port (port > 0). TRELLIS_UNAVAILABLE if the port
 * cannot be bound. */
int metrics_start(const char *host, int port, metrics_render_fn render, metrics_ready_fn ready,
                  void *arg, metrics_server **out);
/* Stops the server; no callback runs after it returns. */
void metrics_stop(metrics_server *m);

#endif
