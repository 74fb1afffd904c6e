/*
 * resp_server.c - the Redis protocol gateway (see resp_server.h).
 *
 * Threads and ownership
 *  - nng's task threads run the accept, receive and send callbacks. The
 *    receive side parses what arrived (resp_proto.c), answers connection
 *    commands at once (PING, AUTH, HELLO, ...: their replies are computed
 *    here, in order with the rest) and queues everything on the
 *    connection's inbox. Nothing there blocks.
 *  - RESP_WORKERS worker threads take ready connections off a queue, put
 *    the data commands of several connections into one libtrellis batch,
 *    execute it (blocking) and append the replies to each connection's
 *    output, which the send side writes out.
 *  - One mutex (srv->mtx) guards the queues, the counters of pending
 *    commands and the output buffers; it is never held across nng or
 *    libtrellis calls that may wait. A connection's input buffer and parser
 *    belong to whoever holds its "read turn" (a receive in flight, or the
 *    thread pumping its buffered input); its send buffer to the send side.
 *  - A connection is reference-counted: the server's list, the read turn,
 *    a send in flight and a scheduled run each hold a reference. The last
 *    one to let go puts it on the dead list; workers (or the stopping
 *    thread) free it, outside nng's callbacks, since freeing an aio waits
 *    for its callback to return.
 *
 * Order and back-pressure
 *  A connection's commands run in arrival order and at most one worker
 *  runs them at a time, so replies go out in order. When
 *  route.resp_max_pending commands are parsed and not yet answered, its
 *  queued commands hold more than RESP_QUEUE_LIMIT bytes (or one command's
 *  worth, if larger) or its unsent replies exceed RESP_OUT_LIMIT, the
 *  gateway stops reading from that connection until it caught up; so the
 *  memory of a connection is bounded by the input limits (resp_proto.h),
 *  the queue bound and the output bound.
 */
#include "gateway/resp_server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/resp_impl.h"

/* ---- accepting --------------------------------------------------------------------------- */
static void accept_cb(void *arg)
{
    resp_server *s = arg;
    int rv = nng_aio_result(s->accept_aio);
    pthread_mutex_lock(&s->mtx);
    int stopping = s->stopping;
    int slept = s->accept_sleeping;
    s->accept_sleeping = 0;
    pthread_mutex_unlock(&s->mtx);
    if (slept) {
        if (!stopping && rv == 0)
            nng_stream_listener_accept(s->listener, s->accept_aio);
        return;
    }
    if (rv == 0) {
        nng_stream *st = nng_aio_get_output(s->accept_aio, 0);
        if (stopping) {
            nng_stream_close(st);
            nng_stream_free(st);
        } else {
            resp_conn_start(s, st);
        }
    }
    if (stopping || rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv != 0) {
        /* Out of descriptors, a failed handshake, ...: pause, then go on. */
        log_debug("resp: accept: %s", nng_strerror(rv));
        pthread_mutex_lock(&s->mtx);
        s->accept_sleeping = 1;
        pthread_mutex_unlock(&s->mtx);
        nng_sleep_aio(RESP_ACCEPT_PAUSE_MS, s->accept_aio);
        return;
    }
    nng_stream_listener_accept(s->listener, s->accept_aio);
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------ */

/* The server side TLS configuration of the `tls` section, as the router's
 * own endpoint uses it. */
static int tls_setup(resp_server *s)
{
    const config *cfg = &s->cfg;
    int rv;
    if (!cfg->tls.cert_key_file[0]) {
        log_error("resp: tls.ca_file is set but tls.cert_key_file is empty");
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER)) != 0)
        return TRELLIS_INTERNAL;
    if ((rv = nng_tls_config_ca_file(s->tls, cfg->tls.ca_file)) != 0) {
        log_error("resp: tls: CA file %s: %s", cfg->tls.ca_file, nng_strerror(rv));
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_cert_key_file(s->tls, cfg->tls.cert_key_file, NULL)) != 0) {
        log_error("resp: tls: certificate/key file %s: %s (docs/security.md lists what mbed TLS "
                  "accepts)",
                  cfg->tls.cert_key_file, nng_strerror(rv));
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_auth_mode(s->tls, cfg->tls.mutual ? NNG_TLS_AUTH_MODE_REQUIRED
                                                               : NNG_TLS_AUTH_MODE_NONE)) != 0)
        return TRELLIS_INVALID;
    return TRELLIS_OK;
}

