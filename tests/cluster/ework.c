/*
 * ework.c - writers and the read-once checker of the elasticity tests
 * (see ework.h).
 */
#include "ework.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

static void ew_fail(ewriter *w, const char *what, const char *key, int rc)
{
    w->failed++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof(w->first_error), "writer %d: %s %s: %s", w->id, what, key,
                 trellis_strerror(rc));
}

/* Keeps the longest a write took (t0: when it began). */
static void ew_took(ewriter *w, uint64_t t0)
{
    uint64_t dt = clock_mono_us() - t0;
    if (dt > w->max_ack_us)
        w->max_ack_us = dt;
}

static void set_key(const ewriter *w, uint64_t n, char *key, size_t cap)
{
    snprintf(key, cap, "%s/set/%" PRIu64, w->prefix, n % EW_SETS);
}

static int member_of(int id, uint64_t n, char *buf, size_t cap)
{
    return snprintf(buf, cap, "w%d-%" PRIu64, id, n);
}

static void ew_incr(ewriter *w, size_t k, int64_t delta)
{
    char key[96];
    snprintf(key, sizeof(key), "%s/cnt/%zu", w->prefix, k);
    uint64_t total = atomic_load(&w->sent[k]) + (uint64_t)delta;
    atomic_store(&w->sent[k], total);
    uint64_t t0 = clock_mono_us();
    int rc = trellis_incrby(w->c, key, strlen(key), delta, NULL);
    ew_took(w, t0);
    if (rc == TRELLIS_OK) {
        /* The client sends its cumulative totals: everything sent so far
         * is on the cluster now. */
        atomic_store(&w->acked[k], total);
        w->ok++;
    } else {
        ew_fail(w, "INCRBY", key, rc);
    }
}

static void *ew_main(void *arg)
{
    ewriter *w = arg;
    char key[96], member[32], lww[96], val[32];
    snprintf(lww, sizeof(lww), "%s/lww/%d", w->prefix, w->id);
    for (uint64_t n = 0; n < EW_MAX_OPS && !atomic_load(&w->stop); n++) {
        set_key(w, n, key, sizeof(key));
        int mlen = member_of(w->id, n, member, sizeof(member));
        trellis_bytes m = {member, (size_t)mlen};
        uint64_t t0 = clock_mono_us();
        int rc = trellis_sadd(w->c, key, strlen(key), &m, 1);
        ew_took(w, t0);
        if (rc == TRELLIS_OK) {
            atomic_fetch_or(&w->flags[n], EW_ADD_ACKED);
            w->ok++;
        } else {
            ew_fail(w, "SADD", key, rc);
        }
        if (n % EW_REMOVE_EVERY == EW_REMOVE_EVERY - 1) {
            uint64_t r = n - (EW_REMOVE_EVERY - 2);
            if (atomic_load(&w->flags[r]) & EW_ADD_ACKED) {
                set_key(w, r, key, sizeof(key));
                mlen = member_of(w->id, r, member, sizeof(member));
                trellis_bytes rm = {member, (size_t)mlen};
                atomic_fetch_or(&w->flags[r], EW_REM_TRIED);
                t0 = clock_mono_us();
                rc = trellis_srem(w->c, key, strlen(key), &rm, 1);
                ew_took(w, t0);
                if (rc == TRELLIS_OK) {
                    atomic_fetch_or(&w->flags[r], EW_REM_ACKED);
                    w->ok++;
                } else {
                    ew_fail(w, "SREM", key, rc);
                }
            }
        }
        ew_incr(w, (size_t)(n % EW_COUNTERS), (int64_t)(1 + n % 3));
        int vlen = snprintf(val, sizeof(val), "%" PRIu64, n);
        t0 = clock_mono_us();
        rc = trellis_put(w->c, lww, strlen(lww), val, (size_t)vlen);
        ew_took(w, t0);
        if (rc == TRELLIS_OK) {
            atomic_store(&w->lww_acked, n + 1);
            w->ok++;
        } else {
            ew_fail(w, "SET", lww, rc);
        }
        atomic_store_explicit(&w->done, n + 1, memory_order_release);
    }
    return NULL;
}

