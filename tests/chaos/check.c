/*
 * check.c - the chaos test's checker. After every fault has healed it
 * reads each key straight from every one of its replicas (memory and disk
 * tier, the current view of a router's ring) with raw GETs, until all
 * replicas answer the same bytes; then it checks those states against the
 * history:
 *
 *  - sets (Jepsen's set checker): every element whose SADD was
 *    acknowledged is present; no element is present that was never sent
 *    to that key, or whose SADD was refused outright;
 *  - counters (Jepsen's counter checker, per writer): each writer's entry
 *    lies between its cumulative total at its last acknowledged increment
 *    and the total of its last attempt, and nothing was decremented;
 *  - both routers serve the same ring.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "lattices/lattice.h"
#include "placement/ring.h"

#define CH_READ_TIMEOUT_MS 3000
#define CH_MAX_READ        (2 * RING_MAX_REPLICAS)

typedef struct key_state {
    char key[64];
    int found; /* some replica has it */
    int type;
    lat_buf state; /* the agreed state (without type byte) */
} key_state;

static void describe(ch_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void describe(ch_verdict *v, const char *fmt, ...)
{
    if (v->first[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->first, sizeof(v->first), fmt, ap);
    va_end(ap);
}

/* Reads one key from each of its replicas under r. 1 when all answered the
 * same (ks filled), 0 otherwise (why filled). */
static int read_key(const ring *r, wire_arena *a, key_state *ks, size_t *reads, char *why,
                    size_t cap)
{
    char urls[CH_MAX_READ][RING_MAX_URL + 1];
    size_t n = 0;
    static const int tiers[] = {RING_TIER_MEMORY, RING_TIER_DISK};
    for (int t = 0; t < 2; t++)
        for (size_t nth = 0; n < CH_MAX_READ; nth++)
            if (tkv_replica_url(r, tiers[t], nth, ks->key, strlen(ks->key), urls[n],
                                sizeof(urls[n])) == TRELLIS_OK)
                n++;
            else
                break;
    if (n == 0) {
        snprintf(why, cap, "%s has no replica in the ring", ks->key);
        return 0;
    }
    int agree = 1;
    for (size_t i = 0; i < n && agree; i++) {
        Trellis__KeyOp *op = tkv_op_get(a, ks->key, strlen(ks->key), LAT_NONE);
        Trellis__KvReply *rep;
        int rc = tkv_batch(urls[i], &op, 1, CH_READ_TIMEOUT_MS, a, &rep);
        (*reads)++;
        int st = rc == TRELLIS_OK ? (int)rep->results[0]->status : rc;
        if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
            snprintf(why, cap, "%s at %s: %s", ks->key, urls[i], trellis_status_name(st));
            agree = 0;
            break;
        }
        int found = st == TRELLIS_OK;
        const uint8_t *data = found ? rep->results[0]->value.data : NULL;
        size_t len = found ? rep->results[0]->value.len : 0;
        int type = found ? (int)rep->results[0]->type : 0;
        if (i == 0) {
            ks->found = found;
            ks->type = type;
            lat_buf_set(&ks->state, data, len);
        } else if (found != ks->found || type != ks->type || len != ks->state.len ||
                   (len && memcmp(data, ks->state.data, len) != 0)) {
            snprintf(why, cap, "%s: replica %s holds %s%zu bytes, replica %s %s%zu bytes", ks->key,
                     urls[0], ks->found ? "" : "nothing, ", ks->state.len, urls[i],
                     found ? "" : "nothing, ", len);
            agree = 0;
        }
        wire_arena_reset(a);
    }
    return agree;
}

static int fetch_ring(ch_cluster *c, ring **r, uint64_t *epoch)
{
    for (int i = 0; i < CH_ROUTERS; i++)
        if (tkv_fetch_ring(c->router_url[i], r, epoch) == TRELLIS_OK)
            return 0;
    return -1;
}

/* Reads every key until all replicas agree. */
static int converge(ch_cluster *c, key_state *ks, size_t nk, int timeout_ms, ch_verdict *v)
{
    wire_arena *a = wire_arena_new();
    uint64_t start = ch_now_ms(), end = start + (uint64_t)timeout_ms;
    char why[512] = "";
    int rounds = 0;
    for (;;) {
        ring *r;
        uint64_t epoch;
        int agree = 0;
        if (fetch_ring(c, &r, &epoch) == 0) {
            agree = 1;
            v->replicas_read = 0;
            for (size_t i = 0; i < nk && agree; i++)
                agree = read_key(r, a, &ks[i], &v->replicas_read, why, sizeof(why));
            ring_free(r);
        } else {
            snprintf(why, sizeof(why), "no router answers");
        }
        rounds++;
        if (agree) {
            v->converged = 1;
            v->converge_ms = ch_now_ms() - start;
            break;
        }
        if (rounds % 10 == 1)
            ch_log("not converged yet: %s", why);
        if (ch_now_ms() >= end) {
            describe(v, "replicas still differ after %d ms: %s", timeout_ms, why);
            break;
        }
        tsleep_ms((int)(500));
    }
    wire_arena_free(a);
    return v->converged ? 0 : -1;
}

static void check_sets(const ch_workload *wl, key_state *ks, uint32_t nsets, ch_verdict *v)
{
    char elem[64];
    for (uint32_t k = 0; k < nsets; k++) {
        key_state *s = &ks[k];
        if (s->found && s->type != LAT_ORSET) {
            describe(v, "%s has type %d, not ORSET", s->key, s->type);
            v->phantoms++;
            continue;
        }
        /* Every element present must have been sent to this key and not
         * refused outright. */
        size_t pos = 0;
        lat_slice m;
        while (s->found && lat_orset_next(s->state.data, s->state.len, &pos, &m) == 1) {
            int wid;
            unsigned n;
            char tail;
            snprintf(elem, sizeof(elem), "%.*s", (int)m.len, (const char *)m.data);
            int ok = sscanf(elem, "w%d-%u%c", &wid, &n, &tail) == 2 && wid >= 0 && wid < wl->nw &&
                     !wl->w[wid].is_counter && n < wl->w[wid].n && wl->w[wid].ops[n].key == k &&
                     wl->w[wid].ops[n].outcome != CH_FAIL;
            if (!ok) {
                v->phantoms++;
                describe(v, "%s holds %s, which was never sent there (or was refused)", s->key,
                         elem);
            }
        }
        /* Every acknowledged element must be present. */
        for (int i = 0; i < wl->nw; i++) {
            const ch_worker *w = &wl->w[i];
            if (w->is_counter)
                continue;
            for (size_t j = 0; j < w->n; j++) {
                const ch_op *op = &w->ops[j];
                if (op->key != k || op->outcome == CH_FAIL)
                    continue;
                ch_element_name(w->id, op->value, elem, sizeof(elem));
                int present =
                    s->found && lat_orset_contains(s->state.data, s->state.len, elem, strlen(elem));
                if (op->outcome == CH_OK) {
                    v->acked_adds++;
                    if (!present) {
                        v->missing++;
                        describe(v,
                                 "%s lacks %s, whose SADD was acknowledged (invoked at %u ms, "
                                 "acknowledged at %u ms)",
                                 s->key, elem, op->invoke_ms, op->complete_ms);
                    }
                } else if (present) {
                    v->unknown_present++;
                } else {
                    v->unknown_absent++;
                }
            }
        }
    }
}

static void check_counters(const ch_workload *wl, key_state *ks, ch_verdict *v)
{
    for (uint32_t k = 0; k < CH_COUNTER_KEYS; k++) {
        key_state *s = &ks[k];
        if (s->found && s->type != LAT_COUNTER) {
            describe(v, "%s has type %d, not COUNTER", s->key, s->type);
            v->counter_violations++;
            continue;
        }
        for (int i = 0; i < wl->nw; i++) {
            const ch_worker *w = &wl->w[i];
            if (!w->is_counter)
                continue;
            uint64_t inc = 0, dec = 0;
            if (s->found)
                lat_counter_entry(s->state.data, s->state.len, w->writer, &inc, &dec);
            v->counter_checks++;
            if (inc < w->acked_total[k] || inc > w->sent_total[k] || dec != 0) {
                v->counter_violations++;
                describe(v,
                         "%s: writer %d holds %llu (-%llu), outside [%llu acknowledged, %llu "
                         "attempted]",
                         s->key, w->id, (unsigned long long)inc, (unsigned long long)dec,
                         (unsigned long long)w->acked_total[k],
                         (unsigned long long)w->sent_total[k]);
            }
        }
    }
}

int ch_check(ch_cluster *c, const ch_workload *wl, int timeout_ms, ch_verdict *v)
{
    memset(v, 0, sizeof(*v));
    uint32_t nsets = ch_set_keys(wl);
    size_t nk = nsets + CH_COUNTER_KEYS;
    key_state *ks = calloc(nk, sizeof(*ks));
    if (!ks)
        return -1;
    for (uint32_t k = 0; k < nsets; k++)
        ch_set_key_name(k, ks[k].key, sizeof(ks[k].key));
    for (uint32_t k = 0; k < CH_COUNTER_KEYS; k++)
        ch_counter_key_name(k, ks[nsets + k].key, sizeof(ks[nsets + k].key));
    for (size_t i = 0; i < nk; i++)
        lat_buf_init(&ks[i].state);
    v->keys = nk;

    converge(c, ks, nk, timeout_ms, v);
    if (v->converged) {
        check_sets(wl, ks, nsets, v);
        check_counters(wl, ks + nsets, v);
    }
    /* Both routers hold the same membership. */
    uint64_t e[CH_ROUTERS] = {0};
    for (int r = 0; r < CH_ROUTERS; r++) {
        ring *rg;
        if (tkv_fetch_ring(c->router_url[r], &rg, &e[r]) == TRELLIS_OK)
            ring_free(rg);
    }
    v->rings_agree = e[0] != 0 && e[0] == e[1];
    if (!v->rings_agree)
        describe(v, "the routers serve different rings (epochs %llu and %llu)",
                 (unsigned long long)e[0], (unsigned long long)e[1]);

    for (size_t i = 0; i < nk; i++)
        lat_buf_free(&ks[i].state);
    free(ks);
    return v->converged && v->missing == 0 && v->phantoms == 0 && v->counter_violations == 0 &&
                   v->rings_agree
               ? 0
               : -1;
}
