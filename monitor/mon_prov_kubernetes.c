/*
 * mon_prov_kubernetes.c - the kubernetes provisioner (mon_prov.h): kubectl
 * get and scale of the tier's StatefulSet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "monitor/mon_prov_impl.h"
#include "trellis/trellis_status.h"

static const char *k8s_set(const mon_prov *p, int tier)
{
    return tier == RING_TIER_MEMORY ? p->cfg.monitor.statefulset_memory
                                    : p->cfg.monitor.statefulset_disk;
}

static void k8s_get(mon_prov *p, mon_job *job)
{
    char name[CONFIG_STR_MAX];
    snprintf(name, sizeof(name), "%s", k8s_set(p, job->tier));
    char *argv[] = {p->cfg.monitor.kubectl,
                    "-n",
                    p->cfg.monitor.namespace_,
                    "get",
                    "statefulset",
                    name,
                    "-o",
                    "jsonpath={.spec.replicas}",
                    NULL};
    mon_job_run(job, argv, "kubernetes");
}

static void k8s_scale(mon_prov *p, mon_job *job, long long replicas)
{
    char target[CONFIG_STR_MAX + 16], rep[48];
    snprintf(target, sizeof(target), "statefulset/%s", k8s_set(p, job->tier));
    snprintf(rep, sizeof(rep), "--replicas=%lld", replicas);
    char *argv[] = {
        p->cfg.monitor.kubectl, "-n", p->cfg.monitor.namespace_, "scale", target, rep, NULL};
    mon_job_run(job, argv, "kubernetes");
}

/* Steps: 0 get, 1 scale (add) | 0 get, [drain], 2 scale (remove). */
static void k8s_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    int st;
    if (!mon_job_reaped(job, now_ms, &st))
        return;
    char how[64];
    mon_describe_status(st, how, sizeof(how));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        mon_job_fail(job, "%s %s", p->cfg.monitor.kubectl, how);
        return;
    }
    if (job->step == 0) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(job->out, &end, 10);
        while (end && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\''))
            end++;
        if (errno || end == job->out || (end && *end) || n < 0 || n > 100000) {
            mon_job_fail(job, "unexpected replicas from %s get: '%.64s'", p->cfg.monitor.kubectl,
                         job->out);
            return;
        }
        job->replicas = n;
        if (job->add) {
            snprintf(job->node, sizeof(job->node), "%s-%lld", k8s_set(p, job->tier), n);
            job->step = 1;
            k8s_scale(p, job, n + 1);
        } else if (n == 0) {
            mon_job_fail(job, "statefulset %s has no replicas", k8s_set(p, job->tier));
        } else {
            snprintf(job->node, sizeof(job->node), "%s-%lld", k8s_set(p, job->tier), n - 1);
            job->status = MON_JOB_NEED_DRAIN;
        }
        return;
    }
    job->status = MON_JOB_OK;
}

static int k8s_init(mon_prov *p, char *err, size_t errlen)
{
    if (!p->cfg.monitor.kubectl[0]) {
        snprintf(err, errlen, "monitor.provisioner is kubernetes but monitor.kubectl is empty");
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

static void k8s_add(mon_prov *p, int tier, mon_job *job)
{
    (void)tier;
    k8s_get(p, job);
}

static void k8s_remove(mon_prov *p, int tier, const ring *r, mon_job *job)
{
    (void)tier;
    (void)r;
    k8s_get(p, job);
}

static void k8s_drained(mon_prov *p, mon_job *job, int dead)
{
    (void)dead;
    job->step = 2;
    k8s_scale(p, job, job->replicas - 1);
}

const mon_prov_ops mon_prov_kubernetes_ops = {
    "kubernetes", k8s_init, k8s_add, k8s_remove, k8s_drained, k8s_poll, NULL,
};
