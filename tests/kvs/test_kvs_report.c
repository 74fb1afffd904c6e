/*
 * test_kvs_report.c - a storage node's statistics reports never hold the
 * node up. Its monitor here is a listening socket that never accepts (a
 * monitor that hangs, or one already stopped and its port taken, as when
 * deploy/cluster.sh down stops the monitor first); the nodes, one of each
 * tier, report every 100 ms. They stay ACTIVE (heartbeats go on) and exit on
 * the first SIGTERM well within what down waits: a report that waited for
 * its answer on the node's thread held every turn of its loop up for a
 * second, so that a loaded disk node outlived down's five seconds and
 * needed a second signal.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

/* From SIGTERM to exit. These nodes, with nothing to hand off, take about
 * half a second (1.2 s on a loaded machine); deploy/cluster.sh down waits
 * five. With each report waiting for its answer on the node's thread (a
 * second, NODE_RPC_TIMEOUT_MS, at every turn of its loop) the same
 * departure took 4.2 s. */
#define DEPART_MAX_MS 3000

static tcluster cl;
static int hole = -1;

static void teardown(void)
{
    if (hole >= 0)
        close(hole);
    hole = -1;
    tcluster_fini(&cl);
}

TestSuite(kvs_report, .fini = teardown, .timeout = 60);

/* A listening socket on the port that never accepts: connections complete
 * in its backlog, and nothing ever answers them. -1 on failure. */
static int black_hole(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

Test(kvs_report, a_silent_monitor_holds_up_nothing)
{
    cr_assert_eq(tcluster_init(&cl, "kvs-report"), 0);
    int port = tcluster_port(&cl);
    CHECK(port > 0, "no port for the monitor");
    hole = black_hole(port);
    CHECK(hole >= 0, "cannot listen on port %d", port);
    char mon[64];
    snprintf(mon, sizeof(mon), "cluster.monitor=tcp://127.0.0.1:%d", port);
    tcluster_set(&cl, mon);
    tcluster_set(&cl, "kvs.stats_period_ms=100");
    CHECK(tcluster_start(&cl, 1, 1, 2, NULL) == 0, "the cluster did not start");
    /* Dozens of reports go unanswered meanwhile; heartbeats go on (the
     * router would mark a silent node DEAD after route.node_timeout_ms). */
    tsleep_ms(2000);
    for (int i = 0; i < cl.nnodes; i++)
        CHECK(tcluster_wait_state(&cl, &cl.nodes[i], NODE_ACTIVE, 1000) == 0, "%s no longer ACTIVE",
              cl.nodes[i].id);

    /* Both depart on one signal each, at once, as cluster.sh down signals. */
    for (int i = 0; i < cl.nnodes; i++)
        tproc_signal(cl.nodes[i].p, SIGTERM);
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < cl.nnodes; i++) {
        tnode *n = &cl.nodes[i];
        int status = -1;
        while (tproc_running(n->p) && clock_mono_ms() - t0 < 10000)
            tsleep_ms(10);
        uint64_t took = clock_mono_ms() - t0;
        CHECK(!tproc_running(n->p), "%s still runs 10 s after SIGTERM", n->id);
        status = tproc_status(n->p);
        cr_log_info("%s exited %llu ms after SIGTERM", n->id, (unsigned long long)took);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: exit status %d", n->id, status);
        CHECK(tproc_log_contains(n->p, "departed"), "%s did not depart", n->id);
        CHECK(took < DEPART_MAX_MS, "%s took %llu ms to depart", n->id, (unsigned long long)took);
    }
}
