/*
 * test_tsan_cluster.c - a whole cluster in one process, for
 * ThreadSanitizer: a router and storage nodes run on threads of this
 * process (router_step, node_run), so that every shard loop, gossip round,
 * hand-off, anti-entropy exchange and client call happens in instrumented
 * code, while client threads (libtrellis) write and read.
 *
 * Two memory nodes serve with two replicas per key (gossip and
 * anti-entropy between them all along) over a disk node (one replica:
 * memory-tier misses read through to it, anti-entropy checks across the
 * tiers); a third memory node joins under load and then departs
 * (node_stop) under load, twice. Each client thread has a client of
 * its own (its own writer id) and adds unique members to ORSET keys,
 * increments COUNTER keys and overwrites LWW keys of its own; half of them
 * with ack=all, half with ack=one. At the end every replica of every key
 * must hold the same bytes, every acknowledged member must be there and
 * nothing else, every writer's counter entry must lie between what it had
 * acknowledged and what it had sent, every LWW key must hold its writer's
 * last acknowledged value or a later one.
 *
 * A plain executable (its own main; prints "N passed, M failed" and exits
 * non-zero on failure): ThreadSanitizer cannot run Criterion binaries. It
 * runs in every build and, with -DTRELLIS_TSAN=ON, under ThreadSanitizer
 * (tests/run.sh), which makes the process exit non-zero on any report.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <nng/nng.h>

#include "base/clock.h"
#include "server/config.h"
#include "lattices/lattice.h"
#include "base/log.h"
#include "kvs/node.h"
#include "placement/ring.h"
#include "routing/route.h"
#define TCHECK_PLAIN
#include "tsupport.h"
#include "trellis/trellis.h"

#define WRITERS      4
#define SET_KEYS     4
#define COUNTER_KEYS 3
#define LWW_KEYS     2
#define MAX_MEMBERS  20000
#define SHARDS       2

static int passed, failed;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", ok ? "ok" : "FAIL");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (ok)
        passed++;
    else
        failed++;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- in-process daemons ---------------------------------------------------------------- */

static tcluster cl; /* for its directory and port range: its processes run here */

typedef struct router_th {
    router *r;
    pthread_t th;
    atomic_int stop;
} router_th;

static void *router_main(void *arg)
{
    router_th *rt = arg;
    while (!atomic_load(&rt->stop))
        router_step(rt->r, 20);
    return NULL;
}

typedef struct node_th {
    char id[16];
    config cfg;
    node *n;
    pthread_t th;
    int running;
    int status;
} node_th;

static void *node_main(void *arg)
{
    node_th *nt = arg;
    nt->status = node_run(nt->n);
    return NULL;
}

static void base_config(config *cfg)
{
    static const char *const pairs[] = {
        "cluster.vnodes=32",
        "cluster.memory_replicas=2",
        "cluster.disk_replicas=1",
        "kvs.gossip_period_ms=50",
        "kvs.anti_entropy_period_ms=300",
        "kvs.heartbeat_period_ms=100",
        "kvs.stats_period_ms=500",
        "kvs.join_timeout_ms=20000",
        "kvs.drain_timeout_ms=30000",
        "kvs.handoff_batch_keys=64",
        "route.node_timeout_ms=30000", /* TSan is slow: nobody is DEAD here */
        "route.gossip_period_ms=200",
    };
    char err[CONFIG_ERR_MAX];
    config_defaults(cfg);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (config_set_pair(cfg, pairs[i], err, sizeof(err)) != 0)
            fprintf(stderr, "config %s: %s\n", pairs[i], err);
    cfg->cluster.routers.n = 1;
    snprintf(cfg->cluster.routers.v[0], CONFIG_STR_MAX, "tcp://127.0.0.1:%d", cl.port_base);
    cfg->route.port = cl.port_base;
    cfg->route.metrics_port = cl.port_base + 1;
}

/* Ports: the router, its metrics, then 2 x SHARDS + 1 per node slot (the
 * shards, the control port, the data plane), then a metrics port per
 * slot. */
