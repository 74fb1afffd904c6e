/*
 * dp_resp.c - Redis Cluster on a shard's data port (dp_resp.h).
 *
 * Commands are answered in the order they arrive. The data commands of
 * one read that this shard serves run as one round (one request to the
 * shard, their operations in order), and the replies of the read leave
 * together before the loop sleeps; a command the round cannot hold (a
 * connection or cluster command, a redirection, an error, an increment,
 * which reads its key as it is planned) first completes the round before
 * it. The words of a round's commands stay where the parser found them,
 * in the connection's input, unless the round waits (held for replicas,
 * the rate cap or the disk tier): then they are copied.
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
#include "kvs/dp_multi.h"
#include "kvs/shard_impl.h"
#include "placement/slotmap.h"

#define DPR_VERSION     "7.0.0" /* the Redis version clients that check one see */
#define DPR_NAME_MAX    64      /* CLIENT SETNAME */
#define DPR_UNAUTH_ARGS 8       /* words of a command before AUTH */
#define DPR_GETKEYS_MAX 100000  /* CLUSTER GETKEYSINSLOT's count */
#define DPR_HOST_MAX    256
#define DPR_ROUND_OPS   512 /* operations of one round, at most (and limits.max_ops) */

/* What a connection's request in flight runs for. */
enum {
    DPR_DATA,  /* a round of data commands */
    DPR_WATCH, /* WATCH: the keys' states are looked up (fetched), then taken */
    DPR_PROBE, /* EXEC: every key's state is looked up (fetched) ... */
    DPR_TX     /* ... then the transaction's commands run as one request */
};

/* A data command of the round: where its words and operations are. */
typedef struct dpr_cmd {
    const resp_cmd_def *def;
    resp_slot slot;
    size_t argc, word; /* its words: wv/wl[word, word + argc) */
} dpr_cmd;

struct dp_resp {
    uint64_t id;
    dp_exec *x;
    resp_ctx *ctx;
    uint64_t req; /* the request id of the round being run */
    int waiting;  /* its results are not in yet */
    int held;     /* the round waits: its replies go when its results come */
    int phase;    /* what the request in flight runs for: DPR_* */
    int sync;     /* a transaction's: its caller is still on the stack and sends the reply */
    int single;   /* tx holds one command run as a transaction (an INCR) */
    dp_multi tx;  /* MULTI's queue and the watched keys */
    /* The round: its commands and their words. */
    dpr_cmd *cmds;
    size_t ncmds, capcmds;
    const uint8_t **wv;
    size_t *wl;
    size_t nw, capw;
    uint8_t *held_bytes; /* the words' bytes while the round waits */
    char *held_err;      /* a protocol error to answer after the round, then close */
    /* The last slot found served here, under ring (and its epoch). */
    const void *rt_ring;
    uint64_t rt_epoch;
    uint32_t rt_slot;
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
    r->rt_slot = UINT32_MAX;
    return r;
}

void dp_resp_free(dp_resp *r)
{
    if (!r)
        return;
    resp_parser_free(&r->p);
    resp_buf_free(&r->out);
    dp_exec_free(r->x);
    resp_ctx_free(r->ctx);
    free(r->cmds);
    free(r->wv);
    free(r->wl);
    free(r->held_bytes);
    free(r->held_err);
    dp_multi_clear(&r->tx);
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
    s->st_cur.resp_auth_failures++;
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

/* INFO [section...]: the sections a Redis Cluster node has that mean
 * something for a shard (server, cluster: cluster clients check
 * cluster_enabled). */
static void cmd_info(shard *s, dp_resp *r, const resp_command *c)
{
    char text[1024];
    size_t len = 0;
    if (resp_info_wants(c, "server"))
        len += (size_t)snprintf(text, sizeof(text),
                                "# Server\r\nredis_version:%s\r\nredis_mode:cluster\r\n"
                                "trellis_node:%s\r\ntrellis_shard:%d\r\n",
                                DPR_VERSION, s->node_id, s->index);
    if (resp_info_wants(c, "cluster") && len < sizeof(text))
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "%s# Cluster\r\ncluster_enabled:1\r\n", len ? "\r\n" : "");
    resp_add_bulk(&r->out, text, len < sizeof(text) ? len : sizeof(text) - 1);
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
 * master; read under READONLY: as any of its replicas), else -1 with the
 * -CROSSSLOT, -MOVED or -CLUSTERDOWN reply in err (DPR_ERR bytes). */
