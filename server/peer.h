/*
 * peer.h - outgoing requests to other servers (a shard's gossip, hand-off,
 * anti-entropy, read-through): one raw req socket per peer address, many
 * requests in flight on each, replies matched by request id and delivered
 * to a callback on the shard's own thread, every request with a deadline.
 *
 * Testing knobs (kvs.fault_*) drop, duplicate or delay outgoing messages so
 * that tests can show replication survives loss without a lossy network.
 */
#ifndef TRELLIS_PEER_H
#define TRELLIS_PEER_H

#include <poll.h>
#include <stdint.h>

#include "base/net.h"
#include "base/wire.h"

typedef struct peer_pool peer_pool;

/* The completion of one request, nng aio style: the callback and its
 * argument travel with the request, so the pool knows nothing of what the
 * request was for. Runs once, on the thread that calls peer_process (or
 * peer_pool_free): status TRELLIS_OK with the decoded reply (valid during
 * the call only), or TRELLIS_TIMEOUT/UNAVAILABLE with reply NULL, also for
 * every request still pending when the pool is freed. An ErrorReply
 * arrives as TRELLIS_OK with body ERROR. arg belongs to the callback from
 * then on. */
typedef void (*peer_done_fn)(void *arg, int status, const Trellis__Envelope *reply);

typedef struct peer_faults {
    int drop_percent;
    int dup_percent;
    int delay_ms;
    uint64_t seed;
} peer_faults;

/* peer_send flags. */
enum {
    PEER_NO_FAULTS = 1, /* never subject to the testing faults (a request a client waits for) */
};

int peer_pool_new(const net_tls *tls, const wire_limits *lim, const char *token, peer_pool **out);
/* Fails every pending request (callbacks with TRELLIS_UNAVAILABLE), closes
 * the sockets and frees the pool. */
void peer_pool_free(peer_pool *p);
/* Testing knobs: drop, duplicate or delay outgoing requests (all but those
 * sent with PEER_NO_FAULTS). */
void peer_set_faults(peer_pool *p, const peer_faults *f);

/* Sends env (version, epoch and token filled in) to url. On TRELLIS_OK
 * done(arg, ...) runs exactly once later (done may be NULL for a request
 * whose reply does not matter); on failure it never runs and arg stays the
 * caller's. TRELLIS_OVERLOADED when the peer's send queue is full or 64
 * requests to it are unanswered (more could lose replies). */
int peer_send(peer_pool *p, const char *url, Trellis__Envelope *env, int timeout_ms, uint64_t epoch,
              int flags, peer_done_fn done, void *arg);

/* Requests in flight to url (0 if unknown). */
int peer_inflight(peer_pool *p, const char *url);
#define PEER_DOWN_AFTER_MS 1000 /* a peer never connected by then counts as unreachable */

/* 0 when the pool knows that url cannot be reached now: its connection went
 * away, or it never came up in PEER_DOWN_AFTER_MS; 1 otherwise, also for
 * an address the pool never sent to. nng redials by itself, and the answer
 * turns back to 1 once a connection is up again. */
int peer_reachable(peer_pool *p, const char *url);
/* A process now listens at url (a node joined or restarted there): when
 * the pool's connection to url is down, dials it at once with a new
 * dialer instead of waiting out the old one's back-off (up to a second)
 * for the process that was there before. Nothing when url is unknown or
 * connected. */
void peer_redial(peer_pool *p, const char *url);
/* Total requests in flight. */
int peer_total_inflight(const peer_pool *p);

/* A number that changes whenever the set of descriptors peer_pollfds
 * returns may have changed (a loop that registers them with epoll
 * re-registers then). */
unsigned peer_fds_gen(const peer_pool *p);
/* Fills up to max pollfds with the peers' receive descriptors; returns how
 * many. */
int peer_pollfds(peer_pool *p, struct pollfd *fds, int max);
/* Receives every waiting reply, expires requests past their deadline and
 * releases delayed messages. Closes nothing: a peer's socket lives as long
 * as the pool (peer.c). */
void peer_process(peer_pool *p, uint64_t now_ms);
/* The earliest deadline or delayed release (ms), UINT64_MAX if none. */
uint64_t peer_next_deadline(const peer_pool *p);

#endif
