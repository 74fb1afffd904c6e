/*
 * chaos.c - the chaos test: a seeded nemesis against a cluster in network
 * namespaces while clients run Jepsen's set and counter workloads with
 * ack=all; after the faults heal and the cluster is quiet, a checker reads
 * every replica (check.c). docs/hardening.md explains how to run it.
 *
 *   test_chaos [--minutes M] [--seed S] [--keep] [--schedule]
 *
 * The nemesis's schedule is a pure function of the seed (printed first,
 * and again at the end): the same seed replays the same faults in the same
 * order with the same durations; the timing of the cluster's own work
 * around them varies. Every storage node also starts with message faults
 * drawn from the seed (kvs.fault_drop_percent, fault_dup_percent,
 * fault_delay_ms: lost, duplicated and delayed replication messages).
 *
 * Faults, one episode at a time (inject, hold, heal, wait for the cluster
 * to be whole again):
 *   kill          kill -9 a storage node, start it again
 *   pause         SIGSTOP a storage node, SIGCONT
 *   partition     split processes (and the clients) in two; both sides keep
 *                 at least one memory and one disk node with any router
 *   isolate       cut one storage node off from everything, clients too
 *   leave         a storage node departs (SIGTERM: hand-off, LEFT), later
 *                 joins again under the same id
 *   router-kill   kill -9 a router, start it again
 *   router-pause  SIGSTOP a router, SIGCONT
 *   crash-leaving a storage node is killed -9 while it departs, then starts
 *                 again
 *   leave+kill    a storage node departs while a memory node is killed -9;
 *                 both come back after the departure
 *   double-kill   two nodes of one tier killed -9 (one of three is left)
 *   memory-wipe   every memory node killed -9; they come back empty
 * Half the partitions also kill -9 a memory node while they last.
 * With ack=all every acknowledged write is on every replica of the
 * client's ring, which always holds a disk replica under these rules, so
 * none may be lost.
 *
 * Needs root (network namespaces, nftables); exits 77 (skipped) without.
 * Exit status 0 when every check holds, 1 otherwise; the run's directory
 * (logs, history.txt) is kept on failure.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "chaos.h"
#include "placement/ring.h"

#define CH_SKIP 77

enum {
    EV_KILL,
    EV_PAUSE,
    EV_PARTITION,
    EV_ISOLATE,
    EV_LEAVE,
    EV_ROUTER_KILL,
    EV_ROUTER_PAUSE,
    EV_CRASH_LEAVING,
    EV_LEAVE_KILL,
    EV_DOUBLE_KILL,
    EV_MEMORY_WIPE,
    EV_KINDS,
};

static const char *const ev_names[EV_KINDS] = {
    "kill",         "pause",         "partition",  "isolate",     "leave",      "router-kill",
    "router-pause", "crash-leaving", "leave+kill", "double-kill", "memory-wipe"};
static const unsigned ev_weights[EV_KINDS] = {3, 2, 3, 2, 2, 1, 1, 1, 1, 2, 1};

typedef struct episode {
    int kind;
    int target;         /* process index (kill, pause, isolate, leave, router-*) */
    uint32_t side;      /* partition: bit i set = process i on side B */
    int client_side;    /* partition: 0 with side A, 1 with side B, -1 reaches both */
    int second;         /* partition, leave+kill: a memory node killed meanwhile (-1: none) */
    uint32_t second_ms; /* when, after the first fault */
    uint32_t hold_ms, gap_ms;
} episode;

typedef struct schedule {
    episode *e;
    size_t n;
} schedule;

/* ---- the schedule ------------------------------------------------------------------------------
 */

static int side_ok(uint32_t side, int b)
{
    /* Processes on side b (bit set == b): with a router, the side needs a
     * memory and a disk node, so that the rings its routers make keep a
     * replica in each tier. */
    int routers = 0, mem = 0, disk = 0, any = 0;
    for (int i = 0; i < CH_PROCS; i++) {
        if ((int)((side >> i) & 1u) != b)
            continue;
        any = 1;
        if (i < CH_ROUTERS)
            routers++;
        else if (i < CH_ROUTERS + CH_MEMORY_NODES)
            mem++;
        else
            disk++;
    }
    return any && (!routers || (mem && disk));
}

