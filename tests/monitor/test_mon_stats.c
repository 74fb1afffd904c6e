/*
 * test_mon_stats.c - the monitor's view: reports attached to the nodes the
 * ring knows (at their generation), per-tier aggregates over fresh reports
 * of serving nodes, client latency, and the hot-key population summed over
 * replicas.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "monitor/mon_stats.h"

static ring *make_ring(const ring_node *nodes, size_t n)
{
    ring_params p = {16, 1, 1};
    ring *r = NULL;
    cr_assert_eq(ring_build(nodes, n, NULL, 0, &p, 1, &r), TRELLIS_OK);
    return r;
}

static ring_node node(const char *id, int tier, int state, uint64_t gen)
{
    ring_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "%s", id);
    n.tier = tier;
    n.state = state;
    n.generation = gen;
    n.shards = 2;
    snprintf(n.endpoint, sizeof(n.endpoint), "tcp://127.0.0.1:%d", 7000 + (int)gen);
    snprintf(n.admin_url, sizeof(n.admin_url), "tcp://127.0.0.1:%d", 8000 + (int)gen);
    return n;
}

/* A report of two shards with the given figures; hot keys optional. */
typedef struct report {
    Trellis__StatsReport rep;
    Trellis__NodeInfo ni;
    Trellis__ShardStats ss[2], *pss[2];
    Trellis__HotKey hk[4], *phk[4];
    Trellis__HotKey fk[4], *pfk[4];
} report;

static void make_report(report *r, const char *id, int tier, uint64_t gen, double busy0,
                        double busy1, uint64_t ops, uint64_t p99, uint64_t bytes)
{
    memset(r, 0, sizeof(*r));
    trellis__stats_report__init(&r->rep);
    trellis__node_info__init(&r->ni);
    r->ni.id = (char *)id;
    r->ni.tier = (Trellis__Tier)tier;
    r->ni.generation = gen;
    r->rep.node = &r->ni;
    r->rep.period_ms = 500;
    r->rep.capacity = 1000;
    for (int i = 0; i < 2; i++) {
        trellis__shard_stats__init(&r->ss[i]);
        r->ss[i].shard = (uint32_t)i;
        r->ss[i].busy = i ? busy1 : busy0;
        r->ss[i].ops = ops / 2;
        r->ss[i].reads = ops / 4;
        r->ss[i].p99_us = i ? p99 : p99 / 2;
        r->ss[i].keys = 10;
        r->ss[i].bytes = bytes / 2;
        r->pss[i] = &r->ss[i];
    }
    r->rep.shards = r->pss;
    r->rep.n_shards = 2;
}

static void add_hot(report *r, int shard, const char *key, size_t klen, uint64_t count)
{
    Trellis__ShardStats *s = &r->ss[shard];
    int i = (int)(r->ss[0].n_hot + r->ss[1].n_hot);
    trellis__hot_key__init(&r->hk[i]);
    r->hk[i].key.data = (uint8_t *)key;
    r->hk[i].key.len = klen;
    r->hk[i].count = count;
    r->phk[i] = &r->hk[i];
    if (!s->hot)
        s->hot = &r->phk[i];
    s->n_hot++;
}

