/*
 * ring.c - placement: the consistent-hash rings of the storage tiers, replica
 * walks, arcs, per-key overrides, local shards and shard addresses.
 *
 * Everything below that decides where a key lives is protocol
 * (docs/protocol.md, "Placement"); every process must compute the same
 * answer, so nothing may depend on the toolchain, the platform or the order
 * in which members were given:
 *
 *  - Key position: (slot_of(key) << RING_SLOT_SHIFT) |
 *    (XXH3_64bits_withSeed(key, klen, RING_SEED) >> SLOT_BITS) (XXH3 output
 *    is frozen since xxhash 0.8.0).
 *  - Tokens: member m with id bytes I owns, for i in 0..vnodes-1, the token
 *    hash XXH3_64bits_withSeed(I || be32(i), RING_SEED), where be32(i) is i
 *    as 4 big-endian bytes, and the token is that hash | RING_SLOT_LOW: the
 *    last position of the slot the hash falls in, so no token splits a
 *    slot. One token array per (view, tier), sorted by token hash, equal
 *    hashes ordered by node id (bytewise): a slot belongs to the first token
 *    hash at or after its first position. RING_CURRENT holds the tokens of
 *    ACTIVE and LEAVING members, RING_FUTURE those of ACTIVE and JOINING
 *    members; DEAD and LEFT members own no tokens.
 *  - Replicas: from the first token >= the key's position (wrapping to the
 *    first token past the end), walk forward collecting distinct members until
 *    the replication count is reached or every distinct member of the array
 *    has been collected; no token is visited twice.
 *  - Replication: the key's override if it has one, else the ring's
 *    defaults, capped by RING_MAX_REPLICAS.
 *  - Arcs: the distinct token positions of RING_CURRENT over both tiers, in
 *    ascending order t(0) < ... < t(k-1); arc i is (t(i-1), t(i)], arc 0 is
 *    (t(k-1), 2^64) together with [0, t(0)]. All positions of an arc have the
 *    same default-replication replicas in both tiers, precomputed here.
 *  - Local shard: the key's slot's range of the node's slot space
 *    (slot_shard).
 *
 * A ring is immutable after ring_build and needs no locking. The data path
 * (ring_replicas and friends) does a binary search and a walk of a few tokens
 * and never allocates.
 */
#include "placement/ring.h"
#include "placement/ring_private.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#if defined(XXH_VERSION_NUMBER) && XXH_VERSION_NUMBER < 800
#error "XXH3 output is only stable from xxhash 0.8.0 on"
#endif

_Static_assert(RING_MAX_NODES <= UINT16_MAX + 1, "node indexes are stored as uint16_t");
_Static_assert(RING_MAX_OVERRIDES <= UINT32_MAX / 4, "override table indexes are uint32_t");

#define RING_VIEWS    2
#define RING_PORT_MAX 65535u

/* The sorted tokens of one (view, tier): tok[i] is owned by node[i]. */
typedef struct ring_line {
    uint64_t *tok;
    uint16_t *node;
    size_t n;
    uint32_t members; /* distinct nodes in the line */
} ring_line;

struct ring {
    uint64_t epoch;
    ring_params params;
    ring_node *nodes; /* sorted by id */
    size_t nnodes;
    ring_line line[RING_VIEWS][RING_TIERS];
    /* A tier without JOINING or LEAVING members has one token array for both
     * views: line[RING_FUTURE][t] then borrows line[RING_CURRENT][t]. */
    bool shared[RING_TIERS];
    /* A tier with JOINING or LEAVING members also keeps the tokens of all
     * three states, for the walks of ring_pending_hashed. */
    ring_line moving[RING_TIERS];
    uint32_t active[RING_TIERS]; /* ACTIVE members of each tier */

    ring_override *ov; /* sorted by key bytes; keys point into ovkeys */
    size_t nov;
    uint8_t *ovkeys;
    uint64_t *ovhash; /* ring_hash of each override's key */
    uint32_t *ovtab;  /* open addressing: override index + 1, 0 = empty */
    size_t ovmask;

    uint64_t *arc_tok; /* the arcs' end tokens, ascending */
    size_t narcs;
    uint16_t *arc_rep; /* narcs rows of arc_width node indexes */
    uint32_t arc_width;
};

/* A token while building: position and owner. */
typedef struct ring_vtok {
    uint64_t tok;
    uint32_t node;
} ring_vtok;

/* ---- names ------------------------------------------------------------------ */

/* "memory" or "disk"; "unknown" for any other value. The string is static. */
const char *ring_tier_name(int tier)
{
    switch (tier) {
    case RING_TIER_MEMORY:
        return "memory";
    case RING_TIER_DISK:
        return "disk";
    default:
        return "unknown";
    }
}

