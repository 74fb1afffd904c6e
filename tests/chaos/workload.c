/*
 * workload.c - the chaos test's clients: Jepsen's set and counter
 * workloads over libtrellis with ack=all, each worker a client of its own
 * (so a writer id of its own), every operation recorded with its invoke
 * and completion times and its outcome.
 *
 * Set workers add unique elements "w<worker>-<n>" (SADD, ORSET keys);
 * worker w's element n goes to key (n / CH_SET_PER_KEY) * CH_SET_WIDE +
 * n % CH_SET_WIDE, so sets stay bounded however long the run. Counter
 * workers increment one of CH_COUNTER_KEYS keys by 1 to 3; the client
 * sends its cumulative totals, so a failed increment is carried by the
 * next one of the key: the writer's entry must end between the total at
 * its last acknowledged increment and the total of its last attempt.
 *
 * Outcomes: CH_OK for an acknowledged write, CH_FAIL for a refusal that
 * guarantees nothing was written (a request the cluster could not have
 * applied: INVALID, LATTICE_MISMATCH, TOO_LARGE, MALFORMED), CH_UNKNOWN
 * otherwise (a timeout, an unreachable replica: it may have been applied
 * on some replicas, and replication may spread it later).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "trellis/trellis.h"

#define CH_TIMEOUT_MS 1500

void ch_set_key_name(uint32_t k, char *buf, size_t cap)
{
    snprintf(buf, cap, "chaos/set/%u", k);
}

void ch_counter_key_name(uint32_t k, char *buf, size_t cap)
{
    snprintf(buf, cap, "chaos/cnt/%u", k);
}

void ch_element_name(int worker, uint32_t value, char *buf, size_t cap)
{
    snprintf(buf, cap, "w%d-%u", worker, value);
}

static uint32_t set_key_of(uint32_t n)
{
    return (n / CH_SET_PER_KEY) * CH_SET_WIDE + n % CH_SET_WIDE;
}

uint32_t ch_set_keys(const ch_workload *wl)
{
    uint32_t most = 0;
    for (int i = 0; i < wl->nw; i++) {
        const ch_worker *w = &wl->w[i];
        if (w->is_counter || w->n == 0)
            continue;
        uint32_t k = set_key_of((uint32_t)(w->n - 1)) / CH_SET_WIDE * CH_SET_WIDE + CH_SET_WIDE;
        if (k > most)
            most = k;
    }
    return most;
}

static int outcome_of(int st)
{
    switch (st) {
    case TRELLIS_OK:
        return CH_OK;
    case TRELLIS_INVALID:
    case TRELLIS_LATTICE_MISMATCH:
    case TRELLIS_TOO_LARGE:
    case TRELLIS_MALFORMED:
        return CH_FAIL;
    default:
        return CH_UNKNOWN;
    }
}

static ch_op *next_op(ch_worker *w)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        ch_op *o = realloc(w->ops, cap * sizeof(*o));
        if (!o)
            return NULL;
        w->ops = o;
        w->cap = cap;
    }
    ch_op *op = &w->ops[w->n];
    memset(op, 0, sizeof(*op));
    return op;
}

static void finish(ch_worker *w, ch_op *op, int st)
{
    op->complete_ms = (uint32_t)ch_now_ms();
    op->status = (uint8_t)st;
    op->outcome = (uint8_t)outcome_of(st);
    if (op->outcome == CH_OK)
        w->ok++;
    else if (op->outcome == CH_UNKNOWN)
        w->unknown++;
    else
        w->fail++;
    if (st != TRELLIS_OK && !w->first_error[0])
        snprintf(w->first_error, sizeof(w->first_error), "%s", trellis_status_name(st));
    w->n++; /* published only when complete: the checker reads after the join */
}

