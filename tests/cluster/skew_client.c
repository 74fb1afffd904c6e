/*
 * skew_client.c - a libtrellis client driven line by line over stdin, for
 * test_clock_skew.c, which runs it under libfaketime to give one writer a
 * wall clock hours away from the others'.
 *
 *   skew_client ROUTER_URL
 *
 * Commands (one per line) and answers (one line each):
 *   wall              wall <this process's CLOCK_REALTIME in us>
 *   writer            writer <writer id, hex>
 *   put KEY VALUE     ok | err STATUS                 (LWW, ack=all)
 *   get KEY           val VALUE TIMESTAMP WRITER | nil | err STATUS
 *   seq KEY N         seq OK MONOTONIC FIRST_TS LAST_TS
 *                     N times: put KEY i, read it back; MONOTONIC is 1 when
 *                     every timestamp read back exceeds the one before
 *   cput KEY VALUE    ok | err STATUS                 (CAUSAL, blind)
 *   cputo KEY VALUE   ok | err STATUS                 (CAUSAL, over what it reads)
 *   cget KEY          causal N VALUE...  | nil | err STATUS
 *   quit
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trellis/trellis.h"

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static int get_lww(trellis_client *c, const char *key, trellis_value **v)
{
    int st = trellis_get_value(c, key, strlen(key), v);
    if (st == TRELLIS_OK && (*v)->type != TRELLIS_TYPE_LWW) {
        trellis_value_free(*v);
        return TRELLIS_LATTICE_MISMATCH;
    }
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: skew_client ROUTER_URL\n");
        return 2;
    }
    trellis_options o;
    trellis_options_init(&o);
    o.ack = TRELLIS_ACK_ALL;
    o.timeout_ms = 5000;
    trellis_client *c;
    int st = trellis_connect(argv[1], &o, &c);
    if (st != TRELLIS_OK) {
        fprintf(stderr, "skew_client: %s\n", trellis_strerror(st));
        return 1;
    }
    char line[1024], cmd[16], key[256], val[512];
    while (fgets(line, sizeof(line), stdin)) {
        int n = sscanf(line, "%15s %255s %511s", cmd, key, val);
        if (n < 1)
            continue;
        if (strcmp(cmd, "quit") == 0)
            break;
        if (strcmp(cmd, "wall") == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            answer("wall %" PRIu64, (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000);
        } else if (strcmp(cmd, "writer") == 0) {
            answer("writer %016" PRIx64, trellis_writer_id(c));
        } else if (strcmp(cmd, "put") == 0 && n == 3) {
            st = trellis_put(c, key, strlen(key), val, strlen(val));
            st == TRELLIS_OK ? answer("ok") : answer("err %s", trellis_status_name(st));
        } else if (strcmp(cmd, "get") == 0 && n >= 2) {
            trellis_value *v;
            st = get_lww(c, key, &v);
            if (st == TRELLIS_OK) {
                answer("val %s %" PRIu64 " %016" PRIx64, (const char *)v->items[0].data,
                       v->timestamp, v->writer);
                trellis_value_free(v);
            } else {
                st == TRELLIS_NOT_FOUND ? answer("nil") : answer("err %s", trellis_status_name(st));
            }
        } else if (strcmp(cmd, "seq") == 0 && n == 3) {
            long count = strtol(val, NULL, 10);
            uint64_t first = 0, last = 0;
            int mono = 1;
            long ok = 0;
            for (long i = 0; i < count; i++) {
                char num[32];
                snprintf(num, sizeof(num), "%ld", i);
                if (trellis_put(c, key, strlen(key), num, strlen(num)) != TRELLIS_OK)
                    continue;
                trellis_value *v;
                if (get_lww(c, key, &v) != TRELLIS_OK)
                    continue;
                if (strcmp((const char *)v->items[0].data, num) == 0) {
                    if (ok++ == 0)
                        first = v->timestamp;
                    else if (v->timestamp <= last)
                        mono = 0;
                    last = v->timestamp;
                }
                trellis_value_free(v);
            }
            answer("seq %ld %d %" PRIu64 " %" PRIu64, ok, mono, first, last);
        } else if ((strcmp(cmd, "cput") == 0 || strcmp(cmd, "cputo") == 0) && n == 3) {
            trellis_value *obs = NULL;
            if (strcmp(cmd, "cputo") == 0) {
                st = trellis_causal_get(c, key, strlen(key), &obs);
                if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
                    answer("err %s", trellis_status_name(st));
                    continue;
                }
            }
            st = trellis_causal_put(c, key, strlen(key), obs, val, strlen(val));
            trellis_value_free(obs);
            st == TRELLIS_OK ? answer("ok") : answer("err %s", trellis_status_name(st));
        } else if (strcmp(cmd, "cget") == 0 && n >= 2) {
            trellis_value *v;
            st = trellis_causal_get(c, key, strlen(key), &v);
            if (st == TRELLIS_OK) {
                char out[2048];
                size_t k = (size_t)snprintf(out, sizeof(out), "causal %zu", v->count);
                for (size_t i = 0; i < v->count && k < sizeof(out); i++)
                    k += (size_t)snprintf(out + k, sizeof(out) - k, " %s",
                                          (const char *)v->items[i].data);
                answer("%s", out);
                trellis_value_free(v);
            } else {
                st == TRELLIS_NOT_FOUND ? answer("nil") : answer("err %s", trellis_status_name(st));
            }
        } else {
            answer("err usage");
        }
    }
    trellis_close(c);
    return 0;
}
