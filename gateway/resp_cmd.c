/*
 * resp_cmd.c - Redis commands mapped onto trellis lattices (docs/redis.md),
 * through an executor (resp_cmd.h).
 *
 * Strings are LWW registers, sets are ORSETs (a grow-only SET key works
 * for reads and SADD), INCR and friends work on PN-COUNTERs, hashes are
 * MAPs, and any key may expire. Replies that Redis computes from the state
 * before a write (SADD's and SREM's counts, DEL's count of keys that
 * existed) come from a read of the key placed just before the write in the
 * same round: one round trip, exact for one gateway on a quiet key, an
 * approximation under concurrent writers (the lattice itself stays correct
 * either way). HSET's, HDEL's and EXPIRE's answers come from the replica
 * that took the write.
 */
#include "gateway/resp_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/glob.h"
#include "base/kvop.h"

#define NOAUTH  RESP_CMD_NOAUTH
#define DATA    RESP_CMD_DATA
#define COUNTER (RESP_CMD_DATA | RESP_CMD_COUNTER)
#define WALK    (RESP_CMD_DATA | RESP_CMD_WALK)

#define SCAN_DEFAULT_COUNT 10

static const resp_cmd_def cmd_table[] = {
    {"get", RK_GET, 2, DATA, "readonly fast", 1, 1, 1},
    {"set", RK_SET, -3, DATA, "write denyoom", 1, 1, 1},
    {"setex", RK_SETEX, 4, DATA, "write denyoom", 1, 1, 1},
    {"psetex", RK_PSETEX, 4, DATA, "write denyoom", 1, 1, 1},
    {"getex", RK_GETEX, -2, DATA, "write fast", 1, 1, 1},
    {"mget", RK_MGET, -2, DATA, "readonly fast", 1, -1, 1},
    {"mset", RK_MSET, -3, DATA, "write denyoom", 1, -1, 2},
    {"del", RK_DEL, -2, DATA, "write", 1, -1, 1},
    {"unlink", RK_DEL, -2, DATA, "write fast", 1, -1, 1},
    {"exists", RK_EXISTS, -2, DATA, "readonly fast", 1, -1, 1},
    {"type", RK_TYPE, 2, DATA, "readonly fast", 1, 1, 1},
    {"expire", RK_EXPIRE, -3, DATA, "write fast", 1, 1, 1},
    {"pexpire", RK_PEXPIRE, -3, DATA, "write fast", 1, 1, 1},
    {"expireat", RK_EXPIREAT, -3, DATA, "write fast", 1, 1, 1},
    {"pexpireat", RK_PEXPIREAT, -3, DATA, "write fast", 1, 1, 1},
    {"persist", RK_PERSIST, 2, DATA, "write fast", 1, 1, 1},
    {"ttl", RK_TTL, 2, DATA, "readonly fast", 1, 1, 1},
    {"pttl", RK_PTTL, 2, DATA, "readonly fast", 1, 1, 1},
    {"expiretime", RK_EXPIRETIME, 2, DATA, "readonly fast", 1, 1, 1},
    {"pexpiretime", RK_PEXPIRETIME, 2, DATA, "readonly fast", 1, 1, 1},
    {"scan", RK_SCAN, -2, WALK, "readonly", 0, 0, 0},
    {"keys", RK_KEYS, 2, WALK, "readonly", 0, 0, 0},
    {"dbsize", RK_DBSIZE, 1, WALK, "readonly fast", 0, 0, 0},
    {"sadd", RK_SADD, -3, DATA, "write denyoom fast", 1, 1, 1},
    {"srem", RK_SREM, -3, DATA, "write fast", 1, 1, 1},
    {"smembers", RK_SMEMBERS, 2, DATA, "readonly", 1, 1, 1},
    {"sismember", RK_SISMEMBER, 3, DATA, "readonly fast", 1, 1, 1},
    {"smismember", RK_SMISMEMBER, -3, DATA, "readonly fast", 1, 1, 1},
    {"scard", RK_SCARD, 2, DATA, "readonly fast", 1, 1, 1},
    {"incr", RK_INCR, 2, COUNTER, "write denyoom fast", 1, 1, 1},
    {"decr", RK_DECR, 2, COUNTER, "write denyoom fast", 1, 1, 1},
    {"incrby", RK_INCRBY, 3, COUNTER, "write denyoom fast", 1, 1, 1},
    {"decrby", RK_DECRBY, 3, COUNTER, "write denyoom fast", 1, 1, 1},
    {"hset", RK_HSET, -4, DATA, "write denyoom fast", 1, 1, 1},
    {"hmset", RK_HMSET, -4, DATA, "write denyoom fast", 1, 1, 1},
    {"hsetnx", RK_HSETNX, 4, DATA, "write denyoom fast", 1, 1, 1},
    {"hget", RK_HGET, 3, DATA, "readonly fast", 1, 1, 1},
    {"hmget", RK_HMGET, -3, DATA, "readonly fast", 1, 1, 1},
    {"hdel", RK_HDEL, -3, DATA, "write fast", 1, 1, 1},
    {"hgetall", RK_HGETALL, 2, DATA, "readonly", 1, 1, 1},
    {"hkeys", RK_HKEYS, 2, DATA, "readonly", 1, 1, 1},
    {"hvals", RK_HVALS, 2, DATA, "readonly", 1, 1, 1},
    {"hlen", RK_HLEN, 2, DATA, "readonly fast", 1, 1, 1},
    {"hexists", RK_HEXISTS, 3, DATA, "readonly fast", 1, 1, 1},
    {"hincrby", RK_HINCRBY, 4, COUNTER, "write denyoom fast", 1, 1, 1},
    {"hstrlen", RK_HSTRLEN, 3, DATA, "readonly fast", 1, 1, 1},
    {"hscan", RK_HSCAN, -3, DATA, "readonly", 1, 1, 1},
    {"ping", RK_PING, -1, NOAUTH, "fast", 0, 0, 0},
    {"echo", RK_ECHO, 2, 0, "fast", 0, 0, 0},
    {"info", RK_INFO, -1, 0, "loading stale", 0, 0, 0},
    {"command", RK_COMMAND, -1, 0, "loading stale", 0, 0, 0},
    {"client", RK_CLIENT, -2, 0, "loading stale", 0, 0, 0},
    {"select", RK_SELECT, 2, 0, "loading stale fast", 0, 0, 0},
    {"quit", RK_QUIT, -1, NOAUTH, "loading stale fast no_auth", 0, 0, 0},
    {"hello", RK_HELLO, -1, NOAUTH, "loading stale fast no_auth", 0, 0, 0},
    {"auth", RK_AUTH, -2, NOAUTH, "loading stale fast no_auth", 0, 0, 0},
    {"config", RK_CONFIG, -2, 0, "admin loading stale", 0, 0, 0},
    {"reset", RK_RESET, 1, NOAUTH, "loading stale fast no_auth", 0, 0, 0},
};
#define NCMDS (sizeof(cmd_table) / sizeof(cmd_table[0]))

