/*
 * test_async.c - trellis_batch_exec_async, the engine trellis-bench drives:
 * chains of executions that start their successors from their callbacks,
 * beside synchronous callers on the same client, while the cluster grows
 * by a node (WRONG_SHARD, ring fetches and back-offs run on the client's
 * background threads); every result checked. Then the deadline: with a
 * storage node stopped (SIGSTOP), executions bound for it complete by
 * their deadline. Then the edges: bad arguments, an empty batch, the
 * callback never on the caller's stack, trellis_close after the last
 * callback.
 *
 * A plain executable (its own main), so that it also runs under
 * ThreadSanitizer (TRELLIS_TSAN=ON).
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trellis/trellis.h"
#define TCHECK_PLAIN
#include "tsupport.h"

#define CHAINS       8
#define MIN_ROUNDS   30
#define SYNC_THREADS 2

static trellis_client *cli;
static atomic_int stop;
static atomic_int failed;
static atomic_int increments; /* acknowledged increments of the shared counter */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void check(int ok, const char *what, int who, int round, int st)
{
    if (ok)
        return;
    pthread_mutex_lock(&fail_lock);
    if (atomic_fetch_add(&failed, 1) < 20)
        fprintf(stderr, "FAIL %d round %d: %s (%s)\n", who, round, what, trellis_status_name(st));
    pthread_mutex_unlock(&fail_lock);
}

/* ---- chains of asynchronous executions ------------------------------------------------- */

typedef struct chain {
    int id;
    int round;
    trellis_batch *b;
    atomic_int done;
} chain;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

/* A round: 20 writes of the chain's keys, 20 reads of them after the
 * writes (same batch: they must see the writes), one shared increment. */
static void fill(chain *ch)
{
    char key[64], val[64];
    trellis_batch_clear(ch->b);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "a%d-k%d", ch->id, i);
        snprintf(val, sizeof(val), "r%d-%d", ch->round, i);
        trellis_batch_put(ch->b, key, strlen(key), val, strlen(val));
    }
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "a%d-k%d", ch->id, i);
        trellis_batch_get(ch->b, key, strlen(key), TRELLIS_TYPE_LWW);
    }
    trellis_batch_incrby(ch->b, "async-counter", 13, 1);
}

static void finish(chain *ch)
{
    pthread_mutex_lock(&done_lock);
    atomic_store(&ch->done, 1);
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&done_lock);
}

static void chain_cb(trellis_batch *b, int status, void *arg)
{
    chain *ch = arg;
    char val[64];
    check(status == TRELLIS_OK, "async batch", ch->id, ch->round, status);
    if (trellis_batch_status(b, 40) == TRELLIS_OK)
        atomic_fetch_add(&increments, 1);
    for (int i = 0; i < 20 && status == TRELLIS_OK; i++) {
        snprintf(val, sizeof(val), "r%d-%d", ch->round, i);
        const trellis_value *v = trellis_batch_value(b, 20 + (size_t)i);
        check(v && v->count == 1 && strcmp((const char *)v->items[0].data, val) == 0,
              "async read back", ch->id, ch->round, trellis_batch_status(b, 20 + (size_t)i));
    }
    ch->round++;
    if (ch->round >= MIN_ROUNDS && atomic_load(&stop)) {
        finish(ch);
        return;
    }
    fill(ch);
    int rc = trellis_batch_exec_async(cli, ch->b, chain_cb, ch);
    check(rc == TRELLIS_OK, "exec_async from a callback", ch->id, ch->round, rc);
    if (rc != TRELLIS_OK)
        finish(ch);
}

/* Synchronous callers on the same client meanwhile. */
static void *sync_main(void *arg)
{
    int tid = (int)(intptr_t)arg;
    char key[64], val[64];
    for (int r = 0; r < MIN_ROUNDS || !atomic_load(&stop); r++) {
        snprintf(key, sizeof(key), "s%d-k%d", tid, r % 10);
        snprintf(val, sizeof(val), "v%d", r);
        int st = trellis_put(cli, key, strlen(key), val, strlen(val));
        check(st == TRELLIS_OK, "sync put", 100 + tid, r, st);
        void *got = NULL;
        size_t len = 0;
        st = trellis_get(cli, key, strlen(key), &got, &len);
        check(st == TRELLIS_OK && got && len == strlen(val) && memcmp(got, val, len) == 0,
              "sync read back", 100 + tid, r, st);
        trellis_free(got);
    }
    return NULL;
}

static int wait_chains(chain *chs, int n, int timeout_ms)
{
    long long until = tnow_ms() + timeout_ms;
    pthread_mutex_lock(&done_lock);
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= atomic_load(&chs[i].done);
        if (all || tnow_ms() >= until)
            break;
        pthread_mutex_unlock(&done_lock);
        usleep(10 * 1000);
        pthread_mutex_lock(&done_lock);
    }
    int all = 1;
    for (int i = 0; i < n; i++)
        all &= atomic_load(&chs[i].done);
    pthread_mutex_unlock(&done_lock);
    return all ? 0 : -1;
}

