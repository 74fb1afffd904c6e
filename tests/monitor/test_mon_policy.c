/*
 * test_mon_policy.c - the monitor's policies on synthetic inputs:
 * elasticity (high marks held for slo_periods, latency from the tier and
 * from clients, not while the tier settles after a change, hysteresis,
 * grace periods, minimum and maximum node counts, the projection that
 * keeps scale-in from overloading the rest), hot keys (mean + k stddev over
 * the estimated population, too few keys, min_rate, cooling, growing
 * versions, adopted overrides) and tiering (demotion schedule and capacity
 * pressure, promotion of disk-tier keys).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "monitor/mon_policy.h"

/* ---- elasticity ----------------------------------------------------------- */

static mon_elastic_cfg ecfg(void)
{
    mon_elastic_cfg c = {.min_nodes = 1,
                         .max_nodes = 4,
                         .busy_high = 0.7,
                         .busy_low = 0.2,
                         .capacity_high = 0.8,
                         .capacity_low = 0.3,
                         .latency_slo_us = 10000,
                         .slo_periods = 2,
                         .grace_ms = 5000};
    return c;
}

/* A tier of n ACTIVE nodes, all reporting, with the given figures; each
 * call is a new period of data (data_ms advances). */
static mon_tier tier(int n, double busy, double cap, uint64_t p99, uint64_t data_ms)
{
    mon_tier t;
    memset(&t, 0, sizeof(t));
    t.tier = 1;
    t.active = t.reporting = t.active_reporting = n;
    t.busy_avg = t.busy_max = busy;
    t.cap_use = t.cap_max = cap;
    t.p99_us = p99;
    t.ops_per_sec = 1000.0 * n;
    t.ops_max = 1000.0;
    t.data_ms = data_ms;
    return t;
}

Test(elastic, adds_after_slo_periods_of_high_busy)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    mon_tier t = tier(1, 0.9, 0.1, 1000, 1000);
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1000, why, sizeof(why), NULL), MON_NONE);
    /* The same report again is not a second period. */
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1300, why, sizeof(why), NULL), MON_NONE);
    t.data_ms = 1500;
    mon_elastic_inputs in;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1500, why, sizeof(why), &in), MON_ADD);
    cr_assert(strstr(why, "busy 0.90 > 0.70"), "reason: %s", why);
    cr_assert_eq(in.over_streak, 2);
    cr_assert_eq(in.active, 1);
    cr_assert_eq(st.last_action_ms, 1500);
}

Test(elastic, a_dip_restarts_the_count)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    mon_tier hi = tier(1, 0.9, 0.1, 1000, 1000);
    cr_assert_eq(mon_elastic_decide(&c, &st, &hi, 0, 0, 1000, NULL, 0, NULL), MON_NONE);
    mon_tier lo = tier(1, 0.5, 0.1, 1000, 1500);
    cr_assert_eq(mon_elastic_decide(&c, &st, &lo, 0, 0, 1500, NULL, 0, NULL), MON_NONE);
    hi.data_ms = 2000;
    cr_assert_eq(mon_elastic_decide(&c, &st, &hi, 0, 0, 2000, NULL, 0, NULL), MON_NONE);
    hi.data_ms = 2500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &hi, 0, 0, 2500, NULL, 0, NULL), MON_ADD);
}

Test(elastic, latency_alone_adds)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    mon_tier t = tier(2, 0.1, 0.1, 50000, 1000);
    mon_elastic_decide(&c, &st, &t, 0, 0, 1000, why, sizeof(why), NULL);
    t.data_ms = 1500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1500, why, sizeof(why), NULL), MON_ADD);
    cr_assert(strstr(why, "p99 50000 us > objective 10000 us"), "reason: %s", why);
}

Test(elastic, client_latency_is_used)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    mon_elastic_inputs in;
    mon_tier t = tier(2, 0.1, 0.1, 500, 1000);
    mon_elastic_decide(&c, &st, &t, 30000, 0, 1000, why, sizeof(why), NULL);
    t.data_ms = 1500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 30000, 0, 1500, why, sizeof(why), &in), MON_ADD);
    cr_assert_eq(in.client_p99_us, 30000);
    cr_assert(strstr(why, "p99 30000 us"), "reason: %s", why);
    /* When clients report, their figure is the objective's, not the
     * shards' service time: shards slow (a hand-off, a queue) while the
     * clients are served in time add nothing. */
    mon_elastic_state st3 = {0};
    mon_tier slow = tier(2, 0.1, 0.1, 50000, 1000);
    for (int i = 0; i < 5; i++) {
        slow.data_ms = 1000 + (uint64_t)i * 500;
        cr_assert_eq(
            mon_elastic_decide(&c, &st3, &slow, 4000, 0, slow.data_ms, why, sizeof(why), NULL),
            MON_NONE, "added for the shards' p99 while clients saw 4 ms: %s", why);
    }
    /* Without an objective latency never adds. */
    c.latency_slo_us = 0;
    mon_elastic_state st2 = {0};
    for (int i = 0; i < 5; i++) {
        t.data_ms = 2000 + (uint64_t)i * 500;
        cr_assert_eq(mon_elastic_decide(&c, &st2, &t, 30000, 0, t.data_ms, NULL, 0, NULL),
                     MON_NONE);
    }
}