int ew_start(ewriter *w, int id, const char *prefix, const char *router_url, trellis_ack ack,
             int timeout_ms)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->prefix = prefix;
    atomic_init(&w->stop, 0);
    atomic_init(&w->done, 0);
    w->flags = calloc(EW_MAX_OPS, sizeof(*w->flags));
    if (!w->flags)
        return -1;
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = timeout_ms;
    o.retries = 20;
    o.ack = ack;
    int rc = trellis_connect(router_url, &o, &w->c);
    if (rc != TRELLIS_OK) {
        fprintf(stderr, "writer %d: cannot connect to %s: %s\n", id, router_url,
                trellis_strerror(rc));
        return -1;
    }
    if (pthread_create(&w->th, NULL, ew_main, w) != 0) {
        trellis_close(w->c);
        w->c = NULL;
        return -1;
    }
    w->started = 1;
    return 0;
}

void ew_stop(ewriter *w, int tries)
{
    if (w->started) {
        atomic_store(&w->stop, 1);
        pthread_join(w->th, NULL);
        w->started = 0;
    }
    if (!w->c)
        return;
    for (size_t k = 0; k < EW_COUNTERS; k++)
        for (int t = 0; t < tries && atomic_load(&w->acked[k]) != atomic_load(&w->sent[k]); t++)
            ew_incr(w, k, 0);
    trellis_close(w->c);
    w->c = NULL;
}

void ew_free(ewriter *w)
{
    ew_stop(w, 0);
    free((void *)w->flags);
    w->flags = NULL;
}

/* ---- the checker --------------------------------------------------------------------- */

typedef struct problems {
    size_t n;
    char *msg;
    size_t cap;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...)
{
    if (p->n++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, p->cap, fmt, ap);
    va_end(ap);
}

/* 1 if the member (NUL-terminated) is among the value's items. */
static int has_member(const trellis_value *v, const char *m, size_t len)
{
    for (size_t i = 0; v && i < v->count; i++)
        if (v->items[i].len == len && memcmp(v->items[i].data, m, len) == 0)
            return 1;
    return 0;
}

/* What the writers had acknowledged when the check began. */
typedef struct snapshot {
    uint64_t done[EW_MAX_WRITERS];
    uint64_t acked[EW_MAX_WRITERS][EW_COUNTERS];
    uint64_t lww[EW_MAX_WRITERS];
} snapshot;

static void check_set(trellis_client *c, const char *prefix, size_t k, ewriter *w, size_t nw,
                      const snapshot *sn, uint64_t *members, problems *p)
{
    char key[96], member[32];
    snprintf(key, sizeof(key), "%s/set/%zu", prefix, k);
    trellis_value *v = NULL;
    int rc = trellis_smembers(c, key, strlen(key), &v);
    if (rc != TRELLIS_OK && rc != TRELLIS_NOT_FOUND) {
        problem(p, "%s: read failed: %s", key, trellis_strerror(rc));
        return;
    }
    *members += v ? v->count : 0;
    for (size_t i = 0; i < nw; i++) {
        for (uint64_t n = k; n < sn->done[i]; n += EW_SETS) {
            uint8_t f = atomic_load(&w[i].flags[n]);
            int len = member_of(w[i].id, n, member, sizeof(member));
            int there = has_member(v, member, (size_t)len);
            /* A removal acknowledged after the snapshot may show, or not;
             * one acknowledged before it must. */
            if ((f & EW_ADD_ACKED) && !(f & EW_REM_TRIED) && !there)
                problem(p, "%s: member %s, acknowledged, is missing", key, member);
            if ((f & EW_REM_ACKED) && there && n + EW_REMOVE_EVERY < sn->done[i])
                problem(p, "%s: member %s, whose removal was acknowledged, is back", key, member);
        }
    }
    /* Nothing else: every member is one a writer sent to this key. */
    for (size_t j = 0; v && j < v->count; j++) {
        char buf[32];
        size_t l = v->items[j].len < sizeof(buf) - 1 ? v->items[j].len : sizeof(buf) - 1;
        memcpy(buf, v->items[j].data, l);
        buf[l] = '\0';
        int id = -1;
        uint64_t n = 0;
        int sent = sscanf(buf, "w%d-%" SCNu64, &id, &n) == 2 && n % EW_SETS == k;
        int found = 0;
        for (size_t i = 0; sent && i < nw; i++)
            found |= w[i].id == id && n <= atomic_load(&w[i].done);
        if (!found)
            problem(p, "%s: member %s was never written", key, buf);
    }
    trellis_value_free(v);
}

