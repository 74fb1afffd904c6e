/*
 * client.c - connecting, the cached ring, connections to shards and
 * routers, requests with deadlines, and the counter totals cache.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

#include "client/client_impl.h"
#include "placement/ring_wire.h"

#include <nng/protocol/reqrep0/req.h>

/* ---- small helpers ------------------------------------------------------------------------ */

nng_time cl_now(void)
{
    return nng_clock();
}

void trellis_free(void *p)
{
    free(p);
}

const char *trellis_type_name(trellis_type t)
{
    return lat_type_name((lat_type)t);
}

const char *trellis_tier_name(int tier)
{
    return ring_tier_name(tier);
}

const char *trellis_state_name(int state)
{
    return ring_state_name(state);
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    return ring_hash(p, n);
}

/* ---- options ----------------------------------------------------------------------------------
 */

void trellis_options_init(trellis_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = CL_DEFAULT_TIMEOUT_MS;
    o->retries = CL_DEFAULT_RETRIES;
    o->ack = TRELLIS_ACK_ONE;
    o->max_message_bytes = WIRE_DEFAULT_MAX_MESSAGE;
    o->counter_cache = CL_DEFAULT_COUNTERS;
    o->report_latency = 1;
}

/* ---- requests -----------------------------------------------------------------------------------
 */

int cl_waiter_init(cl_waiter *w)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        pthread_cond_destroy(&w->cv);
        return -1;
    }
    w->pending = 0;
    return 0;
}

void cl_waiter_fini(cl_waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

void cl_waiter_add(cl_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->pending++;
    pthread_mutex_unlock(&w->mu);
}

void cl_waiter_done(cl_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    if (--w->pending == 0)
        pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static nng_duration remaining_ms(nng_time deadline)
{
    nng_time now = cl_now();
    return deadline > now ? (nng_duration)(deadline - now) : 0;
}

/* The aio callback: runs on an nng thread, so it only moves the request
 * from sending to receiving or records the result. */
static void req_cb(void *arg)
{
    cl_req *q = arg;
    int rv = nng_aio_result(q->aio);
    if (q->stage == CL_STAGE_SEND) {
        if (rv == 0) {
            q->stage = CL_STAGE_RECV;
            nng_duration left = remaining_ms(q->deadline);
            nng_aio_set_timeout(q->aio, left > 0 ? left : 1);
            nng_ctx_recv(q->ctx, q->aio);
            return;
        }
        /* A failed send leaves the message with us. */
        nng_msg *m = nng_aio_get_msg(q->aio);
        if (m) {
            nng_aio_set_msg(q->aio, NULL);
            nng_msg_free(m);
        }
    } else if (q->stage == CL_STAGE_RECV && rv == 0) {
        q->reply = nng_aio_get_msg(q->aio);
        nng_aio_set_msg(q->aio, NULL);
    } else if (q->stage != CL_STAGE_RECV) {
        return; /* not ours to complete */
    }
    q->rv = rv;
    q->stage = CL_STAGE_DONE;
    cl_waiter_done(q->w);
}

int cl_req_start(cl_req *q, cl_waiter *w, cl_router *cn, nng_msg *msg, nng_time deadline)
{
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->cn = cn;
    q->deadline = deadline;
    int rv = nng_aio_alloc(&q->aio, req_cb, q);
    if (rv == 0) {
        rv = nng_ctx_open(&q->ctx, cn->sock);
        if (rv != 0) {
            nng_aio_free(q->aio);
            q->aio = NULL;
        }
    }
    if (rv != 0) {
        nng_msg_free(msg);
        q->rv = rv;
        q->stage = CL_STAGE_DONE;
        return rv;
    }
    q->started = 1;
    q->stage = CL_STAGE_SEND;
    pthread_mutex_lock(&w->mu);
    w->pending++;
    pthread_mutex_unlock(&w->mu);
    nng_duration left = remaining_ms(deadline);
    nng_aio_set_timeout(q->aio, left > 0 ? left : 1);
    nng_aio_set_msg(q->aio, msg);
    nng_ctx_send(q->ctx, q->aio);
    return 0;
}

void cl_wait_all(cl_waiter *w, cl_req *reqs, size_t n, nng_time deadline)
{
    nng_time until = deadline + CL_WAIT_GRACE_MS;
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) {
        nng_duration left = remaining_ms(until);
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    int stragglers = w->pending > 0;
    pthread_mutex_unlock(&w->mu);
    if (!stragglers)
        return;
    /* nng's own timeouts should have fired; make sure nothing outlives the
     * deadline. After nng_aio_stop no callback runs any more. */
    for (size_t i = 0; i < n; i++)
        if (reqs[i].started)
            nng_aio_stop(reqs[i].aio);
    for (size_t i = 0; i < n; i++) {
        cl_req *q = &reqs[i];
        if (q->started && q->stage != CL_STAGE_DONE) {
            nng_msg *m = nng_aio_get_msg(q->aio);
            if (m) {
                nng_aio_set_msg(q->aio, NULL);
                nng_msg_free(m);
            }
            q->rv = NNG_ETIMEDOUT;
            q->stage = CL_STAGE_DONE;
        }
    }
}

void cl_req_fini(cl_req *q)
{
    if (q->aio) {
        nng_aio_free(q->aio); /* stops it first */
        q->aio = NULL;
    }
    if (q->started) {
        nng_ctx_close(q->ctx);
        q->started = 0;
    }
    if (q->reply) {
        nng_msg_free(q->reply);
        q->reply = NULL;
    }
    q->cn = NULL;
}

int cl_req_status(const cl_req *q)
{
    if (q->rv == NNG_ETIMEDOUT || q->rv == NNG_ECANCELED)
        return q->cn && atomic_load(&q->cn->pipes) > 0 ? TRELLIS_TIMEOUT : TRELLIS_UNAVAILABLE;
    int st = net_status(q->rv);
    return st == TRELLIS_OK ? TRELLIS_UNAVAILABLE : st;
}

/* ---- connections ----------------------------------------------------------------------------- */

static void router_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    cl_router *rt = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&rt->pipes, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&rt->pipes, 1);
}

