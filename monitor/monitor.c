/*
 * monitor.c - trellis-monitor: the loop, the period's evaluation, open and
 * close.
 *
 * One thread runs one loop: poll the listening socket (storage nodes and
 * clients push StatsReport, the CLI and tests ask StatsRequest: mon_serve.c),
 * the replies to the monitor's own requests (a peer_pool: ring snapshots
 * and commands to routers and nodes, each request with its own
 * completion), and a signalfd (SIGTERM, SIGINT, SIGCHLD). Every period it
 * fetches the ring from a router (mon_ring.c), and when the snapshot (or
 * its failure) arrives it aggregates the latest reports, runs the policies
 * (mon_policy.c) and carries their decisions out (mon_elasticity.c,
 * mon_hotkeys.c, mon_tiers.c), records what they left alone
 * (mon_record.c) and pushes the aggregates to the routers. Adding and
 * removing nodes take seconds (a drain, a kubectl run): they are operations
 * advanced a step per loop turn, never waited for, so statistics keep
 * flowing while they run. The monitor's state is in mon_impl.h.
 */
#include "monitor/monitor.h"

#include <errno.h>
#include <poll.h>
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
#include "monitor/mon_impl.h"

#define MON_MAX_FDS 64
#define MON_DRAIN   512 /* messages handled per loop turn */

/* The period's work, once the ring snapshot is in (or failed). */
static void evaluate(monitor *m, uint64_t now)
{
    m->eval_due = 0;
    mon_tier tiers[RING_TIERS];
    for (int t = 0; t < RING_TIERS; t++)
        mon_view_tier(&m->view, t + 1, now, &tiers[t]);
    uint64_t client_p99 = mon_view_client_p99(&m->view, now);
    if (mon_ring_fresh(m, now)) {
        if (m->cfg.monitor.elasticity)
            mon_elasticity_run(m, now, tiers, client_p99);
        /* A period's overrides go out together; the ones the routers miss
         * go again in a period without new ones. */
        if (m->cfg.monitor.hot_keys && mon_hotkeys_run(m, now, tiers) == 0)
            mon_hotkeys_reconcile(m, now);
        if (m->cfg.monitor.tiering)
            mon_tiers_run(m, now, tiers);
        mon_record_period(m, now);
    }
    mon_serve_push(m, now);
    mon_metrics_update(m, now, tiers, client_p99);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void on_node_exit(void *arg, const char *id, int status)
{
    (void)arg;
    log_warn("node %s, started by this monitor, exited unexpectedly (wait status %d)", id, status);
}

static void monitor_step(monitor *m, int timeout_ms)
{
    struct pollfd fds[MON_MAX_FDS];
    fds[0] = (struct pollfd){.fd = m->rep_fd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
    int n = 2 + peer_pollfds(m->peers, fds + 2, MON_MAX_FDS - 2);
    uint64_t now = clock_mono_ms();
    uint64_t next = m->next_period_ms;
    uint64_t pd = peer_next_deadline(m->peers);
    if (pd < next)
        next = pd;
    int t = next > now ? (int)(next - now) : 0;
    if (mon_elasticity_ops(m) > 0 && t > 50)
        t = 50; /* operations watch child processes and the ring */
    if (t > timeout_ms)
        t = timeout_ms;
    if (poll(fds, (nfds_t)n, t) < 0 && errno != EINTR)
        return;
    if (fds[1].revents) {
        struct signalfd_siginfo si;
        while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGCHLD)
                continue; /* children are reaped below, by pid */
            log_info("signal %u: stopping", si.ssi_signo);
            m->stop = 1;
        }
    }
    now = clock_mono_ms();
    for (int i = 0; i < MON_DRAIN; i++) {
        nng_msg *msg;
        if (nng_recvmsg(m->rep, &msg, NNG_FLAG_NONBLOCK) != 0)
            break;
        mon_serve_handle(m, msg, now);
        wire_arena_reset(m->arena);
    }
    peer_process(m->peers, now);
    now = clock_mono_ms();
    if (now >= m->next_period_ms) {
        m->periods++;
        m->next_period_ms += m->period_ms;
        if (m->next_period_ms <= now)
            m->next_period_ms = now + m->period_ms;
        mon_prov_reap(m->prov, on_node_exit, m);
        mon_ring_ask(m, now);
    }
    /* The ring reply (or its failure) triggers the evaluation; a router
     * that does not answer must not stall it past its deadline. */
    if (m->eval_due || (m->rs.inflight && now - m->rs.asked_ms > MON_RPC_TIMEOUT_MS + 100)) {
        if (m->rs.inflight && !m->eval_due)
            log_debug("ring request still pending; evaluating with the previous ring");
        evaluate(m, now);
    }
    mon_elasticity_advance(m, now);
    wire_arena_reset(m->arena);
}

