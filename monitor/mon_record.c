/*
 * mon_record.c - decision lines' results, their counts and the summary of
 * what was left alone (mon_record.h).
 */
#include "monitor/mon_record.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "monitor/mon_impl.h"

static void count_decision(monitor *m, const char *policy, const char *action, int ok)
{
    for (int i = 0; i < m->rec.ncounters; i++)
        if (m->rec.counters[i].ok == ok && strcmp(m->rec.counters[i].policy, policy) == 0 &&
            strcmp(m->rec.counters[i].action, action) == 0) {
            m->rec.counters[i].n++;
            return;
        }
    if (m->rec.ncounters < MON_MAX_COUNTERS)
        m->rec.counters[m->rec.ncounters++] = (mon_counter){policy, action, ok, 1};
}

/* Ends a decision line with its result and writes it. */
void mon_record_end(monitor *m, const char *policy, const char *action, int ok, const char *failure)
{
    mon_json_u64(&m->line, "done_ms", mon_since_start(m, clock_mono_ms()));
    if (ok) {
        mon_json_str(&m->line, "result", "ok");
    } else {
        char r[320];
        snprintf(r, sizeof(r), "failed: %s", failure ? failure : "unknown");
        mon_json_str(&m->line, "result", r);
    }
    mon_log_write(m->dlog, &m->line);
    count_decision(m, policy, action, ok);
}

/* ---- the summary of what was left alone ------------------------------------------------------ */

/* A bit for each policy that left something alone: consecutive periods
 * in which the same policies did share one line (whatever the counts).
 * Routine demotion sweeps are counted but give a line no shape of their
 * own. */
static unsigned summary_kinds(const mon_summary *s)
{
    unsigned hot =
        s->hot.unplaceable || s->hot.below_share || s->hot.held || s->hot.grace || s->hot.bounded;
    unsigned tier = s->promote.recent || s->promote.bounded;
    unsigned elastic = s->elastic_grace || s->elastic_changing || s->elastic_at_max;
    return hot | tier << 1 | elastic << 2;
}

static void summary_add(mon_summary *to, const mon_summary *p)
{
    to->hot.unplaceable += p->hot.unplaceable;
    to->hot.below_share += p->hot.below_share;
    to->hot.held += p->hot.held;
    to->hot.grace += p->hot.grace;
    to->hot.bounded += p->hot.bounded;
    to->promote.recent += p->promote.recent;
    to->promote.bounded += p->promote.bounded;
    to->demote_sweeps += p->demote_sweeps;
    to->elastic_grace += p->elastic_grace;
    to->elastic_changing += p->elastic_changing;
    to->elastic_at_max += p->elastic_at_max;
}

static void sum_field(mbuf *b, const char *name, int v)
{
    if (v)
        mon_json_int(b, name, v);
}

/* Writes the summary being gathered, if any, and starts none. */
void mon_record_flush(monitor *m)
{
    mon_summary *s = &m->rec.open;
    if (!s->periods)
        return;
    mon_log_begin(&m->line, s->first_wall_us, mon_since_start(m, s->first_ms), "summary",
                  "skipped");
    mon_json_int(&m->line, "periods", s->periods);
    mon_json_u64(&m->line, "until_ms", mon_since_start(m, s->last_ms));
    mon_json_open(&m->line, "skipped");
    if (s->hot.unplaceable || s->hot.below_share || s->hot.held || s->hot.grace || s->hot.bounded) {
        mon_json_open(&m->line, "hot_keys");
        sum_field(&m->line, "unplaceable", s->hot.unplaceable);
        sum_field(&m->line, "below_share", s->hot.below_share);
        sum_field(&m->line, "held", s->hot.held);
        sum_field(&m->line, "grace", s->hot.grace);
        sum_field(&m->line, "bounded", s->hot.bounded);
        mon_json_close(&m->line);
    }
    if (s->promote.recent || s->promote.bounded || s->demote_sweeps) {
        mon_json_open(&m->line, "tiering");
        sum_field(&m->line, "promote_recent", s->promote.recent);
        sum_field(&m->line, "promote_bounded", s->promote.bounded);
        sum_field(&m->line, "demote_sweeps", s->demote_sweeps);
        mon_json_close(&m->line);
    }
    if (s->elastic_grace || s->elastic_changing || s->elastic_at_max) {
        mon_json_open(&m->line, "elasticity");
        sum_field(&m->line, "grace", s->elastic_grace);
        sum_field(&m->line, "changing", s->elastic_changing);
        sum_field(&m->line, "at_max", s->elastic_at_max);
        mon_json_close(&m->line);
    }
    mon_json_close(&m->line);
    mon_log_write(m->dlog, &m->line);
    memset(s, 0, sizeof(*s));
}

/* Folds this evaluation's skips into the summary being gathered, or
 * writes that one and starts another when the kinds differ. A period that
 * left nothing alone (no hot-key candidate in it, a statistics report that
 * came late) neither joins the summary nor ends it: under a steady load
 * such periods fell between the others and cut one summary into many. */
void mon_record_period(monitor *m, uint64_t now)
{
    mon_summary *cur = &m->rec.cur, *open = &m->rec.open;
    unsigned kinds = summary_kinds(cur);
    int sweeps_only = !kinds && cur->demote_sweeps;
    if (open->periods &&
        ((kinds && open->shape != kinds) || now - open->first_ms >= MON_SUMMARY_MAX_MS))
        mon_record_flush(m);
    if (kinds || sweeps_only) {
        if (!open->periods) {
            open->first_ms = now;
            open->first_wall_us = clock_wall_us();
            open->shape = kinds;
        }
        summary_add(open, cur);
        open->periods++;
        open->last_ms = now;
    }
    memset(cur, 0, sizeof(*cur));
}
