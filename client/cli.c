/*
 * cli.c - trellis-cli, the command-line client (DESIGN.md section 8).
 *
 *   trellis-cli [-r URL] [-t MS] [--ack one|all] [-x] [COMMAND ARG...]
 *
 * With a command it runs that command and exits. Without one it reads
 * commands from stdin: at a terminal through an interactive prompt with
 * history and line editing (libedit), otherwise one command per line,
 * pipelined: lines that are already available are gathered into one batch
 * (one request per shard, all shards in parallel) and the answers are
 * printed in input order, so thousands of commands go through one
 * connection quickly.
 *
 * Output: writes print OK, a missing key (nil), a value on its own line
 * (raw bytes, binary-safe; quoted with escapes at the interactive prompt
 * when not printable). Errors go to stderr as "error: TEXT". Exit status: 0
 * on success (a missing key included), 1 on a server error, 2 on a usage
 * error; commands piped in: the status of the first command that failed;
 * the interactive prompt: 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <editline/readline.h>

#include "base/kvop.h"
#include "client/cli_args.h"
#include "server/config.h"
#include "trellis/trellis.h"

#define CLI_DEFAULT_ROUTER "tcp://127.0.0.1:6450"
#define CLI_BATCH_MAX      1024       /* commands gathered into one batch */
#define CLI_MAX_LINE       (64 << 20) /* longest input line, and -x input */
#define CLI_HISTORY_FILE   ".trellis_cli_history"
#define CLI_HISTORY_LEN    1000

enum { EXIT_OK = 0, EXIT_SERVER = 1, EXIT_USAGE = 2 };

typedef enum cmd_id {
    C_SET,
    C_GET,
    C_DEL,
    C_SADD,
    C_SREM,
    C_SMEMBERS,
    C_GADD,
    C_INCRBY,
    C_DECRBY,
    C_INCR,
    C_DECR,
    C_MAX,
    C_PSET,
    C_CSET,
    C_TYPE,
    C_EXISTS,
    C_EXPIRE,
    C_PEXPIRE,
    C_EXPIREAT,
    C_PEXPIREAT,
    C_PERSIST,
    C_TTL,
    C_PTTL,
    C_HSET,
    C_HSETNX,
    C_HGET,
    C_HMGET,
    C_HGETALL,
    C_HDEL,
    C_HINCRBY,
    C_HKEYS,
    C_HVALS,
    C_HLEN,
    C_HEXISTS,
    C_HSTRLEN,
    C_KEYS,
    C_SCAN,
    C_DBSIZE,
    C_NODES,
    C_STATS,
    C_PING,
    C_HELP,
    C_QUIT,
} cmd_id;

typedef struct cmd_def {
    const char *name;
    cmd_id id;
    int min, max; /* arguments after the command; max -1: any number */
    int batch;    /* runs inside a pipelined batch */
    const char *args;
    const char *help;
} cmd_def;