Test(stats, aggregates_fresh_reports_of_serving_nodes)
{
    mon_view v;
    mon_view_init(&v, 500);
    ring_node nodes[] = {node("m1", 1, NODE_ACTIVE, 1), node("m2", 1, NODE_ACTIVE, 2),
                         node("m3", 1, NODE_JOINING, 3), node("d1", 2, NODE_ACTIVE, 4),
                         node("m4", 1, NODE_DEAD, 5)};
    ring *r = make_ring(nodes, 5);
    cr_assert_eq(mon_view_set_ring(&v, r, 1000), TRELLIS_OK);
    report a, b, c;
    make_report(&a, "m1", 1, 1, 0.2, 0.4, 1000, 800, 200);   /* busy 0.3 */
    make_report(&b, "m2", 1, 2, 0.9, 0.7, 3000, 5000, 600);  /* busy 0.8 */
    make_report(&c, "m3", 1, 3, 1.0, 1.0, 9000, 90000, 900); /* JOINING: not counted */
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    cr_assert_eq(mon_view_report(&v, &b.rep, 1100), TRELLIS_OK);
    cr_assert_eq(mon_view_report(&v, &c.rep, 1100), TRELLIS_OK);
    mon_tier t;
    mon_view_tier(&v, 1, 1200, &t);
    cr_assert_eq(t.active, 2);
    cr_assert_eq(t.joining, 1);
    cr_assert_eq(t.dead, 1);
    cr_assert_eq(t.reporting, 2);
    cr_assert_float_eq(t.busy_avg, 0.55, 1e-9);
    cr_assert_float_eq(t.busy_max, 0.8, 1e-9);
    cr_assert_eq(t.p99_us, 5000);
    cr_assert_float_eq(t.ops_per_sec, (1000 + 3000) / 0.5, 1e-6);
    cr_assert_float_eq(t.ops_max, 3000 / 0.5, 1e-6);
    cr_assert_eq(t.bytes, 800);
    cr_assert_eq(t.capacity, 2000);
    cr_assert_float_eq(t.cap_use, 0.4, 1e-9);
    cr_assert_float_eq(t.cap_max, 0.6, 1e-9);
    cr_assert_eq(t.data_ms, 1100);
    /* Reports go stale after MON_STALE_PERIODS periods. */
    mon_view_tier(&v, 1, 1100 + 3 * 500 + 1, &t);
    cr_assert_eq(t.reporting, 0);
    cr_assert_eq(t.active, 2);
    mon_view_tier(&v, 2, 1200, &t);
    cr_assert_eq(t.active, 1);
    cr_assert_eq(t.reporting, 0);
    ring_free(r);
    mon_view_fini(&v);
}

