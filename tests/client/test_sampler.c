/*
 * test_sampler.c - the client's latency sampler and its reports to the
 * monitor (client/sampler.c, client/report.c):
 *  - many threads record at once and every call lands in exactly one
 *    window, with its latency within the histogram's precision;
 *  - the reporter sends a window to a monitor (a real nng socket standing
 *    in for trellis-monitor) about once a second, only when it holds calls
 *    and only once it knows the monitor, with the client's id;
 *  - a monitor that never answers delays no caller, and the reporter stops
 *    within its timeout.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>

#include "base/clock.h"
#include "base/wire.h"
#include "client/report.h"
#include "client/sampler.h"
#include "tsupport.h"

TestSuite(sampler, .timeout = 30);

#define THREADS 8
#define CALLS   100000

typedef struct rec_arg {
    cl_sampler *s;
    int idx;
} rec_arg;

static void *recorder(void *arg)
{
    rec_arg *a = arg;
    /* 99 % of calls take 100 us, 1 % take 20 000 us. */
    for (int i = 0; i < CALLS; i++)
        cl_sampler_record(a->s, (i + a->idx) % 100 == 0 ? 20000 : 100);
    return NULL;
}

Test(sampler, concurrent_calls_each_in_one_window)
{
    cl_sampler *s = cl_sampler_new();
    cr_assert_not_null(s);
    histogram w;
    cl_sampler_take(s, &w);
    cr_assert_eq(w.count, 0);
    pthread_t th[THREADS];
    rec_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (rec_arg){s, i};
        cr_assert_eq(pthread_create(&th[i], NULL, recorder, &args[i]), 0);
    }
    /* Windows taken while they record add up to every call. */
    uint64_t total = 0;
    for (int k = 0; k < 5; k++) {
        cl_sampler_take(s, &w);
        total += w.count;
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cl_sampler_take(s, &w);
    total += w.count;
    cr_assert_eq(total, (uint64_t)THREADS * CALLS);
    cl_sampler_take(s, &w);
    cr_assert_eq(w.count, 0, "a call counted twice");

    /* One window's quantiles, within the histogram's 1/16. */
    for (int i = 0; i < 1000; i++)
        cl_sampler_record(s, i < 989 ? 100 : 20000);
    cl_sampler_take(s, &w);
    cr_assert_eq(w.count, 1000);
    uint64_t p50 = hist_quantile(&w, 0.5), p99 = hist_quantile(&w, 0.99);
    cr_assert(p50 >= 100 && p50 <= 107, "p50 %llu", (unsigned long long)p50);
    cr_assert(p99 >= 20000 && p99 <= 21250, "p99 %llu", (unsigned long long)p99);
    /* A call measured from its start. */
    uint64_t t0 = cl_sampler_now_us();
    nng_msleep(20);
    cl_sampler_done(s, t0);
    cl_sampler_done(NULL, t0); /* no sampler: nothing */
    cl_sampler_take(s, &w);
    cr_assert_eq(w.count, 1);
    cr_assert(w.max >= 19000 && w.max < 200000, "max %llu", (unsigned long long)w.max);
    cl_sampler_free(s);
    cl_sampler_free(NULL);
}

/* A monitor's listening socket that records the client reports it gets. */
typedef struct fake_mon {
    nng_socket sock;
    pthread_t th;
    char url[64];
    int answer;
    atomic_int reports;
    atomic_ullong last_ops, last_p99;
    char last_id[80];
    pthread_mutex_t mu;
    atomic_int stop;
} fake_mon;

static void *fake_main(void *arg)
{
    fake_mon *f = arg;
    wire_limits lim;
    wire_limits_default(&lim);
    wire_arena *a = wire_arena_new();
    while (!atomic_load(&f->stop)) {
        nng_msg *m;
        if (nng_recvmsg(f->sock, &m, 0) != 0)
            continue;
        Trellis__Envelope *env;
        if (wire_decode(a, nng_msg_body(m), nng_msg_len(m), &lim, &env) == TRELLIS_OK &&
            env->body_case == TRELLIS__ENVELOPE__BODY_STATS && env->stats->client_id) {
            pthread_mutex_lock(&f->mu);
            snprintf(f->last_id, sizeof(f->last_id), "%s", env->stats->client_id);
            pthread_mutex_unlock(&f->mu);
            atomic_store(&f->last_ops, env->stats->client_ops);
            atomic_store(&f->last_p99, env->stats->client_p99_us);
            atomic_fetch_add(&f->reports, 1);
        }
        wire_arena_reset(a);
        if (!f->answer) {
            nng_msg_free(m);
            continue;
        }
        Trellis__Envelope out;
        Trellis__CommandReply cr;
        trellis__envelope__init(&out);
        trellis__command_reply__init(&cr);
        out.version = WIRE_VERSION;
        out.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
        out.command_reply = &cr;
        nng_msg_clear(m);
        if (wire_append(m, &out) == TRELLIS_OK && nng_sendmsg(f->sock, m, 0) == 0)
            continue;
        nng_msg_free(m);
    }
    wire_arena_free(a);
    return NULL;
}