Test(elastic, storage_use_adds)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    mon_tier t = tier(1, 0.1, 0.5, 500, 1000);
    t.cap_max = 0.85; /* one node is full although the tier is not */
    mon_elastic_decide(&c, &st, &t, 0, 0, 1000, why, sizeof(why), NULL);
    t.data_ms = 1500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1500, why, sizeof(why), NULL), MON_ADD);
    cr_assert(strstr(why, "storage use 0.85 > 0.80"), "reason: %s", why);
}

Test(elastic, grace_after_an_action)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    uint64_t now = 1000;
    mon_tier t = tier(1, 0.9, 0.1, 500, now);
    mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL);
    now += 500;
    t.data_ms = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL), MON_ADD);
    uint64_t added = now;
    t.active = t.reporting = t.active_reporting = 2;
    while (now < added + c.grace_ms - 500) {
        now += 500;
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL), MON_NONE,
                     "acted %llu ms after the last action", (unsigned long long)(now - added));
    }
    now = added + c.grace_ms;
    t.data_ms = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL), MON_ADD);
}

Test(elastic, nothing_while_the_tier_changes)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    mon_tier t = tier(1, 0.9, 0.1, 500, 1000);
    t.joining = 1;
    for (int i = 0; i < 5; i++) {
        t.data_ms = 1000 + (uint64_t)i * 500;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    t.joining = 0;
    t.data_ms = 4000;
    /* An operation of the monitor's own in progress also holds it back. */
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 1, 4000, NULL, 0, NULL), MON_NONE);
    t.data_ms = 4500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 4500, NULL, 0, NULL), MON_ADD);
}

Test(elastic, latency_right_after_a_membership_change_adds_nothing)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    /* A node leaves (an operator's removal: no action of the monitor's
     * own), and callers see 50 ms while it goes and for a while after. */
    mon_tier t = tier(2, 0.1, 0.1, 50000, 1000);
    t.leaving = 1;
    uint64_t now = 1000;
    for (; now < 3000; now += 500) {
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL), MON_NONE);
    }
    uint64_t left = now - 500;
    t = tier(1, 0.1, 0.1, 50000, now);
    for (; now < left + c.grace_ms; now += 500) {
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL), MON_NONE,
                     "added %llu ms after the departure: %s", (unsigned long long)(now - left),
                     why);
    }
    /* Settled, a missed objective counts again. */
    int added = 0;
    for (int i = 0; i < c.slo_periods && !added; i++, now += 500) {
        t.data_ms = now;
        added = mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL) == MON_ADD;
    }
    cr_assert(added, "a settled tier missing its objective got no node");
    cr_assert(strstr(why, "p99 50000 us"), "reason: %s", why);
}

Test(elastic, busy_while_absorbing_a_departed_node_adds_nothing)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    /* Two idle nodes for the grace period: the monitor removes one. */
    uint64_t now = 1000;
    int removed = 0;
    for (; now < 20000 && !removed; now += 500) {
        mon_tier t = tier(2, 0.05, 0.1, 500, now);
        removed = mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL) == MON_REMOVE;
    }
    cr_assert(removed, "two idle nodes stayed two");
    /* It leaves, and the node that stays is busy merging what it was
     * handed, while it leaves and for a while after. */
    mon_tier t = tier(2, 0.9, 0.1, 500, now);
    t.leaving = 1;
    for (int i = 0; i < 4; i++, now += 500) {
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL), MON_NONE);
    }
    uint64_t left = now - 500;
    t = tier(1, 0.9, 0.1, 500, now);
    for (; now < left + c.grace_ms; now += 500) {
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL), MON_NONE,
                     "added %llu ms after the departure: %s", (unsigned long long)(now - left),
                     why);
    }
    /* Still busy once that is over: the load is real, a node is added. */
    int added = 0;
    for (int i = 0; i < c.slo_periods && !added; i++, now += 500) {
        t.data_ms = now;
        added = mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL) == MON_ADD;
    }
    cr_assert(added, "a node still busy after the departure got no help");
    cr_assert(strstr(why, "busy 0.90"), "reason: %s", why);
}

