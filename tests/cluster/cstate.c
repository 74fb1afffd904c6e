/*
 * cstate.c - expected states and replica-by-replica readings (see cstate.h).
 */
#include "cstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "tsupport.h"
#include "base/wire.h"

#define CS_MAX_REPLICAS 8    /* replicas per key read, both tiers */
#define CS_BATCH        1000 /* GETs per request */

int cs_init(cs_set *s, const char *prefix, size_t n)
{
    s->n = 0;
    s->k = calloc(n ? n : 1, sizeof(*s->k));
    if (!s->k)
        return -1;
    for (size_t i = 0; i < n; i++) {
        cs_key *k = &s->k[i];
        int len = snprintf(k->key, sizeof(k->key), "%s/%zu", prefix, i);
        k->klen = len > 0 && (size_t)len < sizeof(k->key) ? (size_t)len : strlen(k->key);
        k->type = (lat_type)(LAT_TYPE_FIRST + (int)(i % 7));
        lat_buf_init(&k->want);
        lat_buf_init(&k->got);
    }
    s->n = n;
    return 0;
}

void cs_name(cs_set *s, size_t i, const char *key, lat_type type)
{
    cs_key *k = &s->k[i];
    snprintf(k->key, sizeof(k->key), "%s", key);
    k->klen = strlen(k->key);
    k->type = type;
    k->want.len = 0;
    k->got.len = 0;
}

void cs_fini(cs_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        lat_buf_free(&s->k[i].want);
        lat_buf_free(&s->k[i].got);
    }
    free(s->k);
    s->k = NULL;
    s->n = 0;
}

int cs_expect(cs_set *s, size_t i, const uint8_t *delta, size_t len)
{
    cs_key *k = &s->k[i];
    if (k->want.len == 0)
        return lat_buf_set(&k->want, delta, len);
    lat_buf out;
    lat_buf_init(&out);
    int rc = lat_merge(k->type, k->want.data, k->want.len, delta, len, &out);
    if (rc == TRELLIS_OK)
        rc = lat_buf_set(&k->want, out.data, out.len);
    lat_buf_free(&out);
    return rc;
}

size_t cs_replica_urls(const cs_set *s, size_t i, const ring *r, char (*urls)[RING_MAX_URL + 1],
                       int *tiers, size_t max)
{
    const cs_key *k = &s->k[i];
    size_t n = 0;
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        int idx[RING_MAX_REPLICAS];
        size_t m = ring_replicas(r, RING_CURRENT, tier, k->key, k->klen, idx, RING_MAX_REPLICAS);
        for (size_t j = 0; j < m && n < max; j++) {
            const ring_node *node = ring_node_at(r, (size_t)idx[j]);
            if (ring_shard_data_url(node, ring_local_shard(k->key, k->klen, node->shards), urls[n],
                                    sizeof(urls[n])) != TRELLIS_OK)
                continue;
            if (tiers)
                tiers[n] = tier;
            n++;
        }
    }
    return n;
}

/* One GET per (key, replica), grouped into one batch per shard URL. */
typedef struct cs_read_item {
    size_t key;
    size_t replica; /* index among the key's replicas */
} cs_read_item;

typedef struct cs_group {
    char url[RING_MAX_URL + 1];
    cs_read_item *items;
    size_t n, cap;
} cs_group;

static void hex_prefix(char *out, size_t cap, const uint8_t *p, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < len && i < 24 && o + 3 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", p[i]);
    if (len > 24 && o + 4 < cap)
        snprintf(out + o, cap - o, "...");
}

/* GETs of m items at one shard URL; fills their status and state. */
static int cs_read_batch(const cs_set *s, const char *url, const cs_read_item *items, size_t m,
                         int timeout_ms, wire_arena *a, int (*status)[CS_MAX_REPLICAS],
                         lat_buf (*got)[CS_MAX_REPLICAS])
{
    Trellis__KeyOp **ops = calloc(m, sizeof(*ops));
    if (!ops)
        return TRELLIS_INTERNAL;
    for (size_t q = 0; q < m; q++) {
        const cs_key *k = &s->k[items[q].key];
        ops[q] = tkv_op_get(a, k->key, k->klen, LAT_NONE);
    }
    Trellis__KvReply *kr = NULL;
    int brc = tkv_batch(url, ops, m, timeout_ms, a, &kr);
    for (size_t q = 0; q < m; q++) {
        size_t i = items[q].key, j = items[q].replica;
        if (brc != TRELLIS_OK || !kr || kr->n_results != m) {
            status[i][j] = brc != TRELLIS_OK ? brc : TRELLIS_MALFORMED;
            continue;
        }
        const Trellis__KeyResult *res = kr->results[q];
        status[i][j] = (int)res->status;
        if (res->status == TRELLIS__STATUS__OK) {
            if ((int)res->type != (int)s->k[i].type)
                status[i][j] = TRELLIS_LATTICE_MISMATCH;
            else
                lat_buf_set(&got[i][j], res->value.data, res->value.len);
        }
    }
    free(ops);
    return TRELLIS_OK;
}

