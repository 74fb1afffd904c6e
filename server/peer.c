/*
 * peer.c - outgoing requests over raw req sockets.
 *
 * In raw mode nng leaves the request id to the application: the message
 * header carries 4 bytes, the id with its top bit set, and the reply comes
 * back with the same header. That lets one thread keep many requests in
 * flight per peer and wait for all of them with poll().
 *
 * A peer's socket stays open until the pool is freed, idle or not: closing
 * it would block the owner's thread (a shard's, a router's) on nng's
 * teardown while it serves, and its peers are the cluster's members, whose
 * addresses a deployment reuses (cluster.sh's port layout, a StatefulSet's
 * pod names), so the pool does not grow without bound. nng redials a peer
 * that went away, at most once a second (net_dial).
 */
#include "server/peer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>

#include "base/clock.h"
#include "base/log.h"

#define PEER_CLOSE_WAIT_MS 500
#define PEER_SENDBUF       256
#define PEER_MAX_DELAYED   4096
/* Requests unanswered per peer. A raw rep server (nng's xrep0) queues at
 * most 64 replies per connection and silently drops the rest when the
 * requester is slow to read them; with no more requests than that in
 * flight, no reply can be dropped. */
#define PEER_MAX_INFLIGHT 64

typedef struct pending {
    struct pending *next;
    uint32_t id;
    peer_done_fn done;
    void *arg;
    uint64_t deadline;
} pending;

typedef struct delayed {
    struct delayed *next;
    nng_msg *msg;
    uint64_t release;
    char url[NET_URL_MAX];
} delayed;

typedef struct peer {
    char url[NET_URL_MAX];
    nng_socket sock;
    nng_dialer dialer;
    int fd;
    pending *pend;
    int inflight;
    /* Connections up, and whether one ever was: nng's pipe events, on its
     * own threads. */
    atomic_int pipes;
    atomic_int ever;
    uint64_t created_ms;
} peer;

struct peer_pool {
    peer **peers;
    int npeers, cap;
    uint32_t next_id;
    const net_tls *tls;
    wire_limits lim;
    char token[NET_TOKEN_MAX];
    wire_arena *arena;
    peer_faults faults;
    uint64_t rng;
    delayed *delayed_head;
    int ndelayed;
    int total_inflight;
    unsigned fds_gen; /* changes whenever a peer (and its descriptor) comes or goes */
};

static uint64_t pool_rand(peer_pool *p)
{
    /* splitmix64 */
    uint64_t z = (p->rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

int peer_pool_new(const net_tls *tls, const wire_limits *lim, const char *token, peer_pool **out)
{
    peer_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return TRELLIS_INTERNAL;
    p->arena = wire_arena_new();
    if (!p->arena) {
        free(p);
        return TRELLIS_INTERNAL;
    }
    p->tls = tls;
    p->lim = *lim;
    snprintf(p->token, sizeof(p->token), "%s", token ? token : "");
    p->next_id = (uint32_t)clock_mono_us();
    p->rng = clock_mono_us();
    *out = p;
    return TRELLIS_OK;
}

void peer_set_faults(peer_pool *p, const peer_faults *f)
{
    p->faults = *f;
    if (f->seed)
        p->rng = f->seed;
}

/* Runs a request's completion and frees its record. */
static void pending_done(pending *q, int status, const Trellis__Envelope *reply)
{
    if (q->done)
        q->done(q->arg, status, reply);
    free(q);
}

static void peer_fail_all(peer_pool *p, peer *pe, int status)
{
    while (pe->pend) {
        pending *q = pe->pend;
        pe->pend = q->next;
        pe->inflight--;
        p->total_inflight--;
        pending_done(q, status, NULL);
    }
}

static void peer_close(peer_pool *p, int i)
{
    peer *pe = p->peers[i];
    peer_fail_all(p, pe, TRELLIS_UNAVAILABLE);
    nng_close(pe->sock);
    free(pe);
    p->peers[i] = p->peers[--p->npeers];
    p->fds_gen++;
}

void peer_pool_free(peer_pool *p)
{
    if (!p)
        return;
    /* Let requests in flight finish first, briefly: nng 1.5.2 can block for
     * good in nng_close on a raw req socket with requests outstanding. */
    uint64_t until = clock_mono_ms() + PEER_CLOSE_WAIT_MS;
    while (p->total_inflight > 0 && clock_mono_ms() < until) {
        struct pollfd fds[64];
        int n = peer_pollfds(p, fds, 64);
        poll(fds, (nfds_t)n, 10);
        peer_process(p, clock_mono_ms());
    }
    while (p->npeers)
        peer_close(p, p->npeers - 1);
    while (p->delayed_head) {
        delayed *d = p->delayed_head;
        p->delayed_head = d->next;
        nng_msg_free(d->msg);
        free(d);
    }
    wire_arena_free(p->arena);
    free(p->peers);
    free(p);
}

static int peer_find(const peer_pool *p, const char *url)
{
    for (int i = 0; i < p->npeers; i++)
        if (strcmp(p->peers[i]->url, url) == 0)
            return i;
    return -1;
}

/* nng's pipe events (on its threads): connections up and down. */
static void peer_pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void)pipe;
    peer *pe = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&pe->pipes, 1);
        atomic_store(&pe->ever, 1);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&pe->pipes, 1);
    }
}