Test(elastic, holds_at_the_maximum_once)
{
    mon_elastic_cfg c = ecfg();
    c.max_nodes = 2;
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    mon_tier t = tier(2, 0.95, 0.1, 500, 1000);
    mon_elastic_decide(&c, &st, &t, 0, 0, 1000, NULL, 0, NULL);
    t.data_ms = 1500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 1500, why, sizeof(why), NULL), MON_HOLD);
    cr_assert(strstr(why, "maximum of 2"), "reason: %s", why);
    for (int i = 0; i < 4; i++) {
        t.data_ms = 2000 + (uint64_t)i * 500;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    /* A new episode is reported again. */
    mon_tier calm = tier(2, 0.5, 0.1, 500, 5000);
    mon_elastic_decide(&c, &st, &calm, 0, 0, 5000, NULL, 0, NULL);
    t.data_ms = 5500;
    mon_elastic_decide(&c, &st, &t, 0, 0, 5500, NULL, 0, NULL);
    t.data_ms = 6000;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, 6000, NULL, 0, NULL), MON_HOLD);
}

Test(elastic, removes_after_grace_below_the_low_marks)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    uint64_t now = 1000;
    mon_tier t = tier(3, 0.05, 0.1, 500, now);
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL), MON_NONE);
    uint64_t since = now;
    while (now + 500 < since + c.grace_ms) {
        now += 500;
        t.data_ms = now;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, NULL, 0, NULL), MON_NONE);
    }
    now = since + c.grace_ms;
    t.data_ms = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, now, why, sizeof(why), NULL), MON_REMOVE);
    cr_assert(strstr(why, "below the low marks"), "reason: %s", why);
}

Test(elastic, hysteresis_one_busy_period_restarts_the_wait)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    uint64_t now = 1000;
    mon_tier lo = tier(2, 0.05, 0.1, 500, now);
    mon_elastic_decide(&c, &st, &lo, 0, 0, now, NULL, 0, NULL);
    now += 4000;
    mon_tier mid = tier(2, 0.4, 0.1, 500, now); /* between the marks */
    cr_assert_eq(mon_elastic_decide(&c, &st, &mid, 0, 0, now, NULL, 0, NULL), MON_NONE);
    now += 500;
    lo.data_ms = now;
    uint64_t since = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &lo, 0, 0, now, NULL, 0, NULL), MON_NONE);
    now = since + c.grace_ms - 1;
    lo.data_ms = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &lo, 0, 0, now, NULL, 0, NULL), MON_NONE);
    now = since + c.grace_ms;
    lo.data_ms = now;
    cr_assert_eq(mon_elastic_decide(&c, &st, &lo, 0, 0, now, NULL, 0, NULL), MON_REMOVE);
}