/* Parses "memory" or "disk" (case-insensitive) into *tier. TRELLIS_OK, or
 * TRELLIS_INVALID with *tier untouched. */
int ring_tier_parse(const char *name, int *tier)
{
    if (name == NULL || tier == NULL)
        return TRELLIS_INVALID;
    if (strcasecmp(name, "memory") == 0)
        *tier = RING_TIER_MEMORY;
    else if (strcasecmp(name, "disk") == 0)
        *tier = RING_TIER_DISK;
    else
        return TRELLIS_INVALID;
    return TRELLIS_OK;
}

/* The state's name as the CLI prints it ("ACTIVE"); "UNKNOWN" otherwise. The
 * string is static. */
const char *ring_state_name(int state)
{
    switch (state) {
    case NODE_JOINING:
        return "JOINING";
    case NODE_ACTIVE:
        return "ACTIVE";
    case NODE_LEAVING:
        return "LEAVING";
    case NODE_DEAD:
        return "DEAD";
    case NODE_LEFT:
        return "LEFT";
    default:
        return "UNKNOWN";
    }
}

/* ---- node records ------------------------------------------------------------ */

/* 1 if s is NUL-terminated within its cap + 1 bytes, made of printable
 * non-space ASCII, and non-empty unless allow_empty. */
static int ring_field_ok(const char *s, size_t cap, int allow_empty)
{
    const char *end = memchr(s, '\0', cap + 1);
    if (end == NULL)
        return 0;
    if (end == s)
        return allow_empty;
    for (const char *p = s; p < end; p++) {
        if (*p <= ' ' || *p > '~')
            return 0;
    }
    return 1;
}

/* See ring.h. */
int ring_node_validate(const ring_node *n)
{
    if (n == NULL)
        return TRELLIS_INVALID;
    if (!ring_field_ok(n->id, RING_MAX_NODE_ID, 0) ||
        !ring_field_ok(n->endpoint, RING_MAX_URL, 0) ||
        !ring_field_ok(n->admin_url, RING_MAX_URL, 1))
        return TRELLIS_INVALID;
    if (n->tier != RING_TIER_MEMORY && n->tier != RING_TIER_DISK)
        return TRELLIS_INVALID;
    if (n->state < NODE_JOINING || n->state > NODE_LEFT)
        return TRELLIS_INVALID;
    if (n->shards < 1 || n->shards > RING_MAX_SHARDS)
        return TRELLIS_INVALID;
    if (n->data_port && (uint64_t)n->data_port + n->shards - 1 > RING_PORT_MAX)
        return TRELLIS_INVALID;
    return TRELLIS_OK;
}

/* 1 if a member in this state owns tokens in the view. */
static int ring_in_view(int view, int state)
{
    if (state == NODE_ACTIVE)
        return 1;
    return view == RING_CURRENT ? state == NODE_LEAVING : state == NODE_JOINING;
}

/* ---- hashes ------------------------------------------------------------------- */

/* See ring.h. klen may be 0 (key may then be NULL). */
uint64_t ring_hash(const void *key, size_t klen)
{
    return ring_slot_pos(slot_of(key, klen)) |
           XXH3_64bits_withSeed(key, klen, RING_SEED) >> SLOT_BITS;
}

/* Token `i` of the member with this id: XXH3 of the id bytes followed by i
 * as 4 big-endian bytes. id is a validated id (at most RING_MAX_NODE_ID). */
static uint64_t ring_token(const char *id, uint32_t i)
{
    uint8_t buf[RING_MAX_NODE_ID + 4];
    size_t len = strlen(id);
    memcpy(buf, id, len);
    buf[len] = (uint8_t)(i >> 24);
    buf[len + 1] = (uint8_t)(i >> 16);
    buf[len + 2] = (uint8_t)(i >> 8);
    buf[len + 3] = (uint8_t)i;
    return XXH3_64bits_withSeed(buf, len + 4, RING_SEED);
}

/* See ring.h. */
uint32_t ring_local_shard(const void *key, size_t klen, uint32_t shards)
{
    return shards <= 1 ? 0 : slot_shard(slot_of(key, klen), shards);
}

/* ---- shard addresses ---------------------------------------------------------- */

/* 1 if the scheme (without "://") carries a TCP port. */
static int ring_port_scheme(const char *s, size_t len)
{
    static const char *const schemes[] = {"tcp", "tcp4", "tcp6", "tls+tcp", "tls+tcp4", "tls+tcp6"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (strlen(schemes[i]) == len && memcmp(schemes[i], s, len) == 0)
            return 1;
    }
    return 0;
}

/* Parses "host:port" where host is a name, an IPv4 address or a bracketed
 * IPv6 address and port a decimal in 1..65535 without leading zeros. Sets
 * *port_at to the offset of the port digits in hp. 0 on success, -1 if
 * malformed. */
