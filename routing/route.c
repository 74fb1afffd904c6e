/*
 * route.c - trellis-route, the routing node.
 *
 * A router holds the membership lattice (routing/membership.c): storage
 * nodes announce themselves and heartbeat with NodeHello and get the ring
 * snapshot back; routers push-pull the lattice among themselves, with how
 * long ago each of them last heard each node, so that any router can mark a
 * silent node DEAD after route.node_timeout_ms. Clients fetch ring
 * snapshots (and compute placement themselves), or ask for the addresses of
 * keys; the monitor sets per-key replication overrides. Any router answers
 * any client: the state is a lattice and converges by gossip.
 *
 * One thread: poll the listening socket, the peer replies and the signal
 * descriptor; timers for gossip and failure detection.
 */
#include "routing/route.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/metrics.h"
#include "base/net.h"
#include "server/peer.h"
#include "gateway/resp_server.h"
#include "placement/ring.h"
#include "placement/ring_wire.h"
#include "base/wire.h"

#define ROUTE_MAX_FDS      64
#define ROUTE_DRAIN        512
#define ROUTE_CHECK_MS     200
#define ROUTE_PEER_TIMEOUT 1000

typedef struct seen {
    char id[RING_MAX_NODE_ID + 1];
    uint64_t generation;
    uint64_t last_ms; /* monotonic time of the last heartbeat we know of */
    Trellis__NodeLoad load;
    int has_load;
} seen;

struct router {
    config cfg;
    char id[64];
    membership *m;
    ring *ring; /* built from m at `epoch` */
    uint64_t epoch;
    int dirty; /* m changed since ring/snapshot were built */
    ring_params params;

    /* the snapshot served to clients, rebuilt when the epoch moves */
    Trellis__RingSnapshot snap;
    Trellis__NodeInfo *snap_nodes;
    Trellis__NodeInfo **snap_pnodes;
    Trellis__KeyOverride *snap_ov;
    Trellis__KeyOverride **snap_pov;

    seen *seen;
    size_t nseen, capseen;

    nng_socket rep;
    int rep_open;
    int rep_fd;
    int port;
    peer_pool *peers;
    net_tls *tls;
    wire_limits lim;
    wire_arena *arena;
    metrics_server *metrics;
    resp_server *resp; /* the Redis protocol gateway, when route.resp_port is set */
    pthread_mutex_t metrics_lock;
    int sigfd;
    uint64_t started_ms;
    uint64_t next_gossip_ms;
    uint64_t next_check_ms;
    int stop;

    router_reply_hook reply_hook;
    void *reply_hook_arg;

    /* counters */
    uint64_t requests, hellos, ring_requests, lookups, gossip_rounds, marked_dead, errors;
    uint64_t unauth_dropped; /* over limits.unauth_message_bytes without the token */

    /* The monitor's latest aggregates (it pushes a StatsReply every period):
     * busy fractions and p99s come from the shards' own reports there, finer
     * than the heartbeats' summaries. */
    struct {
        uint64_t at_ms; /* arrival, 0: never */
        int has[RING_TIERS];
        double busy[RING_TIERS];
        uint64_t p99_us[RING_TIERS];
        uint64_t client_p99_us;
        uint32_t hot_keys;
    } mon;
};

/* ---- membership ------------------------------------------------------------------- */

static seen *seen_find(router *r, const char *id)
{
    for (size_t i = 0; i < r->nseen; i++)
        if (strcmp(r->seen[i].id, id) == 0)
            return &r->seen[i];
    return NULL;
}

static seen *seen_get(router *r, const char *id)
{
    seen *s = seen_find(r, id);
    if (s)
        return s;
    if (r->nseen == r->capseen) {
        size_t cap = r->capseen ? r->capseen * 2 : 32;
        seen *n = realloc(r->seen, cap * sizeof(*n));
        if (!n)
            return NULL;
        r->seen = n;
        r->capseen = cap;
    }
    s = &r->seen[r->nseen++];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->last_ms = clock_mono_ms();
    return s;
}

static void snap_free(router *r)
{
    free(r->snap_nodes);
    free(r->snap_pnodes);
    free(r->snap_ov);
    free(r->snap_pov);
    r->snap_nodes = NULL;
    r->snap_pnodes = NULL;
    r->snap_ov = NULL;
    r->snap_pov = NULL;
}