Test(elastic, never_below_the_minimum_nor_empty)
{
    mon_elastic_cfg c = ecfg();
    c.min_nodes = 0;
    mon_elastic_state st = {0};
    /* One node: scale-in never empties a tier, whatever the minimum. */
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(1, 0.0, 0.0, 0, 1000 + (uint64_t)i * 500);
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    c.min_nodes = 2;
    mon_elastic_state st2 = {0};
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(2, 0.0, 0.0, 0, 1000 + (uint64_t)i * 500);
        cr_assert_eq(mon_elastic_decide(&c, &st2, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    mon_elastic_state st3 = {0};
    int removed = 0;
    for (int i = 0; i < 40 && !removed; i++) {
        mon_tier t = tier(3, 0.0, 0.0, 0, 1000 + (uint64_t)i * 500);
        removed = mon_elastic_decide(&c, &st3, &t, 0, 0, t.data_ms, NULL, 0, NULL) == MON_REMOVE;
    }
    cr_assert(removed);
}

Test(elastic, adds_up_to_the_minimum)
{
    mon_elastic_cfg c = ecfg();
    c.min_nodes = 2;
    mon_elastic_state st = {0};
    char why[MON_REASON_MAX];
    int d = MON_NONE, evals = 0;
    while (d == MON_NONE && evals < 10) {
        /* A tier of one idle node, or one whose other node died. */
        mon_tier t = tier(1, 0.0, 0.0, 0, 1000 + (uint64_t)evals * 500);
        t.dead = 1;
        d = mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, why, sizeof(why), NULL);
        evals++;
    }
    cr_assert_eq(d, MON_ADD);
    cr_assert_eq(evals, MON_MIN_STREAK);
    cr_assert(strstr(why, "below the minimum of 2"), "reason: %s", why);
}

Test(elastic, projection_keeps_the_rest_below_the_high_mark)
{
    mon_elastic_cfg c = ecfg();
    c.busy_low = 0.5; /* low enough to count as idle, too high to halve */
    c.busy_high = 0.7;
    mon_elastic_state st = {0};
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(2, 0.4, 0.1, 500, 1000 + (uint64_t)i * 500);
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    /* Storage too: two nodes each 0.25 full cannot become one 0.5 full node
     * when the high mark is 0.45. */
    c = ecfg();
    c.capacity_high = 0.45;
    mon_elastic_state st2 = {0};
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(2, 0.0, 0.25, 500, 1000 + (uint64_t)i * 500);
        cr_assert_eq(mon_elastic_decide(&c, &st2, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
}

Test(elastic, latency_alone_does_not_record_saturation)
{
    mon_elastic_cfg c = ecfg();
    c.latency_slo_us = 20000;
    mon_elastic_state st = {0};
    /* Two idle nodes, and a period whose p99 misses the objective at 300
     * operations per second (a burst): not a measure of capacity. */
    mon_tier t = tier(2, 0.05, 0.1, 500, 1000);
    t.ops_per_sec = 300;
    t.ops_max = 150;
    t.p99_us = 90000;
    mon_elastic_decide(&c, &st, &t, 0, 0, 1000, NULL, 0, NULL);
    cr_assert_float_eq(st.sat_ops_per_node, 0, 1e-9);
    /* The latency recovers, the load stays: the tier may shrink. */
    int removed = 0;
    for (int i = 0; i < 60 && !removed; i++) {
        mon_tier q = tier(2, 0.05, 0.1, 500, 2000 + (uint64_t)i * 500);
        q.ops_per_sec = 300;
        q.ops_max = 150;
        removed = mon_elastic_decide(&c, &st, &q, 0, 0, q.data_ms, NULL, 0, NULL) == MON_REMOVE;
    }
    cr_assert(removed, "a latency blip kept the tier from shrinking");
}

Test(elastic, saturation_throughput_guards_scale_in)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    /* Saturated at 3000 operations per second on one node. */
    mon_tier sat = tier(1, 0.95, 0.1, 500, 1000);
    sat.ops_per_sec = sat.ops_max = 3000;
    mon_elastic_decide(&c, &st, &sat, 0, 0, 1000, NULL, 0, NULL);
    sat.data_ms = 1500;
    cr_assert_eq(mon_elastic_decide(&c, &st, &sat, 0, 0, 1500, NULL, 0, NULL), MON_ADD);
    cr_assert_float_eq(st.sat_ops_per_node, 3000, 1e-9);
    /* Two nodes carrying 2000 each report almost no busy time (a rate cap
     * that only shows near saturation): one node could not carry 4000. */
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(2, 0.01, 0.1, 500, 2000 + (uint64_t)i * 500);
        t.ops_per_sec = 4000;
        t.ops_max = 2000;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
    /* Once the load is gone it may shrink. */
    int removed = 0;
    for (int i = 0; i < 40 && !removed; i++) {
        mon_tier t = tier(2, 0.01, 0.1, 500, 30000 + (uint64_t)i * 500);
        t.ops_per_sec = 200;
        t.ops_max = 100;
        removed = mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL) == MON_REMOVE;
    }
    cr_assert(removed);
}

Test(elastic, no_removal_unless_every_node_reports)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    for (int i = 0; i < 40; i++) {
        mon_tier t = tier(3, 0.0, 0.0, 0, 1000 + (uint64_t)i * 500);
        t.active_reporting = 2;
        t.reporting = 2;
        cr_assert_eq(mon_elastic_decide(&c, &st, &t, 0, 0, t.data_ms, NULL, 0, NULL), MON_NONE);
    }
}

Test(elastic, no_data_no_action)
{
    mon_elastic_cfg c = ecfg();
    mon_elastic_state st = {0};
    mon_tier t;
    memset(&t, 0, sizeof(t));
    t.active = 2;
    for (int i = 0; i < 40; i++)
        cr_assert_eq(
            mon_elastic_decide(&c, &st, &t, 90000, 0, 1000 + (uint64_t)i * 500, NULL, 0, NULL),
            MON_NONE);
}

/* ---- hot keys ------------------------------------------------------------- */

static mon_hot_cfg hcfg(void)
{
    mon_hot_cfg c = {.k = 3,
                     .min_rate = 100,
                     .cool_ratio = 0.5,
                     .hot_replicas = 3,
                     .default_memory = 1,
                     .default_disk = 1,
                     .cool_periods = 3,
                     .grace_ms = 2000};
    return c;
}

typedef struct keyset {
    char names[64][16];
    mon_key_rate r[64];
    mon_key_stats ks;
} keyset;

/* n named keys with the given rates over a population of nkeys keys whose
 * total rate is total. */
static void keys(keyset *s, const double *rates, size_t n, double nkeys, double total,
                 uint64_t data_ms)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        snprintf(s->names[i], sizeof(s->names[i]), "key%zu", i);
        s->r[i].key = (const uint8_t *)s->names[i];
        s->r[i].klen = strlen(s->names[i]);
        s->r[i].rate = rates[i];
        s->r[i].count = (uint64_t)rates[i];
    }
    s->ks.keys = s->r;
    s->ks.n = n;
    s->ks.nkeys = nkeys;
    s->ks.total_rate = total;
    s->ks.data_ms = data_ms;
}

