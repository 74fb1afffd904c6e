/*
 * shard.c - the shard thread: its loop, mail, rate cap and statistics.
 */
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/rep.h>

#include "base/clock.h"
#include "base/log.h"

/* ---- shared rings ------------------------------------------------------------ */

ring_ref *ring_ref_new(ring *r)
{
    ring_ref *rr = malloc(sizeof(*rr));
    if (!rr)
        return NULL;
    rr->r = r;
    atomic_init(&rr->refs, 1);
    return rr;
}

void ring_ref_put_ptr(void *rr)
{
    ring_ref_put(rr);
}

ring_ref *ring_ref_get(ring_ref *rr)
{
    if (rr)
        atomic_fetch_add(&rr->refs, 1);
    return rr;
}

void ring_ref_put(ring_ref *rr)
{
    if (rr && atomic_fetch_sub(&rr->refs, 1) == 1) {
        ring_free(rr->r);
        free(rr);
    }
}

void shard_unconfirmed_free(shard_unconfirmed *u)
{
    if (!u)
        return;
    ring_ref_put(u->rr);
    free(u);
}

void shard_unconfirmed_free_ptr(void *u)
{
    shard_unconfirmed_free(u);
}

/* ---- statistics ----------------------------------------------------------------- */

/* The sketch's top SHARD_HOT_KEYS entries into out; how many. */
static int stats_top(topk *t, shard_hot *out)
{
    int n = topk_sorted(t);
    n = n < SHARD_HOT_KEYS ? n : SHARD_HOT_KEYS;
    for (int i = 0; i < n; i++) {
        out[i].klen = t->e[i].klen;
        memcpy(out[i].key, t->e[i].key, t->e[i].klen);
        out[i].count = t->e[i].count;
        out[i].err = t->e[i].err;
    }
    return n;
}

static void stats_publish(shard *s, uint64_t now_us)
{
    shard_stats *out = malloc(sizeof(*out));
    mb_msg *m = mailbox_msg(NODE_MSG_STATS);
    if (!out || !m) {
        free(out);
        free(m);
        return;
    }
    shard_stats *c = &s->st_cur;
    uint64_t period = now_us - s->period_start_us;
    c->shard = (uint32_t)s->index;
    c->period_us = period ? period : 1;
    c->busy = period ? (double)s->busy_us / (double)period : 0;
    /* Under the simulated service-rate cap, busy is the share of the cap the
     * period used (the CPU time would read near zero until the queue
     * builds). */
    if (s->cfg->kvs.max_ops_per_sec > 0 && period) {
        double used = s->tokens_used / ((double)s->cfg->kvs.max_ops_per_sec * (double)period / 1e6);
        if (used > c->busy)
            c->busy = used;
    }
    if (c->busy > 1)
        c->busy = 1;
    c->queue_len = s->qlen;
    store_stats_get(s->st, &c->store);
    c->nhot = stats_top(&s->hot, c->hot);
    c->nfound = stats_top(&s->found, c->found);
    c->demoted = c->demoted_total - s->demoted_reported;
    s->demoted_reported = c->demoted_total;
    *out = *c;
    m->ptr = out;
    m->free_ptr = free;
    mailbox_post(s->node_mb, m);

    /* The next period starts from zero; totals carry on. */
    c->ops = c->reads = c->writes = c->errors = c->overloaded = 0;
    hist_reset(&c->service);
    topk_reset(&s->hot);
    topk_reset(&s->found);
    s->busy_us = 0;
    s->tokens_used = 0;
    s->period_start_us = now_us;
}

/* ---- rate cap ------------------------------------------------------------------- */

/* Refills the token bucket; at most 10 ms worth of burst. */
static void tokens_refill(shard *s, uint64_t now_us)
{
    double rate = (double)s->cfg->kvs.max_ops_per_sec;
    double dt = (double)(now_us - s->tokens_at_us) / 1e6;
    s->tokens_at_us = now_us;
    s->tokens += rate * dt;
    double burst = rate / 100 > 1 ? rate / 100 : 1;
    if (s->tokens > burst)
        s->tokens = burst;
}

/* Queues an nng message, or a kept client request (rq), for the rate
 * cap. */
