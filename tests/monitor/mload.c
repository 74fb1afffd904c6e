/*
 * mload.c - the monitor tests' load generator (see mload.h).
 */
#include "mload.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/histogram.h"
#include "lattices/lattice.h"
#include "server/peer.h"
#include "placement/ring.h"
#include "tframe.h"
#include "tsupport.h"
#include "base/wire.h"

#define MLOAD_TICK_MS      20 /* new operations are batched per tick */
#define MLOAD_TIMEOUT_MS   3000
#define MLOAD_MAX_BACKLOG  2000 /* units waiting to be sent; new load is skipped above */
#define MLOAD_MEMBER_MAX   512
#define MLOAD_VERIFY_CHUNK 256
#define MLOAD_VERIFY_TRIES 25   /* rounds of reads for keys caught in a ring change */
#define MLOAD_REFRESH_MS   1000 /* the ring is refetched this often (overrides) */
#define MLOAD_KEY_MAX      64
#define MLOAD_MAX_CONNS    64 /* data-plane connections, one per shard */

/* One operation; it may go to several replicas (write_all). */
typedef struct lop {
    int key;
    int write;
    uint32_t member;
    int pending; /* units not yet answered OK */
    int failed;  /* a unit gave up */
} lop;

/* One operation sent to one replica. */
typedef struct unit {
    lop *op;
    int tier;
    int replica; /* index in the key's replica walk, -1: rotate (hot reads) */
    int tries;
    struct unit *next;
} unit;
typedef struct req_ctx {
    mload *l;
    struct req_ctx *next; /* its connection's requests in flight, oldest first */
    uint64_t id;
    uint64_t sent_us;
    size_t n;
    unit *u[];
} req_ctx;

/* A data-plane connection to one shard, with its requests in flight. */
typedef struct dconn {
    char url[RING_MAX_URL + 1];
    tframe *t;
    req_ctx *head, *tail;
} dconn;

typedef struct kstate {
    uint32_t *acked;
    size_t n, cap;
} kstate;

struct mload {
    mload_opts o;
    char prefix[32];
    char router[256];
    char monitor[256];
    pthread_t th;
    int started;
    atomic_int stop;
    atomic_int stopping; /* no new operations; failures are not retried */
    int abandoned;       /* a thread closing the pool may still call back */
    pthread_mutex_t lock;
    double rate;
    int hot_pct;

    ring *r;
    uint64_t epoch;
    int ring_stale;
    uint64_t ring_fetched_ms;
    peer_pool *peers; /* client reports to the monitor */
    wire_limits lim;
    dconn conns[MLOAD_MAX_CONNS];
    size_t nconns;
    uint64_t next_id;
    kstate *keys; /* nkeys + 1 (the hot key last) */
    uint32_t seq;
    uint64_t rotor, rng;
    unit *backlog, *backlog_tail;
    size_t nbacklog;
    double owed;
    uint64_t last_tick_us;

    histogram win;
    uint64_t win_start_ms, win_ops;
    mload_window last;
    mload_counts c;
};

