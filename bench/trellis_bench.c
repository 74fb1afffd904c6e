/*
 * trellis_bench.c - trellis-bench, the workload generator.
 *
 * A fixed number of client threads issue operations through libtrellis
 * for a duration or an operation count, after a warm-up: keys drawn
 * uniformly or from a zipfian distribution, a read ratio, a value size, a
 * batch size and a lattice type. Each thread keeps `window` calls in flight
 * by running that many synchronous callers (the library is thread-safe and
 * coalesces concurrent operations bound for one shard into one message).
 * Without --rate the load is closed-loop (each caller issues its next call
 * when the previous returns); with --rate (or --phases) it is open-loop: calls
 * are scheduled at the target rate and a call's latency counts from its
 * scheduled start, so that queueing behind a slow server is not hidden.
 *
 * Reports: one line per interval (throughput, latency percentiles from a
 * log-linear histogram, errors), an optional CSV of the intervals with
 * wall-clock timestamps, and a summary; with --json the last line of stdout
 * is one JSON object. docs/benchmarks.md describes the flags and outputs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "base/histogram.h"
#include "bench/keygen.h"
#include "trellis/trellis.h"

#define BENCH_MAX_PHASES  64
#define BENCH_MAX_THREADS 4096
#define BENCH_MAX_BATCH   4096
#define BENCH_MAX_VALUE   (1u << 20)
#define BENCH_LOAD_BATCH  128 /* operations per call while loading */
#define BENCH_SET_MEMBERS 16  /* SET/ORSET writes pick one of this many members */
#define BENCH_KEY_MAX     64

/* ---- options ----------------------------------------------------------------------- */

typedef struct phase {
    double seconds;
    double rate; /* operations per second; 0: as fast as possible */
} phase;

typedef struct bench_opts {
    const char *url;
    int clients;
    int window;
    int connections;
    double duration;
    int duration_set;
    uint64_t ops_limit; /* 0: run for the duration */
    double warmup;
    double interval;
    uint64_t keys;
    double zipf;
    size_t value_size;
    double read_ratio;
    int batch;
    trellis_type lattice;
    double rate;
    phase phases[BENCH_MAX_PHASES];
    int nphases;
    const char *csv;
    int json;
    int load;
    int quiet;
    int sync;
    int timeout_ms;
    int ack_all;
    const char *token;
    const char *prefix;
    uint64_t seed;
} bench_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: trellis-bench [-r URL] [--clients N] [--window W] [--duration S | --ops N]\n"
            "                     [--keys K] [--zipf Z] [--value-size B] [--read-ratio R]\n"
            "                     [--batch N] [--lattice TYPE] [--rate R | --phases S:R,...]\n"
            "                     [--warmup S] [--interval S] [--load] [--csv FILE] [--json]\n"
            "\n"
            "Drives a trellis cluster and reports throughput and latency percentiles.\n"
            "\n"
            "  -r, --router URL     router URL(s), comma separated (default tcp://127.0.0.1:6450)\n"
            "  --clients N          client threads (default 8)\n"
            "  --window W           calls each client keeps in flight (default 1)\n"
            "  --sync               one thread per call in flight, synchronous calls\n"
            "                       (default: asynchronous calls, one thread per client)\n"
            "  --connections C      library instances the threads share (default 1)\n"
            "  --duration S         seconds to measure (default 10; 0 with --load: load only)\n"
            "  --ops N              stop after N operations instead\n"
            "  --warmup S           seconds of load before measuring (default 1)\n"
            "  --interval S         seconds per report line (default 1)\n"
            "  --keys K             key space: keys PREFIX%%012u for 0 <= u < K (default 100000)\n"
            "  --key-prefix P       (default \"key:\", which makes 16-byte keys)\n"
            "  --zipf Z             zipfian exponent; 0 is uniform (default 0)\n"
            "  --value-size B       bytes per written value (default 100)\n"
            "  --read-ratio R       share of reads, 0..1 (default 0.5)\n"
            "  --batch N            operations per call (default 1)\n"
            "  --lattice TYPE       LWW, COUNTER, MAX, SET, ORSET, PRIORITY, CAUSAL (default LWW)\n"
            "  --rate R             open loop: R operations per second in total\n"
            "  --phases S:R,...     open loop in phases of S seconds at R ops/s (R 0: unpaced);\n"
            "                       replaces --duration and --rate\n"
            "  --load               write every key once before measuring\n"
            "  --csv FILE           write the per-interval series to FILE\n"
            "  --json               print a JSON summary as the last line of stdout\n"
            "  --quiet              no per-interval lines, the summary only (and a\n"
            "                       progress line on a terminal)\n"
            "  -t, --timeout MS     deadline of one call (default 2000)\n"
            "  --ack one|all        write acknowledgement (default one)\n"
            "  --token TOKEN        the cluster's shared token\n"
            "  --seed N             random seed (default: from the time)\n"
            "  -h, --help           this text\n");
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    uint64_t v;
    if (parse_u64(s, (uint64_t)lo, (uint64_t)hi, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_lattice(const char *s, trellis_type *out)
{
    static const struct {
        const char *name;
        trellis_type t;
    } names[] = {{"LWW", TRELLIS_TYPE_LWW},          {"SET", TRELLIS_TYPE_SET},
                 {"ORSET", TRELLIS_TYPE_ORSET},      {"COUNTER", TRELLIS_TYPE_COUNTER},
                 {"MAX", TRELLIS_TYPE_MAX},          {"CAUSAL", TRELLIS_TYPE_CAUSAL},
                 {"PRIORITY", TRELLIS_TYPE_PRIORITY}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].t;
            return 0;
        }
    }
    return -1;
}