/* Opens a req socket with the client's limits and dials every router of
 * urls[0..n). */
static int router_open(trellis_client *c, const char *const *urls, size_t n, cl_router **out)
{
    cl_router *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return TRELLIS_INTERNAL;
    rt->client = c;
    atomic_init(&rt->pipes, 0);
    int rv = nng_req0_open(&rt->sock);
    if (rv != 0) {
        free(rt);
        return net_status(rv);
    }
    /* Retries are ours, within the caller's deadline: nng must not resend
     * on its own timer. */
    nng_socket_set_ms(rt->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_pipe_notify(rt->sock, NNG_PIPE_EV_ADD_POST, router_pipe_cb, rt);
    nng_pipe_notify(rt->sock, NNG_PIPE_EV_REM_POST, router_pipe_cb, rt);
    int rc = net_set_limits(rt->sock, c->max_message, -1, -1);
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        if (strncmp(urls[i], "tls+", 4) == 0 && !c->tls) {
            cl_set_error("%.200s is a TLS address: the client needs TLS settings "
                         "(tls_ca_file, or tls.ca_file in its configuration)",
                         urls[i]);
            rc = TRELLIS_INVALID;
        } else
            rc = net_dial(rt->sock, urls[i], c->tls);
    }
    snprintf(rt->url, sizeof(rt->url), "%s", n ? urls[0] : "");
    *out = rt;
    return rc; /* on failure *out is closed like a router that worked */
}

static void router_close(cl_router *rt)
{
    if (!rt)
        return;
    nng_close(rt->sock);
    free(rt);
}

void cl_conn_destroy(cl_conn *cn)
{
    trellis_client *c = cn->client;
    /* Its socket closes first (lane_closed fails what it still carried). */
    cl_lane_close(cn, TRELLIS_OK);
    cl_lane_fini(cn);
    free(cn);
    atomic_fetch_sub(&c->live_conns, 1);
}

void cl_conn_put(cl_conn *cn)
{
    if (!cn || atomic_fetch_sub(&cn->refs, 1) != 1)
        return;
    /* Closed on the I/O thread, which owns the sockets, between two
     * turns of its loop: even there it is handed over rather than closed
     * at once, since the last reference may go inside one of the
     * connection's own callbacks (an asynchronous continuation run from
     * its input), where closing would free it under the connection. Once
     * that thread stopped, trellis_close closes what is left on its own
     * thread. */
    trellis_client *c = cn->client;
    if (!c->io.started)
        cl_conn_destroy(cn);
    else
        cl_io_post_conn(c, cn);
}

