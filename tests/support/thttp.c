/*
 * thttp.c - one GET against a daemon's HTTP endpoint (see thttp.h).
 */
#include "thttp.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int thttp_get(int port, const char *path, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {THTTP_TIMEOUT_MS / 1000, (THTTP_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *all = malloc(THTTP_MAX_PAGE);
    if (!all || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        free(all);
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    size_t len = 0;
    if (write(fd, req, (size_t)n) == n) {
        ssize_t r;
        while (len < THTTP_MAX_PAGE - 1 && (r = read(fd, all + len, THTTP_MAX_PAGE - 1 - len)) > 0)
            len += (size_t)r;
    }
    close(fd);
    all[len] = '\0';
    int status = -1;
    if (sscanf(all, "HTTP/%*s %d", &status) != 1)
        status = -1;
    const char *body = strstr(all, "\r\n\r\n");
    if (buf && cap)
        snprintf(buf, cap, "%s", body ? body + 4 : "");
    free(all);
    return status;
}

/* Calls fn(value, arg) for every line of port's /metrics page that starts
 * with prefix followed by one of `after`; 0, or -1 without a page. */
static int each_series(int port, const char *prefix, const char *after, int (*fn)(double, void *),
                       void *arg)
{
    char *page = malloc(THTTP_MAX_PAGE);
    if (!page)
        return -1;
    if (thttp_get(port, "/metrics", page, THTTP_MAX_PAGE) != 200) {
        free(page);
        return -1;
    }
    size_t pl = strlen(prefix);
    for (char *line = page; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, prefix, pl) == 0 && line[pl] && strchr(after, line[pl])) {
            char *sp = strrchr(line, ' ');
            if (sp && fn(strtod(sp + 1, NULL), arg))
                break;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(page);
    return 0;
}

typedef struct acc {
    double v;
    int found;
} acc;

static int take_first(double v, void *arg)
{
    acc *a = arg;
    a->v = v;
    a->found = 1;
    return 1;
}

static int add(double v, void *arg)
{
    acc *a = arg;
    a->v += v;
    a->found = 1;
    return 0;
}

double thttp_metric(int port, const char *series)
{
    acc a = {0, 0};
    if (each_series(port, series, " {,}", take_first, &a) != 0 || !a.found)
        return -1;
    return a.v;
}

double thttp_metric_sum(int port, const char *name)
{
    acc a = {0, 0};
    if (each_series(port, name, "{", add, &a) != 0 || !a.found)
        return -1;
    return a.v;
}
