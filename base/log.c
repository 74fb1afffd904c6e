/*
 * log.c - the logger.
 */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The identity is set at start-up, but a process that embeds several
 * daemons (tests) sets it while other threads log: copied under a lock. */
static pthread_mutex_t log_ident_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_role[32] = "trellis";
static char log_node[64] = "";
static atomic_int log_level = LOG_LVL_INFO;
static _Thread_local char log_tag[16];

static const char *const log_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *role, const char *node_id)
{
    pthread_mutex_lock(&log_ident_lock);
    snprintf(log_role, sizeof(log_role), "%s", role ? role : "trellis");
    snprintf(log_node, sizeof(log_node), "%s", node_id ? node_id : "");
    pthread_mutex_unlock(&log_ident_lock);
}

void log_set_level(int level)
{
    if (level >= LOG_LVL_DEBUG && level <= LOG_LVL_OFF)
        atomic_store(&log_level, level);
}

int log_get_level(void)
{
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    return -1;
}

void log_set_thread_tag(const char *tag)
{
    snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void log_write(int level, const char *fmt, ...)
{
    if (level < log_get_level() || level >= LOG_LVL_OFF)
        return;
    char line[LOG_MAX_LINE];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    char role[sizeof(log_role)], node[sizeof(log_node)];
    pthread_mutex_lock(&log_ident_lock);
    memcpy(role, log_role, sizeof(role));
    memcpy(node, log_node, sizeof(node));
    pthread_mutex_unlock(&log_ident_lock);
    const char *sep = node[0] && log_tag[0] ? "/" : "";
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s[%s%s%s] ",
                          (long)(tv.tv_usec / 1000), log_names[level], role, node, sep, log_tag);
    if (n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    /* One line, one write: lines from different threads never interleave. */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
