/*
 * node.c - the storage node's main thread.
 *
 * Membership: the node announces itself to a router (JOINING, with a new
 * generation: its start time in ms), heartbeats every
 * kvs.heartbeat_period_ms, and takes the ring snapshot from each reply to
 * its shards. It becomes ACTIVE when every shard of every serving node of
 * its tier has told it, with a hand-off marker for the ring epoch the node
 * holds, that it sent everything it acknowledged for the keys the node is
 * gaining; a ring change restarts the count. A join that takes longer than
 * kvs.join_timeout_ms stays JOINING and says which shards have not
 * confirmed (log and metrics); kvs.force_active, the operator's override,
 * turns it ACTIVE then, logged, and the ranges still unconfirmed refuse
 * observed removes until their markers arrive.
 *
 * On SIGTERM it departs: LEAVING, its shards hand every key to the nodes
 * that will hold it, then stop serving, pass once more over what changed
 * meanwhile, and the node announces LEFT. It exits only when every key was
 * acknowledged by a new owner: the drain timeout and a second signal end a
 * departure early only with kvs.force_depart, and then the keys that leave
 * with the node are logged.
 */
#include "kvs/node.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <rocksdb/c.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/cpu.h"
#include "server/metrics.h"
#include "server/peer.h"
#include "base/net.h"
#include "placement/ring.h"
#include "placement/ring_wire.h"
#include "kvs/shard.h"
#include "base/wire.h"

#define NODE_RPC_TIMEOUT_MS 1000
#define NODE_STALE_HELLO_MS 50 /* heartbeats sooner than the period when the ring is old */
#define NODE_MAX_MARKERS    (RING_MAX_NODES * 4)
#define NODE_REPORT_FDS     4   /* descriptors of the report pool watched (one peer: the monitor) */
#define NODE_JOIN_TEXT      512 /* bytes of the unconfirmed shards' names kept for metrics */
#define NODE_JOIN_WARN_MS   5000 /* a join past its timeout says so this often */
#define NODE_UNSAFE_WAIT_MS 5000 /* a forced departure waits this long for its shards' lists */

typedef struct marker {
    char node[RING_MAX_NODE_ID + 1];
    uint32_t shard;
    uint64_t epoch;
} marker;

struct node {
    config cfg;
    char id[RING_MAX_NODE_ID + 1];
    int tier;
    int nshards;
    uint64_t generation;
    int state;
    shard **shards;
    mailbox mb;
    net_tls *tls;
    tls_ctx *dtls; /* the data plane's TLS, when configured */
    wire_limits lim;
    wire_arena *arena;
    char endpoint[RING_MAX_URL + 1];
    int data_port; /* shard i's data plane at data_port + i; 0: none */
    char admin_url[RING_MAX_URL + 1];
    nng_socket admin;
    int admin_open;
    int admin_fd;
    metrics_server *metrics;
    rocksdb_cache_t *cache;
    int sigfd;

    /* routers: one connection each, open from first use to node_close
     * (see node_hello) */
    rpc_conn **routers;
    int router_idx;
    uint64_t next_hello_ms;
    uint64_t epoch;
    ring_ref *rr;
    int joined_ring; /* a ring including us arrived */

    /* joining */
    uint64_t join_epoch;
    uint64_t join_started_ms;
    uint64_t join_warned_ms;
    marker *markers;
    size_t nmarkers;
    /* forced ACTIVE (kvs.force_active): the ring joined under, and the
     * (node, shard) pairs of it that had not confirmed their hand-off */
    ring_ref *forced_rr;
    uint64_t forced_epoch;
    marker *unconfirmed;
    size_t nunconfirmed;
    /* what the metrics show of the join, under stats_lock */
    int join_missing;
    char join_missing_text[NODE_JOIN_TEXT];

    /* leaving */
    int leaving;
    int commanded; /* the departure came through the control endpoint */
    int parked;    /* departed; waiting to be stopped (kvs.exit_after_depart false) */
    int drained[3];
    int unsafe_reports; /* shards that logged their unacknowledged keys */
    uint64_t unsafe_keys;
    uint64_t forced_stop_ms; /* when a forced end of the departure began */
    uint64_t leave_warned_ms;
    uint64_t leave_started_ms;
    int serve_off_sent;
    int stop_requests; /* SIGTERM/SIGINT and node_stop calls so far */
    int exit_status;

    /* statistics */
    pthread_mutex_t stats_lock;
    shard_stats *latest; /* per shard, under stats_lock */
    int *have_latest;
    /* Reports to the monitor go out without waiting for the answer: a
     * monitor that is slow or gone (cluster.sh down stops it first) must
     * not hold up heartbeats or a departure. */
    peer_pool *reports;
    uint64_t next_report_ms;
    uint64_t start_ms;

    /* CPU: the allotment, and its use over the last statistics period
     * (cpu_last and the totals under stats_lock) */
    cpu_allot allot;
    char cgroup_dir[CPU_PATH_MAX]; /* the cgroup kvs.cpu_limit made ("" if none) */
    cpu_sample cpu_prev;
    cpu_use cpu_last;
    int stats_lock_inited;
    uint64_t cpu_periods_total, cpu_throttled_total;
    double cpu_throttled_s_total;
};

static double node_busy_locked(const node *n);

/* ---- helpers ---------------------------------------------------------------------- */

static int node_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* The disk tier records its shard count: keys are placed on shards by it,
 * so a restart with another count would put them on the wrong shards. */
static int node_check_meta(node *n, const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/NODE", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        int shards = 0;
        char tier[16] = "";
        int ok = fscanf(f, "shards=%d tier=%15s", &shards, tier) == 2;
        fclose(f);
        if (!ok) {
            log_error("%s: unreadable node metadata", path);
            return TRELLIS_INVALID;
        }
        if (shards != n->nshards) {
            log_error("%s was created with %d shards; start with --threads %d (or a new data "
                      "directory)",
                      dir, shards, shards);
            return TRELLIS_INVALID;
        }
        return TRELLIS_OK;
    }
    f = fopen(path, "w");
    if (!f) {
        log_error("%s: %s", path, strerror(errno));
        return TRELLIS_UNAVAILABLE;
    }
    fprintf(f, "shards=%d tier=%s\n", n->nshards, ring_tier_name(n->tier));
    fclose(f);
    return TRELLIS_OK;
}

static void node_info(const node *n, Trellis__NodeInfo *ni)
{
    trellis__node_info__init(ni);
    ni->id = (char *)n->id;
    ni->tier = (Trellis__Tier)n->tier;
    ni->state = (Trellis__NodeState)n->state;
    ni->generation = n->generation;
    ni->shards = (uint32_t)n->nshards;
    ni->endpoint = (char *)n->endpoint;
    ni->admin_url = (char *)n->admin_url;
    ni->data_port = (uint32_t)n->data_port;
}

static void post_all(node *n, int type)
{
    for (int i = 0; i < n->nshards; i++) {
        mb_msg *m = mailbox_msg(type);
        if (m)
            shard_post(n->shards[i], m);
    }
}

/* ---- ring snapshots ----------------------------------------------------------------- */

/* The shards of the serving nodes of our tier that have not sent a marker
 * for the epoch we hold: their count; the first `cap` into out. */
