/*
 * dp_resp.c - Redis Cluster on a shard's data port (dp_resp.h).
 *
 * Commands are answered in the order they arrive, each as soon as it is
 * parsed; the replies of one read leave together before the loop sleeps.
 * The cluster's shape comes from the shard's current ring (slotmap.h):
 * every shard of the tier that serves Redis clients is a master of the
 * slots it holds, listed with the slots' other replicas.
 */
#include "kvs/dp_resp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "gateway/resp_cmd.h"
#include "gateway/resp_proto.h"
#include "kvs/dp_exec.h"
#include "kvs/shard_impl.h"
#include "placement/slotmap.h"

#define DPR_VERSION     "7.0.0" /* the Redis version clients that check one see */
#define DPR_NAME_MAX    64      /* CLIENT SETNAME */
#define DPR_UNAUTH_ARGS 8       /* words of a command before AUTH */
#define DPR_GETKEYS_MAX 100000  /* CLUSTER GETKEYSINSLOT's count */
#define DPR_HOST_MAX    256

/* A data command whose operations wait (held for pending replicas): a
 * copy of its words, for its reply. */
typedef struct dpr_pending {
    const resp_cmd_def *def;
    resp_slot slot;
    resp_command c;
    const uint8_t **argv;
    size_t *argl;
    uint8_t *bytes;
} dpr_pending;

struct dp_resp {
    uint64_t id;
    dp_exec *x;
    resp_ctx *ctx;
    uint64_t req; /* the request id of the command being run */
    int waiting;  /* its results are not in yet */
    dpr_pending *pend;
    resp_parser p;
    resp_buf out;
    int proto;    /* 2 or 3 (HELLO) */
    int authed;   /* AUTH or HELLO AUTH accepted */
    int readonly; /* READONLY: reads served by any replica of the key */
    int close_after;
    char name[DPR_NAME_MAX + 1];
};

dp_resp *dp_resp_new(shard *s, uint64_t id)
{
    dp_resp *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->id = id;
    r->proto = 2;
    r->x = dp_exec_new(s);
    r->ctx = resp_ctx_new();
    if (!r->x || !r->ctx) {
        dp_exec_free(r->x);
        resp_ctx_free(r->ctx);
        free(r);
        return NULL;
    }
    resp_parser_init(&r->p);
    return r;
}

static void pending_free(dpr_pending *p)
{
    if (!p)
        return;
    free(p->argv);
    free(p->argl);
    free(p->bytes);
    free(p);
}

void dp_resp_free(dp_resp *r)
{
    if (!r)
        return;
    resp_parser_free(&r->p);
    resp_buf_free(&r->out);
    dp_exec_free(r->x);
    resp_ctx_free(r->ctx);
    pending_free(r->pend);
    free(r);
}

/* ---- helpers --------------------------------------------------------------------------- */

static int word_is(const resp_command *c, size_t i, const char *w)
{
    return c->argl[i] == strlen(w) && strncasecmp((const char *)c->argv[i], w, c->argl[i]) == 0;
}

/* A non-negative decimal integer below `below`; -1 otherwise. */
static long long parse_index(const uint8_t *p, size_t n, long long below)
{
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v < below ? v : -1;
}

static const ring *cur_ring(const shard *s)
{
    return s->rr ? s->rr->r : NULL;
}

/* The Redis address of shard `sh` of ring node `node`: 0, or -1 when the
 * node serves no data plane. */
static int owner_addr(const ring *r, int node, uint32_t sh, char *host, int *port)
{
    return ring_shard_data_addr(ring_node_at(r, (size_t)node), sh, host, DPR_HOST_MAX, port,
                                NULL) == TRELLIS_OK
               ? 0
               : -1;
}

static int is_me(const shard *s, const slot_owner *o)
{
    return o->node == s->self && o->shard == (uint32_t)s->index;
}

/* ---- connection commands ------------------------------------------------------------- */

static int check_auth(shard *s, dp_resp *r, const resp_command *c, size_t user, size_t pass)
{
    int user_ok = user == 0 || word_is(c, user, "default");
    if (user_ok && frame_token_ok(c->argv[pass], c->argl[pass], s->token))
        return 1;
    shard_count_error(s, TRELLIS_UNAUTHORIZED);
    resp_add_error(&r->out, "WRONGPASS invalid username-password pair or user is disabled.");
    return 0;
}

