/*
 * resp_cmd.h - the Redis commands of the gateway and how each maps onto
 * trellis lattices (docs/redis.md).
 *
 * Data commands become operations of a libtrellis batch: the gateway adds
 * the commands of many connections to one batch (resp_cmd_add), executes
 * it, and turns each command's results into its reply (resp_cmd_reply).
 * Connection commands (PING, AUTH, HELLO, ...) are answered by the server
 * itself (resp_server.c); this table only names them, for lookups, arity
 * checks and COMMAND.
 */
#ifndef TRELLIS_RESP_CMD_H
#define TRELLIS_RESP_CMD_H

#include <stddef.h>

#include "gateway/resp_proto.h"
#include "trellis/trellis.h"

typedef enum resp_kind {
    /* data: strings (LWW registers) */
    RK_GET,
    RK_SET,
    RK_MGET,
    RK_MSET,
    RK_DEL,
    RK_EXISTS,
    RK_TYPE,
    /* data: sets (ORSET) */
    RK_SADD,
    RK_SREM,
    RK_SMEMBERS,
    RK_SISMEMBER,
    RK_SMISMEMBER,
    RK_SCARD,
    /* data: counters (COUNTER) */
    RK_INCR,
    RK_DECR,
    RK_INCRBY,
    RK_DECRBY,
    /* connection and server */
    RK_PING,
    RK_ECHO,
    RK_INFO,
    RK_COMMAND,
    RK_CLIENT,
    RK_SELECT,
    RK_QUIT,
    RK_HELLO,
    RK_AUTH,
    RK_CONFIG,
    RK_RESET,
} resp_kind;

enum {
    RESP_CMD_DATA = 1,   /* runs against the cluster, in a batch */
    RESP_CMD_NOAUTH = 2, /* allowed before AUTH when a token is configured */
    RESP_CMD_COUNTER = 4 /* increments a counter: serialised per key by the server */
};

typedef struct resp_cmd_def {
    const char *name; /* lower case, as COMMAND reports it */
    resp_kind kind;
    int arity;          /* Redis's convention: n exactly n words, -n at least n */
    int flags;          /* RESP_CMD_* */
    const char *rflags; /* Redis command flags for COMMAND, space-separated */
    int first_key, last_key, step;
} resp_cmd_def;

/* The command named name[0, len) (case-insensitive), or NULL. */
const resp_cmd_def *resp_cmd_lookup(const uint8_t *name, size_t len);
/* 1 if argc words (the name included) suit d's arity. */
int resp_cmd_arity_ok(const resp_cmd_def *d, size_t argc);
/* The table, for COMMAND. */
size_t resp_cmd_count(void);
const resp_cmd_def *resp_cmd_at(size_t i);
/* Appends d's COMMAND INFO entry. */
void resp_cmd_describe(resp_buf *b, const resp_cmd_def *d, int proto);

/* Limits the data commands check before anything is sent. */
typedef struct resp_cmd_limits {
    size_t max_key; /* limits.max_key_bytes */
} resp_cmd_limits;

/* Where a command's operations sit in the batch. */
typedef struct resp_slot {
    size_t first, nops;
    size_t read; /* SADD, SREM: the read their count starts from */
} resp_slot;

/* What the commands of one batch share: SADD and SREM of one key in a
 * batch read the set once, and each count follows from that read and the
 * members the earlier commands added or removed (so that a hot set is read
 * once per batch, not once per command). Reset it before filling a batch;
 * call resp_cmd_add and then resp_cmd_reply for the batch's commands in
 * the same order. The words of the commands must live until the replies
 * are made. */
typedef struct resp_ctx resp_ctx;

/* A new context; NULL when out of memory. */
resp_ctx *resp_ctx_new(void);
void resp_ctx_reset(resp_ctx *x);
void resp_ctx_free(resp_ctx *x);

/* Adds the operations of data command c (d = its definition, arity already
 * checked) to batch b and fills *slot. Returns 0, or -1 with the complete
 * error reply text in err (RESP_ERR_MAX bytes, e.g. "ERR value is not an
 * integer or out of range"); nothing is added to b on a usage error. */
int resp_cmd_add(trellis_batch *b, resp_ctx *x, const resp_cmd_def *d, const resp_command *c,
                 const resp_cmd_limits *lim, resp_slot *slot, char *err);

/* Appends the reply of data command c from the results of the executed
 * batch b (RESP version proto). */
void resp_cmd_reply(const trellis_batch *b, resp_ctx *x, const resp_cmd_def *d,
                    const resp_command *c, const resp_slot *slot, int proto, resp_buf *out);

/* Appends the error reply for a trellis status: WRONGTYPE for
 * TRELLIS_LATTICE_MISMATCH, "ERR trellis: TEXT (NAME)" otherwise. */
void resp_status_error(resp_buf *out, int status);

/* The Redis name of a lattice type for TYPE: "string" (LWW), "set" (SET,
 * ORSET), "counter", "max", "causal", "priority"; "none" otherwise. */
const char *resp_type_name(trellis_type t);

#endif
