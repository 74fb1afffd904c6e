/*
 * mon_impl.h - the monitor's state, shared by monitor.c (the loop, the
 * period's evaluation, open and close) and the parts it drives, each of
 * which keeps its own state in a header of its own:
 *
 *   mon_ring.h        the ring snapshot fetched from a router every period
 *   mon_serve.h       the listening socket and the statistics served
 *   mon_elasticity.h  node additions and removals (the elasticity policy)
 *   mon_hotkeys.h     replication overrides (the hot-key policy)
 *   mon_tiers.h       demotion sweeps and promotions (the tiering policy)
 *   mon_record.h      decision lines, their counts, the summary line
 *   mon_metrics.h     what /metrics shows
 *
 * The policies themselves are pure functions (mon_policy.h); the parts
 * carry their decisions out. Every request the monitor sends carries its
 * own completion (peer_send's callback and context), defined beside the
 * code that sends it. Private to monitor/.
 */
#ifndef TRELLIS_MON_IMPL_H
#define TRELLIS_MON_IMPL_H

#include <stdint.h>

#include <nng/nng.h>

#include "base/net.h"
#include "base/wire.h"
#include "monitor/mon_elasticity.h"
#include "monitor/mon_hotkeys.h"
#include "monitor/mon_log.h"
#include "monitor/mon_metrics.h"
#include "monitor/mon_policy.h"
#include "monitor/mon_prov.h"
#include "monitor/mon_record.h"
#include "monitor/mon_ring.h"
#include "monitor/mon_serve.h"
#include "monitor/mon_stats.h"
#include "monitor/mon_tiers.h"
#include "monitor/monitor.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/peer.h"

#define MON_RPC_TIMEOUT_MS 1000 /* a router or node must answer within this */

struct monitor {
    config cfg;
    char url[CONFIG_STR_MAX + 32];      /* where we listen */
    char self_url[CONFIG_STR_MAX + 32]; /* what nodes are told */
    nng_socket rep;
    int rep_open, rep_fd;
    int sigfd;
    net_tls *tls;
    wire_limits lim;
    wire_arena *arena;
    peer_pool *peers;
    mon_log *dlog;
    mbuf line; /* the decision line being built */
    mon_prov *prov;
    int stop;
    int closing; /* requests failing at close only free their contexts */

    uint64_t start_ms, period_ms, next_period_ms, periods;
    mon_view view; /* the nodes' and clients' latest reports */
    int eval_due;  /* the ring snapshot (or its failure) is in: evaluate */

    mon_ring_state rs;
    mon_serve_state serve;
    mon_elasticity_state el;
    mon_hotkeys_state hot;
    mon_tiers_state tiers;
    mon_record_state rec;
    mon_metrics_state met;
};

/* Milliseconds since the monitor started (decision lines' t_ms). */
static inline uint64_t mon_since_start(const monitor *m, uint64_t ms)
{
    return ms >= m->start_ms ? ms - m->start_ms : 0;
}

/* The status of a reply to one of our requests: an ErrorReply becomes its
 * status, with *text pointing to its message (valid as long as reply);
 * otherwise *text is NULL and status is returned as it is. */
static inline int mon_reply_status(int status, const Trellis__Envelope *reply, const char **text)
{
    *text = NULL;
    if (status == TRELLIS_OK && reply && reply->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
        *text = reply->error->message;
        return (int)reply->error->status ? (int)reply->error->status : TRELLIS_INTERNAL;
    }
    return status;
}

/* 1 for a CommandReply with status OK. */
static inline int mon_command_ok(int status, const Trellis__Envelope *reply)
{
    return status == TRELLIS_OK && reply->body_case == TRELLIS__ENVELOPE__BODY_COMMAND_REPLY &&
           reply->command_reply->status == TRELLIS__STATUS__OK;
}

#endif