static const cmd_def cmds[] = {
    {"SET", C_SET, 2, 4, 1, "key value [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]",
     "set an LWW register (and its expiry; without an option a SET clears it)"},
    {"GET", C_GET, 1, 1, 1, "key",
     "read a key of any type (a counter or max: its integer; a set: its members; a causal "
     "key: its concurrent values)"},
    {"DEL", C_DEL, 1, -1, 1, "key [key ...]", "delete keys (LWW, ORSET, COUNTER, CAUSAL, MAP)"},
    {"SADD", C_SADD, 2, -1, 1, "key member [member ...]", "add members to a set (ORSET)"},
    {"SREM", C_SREM, 2, -1, 1, "key member [member ...]", "remove members from an ORSET"},
    {"SMEMBERS", C_SMEMBERS, 1, 1, 1, "key", "a set's members, one per line, in byte order"},
    {"GADD", C_GADD, 2, -1, 1, "key member [member ...]", "add members to a grow-only SET"},
    {"INCRBY", C_INCRBY, 2, 2, 1, "key n", "add n to a COUNTER; prints its new value"},
    {"DECRBY", C_DECRBY, 2, 2, 1, "key n", "subtract n from a COUNTER; prints its new value"},
    {"INCR", C_INCR, 1, 1, 1, "key", "add 1 to a COUNTER; prints its new value"},
    {"DECR", C_DECR, 1, 1, 1, "key", "subtract 1 from a COUNTER; prints its new value"},
    {"MAX", C_MAX, 2, 2, 1, "key n", "raise a MAX to at least n"},
    {"PSET", C_PSET, 3, 3, 1, "key priority value",
     "offer a value to a PRIORITY register (the lowest priority wins)"},
    {"CSET", C_CSET, 2, 2, 0, "key value",
     "write a CAUSAL register, superseding the values it holds now"},
    {"TYPE", C_TYPE, 1, 1, 1, "key", "the key's lattice type (none if it does not exist)"},
    {"EXISTS", C_EXISTS, 1, -1, 1, "key [key ...]", "how many of the keys exist"},
    {"EXPIRE", C_EXPIRE, 2, 3, 1, "key seconds [NX|XX|GT|LT]",
     "expire the key after seconds; prints 1, or 0 if it does not exist (or the condition "
     "kept it)"},
    {"PEXPIRE", C_PEXPIRE, 2, 3, 1, "key ms [NX|XX|GT|LT]", "EXPIRE in milliseconds"},
    {"EXPIREAT", C_EXPIREAT, 2, 3, 1, "key unix-seconds [NX|XX|GT|LT]",
     "expire the key at a Unix time"},
    {"PEXPIREAT", C_PEXPIREAT, 2, 3, 1, "key unix-ms [NX|XX|GT|LT]",
     "expire the key at a Unix time in milliseconds"},
    {"PERSIST", C_PERSIST, 1, 1, 1, "key", "remove the key's expiry; prints 1 if it had one"},
    {"TTL", C_TTL, 1, 1, 1, "key", "seconds to live; -1 without expiry, -2 for a missing key"},
    {"PTTL", C_PTTL, 1, 1, 1, "key", "TTL in milliseconds"},
    {"HSET", C_HSET, 3, -1, 1, "key field value [field value ...]",
     "set MAP fields; prints how many were new"},
    {"HSETNX", C_HSETNX, 3, 3, 1, "key field value", "set a MAP field if it does not exist"},
    {"HGET", C_HGET, 2, 2, 1, "key field", "a MAP field's value"},
    {"HMGET", C_HMGET, 2, -1, 1, "key field [field ...]", "MAP fields' values, one per line"},
    {"HGETALL", C_HGETALL, 1, 1, 1, "key", "every field and value, on alternate lines"},
    {"HDEL", C_HDEL, 2, -1, 1, "key field [field ...]",
     "remove MAP fields; prints how many existed"},
    {"HINCRBY", C_HINCRBY, 3, 3, 1, "key field n",
     "add n to a MAP field's counter; prints its new value"},
    {"HKEYS", C_HKEYS, 1, 1, 1, "key", "a MAP's field names"},
    {"HVALS", C_HVALS, 1, 1, 1, "key", "a MAP's values"},
    {"HLEN", C_HLEN, 1, 1, 1, "key", "the number of fields of a MAP"},
    {"HEXISTS", C_HEXISTS, 2, 2, 1, "key field", "1 if the MAP field exists"},
    {"HSTRLEN", C_HSTRLEN, 2, 2, 1, "key field", "the length of a MAP field's value"},
    {"KEYS", C_KEYS, 1, 1, 0, "pattern",
     "every key matching a glob pattern (walks the whole cluster)"},
    {"SCAN", C_SCAN, 1, 7, 0, "cursor [MATCH pattern] [COUNT n] [TYPE type]",
     "one step of a walk of the keys: the next cursor (0 at the end), then keys"},
    {"DBSIZE", C_DBSIZE, 0, 1, 0, "[node-id]",
     "the number of keys in the cluster, or that one storage node holds"},
    {"NODES", C_NODES, 0, 0, 0, "", "members: ID TIER ADDRESS STATE SHARDS, one per line"},
    {"STATS", C_STATS, 0, 0, 0, "", "cluster totals from the routers"},
    {"PING", C_PING, 0, 0, 0, "", "PONG if a router answers"},
    {"HELP", C_HELP, 0, 0, 0, "", "this list"},
    {"QUIT", C_QUIT, 0, 0, 0, "", "leave the prompt"},
    {"EXIT", C_QUIT, 0, 0, 0, "", "leave the prompt"},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

/* A command's arguments beyond its words, parsed before anything is sent. */
typedef struct cmd_args {
    int64_t num;          /* INCRBY and friends, MAX, PSET, HINCRBY; EXPIRE's time */
    int cond;             /* EXPIRE: TRELLIS_EXPIRE_* */
    trellis_put_opts put; /* SET's options, relative times resolved at the run */
    int set_unit;         /* SET: 0 none, 1 EX, 2 PX, 3 EXAT, 4 PXAT */
    trellis_scan_opts scan;
    uint64_t cursor;
} cmd_args;

/* A command of the current batch, waiting for its answer. */
typedef struct pending {
    const cmd_def *def;
    size_t first, nops; /* its operations in the batch */
    int code;           /* EXIT_USAGE: msg says why and nothing was sent */
    cli_argv words;     /* DEL: a copy of the command, to name the key an error is about */
    char msg[256];
} pending;

typedef struct cli {
    trellis_options opts;
    char url[CONFIG_LIST_MAX * CONFIG_STR_MAX];
    int interactive;
    int read_stdin_arg; /* -x */
    trellis_client *client;
    trellis_batch *batch;
    pending *pend;
    size_t npend, cpend;
    int status; /* the first failure's exit code */
    int quit;
} cli;

/* ---- output ------------------------------------------------------------------------------- */

static void note_status(cli *s, int code)
{
    if (code != EXIT_OK && s->status == EXIT_OK)
        s->status = code;
}

static void print_error(cli *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void print_error(cli *s, int code, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout); /* keep the answers in order when both go to one place */
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    note_status(s, code);
}

static void print_status_error(cli *s, int st)
{
    print_error(s, EXIT_SERVER, "%s (%s)", trellis_strerror(st), trellis_status_name(st));
}

/* The failure of a single call, in trellis_last_error's words when it has
 * some. */
static void print_call_error(cli *s, int st)
{
    if (trellis_last_error()[0])
        print_error(s, EXIT_SERVER, "%s (%s)", trellis_last_error(), trellis_status_name(st));
    else
        print_status_error(s, st);
}

/* A value on its own line: raw bytes, or quoted at the prompt when they
 * would not display. */
static void print_bytes(cli *s, const void *p, size_t n)
{
    if (s->interactive && !cli_printable(p, n))
        cli_write_quoted(stdout, p, n);
    else
        fwrite(p, 1, n, stdout);
    fputc('\n', stdout);
}

static void print_line(const char *text)
{
    fputs(text, stdout);
    fputc('\n', stdout);
}

static void print_int(int64_t v)
{
    printf("%" PRId64 "\n", v);
}

static void print_value(cli *s, const trellis_value *v)
{
    switch (v->type) {
    case TRELLIS_TYPE_COUNTER:
    case TRELLIS_TYPE_MAX:
        print_int(v->integer);
        break;
    default:
        if (v->count == 0)
            print_line("(nil)");
        for (size_t i = 0; i < v->count; i++)
            print_bytes(s, v->items[i].data, v->items[i].len);
        break;
    }
}

/* ---- commands ---------------------------------------------------------------------------------
 */

static const cmd_def *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strcasecmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static int parse_int(const char *text, size_t len, int64_t *out)
{
    if (len == 0 || strlen(text) != len)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

static void print_help(void)
{
    printf("commands (case-insensitive):\n");
    for (size_t i = 0; i < NCMDS; i++)
        printf("  %-9s %-26s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
}

static int word_is(const cli_argv *a, size_t i, const char *w)
{
    return i < a->n && strlen(a->v[i]) == a->len[i] && strcasecmp(a->v[i], w) == 0;
}

/* EXPIRE's optional condition, argument 3. */
static int parse_cond(const cli_argv *a, int *cond, char *msg, size_t cap)
{
    static const char *const names[] = {"NX", "XX", "GT", "LT"};
    *cond = TRELLIS_EXPIRE_ALWAYS;
    if (a->n < 4)
        return 0;
    for (int i = 0; i < 4; i++)
        if (word_is(a, 3, names[i])) {
            *cond = TRELLIS_EXPIRE_NX + i;
            return 0;
        }
    snprintf(msg, cap, "unknown option '%.64s' (NX, XX, GT or LT)", a->v[3]);
    return -1;
}

/* SET's options: one of EX, PX, EXAT, PXAT with a positive integer, or
 * KEEPTTL. */
static int parse_set_opts(const cli_argv *a, cmd_args *x, char *msg, size_t cap)
{
    static const char *const units[] = {"EX", "PX", "EXAT", "PXAT"};
    if (a->n == 3)
        return 0;
    if (a->n == 4 && word_is(a, 3, "KEEPTTL")) {
        x->put.keep_ttl = 1;
        return 0;
    }
    for (int u = 0; u < 4; u++)
        if (a->n == 5 && word_is(a, 3, units[u])) {
            if (parse_int(a->v[4], a->len[4], &x->num) != 0 || x->num <= 0) {
                snprintf(msg, cap, "invalid expire time in 'SET': '%.64s'", a->v[4]);
                return -1;
            }
            x->set_unit = u + 1;
            return 0;
        }
    snprintf(msg, cap,
             "SET takes one of EX seconds, PX ms, EXAT unix-seconds, PXAT unix-ms or "
             "KEEPTTL after the value");
    return -1;
}

/* SCAN's cursor and options. */
static int parse_scan(const cli_argv *a, cmd_args *x, char *msg, size_t cap)
{
    char *end;
    errno = 0;
    unsigned long long c = strtoull(a->v[1], &end, 10);
    if (errno || *end || end == a->v[1] || a->v[1][0] == '-') {
        snprintf(msg, cap, "invalid cursor '%.64s'", a->v[1]);
        return -1;
    }
    x->cursor = c;
    for (size_t i = 2; i < a->n; i += 2) {
        if (i + 1 >= a->n) {
            snprintf(msg, cap, "SCAN option '%.64s' needs a value", a->v[i]);
            return -1;
        }
        int64_t n;
        if (word_is(a, i, "MATCH")) {
            x->scan.match = a->v[i + 1];
            x->scan.match_len = a->len[i + 1];
        } else if (word_is(a, i, "COUNT")) {
            if (parse_int(a->v[i + 1], a->len[i + 1], &n) != 0 || n < 1) {
                snprintf(msg, cap, "COUNT wants a positive integer, not '%.64s'", a->v[i + 1]);
                return -1;
            }
            x->scan.count = (size_t)n;
        } else if (word_is(a, i, "TYPE")) {
            for (int t = TRELLIS_TYPE_LWW; t <= TRELLIS_TYPE_MAP && !x->scan.type; t++)
                if (strcasecmp(a->v[i + 1], trellis_type_name((trellis_type)t)) == 0)
                    x->scan.type = (trellis_type)t;
            if (!x->scan.type) {
                snprintf(msg, cap,
                         "unknown type '%.64s' (LWW, SET, ORSET, COUNTER, MAX, CAUSAL, "
                         "PRIORITY, MAP)",
                         a->v[i + 1]);
                return -1;
            }
        } else {
            snprintf(msg, cap, "unknown SCAN option '%.64s' (MATCH, COUNT, TYPE)", a->v[i]);
            return -1;
        }
    }
    return 0;
}

/* Checks a command line and parses its numbers and options. Returns the
 * command, or NULL after writing the usage error into msg. */
static const cmd_def *check_cmd(const cli_argv *a, cmd_args *x, char *msg, size_t cap)
{
    memset(x, 0, sizeof(*x));
    const cmd_def *d = find_cmd(a->v[0]);
    if (!d || strlen(a->v[0]) != a->len[0]) {
        snprintf(msg, cap, "unknown command '%.64s' (try HELP)", a->v[0]);
        return NULL;
    }
    int nargs = (int)a->n - 1;
    if (nargs < d->min || (d->max >= 0 && nargs > d->max) || (d->id == C_HSET && nargs % 2 == 0)) {
        snprintf(msg, cap, "wrong number of arguments for '%s' (usage: %s %s)", d->name, d->name,
                 d->args);
        return NULL;
    }
    x->num = 1;
    size_t iarg = 0;
    switch (d->id) {
    case C_INCRBY:
    case C_DECRBY:
    case C_MAX:
    case C_PSET:
    case C_EXPIRE:
    case C_PEXPIRE:
    case C_EXPIREAT:
    case C_PEXPIREAT:
        iarg = 2;
        break;
    case C_HINCRBY:
        iarg = 3;
        break;
    case C_SET:
        return parse_set_opts(a, x, msg, cap) == 0 ? d : NULL;
    case C_SCAN:
        return parse_scan(a, x, msg, cap) == 0 ? d : NULL;
    default:
        break;
    }
    if (iarg && parse_int(a->v[iarg], a->len[iarg], &x->num) != 0) {
        snprintf(msg, cap, "value is not an integer or out of range: '%.64s'", a->v[iarg]);
        return NULL;
    }
    if (d->id >= C_EXPIRE && d->id <= C_PEXPIREAT && parse_cond(a, &x->cond, msg, cap) != 0)
        return NULL;
    if (d->id == C_DECRBY) {
        if (x->num == INT64_MIN) {
            snprintf(msg, cap, "value is out of range: '%.64s'", a->v[iarg]);
            return NULL;
        }
        x->num = -x->num;
    } else if (d->id == C_DECR) {
        x->num = -1;
    }
    return d;
}

static int push_pending(cli *s, const cmd_def *d, size_t first, int code, const char *msg)
{
    if (s->npend == s->cpend) {
        size_t cap = s->cpend ? s->cpend * 2 : 64;
        pending *p = realloc(s->pend, cap * sizeof(*p));
        if (!p)
            return -1;
        s->pend = p;
        s->cpend = cap;
    }
    pending *p = &s->pend[s->npend++];
    p->def = d;
    p->first = first;
    p->nops = trellis_batch_count(s->batch) - first;
    p->code = code;
    cli_argv_init(&p->words);
    snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : "");
    return 0;
}

/* Adds one operation per word of a from index `from` (EXISTS, DEL). */
static int add_per_key(trellis_batch *b, const cli_argv *a, size_t from,
                       int (*add)(trellis_batch *, const void *, size_t))
{
    int rc = 0;
    for (size_t i = from; i < a->n && rc >= 0; i++)
        rc = add(b, a->v[i], a->len[i]);
    return rc;
}

static int add_head(trellis_batch *b, const void *key, size_t klen)
{
    return trellis_batch_head(b, key, klen);
}

/* The arguments from index `from` as byte strings (malloc'd; NULL when
 * out of memory). */
static trellis_bytes *words_from(const cli_argv *a, size_t from)
{
    size_t n = a->n - from;
    trellis_bytes *w = malloc((n ? n : 1) * sizeof(*w));
    for (size_t i = 0; w && i < n; i++) {
        w[i].data = a->v[from + i];
        w[i].len = a->len[from + i];
    }
    return w;
}

/* Adds a key command's operations to the batch. */
static int add_ops(cli *s, const cmd_def *d, const cli_argv *a, const cmd_args *x)
{
    trellis_batch *b = s->batch;
    const char *key = a->v[1];
    size_t klen = a->len[1];
    int rc = 0;
    trellis_bytes *w = NULL;
    uint64_t at;
    switch (d->id) {
    case C_SET: {
        trellis_put_opts o = x->put;
        if (x->set_unit &&
            kvop_deadline_ms(trellis_clock_ms(s->client), x->set_unit, x->num, &o.deadline_ms) != 0)
            return -TRELLIS_INVALID;
        rc = trellis_batch_put_ex(b, key, klen, a->v[2], a->len[2], &o);
        break;
    }
    case C_GET:
    case C_SMEMBERS:
        rc = trellis_batch_get(b, key, klen, TRELLIS_TYPE_NONE);
        break;
    case C_HGET:
    case C_HMGET:
    case C_HGETALL:
    case C_HKEYS:
    case C_HVALS:
    case C_HLEN:
    case C_HEXISTS:
    case C_HSTRLEN:
        rc = trellis_batch_get(b, key, klen, TRELLIS_TYPE_MAP);
        break;
    case C_TYPE:
    case C_TTL:
    case C_PTTL:
        rc = trellis_batch_head(b, key, klen);
        break;
    case C_EXISTS:
        rc = add_per_key(b, a, 1, add_head);
        break;
    case C_DEL:
        rc = add_per_key(b, a, 1, trellis_batch_del);
        break;
    case C_EXPIRE:
    case C_PEXPIRE:
    case C_EXPIREAT:
    case C_PEXPIREAT:
        if (kvop_deadline_ms(trellis_clock_ms(s->client), d->id - C_EXPIRE + KVOP_IN_S, x->num,
                             &at) != 0)
            return -TRELLIS_INVALID;
        rc = trellis_batch_expire(b, key, klen, at, x->cond);
        break;
    case C_PERSIST:
        rc = trellis_batch_expire(b, key, klen, 0, TRELLIS_EXPIRE_ALWAYS);
        break;
    case C_HSET:
    case C_HSETNX:
        if (!(w = words_from(a, 2)))
            return -TRELLIS_INTERNAL;
        rc = trellis_batch_map_set(b, key, klen, w, (a->n - 2) / 2, d->id == C_HSETNX);
        break;
    case C_HDEL:
        if (!(w = words_from(a, 2)))
            return -TRELLIS_INTERNAL;
        rc = trellis_batch_map_del(b, key, klen, w, a->n - 2);
        break;
    case C_HINCRBY:
        rc = trellis_batch_map_incrby(b, key, klen, a->v[2], a->len[2], x->num);
        break;
    case C_SADD:
    case C_SREM:
    case C_GADD:
        if (!(w = words_from(a, 2)))
            return -TRELLIS_INTERNAL;
        if (d->id == C_SADD)
            rc = trellis_batch_sadd(b, key, klen, w, a->n - 2);
        else if (d->id == C_SREM)
            rc = trellis_batch_srem(b, key, klen, w, a->n - 2);
        else
            rc = trellis_batch_gadd(b, key, klen, w, a->n - 2);
        break;
    case C_INCRBY:
    case C_DECRBY:
    case C_INCR:
    case C_DECR:
        rc = trellis_batch_incrby(b, key, klen, x->num);
        break;
    case C_MAX:
        rc = trellis_batch_max(b, key, klen, x->num);
        break;
    case C_PSET:
        rc = trellis_batch_priority_put(b, key, klen, x->num, a->v[3], a->len[3]);
        break;
    default:
        rc = -TRELLIS_INVALID;
        break;
    }
    free(w);
    return rc < 0 ? rc : 0;
}

/* The item of field f in a MAP value (names and values alternate, names
 * in byte order), or NULL. */
static const trellis_item *map_field(const trellis_value *v, const char *f, size_t flen)
{
    for (size_t i = 0; v && i + 1 < v->count; i += 2)
        if (v->items[i].len == flen && memcmp(v->items[i].data, f, flen) == 0)
            return &v->items[i + 1];
    return NULL;
}

/* The answer to a MAP read command, from the map read (v NULL: none). */
static void answer_map(cli *s, const pending *p, const trellis_value *v)
{
    const cli_argv *a = &p->words;
    const trellis_item *it;
    switch (p->def->id) {
    case C_HGET:
        if ((it = map_field(v, a->v[2], a->len[2])))
            print_bytes(s, it->data, it->len);
        else
            print_line("(nil)");
        break;
    case C_HMGET:
        for (size_t i = 2; i < a->n; i++) {
            if ((it = map_field(v, a->v[i], a->len[i])))
                print_bytes(s, it->data, it->len);
            else
                print_line("(nil)");
        }
        break;
    case C_HGETALL:
    case C_HKEYS:
    case C_HVALS:
        for (size_t i = 0; v && i < v->count; i++)
            if (p->def->id == C_HGETALL || (int)(i % 2) == (p->def->id == C_HVALS))
                print_bytes(s, v->items[i].data, v->items[i].len);
        break;
    case C_HLEN:
        print_int(v ? (int64_t)(v->count / 2) : 0);
        break;
    case C_HEXISTS:
        print_int(map_field(v, a->v[2], a->len[2]) != NULL);
        break;
    default: /* C_HSTRLEN */
        it = map_field(v, a->v[2], a->len[2]);
        print_int(it ? (int64_t)it->len : 0);
        break;
    }
}

/* An error about one operation: names the key when its type is why. */
static void print_op_error(cli *s, const pending *p, size_t op, int st)
{
    trellis_result r;
    trellis_batch_result(s->batch, p->first + op, &r);
    if (p->def->id == C_DEL && st == TRELLIS_INVALID && op + 1 < p->words.n) {
        print_error(s, EXIT_SERVER,
                    "cannot delete '%.200s': %s keys only grow (SET, MAX and PRIORITY cannot be "
                    "deleted) (INVALID)",
                    p->words.v[op + 1], trellis_type_name(r.type));
        return;
    }
    if (p->def->id == C_HINCRBY && st == TRELLIS_INVALID) {
        print_error(s, EXIT_SERVER, "hash value is not an integer (INVALID)");
        return;
    }
    if (st == TRELLIS_LATTICE_MISMATCH && r.type != TRELLIS_TYPE_NONE) {
        print_error(s, EXIT_SERVER,
                    "'%.200s' has type %s, which %s does not apply to "
                    "(LATTICE_MISMATCH)",
                    p->words.n > 1 ? p->words.v[1] : "?", trellis_type_name(r.type), p->def->name);
        return;
    }
    print_status_error(s, st);
}

/* Prints the answer to one command of an executed batch. */
static void answer(cli *s, const pending *p)
{
    if (p->code) {
        print_error(s, p->code, "%s", p->msg);
        return;
    }
    trellis_batch *b = s->batch;
    int st = trellis_batch_status(b, p->first);
    const trellis_value *v = trellis_batch_value(b, p->first);
    trellis_result r;
    trellis_batch_result(b, p->first, &r);
    switch (p->def->id) {
    case C_GET:
        if (st == TRELLIS_OK && v)
            print_value(s, v);
        else if (st == TRELLIS_NOT_FOUND)
            print_line("(nil)");
        else
            print_op_error(s, p, 0, st);
        break;
    case C_SMEMBERS:
        if (st == TRELLIS_OK && v && v->type != TRELLIS_TYPE_SET && v->type != TRELLIS_TYPE_ORSET) {
            print_error(s, EXIT_SERVER, "'%.200s' has type %s, not a set (LATTICE_MISMATCH)",
                        p->words.v[1], trellis_type_name(v->type));
        } else if (st == TRELLIS_OK && v) {
            print_value(s, v);
        } else if (st == TRELLIS_NOT_FOUND) {
            print_line("(nil)");
        } else {
            print_op_error(s, p, 0, st);
        }
        break;
    case C_HGET:
    case C_HMGET:
    case C_HGETALL:
    case C_HKEYS:
    case C_HVALS:
    case C_HLEN:
    case C_HEXISTS:
    case C_HSTRLEN:
        if (st == TRELLIS_OK || st == TRELLIS_NOT_FOUND)
            answer_map(s, p, st == TRELLIS_OK ? v : NULL);
        else
            print_op_error(s, p, 0, st);
        break;
    case C_TYPE:
        if (st == TRELLIS_OK || st == TRELLIS_NOT_FOUND) /* a deleted register keeps its type */
            print_line(r.type != TRELLIS_TYPE_NONE ? trellis_type_name(r.type) : "none");
        else
            print_op_error(s, p, 0, st);
        break;
    case C_TTL:
    case C_PTTL:
        if (st == TRELLIS_NOT_FOUND) {
            print_int(-2);
        } else if (st != TRELLIS_OK) {
            print_op_error(s, p, 0, st);
        } else if (r.deadline_ms == 0) {
            print_int(-1);
        } else {
            uint64_t now = trellis_clock_ms(s->client);
            int64_t ms = r.deadline_ms > now ? (int64_t)(r.deadline_ms - now) : 0;
            print_int(p->def->id == C_PTTL ? ms : (ms + 500) / 1000);
        }
        break;
    case C_EXISTS: {
        int64_t k = 0;
        for (size_t i = 0; i < p->nops; i++) {
            st = trellis_batch_status(b, p->first + i);
            if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
                print_op_error(s, p, i, st);
                return;
            }
            k += st == TRELLIS_OK;
        }
        print_int(k);
        break;
    }
    case C_EXPIRE:
    case C_PEXPIRE:
    case C_EXPIREAT:
    case C_PEXPIREAT:
    case C_PERSIST:
    case C_HSET:
    case C_HSETNX:
    case C_HDEL:
    case C_HINCRBY:
        if (st == TRELLIS_OK)
            print_int(r.integer);
        else if (st == TRELLIS_NOT_FOUND)
            print_int(0);
        else
            print_op_error(s, p, 0, st);
        break;
    case C_INCRBY:
    case C_DECRBY:
    case C_INCR:
    case C_DECR:
        if (st == TRELLIS_OK && v)
            print_int(v->integer);
        else if (st == TRELLIS_OK)
            print_line("OK");
        else
            print_op_error(s, p, 0, st);
        break;
    default:
        /* Writes: OK when every operation of the command succeeded. */
        for (size_t i = 0; i < p->nops; i++) {
            st = trellis_batch_status(b, p->first + i);
            if (st != TRELLIS_OK) {
                print_op_error(s, p, i, st);
                return;
            }
        }
        print_line("OK");
        break;
    }
}

/* Executes the gathered commands and prints their answers in order. */
static void flush(cli *s)
{
    if (s->npend == 0)
        return;
    if (trellis_batch_count(s->batch) > 0)
        trellis_batch_exec(s->client, s->batch);
    for (size_t i = 0; i < s->npend; i++) {
        answer(s, &s->pend[i]);
        cli_argv_free(&s->pend[i].words);
    }
    s->npend = 0;
    trellis_batch_clear(s->batch);
    fflush(stdout);
}

/* KEYS: a whole walk of the key space. */
static void run_keys(cli *s, const cli_argv *a)
{
    trellis_scan_opts o = {1000, a->v[1], a->len[1], TRELLIS_TYPE_NONE};
    uint64_t cursor = 0;
    do {
        trellis_value *keys;
        int st = trellis_scan(s->client, &cursor, &o, &keys);
        if (st != TRELLIS_OK) {
            print_call_error(s, st);
            return;
        }
        for (size_t i = 0; i < keys->count; i++)
            print_bytes(s, keys->items[i].data, keys->items[i].len);
        trellis_value_free(keys);
    } while (cursor != 0);
}

static void run_scan(cli *s, const cmd_args *x)
{
    uint64_t cursor = x->cursor;
    trellis_value *keys;
    int st = trellis_scan(s->client, &cursor, &x->scan, &keys);
    if (st != TRELLIS_OK) {
        print_call_error(s, st);
        return;
    }
    printf("%" PRIu64 "\n", cursor);
    for (size_t i = 0; i < keys->count; i++)
        print_bytes(s, keys->items[i].data, keys->items[i].len);
    trellis_value_free(keys);
}

static void run_dbsize(cli *s, const cli_argv *a)
{
    uint64_t n;
    int st = a->n > 1 ? trellis_node_dbsize(s->client, a->v[1], &n, NULL)
                      : trellis_dbsize(s->client, &n, NULL);
    if (st == TRELLIS_OK)
        printf("%" PRIu64 "\n", n);
    else
        print_call_error(s, st);
}

static void run_nodes(cli *s)
{
    trellis_node *nodes;
    size_t n;
    int st = trellis_nodes(s->client, &nodes, &n);
    if (st != TRELLIS_OK) {
        print_status_error(s, st);
        return;
    }
    for (size_t i = 0; i < n; i++)
        printf("%s %s %s %s %" PRIu32 "\n", nodes[i].id, trellis_tier_name(nodes[i].tier),
               nodes[i].address, trellis_state_name(nodes[i].state), nodes[i].shards);
    trellis_free(nodes);
}

static void run_stats(cli *s)
{
    trellis_stats st;
    int rc = trellis_stats_get(s->client, &st);
    if (rc != TRELLIS_OK) {
        print_status_error(s, rc);
        return;
    }
    printf("epoch %" PRIu64 "\n", st.epoch);
    for (size_t i = 0; i < st.tier_count; i++) {
        const trellis_tier_stats *t = &st.tiers[i];
        printf("%s nodes=%" PRIu32 " keys=%" PRIu64 " bytes=%" PRIu64 " capacity=%" PRIu64
               " ops_per_sec=%.1f busy=%.3f p99_us=%" PRIu64 "\n",
               trellis_tier_name(t->tier), t->nodes, t->keys, t->bytes, t->capacity, t->ops_per_sec,
               t->busy, t->p99_us);
    }
    printf("hot_keys %" PRIu32 "\n", st.hot_keys);
    printf("client_p99_us %" PRIu64 "\n", st.client_p99_us);
}

/* CSET: read the register, then write over what was read. */
static void run_cset(cli *s, const cli_argv *a)
{
    trellis_value *seen = NULL;
    int st = trellis_causal_get(s->client, a->v[1], a->len[1], &seen);
    if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
        print_status_error(s, st);
        return;
    }
    st = trellis_causal_put(s->client, a->v[1], a->len[1], seen, a->v[2], a->len[2]);
    trellis_value_free(seen);
    if (st == TRELLIS_OK)
        print_line("OK");
    else
        print_status_error(s, st);
}

