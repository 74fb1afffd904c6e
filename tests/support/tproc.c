/*
 * tproc.c - child processes for integration tests (see tproc.h).
 */
#include "tproc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#define TPROC_LOG_MAX    (8 << 20) /* bytes of a log searched by tproc_wait_log */
#define TPROC_WATCH_PIDS 256

extern char **environ;

struct tproc {
    pid_t pid;
    int exited;
    int status;
    int paused; /* SIGSTOPped by tproc_signal */
    char log[4096];
};

/* ---- the watchdog --------------------------------------------------------------- */

enum { WATCH_ADD = 1, WATCH_DEL = 2 };

typedef struct watch_rec {
    int op;
    pid_t pid;
} watch_rec;

static int watch_fd = -1;
static pid_t watch_owner = -1;

/* Runs in the forked watchdog: only async-signal-safe calls. */
static void watch_main(int rfd)
{
    pid_t pids[TPROC_WATCH_PIDS];
    int n = 0;
    watch_rec r;
    for (;;) {
        ssize_t got = read(rfd, &r, sizeof(r));
        if (got == (ssize_t)sizeof(r)) {
            if (r.op == WATCH_ADD && n < TPROC_WATCH_PIDS) {
                pids[n++] = r.pid;
            } else if (r.op == WATCH_DEL) {
                for (int i = 0; i < n; i++)
                    if (pids[i] == r.pid) {
                        pids[i] = pids[--n];
                        break;
                    }
            }
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        break; /* EOF: the test process is gone */
    }
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    _exit(0);
}

static void watch_send(int op, pid_t pid)
{
    if (watch_owner != getpid()) {
        /* First use in this process (Criterion runs each test in its own
         * process): start a watchdog of our own. */
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return;
        pid_t w = fork();
        if (w < 0) {
            close(fds[0]);
            close(fds[1]);
            return;
        }
        if (w == 0) {
            close(fds[1]);
            /* The watchdog must outlive a SIGTERM/SIGINT aimed at the group. */
            signal(SIGTERM, SIG_IGN);
            signal(SIGINT, SIG_IGN);
            watch_main(fds[0]);
        }
        close(fds[0]);
        watch_fd = fds[1];
        watch_owner = getpid();
    }
    watch_rec r = {op, pid};
    ssize_t w = write(watch_fd, &r, sizeof(r));
    (void)w;
}

/* ---- command lines --------------------------------------------------------------- */

void targv_add(targv *a, const char *fmt, ...)
{
    if (a->n >= TARGV_MAX - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->s[a->n], sizeof(a->s[a->n]), fmt, ap);
    va_end(ap);
    a->v[a->n] = a->s[a->n];
    a->n++;
    a->v[a->n] = NULL;
}

void targv_add_all(targv *a, const char *const *list)
{
    for (; list && *list; list++)
        targv_add(a, "%s", *list);
}

/* ---- processes ------------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int tproc_spawn(char *const argv[], const char *log_path, tproc **out)
{
    return tproc_start(argv, log_path, NULL, out);
}

int tproc_start(char *const argv[], const char *log_path, const tproc_opts *o, tproc **out)
{
    static const tproc_opts none;
    if (!o)
        o = &none;
    *out = NULL;
    tproc *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    snprintf(p->log, sizeof(p->log), "%s", log_path);
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    if ((o->to_stdin && pipe2(in, O_CLOEXEC) != 0) ||
        (o->from_stdout && pipe2(outp, O_CLOEXEC) != 0)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (outp[i] >= 0)
                close(outp[i]);
        }
        free(p);
        errno = e;
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (o->to_stdin)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (o->from_stdout)
        posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    else
        posix_spawn_file_actions_adddup2(&fa, 2, 1);
    /* Make sure the watchdog exists before the child does. */
    watch_send(0, 0);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, o->envp ? o->envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    if (o->to_stdin)
        close(in[0]);
    if (o->from_stdout)
        close(outp[1]);
    if (rc != 0) {
        if (o->to_stdin)
            close(in[1]);
        if (o->from_stdout)
            close(outp[0]);
        free(p);
        errno = rc;
        return -1;
    }
    if (o->to_stdin)
        *o->to_stdin = in[1];
    if (o->from_stdout)
        *o->from_stdout = outp[0];
    watch_send(WATCH_ADD, p->pid);
    *out = p;
    return 0;
}