static void test_chains(tcluster *c)
{
    chain chs[CHAINS];
    for (int i = 0; i < CHAINS; i++) {
        chs[i].id = i;
        chs[i].round = 0;
        atomic_init(&chs[i].done, 0);
        chs[i].b = trellis_batch_new();
        fill(&chs[i]);
        int rc = trellis_batch_exec_async(cli, chs[i].b, chain_cb, &chs[i]);
        check(rc == TRELLIS_OK, "exec_async", i, 0, rc);
        if (rc != TRELLIS_OK)
            atomic_store(&chs[i].done, 1);
    }
    pthread_t th[SYNC_THREADS];
    for (int i = 0; i < SYNC_THREADS; i++)
        pthread_create(&th[i], NULL, sync_main, (void *)(intptr_t)i);
    /* The ring changes under the executions. */
    if (!tcluster_start_node(c, RING_TIER_MEMORY, 2, NULL) || tcluster_wait_active(c, 20000) != 0)
        check(0, "fourth node", -1, 0, 0);
    usleep(300 * 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i < SYNC_THREADS; i++)
        pthread_join(th[i], NULL);
    check(wait_chains(chs, CHAINS, 30000) == 0, "chains end", -1, 0, 0);

    /* Increments taken by a shard just before it learned of the new node
     * reach the new owner by hand-off: give it a moment. */
    int64_t v = 0;
    int rc;
    long long until = tnow_ms() + 5000;
    do {
        rc = trellis_counter_get(cli, "async-counter", 13, &v);
        if (rc == TRELLIS_OK && v == atomic_load(&increments))
            break;
        usleep(100 * 1000);
    } while (tnow_ms() < until);
    check(rc == TRELLIS_OK && v == atomic_load(&increments), "counter total", -1, 0, rc);
    if (rc == TRELLIS_OK && v != atomic_load(&increments))
        fprintf(stderr, "counter %" PRId64 ", want %d\n", v, atomic_load(&increments));
    int rounds = 0;
    for (int i = 0; i < CHAINS; i++) {
        rounds += chs[i].round;
        trellis_batch_free(chs[i].b);
    }
    fprintf(stderr, "chains: %d rounds, %d increments\n", rounds, atomic_load(&increments));
}

/* ---- one execution at a time ---------------------------------------------------------------- */

typedef struct one {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    pthread_t thread;
    long long at_ms;
} one;

