/*
 * tproc.h - child processes for tests, the one way to start one: a binary
 * started with posix_spawn (stdout and stderr appended to a log file, or
 * pipes to the test), waited for until it listens on a port or logs a
 * line, paused and resumed, stopped with SIGTERM and then SIGKILL after a
 * deadline, or killed with SIGKILL at once; and commands run to their end
 * (tproc_run).
 *
 * Every process started here is also known to a watchdog process forked at
 * the first start: when the test process ends in any way (a failed
 * assertion, a crash, a Criterion timeout), the watchdog's pipe closes and
 * it sends SIGKILL to every child still registered, so no daemon outlives
 * its test.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TPROC_H
#define TRELLIS_TESTS_SUPPORT_TPROC_H

#include <sys/types.h>

typedef struct tproc tproc;

#define TARGV_MAX     96  /* arguments of one command line */
#define TARGV_ARG_MAX 256 /* bytes of one argument */

/* A command line built argument by argument, for tproc_spawn. */
typedef struct targv {
    char *v[TARGV_MAX]; /* NULL-terminated */
    char s[TARGV_MAX][TARGV_ARG_MAX];
    int n;
} targv;

/* Appends one argument (printf-style; truncated to TARGV_ARG_MAX - 1
 * bytes). Beyond TARGV_MAX - 1 arguments, further ones are dropped. */
void targv_add(targv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends each string of a NULL-terminated list (may be NULL). */
void targv_add_all(targv *a, const char *const *list);

/* How tproc_start starts a process; a zeroed struct is tproc_spawn's way. */
typedef struct tproc_opts {
    char *const *envp; /* the environment (NULL: this process's) */
    int *to_stdin;     /* if set: a pipe to the child's stdin, its write end here */
    int *from_stdout;  /* if set: a pipe from the child's stdout, its read end here */
} tproc_opts;

/* Starts argv[0] (a path) with the NULL-terminated argv, stdin from
 * /dev/null, stdout and stderr appended to log_path. Returns 0 and sets
 * *out, or -1 (errno set) when the process could not be started. */
int tproc_spawn(char *const argv[], const char *log_path, tproc **out);

/* tproc_spawn with options (o may be NULL). The pipe ends handed back are
 * the caller's to close (close-on-exec). */
int tproc_start(char *const argv[], const char *log_path, const tproc_opts *o, tproc **out);

/* Runs argv to its end, output appended to log_path, for at most
 * timeout_ms (then it is killed). Its exit status, or -1 if it could not
 * run, died of a signal or timed out. */
int tproc_run(char *const argv[], const char *log_path, int timeout_ms);

pid_t tproc_pid(const tproc *p);
const char *tproc_log(const tproc *p);

/* 1 while the process runs; 0 once it exited (reaped, status kept). */
int tproc_running(tproc *p);
/* The wait status of an exited process (see waitpid), -1 if it runs. */
int tproc_status(const tproc *p);

/* Waits until a TCP connection to host:port succeeds. 0, or -1 after
 * timeout_ms. */
int tproc_wait_port(const char *host, int port, int timeout_ms);

/* Waits until the process's log contains `needle`. 0 when found, -1 after
 * timeout_ms, -2 if the process exited first. */
int tproc_wait_log(tproc *p, const char *needle, int timeout_ms);

/* 1 if the log contains needle now. */
int tproc_log_contains(const tproc *p, const char *needle);

/* Sends SIGTERM (after SIGCONT if paused) and waits up to timeout_ms for
 * the process to exit, then sends SIGKILL. Returns 0 if it exited by itself within the deadline
 * (its wait status in *status, may be NULL), -1 if it had to be killed. */
int tproc_stop(tproc *p, int timeout_ms, int *status);

/* Sends sig; SIGSTOP and SIGCONT are remembered, so that tproc_stop
 * resumes a paused process before asking it to stop. */
void tproc_signal(tproc *p, int sig);
int tproc_paused(const tproc *p);

/* SIGKILL now, and reap. */
void tproc_kill9(tproc *p);

/* Kills the process if it still runs and frees p (NULL is fine). */
void tproc_free(tproc *p);

/* Resident set size of a process in KiB from /proc/PID/status, -1 if
 * unknown. */
long tproc_rss_kb(pid_t pid);

/* Prints the last `lines` lines of the process's log to stderr, labelled. */
void tproc_dump_log(const tproc *p, const char *label, int lines);

#endif