static uint64_t rnd(mload *l)
{
    uint64_t z = (l->rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static size_t key_name(const mload *l, int k, char *buf)
{
    if (k == l->o.nkeys)
        return (size_t)snprintf(buf, MLOAD_KEY_MAX, "%shot", l->prefix);
    return (size_t)snprintf(buf, MLOAD_KEY_MAX, "%s%05d", l->prefix, k);
}

static size_t member_of(const mload *l, uint32_t seq, char *buf)
{
    int n = snprintf(buf, MLOAD_MEMBER_MAX, "%010u", seq);
    int pad = l->o.value_bytes;
    if (pad > MLOAD_MEMBER_MAX - 16)
        pad = MLOAD_MEMBER_MAX - 16;
    for (int i = 0; i < pad; i++)
        buf[n + i] = (char)('a' + (seq + (uint32_t)i) % 26);
    return (size_t)(n + pad);
}

static void fetch_ring(mload *l, uint64_t now_ms)
{
    if (now_ms - l->ring_fetched_ms < 100 && l->r)
        return;
    l->ring_fetched_ms = now_ms;
    ring *r;
    uint64_t epoch;
    if (tkv_fetch_ring(l->router, &r, &epoch) != TRELLIS_OK)
        return;
    ring_free(l->r);
    l->r = r;
    l->epoch = epoch;
    l->ring_stale = 0;
    pthread_mutex_lock(&l->lock);
    l->c.ring_fetches++;
    pthread_mutex_unlock(&l->lock);
}

static int has_tier(const ring *r, int tier)
{
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *n = ring_node_at(r, i);
        if (n->tier == tier && (n->state == NODE_ACTIVE || n->state == NODE_LEAVING))
            return 1;
    }
    return 0;
}

/* The data-plane URL of a unit's replica under the current ring; 0 or
 * -1. */
static int unit_url(mload *l, unit *u, char *url, size_t cap)
{
    if (!l->r)
        return -1;
    char key[MLOAD_KEY_MAX];
    size_t klen = key_name(l, u->op->key, key);
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas(l->r, RING_CURRENT, u->tier, key, klen, idx, RING_MAX_REPLICAS);
    if (n == 0)
        return -1;
    size_t j = u->replica >= 0 ? (size_t)u->replica : (size_t)(l->rotor++ % n);
    if (j >= n)
        return -1;
    const ring_node *node = ring_node_at(l->r, (size_t)idx[j]);
    return ring_shard_data_url(node, ring_local_shard(key, klen, node->shards), url, cap) ==
                   TRELLIS_OK
               ? 0
               : -1;
}

static void backlog_push(mload *l, unit *u)
{
    u->next = NULL;
    if (l->backlog_tail)
        l->backlog_tail->next = u;
    else
        l->backlog = u;
    l->backlog_tail = u;
    l->nbacklog++;
}

static unit *unit_new(lop *op, int tier, int replica)
{
    unit *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->op = op;
    u->tier = tier;
    u->replica = replica;
    op->pending++;
    return u;
}

/* One new operation, as units in the backlog. */
static void gen_op(mload *l, int hot_pct)
{
    if (!l->r)
        return;
    int mem = has_tier(l->r, RING_TIER_MEMORY), disk = has_tier(l->r, RING_TIER_DISK);
    lop *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    int is_read = (int)(rnd(l) % 100) < l->o.read_pct;
    if (is_read && hot_pct && (int)(rnd(l) % 100) < hot_pct) {
        op->key = l->o.nkeys;
        backlog_push(l, unit_new(op, mem ? RING_TIER_MEMORY : RING_TIER_DISK, -1));
        return;
    }
    op->key = (int)(rnd(l) % (uint64_t)l->o.nkeys);
    int read_tier = (l->o.read_disk && disk) || !mem ? RING_TIER_DISK : RING_TIER_MEMORY;
    if (is_read) {
        backlog_push(l, unit_new(op, read_tier, 0));
        return;
    }
    op->write = 1;
    op->member = ++l->seq;
    if (!l->o.write_all) {
        backlog_push(l, unit_new(op, mem ? RING_TIER_MEMORY : RING_TIER_DISK, 0));
        return;
    }
    char key[MLOAD_KEY_MAX];
    size_t klen = key_name(l, op->key, key);
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        int idx[RING_MAX_REPLICAS];
        size_t n = ring_replicas(l->r, RING_CURRENT, tier, key, klen, idx, RING_MAX_REPLICAS);
        for (size_t j = 0; j < n; j++)
            backlog_push(l, unit_new(op, tier, (int)j));
    }
    if (op->pending == 0)
        free(op);
}