static void one_cb(trellis_batch *b, int status, void *arg)
{
    one *o = arg;
    (void)b;
    pthread_mutex_lock(&o->mu);
    o->status = status;
    o->thread = pthread_self();
    o->at_ms = tnow_ms();
    o->done = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void one_init(one *o)
{
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->done = 0;
    o->status = -1;
}

static int one_wait(one *o, int timeout_ms)
{
    long long until = tnow_ms() + timeout_ms;
    pthread_mutex_lock(&o->mu);
    while (!o->done && tnow_ms() < until) {
        pthread_mutex_unlock(&o->mu);
        usleep(2000);
        pthread_mutex_lock(&o->mu);
    }
    int done = o->done;
    pthread_mutex_unlock(&o->mu);
    return done ? 0 : -1;
}

static void one_fini(one *o)
{
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
}

static void test_edges(void)
{
    trellis_batch *b = trellis_batch_new();
    check(trellis_batch_exec_async(NULL, b, one_cb, NULL) == TRELLIS_INVALID, "NULL client", -1, 0,
          0);
    check(trellis_batch_exec_async(cli, NULL, one_cb, NULL) == TRELLIS_INVALID, "NULL batch", -1, 0,
          0);
    check(trellis_batch_exec_async(cli, b, NULL, NULL) == TRELLIS_INVALID, "NULL callback", -1, 0,
          0);
    /* An empty batch completes, on another thread than the caller's. */
    one o;
    one_init(&o);
    int rc = trellis_batch_exec_async(cli, b, one_cb, &o);
    check(rc == TRELLIS_OK, "empty batch", -1, 0, rc);
    check(one_wait(&o, 5000) == 0, "empty batch completes", -1, 0, 0);
    check(o.status == TRELLIS_OK, "empty batch status", -1, 0, o.status);
    check(!pthread_equal(o.thread, pthread_self()), "callback off the caller's thread", -1, 0, 0);
    one_fini(&o);
    /* A missing key: NOT_FOUND is no failure. */
    trellis_batch_get(b, "no such key", 11, TRELLIS_TYPE_NONE);
    one_init(&o);
    rc = trellis_batch_exec_async(cli, b, one_cb, &o);
    check(rc == TRELLIS_OK && one_wait(&o, 5000) == 0, "missing key", -1, 0, rc);
    check(o.status == TRELLIS_OK && trellis_batch_status(b, 0) == TRELLIS_NOT_FOUND,
          "missing key status", -1, 0, trellis_batch_status(b, 0));
    one_fini(&o);
    trellis_batch_free(b);
}

/* With node i stopped, executions bound for it end by their deadline. */
static void test_deadline(tcluster *c, const char *url)
{
    trellis_options opts;
    trellis_options_init(&opts);
    opts.timeout_ms = 600;
    trellis_client *short_cli;
    int rc = trellis_connect(url, &opts, &short_cli);
    check(rc == TRELLIS_OK, "connect (short deadline)", -1, 0, rc);
    if (rc != TRELLIS_OK)
        return;
    enum { N = 16 };
    trellis_batch *bs[N];
    one os[N];
    for (int i = 0; i < N; i++) {
        bs[i] = trellis_batch_new();
        char key[32];
        for (int k = 0; k < 8; k++) {
            snprintf(key, sizeof(key), "dl-%d-%d", i, k);
            trellis_batch_put(bs[i], key, strlen(key), "x", 1);
        }
        /* Reads stay in the memory tier (one replica): those of the
         * stopped node's keys can only time out. */
        for (int k = 0; k < 8; k++) {
            snprintf(key, sizeof(key), "dl-%d-%d", i, k);
            trellis_batch_get(bs[i], key, strlen(key), TRELLIS_TYPE_NONE);
        }
        one_init(&os[i]);
    }
    tproc_signal(c->nodes[0].p, SIGSTOP); /* a memory node: most batches need it */
    long long t0 = tnow_ms();
    for (int i = 0; i < N; i++) {
        rc = trellis_batch_exec_async(short_cli, bs[i], one_cb, &os[i]);
        check(rc == TRELLIS_OK, "exec_async (node stopped)", i, 0, rc);
    }
    int late = 0, failed_batches = 0;
    for (int i = 0; i < N; i++) {
        check(one_wait(&os[i], 5000) == 0, "completes with a node stopped", i, 0, 0);
        if (os[i].at_ms - t0 > opts.timeout_ms + 400)
            late++;
        if (os[i].status != TRELLIS_OK)
            failed_batches++;
    }
    tproc_signal(c->nodes[0].p, SIGCONT);
    check(late == 0, "callbacks by the deadline", late, 0, 0);
    /* ack=one writes move on to another replica; what cannot is TIMEOUT or
     * UNAVAILABLE, never a hang. */
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < trellis_batch_count(bs[i]); k++) {
            int st = trellis_batch_status(bs[i], k);
            check(st == TRELLIS_OK || st == TRELLIS_NOT_FOUND || st == TRELLIS_TIMEOUT ||
                      st == TRELLIS_UNAVAILABLE,
                  "status with a node stopped", i, (int)k, st);
        }
        one_fini(&os[i]);
        trellis_batch_free(bs[i]);
    }
    check(failed_batches > 0, "reads of a stopped node fail", -1, 0, 0);
    fprintf(stderr, "deadline: %d of %d batches failed, none late\n", failed_batches, N);
    /* The node runs again: let the client's connections to it finish
     * their handshake before it closes them. nng 1.5 loses the memory of a
     * socket closed while a connection is half set up (LeakSanitizer
     * reports it at exit); that is nng's, not the deadline's. */
    int up = 0;
    for (int tries = 0; tries < 50 && !up; tries++) {
        trellis_batch *b = trellis_batch_new();
        for (int k = 0; k < 32; k++) {
            char key[32];
            snprintf(key, sizeof(key), "dl-after-%d", k);
            trellis_batch_get(b, key, strlen(key), TRELLIS_TYPE_NONE);
        }
        up = trellis_batch_exec(short_cli, b) == TRELLIS_OK;
        trellis_batch_free(b);
        if (!up)
            usleep(20000);
    }
    check(up, "the stopped node serves again", -1, 0, 0);
    trellis_close(short_cli);
}

int main(void)
{
    static tcluster c;
    CHECK(tcluster_init(&c, "async") == 0, "no directory or ports");
    tcluster_set_client(&c);
    CHECK(tcluster_start(&c, 2, 1, 2, NULL) == 0, "the cluster did not start");
    int rc = trellis_connect(c.router_url, NULL, &cli);
    CHECK(rc == TRELLIS_OK, "connect: %s", trellis_strerror(rc));
    test_edges();
    test_chains(&c);
    test_deadline(&c, c.router_url);

    trellis_counters k;
    trellis_get_counters(cli, &k);
    fprintf(stderr,
            "calls %" PRIu64 ", ops %" PRIu64 ", requests %" PRIu64 ", retries %" PRIu64
            ", wrong_shard %" PRIu64 ", ring fetches %" PRIu64 "\n",
            k.calls, k.ops, k.requests, k.retries, k.wrong_shard, k.ring_fetches);
    trellis_close(cli);
    if (atomic_load(&failed))
        tcluster_dump(&c);
    atomic_fetch_add(&failed, tcheck_end()); /* stopped cleanly, logs scanned */
    tcluster_fini(&c);
    int nfailed = atomic_load(&failed);
    printf("%d passed, %d failed\n", nfailed ? 0 : 1, nfailed ? 1 : 0);
    return nfailed ? 1 : 0;
}