Test(hot, moments_by_hand)
{
    keyset s;
    /* Four keys, all named: 1, 2, 3, 6 -> mean 3, variance (4+1+0+9)/4 = 3.5 */
    double r[] = {1, 2, 3, 6};
    keys(&s, r, 4, 4, 12, 1);
    double mean, sd;
    mon_hot_moments(&s.ks, &mean, &sd);
    cr_assert_float_eq(mean, 3, 1e-9);
    cr_assert_float_eq(sd, sqrt(3.5), 1e-9);
    /* Two named keys (10, 0) and 8 unnamed sharing 30 evenly: mean 4,
     * variance (36 + 16 + 8 * (3.75 - 4)^2) / 10 = 5.25. */
    double r2[] = {10, 0};
    keys(&s, r2, 2, 10, 40, 1);
    mon_hot_moments(&s.ks, &mean, &sd);
    cr_assert_float_eq(mean, 4, 1e-9);
    cr_assert_float_eq(sd, sqrt(5.25), 1e-9);
    /* Uniform rates: no spread. */
    double r3[] = {5, 5, 5};
    keys(&s, r3, 3, 100, 500, 1);
    mon_hot_moments(&s.ks, &mean, &sd);
    cr_assert_float_eq(mean, 5, 1e-9);
    cr_assert_float_eq(sd, 0, 1e-9);
    /* An empty population. */
    keys(&s, NULL, 0, 0, 0, 1);
    mon_hot_moments(&s.ks, &mean, &sd);
    cr_assert(mean == 0 && sd == 0);
}

Test(hot, one_key_far_above_the_rest_is_raised)
{
    mon_hot_cfg c = hcfg();
    mon_hot_state st = {0};
    keyset s;
    /* 1000 keys, 10000 accesses/s; key0 takes 5000, the rest ~5 each. */
    double r[] = {5000, 8, 7, 6};
    keys(&s, r, 4, 1000, 10000, 1000);
    mon_hot_change ch[8];
    size_t n = mon_hot_decide(&c, &st, &s.ks, 3, 3, 1000, 1700000000000ULL, ch, 8, NULL);
    cr_assert_eq(n, 1);
    cr_assert_eq(ch[0].klen, 4);
    cr_assert(memcmp(ch[0].key, "key0", 4) == 0);
    cr_assert(ch[0].raise);
    cr_assert_eq(ch[0].memory, 3);
    cr_assert_eq(ch[0].disk, 1);
    cr_assert_eq(ch[0].version, 1700000000000ULL);
    cr_assert(ch[0].rate > ch[0].threshold);
    cr_assert_eq(mon_hot_in_force(&st), 1);
    /* The same data again changes nothing. */
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1200, 1700000000200ULL, ch, 8, NULL), 0);
    mon_hot_state_free(&st);
}

Test(hot, too_few_keys_are_never_hot)
{
    mon_hot_cfg c = hcfg(); /* k = 3: needs more than k^2 + 1 = 10 keys */
    mon_hot_state st = {0};
    keyset s;
    double r[] = {100000, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    keys(&s, r, 10, 10, 100000, 1000);
    mon_hot_change ch[8];
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1000, 1, ch, 8, NULL), 0);
    double mean, sd;
    mon_hot_moments(&s.ks, &mean, &sd);
    cr_assert(isfinite(mean) && isfinite(sd));
    /* One key alone. */
    double one[] = {100000};
    keys(&s, one, 1, 1, 100000, 2000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 2000, 2, ch, 8, NULL), 0);
    /* Twelve keys: possible. */
    double twelve[] = {100000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    keys(&s, twelve, 12, 12, 100000, 3000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 3000, 3, ch, 8, NULL), 1);
    mon_hot_state_free(&st);
}

Test(hot, below_min_rate_is_not_hot)
{
    mon_hot_cfg c = hcfg();
    c.min_rate = 1000;
    mon_hot_state st = {0};
    keyset s;
    double r[] = {900, 1, 1};
    keys(&s, r, 3, 1000, 1500, 1000);
    mon_hot_change ch[8];
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1000, 1, ch, 8, NULL), 0);
    mon_hot_state_free(&st);
}

Test(hot, cools_back_to_the_default_with_a_newer_version)
{
    mon_hot_cfg c = hcfg();
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    double hot[] = {5000, 8};
    keys(&s, hot, 2, 1000, 10000, 1000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1000, 5000, ch, 8, NULL), 1);
    uint64_t v = ch[0].version;
    /* It cools: absent from the sketches. cool_periods = 3, and the grace
     * period (2000 ms) after the raise must pass too. */
    double cold[] = {9, 8};
    uint64_t now = 1000;
    for (int i = 0; i < 3; i++) {
        now += 500;
        keys(&s, cold, 2, 1000, 5000, now);
        cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, now, 4000, ch, 8, NULL), 0, "period %d",
                     i);
    }
    now = 3000;
    keys(&s, cold, 2, 1000, 5000, now);
    size_t n = mon_hot_decide(&c, &st, &s.ks, 3, 3, now, 4000, ch, 8, NULL);
    cr_assert_eq(n, 1);
    cr_assert(!ch[0].raise);
    cr_assert_eq(ch[0].memory, 1);
    cr_assert_eq(ch[0].disk, 1);
    /* The wall clock went back (4000 < 5000): the version still grows. */
    cr_assert_gt(ch[0].version, v);
    cr_assert_eq(mon_hot_in_force(&st), 0);
    mon_hot_state_free(&st);
}

