/*
 * test_mon_prov.c - the kubernetes and command provisioners, driven by the
 * real monitor against a real router and nodes, with a fake kubectl and
 * fake provisioning scripts that record how they were called:
 *  - kubernetes scale-out is `get` then `scale --replicas=N+1`, exactly;
 *  - kubernetes scale-in drains the pod of the highest ordinal first, and
 *    only scales to N-1 once the router has the node LEFT;
 *  - a failing kubectl fails the decision, and the monitor carries on;
 *  - the command provisioner runs `add TIER NODE` with a fresh id, and
 *    `remove TIER NODE` after the drain; a non-zero exit fails the decision.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/clock.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(mon_prov, .fini = teardown, .timeout = 90);

static void setup(const char *name)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "monitor.period_ms=300");
    tcluster_set(&cl, "monitor.hot_keys=false");
    tcluster_set(&cl, "monitor.tiering=false");
    tcluster_set(&cl, "monitor.latency_slo_us=0");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
}

/* Writes an executable script `name` into the cluster's directory. */
static void script(const char *name, const char *body, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", cl.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    fclose(f);
    chmod(path, 0755);
}

/* The fake kubectl: records its arguments (one call per line) in CALLS,
 * answers `get` from REPLICAS, stores `scale`'s count there, and with
 * fail_scale set fails every scale. With stamp set, each scale also
 * records "at <wall-clock ms>". */
static void fake_kubectl(char *path, size_t cap, const char *replicas, int fail_scale, int stamp)
{
    char dir[4200], body[8192];
    snprintf(dir, sizeof(dir), "%s", cl.dir);
    snprintf(body, sizeof(body),
             "echo \"$*\" >> %s/calls\n"
             "case \"$3\" in\n"
             "get) cat %s/replicas ;;\n"
             "scale)\n"
             "  if [ %d = 1 ]; then echo \"at $(date +%%s%%3N)\" >> %s/calls; fi\n"
             "  if [ %d = 1 ]; then echo 'error: forbidden' >&2; exit 1; fi\n"
             "  echo \"${5#--replicas=}\" > %s/replicas ;;\n"
             "*) exit 2 ;;\n"
             "esac\n",
             dir, dir, stamp, dir, fail_scale, dir);
    script("kubectl", body, path, cap);
    char rp[4300];
    snprintf(rp, sizeof(rp), "%s/replicas", dir);
    FILE *f = fopen(rp, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", replicas);
    fclose(f);
}

/* Wall-clock ms of the first line of a log containing needle (the line
 * starts with an ISO-8601 time), 0 if none. */
static uint64_t log_time(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[2048];
    uint64_t at = 0;
    while (!at && fgets(line, sizeof(line), f)) {
        if (!strstr(line, needle))
            continue;
        char fake[128];
        snprintf(fake, sizeof(fake), "{\"time\":\"%.24s\"}", line);
        at = mtest_decision_wall_ms(fake);
    }
    fclose(f);
    return at;
}

/* The calls file, one line each, into lines[]; returns how many. */
static int calls(char lines[][256], int max)
{
    char p[4300];
    snprintf(p, sizeof(p), "%s/calls", cl.dir);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    int n = 0;
    while (n < max && fgets(lines[n], 256, f)) {
        lines[n][strcspn(lines[n], "\n")] = '\0';
        n++;
    }
    fclose(f);
    return n;
}

static int wait_calls(int want, int timeout_ms, char lines[][256], int max)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    int n;
    while ((n = calls(lines, max)) < want && clock_mono_ms() < end)
        tsleep_ms(50);
    return n;
}

static tnode *named_node(const char *id)
{
    const char *extra[] = {"--id", id, NULL};
    tnode *n = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, extra);
    CHECK(n, "node %s did not start", id);
    uint64_t end = clock_mono_ms() + 15000;
    while (tkv_node_state(cl.router_url, id, NULL) != NODE_ACTIVE && clock_mono_ms() < end)
        tsleep_ms(50);
    CHECK(tkv_node_state(cl.router_url, id, NULL) == NODE_ACTIVE, "%s not ACTIVE", id);
    return n;
}