static void op_settle(mload *l, lop *op)
{
    if (op->pending > 0)
        return;
    if (op->write && !op->failed) {
        kstate *k = &l->keys[op->key];
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 16;
            uint32_t *a = realloc(k->acked, cap * sizeof(*a));
            if (a) {
                k->acked = a;
                k->cap = cap;
            }
        }
        if (k->n < k->cap)
            k->acked[k->n++] = op->member;
        pthread_mutex_lock(&l->lock);
        l->c.acked_writes++;
        pthread_mutex_unlock(&l->lock);
    }
    free(op);
}

static void unit_failed(mload *l, unit *u, int status)
{
    pthread_mutex_lock(&l->lock);
    if (status > 0 && status < TRELLIS_STATUS_COUNT)
        l->c.errors[status]++;
    pthread_mutex_unlock(&l->lock);
    if (status == TRELLIS_WRONG_SHARD || status == TRELLIS_UNAVAILABLE)
        l->ring_stale = 1;
    int stopping = atomic_load(&l->stopping);
    if (stopping || ++u->tries >= MLOAD_TRIES) {
        if (!stopping) {
            pthread_mutex_lock(&l->lock);
            l->c.gave_up++;
            pthread_mutex_unlock(&l->lock);
        }
        u->op->failed = 1;
        u->op->pending--;
        op_settle(l, u->op);
        free(u);
        return;
    }
    backlog_push(l, u);
}

/* A request's completion: its reply (status OK), or the failure of the
 * whole request. */
static void kv_done(req_ctx *c, int status, const tframe_reply *reply)
{
    mload *l = c->l;
    uint64_t lat = clock_mono_us() - c->sent_us;
    const tframe_reply *kr = NULL;
    if (status == TRELLIS_OK && reply->h.status != TRELLIS_OK)
        status = reply->h.status;
    else if (status == TRELLIS_OK && reply->nres == c->n)
        kr = reply;
    else if (status == TRELLIS_OK)
        status = TRELLIS_MALFORMED;
    pthread_mutex_lock(&l->lock);
    l->c.replies++;
    l->c.inflight--;
    if (kr) {
        hist_record(&l->win, lat);
        l->win_ops += c->n;
    }
    pthread_mutex_unlock(&l->lock);
    if (!kr && atomic_load(&l->stop)) {
        for (size_t i = 0; i < c->n; i++) {
            c->u[i]->op->failed = 1;
            c->u[i]->op->pending--;
            op_settle(l, c->u[i]->op);
            free(c->u[i]);
        }
        free(c);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        unit *u = c->u[i];
        int st = kr ? (int)kr->res[i].status : status;
        if (st == TRELLIS_OK || (st == TRELLIS_NOT_FOUND && !u->op->write)) {
            u->op->pending--;
            op_settle(l, u->op);
            free(u);
        } else {
            unit_failed(l, u, st);
        }
    }
    free(c);
}

/* ---- data-plane connections ----------------------------------------------------------- */

static dconn *conn_get(mload *l, const char *url)
{
    for (size_t i = 0; i < l->nconns; i++)
        if (strcmp(l->conns[i].url, url) == 0)
            return &l->conns[i];
    if (l->nconns == MLOAD_MAX_CONNS)
        return NULL;
    dconn *d = &l->conns[l->nconns];
    memset(d, 0, sizeof(*d));
    if (tframe_connect_url(url, &d->t) != TRELLIS_OK)
        return NULL;
    snprintf(d->url, sizeof(d->url), "%s", url);
    l->nconns++;
    return d;
}

/* Closes connection i; its requests in flight fail with status. */
static void conn_drop(mload *l, size_t i, int status)
{
    dconn *d = &l->conns[i];
    req_ctx *c = d->head;
    tframe_close(d->t);
    l->conns[i] = l->conns[--l->nconns];
    while (c) {
        req_ctx *next = c->next;
        kv_done(c, status, NULL);
        c = next;
    }
}

/* Takes the replies that arrived on connection i, and fails it when its
 * oldest request is overdue. 0, or -1 when the connection was dropped. */
