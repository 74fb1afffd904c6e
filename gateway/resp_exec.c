/*
 * resp_exec.c - the gateway's executor (resp_exec.h): Redis commands'
 * operations as one libtrellis batch per round, walks after it.
 */
#include "gateway/resp_exec.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

#define WALK_BASE (1 << 30) /* indexes of walks: above any batch's */
#define KEYS_STEP 1000      /* keys a shard looks at per step of KEYS */

enum { WALK_SCAN, WALK_KEYS, WALK_DBSIZE };

typedef struct walk {
    int kind;
    uint64_t cursor;
    size_t count;
    uint8_t *pattern; /* a copy */
    size_t plen;
    lat_type type;
    /* result */
    int status;
    trellis_value **found; /* the keys, a value per step */
    size_t nfound;
    lat_slice *keys;
    size_t nkeys;
    uint64_t total, volatile_keys;
} walk;

struct resp_gw_exec {
    resp_exec base; /* first */
    trellis_client *client;
    trellis_batch *b;
    walk *walks;
    size_t nwalks, cwalks;
};

static resp_gw_exec *gw(resp_exec *x)
{
    return (resp_gw_exec *)x;
}

/* Adder results: a batch index, or a negative status. */
static int gw_get(resp_exec *x, const uint8_t *key, size_t klen)
{
    return trellis_batch_get(gw(x)->b, key, klen, TRELLIS_TYPE_NONE);
}

static int gw_head(resp_exec *x, const uint8_t *key, size_t klen)
{
    return trellis_batch_head(gw(x)->b, key, klen);
}

static int gw_put(resp_exec *x, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                  uint64_t deadline_ms, int keep_ttl)
{
    trellis_put_opts o = {deadline_ms, keep_ttl};
    return trellis_batch_put_ex(gw(x)->b, key, klen, val, vlen, &o);
}

static int gw_del(resp_exec *x, const uint8_t *key, size_t klen)
{
    return trellis_batch_del(gw(x)->b, key, klen);
}

/* lat_slice and trellis_bytes have the same members; the library takes
 * the latter. */
static trellis_bytes *as_bytes(const lat_slice *s, size_t n)
{
    trellis_bytes *b = malloc((n ? n : 1) * sizeof(*b));
    for (size_t i = 0; b && i < n; i++) {
        b[i].data = s[i].data;
        b[i].len = s[i].len;
    }
    return b;
}

static int gw_members(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *m, size_t n,
                      int remove)
{
    trellis_bytes *b = as_bytes(m, n);
    if (!b)
        return -TRELLIS_INTERNAL;
    int rc = remove ? trellis_batch_srem(gw(x)->b, key, klen, b, n)
                    : trellis_batch_sadd(gw(x)->b, key, klen, b, n);
    free(b);
    return rc;
}

static int gw_sadd(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *m, size_t n)
{
    return gw_members(x, key, klen, m, n, 0);
}

static int gw_srem(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *m, size_t n)
{
    return gw_members(x, key, klen, m, n, 1);
}

static int gw_incrby(resp_exec *x, const uint8_t *key, size_t klen, int64_t delta)
{
    return trellis_batch_incrby(gw(x)->b, key, klen, delta);
}

static int gw_expire(resp_exec *x, const uint8_t *key, size_t klen, uint64_t unix_ms, int cond)
{
    return trellis_batch_expire(gw(x)->b, key, klen, unix_ms, cond);
}

static int gw_map_set(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *pairs,
                      size_t npairs, int nx)
{
    trellis_bytes *b = as_bytes(pairs, 2 * npairs);
    if (!b)
        return -TRELLIS_INTERNAL;
    int rc = trellis_batch_map_set(gw(x)->b, key, klen, b, npairs, nx);
    free(b);
    return rc;
}

static int gw_map_del(resp_exec *x, const uint8_t *key, size_t klen, const lat_slice *names,
                      size_t n)
{
    trellis_bytes *b = as_bytes(names, n);
    if (!b)
        return -TRELLIS_INTERNAL;
    int rc = trellis_batch_map_del(gw(x)->b, key, klen, b, n);
    free(b);
    return rc;
}

static int gw_map_incrby(resp_exec *x, const uint8_t *key, size_t klen, const uint8_t *field,
                         size_t flen, int64_t delta)
{
    return trellis_batch_map_incrby(gw(x)->b, key, klen, field, flen, delta);
}

/* ---- walks ------------------------------------------------------------------------------ */

static int add_walk(resp_exec *x, int kind, uint64_t cursor, size_t count, const uint8_t *pat,
                    size_t plen, lat_type type)
{
    resp_gw_exec *g = gw(x);
    if (g->nwalks == g->cwalks) {
        size_t cap = g->cwalks ? g->cwalks * 2 : 4;
        walk *w = realloc(g->walks, cap * sizeof(*w));
        if (!w)
            return -TRELLIS_INTERNAL;
        g->walks = w;
        g->cwalks = cap;
    }
    walk *w = &g->walks[g->nwalks];
    memset(w, 0, sizeof(*w));
    if (plen) {
        if (!(w->pattern = malloc(plen)))
            return -TRELLIS_INTERNAL;
        memcpy(w->pattern, pat, plen);
    }
    w->kind = kind;
    w->cursor = cursor;
    w->count = count;
    w->plen = plen;
    w->type = type;
    return WALK_BASE + (int)g->nwalks++;
}