Test(mon_prov, kubernetes_scale_out)
{
    setup("mon-k8s-out");
    char kubectl[4300], set[4400];
    fake_kubectl(kubectl, sizeof(kubectl), "2", 0, 0);
    snprintf(set, sizeof(set), "monitor.kubectl=%s", kubectl);
    named_node("sts-mem-0");
    named_node("sts-mem-1");
    /* Three nodes at least: the monitor must add one. */
    const char *extra[] = {"--provisioner",
                           "kubernetes",
                           "--set",
                           set,
                           "--set",
                           "monitor.namespace=ns1",
                           "--set",
                           "monitor.statefulset_memory=sts-mem",
                           "--set",
                           "monitor.min_memory_nodes=3",
                           "--set",
                           "monitor.grace_ms=60000",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
    char line[MTEST_LINE_MAX], result[160] = "", node[64] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "add", 0, 20000, line, sizeof(line)),
          "no node added");
    cr_log_info("%s", line);
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(result, "ok") == 0, "add: %s", line);
    CHECK(strcmp(node, "sts-mem-2") == 0, "the new pod is %s", node);
    char l[8][256];
    int n = calls(l, 8);
    CHECK(n == 2, "%d kubectl calls", n);
    CHECK(strcmp(l[0], "-n ns1 get statefulset sts-mem -o jsonpath={.spec.replicas}") == 0,
          "first call: %s", l[0]);
    CHECK(strcmp(l[1], "-n ns1 scale statefulset/sts-mem --replicas=3") == 0, "second call: %s",
          l[1]);
}

Test(mon_prov, kubernetes_drains_then_scales_in)
{
    setup("mon-k8s-in");
    named_node("sts-mem-0");
    named_node("sts-mem-1");
    char kubectl[4300], set[4400];
    fake_kubectl(kubectl, sizeof(kubectl), "2", 0, 1);
    snprintf(set, sizeof(set), "monitor.kubectl=%s", kubectl);
    /* An idle tier above its minimum: one node goes. */
    const char *extra[] = {"--provisioner",
                           "kubernetes",
                           "--set",
                           set,
                           "--set",
                           "monitor.namespace=ns1",
                           "--set",
                           "monitor.statefulset_memory=sts-mem",
                           "--set",
                           "monitor.min_memory_nodes=1",
                           "--set",
                           "monitor.busy_high=0.99",
                           "--set",
                           "monitor.busy_low=0.95",
                           "--set",
                           "monitor.grace_ms=1500",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
    char line[MTEST_LINE_MAX], result[160] = "", node[64] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "remove", 0, 30000, line, sizeof(line)),
          "no node removed");
    cr_log_info("%s", line);
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(result, "ok") == 0, "remove: %s", line);
    CHECK(strcmp(node, "sts-mem-1") == 0, "drained %s, not the highest ordinal", node);
    CHECK(tkv_node_state(cl.router_url, "sts-mem-1", NULL) == NODE_LEFT, "sts-mem-1 not LEFT");
    CHECK(tkv_node_state(cl.router_url, "sts-mem-0", NULL) == NODE_ACTIVE, "sts-mem-0 changed");
    char l[8][256];
    int n = calls(l, 8);
    CHECK(n == 3, "%d lines of kubectl calls", n);
    CHECK(strcmp(l[0], "-n ns1 get statefulset sts-mem -o jsonpath={.spec.replicas}") == 0,
          "first call: %s", l[0]);
    CHECK(strcmp(l[1], "-n ns1 scale statefulset/sts-mem --replicas=1") == 0, "second call: %s",
          l[1]);
    /* The StatefulSet shrank only after the router had the node LEFT. */
    uint64_t left = log_time(cl.routers[0].log, "node sts-mem-1: LEFT");
    uint64_t scaled = strtoull(l[2] + 3, NULL, 10);
    cr_log_info("LEFT at %llu, scaled at %llu", (unsigned long long)left,
                (unsigned long long)scaled);
    CHECK(left && scaled >= left, "scaled down before the drain was complete");
}

