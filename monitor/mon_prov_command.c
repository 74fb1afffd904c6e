/*
 * mon_prov_command.c - the command provisioner (mon_prov.h): an operator's
 * script run as SCRIPT add|remove TIER NODE.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "base/clock.h"
#include "monitor/mon_prov_impl.h"
#include "trellis/trellis_status.h"

static void command_run(mon_prov *p, mon_job *job, const char *verb)
{
    char script[CONFIG_STR_MAX + 16];
    snprintf(script, sizeof(script), "%s \"$@\"", p->cfg.monitor.command);
    char tier[16], node[RING_MAX_NODE_ID + 1], v[16];
    snprintf(tier, sizeof(tier), "%s", ring_tier_name(job->tier));
    snprintf(node, sizeof(node), "%s", job->node);
    snprintf(v, sizeof(v), "%s", verb);
    char *argv[] = {"/bin/sh", "-c", script, "sh", v, tier, node, NULL};
    mon_job_run(job, argv, "command");
}

static void command_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    int st;
    if (!mon_job_reaped(job, now_ms, &st))
        return;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        mon_describe_status(st, how, sizeof(how));
        mon_job_fail(job, "%s %s", p->cfg.monitor.command, how);
        return;
    }
    job->status = MON_JOB_OK;
}

static int command_init(mon_prov *p, char *err, size_t errlen)
{
    if (!p->cfg.monitor.command[0]) {
        snprintf(err, errlen, "monitor.provisioner is command but monitor.command is empty");
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

static void command_add(mon_prov *p, int tier, mon_job *job)
{
    /* A fresh id: tier letter and wall-clock milliseconds. */
    snprintf(job->node, sizeof(job->node), "%c%llu", tier == RING_TIER_MEMORY ? 'm' : 'd',
             (unsigned long long)(clock_wall_us() / 1000 + p->seq++));
    command_run(p, job, "add");
}

static void command_drained(mon_prov *p, mon_job *job, int dead)
{
    (void)dead;
    command_run(p, job, "remove");
}

const mon_prov_ops mon_prov_command_ops = {
    "command",       command_init, command_add, mon_prov_remove_active,
    command_drained, command_poll, NULL,
};