/* The routers the gateway's client uses: this one (on loopback when it
 * binds every interface), then its peers. */
static void backend_urls(resp_server *s, int router_port)
{
    const config *cfg = &s->cfg;
    const char *host = cfg->route.listen;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
        host = "[::1]";
    snprintf(s->backend, sizeof(s->backend), "%s://%s:%d", cfg->tls.ca_file[0] ? "tls+tcp" : "tcp",
             host, router_port);
    for (int i = 0; i < cfg->route.peers.n; i++) {
        size_t used = strlen(s->backend);
        snprintf(s->backend + used, sizeof(s->backend) - used, ",%s", cfg->route.peers.v[i]);
    }
}

int resp_server_start(const config *cfg, const char *router_id, int router_port, resp_server **out)
{
    *out = NULL;
    resp_server *s = calloc(1, sizeof(*s));
    if (!s)
        return TRELLIS_INTERNAL;
    s->cfg = *cfg;
    snprintf(s->router_id, sizeof(s->router_id), "%s", router_id);
    snprintf(s->token, sizeof(s->token), "%s", cfg->auth.token);
    s->lim.max_bulk = (size_t)cfg->limits.max_value_bytes;
    s->lim.max_args = (size_t)cfg->limits.max_ops_per_batch + 1;
    s->lim.max_command = (size_t)cfg->limits.max_message_bytes;
    s->unauth_lim.max_bulk = (size_t)cfg->limits.unauth_message_bytes;
    s->unauth_lim.max_args = RESP_UNAUTH_ARGS;
    s->unauth_lim.max_command = (size_t)cfg->limits.unauth_message_bytes;
    s->cmd_lim.max_key = (size_t)cfg->limits.max_key_bytes;
    s->max_pending = cfg->route.resp_max_pending > 0 ? (size_t)cfg->route.resp_max_pending : 1;
    s->queue_limit = RESP_QUEUE_LIMIT > s->lim.max_command ? RESP_QUEUE_LIMIT : s->lim.max_command;
    s->max_clients = cfg->route.resp_max_clients > 0 ? (int)cfg->route.resp_max_clients : 1;
    s->started_ms = clock_mono_ms();
    s->connect_status = TRELLIS_UNAVAILABLE;
    pthread_mutex_init(&s->mtx, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->client_mtx, NULL);
    pthread_mutex_init(&s->counter_mtx, NULL);
    pthread_cond_init(&s->counter_cv, NULL);
    backend_urls(s, router_port);

    trellis_options_init(&s->opts);
    s->opts.timeout_ms = (int)cfg->client.timeout_ms;
    s->opts.retries = (int)cfg->client.retries;
    s->opts.ack = cfg->client.ack == CONFIG_ACK_ALL ? TRELLIS_ACK_ALL : TRELLIS_ACK_ONE;
    s->opts.report_latency = (int)cfg->client.report_latency;
    s->opts.max_message_bytes = (size_t)cfg->limits.max_message_bytes;
    s->opts.tls_ca_file = s->cfg.tls.ca_file[0] ? s->cfg.tls.ca_file : NULL;
    s->opts.tls_cert_key_file = s->cfg.tls.cert_key_file[0] ? s->cfg.tls.cert_key_file : NULL;
    s->opts.tls_server_name = s->cfg.tls.server_name[0] ? s->cfg.tls.server_name : NULL;
    s->opts.auth_token = s->token[0] ? s->token : NULL;

    char url[CONFIG_STR_MAX + 32];
    int tls = cfg->tls.ca_file[0] != '\0';
    snprintf(url, sizeof(url), "%s://%s:%lld", tls ? "tls+tcp" : "tcp", cfg->route.listen,
             (long long)cfg->route.resp_port);
    int rc = TRELLIS_OK, rv;
    if (tls && (rc = tls_setup(s)) != TRELLIS_OK) {
        resp_server_stop(s);
        return rc;
    }
    if ((rv = nng_stream_listener_alloc(&s->listener, url)) != 0 ||
        (tls && (rv = nng_stream_listener_set_ptr(s->listener, NNG_OPT_TLS_CONFIG, s->tls)) != 0) ||
        (rv = nng_stream_listener_listen(s->listener)) != 0) {
        log_error("resp: listen %s: %s", url, nng_strerror(rv));
        resp_server_stop(s);
        return rv == NNG_ENOMEM                           ? TRELLIS_INTERNAL
               : rv == NNG_EINVAL || rv == NNG_EADDRINVAL ? TRELLIS_INVALID
                                                          : TRELLIS_UNAVAILABLE;
    }
    nng_stream_listener_get_int(s->listener, NNG_OPT_TCP_BOUND_PORT, &s->port);
    for (int i = 0; i < RESP_WORKERS; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->exec = resp_gw_exec_new();
        w->ctx = resp_ctx_new();
        if (!w->exec || !w->ctx || pthread_create(&w->thread, NULL, resp_worker_main, w) != 0) {
            resp_server_stop(s);
            return TRELLIS_INTERNAL;
        }
        w->started = 1;
    }
    if ((rv = nng_aio_alloc(&s->accept_aio, accept_cb, s)) != 0) {
        resp_server_stop(s);
        return TRELLIS_INTERNAL;
    }
    nng_stream_listener_accept(s->listener, s->accept_aio);
    log_info("resp: Redis protocol gateway on %s (cluster through %s)", url, s->backend);
    *out = s;
    return TRELLIS_OK;
}

