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

/* Called once per request sent: status TRELLIS_OK with the decoded reply
 * (valid during the call), or TRELLIS_TIMEOUT/UNAVAILABLE with reply NULL.
 * An ErrorReply arrives as TRELLIS_OK with body ERROR. */
typedef void (*peer_reply_fn)(void *owner, int kind, void *ctx, int status,
                              const Trellis__Envelope *reply);

typedef struct peer_faults {
    int drop_percent;
    int dup_percent;
    int delay_ms;
    uint64_t seed;
    uint32_t kinds; /* bit k set: requests of kind k are subject to faults (0: all) */
} peer_faults;

int peer_pool_new(const net_tls *tls, const wire_limits *lim, const char *token, peer_reply_fn cb,
                  void *owner, peer_pool **out);
/* Fails every pending request (callbacks with TRELLIS_UNAVAILABLE), closes
 * the sockets and frees the pool. */
void peer_pool_free(peer_pool *p);
void peer_set_faults(peer_pool *p, const peer_faults *f);

/* Sends env (version and token filled in) to url. On TRELLIS_OK the callback
 * runs exactly once later; on failure it never runs and ctx stays the
 * caller's. TRELLIS_OVERLOADED when the peer's send queue is full or 64
 * requests to it are unanswered (more could lose replies). */
int peer_send(peer_pool *p, const char *url, Trellis__Envelope *env, int kind, void *ctx,
              int timeout_ms, uint64_t epoch);

/* Requests in flight to url (0 if unknown). */
int peer_inflight(peer_pool *p, const char *url);
/* Total requests in flight. */
int peer_total_inflight(const peer_pool *p);

/* Fills up to max pollfds with the peers' receive descriptors; returns how
 * many. */
int peer_pollfds(peer_pool *p, struct pollfd *fds, int max);
/* Receives every waiting reply, expires requests past their deadline,
 * releases delayed messages, and closes peers idle for a minute. */
void peer_process(peer_pool *p, uint64_t now_ms);
/* The earliest deadline or delayed release (ms), UINT64_MAX if none. */
uint64_t peer_next_deadline(const peer_pool *p);

#endif
