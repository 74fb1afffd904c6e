/*
 * ework.h - the workload of the elasticity tests: writers that add and
 * remove set members, increment counters and overwrite registers while
 * the cluster changes, remembering what was acknowledged and when, and a
 * checker that reads every key once.
 *
 * Each writer thread has its own libtrellis client (its own writer id)
 * and ack level. Operation n adds the member "w<id>-<n>" to set key
 * n % EW_SETS (shared by all writers), increments counter key
 * n % EW_COUNTERS by 1..3, and writes "<n>" to the writer's own LWW key;
 * every EW_REMOVE_EVERY-th operation also removes the member of the
 * operation EW_REMOVE_EVERY before it (if its add was acknowledged).
 * Members are never added twice, so a removed member must stay removed.
 *
 * The checker (ew_check) first takes, for every writer, how far its
 * acknowledgements went, then reads each key once through a fresh client:
 * every member whose add was acknowledged before (and whose removal was
 * never attempted) must be there, no member whose removal was acknowledged
 * before may be, no member nobody sent may be; every counter holds at
 * least what was acknowledged before and at most what was sent; every
 * register holds at least the last acknowledged write. No read is
 * repeated: a write acknowledged before a read that does not show in it is
 * a failure.
 */
#ifndef TRELLIS_TESTS_CLUSTER_EWORK_H
#define TRELLIS_TESTS_CLUSTER_EWORK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "trellis/trellis.h"

#define EW_SETS         4
#define EW_COUNTERS     4
#define EW_REMOVE_EVERY 5
#define EW_MAX_OPS      100000
#define EW_MAX_WRITERS  4

enum {
    EW_ADD_ACKED = 1, /* the add was acknowledged */
    EW_REM_TRIED = 2, /* a removal was sent (it may have applied) */
    EW_REM_ACKED = 4, /* the removal was acknowledged */
};

typedef struct ewriter {
    int id;
    const char *prefix; /* keys: <prefix>/set/<k>, <prefix>/cnt/<k>, <prefix>/lww/<id> */
    trellis_client *c;
    pthread_t th;
    int started;
    atomic_int stop;
    /* Published in this order: flags and totals first, then `done` (the
     * number of operations finished), with release semantics. */
    _Atomic uint8_t *flags;              /* per member n: EW_* */
    _Atomic uint64_t sent[EW_COUNTERS];  /* cumulative increments sent per counter */
    _Atomic uint64_t acked[EW_COUNTERS]; /* cumulative total of the last acknowledged one */
    _Atomic uint64_t lww_acked;          /* 1 + the last acknowledged register write's n */
    atomic_uint_fast64_t done;
    uint64_t ok, failed;
    uint64_t max_ack_us; /* the longest a write took */
    char first_error[256];
} ewriter;

/* Starts a writer (id 1..EW_MAX_WRITERS) with its own client connected to
 * router_url with the ack level and deadline. 0, or -1 (why on stderr). */
int ew_start(ewriter *w, int id, const char *prefix, const char *router_url, trellis_ack ack,
             int timeout_ms);
/* Stops the thread, then repeats the last increment of every counter whose
 * last one failed until one is acknowledged (at most `tries` each), so that
 * the writer's final totals are on the cluster. */
void ew_stop(ewriter *w, int tries);
void ew_free(ewriter *w);

/* Reads every key once through a new client of router_url (deadline
 * timeout_ms) and checks it against what the writers had acknowledged when
 * the check began (final: the writers stopped, so counters must equal the
 * acknowledged totals exactly). Returns the number of problems, the first
 * described in msg. *members gets the members read. */
size_t ew_check(const char *router_url, const char *prefix, ewriter *w, size_t nw, int final,
                int timeout_ms, uint64_t *members, char *msg, size_t cap);

#endif
