/*
 * report.c - latency reports from a client to the monitor (see report.h).
 */
#include "client/report.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cl_report {
    char id[CL_REPORT_ID_MAX + 1];
    char token[NET_TOKEN_MAX];
    const net_tls *tls;
    wire_limits lim;
    cl_sampler *sampler;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char url[CL_MAX_MONITOR_URL + 1]; /* under mu; "" none */
    int started, stop;
    pthread_t thread;
    atomic_ulong sent;
};

int cl_report_new(const cl_report_opts *o, cl_report **out)
{
    *out = NULL;
    cl_report *r = calloc(1, sizeof(*r));
    if (!r)
        return TRELLIS_INTERNAL;
    snprintf(r->id, sizeof(r->id), "%s", o->client_id ? o->client_id : "client");
    snprintf(r->token, sizeof(r->token), "%s", o->token ? o->token : "");
    r->tls = o->tls;
    r->lim = *o->lim;
    r->sampler = o->sampler;
    atomic_init(&r->sent, 0);
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(r);
        return TRELLIS_INTERNAL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free(r);
        return TRELLIS_INTERNAL;
    }
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return TRELLIS_OK;
}

/* Sends one window to url over *conn (opened on first use, and again after
 * the monitor moved). */
static void send_window(cl_report *r, const char *url, rpc_conn **conn, char *conn_url,
                        size_t conn_cap, const histogram *w, uint64_t period_ms, wire_arena *a)
{
    if (*conn && strcmp(conn_url, url) != 0) {
        rpc_close(*conn);
        *conn = NULL;
    }
    if (!*conn) {
        if (rpc_open(url, r->tls, &r->lim, r->token[0] ? r->token : NULL, conn) != TRELLIS_OK)
            return;
        snprintf(conn_url, conn_cap, "%s", url);
    }
    Trellis__Envelope env, *reply;
    Trellis__StatsReport rep;
    trellis__envelope__init(&env);
    trellis__stats_report__init(&rep);
    rep.client_id = r->id;
    rep.period_ms = period_ms;
    rep.client_ops = w->count;
    rep.client_p50_us = hist_quantile(w, 0.5);
    rep.client_p99_us = hist_quantile(w, 0.99);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS;
    env.stats = &rep;
    wire_arena_reset(a);
    if (rpc_call(*conn, &env, CL_REPORT_TIMEOUT_MS, a, &reply) == TRELLIS_OK)
        atomic_fetch_add(&r->sent, 1);
}

static void *report_main(void *arg)
{
    cl_report *r = arg;
    wire_arena *a = wire_arena_new();
    rpc_conn *conn = NULL;
    char conn_url[CL_MAX_MONITOR_URL + 1] = "", url[CL_MAX_MONITOR_URL + 1];
    histogram *w = malloc(sizeof(*w));
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    uint64_t last_us = cl_sampler_now_us();
    pthread_mutex_lock(&r->mu);
    while (!r->stop && a && w) {
        next.tv_sec += CL_REPORT_PERIOD_MS / 1000;
        next.tv_nsec += (long)(CL_REPORT_PERIOD_MS % 1000) * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &next) == 0)
            ;
        if (r->stop)
            break;
        snprintf(url, sizeof(url), "%s", r->url);
        pthread_mutex_unlock(&r->mu);
        uint64_t now_us = cl_sampler_now_us();
        cl_sampler_take(r->sampler, w);
        if (url[0] && w->count > 0)
            send_window(r, url, &conn, conn_url, sizeof(conn_url), w,
                        (now_us - last_us + 500) / 1000, a);
        last_us = now_us;
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    rpc_close(conn);
    wire_arena_free(a);
    free(w);
    return NULL;
}

void cl_report_set_monitor(cl_report *r, const char *url)
{
    if (!r)
        return;
    if (!url || strlen(url) > CL_MAX_MONITOR_URL)
        url = "";
    pthread_mutex_lock(&r->mu);
    snprintf(r->url, sizeof(r->url), "%s", url);
    if (url[0] && !r->started && !r->stop && pthread_create(&r->thread, NULL, report_main, r) == 0)
        r->started = 1;
    pthread_mutex_unlock(&r->mu);
}

unsigned long cl_report_sent(cl_report *r)
{
    return r ? atomic_load(&r->sent) : 0;
}

void cl_report_free(cl_report *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
    int started = r->started;
    pthread_mutex_unlock(&r->mu);
    if (started)
        pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