static int conn_read(mload *l, size_t i, uint64_t now_us)
{
    dconn *d = &l->conns[i];
    for (;;) {
        tframe_reply r;
        int rc = tframe_try_recv(d->t, &r);
        if (rc == TRELLIS_TIMEOUT)
            break;
        if (rc != TRELLIS_OK) {
            conn_drop(l, i, TRELLIS_UNAVAILABLE);
            return -1;
        }
        /* Replies come in request order, but a held write's may overtake. */
        req_ctx **pc = &d->head, *prev = NULL;
        while (*pc && (*pc)->id != r.h.id) {
            prev = *pc;
            pc = &(*pc)->next;
        }
        req_ctx *c = *pc;
        if (c && r.h.kind == FRAME_REPLY) {
            *pc = c->next;
            if (d->tail == c)
                d->tail = prev;
            kv_done(c, TRELLIS_OK, &r);
        }
        tframe_reply_free(&r);
    }
    if (d->head && now_us - d->head->sent_us > (uint64_t)MLOAD_TIMEOUT_MS * 1000) {
        conn_drop(l, i, TRELLIS_TIMEOUT);
        return -1;
    }
    return 0;
}

static void conns_read(mload *l, uint64_t now_us)
{
    for (size_t i = l->nconns; i-- > 0;)
        conn_read(l, i, now_us);
}

static void conns_close(mload *l)
{
    while (l->nconns)
        conn_drop(l, l->nconns - 1, TRELLIS_UNAVAILABLE);
}

/* Sends the backlog: one request per shard, up to `batch` operations. */
static void flush(mload *l, wire_arena *a)
{
    size_t n = l->nbacklog;
    if (!n || !l->r)
        return;
    unit **v = calloc(n, sizeof(*v));
    char(*urls)[RING_MAX_URL + 1] = calloc(n, sizeof(*urls));
    uint8_t *done = calloc(n, 1);
    if (!v || !urls || !done) {
        free(v);
        free(urls);
        free(done);
        return;
    }
    size_t k = 0;
    for (unit *u = l->backlog; u; u = u->next)
        v[k++] = u;
    l->backlog = l->backlog_tail = NULL;
    l->nbacklog = 0;
    for (size_t i = 0; i < n; i++)
        if (unit_url(l, v[i], urls[i], sizeof(urls[i])) != 0) {
            done[i] = 1;
            unit_failed(l, v[i], TRELLIS_UNAVAILABLE);
        }
    int batch = l->o.batch > 0 ? l->o.batch : 16;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        pthread_mutex_lock(&l->lock);
        int full = l->c.inflight >= (uint64_t)l->o.max_inflight;
        pthread_mutex_unlock(&l->lock);
        if (full) {
            for (size_t j = i; j < n; j++)
                if (!done[j]) {
                    done[j] = 1;
                    backlog_push(l, v[j]);
                }
            break;
        }
        req_ctx *c = calloc(1, sizeof(*c) + (size_t)batch * sizeof(unit *));
        tframe_op *ops = wire_arena_alloc(a, (size_t)batch * sizeof(*ops));
        if (!c || !ops) {
            free(c);
            break;
        }
        for (size_t j = i; j < n && c->n < (size_t)batch; j++) {
            if (done[j] || strcmp(urls[j], urls[i]) != 0)
                continue;
            done[j] = 1;
            unit *u = v[j];
            char *key = wire_arena_alloc(a, MLOAD_KEY_MAX);
            if (!key) {
                backlog_push(l, u);
                continue;
            }
            tframe_op *o = &ops[c->n];
            *o = (tframe_op){FRAME_OP_GET, LAT_NONE, key, key_name(l, u->op->key, key), NULL, 0};
            if (u->op->write) {
                char mem[MLOAD_MEMBER_MAX];
                lat_slice s = {(const uint8_t *)mem, member_of(l, u->op->member, mem)};
                lat_buf b = {0};
                lat_set_encode(&s, 1, &b);
                o->op = FRAME_OP_PUT;
                o->type = LAT_SET;
                o->value = wire_arena_dup(a, b.data, b.len);
                o->vlen = b.len;
                lat_buf_free(&b);
            }
            c->u[c->n++] = u;
        }
        c->sent_us = clock_mono_us();
        uint64_t reads = 0, writes = 0;
        for (size_t j = 0; j < c->n; j++) {
            reads += !c->u[j]->op->write;
            writes += c->u[j]->op->write;
        }
        size_t cn = c->n;
        c->l = l;
        c->id = ++l->next_id;
        dconn *d = conn_get(l, urls[i]);
        if (!d || tframe_request(d->t, c->id, l->epoch, 0, ops, cn) != TRELLIS_OK) {
            if (d)
                conn_drop(l, (size_t)(d - l->conns), TRELLIS_UNAVAILABLE);
            for (size_t j = 0; j < cn; j++)
                unit_failed(l, c->u[j], TRELLIS_UNAVAILABLE);
            free(c);
            continue;
        }
        if (d->tail)
            d->tail->next = c;
        else
            d->head = c;
        d->tail = c;
        pthread_mutex_lock(&l->lock);
        l->c.requests++;
        l->c.inflight++;
        l->c.ops += cn;
        l->c.reads += reads;
        l->c.writes += writes;
        pthread_mutex_unlock(&l->lock);
    }
    free(v);
    free(urls);
    free(done);
}

