/*
 * test_client_threads.c - one client shared by many threads, hard: single
 * operations, batches, counter increments on shared keys and forced ring
 * refetches all at once, while the cluster grows by a node (so shards
 * answer WRONG_SHARD and the ring changes under the threads' feet).
 *
 * A plain executable (its own main) so that it can also run under
 * ThreadSanitizer, which cannot run Criterion binaries (TRELLIS_TSAN=ON).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trellis/trellis.h"
#define TCHECK_PLAIN
#include "tsupport.h"

#define THREADS    8
#define MIN_ROUNDS 20

static trellis_client *cli;
static atomic_int stop;
static atomic_int increments; /* acknowledged increments of the shared counter */
static atomic_int max_seen;
static int failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void check(int ok, const char *what, int tid, int round, int st)
{
    if (ok)
        return;
    pthread_mutex_lock(&fail_lock);
    if (failed++ < 20)
        fprintf(stderr, "FAIL thread %d round %d: %s (%s)\n", tid, round, what,
                trellis_status_name(st));
    pthread_mutex_unlock(&fail_lock);
}

static void *worker(void *arg)
{
    int tid = (int)(intptr_t)arg;
    char key[64], val[64];
    trellis_batch *b = trellis_batch_new();
    check(b != NULL, "batch", tid, 0, 0);
    for (int r = 0; b && (r < MIN_ROUNDS || !atomic_load(&stop)); r++) {
        /* A batch of writes then reads of this thread's keys. */
        trellis_batch_clear(b);
        for (int i = 0; i < 20; i++) {
            snprintf(key, sizeof(key), "t%d-k%d", tid, i);
            snprintf(val, sizeof(val), "r%d-%d", r, i);
            trellis_batch_put(b, key, strlen(key), val, strlen(val));
        }
        for (int i = 0; i < 20; i++) {
            snprintf(key, sizeof(key), "t%d-k%d", tid, i);
            trellis_batch_get(b, key, strlen(key), TRELLIS_TYPE_LWW);
        }
        trellis_batch_incrby(b, "shared-counter", 14, 1);
        int st = trellis_batch_exec(cli, b);
        check(st == TRELLIS_OK, "batch exec", tid, r, st);
        if (trellis_batch_status(b, 40) == TRELLIS_OK)
            atomic_fetch_add(&increments, 1);
        for (int i = 0; i < 20 && st == TRELLIS_OK; i++) {
            snprintf(val, sizeof(val), "r%d-%d", r, i);
            const trellis_value *v = trellis_batch_value(b, 20 + (size_t)i);
            check(v && v->count == 1 && strcmp((const char *)v->items[0].data, val) == 0,
                  "read back", tid, r, trellis_batch_status(b, 20 + (size_t)i));
        }
        /* Single operations on keys every thread touches. */
        trellis_bytes m = {key, (size_t)snprintf(key, sizeof(key), "member-%d", tid)};
        st = trellis_sadd(cli, "shared-set", 10, &m, 1);
        check(st == TRELLIS_OK, "sadd", tid, r, st);
        int mv = tid * 100000 + r;
        st = trellis_max_put(cli, "shared-max", 10, mv);
        check(st == TRELLIS_OK, "max", tid, r, st);
        for (int seen = atomic_load(&max_seen); mv > seen;)
            if (atomic_compare_exchange_weak(&max_seen, &seen, mv))
                break;
        if (tid == 0 && r % 25 == 0) {
            st = trellis_refresh(cli);
            check(st == TRELLIS_OK, "refresh", tid, r, st);
        }
    }
    trellis_batch_free(b);
    return NULL;
}

int main(void)
{
    static tcluster c;
    int passed = 0;
    CHECK(tcluster_init(&c, "threads") == 0, "no directory or ports");
    tcluster_set_client(&c);
    CHECK(tcluster_start(&c, 2, 1, 2, NULL) == 0, "the cluster did not start");
    int rc = trellis_connect(c.router_url, NULL, &cli);
    CHECK(rc == TRELLIS_OK, "connect: %s", trellis_strerror(rc));
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    /* The ring changes while the threads run: they keep going until the
     * new node serves, and a little longer. */
    if (!tcluster_start_node(&c, RING_TIER_MEMORY, 2, NULL) || tcluster_wait_active(&c, 20000) != 0)
        check(0, "fourth node", -1, 0, 0);
    usleep(300 * 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    /* Writes taken by a shard just before it learned of the new node reach
     * the new owner by hand-off: give it a moment. */
    int64_t v = 0;
    long long until = tnow_ms() + 5000;
    do {
        rc = trellis_counter_get(cli, "shared-counter", 14, &v);
        if (rc == TRELLIS_OK && v == atomic_load(&increments))
            break;
        usleep(100 * 1000);
    } while (tnow_ms() < until);
    check(rc == TRELLIS_OK && v == atomic_load(&increments), "counter total", -1, 0, rc);
    if (rc == TRELLIS_OK && v != atomic_load(&increments))
        fprintf(stderr, "counter %" PRId64 ", want %d\n", v, atomic_load(&increments));
    trellis_value *set = NULL;
    rc = trellis_smembers(cli, "shared-set", 10, &set);
    check(rc == TRELLIS_OK && set->count == THREADS, "set members", -1, 0, rc);
    trellis_value_free(set);
    rc = trellis_max_get(cli, "shared-max", 10, &v);
    check(rc == TRELLIS_OK && v == atomic_load(&max_seen), "max", -1, 0, rc);

    trellis_counters k;
    trellis_get_counters(cli, &k);
    fprintf(stderr,
            "calls %" PRIu64 ", ops %" PRIu64 ", requests %" PRIu64 ", retries %" PRIu64
            ", wrong_shard %" PRIu64 ", ring fetches %" PRIu64 "\n",
            k.calls, k.ops, k.requests, k.retries, k.wrong_shard, k.ring_fetches);
    trellis_close(cli);
    if (failed)
        tcluster_dump(&c);
    failed += tcheck_end(); /* stopped cleanly, logs scanned */
    tcluster_fini(&c);
    passed = failed ? 0 : 1;
    printf("%d passed, %d failed\n", passed, failed ? 1 : 0);
    return failed ? 1 : 0;
}
