/*
 * test_daemon_exit.c - the exit bound of the daemons (daemon_bound_exit in
 * server/daemon.c): after SIGTERM, a cleanup that outlives
 * process.exit_grace_ms ends the process with the status its run returned
 * and a log line saying so, for trellis-route, trellis-kvs and
 * trellis-monitor alike. The testing knob process.fault_exit_stall_ms makes
 * each cleanup wait a minute first; without the bound each would then take
 * a minute to exit. Without the stall the same daemons exit by themselves,
 * with status 0 and no such line.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "placement/ring.h"
#include "tsupport.h"

static tcluster cl;

/* process.exit_grace_ms=300 and process.fault_exit_stall_ms=60000 */
#define EXIT_LINE    "cleanup did not finish within 300 ms; exiting with status 0"
#define STOP_WAIT_MS 10000 /* SIGTERM to exit, far below the stall */

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(daemon_exit, .fini = teardown, .timeout = 120);

/* A router, a memory node and a monitor, their cleanup bounded to 300 ms,
 * and stalled for a minute if `stall`. */
static void start_all(const char *name, int stall, tnode **node)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "process.exit_grace_ms=300");
    if (stall)
        tcluster_set(&cl, "process.fault_exit_stall_ms=60000");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    *node = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
    CHECK(*node, "node did not start");
    CHECK(tcluster_wait_state(&cl, *node, NODE_ACTIVE, 15000) == 0, "node not ACTIVE");
    CHECK(tcluster_start_monitor(&cl, NULL) == 0, "monitor did not start");
}

/* SIGTERM, and the exit status of a process that must exit by itself
 * within STOP_WAIT_MS. */
static int stop(const char *what, tproc *p, const char *log)
{
    int status = -1;
    int rc = tproc_stop(p, STOP_WAIT_MS, &status);
    CHECK(rc == 0, "%s did not exit within %d ms of SIGTERM (log %s)", what, STOP_WAIT_MS, log);
    CHECK(WIFEXITED(status), "%s died of signal %d", what,
          WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    return WEXITSTATUS(status);
}

/* Stops the monitor (first, or it would replace what stops), the node (it
 * departs through the router) and the router: each must exit by itself
 * with status 0, having logged EXIT_LINE if its cleanup was `stalled`, and
 * no word of its exit bound otherwise. */
static void stop_in_turn(tnode *node, int stalled)
{
    const char *bound = stalled ? EXIT_LINE : "cleanup did not finish";
    int st = stop("trellis-monitor", cl.monitor.p, cl.monitor.log);
    CHECK(st == 0, "trellis-monitor exited with status %d", st);
    CHECK(tproc_log_contains(cl.monitor.p, bound) == stalled, "trellis-monitor: '%s' %s in its log",
          bound, stalled ? "missing" : "found");

    st = stop("trellis-kvs", node->p, tproc_log(node->p));
    CHECK(st == 0, "trellis-kvs exited with status %d", st);
    CHECK(tproc_log_contains(node->p, "departed"), "trellis-kvs stopped without departing");
    CHECK(tproc_log_contains(node->p, bound) == stalled, "trellis-kvs: '%s' %s in its log", bound,
          stalled ? "missing" : "found");

    st = stop("trellis-route", cl.routers[0].p, tproc_log(cl.routers[0].p));
    CHECK(st == 0, "trellis-route exited with status %d", st);
    CHECK(tproc_log_contains(cl.routers[0].p, bound) == stalled,
          "trellis-route: '%s' %s in its log", bound, stalled ? "missing" : "found");
}

Test(daemon_exit, a_stalled_cleanup_ends_with_the_run_status)
{
    tnode *node;
    start_all("exit-stall", 1, &node);
    stop_in_turn(node, 1);
}

Test(daemon_exit, a_prompt_cleanup_exits_by_itself)
{
    tnode *node;
    start_all("exit-prompt", 0, &node);
    stop_in_turn(node, 0);
}