static void schedule_make(schedule *s, uint64_t seed, uint64_t duration_ms)
{
    trand r;
    trand_seed(&r, seed, NULL);
    unsigned total = 0;
    for (int k = 0; k < EV_KINDS; k++)
        total += ev_weights[k];
    size_t cap = 16;
    s->e = malloc(cap * sizeof(*s->e));
    s->n = 0;
    /* Plan for a little more than the duration: episodes also take the
     * cluster's recovery time, which the plan cannot know. */
    for (uint64_t planned = 0; planned < duration_ms * 2 && s->e;) {
        if (s->n == cap) {
            cap *= 2;
            episode *ne = realloc(s->e, cap * sizeof(*ne));
            if (!ne)
                break;
            s->e = ne;
        }
        episode *e = &s->e[s->n++];
        memset(e, 0, sizeof(*e));
        e->second = -1;
        unsigned pick = (unsigned)(trand_u64(&r) % total);
        for (e->kind = 0; pick >= ev_weights[e->kind]; e->kind++)
            pick -= ev_weights[e->kind];
        switch (e->kind) {
        case EV_KILL:
        case EV_PAUSE:
        case EV_ISOLATE:
        case EV_LEAVE:
            e->target = (int)trand_range(&r, CH_ROUTERS, CH_PROCS - 1);
            e->hold_ms = (uint32_t)trand_range(&r, 500, e->kind == EV_ISOLATE ? 5000 : 4000);
            break;
        case EV_ROUTER_KILL:
        case EV_ROUTER_PAUSE:
            e->target = (int)trand_range(&r, 0, CH_ROUTERS - 1);
            e->hold_ms = (uint32_t)trand_range(&r, 500, 3000);
            break;
        case EV_PARTITION:
            do
                e->side = (uint32_t)(trand_u64(&r) & ((1u << CH_PROCS) - 1));
            while (!side_ok(e->side, 0) || !side_ok(e->side, 1));
            e->client_side = (int)trand_range(&r, 0, 2) - 1;
            e->hold_ms = (uint32_t)trand_range(&r, 2000, 6000);
            /* Half the partitions also lose a memory node for good (its
             * memory, that is: it restarts empty when the partition heals). */
            if (trand_u64(&r) % 2) {
                e->second = (int)trand_range(&r, CH_ROUTERS, CH_ROUTERS + CH_MEMORY_NODES - 1);
                e->second_ms = (uint32_t)trand_range(&r, 0, e->hold_ms - 500);
            }
            break;
        case EV_CRASH_LEAVING:
            /* A node killed -9 while it hands its keys off. */
            e->target = (int)trand_range(&r, CH_ROUTERS, CH_PROCS - 1);
            e->second_ms = (uint32_t)trand_range(&r, 0, 2000);
            e->hold_ms = (uint32_t)trand_range(&r, 500, 3000);
            break;
        case EV_DOUBLE_KILL: {
            /* Two nodes of one tier at once: one of the three is left. */
            int base = trand_u64(&r) % 2 ? CH_ROUTERS : CH_ROUTERS + CH_MEMORY_NODES;
            e->target = base + (int)trand_range(&r, 0, 2);
            e->second = base + (e->target - base + (int)trand_range(&r, 1, 2)) % 3;
            e->second_ms = (uint32_t)trand_range(&r, 0, 500);
            e->hold_ms = (uint32_t)trand_range(&r, 1000, 4000);
            break;
        }
        case EV_MEMORY_WIPE:
            /* The whole memory tier is killed: clients write to the disk
             * tier alone, and the memory nodes come back empty. */
            e->hold_ms = (uint32_t)trand_range(&r, 1000, 4000);
            break;
        case EV_LEAVE_KILL:
            /* A node departs while a memory node (maybe one its keys go to)
             * is killed -9, and comes back only after the departure. */
            e->target = (int)trand_range(&r, CH_ROUTERS, CH_PROCS - 1);
            do
                e->second = (int)trand_range(&r, CH_ROUTERS, CH_ROUTERS + CH_MEMORY_NODES - 1);
            while (e->second == e->target);
            e->second_ms = (uint32_t)trand_range(&r, 0, 1000);
            e->hold_ms = (uint32_t)trand_range(&r, 500, 3000);
            break;
        }
        e->gap_ms = (uint32_t)trand_range(&r, 300, 1500);
        planned += e->hold_ms + e->gap_ms + 1500;
    }
}