static int ring_parse_hostport(const char *hp, size_t *port_at, uint32_t *port)
{
    const char *p = hp;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close == p + 1)
            return -1;
        for (const char *q = p + 1; q < close; q++) {
            if (*q == '[' || *q == '/')
                return -1;
        }
        p = close + 1;
    } else {
        while (*p != '\0' && *p != ':') {
            if (*p == '[' || *p == ']' || *p == '/' || *p == '@')
                return -1;
            p++;
        }
        if (p == hp)
            return -1;
    }
    if (*p != ':')
        return -1;
    p++;
    *port_at = (size_t)(p - hp);
    if (*p < '1' || *p > '9')
        return -1;
    uint32_t v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint32_t)(*p - '0');
        if (v > RING_PORT_MAX)
            return -1;
    }
    *port = v;
    return 0;
}

/* The endpoint of shard `shard` of n, checked: its scheme ends at *sep
 * ("://"). 0, or -1 if the shard or the endpoint is invalid. */
static int ring_endpoint(const ring_node *n, uint32_t shard, const char **sep)
{
    if (n == NULL || shard >= n->shards || !ring_field_ok(n->endpoint, RING_MAX_URL, 0))
        return -1;
    *sep = strstr(n->endpoint, "://");
    return *sep == NULL || *sep == n->endpoint || (*sep)[3] == '\0' ? -1 : 0;
}

