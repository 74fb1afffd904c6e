/*
 * cwriter.c - writers that remember what was acknowledged (see cwriter.h).
 */
#include "cwriter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void cw_fail(cwriter *w, const char *what, int rc)
{
    w->failed++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof(w->first_error), "writer %d: %s: %s (%s)", w->id, what,
                 trellis_strerror(rc), trellis_status_name(rc));
}

static int cw_incr(cwriter *w, size_t k, int64_t delta)
{
    char key[CS_MAX_KEY];
    snprintf(key, sizeof(key), "%s/cnt/%zu", w->prefix, k);
    w->total[k] += (uint64_t)delta;
    int rc = trellis_incrby(w->c, key, strlen(key), delta, NULL);
    w->last_ok[k] = rc == TRELLIS_OK;
    if (rc == TRELLIS_OK) {
        w->ok++;
        w->acked_incr += (uint64_t)delta;
    } else {
        cw_fail(w, key, rc);
    }
    return rc;
}

static void *cw_main(void *arg)
{
    cwriter *w = arg;
    char key[CS_MAX_KEY], member[32];
    for (uint64_t n = 0; n < CW_MAX_OPS && !atomic_load(&w->stop); n++) {
        size_t k = (size_t)(n % CW_SETS);
        snprintf(key, sizeof(key), "%s/set/%zu", w->prefix, k);
        int mlen = snprintf(member, sizeof(member), "w%d-%llu", w->id, (unsigned long long)n);
        trellis_bytes m = {member, (size_t)mlen};
        w->sadds = n + 1;
        int rc = trellis_sadd(w->c, key, strlen(key), &m, 1);
        if (rc == TRELLIS_OK) {
            w->acked[n] = 1;
            w->ok++;
        } else {
            cw_fail(w, key, rc);
        }
        cw_incr(w, (size_t)(n % CW_COUNTERS), (int64_t)(1 + n % 3));
        atomic_fetch_add(&w->progress, 2);
        if (w->pause_us) {
            struct timespec ts = {0, (long)w->pause_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int cw_start(cwriter *w, int id, const char *prefix, const char *router_url, trellis_ack ack,
             int timeout_ms)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->prefix = prefix;
    atomic_init(&w->stop, 0);
    atomic_init(&w->progress, 0);
    w->acked = calloc(CW_MAX_OPS, 1);
    if (!w->acked)
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
    w->writer = trellis_writer_id(w->c);
    if (pthread_create(&w->th, NULL, cw_main, w) != 0) {
        trellis_close(w->c);
        w->c = NULL;
        return -1;
    }
    w->started = 1;
    return 0;
}

void cw_stop(cwriter *w, int tries)
{
    if (w->started) {
        atomic_store(&w->stop, 1);
        pthread_join(w->th, NULL);
        w->started = 0;
    }
    if (!w->c)
        return;
    for (size_t k = 0; k < CW_COUNTERS; k++)
        for (int t = 0; t < tries && !w->last_ok[k] && w->total[k]; t++)
            cw_incr(w, k, 1);
    trellis_close(w->c);
    w->c = NULL;
}

void cw_free(cwriter *w)
{
    cw_stop(w, 0);
    free(w->acked);
    w->acked = NULL;
}

int cw_expect(cs_set *s, const char *prefix, const cwriter *w, size_t nw)
{
    char key[CS_MAX_KEY];
    for (size_t k = 0; k < CW_SETS; k++) {
        snprintf(key, sizeof(key), "%s/set/%zu", prefix, k);
        cs_name(s, k, key, LAT_ORSET);
        s->k[k].inexact = 1;
    }
    for (size_t k = 0; k < CW_COUNTERS; k++) {
        snprintf(key, sizeof(key), "%s/cnt/%zu", prefix, k);
        cs_name(s, CW_SETS + k, key, LAT_COUNTER);
        for (size_t i = 0; i < nw; i++) {
            if (!w[i].total[k])
                continue;
            lat_buf d;
            lat_buf_init(&d);
            int rc = lat_counter_encode(w[i].writer, w[i].total[k], 0, &d);
            if (rc == TRELLIS_OK)
                rc = cs_expect(s, CW_SETS + k, d.data, d.len);
            lat_buf_free(&d);
            if (rc != TRELLIS_OK)
                return rc;
        }
    }
    return TRELLIS_OK;
}

size_t cw_check_sets(const cs_set *s, const cwriter *w, size_t nw, char *msg, size_t cap)
{
    size_t problems = 0;
    msg[0] = '\0';
    char member[32];
    for (size_t k = 0; k < CW_SETS; k++) {
        const lat_buf *st = &s->k[k].got;
        /* Every acknowledged member is there. */
        for (size_t i = 0; i < nw; i++)
            for (uint64_t n = k; n < w[i].sadds; n += CW_SETS) {
                if (!w[i].acked[n])
                    continue;
                int mlen =
                    snprintf(member, sizeof(member), "w%d-%llu", w[i].id, (unsigned long long)n);
                if (st->len && lat_orset_contains(st->data, st->len, member, (size_t)mlen) == 1)
                    continue;
                if (!problems++)
                    snprintf(msg, cap, "%s: acknowledged member %s is missing", s->k[k].key,
                             member);
            }
        /* Nothing else is: every member is one a writer sent to this key. */
        size_t pos = 0;
        lat_slice m;
        while (st->len && lat_orset_next(st->data, st->len, &pos, &m) == 1) {
            int id = -1;
            unsigned long long n = 0;
            char buf[32];
            size_t l = m.len < sizeof(buf) - 1 ? m.len : sizeof(buf) - 1;
            memcpy(buf, m.data, l);
            buf[l] = '\0';
            int known = sscanf(buf, "w%d-%llu", &id, &n) == 2 && n % CW_SETS == k;
            int sent = 0;
            for (size_t i = 0; known && i < nw; i++)
                sent |= w[i].id == id && n < w[i].sadds;
            if (!sent && !problems++)
                snprintf(msg, cap, "%s: member %s was never written", s->k[k].key, buf);
        }
    }
    return problems;
}

size_t cw_read_once(const char *router_url, const cs_set *s, const cwriter *w, size_t nw, char *msg,
                    size_t cap)
{
    size_t problems = 0;
    msg[0] = '\0';
    trellis_client *c;
    int rc = trellis_connect(router_url, NULL, &c);
    if (rc != TRELLIS_OK) {
        snprintf(msg, cap, "cannot connect to %s: %s", router_url, trellis_strerror(rc));
        return 1;
    }
    char member[32];
    for (size_t k = 0; k < CW_SETS; k++) {
        const cs_key *key = &s->k[k];
        trellis_value *v = NULL;
        rc = trellis_smembers(c, key->key, key->klen, &v);
        if (rc != TRELLIS_OK) {
            if (!problems++)
                snprintf(msg, cap, "%s: %s", key->key, trellis_strerror(rc));
            continue;
        }
        for (size_t i = 0; i < nw; i++)
            for (uint64_t n = k; n < w[i].sadds; n += CW_SETS) {
                if (!w[i].acked[n])
                    continue;
                int mlen =
                    snprintf(member, sizeof(member), "w%d-%llu", w[i].id, (unsigned long long)n);
                int found = 0;
                for (size_t j = 0; j < v->count && !found; j++)
                    found = v->items[j].len == (size_t)mlen &&
                            memcmp(v->items[j].data, member, (size_t)mlen) == 0;
                if (!found && !problems++)
                    snprintf(msg, cap, "%s: acknowledged member %s is missing", key->key, member);
            }
        for (size_t j = 0; j < v->count; j++) {
            int id = -1;
            unsigned long long n = 0;
            int sent = sscanf((const char *)v->items[j].data, "w%d-%llu", &id, &n) == 2 &&
                       n % CW_SETS == k;
            int known = 0;
            for (size_t i = 0; sent && i < nw; i++)
                known |= w[i].id == id && n < w[i].sadds;
            if (!known && !problems++)
                snprintf(msg, cap, "%s: member %s was never written", key->key,
                         (const char *)v->items[j].data);
        }
        trellis_value_free(v);
    }
    for (size_t k = 0; k < CW_COUNTERS; k++) {
        const cs_key *key = &s->k[CW_SETS + k];
        int64_t got = 0;
        uint64_t want = 0;
        for (size_t i = 0; i < nw; i++)
            want += w[i].total[k];
        rc = trellis_counter_get(c, key->key, key->klen, &got);
        if ((rc != TRELLIS_OK || (uint64_t)got != want) && !problems++)
            snprintf(msg, cap, "%s reads %lld (%s), want %llu", key->key, (long long)got,
                     trellis_strerror(rc), (unsigned long long)want);
    }
    trellis_close(c);
    return problems;
}