static void report(mload *l, uint64_t now_ms)
{
    if (now_ms - l->win_start_ms < MLOAD_WINDOW_MS)
        return;
    pthread_mutex_lock(&l->lock);
    mload_window w;
    w.requests = l->win.count;
    w.p50_us = hist_quantile(&l->win, 0.5);
    w.p99_us = hist_quantile(&l->win, 0.99);
    w.ops_per_sec = (double)l->win_ops * 1000.0 / (double)(now_ms - l->win_start_ms);
    l->last = w;
    hist_reset(&l->win);
    l->win_ops = 0;
    pthread_mutex_unlock(&l->lock);
    l->win_start_ms = now_ms;
    if (!l->monitor[0])
        return;
    char id[64];
    snprintf(id, sizeof(id), "mload-%ld-%p", (long)getpid(), (void *)l);
    Trellis__Envelope env;
    Trellis__StatsReport rep;
    trellis__envelope__init(&env);
    trellis__stats_report__init(&rep);
    rep.client_id = id;
    rep.time_us = clock_wall_us();
    rep.period_ms = MLOAD_WINDOW_MS;
    rep.client_ops = w.requests;
    rep.client_p50_us = w.p50_us;
    rep.client_p99_us = w.p99_us;
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS;
    env.stats = &rep;
    if (peer_inflight(l->peers, l->monitor) < 4)
        peer_send(l->peers, l->monitor, &env, 1000, 0, 0, NULL, NULL);
}

