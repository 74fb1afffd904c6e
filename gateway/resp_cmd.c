/*
 * resp_cmd.c - Redis commands mapped onto trellis lattices (docs/redis.md).
 *
 * Strings are LWW registers, sets are ORSETs (a grow-only SET key works
 * for reads and SADD), INCR and friends work on PN-COUNTERs. Replies that
 * Redis computes from the state before a write (SADD's and SREM's counts,
 * DEL's count of keys that existed) come from a read of the key placed
 * just before the write in the same batch: one round trip, exact for one
 * gateway on a quiet key, an approximation under concurrent writers (the
 * lattice itself stays correct either way).
 */
#include "gateway/resp_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NOAUTH  RESP_CMD_NOAUTH
#define DATA    RESP_CMD_DATA
#define COUNTER (RESP_CMD_DATA | RESP_CMD_COUNTER)

static const resp_cmd_def cmd_table[] = {
    {"get", RK_GET, 2, DATA, "readonly fast", 1, 1, 1},
    {"set", RK_SET, -3, DATA, "write denyoom", 1, 1, 1},
    {"mget", RK_MGET, -2, DATA, "readonly fast", 1, -1, 1},
    {"mset", RK_MSET, -3, DATA, "write denyoom", 1, -1, 2},
    {"del", RK_DEL, -2, DATA, "write", 1, -1, 1},
    {"unlink", RK_DEL, -2, DATA, "write fast", 1, -1, 1},
    {"exists", RK_EXISTS, -2, DATA, "readonly fast", 1, -1, 1},
    {"type", RK_TYPE, 2, DATA, "readonly fast", 1, 1, 1},
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

/* ---- the batch context ------------------------------------------------------------------------
 */

#define NO_READ ((size_t)-1)

/* A key of the batch: the read SADD and SREM of it count from (NO_READ
 * once another write of the key came in between). */
typedef struct kentry {
    const uint8_t *key;
    size_t klen;
    uint64_t h;
    size_t read;
    int used;
} kentry;

/* A member added (present 1) or removed (0) by an earlier command of the
 * batch, since read `read`. */
typedef struct oentry {
    const uint8_t *m;
    size_t mlen;
    uint64_t h;
    size_t read;
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

static oentry *ov_slot(oentry *t, size_t cap, size_t read, const uint8_t *m, size_t mlen,
                       uint64_t h)
{
    size_t i = h & (cap - 1);
    while (t[i].used && !(t[i].h == h && t[i].read == read && t[i].mlen == mlen &&
                          (mlen == 0 || memcmp(t[i].m, m, mlen) == 0)))
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* What earlier commands of the batch did to member m since read: 1 added,
 * 0 removed, -1 nothing. */
static int ov_get(const resp_ctx *x, size_t read, const uint8_t *m, size_t mlen)
{
    if (x->on == 0)
        return -1;
    const oentry *e = ov_slot(x->o, x->ocap, read, m, mlen, hash_bytes(m, mlen, read));
    return e->used ? e->present : -1;
}

static void ov_set(resp_ctx *x, size_t read, const uint8_t *m, size_t mlen, int present)
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
    uint64_t h = hash_bytes(m, mlen, read);
    oentry *e = ov_slot(x->o, x->ocap, read, m, mlen, h);
    if (!e->used)
        x->on++;
    *e = (oentry){m, mlen, h, read, present, 1};
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

const char *resp_type_name(trellis_type t)
{
    switch (t) {
    case TRELLIS_TYPE_LWW:
        return "string";
    case TRELLIS_TYPE_SET:
    case TRELLIS_TYPE_ORSET:
        return "set";
    case TRELLIS_TYPE_COUNTER:
        return "counter";
    case TRELLIS_TYPE_MAX:
        return "max";
    case TRELLIS_TYPE_CAUSAL:
        return "causal";
    case TRELLIS_TYPE_PRIORITY:
        return "priority";
    default:
        return "none";
    }
}

void resp_status_error(resp_buf *out, int status)
{
    if (status == TRELLIS_LATTICE_MISMATCH)
        resp_add_error(out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    else
        resp_add_errorf(out, "ERR trellis: %s (%s)", trellis_strerror(status),
                        trellis_status_name(status));
}

static int key_ok(const uint8_t *key, size_t klen, const resp_cmd_limits *lim, char *err)
{
    if (klen == 0) {
        snprintf(err, RESP_ERR_MAX, "ERR trellis: empty keys are not supported");
        return 0;
    }
    if (klen > lim->max_key) {
        snprintf(err, RESP_ERR_MAX, "ERR trellis: key longer than %zu bytes (limits.max_key_bytes)",
                 lim->max_key);
        return 0;
    }
    (void)key;
    return 1;
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

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

/* 1 if the set value v (items in byte order) holds m. */
static int set_has(const trellis_value *v, const uint8_t *m, size_t mlen)
{
    if (!v)
        return 0;
    size_t lo = 0, hi = v->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bytes_cmp(v->items[mid].data, v->items[mid].len, m, mlen);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

typedef struct member_ref {
    const uint8_t *p;
    size_t n;
} member_ref;

static int member_cmp(const void *x, const void *y)
{
    const member_ref *a = x, *b = y;
    return bytes_cmp(a->p, a->n, b->p, b->n);
}

/* SADD (remove 0) or SREM (remove 1): how many distinct members among
 * argv[2..argc) it adds or removes, given the set as read (v, NULL when
 * missing) and what earlier commands of the batch did since that read;
 * records its own effect for the commands after it. -1 when out of memory. */
static long count_members(resp_ctx *x, size_t read, const resp_command *c, const trellis_value *v,
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
            present = set_has(v, m[i].p, m[i].n);
        if (present == remove)
            k++;
        if (x)
            ov_set(x, read, m[i].p, m[i].n, !remove);
    }
    free(m);
    return k;
}

static int is_set_type(trellis_type t)
{
    return t == TRELLIS_TYPE_SET || t == TRELLIS_TYPE_ORSET;
}

/* ---- adding operations ------------------------------------------------------------------------
 */

/* Adds members argv[2..) of c as a SADD or SREM. */
static int add_members(trellis_batch *b, const resp_command *c, int remove)
{
    size_t n = c->argc - 2;
    trellis_bytes *m = malloc(n * sizeof(*m));
    if (!m)
        return -TRELLIS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        m[i].data = c->argv[i + 2];
        m[i].len = c->argl[i + 2];
    }
    int rc = remove ? trellis_batch_srem(b, c->argv[1], c->argl[1], m, n)
                    : trellis_batch_sadd(b, c->argv[1], c->argl[1], m, n);
    free(m);
    return rc;
}

int resp_cmd_add(trellis_batch *b, resp_ctx *x, const resp_cmd_def *d, const resp_command *c,
                 const resp_cmd_limits *lim, resp_slot *slot, char *err)
{
    slot->first = trellis_batch_count(b);
    slot->nops = 0;
    slot->read = NO_READ;
    /* Usage errors first, so that nothing of a refused command runs. */
    switch (d->kind) {
    case RK_SET:
        if (c->argc > 3) {
            snprintf(err, RESP_ERR_MAX,
                     "ERR trellis: SET takes no options (EX, PX, EXAT, PXAT, NX, XX, KEEPTTL and "
                     "GET are not supported)");
            return -1;
        }
        break;
    case RK_MSET:
        if (c->argc % 2 == 0) {
            snprintf(err, RESP_ERR_MAX, "ERR wrong number of arguments for 'mset' command");
            return -1;
        }
        for (size_t i = 1; i < c->argc; i += 2)
            if (!key_ok(c->argv[i], c->argl[i], lim, err))
                return -1;
        break;
    case RK_MGET:
    case RK_DEL:
    case RK_EXISTS:
        for (size_t i = 1; i < c->argc; i++)
            if (!key_ok(c->argv[i], c->argl[i], lim, err))
                return -1;
        break;
    default:
        break;
    }
    if (d->kind != RK_MSET && d->kind != RK_MGET && d->kind != RK_DEL && d->kind != RK_EXISTS &&
        !key_ok(c->argv[1], c->argl[1], lim, err))
        return -1;
    int64_t delta = 1;
    if (d->kind == RK_DECR) {
        delta = -1;
    } else if (d->kind == RK_INCRBY || d->kind == RK_DECRBY) {
        if (parse_int64(c->argv[2], c->argl[2], &delta) != 0) {
            snprintf(err, RESP_ERR_MAX, "ERR value is not an integer or out of range");
            return -1;
        }
        if (d->kind == RK_DECRBY) {
            if (delta == INT64_MIN) {
                snprintf(err, RESP_ERR_MAX, "ERR decrement would overflow");
                return -1;
            }
            delta = -delta;
        }
    }

    const uint8_t *key = c->argv[1];
    size_t klen = c->argl[1];
    int rc = 0;
    switch (d->kind) {
    case RK_GET:
    case RK_TYPE:
    case RK_SMEMBERS:
    case RK_SISMEMBER:
    case RK_SMISMEMBER:
    case RK_SCARD:
        rc = trellis_batch_get(b, key, klen, TRELLIS_TYPE_NONE);
        break;
    case RK_SET:
        rc = trellis_batch_put(b, key, klen, c->argv[2], c->argl[2]);
        ctx_key_written(x, key, klen);
        break;
    case RK_MGET:
    case RK_EXISTS:
        for (size_t i = 1; i < c->argc && rc >= 0; i++)
            rc = trellis_batch_get(b, c->argv[i], c->argl[i], TRELLIS_TYPE_NONE);
        break;
    case RK_MSET:
        for (size_t i = 1; i + 1 < c->argc && rc >= 0; i += 2) {
            rc = trellis_batch_put(b, c->argv[i], c->argl[i], c->argv[i + 1], c->argl[i + 1]);
            ctx_key_written(x, c->argv[i], c->argl[i]);
        }
        break;
    case RK_DEL:
        /* Per key: the read that tells whether it existed, then the delete. */
        for (size_t i = 1; i < c->argc && rc >= 0; i++) {
            rc = trellis_batch_get(b, c->argv[i], c->argl[i], TRELLIS_TYPE_NONE);
            if (rc >= 0)
                rc = trellis_batch_del(b, c->argv[i], c->argl[i]);
            ctx_key_written(x, c->argv[i], c->argl[i]);
        }
        break;
    case RK_SADD:
    case RK_SREM: {
        /* The set is read once per batch (see resp_ctx). */
        kentry *e = x ? ctx_key(x, key, klen) : NULL;
        if (e && e->read != NO_READ) {
            slot->read = e->read;
        } else {
            rc = trellis_batch_get(b, key, klen, TRELLIS_TYPE_NONE);
            if (rc >= 0) {
                slot->read = (size_t)rc;
                if (e)
                    e->read = (size_t)rc;
            }
        }
        if (rc >= 0)
            rc = add_members(b, c, d->kind == RK_SREM);
        break;
    }
    case RK_INCR:
    case RK_DECR:
    case RK_INCRBY:
    case RK_DECRBY:
        rc = trellis_batch_incrby(b, key, klen, delta);
        ctx_key_written(x, key, klen);
        break;
    default:
        rc = -TRELLIS_INVALID;
        break;
    }
    slot->nops = trellis_batch_count(b) - slot->first;
    if (rc < 0) {
        /* Out of memory part way: what was added runs, the command fails. */
        snprintf(err, RESP_ERR_MAX, "ERR trellis: %s (%s)", trellis_strerror(-rc),
                 trellis_status_name(-rc));
        return -1;
    }
    return 0;
}

/* ---- replies ----------------------------------------------------------------------------------
 */

/* A string-like value as Redis would return it, or 0 when the type has
 * none (sets, causal registers). */
static int add_string_value(resp_buf *out, const trellis_value *v)
{
    char num[24];
    switch (v->type) {
    case TRELLIS_TYPE_LWW:
    case TRELLIS_TYPE_PRIORITY:
        if (v->count == 0)
            return 0;
        resp_add_bulk(out, v->items[0].data, v->items[0].len);
        return 1;
    case TRELLIS_TYPE_COUNTER:
    case TRELLIS_TYPE_MAX:
        snprintf(num, sizeof(num), "%" PRId64, v->integer);
        resp_add_cstr(out, num);
        return 1;
    default:
        return 0;
    }
}

/* The first failed operation's status among [first, first + n), stepping
 * by step from offset; TRELLIS_OK if none. NOT_FOUND counts as success. */
static int first_failure(const trellis_batch *b, size_t first, size_t n, size_t offset, size_t step)
{
    for (size_t i = offset; i < n; i += step) {
        int st = trellis_batch_status(b, first + i);
        if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND)
            return st;
    }
    return TRELLIS_OK;
}

/* The set read by op i: *v the value (NULL when the key is missing).
 * Returns TRELLIS_OK, TRELLIS_LATTICE_MISMATCH for another type, or the
 * failure. */
static int read_set(const trellis_batch *b, size_t i, const trellis_value **v)
{
    int st = trellis_batch_status(b, i);
    *v = NULL;
    if (st == TRELLIS_NOT_FOUND)
        return TRELLIS_OK;
    if (st != TRELLIS_OK)
        return st;
    const trellis_value *val = trellis_batch_value(b, i);
    if (!val)
        return TRELLIS_OK;
    if (!is_set_type(val->type))
        return TRELLIS_LATTICE_MISMATCH;
    *v = val;
    return TRELLIS_OK;
}

void resp_cmd_reply(const trellis_batch *b, resp_ctx *x, const resp_cmd_def *d,
                    const resp_command *c, const resp_slot *slot, int proto, resp_buf *out)
{
    size_t f = slot->first, n = slot->nops;
    int st;
    const trellis_value *v;
    switch (d->kind) {
    case RK_GET:
        st = trellis_batch_status(b, f);
        v = trellis_batch_value(b, f);
        if (st == TRELLIS_NOT_FOUND || (st == TRELLIS_OK && !v)) {
            resp_add_nil(out, proto);
        } else if (st != TRELLIS_OK) {
            resp_status_error(out, st);
        } else if (!add_string_value(out, v)) {
            if (v->type == TRELLIS_TYPE_LWW || v->type == TRELLIS_TYPE_PRIORITY)
                resp_add_nil(out, proto);
            else
                resp_status_error(out, TRELLIS_LATTICE_MISMATCH);
        }
        break;
    case RK_SET:
    case RK_MSET:
        st = first_failure(b, f, n, 0, 1);
        if (st == TRELLIS_OK)
            resp_add_simple(out, "OK");
        else
            resp_status_error(out, st);
        break;
    case RK_MGET:
        if ((st = first_failure(b, f, n, 0, 1)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        resp_add_array(out, n);
        for (size_t i = 0; i < n; i++) {
            v = trellis_batch_status(b, f + i) == TRELLIS_OK ? trellis_batch_value(b, f + i) : NULL;
            if (!v || !add_string_value(out, v))
                resp_add_nil(out, proto);
        }
        break;
    case RK_DEL: {
        /* ops: (read, delete) per key */
        if ((st = first_failure(b, f, n, 1, 2)) != TRELLIS_OK) {
            if (st == TRELLIS_INVALID)
                resp_add_error(out, "ERR trellis: a grow-only type (SET, MAX, PRIORITY) cannot "
                                    "be deleted");
            else
                resp_status_error(out, st);
            break;
        }
        int64_t existed = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
            existed += trellis_batch_status(b, f + i) == TRELLIS_OK;
        resp_add_int(out, existed);
        break;
    }
    case RK_EXISTS: {
        if ((st = first_failure(b, f, n, 0, 1)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        int64_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += trellis_batch_status(b, f + i) == TRELLIS_OK;
        resp_add_int(out, k);
        break;
    }
    case RK_TYPE:
        st = trellis_batch_status(b, f);
        v = trellis_batch_value(b, f);
        if (st == TRELLIS_OK && v)
            resp_add_simple(out, resp_type_name(v->type));
        else if (st == TRELLIS_OK || st == TRELLIS_NOT_FOUND)
            resp_add_simple(out, "none");
        else
            resp_status_error(out, st);
        break;
    case RK_SADD:
    case RK_SREM: {
        /* ops: the read (unless an earlier command of the batch made it),
         * then the write */
        st =
            n >= 1 && slot->read != NO_READ ? trellis_batch_status(b, f + n - 1) : TRELLIS_INTERNAL;
        if (st != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        if (read_set(b, slot->read, &v) != TRELLIS_OK)
            v = NULL; /* the read failed but the write went through: count from empty */
        long k = count_members(x, slot->read, c, v, d->kind == RK_SREM);
        if (k < 0)
            resp_status_error(out, TRELLIS_INTERNAL);
        else
            resp_add_int(out, k);
        break;
    }
    case RK_SMEMBERS:
        if ((st = read_set(b, f, &v)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        resp_add_set(out, v ? v->count : 0, proto);
        for (size_t i = 0; v && i < v->count; i++)
            resp_add_bulk(out, v->items[i].data, v->items[i].len);
        break;
    case RK_SISMEMBER:
        if ((st = read_set(b, f, &v)) != TRELLIS_OK)
            resp_status_error(out, st);
        else
            resp_add_int(out, set_has(v, c->argv[2], c->argl[2]));
        break;
    case RK_SMISMEMBER:
        if ((st = read_set(b, f, &v)) != TRELLIS_OK) {
            resp_status_error(out, st);
            break;
        }
        resp_add_array(out, c->argc - 2);
        for (size_t i = 2; i < c->argc; i++)
            resp_add_int(out, set_has(v, c->argv[i], c->argl[i]));
        break;
    case RK_SCARD:
        if ((st = read_set(b, f, &v)) != TRELLIS_OK)
            resp_status_error(out, st);
        else
            resp_add_int(out, v ? (int64_t)v->count : 0);
        break;
    case RK_INCR:
    case RK_DECR:
    case RK_INCRBY:
    case RK_DECRBY:
        st = trellis_batch_status(b, f);
        v = trellis_batch_value(b, f);
        if (st != TRELLIS_OK)
            resp_status_error(out, st);
        else if (v && v->type == TRELLIS_TYPE_COUNTER)
            resp_add_int(out, v->integer);
        else
            resp_add_error(out, "ERR trellis: the increment was applied but its new value could "
                                "not be read");
        break;
    default:
        resp_status_error(out, TRELLIS_INTERNAL);
        break;
    }
}
