/*
 * resp_worker.c - the gateway's workers (resp_impl.h): queued commands of
 * several connections run as one libtrellis batch, replies appended to each
 * connection's output in order.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/resp_impl.h"

/* ---- the cluster's client -------------------------------------------------------------- */

/* The gateway's client, connecting on first use (and again after a
 * failure, at most every RESP_RETRY_MS). NULL with *status when the
 * cluster cannot be reached. */
static trellis_client *get_client(resp_server *s, int *status)
{
    trellis_client *c = atomic_load(&s->client);
    if (c)
        return c;
    pthread_mutex_lock(&s->client_mtx);
    c = atomic_load(&s->client);
    if (!c && clock_mono_ms() >= s->next_connect_ms) {
        int rc = trellis_connect(s->backend, &s->opts, &c);
        if (rc != TRELLIS_OK) {
            if (rc != s->connect_status)
                log_warn("resp: cannot reach the cluster through %s: %s", s->backend,
                         trellis_strerror(rc));
            c = NULL;
            s->connect_status = rc;
            s->next_connect_ms = clock_mono_ms() + RESP_RETRY_MS;
        } else {
            log_info("resp: connected to the cluster through %s", s->backend);
            atomic_store(&s->client, c);
        }
    }
    *status = s->connect_status;
    pthread_mutex_unlock(&s->client_mtx);
    return c;
}