int cs_read(cs_set *s, const ring *r, int timeout_ms, cs_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->keys = s->n;
    size_t nrep_total = 0;
    size_t *nrep = calloc(s->n ? s->n : 1, sizeof(size_t));
    /* (key, replica) -> tier, URL and the state read; states kept per key. */
    int(*tiers)[CS_MAX_REPLICAS] = calloc(s->n ? s->n : 1, sizeof(*tiers));
    int(*gidx)[CS_MAX_REPLICAS] = calloc(s->n ? s->n : 1, sizeof(*gidx)); /* group of each read */
    char(*urls)[RING_MAX_URL + 1] = calloc(CS_MAX_REPLICAS, sizeof(*urls));
    lat_buf(*got)[CS_MAX_REPLICAS] = calloc(s->n ? s->n : 1, sizeof(*got));
    int(*status)[CS_MAX_REPLICAS] = calloc(s->n ? s->n : 1, sizeof(*status));
    cs_group *groups = NULL;
    size_t ngroups = 0, capgroups = 0;
    wire_arena *a = wire_arena_new();
    int rc = nrep && tiers && gidx && urls && got && status && a ? TRELLIS_OK : TRELLIS_INTERNAL;
    for (size_t i = 0; rc == TRELLIS_OK && i < s->n; i++) {
        nrep[i] = cs_replica_urls(s, i, r, urls, tiers[i], CS_MAX_REPLICAS);
        nrep_total += nrep[i];
        if (nrep[i] > rep->replicas)
            rep->replicas = nrep[i];
        for (size_t j = 0; j < nrep[i]; j++) {
            status[i][j] = TRELLIS_UNAVAILABLE;
            size_t g = 0;
            while (g < ngroups && strcmp(groups[g].url, urls[j]) != 0)
                g++;
            if (g == ngroups) {
                if (ngroups == capgroups) {
                    size_t cap = capgroups ? capgroups * 2 : 16;
                    cs_group *ng = realloc(groups, cap * sizeof(*ng));
                    if (!ng) {
                        rc = TRELLIS_INTERNAL;
                        break;
                    }
                    groups = ng;
                    capgroups = cap;
                }
                memset(&groups[g], 0, sizeof(groups[g]));
                snprintf(groups[g].url, sizeof(groups[g].url), "%s", urls[j]);
                ngroups++;
            }
            gidx[i][j] = (int)g;
            cs_group *gr = &groups[g];
            if (gr->n == gr->cap) {
                size_t cap = gr->cap ? gr->cap * 2 : 64;
                cs_read_item *ni = realloc(gr->items, cap * sizeof(*ni));
                if (!ni) {
                    rc = TRELLIS_INTERNAL;
                    break;
                }
                gr->items = ni;
                gr->cap = cap;
            }
            gr->items[gr->n++] = (cs_read_item){i, j};
        }
    }
    for (size_t g = 0; rc == TRELLIS_OK && g < ngroups; g++) {
        cs_group *gr = &groups[g];
        for (size_t from = 0; rc == TRELLIS_OK && from < gr->n; from += CS_BATCH) {
            size_t m = gr->n - from < CS_BATCH ? gr->n - from : CS_BATCH;
            rc = cs_read_batch(s, gr->url, gr->items + from, m, timeout_ms, a, status, got);
            wire_arena_reset(a);
        }
    }
    rep->reads = nrep_total;
    for (size_t i = 0; rc == TRELLIS_OK && i < s->n; i++) {
        cs_key *k = &s->k[i];
        int same = nrep[i] > 0, complete = nrep[i] > 0;
        k->got.len = 0;
        for (size_t j = 0; j < nrep[i]; j++) {
            int st = status[i][j];
            int ok = st == TRELLIS_OK || st == TRELLIS_NOT_FOUND;
            if (!ok)
                rep->failed++;
            const lat_buf *b = &got[i][j], *b0 = &got[i][0];
            if (!ok || status[i][0] != st || b->len != b0->len ||
                (b->len && memcmp(b->data, b0->data, b->len) != 0))
                same = 0;
            int want_found = k->want.len > 0;
            int matches = ok && (st == TRELLIS_OK) == want_found &&
                          (!want_found ||
                           (b->len == k->want.len && memcmp(b->data, k->want.data, b->len) == 0));
            if (k->inexact)
                matches = st == TRELLIS_OK && status[i][0] == st && b->len == b0->len &&
                          memcmp(b->data, b0->data, b->len) == 0;
            if (!matches && complete) {
                complete = 0;
                if (!rep->first[0]) {
                    /* Inexact keys compare with the first replica. */
                    const lat_buf *w = k->inexact ? b0 : &k->want;
                    char hw[64], hg[64];
                    hex_prefix(hw, sizeof(hw), w->data, w->len);
                    hex_prefix(hg, sizeof(hg), b->data, b->len);
                    snprintf(rep->first, sizeof(rep->first),
                             "key %s (%s): %s replica %zu at %s answered %s with %zu bytes "
                             "[%s]; expected %zu bytes [%s]%s",
                             k->key, lat_type_name(k->type),
                             tiers[i][j] == RING_TIER_MEMORY ? "memory" : "disk", j,
                             groups[gidx[i][j]].url, trellis_status_name(st), b->len, hg, w->len,
                             hw, k->inexact ? " as replica 0 holds" : "");
                }
            }
        }
        rep->identical += (size_t)same;
        rep->complete += (size_t)complete;
        if (same && status[i][0] == TRELLIS_OK)
            lat_buf_set(&k->got, got[i][0].data, got[i][0].len);
    }
    if (rc == TRELLIS_OK && s->n && !rep->first[0] && rep->complete < rep->keys)
        snprintf(rep->first, sizeof(rep->first), "a key has no replica in the ring");
    for (size_t i = 0; got && i < s->n; i++)
        for (size_t j = 0; j < CS_MAX_REPLICAS; j++)
            lat_buf_free(&got[i][j]);
    for (size_t g = 0; g < ngroups; g++)
        free(groups[g].items);
    free(groups);
    free(nrep);
    free(tiers);
    free(gidx);
    free(urls);
    free(got);
    free(status);
    wire_arena_free(a);
    return rc;
}

