/*
 * lattice_bench.c - throughput of the lattice library: per type, merges per
 * second of typical small states, decodes (lat_validate) per second, and
 * tagged merges per second (validate both operands, then merge: the work
 * of the storage merge operator). Each figure is the median of three runs.
 *
 * Usage: trellis-lattice-bench [--seconds N]   (N: seconds per run)
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lattices/lattice.h"

#define BENCH_RUNS            3
#define BENCH_DEFAULT_SECONDS 0.3
#define BENCH_MAX_SECONDS     60.0
#define BENCH_BATCH           256 /* calls between clock reads */
#define BENCH_VALUE_BYTES     100
#define BENCH_SET_MEMBERS     10
#define BENCH_COUNTER_WRITERS 8

/* The two operands of one type's measurement. */
typedef struct bench_case {
    lat_type type;
    const char *shape;
    lat_buf a, b;   /* a: the state, b: what is merged into it */
    lat_buf ta, tb; /* the same, tagged */
} bench_case;

static volatile size_t bench_sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void must(int rc, const char *what)
{
    if (rc != TRELLIS_OK) {
        fprintf(stderr, "lattice_bench: %s failed (%d)\n", what, rc);
        exit(1);
    }
}

static void merge_into(lat_type t, lat_buf *acc, const lat_buf *d)
{
    must(lat_merge(t, acc->data, acc->len, d->data, d->len, acc), "merge");
}

static void tag(const lat_buf *s, lat_type t, lat_buf *out)
{
    uint8_t type = (uint8_t)t;
    must(lat_buf_set(out, &type, 1), "tag");
    must(lat_buf_reserve(out, s->len), "tag");
    memcpy(out->data + 1, s->data, s->len);
    out->len += s->len;
}

/* A member or value name: "member-00", "member-01", ... */
static void name(char *buf, size_t cap, const char *prefix, int i)
{
    snprintf(buf, cap, "%s-%02d", prefix, i);
}

/* Builds the typical operands of type t into c. */
static void build(bench_case *c, lat_type t)
{
    char value[BENCH_VALUE_BYTES], m[32];
    lat_buf d = {0};
    memset(value, 'v', sizeof value);
    c->type = t;
    switch (t) {
    case LAT_LWW:
        c->shape = "100 B values";
        must(lat_lww_encode(1000, 1, 0, value, sizeof value, &c->a), "lww");
        must(lat_lww_encode(1001, 2, 0, value, sizeof value, &c->b), "lww");
        break;
    case LAT_SET:
        c->shape = "10 members + 1";
        must(lat_set_encode(NULL, 0, &c->a), "set");
        for (int i = 0; i < BENCH_SET_MEMBERS; i++) {
            lat_slice s = {(const uint8_t *)m, 0};
            name(m, sizeof m, "member", 2 * i);
            s.len = strlen(m);
            must(lat_set_encode(&s, 1, &d), "set");
            merge_into(t, &c->a, &d);
        }
        {
            lat_slice s = {(const uint8_t *)m, 0};
            name(m, sizeof m, "member", 7);
            s.len = strlen(m);
            must(lat_set_encode(&s, 1, &c->b), "set");
        }
        break;
    case LAT_ORSET:
        c->shape = "10 members + 1 add";
        must(lat_orset_remove_all(NULL, 0, &c->a), "orset");
        for (int i = 0; i < BENCH_SET_MEMBERS; i++) {
            name(m, sizeof m, "member", 2 * i);
            must(lat_orset_add(m, strlen(m), 1 + (uint64_t)i % 3, 100 + (uint64_t)i, &d), "add");
            merge_into(t, &c->a, &d);
        }
        name(m, sizeof m, "member", 7);
        must(lat_orset_add(m, strlen(m), 2, 500, &c->b), "add");
        break;
    case LAT_COUNTER:
        c->shape = "8 writers + 1";
        must(lat_counter_encode(0, 0, 0, &c->a), "counter");
        for (int i = 0; i < BENCH_COUNTER_WRITERS; i++) {
            must(lat_counter_encode(0x1000 * (uint64_t)(i + 1), 50 + (uint64_t)i, 3, &d), "ctr");
            merge_into(t, &c->a, &d);
        }
        must(lat_counter_encode(0x3000, 60, 3, &c->b), "counter");
        break;
    case LAT_MAX:
        c->shape = "i64";
        must(lat_max_encode(-5, &c->a), "max");
        must(lat_max_encode(7, &c->b), "max");
        break;
    case LAT_CAUSAL:
        c->shape = "2 values + 1 write";
        must(lat_causal_put(NULL, 0, 1, 10, value, 20, 0, &c->a), "causal");
        must(lat_causal_put(NULL, 0, 2, 12, value, 20, 0, &d), "causal");
        merge_into(t, &c->a, &d);
        must(lat_causal_put(NULL, 0, 3, 4, value, 20, 0, &c->b), "causal");
        break;
    case LAT_PRIORITY:
        c->shape = "100 B values";
        must(lat_priority_encode(5, 1, value, sizeof value, &c->a), "priority");
        must(lat_priority_encode(3, 2, value, sizeof value, &c->b), "priority");
        break;
    case LAT_MAP:
        c->shape = "10 fields + 1 set";
        must(lat_map_remove_all(NULL, 0, &c->a), "map");
        for (int i = 0; i < BENCH_SET_MEMBERS; i++) {
            name(m, sizeof m, "field", 2 * i);
            must(lat_map_set(NULL, 0, m, strlen(m), 1 + (uint64_t)i % 3, 100 + (uint64_t)i, value,
                             20, &d),
                 "map set");
            merge_into(t, &c->a, &d);
        }
        name(m, sizeof m, "field", 7);
        must(lat_map_set(NULL, 0, m, strlen(m), 2, 500, value, 20, &c->b), "map set");
        break;
    case LAT_NONE:
        break;
    }
    tag(&c->a, t, &c->ta);
    tag(&c->b, t, &c->tb);
    lat_buf_free(&d);
}