cl_conn *cl_conn_get(trellis_client *c, const char *url, const char *node, uint32_t shard, int *rc)
{
    size_t b = hash_bytes(url, strlen(url)) % CL_CONN_BUCKETS;
    pthread_mutex_lock(&c->lock);
    for (cl_conn *cn = c->conns[b]; cn; cn = cn->next) {
        if (strcmp(cn->url, url) == 0) {
            atomic_fetch_add(&cn->refs, 1);
            pthread_mutex_unlock(&c->lock);
            return cn;
        }
    }
    cl_conn *fresh = calloc(1, sizeof(*fresh));
    if (!fresh || cl_lane_init(fresh) != TRELLIS_OK) {
        pthread_mutex_unlock(&c->lock);
        free(fresh);
        *rc = TRELLIS_INTERNAL;
        return NULL;
    }
    fresh->client = c;
    snprintf(fresh->url, sizeof(fresh->url), "%s", url);
    snprintf(fresh->node, sizeof(fresh->node), "%s", node ? node : "");
    fresh->shard = shard;
    atomic_init(&fresh->refs, 2); /* the table's and the caller's */
    atomic_fetch_add(&c->live_conns, 1);
    /* In the table before it connects, so that threads racing to the same
     * shard share it: parts queue until it is ready. */
    fresh->next = c->conns[b];
    fresh->in_table = 1;
    c->conns[b] = fresh;
    pthread_mutex_unlock(&c->lock);
    *rc = cl_lane_connect(fresh);
    if (*rc != TRELLIS_OK) {
        /* Unusable: out of the table, and the caller's parts fail. */
        pthread_mutex_lock(&c->lock);
        for (cl_conn **pp = &c->conns[b]; *pp; pp = &(*pp)->next) {
            if (*pp == fresh) {
                *pp = fresh->next;
                fresh->in_table = 0;
                atomic_fetch_sub(&fresh->refs, 1);
                break;
            }
        }
        pthread_mutex_unlock(&c->lock);
        cl_conn_put(fresh);
        return NULL;
    }
    return fresh;
}

/* Unlinks connections to shards the ring no longer has (under c->lock);
 * returns them chained by next, for the caller to release once it dropped
 * the lock. */
static cl_conn *conns_prune(trellis_client *c, const ring *r)
{
    cl_conn *gone = NULL;
    for (size_t b = 0; b < CL_CONN_BUCKETS; b++) {
        cl_conn **pp = &c->conns[b];
        while (*pp) {
            cl_conn *cn = *pp;
            int idx = ring_find_node(r, cn->node);
            const ring_node *rn = idx >= 0 ? ring_node_at(r, (size_t)idx) : NULL;
            char url[RING_MAX_URL + 1];
            int keep = rn && rn->state != NODE_LEFT && rn->state != NODE_DEAD &&
                       ring_shard_data_url(rn, cn->shard, url, sizeof(url)) == TRELLIS_OK &&
                       strcmp(url, cn->url) == 0;
            if (keep) {
                pp = &cn->next;
                continue;
            }
            *pp = cn->next;
            cn->in_table = 0;
            cn->next = gone;
            gone = cn;
        }
    }
    return gone;
}

/* ---- rings -------------------------------------------------------------------------------------
 */

cl_ring *cl_ring_get(trellis_client *c)
{
    pthread_mutex_lock(&c->lock);
    cl_ring *rs = c->rs;
    if (rs)
        atomic_fetch_add(&rs->refs, 1);
    pthread_mutex_unlock(&c->lock);
    return rs;
}

void cl_ring_put(cl_ring *rs)
{
    if (rs && atomic_fetch_sub(&rs->refs, 1) == 1) {
        ring_free(rs->r);
        free(rs->first);
        free(rs->urls);
        free(rs);
    }
}

const cl_shard_url *cl_ring_url(const cl_ring *rs, int idx, uint32_t shard)
{
    if (idx < 0 || (size_t)idx >= ring_node_count(rs->r) ||
        shard >= ring_node_at(rs->r, (size_t)idx)->shards)
        return NULL;
    const cl_shard_url *u = &rs->urls[rs->first[idx] + shard];
    return u->ok ? u : NULL;
}

/* Works out the address of every shard of every member. */
static int ring_urls(cl_ring *rs)
{
    size_t n = ring_node_count(rs->r), total = 0;
    rs->first = malloc((n ? n : 1) * sizeof(*rs->first));
    if (!rs->first)
        return TRELLIS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        rs->first[i] = total;
        total += ring_node_at(rs->r, i)->shards;
    }
    rs->urls = calloc(total ? total : 1, sizeof(*rs->urls));
    if (!rs->urls)
        return TRELLIS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        const ring_node *rn = ring_node_at(rs->r, i);
        for (uint32_t sh = 0; sh < rn->shards; sh++) {
            cl_shard_url *u = &rs->urls[rs->first[i] + sh];
            u->ok = ring_shard_data_url(rn, sh, u->url, sizeof(u->url)) == TRELLIS_OK;
            u->hash = u->ok ? ring_hash(u->url, strlen(u->url)) : 0;
        }
    }
    return TRELLIS_OK;
}

