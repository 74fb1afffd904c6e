/*
 * mon_log.c - the decision log and its JSON helpers (see mon_log.h).
 */
#include "monitor/mon_log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "trellis/trellis_status.h"

struct mon_log {
    int fd; /* -1: no file */
    uint64_t lines;
    char path[4096];
};

int mon_log_open(const char *path, mon_log **out)
{
    *out = NULL;
    mon_log *l = calloc(1, sizeof(*l));
    if (!l)
        return TRELLIS_INTERNAL;
    l->fd = -1;
    if (path && path[0]) {
        snprintf(l->path, sizeof(l->path), "%s", path);
        l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (l->fd < 0) {
            log_error("decision log %s: %s", path, strerror(errno));
            free(l);
            return TRELLIS_UNAVAILABLE;
        }
    }
    *out = l;
    return TRELLIS_OK;
}

void mon_log_close(mon_log *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l);
}

uint64_t mon_log_lines(const mon_log *l)
{
    return l->lines;
}

int mon_log_write(mon_log *l, mbuf *b)
{
    mbuf_printf(b, "}\n");
    int rc = TRELLIS_OK;
    if (b->failed) {
        log_error("decision log: out of memory; a decision was not logged");
        rc = TRELLIS_INTERNAL;
    } else if (l->fd >= 0) {
        /* O_APPEND and one write: a line is never interleaved with another. */
        ssize_t w = write(l->fd, b->data, b->len);
        if (w != (ssize_t)b->len) {
            log_error("decision log %s: %s", l->path, w < 0 ? strerror(errno) : "short write");
            rc = TRELLIS_UNAVAILABLE;
        }
    }
    if (rc == TRELLIS_OK)
        l->lines++;
    b->len = 0;
    b->failed = 0;
    if (b->data)
        b->data[0] = '\0';
    return rc;
}

void mon_iso_time(uint64_t wall_us, char *buf, size_t cap)
{
    time_t s = (time_t)(wall_us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n > 0 && n < cap)
        snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(wall_us / 1000 % 1000));
}

/* A comma unless the object or array just opened. */
static void sep(mbuf *b)
{
    if (b->len && b->data[b->len - 1] != '{' && b->data[b->len - 1] != '[')
        mbuf_printf(b, ",");
}

void mon_json_escape(mbuf *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\')
            mbuf_printf(b, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            mbuf_printf(b, "%c", c);
        else
            mbuf_printf(b, "\\u%04x", c);
    }
}

void mon_log_begin(mbuf *b, uint64_t wall_us, uint64_t t_ms, const char *policy, const char *action)
{
    char iso[40];
    mon_iso_time(wall_us, iso, sizeof(iso));
    b->len = 0;
    b->failed = 0;
    mbuf_printf(b, "{\"time\":\"%s\",\"t_ms\":%llu", iso, (unsigned long long)t_ms);
    mon_json_str(b, "policy", policy);
    mon_json_str(b, "action", action);
}

void mon_json_str(mbuf *b, const char *name, const char *s)
{
    sep(b);
    mbuf_printf(b, "\"%s\":\"", name);
    mon_json_escape(b, s, strlen(s));
    mbuf_printf(b, "\"");
}

void mon_json_bytes(mbuf *b, const char *name, const void *p, size_t n)
{
    sep(b);
    mbuf_printf(b, "\"%s\":\"", name);
    mon_json_escape(b, p, n);
    mbuf_printf(b, "\",\"%s_hex\":\"", name);
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        mbuf_printf(b, "%02x", s[i]);
    mbuf_printf(b, "\"");
}

void mon_json_u64(mbuf *b, const char *name, uint64_t v)
{
    sep(b);
    mbuf_printf(b, "\"%s\":%llu", name, (unsigned long long)v);
}

void mon_json_int(mbuf *b, const char *name, long long v)
{
    sep(b);
    mbuf_printf(b, "\"%s\":%lld", name, v);
}

void mon_json_dbl(mbuf *b, const char *name, double v)
{
    sep(b);
    if (isfinite(v))
        mbuf_printf(b, "\"%s\":%.4g", name, v);
    else
        mbuf_printf(b, "\"%s\":null", name);
}

void mon_json_open(mbuf *b, const char *name)
{
    sep(b);
    mbuf_printf(b, "\"%s\":{", name);
}

void mon_json_close(mbuf *b)
{
    mbuf_printf(b, "}");
}

void mon_json_array_open(mbuf *b, const char *name)
{
    sep(b);
    mbuf_printf(b, "\"%s\":[", name);
}

void mon_json_array_close(mbuf *b)
{
    mbuf_printf(b, "]");
}

void mon_json_item_hex(mbuf *b, const void *p, size_t n)
{
    sep(b);
    mbuf_printf(b, "\"");
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        mbuf_printf(b, "%02x", s[i]);
    mbuf_printf(b, "\"");
}