static void queue_push(shard *s, nng_msg *m, shard_req *rq, uint64_t now_us)
{
    queued_req *q = malloc(sizeof(*q));
    if (!q) {
        if (m)
            shard_reply_error(s, m, TRELLIS_OVERLOADED, "out of memory");
        if (rq) {
            rq->sink->fail(s, rq, TRELLIS_OVERLOADED, "out of memory");
            shard_req_free(rq);
        }
        return;
    }
    q->msg = m;
    q->rq = rq;
    q->arrived_us = now_us;
    q->next = NULL;
    if (s->qtail)
        s->qtail->next = q;
    else
        s->qhead = q;
    s->qtail = q;
    s->qlen++;
}

int shard_cap_admit(shard *s, shard_req *rq)
{
    if (s->cfg->kvs.max_ops_per_sec <= 0)
        return 0;
    if (s->qlen >= (size_t)s->cfg->kvs.max_pending) {
        s->st_cur.overloaded++;
        shard_count_error(s, TRELLIS_OVERLOADED);
        rq->sink->fail(s, rq, TRELLIS_OVERLOADED, "shard queue full");
        return 1;
    }
    shard_req *k = shard_req_keep(rq);
    if (!k) {
        shard_count_error(s, TRELLIS_INTERNAL);
        rq->sink->fail(s, rq, TRELLIS_INTERNAL, "out of memory");
        return 1;
    }
    queue_push(s, NULL, k, rq->arrived_us);
    return 1;
}

/* Serves queued requests while tokens last. */
static void queue_serve(shard *s, uint64_t now_us)
{
    tokens_refill(s, now_us);
    /* A request is admitted while a token is left and then pays for the
     * operations it carried (a batch may leave the bucket in debt, which
     * later requests wait out): the cap counts operations, as a node's
     * capacity would, however clients group them into requests. */
    while (s->qhead && s->tokens >= 1) {
        queued_req *q = s->qhead;
        s->qhead = q->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->qlen--;
        uint64_t before = s->st_cur.total_ops;
        if (q->msg) {
            shard_handle_msg(s, q->msg, q->arrived_us);
        } else {
            shard_exec(s, q->rq, 1);
            shard_req_free(q->rq);
        }
        double cost = (double)(s->st_cur.total_ops - before);
        if (cost < 1)
            cost = 1;
        s->tokens -= cost;
        s->tokens_used += cost;
        wire_arena_reset(s->arena); /* see shard_receive */
        free(q);
    }
}

static void queue_drop_all(shard *s)
{
    while (s->qhead) {
        queued_req *q = s->qhead;
        s->qhead = q->next;
        if (q->msg)
            nng_msg_free(q->msg);
        shard_req_free(q->rq);
        free(q);
    }
    s->qtail = NULL;
    s->qlen = 0;
}

/* Receives what waits on the listening socket. */
static void shard_receive(shard *s)
{
    int capped = s->cfg->kvs.max_ops_per_sec > 0;
    for (int i = 0; i < SHARD_DRAIN_PER_TURN; i++) {
        nng_msg *m;
        if (nng_recvmsg(s->rep, &m, NNG_FLAG_NONBLOCK) != 0)
            return;
        uint64_t now = clock_mono_us();
        if (!capped) {
            shard_handle_msg(s, m, now);
            /* The request is answered (or deferred, keeping its message
             * for a rerun): release its decode now. Each decode may take
             * its whole budget (decode_budget_factor times the message),
             * so keeping a turn's requests in the arena could hold
             * hundreds of them at once. Nothing else of this turn lives in
             * the arena yet. */
            wire_arena_reset(s->arena);
            continue;
        }
        if (s->qlen >= (size_t)s->cfg->kvs.max_pending) {
            s->st_cur.overloaded++;
            shard_reply_error(s, m, TRELLIS_OVERLOADED, "shard queue full");
            continue;
        }
        queue_push(s, m, NULL, now);
    }
}

/* ---- mail ------------------------------------------------------------------------ */

static void shard_set_ring(shard *s, ring_ref *rr)
{
    ring_ref *old = s->rr;
    s->rr = rr;
    s->epoch = ring_epoch(rr->r);
    s->self = ring_find_node(rr->r, s->node_id);
    s->self_state = s->self >= 0 ? ring_node_at(rr->r, s->self)->state : 0;
    if (old)
        repl_redial_new(s, old->r);
    ring_ref_put(old);
    repl_on_ring(s);
}