/* Installs a snapshot unless it is older than the ring we have. */
static int ring_install(trellis_client *c, const Trellis__RingSnapshot *snap)
{
    pthread_mutex_lock(&c->lock);
    uint64_t have = c->rs ? ring_epoch(c->rs->r) : 0;
    pthread_mutex_unlock(&c->lock);
    if (snap->unchanged)
        return c->rs ? TRELLIS_OK : TRELLIS_MALFORMED;
    if (c->rs && snap->epoch < have)
        return TRELLIS_OK; /* a router that lags behind */
    cl_report_set_monitor(c->report, snap->monitor);
    ring *r;
    int rc = ring_from_snapshot(snap, &r);
    if (rc != TRELLIS_OK)
        return rc == TRELLIS_INTERNAL ? rc : TRELLIS_MALFORMED;
    cl_ring *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        ring_free(r);
        return TRELLIS_INTERNAL;
    }
    rs->r = r;
    atomic_init(&rs->refs, 1);
    if (ring_urls(rs) != TRELLIS_OK) {
        cl_ring_put(rs);
        return TRELLIS_INTERNAL;
    }
    pthread_mutex_lock(&c->lock);
    cl_ring *old = c->rs;
    c->rs = rs;
    atomic_store(&c->ring_epoch, ring_epoch(r));
    cl_conn *gone = conns_prune(c, r);
    pthread_mutex_unlock(&c->lock);
    while (gone) {
        cl_conn *next = gone->next;
        cl_conn_put(gone);
        gone = next;
    }
    cl_ring_put(old);
    return TRELLIS_OK;
}

int cl_router_call(trellis_client *c, Trellis__Envelope *env, nng_time deadline, wire_arena *a,
                   Trellis__Envelope **reply)
{
    *reply = NULL;
    if (c->token[0]) {
        env->auth.data = (uint8_t *)c->token;
        env->auth.len = strlen(c->token);
    }
    env->version = WIRE_VERSION;
    nng_msg *m;
    int rc = wire_to_msg(env, &m);
    if (rc != TRELLIS_OK)
        return rc;
    cl_waiter w;
    if (cl_waiter_init(&w) != 0) {
        nng_msg_free(m);
        return TRELLIS_INTERNAL;
    }
    cl_req q;
    cl_req_start(&q, &w, c->router, m, deadline);
    cl_wait_all(&w, &q, 1, deadline);
    if (q.rv != 0) {
        rc = cl_req_status(&q);
    } else {
        rc = wire_decode(a, nng_msg_body(q.reply), nng_msg_len(q.reply), &c->lim, reply);
        if (rc == TRELLIS_OK && (*reply)->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
            int st = (*reply)->error ? (int)(*reply)->error->status : TRELLIS_INTERNAL;
            rc = st == TRELLIS_OK ? TRELLIS_INTERNAL : st;
        }
    }
    cl_req_fini(&q);
    cl_waiter_fini(&w);
    return rc;
}

static int ring_fetch_now(trellis_client *c, nng_time deadline)
{
    uint64_t have = 0;
    pthread_mutex_lock(&c->lock);
    if (c->rs)
        have = ring_epoch(c->rs->r);
    pthread_mutex_unlock(&c->lock);
    Trellis__Envelope env, *reply;
    Trellis__RingRequest rq;
    wire_envelope_init(&env, have, NULL);
    trellis__ring_request__init(&rq);
    rq.known_epoch = have;
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    wire_arena *a = wire_arena_new();
    if (!a)
        return TRELLIS_INTERNAL;
    int rc = cl_router_call(c, &env, deadline, a, &reply);
    if (rc == TRELLIS_OK) {
        if (reply->body_case != TRELLIS__ENVELOPE__BODY_RING || !reply->ring) {
            rc = TRELLIS_MALFORMED;
        } else {
            atomic_fetch_add(&c->stats.ring_fetches, 1);
            rc = ring_install(c, reply->ring);
        }
    }
    wire_arena_free(a);
    return rc;
}

/* Waits (at most until deadline) for a fetch another thread is making.
 * Called and returns with c->lock held. */
static void ring_fetch_wait(trellis_client *c, nng_time deadline)
{
    while (c->fetching) {
        nng_duration left = remaining_ms(deadline);
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->fetch_cv, &c->lock, &ts);
    }
}