static uint64_t key_hash(const uint8_t *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Adds a counter key's hash to the worker's batch (0, or -1 when out of
 * memory). */
static int counter_note(worker *w, const uint8_t *key, size_t klen)
{
    if (w->ncounters == w->capcounters) {
        size_t cap = w->capcounters ? w->capcounters * 2 : 64;
        uint64_t *v = realloc(w->counters, cap * sizeof(*v));
        if (!v)
            return -1;
        w->counters = v;
        w->capcounters = cap;
    }
    w->counters[w->ncounters++] = key_hash(key, klen);
    return 0;
}

/* 1 if another worker's batch in flight increments a key of w's batch
 * (srv->counter_mtx held). */
static int counters_conflict(const resp_server *s, const worker *w)
{
    for (int i = 0; i < RESP_WORKERS; i++) {
        const worker *o = &s->workers[i];
        if (o == w || !o->holds)
            continue;
        if (w->all || o->all)
            return 1;
        for (size_t j = 0; j < w->ncounters; j++)
            if (bsearch(&w->counters[j], o->counters, o->ncounters, sizeof(uint64_t), u64_cmp))
                return 1;
    }
    return 0;
}

/* Increments of one key run one batch at a time, so that each INCR
 * through this gateway returns a value of its own (docs/redis.md): the
 * worker waits until no batch in flight increments a key of its batch,
 * then publishes its keys. All at once, so that no worker holds keys while
 * it waits. */
static void counters_acquire(resp_server *s, worker *w)
{
    if (w->ncounters == 0 && !w->all)
        return;
    if (w->ncounters > 0) {
        qsort(w->counters, w->ncounters, sizeof(uint64_t), u64_cmp);
        size_t k = 1;
        for (size_t i = 1; i < w->ncounters; i++)
            if (w->counters[i] != w->counters[k - 1])
                w->counters[k++] = w->counters[i];
        w->ncounters = k;
    }
    pthread_mutex_lock(&s->counter_mtx);
    while (counters_conflict(s, w))
        pthread_cond_wait(&s->counter_cv, &s->counter_mtx);
    w->holds = 1;
    pthread_mutex_unlock(&s->counter_mtx);
}

static void counters_release(resp_server *s, worker *w)
{
    if (!w->holds)
        return;
    pthread_mutex_lock(&s->counter_mtx);
    w->holds = 0;
    pthread_cond_broadcast(&s->counter_cv);
    pthread_mutex_unlock(&s->counter_mtx);
}

typedef struct taken {
    conn *c;
    rcmd *head;
    size_t n;
    resp_buf out;
} taken;

/* Runs the commands taken from n connections as one round of the
 * executor (one libtrellis batch, then the walks) and formats their
 * replies into t[i].out. */
static void run_batch(worker *w, taken *t, size_t n)
{
    resp_server *s = w->srv;
    int status = TRELLIS_OK;
    trellis_client *client = get_client(s, &status);
    resp_exec *x = resp_gw_exec_base(w->exec);
    resp_gw_exec_reset(w->exec, client);
    resp_ctx_reset(w->ctx);
    w->ncounters = 0;
    w->all = 0;
    size_t ncmds = 0;
    for (size_t i = 0; i < n; i++) {
        for (rcmd *r = t[i].head; r; r = r->next) {
            if (!r->def)
                continue;
            char err[RESP_ERR_MAX];
            int rc = r->def->kind == RK_INFO
                         ? resp_info_add(x, &r->slot, err)
                         : resp_cmd_add(x, w->ctx, r->def, &r->c, &s->cmd_lim, &r->slot, err);
            if (rc != 0) {
                resp_buf eb = {0};
                resp_add_error(&eb, err);
                r->def = NULL;
                r->reply = eb.data; /* the buffer becomes the reply */
                r->rlen = eb.len;
                if (eb.failed) {
                    free(eb.data);
                    r->reply = NULL;
                    r->rlen = 0;
                }
                atomic_fetch_add(&s->n_errors, 1);
                continue;
            }
            ncmds++;
            if ((r->def->flags & RESP_CMD_COUNTER) &&
                counter_note(w, r->c.argv[1], r->c.argl[1]) != 0)
                w->all = 1;
        }
    }
    if (client && resp_gw_exec_count(w->exec) > 0) {
        counters_acquire(s, w);
        resp_gw_exec_run(w->exec);
        counters_release(s, w);
        atomic_fetch_add(&s->n_batches, 1);
        atomic_fetch_add(&s->n_batch_cmds, ncmds);
    }
    for (size_t i = 0; i < n; i++) {
        resp_buf *out = &t[i].out;
        for (rcmd *r = t[i].head; r; r = r->next) {
            if (!r->def) {
                resp_buf_put(out, r->reply, r->rlen);
                continue;
            }
            size_t at = out->len;
            if (!client)
                resp_add_errorf(out, "ERR trellis: cannot reach the cluster: %s (%s)",
                                trellis_strerror(status), trellis_status_name(status));
            else if (r->def->kind == RK_INFO)
                resp_info_reply(t[i].c, x, &r->c, &r->slot, out);
            else
                resp_cmd_reply(x, w->ctx, r->def, &r->c, &r->slot, r->proto, out);
            if (out->len > at && out->data && out->data[at] == '-')
                atomic_fetch_add(&s->n_errors, 1);
        }
    }
}

void *resp_worker_main(void *arg)
{
    worker *w = arg;
    resp_server *s = w->srv;
    taken *t = calloc(RESP_BATCH_CONNS, sizeof(*t));
    log_set_thread_tag("resp");
    pthread_mutex_lock(&s->mtx);
    while (t) {
        resp_reap_locked(s);
        if (s->stop_workers)
            break;
        if (!s->ready_head) {
            pthread_cond_wait(&s->cv, &s->mtx);
            continue;
        }
        size_t n = 0, total = 0;
        while (s->ready_head && n < RESP_BATCH_CONNS && total < RESP_BATCH_CMDS) {
            conn *c = s->ready_head;
            s->ready_head = c->qnext;
            if (!s->ready_head)
                s->ready_tail = NULL;
            c->queued = 0;
            if (c->closed) {
                resp_conn_unref_locked(c);
                continue;
            }
            c->running = 1;
            rcmd *head = c->qhead, *last = NULL, *r = head;
            size_t k = 0;
            while (r && k < RESP_ROUND_CMDS) {
                c->qbytes -= r->bytes;
                last = r;
                r = r->next;
                k++;
            }
            c->qhead = r;
            if (!r)
                c->qtail = NULL;
            if (last)
                last->next = NULL;
            t[n].c = c;
            t[n].head = head;
            t[n].n = k;
            t[n].out.len = 0;
            t[n].out.failed = 0;
            n++;
            total += k;
        }
        pthread_mutex_unlock(&s->mtx);

        if (n > 0)
            run_batch(w, t, n);

        for (size_t i = 0; i < n; i++) {
            conn *c = t[i].c;
            int close_after = 0;
            for (rcmd *r = t[i].head; r; r = r->next)
                close_after |= r->close_after;
            after_unlock td = {0};
            pthread_mutex_lock(&s->mtx);
            c->running = 0;
            c->npending -= t[i].n;
            if (!c->closed) {
                resp_buf_put(&c->out, t[i].out.data, t[i].out.len);
                if (t[i].out.failed)
                    c->out.failed = 1;
                if (close_after) {
                    c->close_when_flushed = 1;
                    c->read_done = 1;
                    resp_rcmd_free_list(c->qhead); /* nothing after QUIT runs */
                    c->npending = 0;
                    c->qbytes = 0;
                    c->qhead = c->qtail = NULL;
                }
                resp_schedule_locked(c);
                resp_conn_progress_locked(c, &td);
            }
            resp_conn_unref_locked(c); /* the run's reference */
            pthread_mutex_unlock(&s->mtx);
            resp_do_after_unlock(c, &td);
            resp_rcmd_free_list(t[i].head);
            if (t[i].out.cap > RESP_OUT_LIMIT)
                resp_buf_free(&t[i].out);
        }
        pthread_mutex_lock(&s->mtx);
    }
    pthread_mutex_unlock(&s->mtx);
    if (t) {
        for (size_t i = 0; i < RESP_BATCH_CONNS; i++)
            resp_buf_free(&t[i].out);
        free(t);
    }
    return NULL;
}
