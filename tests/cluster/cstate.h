/*
 * cstate.h - what the cluster tests check: a set of keys with the state
 * each should reach (the merge of every write acknowledged), and readings
 * of every key straight from each of its replicas.
 *
 * A reading sends one GET batch to every replica shard (both tiers, the
 * current view of a ring fetched from a router) and compares each
 * replica's canonical state bytes with the other replicas' and with the
 * expected state. A memory replica that lacks a key reads it through from
 * the disk tier first, so it answers with the full state it would serve.
 */
#ifndef TRELLIS_TESTS_CLUSTER_CSTATE_H
#define TRELLIS_TESTS_CLUSTER_CSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"
#include "placement/ring.h"
#include "tsupport.h"

#define CS_MAX_KEY 64

typedef struct cs_key {
    char key[CS_MAX_KEY];
    size_t klen;
    lat_type type;
    int inexact;  /* 0: every replica must hold `want`; 1: any state, the same on all */
    lat_buf want; /* expected state without its type byte; len 0: never written */
    lat_buf got;  /* the state all replicas agreed on at the last reading (len 0: none) */
} cs_key;

typedef struct cs_set {
    cs_key *k;
    size_t n;
} cs_set;

/* n keys named "<prefix>/<i>", of the seven types in turn (key i has type
 * LAT_TYPE_FIRST + i % 7). 0, or -1 when out of memory. */
int cs_init(cs_set *s, const char *prefix, size_t n);
/* Renames key i and sets its type (the expected state is reset). */
void cs_name(cs_set *s, size_t i, const char *key, lat_type type);
void cs_fini(cs_set *s);

/* Merges an acknowledged delta (a state of the key's type) into key i's
 * expected state. TRELLIS_OK or lat_merge's error. */
int cs_expect(cs_set *s, size_t i, const uint8_t *delta, size_t len);

/* What one reading found. */
typedef struct cs_report {
    size_t keys;      /* keys read */
    size_t reads;     /* (key, replica) pairs read */
    size_t failed;    /* pairs whose GET failed (unreachable, UNAVAILABLE, ...) */
    size_t identical; /* keys whose replicas all answered the same bytes */
    size_t complete;  /* keys whose every replica answered exactly the expected state
                         (inexact keys: the same state, found) */
    size_t replicas;  /* most replicas a key had */
    char first[768];  /* the first key that is not complete, in words */
} cs_report;

/* Reads every key of s from each of its replicas under ring r, with a
 * deadline of timeout_ms per request, and records in each key's `got` the
 * state its replicas agree on. TRELLIS_OK (the findings in *rep) or
 * TRELLIS_INTERNAL when out of memory. */
int cs_read(cs_set *s, const ring *r, int timeout_ms, cs_report *rep);

/* Fetches the ring from router_url and reads (cs_read) until every key is
 * complete or timeout_ms passed. Returns 0 when complete, with *took_ms the
 * time from the call to the end of the reading that found it so; -1 on
 * timeout, with *rep the last reading. */
int cs_wait(cs_set *s, const char *router_url, int timeout_ms, uint64_t *took_ms, cs_report *rep);

/* Writes a random delta of its type to every key of s (trand_delta with
 * `writers` writer ids), each to one of its replicas under ring r chosen
 * at random (either tier), one request per shard, and merges each
 * acknowledged delta into the key's expected state. TRELLIS_OK when every
 * write was acknowledged; otherwise the first failure's status, described
 * in err. */
int cs_write_random(cs_set *s, const ring *r, trand *rnd, uint64_t writers, char *err, size_t cap);

/* The shard URLs of key i's replicas under ring r, both tiers, memory
 * first; returns how many (at most max). */
size_t cs_replica_urls(const cs_set *s, size_t i, const ring *r, char (*urls)[RING_MAX_URL + 1],
                       int *tiers, size_t max);

#endif
