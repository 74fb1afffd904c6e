/*
 * tcheck.c - what every test checks besides its own assertions (see
 * tcheck.h).
 */
#include "tcheck.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) && !defined(TRELLIS_SANITIZED)
#define TRELLIS_SANITIZED 1
#endif
#ifdef TRELLIS_SANITIZED
#include <sanitizer/lsan_interface.h>
#endif

#define TCHECK_REPORT_LINES 60 /* lines of a sanitizer report printed */

typedef struct watched {
    void *obj;
    tcheck_ops ops;
} watched;

static watched watch[TCHECK_MAX_WATCH];
static int nwatch;

void tcheck_watch(void *obj, const tcheck_ops *ops)
{
    for (int i = 0; i < nwatch; i++)
        if (watch[i].obj == obj) {
            watch[i].ops = *ops;
            return;
        }
    if (nwatch == TCHECK_MAX_WATCH) {
        fprintf(stderr, "tcheck: more than %d things watched\n", TCHECK_MAX_WATCH);
        abort(); /* a broken test, not a failing one */
    }
    watch[nwatch].obj = obj;
    watch[nwatch].ops = *ops;
    nwatch++;
}

void tcheck_unwatch(void *obj)
{
    for (int i = 0; i < nwatch; i++)
        if (watch[i].obj == obj) {
            memmove(&watch[i], &watch[i + 1], (size_t)(nwatch - i - 1) * sizeof(watch[0]));
            nwatch--;
            return;
        }
}

void tcheck_dump(void)
{
    for (int i = 0; i < nwatch; i++)
        if (watch[i].ops.dump)
            watch[i].ops.dump(watch[i].obj);
}

int tcheck_end(void)
{
    int problems = 0;
    while (nwatch > 0) {
        watched w = watch[--nwatch];
        if (w.ops.stop)
            problems += w.ops.stop(w.obj);
    }
    return problems;
}

static const char *const report_marks[] = {
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
};

/* The report mark that line holds, or NULL. */
static const char *report_mark(const char *line)
{
    for (size_t i = 0; i < sizeof(report_marks) / sizeof(report_marks[0]); i++)
        if (strstr(line, report_marks[i]))
            return report_marks[i];
    return NULL;
}

int tcheck_scan_log(const char *path, const char *label)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[2048];
    int reports = 0, printing = 0;
    while (fgets(line, sizeof(line), f)) {
        if (report_mark(line)) {
            if (reports++ == 0)
                fprintf(stderr, "---- %s (%s): sanitizer report ----\n", label, path);
            printing = TCHECK_REPORT_LINES;
        }
        if (printing > 0) {
            fputs(line, stderr);
            printing--;
        }
    }
    fclose(f);
    return reports;
}

int tcheck_leaks(void)
{
#ifdef TRELLIS_SANITIZED
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

void tcheck_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: Assertion Failed\n  ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    tcheck_end();
    fprintf(stderr, "0 passed, 1 failed\n");
    exit(1);
}
