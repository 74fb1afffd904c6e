/*
 * dp_resp.h - Redis Cluster on a shard's data port (docs/redis.md, "Redis
 * Cluster"). Private to kvs/.
 *
 * A data-plane connection whose first byte is not a frame's (0xD7) speaks
 * RESP2/RESP3: the shard answers as the Redis Cluster master of the slots
 * it holds. It serves the connection commands (PING, ECHO, HELLO, AUTH,
 * SELECT 0, QUIT, CLIENT, READONLY, READWRITE, ASKING) and the cluster
 * commands (CLUSTER SLOTS, SHARDS, NODES, MYID, INFO, KEYSLOT,
 * COUNTKEYSINSLOT, GETKEYSINSLOT) from the shard's ring, and answers
 * -MOVED with the owning shard's address for a key of a slot it does not
 * serve, -CROSSSLOT for a command whose keys lie in several slots.
 */
#ifndef TRELLIS_KVS_DP_RESP_H
#define TRELLIS_KVS_DP_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "base/conn.h"
#include "kvs/shard.h"

typedef struct dp_resp dp_resp;

/* A connection's RESP state; NULL when out of memory. id is the
 * connection's (CLIENT ID, and how replies find it again). */
dp_resp *dp_resp_new(shard *s, uint64_t id);
void dp_resp_free(dp_resp *r);

/* The RESP input of connection c: answers every complete command of
 * data[0..len) and returns how many bytes it used (conn_proto.on_input). */
size_t dp_resp_input(shard *s, dp_resp *r, conn *c, uint8_t *data, size_t len);

/* dp.c: the RESP state and connection of connection `id` of shard s;
 * NULL when it is gone or does not speak RESP. */
dp_resp *dp_conn_resp(shard *s, uint64_t id, conn **c);

#endif
