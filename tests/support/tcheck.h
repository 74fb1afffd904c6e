/*
 * tcheck.h - what every test checks besides its own assertions, and the
 * one CHECK macro.
 *
 * A test registers what it starts (tcluster_init does so for a cluster)
 * with tcheck_watch. When a test body returns, tcheck_end stops every
 * watched thing cleanly (daemons get SIGTERM and exit the way they do in
 * production, printing sanitizer reports at exit) and counts the problems
 * found: sanitizer reports in logs, processes that would not stop. In a
 * Criterion test this happens by itself (tcriterion.c, linked into every
 * Criterion test by trellis_add_test), followed by LeakSanitizer's check
 * of the test process; both fail the test. A plain test (its own main)
 * calls tcheck_end and counts what it returns as failures.
 *
 * CHECK(cond, fmt, ...) fails the test like cr_assert, after printing the
 * last lines of every watched thing's logs. In a plain test, define
 * TCHECK_PLAIN before including this header: a failed CHECK then prints
 * the message, stops what is watched (tcheck_end) and exits with status 1.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TCHECK_H
#define TRELLIS_TESTS_SUPPORT_TCHECK_H

#include <stddef.h>

#define TCHECK_MAX_WATCH 16

/* What a test watches: dump prints the last lines of its logs (may be
 * NULL); stop stops it cleanly and returns the number of problems found
 * (may be NULL). */
typedef struct tcheck_ops {
    void (*dump)(void *obj);
    int (*stop)(void *obj);
} tcheck_ops;

/* Watches obj until tcheck_unwatch(obj) or tcheck_end. At most
 * TCHECK_MAX_WATCH at a time; watching obj again replaces its ops. */
void tcheck_watch(void *obj, const tcheck_ops *ops);
void tcheck_unwatch(void *obj);

/* Prints the last lines of every watched thing's logs. */
void tcheck_dump(void);

/* Stops every watched thing (the last watched first) and forgets it;
 * the number of problems found. */
int tcheck_end(void);

/* The sanitizer reports in a log file (AddressSanitizer, LeakSanitizer,
 * UndefinedBehaviorSanitizer, ThreadSanitizer): how many reports it holds;
 * each is printed to stderr, labelled. 0 for a file that does not exist. */
int tcheck_scan_log(const char *path, const char *label);

/* LeakSanitizer's check of this process now: 0 when nothing leaked (always
 * 0 in a build without sanitizers); otherwise the report is printed. */
int tcheck_leaks(void);

/* A plain test's failure: prints file:line and the message, runs
 * tcheck_end, and exits with status 1. */
void tcheck_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#ifdef TCHECK_PLAIN
#define TCHECK_FAIL(...) tcheck_fail(__FILE__, __LINE__, __VA_ARGS__)
#else
#include <criterion/criterion.h>
#define TCHECK_FAIL(...) cr_assert_fail(__VA_ARGS__)
#endif

/* Fails the test with the message (printf-style) unless cond holds,
 * printing the logs of what the test watches first. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcheck_dump();                                                                         \
            TCHECK_FAIL(__VA_ARGS__);                                                              \
        }                                                                                          \
    } while (0)

#endif