/* Runs or queues one command line. */
static void handle(cli *s, const cli_argv *a)
{
    if (a->n == 0)
        return;
    char msg[256];
    cmd_args x;
    const cmd_def *d = check_cmd(a, &x, msg, sizeof(msg));
    if (!d) {
        if (push_pending(s, NULL, 0, EXIT_USAGE, msg) != 0)
            print_error(s, EXIT_USAGE, "%s", msg);
        return;
    }
    if (d->batch) {
        size_t first = trellis_batch_count(s->batch);
        int rc = add_ops(s, d, a, &x);
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "%s", trellis_strerror(-rc));
            if (-rc == TRELLIS_INVALID &&
                (d->id == C_SET || (d->id >= C_EXPIRE && d->id <= C_PEXPIREAT)))
                snprintf(msg, sizeof(msg), "invalid expire time in '%s'", d->name);
            push_pending(s, NULL, 0, -rc == TRELLIS_INVALID ? EXIT_USAGE : EXIT_SERVER, msg);
            return;
        }
        if (push_pending(s, d, first, 0, NULL) != 0) {
            print_error(s, EXIT_SERVER, "out of memory");
            return;
        }
        /* What the answer needs of the words: the fields of map reads and
         * the keys of DEL and EXISTS; otherwise the name and the key. */
        pending *p = &s->pend[s->npend - 1];
        int all = d->id == C_DEL || d->id == C_EXISTS || (d->id >= C_HGET && d->id <= C_HSTRLEN);
        for (size_t i = 0; i < a->n && (all || i < 2); i++)
            if (cli_argv_push(&p->words, a->v[i], a->len[i]) != 0) {
                p->code = EXIT_SERVER;
                snprintf(p->msg, sizeof(p->msg), "out of memory");
            }
        return;
    }
    flush(s);
    switch (d->id) {
    case C_NODES:
        run_nodes(s);
        break;
    case C_STATS:
        run_stats(s);
        break;
    case C_PING: {
        int st = trellis_ping(s->client);
        if (st == TRELLIS_OK)
            print_line("PONG");
        else
            print_status_error(s, st);
        break;
    }
    case C_CSET:
        run_cset(s, a);
        break;
    case C_KEYS:
        run_keys(s, a);
        break;
    case C_SCAN:
        run_scan(s, &x);
        break;
    case C_DBSIZE:
        run_dbsize(s, a);
        break;
    case C_HELP:
        print_help();
        break;
    case C_QUIT:
        s->quit = 1;
        break;
    default:
        break;
    }
    fflush(stdout);
}