static void shard_mail(shard *s)
{
    mb_msg *m = mailbox_take(&s->mb);
    while (m) {
        mb_msg *next = m->next;
        switch (m->type) {
        case SHARD_MSG_RING:
            shard_set_ring(s, m->ptr);
            break;
        case SHARD_MSG_STOP:
            s->stop = 1;
            break;
        case SHARD_MSG_DRAIN:
            handoff_drain(s);
            break;
        case SHARD_MSG_SERVE_OFF:
            /* The node announced LEFT: clients go to the new owners. */
            s->serve_off = 1;
            handoff_final_pass(s);
            break;
        case SHARD_MSG_DEMOTE:
            tier_demote_start(s, m->u64[0], m->u64[1]);
            break;
        case SHARD_MSG_UNCONFIRMED:
            shard_unconfirmed_free(s->unconf);
            s->unconf = m->ptr;
            break;
        case SHARD_MSG_LOG_UNSAFE:
            handoff_log_unsafe(s);
            break;
        default:
            break;
        }
        free(m);
        m = next;
    }
}

/* ---- the loop ---------------------------------------------------------------------- */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Watches the peers' receive descriptors again when the set changed. */
static void sync_peer_watches(shard *s, ev_watch_cb cb)
{
    unsigned gen = peer_fds_gen(s->peers);
    if (gen == s->peer_gen && s->npeer_w >= 0)
        return;
    for (int i = 0; i < s->npeer_w; i++)
        ev_watch_stop(&s->peer_w[i]);
    struct pollfd fds[SHARD_MAX_FDS];
    int n = peer_pollfds(s->peers, fds, SHARD_MAX_FDS);
    s->npeer_w = 0;
    for (int i = 0; i < n; i++)
        if (ev_watch_start(s->loop, &s->peer_w[s->npeer_w], fds[i].fd, EV_READ, cb, s) ==
            TRELLIS_OK)
            s->npeer_w++;
    s->peer_gen = gen;
}

static void on_rep(ev_watch *w, uint32_t ev)
{
    (void)ev;
    shard_receive(w->arg);
}

static void on_mail(ev_watch *w, uint32_t ev)
{
    (void)ev;
    shard_mail(w->arg);
}

/* A peer's reply waits: peer_process, which runs every turn, takes it. */
static void on_peer(ev_watch *w, uint32_t ev)
{
    (void)w;
    (void)ev;
}

/* The earliest timer: statistics, replies' deadlines, replication's next
 * step, held replies' expiry, the rate cap's queue. */
static uint64_t next_timer(shard *s, uint64_t now_ms)
{
    uint64_t next = min_u64(s->next_stats_ms, peer_next_deadline(s->peers));
    /* Timers only for work that can go on now: a scan waiting for its
     * acks, or an anti-entropy round waiting for a reply, sleeps until the
     * reply (or its deadline) wakes the loop. */
    next = min_u64(next, gossip_next_ms(s));
    next = min_u64(next, handoff_next_ms(s, now_ms));
    next = min_u64(next, ae_next_ms(s));
    next = min_u64(next, tier_next_ms(s, now_ms));
    next = min_u64(next, expiry_next_ms(s));
    next = min_u64(next, pending_next_ms(s, now_ms));
    next = min_u64(next, shard_holds_expire(s, now_ms));
    if (s->qhead)
        next = min_u64(next, now_ms + 1);
    return next;
}

/* The shard's loop: one thread runs everything the shard does, to
 * completion, and sleeps in epoll until a descriptor or its next timer
 * wakes it. A turn reads and answers what arrived (clients' frames, the
 * nng socket, mail, peers' replies), runs the timers, and writes every
 * connection's pending output before it sleeps again. */
