/*
 * mon_ring.c - the ring as the routers have it (mon_ring.h).
 */
#include "monitor/mon_ring.h"

#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "monitor/mon_impl.h"
#include "placement/ring_wire.h"

static void ring_done(void *arg, int status, const Trellis__Envelope *reply);

/* As ring_from_snapshot (placement/ring_wire.h), except that an override
 * whose key is empty or too long is left out and vnodes 0 reads as 1: a
 * snapshot the monitor could not otherwise build still gives it a ring to
 * watch. */
static int build_ring(const Trellis__RingSnapshot *rs, ring **out)
{
    size_t nn = rs->n_nodes;
    if (nn > RING_MAX_NODES || rs->n_overrides > RING_MAX_OVERRIDES)
        return TRELLIS_TOO_LARGE;
    ring_node *nodes = calloc(nn ? nn : 1, sizeof(*nodes));
    ring_override *ov = calloc(rs->n_overrides ? rs->n_overrides : 1, sizeof(*ov));
    if (!nodes || !ov) {
        free(nodes);
        free(ov);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0;
    for (size_t i = 0; i < nn; i++) {
        if (ring_node_from_info(rs->nodes[i], &nodes[k]) == TRELLIS_OK)
            k++;
    }
    size_t no = 0;
    for (size_t i = 0; i < rs->n_overrides; i++) {
        const Trellis__KeyOverride *ko = rs->overrides[i];
        if (ko->key.len == 0 || ko->key.len > RING_MAX_OVERRIDE_KEY)
            continue;
        ov[no++] = (ring_override){ko->key.data, ko->key.len, ko->memory, ko->disk, ko->version};
    }
    ring_params p = {rs->vnodes ? rs->vnodes : 1, rs->memory_replicas, rs->disk_replicas};
    int rc = ring_build(nodes, k, ov, no, &p, rs->epoch, out);
    free(nodes);
    free(ov);
    return rc;
}

/* A snapshot arrived: kept unless unchanged; the overrides in it are
 * adopted by the hot-key state. */
static void on_ring(monitor *m, const Trellis__RingSnapshot *rs, uint64_t now)
{
    m->rs.ms = now;
    if (rs->unchanged && m->rs.ring)
        return;
    ring *r;
    int rc = build_ring(rs, &r);
    if (rc != TRELLIS_OK) {
        log_warn("ring snapshot at epoch %llu rejected: %s", (unsigned long long)rs->epoch,
                 trellis_strerror(rc));
        return;
    }
    ring_free(m->rs.ring);
    m->rs.ring = r;
    if (m->rs.epoch != rs->epoch)
        log_debug("ring epoch %llu: %zu nodes", (unsigned long long)rs->epoch, ring_node_count(r));
    m->rs.epoch = rs->epoch;
    mon_view_set_ring(&m->view, r, now);
    /* Overrides someone else set (or an earlier monitor): remember them so
     * that they can cool, and never reuse their versions. */
    for (size_t i = 0; i < ring_override_count(r); i++) {
        const ring_override *o = ring_override_at(r, i);
        if (o->klen < MON_HOT_KEY_MAX)
            mon_hot_adopt(&m->hot.cfg, &m->hot.st, o->key, o->klen, o->memory, o->disk, o->version);
    }
}

void mon_ring_ask(monitor *m, uint64_t now)
{
    int n = m->cfg.cluster.routers.n;
    if (n == 0 || m->rs.inflight)
        return;
    Trellis__Envelope env;
    Trellis__RingRequest rq;
    trellis__envelope__init(&env);
    trellis__ring_request__init(&rq);
    rq.known_epoch = m->rs.ring ? m->rs.epoch : 0;
    env.body_case = TRELLIS__ENVELOPE__BODY_RING_REQUEST;
    env.ring_request = &rq;
    const char *url = m->cfg.cluster.routers.v[m->rs.router_idx % n];
    if (peer_send(m->peers, url, &env, MON_RPC_TIMEOUT_MS, m->rs.epoch, 0, ring_done, m) ==
        TRELLIS_OK) {
        m->rs.inflight = 1;
        m->rs.asked_ms = now;
    } else {
        m->rs.router_idx++;
        m->eval_due = 1;
    }
}

static void ring_done(void *arg, int status, const Trellis__Envelope *reply)
{
    monitor *m = arg;
    const char *text;
    if (m->closing)
        return;
    status = mon_reply_status(status, reply, &text);
    m->rs.inflight = 0;
    if (status == TRELLIS_OK && reply->body_case == TRELLIS__ENVELOPE__BODY_RING)
        on_ring(m, reply->ring, clock_mono_ms());
    else
        m->rs.router_idx++;
    m->eval_due = 1;
}

int mon_ring_fresh(monitor *m, uint64_t now)
{
    int ok = m->rs.ring && now - m->rs.ms <= MON_RING_STALE * m->period_ms;
    if (!ok && !m->rs.warned)
        log_warn("no ring snapshot from the routers for %d periods: policies paused",
                 MON_RING_STALE);
    m->rs.warned = !ok;
    return ok;
}

void mon_ring_fini(monitor *m)
{
    ring_free(m->rs.ring);
    m->rs.ring = NULL;
}
