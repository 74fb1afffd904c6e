/*
 * test_client_close.c - libtrellis closes no socket on the caller's thread
 * during a call. A storage node departs; the calls that follow (a ring
 * refresh, writes) drop the client's connections to it, and those close on
 * the client's own worker thread, while only trellis_close closes sockets
 * on the caller's thread.
 *
 * nng_close is wrapped at link time (-Wl,--wrap=nng_close, so the test
 * links the static client library) to record the thread of every close.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "trellis/trellis.h"
#include "tsupport.h"

static tcluster cluster;
static trellis_client *cli;

static pthread_t caller;
static atomic_int watching;
static atomic_int on_caller, elsewhere;

int __real_nng_close(nng_socket s);
int __wrap_nng_close(nng_socket s);

int __wrap_nng_close(nng_socket s)
{
    if (atomic_load(&watching)) {
        if (pthread_equal(pthread_self(), caller))
            atomic_fetch_add(&on_caller, 1);
        else
            atomic_fetch_add(&elsewhere, 1);
    }
    return __real_nng_close(s);
}

static void stop_all(void)
{
    atomic_store(&watching, 0);
    trellis_close(cli);
    cli = NULL;
    tcluster_fini(&cluster);
}

#define K(s) (s), strlen(s)

/* 1 once the router lists node `id` LEFT, within timeout_ms. */
static int wait_left(const char *id, int timeout_ms)
{
    long long end = tnow_ms() + timeout_ms;
    while (tnow_ms() < end) {
        trellis_node *nodes;
        size_t n;
        int left = 0;
        if (trellis_nodes(cli, &nodes, &n) == TRELLIS_OK) {
            for (size_t k = 0; k < n; k++)
                if (strcmp(nodes[k].id, id) == 0 && nodes[k].state == TRELLIS_NODE_LEFT)
                    left = 1;
            trellis_free(nodes);
        }
        if (left)
            return 1;
        usleep(20000);
    }
    return 0;
}

Test(client_close, departed_node_connections_close_off_the_callers_thread, .fini = stop_all,
     .timeout = 90)
{
    cr_assert(eq(int, tcluster_init(&cluster, "connclose"), 0));
    tcluster_set_client(&cluster);
    tcluster_set(&cluster, "cluster.disk_replicas=0");
    cr_assert(eq(int, tcluster_start(&cluster, 2, 0, 2, NULL), 0), "cluster start");
    int rc = trellis_connect(cluster.router_url, NULL, &cli);
    cr_assert(eq(int, rc, TRELLIS_OK), "connect: %s", trellis_strerror(rc));
    char key[32];
    /* Connections to every shard of both nodes. */
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "before%d", i);
        cr_assert(eq(int, trellis_put(cli, K(key), "v", 1), TRELLIS_OK), "%s", key);
    }

    caller = pthread_self();
    atomic_store(&watching, 1);
    /* The second node departs, handing its keys to the first. */
    const char *m2 = cluster.nodes[1].id;
    tproc_signal(cluster.nodes[1].p, SIGTERM);
    cr_assert(wait_left(m2, 20000), "%s did not leave", m2);
    cr_assert(eq(int, trellis_refresh(cli), TRELLIS_OK));
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "after%d", i);
        cr_assert(eq(int, trellis_put(cli, K(key), "v", 1), TRELLIS_OK), "%s", key);
        snprintf(key, sizeof(key), "before%d", i);
        void *v;
        size_t n;
        cr_assert(eq(int, trellis_get(cli, K(key), &v, &n), TRELLIS_OK), "%s", key);
        trellis_free(v);
    }
    /* The connections to the departed node close, on the worker. */
    long long end = tnow_ms() + 5000;
    while (atomic_load(&elsewhere) == 0 && tnow_ms() < end)
        usleep(10000);
    cr_assert(gt(int, atomic_load(&elsewhere), 0), "the connections to %s were never closed", m2);
    cr_assert(eq(int, atomic_load(&on_caller), 0),
              "%d sockets were closed on the caller's thread during calls",
              atomic_load(&on_caller));
    cr_log_info("%d sockets closed off the caller's thread", atomic_load(&elsewhere));
}
