/*
 * mtest.c - helpers for the monitor's end-to-end tests (see mtest.h).
 */
#include "mtest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "tkv.h"

void mtest_sleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void arg(mmon *m, const char *s)
{
    if (m->argc >= (int)(sizeof(m->argv) / sizeof(m->argv[0])) - 1)
        return;
    snprintf(m->argbuf[m->argc], sizeof(m->argbuf[0]), "%s", s);
    m->argv[m->argc] = m->argbuf[m->argc];
    m->argc++;
    m->argv[m->argc] = NULL;
}

int mtest_reserve(tcluster *c, mmon *m, int local_ports)
{
    memset(m, 0, sizeof(*m));
    if (c->next_port + 2 + local_ports > c->port_base + TCLUSTER_PORTS) {
        fprintf(stderr, "mtest: not enough ports left in the cluster's range\n");
        return -1;
    }
    m->port = c->next_port++;
    m->metrics_port = c->next_port++;
    m->local_port_base = c->next_port;
    c->next_port += local_ports;
    snprintf(m->url, sizeof(m->url), "tcp://127.0.0.1:%d", m->port);
    char pair[128];
    snprintf(pair, sizeof(pair), "cluster.monitor=%s", m->url);
    tcluster_set(c, pair);
    return 0;
}

int mtest_start_monitor(tcluster *c, mmon *m, const char *const *extra)
{
    if (!m->port) {
        fprintf(stderr, "mtest: mtest_reserve first\n");
        return -1;
    }
    m->argc = 0;
    snprintf(m->log, sizeof(m->log), "%s/monitor.log", c->dir);
    snprintf(m->decisions, sizeof(m->decisions), "%s/decisions.jsonl", c->dir);
    snprintf(m->state, sizeof(m->state), "%s/state", c->dir);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s/trellis-monitor", c->bin);
    arg(m, buf);
    arg(m, "--port");
    snprintf(buf, sizeof(buf), "%d", m->port);
    arg(m, buf);
    arg(m, "--metrics-port");
    snprintf(buf, sizeof(buf), "%d", m->metrics_port);
    arg(m, buf);
    arg(m, "--router");
    arg(m, c->router_url);
    arg(m, "--log-file");
    arg(m, m->decisions);
    arg(m, "--state-dir");
    arg(m, m->state);
    arg(m, "--set");
    snprintf(buf, sizeof(buf), "monitor.local_port_base=%d", m->local_port_base);
    arg(m, buf);
    for (int i = 0; i < c->ncommon; i++) {
        arg(m, "--set");
        arg(m, c->common[i]);
    }
    for (; extra && *extra; extra++)
        arg(m, *extra);
    if (tproc_spawn(m->argv, m->log, &m->p) != 0) {
        fprintf(stderr, "mtest: cannot start %s: %s\n", m->argv[0], strerror(errno));
        return -1;
    }
    if (tproc_wait_port("127.0.0.1", m->port, 10000) != 0) {
        tproc_dump_log(m->p, "monitor", 40);
        return -1;
    }
    return 0;
}

int mtest_stop_monitor(mmon *m, int timeout_ms)
{
    if (!m->p)
        return 0;
    int status = 0;
    int rc = tproc_stop(m->p, timeout_ms, &status);
    tproc_free(m->p);
    m->p = NULL;
    return rc == 0 ? status : -1;
}

void mtest_dump(const mmon *m)
{
    if (m->p)
        tproc_dump_log(m->p, "monitor", 80);
    FILE *f = fopen(m->decisions, "r");
    if (!f)
        return;
    char line[MTEST_LINE_MAX];
    fprintf(stderr, "---- decisions (%s)\n", m->decisions);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

static int line_matches(const char *line, const char *policy, const char *action)
{
    char want[128];
    snprintf(want, sizeof(want), "\"policy\":\"%s\"", policy);
    if (!strstr(line, want))
        return 0;
    if (strcmp(action, "*") == 0)
        return 1;
    snprintf(want, sizeof(want), "\"action\":\"%s\"", action);
    return strstr(line, want) != NULL;
}

int mtest_find_decision(const mmon *m, const char *policy, const char *action, int nth, char *line,
                        size_t cap)
{
    FILE *f = fopen(m->decisions, "r");
    if (!f)
        return 0;
    char buf[MTEST_LINE_MAX];
    int seen = 0, found = 0;
    while (fgets(buf, sizeof(buf), f)) {
        if (!line_matches(buf, policy, action))
            continue;
        if (seen++ == nth) {
            if (line)
                snprintf(line, cap, "%s", buf);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

int mtest_wait_decision(const mmon *m, const char *policy, const char *action, int nth,
                        int timeout_ms, char *line, size_t cap)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        if (mtest_find_decision(m, policy, action, nth, line, cap))
            return 1;
        mtest_sleep(50);
    } while (clock_mono_ms() < end);
    return 0;
}

int mtest_count_decisions(const mmon *m, const char *policy, const char *action)
{
    int n = 0;
    while (mtest_find_decision(m, policy, action, n, NULL, 0))
        n++;
    return n;
}

double mtest_json_num(const char *line, const char *field)
{
    char want[128];
    snprintf(want, sizeof(want), "\"%s\":", field);
    const char *p = strstr(line, want);
    if (!p)
        return 0;
    return strtod(p + strlen(want), NULL);
}

int mtest_json_str(const char *line, const char *field, char *buf, size_t cap)
{
    char want[128];
    snprintf(want, sizeof(want), "\"%s\":\"", field);
    const char *p = strstr(line, want);
    if (!p || cap == 0)
        return 0;
    p += strlen(want);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1])
            p++;
        buf[n++] = *p++;
    }
    buf[n] = '\0';
    return 1;
}