static int join_missing(node *n, marker *out, size_t cap)
{
    const ring *r = n->rr->r;
    int missing = 0;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *rn = ring_node_at(r, i);
        if (rn->tier != n->tier || strcmp(rn->id, n->id) == 0 ||
            (rn->state != NODE_ACTIVE && rn->state != NODE_LEAVING))
            continue;
        for (uint32_t sh = 0; sh < rn->shards; sh++) {
            int found = 0;
            for (size_t m = 0; m < n->nmarkers && !found; m++)
                found = n->markers[m].shard == sh && n->markers[m].epoch == n->epoch &&
                        strcmp(n->markers[m].node, rn->id) == 0;
            if (found)
                continue;
            if ((size_t)missing < cap) {
                snprintf(out[missing].node, sizeof(out[missing].node), "%s", rn->id);
                out[missing].shard = sh;
                out[missing].epoch = n->epoch;
            }
            missing++;
        }
    }
    return missing;
}

/* "m6500/s0 m6500/s1 ..." of the first n pairs, for logs and metrics. */
static void pairs_text(const marker *v, size_t n, int total, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s/s%u", i ? " " : "", v[i].node, v[i].shard);
    if ((size_t)total > n && o < cap)
        snprintf(buf + o, cap - o, " and %d more", total - (int)n);
    for (char *p = buf; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '_'; /* the text is also a metrics label value */
}

/* Gives each shard its copy of the ranges whose hand-off is unconfirmed
 * (NULL once there are none). */
static void post_unconfirmed(node *n)
{
    for (int i = 0; i < n->nshards; i++) {
        mb_msg *m = mailbox_msg(SHARD_MSG_UNCONFIRMED);
        if (!m)
            continue;
        shard_unconfirmed *u = NULL;
        if (n->nunconfirmed && n->forced_rr &&
            (u = malloc(sizeof(*u) + n->nunconfirmed * sizeof(u->v[0])))) {
            u->rr = ring_ref_get(n->forced_rr);
            u->n = 0;
            for (size_t k = 0; k < n->nunconfirmed; k++) {
                int idx = ring_find_node(n->forced_rr->r, n->unconfirmed[k].node);
                if (idx < 0)
                    continue;
                u->v[u->n].node = idx;
                u->v[u->n].shard = n->unconfirmed[k].shard;
                u->n++;
            }
        }
        m->ptr = u;
        m->free_ptr = shard_unconfirmed_free_ptr;
        shard_post(n->shards[i], m);
    }
}

/* A marker arrived after a forced ACTIVE: the sender's range is confirmed
 * once the marker is for the epoch forced under or later. */
static void node_confirm_late(node *n, const char *node_id, uint32_t sh, uint64_t epoch)
{
    if (!n->nunconfirmed || epoch < n->forced_epoch)
        return;
    for (size_t i = 0; i < n->nunconfirmed; i++) {
        if (n->unconfirmed[i].shard != sh || strcmp(n->unconfirmed[i].node, node_id) != 0)
            continue;
        n->unconfirmed[i] = n->unconfirmed[--n->nunconfirmed];
        log_info("hand-off from %s/s%u confirmed after the forced start; %zu shards left", node_id,
                 sh, n->nunconfirmed);
        post_unconfirmed(n);
        pthread_mutex_lock(&n->stats_lock);
        n->join_missing = (int)n->nunconfirmed;
        pairs_text(n->unconfirmed, n->nunconfirmed, (int)n->nunconfirmed, n->join_missing_text,
                   sizeof(n->join_missing_text));
        pthread_mutex_unlock(&n->stats_lock);
        return;
    }
}

static void node_set_state(node *n, int state, const char *why)
{
    if (n->state == state)
        return;
    log_info("%s -> %s (%s)", ring_state_name(n->state), ring_state_name(state), why);
    /* Atomic: the metrics thread reads it (render_metrics, node_ready). */
    __atomic_store_n(&n->state, state, __ATOMIC_RELAXED);
    n->next_hello_ms = 0; /* tell the routers now */
}

static void node_check_joined(node *n, uint64_t now_ms)
{
    if (n->state != NODE_JOINING || !n->rr || !n->joined_ring)
        return;
    marker miss[16];
    int missing = join_missing(n, miss, 16);
    char text[NODE_JOIN_TEXT];
    pairs_text(miss, missing < 16 ? (size_t)missing : 16, missing, text, sizeof(text));
    pthread_mutex_lock(&n->stats_lock);
    n->join_missing = missing;
    snprintf(n->join_missing_text, sizeof(n->join_missing_text), "%s", text);
    pthread_mutex_unlock(&n->stats_lock);
    if (missing == 0) {
        char why[96];
        snprintf(why, sizeof(why), "received every hand-off for epoch %llu",
                 (unsigned long long)n->epoch);
        node_set_state(n, NODE_ACTIVE, why);
        return;
    }
    uint64_t waited = now_ms - n->join_started_ms;
    if (waited <= (uint64_t)n->cfg.kvs.join_timeout_ms)
        return;
    if (n->cfg.kvs.force_active) {
        /* The operator's override: serve now, and keep the ranges that did
         * not confirm from answering observed removes wrongly. */
        size_t cap = (size_t)missing;
        marker *all = calloc(cap, sizeof(*all));
        if (all) {
            join_missing(n, all, cap);
            free(n->unconfirmed);
            n->unconfirmed = all;
            n->nunconfirmed = cap;
            ring_ref_put(n->forced_rr);
            n->forced_rr = ring_ref_get(n->rr);
            n->forced_epoch = n->epoch;
            post_unconfirmed(n);
        }
        log_warn("join: %d shards did not confirm their hand-off within %lld ms (%s); ACTIVE "
                 "anyway by the operator's override (kvs.force_active): reads of their ranges "
                 "may lack writes until their keys arrive, and observed removes there are "
                 "refused until they confirm",
                 missing, (long long)n->cfg.kvs.join_timeout_ms, text);
        node_set_state(n, NODE_ACTIVE, "forced by kvs.force_active");
        return;
    }
    if (n->join_warned_ms && now_ms - n->join_warned_ms < NODE_JOIN_WARN_MS)
        return;
    n->join_warned_ms = now_ms;
    log_warn("join: still JOINING after %llu ms at epoch %llu: %d shards have not confirmed "
             "their hand-off (%s); waiting for them (the override is kvs.force_active)",
             (unsigned long long)waited, (unsigned long long)n->epoch, missing, text);
    n->next_hello_ms = 0; /* and make sure our ring is the routers' */
}

static void node_apply_ring(node *n, const Trellis__RingSnapshot *rs, uint64_t now_ms)
{
    if (rs->unchanged)
        return;
    ring *r;
    int rc = ring_from_snapshot(rs, &r);
    if (rc != TRELLIS_OK) {
        log_warn("ring snapshot at epoch %llu rejected: %s", (unsigned long long)rs->epoch,
                 trellis_strerror(rc));
        return;
    }
    int self = ring_find_node(r, n->id);
    if (self >= 0) {
        const ring_node *me = ring_node_at(r, (size_t)self);
        if (me->generation == n->generation && me->state == NODE_DEAD && !n->leaving) {
            /* The routers gave up on us (a pause, a partition): come back
             * under a new generation and join again. */
            log_warn("marked DEAD by the routers; rejoining");
            n->generation = clock_wall_us() / 1000;
            if (n->generation <= me->generation)
                n->generation = me->generation + 1;
            __atomic_store_n(&n->state, NODE_JOINING, __ATOMIC_RELAXED);
            n->join_epoch = 0;
            n->joined_ring = 0;
            n->nmarkers = 0;
            n->join_started_ms = now_ms;
            n->join_warned_ms = 0;
            n->next_hello_ms = 0;
        }
        if (me->generation == n->generation && !n->joined_ring) {
            n->joined_ring = 1;
            n->join_epoch = rs->epoch;
        }
    }
    ring_ref *rr = ring_ref_new(r);
    if (!rr) {
        ring_free(r);
        return;
    }
    __atomic_store_n(&n->epoch, rs->epoch, __ATOMIC_RELAXED); /* read by render_metrics */
    ring_ref *old = n->rr;
    n->rr = rr;
    for (int i = 0; i < n->nshards; i++) {
        mb_msg *m = mailbox_msg(SHARD_MSG_RING);
        if (!m)
            continue;
        m->ptr = ring_ref_get(rr);
        m->free_ptr = ring_ref_put_ptr;
        shard_post(n->shards[i], m);
    }
    ring_ref_put(old);
    log_debug("ring epoch %llu: %zu nodes", (unsigned long long)rs->epoch, ring_node_count(r));
}

/* ---- talking to routers ----------------------------------------------------------------- */

static int node_hello(node *n, uint64_t now_ms)
{
    int nrouters = n->cfg.cluster.routers.n;
    if (nrouters == 0)
        return TRELLIS_UNAVAILABLE;
    Trellis__Envelope env, *reply = NULL;
    Trellis__NodeHello hello;
    Trellis__NodeInfo ni;
    Trellis__NodeLoad load;
    trellis__envelope__init(&env);
    trellis__node_hello__init(&hello);
    trellis__node_load__init(&load);
    node_info(n, &ni);
    hello.node = &ni;
    hello.known_epoch = n->epoch;
    pthread_mutex_lock(&n->stats_lock);
    for (int i = 0; i < n->nshards; i++) {
        if (!n->have_latest[i])
            continue;
        const shard_stats *st = &n->latest[i];
        load.keys += st->store.keys;
        load.bytes += st->store.bytes;
        load.ops_per_sec += (double)st->ops * 1e6 / (double)st->period_us;
    }
    load.busy = node_busy_locked(n);
    pthread_mutex_unlock(&n->stats_lock);
    load.capacity = (uint64_t)n->cfg.kvs.capacity;
    hello.load = &load;
    env.body_case = TRELLIS__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    /* Try each router once, starting with the one that answered last. A
     * connection that failed stays open: its dialer reconnects by itself,
     * and the next request on it abandons the unanswered one. Closing it
     * here would risk the main thread: nng 1.5.2's nng_close can block for
     * good (waiting on its reaper), and a node stuck there heartbeats no
     * more, so the routers mark it DEAD and it never rejoins. */
    int rc = TRELLIS_UNAVAILABLE;
    for (int tries = 0; tries < nrouters; tries++) {
        int i = n->router_idx % nrouters;
        if (!n->routers[i] && rpc_open(n->cfg.cluster.routers.v[i], n->tls, &n->lim,
                                       n->cfg.auth.token, &n->routers[i]) != TRELLIS_OK) {
            n->router_idx++;
            continue;
        }
        wire_arena_reset(n->arena);
        rc = rpc_call(n->routers[i], &env, NODE_RPC_TIMEOUT_MS, n->arena, &reply);
        if (rc == TRELLIS_OK && reply->body_case == TRELLIS__ENVELOPE__BODY_RING) {
            node_apply_ring(n, reply->ring, now_ms);
            return TRELLIS_OK;
        }
        if (rc == TRELLIS_OK)
            rc = TRELLIS_MALFORMED;
        n->router_idx++;
    }
    return rc;
}

/* ---- statistics --------------------------------------------------------------------------- */

/* Sets up the node's CPU allotment: with kvs.cpu_limit, a cgroup of its
 * own (before any thread starts); then reads what it runs with. */
static int node_cpu_init(node *n)
{
    cpu_paths p;
    cpu_paths_default(&p);
    if (n->cfg.kvs.cpu_limit > 0) {
        char name[RING_MAX_NODE_ID + 24], err[1200];
        snprintf(name, sizeof(name), "%s.%d", n->id, (int)getpid());
        int rc = cpu_allot_apply(&p, n->cfg.kvs.cpu_limit, name, n->cgroup_dir,
                                 sizeof(n->cgroup_dir), err, sizeof(err));
        if (rc != TRELLIS_OK) {
            log_error("kvs.cpu_limit %.2f: %s", n->cfg.kvs.cpu_limit, err);
            return rc;
        }
    }
    cpu_allot_read(&p, &n->allot);
    char what[CPU_PATH_MAX + 300];
    cpu_allot_describe(&n->allot, what, sizeof(what));
    if (n->allot.quota)
        log_info("CPU allotment: %s", what);
    else
        log_info("CPU allotment: busy is CPU use against the %s", what);
    cpu_sample_take(&n->allot, &n->cpu_prev);
    return TRELLIS_OK;
}

/* The CPU the node used since the previous call, against its allotment. */
static void node_cpu_tick(node *n)
{
    cpu_sample now;
    cpu_sample_take(&n->allot, &now);
    cpu_use u;
    cpu_use_between(&n->allot, &n->cpu_prev, &now, &u);
    n->cpu_prev = now;
    pthread_mutex_lock(&n->stats_lock);
    n->cpu_last = u;
    n->cpu_periods_total += u.periods;
    n->cpu_throttled_total += u.throttled;
    n->cpu_throttled_s_total += u.throttled_s;
    pthread_mutex_unlock(&n->stats_lock);
}

/* The node's busy figure (docs/monitor.md): its CPU use against its
 * allotment, or its shards' average busy fraction when that is higher (the
 * simulated rate cap's share). Call under stats_lock. */
static double node_busy_locked(const node *n)
{
    double shards = 0;
    for (int i = 0; i < n->nshards; i++)
        if (n->have_latest[i])
            shards += n->latest[i].busy / n->nshards;
    double b = n->cpu_last.busy > shards ? n->cpu_last.busy : shards;
    return b > 1 ? 1 : b;
}

static void node_on_stats(node *n, shard_stats *st)
{
    pthread_mutex_lock(&n->stats_lock);
    if ((int)st->shard < n->nshards) {
        n->latest[st->shard] = *st;
        n->have_latest[st->shard] = 1;
    }
    pthread_mutex_unlock(&n->stats_lock);
}

/* Appends a shard's sketch entries to the report's HotKey array at *nh;
 * returns how many. */
static size_t report_hot(const shard_hot *in, int n, Trellis__HotKey *hk, Trellis__HotKey **phk,
                         size_t *nh)
{
    for (int k = 0; k < n; k++) {
        Trellis__HotKey *h = &hk[*nh];
        trellis__hot_key__init(h);
        h->key.data = (uint8_t *)in[k].key;
        h->key.len = in[k].klen;
        h->count = in[k].count;
        h->error = in[k].err;
        phk[(*nh)++] = h;
    }
    return (size_t)n;
}

static void node_report(node *n)
{
    if (!n->cfg.cluster.monitor[0])
        return;
    Trellis__StatsReport rep;
    Trellis__NodeInfo ni;
    trellis__stats_report__init(&rep);
    node_info(n, &ni);
    rep.node = &ni;
    rep.time_us = clock_wall_us();
    rep.period_ms = (uint64_t)n->cfg.kvs.stats_period_ms;
    rep.capacity = (uint64_t)n->cfg.kvs.capacity;
    Trellis__ShardStats *ss = calloc((size_t)n->nshards, sizeof(*ss));
    Trellis__ShardStats **pss = calloc((size_t)n->nshards, sizeof(*pss));
    /* Each shard's hot keys, then its keys found on disk. */
    Trellis__HotKey *hk = calloc((size_t)n->nshards * 2 * SHARD_HOT_KEYS, sizeof(*hk));
    Trellis__HotKey **phk = calloc((size_t)n->nshards * 2 * SHARD_HOT_KEYS, sizeof(*phk));
    shard_stats *copy = calloc((size_t)n->nshards, sizeof(*copy));
    if (!ss || !pss || !hk || !phk || !copy)
        goto out;
    pthread_mutex_lock(&n->stats_lock);
    memcpy(copy, n->latest, (size_t)n->nshards * sizeof(*copy));
    rep.busy = node_busy_locked(n);
    rep.cpu_used = n->cpu_last.used_cores;
    rep.cpu_allotted = n->allot.cores;
    rep.cpu_quota = n->allot.quota != 0;
    rep.quota_periods = n->cpu_last.periods;
    rep.throttled_periods = n->cpu_last.throttled;
    pthread_mutex_unlock(&n->stats_lock);
    size_t nh = 0;
    for (int i = 0; i < n->nshards; i++) {
        const shard_stats *st = &copy[i];
        Trellis__ShardStats *o = &ss[i];
        trellis__shard_stats__init(o);
        o->shard = (uint32_t)i;
        o->busy = st->busy;
        o->ops = st->ops;
        o->reads = st->reads;
        o->writes = st->writes;
        o->errors = st->errors;
        o->overloaded = st->overloaded;
        o->p50_us = hist_quantile(&st->service, 0.5);
        o->p99_us = hist_quantile(&st->service, 0.99);
        o->p999_us = hist_quantile(&st->service, 0.999);
        o->keys = st->store.keys;
        o->bytes = st->store.bytes;
        o->demoted = st->demoted;
        o->hot = &phk[nh];
        o->n_hot = report_hot(st->hot, st->nhot, hk, phk, &nh);
        o->found = &phk[nh];
        o->n_found = report_hot(st->found, st->nfound, hk, phk, &nh);
        pss[i] = o;
    }
    rep.shards = pss;
    rep.n_shards = (size_t)n->nshards;
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS;
    env.stats = &rep;
    /* The answer does not matter; a monitor that answers none leaves at
     * most the pool's bound of reports in flight, and the rest are
     * dropped (TRELLIS_OVERLOADED). */
    peer_send(n->reports, n->cfg.cluster.monitor, &env, NODE_RPC_TIMEOUT_MS, n->epoch, 0, NULL,
              NULL);
out:
    free(ss);
    free(pss);
    free(hk);
    free(phk);
    free(copy);
}

static void render_metrics(void *arg, mbuf *b)
{
    node *n = arg;
    shard_stats *copy = calloc((size_t)n->nshards, sizeof(*copy));
    if (!copy) {
        b->failed = 1;
        return;
    }
    pthread_mutex_lock(&n->stats_lock);
    memcpy(copy, n->latest, (size_t)n->nshards * sizeof(*copy));
    cpu_use cu = n->cpu_last;
    double busy = node_busy_locked(n);
    uint64_t periods = n->cpu_periods_total, throttled = n->cpu_throttled_total;
    double throttled_s = n->cpu_throttled_s_total;
    pthread_mutex_unlock(&n->stats_lock);
    metrics_family(b, "trellis_node_info", "gauge", "Node identity and state.");
    mbuf_printf(b, "trellis_node_info{id=\"%s\",tier=\"%s\",state=\"%s\"} 1\n", n->id,
                ring_tier_name(n->tier),
                ring_state_name(__atomic_load_n(&n->state, __ATOMIC_RELAXED)));
    pthread_mutex_lock(&n->stats_lock);
    int missing = n->join_missing;
    char missing_text[NODE_JOIN_TEXT];
    snprintf(missing_text, sizeof(missing_text), "%s", n->join_missing_text);
    pthread_mutex_unlock(&n->stats_lock);
    metrics_family(b, "trellis_join_unconfirmed_shards", "gauge",
                   "Shards of serving nodes whose hand-off to this node is not confirmed "
                   "(joining, or forced ACTIVE).");
    mbuf_printf(b, "trellis_join_unconfirmed_shards %d\n", missing);
    metrics_family(b, "trellis_join_unconfirmed_info", "gauge",
                   "Which shards have not confirmed their hand-off (node/shard, space-separated).");
    mbuf_printf(b, "trellis_join_unconfirmed_info{shards=\"%s\"} %d\n", missing_text, missing > 0);
    metrics_family(b, "trellis_ring_epoch", "gauge", "Ring epoch the node works with.");
    mbuf_printf(b, "trellis_ring_epoch %llu\n",
                (unsigned long long)__atomic_load_n(&n->epoch, __ATOMIC_RELAXED));
    metrics_family(b, "trellis_capacity_bytes", "gauge", "Configured capacity.");
    mbuf_printf(b, "trellis_capacity_bytes %lld\n", (long long)n->cfg.kvs.capacity);
    metrics_family(b, "trellis_cpu_allotted_cores", "gauge",
                   "CPU the node may use: its cgroup quota, or the CPUs it may run on.");
    mbuf_printf(b, "trellis_cpu_allotted_cores %.4f\n", n->allot.cores);
    metrics_family(b, "trellis_cpu_quota", "gauge",
                   "1 if the allotment is a cgroup CPU quota, 0 if it is the CPUs usable.");
    mbuf_printf(b, "trellis_cpu_quota %d\n", n->allot.quota);
    metrics_family(b, "trellis_cpu_used_cores", "gauge",
                   "CPU used by every thread of the node, last statistics period.");
    mbuf_printf(b, "trellis_cpu_used_cores %.4f\n", cu.used_cores);
    metrics_family(b, "trellis_node_busy_ratio", "gauge",
                   "The node's busy figure: CPU used over allotted (or the shards' rate-cap "
                   "share, if higher), last period.");
    mbuf_printf(b, "trellis_node_busy_ratio %.4f\n", busy);
    metrics_family(b, "trellis_cpu_periods_total", "counter", "CPU quota periods elapsed.");
    mbuf_printf(b, "trellis_cpu_periods_total %llu\n", (unsigned long long)periods);
    metrics_family(b, "trellis_cpu_throttled_periods_total", "counter",
                   "CPU quota periods in which the node was throttled.");
    mbuf_printf(b, "trellis_cpu_throttled_periods_total %llu\n", (unsigned long long)throttled);
    metrics_family(b, "trellis_cpu_throttled_seconds_total", "counter",
                   "Time the node was throttled by its CPU quota.");
    mbuf_printf(b, "trellis_cpu_throttled_seconds_total %.6f\n", throttled_s);

#define SHARD_FAMILY(name, type, help, expr)                                                       \
    do {                                                                                           \
        metrics_family(b, name, type, help);                                                       \
        for (int i = 0; i < n->nshards; i++) {                                                     \
            const shard_stats *st = &copy[i];                                                      \
            (void)st;                                                                              \
            mbuf_printf(b, "%s{shard=\"%d\"} %.6g\n", name, i, (double)(expr));                    \
        }                                                                                          \
    } while (0)
    SHARD_FAMILY("trellis_ops_total", "counter", "Key operations served.", st->total_ops);
    SHARD_FAMILY("trellis_requests_total", "counter", "Messages received.", st->total_requests);
    SHARD_FAMILY("trellis_malformed_messages_total", "counter", "Undecodable messages.",
                 st->total_malformed_msgs);
    SHARD_FAMILY("trellis_unauthenticated_dropped_total", "counter",
                 "Messages without the token larger than limits.unauth_message_bytes, dropped "
                 "unanswered.",
                 st->total_unauth_dropped);
    SHARD_FAMILY("trellis_keys", "gauge", "Keys stored.", st->store.keys);
    SHARD_FAMILY("trellis_bytes", "gauge", "Bytes of state stored.", st->store.bytes);
    SHARD_FAMILY("trellis_busy_ratio", "gauge", "Share of the last period spent serving.",
                 st->busy);
    SHARD_FAMILY("trellis_ops_per_second", "gauge", "Operations per second, last period.",
                 st->period_us ? (double)st->ops * 1e6 / (double)st->period_us : 0);
    SHARD_FAMILY("trellis_service_p50_microseconds", "gauge", "Median service time, last period.",
                 hist_quantile(&st->service, 0.5));
    SHARD_FAMILY("trellis_service_p99_microseconds", "gauge", "p99 service time, last period.",
                 hist_quantile(&st->service, 0.99));
    SHARD_FAMILY("trellis_queue_length", "gauge", "Requests waiting for rate tokens.",
                 st->queue_len);
    SHARD_FAMILY("trellis_gossip_sent_total", "counter", "Deltas gossiped.", st->gossip_sent);
    SHARD_FAMILY("trellis_gossip_dropped_total", "counter", "Deltas not gossiped.",
                 st->gossip_dropped);
    SHARD_FAMILY("trellis_replicated_received_total", "counter", "Replicated states merged.",
                 st->repl_received);
    SHARD_FAMILY("trellis_handoff_sent_total", "counter", "Keys handed off.", st->handoff_sent);
    SHARD_FAMILY("trellis_handoff_deleted_total", "counter", "Keys deleted after hand-off.",
                 st->handoff_deleted);
    SHARD_FAMILY("trellis_anti_entropy_rounds_total", "counter", "Anti-entropy rounds.",
                 st->ae_rounds);
    SHARD_FAMILY("trellis_anti_entropy_repaired_total", "counter", "Keys repaired.",
                 st->ae_repaired);
    SHARD_FAMILY("trellis_demoted_total", "counter", "Keys moved to the disk tier.",
                 st->demoted_total);
    SHARD_FAMILY("trellis_promoted_total", "counter", "Keys brought back from the disk tier.",
                 st->promoted_total);
    SHARD_FAMILY("trellis_fetched_total", "counter",
                 "Memory-tier misses looked up in the disk tier.", st->fetched_total);
    SHARD_FAMILY("trellis_fetch_failed_total", "counter",
                 "Disk-tier lookups that got no answer in time.", st->fetch_failed);
    SHARD_FAMILY("trellis_forwarded_total", "counter",
                 "Write deltas forwarded to the keys' pending replicas.", st->pending_forwarded);
    SHARD_FAMILY("trellis_forward_batches_resent_total", "counter",
                 "Forward batches sent again: unanswered in time, refused or not sent.",
                 st->pending_resent);
    SHARD_FAMILY("trellis_held_replies_total", "counter",
                 "Client replies held until pending replicas merged their writes.",
                 st->pending_held);
    SHARD_FAMILY("trellis_held_replies_failed_total", "counter",
                 "Held replies answered UNAVAILABLE: a pending replica did not confirm in time.",
                 st->pending_failed);
    SHARD_FAMILY("trellis_unconfirmed_removes_refused_total", "counter",
                 "Observed removes refused on ranges whose hand-off is not confirmed.",
                 st->unconfirmed_refused);
    SHARD_FAMILY("trellis_type_conflicts_total", "counter",
                 "Replication merges of two lattice types.", st->store.type_conflicts);
    SHARD_FAMILY("trellis_expired_total", "counter", "Expired states replaced by their tombstones.",
                 st->store.expired);
    SHARD_FAMILY("trellis_expiry_collected_total", "counter",
                 "Tombstones of expired keys dropped after the grace period.", st->store.collected);
    SHARD_FAMILY("trellis_resp_connections", "gauge",
                 "Open Redis connections on the shard's data port.", st->resp_conns);
    SHARD_FAMILY("trellis_resp_connections_total", "counter", "Redis connections accepted.",
                 st->resp_conns_total);
    SHARD_FAMILY("trellis_resp_commands_total", "counter", "Redis commands received.",
                 st->resp_commands);
    SHARD_FAMILY("trellis_resp_errors_total", "counter",
                 "Redis commands answered with an error (MOVED included).", st->resp_errors);
    SHARD_FAMILY("trellis_resp_protocol_errors_total", "counter",
                 "Malformed or oversized Redis requests (connection closed).",
                 st->resp_protocol_errors);
    SHARD_FAMILY("trellis_resp_auth_failures_total", "counter",
                 "Wrong tokens, and Redis commands refused before AUTH.", st->resp_auth_failures);
    SHARD_FAMILY("trellis_resp_batches_total", "counter",
                 "Rounds of Redis data commands run as one request.", st->resp_rounds);
    SHARD_FAMILY("trellis_resp_batched_commands_total", "counter",
                 "Redis data commands run in those rounds.", st->resp_round_commands);
#undef SHARD_FAMILY
    metrics_family(b, "trellis_errors_total", "counter", "Operations failed, by status.");
    for (int i = 0; i < n->nshards; i++)
        for (int e = 1; e < TRELLIS_STATUS_COUNT; e++)
            if (copy[i].total_errors[e])
                mbuf_printf(b, "trellis_errors_total{shard=\"%d\",status=\"%s\"} %llu\n", i,
                            trellis_status_name(e), (unsigned long long)copy[i].total_errors[e]);
    metrics_family(b, "trellis_service_microseconds", "histogram",
                   "Service time of requests, last period.");
    for (int i = 0; i < n->nshards; i++) {
        const histogram *hg = &copy[i].service;
        static const uint64_t le[] = {10,   25,   50,    100,   250,    500,    1000,
                                      2500, 5000, 10000, 25000, 100000, 1000000};
        for (size_t k = 0; k < sizeof(le) / sizeof(le[0]); k++) {
            uint64_t c = 0;
            for (int bk = 0; bk < HIST_BUCKETS && hist_bucket_low(bk) <= le[k]; bk++)
                c += hg->buckets[bk];
            mbuf_printf(b, "trellis_service_microseconds_bucket{shard=\"%d\",le=\"%llu\"} %llu\n",
                        i, (unsigned long long)le[k], (unsigned long long)c);
        }
        mbuf_printf(b, "trellis_service_microseconds_bucket{shard=\"%d\",le=\"+Inf\"} %llu\n", i,
                    (unsigned long long)hg->count);
        mbuf_printf(b, "trellis_service_microseconds_sum{shard=\"%d\"} %llu\n", i,
                    (unsigned long long)hg->sum);
        mbuf_printf(b, "trellis_service_microseconds_count{shard=\"%d\"} %llu\n", i,
                    (unsigned long long)hg->count);
    }
    free(copy);
}

static int node_ready(void *arg)
{
    node *n = arg;
    /* The HTTP thread reads what the node thread stores atomically;
     * staleness is harmless. */
    return __atomic_load_n(&n->state, __ATOMIC_RELAXED) == NODE_ACTIVE;
}

/* ---- control endpoint ------------------------------------------------------------------------ */

static void node_begin_departure(node *n, uint64_t now_ms, const char *why)
{
    if (n->leaving)
        return;
    n->leaving = 1;
    n->leave_started_ms = now_ms;
    if (!n->joined_ring) {
        /* Never served: nothing to hand off. */
        n->leaving = 3;
        return;
    }
    if (n->state == NODE_JOINING) {
        /* Never served either: what it holds, the serving owners hold too
         * (a forwarded write was acknowledged by them). LEFT at once. */
        node_set_state(n, NODE_LEFT, why);
        node_hello(n, now_ms);
        n->leaving = 3;
        return;
    }
    node_set_state(n, NODE_LEAVING, why);
    post_all(n, SHARD_MSG_DRAIN);
}

static void node_admin(node *n, uint64_t now_ms)
{
    nng_msg *m;
    while (nng_recvmsg(n->admin, &m, NNG_FLAG_NONBLOCK) == 0) {
        Trellis__Envelope *env = NULL;
        Trellis__CommandReply cr;
        trellis__command_reply__init(&cr);
        char text[512] = "";
        wire_arena_reset(n->arena);
        int rc = TRELLIS_UNAUTHORIZED;
        if (wire_peek_auth(nng_msg_body(m), nng_msg_len(m), n->cfg.auth.token))
            rc = wire_decode(n->arena, nng_msg_body(m), nng_msg_len(m), &n->lim, &env);
        nng_msg_free(m);
        if (rc == TRELLIS_OK && env->body_case != TRELLIS__ENVELOPE__BODY_COMMAND)
            rc = TRELLIS_MALFORMED;
        if (rc == TRELLIS_OK) {
            const Trellis__Command *c = env->command;
            switch (c->code) {
            case TRELLIS__COMMAND_CODE__CMD_DEPART:
                if (!n->leaving)
                    n->commanded = 1;
                node_begin_departure(n, now_ms, "told to depart");
                snprintf(text, sizeof(text), "departing");
                break;
            case TRELLIS__COMMAND_CODE__CMD_DEMOTE:
                if (n->tier != RING_TIER_MEMORY) {
                    rc = TRELLIS_INVALID;
                    snprintf(text, sizeof(text), "only memory nodes demote keys");
                    break;
                }
                for (int i = 0; i < n->nshards; i++) {
                    mb_msg *dm = mailbox_msg(SHARD_MSG_DEMOTE);
                    if (!dm)
                        continue;
                    dm->u64[0] = c->idle_ms;
                    dm->u64[1] = c->max_keys ? (c->max_keys + (uint64_t)n->nshards - 1) /
                                                   (uint64_t)n->nshards
                                             : 0;
                    shard_post(n->shards[i], dm);
                }
                snprintf(text, sizeof(text), "demoting keys idle for %llu ms",
                         (unsigned long long)c->idle_ms);
                break;
            case TRELLIS__COMMAND_CODE__CMD_STATUS:
                snprintf(text, sizeof(text),
                         "{\"id\":\"%s\",\"tier\":\"%s\",\"state\":\"%s\",\"epoch\":%llu,"
                         "\"shards\":%d,\"generation\":%llu,\"unconfirmed\":%d}",
                         n->id, ring_tier_name(n->tier), ring_state_name(n->state),
                         (unsigned long long)n->epoch, n->nshards,
                         (unsigned long long)n->generation,
                         n->state == NODE_JOINING ? n->join_missing : (int)n->nunconfirmed);
                break;
            default:
                rc = TRELLIS_INVALID;
                snprintf(text, sizeof(text), "unsupported command");
                break;
            }
        }
        cr.status = (Trellis__Status)rc;
        cr.message = text[0] ? text : (char *)trellis_strerror(rc);
        Trellis__Envelope out;
        wire_envelope_init(&out, n->epoch, NULL);
        out.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
        out.command_reply = &cr;
        nng_msg *r;
        if (wire_to_msg(&out, &r) == TRELLIS_OK && nng_sendmsg(n->admin, r, NNG_FLAG_NONBLOCK) != 0)
            nng_msg_free(r);
    }
}

/* Ends a departure before every key was handed off (kvs.force_depart): the
 * shards log the keys no new owner acknowledged, and the node exits with
 * status 1 once they did (or after NODE_UNSAFE_WAIT_MS). */
static void node_force_stop(node *n)
{
    n->forced_stop_ms = clock_mono_ms();
    n->exit_status = 1;
    post_all(n, SHARD_MSG_LOG_UNSAFE);
}

/* A signal or a node_stop call: the first departs; the second stops at
 * once when nothing would be lost, or with kvs.force_depart. */
static void node_stop_request(node *n, const char *why)
{
    if (n->parked) {
        log_info("%s: stopping", why);
        n->parked = 0;
        return;
    }
    if (++n->stop_requests == 1) {
        log_info("%s: departing", why);
        node_begin_departure(n, clock_mono_ms(), why);
        return;
    }
    if (n->leaving == 3 || n->forced_stop_ms)
        return;
    if (!n->cfg.kvs.force_depart) {
        log_warn("%s again: the departure goes on until every key was acknowledged by a new "
                 "owner (%d of %d shards done); to stop now and lose the keys only this node "
                 "holds, run with kvs.force_depart (--force-depart), or kill it",
                 why, n->drained[1], n->nshards);
        return;
    }
    log_warn("%s again: stopping without completing the hand-off (kvs.force_depart)", why);
    node_force_stop(n);
}

/* ---- mail from shards ------------------------------------------------------------------------ */

static void node_mail(node *n)
{
    mb_msg *m = mailbox_take(&n->mb);
    while (m) {
        mb_msg *next = m->next;
        switch (m->type) {
        case NODE_MSG_STATS:
            node_on_stats(n, m->ptr);
            free(m->ptr);
            break;
        case NODE_MSG_MARKER: {
            /* Each (node, shard) keeps the newest epoch it confirmed; only
             * a marker for the epoch the node holds counts (join_missing). */
            int found = 0, news = 0;
            for (size_t i = 0; i < n->nmarkers && !found; i++) {
                marker *mk = &n->markers[i];
                if (mk->shard == m->u64[0] && strcmp(mk->node, m->text) == 0) {
                    found = 1;
                    news = m->u64[1] > mk->epoch;
                    if (news)
                        mk->epoch = m->u64[1];
                }
            }
            if (!found && n->nmarkers < NODE_MAX_MARKERS) {
                marker *mk = &n->markers[n->nmarkers++];
                snprintf(mk->node, sizeof(mk->node), "%s", m->text);
                mk->shard = (uint32_t)m->u64[0];
                mk->epoch = m->u64[1];
                news = 1;
            }
            if (news && n->state == NODE_JOINING)
                log_info("hand-off confirmed by %s/s%llu for epoch %llu%s", m->text,
                         (unsigned long long)m->u64[0], (unsigned long long)m->u64[1],
                         m->u64[1] == n->epoch ? "" : " (not the epoch this node holds)");
            node_confirm_late(n, m->text, (uint32_t)m->u64[0], m->u64[1]);
            break;
        }
        case NODE_MSG_UNSAFE:
            n->unsafe_reports++;
            n->unsafe_keys += m->u64[1];
            break;
        case NODE_MSG_DRAINED:
            if (m->u64[1] >= 1 && m->u64[1] <= 2)
                n->drained[m->u64[1]]++;
            break;
        case NODE_MSG_STOP:
            node_stop_request(n, "stop requested");
            break;
        case NODE_MSG_RING_STALE: {
            /* A shard heard of a newer ring: heartbeat now, not later
             * (at most every NODE_STALE_HELLO_MS). */
            uint64_t now_ms = clock_mono_ms();
            uint64_t period = (uint64_t)n->cfg.kvs.heartbeat_period_ms;
            uint64_t last = n->next_hello_ms > period ? n->next_hello_ms - period : 0;
            if (m->u64[0] > n->epoch && n->next_hello_ms > now_ms)
                n->next_hello_ms =
                    last + NODE_STALE_HELLO_MS > now_ms ? last + NODE_STALE_HELLO_MS : now_ms;
            break;
        }
        default:
            break;
        }
        free(m);
        m = next;
    }
}

/* Moves a departure along; returns 1 when the node may exit. */
static int node_depart_step(node *n, uint64_t now_ms)
{
    if (n->leaving == 3)
        return 1;
    if (n->forced_stop_ms) {
        if (n->unsafe_reports < n->nshards && now_ms - n->forced_stop_ms < NODE_UNSAFE_WAIT_MS)
            return 0;
        log_warn("departed by force: %llu keys were not acknowledged by a new owner and left "
                 "with this node",
                 (unsigned long long)n->unsafe_keys);
        n->leaving = 3;
        return 1;
    }
    int timed_out = now_ms - n->leave_started_ms > (uint64_t)n->cfg.kvs.drain_timeout_ms;
    if (timed_out && (n->serve_off_sent ? n->drained[2] : n->drained[1]) < n->nshards) {
        if (n->cfg.kvs.force_depart) {
            log_warn("drain: %s incomplete after %lld ms; stopping (kvs.force_depart)",
                     n->serve_off_sent ? "final pass" : "hand-off",
                     (long long)n->cfg.kvs.drain_timeout_ms);
            node_force_stop(n);
            return 0;
        }
        if (!n->leave_warned_ms || now_ms - n->leave_warned_ms >= NODE_JOIN_WARN_MS) {
            n->leave_warned_ms = now_ms;
            log_warn("drain: %s incomplete after %llu ms (%d of %d shards done); still handing "
                     "off (kvs.force_depart would stop and lose what no new owner "
                     "acknowledged)",
                     n->serve_off_sent ? "final pass" : "hand-off",
                     (unsigned long long)(now_ms - n->leave_started_ms),
                     n->serve_off_sent ? n->drained[2] : n->drained[1], n->nshards);
        }
    }
    if (!n->serve_off_sent && n->drained[1] >= n->nshards) {
        /* The new owners acknowledged every key (and every write since was
         * forwarded to them before its client heard OK): leave the ring,
         * so that clients go to them, then refuse clients and pass over
         * what changed. */
        node_set_state(n, NODE_LEFT, "keys handed off");
        node_hello(n, now_ms);
        post_all(n, SHARD_MSG_SERVE_OFF);
        n->serve_off_sent = 1;
        n->leave_started_ms = now_ms;
        n->leave_warned_ms = 0;
        return 0;
    }
    if (n->serve_off_sent && n->drained[2] >= n->nshards) {
        log_info("departed");
        n->leaving = 3;
        return 1;
    }
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------------
 */

void node_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int node_open(const config *cfg, node **out)
{
    *out = NULL;
    node *n = calloc(1, sizeof(*n));
    if (!n)
        return TRELLIS_INTERNAL;
    n->cfg = *cfg;
    n->sigfd = -1;
    n->admin_fd = -1;
    n->tier = (int)cfg->kvs.tier;
    n->nshards = (int)cfg->kvs.threads;
    if (n->nshards <= 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        n->nshards = ncpu > 0 ? (int)ncpu : 1;
    }
    if (n->nshards > RING_MAX_SHARDS)
        n->nshards = RING_MAX_SHARDS;
    if (cfg->kvs.id[0])
        snprintf(n->id, sizeof(n->id), "%s", cfg->kvs.id);
    else
        snprintf(n->id, sizeof(n->id), "%c%lld", n->tier == RING_TIER_MEMORY ? 'm' : 'd',
                 (long long)cfg->kvs.port_base);
    log_init("kvs", n->id);
    pthread_mutex_init(&n->stats_lock, NULL);
    n->stats_lock_inited = 1;
    int rc = node_cpu_init(n);
    if (rc != TRELLIS_OK) {
        node_close(n);
        return rc;
    }
    n->generation = clock_wall_us() / 1000;
    n->state = NODE_JOINING;
    n->start_ms = clock_mono_ms();
    config_wire_limits(cfg, &n->lim);
    n->latest = calloc((size_t)n->nshards, sizeof(*n->latest));
    n->have_latest = calloc((size_t)n->nshards, sizeof(int));
    n->shards = calloc((size_t)n->nshards, sizeof(*n->shards));
    n->markers = calloc(NODE_MAX_MARKERS, sizeof(*n->markers));
    n->arena = wire_arena_new();
    n->routers = calloc((size_t)cfg->cluster.routers.n + 1, sizeof(*n->routers));
    if (!n->latest || !n->have_latest || !n->shards || !n->markers || !n->arena || !n->routers ||
        mailbox_init(&n->mb) != 0) {
        node_close(n);
        return TRELLIS_INTERNAL;
    }
    char err[CONFIG_ERR_MAX];
    rc = config_tls_new(cfg, &n->tls, err, sizeof(err));
    if (rc != TRELLIS_OK) {
        log_error("%s", err);
        node_close(n);
        return rc;
    }
    if ((rc = peer_pool_new(n->tls, &n->lim, cfg->auth.token, &n->reports)) != TRELLIS_OK) {
        node_close(n);
        return rc;
    }
    const char *host = cfg->kvs.advertise[0] ? cfg->kvs.advertise : cfg->kvs.listen;
    if (!cfg->kvs.advertise[0] &&
        (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "*") == 0)) {
        log_error("kvs.listen is %s: set kvs.advertise to the address other nodes use", host);
        node_close(n);
        return TRELLIS_INVALID;
    }
    if (strlen(host) > 200 || strlen(cfg->kvs.listen) > 200) {
        log_error("kvs.listen/kvs.advertise: host names longer than 200 bytes are not supported");
        node_close(n);
        return TRELLIS_INVALID;
    }
    const char *scheme = n->tls ? "tls+tcp" : "tcp";
    int admin_port =
        cfg->kvs.admin_port ? (int)cfg->kvs.admin_port : (int)cfg->kvs.port_base + n->nshards;
    if (cfg->kvs.port_base + n->nshards > 65535 || admin_port > 65535) {
        log_error("kvs.port_base %lld leaves no room for %d shards", (long long)cfg->kvs.port_base,
                  n->nshards);
        node_close(n);
        return TRELLIS_INVALID;
    }
    snprintf(n->endpoint, sizeof(n->endpoint), "%s://%s:%lld", scheme, host,
             (long long)cfg->kvs.port_base);
    /* The data plane's ports: by default right after the control
     * endpoint's (docs/protocol.md, "Ports"); TLS like the rest. */
    n->data_port =
        cfg->kvs.data_port ? (int)cfg->kvs.data_port : (int)cfg->kvs.port_base + n->nshards + 1;
    if (n->data_port + n->nshards - 1 > 65535) {
        log_error("kvs.data_port %d leaves no room for %d shards", n->data_port, n->nshards);
        node_close(n);
        return TRELLIS_INVALID;
    }
    if ((rc = config_dp_tls_new(cfg, 1, &n->dtls, err, sizeof(err))) != TRELLIS_OK) {
        log_error("%s", err);
        node_close(n);
        return rc;
    }
    snprintf(n->admin_url, sizeof(n->admin_url), "%s://%s:%d", scheme, host, admin_port);

    char dir[PATH_MAX] = "";
    if (n->tier == RING_TIER_DISK) {
        snprintf(dir, sizeof(dir), "%s/%s", cfg->kvs.data_dir, n->id);
        if (node_mkdirs(dir) != 0) {
            log_error("data dir %s: %s", dir, strerror(errno));
            node_close(n);
            return TRELLIS_UNAVAILABLE;
        }
        if ((rc = node_check_meta(n, dir)) != TRELLIS_OK) {
            node_close(n);
            return rc;
        }
        n->cache = rocksdb_cache_create_lru((size_t)cfg->kvs.rocksdb_cache_bytes);
    }
    uint64_t per_shard = (uint64_t)cfg->kvs.capacity / (uint64_t)n->nshards;
    for (int i = 0; i < n->nshards; i++) {
        store *st;
        if (n->tier == RING_TIER_DISK) {
            char sdir[PATH_MAX + 16];
            snprintf(sdir, sizeof(sdir), "%s/shard-%d", dir, i);
            store_disk_opts o = {sdir,
                                 per_shard,
                                 (uint64_t)cfg->kvs.rocksdb_write_buffer_bytes,
                                 n->cache,
                                 (int)cfg->kvs.sync_writes,
                                 (uint64_t)cfg->kvs.expiry_grace_ms};
            rc = store_open_disk(&o, &st);
        } else {
            rc = store_open_memory(per_shard, (uint64_t)cfg->kvs.expiry_grace_ms, &st);
        }
        if (rc != TRELLIS_OK) {
            node_close(n);
            return rc;
        }
        char url[RING_MAX_URL + 1];
        snprintf(url, sizeof(url), "%s://%s:%lld", scheme, cfg->kvs.listen,
                 (long long)cfg->kvs.port_base + i);
        shard_opts so = {i,
                         n->nshards,
                         n->id,
                         n->tier,
                         url,
                         st,
                         &n->cfg,
                         n->tls,
                         &n->mb,
                         cfg->kvs.listen,
                         n->data_port ? n->data_port + i : 0,
                         n->dtls};
        if ((rc = shard_start(&so, &n->shards[i])) != TRELLIS_OK) {
            node_close(n);
            return rc;
        }
    }
    /* The control endpoint. */
    int rv = nng_rep0_open(&n->admin);
    if (rv == 0) {
        n->admin_open = 1;
        char url[RING_MAX_URL + 1];
        snprintf(url, sizeof(url), "%s://%s:%d", scheme, cfg->kvs.listen, admin_port);
        rc = net_set_limits(n->admin, n->lim.max_message, 0, 1000);
        if (rc == TRELLIS_OK)
            rc = net_listen(n->admin, url, n->tls, NULL);
        if (rc == TRELLIS_OK && nng_socket_get_int(n->admin, NNG_OPT_RECVFD, &n->admin_fd) != 0)
            rc = TRELLIS_INTERNAL;
    } else {
        rc = net_status(rv);
    }
    if (rc != TRELLIS_OK) {
        node_close(n);
        return rc;
    }
    if (cfg->kvs.metrics_port > 0 &&
        (rc = metrics_start(cfg->kvs.listen, (int)cfg->kvs.metrics_port, render_metrics, node_ready,
                            n, &n->metrics)) != TRELLIS_OK) {
        node_close(n);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    n->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (n->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        node_close(n);
        return TRELLIS_INTERNAL;
    }
    log_info("%s node with %d shards at %s (control %s)", ring_tier_name(n->tier), n->nshards,
             n->endpoint, n->admin_url);
    *out = n;
    return TRELLIS_OK;
}

int node_run(node *n)
{
    uint64_t now_ms = clock_mono_ms();
    n->join_started_ms = now_ms;
    n->next_hello_ms = 0;
    n->next_report_ms = now_ms + (uint64_t)n->cfg.kvs.stats_period_ms;
    uint64_t last_warn = 0;
    for (;;) {
        now_ms = clock_mono_ms();
        if (now_ms >= n->next_hello_ms) {
            int rc = node_hello(n, now_ms);
            if (rc != TRELLIS_OK && now_ms - last_warn > 5000) {
                log_warn("no router answered (%s); retrying", trellis_strerror(rc));
                last_warn = now_ms;
            }
            n->next_hello_ms = now_ms + (uint64_t)n->cfg.kvs.heartbeat_period_ms;
        }
        node_check_joined(n, now_ms);
        if (now_ms >= n->next_report_ms) {
            node_cpu_tick(n);
            node_report(n);
            n->next_report_ms = now_ms + (uint64_t)n->cfg.kvs.stats_period_ms;
        }
        if (n->leaving && !n->parked && node_depart_step(n, now_ms)) {
            if (!n->commanded || n->cfg.kvs.exit_after_depart || n->stop_requests)
                break;
            /* An orchestrator would restart an exited process (which would
             * join again): stay, LEFT and serving nothing, until stopped. */
            log_info("departed; staying until stopped (kvs.exit_after_depart is false)");
            n->parked = 1;
        }
        uint64_t next = n->next_hello_ms < n->next_report_ms ? n->next_hello_ms : n->next_report_ms;
        uint64_t pd = peer_next_deadline(n->reports);
        if (pd < next)
            next = pd;
        int timeout = next > now_ms ? (int)(next - now_ms) : 0;
        if (n->leaving || n->state == NODE_JOINING)
            timeout = timeout > 100 ? 100 : timeout;
        struct pollfd fds[3 + NODE_REPORT_FDS] = {
            {n->mb.fd, POLLIN, 0}, {n->admin_fd, POLLIN, 0}, {n->sigfd, POLLIN, 0}};
        int nfds = 3 + peer_pollfds(n->reports, fds + 3, NODE_REPORT_FDS);
        if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
            break;
        peer_process(n->reports, clock_mono_ms());
        if (fds[0].revents)
            node_mail(n);
        if (fds[1].revents)
            node_admin(n, clock_mono_ms());
        if (fds[2].revents) {
            struct signalfd_siginfo si;
            while (read(n->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                char why[32];
                snprintf(why, sizeof(why), "signal %u", si.ssi_signo);
                node_stop_request(n, why);
            }
        }
        if (n->leaving == 3 && !n->parked)
            break;
    }
    return n->exit_status;
}

void node_stop(node *n)
{
    mb_msg *m = mailbox_msg(NODE_MSG_STOP);
    if (m)
        mailbox_post(&n->mb, m);
}

void node_close(node *n)
{
    if (!n)
        return;
    metrics_stop(n->metrics);
    if (n->shards)
        for (int i = 0; i < n->nshards; i++)
            shard_stop(n->shards[i]);
    if (n->admin_open)
        nng_close(n->admin);
    if (n->routers)
        for (int i = 0; i < n->cfg.cluster.routers.n; i++)
            rpc_close(n->routers[i]);
    free(n->routers);
    peer_pool_free(n->reports);
    ring_ref_put(n->rr);
    if (n->cache)
        rocksdb_cache_destroy(n->cache);
    net_tls_free(n->tls);
    tls_ctx_free(n->dtls);
    wire_arena_free(n->arena);
    if (n->mb.fd > 0)
        mailbox_fini(&n->mb);
    if (n->sigfd >= 0)
        close(n->sigfd);
    if (n->stats_lock_inited)
        pthread_mutex_destroy(&n->stats_lock);
    /* Out of the cgroup kvs.cpu_limit made, which then goes. */
    cpu_allot_leave(n->cgroup_dir);
    free(n->latest);
    free(n->have_latest);
    free(n->shards);
    free(n->markers);
    free(n->unconfirmed);
    ring_ref_put(n->forced_rr);
    free(n);
}