#define DPR_ERR (DPR_HOST_MAX + 64)
static int route(shard *s, dp_resp *r, const resp_command *c, size_t first, size_t last,
                 size_t step, int write, char *err)
{
    if (first == 0 || first >= c->argc)
        return 0; /* no key */
    uint32_t slot = slot_of(c->argv[first], c->argl[first]);
    for (size_t i = first + step; step && i <= last && i < c->argc; i += step) {
        if (slot_of(c->argv[i], c->argl[i]) != slot) {
            snprintf(err, DPR_ERR, "CROSSSLOT Keys in request don't hash to the same slot");
            return -1;
        }
    }
    const ring *rg = cur_ring(s);
    if (rg && slot == r->rt_slot && (const void *)rg == r->rt_ring && ring_epoch(rg) == r->rt_epoch)
        return 0; /* the slot of the previous command, on the same ring */
    int tier = rg ? slotmap_tier(rg) : -1;
    slot_owner o[RING_MAX_REPLICAS];
    size_t n = tier >= 0 ? slotmap_owners(rg, tier, slot, o, RING_MAX_REPLICAS) : 0;
    if (n == 0) {
        snprintf(err, DPR_ERR, "CLUSTERDOWN Hash slot not served");
        return -1;
    }
    if (is_me(s, &o[0])) {
        r->rt_ring = rg;
        r->rt_epoch = ring_epoch(rg);
        r->rt_slot = slot;
        return 0;
    }
    for (size_t i = 1; !write && r->readonly && i < n; i++)
        if (is_me(s, &o[i]))
            return 0;
    char host[DPR_HOST_MAX];
    int port;
    if (owner_addr(rg, o[0].node, o[0].shard, host, &port) != 0) {
        snprintf(err, DPR_ERR, "CLUSTERDOWN Hash slot not served");
        return -1;
    }
    snprintf(err, DPR_ERR, "MOVED %u %s:%d", slot, host, port);
    return -1;
}

/* ---- rounds of data commands --------------------------------------------------------------- */

static void dpr_done(shard *s, uint64_t conn_id, uint64_t id, const shard_res *res, size_t n,
                     int status);