/* ---- input
 * ------------------------------------------------------------------------------------------ */

/* Lines from a file descriptor, with a way to ask whether more are ready
 * without blocking. */
typedef struct reader {
    int fd;
    char *buf;
    size_t start, len, cap;
    int eof;
} reader;

/* The end of the first complete line buffered, or NULL. */
static char *reader_buffered_line(const reader *r)
{
    return r->len > r->start ? memchr(r->buf + r->start, '\n', r->len - r->start) : NULL;
}

/* 1 if a line can be returned without blocking. */
static int reader_ready(reader *r)
{
    if (reader_buffered_line(r) || r->eof)
        return 1;
    struct pollfd p = {r->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* The next line (without its newline; a trailing CR is dropped), valid
 * until the next call. 1 on success, 0 at the end, -1 on an error or a line
 * over CLI_MAX_LINE. */
static int reader_next(reader *r, const char **line, size_t *len)
{
    for (;;) {
        char *nl = reader_buffered_line(r);
        if (nl || (r->eof && r->len > r->start)) {
            size_t n = nl ? (size_t)(nl - (r->buf + r->start)) : r->len - r->start;
            *line = r->buf + r->start;
            r->start += n + (nl ? 1 : 0);
            if (n > 0 && (*line)[n - 1] == '\r')
                n--;
            *len = n;
            return 1;
        }
        if (r->eof)
            return 0;
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->len - r->start);
            r->len -= r->start;
            r->start = 0;
        }
        if (r->len == r->cap) {
            if (r->cap >= CLI_MAX_LINE)
                return -1;
            size_t cap = r->cap ? r->cap * 2 : 65536;
            char *b = realloc(r->buf, cap);
            if (!b)
                return -1;
            r->buf = b;
            r->cap = cap;
        }
        ssize_t got = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            r->eof = 1;
        r->len += (size_t)got;
    }
}