static void *run(void *arg)
{
    mload *l = arg;
    wire_arena *a = wire_arena_new();
    l->last_tick_us = clock_mono_us();
    l->win_start_ms = clock_mono_ms();
    uint64_t next_tick_ms = clock_mono_ms();
    while (!atomic_load(&l->stop)) {
        struct pollfd fds[64 + MLOAD_MAX_CONNS];
        int n = peer_pollfds(l->peers, fds, 64);
        for (size_t i = 0; i < l->nconns; i++)
            fds[n++] = (struct pollfd){tframe_fd(l->conns[i].t), POLLIN, 0};
        uint64_t now_ms = clock_mono_ms();
        int timeout = next_tick_ms > now_ms ? (int)(next_tick_ms - now_ms) : 0;
        poll(fds, (nfds_t)n, timeout);
        now_ms = clock_mono_ms();
        peer_process(l->peers, now_ms);
        conns_read(l, clock_mono_us());
        if (now_ms < next_tick_ms)
            continue;
        /* New operations go out once per tick, so that requests carry many. */
        next_tick_ms += MLOAD_TICK_MS;
        if (next_tick_ms <= now_ms)
            next_tick_ms = now_ms + MLOAD_TICK_MS;
        uint64_t now_us = clock_mono_us();
        if (l->ring_stale || !l->r || now_ms - l->ring_fetched_ms >= MLOAD_REFRESH_MS)
            fetch_ring(l, now_ms);
        pthread_mutex_lock(&l->lock);
        double rate = l->rate;
        int hot = l->hot_pct;
        pthread_mutex_unlock(&l->lock);
        if (atomic_load(&l->stopping))
            rate = 0;
        l->owed += rate * (double)(now_us - l->last_tick_us) / 1e6;
        l->last_tick_us = now_us;
        while (l->owed >= 1) {
            l->owed -= 1;
            if (l->nbacklog >= MLOAD_MAX_BACKLOG) {
                pthread_mutex_lock(&l->lock);
                l->c.skipped++;
                pthread_mutex_unlock(&l->lock);
                continue;
            }
            gen_op(l, hot);
        }
        flush(l, a);
        wire_arena_reset(a);
        report(l, now_ms);
    }
    wire_arena_free(a);
    return NULL;
}

mload *mload_start(const mload_opts *o)
{
    mload *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->o = *o;
    snprintf(l->prefix, sizeof(l->prefix), "%s", o->prefix ? o->prefix : "k");
    snprintf(l->router, sizeof(l->router), "%s", o->router_url);
    snprintf(l->monitor, sizeof(l->monitor), "%s", o->monitor_url ? o->monitor_url : "");
    if (l->o.nkeys <= 0)
        l->o.nkeys = 100;
    if (l->o.max_inflight <= 0)
        l->o.max_inflight = 64;
    l->rate = o->rate;
    l->hot_pct = o->hot_pct;
    l->rng = clock_mono_us() ^ (uint64_t)getpid();
    pthread_mutex_init(&l->lock, NULL);
    hist_reset(&l->win);
    wire_limits_default(&l->lim);
    l->lim.max_message = 64 << 20;
    l->keys = calloc((size_t)l->o.nkeys + 1, sizeof(*l->keys));
    if (!l->keys || peer_pool_new(NULL, &l->lim, NULL, &l->peers) != TRELLIS_OK) {
        mload_free(l);
        return NULL;
    }
    fetch_ring(l, clock_mono_ms());
    if (!l->r || pthread_create(&l->th, NULL, run, l) != 0) {
        mload_free(l);
        return NULL;
    }
    l->started = 1;
    return l;
}

void mload_set_rate(mload *l, double rate)
{
    pthread_mutex_lock(&l->lock);
    l->rate = rate;
    pthread_mutex_unlock(&l->lock);
}

void mload_set_hot(mload *l, int hot_pct)
{
    pthread_mutex_lock(&l->lock);
    l->hot_pct = hot_pct;
    pthread_mutex_unlock(&l->lock);
}

void mload_counts_get(mload *l, mload_counts *out)
{
    pthread_mutex_lock(&l->lock);
    *out = l->c;
    pthread_mutex_unlock(&l->lock);
}

void mload_window_get(mload *l, mload_window *out)
{
    pthread_mutex_lock(&l->lock);
    *out = l->last;
    pthread_mutex_unlock(&l->lock);
}

int mload_drain(mload *l, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (clock_mono_ms() < end) {
        pthread_mutex_lock(&l->lock);
        int idle = l->c.inflight == 0;
        pthread_mutex_unlock(&l->lock);
        if (idle && l->nbacklog == 0) /* read racily: only a hint */
            return 0;
        usleep(20000);
    }
    return -1;
}