static void *shard_main(void *arg)
{
    shard *s = arg;
    char tag[16];
    snprintf(tag, sizeof(tag), "s%d", s->index);
    log_set_thread_tag(tag);
    uint64_t now_ms = clock_mono_ms();
    s->next_stats_ms = now_ms + (uint64_t)s->cfg->kvs.stats_period_ms;
    s->gossip.next_ms = now_ms + (uint64_t)s->cfg->kvs.gossip_period_ms;
    s->period_start_us = clock_mono_us();
    s->tokens_at_us = s->period_start_us;
    if (ev_watch_start(s->loop, &s->rep_w, s->rep_fd, EV_READ, on_rep, s) != TRELLIS_OK ||
        ev_watch_start(s->loop, &s->mb_w, s->mb.fd, EV_READ, on_mail, s) != TRELLIS_OK) {
        log_error("shard %d: epoll refused its descriptors", s->index);
        return NULL;
    }
    s->npeer_w = -1;

    while (!s->stop) {
        now_ms = clock_mono_ms();
        uint64_t next = next_timer(s, now_ms);
        int timeout = next <= now_ms ? 0 : (int)min_u64(next - now_ms, 1000);
        sync_peer_watches(s, on_peer);
        if (ev_loop_wait(s->loop, timeout) < 0) {
            log_error("epoll: %s", strerror(errno));
            break;
        }
        uint64_t t0 = clock_mono_us();
        ev_loop_dispatch(s->loop);
        if (s->stop)
            break;
        if (s->qhead)
            queue_serve(s, t0);
        now_ms = clock_mono_ms();
        peer_process(s->peers, now_ms);
        gossip_step(s, now_ms);
        handoff_step(s, now_ms);
        tier_step(s, now_ms);
        ae_step(s, now_ms);
        expiry_step(s, now_ms);
        dp_step(s, now_ms);
        /* The writes of this turn's requests go to their pending replicas,
         * in one batch per destination; then replies produced by the timers
         * (deferred ones) leave. */
        pending_flush(s, now_ms);
        ev_loop_run_tasks(s->loop);
        uint64_t t1 = clock_mono_us();
        s->busy_us += t1 - t0;
        if (now_ms >= s->next_stats_ms) {
            stats_publish(s, t1);
            s->next_stats_ms = now_ms + (uint64_t)s->cfg->kvs.stats_period_ms;
        }
        wire_arena_reset(s->arena);
    }
    /* What clients are owed goes out before the connections close. */
    ev_loop_run_tasks(s->loop);
    return NULL;
}

/* ---- start and stop --------------------------------------------------------------- */

static void shard_free(shard *s)
{
    if (s->loop) {
        dp_close(s);
        ev_watch_stop(&s->rep_w);
        ev_watch_stop(&s->mb_w);
        for (int i = 0; i < s->npeer_w; i++)
            ev_watch_stop(&s->peer_w[i]);
    }
    if (s->rep_fd >= 0 || s->port)
        nng_close(s->rep);
    repl_fini(s);
    s->stop = 1; /* callbacks of failed requests only free their contexts */
    peer_pool_free(s->peers);
    queue_drop_all(s);
    shard_holds_drop(s);
    store_close(s->st);
    shard_unconfirmed_free(s->unconf);
    ring_ref_put(s->rr);
    wire_arena_free(s->arena);
    lat_buf_free(&s->b1);
    lat_buf_free(&s->b2);
    lat_buf_free(&s->b3);
    mailbox_fini(&s->mb);
    ev_loop_free(s->loop);
    free(s);
}

/* Everything but the socket and the thread. */
static int shard_init(const shard_opts *o, shard **out)
{
    *out = NULL;
    shard *s = calloc(1, sizeof(*s));
    if (!s) {
        store_close(o->st);
        return TRELLIS_INTERNAL;
    }
    s->rep_fd = -1;
    s->dp.lfd = -1;
    s->index = o->index;
    s->count = o->count;
    s->tier = o->tier;
    snprintf(s->node_id, sizeof(s->node_id), "%s", o->node_id);
    snprintf(s->url, sizeof(s->url), "%s", o->url);
    s->cfg = o->cfg;
    s->tls = o->tls;
    s->dp_tls = o->dp_tls;
    s->token = o->cfg->auth.token[0] ? o->cfg->auth.token : NULL;
    config_wire_limits(o->cfg, &s->lim);
    s->st = o->st;
    s->node_mb = o->node_mb;
    s->self = -1;
    hlc_init(&s->clock);
    hist_reset(&s->st_cur.service);
    topk_reset(&s->hot);
    topk_reset(&s->found);
    if (mailbox_init(&s->mb) != 0 || !(s->arena = wire_arena_new()) || repl_init(s) != TRELLIS_OK ||
        ev_loop_new(&s->loop) != TRELLIS_OK) {
        shard_free(s);
        return TRELLIS_INTERNAL;
    }
    int rc = peer_pool_new(o->tls, &s->lim, s->token, &s->peers);
    if (rc != TRELLIS_OK) {
        shard_free(s);
        return rc;
    }
    /* The testing knobs hit replication traffic only, not the disk-tier
     * lookups that answer clients (sent with PEER_NO_FAULTS). */
    uint64_t seed = 0;
    if (o->cfg->kvs.fault_seed) /* one stream per node and shard */
        seed = (uint64_t)o->cfg->kvs.fault_seed * 1000003u +
               ring_hash(o->node_id, strlen(o->node_id)) + (uint64_t)o->index;
    peer_faults f = {(int)o->cfg->kvs.fault_drop_percent, (int)o->cfg->kvs.fault_dup_percent,
                     (int)o->cfg->kvs.fault_delay_ms, seed};
    peer_set_faults(s->peers, &f);
    *out = s;
    return TRELLIS_OK;
}