int cs_wait(cs_set *s, const char *router_url, int timeout_ms, uint64_t *took_ms, cs_report *rep)
{
    uint64_t t0 = clock_mono_ms();
    memset(rep, 0, sizeof(*rep));
    snprintf(rep->first, sizeof(rep->first), "no ring from %s", router_url);
    for (;;) {
        ring *r = NULL;
        if (tkv_fetch_ring(router_url, &r, NULL) == TRELLIS_OK) {
            int rc = cs_read(s, r, 1000, rep);
            ring_free(r);
            if (rc == TRELLIS_OK && rep->complete == rep->keys) {
                if (took_ms)
                    *took_ms = clock_mono_ms() - t0;
                return 0;
            }
        }
        if (clock_mono_ms() - t0 >= (uint64_t)timeout_ms)
            return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cs_write_random(cs_set *s, const ring *r, trand *rnd, uint64_t writers, char *err, size_t cap)
{
    err[0] = '\0';
    size_t n = s->n;
    wire_arena *a = wire_arena_new();
    lat_buf *d = calloc(n ? n : 1, sizeof(*d));
    char(*url)[RING_MAX_URL + 1] = calloc(n ? n : 1, sizeof(*url));
    uint8_t *sent = calloc(n ? n : 1, 1);
    Trellis__KeyOp **ops = calloc(n ? n : 1, sizeof(*ops));
    size_t *idx = calloc(n ? n : 1, sizeof(*idx));
    int rc = a && d && url && sent && ops && idx ? TRELLIS_OK : TRELLIS_INTERNAL;
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        rc = trand_delta(rnd, s->k[i].type, NULL, 0, writers, &d[i]);
        char urls[CS_MAX_REPLICAS][RING_MAX_URL + 1];
        size_t m = rc == TRELLIS_OK ? cs_replica_urls(s, i, r, urls, NULL, CS_MAX_REPLICAS) : 0;
        if (rc == TRELLIS_OK && m == 0) {
            rc = TRELLIS_NOT_FOUND;
            snprintf(err, cap, "key %s has no replica", s->k[i].key);
        }
        if (m)
            memcpy(url[i], urls[trand_below(rnd, m)], sizeof(url[i]));
    }
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        if (sent[i])
            continue;
        size_t m = 0;
        for (size_t j = i; j < n && m < CS_BATCH; j++)
            if (!sent[j] && strcmp(url[j], url[i]) == 0) {
                ops[m] = tkv_op_put(a, s->k[j].key, s->k[j].klen, s->k[j].type, &d[j]);
                idx[m++] = j;
                sent[j] = 1;
            }
        Trellis__KvReply *rep = NULL;
        rc = tkv_batch(url[i], ops, m, TKV_TIMEOUT_MS, a, &rep);
        if (rc == TRELLIS_OK && rep->n_results != m)
            rc = TRELLIS_MALFORMED;
        if (rc != TRELLIS_OK)
            snprintf(err, cap, "writes to %s: %s", url[i], trellis_strerror(rc));
        for (size_t q = 0; rc == TRELLIS_OK && q < m; q++) {
            int st = (int)rep->results[q]->status;
            if (st != TRELLIS_OK) {
                rc = st;
                snprintf(err, cap, "write of %s at %s: %s", s->k[idx[q]].key, url[i],
                         trellis_status_name(st));
                break;
            }
            rc = cs_expect(s, idx[q], d[idx[q]].data, d[idx[q]].len);
        }
        wire_arena_reset(a);
    }
    for (size_t i = 0; d && i < n; i++)
        lat_buf_free(&d[i]);
    free(d);
    free(url);
    free(sent);
    free(ops);
    free(idx);
    wire_arena_free(a);
    return rc;
}