Test(hot, a_hot_period_resets_cooling)
{
    mon_hot_cfg c = hcfg();
    c.grace_ms = 0;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    double hot[] = {5000, 8}, cold[] = {9, 8};
    keys(&s, hot, 2, 1000, 10000, 1);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1, 1, ch, 8, NULL), 1);
    uint64_t t = 2;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++, t++) {
            keys(&s, cold, 2, 1000, 5000, t);
            cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, t, t, ch, 8, NULL), 0);
        }
        keys(&s, hot, 2, 1000, 10000, t);
        cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, t, t, ch, 8, NULL), 0);
        t++;
    }
    cr_assert_eq(mon_hot_in_force(&st), 1);
    mon_hot_state_free(&st);
}

Test(hot, grace_before_raising_again)
{
    mon_hot_cfg c = hcfg();
    c.cool_periods = 1;
    c.grace_ms = 1000;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    double hot[] = {5000, 8}, cold[] = {9, 8};
    keys(&s, hot, 2, 1000, 10000, 1000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1000, 1, ch, 8, NULL), 1);
    keys(&s, cold, 2, 1000, 5000, 2000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 2000, 2, ch, 8, NULL), 1); /* lowered */
    keys(&s, hot, 2, 1000, 10000, 2500);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 2500, 3, ch, 8, NULL), 0); /* too soon */
    keys(&s, hot, 2, 1000, 10000, 3000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 3000, 4, ch, 8, NULL), 1);
    cr_assert(ch[0].raise);
    mon_hot_state_free(&st);
}

Test(hot, without_memory_nodes_the_disk_tier_replicates)
{
    mon_hot_cfg c = hcfg();
    c.default_memory = 0;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    double r[] = {5000, 8};
    keys(&s, r, 2, 1000, 10000, 1);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 0, 3, 1, 1, ch, 8, NULL), 1);
    cr_assert_eq(ch[0].memory, 0);
    cr_assert_eq(ch[0].disk, 3);
    mon_hot_state_free(&st);
}

Test(hot, adopted_overrides_cool_and_keep_their_versions)
{
    mon_hot_cfg c = hcfg();
    c.grace_ms = 0;
    c.cool_periods = 1;
    mon_hot_state st = {0};
    cr_assert_eq(mon_hot_adopt(&c, &st, (const uint8_t *)"key0", 4, 4, 1, 900000), 0);
    cr_assert_eq(mon_hot_in_force(&st), 1);
    /* An override at the default is remembered but not in force. */
    cr_assert_eq(mon_hot_adopt(&c, &st, (const uint8_t *)"key1", 4, 1, 1, 5), 0);
    cr_assert_eq(mon_hot_in_force(&st), 1);
    keyset s;
    mon_hot_change ch[8];
    double cold[] = {9};
    keys(&s, cold, 1, 1000, 5000, 1);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 3, 1, 10, ch, 8, NULL), 1);
    cr_assert_eq(ch[0].version, 900001);
    cr_assert_eq(ch[0].memory, 1);
    /* Keys too long to track are refused. */
    uint8_t big[MON_HOT_KEY_MAX];
    memset(big, 'x', sizeof(big));
    cr_assert_eq(mon_hot_adopt(&c, &st, big, sizeof(big), 3, 1, 1), -1);
    mon_hot_state_free(&st);
}

Test(hot, never_more_replicas_than_the_tier_has_nodes)
{
    mon_hot_cfg c = hcfg();
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    mon_hot_skips sk;
    double r[] = {5000, 8};
    /* One memory node: more memory replicas cannot be placed; nothing
     * changes, and the summary says why. */
    for (int i = 0; i < 5; i++) {
        keys(&s, r, 2, 1000, 10000, 1000 + (uint64_t)i * 500);
        cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 1, 1, s.ks.data_ms, 1, ch, 8, &sk), 0);
        cr_assert_eq(sk.unplaceable, 1);
    }
    cr_assert_eq(mon_hot_in_force(&st), 0);
    /* Two nodes: two replicas, not hot_replicas = 3. */
    keys(&s, r, 2, 1000, 10000, 9000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 2, 1, 9000, 1, ch, 8, &sk), 1);
    cr_assert_eq(ch[0].memory, 2);
    cr_assert_eq(sk.unplaceable, 0);
    /* No memory tier, one disk node with the default of one: nothing. */
    mon_hot_state st2 = {0};
    c.default_memory = 0;
    cr_assert_eq(mon_hot_decide(&c, &st2, &s.ks, 0, 1, 9000, 1, ch, 8, &sk), 0);
    cr_assert_eq(sk.unplaceable, 1);
    mon_hot_state_free(&st);
    mon_hot_state_free(&st2);
}