/* Fetches with c->lock held on entry; returns with it released. */
static int ring_fetch_locked(trellis_client *c, nng_time deadline)
{
    c->fetching = 1;
    uint64_t started = cl_sampler_now_us();
    pthread_mutex_unlock(&c->lock);
    int rc = ring_fetch_now(c, deadline);
    pthread_mutex_lock(&c->lock);
    c->fetching = 0;
    c->last_fetch_ms = cl_now();
    c->fetch_started_us = started;
    pthread_cond_broadcast(&c->fetch_cv);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int cl_ring_fetch(trellis_client *c, nng_time deadline, int force)
{
    pthread_mutex_lock(&c->lock);
    if (c->fetching) {
        /* Someone else is at it: its result is ours too. */
        ring_fetch_wait(c, deadline);
        int rc = c->rs ? TRELLIS_OK : TRELLIS_UNAVAILABLE;
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    uint64_t now = cl_now();
    if (!force && c->rs && now - c->last_fetch_ms < CL_REFETCH_MS) {
        pthread_mutex_unlock(&c->lock);
        return TRELLIS_OK;
    }
    return ring_fetch_locked(c, deadline);
}

int cl_ring_fetch_after(trellis_client *c, nng_time deadline, uint64_t since_us)
{
    pthread_mutex_lock(&c->lock);
    ring_fetch_wait(c, deadline);
    if (c->fetching || (c->rs && c->fetch_started_us >= since_us)) {
        int rc = c->rs ? TRELLIS_OK : TRELLIS_UNAVAILABLE;
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    return ring_fetch_locked(c, deadline);
}

void cl_epoch_seen(trellis_client *c, uint64_t epoch)
{
    uint_fast64_t seen = atomic_load(&c->seen_epoch);
    while (epoch > seen && !atomic_compare_exchange_weak(&c->seen_epoch, &seen, epoch))
        ;
}

int cl_ring_stale(trellis_client *c)
{
    return atomic_load(&c->seen_epoch) > atomic_load(&c->ring_epoch);
}

void cl_ring_refresh_sync(trellis_client *c, nng_time deadline)
{
    if (cl_ring_stale(c))
        cl_ring_fetch(c, deadline, 0);
}

void cl_ring_refresh_async(trellis_client *c)
{
    if (cl_ring_stale(c) && atomic_exchange(&c->refresh_posted, 1) == 0)
        cl_async_post_refresh(c, &c->refresh);
}

/* ---- counter totals
 * ------------------------------------------------------------------------------ */

static int counters_init(cl_counters *t, size_t max)
{
    t->max = max ? max : 1;
    t->nbuckets = 64;
    while (t->nbuckets < t->max && t->nbuckets < ((size_t)1 << 24))
        t->nbuckets <<= 1;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->evicted = calloc(CL_EVICTED_BITS / 64, sizeof(uint64_t));
    if (!t->buckets || !t->evicted) {
        free(t->buckets);
        free(t->evicted);
        return TRELLIS_INTERNAL;
    }
    return TRELLIS_OK;
}

static void counters_fini(cl_counters *t)
{
    for (size_t i = 0; t->buckets && i < t->nbuckets; i++) {
        cl_cnt *e = t->buckets[i];
        while (e) {
            cl_cnt *n = e->next;
            free(e);
            e = n;
        }
    }
    free(t->buckets);
    free(t->evicted);
}

static cl_cnt **counters_find(cl_counters *t, uint64_t h, const uint8_t *key, size_t klen)
{
    cl_cnt **pp = &t->buckets[h & (t->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
    return pp;
}

static void evicted_mark(cl_counters *t, uint64_t h)
{
    uint64_t bit = (h >> 32) % CL_EVICTED_BITS;
    t->evicted[bit / 64] |= UINT64_C(1) << (bit % 64);
}

static int evicted_test(const cl_counters *t, uint64_t h)
{
    uint64_t bit = (h >> 32) % CL_EVICTED_BITS;
    return (t->evicted[bit / 64] >> (bit % 64)) & 1;
}

static void counters_evict_one(cl_counters *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        size_t b = (t->cursor + i) & (t->nbuckets - 1);
        cl_cnt *e = t->buckets[b];
        if (e) {
            t->buckets[b] = e->next;
            evicted_mark(t, e->hash);
            free(e);
            t->count--;
            t->cursor = b + 1;
            return;
        }
    }
}

int cl_counter_lookup(trellis_client *c, const uint8_t *key, size_t klen, cl_totals *out)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->lock);
    cl_cnt **pp = counters_find(&c->cnt, h, key, klen);
    int rc;
    memset(out, 0, sizeof(*out));
    if (*pp) {
        out->inc = (*pp)->inc;
        out->dec = (*pp)->dec;
        out->epoch = (*pp)->epoch;
        out->epoch_known = (*pp)->epoch_known;
        rc = 1;
    } else {
        rc = evicted_test(&c->cnt, h) ? -1 : 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* The key's entry, created with zero totals if absent (c->lock held); NULL
 * when out of memory. */
static cl_cnt *counter_entry(trellis_client *c, uint64_t h, const uint8_t *key, size_t klen)
{
    cl_counters *t = &c->cnt;
    cl_cnt **pp = counters_find(t, h, key, klen);
    if (*pp)
        return *pp;
    if (t->count >= t->max) {
        counters_evict_one(t);
        pp = counters_find(t, h, key, klen);
    }
    cl_cnt *e = calloc(1, sizeof(*e) + klen);
    if (!e)
        return NULL;
    e->hash = h;
    e->klen = klen;
    memcpy(e->key, key, klen);
    *pp = e;
    t->count++;
    return e;
}

static void counter_apply(cl_cnt *e, int64_t delta, cl_totals *out)
{
    /* Unsigned arithmetic: INT64_MIN has no positive counterpart. */
    if (delta >= 0)
        e->inc += (uint64_t)delta;
    else
        e->dec += (uint64_t)0 - (uint64_t)delta;
    out->inc = e->inc;
    out->dec = e->dec;
    out->epoch = e->epoch;
    out->epoch_known = e->epoch_known;
}

int cl_counter_add(trellis_client *c, const uint8_t *key, size_t klen, const cl_totals *base,
                   int64_t delta, cl_totals *out)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->lock);
    cl_cnt *e = counter_entry(c, h, key, klen);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return TRELLIS_INTERNAL;
    }
    if (base->inc > e->inc)
        e->inc = base->inc;
    if (base->dec > e->dec)
        e->dec = base->dec;
    counter_apply(e, delta, out);
    pthread_mutex_unlock(&c->lock);
    return TRELLIS_OK;
}

int cl_counter_rebase(trellis_client *c, const uint8_t *key, size_t klen, uint64_t epoch,
                      int64_t delta, cl_totals *out)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->lock);
    cl_cnt *e = counter_entry(c, h, key, klen);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return TRELLIS_INTERNAL;
    }
    if (!e->epoch_known || e->epoch != epoch) {
        /* Another caller may have started this incarnation's totals
         * already: then only this delta is added. */
        e->inc = e->dec = 0;
        e->epoch = epoch;
        e->epoch_known = 1;
    }
    counter_apply(e, delta, out);
    pthread_mutex_unlock(&c->lock);
    return TRELLIS_OK;
}