int monitor_run(monitor *m)
{
    while (!m->stop)
        monitor_step(m, 1000);
    return 0;
}

static void setup_policies(monitor *m)
{
    const config *c = &m->cfg;
    for (int t = RING_TIER_MEMORY; t <= RING_TIER_DISK; t++) {
        mon_elastic_cfg *e = &m->el.cfg[t];
        e->min_nodes =
            (int)(t == RING_TIER_MEMORY ? c->monitor.min_memory_nodes : c->monitor.min_disk_nodes);
        e->max_nodes =
            (int)(t == RING_TIER_MEMORY ? c->monitor.max_memory_nodes : c->monitor.max_disk_nodes);
        e->busy_high = c->monitor.busy_high;
        e->busy_low = c->monitor.busy_low;
        e->capacity_high = c->monitor.capacity_high;
        e->capacity_low = c->monitor.capacity_low;
        e->latency_slo_us = (uint64_t)c->monitor.latency_slo_us;
        e->slo_periods = (int)c->monitor.slo_periods;
        e->grace_ms = (uint64_t)c->monitor.grace_ms;
    }
    m->hot.cfg.k = c->monitor.hot_k;
    m->hot.cfg.min_rate = (double)c->monitor.hot_min_rate;
    m->hot.cfg.min_share = c->monitor.hot_min_share;
    m->hot.cfg.cool_ratio = c->monitor.hot_cool_ratio;
    m->hot.cfg.hot_replicas = (uint32_t)c->monitor.hot_replicas;
    m->hot.cfg.default_memory = (uint32_t)c->cluster.memory_replicas;
    m->hot.cfg.default_disk = (uint32_t)c->cluster.disk_replicas;
    m->hot.cfg.cool_periods = (int)c->monitor.cool_periods;
    m->hot.cfg.grace_ms = (uint64_t)c->monitor.grace_ms;
    m->tiers.cfg.demote_idle_ms = (uint64_t)c->monitor.demote_idle_ms;
    m->tiers.cfg.promote_reads = (uint64_t)c->monitor.promote_reads;
    m->tiers.cfg.promote_max = (size_t)c->monitor.promote_max;
    m->tiers.cfg.capacity_high = c->monitor.capacity_high;
    m->tiers.cfg.capacity_low = c->monitor.capacity_low;
    m->tiers.cfg.grace_ms = (uint64_t)c->monitor.grace_ms;
    m->tiers.cfg.period_ms = m->period_ms;
}