static tport ports;

static void fake_start(fake_mon *f, int answer)
{
    memset(f, 0, sizeof(*f));
    f->answer = answer;
    pthread_mutex_init(&f->mu, NULL);
    /* A port locked against every other test (tport.h). */
    cr_assert_eq(tport_reserve(&ports, 1), 0);
    snprintf(f->url, sizeof(f->url), "tcp://127.0.0.1:%d", ports.base);
    cr_assert_eq(nng_rep0_open(&f->sock), 0);
    nng_socket_set_ms(f->sock, NNG_OPT_RECVTIMEO, 100);
    cr_assert_eq(nng_listen(f->sock, f->url, NULL, 0), 0);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_mon *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    nng_close(f->sock);
    pthread_mutex_destroy(&f->mu);
    tport_release(&ports);
}

static cl_report *reporter(cl_sampler *s)
{
    wire_limits lim;
    wire_limits_default(&lim);
    cl_report_opts o = {"host/123/00ff", NULL, &lim, NULL, s};
    cl_report *r = NULL;
    cr_assert_eq(cl_report_new(&o, &r), TRELLIS_OK);
    return r;
}

Test(sampler, reports_reach_the_monitor_once_it_is_known)
{
    fake_mon f;
    fake_start(&f, 1);
    cl_sampler *s = cl_sampler_new();
    cl_report *r = reporter(s);

    /* No monitor yet: nothing is sent. */
    for (int i = 0; i < 50; i++)
        cl_sampler_record(s, 300);
    nng_msleep(1300);
    cr_assert_eq(atomic_load(&f.reports), 0);

    cl_report_set_monitor(r, f.url);
    for (int i = 0; i < 200; i++)
        cl_sampler_record(s, i < 197 ? 300 : 40000);
    uint64_t end = clock_mono_ms() + 3000;
    while (atomic_load(&f.reports) == 0 && clock_mono_ms() < end)
        nng_msleep(20);
    cr_assert_eq(atomic_load(&f.reports), 1, "no report within 3 s");
    /* The window since the previous take: the 50 calls recorded before the
     * monitor was known went with the first window taken (not sent). */
    cr_assert(atomic_load(&f.last_ops) == 200 || atomic_load(&f.last_ops) == 250, "ops %llu",
              (unsigned long long)atomic_load(&f.last_ops));
    cr_assert_geq(atomic_load(&f.last_p99), 300);
    pthread_mutex_lock(&f.mu);
    cr_assert_str_eq(f.last_id, "host/123/00ff");
    pthread_mutex_unlock(&f.mu);
    cr_assert_eq(cl_report_sent(r), 1);

    /* Quiet: no calls, no reports. */
    nng_msleep(2200);
    cr_assert_eq(atomic_load(&f.reports), 1, "a report of no calls");

    /* A monitor that stops: reports stop too. */
    cl_report_set_monitor(r, "");
    cl_sampler_record(s, 100);
    nng_msleep(1300);
    cr_assert_eq(atomic_load(&f.reports), 1);
    uint64_t t0 = clock_mono_ms();
    cl_report_free(r);
    cr_assert_lt(clock_mono_ms() - t0, 1000);
    cl_sampler_free(s);
    fake_stop(&f);
}

Test(sampler, a_monitor_that_never_answers_delays_nobody)
{
    fake_mon f;
    fake_start(&f, 0);
    cl_sampler *s = cl_sampler_new();
    cl_report *r = reporter(s);
    cl_report_set_monitor(r, f.url);
    /* Callers record while the reporter waits on the silent monitor. */
    uint64_t t0 = clock_mono_ms(), worst = 0;
    for (int k = 0; k < 30; k++) {
        uint64_t a = clock_mono_us();
        for (int i = 0; i < 1000; i++)
            cl_sampler_record(s, 500);
        uint64_t took = clock_mono_us() - a;
        worst = took > worst ? took : worst;
        nng_msleep(80);
    }
    cr_assert_lt(worst, 50000, "recording 1000 calls took %llu us", (unsigned long long)worst);
    cr_assert_geq(atomic_load(&f.reports), 1, "the monitor never heard of the client");
    cr_assert_eq(cl_report_sent(r), 0, "counted as answered");
    /* Stopping waits at most for the report in flight. */
    uint64_t t1 = clock_mono_ms();
    cl_report_free(r);
    cr_assert_lt(clock_mono_ms() - t1, CL_REPORT_TIMEOUT_MS + 400);
    cr_log_info("%llu ms of recording; stop took %llu ms", (unsigned long long)(t1 - t0),
                (unsigned long long)(clock_mono_ms() - t1));
    cl_sampler_free(s);
    fake_stop(&f);
}