/* peer_pool_free on a thread of its own: nng 1.5.2's nng_close of a raw
 * req socket was seen to block forever (all of nng's threads idle) on a
 * heavily loaded machine; a test must not hang on it. */
typedef struct closer {
    peer_pool *p;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int done, abandoned;
} closer;

static void *close_pool(void *arg)
{
    closer *c = arg;
    peer_pool_free(c->p);
    pthread_mutex_lock(&c->lock);
    c->done = 1;
    int abandoned = c->abandoned;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->lock);
    if (abandoned) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cv);
        free(c);
    }
    return NULL;
}

/* 1 when the pool was freed within timeout_ms, 0 when the closing thread
 * was left behind (it may still call the pool's callbacks later). */
static int pool_close_bounded(peer_pool *p, int timeout_ms)
{
    closer *c = calloc(1, sizeof(*c));
    pthread_t th;
    if (!c) {
        peer_pool_free(p);
        return 1;
    }
    c->p = p;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&th, NULL, close_pool, c) != 0) {
        peer_pool_free(p);
        free(c);
        return 1;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&c->lock);
    while (!c->done)
        if (pthread_cond_timedwait(&c->cv, &c->lock, &until) != 0)
            break;
    int done = c->done;
    if (!done)
        c->abandoned = 1;
    pthread_mutex_unlock(&c->lock);
    if (done) {
        pthread_join(th, NULL);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cv);
        free(c);
    } else {
        fprintf(stderr,
                "mload: closing the load generator's sockets did not finish within %d ms "
                "(nng_close blocked); going on without it\n",
                timeout_ms);
        pthread_detach(th);
    }
    return done;
}

void mload_stop(mload *l)
{
    if (!l->started)
        return;
    /* Let what is in flight finish (or time out), retrying nothing, so
     * that closing the sockets fails no request. */
    atomic_store(&l->stopping, 1);
    uint64_t end = clock_mono_ms() + MLOAD_TIMEOUT_MS + 3000;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        int idle = l->c.inflight == 0;
        pthread_mutex_unlock(&l->lock);
        if (idle || clock_mono_ms() > end)
            break;
        usleep(10000);
    }
    atomic_store(&l->stop, 1);
    pthread_join(l->th, NULL);
    l->started = 0;
    conns_close(l); /* what is still in flight is overdue: it fails */
    while (l->backlog) {
        unit *u = l->backlog;
        l->backlog = u->next;
        u->op->failed = 1;
        u->op->pending--;
        op_settle(l, u->op);
        free(u);
    }
    l->backlog_tail = NULL;
    l->nbacklog = 0;
    /* The pool carries only the client reports. If closing it is left
     * behind, its callbacks may still come: l is then never freed. */
    peer_pool *p = l->peers;
    l->peers = NULL;
    if (!pool_close_bounded(p, 5000))
        l->abandoned = 1;
}

int mload_keys_written(mload *l)
{
    int n = 0;
    for (int k = 0; k <= l->o.nkeys; k++)
        n += l->keys[k].n > 0;
    return n;
}

/* Reads keys[0..n) in one request per shard. Keys whose replica answered
 * WRONG_SHARD (the ring changed meanwhile) go to retry[] (*nretry); the
 * others are checked. 0, or the transport error of a request. */