#define SLOTS              4
#define SLOT_PORTS         (2 * SHARDS + 1)
#define METRICS_PORT(slot) (cl.port_base + 2 + SLOTS * SLOT_PORTS + (slot))

static int node_start(node_th *nt, int slot, int tier)
{
    base_config(&nt->cfg);
    snprintf(nt->id, sizeof(nt->id), "%c%d", tier == RING_TIER_DISK ? 'd' : 'm', slot);
    snprintf(nt->cfg.kvs.id, CONFIG_STR_MAX, "%s", nt->id);
    nt->cfg.kvs.tier = tier;
    nt->cfg.kvs.threads = SHARDS;
    nt->cfg.kvs.port_base = cl.port_base + 2 + slot * SLOT_PORTS;
    nt->cfg.kvs.metrics_port = METRICS_PORT(slot);
    snprintf(nt->cfg.kvs.data_dir, CONFIG_STR_MAX, "%s", cl.dir);
    if (node_open(&nt->cfg, &nt->n) != TRELLIS_OK)
        return -1;
    if (pthread_create(&nt->th, NULL, node_main, nt) != 0) {
        node_close(nt->n);
        return -1;
    }
    nt->running = 1;
    return 0;
}

/* Waits until node_run returned (after the departure, if any). */
static int node_wait_exit(node_th *nt, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (clock_mono_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(nt->th, NULL, &ts) == 0) {
            nt->running = 0;
            return 0;
        }
    }
    return -1;
}

/* Closes a node whose node_run returned. Its shards still answer (a
 * departed node refuses clients with WRONG_SHARD) until then; closing a
 * raw rep socket while its connections still carry requests can leave
 * nng 1.5.2's reaper waiting forever for a task that never starts
 * (nanomsg/nng#1543, #1813), so clients and peers are first given a
 * moment to learn the ring without it. */
static void node_finish(node_th *nt, int quiet_ms)
{
    sleep_ms(quiet_ms);
    node_close(nt->n);
    nt->n = NULL;
}

/* The phase the test is in, for the watchdog. */
static const char *volatile phase = "start";

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: the test did not finish in time; phase: ";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    w = write(STDERR_FILENO, phase, strlen(phase));
    w = write(STDERR_FILENO, "\n0 passed, 1 failed\n", 21);
    (void)w;
    _exit(2);
}

static int wait_state(const char *id, int state, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        if (tkv_node_state(cl.router_url, id, NULL) == state)
            return 0;
        sleep_ms(50);
    } while (clock_mono_ms() < end);
    return -1;
}

/* ---- HTTP pollers and shared-client readers ------------------------------------------------- */

static atomic_int stop_pollers;
static atomic_ulong http_pages, shared_reads;

/* Reads every metrics page while the daemons change state underneath. */
static void *poller_main(void *arg)
{
    (void)arg;
    static const char *const paths[] = {"/metrics", "/healthz"};
    for (unsigned i = 0; !atomic_load(&stop_pollers); i++) {
        for (int p = 0; p <= SLOTS; p++) {
            int port = p == 0 ? cl.port_base + 1 : METRICS_PORT(p - 1);
            if (thttp_get(port, paths[i % 2], NULL, 0) > 0)
                atomic_fetch_add(&http_pages, 1);
        }
        sleep_ms(100);
    }
    return NULL;
}

static trellis_client *shared; /* one client, several threads */

static void *reader_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[64];
    trellis_batch *b = trellis_batch_new();
    for (unsigned i = 0; b && !atomic_load(&stop_pollers); i++) {
        snprintf(key, sizeof(key), "tsan/set/%u", i % SET_KEYS);
        trellis_value *v = NULL;
        if (trellis_smembers(shared, key, strlen(key), &v) == TRELLIS_OK)
            atomic_fetch_add(&shared_reads, 1);
        trellis_value_free(v);
        trellis_batch_clear(b);
        for (int k = 0; k < 3; k++) {
            snprintf(key, sizeof(key), "tsan/cnt/%d", k);
            trellis_batch_get(b, key, strlen(key), TRELLIS_TYPE_COUNTER);
        }
        snprintf(key, sizeof(key), "tsan/reader/%d", id);
        trellis_batch_incrby(b, key, strlen(key), 1);
        if (trellis_batch_exec(shared, b) == TRELLIS_OK)
            atomic_fetch_add(&shared_reads, 1);
        if (id == 0 && i % 20 == 0)
            trellis_refresh(shared);
    }
    trellis_batch_free(b);
    return NULL;
}

