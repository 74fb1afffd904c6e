/*
 * resp_cmd.h - the Redis commands and how each maps onto trellis lattices
 * (docs/redis.md), apart from how they execute.
 *
 * The layer does three things for a data command, none of them I/O:
 *  - checks its arguments (arity, integers, options, key limits), so that
 *    a refused command runs nothing;
 *  - asks an *executor* for the key operations it needs (resp_exec_ops:
 *    reads, writes, expiry, map fields, walks of the key space), each of
 *    which answers an index;
 *  - once the executor has run them, shapes the reply from their results
 *    (resp_res: a status, a type, a lattice state or an integer, a
 *    deadline, keys), decoding states with the lattice functions.
 * The gateway's executor turns the operations into a libtrellis batch that
 * spans many connections (gateway/resp_exec.c); a shard serving RESP
 * itself runs them on its own keys. Both use this table, these checks and
 * these replies, so Redis clients see one behaviour.
 *
 * Connection commands (PING, AUTH, HELLO, ...) are answered by the server
 * itself; this table only names them, for lookups, arity checks and
 * COMMAND.
 */
#ifndef TRELLIS_RESP_CMD_H
#define TRELLIS_RESP_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/resp_proto.h"
#include "lattices/lattice.h"

typedef enum resp_kind {
    /* data: strings (LWW registers) */
    RK_GET,
    RK_SET,
    RK_SETEX,
    RK_PSETEX,
    RK_GETEX,
    RK_MGET,
    RK_MSET,
    /* data: keys */
    RK_DEL,
    RK_EXISTS,
    RK_TYPE,
    RK_EXPIRE,
    RK_PEXPIRE,
    RK_EXPIREAT,
    RK_PEXPIREAT,
    RK_PERSIST,
    RK_TTL,
    RK_PTTL,
    RK_EXPIRETIME,
    RK_PEXPIRETIME,
    RK_SCAN,
    RK_KEYS,
    RK_DBSIZE,
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
    /* data: hashes (MAP) */
    RK_HSET,
    RK_HMSET,
    RK_HSETNX,
    RK_HGET,
    RK_HMGET,
    RK_HDEL,
    RK_HGETALL,
    RK_HKEYS,
    RK_HVALS,
    RK_HLEN,
    RK_HEXISTS,
    RK_HINCRBY,
    RK_HSTRLEN,
    RK_HSCAN,
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
    RESP_CMD_DATA = 1,    /* runs against the key space through an executor */
    RESP_CMD_NOAUTH = 2,  /* allowed before AUTH when a token is configured */
    RESP_CMD_COUNTER = 4, /* increments a counter of its key: serialised per key */
    RESP_CMD_WALK = 8     /* walks the key space (SCAN, KEYS, DBSIZE) */
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
/* Appends the reply to COMMAND [COUNT|LIST|INFO name...|DOCS] (c). */
void resp_cmd_command(const resp_command *c, int proto, resp_buf *out);
/* 1 if INFO command c asks for `section` (no argument, all, default,
 * everything, or its name). */
int resp_info_wants(const resp_command *c, const char *section);

/* ---- executors ------------------------------------------------------------------------- */

/* What an operation answered. Pointers live until the executor is reset
 * for its next round. */
typedef struct resp_res {
    int status;           /* trellis_status: OK, NOT_FOUND, or the failure */
    lat_type type;        /* the key's type, when known */
    const uint8_t *state; /* reads: the key's canonical state (of `type`) */
    size_t len;
    int64_t integer;       /* a count, a counter's new value, 1/0 for an applied EXPIRE */
    uint64_t deadline_ms;  /* HEAD: the key's deadline; EXPIRE: the one it had; 0: none */
    const lat_slice *keys; /* SCAN, KEYS: the keys found */
    size_t nkeys;
    uint64_t cursor;        /* SCAN: where the walk goes on; 0 at its end */
    uint64_t volatile_keys; /* DBSIZE: keys with a deadline (integer: all keys) */
} resp_res;

typedef struct resp_exec resp_exec;

/* Expiry conditions, as Redis's EXPIRE options (and the wire's). */
enum { RESP_EXP_ALWAYS = 0, RESP_EXP_NX, RESP_EXP_XX, RESP_EXP_GT, RESP_EXP_LT };

/* The key operations of the commands. Each adder returns the operation's
 * index (>= 0) or a negative trellis status (nothing was added). The
 * executor runs them in the order added; operations on one key keep
 * their order. result() is valid once they ran. */
typedef struct resp_exec_ops {
    /* reads: the whole state, or only its type and deadline */
    int (*get)(resp_exec *x, const uint8_t *key, size_t klen);
    int (*head)(resp_exec *x, const uint8_t *key, size_t klen);
    /* an LWW write; deadline_ms > 0 sets the key's deadline with it,
     * keep_ttl keeps the one it has (else a write clears it) */
    int (*put)(resp_exec *x, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
               uint64_t deadline_ms, int keep_ttl);
    int (*del)(resp_exec *x, const uint8_t *key, size_t klen);
    int (*sadd)(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *m, size_t n);
    int (*srem)(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *m, size_t n);
    /* result: integer = the counter's new value */
    int (*incrby)(resp_exec *x, const uint8_t *key, size_t klen, int64_t delta);
    /* deadline 0: PERSIST; result: integer 1 if applied, deadline_ms the old one */
    int (*expire)(resp_exec *x, const uint8_t *key, size_t klen, uint64_t unix_ms, int cond);
    /* pairs[2i], pairs[2i + 1]: name and value; result: integer = fields added */
    int (*map_set)(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *pairs,
                   size_t npairs, int nx);
    /* result: integer = fields that existed */
    int (*map_del)(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *names, size_t n);
    /* result: integer = the field's new value */
    int (*map_incrby)(resp_exec *x, const uint8_t *key, size_t klen, const uint8_t *field,
                      size_t flen, int64_t delta);
    /* walks: one SCAN step from cursor (type 0: any), every key matching
     * a pattern, the key count */
    int (*scan)(resp_exec *x, uint64_t cursor, size_t count, const uint8_t *pattern, size_t plen,
                lat_type type);
    int (*keys)(resp_exec *x, const uint8_t *pattern, size_t plen);
    int (*dbsize)(resp_exec *x);
    void (*result)(resp_exec *x, int op, resp_res *out);
    /* Unix milliseconds on the clock deadlines are set by */
    uint64_t (*now_ms)(resp_exec *x);
} resp_exec_ops;

struct resp_exec {
    const resp_exec_ops *ops;
};

/* ---- data commands ------------------------------------------------------------------------ */

/* Limits the data commands check before anything is asked. */
typedef struct resp_cmd_limits {
    size_t max_key; /* limits.max_key_bytes */
} resp_cmd_limits;

/* Where a command's operations sit. */
typedef struct resp_slot {
    int first, nops;
    int read;     /* SADD, SREM: the read their count starts from */
    uint64_t now; /* the clock when the command was planned (TTL, GETEX) */
} resp_slot;

/* What the commands of one round share: SADD and SREM of one key in a
 * round read the set once, and each count follows from that read and the
 * members the earlier commands added or removed (so that a hot set is read
 * once per round, not once per command). Reset it before a round; call
 * resp_cmd_add and then resp_cmd_reply for the round's commands in the
 * same order. The words of the commands must live until the replies are
 * made. */
typedef struct resp_ctx resp_ctx;

/* A new context; NULL when out of memory. */
resp_ctx *resp_ctx_new(void);
void resp_ctx_reset(resp_ctx *x);
void resp_ctx_free(resp_ctx *x);

/* Checks data command c (d = its definition, arity already checked) and
 * asks x for its operations, filling *slot. Returns 0, or -1 with the
 * complete error reply in err (RESP_ERR_MAX bytes, e.g. "ERR value is not
 * an integer or out of range"); nothing is asked of x after a usage
 * error. */
int resp_cmd_add(resp_exec *x, resp_ctx *ctx, const resp_cmd_def *d, const resp_command *c,
                 const resp_cmd_limits *lim, resp_slot *slot, char *err);

/* Appends the reply of data command c from the results of its operations
 * (RESP version proto). */
void resp_cmd_reply(resp_exec *x, resp_ctx *ctx, const resp_cmd_def *d, const resp_command *c,
                    const resp_slot *slot, int proto, resp_buf *out);

/* Appends the error reply for a trellis status: WRONGTYPE for
 * TRELLIS_LATTICE_MISMATCH, "ERR trellis: TEXT (NAME)" otherwise. */
void resp_status_error(resp_buf *out, int status);

/* The Redis name of a lattice type for TYPE: "string" (LWW), "set" (SET,
 * ORSET), "hash" (MAP), "counter", "max", "causal", "priority"; "none"
 * otherwise. */
const char *resp_type_name(lat_type t);

#endif