const resp_cmd_def *resp_cmd_lookup(const uint8_t *name, size_t len)
{
    if (len == 0 || len > 16)
        return NULL;
    for (size_t i = 0; i < NCMDS; i++)
        if (strlen(cmd_table[i].name) == len &&
            strncasecmp(cmd_table[i].name, (const char *)name, len) == 0)
            return &cmd_table[i];
    return NULL;
}

int resp_cmd_arity_ok(const resp_cmd_def *d, size_t argc)
{
    if (d->arity >= 0)
        return argc == (size_t)d->arity;
    return argc >= (size_t)-d->arity;
}

size_t resp_cmd_count(void)
{
    return NCMDS;
}

const resp_cmd_def *resp_cmd_at(size_t i)
{
    return i < NCMDS ? &cmd_table[i] : NULL;
}

void resp_cmd_describe(resp_buf *b, const resp_cmd_def *d, int proto)
{
    const char *f = d->rflags;
    size_t nflags = 0;
    for (const char *s = f; *s;) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        nflags++;
        while (*s && *s != ' ')
            s++;
    }
    resp_add_array(b, 7);
    resp_add_cstr(b, d->name);
    resp_add_int(b, d->arity);
    resp_add_set(b, nflags, proto);
    for (const char *s = f; *s;) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        char word[32];
        snprintf(word, sizeof(word), "%.*s", (int)(e - s), s);
        resp_add_simple(b, word);
        s = e;
    }
    resp_add_int(b, d->first_key);
    resp_add_int(b, d->last_key);
    resp_add_int(b, d->step);
    resp_add_set(b, 0, proto); /* ACL categories: none */
}

/* ---- the round's context --------------------------------------------------------------- */

#define NO_READ (-1)

/* A key of the batch: the read SADD and SREM of it count from (NO_READ
 * once another write of the key came in between). */
typedef struct kentry {
    const uint8_t *key;
    size_t klen;
    uint64_t h;
    int read;
    int used;
} kentry;

/* A member added (present 1) or removed (0) by an earlier command of the
 * batch, since read `read`. */
typedef struct oentry {
    const uint8_t *m;
    size_t mlen;
    uint64_t h;
    int read;
    int present;
    int used;
} oentry;

struct resp_ctx {
    kentry *k;
    size_t kn, kcap;
    oentry *o;
    size_t on, ocap;
};