static int verify_chunk(mload *l, const ring *r, int tier, const int *keys, size_t n, wire_arena *a,
                        long *missing, int *retry, size_t *nretry, char *err, size_t errlen)
{
    Trellis__KeyOp *ops[MLOAD_VERIFY_CHUNK];
    Trellis__KeyResult *res[MLOAD_VERIFY_CHUNK];
    char names[MLOAD_VERIFY_CHUNK][MLOAD_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t klen = key_name(l, keys[i], names[i]);
        ops[i] = tkv_op_get(a, names[i], klen, LAT_NONE);
    }
    int rc = tkv_send_routed(r, tier, 0, ops, n, TKV_TIMEOUT_MS, a, res);
    if (rc != TRELLIS_OK) {
        for (size_t i = 0; i < n; i++)
            retry[(*nretry)++] = keys[i];
        if (!err[0])
            snprintf(err, errlen, "reading %zu keys: %s", n, trellis_status_name(rc));
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        kstate *ks = &l->keys[keys[i]];
        int st = (int)res[i]->status;
        if (st == TRELLIS_WRONG_SHARD || st == TRELLIS_UNAVAILABLE || st == TRELLIS_TIMEOUT) {
            retry[(*nretry)++] = keys[i];
            continue;
        }
        if (st != TRELLIS_OK) {
            if (!err[0])
                snprintf(err, errlen, "key %s: %s (%zu acknowledged members)", names[i],
                         trellis_status_name(st), ks->n);
            *missing += (long)ks->n;
            continue;
        }
        for (size_t j = 0; j < ks->n; j++) {
            char mem[MLOAD_MEMBER_MAX];
            size_t mlen = member_of(l, ks->acked[j], mem);
            if (res[i]->type != TRELLIS__LATTICE_TYPE__SET ||
                !lat_set_contains(res[i]->value.data, res[i]->value.len, mem, mlen)) {
                if (!err[0])
                    snprintf(err, errlen, "key %s: acknowledged member %u missing", names[i],
                             ks->acked[j]);
                (*missing)++;
            }
        }
    }
    return TRELLIS_OK;
}

long mload_verify(mload *l, char *err, size_t errlen)
{
    err[0] = '\0';
    int *pending_keys = calloc((size_t)l->o.nkeys + 1, sizeof(int));
    int *retry = calloc((size_t)l->o.nkeys + 1, sizeof(int));
    wire_arena *a = wire_arena_new();
    if (!pending_keys || !retry || !a) {
        free(pending_keys);
        free(retry);
        wire_arena_free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t npending_keys = 0;
    for (int k = 0; k <= l->o.nkeys; k++)
        if (l->keys[k].n)
            pending_keys[npending_keys++] = k;
    long missing = 0;
    /* Keys caught in a ring change are read again with a newer ring. */
    for (int attempt = 0; attempt < MLOAD_VERIFY_TRIES && npending_keys; attempt++) {
        if (attempt)
            usleep(200000);
        ring *r;
        uint64_t epoch;
        if (tkv_fetch_ring(l->router, &r, &epoch) != TRELLIS_OK)
            continue;
        int tier = has_tier(r, RING_TIER_MEMORY) ? RING_TIER_MEMORY : RING_TIER_DISK;
        size_t nretry = 0;
        err[0] = '\0';
        for (size_t i = 0; i < npending_keys; i += MLOAD_VERIFY_CHUNK) {
            size_t n =
                npending_keys - i < MLOAD_VERIFY_CHUNK ? npending_keys - i : MLOAD_VERIFY_CHUNK;
            verify_chunk(l, r, tier, pending_keys + i, n, a, &missing, retry, &nretry, err, errlen);
            wire_arena_reset(a);
        }
        ring_free(r);
        memcpy(pending_keys, retry, nretry * sizeof(int));
        npending_keys = nretry;
    }
    for (size_t i = 0; i < npending_keys; i++)
        missing += (long)l->keys[pending_keys[i]].n;
    if (npending_keys && !err[0])
        snprintf(err, errlen, "%zu keys could not be read", npending_keys);
    free(pending_keys);
    free(retry);
    wire_arena_free(a);
    return missing;
}

void mload_free(mload *l)
{
    if (!l)
        return;
    mload_stop(l);
    if (l->abandoned)
        return; /* the closing thread may still reach l */
    peer_pool_free(l->peers);
    ring_free(l->r);
    if (l->keys)
        for (int k = 0; k <= l->o.nkeys; k++)
            free(l->keys[k].acked);
    free(l->keys);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