/* "S:R,S:R,..." */
static int parse_phases(const char *s, bench_opts *o)
{
    char buf[4096];
    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    o->nphases = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon || o->nphases >= BENCH_MAX_PHASES)
            return -1;
        *colon = '\0';
        phase *p = &o->phases[o->nphases];
        if (parse_double(tok, 0.001, 1e7, &p->seconds) != 0 ||
            parse_double(colon + 1, 0, 1e9, &p->rate) != 0)
            return -1;
        o->nphases++;
    }
    return o->nphases > 0 ? 0 : -1;
}

enum {
    OPT_CLIENTS = 256,
    OPT_WINDOW,
    OPT_CONNECTIONS,
    OPT_DURATION,
    OPT_OPS,
    OPT_WARMUP,
    OPT_INTERVAL,
    OPT_KEYS,
    OPT_PREFIX,
    OPT_ZIPF,
    OPT_VSIZE,
    OPT_RATIO,
    OPT_BATCH,
    OPT_LATTICE,
    OPT_RATE,
    OPT_PHASES,
    OPT_LOAD,
    OPT_CSV,
    OPT_JSON,
    OPT_QUIET,
    OPT_SYNC,
    OPT_ACK,
    OPT_TOKEN,
    OPT_SEED,
};

static int bad(const char *opt, const char *val)
{
    fprintf(stderr, "trellis-bench: bad value for %s: '%s'\n", opt, val);
    fprintf(stderr, "see 'trellis-bench --help'\n");
    return 2;
}

/* Returns 0, or an exit status (2 on a usage error, -1 after --help). */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {
        {"router", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"clients", required_argument, NULL, OPT_CLIENTS},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"ops", required_argument, NULL, OPT_OPS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"key-prefix", required_argument, NULL, OPT_PREFIX},
        {"zipf", required_argument, NULL, OPT_ZIPF},
        {"value-size", required_argument, NULL, OPT_VSIZE},
        {"read-ratio", required_argument, NULL, OPT_RATIO},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"lattice", required_argument, NULL, OPT_LATTICE},
        {"rate", required_argument, NULL, OPT_RATE},
        {"phases", required_argument, NULL, OPT_PHASES},
        {"load", no_argument, NULL, OPT_LOAD},
        {"csv", required_argument, NULL, OPT_CSV},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"sync", no_argument, NULL, OPT_SYNC},
        {"ack", required_argument, NULL, OPT_ACK},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"seed", required_argument, NULL, OPT_SEED},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->url = "tcp://127.0.0.1:6450";
    o->clients = 8;
    o->window = 1;
    o->connections = 1;
    o->duration = 10;
    o->warmup = 1;
    o->interval = 1;
    o->keys = 100000;
    o->value_size = 100;
    o->read_ratio = 0.5;
    o->batch = 1;
    o->lattice = TRELLIS_TYPE_LWW;
    o->timeout_ms = 2000;
    o->prefix = "key:";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o->seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    int c;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "r:t:h", longopts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (c) {
        case 'r':
            o->url = optarg;
            break;
        case 't':
            if (parse_int(optarg, 1, 3600000, &o->timeout_ms) != 0)
                return bad(name, optarg);
            break;
        case 'h':
            usage(stdout);
            return -1;
        case OPT_CLIENTS:
            if (parse_int(optarg, 1, BENCH_MAX_THREADS, &o->clients) != 0)
                return bad("--clients", optarg);
            break;
        case OPT_WINDOW:
            if (parse_int(optarg, 1, BENCH_MAX_THREADS, &o->window) != 0)
                return bad("--window", optarg);
            break;
        case OPT_CONNECTIONS:
            if (parse_int(optarg, 1, 64, &o->connections) != 0)
                return bad("--connections", optarg);
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0, 1e7, &o->duration) != 0)
                return bad("--duration", optarg);
            o->duration_set = 1;
            break;
        case OPT_OPS:
            if (parse_u64(optarg, 1, UINT64_MAX / 2, &o->ops_limit) != 0)
                return bad("--ops", optarg);
            break;
        case OPT_WARMUP:
            if (parse_double(optarg, 0, 1e6, &o->warmup) != 0)
                return bad("--warmup", optarg);
            break;
        case OPT_INTERVAL:
            if (parse_double(optarg, 0.05, 3600, &o->interval) != 0)
                return bad("--interval", optarg);
            break;
        case OPT_KEYS:
            if (parse_u64(optarg, 1, UINT64_C(999999999999), &o->keys) != 0)
                return bad("--keys", optarg);
            break;
        case OPT_PREFIX:
            if (strlen(optarg) > 32)
                return bad("--key-prefix", optarg);
            o->prefix = optarg;
            break;
        case OPT_ZIPF:
            if (parse_double(optarg, 0, 100, &o->zipf) != 0)
                return bad("--zipf", optarg);
            break;
        case OPT_VSIZE:
            if (parse_u64(optarg, 1, BENCH_MAX_VALUE, &u) != 0)
                return bad("--value-size", optarg);
            o->value_size = (size_t)u;
            break;
        case OPT_RATIO:
            if (parse_double(optarg, 0, 1, &o->read_ratio) != 0)
                return bad("--read-ratio", optarg);
            break;
        case OPT_BATCH:
            if (parse_int(optarg, 1, BENCH_MAX_BATCH, &o->batch) != 0)
                return bad("--batch", optarg);
            break;
        case OPT_LATTICE:
            if (parse_lattice(optarg, &o->lattice) != 0)
                return bad("--lattice", optarg);
            break;
        case OPT_RATE:
            if (parse_double(optarg, 0, 1e9, &o->rate) != 0)
                return bad("--rate", optarg);
            break;
        case OPT_PHASES:
            if (parse_phases(optarg, o) != 0)
                return bad("--phases", optarg);
            break;
        case OPT_LOAD:
            o->load = 1;
            break;
        case OPT_CSV:
            o->csv = optarg;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_QUIET:
            o->quiet = 1;
            break;
        case OPT_SYNC:
            o->sync = 1;
            break;
        case OPT_ACK:
            if (strcmp(optarg, "one") == 0)
                o->ack_all = 0;
            else if (strcmp(optarg, "all") == 0)
                o->ack_all = 1;
            else
                return bad("--ack", optarg);
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_SEED:
            if (parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0)
                return bad("--seed", optarg);
            break;
        default:
            fprintf(stderr, "see 'trellis-bench --help'\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "trellis-bench: unexpected argument '%s'\nsee 'trellis-bench --help'\n",
                argv[optind]);
        return 2;
    }
    if ((long)o->clients * o->window > BENCH_MAX_THREADS) {
        fprintf(stderr, "trellis-bench: --clients x --window must be at most %d\n",
                BENCH_MAX_THREADS);
        return 2;
    }
    /* Without phases, the run is one phase. */
    if (o->nphases == 0) {
        o->phases[0].seconds = o->duration;
        o->phases[0].rate = o->rate;
        o->nphases = 1;
    } else {
        o->duration = 0;
        for (int i = 0; i < o->nphases; i++)
            o->duration += o->phases[i].seconds;
    }
    return 0;
}