static void episode_describe(const ch_cluster *c, const episode *e, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%-13s ", ev_names[e->kind]);
    if (e->kind == EV_CRASH_LEAVING) {
        snprintf(buf + n, cap - (size_t)n, "%s, killed %u ms into its departure, down %u ms",
                 c->procs[e->target].id, e->second_ms, e->hold_ms);
        return;
    }
    if (e->kind == EV_DOUBLE_KILL) {
        snprintf(buf + n, cap - (size_t)n, "%s and, %u ms later, %s for %u ms",
                 c->procs[e->target].id, e->second_ms, c->procs[e->second].id, e->hold_ms);
        return;
    }
    if (e->kind == EV_MEMORY_WIPE) {
        snprintf(buf + n, cap - (size_t)n, "every memory node for %u ms", e->hold_ms);
        return;
    }
    if (e->kind == EV_LEAVE_KILL) {
        snprintf(buf + n, cap - (size_t)n, "%s departs, %s killed %u ms later; back after %u ms",
                 c->procs[e->target].id, c->procs[e->second].id, e->second_ms, e->hold_ms);
        return;
    }
    if (e->kind != EV_PARTITION) {
        snprintf(buf + n, cap - (size_t)n, "%s for %u ms", c->procs[e->target].id, e->hold_ms);
        return;
    }
    for (int b = 0; b < 2; b++) {
        n += snprintf(buf + n, cap - (size_t)n, "%s", b ? " | " : "{");
        for (int i = 0; i < CH_PROCS; i++)
            if ((int)((e->side >> i) & 1u) == b)
                n += snprintf(buf + n, cap - (size_t)n, "%s ", c->procs[i].id);
        if (e->client_side == b)
            n += snprintf(buf + n, cap - (size_t)n, "clients ");
    }
    n += snprintf(buf + n, cap - (size_t)n, "} for %u ms", e->hold_ms);
    if (e->second >= 0)
        snprintf(buf + n, cap - (size_t)n, ", %s killed after %u ms", c->procs[e->second].id,
                 e->second_ms);
}

/* ---- running it
 * ---------------------------------------------------------------------------------- */

typedef struct run_stats {
    unsigned done[EV_KINDS];
    unsigned slow_recoveries; /* the cluster was not whole within the deadline */
    unsigned failed_departures;
    unsigned faulty_starts;
} run_stats;

static void count_start(const ch_proc *p, run_stats *st)
{
    if (p->kind != CH_ROUTER && (p->drop || p->dup || p->delay)) {
        st->faulty_starts++;
        ch_log("  %s started with message faults: drop %d%%, duplicate %d%%, delay <= %d ms", p->id,
               p->drop, p->dup, p->delay);
    }
}

static int start_proc(ch_cluster *c, ch_proc *p, run_stats *st)
{
    int rc = ch_start(c, p);
    count_start(p, st);
    return rc;
}

static void partition(ch_cluster *c, const episode *e)
{
    for (int i = 0; i < CH_PROCS; i++) {
        int b = (int)((e->side >> i) & 1u);
        const char *ips[CH_PROCS + 1];
        int n = 0;
        for (int j = 0; j < CH_PROCS; j++)
            if ((int)((e->side >> j) & 1u) != b)
                ips[n++] = c->procs[j].ip;
        if (e->client_side >= 0 && e->client_side != b)
            ips[n++] = c->client_ip;
        if (n)
            ch_cut(c, &c->procs[i], ips, n);
    }
}