int peer_reachable(peer_pool *p, const char *url)
{
    int i = peer_find(p, url);
    if (i < 0)
        return 1;
    const peer *pe = p->peers[i];
    if (atomic_load(&pe->pipes) > 0)
        return 1;
    return !atomic_load(&pe->ever) && clock_mono_ms() - pe->created_ms < PEER_DOWN_AFTER_MS;
}

void peer_redial(peer_pool *p, const char *url)
{
    int i = peer_find(p, url);
    if (i < 0)
        return;
    peer *pe = p->peers[i];
    if (atomic_load(&pe->pipes) > 0)
        return;
    /* The old dialer holds no connection: closing it stops its timer and
     * any connect under way, and closes no pipe. */
    nng_dialer fresh;
    if (net_dial_get(pe->sock, url, p->tls, &fresh) != TRELLIS_OK)
        return; /* the old one goes on */
    nng_dialer_close(pe->dialer);
    pe->dialer = fresh;
    log_debug("peer %s: redialed", url);
}

static peer *peer_get(peer_pool *p, const char *url)
{
    int i = peer_find(p, url);
    if (i >= 0)
        return p->peers[i];
    if (p->npeers == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        peer **n = realloc(p->peers, (size_t)cap * sizeof(*n));
        if (!n)
            return NULL;
        p->peers = n;
        p->cap = cap;
    }
    peer *pe = calloc(1, sizeof(*pe));
    if (!pe)
        return NULL;
    snprintf(pe->url, sizeof(pe->url), "%s", url);
    atomic_init(&pe->pipes, 0);
    atomic_init(&pe->ever, 0);
    pe->created_ms = clock_mono_ms();
    if (nng_req0_open_raw(&pe->sock) != 0) {
        free(pe);
        return NULL;
    }
    nng_pipe_notify(pe->sock, NNG_PIPE_EV_ADD_POST, peer_pipe_event, pe);
    nng_pipe_notify(pe->sock, NNG_PIPE_EV_REM_POST, peer_pipe_event, pe);
    nng_socket_set_int(pe->sock, NNG_OPT_SENDBUF, PEER_SENDBUF);
    nng_socket_set_int(pe->sock, NNG_OPT_RECVBUF, PEER_SENDBUF);
    if (net_set_limits(pe->sock, p->lim.max_message, 0, 0) != TRELLIS_OK ||
        nng_socket_get_int(pe->sock, NNG_OPT_RECVFD, &pe->fd) != 0 ||
        net_dial_get(pe->sock, url, p->tls, &pe->dialer) != TRELLIS_OK) {
        nng_close(pe->sock);
        free(pe);
        return NULL;
    }
    p->peers[p->npeers++] = pe;
    p->fds_gen++;
    return pe;
}

static int peer_raw_send(peer *pe, nng_msg *m)
{
    int rv = nng_sendmsg(pe->sock, m, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_msg_free(m);
        return rv == NNG_EAGAIN ? TRELLIS_OVERLOADED : net_status(rv);
    }
    return TRELLIS_OK;
}

/* A request's message, headed by its id: every path of peer_send frees it
 * or hands it to nng_sendmsg (tests/lsan.supp names this function for what
 * nng 1.5.2 loses of the messages handed to it). TRELLIS_OK with *out set,
 * or the encoding's error. */
static int peer_request_msg(Trellis__Envelope *env, uint32_t id, nng_msg **out)
{
    int rc = wire_to_msg(env, out);
    if (rc != TRELLIS_OK)
        return rc;
    if (nng_msg_header_append_u32(*out, id) != 0) {
        nng_msg_free(*out);
        *out = NULL;
        return TRELLIS_INTERNAL;
    }
    return TRELLIS_OK;
}