/* ---- time -------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- statistics -------------------------------------------------------------------------- */

/* What a worker counted since the reporter last took it. */
typedef struct tally {
    uint64_t ops, calls, reads, writes, misses, errors;
    uint64_t by_status[TRELLIS_STATUS_COUNT + 1]; /* the last slot: unknown codes */
    histogram lat;                                /* microseconds per call */
} tally;

static void tally_reset(tally *t)
{
    t->ops = t->calls = t->reads = t->writes = t->misses = t->errors = 0;
    memset(t->by_status, 0, sizeof(t->by_status));
    hist_reset(&t->lat);
}

static void tally_add(tally *dst, const tally *src)
{
    dst->ops += src->ops;
    dst->calls += src->calls;
    dst->reads += src->reads;
    dst->writes += src->writes;
    dst->misses += src->misses;
    dst->errors += src->errors;
    for (int i = 0; i <= TRELLIS_STATUS_COUNT; i++)
        dst->by_status[i] += src->by_status[i];
    hist_merge(&dst->lat, &src->lat);
}

/* ---- the run ------------------------------------------------------------------------------- */

typedef struct bench bench;

typedef struct driver driver;

/* One call in flight: a client keeps `window` of them. */
typedef struct worker {
    bench *b;
    int id;
    pthread_t thread; /* --sync: the thread making this caller's calls */
    driver *d;        /* otherwise: the client thread that paces it */
    trellis_client *c;
    trellis_batch *batch;
    kg_rng rng;
    uint8_t *value; /* value_size bytes, varied per write */
    uint8_t is_read[BENCH_MAX_BATCH];
    /* pacing */
    int cur_sched;
    uint64_t base, k;
    double interval_ns;
    uint64_t due;      /* when waiting for its next scheduled call */
    uint64_t start_ns; /* the call in flight: when it started (or was due) */
    struct worker *next_waiting;
    pthread_mutex_t mu;
    tally t; /* under mu */
    atomic_int done;
} worker;

/* A client thread (asynchronous mode): starts its callers' calls and the
 * paced calls that come due; the calls complete and follow each other in
 * the library's callbacks. */
struct driver {
    bench *b;
    pthread_t thread;
    worker *first;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    worker *waiting; /* callers whose next call is not due yet */
    int ndone;
};

struct bench {
    bench_opts o;
    size_t prefix_len;
    keygen kg;
    trellis_client *clients[64];
    worker *w;
    int nw;
    driver *d;
    int nd;
    atomic_int stop;
    atomic_int measuring;
    atomic_uint_fast64_t issued;
    /* the running phase, for paced workers: its index and start; sched
     * changes whenever a schedule (re)starts */
    atomic_int phase;
    atomic_int sched;
    atomic_uint_fast64_t phase_start_ns;
    /* loading */
    atomic_uint_fast64_t load_next;
    atomic_uint_fast64_t load_errors;
};

/* Key number n: the prefix and n in 12 zero-padded digits (as
 * redis-benchmark's __rand_int__). Written by hand: this runs for every
 * operation. */
static size_t key_of(const bench *b, uint64_t n, char *out)
{
    size_t plen = b->prefix_len;
    memcpy(out, b->o.prefix, plen);
    for (int i = 11; i >= 0; i--) {
        out[plen + (size_t)i] = (char)('0' + n % 10);
        n /= 10;
    }
    out[plen + 12] = '\0';
    return plen + 12;
}