static void isolate(ch_cluster *c, const ch_proc *p)
{
    const char *ips[CH_PROCS + 1];
    int n = 0;
    for (int j = 0; j < CH_PROCS; j++)
        if (&c->procs[j] != p)
            ips[n++] = c->procs[j].ip;
    ips[n++] = c->client_ip;
    ch_cut(c, p, ips, n);
}

static void heal_all(ch_cluster *c, run_stats *st)
{
    for (int i = 0; i < CH_PROCS; i++) {
        ch_resume(&c->procs[i]);
        ch_heal(c, &c->procs[i]);
    }
    for (int i = 0; i < CH_PROCS; i++)
        if (!c->procs[i].p)
            start_proc(c, &c->procs[i], st);
}

static void run_episode(ch_cluster *c, const episode *e, run_stats *st)
{
    ch_proc *p = &c->procs[e->target];
    switch (e->kind) {
    case EV_KILL:
    case EV_ROUTER_KILL:
        ch_kill9(p);
        tsleep_ms((int)(e->hold_ms));
        start_proc(c, p, st);
        break;
    case EV_PAUSE:
    case EV_ROUTER_PAUSE:
        ch_pause(p);
        tsleep_ms((int)(e->hold_ms));
        ch_resume(p);
        break;
    case EV_PARTITION:
        partition(c, e);
        if (e->second >= 0) {
            tsleep_ms((int)(e->second_ms));
            ch_kill9(&c->procs[e->second]);
            tsleep_ms((int)(e->hold_ms - e->second_ms));
        } else {
            tsleep_ms((int)(e->hold_ms));
        }
        for (int i = 0; i < CH_PROCS; i++)
            ch_heal(c, &c->procs[i]);
        if (e->second >= 0)
            start_proc(c, &c->procs[e->second], st);
        break;
    case EV_ISOLATE:
        isolate(c, p);
        tsleep_ms((int)(e->hold_ms));
        ch_heal(c, p);
        break;
    case EV_LEAVE: {
        uint64_t t = ch_now_ms();
        if (ch_term(p, 30000) != 0) {
            st->failed_departures++;
            ch_log("FAIL: %s did not depart cleanly within 30 s (exit status not 0)", p->id);
        } else {
            ch_log("  %s departed in %llu ms", p->id, (unsigned long long)(ch_now_ms() - t));
        }
        tsleep_ms((int)(e->hold_ms));
        start_proc(c, p, st);
        break;
    }
    case EV_DOUBLE_KILL:
        ch_kill9(p);
        tsleep_ms((int)(e->second_ms));
        ch_kill9(&c->procs[e->second]);
        tsleep_ms((int)(e->hold_ms));
        start_proc(c, p, st);
        start_proc(c, &c->procs[e->second], st);
        break;
    case EV_MEMORY_WIPE:
        for (int i = CH_ROUTERS; i < CH_ROUTERS + CH_MEMORY_NODES; i++)
            ch_kill9(&c->procs[i]);
        tsleep_ms((int)(e->hold_ms));
        for (int i = CH_ROUTERS; i < CH_ROUTERS + CH_MEMORY_NODES; i++)
            start_proc(c, &c->procs[i], st);
        break;
    case EV_CRASH_LEAVING:
        if (p->p)
            kill(tproc_pid(p->p), SIGTERM);
        tsleep_ms((int)(e->second_ms));
        ch_kill9(p);
        tsleep_ms((int)(e->hold_ms));
        start_proc(c, p, st);
        break;
    case EV_LEAVE_KILL: {
        ch_proc *q = &c->procs[e->second];
        if (p->p)
            kill(tproc_pid(p->p), SIGTERM);
        tsleep_ms((int)(e->second_ms));
        ch_kill9(q);
        uint64_t t = ch_now_ms();
        if (ch_wait_exit(p, 30000) != 0) {
            st->failed_departures++;
            ch_log("FAIL: %s did not depart cleanly within 30 s (exit status not 0)", p->id);
        } else {
            ch_log("  %s departed in %llu ms", p->id, (unsigned long long)(ch_now_ms() - t));
        }
        tsleep_ms((int)(e->hold_ms));
        start_proc(c, q, st);
        start_proc(c, p, st);
        break;
    }
    }
}