Test(hot, needs_a_share_of_the_accesses)
{
    mon_hot_cfg c = hcfg();
    c.min_share = 0.05;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    mon_hot_skips sk;
    /* 400/s is far above mean + 3 sigma over 100 000 keys but only 4 % of
     * a tier's 10 000/s: a skewed workload's head, not a hot key. */
    double r[] = {400, 8};
    keys(&s, r, 2, 100000, 10000, 1000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, 1000, 1, ch, 8, &sk), 0);
    cr_assert_eq(sk.below_share, 1);
    double mean, sd;
    cr_assert_float_eq(mon_hot_threshold(&c, &s.ks, &mean, &sd), 500, 1e-9);
    r[0] = 600;
    keys(&s, r, 2, 100000, 10000, 1500);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, 1500, 1, ch, 8, &sk), 1);
    cr_assert_float_eq(ch[0].threshold, 500, 1e-9);
    mon_hot_state_free(&st);
}

Test(hot, hysteresis_lowers_only_well_below_the_mark_after_the_hold)
{
    mon_hot_cfg c = hcfg();
    c.min_share = 0.05; /* mark 500/s of 10 000/s; low mark 250/s */
    c.cool_periods = 3;
    c.grace_ms = 0;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[8];
    mon_hot_skips sk;
    double r[] = {600, 8};
    keys(&s, r, 2, 100000, 10000, 1000);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, 1000, 1, ch, 8, &sk), 1);
    /* Between the marks, for as long as it stays there: no change. */
    uint64_t t = 1000;
    for (int i = 0; i < 20; i++) {
        r[0] = i % 2 ? 300 : 480;
        t += 500;
        keys(&s, r, 2, 100000, 10000, t);
        cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, t, 2, ch, 8, &sk), 0, "period %d", i);
    }
    /* Below the low mark: held for cool_periods, then lowered. */
    r[0] = 200;
    for (int i = 0; i < 2; i++) {
        t += 500;
        keys(&s, r, 2, 100000, 10000, t);
        cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, t, 3, ch, 8, &sk), 0);
        cr_assert_eq(sk.held, 1);
    }
    t += 500;
    keys(&s, r, 2, 100000, 10000, t);
    cr_assert_eq(mon_hot_decide(&c, &st, &s.ks, 3, 1, t, 4, ch, 8, &sk), 1);
    cr_assert(!ch[0].raise);
    cr_assert_eq(mon_hot_in_force(&st), 0);
    mon_hot_state_free(&st);
}

Test(hot, a_steady_skewed_population_holds_still)
{
    /* Zipf-like rates over 100 000 keys, noisy from period to period, on
     * three nodes: whatever is raised at first stays, nothing flaps. */
    mon_hot_cfg c = hcfg();
    c.min_share = 0.02;
    c.cool_periods = 5;
    c.grace_ms = 10000;
    mon_hot_state st = {0};
    keyset s;
    mon_hot_change ch[16];
    unsigned seed = 7;
    int changes = 0, after_first = 0;
    for (int p = 0; p < 120; p++) {
        double r[12];
        for (int i = 0; i < 12; i++) {
            double noise = 0.8 + 0.4 * (double)(rand_r(&seed) % 1000) / 1000.0;
            r[i] = 40000.0 / (double)(i + 1) * 0.05 * noise;
        }
        uint64_t t = 1000 + (uint64_t)p * 500;
        keys(&s, r, 12, 100000, 40000, t);
        size_t n = mon_hot_decide(&c, &st, &s.ks, 3, 1, t, t, ch, 16, NULL);
        changes += (int)n;
        if (p > 0)
            after_first += (int)n;
    }
    cr_log_info("%d changes, %zu in force", changes, mon_hot_in_force(&st));
    cr_assert_leq(after_first, 1, "%d changes after the first period", after_first);
    mon_hot_state_free(&st);
}

/* ---- tiering ---------------------------------------------------------------- */

static mon_tiering_cfg tcfg(void)
{
    mon_tiering_cfg c = {.demote_idle_ms = 4000,
                         .promote_reads = 20,
                         .capacity_high = 0.8,
                         .grace_ms = 1000,
                         .period_ms = 500};
    return c;
}

