/*
 * tproc.h - child processes for integration tests: start a binary with
 * posix_spawn (stdout and stderr appended to a log file), wait until it
 * listens on a port or logs a line, stop it with SIGTERM and then SIGKILL
 * after a deadline, or kill it with SIGKILL at once.
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

/* Starts argv[0] (a path) with the NULL-terminated argv, stdin from
 * /dev/null, stdout and stderr appended to log_path. Returns 0 and sets
 * *out, or -1 (errno set) when the process could not be started. */
int tproc_spawn(char *const argv[], const char *log_path, tproc **out);

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

/* Sends SIGTERM and waits up to timeout_ms for the process to exit, then
 * sends SIGKILL. Returns 0 if it exited by itself within the deadline (its
 * wait status in *status, may be NULL), -1 if it had to be killed. */
int tproc_stop(tproc *p, int timeout_ms, int *status);

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