/* ---- main
 * -------------------------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: test_chaos [--minutes M] [--seed S] [--keep] [--schedule]\n");
}

int main(int argc, char **argv)
{
    double minutes = 2;
    uint64_t seed = 0;
    int have_seed = 0, keep = 0, only_schedule = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--minutes") == 0 && i + 1 < argc) {
            minutes = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
            have_seed = 1;
        } else if (strcmp(argv[i], "--keep") == 0) {
            keep = 1;
        } else if (strcmp(argv[i], "--schedule") == 0) {
            only_schedule = 1;
        } else {
            usage();
            return 2;
        }
    }
    const char *env_seed = getenv("TRELLIS_SEED");
    if (!have_seed && env_seed && *env_seed) {
        seed = strtoull(env_seed, NULL, 0);
        have_seed = 1;
    }
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    }
    if (minutes <= 0 || minutes > 24 * 60) {
        usage();
        return 2;
    }
    uint64_t duration_ms = (uint64_t)(minutes * 60000);
    fprintf(stderr,
            "chaos: seed %" PRIu64 " (replay: TRELLIS_SEED=%" PRIu64 " or --seed %" PRIu64
            "), %.1f minutes of faults\n",
            seed, seed, seed, minutes);

    char tmpl[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof(tmpl), "%s/trellis-chaos-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "chaos: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    ch_cluster *c = calloc(1, sizeof(*c));
    if (!c || ch_cluster_init(c, tmpl, seed) != 0)
        return 1;

    schedule sch;
    schedule_make(&sch, seed, duration_ms);
    fprintf(stderr, "chaos: schedule (%zu episodes planned; those that fit in %.1f minutes run):\n",
            sch.n, minutes);
    for (size_t i = 0; i < sch.n; i++) {
        char d[256];
        episode_describe(c, &sch.e[i], d, sizeof(d));
        fprintf(stderr, "  %3zu  %s, then %u ms\n", i + 1, d, sch.e[i].gap_ms);
    }
    if (only_schedule) {
        nftw(tmpl, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
    }

    /* Root and namespaces, or skip. */
    const char *check[] = {"check", NULL};
    if (geteuid() != 0 || ch_netns(c, check) != 0) {
        fprintf(stderr, "SKIP: the chaos test needs root and network namespaces with nftables "
                        "(ip netns add failed)\n");
        nftw(tmpl, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return CH_SKIP;
    }
    const char *gc[] = {"gc", NULL};
    ch_netns(c, gc);
    if (ch_net_up(c) != 0)
        return 1;
    ch_log("cluster in namespaces %s-1..%d, subnet %s.0/24, directory %s", c->name, CH_PROCS,
           c->subnet, c->dir);

    run_stats st;
    memset(&st, 0, sizeof(st));
    int failed = 0;
    for (int i = 0; i < CH_PROCS && !failed; i++)
        failed = start_proc(c, &c->procs[i], &st) != 0;
    if (!failed && ch_wait_all_active(c, 60000) != 0) {
        ch_log("the cluster did not come up");
        failed = 1;
    }
    ch_workload wl;
    if (!failed && ch_workload_start(&wl, c->router_urls, seed) != 0)
        failed = 1;
    if (failed) {
        ch_dump_logs(c, 30);
        ch_stop_all(c);
        ch_net_down(c);
        fprintf(stderr, "chaos: FAIL (setup); directory %s\n", c->dir);
        return 1;
    }
    ch_log("cluster up; workload running (%d set and %d counter clients, ack=all)", CH_SET_THREADS,
           CH_COUNTER_THREADS);
    tsleep_ms((int)(2000));

    /* The nemesis. */
    uint64_t start = ch_now_ms();
    size_t ran = 0;
    for (size_t i = 0; i < sch.n && ch_now_ms() - start < duration_ms; i++) {
        const episode *e = &sch.e[i];
        char d[256];
        episode_describe(c, e, d, sizeof(d));
        ch_log("event %zu: %s", i + 1, d);
        run_episode(c, e, &st);
        ch_reap_crashes(c);
        uint64_t t = ch_now_ms();
        if (ch_wait_all_active(c, 20000) != 0) {
            st.slow_recoveries++;
            ch_log("  not every node ACTIVE in both routers 20 s after the heal");
        } else {
            ch_log("  whole again after %llu ms", (unsigned long long)(ch_now_ms() - t));
        }
        st.done[e->kind]++;
        ran++;
        tsleep_ms((int)(e->gap_ms));
    }

    /* Heal everything, let the clients write a little longer, then stop
     * them and wait for the cluster to be whole and quiet. */
    ch_log("nemesis done (%zu events); healing", ran);
    heal_all(c, &st);
    tsleep_ms((int)(2000));
    ch_workload_stop(&wl);
    ch_reap_crashes(c);
    if (ch_wait_all_active(c, 60000) != 0)
        ch_log("WARN: not every node ACTIVE in both routers 60 s after the final heal");
    ch_log("checking (reads every replica of every key until they agree)");
    ch_verdict v;
    int rc = ch_check(c, &wl, 90000, &v);
    if (ch_reap_crashes(c))
        rc = -1;

    char hist[320];
    snprintf(hist, sizeof(hist), "%s/history.txt", c->dir);
    ch_history_write(&wl, hist);
    uint64_t ok = 0, unknown = 0, fail = 0;
    for (int i = 0; i < wl.nw; i++) {
        ok += wl.w[i].ok;
        unknown += wl.w[i].unknown;
        fail += wl.w[i].fail;
    }
    unsigned events = 0;
    char kinds[256] = "";
    size_t kn = 0;
    for (int k = 0; k < EV_KINDS; k++) {
        events += st.done[k];
        kn += (size_t)snprintf(kinds + kn, sizeof(kinds) - kn, "%s%s %u", k ? ", " : "",
                               ev_names[k], st.done[k]);
    }
    fprintf(stderr, "\n");
    ch_log("operations: %" PRIu64 " acknowledged, %" PRIu64 " unknown (timeouts), %" PRIu64
           " refused",
           ok, unknown, fail);
    ch_log("sets: %zu keys read on %zu replicas, converged %s after %llu ms; %zu acknowledged "
           "adds, %zu missing, %zu phantom; unknown adds: %zu present, %zu absent",
           v.keys, v.replicas_read, v.converged ? "yes" : "NO", (unsigned long long)v.converge_ms,
           v.acked_adds, v.missing, v.phantoms, v.unknown_present, v.unknown_absent);
    ch_log("counters: %zu writer entries checked, %zu outside their bounds", v.counter_checks,
           v.counter_violations);
    ch_log("events: %u (%s); %u storage-node starts with message faults; %u slow recoveries",
           events, kinds, st.faulty_starts, st.slow_recoveries);
    if (c->crashes)
        ch_log("FAIL: %d processes crashed", c->crashes);
    if (st.failed_departures)
        ch_log("FAIL: %u departures did not complete", st.failed_departures);
    if (rc != 0)
        ch_log("FAIL: %s", v.first[0] ? v.first : "see above");
    if (fail)
        ch_log("FAIL: %" PRIu64 " operations were refused outright (INVALID, TOO_LARGE, ...)",
               fail);
    int pass = rc == 0 && c->crashes == 0 && st.failed_departures == 0 && fail == 0;
    if (!pass)
        ch_dump_logs(c, 20);

    ch_workload_free(&wl);
    ch_stop_all(c);
    ch_net_down(c);
    if (pass && !keep)
        nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    fprintf(stderr, "chaos: %s: seed %" PRIu64 ", %u events survived (%s)%s%s\n",
            pass ? "PASS" : "FAIL", seed, events, kinds, pass && !keep ? "" : "; kept ",
            pass && !keep ? "" : c->dir);
    free(sch.e);
    free(c);
    nng_fini();
    return pass ? 0 : 1;
}