/* ---- client threads ---------------------------------------------------------------------- */

typedef struct writer {
    int id;
    trellis_ack ack;
    trellis_client *c;
    uint64_t wid; /* writer id */
    pthread_t th;
    /* results, read after the join */
    uint32_t members; /* members sent: "w<id>-<n>" for n < members */
    uint8_t *acked;   /* acked[n]: SADD of member n acknowledged */
    uint64_t sent_total[COUNTER_KEYS], acked_total[COUNTER_KEYS];
    uint32_t lww_acked[LWW_KEYS]; /* last acknowledged value number (0: none) */
    uint32_t lww_sent[LWW_KEYS];
    uint64_t ok, fail, reads;
} writer;

static atomic_int stop_writers;

static void key_name(char *buf, size_t cap, const char *kind, int k)
{
    snprintf(buf, cap, "tsan/%s/%d", kind, k);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    char key[64], mem[64];
    uint64_t i = 0;
    while (!atomic_load(&stop_writers) && w->members < MAX_MEMBERS) {
        int kind = (int)(i++ % 4);
        int st;
        if (kind <= 1) {
            uint32_t n = w->members++;
            key_name(key, sizeof(key), "set", (int)(n % SET_KEYS));
            trellis_bytes m = {mem, (size_t)snprintf(mem, sizeof(mem), "w%d-%u", w->id, n)};
            st = trellis_sadd(w->c, key, strlen(key), &m, 1);
            w->acked[n] = st == TRELLIS_OK;
        } else if (kind == 2) {
            int k = (int)(i / 4 % COUNTER_KEYS);
            int64_t d = (int64_t)(i % 3) + 1;
            key_name(key, sizeof(key), "cnt", k);
            w->sent_total[k] += (uint64_t)d;
            st = trellis_incrby(w->c, key, strlen(key), d, NULL);
            if (st == TRELLIS_OK)
                w->acked_total[k] = w->sent_total[k];
        } else {
            int k = (int)(i / 4 % LWW_KEYS);
            snprintf(key, sizeof(key), "tsan/lww/%d/%d", w->id, k);
            uint32_t v = ++w->lww_sent[k];
            snprintf(mem, sizeof(mem), "%u", v);
            st = trellis_put(w->c, key, strlen(key), mem, strlen(mem));
            if (st == TRELLIS_OK)
                w->lww_acked[k] = v;
            /* A read of a key of every kind, through the same client. */
            void *val = NULL;
            size_t vlen;
            if (trellis_get(w->c, key, strlen(key), &val, &vlen) == TRELLIS_OK)
                w->reads++;
            trellis_free(val);
        }
        if (st == TRELLIS_OK)
            w->ok++;
        else
            w->fail++;
    }
    return NULL;
}

/* ---- checks ------------------------------------------------------------------------------------
 */

/* Reads key from every replica shard (both tiers) under the router's
 * current ring; 1
 * when all answered the same state (copied to out, without the type byte),
 * 0 otherwise. */
