/*
 * tframe.h - a small blocking client of the data plane for tests: one TCP
 * connection to a shard, frames built and parsed with base/frame.h, every
 * wait bounded. Tests use it to send well-formed and broken frames alike.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TFRAME_H
#define TRELLIS_TESTS_SUPPORT_TFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "base/frame.h"
#include "placement/ring.h"

#define TFRAME_TIMEOUT_MS 5000

typedef struct tframe tframe;

/* One operation to send. */
typedef struct tframe_op {
    uint8_t op, type;
    const void *key;
    size_t klen;
    const void *value;
    size_t vlen;
} tframe_op;

/* A frame received: its header and body (malloc'd), and for a REPLY with
 * status OK its results, pointing into the body. */
typedef struct tframe_reply {
    frame_header h;
    uint8_t *body;
    size_t nres;
    frame_result *res;
} tframe_reply;

/* Connects to host:port, or to a data-plane URL (tcp://host:port, IPv6
 * hosts in brackets, as tkv_replica_url gives). TRELLIS_OK,
 * TRELLIS_UNAVAILABLE, or TRELLIS_INVALID for a URL that is not one. */
int tframe_connect(const char *host, int port, tframe **out);
int tframe_connect_url(const char *url, tframe **out);
/* Connects to the data plane of the shard of `tier`'s nth replica of key
 * (0 = primary) in ring r, or of shard `shard` of node `node` (index)
 * with tframe_connect_node. */
int tframe_connect_key(const ring *r, int tier, size_t nth, const void *key, size_t klen,
                       tframe **out);
int tframe_connect_node(const ring *r, int node, uint32_t shard, tframe **out);
void tframe_close(tframe *t);

/* Sends bytes as they are. TRELLIS_OK or TRELLIS_UNAVAILABLE. */
int tframe_send_raw(tframe *t, const void *p, size_t n);
/* Sends a HELLO with the token (NULL: empty) and id. */
int tframe_hello(tframe *t, uint64_t id, const char *token);
/* Sends a REQUEST of ops[0..n) with this id, epoch and flags. */
int tframe_request(tframe *t, uint64_t id, uint64_t epoch, unsigned flags, const tframe_op *ops,
                   size_t n);
/* Receives the next frame within timeout_ms: TRELLIS_OK, TRELLIS_TIMEOUT,
 * TRELLIS_UNAVAILABLE (the shard closed the connection) or
 * TRELLIS_MALFORMED (not a frame). Free with tframe_reply_free. */
int tframe_recv(tframe *t, int timeout_ms, tframe_reply *out);
void tframe_reply_free(tframe_reply *r);
/* Without waiting: reads what the socket holds and returns the next
 * complete frame (TRELLIS_OK), TRELLIS_TIMEOUT when none is complete yet,
 * TRELLIS_UNAVAILABLE or TRELLIS_MALFORMED as tframe_recv. For callers
 * that poll tframe_fd themselves and keep several requests in flight. */
int tframe_try_recv(tframe *t, tframe_reply *out);
int tframe_fd(const tframe *t);

/* One request (the next id, epoch 0) and its reply, skipping frames with
 * other ids. */
int tframe_call(tframe *t, const tframe_op *ops, size_t n, unsigned flags, tframe_reply *out);

/* 1 if the shard closed the connection within timeout_ms (it reads
 * nothing more than EOF, discarding frames before it). */
int tframe_closed(tframe *t, int timeout_ms);

#endif