int tproc_run(char *const argv[], const char *log_path, int timeout_ms)
{
    tproc *p;
    if (tproc_spawn(argv, log_path, &p) != 0)
        return -1;
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (tproc_running(p) && clock_mono_ms() < end)
        sleep_ms(10);
    int st = tproc_running(p) ? -1 : p->status;
    tproc_free(p);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t tproc_pid(const tproc *p)
{
    return p->pid;
}

const char *tproc_log(const tproc *p)
{
    return p->log;
}

static void reaped(tproc *p, int status)
{
    p->exited = 1;
    p->status = status;
    watch_send(WATCH_DEL, p->pid);
}

int tproc_running(tproc *p)
{
    if (p->exited)
        return 0;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
        reaped(p, r == p->pid ? st : -1);
        return 0;
    }
    return 1;
}

int tproc_status(const tproc *p)
{
    return p->exited ? p->status : -1;
}

int tproc_wait_port(const char *host, int port, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok)
            return 0;
        sleep_ms(20);
    } while (clock_mono_ms() < end);
    return -1;
}

int tproc_log_contains(const tproc *p, const char *needle)
{
    FILE *f = fopen(p->log, "rb");
    if (!f)
        return 0;
    char *buf = malloc(TPROC_LOG_MAX + 1);
    if (!buf) {
        fclose(f);
        return 0;
    }
    size_t n = fread(buf, 1, TPROC_LOG_MAX, f);
    fclose(f);
    buf[n] = '\0';
    /* Logs are text; a NUL would end the search early, so replace them. */
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    int found = strstr(buf, needle) != NULL;
    free(buf);
    return found;
}

int tproc_wait_log(tproc *p, const char *needle, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (tproc_log_contains(p, needle))
            return 0;
        if (!tproc_running(p))
            return tproc_log_contains(p, needle) ? 0 : -2;
        if (clock_mono_ms() >= end)
            return -1;
        sleep_ms(20);
    }
}

void tproc_signal(tproc *p, int sig)
{
    if (!tproc_running(p))
        return;
    kill(p->pid, sig);
    if (sig == SIGSTOP)
        p->paused = 1;
    else if (sig == SIGCONT)
        p->paused = 0;
}

int tproc_paused(const tproc *p)
{
    return p->paused;
}

int tproc_stop(tproc *p, int timeout_ms, int *status)
{
    if (!tproc_running(p)) {
        if (status)
            *status = p->status;
        return 0;
    }
    tproc_signal(p, SIGCONT);
    kill(p->pid, SIGTERM);
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (clock_mono_ms() < end) {
        if (!tproc_running(p)) {
            if (status)
                *status = p->status;
            return 0;
        }
        sleep_ms(10);
    }
    tproc_kill9(p);
    if (status)
        *status = p->status;
    return -1;
}

void tproc_kill9(tproc *p)
{
    if (!tproc_running(p))
        return;
    kill(p->pid, SIGKILL);
    int st;
    pid_t r;
    do
        r = waitpid(p->pid, &st, 0);
    while (r < 0 && errno == EINTR);
    reaped(p, r == p->pid ? st : -1);
}

void tproc_free(tproc *p)
{
    if (!p)
        return;
    tproc_kill9(p);
    free(p);
}

long tproc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

void tproc_dump_log(const tproc *p, const char *label, int lines)
{
    if (!p)
        return;
    FILE *f = fopen(p->log, "rb");
    if (!f)
        return;
    char *buf = malloc(TPROC_LOG_MAX + 1);
    if (!buf) {
        fclose(f);
        return;
    }
    size_t n = fread(buf, 1, TPROC_LOG_MAX, f);
    fclose(f);
    buf[n] = '\0';
    size_t start = n;
    int seen = 0;
    while (start > 0 && seen <= lines)
        if (buf[--start] == '\n')
            seen++;
    fprintf(stderr, "---- %s (pid %d, %s) ----\n%s\n", label, (int)p->pid, p->log,
            buf + (start ? start + 1 : 0));
    free(buf);
}