static void run_piped(cli *s)
{
    reader r = {0, NULL, 0, 0, 0, 0};
    cli_argv a;
    cli_argv_init(&a);
    const char *line;
    size_t len;
    int rc;
    while (!s->quit && (rc = reader_next(&r, &line, &len)) == 1) {
        char err[128];
        if (cli_split(line, len, &a, err, sizeof(err)) != 0)
            push_pending(s, NULL, 0, EXIT_USAGE, err);
        else
            handle(s, &a);
        if (s->npend >= CLI_BATCH_MAX || !reader_ready(&r))
            flush(s);
    }
    flush(s);
    if (rc < 0)
        print_error(s, EXIT_USAGE, "cannot read standard input (or a line is too long)");
    cli_argv_free(&a);
    free(r.buf);
}

static void history_path(char *buf, size_t cap)
{
    const char *home = getenv("HOME");
    buf[0] = '\0';
    if (home && home[0])
        snprintf(buf, cap, "%s/%s", home, CLI_HISTORY_FILE);
}

static void run_interactive(cli *s)
{
    char hist[PATH_MAX], prompt[300];
    history_path(hist, sizeof(hist));
    using_history();
    stifle_history(CLI_HISTORY_LEN);
    if (hist[0])
        read_history(hist);
    /* The prompt names the router, as redis-cli names its server. */
    const char *host = strstr(s->url, "://");
    snprintf(prompt, sizeof(prompt), "%.*s> ", (int)strcspn(host ? host + 3 : s->url, ","),
             host ? host + 3 : s->url);
    cli_argv a;
    cli_argv_init(&a);
    char *line;
    while (!s->quit && (line = readline(prompt)) != NULL) {
        char err[128];
        if (line[0])
            add_history(line);
        if (cli_split(line, strlen(line), &a, err, sizeof(err)) != 0)
            print_error(s, EXIT_USAGE, "%s", err);
        else
            handle(s, &a);
        flush(s);
        free(line);
    }
    cli_argv_free(&a);
    if (hist[0])
        write_history(hist);
}