/* Adds one write of key to the batch, as the lattice type wants. */
static int add_write(worker *w, const char *key, size_t klen)
{
    bench *b = w->b;
    trellis_batch *bt = w->batch;
    uint64_t r = kg_next(&w->rng);
    size_t vs = b->o.value_size;
    /* Vary the value's first bytes, so that writes are not all equal. */
    memcpy(w->value, &r, vs < 8 ? vs : 8);
    switch (b->o.lattice) {
    case TRELLIS_TYPE_COUNTER:
        return trellis_batch_incrby(bt, key, klen, 1);
    case TRELLIS_TYPE_MAX:
        return trellis_batch_max(bt, key, klen, (int64_t)(r >> 1));
    case TRELLIS_TYPE_SET:
    case TRELLIS_TYPE_ORSET: {
        uint64_t m = r % BENCH_SET_MEMBERS;
        memcpy(w->value, &m, vs < 8 ? vs : 8);
        trellis_bytes member = {w->value, vs};
        return b->o.lattice == TRELLIS_TYPE_SET ? trellis_batch_gadd(bt, key, klen, &member, 1)
                                                : trellis_batch_sadd(bt, key, klen, &member, 1);
    }
    case TRELLIS_TYPE_PRIORITY:
        return trellis_batch_priority_put(bt, key, klen, (int64_t)(r % 1000000), w->value, vs);
    case TRELLIS_TYPE_CAUSAL:
        /* Without an observed state a write is concurrent with the others;
         * each writer's newer value still replaces its older one, so the
         * register holds at most one value per client. */
        return trellis_batch_causal_put(bt, key, klen, NULL, w->value, vs);
    default:
        return trellis_batch_put(bt, key, klen, w->value, vs);
    }
}

/* Counts the outcome of the worker's executed batch into a tally. */
static void count_batch(worker *w, uint64_t start_ns, tally *into, pthread_mutex_t *mu,
                        const uint8_t *is_read)
{
    trellis_batch *bt = w->batch;
    uint64_t end = now_ns();
    size_t n = trellis_batch_count(bt);
    if (mu)
        pthread_mutex_lock(mu);
    into->calls++;
    into->ops += n;
    hist_record(&into->lat, end > start_ns ? (end - start_ns) / 1000 : 0);
    for (size_t i = 0; i < n; i++) {
        int st = trellis_batch_status(bt, i);
        if (is_read && is_read[i])
            into->reads++;
        else
            into->writes++;
        if (st == TRELLIS_OK)
            continue;
        if (st == TRELLIS_NOT_FOUND) {
            into->misses++;
            continue;
        }
        into->errors++;
        into->by_status[st > 0 && st < TRELLIS_STATUS_COUNT ? st : TRELLIS_STATUS_COUNT]++;
    }
    if (mu)
        pthread_mutex_unlock(mu);
}

/* Executes the worker's batch and counts the outcome. */
static void run_batch(worker *w, uint64_t start_ns, tally *into, pthread_mutex_t *mu,
                      const uint8_t *is_read)
{
    trellis_batch_exec(w->c, w->batch);
    count_batch(w, start_ns, into, mu, is_read);
}

enum { NEXT_STOP = 0, NEXT_GO, NEXT_WAIT };

/* Decides the worker's next call: NEXT_STOP, NEXT_GO (*start: when it
 * starts, the scheduled time when paced, so that latency counts from it),
 * or NEXT_WAIT (not due before w->due). */
static int next_call(worker *w, uint64_t *start)
{
    bench *b = w->b;
    const bench_opts *o = &b->o;
    if (atomic_load(&b->stop))
        return NEXT_STOP;
    uint64_t now = now_ns();
    int sc = atomic_load(&b->sched);
    if (sc != w->cur_sched) {
        /* A new phase restarts the schedule; callers start staggered over
         * one interval. */
        w->cur_sched = sc;
        int ph = atomic_load(&b->phase);
        double rate = o->phases[ph].rate;
        w->interval_ns = rate > 0 ? (double)b->nw * o->batch / rate * 1e9 : 0;
        w->base =
            (uint64_t)atomic_load(&b->phase_start_ns) + (uint64_t)(w->interval_ns * w->id / b->nw);
        w->k = 0;
    }
    uint64_t at = now;
    if (w->interval_ns > 0) {
        at = w->base + (uint64_t)(w->interval_ns * (double)w->k);
        if (at > now) {
            w->due = at;
            return NEXT_WAIT;
        }
        w->k++;
    }
    if (o->ops_limit && atomic_load(&b->measuring) &&
        atomic_fetch_add(&b->issued, (uint64_t)o->batch) >= o->ops_limit)
        return NEXT_STOP;
    *start = at;
    return NEXT_GO;
}

/* Fills the worker's batch with its next operations; -1 on failure. */
static int fill_batch(worker *w)
{
    bench *b = w->b;
    const bench_opts *o = &b->o;
    char key[BENCH_KEY_MAX];
    trellis_batch_clear(w->batch);
    for (int i = 0; i < o->batch; i++) {
        size_t klen = key_of(b, keygen_next(&b->kg, &w->rng), key);
        w->is_read[i] = kg_unit(&w->rng) < o->read_ratio;
        int rc = w->is_read[i] ? trellis_batch_get(w->batch, key, klen, o->lattice)
                               : add_write(w, key, klen);
        if (rc < 0) {
            fprintf(stderr, "trellis-bench: cannot build a batch: %s\n", trellis_strerror(-rc));
            atomic_store(&b->stop, 1);
            return -1;
        }
    }
    return 0;
}