static int read_replicas(const char *key, lat_type lt, lat_buf *out, char *why, size_t cap)
{
    ring *r;
    if (tkv_fetch_ring(cl.router_url, &r, NULL) != TRELLIS_OK) {
        snprintf(why, cap, "no ring");
        return 0;
    }
    wire_arena *a = wire_arena_new();
    int agree = 1, n = 0;
    static const int tiers[] = {RING_TIER_MEMORY, RING_TIER_DISK};
    for (int t = 0; t < 2 && agree; t++)
        for (size_t nth = 0; agree; nth++) {
            char url[RING_MAX_URL + 1];
            if (tkv_replica_url(r, tiers[t], nth, key, strlen(key), url, sizeof(url)) != TRELLIS_OK)
                break;
            Trellis__KeyOp *op = tkv_op_get(a, key, strlen(key), lt);
            Trellis__KvReply *rep;
            int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
            if (rc != TRELLIS_OK || rep->results[0]->status != TRELLIS__STATUS__OK) {
                snprintf(why, cap, "%s at %s: %s", key, url,
                         trellis_status_name(rc != TRELLIS_OK ? rc : (int)rep->results[0]->status));
                agree = 0;
                break;
            }
            const ProtobufCBinaryData *v = &rep->results[0]->value;
            if (n++ == 0) {
                lat_buf_set(out, v->data, v->len);
            } else if (v->len != out->len || memcmp(v->data, out->data, v->len) != 0) {
                snprintf(why, cap, "%s: replicas differ (%zu and %zu bytes)", key, out->len,
                         v->len);
                agree = 0;
            }
            wire_arena_reset(a);
        }
    if (agree && n == 0) {
        snprintf(why, cap, "%s: no replica", key);
        agree = 0;
    }
    wire_arena_free(a);
    ring_free(r);
    return agree;
}

/* Waits until every replica of key agrees (replication is asynchronous). */
static int read_converged(const char *key, lat_type t, lat_buf *out, char *why, size_t cap)
{
    uint64_t end = clock_mono_ms() + 30000;
    do {
        if (read_replicas(key, t, out, why, cap))
            return 1;
        sleep_ms(200);
    } while (clock_mono_ms() < end);
    return 0;
}

static void check_sets(writer *w)
{
    lat_buf st;
    lat_buf_init(&st);
    char key[64], why[256], mem[64];
    size_t missing = 0, foreign = 0, acked = 0;
    for (int k = 0; k < SET_KEYS; k++) {
        key_name(key, sizeof(key), "set", k);
        int ok = read_converged(key, LAT_ORSET, &st, why, sizeof(why));
        check(ok, "set %s: every replica holds the same state%s%s", key, ok ? "" : ": ",
              ok ? "" : why);
        if (!ok)
            continue;
        size_t pos = 0;
        lat_slice m;
        while (lat_orset_next(st.data, st.len, &pos, &m) == 1) {
            int wid;
            unsigned n;
            char tail;
            snprintf(mem, sizeof(mem), "%.*s", (int)m.len, (const char *)m.data);
            if (sscanf(mem, "w%d-%u%c", &wid, &n, &tail) != 2 || wid < 0 || wid >= WRITERS ||
                n >= w[wid].members || n % SET_KEYS != (unsigned)k) {
                if (foreign++ == 0)
                    fprintf(stderr, "  %s holds %s, which nobody wrote there\n", key, mem);
            }
        }
        for (int i = 0; i < WRITERS; i++)
            for (uint32_t n = (uint32_t)k; n < w[i].members; n += SET_KEYS) {
                if (!w[i].acked[n])
                    continue;
                acked++;
                int len = snprintf(mem, sizeof(mem), "w%d-%u", i, n);
                if (!lat_orset_contains(st.data, st.len, mem, (size_t)len) && missing++ == 0)
                    fprintf(stderr, "  %s lacks %s, whose SADD was acknowledged\n", key, mem);
            }
    }
    check(missing == 0, "sets: %zu acknowledged members, %zu missing", acked, missing);
    check(foreign == 0, "sets: %zu members nobody wrote", foreign);
    lat_buf_free(&st);
}

