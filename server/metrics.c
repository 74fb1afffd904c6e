/*
 * metrics.c - /metrics, /healthz and /livez over nng's HTTP server.
 */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "base/log.h"
#include "trellis/trellis_status.h"

struct metrics_server {
    nng_http_server *srv;
    metrics_render_fn render;
    metrics_ready_fn ready;
    void *arg;
};

void mbuf_printf(mbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->data && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

void mbuf_free(mbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void metrics_family(mbuf *b, const char *name, const char *type, const char *help)
{
    mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void reply_text(nng_aio *aio, uint16_t status, const char *ctype, const char *body,
                       size_t len)
{
    nng_http_res *res;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, status);
    nng_http_res_set_header(res, "Content-Type", ctype);
    if (nng_http_res_copy_data(res, body, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void handle_metrics(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    metrics_server *m = nng_http_handler_get_data(h);
    mbuf b = {0};
    m->render(m->arg, &b);
    if (b.failed) {
        mbuf_free(&b);
        reply_text(aio, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    reply_text(aio, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
    mbuf_free(&b);
}

static void handle_healthz(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    metrics_server *m = nng_http_handler_get_data(h);
    if (!m->ready || m->ready(m->arg))
        reply_text(aio, 200, "text/plain", "ok\n", 3);
    else
        reply_text(aio, 503, "text/plain", "not ready\n", 10);
}

static void handle_livez(nng_aio *aio)
{
    reply_text(aio, 200, "text/plain", "ok\n", 3);
}

static int add_handler(metrics_server *m, const char *path, void (*cb)(nng_aio *))
{
    nng_http_handler *h;
    int rv = nng_http_handler_alloc(&h, path, cb);
    if (rv != 0)
        return rv;
    nng_http_handler_set_method(h, "GET");
    nng_http_handler_set_data(h, m, NULL);
    if ((rv = nng_http_server_add_handler(m->srv, h)) != 0)
        nng_http_handler_free(h);
    return rv;
}

int metrics_start(const char *host, int port, metrics_render_fn render, metrics_ready_fn ready,
                  void *arg, metrics_server **out)
{
    *out = NULL;
    metrics_server *m = calloc(1, sizeof(*m));
    if (!m)
        return TRELLIS_INTERNAL;
    m->render = render;
    m->ready = ready;
    m->arg = arg;
    char url[300];
    snprintf(url, sizeof(url), "http://%s:%d", host, port);
    nng_url *u;
    int rv = nng_url_parse(&u, url);
    if (rv == 0) {
        rv = nng_http_server_hold(&m->srv, u);
        nng_url_free(u);
    }
    if (rv == 0 && (rv = add_handler(m, "/metrics", handle_metrics)) == 0 &&
        (rv = add_handler(m, "/healthz", handle_healthz)) == 0 &&
        (rv = add_handler(m, "/readyz", handle_healthz)) == 0 &&
        (rv = add_handler(m, "/livez", handle_livez)) == 0)
        rv = nng_http_server_start(m->srv);
    if (rv != 0) {
        log_error("metrics on %s: %s", url, nng_strerror(rv));
        if (m->srv)
            nng_http_server_release(m->srv);
        free(m);
        return TRELLIS_UNAVAILABLE;
    }
    *out = m;
    return TRELLIS_OK;
}

void metrics_stop(metrics_server *m)
{
    if (!m)
        return;
    nng_http_server_stop(m->srv);
    nng_http_server_release(m->srv);
    free(m);
}