enum { OP_MERGE, OP_VALIDATE, OP_TAGGED, OP_COUNT };

/* Operations per second of one op on c over `seconds`. */
static double run(const bench_case *c, int op, double seconds, lat_buf *out)
{
    long n = 0;
    double start = now(), end = start + seconds, t = start;
    size_t sink = 0;
    while (t < end) {
        for (int i = 0; i < BENCH_BATCH; i++) {
            switch (op) {
            case OP_MERGE:
                must(lat_merge(c->type, c->a.data, c->a.len, c->b.data, c->b.len, out), "merge");
                sink += out->len;
                break;
            case OP_VALIDATE:
                sink += (size_t)lat_validate(c->type, c->a.data, c->a.len);
                break;
            default:
                must(lat_tagged_merge(c->ta.data, c->ta.len, c->tb.data, c->tb.len, out, NULL),
                     "tagged merge");
                sink += out->len;
                break;
            }
        }
        n += BENCH_BATCH;
        t = now();
    }
    bench_sink += sink;
    return (double)n / (t - start);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median_of_runs(const bench_case *c, int op, double seconds, lat_buf *out)
{
    double v[BENCH_RUNS];
    for (int i = 0; i < BENCH_RUNS; i++)
        v[i] = run(c, op, seconds, out);
    qsort(v, BENCH_RUNS, sizeof v[0], cmp_double);
    return v[BENCH_RUNS / 2];
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--seconds N]  (seconds per run, default %.1f, at most %.0f)\n",
            prog, BENCH_DEFAULT_SECONDS, BENCH_MAX_SECONDS);
    return 2;
}

int main(int argc, char **argv)
{
    double seconds = BENCH_DEFAULT_SECONDS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end != '\0' || !(seconds > 0 && seconds <= BENCH_MAX_SECONDS))
                return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }

    lat_buf out = {0};
    printf("trellis lattice bench: median of %d runs of %.2f s each\n", BENCH_RUNS, seconds);
    printf("%-9s %-20s %7s %7s %14s %14s %16s\n", "type", "operands", "state", "delta", "merges/s",
           "validates/s", "tagged merges/s");
    for (int t = LAT_TYPE_FIRST; t <= LAT_TYPE_LAST; t++) {
        bench_case c = {0};
        build(&c, (lat_type)t);
        double r[OP_COUNT];
        for (int op = 0; op < OP_COUNT; op++)
            r[op] = median_of_runs(&c, op, seconds, &out);
        printf("%-9s %-20s %6zuB %6zuB %14.0f %14.0f %16.0f\n", lat_type_name((lat_type)t), c.shape,
               c.a.len, c.b.len, r[OP_MERGE], r[OP_VALIDATE], r[OP_TAGGED]);
        lat_buf_free(&c.a);
        lat_buf_free(&c.b);
        lat_buf_free(&c.ta);
        lat_buf_free(&c.tb);
    }
    lat_buf_free(&out);
    return 0;
}