void cl_counter_note_epoch(trellis_client *c, const uint8_t *key, size_t klen, uint64_t epoch)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->lock);
    cl_cnt **pp = counters_find(&c->cnt, h, key, klen);
    if (*pp && !(*pp)->epoch_known) {
        (*pp)->epoch = epoch;
        (*pp)->epoch_known = 1;
    }
    pthread_mutex_unlock(&c->lock);
}

void cl_counter_forget(trellis_client *c, const uint8_t *key, size_t klen)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->lock);
    cl_cnt **pp = counters_find(&c->cnt, h, key, klen);
    if (*pp) {
        cl_cnt *e = *pp;
        *pp = e->next;
        free(e);
        c->cnt.count--;
    }
    /* Its totals are unknown from now on: read them back if it is used. */
    evicted_mark(&c->cnt, h);
    pthread_mutex_unlock(&c->lock);
}

/* ---- connect and close
 * ---------------------------------------------------------------------------- */

static uint64_t random_writer(void)
{
    uint64_t w = 0;
    while (w == 0) {
        if (getrandom(&w, sizeof(w), 0) != (ssize_t)sizeof(w)) {
            /* No entropy source: mix the time and our address. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            w = ring_hash(&ts, sizeof(ts)) ^ (uint64_t)(uintptr_t)&w;
        }
    }
    return w;
}

/* Splits a comma (or space) separated list of URLs in place. */
static size_t split_urls(char *list, const char **urls, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ", \t", &save); tok && n < max;
         tok = strtok_r(NULL, ", \t", &save))
        urls[n++] = tok;
    return n;
}

/* 1 for the transports a trellis endpoint may use. */
static int url_ok(const char *url)
{
    static const char *const schemes[] = {"tcp://",      "tcp4://",     "tcp6://", "tls+tcp://",
                                          "tls+tcp4://", "tls+tcp6://", "ipc://",  "inproc://"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(url, schemes[i], n) == 0 && url[n] != '\0' && strlen(url) <= RING_MAX_URL)
            return 1;
    }
    return 0;
}

static int client_tls(trellis_client *c, const trellis_options *o)
{
    net_tls_opts t = {o->tls_ca_file, o->tls_cert_key_file, o->tls_server_name, 0};
    char err[256];
    int rc = net_tls_new(&t, &c->tls, err, sizeof(err));
    if (rc == TRELLIS_OK && o->tls_ca_file && o->tls_ca_file[0]) {
        tls_opts d = {o->tls_ca_file, o->tls_cert_key_file, o->tls_server_name, 0, 0};
        rc = tls_ctx_new(&d, &c->dtls, err, sizeof(err));
    }
    if (rc == TRELLIS_OK)
        return rc;
    cl_set_error("TLS settings: %s", err);
    return TRELLIS_INVALID;
}