static int gw_scan(resp_exec *x, uint64_t cursor, size_t count, const uint8_t *pattern, size_t plen,
                   lat_type type)
{
    return add_walk(x, WALK_SCAN, cursor, count, pattern, plen, type);
}

static int gw_keys(resp_exec *x, const uint8_t *pattern, size_t plen)
{
    return add_walk(x, WALK_KEYS, 0, KEYS_STEP, pattern, plen, LAT_NONE);
}

static int gw_dbsize(resp_exec *x)
{
    return add_walk(x, WALK_DBSIZE, 0, 0, NULL, 0, LAT_NONE);
}

/* Runs a SCAN step, or the steps of a whole walk (KEYS), keeping each
 * step's keys; then lists them. */
static void run_walk(trellis_client *c, walk *w)
{
    if (w->kind == WALK_DBSIZE) {
        w->status = trellis_dbsize(c, &w->total, &w->volatile_keys);
        return;
    }
    trellis_scan_opts o = {w->count, w->pattern, w->plen, (trellis_type)w->type};
    uint64_t cursor = w->cursor;
    size_t total = 0;
    do {
        trellis_value *keys;
        trellis_value **f = realloc(w->found, (w->nfound + 1) * sizeof(*f));
        if (!f) {
            w->status = TRELLIS_INTERNAL;
            return;
        }
        w->found = f;
        w->status = trellis_scan(c, &cursor, &o, &keys);
        if (w->status != TRELLIS_OK)
            return;
        w->found[w->nfound++] = keys;
        total += keys->count;
    } while (w->kind == WALK_KEYS && cursor != 0);
    w->cursor = cursor;
    w->keys = malloc((total ? total : 1) * sizeof(*w->keys));
    if (!w->keys) {
        w->status = TRELLIS_INTERNAL;
        return;
    }
    for (size_t i = 0; i < w->nfound; i++)
        for (size_t j = 0; j < w->found[i]->count; j++) {
            w->keys[w->nkeys].data = w->found[i]->items[j].data;
            w->keys[w->nkeys++].len = w->found[i]->items[j].len;
        }
}

/* ---- results ------------------------------------------------------------------------------- */

static void gw_result(resp_exec *x, int op, resp_res *out)
{
    resp_gw_exec *g = gw(x);
    memset(out, 0, sizeof(*out));
    if (op >= WALK_BASE) {
        const walk *w = &g->walks[op - WALK_BASE];
        out->status = w->status;
        out->keys = w->keys;
        out->nkeys = w->nkeys;
        out->cursor = w->cursor;
        out->integer = (int64_t)w->total;
        out->volatile_keys = w->volatile_keys;
        return;
    }
    trellis_result r;
    if (trellis_batch_result(g->b, (size_t)op, &r) != TRELLIS_OK) {
        out->status = TRELLIS_INTERNAL;
        return;
    }
    const trellis_value *v = trellis_batch_value(g->b, (size_t)op);
    out->status = r.status;
    out->type = (lat_type)(v ? v->type : r.type);
    out->integer = r.integer;
    out->deadline_ms = r.deadline_ms;
    if (v) {
        out->state = v->state;
        out->len = v->state_len;
    }
}

static uint64_t gw_now_ms(resp_exec *x)
{
    resp_gw_exec *g = gw(x);
    return g->client ? trellis_clock_ms(g->client) : clock_wall_us() / 1000;
}

static const resp_exec_ops gw_ops = {
    .get = gw_get,
    .head = gw_head,
    .put = gw_put,
    .del = gw_del,
    .sadd = gw_sadd,
    .srem = gw_srem,
    .incrby = gw_incrby,
    .expire = gw_expire,
    .map_set = gw_map_set,
    .map_del = gw_map_del,
    .map_incrby = gw_map_incrby,
    .scan = gw_scan,
    .keys = gw_keys,
    .dbsize = gw_dbsize,
    .result = gw_result,
    .now_ms = gw_now_ms,
};

resp_gw_exec *resp_gw_exec_new(void)
{
    resp_gw_exec *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->base.ops = &gw_ops;
    g->b = trellis_batch_new();
    if (!g->b) {
        free(g);
        return NULL;
    }
    return g;
}

static void drop_walks(resp_gw_exec *g)
{
    for (size_t i = 0; i < g->nwalks; i++) {
        walk *w = &g->walks[i];
        for (size_t j = 0; j < w->nfound; j++)
            trellis_value_free(w->found[j]);
        free(w->found);
        free(w->keys);
        free(w->pattern);
    }
    g->nwalks = 0;
}

void resp_gw_exec_free(resp_gw_exec *g)
{
    if (!g)
        return;
    drop_walks(g);
    free(g->walks);
    trellis_batch_free(g->b);
    free(g);
}

resp_exec *resp_gw_exec_base(resp_gw_exec *g)
{
    return &g->base;
}

void resp_gw_exec_reset(resp_gw_exec *g, trellis_client *client)
{
    trellis_batch_clear(g->b);
    drop_walks(g);
    g->client = client;
}

size_t resp_gw_exec_count(const resp_gw_exec *g)
{
    return trellis_batch_count(g->b) + g->nwalks;
}

void resp_gw_exec_run(resp_gw_exec *g)
{
    if (!g->client)
        return;
    if (trellis_batch_count(g->b) > 0)
        trellis_batch_exec(g->client, g->b);
    for (size_t i = 0; i < g->nwalks; i++)
        run_walk(g->client, &g->walks[i]);
}