/* Rebuilds the ring and the snapshot after the membership changed. */
static void router_refresh(router *r)
{
    if (!r->dirty)
        return;
    ring *nr;
    int rc = membership_ring(r->m, &r->params, &nr);
    if (rc != TRELLIS_OK) {
        log_error("cannot build the ring: %s", trellis_strerror(rc));
        return;
    }
    ring_free(r->ring);
    r->ring = nr;
    uint64_t old = r->epoch;
    r->epoch = membership_epoch(r->m);
    r->dirty = 0;

    snap_free(r);
    size_t nn = membership_count(r->m), no = membership_override_count(r->m);
    r->snap_nodes = calloc(nn + 1, sizeof(*r->snap_nodes));
    r->snap_pnodes = calloc(nn + 1, sizeof(*r->snap_pnodes));
    r->snap_ov = calloc(no + 1, sizeof(*r->snap_ov));
    r->snap_pov = calloc(no + 1, sizeof(*r->snap_pov));
    trellis__ring_snapshot__init(&r->snap);
    if (!r->snap_nodes || !r->snap_pnodes || !r->snap_ov || !r->snap_pov) {
        snap_free(r);
        r->dirty = 1;
        return;
    }
    for (size_t i = 0; i < nn; i++) {
        ring_node_to_info(membership_node_at(r->m, i), &r->snap_nodes[i]);
        r->snap_pnodes[i] = &r->snap_nodes[i];
    }
    for (size_t i = 0; i < no; i++) {
        const ring_override *o = membership_override_at(r->m, i);
        Trellis__KeyOverride *ko = &r->snap_ov[i];
        trellis__key_override__init(ko);
        ko->key.data = (uint8_t *)o->key;
        ko->key.len = o->klen;
        ko->memory = o->memory;
        ko->disk = o->disk;
        ko->version = o->version;
        r->snap_pov[i] = ko;
    }
    r->snap.epoch = r->epoch;
    r->snap.nodes = r->snap_pnodes;
    r->snap.n_nodes = nn;
    r->snap.overrides = r->snap_pov;
    r->snap.n_overrides = no;
    r->snap.vnodes = r->params.vnodes;
    r->snap.memory_replicas = r->params.memory_replicas;
    r->snap.disk_replicas = r->params.disk_replicas;
    r->snap.monitor = r->cfg.cluster.monitor;
    if (old != r->epoch)
        log_info("ring epoch %llu: %zu nodes, %zu overrides", (unsigned long long)r->epoch, nn, no);
}

/* Merges a node record; returns 1 if the membership changed. */
static int router_merge_node(router *r, const ring_node *rn)
{
    int rc = membership_merge_node(r->m, rn);
    if (rc > 0) {
        r->dirty = 1;
        const ring_node *cur = membership_find(r->m, rn->id);
        log_info("node %s: %s generation %llu", rn->id, ring_state_name(cur ? cur->state : 0),
                 (unsigned long long)(cur ? cur->generation : 0));
    }
    return rc > 0;
}

/* ---- replies ----------------------------------------------------------------------------- */

