/*
 * cwriter.h - a client that writes while a cluster changes underneath it,
 * and remembers what was acknowledged: the Jepsen "set" and "counter"
 * workloads.
 *
 * A writer thread, with its own libtrellis client (so its own writer id),
 * alternates SADD of a member unique to it ("w<id>-<n>") to one of
 * CW_SETS set keys and INCRBY of 1..3 on one of CW_COUNTERS counter keys,
 * until told to stop. It records each member whose SADD was acknowledged
 * and, per counter key, the cumulative total it sent (the client sends its
 * totals, so an increment that failed is carried by the next one). On stop
 * it repeats an increment of every counter key whose last increment failed
 * until one is acknowledged, so that its final total is on the cluster.
 */
#ifndef TRELLIS_TESTS_CLUSTER_CWRITER_H
#define TRELLIS_TESTS_CLUSTER_CWRITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cstate.h"
#include "trellis/trellis.h"

#define CW_SETS     6
#define CW_COUNTERS 4
#define CW_MAX_OPS  200000 /* SADDs per writer */

typedef struct cwriter {
    int id;
    const char *prefix; /* key names: "<prefix>/set/<k>", "<prefix>/cnt/<k>" */
    trellis_client *c;
    uint64_t writer; /* the client's writer id */
    pthread_t th;
    int started;
    atomic_int stop;
    int pause_us; /* between operations (0: none) */
    /* results, read after cw_stop */
    uint64_t sadds;                /* SADDs issued (member numbers 0..sadds-1) */
    uint8_t *acked;                /* acked[n]: the SADD of member n was acknowledged */
    uint64_t total[CW_COUNTERS];   /* cumulative increments sent per counter key */
    int last_ok[CW_COUNTERS];      /* the last increment of the key was acknowledged */
    uint64_t acked_incr;           /* increments acknowledged (sum of their deltas) */
    uint64_t ok, failed;           /* operations acknowledged / failed */
    char first_error[256];         /* the first failure, in words */
    atomic_uint_fast64_t progress; /* operations done so far */
} cwriter;

/* Connects a writer to router_url with the given ack level and deadline
 * and starts its thread. 0, or -1 (the reason on stderr). */
int cw_start(cwriter *w, int id, const char *prefix, const char *router_url, trellis_ack ack,
             int timeout_ms);

/* Stops the thread, makes every counter's final total acknowledged (at most
 * `tries` more increments per key) and closes the client. */
void cw_stop(cwriter *w, int tries);

void cw_free(cwriter *w);

/* Adds the keys the writers use to s (CW_SETS inexact ORSET keys, then
 * CW_COUNTERS COUNTER keys whose expected state is the merge of every
 * writer's final totals). s must have been made with cs_init(s, prefix,
 * CW_SETS + CW_COUNTERS). TRELLIS_OK or an error of the lattice code. */
int cw_expect(cs_set *s, const char *prefix, const cwriter *w, size_t nw);

/* Checks the agreed set states in s (after a cs_read or cs_wait that found
 * them complete) against what the writers did: every acknowledged member
 * present, no member that no writer sent. Returns the number of problems
 * and describes the first in msg. */
size_t cw_check_sets(const cs_set *s, const cwriter *w, size_t nw, char *msg, size_t cap);

/* Reads every set and counter of the writers once through a new client of
 * router_url (after cw_stop): every acknowledged member must be there and
 * no member nobody sent, every counter must equal the writers' totals.
 * Returns the number of problems and describes the first in msg. s names
 * the keys (cw_expect). */
size_t cw_read_once(const char *router_url, const cs_set *s, const cwriter *w, size_t nw, char *msg,
                    size_t cap);

#endif
