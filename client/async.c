/*
 * async.c - the client's worker thread for asynchronous executions.
 *
 * An asynchronous execution (trellis_batch_exec_async) normally runs
 * entirely on the I/O thread, from the completions of its parts (exec.c,
 * lane.c, io.c): its next requests, its back-offs and its callback all run
 * there. What may block goes to the worker, started with the first
 * asynchronous execution: reading counter totals back before an execution
 * starts, fetching the ring before a retry, a ring refresh a reply asked
 * for, and completing an execution that ended inside
 * trellis_batch_exec_async itself (its callback must not run on the
 * caller's stack). The worker sleeps when there is nothing to do.
 */
#include <stdlib.h>
#include <time.h>

#include "client/client_impl.h"

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
        if (!it->r) {
            atomic_store(&c->refresh_posted, 0);
            cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 0);
        } else {
            cl_run_work(it->r, it->work); /* it lives in the run, which may end */
        }
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int cl_async_init(trellis_client *c)
{
    cl_async *a = &c->async;
    if (pthread_cond_init(&a->work_cv, NULL) != 0)
        return TRELLIS_INTERNAL;
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        pthread_cond_destroy(&a->work_cv);
        return TRELLIS_INTERNAL;
    }
    atomic_init(&a->active, 0);
    atomic_init(&a->started, 0);
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
    int started = atomic_load(&a->started);
    pthread_mutex_unlock(&a->mu);
    if (started) {
        pthread_join(a->worker, NULL);
        atomic_store(&a->started, 0);
    }
}

void cl_async_fini(trellis_client *c)
{
    cl_async *a = &c->async;
    if (!a->inited)
        return;
    cl_async_stop(c);
    /* Nothing may be in progress at trellis_close (the contract): the
     * queue is empty. */
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->work_cv);
    a->inited = 0;
}

/* Starts the worker unless it runs (or the client is closing). TRELLIS_OK
 * or TRELLIS_INTERNAL. */
static int start_worker(trellis_client *c)
{
    cl_async *a = &c->async;
    if (atomic_load(&a->started))
        return TRELLIS_OK;
    pthread_mutex_lock(&a->mu);
    int rc = TRELLIS_OK;
    if (!atomic_load(&a->started) && !a->stop) {
        if (pthread_create(&a->worker, NULL, worker_main, c) != 0)
            rc = TRELLIS_INTERNAL;
        else
            atomic_store(&a->started, 1);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int cl_async_begin(trellis_client *c)
{
    int rc = start_worker(c);
    if (rc != TRELLIS_OK)
        return rc;
    atomic_fetch_add(&c->async.active, 1);
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

void cl_async_post_refresh(trellis_client *c, cl_async_item *it)
{
    it->next = NULL;
    it->r = NULL;
    it->cn = NULL;
    if (start_worker(c) != TRELLIS_OK) {
        atomic_store(&c->refresh_posted, 0); /* the next execution asks again */
        return;
    }
    post(&c->async, it);
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
    cl_io_sleep(c, it, r, at);
}