int shard_start(const shard_opts *o, shard **out)
{
    shard *s;
    int rc = shard_init(o, &s);
    if (rc != TRELLIS_OK)
        return rc;
    int rv = nng_rep0_open_raw(&s->rep);
    if (rv != 0) {
        shard_free(s);
        return net_status(rv);
    }
    s->port = -1;
    /* Deep queues: replies wait here while the peer reads, requests while
     * the loop works on others. */
    nng_socket_set_int(s->rep, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_int(s->rep, NNG_OPT_RECVBUF, 1024);
    if ((rc = net_set_limits(s->rep, s->lim.max_message, 0, SHARD_REPLY_WAIT_MS)) != TRELLIS_OK ||
        (rc = net_listen(s->rep, o->url, o->tls, &s->port)) != TRELLIS_OK ||
        nng_socket_get_int(s->rep, NNG_OPT_RECVFD, &s->rep_fd) != 0) {
        log_error("shard %d: cannot serve on %s", o->index, o->url);
        shard_free(s);
        return rc != TRELLIS_OK ? rc : TRELLIS_INTERNAL;
    }
    if (o->data_port && (rc = dp_open(s, o->listen, o->data_port)) != TRELLIS_OK) {
        shard_free(s);
        return rc;
    }
    if (pthread_create(&s->thread, NULL, shard_main, s) != 0) {
        shard_free(s);
        return TRELLIS_INTERNAL;
    }
    s->started = 1;
    *out = s;
    return TRELLIS_OK;
}

int shard_open_detached(const shard_opts *o, shard_reply_hook hook, void *arg, shard **out)
{
    shard *s;
    int rc = shard_init(o, &s);
    if (rc != TRELLIS_OK)
        return rc;
    s->reply_hook = hook;
    s->reply_hook_arg = arg;
    s->period_start_us = clock_mono_us();
    s->tokens_at_us = s->period_start_us;
    *out = s;
    return TRELLIS_OK;
}

void shard_feed(shard *s, nng_msg *req)
{
    shard_handle_msg(s, req, clock_mono_us());
    pending_flush(s, clock_mono_ms());
    wire_arena_reset(s->arena);
}

void shard_feed_ring(shard *s, ring_ref *rr)
{
    shard_set_ring(s, rr);
}

void shard_feed_timers(shard *s)
{
    uint64_t now_ms = clock_mono_ms();
    peer_process(s->peers, now_ms);
    gossip_flush(s);
    handoff_step(s, now_ms);
    tier_step(s, now_ms);
    ae_step(s, now_ms);
    expiry_step(s, now_ms);
    pending_flush(s, now_ms);
    stats_publish(s, clock_mono_us());
    wire_arena_reset(s->arena);
}

int shard_feed_conn(shard *s, int fd)
{
    return dp_adopt(s, fd);
}

void shard_feed_io(shard *s)
{
    ev_loop_poll(s->loop, 0);
    pending_flush(s, clock_mono_ms());
    ev_loop_run_tasks(s->loop);
    wire_arena_reset(s->arena);
}

const char *shard_url(const shard *s)
{
    return s->url;
}

void shard_post(shard *s, mb_msg *m)
{
    mailbox_post(&s->mb, m);
}

void shard_stop(shard *s)
{
    if (!s)
        return;
    if (s->started) {
        mb_msg *m = mailbox_msg(SHARD_MSG_STOP);
        if (m)
            shard_post(s, m);
        else
            s->stop = 1; /* the loop wakes within a second */
        pthread_join(s->thread, NULL);
    }
    shard_free(s);
}
