/*
 * log.h - one line per event on stderr: UTC time, level, role, node and
 * shard, message. Safe from any thread; each line is one write(2).
 *
 *   2026-11-23T12:46:25.123Z INFO kvs[m1/s0] joined the ring at epoch 42
 */
#ifndef TRELLIS_LOG_H
#define TRELLIS_LOG_H

enum { LOG_LVL_DEBUG = 0, LOG_LVL_INFO = 1, LOG_LVL_WARN = 2, LOG_LVL_ERROR = 3, LOG_LVL_OFF = 4 };

#define LOG_MAX_LINE 1024

/* Sets the process role ("kvs", "route", ...) and node id shown on every
 * line. The strings are copied. */
void log_init(const char *role, const char *node_id);
void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "warn", "error", "off" -> level; -1 if unknown. */
int log_level_parse(const char *name);
/* Sets the calling thread's tag (e.g. "s3" for shard 3); NULL clears it. */
void log_set_thread_tag(const char *tag);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() <= LOG_LVL_DEBUG)                                                      \
            log_write(LOG_LVL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)
#define log_info(...)  log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LVL_ERROR, __VA_ARGS__)

#endif