/* --sync: one thread per call in flight. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    for (;;) {
        uint64_t start;
        int next = next_call(w, &start);
        if (next == NEXT_STOP)
            break;
        if (next == NEXT_WAIT) {
            /* In slices, so that a stop or a phase change is seen. */
            uint64_t now = now_ns(), slice = 100000000u;
            sleep_until_ns(w->due - now > slice ? now + slice : w->due);
            continue;
        }
        if (fill_batch(w) != 0)
            break;
        run_batch(w, start, &w->t, &w->mu, w->is_read);
    }
    (void)b;
    atomic_store(&w->done, 1);
    return NULL;
}

/* ---- asynchronous callers -------------------------------------------------------------------- */

static void caller_next(worker *w);

static void caller_done(trellis_batch *bt, int status, void *arg)
{
    worker *w = arg;
    (void)bt;
    (void)status;
    count_batch(w, w->start_ns, &w->t, &w->mu, w->is_read);
    caller_next(w);
}

/* Starts the caller's next call, hands it to its driver until it is due,
 * or retires it. Runs on the driver or in the library's callbacks. */
static void caller_next(worker *w)
{
    driver *d = w->d;
    for (;;) {
        uint64_t start;
        int next = next_call(w, &start);
        if (next == NEXT_WAIT) {
            pthread_mutex_lock(&d->mu);
            w->next_waiting = d->waiting;
            d->waiting = w;
            pthread_cond_signal(&d->cv);
            pthread_mutex_unlock(&d->mu);
            return;
        }
        if (next == NEXT_STOP || fill_batch(w) != 0)
            break;
        w->start_ns = start;
        int rc = trellis_batch_exec_async(w->c, w->batch, caller_done, w);
        if (rc == TRELLIS_OK)
            return;
        fprintf(stderr, "trellis-bench: cannot start a call: %s\n", trellis_strerror(rc));
        atomic_store(&w->b->stop, 1);
        break;
    }
    atomic_store(&w->done, 1);
    pthread_mutex_lock(&d->mu);
    d->ndone++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void *driver_main(void *arg)
{
    driver *d = arg;
    for (int i = 0; i < d->n; i++)
        caller_next(&d->first[i]);
    pthread_mutex_lock(&d->mu);
    while (d->ndone < d->n) {
        if (!d->waiting) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        uint64_t now = now_ns(), wake = now + 100000000u;
        worker *due = NULL;
        int stop = atomic_load(&d->b->stop);
        int sc = atomic_load(&d->b->sched);
        for (worker **pp = &d->waiting; *pp;) {
            worker *w = *pp;
            if (w->due <= now || stop || sc != w->cur_sched) {
                *pp = w->next_waiting;
                w->next_waiting = due;
                due = w;
                continue;
            }
            if (w->due < wake)
                wake = w->due;
            pp = &w->next_waiting;
        }
        if (!due) {
            struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
            pthread_cond_timedwait(&d->cv, &d->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&d->mu);
        while (due) {
            worker *w = due;
            due = w->next_waiting;
            caller_next(w);
        }
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Takes what every worker counted since the last call. */
static void collect(bench *b, tally *into)
{
    for (int i = 0; i < b->nw; i++) {
        worker *w = &b->w[i];
        pthread_mutex_lock(&w->mu);
        tally_add(into, &w->t);
        tally_reset(&w->t);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- loading ------------------------------------------------------------------------------- */

static void *load_main(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    char key[BENCH_KEY_MAX];
    tally scratch;
    for (;;) {
        uint64_t from = atomic_fetch_add(&b->load_next, BENCH_LOAD_BATCH);
        if (from >= b->o.keys || atomic_load(&b->stop))
            break;
        uint64_t to = from + BENCH_LOAD_BATCH < b->o.keys ? from + BENCH_LOAD_BATCH : b->o.keys;
        trellis_batch_clear(w->batch);
        for (uint64_t n = from; n < to; n++) {
            size_t klen = key_of(b, n, key);
            if (add_write(w, key, klen) < 0)
                break;
        }
        tally_reset(&scratch);
        run_batch(w, now_ns(), &scratch, NULL, NULL);
        atomic_fetch_add(&b->load_errors, scratch.errors);
    }
    return NULL;
}

static int load_keys(bench *b)
{
    uint64_t t0 = now_ns();
    atomic_store(&b->load_next, 0);
    int n = b->nw < 64 ? b->nw : 64;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&b->w[i].thread, NULL, load_main, &b->w[i]) != 0) {
            n = i;
            break;
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(b->w[i].thread, NULL);
    double s = (double)(now_ns() - t0) / 1e9;
    uint64_t errs = atomic_load(&b->load_errors);
    fprintf(stderr,
            "trellis-bench: loaded %" PRIu64 " keys in %.1f s (%.0f keys/s), %" PRIu64 " errors\n",
            b->o.keys, s, s > 0 ? (double)b->o.keys / s : 0, errs);
    return n == 0 ? -1 : 0;
}

/* ---- reporting ------------------------------------------------------------------------------- */

static void print_interval(const bench *b, double elapsed, double secs, const tally *t,
                           double target)
{
    if (b->o.quiet) {
        /* A progress line on a terminal, overwritten in place. */
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "\r%7.1f s %11.0f ops/s  p99 %7" PRIu64 " us  errors %" PRIu64 "   ",
                    elapsed, secs > 0 ? (double)t->ops / secs : 0, hist_quantile(&t->lat, 0.99),
                    t->errors);
        return;
    }
    printf("%8.1f s %11.0f ops/s  p50 %6" PRIu64 "  p99 %7" PRIu64 "  p99.9 %7" PRIu64
           " us  errors %" PRIu64,
           elapsed, secs > 0 ? (double)t->ops / secs : 0, hist_quantile(&t->lat, 0.50),
           hist_quantile(&t->lat, 0.99), hist_quantile(&t->lat, 0.999), t->errors);
    if (target > 0)
        printf("  (target %.0f)", target);
    printf("\n");
    fflush(stdout);
}

static void csv_row(FILE *f, double wall, double elapsed, int ph, double target, double secs,
                    const tally *t)
{
    if (!f)
        return;
    fprintf(f,
            "%.3f,%.3f,%d,%.0f,%" PRIu64 ",%.1f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
            ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.1f\n",
            wall, elapsed, ph, target, t->ops, secs > 0 ? (double)t->ops / secs : 0, t->reads,
            t->writes, t->misses, t->errors, hist_quantile(&t->lat, 0.50),
            hist_quantile(&t->lat, 0.99), hist_quantile(&t->lat, 0.999), t->lat.max,
            hist_mean(&t->lat));
    fflush(f);
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    return CPU_COUNT(&set);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void counters_sum(bench *b, trellis_counters *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < b->o.connections; i++) {
        trellis_counters c;
        trellis_get_counters(b->clients[i], &c);
        out->calls += c.calls;
        out->ops += c.ops;
        out->requests += c.requests;
        out->retries += c.retries;
        out->wrong_shard += c.wrong_shard;
        out->unreachable += c.unreachable;
        out->ring_fetches += c.ring_fetches;
        out->unreachable_waits += c.unreachable_waits;
    }
}

static void print_summary(const bench *b, double secs, const tally *t, const trellis_counters *cn,
                          double cpu)
{
    const bench_opts *o = &b->o;
    double ops_s = secs > 0 ? (double)t->ops / secs : 0;
    printf("\n%" PRIu64 " operations in %.2f s: %.0f ops/s (%.0f calls/s)\n", t->ops, secs, ops_s,
           secs > 0 ? (double)t->calls / secs : 0);
    printf("latency per call (us): p50 %" PRIu64 "  p99 %" PRIu64 "  p99.9 %" PRIu64
           "  max %" PRIu64 "  mean %.1f\n",
           hist_quantile(&t->lat, 0.50), hist_quantile(&t->lat, 0.99),
           hist_quantile(&t->lat, 0.999), t->lat.max, hist_mean(&t->lat));
    printf("reads %" PRIu64 " (%" PRIu64 " missing)  writes %" PRIu64 "  errors %" PRIu64, t->reads,
           t->misses, t->writes, t->errors);
    if (t->errors) {
        printf(" (");
        const char *sep = "";
        for (int i = 0; i <= TRELLIS_STATUS_COUNT; i++) {
            if (!t->by_status[i])
                continue;
            printf("%s%s %" PRIu64, sep,
                   i < TRELLIS_STATUS_COUNT ? trellis_status_name(i) : "OTHER", t->by_status[i]);
            sep = ", ";
        }
        printf(")");
    }
    printf("\n");
    printf("client: %" PRIu64 " requests to shards (%.1f operations per request), %" PRIu64
           " retries (%" PRIu64 " waits for unreachable shards), %.2f CPU s (%.1f us per "
           "operation)\n",
           cn->requests, cn->requests ? (double)cn->ops / (double)cn->requests : 0, cn->retries,
           cn->unreachable_waits, cpu, t->ops ? cpu * 1e6 / (double)t->ops : 0);
    if (!o->json)
        return;
    printf("{\"ops_per_sec\":%.1f,\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
           ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f,\"errors\":%" PRIu64
           ",\"errors_by_kind\":{",
           ops_s, hist_quantile(&t->lat, 0.50), hist_quantile(&t->lat, 0.99),
           hist_quantile(&t->lat, 0.999), t->lat.max, hist_mean(&t->lat), t->errors);
    const char *sep = "";
    for (int i = 0; i <= TRELLIS_STATUS_COUNT; i++) {
        if (!t->by_status[i])
            continue;
        printf("%s\"%s\":%" PRIu64, sep,
               i < TRELLIS_STATUS_COUNT ? trellis_status_name(i) : "OTHER", t->by_status[i]);
        sep = ",";
    }
    double target = 0;
    if (o->nphases == 1)
        target = o->phases[0].rate;
    printf("},\"ops\":%" PRIu64 ",\"calls\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
           ",\"misses\":%" PRIu64 ",\"duration_s\":%.3f,\"requests\":%" PRIu64
           ",\"ops_per_request\":%.2f,\"retries\":%" PRIu64 ",\"unreachable_waits\":%" PRIu64
           ",\"client_cpu_s\":%.3f"
           ",\"clients\":%d,\"window\":%d,\"batch\":%d,\"keys\":%" PRIu64
           ",\"zipf\":%g,\"value_size\":%zu,\"read_ratio\":%g,\"lattice\":\"%s\","
           "\"target_rate\":%.0f,\"cpus\":%d}\n",
           t->ops, t->calls, t->reads, t->writes, t->misses, secs, cn->requests,
           cn->requests ? (double)cn->ops / (double)cn->requests : 0, cn->retries,
           cn->unreachable_waits, cpu, o->clients, o->window, o->batch, o->keys, o->zipf,
           o->value_size, o->read_ratio, trellis_type_name(o->lattice), target, cpu_count());
}

/* ---- main ---------------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int setup(bench *b)
{
    const bench_opts *o = &b->o;
    trellis_options opts;
    trellis_options_init(&opts);
    opts.timeout_ms = o->timeout_ms;
    opts.ack = o->ack_all ? TRELLIS_ACK_ALL : TRELLIS_ACK_ONE;
    opts.auth_token = o->token;
    for (int i = 0; i < o->connections; i++) {
        int rc = trellis_connect(o->url, &opts, &b->clients[i]);
        if (rc != TRELLIS_OK) {
            fprintf(stderr, "trellis-bench: cannot connect to %s: %s\n", o->url,
                    trellis_strerror(rc));
            return -1;
        }
    }
    b->nw = o->clients * o->window;
    b->w = calloc((size_t)b->nw, sizeof(*b->w));
    if (!b->w)
        return -1;
    for (int i = 0; i < b->nw; i++) {
        worker *w = &b->w[i];
        w->b = b;
        w->id = i;
        w->c = b->clients[i % o->connections];
        w->batch = trellis_batch_new();
        w->value = malloc(o->value_size);
        if (!w->batch || !w->value)
            return -1;
        for (size_t j = 0; j < o->value_size; j++)
            w->value[j] = (uint8_t)('a' + (j + (size_t)i) % 26);
        kg_rng_seed(&w->rng, o->seed * 1000003u + (uint64_t)i);
        pthread_mutex_init(&w->mu, NULL);
        tally_reset(&w->t);
        w->cur_sched = -1;
    }
    if (!o->sync) {
        /* Client i drives callers [i * window, (i + 1) * window). */
        b->nd = o->clients;
        b->d = calloc((size_t)b->nd, sizeof(*b->d));
        if (!b->d)
            return -1;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        for (int i = 0; i < b->nd; i++) {
            driver *d = &b->d[i];
            d->b = b;
            d->first = &b->w[i * o->window];
            d->n = o->window;
            pthread_mutex_init(&d->mu, NULL);
            pthread_cond_init(&d->cv, &ca);
            for (int j = 0; j < d->n; j++)
                d->first[j].d = d;
        }
        pthread_condattr_destroy(&ca);
    }
    keygen_init(&b->kg, o->keys, o->zipf);
    b->prefix_len = strlen(o->prefix);
    return 0;
}

static void teardown(bench *b)
{
    for (int i = 0; b->w && i < b->nw; i++) {
        trellis_batch_free(b->w[i].batch);
        free(b->w[i].value);
        pthread_mutex_destroy(&b->w[i].mu);
    }
    free(b->w);
    for (int i = 0; b->d && i < b->nd; i++) {
        pthread_mutex_destroy(&b->d[i].mu);
        pthread_cond_destroy(&b->d[i].cv);
    }
    free(b->d);
    for (int i = 0; i < b->o.connections; i++)
        trellis_close(b->clients[i]);
    /* nng frees closed sockets on its own threads: wait for them before
     * the process exits. */
    nng_fini();
}

static int all_done(const bench *b)
{
    for (int i = 0; i < b->nw; i++)
        if (!atomic_load(&b->w[i].done))
            return 0;
    return 1;
}

/* Sleeps until t (monotonic ns) or until every worker finished. */
static void wait_until(bench *b, uint64_t t)
{
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t || interrupted || all_done(b))
            return;
        uint64_t step = t - now < 50000000u ? t - now : 50000000u;
        sleep_until_ns(now + step);
    }
}