void resp_server_metrics(resp_server *s, mbuf *b)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mtx);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mtx);
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"trellis_resp_connections_total", "Redis gateway connections accepted.",
         offsetof(resp_server, n_connections)},
        {"trellis_resp_rejected_connections_total",
         "Redis gateway connections refused over route.resp_max_clients.",
         offsetof(resp_server, n_rejected)},
        {"trellis_resp_commands_total", "Redis commands received.",
         offsetof(resp_server, n_commands)},
        {"trellis_resp_errors_total", "Redis commands answered with an error.",
         offsetof(resp_server, n_errors)},
        {"trellis_resp_protocol_errors_total",
         "Malformed or oversized Redis requests (the connection is closed).",
         offsetof(resp_server, n_protocol_errors)},
        {"trellis_resp_auth_failures_total", "Wrong tokens and commands refused before AUTH.",
         offsetof(resp_server, n_auth_failures)},
        {"trellis_resp_batches_total", "Batches the gateway sent to the cluster.",
         offsetof(resp_server, n_batches)},
        {"trellis_resp_batched_commands_total", "Redis commands executed in those batches.",
         offsetof(resp_server, n_batch_cmds)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)s + counters[i].off);
        metrics_family(b, counters[i].name, "counter", counters[i].help);
        mbuf_printf(b, "%s %" PRIu64 "\n", counters[i].name, atomic_load(v));
    }
    metrics_family(b, "trellis_resp_connections", "gauge", "Open Redis gateway connections.");
    mbuf_printf(b, "trellis_resp_connections %d\n", n);
}

void resp_server_stop(resp_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mtx);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mtx);
    if (s->listener)
        nng_stream_listener_close(s->listener);
    if (s->accept_aio) {
        nng_aio_stop(s->accept_aio);
        nng_aio_free(s->accept_aio);
    }
    /* Close every connection; the workers finish what runs and free them. */
    for (;;) {
        pthread_mutex_lock(&s->mtx);
        conn *c = s->conns;
        if (c)
            c->refs++;
        pthread_mutex_unlock(&s->mtx);
        if (!c)
            break;
        resp_conn_close(c);
        resp_conn_unref(c);
    }
    pthread_mutex_lock(&s->mtx);
    int workers = 0;
    for (int i = 0; i < RESP_WORKERS; i++)
        workers += s->workers[i].started;
    while (s->nalloc > 0) {
        if (!workers)
            resp_reap_locked(s);
        else
            pthread_cond_wait(&s->cv, &s->mtx);
    }
    s->stop_workers = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mtx);
    for (int i = 0; i < RESP_WORKERS; i++) {
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
        resp_gw_exec_free(s->workers[i].exec);
        resp_ctx_free(s->workers[i].ctx);
        free(s->workers[i].counters);
    }
    if (s->listener)
        nng_stream_listener_free(s->listener);
    if (s->tls)
        nng_tls_config_free(s->tls);
    trellis_close(atomic_load(&s->client));
    pthread_cond_destroy(&s->counter_cv);
    pthread_mutex_destroy(&s->counter_mtx);
    pthread_mutex_destroy(&s->client_mtx);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mtx);
    free(s);
}