int peer_send(peer_pool *p, const char *url, Trellis__Envelope *env, int timeout_ms, uint64_t epoch,
              int flags, peer_done_fn done, void *arg)
{
    peer *pe = peer_get(p, url);
    if (!pe)
        return TRELLIS_UNAVAILABLE;
    if (pe->inflight >= PEER_MAX_INFLIGHT)
        return TRELLIS_OVERLOADED;
    env->version = WIRE_VERSION;
    env->ring_epoch = epoch;
    if (p->token[0]) {
        env->auth.data = (uint8_t *)p->token;
        env->auth.len = strlen(p->token);
    }
    uint32_t id = (p->next_id++ | 0x80000000u);
    nng_msg *m;
    int rc = peer_request_msg(env, id, &m);
    if (rc != TRELLIS_OK)
        return rc;
    pending *q = malloc(sizeof(*q));
    if (!q) {
        nng_msg_free(m);
        return TRELLIS_INTERNAL;
    }
    uint64_t now = clock_mono_ms();
    const peer_faults *f = &p->faults;
    int faulty = !(flags & PEER_NO_FAULTS);
    int drop = faulty && f->drop_percent && (int)(pool_rand(p) % 100) < f->drop_percent;
    int dup = faulty && f->dup_percent && (int)(pool_rand(p) % 100) < f->dup_percent;
    if (drop) {
        nng_msg_free(m); /* lost on the way: the request times out */
    } else if (faulty && f->delay_ms && p->ndelayed < PEER_MAX_DELAYED) {
        delayed *d = malloc(sizeof(*d));
        if (!d) {
            nng_msg_free(m);
            free(q);
            return TRELLIS_INTERNAL;
        }
        d->msg = m;
        d->release = now + pool_rand(p) % (uint64_t)(f->delay_ms + 1);
        snprintf(d->url, sizeof(d->url), "%s", url);
        /* Delayed messages go out in release order, so reordering happens. */
        delayed **pp = &p->delayed_head;
        while (*pp && (*pp)->release <= d->release)
            pp = &(*pp)->next;
        d->next = *pp;
        *pp = d;
        p->ndelayed++;
    } else {
        nng_msg *copy = NULL;
        if (dup && nng_msg_dup(&copy, m) != 0)
            copy = NULL;
        rc = peer_raw_send(pe, m);
        if (rc != TRELLIS_OK) {
            if (copy)
                nng_msg_free(copy);
            free(q);
            return rc;
        }
        if (copy)
            peer_raw_send(pe, copy);
    }
    q->id = id;
    q->done = done;
    q->arg = arg;
    q->deadline = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1000);
    q->next = pe->pend;
    pe->pend = q;
    pe->inflight++;
    p->total_inflight++;
    return TRELLIS_OK;
}

int peer_inflight(peer_pool *p, const char *url)
{
    int i = peer_find(p, url);
    return i < 0 ? 0 : p->peers[i]->inflight;
}

int peer_total_inflight(const peer_pool *p)
{
    return p->total_inflight;
}

unsigned peer_fds_gen(const peer_pool *p)
{
    return p->fds_gen;
}

int peer_pollfds(peer_pool *p, struct pollfd *fds, int max)
{
    int n = 0;
    for (int i = 0; i < p->npeers && n < max; i++) {
        fds[n].fd = p->peers[i]->fd;
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        n++;
    }
    return n;
}

/* Takes the pending record for id off the peer's list; NULL if unknown (a
 * duplicate or a reply after its deadline). */
static pending *peer_take(peer *pe, uint32_t id)
{
    for (pending **pp = &pe->pend; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            pending *q = *pp;
            *pp = q->next;
            return q;
        }
    }
    return NULL;
}

static void peer_receive(peer_pool *p, peer *pe)
{
    nng_msg *m;
    while (nng_recvmsg(pe->sock, &m, NNG_FLAG_NONBLOCK) == 0) {
        uint32_t id = 0;
        if (nng_msg_header_len(m) >= 4)
            nng_msg_header_chop_u32(m, &id);
        pending *q = peer_take(pe, id);
        if (!q) {
            nng_msg_free(m);
            continue;
        }
        pe->inflight--;
        p->total_inflight--;
        Trellis__Envelope *env = NULL;
        wire_arena_reset(p->arena);
        int rc = wire_decode(p->arena, nng_msg_body(m), nng_msg_len(m), &p->lim, &env);
        nng_msg_free(m);
        pending_done(q, rc == TRELLIS_OK ? TRELLIS_OK : TRELLIS_UNAVAILABLE,
                     rc == TRELLIS_OK ? env : NULL);
    }
    wire_arena_reset(p->arena);
}

static void peer_expire(peer_pool *p, peer *pe, uint64_t now)
{
    for (pending **pp = &pe->pend; *pp;) {
        pending *q = *pp;
        if (q->deadline > now) {
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        pe->inflight--;
        p->total_inflight--;
        pending_done(q, TRELLIS_TIMEOUT, NULL);
    }
}

void peer_process(peer_pool *p, uint64_t now_ms)
{
    while (p->delayed_head && p->delayed_head->release <= now_ms) {
        delayed *d = p->delayed_head;
        p->delayed_head = d->next;
        p->ndelayed--;
        peer *pe = peer_get(p, d->url);
        if (pe)
            peer_raw_send(pe, d->msg);
        else
            nng_msg_free(d->msg);
        free(d);
    }
    for (int i = 0; i < p->npeers; i++)
        peer_receive(p, p->peers[i]);
    for (int i = 0; i < p->npeers; i++)
        peer_expire(p, p->peers[i], now_ms);
}

uint64_t peer_next_deadline(const peer_pool *p)
{
    uint64_t next = UINT64_MAX;
    if (p->delayed_head)
        next = p->delayed_head->release;
    for (int i = 0; i < p->npeers; i++)
        for (const pending *q = p->peers[i]->pend; q; q = q->next)
            if (q->deadline < next)
                next = q->deadline;
    return next;
}
