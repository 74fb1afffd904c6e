/*
 * mon_metrics.c - the monitor's /metrics endpoint (mon_metrics.h).
 */
#include "monitor/mon_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/mon_impl.h"

void mon_metrics_update(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99)
{
    struct mon_snap_node *pn = calloc(m->view.nnodes + 1, sizeof(*pn));
    size_t npn = 0;
    for (size_t i = 0; pn && i < m->view.nnodes; i++) {
        const mon_node *n = &m->view.nodes[i];
        if (!n->state)
            continue;
        struct mon_snap_node *s = &pn[npn++];
        snprintf(s->id, sizeof(s->id), "%s", n->id);
        s->tier = n->tier;
        s->state = n->state;
        int fresh = mon_node_fresh(&m->view, n, now);
        s->busy = fresh ? n->busy : 0;
        s->ops_per_sec = fresh ? n->ops_per_sec : 0;
        s->cpu_used = fresh ? n->cpu_used : 0;
        s->cpu_allotted = n->cpu_allotted;
        s->throttled = fresh ? n->throttled : 0;
        s->p99_us = fresh ? n->p99_us : 0;
        s->bytes = n->bytes;
        s->keys = n->keys;
    }
    pthread_mutex_lock(&m->met.lock);
    mon_snapshot *s = &m->met.snap;
    memcpy(s->tiers, tiers, sizeof(s->tiers));
    memset(s->nodes, 0, sizeof(s->nodes));
    for (size_t i = 0; i < m->view.nnodes; i++) {
        const mon_node *n = &m->view.nodes[i];
        if (n->tier >= 1 && n->tier <= RING_TIERS && n->state >= 1 && n->state <= NODE_LEFT)
            s->nodes[n->tier][n->state]++;
    }
    s->client_p99_us = client_p99;
    s->hot_in_force = mon_hot_in_force(&m->hot.st);
    s->reports = m->view.reports;
    s->rejected = m->view.rejected;
    s->periods = m->periods;
    s->ring_epoch = m->rs.epoch;
    s->ops = mon_elasticity_ops(m);
    s->own_nodes = mon_prov_own_count(m->prov);
    memcpy(s->counters, m->rec.counters, sizeof(s->counters));
    s->ncounters = m->rec.ncounters;
    free(s->per_node);
    s->per_node = pn;
    s->nper_node = pn ? npn : 0;
    pthread_mutex_unlock(&m->met.lock);
}