int main(int argc, char **argv)
{
    static bench B;
    bench *b = &B;
    int rc = parse_args(argc, argv, &b->o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    const bench_opts *o = &b->o;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    FILE *csv = NULL;
    if (o->csv) {
        csv = fopen(o->csv, "w");
        if (!csv) {
            fprintf(stderr, "trellis-bench: cannot write %s: %s\n", o->csv, strerror(errno));
            return 1;
        }
        fprintf(csv, "time_unix,elapsed_s,phase,target_ops_per_sec,ops,ops_per_sec,reads,writes,"
                     "misses,errors,p50_us,p99_us,p999_us,max_us,mean_us\n");
        fflush(csv);
    }
    if (setup(b) != 0) {
        teardown(b);
        if (csv)
            fclose(csv);
        return 1;
    }
    char dist[32] = "uniform";
    if (o->zipf > 0)
        snprintf(dist, sizeof(dist), "zipf %.2g", o->zipf);
    printf("trellis-bench: %s, %d clients x window %d%s, batch %d, %s, %.0f%% reads, %zu-byte "
           "values, %" PRIu64 " keys (%s), %d cpus\n",
           o->url, o->clients, o->window, o->sync ? " (synchronous)" : "", o->batch,
           trellis_type_name(o->lattice), o->read_ratio * 100, o->value_size, o->keys, dist,
           cpu_count());
    fflush(stdout);
    if (o->load && load_keys(b) != 0) {
        teardown(b);
        if (csv)
            fclose(csv);
        return 1;
    }
    if (o->duration <= 0 && !o->ops_limit) {
        /* --load alone: nothing to measure. */
        teardown(b);
        if (csv)
            fclose(csv);
        return 0;
    }

    /* Workers start in phase 0; the warm-up runs it too. */
    atomic_store(&b->phase, 0);
    atomic_store(&b->phase_start_ns, now_ns());
    int started = 0, nthreads = o->sync ? b->nw : b->nd;
    for (int i = 0; i < nthreads; i++) {
        int prc = o->sync ? pthread_create(&b->w[i].thread, NULL, worker_main, &b->w[i])
                          : pthread_create(&b->d[i].thread, NULL, driver_main, &b->d[i]);
        if (prc != 0) {
            fprintf(stderr, "trellis-bench: cannot start thread %d\n", i);
            atomic_store(&b->stop, 1);
            break;
        }
        started++;
    }
    tally acc, total;
    if (started == nthreads && o->warmup > 0) {
        uint64_t t0 = now_ns();
        wait_until(b, t0 + (uint64_t)(o->warmup * 1e9));
        tally_reset(&acc);
        collect(b, &acc);
        double s = (double)(now_ns() - t0) / 1e9;
        if (!o->quiet)
            printf("warm-up  %11.0f ops/s  p99 %" PRIu64 " us  errors %" PRIu64 "\n",
                   s > 0 ? (double)acc.ops / s : 0, hist_quantile(&acc.lat, 0.99), acc.errors);
    }

    trellis_counters c0, c1;
    counters_sum(b, &c0);
    double cpu0 = cpu_seconds();
    tally_reset(&total);
    tally_reset(&acc);
    collect(b, &acc); /* drop what straddled the warm-up's end */
    tally_reset(&acc);
    uint64_t start = now_ns();
    atomic_store(&b->issued, 0);
    atomic_store(&b->measuring, 1);
    /* Phase 0 restarts its schedule at the measurement's start. */
    atomic_store(&b->phase_start_ns, start);
    atomic_fetch_add(&b->sched, 1);
    uint64_t interval_ns = (uint64_t)(o->interval * 1e9);
    uint64_t last = start, next_tick = start + interval_ns;
    uint64_t phase_end = start + (uint64_t)(o->phases[0].seconds * 1e9);
    int ph = 0;
    /* --ops without --duration: the count alone decides. */
    uint64_t end = o->ops_limit && !o->duration_set && o->nphases == 1
                       ? UINT64_MAX
                       : start + (uint64_t)(o->duration * 1e9);
    while (started == nthreads && !interrupted && !all_done(b)) {
        uint64_t next = next_tick < end ? next_tick : end;
        if (o->nphases > 1 && phase_end < next)
            next = phase_end;
        wait_until(b, next);
        uint64_t now = now_ns();
        int phase_over = o->nphases > 1 && now >= phase_end && ph + 1 < o->nphases;
        /* An interval ends at every tick and at every phase's end. */
        if (now >= next_tick || now >= end || phase_over || all_done(b) || interrupted) {
            collect(b, &acc);
            double secs = (double)(now - last) / 1e9;
            double elapsed = (double)(now - start) / 1e9;
            print_interval(b, elapsed, secs, &acc, o->phases[ph].rate);
            csv_row(csv, wall_s(), elapsed, ph, o->phases[ph].rate, secs, &acc);
            tally_add(&total, &acc);
            tally_reset(&acc);
            last = now;
            while (next_tick <= now)
                next_tick += interval_ns;
        }
        if (phase_over) {
            ph++;
            atomic_store(&b->phase_start_ns, phase_end);
            atomic_store(&b->phase, ph);
            atomic_fetch_add(&b->sched, 1);
            phase_end += (uint64_t)(o->phases[ph].seconds * 1e9);
        }
        if (now >= end)
            break;
    }
    if (o->quiet && isatty(STDERR_FILENO))
        fprintf(stderr, "\n");
    atomic_store(&b->stop, 1);
    for (int i = 0; i < started; i++) {
        if (o->sync)
            pthread_join(b->w[i].thread, NULL);
        else
            pthread_join(b->d[i].thread, NULL);
    }
    uint64_t stop = now_ns();
    collect(b, &acc);
    tally_add(&total, &acc);
    counters_sum(b, &c1);
    trellis_counters d;
    d.calls = c1.calls - c0.calls;
    d.ops = c1.ops - c0.ops;
    d.requests = c1.requests - c0.requests;
    d.retries = c1.retries - c0.retries;
    d.wrong_shard = c1.wrong_shard - c0.wrong_shard;
    d.unreachable = c1.unreachable - c0.unreachable;
    d.ring_fetches = c1.ring_fetches - c0.ring_fetches;
    d.unreachable_waits = c1.unreachable_waits - c0.unreachable_waits;
    print_summary(b, (double)(stop - start) / 1e9, &total, &d, cpu_seconds() - cpu0);
    fflush(stdout);
    teardown(b);
    if (csv)
        fclose(csv);
    return started == nthreads ? 0 : 1;
}
