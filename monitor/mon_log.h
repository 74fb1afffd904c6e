/*
 * mon_log.h - the decision log: one JSON object per line, appended to
 * monitor.log_file with one write(2) per line, so that runs can be plotted
 * and audited (docs/monitor.md describes the fields).
 *
 * A line is built in an mbuf (server/metrics.h) with the mon_json_*
 * helpers, which add the separating commas themselves, and written with
 * mon_log_write. Strings are escaped for JSON; byte strings (keys may be
 * binary) are written with every byte outside printable ASCII as \u00XX,
 * so each byte maps to one code point, plus a "<name>_hex" field.
 */
#ifndef TRELLIS_MON_LOG_H
#define TRELLIS_MON_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "server/metrics.h"

typedef struct mon_log mon_log;

/* Opens (creates, appends to) path. An empty path logs nowhere but still
 * counts lines. TRELLIS_UNAVAILABLE (errno in the log) when the file cannot
 * be opened. */
int mon_log_open(const char *path, mon_log **out);
void mon_log_close(mon_log *l);

/* Appends the line in b (an object without its closing brace, as
 * mon_log_begin starts it) with "}\n", in one write. Returns TRELLIS_OK or
 * TRELLIS_UNAVAILABLE when the write failed (logged; the monitor goes on).
 * b is emptied. */
int mon_log_write(mon_log *l, mbuf *b);

/* Lines written since open. */
uint64_t mon_log_lines(const mon_log *l);

/* Starts a decision: {"time":"<ISO-8601 UTC of wall_us>","t_ms":t_ms,
 * "policy":policy,"action":action. */
void mon_log_begin(mbuf *b, uint64_t wall_us, uint64_t t_ms, const char *policy,
                   const char *action);

/* ,"name":"escaped s" */
void mon_json_str(mbuf *b, const char *name, const char *s);
/* ,"name":"escaped bytes","name_hex":"hex" */
void mon_json_bytes(mbuf *b, const char *name, const void *p, size_t n);
void mon_json_u64(mbuf *b, const char *name, uint64_t v);
void mon_json_int(mbuf *b, const char *name, long long v);
/* Finite doubles as %.4g, anything else as null. */
void mon_json_dbl(mbuf *b, const char *name, double v);
/* ,"name":{  ...  mon_json_close: } */
void mon_json_open(mbuf *b, const char *name);
void mon_json_close(mbuf *b);
/* ,"name":[  ...  mon_json_array_close: ]; items: "hex of the bytes" */
void mon_json_array_open(mbuf *b, const char *name);
void mon_json_array_close(mbuf *b);
void mon_json_item_hex(mbuf *b, const void *p, size_t n);

/* Writes the escaped form of [p, p + n) (without quotes) to b. */
void mon_json_escape(mbuf *b, const void *p, size_t n);

/* "2026-11-23T12:46:25.123Z" for a wall-clock time in microseconds. */
void mon_iso_time(uint64_t wall_us, char *buf, size_t cap);

#endif
