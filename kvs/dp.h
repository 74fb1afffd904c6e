/*
 * dp.h - a shard's data plane: the TCP connections of its clients and the
 * binary frames they carry (docs/protocol.md, "The data plane"). Private
 * to kvs/.
 *
 * Each shard listens on a port of its own and owns its connections end to
 * end on its loop: it reads, decodes frames in place, runs requests
 * through shard_exec and appends the replies to the connection's output,
 * which goes out before the loop sleeps. Replies of requests whose
 * operations are held, or whose keys come from the disk tier, find their
 * connection again by its id; one that closed meanwhile loses them.
 *
 * The connection layer is protocol-pluggable (base/conn.h): the frame
 * protocol here is one conn_proto, and the Redis protocol can be another
 * on the same loop.
 */
#ifndef TRELLIS_KVS_DP_H
#define TRELLIS_KVS_DP_H

#include <stddef.h>
#include <stdint.h>

#include "base/conn.h"
#include "kvs/shard.h"

#define DP_MAX_CONNS 4096 /* connections per shard; more are closed at once */
#define DP_BACKLOG   511

typedef struct dp_conn dp_conn;

typedef struct dp_state {
    int lfd; /* the listening socket, -1 without a data plane */
    int port;
    ev_watch lw;
    dp_conn *conns; /* open connections */
    size_t nconns;
    uint64_t next_id;
    uint64_t next_sweep_ms; /* dp_step's next look for silent connections */
    dp_conn *cur;           /* the connection whose input is being handled */
} dp_state;

/* Binds host:port and starts accepting on the shard's loop. TRELLIS_OK,
 * or TRELLIS_UNAVAILABLE (the port is taken; logged). */
int dp_open(shard *s, const char *host, int port);
/* Closes every connection and the listening socket. */
void dp_close(shard *s);
/* Serves the connected socket fd as a client connection (it takes fd):
 * what dp_open's listener does with each accepted one. TRELLIS_OK or
 * TRELLIS_INTERNAL (fd closed). */
int dp_adopt(shard *s, int fd);
/* Closes the connections that have not completed their handshake and a
 * whole first frame or command within limits.handshake_ms of being
 * accepted (a peer that connects and stays silent holds no descriptor for
 * long). Looks a few times per bound. */
void dp_step(shard *s, uint64_t now_ms);
/* The store is about to change: output that refers to stored states is
 * written now or copied (conn_settle). */
void dp_settle(shard *s);

#endif