uint64_t mtest_decision_wall_ms(const char *line)
{
    char iso[64];
    if (!mtest_json_str(line, "time", iso, sizeof(iso)))
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    unsigned ms = 0;
    if (sscanf(iso, "%d-%d-%dT%d:%d:%d.%uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (uint64_t)timegm(&tm) * 1000 + ms;
}

uint64_t mtest_wall_ms(void)
{
    return clock_wall_us() / 1000;
}

int mtest_stats_get(const char *url, mtest_stats *out)
{
    memset(out, 0, sizeof(*out));
    wire_arena *a = wire_arena_new();
    if (!a)
        return TRELLIS_INTERNAL;
    Trellis__Envelope env, *reply = NULL;
    Trellis__StatsRequest sr;
    trellis__envelope__init(&env);
    trellis__stats_request__init(&sr);
    env.version = WIRE_VERSION;
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &sr;
    int rc = tkv_call(url, &env, 2000, a, &reply);
    if (rc == TRELLIS_OK && reply->body_case != TRELLIS__ENVELOPE__BODY_STATS_REPLY)
        rc = TRELLIS_MALFORMED;
    if (rc == TRELLIS_OK) {
        const Trellis__StatsReply *r = reply->stats_reply;
        for (size_t i = 0; i < r->n_tiers; i++) {
            const Trellis__TierStats *t = r->tiers[i];
            if (t->tier < 1 || t->tier > 2)
                continue;
            out->nodes[t->tier] = t->nodes;
            out->busy[t->tier] = t->busy;
            out->p99_us[t->tier] = t->p99_us;
            out->keys[t->tier] = t->keys;
            out->bytes[t->tier] = t->bytes;
            out->capacity[t->tier] = t->capacity;
            out->ops[t->tier] = t->ops_per_sec;
        }
        out->hot_keys = r->hot_keys;
        out->client_p99_us = r->client_p99_us;
    }
    wire_arena_free(a);
    return rc;
}

int mtest_http_get(int port, const char *path, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    char *all = malloc(1 << 20);
    if (!all) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd, all + len, (1 << 20) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len >= (1 << 20) - 1)
            break;
    }
    close(fd);
    all[len] = '\0';
    int status = -1;
    sscanf(all, "HTTP/%*s %d", &status);
    const char *body = strstr(all, "\r\n\r\n");
    snprintf(buf, cap, "%s", body ? body + 4 : "");
    free(all);
    return status;
}

double mtest_metric(int port, const char *series)
{
    size_t cap = 1 << 20;
    char *page = malloc(cap);
    if (!page)
        return -1;
    double v = -1;
    if (mtest_http_get(port, "/metrics", page, cap) == 200) {
        size_t sl = strlen(series);
        for (char *line = page; line && *line;) {
            char *nl = strchr(line, '\n');
            if (strncmp(line, series, sl) == 0 && strchr(" {,}", line[sl]) && line[sl]) {
                if (nl)
                    *nl = '\0';
                char *sp = strrchr(line, ' ');
                v = sp ? strtod(sp + 1, NULL) : -1;
                break;
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    free(page);
    return v;
}

double mtest_metric_sum(int port, const char *name)
{
    size_t cap = 1 << 20;
    char *page = malloc(cap);
    if (!page)
        return -1;
    double sum = -1;
    if (mtest_http_get(port, "/metrics", page, cap) == 200) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "\n%s{", name);
        for (char *p = strstr(page, prefix); p; p = strstr(p + 1, prefix)) {
            char *sp = strchr(p + 1, ' ');
            if (sp)
                sum = (sum < 0 ? 0 : sum) + strtod(sp + 1, NULL);
        }
    }
    free(page);
    return sum;
}
