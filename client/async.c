/*
 * async.c - the client's background threads for asynchronous executions.
 *
 * An asynchronous execution (trellis_batch_exec_async) normally runs
 * entirely from the nng callbacks that complete its parts (exec.c, lane.c).
 * Two threads, started with the first asynchronous execution or the first
 * connection to close, do the rest:
 *  - the worker runs what may block: reading counter totals back before an
 *    execution starts, fetching the ring before a retry, completing an
 *    execution that ended inside trellis_batch_exec_async itself (its
 *    callback must not run on the caller's stack), and closing the
 *    connections nobody uses any more (a ring change pruned them), so that
 *    no call waits on nng's teardown of a socket;
 *  - the timer wakes executions whose back-off is over, and while any
 *    asynchronous execution is in progress it expires, every CL_REAP_MS,
 *    the parts whose deadline passed (cl_lane_expire), so that a shard that
 *    does not answer delays nobody beyond their deadline.
 * Both sleep when there is nothing to do.
 */
#include <stdlib.h>
#include <time.h>

#include "client/client_impl.h"

#define CL_REAP_MS 5

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, nng_duration ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *worker_main(void *arg)
{
    trellis_client *c = arg;
    cl_async *a = &c->async;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->work && !a->stop)
            pthread_cond_wait(&a->work_cv, &a->mu);
        if (!a->work)
            break; /* stopping, and nothing left */
        cl_async_item *it = a->work;
        a->work = it->next;
        if (!a->work)
            a->work_tail = NULL;
        pthread_mutex_unlock(&a->mu);
        if (it->cn) {
            atomic_fetch_sub(&a->posted_conns, 1);
            cl_conn_destroy(it->cn);
        } else if (!it->r) {
            atomic_store(&c->refresh_posted, 0);
            cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 0);
        } else
            cl_run_work(it->r, it->work); /* it lives in the run, which may end */
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Expires overdue parts on every lane of the client. */
static void reap(trellis_client *c, nng_time now)
{
    /* References taken under the client's lock, expiry outside it. */
    pthread_mutex_lock(&c->lock);
    size_t n = 0;
    for (size_t b = 0; b < CL_CONN_BUCKETS; b++)
        for (cl_conn *cn = c->conns[b]; cn; cn = cn->next)
            n++;
    cl_conn **v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t k = 0;
    for (size_t b = 0; v && b < CL_CONN_BUCKETS; b++) {
        for (cl_conn *cn = c->conns[b]; cn; cn = cn->next) {
            atomic_fetch_add(&cn->refs, 1);
            v[k++] = cn;
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < k; i++) {
        if (v[i]->lane)
            cl_lane_expire(v[i], now);
        cl_conn_put(v[i]);
    }
    free(v);
}

static void *timer_main(void *arg)
{
    trellis_client *c = arg;
    cl_async *a = &c->async;
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        int busy = atomic_load(&a->active) > 0;
        if (!busy && !a->sleeping)
            pthread_cond_wait(&a->timer_cv, &a->mu);
        else
            timed_wait(&a->timer_cv, &a->mu, CL_REAP_MS);
        if (a->stop)
            break;
        nng_time now = cl_now();
        cl_async_item *due = NULL;
        for (cl_async_item **pp = &a->sleeping; *pp;) {
            cl_async_item *it = *pp;
            if (it->at > now) {
                pp = &it->next;
                continue;
            }
            *pp = it->next;
            it->next = due;
            due = it;
        }
        busy = atomic_load(&a->active) > 0;
        pthread_mutex_unlock(&a->mu);
        while (due) {
            cl_async_item *it = due;
            due = it->next;
            cl_run_work(it->r, CL_WORK_STEP);
        }
        if (busy)
            reap(c, now);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int cl_async_init(trellis_client *c)
{
    cl_async *a = &c->async;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return TRELLIS_INTERNAL;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&a->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return TRELLIS_INTERNAL;
    if (pthread_cond_init(&a->work_cv, NULL) != 0) {
        pthread_cond_destroy(&a->timer_cv);
        return TRELLIS_INTERNAL;
    }
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        pthread_cond_destroy(&a->timer_cv);
        pthread_cond_destroy(&a->work_cv);
        return TRELLIS_INTERNAL;
    }
    atomic_init(&a->active, 0);
    atomic_init(&a->started, 0);
    atomic_init(&a->posted_conns, 0);
    a->inited = 1;
    return TRELLIS_OK;
}

void cl_async_stop(trellis_client *c)
{
    cl_async *a = &c->async;
    if (!a->inited)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_broadcast(&a->work_cv);
    pthread_cond_broadcast(&a->timer_cv);
    int started = atomic_load(&a->started);
    pthread_mutex_unlock(&a->mu);
    if (started) {
        pthread_join(a->worker, NULL);
        pthread_join(a->timer, NULL);
        atomic_store(&a->started, 0);
    }
}

void cl_async_fini(trellis_client *c)
{
    cl_async *a = &c->async;
    if (!a->inited)
        return;
    cl_async_stop(c);
    /* Nothing may be in progress at trellis_close (the contract), and
     * trellis_close reaped the queued connections: the queues are empty. */
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->work_cv);
    pthread_cond_destroy(&a->timer_cv);
    a->inited = 0;
}