static void check_counters(writer *w)
{
    lat_buf st;
    lat_buf_init(&st);
    char key[64], why[256];
    for (int k = 0; k < COUNTER_KEYS; k++) {
        key_name(key, sizeof(key), "cnt", k);
        int ok = read_converged(key, LAT_COUNTER, &st, why, sizeof(why));
        check(ok, "counter %s: every replica holds the same state%s%s", key, ok ? "" : ": ",
              ok ? "" : why);
        if (!ok)
            continue;
        for (int i = 0; i < WRITERS; i++) {
            uint64_t inc = 0, dec = 0;
            lat_counter_entry(st.data, st.len, w[i].wid, &inc, &dec);
            check(inc >= w[i].acked_total[k] && inc <= w[i].sent_total[k] && dec == 0,
                  "counter %s, writer %d: %" PRIu64 " within [%" PRIu64 ", %" PRIu64 "]", key, i,
                  inc, w[i].acked_total[k], w[i].sent_total[k]);
        }
    }
    lat_buf_free(&st);
}

static void check_lww(writer *w)
{
    lat_buf st;
    lat_buf_init(&st);
    char key[64], why[256];
    size_t bad = 0, keys = 0;
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < LWW_KEYS; k++) {
            if (!w[i].lww_sent[k])
                continue;
            keys++;
            snprintf(key, sizeof(key), "tsan/lww/%d/%d", i, k);
            if (!read_converged(key, LAT_LWW, &st, why, sizeof(why))) {
                if (bad++ == 0)
                    fprintf(stderr, "  %s\n", why);
                continue;
            }
            uint64_t ts, wr;
            int tomb;
            lat_slice v;
            lat_lww_view(st.data, st.len, &ts, &wr, &tomb, &v);
            char num[32];
            snprintf(num, sizeof(num), "%.*s", (int)v.len, (const char *)v.data);
            unsigned long got = strtoul(num, NULL, 10);
            if (tomb || wr != w[i].wid || got < w[i].lww_acked[k] || got > w[i].lww_sent[k]) {
                if (bad++ == 0)
                    fprintf(stderr, "  %s holds %lu, last acknowledged %u, last sent %u\n", key,
                            got, w[i].lww_acked[k], w[i].lww_sent[k]);
            }
        }
    check(bad == 0, "lww: %zu keys hold their writer's last acknowledged value or a later one",
          keys);
    lat_buf_free(&st);
}

/* ---- main
 * ---------------------------------------------------------------------------------------- */