Test(tiering, demotes_on_a_schedule_with_both_tiers)
{
    mon_tiering_cfg c = tcfg();
    mon_tiering_state st;
    memset(&st, 0, sizeof(st));
    mon_tier mem = tier(1, 0.1, 0.1, 0, 1), disk = tier(1, 0.1, 0.1, 0, 1);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 1000), MON_DEMOTE_NONE);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 2999), MON_DEMOTE_NONE);
    /* Every demote_idle_ms / 2 = 2000 ms. */
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 3000), MON_DEMOTE_SCHEDULE);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 4000), MON_DEMOTE_NONE);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 5000), MON_DEMOTE_SCHEDULE);
    /* No disk tier, nowhere to demote to. */
    mon_tier none;
    memset(&none, 0, sizeof(none));
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &none, 99000), MON_DEMOTE_NONE);
    cr_assert_eq(mon_tiering_demote(&c, &st, &none, &disk, 99000), MON_DEMOTE_NONE);
}

Test(tiering, capacity_pressure_demotes_sooner)
{
    mon_tiering_cfg c = tcfg();
    c.demote_idle_ms = 600000;
    mon_tiering_state st;
    memset(&st, 0, sizeof(st));
    mon_tier mem = tier(1, 0.1, 0.9, 0, 1), disk = tier(1, 0.1, 0.1, 0, 1);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 1000), MON_DEMOTE_CAPACITY);
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 1500), MON_DEMOTE_NONE); /* grace */
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 2000), MON_DEMOTE_CAPACITY);
    mem.cap_use = mem.cap_max = 0.5;
    cr_assert_eq(mon_tiering_demote(&c, &st, &mem, &disk, 9000), MON_DEMOTE_NONE);
}

Test(tiering, promotes_keys_read_often_on_the_disk_tier)
{
    mon_tiering_cfg c = tcfg();
    mon_tiering_state st;
    memset(&st, 0, sizeof(st));
    keyset s;
    double r[] = {50, 19, 20};
    keys(&s, r, 3, 100, 200, 1000);
    size_t idx[8];
    size_t n = mon_tiering_promote(&c, &st, &s.ks, 1, 1000, idx, 8, NULL);
    cr_assert_eq(n, 2);
    cr_assert_eq(idx[0], 0);
    cr_assert_eq(idx[1], 2);
    /* Not again within the grace period, nor on the same data. */
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 1, 1200, idx, 8, NULL), 0);
    s.ks.data_ms = 1500;
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 1, 1500, idx, 8, NULL), 0);
    s.ks.data_ms = 2000;
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 1, 2000, idx, 8, NULL), 2);
    /* Without memory nodes there is nowhere to promote to. */
    s.ks.data_ms = 9000;
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 0, 9000, idx, 8, NULL), 0);
}

Test(tiering, promotes_the_most_read_first_within_the_bound)
{
    mon_tiering_cfg c = tcfg();
    c.promote_max = 2;
    mon_tiering_state st;
    memset(&st, 0, sizeof(st));
    keyset s;
    double r[] = {30, 90, 25, 60, 5};
    keys(&s, r, 5, 100, 300, 1000);
    size_t idx[8];
    mon_promote_skips sk;
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 1, 1000, idx, 8, &sk), 2);
    cr_assert_eq(idx[0], 1);
    cr_assert_eq(idx[1], 3);
    cr_assert_eq(sk.bounded, 2);
    cr_assert_eq(sk.recent, 0);
    /* The next period: the promoted two are recent, the others go. */
    s.ks.data_ms = 1500;
    cr_assert_eq(mon_tiering_promote(&c, &st, &s.ks, 1, 1500, idx, 8, &sk), 2);
    cr_assert_eq(idx[0], 0);
    cr_assert_eq(idx[1], 2);
    cr_assert_eq(sk.recent, 2);
    cr_assert_eq(sk.bounded, 0);
}

Test(tiering, pressure_sweeps_move_enough_recent_idle_keys)
{
    mon_tiering_cfg c = tcfg();
    c.capacity_low = 0.3;
    c.demote_idle_ms = 60000;
    cr_assert_eq(mon_tiering_pressure_idle_ms(&c), 1000);
    c.period_ms = 800;
    cr_assert_eq(mon_tiering_pressure_idle_ms(&c), 1600);
    c.demote_idle_ms = 700;
    cr_assert_eq(mon_tiering_pressure_idle_ms(&c), 700);
    /* 90 % full with 1000 keys: 2/3 of them go, to reach 30 %. */
    cr_assert_eq(mon_tiering_pressure_keys(&c, 1000, 900, 1000), 667);
    cr_assert_eq(mon_tiering_pressure_keys(&c, 1000, 300, 1000), 0);
    cr_assert_eq(mon_tiering_pressure_keys(&c, 0, 900, 1000), 0);
    cr_assert_eq(mon_tiering_pressure_keys(&c, 1000, 900, 0), 0);
    cr_assert_eq(mon_tiering_pressure_keys(&c, 1, 301, 1000), 1);
}