/* See ring.h. */
int ring_shard_url(const ring_node *n, uint32_t shard, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return TRELLIS_INVALID;
    buf[0] = '\0';
    const char *sep;
    if (ring_endpoint(n, shard, &sep) != 0)
        return TRELLIS_INVALID;
    const char *ep = n->endpoint;
    int w;
    if (ring_port_scheme(ep, (size_t)(sep - ep))) {
        const char *hp = sep + 3;
        size_t port_at;
        uint32_t port;
        if (ring_parse_hostport(hp, &port_at, &port) != 0 || (uint64_t)port + shard > RING_PORT_MAX)
            return TRELLIS_INVALID;
        int prefix = (int)((size_t)(hp - ep) + port_at);
        w = snprintf(buf, cap, "%.*s%u", prefix, ep, (unsigned)(port + shard));
    } else if (shard == 0) {
        w = snprintf(buf, cap, "%s", ep);
    } else {
        w = snprintf(buf, cap, "%s.%u", ep, (unsigned)shard);
    }
    if (w < 0 || (size_t)w >= cap) {
        buf[0] = '\0';
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

/* See ring.h. */
int ring_shard_data_addr(const ring_node *n, uint32_t shard, char *host, size_t cap, int *port,
                         int *tls)
{
    if (host == NULL || cap == 0)
        return TRELLIS_INVALID;
    host[0] = '\0';
    const char *sep;
    if (ring_endpoint(n, shard, &sep) != 0)
        return TRELLIS_INVALID;
    const char *ep = n->endpoint;
    if (!ring_port_scheme(ep, (size_t)(sep - ep)))
        return TRELLIS_INVALID;
    const char *hp = sep + 3;
    size_t port_at;
    uint32_t p;
    if (ring_parse_hostport(hp, &port_at, &p) != 0)
        return TRELLIS_INVALID;
    const char *h = hp;
    size_t hlen = port_at - 1; /* up to the ':' */
    if (*h == '[') {
        h++;
        hlen -= 2;
    }
    if (hlen + 1 > cap)
        return TRELLIS_INVALID;
    if (n->data_port == 0)
        return TRELLIS_NOT_FOUND;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)(n->data_port + shard);
    if (tls)
        *tls = strncmp(ep, "tls+", 4) == 0;
    return TRELLIS_OK;
}

/* See ring.h. */
int ring_shard_data_url(const ring_node *n, uint32_t shard, char *buf, size_t cap)
{
    char host[RING_MAX_URL + 1];
    int port, tls;
    if (buf == NULL || cap == 0)
        return TRELLIS_INVALID;
    buf[0] = '\0';
    int rc = ring_shard_data_addr(n, shard, host, sizeof(host), &port, &tls);
    if (rc != TRELLIS_OK)
        return rc;
    int v6 = strchr(host, ':') != NULL;
    int w = snprintf(buf, cap, "%s://%s%s%s:%d", tls ? "tls+tcp" : "tcp", v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
    if (w < 0 || (size_t)w >= cap) {
        buf[0] = '\0';
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

/* ---- building ----------------------------------------------------------------- */

/* qsort order of node records: by id, bytewise. */
static int ring_node_cmp_id(const void *a, const void *b)
{
    return strcmp(((const ring_node *)a)->id, ((const ring_node *)b)->id);
}

/* Tokens by hash, then owner; nodes are indexed in id order, so equal
 * tokens end up in id order. A line keeps this order when it rounds its
 * tokens up to their slots' last positions, so of two tokens in one slot
 * the one with the lower hash owns the slot: whichever member's. */
static int ring_vtok_cmp(const void *a, const void *b)
{
    const ring_vtok *x = a, *y = b;
    if (x->tok != y->tok)
        return x->tok < y->tok ? -1 : 1;
    return (x->node > y->node) - (x->node < y->node);
}

/* See ring_private.h. */
int ring__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t common = alen < blen ? alen : blen;
    int c = common ? memcmp(a, b, common) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

/* qsort order of pointers to overrides: by key bytes. */
static int ring_ovp_cmp(const void *a, const void *b)
{
    const ring_override *x = *(const ring_override *const *)a;
    const ring_override *y = *(const ring_override *const *)b;
    return ring__key_cmp(x->key, x->klen, y->key, y->klen);
}

/* See ring_private.h. */
void ring__node_copy(ring_node *dst, const ring_node *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->id, src->id, strlen(src->id));
    dst->tier = src->tier;
    dst->state = src->state;
    dst->generation = src->generation;
    dst->shards = src->shards;
    memcpy(dst->endpoint, src->endpoint, strlen(src->endpoint));
    memcpy(dst->admin_url, src->admin_url, strlen(src->admin_url));
    dst->data_port = src->data_port;
}

/* Fills line with the tokens of `all` (sorted, of one tier) whose owners are
 * in the view. 0, or TRELLIS_INTERNAL if out of memory. */
static int ring_fill_line(ring *r, ring_line *line, int view, int tier, const ring_vtok *all,
                          size_t nall)
{
    size_t n = 0;
    for (size_t i = 0; i < nall; i++)
        n += (size_t)ring_in_view(view, r->nodes[all[i].node].state);
    line->n = n;
    line->members = 0;
    if (n == 0)
        return 0;
    line->tok = malloc(n * sizeof *line->tok);
    line->node = malloc(n * sizeof *line->node);
    if (line->tok == NULL || line->node == NULL)
        return TRELLIS_INTERNAL;
    size_t k = 0;
    for (size_t i = 0; i < nall; i++) {
        if (ring_in_view(view, r->nodes[all[i].node].state)) {
            line->tok[k] = all[i].tok | RING_SLOT_LOW;
            line->node[k] = (uint16_t)all[i].node;
            k++;
        }
    }
    for (size_t i = 0; i < r->nnodes; i++)
        line->members +=
            (uint32_t)(r->nodes[i].tier == tier && ring_in_view(view, r->nodes[i].state));
    return 0;
}

/* Fills line with every token of `all` (JOINING, ACTIVE and LEAVING
 * members of one tier) and counts the tier's ACTIVE members. */
static int ring_fill_moving(ring *r, ring_line *line, int tier, const ring_vtok *all, size_t nall)
{
    line->tok = malloc(nall * sizeof *line->tok);
    line->node = malloc(nall * sizeof *line->node);
    if (line->tok == NULL || line->node == NULL)
        return TRELLIS_INTERNAL;
    for (size_t i = 0; i < nall; i++) {
        line->tok[i] = all[i].tok | RING_SLOT_LOW; /* as ring_fill_line's */
        line->node[i] = (uint16_t)all[i].node;
    }
    line->n = nall;
    line->members = 0;
    for (size_t i = 0; i < r->nnodes; i++) {
        const ring_node *nd = &r->nodes[i];
        if (nd->tier != tier)
            continue;
        line->members += (uint32_t)(nd->state >= NODE_JOINING && nd->state <= NODE_LEAVING);
        r->active[tier - 1] += (uint32_t)(nd->state == NODE_ACTIVE);
    }
    return 0;
}

/* Builds the token arrays of one tier for both views. */
static int ring_build_tier(ring *r, int tier)
{
    int t = tier - 1;
    uint32_t v = r->params.vnodes;
    size_t live = 0;
    bool moving = false;
    for (size_t i = 0; i < r->nnodes; i++) {
        const ring_node *nd = &r->nodes[i];
        if (nd->tier != tier)
            continue;
        if (ring_in_view(RING_CURRENT, nd->state) || ring_in_view(RING_FUTURE, nd->state))
            live++;
        if (nd->state == NODE_JOINING || nd->state == NODE_LEAVING)
            moving = true;
    }
    r->shared[t] = !moving;
    if (live == 0)
        return 0;

    ring_vtok *all = malloc(live * v * sizeof *all);
    if (all == NULL)
        return TRELLIS_INTERNAL;
    size_t k = 0;
    for (size_t i = 0; i < r->nnodes; i++) {
        const ring_node *nd = &r->nodes[i];
        if (nd->tier != tier || nd->state == NODE_DEAD || nd->state == NODE_LEFT)
            continue;
        for (uint32_t j = 0; j < v; j++) {
            all[k].tok = ring_token(nd->id, j);
            all[k].node = (uint32_t)i;
            k++;
        }
    }
    qsort(all, k, sizeof *all, ring_vtok_cmp);

    int rc = ring_fill_line(r, &r->line[RING_CURRENT][t], RING_CURRENT, tier, all, k);
    if (rc == 0 && !moving)
        r->line[RING_FUTURE][t] = r->line[RING_CURRENT][t];
    else if (rc == 0)
        rc = ring_fill_line(r, &r->line[RING_FUTURE][t], RING_FUTURE, tier, all, k);
    if (rc == 0 && moving)
        rc = ring_fill_moving(r, &r->moving[t], tier, all, k);
    free(all);
    return rc;
}

/* Copies the overrides, sorted by key, and builds their lookup table.
 * Overrides were validated by the caller except for duplicates. */
static int ring_build_overrides(ring *r, const ring_override *ov, size_t nov)
{
    if (nov == 0)
        return 0;
    const ring_override **sorted = malloc(nov * sizeof *sorted);
    if (sorted == NULL)
        return TRELLIS_INTERNAL;
    size_t total = 0;
    for (size_t i = 0; i < nov; i++) {
        sorted[i] = &ov[i];
        total += ov[i].klen;
    }
    qsort(sorted, nov, sizeof *sorted, ring_ovp_cmp);
    for (size_t i = 1; i < nov; i++) {
        if (ring_ovp_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            free(sorted);
            return TRELLIS_INVALID;
        }
    }

    size_t cap = 8;
    while (cap < 2 * nov)
        cap *= 2;
    r->ov = malloc(nov * sizeof *r->ov);
    r->ovkeys = malloc(total ? total : 1);
    r->ovhash = malloc(nov * sizeof *r->ovhash);
    r->ovtab = calloc(cap, sizeof *r->ovtab);
    if (r->ov == NULL || r->ovkeys == NULL || r->ovhash == NULL || r->ovtab == NULL) {
        free(sorted);
        return TRELLIS_INTERNAL;
    }
    r->nov = nov;
    r->ovmask = cap - 1;
    size_t off = 0;
    for (size_t i = 0; i < nov; i++) {
        r->ov[i] = *sorted[i];
        if (sorted[i]->klen != 0)
            memcpy(r->ovkeys + off, sorted[i]->key, sorted[i]->klen);
        r->ov[i].key = r->ovkeys + off;
        off += sorted[i]->klen;
        r->ovhash[i] = ring_hash(r->ov[i].key, r->ov[i].klen);
        size_t s = (size_t)r->ovhash[i] & r->ovmask;
        while (r->ovtab[s] != 0)
            s = (s + 1) & r->ovmask;
        r->ovtab[s] = (uint32_t)i + 1;
    }
    free(sorted);
    return 0;
}

/* The override of a key whose ring_hash is h, or NULL. */
static const ring_override *ring_find_override(const ring *r, const void *key, size_t klen,
                                               uint64_t h)
{
    size_t s = (size_t)h & r->ovmask;
    for (uint32_t e; (e = r->ovtab[s]) != 0; s = (s + 1) & r->ovmask) {
        const ring_override *o = &r->ov[e - 1];
        if (r->ovhash[e - 1] == h && o->klen == klen &&
            (klen == 0 || memcmp(o->key, key, klen) == 0))
            return o;
    }
    return NULL;
}

/* A replication count limited to RING_MAX_REPLICAS. */
static uint32_t ring_cap(uint32_t count)
{
    return count < RING_MAX_REPLICAS ? count : RING_MAX_REPLICAS;
}

/* Index of the first token >= h in a[0..n), n if there is none. */
static size_t ring_lower_bound(const uint64_t *a, size_t n, uint64_t h)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The replica walk from token index pos (n meaning wrap to 0): collects up
 * to `want` distinct members into idx[] and returns how many. At most one
 * visit per token; want is first cut to the line's member count, so the walk
 * never looks for members that do not exist. */
static size_t ring_walk(const ring_line *l, size_t pos, size_t want, int *idx)
{
    if (want > l->members)
        want = l->members;
    size_t got = 0;
    for (size_t step = 0; step < l->n && got < want; step++, pos++) {
        if (pos >= l->n)
            pos = 0;
        int node = l->node[pos];
        size_t j = 0;
        while (j < got && idx[j] != node)
            j++;
        if (j == got)
            idx[got++] = node;
    }
    return got;
}

/* Precomputes the arcs of the current view and their default replicas. */
static int ring_build_arcs(ring *r)
{
    const ring_line *m = &r->line[RING_CURRENT][RING_TIER_MEMORY - 1];
    const ring_line *d = &r->line[RING_CURRENT][RING_TIER_DISK - 1];
    if (m->n + d->n == 0)
        return 0;
    r->arc_tok = malloc((m->n + d->n) * sizeof *r->arc_tok);
    if (r->arc_tok == NULL)
        return TRELLIS_INTERNAL;
    size_t i = 0, j = 0, k = 0;
    while (i < m->n || j < d->n) {
        uint64_t t;
        if (j >= d->n || (i < m->n && m->tok[i] <= d->tok[j]))
            t = m->tok[i++];
        else
            t = d->tok[j++];
        if (k == 0 || r->arc_tok[k - 1] != t)
            r->arc_tok[k++] = t;
    }
    r->narcs = k;

    uint32_t wm = ring_cap(r->params.memory_replicas);
    uint32_t wd = ring_cap(r->params.disk_replicas);
    if (wm > m->members)
        wm = m->members;
    if (wd > d->members)
        wd = d->members;
    r->arc_width = wm + wd;
    if (r->arc_width == 0)
        return 0;
    r->arc_rep = malloc(r->narcs * r->arc_width * sizeof *r->arc_rep);
    if (r->arc_rep == NULL)
        return TRELLIS_INTERNAL;
    /* Arc tokens ascend, so each line's start position only moves forward. */
    size_t pm = 0, pd = 0;
    int tmp[RING_MAX_REPLICAS];
    for (size_t a = 0; a < r->narcs; a++) {
        uint64_t t = r->arc_tok[a];
        uint16_t *row = r->arc_rep + a * r->arc_width;
        while (pm < m->n && m->tok[pm] < t)
            pm++;
        while (pd < d->n && d->tok[pd] < t)
            pd++;
        size_t got = ring_walk(m, pm, wm, tmp);
        for (size_t x = 0; x < got; x++)
            row[x] = (uint16_t)tmp[x];
        size_t got2 = ring_walk(d, pd, wd, tmp);
        for (size_t x = 0; x < got2; x++)
            row[got + x] = (uint16_t)tmp[x];
    }
    return 0;
}

/* See ring.h. Validates everything before allocating; on failure frees what
 * it built and leaves *out alone. */
int ring_build(const ring_node *nodes, size_t n, const ring_override *ov, size_t nov,
               const ring_params *params, uint64_t epoch, ring **out)
{
    if (out == NULL || params == NULL || (n > 0 && nodes == NULL) || (nov > 0 && ov == NULL))
        return TRELLIS_INVALID;
    if (params->vnodes < 1 || params->vnodes > RING_MAX_VNODES ||
        params->memory_replicas > RING_MAX_REPLICAS || params->disk_replicas > RING_MAX_REPLICAS)
        return TRELLIS_INVALID;
    if (n > RING_MAX_NODES || nov > RING_MAX_OVERRIDES)
        return TRELLIS_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        if (ring_node_validate(&nodes[i]) != TRELLIS_OK)
            return TRELLIS_INVALID;
    }
    for (size_t i = 0; i < nov; i++) {
        if (ov[i].key == NULL && ov[i].klen > 0)
            return TRELLIS_INVALID;
        if (ov[i].klen > RING_MAX_OVERRIDE_KEY)
            return TRELLIS_TOO_LARGE;
    }

    ring *r = calloc(1, sizeof *r);
    if (r == NULL)
        return TRELLIS_INTERNAL;
    r->epoch = epoch;
    r->params = *params;
    int rc = 0;
    if (n > 0) {
        r->nodes = malloc(n * sizeof *r->nodes);
        if (r->nodes == NULL) {
            rc = TRELLIS_INTERNAL;
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            ring__node_copy(&r->nodes[i], &nodes[i]);
        r->nnodes = n;
        qsort(r->nodes, n, sizeof *r->nodes, ring_node_cmp_id);
        for (size_t i = 1; i < n; i++) {
            if (strcmp(r->nodes[i - 1].id, r->nodes[i].id) == 0) {
                rc = TRELLIS_INVALID;
                goto fail;
            }
        }
    }
    if ((rc = ring_build_tier(r, RING_TIER_MEMORY)) != 0 ||
        (rc = ring_build_tier(r, RING_TIER_DISK)) != 0 ||
        (rc = ring_build_overrides(r, ov, nov)) != 0 || (rc = ring_build_arcs(r)) != 0)
        goto fail;
    *out = r;
    return TRELLIS_OK;
fail:
    ring_free(r);
    return rc;
}

/* Frees r and everything it owns; NULL is a no-op. */
void ring_free(ring *r)
{
    if (r == NULL)
        return;
    for (int t = 0; t < RING_TIERS; t++) {
        free(r->line[RING_CURRENT][t].tok);
        free(r->line[RING_CURRENT][t].node);
        if (!r->shared[t]) {
            free(r->line[RING_FUTURE][t].tok);
            free(r->line[RING_FUTURE][t].node);
        }
        free(r->moving[t].tok);
        free(r->moving[t].node);
    }
    free(r->nodes);
    free(r->ov);
    free(r->ovkeys);
    free(r->ovhash);
    free(r->ovtab);
    free(r->arc_tok);
    free(r->arc_rep);
    free(r);
}

/* ---- accessors ------------------------------------------------------------------ */

/* The epoch given to ring_build. */
uint64_t ring_epoch(const ring *r)
{
    return r->epoch;
}

/* The ring's parameters; valid as long as r. */
const ring_params *ring_get_params(const ring *r)
{
    return &r->params;
}

/* Number of nodes in the node table, whatever their state. */
size_t ring_node_count(const ring *r)
{
    return r->nnodes;
}

/* See ring.h; NULL if i is out of range. */
const ring_node *ring_node_at(const ring *r, size_t i)
{
    return i < r->nnodes ? &r->nodes[i] : NULL;
}

/* Binary search of the id-sorted node table. */
int ring_find_node(const ring *r, const char *id)
{
    if (id == NULL)
        return -1;
    size_t lo = 0, hi = r->nnodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->nodes[mid].id, id);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Number of overrides. */
size_t ring_override_count(const ring *r)
{
    return r->nov;
}

/* See ring.h; NULL if i is out of range. */
const ring_override *ring_override_at(const ring *r, size_t i)
{
    return i < r->nov ? &r->ov[i] : NULL;
}

/* ---- the data path ------------------------------------------------------------------ */

/* The replication of one tier for a key whose ring_hash is h. A ring without
 * overrides pays one branch. */
static uint32_t ring_count(const ring *r, int tier, const void *key, size_t klen, uint64_t h)
{
    if (r->nov != 0) {
        const ring_override *o = ring_find_override(r, key, klen, h);
        if (o != NULL)
            return ring_cap(tier == RING_TIER_MEMORY ? o->memory : o->disk);
    }
    return tier == RING_TIER_MEMORY ? r->params.memory_replicas : r->params.disk_replicas;
}

/* See ring.h. */
void ring_replication(const ring *r, const void *key, size_t klen, uint32_t *memory, uint32_t *disk)
{
    uint32_t m = r->params.memory_replicas, d = r->params.disk_replicas;
    if (r->nov != 0) {
        const ring_override *o = ring_find_override(r, key, klen, ring_hash(key, klen));
        if (o != NULL) {
            m = ring_cap(o->memory);
            d = ring_cap(o->disk);
        }
    }
    if (memory != NULL)
        *memory = m;
    if (disk != NULL)
        *disk = d;
}

/* See ring.h. */
int ring_has_override(const ring *r, const void *key, size_t klen)
{
    if (r->nov == 0)
        return 0;
    return ring_find_override(r, key, klen, ring_hash(key, klen)) != NULL;
}

/* 1 if view and tier are known values. */
static int ring_view_tier_ok(int view, int tier)
{
    return (view == RING_CURRENT || view == RING_FUTURE) &&
           (tier == RING_TIER_MEMORY || tier == RING_TIER_DISK);
}

/* See ring.h. */
size_t ring_replicas_hashed(const ring *r, int view, int tier, uint64_t hash, uint32_t count,
                            int *idx, size_t max)
{
    if (!ring_view_tier_ok(view, tier) || idx == NULL)
        return 0;
    const ring_line *l = &r->line[view][tier - 1];
    size_t want = ring_cap(count);
    if (want > max)
        want = max;
    if (want == 0 || l->n == 0)
        return 0;
    return ring_walk(l, ring_lower_bound(l->tok, l->n, hash), want, idx);
}

/* See ring.h. */
size_t ring_replicas(const ring *r, int view, int tier, const void *key, size_t klen, int *idx,
                     size_t max)
{
    if (!ring_view_tier_ok(view, tier))
        return 0;
    uint64_t h = ring_hash(key, klen);
    return ring_replicas_hashed(r, view, tier, h, ring_count(r, tier, key, klen, h), idx, max);
}

/* See ring.h. Only the node's own tier can hold it. */
int ring_is_replica(const ring *r, int view, int node_idx, const void *key, size_t klen)
{
    if (node_idx < 0 || (size_t)node_idx >= r->nnodes)
        return 0;
    int tier = r->nodes[node_idx].tier;
    int idx[RING_MAX_REPLICAS];
    size_t k = ring_replicas(r, view, tier, key, klen, idx, RING_MAX_REPLICAS);
    for (size_t i = 0; i < k; i++) {
        if (idx[i] == node_idx)
            return 1;
    }
    return 0;
}

/* The walk of the ACTIVE members of a moving line, plus `extra` (a JOINING
 * member's index, or -1): up to want distinct members into idx[], at most
 * one visit per token. */
static size_t ring_walk_active(const ring *r, int tier, uint64_t hash, size_t want, int extra,
                               int *idx)
{
    const ring_line *l = &r->moving[tier - 1];
    uint32_t members = r->active[tier - 1] + (extra >= 0);
    if (want > members)
        want = members;
    size_t got = 0;
    size_t pos = ring_lower_bound(l->tok, l->n, hash);
    for (size_t step = 0; step < l->n && got < want; step++, pos++) {
        if (pos >= l->n)
            pos = 0;
        int node = l->node[pos];
        if (node != extra && r->nodes[node].state != NODE_ACTIVE)
            continue;
        size_t j = 0;
        while (j < got && idx[j] != node)
            j++;
        if (j == got)
            idx[got++] = node;
    }
    return got;
}

/* Appends the members of v[0..n) that are neither in cur[0..ncur) nor
 * already in out[0..*nout), up to max. */
static void ring_add_pending(const int *v, size_t n, const int *cur, size_t ncur, int *out,
                             size_t *nout, size_t max)
{
    for (size_t i = 0; i < n && *nout < max; i++) {
        int dup = 0;
        for (size_t j = 0; j < ncur && !dup; j++)
            dup = cur[j] == v[i];
        for (size_t j = 0; j < *nout && !dup; j++)
            dup = out[j] == v[i];
        if (!dup)
            out[(*nout)++] = v[i];
    }
}

/* See ring.h. A member that owns the key in some ring reached by completing
 * changes owns it among the ACTIVE members alone if it is ACTIVE (removing
 * members never takes a key from the others), or among the ACTIVE members
 * and itself if it is joining or leaving: those walks are enough. */
size_t ring_pending_hashed(const ring *r, int tier, uint64_t hash, uint32_t count, int *idx,
                           size_t max)
{
    if (!ring_view_tier_ok(RING_CURRENT, tier) || idx == NULL || r->shared[tier - 1])
        return 0;
    size_t want = ring_cap(count);
    if (want == 0 || r->moving[tier - 1].n == 0)
        return 0;
    int cur[RING_MAX_REPLICAS], v[RING_MAX_REPLICAS];
    size_t ncur = ring_replicas_hashed(r, RING_CURRENT, tier, hash, count, cur, RING_MAX_REPLICAS);
    size_t n = 0;
    size_t k = ring_walk_active(r, tier, hash, want, -1, v);
    ring_add_pending(v, k, cur, ncur, idx, &n, max);
    for (size_t i = 0; i < r->nnodes; i++) {
        const ring_node *nd = &r->nodes[i];
        if (nd->tier != tier || (nd->state != NODE_JOINING && nd->state != NODE_LEAVING))
            continue;
        k = ring_walk_active(r, tier, hash, want, (int)i, v);
        for (size_t j = 0; j < k; j++)
            if (v[j] == (int)i)
                ring_add_pending(&v[j], 1, cur, ncur, idx, &n, max);
    }
    return n;
}

/* See ring.h. */
size_t ring_pending(const ring *r, int tier, const void *key, size_t klen, int *idx, size_t max)
{
    if (!ring_view_tier_ok(RING_CURRENT, tier))
        return 0;
    uint64_t h = ring_hash(key, klen);
    return ring_pending_hashed(r, tier, h, ring_count(r, tier, key, klen, h), idx, max);
}

/* See ring.h. */
int ring_is_moving(const ring *r, int tier)
{
    return ring_view_tier_ok(RING_CURRENT, tier) && !r->shared[tier - 1];
}

/* ---- arcs ------------------------------------------------------------------------------ */

/* Number of arcs (distinct current-view token positions of both tiers). */
size_t ring_arc_count(const ring *r)
{
    return r->narcs;
}

/* See ring.h. */
size_t ring_arc_of(const ring *r, uint64_t h)
{
    size_t i = ring_lower_bound(r->arc_tok, r->narcs, h);
    return i == r->narcs ? 0 : i;
}

/* See ring.h. */
uint64_t ring_arc_token(const ring *r, size_t arc)
{
    return arc < r->narcs ? r->arc_tok[arc] : 0;
}

/* See ring.h; 0 for an arc or node out of range. O(replicas). */
int ring_arc_has_replica(const ring *r, size_t arc, int node_idx)
{
    if (arc >= r->narcs || node_idx < 0 || (size_t)node_idx >= r->nnodes || r->arc_width == 0)
        return 0;
    const uint16_t *row = r->arc_rep + arc * r->arc_width;
    for (uint32_t i = 0; i < r->arc_width; i++) {
        if (row[i] == (uint16_t)node_idx)
            return 1;
    }
    return 0;
}
