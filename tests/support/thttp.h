/*
 * thttp.h - the HTTP endpoints of trellis daemons (/metrics, /healthz) as
 * tests read them: one GET over a fresh loopback connection.
 */
#ifndef TRELLIS_TESTS_SUPPORT_THTTP_H
#define TRELLIS_TESTS_SUPPORT_THTTP_H

#include <stddef.h>

#define THTTP_TIMEOUT_MS 1000
#define THTTP_MAX_PAGE   (1 << 20)

/* GET http://127.0.0.1:port/path; the body (NUL-terminated, truncated to
 * cap) in buf (may be NULL). Returns the HTTP status, or -1 when there is
 * no answer. */
int thttp_get(int port, const char *path, char *buf, size_t cap);

/* The value of the first /metrics line whose series starts with `series`
 * ("trellis_ops_total" or "trellis_ops_total{tier=\"memory\""), -1 when
 * absent or on error. */
double thttp_metric(int port, const char *series);

/* The sum of every labelled series of metric `name` (name{...} lines),
 * -1 when there is none or on error. */
double thttp_metric_sum(int port, const char *name);

#endif