static void tx_done_request(shard *s, dp_resp *r, conn *c, const shard_res *res, size_t n,
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

/* A new round: no commands, no operations. */
static void round_begin(dp_resp *r)
{
    r->ncmds = 0;
    r->nw = 0;
    dp_exec_reset(r->x);
    resp_ctx_reset(r->ctx);
}

/* Room for one more command of argc words; 0, or -1 when out of memory. */
static int round_reserve(dp_resp *r, size_t argc)
{
    if (r->ncmds == r->capcmds) {
        size_t cap = r->capcmds ? 2 * r->capcmds : 16;
        dpr_cmd *v = realloc(r->cmds, cap * sizeof(*v));
        if (!v)
            return -1;
        r->cmds = v;
        r->capcmds = cap;
    }
    if (r->nw + argc > r->capw) {
        size_t cap = r->capw ? 2 * r->capw : 64;
        while (cap < r->nw + argc)
            cap *= 2;
        const uint8_t **wv = realloc(r->wv, cap * sizeof(*wv));
        if (wv)
            r->wv = wv;
        size_t *wl = wv ? realloc(r->wl, cap * sizeof(*wl)) : NULL;
        if (!wl)
            return -1;
        r->wl = wl;
        r->capw = cap;
    }
    return 0;
}

/* Command i of the round, as the command layer sees it. */
static resp_command round_cmd(const dp_resp *r, size_t i)
{
    const dpr_cmd *k = &r->cmds[i];
    return (resp_command){k->argc, r->wv + k->word, r->wl + k->word};
}

/* Counts the reply appended to r->out from offset `from` if it is an
 * error. */
static void count_reply(shard *s, const dp_resp *r, size_t from)
{
    if (r->out.len > from && r->out.data[from] == '-')
        s->st_cur.resp_errors++;
}

/* The replies of the round's commands, in order; the round is over. */
static void round_replies(shard *s, dp_resp *r)
{
    for (size_t i = 0; i < r->ncmds; i++) {
        resp_command c = round_cmd(r, i);
        size_t from = r->out.len;
        resp_cmd_reply(dp_exec_base(r->x), r->ctx, r->cmds[i].def, &c, &r->cmds[i].slot, r->proto,
                       &r->out);
        count_reply(s, r, from);
    }
    s->st_cur.resp_rounds++;
    s->st_cur.resp_round_commands += r->ncmds;
    round_begin(r);
}

/* The round waits for its results: its words move out of the connection's
 * input, which the loop may reuse. 0, or -1 when out of memory. */
static int round_hold(dp_resp *r)
{
    size_t total = 0;
    for (size_t i = 0; i < r->nw; i++)
        total += r->wl[i];
    free(r->held_bytes);
    r->held_bytes = malloc(total ? total : 1);
    if (!r->held_bytes)
        return -1;
    size_t off = 0;
    for (size_t i = 0; i < r->nw; i++) {
        memcpy(r->held_bytes + off, r->wv[i], r->wl[i]);
        r->wv[i] = r->held_bytes + off;
        off += r->wl[i];
    }
    r->held = 1;
    return 0;
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
    if (r->phase != DPR_DATA) {
        tx_done_request(s, r, c, res, n, status);
        return;
    }
    int rc = status == TRELLIS_OK ? dp_exec_done(r->x, res, n) : dp_exec_failed(r->x, status);
    if (rc != TRELLIS_OK)
        dp_exec_failed(r->x, TRELLIS_INTERNAL);
    if (!r->held)
        return; /* answered by the caller, still in the round */
    r->held = 0;
    round_replies(s, r);
    free(r->held_bytes);
    r->held_bytes = NULL;
    if (r->held_err) {
        resp_add_error(&r->out, r->held_err);
        free(r->held_err);
        r->held_err = NULL;
        r->close_after = 1;
    }
    if (r->out.len && !r->out.failed)
        conn_write(c, r->out.data, r->out.len);
    r->out.len = 0;
    if (r->close_after)
        conn_close(c, TRELLIS_OK);
    else
        conn_pause(c, 0);
}

/* Runs the round: its operations as one request to the shard, then the
 * replies. Returns 1 when the replies wait (the connection is paused until
 * they are sent), 0 otherwise. */
static int round_run(shard *s, dp_resp *r, conn *c, uint64_t now_us)
{
    if (r->ncmds == 0)
        return 0;
    size_t n = dp_exec_count(r->x);
    if (n == 0) {
        dp_exec_done(r->x, NULL, 0);
        round_replies(s, r);
        return 0;
    }
    shard_op *ops = wire_arena_alloc(s->arena, n * sizeof(*ops));
    if (!ops) {
        dp_exec_failed(r->x, TRELLIS_INTERNAL);
        round_replies(s, r);
        return 0;
    }
    shard_req rq = {&dpr_sink, NULL, r->id,  ++r->req, dp_exec_ops(r->x, ops), n, 0,
                    0,         0,    now_us, NULL};
    r->waiting = 1;
    r->phase = DPR_DATA;
    if (!shard_cap_admit(s, &rq))
        shard_exec(s, &rq, 1);
    wire_arena_reset(s->arena);
    if (r->waiting) {
        /* Held (pending replicas, the rate cap, a read from the disk
         * tier): the replies go when the operations are done. */
        if (round_hold(r) == 0) {
            conn_pause(c, 1);
            return 1;
        }
        r->waiting = 0;
        dp_exec_failed(r->x, TRELLIS_INTERNAL);
    }
    round_replies(s, r);
    return 0;
}

/* The error of a command asking for operations the shard does not serve
 * (err: RESP_ERR_MAX bytes). */
static void refusal(const resp_cmd_def *d, char *err)
{
    snprintf(err, RESP_ERR_MAX,
             "ERR trellis: %s is not served on a shard's port yet: ask the gateway (resp "
             "HOST:PORT), which serves it",
             d->name);
}

/* Adds data command c to the round (its words must stay where they are
 * until the round runs). Returns 0, or -1 with nothing added and the error
 * reply in err (RESP_ERR_MAX bytes). */
static int round_add(shard *s, dp_resp *r, const resp_cmd_def *d, const resp_command *c, char *err)
{
    if (round_reserve(r, c->argc) != 0) {
        snprintf(err, RESP_ERR_MAX, "ERR trellis: out of memory");
        return -1;
    }
    size_t before = dp_exec_count(r->x);
    dpr_cmd *k = &r->cmds[r->ncmds];
    resp_cmd_limits lim = {s->lim.max_key};
    int rc = resp_cmd_add(dp_exec_base(r->x), r->ctx, d, c, &lim, &k->slot, err);
    if (dp_exec_refused(r->x)) {
        dp_exec_truncate(r->x, before);
        refusal(d, err);
        return -1;
    }
    if (rc != 0)
        return -1;
    k->def = d;
    k->argc = c->argc;
    k->word = r->nw;
    memcpy(r->wv + r->nw, c->argv, c->argc * sizeof(*c->argv));
    memcpy(r->wl + r->nw, c->argl, c->argc * sizeof(*c->argl));
    r->nw += c->argc;
    r->ncmds++;
    return 0;
}

/* The words of command c that are keys: argv[*first], every *step-th up to
 * argv[*last]; *first is 0 when it has none. */
static void key_span(const resp_cmd_def *d, const resp_command *c, size_t *first, size_t *last,
                     size_t *step)
{
    *first = d && d->first_key > 0 && (size_t)d->first_key < c->argc ? (size_t)d->first_key : 0;
    *last = d && d->last_key < 0 ? c->argc + (size_t)(d->last_key + 1) - 1
                                 : (size_t)(d ? d->last_key : 0);
    *step = d ? (size_t)d->step : 0;
}

/* The checks of data command c before it joins a round: 0 when it may,
 * else -1 with its error reply in err (DPR_ERR bytes). */
static int data_check(shard *s, dp_resp *r, const resp_cmd_def *d, const resp_command *c, char *err)
{
    if (!resp_cmd_arity_ok(d, c->argc)) {
        snprintf(err, DPR_ERR, "ERR wrong number of arguments for '%s' command", d->name);
        return -1;
    }
    if (d->flags & RESP_CMD_WALK) {
        snprintf(err, DPR_ERR,
                 "ERR trellis: %s walks the whole key space: ask the gateway (resp HOST:PORT), "
                 "which serves it",
                 d->name);
        return -1;
    }
    size_t first, last, step;
    key_span(d, c, &first, &last, &step);
    return route(s, r, c, first, last, step, strstr(d->rflags, "write") != NULL, err);
}

static void run_tx(shard *s, dp_resp *r, conn *c);
static void tx_reply(shard *s, dp_resp *r);
static void tx_abort(dp_resp *r);
static void tx_done(dp_resp *r);

/* A transaction's request is done: its reply goes now, unless the
 * command that started it is still on the stack (r->sync) and sends it
 * itself. */
static void finish(dp_resp *r, conn *c)
{
    r->waiting = 0;
    /* The executor held the transaction's operations, whose keys are gone
     * with its commands (or its words): the next round starts afresh. */
    round_begin(r);
    if (r->sync)
        return;
    if (r->out.failed) {
        conn_close(c, TRELLIS_INTERNAL);
        return;
    }
    if (r->out.len)
        conn_write(c, r->out.data, r->out.len);
    r->out.len = 0;
    conn_pause(c, 0);
}

/* The results of a transaction's request (dpr_done): WATCH's and EXEC's
 * look-ups, then EXEC's commands. */
static void tx_done_request(shard *s, dp_resp *r, conn *c, const shard_res *res, size_t n,
                            int status)
{
    if (r->phase == DPR_WATCH) {
        /* The keys are in the store now (or known to be absent). */
        dp_multi_watch_take(s, &r->tx);
        resp_add_simple(&r->out, "OK");
        finish(r, c);
    } else if (r->phase == DPR_PROBE && status != TRELLIS_OK) {
        resp_status_error(&r->out, status);
        tx_done(r);
        finish(r, c);
    } else if (r->phase == DPR_PROBE) {
        run_tx(s, r, c);
    } else {
        int rc = status == TRELLIS_OK ? dp_exec_done(r->x, res, n) : dp_exec_failed(r->x, status);
        if (rc != TRELLIS_OK)
            dp_exec_failed(r->x, TRELLIS_INTERNAL);
        tx_reply(s, r);
        finish(r, c);
    }
}

/* Sends the operations of r->x as one request of r's, for `phase`; a
 * request that may wait for the disk tier (may_defer) also waits under the
 * rate cap. dpr_done takes the results. */
static void send_ops(shard *s, dp_resp *r, int phase, int may_defer)
{
    size_t n = dp_exec_count(r->x);
    shard_op *ops = wire_arena_alloc(s->arena, (n ? n : 1) * sizeof(*ops));
    uint64_t id = ++r->req;
    r->phase = phase;
    r->waiting = 1;
    if (!ops) {
        dpr_done(s, r->id, id, NULL, 0, TRELLIS_INTERNAL);
        return;
    }
    shard_req rq = {.sink = &dpr_sink,
                    .conn_id = r->id,
                    .id = id,
                    .ops = dp_exec_ops(r->x, ops),
                    .n = n,
                    .arrived_us = clock_mono_us()};
    if (!may_defer || !shard_cap_admit(s, &rq))
        shard_exec(s, &rq, may_defer);
}

/* A command's first step of a transaction (WATCH, EXEC, a single
 * command): sends r->x's operations. Returns 1 when the reply waits (the
 * connection is paused until it is sent), 0 when it is in r->out. */
static int start_ops(shard *s, dp_resp *r, conn *c, int phase)
{
    r->sync = 1;
    send_ops(s, r, phase, 1);
    r->sync = 0;
    wire_arena_reset(s->arena);
    if (!r->waiting)
        return 0;
    conn_pause(c, 1);
    return 1;
}

/* ---- transactions ------------------------------------------------------------------------ */

/* A shard runs on one thread: the commands of an EXEC run as one request,
 * with nothing of another client's in between. First every key of the
 * transaction (and every watched key) is looked up in a request of its
 * own, which a memory shard may hold while it fetches keys it lacks from
 * the disk tier; when that request is done, on the same turn of the
 * shard's loop, the watched keys are compared, the commands planned (an
 * INCR reads its totals then) and run. */

static void run_local(shard *s, dp_resp *r, const resp_command *c);

/* EXEC or DISCARD: the queue goes, and the watched keys with it. */
static void tx_abort(dp_resp *r)
{
    dp_multi_end(&r->tx);
    dp_multi_unwatch(&r->tx);
}

/* The transaction ended (run or failed); a single command's leaves the
 * watched keys of the connection alone. */
static void tx_done(dp_resp *r)
{
    if (r->single)
        dp_multi_end(&r->tx);
    else
        tx_abort(r);
    r->single = 0;
}

static void tx_queue(shard *s, dp_resp *r, const resp_command *c)
{
    const resp_cmd_def *d = resp_cmd_lookup(c->argv[0], c->argl[0]);
    static const char *const local[] = {"CLUSTER", "READONLY", "READWRITE", "ASKING", "UNWATCH"};
    int known = d != NULL;
    for (size_t i = 0; !known && i < sizeof(local) / sizeof(local[0]); i++)
        known = word_is(c, 0, local[i]);
    if (!known) {
        char w[64];
        resp_add_errorf(&r->out, "ERR unknown command '%s'",
                        resp_printable(c->argv[0], c->argl[0], 32, w, sizeof(w)));
        r->tx.dirty = 1;
        return;
    }
    if (d && !resp_cmd_arity_ok(d, c->argc)) {
        resp_add_errorf(&r->out, "ERR wrong number of arguments for '%s' command", d->name);
        r->tx.dirty = 1;
        return;
    }
    if (d && (d->flags & RESP_CMD_DATA)) {
        size_t first, last, step;
        key_span(d, c, &first, &last, &step);
        char err[DPR_ERR];
        if (route(s, r, c, first, last, step, strstr(d->rflags, "write") != NULL, err) != 0) {
            resp_add_error(&r->out, err);
            r->tx.dirty = 1;
            return;
        }
    }
    int rc = dp_multi_queue(&r->tx, d, c, s->lim.max_ops, s->lim.max_message);
    if (rc == TRELLIS_TOO_LARGE) {
        resp_add_errorf(&r->out,
                        "ERR trellis: a transaction holds at most %zu commands of %zu bytes in all",
                        s->lim.max_ops, s->lim.max_message);
        r->tx.dirty = 1;
    } else if (rc != TRELLIS_OK) {
        resp_status_error(&r->out, rc);
        r->tx.dirty = 1;
    } else {
        resp_add_simple(&r->out, "QUEUED");
    }
}

/* WATCH key...: each key is looked up (fetched from the disk tier if need
 * be), and its state remembered for EXEC. */
static int tx_watch(shard *s, dp_resp *r, conn *cn, const resp_command *c)
{
    char err[DPR_ERR];
    if (route(s, r, c, 1, c->argc - 1, 1, 0, err) != 0) {
        resp_add_error(&r->out, err);
        return 0;
    }
    dp_exec_reset(r->x);
    resp_exec *x = dp_exec_base(r->x);
    for (size_t i = 1; i < c->argc; i++) {
        int rc = dp_multi_watch(&r->tx, c->argv[i], c->argl[i], s->lim.max_ops);
        if (rc == TRELLIS_TOO_LARGE) {
            resp_add_errorf(&r->out, "ERR trellis: at most %zu keys can be watched",
                            s->lim.max_ops);
            return 0;
        }
        if (rc != TRELLIS_OK || x->ops->head(x, c->argv[i], c->argl[i]) < 0) {
            resp_status_error(&r->out, TRELLIS_INTERNAL);
            return 0;
        }
    }
    return start_ops(s, r, cn, DPR_WATCH);
}

/* Looks up every key of the queued commands and every watched key; when
 * that is done (dpr_done), run_tx. */
static int tx_probe(shard *s, dp_resp *r, conn *cn)
{
    dp_exec_reset(r->x);
    resp_exec *x = dp_exec_base(r->x);
    int rc = 0;
    for (size_t i = 0; i < r->tx.ncmds && rc >= 0; i++) {
        const dp_cmd *p = r->tx.cmds[i];
        size_t first, last, step;
        key_span(p->def, &p->c, &first, &last, &step);
        if (!p->def || !(p->def->flags & RESP_CMD_DATA))
            continue;
        for (size_t k = first; first && k <= last && k < p->c.argc && rc >= 0; k += step)
            rc = x->ops->head(x, p->c.argv[k], p->c.argl[k]);
    }
    for (size_t i = 0; i < r->tx.nwatch && rc >= 0; i++)
        rc = x->ops->head(x, r->tx.watch[i].key, r->tx.watch[i].klen);
    if (rc < 0) {
        resp_status_error(&r->out, TRELLIS_INTERNAL);
        tx_done(r);
        return 0;
    }
    return start_ops(s, r, cn, DPR_PROBE);
}

/* A counter's increment on a memory shard with a disk tier: its totals may
 * be there, so the key is looked up first, as a transaction's are. */
static int tx_single(shard *s, dp_resp *r, conn *c, const resp_cmd_def *d, const resp_command *cmd)
{
    int rc = dp_multi_queue(&r->tx, d, cmd, 1, s->lim.max_message);
    if (rc != TRELLIS_OK) {
        resp_status_error(&r->out, rc);
        return 0;
    }
    r->single = 1;
    return tx_probe(s, r, c);
}

/* EXEC: the checks Redis Cluster makes (every key in one slot, that slot
 * still this shard's), then the look-up of every key. */
static int tx_exec(shard *s, dp_resp *r, conn *cn)
{
    if (r->tx.dirty) {
        resp_add_error(&r->out, "EXECABORT Transaction discarded because of previous errors.");
        tx_abort(r);
        return 0;
    }
    long slot = -1;
    for (size_t i = 0; i < r->tx.ncmds; i++) {
        const dp_cmd *p = r->tx.cmds[i];
        size_t first, last, step;
        if (!p->def || !(p->def->flags & RESP_CMD_DATA))
            continue;
        key_span(p->def, &p->c, &first, &last, &step);
        for (size_t k = first; first && k <= last && k < p->c.argc; k += step) {
            long ks = (long)slot_of(p->c.argv[k], p->c.argl[k]);
            if (slot >= 0 && ks != slot) {
                resp_add_error(&r->out, "CROSSSLOT Keys in request don't hash to the same slot");
                tx_abort(r);
                return 0;
            }
            slot = ks;
        }
        /* The ring may have moved the slot since the command was queued. */
        char err[DPR_ERR];
        if (first && route(s, r, &p->c, first, last, step, strstr(p->def->rflags, "write") != NULL,
                           err) != 0) {
            resp_add_error(&r->out, err);
            tx_abort(r);
            return 0;
        }
    }
    return tx_probe(s, r, cn);
}

/* The look-up is done, on this turn of the loop: compares the watched
 * keys, then plans and runs the commands as one request. */
static void run_tx(shard *s, dp_resp *r, conn *c)
{
    if (!r->single && dp_multi_watch_changed(s, &r->tx)) {
        /* A null reply: the transaction did not run. */
        if (r->proto == 2)
            resp_buf_put(&r->out, "*-1\r\n", 5);
        else
            resp_add_nil(&r->out, r->proto);
        tx_abort(r);
        finish(r, c);
        return;
    }
    if (!r->single)
        dp_multi_unwatch(&r->tx);
    dp_exec_reset(r->x);
    resp_ctx_reset(r->ctx);
    dp_exec_set_fetched(r->x, 1);
    resp_cmd_limits lim = {s->lim.max_key};
    for (size_t i = 0; i < r->tx.ncmds; i++) {
        dp_cmd *p = r->tx.cmds[i];
        if (!p->def || !(p->def->flags & RESP_CMD_DATA))
            continue;
        char err[RESP_ERR_MAX];
        size_t before = dp_exec_count(r->x);
        int rc = resp_cmd_add(dp_exec_base(r->x), r->ctx, p->def, &p->c, &lim, &p->slot, err);
        if (dp_exec_refused(r->x)) {
            dp_exec_truncate(r->x, before);
            refusal(p->def, err);
            rc = -1;
        }
        if (rc == 0)
            p->planned = 1;
        else
            p->err = strdup(err); /* NULL: answered as an internal error */
    }
    dp_exec_set_fetched(r->x, 0);
    send_ops(s, r, DPR_TX, 0);
}

/* The transaction ran: one reply per command, in an array (a single
 * command's alone). */
static void tx_reply(shard *s, dp_resp *r)
{
    if (!r->single)
        resp_add_array(&r->out, r->tx.ncmds);
    for (size_t i = 0; i < r->tx.ncmds; i++) {
        dp_cmd *p = r->tx.cmds[i];
        if (p->planned)
            resp_cmd_reply(dp_exec_base(r->x), r->ctx, p->def, &p->c, &p->slot, r->proto, &r->out);
        else if (p->def && (p->def->flags & RESP_CMD_DATA) && p->err)
            resp_add_error(&r->out, p->err);
        else if (p->def && (p->def->flags & RESP_CMD_DATA))
            resp_status_error(&r->out, TRELLIS_INTERNAL);
        else
            run_local(s, r, &p->c);
    }
    tx_done(r);
}

/* The transaction commands, and every command inside MULTI. Returns -1
 * for a command this is not about, else as run_command. */
static int run_tx_command(shard *s, dp_resp *r, conn *cn, const resp_command *c)
{
    if (word_is(c, 0, "MULTI")) {
        if (c->argc != 1)
            resp_add_error(&r->out, "ERR wrong number of arguments for 'multi' command");
        else if (r->tx.active)
            resp_add_error(&r->out, "ERR MULTI calls can not be nested");
        else
            r->tx.active = 1, resp_add_simple(&r->out, "OK");
        return 0;
    }
    if (word_is(c, 0, "EXEC") || word_is(c, 0, "DISCARD")) {
        if (!r->tx.active) {
            resp_add_errorf(&r->out, "ERR %s without MULTI",
                            word_is(c, 0, "EXEC") ? "EXEC" : "DISCARD");
            return 0;
        }
        if (c->argc != 1) {
            resp_add_errorf(&r->out, "ERR wrong number of arguments for '%s' command",
                            word_is(c, 0, "EXEC") ? "exec" : "discard");
            r->tx.dirty = 1;
            return 0;
        }
        if (word_is(c, 0, "EXEC"))
            return tx_exec(s, r, cn);
        tx_abort(r);
        resp_add_simple(&r->out, "OK");
        return 0;
    }
    if (word_is(c, 0, "WATCH")) {
        if (r->tx.active)
            resp_add_error(&r->out, "ERR WATCH inside MULTI is not allowed");
        else if (c->argc < 2)
            resp_add_error(&r->out, "ERR wrong number of arguments for 'watch' command");
        else
            return tx_watch(s, r, cn, c);
        return 0;
    }
    if (!r->tx.active || word_is(c, 0, "QUIT") || word_is(c, 0, "RESET"))
        return -1;
    tx_queue(s, r, c);
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* The commands the shard answers itself (connection and cluster
 * commands); their reply goes to r->out. */
static void run_local(shard *s, dp_resp *r, const resp_command *c)
{
    if (word_is(c, 0, "AUTH")) {
        cmd_auth(s, r, c);
    } else if (word_is(c, 0, "HELLO")) {
        cmd_hello(s, r, c);
    } else if (word_is(c, 0, "PING") && c->argc <= 2) {
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
    } else if (word_is(c, 0, "UNWATCH") && c->argc == 1) {
        dp_multi_unwatch(&r->tx);
        resp_add_simple(&r->out, "OK");
    } else if (word_is(c, 0, "RESET") && c->argc == 1) {
        /* As a new connection: no transaction, nothing watched. */
        tx_abort(r);
        r->readonly = 0;
        r->proto = 2;
        r->name[0] = '\0';
        r->authed = 0;
        resp_add_simple(&r->out, "RESET");
    } else if (word_is(c, 0, "CLIENT")) {
        cmd_client(r, c);
    } else if (word_is(c, 0, "CLUSTER")) {
        cmd_cluster(s, r, c);
    } else if (word_is(c, 0, "INFO")) {
        cmd_info(s, r, c);
    } else if (word_is(c, 0, "COMMAND")) {
        resp_cmd_command(c, r->proto, &r->out);
    } else {
        char w[64];
        resp_add_errorf(&r->out, "ERR unknown command '%s'",
                        resp_printable(c->argv[0], c->argl[0], 32, w, sizeof(w)));
    }
}

/* Runs one command outside a round (the round before it has run); its
 * reply goes to r->out. Returns 1 when the reply waits (round_run, a
 * transaction's look-ups). */
static int run_command(shard *s, dp_resp *r, conn *cn, const resp_command *c, uint64_t now_us)
{
    int open = r->authed || !s->token;
    size_t from = r->out.len;
    int rc = open ? run_tx_command(s, r, cn, c) : -1;
    if (rc >= 0) {
        if (rc == 0)
            count_reply(s, r, from);
        return rc;
    }
    const resp_cmd_def *d = resp_cmd_lookup(c->argv[0], c->argl[0]);
    if (d && (d->flags & RESP_CMD_DATA) && open) {
        char err[RESP_ERR_MAX];
        if (data_check(s, r, d, c, err) != 0) {
            resp_add_error(&r->out, err);
            s->st_cur.resp_errors++;
            return 0;
        }
        if ((d->flags & RESP_CMD_COUNTER) && s->tier == RING_TIER_MEMORY && !s->no_disk)
            return tx_single(s, r, cn, d, c); /* its totals may be on the disk tier */
        if (round_add(s, r, d, c, err) != 0) {
            resp_add_error(&r->out, err);
            s->st_cur.resp_errors++;
            return 0;
        }
        return round_run(s, r, cn, now_us); /* a round of one (counts its error) */
    }
    if (word_is(c, 0, "QUIT")) {
        resp_add_simple(&r->out, "OK");
        r->close_after = 1;
    } else if (!open && !word_is(c, 0, "AUTH") && !word_is(c, 0, "HELLO")) {
        shard_count_error(s, TRELLIS_UNAUTHORIZED);
        s->st_cur.resp_auth_failures++;
        resp_add_error(&r->out, "NOAUTH Authentication required.");
    } else {
        run_local(s, r, c);
    }
    count_reply(s, r, from);
    return 0;
}

/* 1 if command c (d: its definition, or NULL) may join the round: a data
 * command this shard serves whose words lie in the connection's input
 * data[0..len) (an inline command's are in the parser's scratch) and that
 * does not read its key as it is planned (increments). */
static int joins_round(shard *s, dp_resp *r, const resp_cmd_def *d, const resp_command *c,
                       const uint8_t *data, size_t len)
{
    if (!d || !(d->flags & RESP_CMD_DATA) || (d->flags & RESP_CMD_COUNTER) ||
        (s->token && !r->authed) || r->tx.active)
        return 0;
    if (c->argv[0] < data || c->argv[0] >= data + len)
        return 0;
    char err[DPR_ERR];
    return data_check(s, r, d, c, err) == 0;
}

size_t dp_resp_input(shard *s, dp_resp *r, conn *c, uint8_t *data, size_t len)
{
    size_t used = 0;
    int open = r->authed || !s->token;
    resp_limits lim = {s->lim.max_value, s->lim.max_ops + 1, s->lim.max_message};
    resp_limits unauth = {(size_t)s->cfg->limits.unauth_message_bytes, DPR_UNAUTH_ARGS,
                          (size_t)s->cfg->limits.unauth_message_bytes};
    size_t round_ops = s->lim.max_ops < DPR_ROUND_OPS ? s->lim.max_ops : DPR_ROUND_OPS;
    uint64_t now_us = clock_mono_us(); /* arrival, for every command of this read */
    while (used < len && !r->close_after && !r->held && !conn_closing(c)) {
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
            s->st_cur.resp_protocol_errors++;
            char err[RESP_ERR_MAX];
            snprintf(err, sizeof(err), "ERR Protocol error: %s",
                     rc == RESP_NO_MEMORY ? "out of memory" : r->p.err);
            if (round_run(s, r, c, now_us)) {
                /* Answered after the round, which waits. */
                r->held_err = strdup(err);
                if (!r->held_err)
                    r->close_after = 1;
            } else {
                resp_add_error(&r->out, err);
                r->close_after = 1;
            }
            break;
        }
        s->st_cur.total_requests++;
        s->st_cur.resp_commands++;
        const resp_cmd_def *d = resp_cmd_lookup(cmd.argv[0], cmd.argl[0]);
        char err[RESP_ERR_MAX];
        if (joins_round(s, r, d, &cmd, data, len)) {
            if (dp_exec_count(r->x) >= round_ops && round_run(s, r, c, now_us)) {
                used -= took; /* parsed again once the round is answered */
                break;
            }
            if (round_add(s, r, d, &cmd, err) == 0)
                continue;
            if (round_run(s, r, c, now_us)) {
                used -= took;
                break;
            }
            resp_add_error(&r->out, err);
            s->st_cur.resp_errors++;
            continue;
        }
        if (round_run(s, r, c, now_us)) {
            used -= took;
            break;
        }
        if (run_command(s, r, c, &cmd, now_us))
            break; /* the reply waits: so does the rest of the input */
    }
    if (!r->held)
        round_run(s, r, c, now_us);
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