static void check_counter(trellis_client *c, const char *prefix, size_t k, ewriter *w, size_t nw,
                          const snapshot *sn, int final, problems *p)
{
    char key[96];
    snprintf(key, sizeof(key), "%s/cnt/%zu", prefix, k);
    int64_t got = 0;
    int rc = trellis_counter_get(c, key, strlen(key), &got);
    if (rc != TRELLIS_OK && rc != TRELLIS_NOT_FOUND) {
        problem(p, "%s: read failed: %s", key, trellis_strerror(rc));
        return;
    }
    uint64_t lo = 0, hi = 0;
    for (size_t i = 0; i < nw; i++) {
        lo += sn->acked[i][k];
        hi += atomic_load(&w[i].sent[k]);
    }
    if ((uint64_t)got < lo || (uint64_t)got > hi || (final && (uint64_t)got != lo))
        problem(p, "%s reads %lld; acknowledged %" PRIu64 ", sent %" PRIu64, key, (long long)got,
                lo, hi);
}

static void check_lww(trellis_client *c, const char *prefix, ewriter *w, const snapshot *sn,
                      size_t i, problems *p)
{
    char key[96];
    snprintf(key, sizeof(key), "%s/lww/%d", prefix, w->id);
    if (!sn->lww[i])
        return;
    void *val = NULL;
    size_t vlen = 0;
    int rc = trellis_get(c, key, strlen(key), &val, &vlen);
    uint64_t n = 0;
    if (rc != TRELLIS_OK)
        problem(p, "%s: read failed: %s", key, trellis_strerror(rc));
    else if (sscanf(val, "%" SCNu64, &n) != 1 || n + 1 < sn->lww[i])
        problem(p, "%s reads '%s'; write %" PRIu64 " was acknowledged", key, (char *)val,
                sn->lww[i] - 1);
    trellis_free(val);
}

size_t ew_check(const char *router_url, const char *prefix, ewriter *w, size_t nw, int final,
                int timeout_ms, uint64_t *members, char *msg, size_t cap)
{
    problems p = {0, msg, cap};
    msg[0] = '\0';
    *members = 0;
    snapshot sn;
    memset(&sn, 0, sizeof(sn));
    for (size_t i = 0; i < nw && i < EW_MAX_WRITERS; i++) {
        sn.done[i] = atomic_load_explicit(&w[i].done, memory_order_acquire);
        for (size_t k = 0; k < EW_COUNTERS; k++)
            sn.acked[i][k] = atomic_load(&w[i].acked[k]);
        sn.lww[i] = atomic_load(&w[i].lww_acked);
    }
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = timeout_ms;
    o.retries = 20;
    trellis_client *c;
    int rc = trellis_connect(router_url, &o, &c);
    if (rc != TRELLIS_OK) {
        problem(&p, "cannot connect to %s: %s", router_url, trellis_strerror(rc));
        return p.n;
    }
    for (size_t k = 0; k < EW_SETS; k++)
        check_set(c, prefix, k, w, nw, &sn, members, &p);
    for (size_t k = 0; k < EW_COUNTERS; k++)
        check_counter(c, prefix, k, w, nw, &sn, final, &p);
    for (size_t i = 0; i < nw; i++)
        check_lww(c, prefix, &w[i], &sn, i, &p);
    trellis_close(c);
    return p.n;
}