static void render_metrics(void *arg, mbuf *b)
{
    monitor *m = arg;
    pthread_mutex_lock(&m->met.lock);
    const mon_snapshot *s = &m->met.snap;
#define TIER_FAMILY(name, help, fmt, expr)                                                         \
    do {                                                                                           \
        metrics_family(b, name, "gauge", help);                                                    \
        for (int t = 0; t < RING_TIERS; t++) {                                                     \
            const mon_tier *a = &s->tiers[t];                                                      \
            mbuf_printf(b, "%s{tier=\"%s\"} " fmt "\n", name, ring_tier_name(t + 1), expr);        \
        }                                                                                          \
    } while (0)
    TIER_FAMILY("trellis_monitor_tier_active_nodes", "ACTIVE nodes by tier.", "%d", a->active);
    TIER_FAMILY("trellis_monitor_tier_busy_ratio", "Average busy fraction of a tier's nodes.",
                "%.4f", a->busy_avg);
    TIER_FAMILY("trellis_monitor_tier_busy_max_ratio", "Busiest node of a tier.", "%.4f",
                a->busy_max);
    TIER_FAMILY("trellis_monitor_tier_cpu_used_cores", "CPU used by a tier's nodes.", "%.4f",
                a->cpu_used);
    TIER_FAMILY("trellis_monitor_tier_cpu_allotted_cores", "CPU allotted to a tier's nodes.",
                "%.4f", a->cpu_allotted);
    TIER_FAMILY("trellis_monitor_tier_ops_per_second", "Operations per second by tier.", "%.1f",
                a->ops_per_sec);
    TIER_FAMILY("trellis_monitor_tier_p99_microseconds", "Worst shard p99 service time by tier.",
                "%llu", (unsigned long long)a->p99_us);
    TIER_FAMILY("trellis_monitor_tier_keys", "Keys stored by tier.", "%llu",
                (unsigned long long)a->keys);
    TIER_FAMILY("trellis_monitor_tier_bytes", "Bytes stored by tier.", "%llu",
                (unsigned long long)a->bytes);
    TIER_FAMILY("trellis_monitor_tier_capacity_bytes", "Capacity by tier.", "%llu",
                (unsigned long long)a->capacity);
    TIER_FAMILY("trellis_monitor_tier_storage_ratio", "Bytes over capacity by tier.", "%.4f",
                a->cap_use);
#undef TIER_FAMILY
    metrics_family(b, "trellis_monitor_nodes", "gauge", "Storage nodes by tier and state.");
    for (int t = 1; t <= RING_TIERS; t++)
        for (int st = 1; st <= NODE_LEFT; st++)
            mbuf_printf(b, "trellis_monitor_nodes{tier=\"%s\",state=\"%s\"} %d\n",
                        ring_tier_name(t), ring_state_name(st), s->nodes[t][st]);
    metrics_family(b, "trellis_monitor_node_ops_per_second", "gauge",
                   "Operations per second of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(
            b, "trellis_monitor_node_ops_per_second{node=\"%s\",tier=\"%s\",state=\"%s\"} %.1f\n",
            s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
            ring_state_name(s->per_node[i].state), s->per_node[i].ops_per_sec);
    metrics_family(b, "trellis_monitor_node_busy_ratio", "gauge",
                   "Busy fraction of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_busy_ratio{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier), s->per_node[i].busy);
    metrics_family(b, "trellis_monitor_node_cpu_used_cores", "gauge",
                   "CPU used by each node (all its threads), last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_cpu_used_cores{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].cpu_used);
    metrics_family(b, "trellis_monitor_node_cpu_allotted_cores", "gauge",
                   "CPU each node may use (its quota, or its CPUs), last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_cpu_allotted_cores{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].cpu_allotted);
    metrics_family(b, "trellis_monitor_node_throttled_ratio", "gauge",
                   "Share of CPU quota periods each node was throttled in, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_throttled_ratio{node=\"%s\",tier=\"%s\"} %.4f\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    s->per_node[i].throttled);
    metrics_family(b, "trellis_monitor_node_p99_microseconds", "gauge",
                   "Worst shard p99 service time of each node, last report.");
    for (size_t i = 0; i < s->nper_node; i++)
        mbuf_printf(b, "trellis_monitor_node_p99_microseconds{node=\"%s\",tier=\"%s\"} %llu\n",
                    s->per_node[i].id, ring_tier_name(s->per_node[i].tier),
                    (unsigned long long)s->per_node[i].p99_us);
    metrics_family(b, "trellis_monitor_decisions_total", "counter",
                   "Decisions taken, by policy, action and result.");
    for (int i = 0; i < s->ncounters; i++)
        mbuf_printf(
            b, "trellis_monitor_decisions_total{policy=\"%s\",action=\"%s\",result=\"%s\"} %llu\n",
            s->counters[i].policy, s->counters[i].action, s->counters[i].ok ? "ok" : "failed",
            (unsigned long long)s->counters[i].n);
    metrics_family(b, "trellis_monitor_hot_keys", "gauge",
                   "Keys with a replication override in force.");
    mbuf_printf(b, "trellis_monitor_hot_keys %zu\n", s->hot_in_force);
    metrics_family(b, "trellis_monitor_client_p99_microseconds", "gauge",
                   "Worst end-to-end p99 reported by clients.");
    mbuf_printf(b, "trellis_monitor_client_p99_microseconds %llu\n",
                (unsigned long long)s->client_p99_us);
    metrics_family(b, "trellis_monitor_reports_total", "counter", "Statistics reports accepted.");
    mbuf_printf(b, "trellis_monitor_reports_total %llu\n", (unsigned long long)s->reports);
    metrics_family(b, "trellis_monitor_reports_rejected_total", "counter",
                   "Statistics reports refused or ignored.");
    mbuf_printf(b, "trellis_monitor_reports_rejected_total %llu\n",
                (unsigned long long)s->rejected);
    metrics_family(b, "trellis_monitor_periods_total", "counter", "Policy evaluations.");
    mbuf_printf(b, "trellis_monitor_periods_total %llu\n", (unsigned long long)s->periods);
    metrics_family(b, "trellis_monitor_operations", "gauge",
                   "Node additions and removals in progress.");
    mbuf_printf(b, "trellis_monitor_operations %d\n", s->ops);
    metrics_family(b, "trellis_monitor_local_nodes", "gauge",
                   "Nodes the local provisioner started that run.");
    mbuf_printf(b, "trellis_monitor_local_nodes %d\n", s->own_nodes);
    metrics_family(b, "trellis_ring_epoch", "gauge", "Ring epoch the monitor last saw.");
    mbuf_printf(b, "trellis_ring_epoch %llu\n", (unsigned long long)s->ring_epoch);
    pthread_mutex_unlock(&m->met.lock);
}

static int metrics_ready(void *arg)
{
    monitor *m = arg;
    pthread_mutex_lock(&m->met.lock);
    int ready = m->met.snap.ring_epoch != 0;
    pthread_mutex_unlock(&m->met.lock);
    return ready;
}

void mon_metrics_init(monitor *m)
{
    pthread_mutex_init(&m->met.lock, NULL);
}

int mon_metrics_start(monitor *m)
{
    if (m->cfg.monitor.metrics_port <= 0)
        return TRELLIS_OK;
    return metrics_start(m->cfg.monitor.listen, (int)m->cfg.monitor.metrics_port, render_metrics,
                         metrics_ready, m, &m->met.server);
}

void mon_metrics_stop(monitor *m)
{
    metrics_stop(m->met.server);
    m->met.server = NULL;
}

void mon_metrics_fini(monitor *m)
{
    free(m->met.snap.per_node);
    m->met.snap.per_node = NULL;
    pthread_mutex_destroy(&m->met.lock);
}