Test(mon_prov, kubernetes_failure_is_reported)
{
    setup("mon-k8s-fail");
    char kubectl[4300], set[4400];
    fake_kubectl(kubectl, sizeof(kubectl), "0", 1, 0);
    snprintf(set, sizeof(set), "monitor.kubectl=%s", kubectl);
    const char *extra[] = {"--provisioner",
                           "kubernetes",
                           "--set",
                           set,
                           "--set",
                           "monitor.min_memory_nodes=1",
                           "--set",
                           "monitor.grace_ms=60000",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
    char line[MTEST_LINE_MAX], result[256] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "add", 0, 20000, line, sizeof(line)),
          "no decision");
    cr_log_info("%s", line);
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strstr(result, "failed") && strstr(result, "exited with status 1"), "result: %s", result);
    CHECK(tproc_log_contains(cl.monitor.p, "error: forbidden"),
          "kubectl's message is not in the log");
    tsleep_ms(1000);
    CHECK(tproc_running(cl.monitor.p), "the monitor exited");
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK, "the monitor does not answer");
    double failed = thttp_metric(
        cl.monitor_metrics_port,
        "trellis_monitor_decisions_total{policy=\"elasticity\",action=\"add\",result=\"failed\"}");
    CHECK(failed == 1, "failed decisions on /metrics: %g", failed);
}

Test(mon_prov, command_add_and_remove)
{
    setup("mon-cmd");
    tnode *a = named_node("n-a");
    (void)a;
    named_node("n-b");
    char cmd[4300], set[4400], body[4600];
    /* add succeeds; remove fails with status 4 */
    snprintf(body, sizeof(body),
             "echo \"$*\" >> %s/calls\n"
             "[ \"$1\" = add ] && exit 0\n"
             "exit 4\n",
             cl.dir);
    script("provision", body, cmd, sizeof(cmd));
    snprintf(set, sizeof(set), "monitor.command=%s", cmd);
    /* First the tier is below its minimum of 3: add. */
    const char *extra[] = {"--provisioner",
                           "command",
                           "--set",
                           set,
                           "--set",
                           "monitor.min_memory_nodes=3",
                           "--set",
                           "monitor.grace_ms=60000",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
    char line[MTEST_LINE_MAX], result[160] = "", node[64] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "add", 0, 20000, line, sizeof(line)),
          "no node added");
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(result, "ok") == 0, "add: %s", line);
    char l[8][256];
    CHECK(wait_calls(1, 1000, l, 8) == 1, "calls");
    char want[256];
    snprintf(want, sizeof(want), "add memory %s", node);
    CHECK(strcmp(l[0], want) == 0, "call: '%s', expected '%s'", l[0], want);
    CHECK(node[0] == 'm' && strlen(node) > 5, "not a fresh id: %s", node);
    tcluster_stop_monitor(&cl, 20000);

    /* Then an idle tier above its minimum: drain n-b, run `remove`. */
    const char *extra2[] = {"--provisioner",
                            "command",
                            "--set",
                            set,
                            "--set",
                            "monitor.min_memory_nodes=1",
                            "--set",
                            "monitor.busy_high=0.99",
                            "--set",
                            "monitor.busy_low=0.95",
                            "--set",
                            "monitor.grace_ms=1500",
                            NULL};
    CHECK(tcluster_start_monitor(&cl, extra2) == 0, "monitor did not restart");
    CHECK(mtest_wait_decision(&cl, "elasticity", "remove", 0, 30000, line, sizeof(line)),
          "no node removed");
    cr_log_info("%s", line);
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(node, "n-b") == 0, "removed %s", node);
    CHECK(strstr(result, "failed") && strstr(result, "exited with status 4"), "result: %s", result);
    CHECK(tkv_node_state(cl.router_url, "n-b", NULL) == NODE_LEFT, "n-b was not drained");
    CHECK(wait_calls(2, 1000, l, 8) == 2, "calls");
    CHECK(strcmp(l[1], "remove memory n-b") == 0, "call: %s", l[1]);
    CHECK(tproc_running(cl.monitor.p), "the monitor exited");
}