static void router_send(router *r, nng_msg *req, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    env->ring_epoch = r->epoch;
    nng_msg *m;
    int rc = wire_reply_msg(req, env, &m);
    nng_msg_free(req);
    if (rc != TRELLIS_OK)
        return;
    if (r->reply_hook)
        r->reply_hook(r->reply_hook_arg, m);
    else if (nng_sendmsg(r->rep, m, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(m);
}

static void router_error(router *r, nng_msg *req, int status, const char *text)
{
    Trellis__Envelope env;
    Trellis__ErrorReply er;
    wire_error_init(&env, &er, status, text);
    r->errors++;
    router_send(r, req, &env);
}

static void reply_snapshot(router *r, nng_msg *req, uint64_t known_epoch)
{
    router_refresh(r);
    Trellis__Envelope env;
    Trellis__RingSnapshot unchanged;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_RING;
    if (known_epoch && known_epoch == r->epoch) {
        trellis__ring_snapshot__init(&unchanged);
        unchanged.epoch = r->epoch;
        unchanged.unchanged = 1;
        env.ring = &unchanged;
    } else {
        env.ring = &r->snap;
    }
    router_send(r, req, &env);
}

/* ---- handlers ------------------------------------------------------------------------------ */

static void handle_hello(router *r, nng_msg *req, const Trellis__NodeHello *h)
{
    ring_node rn;
    if (ring_node_from_info(h->node, &rn) != TRELLIS_OK) {
        router_error(r, req, TRELLIS_INVALID, "invalid node record");
        return;
    }
    r->hellos++;
    router_merge_node(r, &rn);
    const ring_node *cur = membership_find(r->m, rn.id);
    if (cur && cur->generation == rn.generation) {
        seen *s = seen_get(r, rn.id);
        if (s) {
            s->generation = rn.generation;
            s->last_ms = clock_mono_ms();
            if (h->load) {
                s->load = *h->load;
                s->load.base.unknown_fields = NULL;
                s->load.base.n_unknown_fields = 0;
                s->has_load = 1;
            }
        }
    }
    reply_snapshot(r, req, h->known_epoch);
}

static void handle_membership(router *r, nng_msg *req, const Trellis__MembershipGossip *g)
{
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < g->n_nodes; i++) {
        ring_node rn;
        if (ring_node_from_info(g->nodes[i], &rn) == TRELLIS_OK)
            router_merge_node(r, &rn);
    }
    for (size_t i = 0; i < g->n_overrides; i++) {
        const Trellis__KeyOverride *ko = g->overrides[i];
        ring_override o = {ko->key.data, ko->key.len, ko->memory, ko->disk, ko->version};
        if (membership_merge_override(r->m, &o) > 0)
            r->dirty = 1;
    }
    for (size_t i = 0; i < g->n_seen; i++) {
        const Trellis__NodeSeen *ns = g->seen[i];
        if (!ns->id || strlen(ns->id) > RING_MAX_NODE_ID)
            continue;
        const ring_node *cur = membership_find(r->m, ns->id);
        if (!cur || cur->generation != ns->generation)
            continue;
        seen *s = seen_get(r, ns->id);
        uint64_t at = ns->age_ms < now ? now - ns->age_ms : 0;
        if (s && (s->generation != ns->generation || at > s->last_ms)) {
            s->generation = ns->generation;
            s->last_ms = at;
        }
    }
    if (!req)
        return;
    /* Push-pull: answer with what we know. */
    router_refresh(r);
    Trellis__Envelope env;
    Trellis__MembershipGossip out;
    trellis__envelope__init(&env);
    trellis__membership_gossip__init(&out);
    out.nodes = r->snap.nodes;
    out.n_nodes = r->snap.n_nodes;
    out.overrides = r->snap.overrides;
    out.n_overrides = r->snap.n_overrides;
    out.router_id = r->id;
    env.body_case = TRELLIS__ENVELOPE__BODY_MEMBERSHIP;
    env.membership = &out;
    router_send(r, req, &env);
}

static void handle_lookup(router *r, nng_msg *req, const Trellis__LookupRequest *lr)
{
    router_refresh(r);
    if (lr->n_keys > r->lim.max_ops) {
        router_error(r, req, TRELLIS_TOO_LARGE, "too many keys");
        return;
    }
    r->lookups++;
    Trellis__LookupReply rep;
    trellis__lookup_reply__init(&rep);
    rep.epoch = r->epoch;
    size_t n = lr->n_keys;
    Trellis__KeyAddress *ka = wire_arena_alloc(r->arena, (n + 1) * sizeof(*ka));
    Trellis__KeyAddress **pka = wire_arena_alloc(r->arena, (n + 1) * sizeof(*pka));
    if (!ka || !pka) {
        router_error(r, req, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *k = &lr->keys[i];
        trellis__key_address__init(&ka[i]);
        pka[i] = &ka[i];
        if (!r->ring || wire_check_key(k, &r->lim) != TRELLIS_OK)
            continue;
        int idx[2 * RING_MAX_REPLICAS];
        size_t m = ring_replicas(r->ring, RING_CURRENT, RING_TIER_MEMORY, k->data, k->len, idx,
                                 RING_MAX_REPLICAS);
        m += ring_replicas(r->ring, RING_CURRENT, RING_TIER_DISK, k->data, k->len, idx + m,
                           RING_MAX_REPLICAS);
        char **urls = wire_arena_alloc(r->arena, (m + 1) * sizeof(char *));
        if (!urls)
            continue;
        for (size_t j = 0; j < m; j++) {
            const ring_node *node = ring_node_at(r->ring, (size_t)idx[j]);
            char *u = wire_arena_alloc(r->arena, RING_MAX_URL + 1);
            if (!u || ring_shard_url(node, ring_local_shard(k->data, k->len, node->shards), u,
                                     RING_MAX_URL + 1) != TRELLIS_OK)
                continue;
            urls[ka[i].n_urls++] = u;
        }
        ka[i].urls = urls;
    }
    rep.addresses = pka;
    rep.n_addresses = n;
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_LOOKUP_REPLY;
    env.lookup_reply = &rep;
    router_send(r, req, &env);
}

static void handle_stats(router *r, nng_msg *req)
{
    router_refresh(r);
    Trellis__StatsReply rep;
    Trellis__TierStats ts[RING_TIERS];
    Trellis__TierStats *pts[RING_TIERS];
    trellis__stats_reply__init(&rep);
    for (int t = 0; t < RING_TIERS; t++) {
        trellis__tier_stats__init(&ts[t]);
        ts[t].tier = (Trellis__Tier)(t + 1);
        pts[t] = &ts[t];
    }
    for (size_t i = 0; i < membership_count(r->m); i++) {
        const ring_node *n = membership_node_at(r->m, i);
        if (n->state != NODE_ACTIVE && n->state != NODE_LEAVING)
            continue;
        if (n->tier < 1 || n->tier > RING_TIERS)
            continue;
        Trellis__TierStats *t = &ts[n->tier - 1];
        t->nodes++;
        seen *s = seen_find(r, n->id);
        if (s && s->has_load && s->generation == n->generation) {
            t->keys += s->load.keys;
            t->bytes += s->load.bytes;
            t->capacity += s->load.capacity;
            t->ops_per_sec += s->load.ops_per_sec;
            t->busy += s->load.busy;
        }
    }
    for (int t = 0; t < RING_TIERS; t++)
        if (ts[t].nodes)
            ts[t].busy /= ts[t].nodes;
    rep.epoch = r->epoch;
    rep.tiers = pts;
    rep.n_tiers = RING_TIERS;
    rep.hot_keys = (uint32_t)membership_override_count(r->m);
    /* The monitor's figures while they are fresh (three of its periods);
     * its hot-key count leaves out overrides back at the default. */
    if (r->mon.at_ms && clock_mono_ms() - r->mon.at_ms < 3 * (uint64_t)r->cfg.monitor.period_ms) {
        for (int t = 0; t < RING_TIERS; t++) {
            if (!r->mon.has[t])
                continue;
            ts[t].busy = r->mon.busy[t];
            ts[t].p99_us = r->mon.p99_us[t];
        }
        rep.client_p99_us = r->mon.client_p99_us;
        rep.hot_keys = r->mon.hot_keys;
    }
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_STATS_REPLY;
    env.stats_reply = &rep;
    router_send(r, req, &env);
}

/* A StatsReply pushed by the monitor: kept for handle_stats. */
static void handle_monitor_stats(router *r, nng_msg *req, const Trellis__StatsReply *sr)
{
    memset(&r->mon, 0, sizeof(r->mon));
    r->mon.at_ms = clock_mono_ms();
    for (size_t i = 0; i < sr->n_tiers; i++) {
        const Trellis__TierStats *ts = sr->tiers[i];
        int t = (int)ts->tier - 1;
        if (t < 0 || t >= RING_TIERS)
            continue;
        r->mon.has[t] = 1;
        r->mon.busy[t] = ts->busy;
        r->mon.p99_us[t] = ts->p99_us;
    }
    r->mon.client_p99_us = sr->client_p99_us;
    r->mon.hot_keys = sr->hot_keys;
    Trellis__CommandReply cr;
    trellis__command_reply__init(&cr);
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
    env.command_reply = &cr;
    router_send(r, req, &env);
}

static void handle_command(router *r, nng_msg *req, const Trellis__Command *c)
{
    Trellis__CommandReply cr;
    trellis__command_reply__init(&cr);
    cr.status = TRELLIS__STATUS__OK;
    switch (c->code) {
    case TRELLIS__COMMAND_CODE__CMD_SET_OVERRIDES:
        for (size_t i = 0; i < c->n_overrides; i++) {
            const Trellis__KeyOverride *ko = c->overrides[i];
            ring_override o = {ko->key.data, ko->key.len, ko->memory, ko->disk, ko->version};
            int rc = membership_merge_override(r->m, &o);
            if (rc > 0) {
                r->dirty = 1;
                cr.count++;
            } else if (rc < 0) {
                cr.status = (Trellis__Status)-rc;
            }
        }
        break;
    case TRELLIS__COMMAND_CODE__CMD_MARK_DEAD: {
        const ring_node *n = c->node_id ? membership_find(r->m, c->node_id) : NULL;
        if (!n) {
            cr.status = TRELLIS__STATUS__NOT_FOUND;
            break;
        }
        if (n->state < NODE_DEAD) {
            ring_node dead = *n;
            dead.state = NODE_DEAD;
            router_merge_node(r, &dead);
            r->marked_dead++;
            cr.count = 1;
        }
        break;
    }
    default:
        router_error(r, req, TRELLIS_INVALID, "unsupported command");
        return;
    }
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND_REPLY;
    env.command_reply = &cr;
    router_send(r, req, &env);
}

static void router_handle(router *r, nng_msg *msg)
{
    Trellis__Envelope *env = NULL;
    r->requests++;
    if (!wire_peek_auth(nng_msg_body(msg), nng_msg_len(msg), r->cfg.auth.token)) {
        /* As a shard does (shard_kv.c): a large message without the token
         * is dropped unanswered and counted; the connection stays. */
        if (nng_msg_len(msg) > (size_t)r->cfg.limits.unauth_message_bytes) {
            r->unauth_dropped++;
            nng_msg_free(msg);
            return;
        }
        router_error(r, msg, TRELLIS_UNAUTHORIZED, "missing or wrong token");
        return;
    }
    int rc = wire_decode(r->arena, nng_msg_body(msg), nng_msg_len(msg), &r->lim, &env);
    if (rc != TRELLIS_OK) {
        router_error(r, msg, rc, "undecodable message or unsupported version");
        return;
    }
    switch (env->body_case) {
    case TRELLIS__ENVELOPE__BODY_HELLO:
        handle_hello(r, msg, env->hello);
        break;
    case TRELLIS__ENVELOPE__BODY_RING_REQUEST:
        r->ring_requests++;
        reply_snapshot(r, msg, env->ring_request->known_epoch);
        break;
    case TRELLIS__ENVELOPE__BODY_MEMBERSHIP:
        handle_membership(r, msg, env->membership);
        break;
    case TRELLIS__ENVELOPE__BODY_LOOKUP:
        handle_lookup(r, msg, env->lookup);
        break;
    case TRELLIS__ENVELOPE__BODY_STATS_REQUEST:
        handle_stats(r, msg);
        break;
    case TRELLIS__ENVELOPE__BODY_COMMAND:
        handle_command(r, msg, env->command);
        break;
    case TRELLIS__ENVELOPE__BODY_STATS_REPLY:
        handle_monitor_stats(r, msg, env->stats_reply);
        break;
    default:
        router_error(r, msg, TRELLIS_MALFORMED,
                     "a router serves hello, ring_request, membership, lookup, stats_request, "
                     "stats_reply (from the monitor) and command");
        break;
    }
}

/* ---- timers ---------------------------------------------------------------------------------- */

/* A peer router's answer to our gossip: its membership. */
static void router_gossip_done(void *arg, int status, const Trellis__Envelope *reply)
{
    router *r = arg;
    if (status == TRELLIS_OK && reply && reply->body_case == TRELLIS__ENVELOPE__BODY_MEMBERSHIP)
        handle_membership(r, NULL, reply->membership);
}

/* Whether a peer URL names this router: its own listen address, or this
 * host's name (a StatefulSet pod's stable name starts with its hostname)
 * with this router's port. A shared peer list can then name every router. */
static int router_is_self(const router *r, const char *url)
{
    const char *hostp = strstr(url, "://");
    if (!hostp)
        return 0;
    hostp += 3;
    const char *colon = strrchr(hostp, ':');
    if (!colon || atoi(colon + 1) != r->port)
        return 0;
    size_t hlen = (size_t)(colon - hostp);
    if (strlen(r->cfg.route.listen) == hlen && strncmp(hostp, r->cfg.route.listen, hlen) == 0)
        return 1;
    char me[256];
    if (gethostname(me, sizeof(me)) != 0)
        return 0;
    me[sizeof(me) - 1] = '\0';
    size_t mlen = strlen(me);
    return mlen && hlen >= mlen && strncmp(hostp, me, mlen) == 0 &&
           (hlen == mlen || hostp[mlen] == '.');
}

static void router_gossip(router *r, uint64_t now)
{
    if (r->cfg.route.peers.n == 0)
        return;
    router_refresh(r);
    Trellis__NodeSeen *ns = calloc(r->nseen + 1, sizeof(*ns));
    Trellis__NodeSeen **pns = calloc(r->nseen + 1, sizeof(*pns));
    if (!ns || !pns) {
        free(ns);
        free(pns);
        return;
    }
    for (size_t i = 0; i < r->nseen; i++) {
        trellis__node_seen__init(&ns[i]);
        ns[i].id = r->seen[i].id;
        ns[i].generation = r->seen[i].generation;
        ns[i].age_ms = now - r->seen[i].last_ms;
        pns[i] = &ns[i];
    }
    Trellis__Envelope env;
    Trellis__MembershipGossip g;
    trellis__envelope__init(&env);
    trellis__membership_gossip__init(&g);
    g.nodes = r->snap.nodes;
    g.n_nodes = r->snap.n_nodes;
    g.overrides = r->snap.overrides;
    g.n_overrides = r->snap.n_overrides;
    g.router_id = r->id;
    g.seen = pns;
    g.n_seen = r->nseen;
    env.body_case = TRELLIS__ENVELOPE__BODY_MEMBERSHIP;
    env.membership = &g;
    for (int i = 0; i < r->cfg.route.peers.n; i++) {
        const char *url = r->cfg.route.peers.v[i];
        if (router_is_self(r, url))
            continue;
        if (peer_inflight(r->peers, url) == 0)
            peer_send(r->peers, url, &env, ROUTE_PEER_TIMEOUT, r->epoch, 0, router_gossip_done, r);
    }
    r->gossip_rounds++;
    free(ns);
    free(pns);
}

/* Marks nodes whose heartbeats stopped. A router that just started waits
 * one timeout before judging anyone. */
static void router_check(router *r, uint64_t now)
{
    uint64_t timeout = (uint64_t)r->cfg.route.node_timeout_ms;
    if (now - r->started_ms < timeout)
        return;
    for (size_t i = 0; i < membership_count(r->m); i++) {
        const ring_node *n = membership_node_at(r->m, i);
        if (n->state != NODE_JOINING && n->state != NODE_ACTIVE && n->state != NODE_LEAVING)
            continue;
        seen *s = seen_get(r, n->id);
        if (!s)
            continue;
        if (s->generation != n->generation) {
            /* A generation we have not heard from yet: start its clock. */
            s->generation = n->generation;
            s->last_ms = now;
            continue;
        }
        if (now - s->last_ms <= timeout)
            continue;
        ring_node dead = *n;
        dead.state = NODE_DEAD;
        log_warn("node %s: no heartbeat for %llu ms: DEAD", n->id,
                 (unsigned long long)(now - s->last_ms));
        r->marked_dead++;
        router_merge_node(r, &dead);
        i = (size_t)-1; /* the membership may have reordered; start over */
        if (membership_count(r->m) == 0)
            break;
    }
}

/* ---- metrics -----------------------------------------------------------------------------------
 */

static void render_metrics(void *arg, mbuf *b)
{
    router *r = arg;
    pthread_mutex_lock(&r->metrics_lock);
    metrics_family(b, "trellis_router_requests_total", "counter", "Messages received.");
    mbuf_printf(b, "trellis_router_requests_total %llu\n", (unsigned long long)r->requests);
    metrics_family(b, "trellis_router_hellos_total", "counter", "Node heartbeats.");
    mbuf_printf(b, "trellis_router_hellos_total %llu\n", (unsigned long long)r->hellos);
    metrics_family(b, "trellis_router_ring_requests_total", "counter", "Ring snapshots served.");
    mbuf_printf(b, "trellis_router_ring_requests_total %llu\n",
                (unsigned long long)r->ring_requests);
    metrics_family(b, "trellis_router_lookups_total", "counter", "Key lookups.");
    mbuf_printf(b, "trellis_router_lookups_total %llu\n", (unsigned long long)r->lookups);
    metrics_family(b, "trellis_router_marked_dead_total", "counter", "Nodes marked DEAD.");
    mbuf_printf(b, "trellis_router_marked_dead_total %llu\n", (unsigned long long)r->marked_dead);
    metrics_family(b, "trellis_router_unauthenticated_dropped_total", "counter",
                   "Messages without the token larger than limits.unauth_message_bytes, dropped "
                   "unanswered.");
    mbuf_printf(b, "trellis_router_unauthenticated_dropped_total %llu\n",
                (unsigned long long)r->unauth_dropped);
    metrics_family(b, "trellis_router_errors_total", "counter", "Requests answered with errors.");
    mbuf_printf(b, "trellis_router_errors_total %llu\n", (unsigned long long)r->errors);
    metrics_family(b, "trellis_ring_epoch", "gauge", "Current ring epoch.");
    mbuf_printf(b, "trellis_ring_epoch %llu\n", (unsigned long long)r->epoch);
    metrics_family(b, "trellis_nodes", "gauge", "Storage nodes by tier and state.");
    int counts[RING_TIERS + 1][NODE_LEFT + 1] = {{0}};
    for (size_t i = 0; i < membership_count(r->m); i++) {
        const ring_node *n = membership_node_at(r->m, i);
        if (n->tier >= 1 && n->tier <= RING_TIERS && n->state >= 1 && n->state <= NODE_LEFT)
            counts[n->tier][n->state]++;
    }
    for (int t = 1; t <= RING_TIERS; t++)
        for (int s = 1; s <= NODE_LEFT; s++)
            mbuf_printf(b, "trellis_nodes{tier=\"%s\",state=\"%s\"} %d\n", ring_tier_name(t),
                        ring_state_name(s), counts[t][s]);
    resp_server_metrics(r->resp, b);
    pthread_mutex_unlock(&r->metrics_lock);
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------ */

/* Everything but the listening socket, metrics and signals. */
static int router_init(const config *cfg, router **out)
{
    *out = NULL;
    router *r = calloc(1, sizeof(*r));
    if (!r)
        return TRELLIS_INTERNAL;
    r->cfg = *cfg;
    r->sigfd = -1;
    r->rep_fd = -1;
    pthread_mutex_init(&r->metrics_lock, NULL);
    if (cfg->route.id[0])
        snprintf(r->id, sizeof(r->id), "%s", cfg->route.id);
    else
        snprintf(r->id, sizeof(r->id), "r%lld", (long long)cfg->route.port);
    log_init("route", r->id);
    r->params.vnodes = (uint32_t)cfg->cluster.vnodes;
    r->params.memory_replicas = (uint32_t)cfg->cluster.memory_replicas;
    r->params.disk_replicas = (uint32_t)cfg->cluster.disk_replicas;
    config_wire_limits(cfg, &r->lim);
    char err[CONFIG_ERR_MAX];
    int rc = config_tls_new(cfg, &r->tls, err, sizeof(err));
    if (rc != TRELLIS_OK) {
        log_error("%s", err);
        router_close(r);
        return rc;
    }
    if (membership_new(&r->m) != TRELLIS_OK || !(r->arena = wire_arena_new())) {
        router_close(r);
        return TRELLIS_INTERNAL;
    }
    r->dirty = 1;
    router_refresh(r);
    rc = peer_pool_new(r->tls, &r->lim, cfg->auth.token, &r->peers);
    if (rc != TRELLIS_OK) {
        router_close(r);
        return rc;
    }
    r->started_ms = clock_mono_ms();
    *out = r;
    return TRELLIS_OK;
}

int router_open_detached(const config *cfg, router_reply_hook hook, void *arg, router **out)
{
    int rc = router_init(cfg, out);
    if (rc == TRELLIS_OK) {
        (*out)->reply_hook = hook;
        (*out)->reply_hook_arg = arg;
    }
    return rc;
}

void router_feed(router *r, nng_msg *req)
{
    router_handle(r, req);
    router_refresh(r);
    wire_arena_reset(r->arena);
}

int router_open(const config *cfg, router **out)
{
    router *r;
    int rc = router_init(cfg, &r);
    if (rc != TRELLIS_OK)
        return rc;
    *out = NULL;
    int rv = nng_rep0_open_raw(&r->rep);
    if (rv != 0) {
        router_close(r);
        return net_status(rv);
    }
    r->rep_open = 1;
    nng_socket_set_int(r->rep, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_int(r->rep, NNG_OPT_RECVBUF, 1024);
    char url[CONFIG_STR_MAX + 32];
    snprintf(url, sizeof(url), "%s://%s:%lld", r->tls ? "tls+tcp" : "tcp", cfg->route.listen,
             (long long)cfg->route.port);
    if ((rc = net_set_limits(r->rep, r->lim.max_message, 0, 0)) != TRELLIS_OK ||
        (rc = net_listen(r->rep, url, r->tls, &r->port)) != TRELLIS_OK ||
        nng_socket_get_int(r->rep, NNG_OPT_RECVFD, &r->rep_fd) != 0) {
        router_close(r);
        return rc != TRELLIS_OK ? rc : TRELLIS_INTERNAL;
    }
    if (cfg->route.metrics_port > 0 &&
        (rc = metrics_start(cfg->route.listen, (int)cfg->route.metrics_port, render_metrics, NULL,
                            r, &r->metrics)) != TRELLIS_OK) {
        router_close(r);
        return rc;
    }
    if (cfg->route.resp_port > 0 &&
        (rc = resp_server_start(cfg, r->id, r->port, &r->resp)) != TRELLIS_OK) {
        router_close(r);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    r->started_ms = clock_mono_ms();
    log_info("serving on %s (%d peers)", url, cfg->route.peers.n);
    *out = r;
    return TRELLIS_OK;
}

int router_fd(const router *r)
{
    return r->rep_fd;
}

void router_step(router *r, int timeout_ms)
{
    struct pollfd fds[ROUTE_MAX_FDS];
    fds[0] = (struct pollfd){.fd = r->rep_fd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
    int n = 2 + peer_pollfds(r->peers, fds + 2, ROUTE_MAX_FDS - 2);
    uint64_t now = clock_mono_ms();
    uint64_t next = r->next_gossip_ms < r->next_check_ms ? r->next_gossip_ms : r->next_check_ms;
    uint64_t pd = peer_next_deadline(r->peers);
    if (pd < next)
        next = pd;
    int t = next > now ? (int)(next - now) : 0;
    if (t > timeout_ms)
        t = timeout_ms;
    if (poll(fds, (nfds_t)n, t) < 0 && errno != EINTR)
        return;
    if (fds[1].revents) {
        struct signalfd_siginfo si;
        while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            log_info("signal %u: stopping", si.ssi_signo);
            r->stop = 1;
        }
    }
    pthread_mutex_lock(&r->metrics_lock);
    for (int i = 0; i < ROUTE_DRAIN; i++) {
        nng_msg *m;
        if (nng_recvmsg(r->rep, &m, NNG_FLAG_NONBLOCK) != 0)
            break;
        router_handle(r, m);
        wire_arena_reset(r->arena);
    }
    now = clock_mono_ms();
    peer_process(r->peers, now);
    if (now >= r->next_check_ms) {
        router_check(r, now);
        r->next_check_ms = now + ROUTE_CHECK_MS;
    }
    if (now >= r->next_gossip_ms) {
        router_gossip(r, now);
        r->next_gossip_ms = now + (uint64_t)r->cfg.route.gossip_period_ms;
    }
    router_refresh(r);
    pthread_mutex_unlock(&r->metrics_lock);
    wire_arena_reset(r->arena);
}

int router_run(router *r)
{
    while (!r->stop)
        router_step(r, 1000);
    return 0;
}

int router_port(const router *r)
{
    return r->port;
}

void router_close(router *r)
{
    if (!r)
        return;
    metrics_stop(r->metrics);
    resp_server_stop(r->resp);
    if (r->rep_open)
        nng_close(r->rep);
    peer_pool_free(r->peers);
    membership_free(r->m);
    ring_free(r->ring);
    snap_free(r);
    free(r->seen);
    net_tls_free(r->tls);
    wire_arena_free(r->arena);
    if (r->sigfd >= 0)
        close(r->sigfd);
    pthread_mutex_destroy(&r->metrics_lock);
    free(r);
}