Test(stats, a_node_that_measures_its_cpu_is_as_busy_as_its_cpu_says)
{
    mon_view v;
    mon_view_init(&v, 500);
    ring_node nodes[] = {node("m1", 1, NODE_ACTIVE, 1), node("m2", 1, NODE_ACTIVE, 2)};
    ring *r = make_ring(nodes, 2);
    cr_assert_eq(mon_view_set_ring(&v, r, 1000), TRELLIS_OK);
    report a, b;
    /* Shards that look idle (their own compute) on a node whose threads
     * use all of its half core: the node's figure counts. */
    make_report(&a, "m1", 1, 1, 0.1, 0.1, 1000, 800, 200);
    a.rep.busy = 0.96;
    a.rep.cpu_used = 0.48;
    a.rep.cpu_allotted = 0.5;
    a.rep.cpu_quota = 1;
    a.rep.quota_periods = 10;
    a.rep.throttled_periods = 8;
    /* An older node without CPU figures: its shards' average. */
    make_report(&b, "m2", 1, 2, 0.2, 0.4, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    cr_assert_eq(mon_view_report(&v, &b.rep, 1000), TRELLIS_OK);
    mon_node *n = mon_view_find(&v, "m1");
    cr_assert_float_eq(n->busy, 0.96, 1e-9);
    cr_assert_float_eq(n->throttled, 0.8, 1e-9);
    cr_assert_eq(n->cpu_quota, 1);
    cr_assert_float_eq(mon_view_find(&v, "m2")->busy, 0.3, 1e-9);
    mon_tier t;
    mon_view_tier(&v, 1, 1100, &t);
    cr_assert_float_eq(t.busy_avg, (0.96 + 0.3) / 2, 1e-9);
    cr_assert_float_eq(t.busy_max, 0.96, 1e-9);
    cr_assert_float_eq(t.cpu_used, 0.48, 1e-9);
    cr_assert_float_eq(t.cpu_allotted, 0.5, 1e-9);
    cr_assert_float_eq(t.throttled_max, 0.8, 1e-9);
    /* Figures out of range are clamped, never trusted as they come. */
    a.rep.busy = 7;
    a.rep.throttled_periods = 50;
    cr_assert_eq(mon_view_report(&v, &a.rep, 1200), TRELLIS_OK);
    n = mon_view_find(&v, "m1");
    cr_assert_float_eq(n->busy, 1, 1e-9);
    cr_assert_float_eq(n->throttled, 0, 1e-9);
    ring_free(r);
    mon_view_fini(&v);
}

Test(stats, reports_of_another_generation_are_ignored)
{
    mon_view v;
    mon_view_init(&v, 500);
    ring_node nodes[] = {node("m1", 1, NODE_ACTIVE, 7)};
    ring *r = make_ring(nodes, 1);
    mon_view_set_ring(&v, r, 1000);
    report a;
    make_report(&a, "m1", 1, 6, 0.9, 0.9, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    mon_tier t;
    mon_view_tier(&v, 1, 1000, &t);
    cr_assert_eq(t.reporting, 0);
    cr_assert_eq(v.rejected, 1);
    /* A new generation in the ring drops the old incarnation's report. */
    make_report(&a, "m1", 1, 7, 0.9, 0.9, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    mon_view_tier(&v, 1, 1000, &t);
    cr_assert_eq(t.reporting, 1);
    ring_node again[] = {node("m1", 1, NODE_ACTIVE, 8)};
    ring *r2 = make_ring(again, 1);
    mon_view_set_ring(&v, r2, 1100);
    mon_view_tier(&v, 1, 1100, &t);
    cr_assert_eq(t.reporting, 0);
    ring_free(r);
    ring_free(r2);
    mon_view_fini(&v);
}

Test(stats, a_report_before_the_ring_waits_for_it)
{
    mon_view v;
    mon_view_init(&v, 500);
    report a;
    make_report(&a, "m9", 1, 3, 0.5, 0.5, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    mon_tier t;
    mon_view_tier(&v, 1, 1000, &t);
    cr_assert_eq(t.reporting, 0); /* state 0 until the ring lists it */
    ring_node nodes[] = {node("m9", 1, NODE_ACTIVE, 3)};
    ring *r = make_ring(nodes, 1);
    mon_view_set_ring(&v, r, 1200);
    mon_view_tier(&v, 1, 1200, &t);
    cr_assert_eq(t.reporting, 1);
    /* A node the ring forgets disappears once its report is stale. */
    ring *empty = make_ring(NULL, 0);
    mon_view_set_ring(&v, empty, 1300);
    cr_assert_not_null(mon_view_find(&v, "m9"));
    mon_view_set_ring(&v, empty, 1000 + 3 * 500 + 1);
    cr_assert_null(mon_view_find(&v, "m9"));
    ring_free(r);
    ring_free(empty);
    mon_view_fini(&v);
}

Test(stats, malformed_reports_are_refused)
{
    mon_view v;
    mon_view_init(&v, 500);
    report a;
    make_report(&a, "", 1, 3, 0.5, 0.5, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_INVALID);
    make_report(&a, "m1", 9, 3, 0.5, 0.5, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_INVALID);
    a.rep.node = NULL;
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_INVALID);
    char longid[RING_MAX_NODE_ID + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    make_report(&a, longid, 1, 3, 0.5, 0.5, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_INVALID);
    /* Busy fractions out of [0, 1] are clamped. */
    ring_node nodes[] = {node("m1", 1, NODE_ACTIVE, 3)};
    ring *r = make_ring(nodes, 1);
    mon_view_set_ring(&v, r, 1000);
    make_report(&a, "m1", 1, 3, 7.0, -3.0, 1000, 800, 200);
    cr_assert_eq(mon_view_report(&v, &a.rep, 1000), TRELLIS_OK);
    mon_tier t;
    mon_view_tier(&v, 1, 1000, &t);
    cr_assert_float_eq(t.busy_avg, 0.5, 1e-9);
    ring_free(r);
    mon_view_fini(&v);
}

Test(stats, client_latency_worst_fresh)
{
    mon_view v;
    mon_view_init(&v, 500);
    Trellis__StatsReport c;
    trellis__stats_report__init(&c);
    c.client_id = "a";
    c.period_ms = 500;
    c.client_ops = MON_CLIENT_MIN_CALLS;
    c.client_p99_us = 3000;
    cr_assert_eq(mon_view_report(&v, &c, 1000), TRELLIS_OK);
    c.client_id = "b";
    c.client_p99_us = 9000;
    cr_assert_eq(mon_view_report(&v, &c, 1000), TRELLIS_OK);
    cr_assert_eq(mon_view_client_p99(&v, 1100), 9000);
    c.client_p99_us = 100; /* b again, better now */
    cr_assert_eq(mon_view_report(&v, &c, 2000), TRELLIS_OK);
    cr_assert_eq(mon_view_client_p99(&v, 2100), 3000);
    cr_assert_eq(mon_view_client_p99(&v, 2600), 100); /* a is stale */
    cr_assert_eq(mon_view_client_p99(&v, 9000), 0);
    /* A window of a few calls (a CLI's) says too little. */
    c.client_id = "cli";
    c.client_ops = MON_CLIENT_MIN_CALLS - 1;
    c.client_p99_us = 900000;
    cr_assert_eq(mon_view_report(&v, &c, 8000), TRELLIS_OK);
    cr_assert_eq(mon_view_client_p99(&v, 8100), 0);
    c.client_ops = MON_CLIENT_MIN_CALLS;
    /* The table is bounded; quiet clients' slots are reused. */
    char id[16];
    for (int i = 0; i < MON_MAX_CLIENTS; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        c.client_id = id;
        int rc = mon_view_report(&v, &c, 10000);
        cr_assert(rc == TRELLIS_OK, "client %d: %d", i, rc);
    }
    c.client_id = "one-too-many";
    cr_assert_eq(mon_view_report(&v, &c, 10000), TRELLIS_TOO_LARGE);
    cr_assert_eq(mon_view_report(&v, &c, 20000), TRELLIS_OK);
    mon_view_fini(&v);
}

static void add_found(report *r, int shard, const char *key, uint64_t count, uint64_t error)
{
    Trellis__ShardStats *s = &r->ss[shard];
    int i = (int)(r->ss[0].n_found + r->ss[1].n_found);
    trellis__hot_key__init(&r->fk[i]);
    r->fk[i].key.data = (uint8_t *)key;
    r->fk[i].key.len = strlen(key);
    r->fk[i].count = count;
    r->fk[i].error = error;
    r->pfk[i] = &r->fk[i];
    if (!s->found)
        s->found = &r->pfk[i];
    s->n_found++;
}

Test(stats, sketch_counts_are_taken_at_what_is_certain)
{
    mon_view v;
    mon_view_init(&v, 500);
    ring_node nodes[] = {node("d1", 2, NODE_ACTIVE, 1), node("d2", 2, NODE_ACTIVE, 2)};
    ring *r = make_ring(nodes, 2);
    mon_view_set_ring(&v, r, 1000);
    report a, b;
    make_report(&a, "d1", 2, 1, 0.1, 0.1, 1000, 800, 200);
    make_report(&b, "d2", 2, 2, 0.1, 0.1, 1000, 800, 200);
    /* A key that just replaced another in the sketch inherits its count:
     * 63 of which 60 are the evicted key's. */
    add_hot(&a, 0, "any", 3, 70);
    a.hk[0].error = 65;
    add_found(&a, 0, "new", 63, 60);
    add_found(&a, 1, "often", 40, 0);
    add_found(&b, 0, "often", 30, 5);
    add_found(&b, 1, "bogus", 3, 9); /* error beyond the count: nothing */
    mon_view_report(&v, &a.rep, 1000);
    mon_view_report(&v, &b.rep, 1000);
    mon_key_stats ks;
    cr_assert_eq(mon_view_key_stats(&v, 2, MON_KEYS_FOUND, 1, 1100, &ks), TRELLIS_OK);
    cr_assert_eq(ks.n, 3);
    for (size_t i = 0; i < ks.n; i++) {
        const mon_key_rate *k = &ks.keys[i];
        if (k->klen == 3 && memcmp(k->key, "new", 3) == 0)
            cr_assert_eq(k->count, 3);
        else if (k->klen == 5 && memcmp(k->key, "often", 5) == 0)
            cr_assert_eq(k->count, 65);
        else
            cr_assert_eq(k->count, 0, "%.*s", (int)k->klen, k->key);
    }
    mon_key_stats_free(&ks);
    /* The accessed keys are a list of their own. */
    cr_assert_eq(mon_view_key_stats(&v, 2, MON_KEYS_ACCESSED, 1, 1100, &ks), TRELLIS_OK);
    cr_assert_eq(ks.n, 1);
    cr_assert_eq(ks.keys[0].count, 5);
    mon_key_stats_free(&ks);
    ring_free(r);
    mon_view_fini(&v);
}

Test(stats, hot_keys_are_summed_over_replicas)
{
    mon_view v;
    mon_view_init(&v, 500);
    ring_node nodes[] = {node("m1", 1, NODE_ACTIVE, 1), node("m2", 1, NODE_ACTIVE, 2),
                         node("d1", 2, NODE_ACTIVE, 3)};
    ring *r = make_ring(nodes, 3);
    mon_view_set_ring(&v, r, 1000);
    report a, b, d;
    make_report(&a, "m1", 1, 1, 0.1, 0.1, 1000, 800, 200);
    make_report(&b, "m2", 1, 2, 0.1, 0.1, 3000, 800, 200);
    make_report(&d, "d1", 2, 3, 0.1, 0.1, 3000, 800, 200);
    add_hot(&a, 0, "hot", 3, 400);
    add_hot(&a, 1, "warm", 4, 50);
    add_hot(&b, 0, "hot", 3, 600);
    char big[MON_HOT_KEY_MAX];
    memset(big, 'b', sizeof(big));
    add_hot(&b, 1, big, sizeof(big), 9999); /* may be truncated: left out */
    add_hot(&d, 0, "hot", 3, 5000);         /* another tier */
    mon_view_report(&v, &a.rep, 1000);
    mon_view_report(&v, &b.rep, 1000);
    mon_view_report(&v, &d.rep, 1000);
    mon_key_stats ks;
    cr_assert_eq(mon_view_key_stats(&v, 1, MON_KEYS_ACCESSED, 2, 1100, &ks), TRELLIS_OK);
    cr_assert_eq(ks.n, 2);
    double hot = 0, warm = 0;
    for (size_t i = 0; i < ks.n; i++) {
        if (ks.keys[i].klen == 3 && memcmp(ks.keys[i].key, "hot", 3) == 0) {
            hot = ks.keys[i].rate;
            cr_assert_eq(ks.keys[i].count, 1000);
        } else if (ks.keys[i].klen == 4 && memcmp(ks.keys[i].key, "warm", 4) == 0) {
            warm = ks.keys[i].rate;
        }
    }
    cr_assert_float_eq(hot, 2000, 1e-9);
    cr_assert_float_eq(warm, 100, 1e-9);
    cr_assert_float_eq(ks.total_rate, 8000, 1e-9);
    cr_assert_float_eq(ks.nkeys, 20, 1e-9); /* 40 stored keys, 2 replicas each */
    cr_assert_eq(ks.data_ms, 1000);
    mon_key_stats_free(&ks);
    ring_free(r);
    mon_view_fini(&v);
}
