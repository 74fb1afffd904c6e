/*
 * mtest.c - helpers for the monitor's end-to-end tests (see mtest.h).
 */
#include "mtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

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

int mtest_find_decision(const tcluster *c, const char *policy, const char *action, int nth,
                        char *line, size_t cap)
{
    FILE *f = fopen(c->decisions, "r");
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

int mtest_wait_decision(const tcluster *c, const char *policy, const char *action, int nth,
                        int timeout_ms, char *line, size_t cap)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        if (mtest_find_decision(c, policy, action, nth, line, cap))
            return 1;
        tsleep_ms(50);
    } while (clock_mono_ms() < end);
    return 0;
}

int mtest_count_decisions(const tcluster *c, const char *policy, const char *action)
{
    int n = 0;
    while (mtest_find_decision(c, policy, action, n, NULL, 0))
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
