/*
 * mon_prov.c - the provisioners' interface (mon_prov.h): jobs and their
 * child processes, and the calls into the provisioner's ops table
 * (mon_prov_impl.h).
 */
#include "monitor/mon_prov.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "monitor/mon_prov_impl.h"
#include "trellis/trellis_status.h"

extern char **environ;

/* ---- child processes ------------------------------------------------------------ */

int mon_spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at)
{
    if (posix_spawn_file_actions_init(fa) != 0)
        return -1;
    if (posix_spawnattr_init(at) != 0) {
        posix_spawn_file_actions_destroy(fa);
        return -1;
    }
    /* The monitor blocks signals it reads from a signalfd; children start
     * with none blocked and default dispositions. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(at, &none);
    posix_spawnattr_setsigdefault(at, &all);
    posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    return 0;
}

int mon_spawn(char *const argv[], int *out_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int pfd[2] = {-1, -1};
    if (out_fd && pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    if (mon_spawn_setup(&fa, &at) != 0) {
        if (out_fd) {
            close(pfd[0]);
            close(pfd[1]);
        }
        errno = ENOMEM;
        return -1;
    }
    if (out_fd)
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (out_fd) {
        close(pfd[1]);
        if (rc != 0) {
            close(pfd[0]);
        } else {
            fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
            *out_fd = pfd[0];
        }
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

uint64_t mon_elapsed_ms(uint64_t now_ms, uint64_t since_ms)
{
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

void mon_describe_status(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "wait status %d", status);
}

void mon_job_fail(mon_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    job->status = MON_JOB_FAILED;
}

static void mon_job_close_out(mon_job *job)
{
    if (job->out_fd >= 0)
        close(job->out_fd);
    job->out_fd = -1;
}

static void job_read_out(mon_job *job)
{
    while (job->out_fd >= 0) {
        char tmp[512];
        ssize_t n = read(job->out_fd, tmp, sizeof(tmp));
        if (n > 0) {
            size_t room = sizeof(job->out) - 1 - job->outlen;
            size_t k = (size_t)n < room ? (size_t)n : room; /* the rest is dropped */
            memcpy(job->out + job->outlen, tmp, k);
            job->outlen += k;
            job->out[job->outlen] = '\0';
            continue;
        }
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            mon_job_close_out(job);
        break;
    }
}

void mon_job_run(mon_job *job, char *const argv[], const char *what)
{
    job->outlen = 0;
    job->out[0] = '\0';
    job->step_ms = clock_mono_ms();
    char line[1024];
    size_t n = 0;
    for (int i = 0; argv[i] && n < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s", i ? " " : "", argv[i]);
    log_info("%s: running %s", what, line);
    if (mon_spawn(argv, &job->out_fd, &job->pid) != 0) {
        job->pid = 0;
        job->out_fd = -1;
        mon_job_fail(job, "cannot run %s: %s", argv[0], strerror(errno));
    }
}

int mon_job_reaped(mon_job *job, uint64_t now_ms, int *status)
{
    job_read_out(job);
    if (!job->pid)
        return 0;
    if (mon_elapsed_ms(now_ms, job->step_ms) > MON_CMD_TIMEOUT_MS)
        kill(job->pid, SIGKILL);
    pid_t r = waitpid(job->pid, status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    if (r < 0)
        *status = 0x7f00; /* reaped elsewhere: unknown, treated as a failure */
    job_read_out(job);
    mon_job_close_out(job);
    job->pid = 0;
    return 1;
}

void mon_prov_abort(mon_prov *p, mon_job *job)
{
    (void)p;
    if (job->pid > 0) {
        kill(job->pid, SIGKILL);
        waitpid(job->pid, NULL, 0);
        job->pid = 0;
    }
    mon_job_close_out(job);
    if (job->status == MON_JOB_RUNNING || job->status == MON_JOB_NEED_DRAIN)
        mon_job_fail(job, "aborted: the monitor is stopping");
}

/* ---- the interface --------------------------------------------------------------------- */

static void job_init(mon_job *job, int add, int tier)
{
    memset(job, 0, sizeof(*job));
    job->add = add;
    job->tier = tier;
    job->out_fd = -1;
    job->status = MON_JOB_RUNNING;
    job->step_ms = clock_mono_ms();
}

void mon_prov_add(mon_prov *p, int tier, mon_job *job)
{
    job_init(job, 1, tier);
    p->ops->add(p, tier, job);
}

void mon_prov_remove(mon_prov *p, int tier, const ring *r, mon_job *job)
{
    job_init(job, 0, tier);
    p->ops->remove(p, tier, r, job);
}

void mon_prov_drained(mon_prov *p, mon_job *job, int dead)
{
    job->dead = dead;
    job->status = MON_JOB_RUNNING;
    p->ops->drained(p, job, dead);
}

void mon_prov_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    if (job->status != MON_JOB_RUNNING)
        return;
    p->ops->poll(p, job, now_ms);
}

const char *mon_prov_name(const mon_prov *p)
{
    return p->ops->name;
}

int mon_prov_new(const mon_prov_opts *o, mon_prov **out, char *err, size_t errlen)
{
    *out = NULL;
    mon_prov *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return TRELLIS_INTERNAL;
    }
    p->cfg = *o->cfg;
    switch (o->cfg->monitor.provisioner) {
    case CONFIG_PROV_LOCAL:
        p->ops = &mon_prov_local_ops;
        break;
    case CONFIG_PROV_KUBERNETES:
        p->ops = &mon_prov_kubernetes_ops;
        break;
    default:
        p->ops = &mon_prov_command_ops;
        break;
    }
    snprintf(p->config_path, sizeof(p->config_path), "%s", o->config_path ? o->config_path : "");
    snprintf(p->monitor_url, sizeof(p->monitor_url), "%s", o->monitor_url);
    snprintf(p->self_exe, sizeof(p->self_exe), "%s", o->self_exe ? o->self_exe : "");
    int rc = p->ops->init(p, err, errlen);
    if (rc != TRELLIS_OK) {
        free(p);
        return rc;
    }
    *out = p;
    return TRELLIS_OK;
}

void mon_prov_free(mon_prov *p)
{
    if (!p)
        return;
    if (p->ops->fini)
        p->ops->fini(p);
    free(p);
}