/* ---- main
 * -----------------------------------------------------------------------------------------------
 */

static void usage(FILE *f)
{
    fprintf(f, "usage: trellis-cli [-r URL] [-t MS] [--ack one|all] [-x] [COMMAND ARG...]\n"
               "\n"
               "The trellis command-line client. With a command, runs it and exits; without one,\n"
               "reads commands from standard input: an interactive prompt on a terminal, one\n"
               "command per line (pipelined) otherwise. Arguments typed or piped may be quoted\n"
               "as in redis-cli: \"with spaces and \\x00 escapes\" or 'single quoted'.\n"
               "\n"
               "options:\n"
               "  -r, --router URL     router to connect to; several separated by commas\n"
               "                       (default $TRELLIS_ROUTER, else " CLI_DEFAULT_ROUTER ")\n"
               "  -t, --timeout MS     deadline of each command (default 2000)\n"
               "      --retries N      retries within the deadline (default 4)\n"
               "      --ack one|all    writes return after one replica or all replicas took them\n"
               "  -x                   read the command's last argument from standard input\n"
               "                       (binary-safe)\n"
               "  -c, --config FILE    read client.*, tls.*, auth.token_file and cluster.routers\n"
               "                       from a trellis configuration file\n"
               "      --tls-ca FILE    CA certificate (PEM) for tls+tcp:// routers (tls.ca_file)\n"
               "      --tls-cert FILE  own certificate and key (PEM), for mutual TLS\n"
               "                       (tls.cert_key_file)\n"
               "      --tls-server-name NAME  DNS name to verify in server certificates\n"
               "      --token-file FILE  file holding the cluster's shared token\n"
               "                       (auth.token_file; default $TRELLIS_TOKEN_FILE)\n"
               "      --help           print this help and exit\n"
               "      --version        print the version and exit\n"
               "\n");
    fprintf(f, "commands (case-insensitive):\n");
    for (size_t i = 0; i < NCMDS; i++)
        if (cmds[i].id != C_QUIT)
            fprintf(f, "  %-9s %-26s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
    fprintf(f, "\n"
               "Output: writes print OK, a missing key prints (nil), values print one per line.\n"
               "Exit status: 0 on success (a missing key included), 1 on a server error, 2 on\n"
               "a usage error; errors are printed to stderr as \"error: TEXT\".\n");
}

static int read_all_stdin(cli_argv *a)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (len == cap) {
            if (cap >= CLI_MAX_LINE) {
                free(buf);
                return -1;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return -1;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t got = read(0, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(buf);
            return -1;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    int rc = cli_argv_push(a, buf, len);
    free(buf);
    return rc;
}

static int load_config(cli *s, const char *path, int have_url)
{
    static config cfg; /* its strings back the options for the process's life */
    char err[CONFIG_ERR_MAX];
    config_defaults(&cfg);
    if (config_load_file(&cfg, path, err, sizeof(err)) != 0 ||
        config_load_token(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    s->opts.timeout_ms = (int)cfg.client.timeout_ms;
    s->opts.retries = (int)cfg.client.retries;
    s->opts.ack = cfg.client.ack == CONFIG_ACK_ALL ? TRELLIS_ACK_ALL : TRELLIS_ACK_ONE;
    s->opts.report_latency = (int)cfg.client.report_latency;
    s->opts.max_message_bytes = (size_t)cfg.limits.max_message_bytes;
    s->opts.tls_ca_file = cfg.tls.ca_file[0] ? cfg.tls.ca_file : NULL;
    s->opts.tls_cert_key_file = cfg.tls.cert_key_file[0] ? cfg.tls.cert_key_file : NULL;
    s->opts.tls_server_name = cfg.tls.server_name[0] ? cfg.tls.server_name : NULL;
    s->opts.auth_token = cfg.auth.token[0] ? cfg.auth.token : NULL;
    if (!have_url && cfg.cluster.routers.n > 0) {
        s->url[0] = '\0';
        for (int i = 0; i < cfg.cluster.routers.n; i++) {
            size_t used = strlen(s->url);
            snprintf(s->url + used, sizeof(s->url) - used, "%s%s", i ? "," : "",
                     cfg.cluster.routers.v[i]);
        }
    }
    return 0;
}

/* Router addresses given as HOST:PORT get tcp:// (as redis-cli takes
 * -h and -p, users write 127.0.0.1:6450). Returns -1 when the list does
 * not fit. */
static int normalize_urls(char *url, size_t cap)
{
    char out[sizeof(((cli *)0)->url)];
    size_t used = 0;
    out[0] = 0;
    const char *p = url;
    while (*p) {
        size_t n = strcspn(p, ",");
        int scheme = memmem(p, n, "://", 3) != NULL;
        int k = snprintf(out + used, sizeof(out) - used, "%s%s%.*s", used ? "," : "",
                         scheme || n == 0 ? "" : "tcp://", (int)n, p);
        if (k < 0 || (size_t)k >= sizeof(out) - used)
            return -1;
        used += (size_t)k;
        p += n + (p[n] == ',');
    }
    if (used >= cap)
        return -1;
    memcpy(url, out, used + 1);
    return 0;
}

/* Why trellis_connect failed, in a user's words: an address that is not
 * one, no router answering there, or one that answered but not in time. */
static void connect_error(const cli *s, int rc)
{
    switch (rc) {
    case TRELLIS_INVALID:
        if (strstr(trellis_last_error(), "is not a router address"))
            fprintf(stderr,
                    "error: '%s' is not a router address: use HOST:PORT or tcp://HOST:PORT "
                    "(tls+tcp:// with TLS, ipc://PATH), several separated by commas\n",
                    s->url);
        else
            fprintf(stderr, "error: cannot connect to %s: %s (INVALID)\n", s->url,
                    trellis_last_error()[0] ? trellis_last_error() : trellis_strerror(rc));
        break;
    case TRELLIS_UNAVAILABLE:
        fprintf(stderr,
                "error: cannot reach a router at %s: nothing answers there (is trellis-route "
                "running, and is that its port?) (UNAVAILABLE)\n",
                s->url);
        break;
    case TRELLIS_TIMEOUT:
        fprintf(stderr, "error: the router at %s did not answer within %d ms (TIMEOUT)\n", s->url,
                s->opts.timeout_ms);
        break;
    default:
        fprintf(stderr, "error: cannot connect to %s: %s (%s)\n", s->url, trellis_strerror(rc),
                trellis_status_name(rc));
        break;
    }
}

static int parse_ms(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || end == text || v <= 0 || v > 3600000)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static cli s;
    trellis_options_init(&s.opts);
    const char *env = getenv("TRELLIS_ROUTER");
    snprintf(s.url, sizeof(s.url), "%s", env && env[0] ? env : CLI_DEFAULT_ROUTER);

    enum {
        OPT_ACK = 256,
        OPT_HELP,
        OPT_VERSION,
        OPT_RETRIES,
        OPT_TLS_CA,
        OPT_TLS_CERT,
        OPT_TLS_NAME,
        OPT_TOKEN_FILE
    };
    static const struct option longopts[] = {
        {"router", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"ack", required_argument, NULL, OPT_ACK},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"config", required_argument, NULL, 'c'},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-server-name", required_argument, NULL, OPT_TLS_NAME},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *router = NULL, *config_file = NULL, *timeout = NULL, *ack = NULL, *retries = NULL;
    const char *tls_ca = NULL, *tls_cert = NULL, *tls_name = NULL, *token_file = NULL;
    int opt;
    opterr = 0;
    /* "+": options end at the command, so that its arguments may start with '-'. */
    while ((opt = getopt_long(argc, argv, "+r:t:xc:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'r':
            router = optarg;
            break;
        case 't':
            timeout = optarg;
            break;
        case 'x':
            s.read_stdin_arg = 1;
            break;
        case 'c':
            config_file = optarg;
            break;
        case OPT_ACK:
            ack = optarg;
            break;
        case OPT_RETRIES:
            retries = optarg;
            break;
        case OPT_TLS_CA:
            tls_ca = optarg;
            break;
        case OPT_TLS_CERT:
            tls_cert = optarg;
            break;
        case OPT_TLS_NAME:
            tls_name = optarg;
            break;
        case OPT_TOKEN_FILE:
            token_file = optarg;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf("trellis-cli %s\n", TRELLIS_VERSION);
            return EXIT_OK;
        default:
            if (optopt && strchr("rtc", optopt))
                fprintf(stderr, "error: option -%c needs an argument (see --help)\n", optopt);
            else
                fprintf(stderr, "error: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (config_file && load_config(&s, config_file, router != NULL || (env && env[0])) != 0)
        return EXIT_USAGE;
    if (router)
        snprintf(s.url, sizeof(s.url), "%s", router);
    if (normalize_urls(s.url, sizeof(s.url)) != 0) {
        fprintf(stderr, "error: the router list is too long\n");
        return EXIT_USAGE;
    }
    /* TLS and the token: flags override the configuration file. */
    if (tls_ca)
        s.opts.tls_ca_file = tls_ca;
    if (tls_cert)
        s.opts.tls_cert_key_file = tls_cert;
    if (tls_name)
        s.opts.tls_server_name = tls_name;
    if (!token_file && !config_file) {
        const char *e = getenv("TRELLIS_TOKEN_FILE");
        token_file = e && e[0] ? e : NULL;
    }
    if (token_file) {
        static config tcfg; /* its token backs the option for the process's life */
        char err[CONFIG_ERR_MAX];
        config_defaults(&tcfg);
        snprintf(tcfg.auth.token_file, sizeof(tcfg.auth.token_file), "%s", token_file);
        if (config_load_token(&tcfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "error: %s\n", err);
            return EXIT_USAGE;
        }
        s.opts.auth_token = tcfg.auth.token;
    }
    if (timeout && parse_ms(timeout, &s.opts.timeout_ms) != 0) {
        fprintf(stderr, "error: --timeout wants milliseconds between 1 and 3600000, not '%s'\n",
                timeout);
        return EXIT_USAGE;
    }
    if (retries) {
        char *end;
        long v = strtol(retries, &end, 10);
        if (*end || end == retries || v < 0 || v > 100) {
            fprintf(stderr, "error: --retries wants a number between 0 and 100\n");
            return EXIT_USAGE;
        }
        s.opts.retries = (int)v;
    }
    if (ack) {
        if (strcasecmp(ack, "one") == 0) {
            s.opts.ack = TRELLIS_ACK_ONE;
        } else if (strcasecmp(ack, "all") == 0) {
            s.opts.ack = TRELLIS_ACK_ALL;
        } else {
            fprintf(stderr, "error: --ack wants one or all, not '%s'\n", ack);
            return EXIT_USAGE;
        }
    }

    /* The command, checked before connecting: a usage error needs no server. */
    cli_argv cmd;
    cli_argv_init(&cmd);
    int oneshot = optind < argc;
    if (oneshot) {
        for (int i = optind; i < argc; i++)
            if (cli_argv_push(&cmd, argv[i], strlen(argv[i])) != 0)
                return EXIT_SERVER;
        if (s.read_stdin_arg && read_all_stdin(&cmd) != 0) {
            fprintf(stderr, "error: cannot read the last argument from standard input\n");
            cli_argv_free(&cmd);
            return EXIT_USAGE;
        }
        char msg[256];
        cmd_args x;
        const cmd_def *d = check_cmd(&cmd, &x, msg, sizeof(msg));
        if (!d) {
            fprintf(stderr, "error: %s\n", msg);
            cli_argv_free(&cmd);
            return EXIT_USAGE;
        }
        if (d->id == C_HELP) {
            print_help();
            cli_argv_free(&cmd);
            return EXIT_OK;
        }
    } else if (s.read_stdin_arg) {
        fprintf(stderr, "error: -x needs a command (see --help)\n");
        return EXIT_USAGE;
    }

    s.interactive = !oneshot && isatty(0);
    int rc = trellis_connect(s.url, &s.opts, &s.client);
    if (rc != TRELLIS_OK) {
        connect_error(&s, rc);
        cli_argv_free(&cmd);
        return rc == TRELLIS_INVALID ? EXIT_USAGE : EXIT_SERVER;
    }
    s.batch = trellis_batch_new();
    if (!s.batch) {
        fprintf(stderr, "error: out of memory\n");
        trellis_close(s.client);
        return EXIT_SERVER;
    }
    if (oneshot) {
        handle(&s, &cmd);
        flush(&s);
    } else if (s.interactive) {
        /* At the prompt errors were shown as they happened. */
        run_interactive(&s);
        s.status = EXIT_OK;
    } else {
        run_piped(&s);
    }
    fflush(stdout);
    cli_argv_free(&cmd);
    trellis_batch_free(s.batch);
    free(s.pend);
    trellis_close(s.client);
    return s.status;
}