void trellis_close(trellis_client *c)
{
    if (!c)
        return;
    /* Reports stop first: nothing is sampled any more. */
    cl_report_free(c->report);
    c->report = NULL;
    /* The worker finishes what it was handed (a ring refresh needs the
     * router's connection) and stops. */
    cl_async_stop(c);
    atomic_store(&c->closing, 1);
    /* The connections close on the I/O thread; a callback that completed
     * the caller's last execution may still hold one for a moment. */
    pthread_mutex_lock(&c->lock);
    cl_conn *all = NULL;
    for (size_t b = 0; b < CL_CONN_BUCKETS; b++) {
        cl_conn *cn = c->conns[b];
        while (cn) {
            cl_conn *n = cn->next;
            cn->in_table = 0;
            cn->next = all;
            all = cn;
            cn = n;
        }
        c->conns[b] = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    while (all) {
        cl_conn *n = all->next;
        cl_conn_put(all);
        all = n;
    }
    nng_time give_up = cl_now() + 5000;
    while (atomic_load(&c->live_conns) > 0 && cl_now() < give_up)
        nng_msleep(1);
    cl_io_stop(c); /* closes what was still handed to it */
    router_close(c->router);
    c->router = NULL;
    cl_async_fini(c);
    cl_ring_put(c->rs);
    counters_fini(&c->cnt);
    cl_sampler_free(c->sampler);
    net_tls_free(c->tls);
    tls_ctx_free(c->dtls);
    pthread_cond_destroy(&c->fetch_cv);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The latency sampler and its reporter (started once a ring names the
 * monitor). The client's id for the monitor: host, process and writer. */
static int report_open(trellis_client *c)
{
    if (!(c->sampler = cl_sampler_new()))
        return TRELLIS_INTERNAL;
    char host[64] = "";
    gethostname(host, sizeof(host) - 1);
    char id[CL_REPORT_ID_MAX + 1];
    snprintf(id, sizeof(id), "%.24s/%d/%016llx", host[0] ? host : "client", (int)getpid(),
             (unsigned long long)c->writer);
    cl_report_opts ro = {id, c->tls, &c->lim, c->token, c->sampler};
    return cl_report_new(&ro, &c->report);
}

int trellis_connect(const char *url, const trellis_options *opts, trellis_client **out)
{
    trellis_options defaults;
    cl_clear_error();
    if (!opts) {
        trellis_options_init(&defaults);
        opts = &defaults;
    }
    if (!url || !out || opts->timeout_ms <= 0 || opts->retries < 0 ||
        (opts->ack != TRELLIS_ACK_ONE && opts->ack != TRELLIS_ACK_ALL) ||
        strlen(url) >= CL_MAX_URL_LIST ||
        (opts->auth_token && strlen(opts->auth_token) >= NET_TOKEN_MAX))
        return TRELLIS_INVALID;
    char list[CL_MAX_URL_LIST];
    snprintf(list, sizeof(list), "%s", url);
    const char *urls[CL_MAX_ROUTERS];
    size_t nurls = split_urls(list, urls, CL_MAX_ROUTERS);
    if (nurls == 0)
        return TRELLIS_INVALID;
    for (size_t i = 0; i < nurls; i++)
        if (!url_ok(urls[i])) {
            cl_set_error("'%.200s' is not a router address: tcp://HOST:PORT, tls+tcp://HOST:PORT "
                         "or ipc://PATH",
                         urls[i]);
            return TRELLIS_INVALID;
        }

    trellis_client *c = calloc(1, sizeof(*c));
    if (!c)
        return TRELLIS_INTERNAL;
    c->timeout_ms = opts->timeout_ms;
    c->retries = opts->retries;
    c->ack = opts->ack;
    c->max_message = opts->max_message_bytes ? opts->max_message_bytes : WIRE_DEFAULT_MAX_MESSAGE;
    snprintf(c->token, sizeof(c->token), "%s", opts->auth_token ? opts->auth_token : "");
    wire_limits_default(&c->lim);
    c->lim.max_message = c->max_message;
    hlc_init(&c->clock);
    c->writer = random_writer();
    atomic_init(&c->rotor, c->writer);
    atomic_init(&c->result_bytes, 0);
    atomic_init(&c->live_conns, 0);
    atomic_init(&c->closing, 0);
    atomic_init(&c->seen_epoch, 0);
    atomic_init(&c->ring_epoch, 0);
    atomic_init(&c->refresh_posted, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->fetch_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);
    int rc = counters_init(&c->cnt, opts->counter_cache > 0 ? (size_t)opts->counter_cache
                                                            : CL_DEFAULT_COUNTERS);
    if (rc == TRELLIS_OK)
        rc = cl_async_init(c);
    if (rc == TRELLIS_OK)
        rc = client_tls(c, opts);
    if (rc == TRELLIS_OK && opts->report_latency)
        rc = report_open(c);
    if (rc == TRELLIS_OK)
        rc = cl_io_start(c);
    if (rc == TRELLIS_OK)
        rc = router_open(c, urls, nurls, &c->router);
    if (rc == TRELLIS_OK)
        rc = cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 1);
    if (rc != TRELLIS_OK) {
        /* The router, not a replica, is what could not be reached. */
        if (rc == TRELLIS_UNAVAILABLE)
            cl_set_error("no router answers at %.200s", url);
        else if (rc == TRELLIS_TIMEOUT)
            cl_set_error("the router at %.200s did not answer within %d ms", url, c->timeout_ms);
        trellis_close(c);
        return rc;
    }
    *out = c;
    return TRELLIS_OK;
}

uint64_t trellis_writer_id(const trellis_client *c)
{
    return c->writer;
}

uint64_t trellis_ring_epoch(trellis_client *c)
{
    cl_ring *rs = cl_ring_get(c);
    uint64_t e = rs ? ring_epoch(rs->r) : 0;
    cl_ring_put(rs);
    return e;
}

int trellis_refresh(trellis_client *c)
{
    return cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 1);
}