int main(void)
{
    node_block_signals();
    signal(SIGALRM, watchdog);
    alarm(200);
    /* Info level by default: logging is part of what runs concurrently. */
    const char *lv = getenv("TRELLIS_TEST_LOG_LEVEL");
    log_set_level(lv && log_level_parse(lv) >= 0 ? log_level_parse(lv) : LOG_LVL_INFO);
    if (tcluster_init(&cl, "tsan") != 0) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(cl.router_url, sizeof(cl.router_url), "tcp://127.0.0.1:%d", cl.port_base);
    uint64_t t0 = clock_mono_ms();

    router_th rt;
    memset(&rt, 0, sizeof(rt));
    config rcfg;
    base_config(&rcfg);
    int rc = router_open(&rcfg, &rt.r);
    check(rc == TRELLIS_OK, "router open: %s", trellis_strerror(rc));
    if (rc != TRELLIS_OK)
        goto out;
    pthread_create(&rt.th, NULL, router_main, &rt);

    /* Slots 0, 1: memory nodes; 2: the memory node that joins and
     * departs; 3: a disk node (read-through, cross-tier anti-entropy). */
    static node_th nodes[SLOTS];
    static const int serving[] = {0, 1, 3};
    for (int k = 0; k < 3; k++) {
        int i = serving[k];
        check(node_start(&nodes[i], i, i == 3 ? RING_TIER_DISK : RING_TIER_MEMORY) == 0,
              "node %d starts", i);
    }
    for (int k = 0; k < 3; k++) {
        int i = serving[k];
        check(nodes[i].running && wait_state(nodes[i].id, NODE_ACTIVE, 30000) == 0,
              "node %s ACTIVE", nodes[i].id);
    }

    static writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].id = i;
        w[i].ack = i % 2 ? TRELLIS_ACK_ONE : TRELLIS_ACK_ALL;
        w[i].acked = calloc(MAX_MEMBERS, 1);
        trellis_options o;
        trellis_options_init(&o);
        o.ack = w[i].ack;
        o.timeout_ms = 10000;
        rc = trellis_connect(cl.router_url, &o, &w[i].c);
        check(rc == TRELLIS_OK && w[i].acked, "writer %d connects: %s", i, trellis_strerror(rc));
        if (rc != TRELLIS_OK)
            continue;
        w[i].wid = trellis_writer_id(w[i].c);
        pthread_create(&w[i].th, NULL, writer_main, &w[i]);
    }
    pthread_t poller, readers[2];
    pthread_create(&poller, NULL, poller_main, NULL);
    rc = trellis_connect(cl.router_url, NULL, &shared);
    check(rc == TRELLIS_OK, "shared client connects: %s", trellis_strerror(rc));
    for (int i = 0; i < 2 && shared; i++)
        pthread_create(&readers[i], NULL, reader_main, (void *)(intptr_t)i);
    phase = "load";
    sleep_ms(1000);

    /* A third node joins under load, then departs under load; twice (the
     * second time under a new generation, with the same id and ports). */
    for (int round = 0; round < 2; round++) {
        uint64_t tj = clock_mono_ms();
        check(node_start(&nodes[2], 2, RING_TIER_MEMORY) == 0, "node m2 starts");
        int joined = nodes[2].running && wait_state("m2", NODE_ACTIVE, 60000) == 0;
        check(joined, "node m2 joins (ACTIVE after %llu ms)",
              (unsigned long long)(clock_mono_ms() - tj));
        sleep_ms(1000);
        if (nodes[2].running) {
            uint64_t td = clock_mono_ms();
            phase = "m2 departs";
            node_stop(nodes[2].n);
            int left = node_wait_exit(&nodes[2], 90000) == 0;
            check(left && nodes[2].status == 0, "node m2 departs (exit %d after %llu ms)",
                  nodes[2].status, (unsigned long long)(clock_mono_ms() - td));
            if (!left)
                break;
            phase = "m2 closes";
            node_finish(&nodes[2], 1000);
        }
        sleep_ms(500);
    }
    atomic_store(&stop_writers, 1);
    atomic_store(&stop_pollers, 1);
    pthread_join(poller, NULL);
    for (int i = 0; i < 2 && shared; i++)
        pthread_join(readers[i], NULL);
    trellis_close(shared);
    check(atomic_load(&http_pages) > 0 && atomic_load(&shared_reads) > 0,
          "%lu metrics pages and %lu reads through a shared client meanwhile",
          (unsigned long)atomic_load(&http_pages), (unsigned long)atomic_load(&shared_reads));
    uint64_t ops = 0, fails = 0;
    for (int i = 0; i < WRITERS; i++) {
        if (!w[i].c)
            continue;
        pthread_join(w[i].th, NULL);
        ops += w[i].ok + w[i].fail;
        fails += w[i].fail;
    }
    check(ops > 0 && fails * 10 <= ops, "writers: %" PRIu64 " operations, %" PRIu64 " failed", ops,
          fails);

    phase = "checks";
    check_sets(w);
    check_counters(w);
    check_lww(w);

    for (int i = 0; i < WRITERS; i++) {
        trellis_close(w[i].c);
        free(w[i].acked);
    }
    /* The whole cluster stops (no hand-off): every node leaves its loop,
     * then the nodes close. */
    phase = "shutdown";
    for (int i = 0; i < SLOTS; i++)
        if (nodes[i].running) {
            node_stop(nodes[i].n);
            node_stop(nodes[i].n);
            check(node_wait_exit(&nodes[i], 30000) == 0, "node %s stops", nodes[i].id);
        }
    for (int i = 0, first = 1; i < SLOTS; i++)
        if (nodes[i].n && !nodes[i].running) {
            node_finish(&nodes[i], first ? 500 : 0);
            first = 0;
        }
    atomic_store(&rt.stop, 1);
    pthread_join(rt.th, NULL);
    router_close(rt.r);
out:
    tcluster_fini(&cl);
    nng_fini();
    fprintf(stderr, "took %llu ms\n", (unsigned long long)(clock_mono_ms() - t0));
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