static uint64_t hash_bytes(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

resp_ctx *resp_ctx_new(void)
{
    return calloc(1, sizeof(resp_ctx));
}

void resp_ctx_reset(resp_ctx *x)
{
    if (x->kn)
        memset(x->k, 0, x->kcap * sizeof(*x->k));
    if (x->on)
        memset(x->o, 0, x->ocap * sizeof(*x->o));
    x->kn = x->on = 0;
}

void resp_ctx_free(resp_ctx *x)
{
    if (!x)
        return;
    free(x->k);
    free(x->o);
    free(x);
}

static kentry *key_slot(kentry *t, size_t cap, const uint8_t *key, size_t klen, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (t[i].used && !(t[i].h == h && t[i].klen == klen && memcmp(t[i].key, key, klen) == 0))
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* The entry of key, created (read NO_READ) if needed; NULL when out of
 * memory. */
static kentry *ctx_key(resp_ctx *x, const uint8_t *key, size_t klen)
{
    if ((x->kn + 1) * 2 > x->kcap) {
        size_t cap = x->kcap ? x->kcap * 2 : 64;
        kentry *t = calloc(cap, sizeof(*t));
        if (!t)
            return NULL;
        for (size_t i = 0; i < x->kcap; i++)
            if (x->k[i].used)
                *key_slot(t, cap, x->k[i].key, x->k[i].klen, x->k[i].h) = x->k[i];
        free(x->k);
        x->k = t;
        x->kcap = cap;
    }
    uint64_t h = hash_bytes(key, klen, 0);
    kentry *e = key_slot(x->k, x->kcap, key, klen, h);
    if (!e->used) {
        *e = (kentry){key, klen, h, NO_READ, 1};
        x->kn++;
    }
    return e;
}

/* Another write of key: SADD and SREM after it need a read of their own. */
static void ctx_key_written(resp_ctx *x, const uint8_t *key, size_t klen)
{
    if (!x || x->kn == 0)
        return;
    kentry *e = key_slot(x->k, x->kcap, key, klen, hash_bytes(key, klen, 0));
    if (e->used)
        e->read = NO_READ;
}

static oentry *ov_slot(oentry *t, size_t cap, int read, const uint8_t *m, size_t mlen, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (t[i].used && !(t[i].h == h && t[i].read == read && t[i].mlen == mlen &&
                          (mlen == 0 || memcmp(t[i].m, m, mlen) == 0)))
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* What earlier commands of the batch did to member m since read: 1 added,
 * 0 removed, -1 nothing. */
static int ov_get(const resp_ctx *x, int read, const uint8_t *m, size_t mlen)
{
    if (x->on == 0)
        return -1;
    const oentry *e = ov_slot(x->o, x->ocap, read, m, mlen, hash_bytes(m, mlen, (uint64_t)read));
    return e->used ? e->present : -1;
}

static void ov_set(resp_ctx *x, int read, const uint8_t *m, size_t mlen, int present)
{
    if ((x->on + 1) * 2 > x->ocap) {
        size_t cap = x->ocap ? x->ocap * 2 : 256;
        oentry *t = calloc(cap, sizeof(*t));
        if (!t)
            return; /* counts may then be off by the members not remembered */
        for (size_t i = 0; i < x->ocap; i++)
            if (x->o[i].used)
                *ov_slot(t, cap, x->o[i].read, x->o[i].m, x->o[i].mlen, x->o[i].h) = x->o[i];
        free(x->o);
        x->o = t;
        x->ocap = cap;
    }
    uint64_t h = hash_bytes(m, mlen, (uint64_t)read);
    oentry *e = ov_slot(x->o, x->ocap, read, m, mlen, h);
    if (!e->used)
        x->on++;
    *e = (oentry){m, mlen, h, read, present, 1};
}

/* ---- helpers ------------------------------------------------------------------------------ */

const char *resp_type_name(lat_type t)
{
    switch (t) {
    case LAT_LWW:
        return "string";
    case LAT_SET:
    case LAT_ORSET:
        return "set";
    case LAT_MAP:
        return "hash";
    case LAT_COUNTER:
        return "counter";
    case LAT_MAX:
        return "max";
    case LAT_CAUSAL:
        return "causal";
    case LAT_PRIORITY:
        return "priority";
    default:
        return "none";
    }
}

/* The lattice type of a Redis type name (SCAN's TYPE), or LAT_NONE. */
static lat_type type_of_name(const uint8_t *p, size_t n)
{
    static const struct {
        const char *name;
        lat_type t;
    } names[] = {{"string", LAT_LWW},       {"set", LAT_ORSET}, {"hash", LAT_MAP},
                 {"counter", LAT_COUNTER},  {"max", LAT_MAX},   {"causal", LAT_CAUSAL},
                 {"priority", LAT_PRIORITY}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == n && strncasecmp(names[i].name, (const char *)p, n) == 0)
            return names[i].t;
    return LAT_NONE;
}

void resp_status_error(resp_buf *out, int status)
{
    if (status == TRELLIS_LATTICE_MISMATCH)
        resp_add_error(out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    else
        resp_add_errorf(out, "ERR trellis: %s (%s)", trellis_strerror(status),
                        trellis_status_name(status));
}

static int set_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int set_err(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, RESP_ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

static int key_ok(size_t klen, const resp_cmd_limits *lim, char *err)
{
    if (klen == 0) {
        set_err(err, "ERR trellis: empty keys are not supported");
        return 0;
    }
    if (klen > lim->max_key) {
        set_err(err, "ERR trellis: key longer than %zu bytes (limits.max_key_bytes)", lim->max_key);
        return 0;
    }
    return 1;
}

static int word_is(const resp_command *c, size_t i, const char *w)
{
    return i < c->argc && c->argl[i] == strlen(w) &&
           strncasecmp((const char *)c->argv[i], w, c->argl[i]) == 0;
}

void resp_cmd_command(const resp_command *cmd, int proto, resp_buf *out)
{
    size_t n = resp_cmd_count();
    if (cmd->argc == 1) {
        resp_add_array(out, n);
        for (size_t i = 0; i < n; i++)
            resp_cmd_describe(out, resp_cmd_at(i), proto);
    } else if (word_is(cmd, 1, "COUNT") && cmd->argc == 2) {
        resp_add_int(out, (int64_t)n);
    } else if (word_is(cmd, 1, "LIST") && cmd->argc == 2) {
        resp_add_array(out, n);
        for (size_t i = 0; i < n; i++)
            resp_add_cstr(out, resp_cmd_at(i)->name);
    } else if (word_is(cmd, 1, "INFO")) {
        resp_add_array(out, cmd->argc - 2);
        for (size_t i = 2; i < cmd->argc; i++) {
            const resp_cmd_def *d = resp_cmd_lookup(cmd->argv[i], cmd->argl[i]);
            if (d)
                resp_cmd_describe(out, d, proto);
            else
                resp_add_nil(out, proto);
        }
    } else if (word_is(cmd, 1, "DOCS")) {
        resp_add_map(out, 0, proto); /* clients cope without documentation */
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: COMMAND %s is not supported (COUNT, LIST, INFO and DOCS "
                        "are)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

int resp_info_wants(const resp_command *cmd, const char *section)
{
    if (cmd->argc == 1)
        return 1;
    for (size_t i = 1; i < cmd->argc; i++)
        if (word_is(cmd, i, section) || word_is(cmd, i, "all") || word_is(cmd, i, "everything") ||
            word_is(cmd, i, "default"))
            return 1;
    return 0;
}

/* Parses a Redis integer argument: decimal, optional '-', nothing else. */
static int parse_int64(const uint8_t *s, size_t n, int64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (buf[0] == '+' || buf[0] == ' ' || (buf[0] == '0' && n > 1) ||
        (buf[0] == '-' && (n == 1 || buf[1] == '0')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_u64(const uint8_t *s, size_t n, uint64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof(buf) || s[0] < '0' || s[0] > '9')
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* The unit of an expiry option: EX 1, PX 2, EXAT 3, PXAT 4; 0 otherwise. */
static int expiry_unit(const resp_command *c, size_t i)
{
    static const char *const units[] = {"EX", "PX", "EXAT", "PXAT"};
    for (int u = 0; u < 4; u++)
        if (word_is(c, i, units[u]))
            return u + 1;
    return 0;
}

/* The words from index `from` as slices, in scratch owned by the caller
 * (malloc'd; NULL when out of memory). */
static lat_slice *slices_from(const resp_command *c, size_t from)
{
    size_t n = c->argc - from;
    lat_slice *s = malloc((n ? n : 1) * sizeof(*s));
    for (size_t i = 0; s && i < n; i++) {
        s[i].data = c->argv[from + i];
        s[i].len = c->argl[from + i];
    }
    return s;
}

/* ---- reading states ------------------------------------------------------------------------ */

static int is_set_type(lat_type t)
{
    return t == LAT_SET || t == LAT_ORSET;
}

static int set_has(const resp_res *r, const uint8_t *m, size_t mlen)
{
    if (!r || !is_set_type(r->type))
        return 0;
    return r->type == LAT_SET ? lat_set_contains(r->state, r->len, m, mlen)
                              : lat_orset_contains(r->state, r->len, m, mlen);
}

/* A string-like value as Redis would return it: 1 when added, 0 for an
 * LWW register that reads as nothing, -1 when the type has no string
 * (sets, maps, causal registers). */
static int add_string_value(resp_buf *out, const resp_res *r)
{
    char num[24];
    lat_slice v;
    uint64_t ts, w;
    int tomb;
    int64_t prio;
    switch (r->type) {
    case LAT_LWW:
        lat_lww_view(r->state, r->len, &ts, &w, &tomb, &v);
        if (tomb)
            return 0;
        resp_add_bulk(out, v.data, v.len);
        return 1;
    case LAT_PRIORITY:
        lat_priority_view(r->state, r->len, &prio, &w, &v);
        resp_add_bulk(out, v.data, v.len);
        return 1;
    case LAT_COUNTER:
    case LAT_MAX:
        snprintf(num, sizeof(num), "%" PRId64,
                 r->type == LAT_COUNTER ? lat_counter_value(r->state, r->len)
                                        : lat_max_value(r->state, r->len));
        resp_add_cstr(out, num);
        return 1;
    default:
        return -1;
    }
}

/* A map field's value as a bulk string: a register's bytes or a
 * counter's integer in decimal. */
static void add_field_value(resp_buf *out, const lat_map_field *f)
{
    char num[24];
    if (!f->counter) {
        resp_add_bulk(out, f->value.data, f->value.len);
        return;
    }
    snprintf(num, sizeof(num), "%" PRId64, f->number);
    resp_add_cstr(out, num);
}

static size_t field_value_len(const lat_map_field *f)
{
    char num[24];
    return f->counter ? (size_t)snprintf(num, sizeof(num), "%" PRId64, f->number) : f->value.len;
}

typedef struct member_ref {
    const uint8_t *p;
    size_t n;
} member_ref;

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

static int member_cmp(const void *x, const void *y)
{
    const member_ref *a = x, *b = y;
    return bytes_cmp(a->p, a->n, b->p, b->n);
}

/* SADD (remove 0) or SREM (remove 1): how many distinct members among
 * argv[2..argc) it adds or removes, given the set as read (r NULL when
 * missing) and what earlier commands of the round did since that read;
 * records its own effect for the commands after it. -1 when out of
 * memory. */
static long count_members(resp_ctx *x, int read, const resp_command *c, const resp_res *r,
                          int remove)
{
    size_t n = c->argc - 2;
    member_ref *m = malloc(n * sizeof(*m));
    if (!m)
        return -1;
    for (size_t i = 0; i < n; i++) {
        m[i].p = c->argv[i + 2];
        m[i].n = c->argl[i + 2];
    }
    qsort(m, n, sizeof(*m), member_cmp);
    long k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && member_cmp(&m[i - 1], &m[i]) == 0)
            continue;
        int present = x ? ov_get(x, read, m[i].p, m[i].n) : -1;
        if (present < 0)
            present = set_has(r, m[i].p, m[i].n);
        if (present == remove)
            k++;
        if (x)
            ov_set(x, read, m[i].p, m[i].n, !remove);
    }
    free(m);
    return k;
}

/* ---- asking for operations ------------------------------------------------------------------ */

/* Checks every key of c: words from `from`, every `step`-th. */
static int keys_ok(const resp_command *c, size_t from, size_t step, const resp_cmd_limits *lim,
                   char *err)
{
    for (size_t i = from; i < c->argc; i += step)
        if (!key_ok(c->argl[i], lim, err))
            return 0;
    return 1;
}

/* SET's options: EX, PX, EXAT, PXAT with a positive integer, KEEPTTL. */
static int set_options(const resp_command *c, uint64_t now, uint64_t *deadline, int *keep,
                       char *err)
{
    *deadline = 0;
    *keep = 0;
    int have = 0;
    for (size_t i = 3; i < c->argc; i++) {
        int unit = expiry_unit(c, i);
        if (word_is(c, i, "KEEPTTL") && !have) {
            *keep = 1;
            have = 1;
        } else if (unit && !have && i + 1 < c->argc) {
            int64_t t;
            i++;
            if (parse_int64(c->argv[i], c->argl[i], &t) != 0)
                return set_err(err, "ERR value is not an integer or out of range");
            if (t <= 0 || kvop_deadline_ms(now, unit, t, deadline) != 0)
                return set_err(err, "ERR invalid expire time in 'set' command");
            have = 1;
        } else if (word_is(c, i, "NX") || word_is(c, i, "XX") || word_is(c, i, "GET")) {
            return set_err(err,
                           "ERR trellis: SET %s is not supported (it would need a read "
                           "before the write that a coordination-free store cannot make "
                           "atomic); EX, PX, EXAT, PXAT and KEEPTTL are",
                           (const char *)c->argv[i]);
        } else {
            return set_err(err, "ERR syntax error");
        }
    }
    return 0;
}

/* EXPIRE's options: NX, XX, GT, LT, as Redis checks them. */
static int expire_options(const resp_command *c, int *cond, char *err)
{
    int nx = 0, xx = 0, gt = 0, lt = 0;
    for (size_t i = 3; i < c->argc; i++) {
        if (word_is(c, i, "NX"))
            nx = 1;
        else if (word_is(c, i, "XX"))
            xx = 1;
        else if (word_is(c, i, "GT"))
            gt = 1;
        else if (word_is(c, i, "LT"))
            lt = 1;
        else
            return set_err(err, "ERR Unsupported option %.64s", (const char *)c->argv[i]);
    }
    if (nx && (xx || gt || lt))
        return set_err(err, "ERR NX and XX, GT or LT options at the same time are not compatible");
    if (gt && lt)
        return set_err(err, "ERR GT and LT options at the same time are not compatible");
    *cond = nx ? RESP_EXP_NX : xx ? RESP_EXP_XX : gt ? RESP_EXP_GT : lt ? RESP_EXP_LT : 0;
    return 0;
}

/* SCAN's and HSCAN's options from word `from`: MATCH, COUNT, TYPE (SCAN)
 * and NOVALUES (HSCAN). */
typedef struct scan_args {
    uint64_t cursor;
    size_t count;
    const uint8_t *match;
    size_t mlen;
    lat_type type;
    int novalues;
} scan_args;

static int pattern_too_long(size_t len, char *err)
{
    return set_err(err, "ERR trellis: a pattern of %zu bytes; at most %u", len,
                   KVOP_SCAN_MAX_PATTERN);
}

static int scan_options(const resp_command *c, size_t cursor_at, int hash, scan_args *a, char *err)
{
    memset(a, 0, sizeof(*a));
    a->count = SCAN_DEFAULT_COUNT;
    if (parse_u64(c->argv[cursor_at], c->argl[cursor_at], &a->cursor) != 0)
        return set_err(err, "ERR invalid cursor");
    for (size_t i = cursor_at + 1; i < c->argc; i++) {
        if (hash && word_is(c, i, "NOVALUES")) {
            a->novalues = 1;
            continue;
        }
        if (i + 1 >= c->argc)
            return set_err(err, "ERR syntax error");
        if (word_is(c, i, "MATCH")) {
            a->match = c->argv[i + 1];
            a->mlen = c->argl[i + 1];
            if (a->mlen > KVOP_SCAN_MAX_PATTERN)
                return pattern_too_long(a->mlen, err);
        } else if (word_is(c, i, "COUNT")) {
            int64_t n;
            if (parse_int64(c->argv[i + 1], c->argl[i + 1], &n) != 0)
                return set_err(err, "ERR value is not an integer or out of range");
            if (n < 1)
                return set_err(err, "ERR syntax error");
            a->count = (size_t)n;
        } else if (!hash && word_is(c, i, "TYPE")) {
            a->type = type_of_name(c->argv[i + 1], c->argl[i + 1]);
            if (a->type == LAT_NONE)
                return set_err(err,
                               "ERR trellis: unknown type '%.32s' (string, set, hash, counter, "
                               "max, causal, priority)",
                               (const char *)c->argv[i + 1]);
        } else {
            return set_err(err, "ERR syntax error");
        }
        i++;
    }
    return 0;
}

/* Checks what a command's words must be before anything is asked. */
static int check_args(const resp_cmd_def *d, const resp_command *c, const resp_cmd_limits *lim,
                      uint64_t now, char *err)
{
    switch (d->kind) {
    case RK_MSET:
        if (c->argc % 2 == 0)
            return set_err(err, "ERR wrong number of arguments for 'mset' command");
        return keys_ok(c, 1, 2, lim, err) ? 0 : -1;
    case RK_MGET:
    case RK_DEL:
    case RK_EXISTS:
        return keys_ok(c, 1, 1, lim, err) ? 0 : -1;
    case RK_HSET:
    case RK_HMSET:
        if (c->argc % 2 != 0)
            return set_err(err, "ERR wrong number of arguments for '%s' command", d->name);
        break;
    case RK_KEYS:
        return c->argl[1] > KVOP_SCAN_MAX_PATTERN ? pattern_too_long(c->argl[1], err) : 0;
    case RK_SCAN:
    case RK_DBSIZE:
        return 0;
    default:
        break;
    }
    (void)now;
    return key_ok(c->argl[1], lim, err) ? 0 : -1;
}

int resp_cmd_add(resp_exec *x, resp_ctx *ctx, const resp_cmd_def *d, const resp_command *c,
                 const resp_cmd_limits *lim, resp_slot *slot, char *err)
{
    const resp_exec_ops *o = x->ops;
    slot->first = -1;
    slot->nops = 0;
    slot->read = NO_READ;
    slot->now = o->now_ms(x);
    if (check_args(d, c, lim, slot->now, err) != 0)
        return -1;
    /* Walks (DBSIZE) may have no word after the command's name. */
    const uint8_t *key = c->argc > 1 ? c->argv[1] : NULL;
    size_t klen = c->argc > 1 ? c->argl[1] : 0;
    int64_t n = 0;
    uint64_t deadline = 0;
    int keep = 0, cond = 0, unit;
    scan_args sa;
    lat_slice *w = NULL;

    /* Arguments, all checked before the first operation is asked for. */
    switch (d->kind) {
    case RK_SET:
        if (set_options(c, slot->now, &deadline, &keep, err) != 0)
            return -1;
        break;
    case RK_SETEX:
    case RK_PSETEX:
        if (parse_int64(c->argv[2], c->argl[2], &n) != 0)
            return set_err(err, "ERR value is not an integer or out of range");
        if (n <= 0 || kvop_deadline_ms(slot->now, d->kind == RK_SETEX ? KVOP_IN_S : KVOP_IN_MS, n,
                                       &deadline) != 0)
            return set_err(err, "ERR invalid expire time in '%s' command", d->name);
        break;
    case RK_GETEX:
        unit = c->argc > 2 ? expiry_unit(c, 2) : 0;
        if (c->argc == 3 && word_is(c, 2, "PERSIST")) {
            cond = 1; /* a PERSIST */
        } else if (c->argc == 4 && unit) {
            if (parse_int64(c->argv[3], c->argl[3], &n) != 0)
                return set_err(err, "ERR value is not an integer or out of range");
            if (n <= 0 || kvop_deadline_ms(slot->now, unit, n, &deadline) != 0)
                return set_err(err, "ERR invalid expire time in 'getex' command");
        } else if (c->argc != 2) {
            return set_err(err, "ERR syntax error");
        }
        break;
    case RK_EXPIRE:
    case RK_PEXPIRE:
    case RK_EXPIREAT:
    case RK_PEXPIREAT:
        if (parse_int64(c->argv[2], c->argl[2], &n) != 0)
            return set_err(err, "ERR value is not an integer or out of range");
        if (expire_options(c, &cond, err) != 0)
            return -1;
        if (kvop_deadline_ms(slot->now, d->kind - RK_EXPIRE + KVOP_IN_S, n, &deadline) != 0)
            return set_err(err, "ERR invalid expire time in '%s' command", d->name);
        break;
    case RK_INCRBY:
    case RK_DECRBY:
    case RK_HINCRBY:
        if (parse_int64(c->argv[d->kind == RK_HINCRBY ? 3 : 2],
                        c->argl[d->kind == RK_HINCRBY ? 3 : 2], &n) != 0)
            return set_err(err, "ERR value is not an integer or out of range");
        if (d->kind == RK_DECRBY) {
            if (n == INT64_MIN)
                return set_err(err, "ERR decrement would overflow");
            n = -n;
        }
        break;
    case RK_INCR:
        n = 1;
        break;
    case RK_DECR:
        n = -1;
        break;
    case RK_SCAN:
        if (scan_options(c, 1, 0, &sa, err) != 0)
            return -1;
        break;
    case RK_HSCAN:
        if (scan_options(c, 2, 1, &sa, err) != 0)
            return -1;
        break;
    default:
        break;
    }

    int rc = 0;
#define ASK(call)                                                                                  \
    do {                                                                                           \
        if (rc >= 0) {                                                                             \
            rc = (call);                                                                           \
            if (rc >= 0 && slot->first < 0)                                                        \
                slot->first = rc;                                                                  \
            slot->nops += rc >= 0;                                                                 \
        }                                                                                          \
    } while (0)
    switch (d->kind) {
    case RK_GET:
    case RK_SMEMBERS:
    case RK_SISMEMBER:
    case RK_SMISMEMBER:
    case RK_SCARD:
    case RK_HGET:
    case RK_HMGET:
    case RK_HGETALL:
    case RK_HKEYS:
    case RK_HVALS:
    case RK_HLEN:
    case RK_HEXISTS:
    case RK_HSTRLEN:
    case RK_HSCAN:
        ASK(o->get(x, key, klen));
        break;
    case RK_TYPE:
    case RK_TTL:
    case RK_PTTL:
    case RK_EXPIRETIME:
    case RK_PEXPIRETIME:
        ASK(o->head(x, key, klen));
        break;
    case RK_SET:
    case RK_SETEX:
    case RK_PSETEX: {
        size_t vi = d->kind == RK_SET ? 2 : 3;
        ASK(o->put(x, key, klen, c->argv[vi], c->argl[vi], deadline, keep));
        ctx_key_written(ctx, key, klen);
        break;
    }
    case RK_GETEX:
        ASK(o->get(x, key, klen));
        if (deadline || cond)
            ASK(o->expire(x, key, klen, deadline, 0));
        break;
    case RK_MGET:
        for (size_t i = 1; i < c->argc; i++)
            ASK(o->get(x, c->argv[i], c->argl[i]));
        break;
    case RK_EXISTS:
        for (size_t i = 1; i < c->argc; i++)
            ASK(o->head(x, c->argv[i], c->argl[i]));
        break;
    case RK_MSET:
        for (size_t i = 1; i + 1 < c->argc; i += 2) {
            ASK(o->put(x, c->argv[i], c->argl[i], c->argv[i + 1], c->argl[i + 1], 0, 0));
            ctx_key_written(ctx, c->argv[i], c->argl[i]);
        }
        break;
    case RK_DEL:
        /* Per key: whether it existed, then the delete. */
        for (size_t i = 1; i < c->argc; i++) {
            ASK(o->head(x, c->argv[i], c->argl[i]));
            ASK(o->del(x, c->argv[i], c->argl[i]));
            ctx_key_written(ctx, c->argv[i], c->argl[i]);
        }
        break;
    case RK_EXPIRE:
    case RK_PEXPIRE:
    case RK_EXPIREAT:
    case RK_PEXPIREAT:
        ASK(o->expire(x, key, klen, deadline, cond));
        break;
    case RK_PERSIST:
        ASK(o->expire(x, key, klen, 0, 0));
        break;
    case RK_SCAN:
        ASK(o->scan(x, sa.cursor, sa.count, sa.match, sa.mlen, sa.type));
        break;
    case RK_KEYS:
        ASK(o->keys(x, c->argv[1], c->argl[1]));
        break;
    case RK_DBSIZE:
        ASK(o->dbsize(x));
        break;
    case RK_SADD:
    case RK_SREM: {
        /* The set is read once per round (see resp_ctx). */
        kentry *e = ctx ? ctx_key(ctx, key, klen) : NULL;
        if (e && e->read != NO_READ) {
            slot->read = e->read;
        } else {
            ASK(o->get(x, key, klen));
            if (rc >= 0) {
                slot->read = rc;
                if (e)
                    e->read = rc;
            }
        }
        if (rc >= 0 && !(w = slices_from(c, 2)))
            rc = -TRELLIS_INTERNAL;
        if (d->kind == RK_SADD)
            ASK(o->sadd(x, key, klen, w, c->argc - 2));
        else
            ASK(o->srem(x, key, klen, w, c->argc - 2));
        break;
    }
    case RK_INCR:
    case RK_DECR:
    case RK_INCRBY:
    case RK_DECRBY:
        ASK(o->incrby(x, key, klen, n));
        ctx_key_written(ctx, key, klen);
        break;
    case RK_HSET:
    case RK_HMSET:
    case RK_HSETNX:
        if (!(w = slices_from(c, 2)))
            rc = -TRELLIS_INTERNAL;
        ASK(o->map_set(x, key, klen, w, (c->argc - 2) / 2, d->kind == RK_HSETNX));
        break;
    case RK_HDEL:
        if (!(w = slices_from(c, 2)))
            rc = -TRELLIS_INTERNAL;
        ASK(o->map_del(x, key, klen, w, c->argc - 2));
        break;
    case RK_HINCRBY:
        ASK(o->map_incrby(x, key, klen, c->argv[2], c->argl[2], n));
        break;
    default:
        rc = -TRELLIS_INVALID;
        break;
    }
#undef ASK
    free(w);
    if (rc < 0) {
        /* Out of memory part way: what was asked for runs, the command fails. */
        set_err(err, "ERR trellis: %s (%s)", trellis_strerror(-rc), trellis_status_name(-rc));
        return -1;
    }
    return 0;
}

/* ---- replies ------------------------------------------------------------------------------ */

/* Operation i of the command's slot. */
static void res_at(resp_exec *x, const resp_slot *slot, int i, resp_res *r)
{
    memset(r, 0, sizeof(*r));
    if (slot->first < 0 || i >= slot->nops) {
        r->status = TRELLIS_INTERNAL;
        return;
    }
    x->ops->result(x, slot->first + i, r);
}

/* The first failed operation's status among the slot's, from `from`
 * stepping by `step`; NOT_FOUND counts as success. */
static int first_failure(resp_exec *x, const resp_slot *slot, int from, int step, int *at)
{
    resp_res r;
    for (int i = from; i < slot->nops; i += step) {
        res_at(x, slot, i, &r);
        if (r.status != TRELLIS_OK && r.status != TRELLIS_NOT_FOUND) {
            if (at)
                *at = i;
            return r.status;
        }
    }
    return TRELLIS_OK;
}

/* The map read by a command: 1 with r holding it, 0 when the key is
 * missing (r->state NULL), -1 after appending the error. */
static int read_map(resp_exec *x, const resp_slot *slot, resp_res *r, resp_buf *out)
{
    res_at(x, slot, 0, r);
    if (r->status == TRELLIS_NOT_FOUND) {
        r->state = NULL;
        r->len = 0;
        return 0;
    }
    if (r->status != TRELLIS_OK) {
        resp_status_error(out, r->status);
        return -1;
    }
    if (r->type != LAT_MAP) {
        resp_status_error(out, TRELLIS_LATTICE_MISMATCH);
        return -1;
    }
    return 1;
}

/* The set read by op i: 1 with r holding it, 0 when missing, -1 after
 * appending the error (another type included). */
static int read_set(resp_exec *x, const resp_slot *slot, int i, resp_res *r, resp_buf *out)
{
    res_at(x, slot, i, r);
    if (r->status == TRELLIS_NOT_FOUND)
        return 0;
    if (r->status != TRELLIS_OK) {
        resp_status_error(out, r->status);
        return -1;
    }
    if (!is_set_type(r->type)) {
        resp_status_error(out, TRELLIS_LATTICE_MISMATCH);
        return -1;
    }
    return 1;
}

static void reply_get(resp_buf *out, const resp_res *r, int proto)
{
    if (r->status == TRELLIS_NOT_FOUND) {
        resp_add_nil(out, proto);
    } else if (r->status != TRELLIS_OK) {
        resp_status_error(out, r->status);
    } else {
        int k = add_string_value(out, r);
        if (k == 0)
            resp_add_nil(out, proto);
        else if (k < 0)
            resp_status_error(out, TRELLIS_LATTICE_MISMATCH);
    }
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME from a HEAD's result. */
static void reply_ttl(resp_exec *x, const resp_cmd_def *d, const resp_res *r, resp_buf *out)
{
    if (r->status == TRELLIS_NOT_FOUND) {
        resp_add_int(out, -2);
        return;
    }
    if (r->status != TRELLIS_OK) {
        resp_status_error(out, r->status);
        return;
    }
    if (r->deadline_ms == 0) {
        resp_add_int(out, -1);
        return;
    }
    if (d->kind == RK_EXPIRETIME || d->kind == RK_PEXPIRETIME) {
        resp_add_int(out, (int64_t)(d->kind == RK_EXPIRETIME ? (r->deadline_ms + 500) / 1000
                                                             : r->deadline_ms));
        return;
    }
    uint64_t now = x->ops->now_ms(x);
    int64_t ms = r->deadline_ms > now ? (int64_t)(r->deadline_ms - now) : 0;
    resp_add_int(out, d->kind == RK_PTTL ? ms : (ms + 500) / 1000);
}

/* HGETALL, HKEYS, HVALS and HSCAN's fields: which 0 names, 1 values, 2
 * both (as a map of `proto` when as_map), filtered by a pattern. */
static void reply_fields(resp_buf *out, const resp_res *r, int which, int as_map,
                         const uint8_t *match, size_t mlen, int proto)
{
    size_t n = 0, pos = 0;
    lat_map_field f;
    while (r->state && lat_map_next(r->state, r->len, &pos, &f))
        n += !mlen || glob_match(match, mlen, f.name.data, f.name.len, 0);
    if (as_map)
        resp_add_map(out, n, proto);
    else
        resp_add_array(out, which == 2 ? 2 * n : n);
    pos = 0;
    while (r->state && lat_map_next(r->state, r->len, &pos, &f)) {
        if (mlen && !glob_match(match, mlen, f.name.data, f.name.len, 0))
            continue;
        if (which != 1)
            resp_add_bulk(out, f.name.data, f.name.len);
        if (which != 0)
            add_field_value(out, &f);
    }
}

static void reply_map(resp_exec *x, const resp_cmd_def *d, const resp_command *c,
                      const resp_slot *slot, int proto, resp_buf *out)
{
    resp_res r;
    int have = read_map(x, slot, &r, out);
    if (have < 0)
        return;
    lat_map_field f;
    switch (d->kind) {
    case RK_HGET:
        if (have && lat_map_get(r.state, r.len, c->argv[2], c->argl[2], &f))
            add_field_value(out, &f);
        else
            resp_add_nil(out, proto);
        break;
    case RK_HMGET:
        resp_add_array(out, c->argc - 2);
        for (size_t i = 2; i < c->argc; i++) {
            if (have && lat_map_get(r.state, r.len, c->argv[i], c->argl[i], &f))
                add_field_value(out, &f);
            else
                resp_add_nil(out, proto);
        }
        break;
    case RK_HGETALL:
        reply_fields(out, &r, 2, 1, NULL, 0, proto);
        break;
    case RK_HKEYS:
    case RK_HVALS:
        reply_fields(out, &r, d->kind == RK_HVALS, 0, NULL, 0, proto);
        break;
    case RK_HLEN:
        resp_add_int(out, have ? (int64_t)lat_map_count(r.state, r.len) : 0);
        break;
    case RK_HEXISTS:
        resp_add_int(out, have && lat_map_get(r.state, r.len, c->argv[2], c->argl[2], &f));
        break;
    case RK_HSTRLEN:
        resp_add_int(out, have && lat_map_get(r.state, r.len, c->argv[2], c->argl[2], &f)
                              ? (int64_t)field_value_len(&f)
                              : 0);
        break;
    default: { /* HSCAN: every field in one answer, cursor 0 */
        scan_args sa;
        char err[RESP_ERR_MAX];
        scan_options(c, 2, 1, &sa, err);
        resp_add_array(out, 2);
        resp_add_cstr(out, "0");
        reply_fields(out, &r, sa.novalues ? 0 : 2, 0, sa.match, sa.mlen, proto);
        break;
    }
    }
}

/* A write's integer answer (EXPIRE's applied flag, HSET's and HDEL's
 * counts, counters' new values); NOT_FOUND is 0. */
static void reply_integer(const resp_res *r, const char *missing_error, resp_buf *out)
{
    if (r->status == TRELLIS_OK)
        resp_add_int(out, r->integer);
    else if (r->status == TRELLIS_NOT_FOUND && !missing_error)
        resp_add_int(out, 0);
    else if (r->status == TRELLIS_NOT_FOUND)
        resp_add_error(out, missing_error);
    else
        resp_status_error(out, r->status);
}

static void reply_keys(const resp_res *r, resp_buf *out)
{
    resp_add_array(out, r->nkeys);
    for (size_t i = 0; i < r->nkeys; i++)
        resp_add_bulk(out, r->keys[i].data, r->keys[i].len);
}

void resp_cmd_reply(resp_exec *x, resp_ctx *ctx, const resp_cmd_def *d, const resp_command *c,
                    const resp_slot *slot, int proto, resp_buf *out)
{
    resp_res r;
    int st, at = 0;
    char num[24];
    res_at(x, slot, 0, &r);
    switch (d->kind) {
    case RK_GET:
    case RK_GETEX:
        reply_get(out, &r, proto);
        break;
    case RK_SET:
    case RK_SETEX:
    case RK_PSETEX:
    case RK_MSET:
    case RK_HMSET:
        st = first_failure(x, slot, 0, 1, NULL);
        if (st == TRELLIS_OK)
            resp_add_simple(out, "OK");
        else
            resp_status_error(out, st);
        break;
    case RK_MGET:
        if ((st = first_failure(x, slot, 0, 1, NULL)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        resp_add_array(out, (size_t)slot->nops);
        for (int i = 0; i < slot->nops; i++) {
            res_at(x, slot, i, &r);
            /* nil for a missing key and a type without a string value */
            if (r.status != TRELLIS_OK || add_string_value(out, &r) <= 0)
                resp_add_nil(out, proto);
        }
        break;
    case RK_DEL: {
        /* ops: (HEAD, DEL) per key */
        if ((st = first_failure(x, slot, 1, 2, &at)) != TRELLIS_OK) {
            if (st == TRELLIS_INVALID) {
                resp_res h;
                char k[80];
                res_at(x, slot, at - 1, &h);
                resp_add_errorf(
                    out,
                    "ERR trellis: '%s' is a grow-only %s key (SET, MAX and PRIORITY "
                    "keys cannot be deleted); the other keys were deleted",
                    resp_printable(c->argv[1 + at / 2], c->argl[1 + at / 2], 64, k, sizeof(k)),
                    lat_type_name(h.type));
            } else {
                resp_status_error(out, st);
            }
            break;
        }
        int64_t existed = 0;
        for (int i = 0; i + 1 < slot->nops; i += 2) {
            res_at(x, slot, i, &r);
            existed += r.status == TRELLIS_OK;
        }
        resp_add_int(out, existed);
        break;
    }
    case RK_EXISTS: {
        if ((st = first_failure(x, slot, 0, 1, NULL)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        int64_t k = 0;
        for (int i = 0; i < slot->nops; i++) {
            res_at(x, slot, i, &r);
            k += r.status == TRELLIS_OK;
        }
        resp_add_int(out, k);
        break;
    }
    case RK_TYPE:
        if (r.status == TRELLIS_OK)
            resp_add_simple(out, resp_type_name(r.type));
        else if (r.status == TRELLIS_NOT_FOUND)
            resp_add_simple(out, "none");
        else
            resp_status_error(out, r.status);
        break;
    case RK_TTL:
    case RK_PTTL:
    case RK_EXPIRETIME:
    case RK_PEXPIRETIME:
        reply_ttl(x, d, &r, out);
        break;
    case RK_EXPIRE:
    case RK_PEXPIRE:
    case RK_EXPIREAT:
    case RK_PEXPIREAT:
    case RK_PERSIST:
    case RK_HSET:
    case RK_HSETNX:
    case RK_HDEL:
        reply_integer(&r, NULL, out);
        break;
    case RK_HINCRBY:
        if (r.status == TRELLIS_INVALID)
            resp_add_error(out, "ERR hash value is not an integer");
        else
            reply_integer(&r, NULL, out);
        break;
    case RK_SCAN:
        if (r.status != TRELLIS_OK) {
            resp_status_error(out, r.status);
            break;
        }
        resp_add_array(out, 2);
        snprintf(num, sizeof(num), "%" PRIu64, r.cursor);
        resp_add_cstr(out, num);
        reply_keys(&r, out);
        break;
    case RK_KEYS:
        if (r.status == TRELLIS_OK)
            reply_keys(&r, out);
        else
            resp_status_error(out, r.status);
        break;
    case RK_DBSIZE:
        reply_integer(&r, NULL, out);
        break;
    case RK_SADD:
    case RK_SREM: {
        /* ops: the read (unless an earlier command of the round made it),
         * then the write */
        resp_res wr;
        res_at(x, slot, slot->nops - 1, &wr);
        if (slot->nops < 1 || slot->read == NO_READ || wr.status != TRELLIS_OK) {
            resp_status_error(out, slot->nops < 1 ? TRELLIS_INTERNAL : wr.status);
            break;
        }
        resp_res set;
        memset(&set, 0, sizeof(set));
        x->ops->result(x, slot->read, &set);
        const resp_res *v =
            set.status == TRELLIS_OK && is_set_type(set.type) ? &set : NULL; /* else: from empty */
        long k = count_members(ctx, slot->read, c, v, d->kind == RK_SREM);
        if (k < 0)
            resp_status_error(out, TRELLIS_INTERNAL);
        else
            resp_add_int(out, k);
        break;
    }
    case RK_SMEMBERS: {
        int have = read_set(x, slot, 0, &r, out);
        if (have < 0)
            break;
        size_t pos = 0, n = 0;
        lat_slice m;
        if (have)
            n = r.type == LAT_SET ? lat_set_count(r.state, r.len) : lat_orset_count(r.state, r.len);
        resp_add_set(out, n, proto);
        while (have && (r.type == LAT_SET ? lat_set_next(r.state, r.len, &pos, &m)
                                          : lat_orset_next(r.state, r.len, &pos, &m)))
            resp_add_bulk(out, m.data, m.len);
        break;
    }
    case RK_SISMEMBER:
    case RK_SMISMEMBER:
    case RK_SCARD: {
        int have = read_set(x, slot, 0, &r, out);
        if (have < 0)
            break;
        if (d->kind == RK_SCARD) {
            resp_add_int(out, !have               ? 0
                              : r.type == LAT_SET ? (int64_t)lat_set_count(r.state, r.len)
                                                  : (int64_t)lat_orset_count(r.state, r.len));
        } else if (d->kind == RK_SISMEMBER) {
            resp_add_int(out, have && set_has(&r, c->argv[2], c->argl[2]));
        } else {
            resp_add_array(out, c->argc - 2);
            for (size_t i = 2; i < c->argc; i++)
                resp_add_int(out, have && set_has(&r, c->argv[i], c->argl[i]));
        }
        break;
    }
    case RK_INCR:
    case RK_DECR:
    case RK_INCRBY:
    case RK_DECRBY:
        reply_integer(&r, NULL, out);
        break;
    case RK_HGET:
    case RK_HMGET:
    case RK_HGETALL:
    case RK_HKEYS:
    case RK_HVALS:
    case RK_HLEN:
    case RK_HEXISTS:
    case RK_HSTRLEN:
    case RK_HSCAN:
        reply_map(x, d, c, slot, proto, out);
        break;
    default:
        resp_status_error(out, TRELLIS_INTERNAL);
        break;
    }
}