int trellis_ping(trellis_client *c)
{
    Trellis__Envelope env, *reply;
    Trellis__RingRequest rq;
    wire_envelope_init(&env, 0, NULL);
    trellis__ring_request__init(&rq);
    rq.known_epoch = trellis_ring_epoch(c);
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    wire_arena *a = wire_arena_new();
    if (!a)
        return TRELLIS_INTERNAL;
    int rc = cl_router_call(c, &env, cl_now() + (nng_time)c->timeout_ms, a, &reply);
    if (rc == TRELLIS_OK && reply->body_case != TRELLIS__ENVELOPE__BODY_RING)
        rc = TRELLIS_MALFORMED;
    wire_arena_free(a);
    return rc;
}

void trellis_get_counters(trellis_client *c, trellis_counters *out)
{
    out->calls = atomic_load(&c->stats.calls);
    out->ops = atomic_load(&c->stats.ops);
    out->requests = atomic_load(&c->stats.requests);
    out->retries = atomic_load(&c->stats.retries);
    out->wrong_shard = atomic_load(&c->stats.wrong_shard);
    out->unreachable = atomic_load(&c->stats.unreachable);
    out->ring_fetches = atomic_load(&c->stats.ring_fetches);
    out->unreachable_waits = atomic_load(&c->stats.unreachable_waits);
}

/* ---- cluster information
 * ------------------------------------------------------------------------------ */

int trellis_nodes(trellis_client *c, trellis_node **nodes, size_t *n)
{
    int rc = trellis_refresh(c);
    if (rc != TRELLIS_OK)
        return rc;
    cl_ring *rs = cl_ring_get(c);
    if (!rs)
        return TRELLIS_UNAVAILABLE;
    size_t count = ring_node_count(rs->r);
    trellis_node *v = count ? calloc(count, sizeof(*v)) : NULL;
    if (count && !v) {
        cl_ring_put(rs);
        return TRELLIS_INTERNAL;
    }
    for (size_t i = 0; i < count; i++) {
        const ring_node *rn = ring_node_at(rs->r, i);
        snprintf(v[i].id, sizeof(v[i].id), "%s", rn->id);
        v[i].tier = rn->tier;
        v[i].state = rn->state;
        v[i].shards = rn->shards;
        v[i].generation = rn->generation;
        snprintf(v[i].address, sizeof(v[i].address), "%s", rn->endpoint);
    }
    cl_ring_put(rs);
    *nodes = v;
    *n = count;
    return TRELLIS_OK;
}

int trellis_stats_get(trellis_client *c, trellis_stats *out)
{
    Trellis__Envelope env, *reply;
    Trellis__StatsRequest rq;
    wire_envelope_init(&env, 0, NULL);
    trellis__stats_request__init(&rq);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &rq;
    wire_arena *a = wire_arena_new();
    if (!a)
        return TRELLIS_INTERNAL;
    int rc = cl_router_call(c, &env, cl_now() + (nng_time)c->timeout_ms, a, &reply);
    if (rc == TRELLIS_OK &&
        (reply->body_case != TRELLIS__ENVELOPE__BODY_STATS_REPLY || !reply->stats_reply))
        rc = TRELLIS_MALFORMED;
    if (rc == TRELLIS_OK) {
        const Trellis__StatsReply *sr = reply->stats_reply;
        memset(out, 0, sizeof(*out));
        out->epoch = sr->epoch;
        out->hot_keys = sr->hot_keys;
        out->client_p99_us = sr->client_p99_us;
        for (size_t i = 0; i < sr->n_tiers && out->tier_count < 2; i++) {
            const Trellis__TierStats *ts = sr->tiers[i];
            trellis_tier_stats *o = &out->tiers[out->tier_count++];
            o->tier = (int)ts->tier;
            o->nodes = ts->nodes;
            o->keys = ts->keys;
            o->bytes = ts->bytes;
            o->capacity = ts->capacity;
            o->ops_per_sec = ts->ops_per_sec;
            o->busy = ts->busy;
            o->p99_us = ts->p99_us;
        }
    }
    wire_arena_free(a);
    return rc;
}
