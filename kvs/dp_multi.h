/*
 * dp_multi.h - the transaction state of a RESP connection on a shard's
 * port (docs/redis.md, "Transactions"): the commands queued between MULTI
 * and EXEC, and the keys WATCHed with what their state was. Private to
 * kvs/.
 *
 * A shard runs on one thread, so the commands of an EXEC run as one
 * request (shard_exec), with nothing of any other client in between; a
 * WATCHed key is "changed" when the state the shard holds for it differs
 * from the one it held at WATCH (any write, an expiry, a merge from
 * another replica, its slot leaving the shard).
 */
#ifndef TRELLIS_KVS_DP_MULTI_H
#define TRELLIS_KVS_DP_MULTI_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/resp_cmd.h"
#include "kvs/shard.h"

/* A command with its words copied. */
typedef struct dp_cmd {
    const resp_cmd_def *def; /* NULL for a command the layer does not know */
    resp_command c;
    resp_slot slot; /* EXEC: where its operations sit */
    int planned;    /* EXEC: its operations were asked for (else err holds its reply) */
    char *err;      /* EXEC: its error reply, when planning refused it */
} dp_cmd;

typedef struct dp_watch {
    uint8_t *key;
    size_t klen;
    uint64_t fp; /* dp_multi_fingerprint at WATCH; 0 until taken */
} dp_watch;

typedef struct dp_multi {
    int active; /* MULTI seen, no EXEC or DISCARD yet */
    int dirty;  /* a command was refused while queueing: EXEC aborts */
    dp_cmd **cmds;
    size_t ncmds, cap, bytes;
    dp_watch *watch;
    size_t nwatch, wcap;
} dp_multi;

/* A copy of command c (d may be NULL); NULL when out of memory. */
dp_cmd *dp_cmd_copy(const resp_cmd_def *d, const resp_command *c);
void dp_cmd_free(dp_cmd *p);

/* Queues a copy of c: TRELLIS_OK, TRELLIS_TOO_LARGE past max_cmds
 * commands or max_bytes bytes, TRELLIS_INTERNAL when out of memory. */
int dp_multi_queue(dp_multi *m, const resp_cmd_def *d, const resp_command *c, size_t max_cmds,
                   size_t max_bytes);
/* Ends the transaction (EXEC, DISCARD): no queue, not active. */
void dp_multi_end(dp_multi *m);
/* Adds key to the watched ones (once), its fingerprint still to take:
 * TRELLIS_OK, TRELLIS_TOO_LARGE past max keys, TRELLIS_INTERNAL. */
int dp_multi_watch(dp_multi *m, const uint8_t *key, size_t klen, size_t max);
/* Takes the fingerprint of every watched key that has none yet. */
void dp_multi_watch_take(shard *s, dp_multi *m);
/* 1 if a watched key changed since its fingerprint was taken. */
int dp_multi_watch_changed(shard *s, const dp_multi *m);
void dp_multi_unwatch(dp_multi *m);
/* Both, and the memory. */
void dp_multi_clear(dp_multi *m);

/* The state of key as shard s holds it now, as a number that changes
 * when the state does: never 0. On the shard's thread. */
uint64_t dp_multi_fingerprint(shard *s, const uint8_t *key, size_t klen);

#endif