/* Starts the worker and the timer unless they run (or the client is
 * closing). TRELLIS_OK or TRELLIS_INTERNAL. */
static int start_threads(trellis_client *c)
{
    cl_async *a = &c->async;
    if (atomic_load(&a->started))
        return TRELLIS_OK;
    pthread_mutex_lock(&a->mu);
    int rc = TRELLIS_OK;
    if (!atomic_load(&a->started) && !a->stop) {
        if (pthread_create(&a->worker, NULL, worker_main, c) != 0) {
            rc = TRELLIS_INTERNAL;
        } else if (pthread_create(&a->timer, NULL, timer_main, c) != 0) {
            a->stop = 1;
            pthread_cond_broadcast(&a->work_cv);
            pthread_mutex_unlock(&a->mu);
            pthread_join(a->worker, NULL);
            pthread_mutex_lock(&a->mu);
            a->stop = 0;
            rc = TRELLIS_INTERNAL;
        } else {
            atomic_store(&a->started, 1);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int cl_async_begin(trellis_client *c)
{
    cl_async *a = &c->async;
    int rc = start_threads(c);
    if (rc != TRELLIS_OK)
        return rc;
    if (atomic_fetch_add(&a->active, 1) == 0) {
        /* The timer starts reaping. */
        pthread_mutex_lock(&a->mu);
        pthread_cond_signal(&a->timer_cv);
        pthread_mutex_unlock(&a->mu);
    }
    return TRELLIS_OK;
}

void cl_async_end(trellis_client *c)
{
    atomic_fetch_sub(&c->async.active, 1);
}

static void post(cl_async *a, cl_async_item *it)
{
    pthread_mutex_lock(&a->mu);
    if (a->work_tail)
        a->work_tail->next = it;
    else
        a->work = it;
    a->work_tail = it;
    pthread_cond_signal(&a->work_cv);
    pthread_mutex_unlock(&a->mu);
}

void cl_async_post_conn(trellis_client *c, cl_conn *cn)
{
    cl_async_item *it = &cn->gone;
    it->next = NULL;
    it->r = NULL;
    it->cn = cn;
    atomic_fetch_add(&c->async.posted_conns, 1);
    post(&c->async, it);
    /* A client that never ran an asynchronous execution starts its worker
     * now. Should that fail, the connection waits in the queue for
     * trellis_close, which closes what is queued. */
    start_threads(c);
}

void cl_async_post_refresh(trellis_client *c, cl_async_item *it)
{
    it->next = NULL;
    it->r = NULL;
    it->cn = NULL;
    post(&c->async, it);
}

void cl_async_reap_conns(trellis_client *c)
{
    cl_async *a = &c->async;
    if (atomic_load(&a->posted_conns) == 0)
        return;
    cl_async_item *gone = NULL;
    pthread_mutex_lock(&a->mu);
    cl_async_item **pp = &a->work;
    a->work_tail = NULL;
    while (*pp) {
        cl_async_item *it = *pp;
        if (it->cn) {
            *pp = it->next;
            it->next = gone;
            gone = it;
            atomic_fetch_sub(&a->posted_conns, 1);
        } else {
            a->work_tail = it;
            pp = &it->next;
        }
    }
    pthread_mutex_unlock(&a->mu);
    while (gone) {
        cl_async_item *it = gone;
        gone = it->next;
        cl_conn_destroy(it->cn); /* frees it, which lives in the connection */
    }
}

void cl_async_post(trellis_client *c, cl_async_item *it, cl_run *r, int work)
{
    it->next = NULL;
    it->r = r;
    it->cn = NULL;
    it->work = work;
    it->at = 0;
    post(&c->async, it);
}

void cl_async_sleep(trellis_client *c, cl_async_item *it, cl_run *r, nng_time at)
{
    cl_async *a = &c->async;
    it->r = r;
    it->cn = NULL;
    it->work = CL_WORK_STEP;
    it->at = at;
    pthread_mutex_lock(&a->mu);
    it->next = a->sleeping;
    a->sleeping = it;
    pthread_cond_signal(&a->timer_cv);
    pthread_mutex_unlock(&a->mu);
}