int monitor_open(const monitor_opts *o, monitor **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    snprintf(errbuf, errlen, "%s", "");
    monitor *m = calloc(1, sizeof(*m));
    if (!m)
        return TRELLIS_INTERNAL;
    m->cfg = *o->cfg;
    m->rep_fd = -1;
    m->sigfd = -1;
    mon_metrics_init(m);
    log_init("monitor", "");
    m->start_ms = clock_mono_ms();
    m->period_ms = (uint64_t)m->cfg.monitor.period_ms;
    m->next_period_ms = m->start_ms + m->period_ms;
    mon_view_init(&m->view, m->period_ms);
    setup_policies(m);
    config_wire_limits(&m->cfg, &m->lim);

    char err[CONFIG_ERR_MAX];
    int rc = config_tls_new(&m->cfg, &m->tls, err, sizeof(err));
    if (rc != TRELLIS_OK) {
        snprintf(errbuf, errlen, "%s", err);
        monitor_close(m);
        return TRELLIS_INVALID;
    }
    const char *scheme = m->tls ? "tls+tcp" : "tcp";
    snprintf(m->url, sizeof(m->url), "%s://%s:%lld", scheme, m->cfg.monitor.listen,
             (long long)m->cfg.monitor.port);
    const char *host = m->cfg.monitor.listen;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1"; /* the nodes the local provisioner starts run here */
    snprintf(m->self_url, sizeof(m->self_url), "%s://%s:%lld", scheme, host,
             (long long)m->cfg.monitor.port);

    if (!(m->arena = wire_arena_new())) {
        monitor_close(m);
        return TRELLIS_INTERNAL;
    }
    mon_prov_opts po = {&m->cfg, o->config_path, m->self_url, o->self_exe};
    if ((rc = mon_prov_new(&po, &m->prov, err, sizeof(err))) != TRELLIS_OK) {
        snprintf(errbuf, errlen, "%s", err);
        monitor_close(m);
        return rc;
    }
    if ((rc = mon_log_open(m->cfg.monitor.log_file, &m->dlog)) != TRELLIS_OK) {
        snprintf(errbuf, errlen, "monitor.log_file %s cannot be opened for appending",
                 m->cfg.monitor.log_file);
        monitor_close(m);
        return TRELLIS_INVALID;
    }
    if ((rc = peer_pool_new(m->tls, &m->lim, m->cfg.auth.token, &m->peers)) != TRELLIS_OK) {
        monitor_close(m);
        return rc;
    }
    int rv = nng_rep0_open_raw(&m->rep);
    if (rv != 0) {
        monitor_close(m);
        return net_status(rv);
    }
    m->rep_open = 1;
    nng_socket_set_int(m->rep, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_int(m->rep, NNG_OPT_RECVBUF, 1024);
    if ((rc = net_set_limits(m->rep, m->lim.max_message, 0, 0)) != TRELLIS_OK ||
        (rc = net_listen(m->rep, m->url, m->tls, NULL)) != TRELLIS_OK ||
        nng_socket_get_int(m->rep, NNG_OPT_RECVFD, &m->rep_fd) != 0) {
        monitor_close(m);
        return rc != TRELLIS_OK ? rc : TRELLIS_INTERNAL;
    }
    if ((rc = mon_metrics_start(m)) != TRELLIS_OK) {
        monitor_close(m);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        monitor_close(m);
        return TRELLIS_INTERNAL;
    }
    log_info("serving on %s; period %llu ms; provisioner %s; decisions to %s; %d routers", m->url,
             (unsigned long long)m->period_ms, mon_prov_name(m->prov),
             m->cfg.monitor.log_file[0] ? m->cfg.monitor.log_file : "(nowhere)",
             m->cfg.cluster.routers.n);
    *out = m;
    return TRELLIS_OK;
}

int monitor_close_wait_ms(const monitor *m)
{
    return m->prov && mon_prov_own_count(m->prov) > 0 ? MON_STOP_WAIT_MS : 0;
}

void monitor_close(monitor *m)
{
    if (!m)
        return;
    mon_metrics_stop(m);
    /* Operations in progress are abandoned, and logged as such. */
    mon_elasticity_abort(m);
    if (m->dlog)
        mon_record_flush(m);
    /* The nodes the local provisioner started stop first: nothing below
     * may keep them running unowned. */
    mon_prov_free(m->prov);
    m->prov = NULL;
    /* Requests in flight get their replies or their deadlines first
     * (their completions then only free their contexts): nng 1.5.2's nng_close of a
     * raw req socket with requests in flight was seen to block forever. */
    m->closing = 1;
    uint64_t end = clock_mono_ms() + MON_RPC_TIMEOUT_MS + 200;
    while (m->peers && peer_total_inflight(m->peers) > 0 && clock_mono_ms() < end) {
        struct pollfd fds[MON_MAX_FDS];
        int n = peer_pollfds(m->peers, fds, MON_MAX_FDS);
        poll(fds, (nfds_t)n, 20);
        peer_process(m->peers, clock_mono_ms());
    }
    peer_pool_free(m->peers);
    m->peers = NULL;
    if (m->rep_open)
        nng_close(m->rep);
    mon_log_close(m->dlog);
    mbuf_free(&m->line);
    mon_ring_fini(m);
    mon_view_fini(&m->view);
    mon_hotkeys_fini(m);
    net_tls_free(m->tls);
    wire_arena_free(m->arena);
    if (m->sigfd >= 0)
        close(m->sigfd);
    mon_metrics_fini(m);
    free(m);
}