static void *worker_main(void *arg)
{
    ch_worker *w = arg;
    trellis_client *c = w->client;
    trand rng;
    trand_seed(&rng, w->wl->seed ^ ((uint64_t)w->id * UINT64_C(0x9e3779b97f4a7c15)), NULL);
    char key[64], elem[64];
    while (!atomic_load(&w->wl->stop)) {
        ch_op *op = next_op(w);
        if (!op)
            break;
        op->invoke_ms = (uint32_t)ch_now_ms();
        int st;
        if (!w->is_counter) {
            uint32_t n = (uint32_t)w->n;
            op->key = set_key_of(n);
            op->value = n;
            ch_set_key_name(op->key, key, sizeof(key));
            ch_element_name(w->id, n, elem, sizeof(elem));
            trellis_bytes m = {elem, strlen(elem)};
            st = trellis_sadd(c, key, strlen(key), &m, 1);
        } else {
            uint32_t k = (uint32_t)(trand_u64(&rng) % CH_COUNTER_KEYS);
            uint32_t d = (uint32_t)trand_range(&rng, 1, 3);
            w->sent_total[k] += d;
            op->key = k;
            op->value = d;
            op->total = w->sent_total[k];
            ch_counter_key_name(k, key, sizeof(key));
            st = trellis_incrby(c, key, strlen(key), d, NULL);
            if (st == TRELLIS_OK)
                w->acked_total[k] = w->sent_total[k];
        }
        finish(w, op, st);
        if (w->wl->pace_ms)
            tsleep_ms((int)(trand_range(&rng, 0, (uint64_t)w->wl->pace_ms * 2)));
    }
    return NULL;
}

int ch_workload_start(ch_workload *wl, const char *router_urls, uint64_t seed)
{
    memset(wl, 0, sizeof(*wl));
    wl->seed = seed;
    wl->pace_ms = 8;
    wl->nw = CH_SET_THREADS + CH_COUNTER_THREADS;
    for (int i = 0; i < wl->nw; i++) {
        ch_worker *w = &wl->w[i];
        w->id = i;
        w->is_counter = i >= CH_SET_THREADS;
        w->wl = wl;
        trellis_options o;
        trellis_options_init(&o);
        o.ack = TRELLIS_ACK_ALL;
        o.timeout_ms = CH_TIMEOUT_MS;
        trellis_client *c;
        int rc = trellis_connect(router_urls, &o, &c);
        if (rc != TRELLIS_OK) {
            ch_log("worker %d cannot connect to %s: %s", i, router_urls, trellis_strerror(rc));
            return -1;
        }
        w->client = c;
        w->writer = trellis_writer_id(c);
    }
    for (int i = 0; i < wl->nw; i++)
        if (pthread_create(&wl->w[i].th, NULL, worker_main, &wl->w[i]) != 0) {
            atomic_store(&wl->stop, 1);
            for (int j = 0; j < i; j++)
                pthread_join(wl->w[j].th, NULL);
            return -1;
        }
    return 0;
}

void ch_workload_stop(ch_workload *wl)
{
    if (atomic_exchange(&wl->stop, 1))
        return;
    for (int i = 0; i < wl->nw; i++)
        if (wl->w[i].client)
            pthread_join(wl->w[i].th, NULL);
}

void ch_workload_free(ch_workload *wl)
{
    for (int i = 0; i < wl->nw; i++) {
        trellis_close(wl->w[i].client);
        wl->w[i].client = NULL;
        free(wl->w[i].ops);
        wl->w[i].ops = NULL;
    }
}

int ch_history_write(const ch_workload *wl, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "# worker writer kind key value total invoke_ms complete_ms outcome status\n");
    static const char *const outcomes[] = {"ok", "unknown", "fail"};
    for (int i = 0; i < wl->nw; i++) {
        const ch_worker *w = &wl->w[i];
        char key[64];
        for (size_t j = 0; j < w->n; j++) {
            const ch_op *op = &w->ops[j];
            if (w->is_counter)
                ch_counter_key_name(op->key, key, sizeof(key));
            else
                ch_set_key_name(op->key, key, sizeof(key));
            fprintf(f, "%d %016" PRIx64 " %s %s %u %" PRIu64 " %u %u %s %s\n", w->id, w->writer,
                    w->is_counter ? "incr" : "sadd", key, op->value, op->total, op->invoke_ms,
                    op->complete_ms, outcomes[op->outcome], trellis_status_name(op->status));
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}
