/*
 * mload.h - a load generator for the monitor's end-to-end tests.
 *
 * One thread sends batched requests on the data plane (frames, several in
 * flight per connection) straight to the shards that own the keys
 * (placement from the router's ring snapshot, refetched on WRONG_SHARD and
 * every second, which is how it learns replication overrides), at a set
 * operation rate with a bound on requests in flight, and records what it
 * did:
 *  - writes add the member "<seq>" to the SET at key "<prefix><i>"; a write
 *    counts as acknowledged when every replica it was sent to answered OK
 *    (one replica, or every replica of both tiers with write_all), and each
 *    acknowledged member is remembered so that mload_verify can check that
 *    the key's merged value holds it;
 *  - reads go to one of the key's memory replicas (to every one in turn, as
 *    a client spreading reads would), or to its disk primary with
 *    read_disk;
 *  - latency per request, reported to the monitor every window as a client
 *    StatsReport (when monitor_url is set), and kept for mload_window.
 * Operations that fail (WRONG_SHARD, OVERLOADED, TIMEOUT, UNAVAILABLE) are
 * retried up to MLOAD_TRIES times; every failure is counted by status.
 */
#ifndef TRELLIS_TESTS_MONITOR_MLOAD_H
#define TRELLIS_TESTS_MONITOR_MLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "trellis/trellis_status.h"

#define MLOAD_TRIES     50
#define MLOAD_WINDOW_MS 500

typedef struct mload_opts {
    const char *router_url;
    const char *monitor_url; /* NULL: no client reports */
    const char *prefix;      /* key prefix */
    int nkeys;
    int batch;        /* operations per request */
    int read_pct;     /* share of reads, 0..100 */
    int hot_pct;      /* share of reads on key "<prefix>hot", 0..100 */
    int max_inflight; /* requests in flight at most */
    int write_all;    /* writes go to every replica of both tiers */
    int read_disk;    /* reads go to the key's disk primary */
    int value_bytes;  /* padding added to each written member */
    double rate;      /* operations per second to start with (0: idle) */
} mload_opts;

typedef struct mload mload;

typedef struct mload_counts {
    uint64_t requests, replies;
    uint64_t ops, reads, writes, acked_writes;
    uint64_t errors[TRELLIS_STATUS_COUNT]; /* operation failures by status (retried) */
    uint64_t gave_up;                      /* operations that failed MLOAD_TRIES times */
    uint64_t ring_fetches;
    uint64_t inflight;
    uint64_t skipped; /* requests not sent because max_inflight was reached */
} mload_counts;

/* Latency of the last complete window. */
typedef struct mload_window {
    uint64_t requests;
    uint64_t p50_us, p99_us;
    double ops_per_sec;
} mload_window;

/* Starts the generator (its ring fetched first). NULL on failure. */
mload *mload_start(const mload_opts *o);
/* Operations per second from now on; 0 pauses (requests in flight finish). */
void mload_set_rate(mload *l, double rate);
/* Changes the share of reads going to the hot key. */
void mload_set_hot(mload *l, int hot_pct);
void mload_counts_get(mload *l, mload_counts *out);
void mload_window_get(mload *l, mload_window *out);
/* Waits until nothing is in flight (or timeout_ms); 0 when idle. */
int mload_drain(mload *l, int timeout_ms);
/* Stops the thread; the record of acknowledged writes stays. */
void mload_stop(mload *l);
/* Reads every key written (from its memory primary, else its disk
 * primary, with a fresh ring; keys caught in a ring change, answered
 * WRONG_SHARD, UNAVAILABLE or TIMEOUT, are read again with a newer ring for
 * about five seconds) and checks that each acknowledged member is in it. Returns the number of
 * missing members (0: all there) and describes the first problem in err. Call after mload_stop. */
long mload_verify(mload *l, char *err, size_t errlen);
/* Keys that received at least one acknowledged write. */
int mload_keys_written(mload *l);
void mload_free(mload *l);

#endif