static void no_password(dp_resp *r)
{
    resp_add_error(&r->out, "ERR AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
}

static void cmd_auth(shard *s, dp_resp *r, const resp_command *c)
{
    if (c->argc < 2 || c->argc > 3) {
        resp_add_error(&r->out, "ERR wrong number of arguments for 'auth' command");
        return;
    }
    if (!s->token) {
        no_password(r);
        return;
    }
    if (check_auth(s, r, c, c->argc == 3 ? 1 : 0, c->argc - 1)) {
        r->authed = 1;
        resp_add_simple(&r->out, "OK");
    }
}

static int name_ok(const uint8_t *p, size_t n)
{
    if (n > DPR_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

static void cmd_hello(shard *s, dp_resp *r, const resp_command *c)
{
    int proto = r->proto, authed = r->authed || !s->token;
    size_t i = 1, name = 0;
    if (c->argc >= 2) {
        if (c->argl[1] != 1 || (c->argv[1][0] != '2' && c->argv[1][0] != '3')) {
            resp_add_error(&r->out, "NOPROTO sorry, this protocol version is not supported");
            return;
        }
        proto = c->argv[1][0] - '0';
        i = 2;
    }
    for (; i < c->argc; i++) {
        if (word_is(c, i, "AUTH") && i + 2 < c->argc) {
            if (!s->token) {
                no_password(r);
                return;
            }
            if (!check_auth(s, r, c, i + 1, i + 2))
                return;
            authed = 1;
            i += 2;
        } else if (word_is(c, i, "SETNAME") && i + 1 < c->argc) {
            if (!name_ok(c->argv[i + 1], c->argl[i + 1])) {
                resp_add_error(&r->out, "ERR Client names cannot contain spaces, newlines or "
                                        "special characters.");
                return;
            }
            name = ++i;
        } else {
            char w[64];
            resp_add_errorf(&r->out, "ERR Syntax error in HELLO option '%s'",
                            resp_printable(c->argv[i], c->argl[i], 32, w, sizeof(w)));
            return;
        }
    }
    if (!authed) {
        resp_add_error(&r->out, "NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used");
        return;
    }
    r->authed = 1;
    r->proto = proto;
    if (name) {
        memcpy(r->name, c->argv[name], c->argl[name]);
        r->name[c->argl[name]] = '\0';
    }
    resp_add_map(&r->out, 7, proto);
    resp_add_cstr(&r->out, "server");
    resp_add_cstr(&r->out, "redis");
    resp_add_cstr(&r->out, "version");
    resp_add_cstr(&r->out, DPR_VERSION);
    resp_add_cstr(&r->out, "proto");
    resp_add_int(&r->out, proto);
    resp_add_cstr(&r->out, "id");
    resp_add_int(&r->out, (int64_t)r->id);
    resp_add_cstr(&r->out, "mode");
    resp_add_cstr(&r->out, "cluster");
    resp_add_cstr(&r->out, "role");
    resp_add_cstr(&r->out, "master");
    resp_add_cstr(&r->out, "modules");
    resp_add_array(&r->out, 0);
}

static void cmd_client(dp_resp *r, const resp_command *c)
{
    if (c->argc == 3 && word_is(c, 1, "SETNAME")) {
        if (!name_ok(c->argv[2], c->argl[2])) {
            resp_add_error(&r->out, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
            return;
        }
        memcpy(r->name, c->argv[2], c->argl[2]);
        r->name[c->argl[2]] = '\0';
        resp_add_simple(&r->out, "OK");
    } else if (c->argc == 2 && word_is(c, 1, "GETNAME")) {
        if (r->name[0])
            resp_add_cstr(&r->out, r->name);
        else
            resp_add_nil(&r->out, r->proto);
    } else if (c->argc == 2 && word_is(c, 1, "ID")) {
        resp_add_int(&r->out, (int64_t)r->id);
    } else if (c->argc >= 2 && word_is(c, 1, "SETINFO")) {
        resp_add_simple(&r->out, "OK");
    } else {
        char w[64];
        resp_add_errorf(&r->out,
                        "ERR trellis: CLIENT %s is not supported (SETNAME, GETNAME, ID and "
                        "SETINFO are)",
                        c->argc >= 2 ? resp_printable(c->argv[1], c->argl[1], 32, w, sizeof(w))
                                     : "");
    }
}

/* ---- cluster commands ------------------------------------------------------------------- */

/* An owner as CLUSTER SLOTS lists it: host, port, id. */
static void add_slots_node(const ring *r, const slot_owner *o, resp_buf *b)
{
    char host[DPR_HOST_MAX], id[41];
    int port = 0;
    if (owner_addr(r, o->node, o->shard, host, &port) != 0)
        host[0] = '\0';
    slotmap_node_id(ring_node_at(r, (size_t)o->node), o->shard, id);
    resp_add_array(b, 3);
    resp_add_cstr(b, host);
    resp_add_int(b, port);
    resp_add_cstr(b, id);
}

/* The ranges of the cluster view; NULL (after an error reply) when there
 * is none or memory ran out. */
static slot_range *view_ranges(shard *s, dp_resp *r, int *tier, size_t *n)
{
    const ring *rg = cur_ring(s);
    *tier = rg ? slotmap_tier(rg) : -1;
    slot_range *v = *tier >= 0 ? slotmap_ranges(rg, *tier, n) : NULL;
    if (!v)
        resp_add_error(&r->out, *tier >= 0 && *n == SIZE_MAX ? "ERR trellis: out of memory"
                                                             : "CLUSTERDOWN Hash slot not served");
    return v;
}

static void cluster_slots(shard *s, dp_resp *r)
{
    int tier;
    size_t n;
    slot_range *v = view_ranges(s, r, &tier, &n);
    if (!v)
        return;
    const ring *rg = cur_ring(s);
    resp_add_array(&r->out, n);
    for (size_t i = 0; i < n; i++) {
        resp_add_array(&r->out, 2 + v[i].n);
        resp_add_int(&r->out, v[i].first);
        resp_add_int(&r->out, v[i].last);
        for (uint32_t j = 0; j < v[i].n; j++)
            add_slots_node(rg, &v[i].rep[j], &r->out);
    }
    free(v);
}

/* The shards of the view, each once: every shard of every node of the
 * tier in the current view that has a data plane. */
typedef struct view_shard {
    slot_owner o;
    char host[DPR_HOST_MAX];
    int port;
    char id[41];
} view_shard;

static view_shard *view_shards(const ring *rg, int tier, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < ring_node_count(rg); i++)
        cap += ring_node_at(rg, i)->shards;
    view_shard *v = malloc((cap ? cap : 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; v && i < ring_node_count(rg); i++) {
        const ring_node *nd = ring_node_at(rg, i);
        if (nd->tier != tier || (nd->state != NODE_ACTIVE && nd->state != NODE_LEAVING))
            continue;
        for (uint32_t sh = 0; sh < nd->shards; sh++) {
            view_shard *w = &v[k];
            w->o = (slot_owner){(int)i, sh};
            if (owner_addr(rg, (int)i, sh, w->host, &w->port) != 0)
                continue;
            slotmap_node_id(nd, sh, w->id);
            k++;
        }
    }
    *n = k;
    return v;
}

static int same_owner(const slot_owner *a, const slot_owner *b)
{
    return a->node == b->node && a->shard == b->shard;
}

static void cluster_nodes(shard *s, dp_resp *r)
{
    int tier;
    size_t n, ns;
    slot_range *v = view_ranges(s, r, &tier, &n);
    if (!v)
        return;
    const ring *rg = cur_ring(s);
    view_shard *sh = view_shards(rg, tier, &ns);
    resp_buf t = {0};
    for (size_t i = 0; sh && i < ns; i++) {
        char line[512];
        int me = sh[i].o.node == s->self && sh[i].o.shard == (uint32_t)s->index;
        int len = snprintf(line, sizeof(line), "%s %s:%d@%d %s - 0 0 %" PRIu64 " connected",
                           sh[i].id, sh[i].host, sh[i].port, sh[i].port,
                           me ? "myself,master" : "master", ring_epoch(rg));
        resp_buf_put(&t, line, (size_t)len);
        for (size_t j = 0; j < n; j++) {
            if (!same_owner(&v[j].rep[0], &sh[i].o))
                continue;
            len = v[j].first == v[j].last
                      ? snprintf(line, sizeof(line), " %u", v[j].first)
                      : snprintf(line, sizeof(line), " %u-%u", v[j].first, v[j].last);
            resp_buf_put(&t, line, (size_t)len);
        }
        resp_buf_put(&t, "\n", 1);
    }
    if (!sh || t.failed)
        resp_add_error(&r->out, "ERR trellis: out of memory");
    else
        resp_add_bulk(&r->out, t.data, t.len);
    resp_buf_free(&t);
    free(sh);
    free(v);
}

static void add_shard_node(const ring *rg, const view_shard *w, int master, int proto, resp_buf *b)
{
    (void)rg;
    resp_add_map(b, 7, proto);
    resp_add_cstr(b, "id");
    resp_add_cstr(b, w->id);
    resp_add_cstr(b, "port");
    resp_add_int(b, w->port);
    resp_add_cstr(b, "ip");
    resp_add_cstr(b, w->host);
    resp_add_cstr(b, "endpoint");
    resp_add_cstr(b, w->host);
    resp_add_cstr(b, "role");
    resp_add_cstr(b, master ? "master" : "replica");
    resp_add_cstr(b, "replication-offset");
    resp_add_int(b, 0);
    resp_add_cstr(b, "health");
    resp_add_cstr(b, "online");
}

/* 1 if shard o is a replica of one of the slots whose master is m. */
static int replicates(const slot_range *v, size_t n, const slot_owner *m, const slot_owner *o)
{
    for (size_t j = 0; j < n; j++) {
        if (!same_owner(&v[j].rep[0], m))
            continue;
        for (uint32_t q = 1; q < v[j].n; q++)
            if (same_owner(&v[j].rep[q], o))
                return 1;
    }
    return 0;
}

/* CLUSTER SHARDS: a Redis shard per trellis shard that is the master of
 * some slots, its nodes being itself and the other replicas of its slots. */
static void cluster_shards(shard *s, dp_resp *r)
{
    int tier;
    size_t n, ns;
    slot_range *v = view_ranges(s, r, &tier, &n);
    if (!v)
        return;
    const ring *rg = cur_ring(s);
    view_shard *sh = view_shards(rg, tier, &ns);
    if (!sh) {
        resp_add_error(&r->out, "ERR trellis: out of memory");
        free(v);
        return;
    }
    size_t masters = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < n; j++)
            if (same_owner(&v[j].rep[0], &sh[i].o)) {
                masters++;
                break;
            }
    resp_add_array(&r->out, masters);
    for (size_t i = 0; i < ns; i++) {
        size_t nr = 0;
        for (size_t j = 0; j < n; j++)
            nr += same_owner(&v[j].rep[0], &sh[i].o);
        if (nr == 0)
            continue;
        resp_add_map(&r->out, 2, r->proto);
        resp_add_cstr(&r->out, "slots");
        resp_add_array(&r->out, 2 * nr);
        for (size_t j = 0; j < n; j++)
            if (same_owner(&v[j].rep[0], &sh[i].o)) {
                resp_add_int(&r->out, v[j].first);
                resp_add_int(&r->out, v[j].last);
            }
        /* The nodes: the master, then every shard that is a replica of
         * one of its slots. */
        size_t nn = 1;
        for (size_t k = 0; k < ns; k++)
            nn += k != i && replicates(v, n, &sh[i].o, &sh[k].o);
        resp_add_cstr(&r->out, "nodes");
        resp_add_array(&r->out, nn);
        add_shard_node(rg, &sh[i], 1, r->proto, &r->out);
        for (size_t k = 0; k < ns; k++)
            if (k != i && replicates(v, n, &sh[i].o, &sh[k].o))
                add_shard_node(rg, &sh[k], 0, r->proto, &r->out);
    }
    free(sh);
    free(v);
}

static void cluster_info(shard *s, dp_resp *r)
{
    const ring *rg = cur_ring(s);
    int tier = rg ? slotmap_tier(rg) : -1;
    size_t n = 0, ns = 0, masters = 0, assigned = 0;
    slot_range *v = tier >= 0 ? slotmap_ranges(rg, tier, &n) : NULL;
    view_shard *sh = v ? view_shards(rg, tier, &ns) : NULL;
    for (size_t j = 0; v && j < n; j++)
        assigned += v[j].last - v[j].first + 1;
    for (size_t i = 0; sh && i < ns; i++)
        for (size_t j = 0; j < n; j++)
            if (same_owner(&v[j].rep[0], &sh[i].o)) {
                masters++;
                break;
            }
    char text[512];
    int len = snprintf(text, sizeof(text),
                       "cluster_enabled:1\r\ncluster_state:%s\r\ncluster_slots_assigned:%zu\r\n"
                       "cluster_slots_ok:%zu\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n"
                       "cluster_known_nodes:%zu\r\ncluster_size:%zu\r\n"
                       "cluster_current_epoch:%" PRIu64 "\r\ncluster_my_epoch:%" PRIu64 "\r\n",
                       assigned == SLOT_COUNT ? "ok" : "fail", assigned, assigned, ns, masters,
                       s->epoch, s->epoch);
    resp_add_bulk(&r->out, text, (size_t)len);
    free(sh);
    free(v);
}

/* CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT: the keys this shard holds in
 * a slot (want: 0 to count them all, else at most this many listed). */
static void keys_in_slot(shard *s, dp_resp *r, uint32_t slot, int list, size_t want)
{
    store_iter *it = NULL;
    uint64_t lo = ring_slot_pos(slot);
    if (!s->st || store_iter_new(s->st, lo, lo | RING_SLOT_LOW, &it) != TRELLIS_OK) {
        resp_add_error(&r->out, "ERR trellis: cannot read the store");
        return;
    }
    store_item item;
    size_t n = 0;
    resp_buf keys = {0};
    while ((!list || n < want) && store_iter_next(it, &item) == 1) {
        n++;
        if (list)
            resp_add_bulk(&keys, item.key.data, item.key.len);
    }
    store_iter_free(it);
    if (keys.failed) {
        resp_add_error(&r->out, "ERR trellis: out of memory");
    } else if (list) {
        resp_add_array(&r->out, n);
        resp_buf_put(&r->out, keys.data, keys.len);
    } else {
        resp_add_int(&r->out, (int64_t)n);
    }
    resp_buf_free(&keys);
}

static void cmd_cluster(shard *s, dp_resp *r, const resp_command *c)
{
    if (c->argc < 2) {
        resp_add_error(&r->out, "ERR wrong number of arguments for 'cluster' command");
        return;
    }
    if (c->argc == 2 && word_is(c, 1, "SLOTS")) {
        cluster_slots(s, r);
    } else if (c->argc == 2 && word_is(c, 1, "SHARDS")) {
        cluster_shards(s, r);
    } else if (c->argc == 2 && word_is(c, 1, "NODES")) {
        cluster_nodes(s, r);
    } else if (c->argc == 2 && word_is(c, 1, "INFO")) {
        cluster_info(s, r);
    } else if (c->argc == 2 && word_is(c, 1, "MYID")) {
        const ring *rg = cur_ring(s);
        char id[41];
        if (!rg || s->self < 0) {
            resp_add_error(&r->out, "CLUSTERDOWN this node is not a member yet");
            return;
        }
        slotmap_node_id(ring_node_at(rg, (size_t)s->self), (uint32_t)s->index, id);
        resp_add_cstr(&r->out, id);
    } else if (c->argc == 3 && word_is(c, 1, "KEYSLOT")) {
        resp_add_int(&r->out, slot_of(c->argv[2], c->argl[2]));
    } else if (c->argc == 3 && word_is(c, 1, "COUNTKEYSINSLOT")) {
        long long slot = parse_index(c->argv[2], c->argl[2], SLOT_COUNT);
        if (slot < 0)
            resp_add_error(&r->out, "ERR Invalid slot");
        else
            keys_in_slot(s, r, (uint32_t)slot, 0, 0);
    } else if (c->argc == 4 && word_is(c, 1, "GETKEYSINSLOT")) {
        long long slot = parse_index(c->argv[2], c->argl[2], SLOT_COUNT);
        long long want = parse_index(c->argv[3], c->argl[3], DPR_GETKEYS_MAX + 1);
        if (slot < 0)
            resp_add_error(&r->out, "ERR Invalid slot");
        else if (want < 0)
            resp_add_error(&r->out, "ERR Invalid number of keys");
        else
            keys_in_slot(s, r, (uint32_t)slot, 1, (size_t)want);
    } else {
        char w[64];
        resp_add_errorf(&r->out,
                        "ERR trellis: CLUSTER %s is not supported (SLOTS, SHARDS, NODES, INFO, "
                        "MYID, KEYSLOT, COUNTKEYSINSLOT and GETKEYSINSLOT are)",
                        resp_printable(c->argv[1], c->argl[1], 32, w, sizeof(w)));
    }
}

/* ---- keys ------------------------------------------------------------------------------ */

/* Where the keys argv[first], argv[first + step], ... argv[last] of a data
 * command go: 0 when this shard serves them all (write: as their slot's
 * master; read under READONLY: as any of its replicas), else -1 after the
 * -CROSSSLOT, -MOVED or -CLUSTERDOWN reply. */
static int route(shard *s, dp_resp *r, const resp_command *c, size_t first, size_t last,
                 size_t step, int write)
{
    if (first == 0 || first >= c->argc)
        return 0; /* no key */
    uint32_t slot = slot_of(c->argv[first], c->argl[first]);
    for (size_t i = first + step; step && i <= last && i < c->argc; i += step) {
        if (slot_of(c->argv[i], c->argl[i]) != slot) {
            resp_add_error(&r->out, "CROSSSLOT Keys in request don't hash to the same slot");
            return -1;
        }
    }
    const ring *rg = cur_ring(s);
    int tier = rg ? slotmap_tier(rg) : -1;
    slot_owner o[RING_MAX_REPLICAS];
    size_t n = tier >= 0 ? slotmap_owners(rg, tier, slot, o, RING_MAX_REPLICAS) : 0;
    if (n == 0) {
        resp_add_error(&r->out, "CLUSTERDOWN Hash slot not served");
        return -1;
    }
    if (is_me(s, &o[0]))
        return 0;
    for (size_t i = 1; !write && r->readonly && i < n; i++)
        if (is_me(s, &o[i]))
            return 0;
    char host[DPR_HOST_MAX];
    int port;
    if (owner_addr(rg, o[0].node, o[0].shard, host, &port) != 0) {
        resp_add_error(&r->out, "CLUSTERDOWN Hash slot not served");
        return -1;
    }
    resp_add_errorf(&r->out, "MOVED %u %s:%d", slot, host, port);
    return -1;
}

/* ---- data commands ----------------------------------------------------------------------- */

static void dpr_done(shard *s, uint64_t conn_id, uint64_t id, const shard_res *res, size_t n,
                     int status);

static void dpr_reply(shard *s, shard_req *rq, const shard_res *res, size_t n)
{
    dpr_done(s, rq->conn_id, rq->id, res, n, TRELLIS_OK);
}

static void dpr_fail(shard *s, shard_req *rq, int status, const char *text)
{
    (void)text;
    dpr_done(s, rq->conn_id, rq->id, NULL, 0, status);
}

static void dpr_release(shard_req *rq)
{
    (void)rq; /* the reply address is (connection id, request id): values */
}

static const shard_sink dpr_sink = {dpr_reply, dpr_fail, NULL, dpr_release};

/* A copy of command c, for a reply that waits. NULL when out of memory. */
static dpr_pending *pending_new(const resp_cmd_def *d, const resp_slot *slot, const resp_command *c)
{
    dpr_pending *p = calloc(1, sizeof(*p));
    size_t total = 0;
    for (size_t i = 0; i < c->argc; i++)
        total += c->argl[i];
    if (p) {
        p->argv = malloc(c->argc * sizeof(*p->argv));
        p->argl = malloc(c->argc * sizeof(*p->argl));
        p->bytes = malloc(total ? total : 1);
    }
    if (!p || !p->argv || !p->argl || !p->bytes) {
        pending_free(p);
        return NULL;
    }
    size_t off = 0;
    for (size_t i = 0; i < c->argc; i++) {
        memcpy(p->bytes + off, c->argv[i], c->argl[i]);
        p->argv[i] = p->bytes + off;
        p->argl[i] = c->argl[i];
        off += c->argl[i];
    }
    p->def = d;
    p->slot = *slot;
    p->c = (resp_command){c->argc, p->argv, p->argl};
    return p;
}

/* The results of connection conn_id's request id are in. */
static void dpr_done(shard *s, uint64_t conn_id, uint64_t id, const shard_res *res, size_t n,
                     int status)
{
    conn *c;
    dp_resp *r = dp_conn_resp(s, conn_id, &c);
    if (!r || !r->waiting || r->req != id)
        return; /* the client went away */
    r->waiting = 0;
    int rc = status == TRELLIS_OK ? dp_exec_done(r->x, res, n) : dp_exec_failed(r->x, status);
    if (rc != TRELLIS_OK)
        dp_exec_failed(r->x, TRELLIS_INTERNAL);
    dpr_pending *p = r->pend;
    if (!p)
        return; /* answered by the caller, still on its command */
    r->pend = NULL;
    resp_cmd_reply(dp_exec_base(r->x), r->ctx, p->def, &p->c, &p->slot, r->proto, &r->out);
    pending_free(p);
    if (r->out.len && !r->out.failed)
        conn_write(c, r->out.data, r->out.len);
    r->out.len = 0;
    conn_pause(c, 0);
}

/* Runs data command c. Returns 1 when its reply waits (the connection is
 * paused until it is sent), 0 otherwise. */
static int run_data(shard *s, dp_resp *r, conn *c, const resp_cmd_def *d, const resp_command *cmd)
{
    if (d->flags & RESP_CMD_WALK) {
        resp_add_errorf(&r->out,
                        "ERR trellis: %s walks the whole key space: ask the gateway (resp "
                        "HOST:PORT), which serves it",
                        d->name);
        return 0;
    }
    size_t last = d->last_key < 0 ? cmd->argc + (size_t)(d->last_key + 1) - 1 : (size_t)d->last_key;
    int write = strstr(d->rflags, "write") != NULL;
    if (route(s, r, cmd, (size_t)d->first_key, last, (size_t)d->step, write) != 0)
        return 0;
    dp_exec_reset(r->x);
    resp_ctx_reset(r->ctx);
    resp_slot slot;
    char err[RESP_ERR_MAX];
    resp_cmd_limits lim = {s->lim.max_key};
    int rc = resp_cmd_add(dp_exec_base(r->x), r->ctx, d, cmd, &lim, &slot, err);
    if (dp_exec_refused(r->x)) {
        resp_add_errorf(&r->out,
                        "ERR trellis: %s is not served on a shard's port yet: ask the gateway "
                        "(resp HOST:PORT), which serves it",
                        d->name);
        return 0;
    }
    if (rc != 0) {
        resp_add_error(&r->out, err);
        return 0;
    }
    size_t n = dp_exec_count(r->x);
    if (n > 0) {
        shard_op *ops = wire_arena_alloc(s->arena, n * sizeof(*ops));
        if (!ops) {
            dp_exec_failed(r->x, TRELLIS_INTERNAL);
        } else {
            shard_req rq = {&dpr_sink, NULL, r->id, ++r->req, dp_exec_ops(r->x, ops),
                            n,         0,    0,     0,        clock_mono_us(),
                            NULL};
            r->waiting = 1;
            if (!shard_cap_admit(s, &rq))
                shard_exec(s, &rq, 1);
            wire_arena_reset(s->arena);
            if (r->waiting) {
                /* Held (pending replicas, the rate cap, a read from the
                 * disk tier): the reply goes when the operations are done. */
                r->pend = pending_new(d, &slot, cmd);
                if (r->pend) {
                    conn_pause(c, 1);
                    return 1;
                }
                r->waiting = 0;
                dp_exec_failed(r->x, TRELLIS_INTERNAL);
            }
        }
    } else {
        dp_exec_done(r->x, NULL, 0);
    }
    resp_cmd_reply(dp_exec_base(r->x), r->ctx, d, cmd, &slot, r->proto, &r->out);
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* Runs one command; its reply goes to r->out. Returns 1 when the reply
 * waits (run_data). */
static int run_command(shard *s, dp_resp *r, conn *cn, const resp_command *c)
{
    const resp_cmd_def *d = resp_cmd_lookup(c->argv[0], c->argl[0]);
    if (d && (d->flags & RESP_CMD_DATA) && (r->authed || !s->token)) {
        if (!resp_cmd_arity_ok(d, c->argc)) {
            resp_add_errorf(&r->out, "ERR wrong number of arguments for '%s' command", d->name);
            return 0;
        }
        return run_data(s, r, cn, d, c);
    }
    if (word_is(c, 0, "AUTH")) {
        cmd_auth(s, r, c);
        return 0;
    }
    if (word_is(c, 0, "HELLO")) {
        cmd_hello(s, r, c);
        return 0;
    }
    if (word_is(c, 0, "QUIT")) {
        resp_add_simple(&r->out, "OK");
        r->close_after = 1;
        return 0;
    }
    if (s->token && !r->authed) {
        shard_count_error(s, TRELLIS_UNAUTHORIZED);
        resp_add_error(&r->out, "NOAUTH Authentication required.");
        return 0;
    }
    if (word_is(c, 0, "PING") && c->argc <= 2) {
        if (c->argc == 2)
            resp_add_bulk(&r->out, c->argv[1], c->argl[1]);
        else
            resp_add_simple(&r->out, "PONG");
    } else if (word_is(c, 0, "ECHO") && c->argc == 2) {
        resp_add_bulk(&r->out, c->argv[1], c->argl[1]);
    } else if (word_is(c, 0, "SELECT") && c->argc == 2) {
        if (c->argl[1] == 1 && c->argv[1][0] == '0')
            resp_add_simple(&r->out, "OK");
        else
            resp_add_error(&r->out, "ERR SELECT is not allowed in cluster mode");
    } else if (word_is(c, 0, "READONLY") && c->argc == 1) {
        r->readonly = 1;
        resp_add_simple(&r->out, "OK");
    } else if (word_is(c, 0, "READWRITE") && c->argc == 1) {
        r->readonly = 0;
        resp_add_simple(&r->out, "OK");
    } else if (word_is(c, 0, "ASKING") && c->argc == 1) {
        /* Slots never migrate half-way between trellis shards (a key's
         * shard serves it until its hand-off completes): nothing to ask. */
        resp_add_simple(&r->out, "OK");
    } else if (word_is(c, 0, "CLIENT")) {
        cmd_client(r, c);
    } else if (word_is(c, 0, "CLUSTER")) {
        cmd_cluster(s, r, c);
    } else {
        char w[64];
        resp_add_errorf(&r->out, "ERR unknown command '%s'",
                        resp_printable(c->argv[0], c->argl[0], 32, w, sizeof(w)));
    }
    return 0;
}

size_t dp_resp_input(shard *s, dp_resp *r, conn *c, uint8_t *data, size_t len)
{
    size_t used = 0;
    int open = r->authed || !s->token;
    resp_limits lim = {s->lim.max_value, s->lim.max_ops + 1, s->lim.max_message};
    resp_limits unauth = {(size_t)s->cfg->limits.unauth_message_bytes, DPR_UNAUTH_ARGS,
                          (size_t)s->cfg->limits.unauth_message_bytes};
    while (used < len && !r->close_after && !conn_closing(c)) {
        resp_command cmd;
        size_t took = 0, need = 0;
        open = r->authed || !s->token;
        int rc =
            resp_parse(&r->p, data + used, len - used, open ? &lim : &unauth, &cmd, &took, &need);
        used += took;
        if (rc == RESP_NEED_MORE) {
            if (need > len - used && conn_expect(c, need) != TRELLIS_OK)
                r->close_after = 1;
            break;
        }
        if (rc != RESP_COMMAND) {
            s->st_cur.total_malformed_msgs++;
            resp_add_errorf(&r->out, "ERR Protocol error: %s",
                            rc == RESP_NO_MEMORY ? "out of memory" : r->p.err);
            r->close_after = 1;
            break;
        }
        s->st_cur.total_requests++;
        if (run_command(s, r, c, &cmd))
            break; /* the reply waits: so does the rest of the input */
    }
    if (r->out.failed) {
        conn_close(c, TRELLIS_INTERNAL);
        return len;
    }
    if (r->out.len) {
        conn_write(c, r->out.data, r->out.len);
        r->out.len = 0;
    }
    if (r->close_after) {
        conn_close(c, TRELLIS_OK);
        return len;
    }
    return used;
}
