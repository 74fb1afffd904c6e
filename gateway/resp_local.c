/*
 * resp_local.c - commands the gateway answers when it reads them
 * (resp_impl.h): connection commands (AUTH, HELLO, CLIENT, COMMAND, INFO,
 * CONFIG, ...) and the rules of MULTI; everything else becomes a queued
 * command for the workers.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/glob.h"
#include "base/log.h"
#include "gateway/resp_impl.h"

/* ---- connection commands, answered when read ----------------------------------------------- */

/* Constant-time comparison of a presented token with the configured one:
 * the time depends on the configured token's length only. */
static int token_matches(const char *token, const uint8_t *p, size_t n)
{
    size_t tn = strlen(token);
    volatile unsigned char diff = (unsigned char)(n != tn);
    for (size_t i = 0; i < tn; i++)
        diff |= (unsigned char)((unsigned char)token[i] ^ (i < n ? p[i] : 0));
    return diff == 0;
}

static int word_is(const resp_command *c, size_t i, const char *w)
{
    return c->argl[i] == strlen(w) && strncasecmp((const char *)c->argv[i], w, c->argl[i]) == 0;
}

/* AUTH's check: username (NULL: none given) and password. Returns 1 when
 * they match, writing nothing; otherwise appends the error. */
static int check_auth(conn *c, const resp_command *cmd, size_t user, size_t pass, resp_buf *out)
{
    resp_server *s = c->srv;
    int user_ok = user == 0 || word_is(cmd, user, "default");
    int pass_ok = token_matches(s->token, cmd->argv[pass], cmd->argl[pass]);
    if (user_ok && pass_ok)
        return 1;
    atomic_fetch_add(&s->n_auth_failures, 1);
    resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
    return 0;
}

static void cmd_auth(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    if (cmd->argc > 3) {
        resp_add_error(out, "ERR syntax error");
        return;
    }
    if (!s->token[0]) {
        resp_add_error(out, "ERR AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
        return;
    }
    if (check_auth(c, cmd, cmd->argc == 3 ? 1 : 0, cmd->argc - 1, out)) {
        c->authed = 1;
        resp_add_simple(out, "OK");
    }
}

static int name_ok(const uint8_t *p, size_t n)
{
    if (n > RESP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

static void cmd_hello(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    int proto = c->proto;
    size_t i = 1;
    if (cmd->argc >= 2) {
        if (cmd->argl[1] == 1 && (cmd->argv[1][0] == '2' || cmd->argv[1][0] == '3')) {
            proto = cmd->argv[1][0] - '0';
        } else {
            resp_add_error(out, "NOPROTO sorry, this protocol version is not supported");
            return;
        }
        i = 2;
    }
    int authed = c->authed;
    const uint8_t *name = NULL;
    size_t nlen = 0;
    for (; i < cmd->argc; i++) {
        if (word_is(cmd, i, "AUTH") && i + 2 < cmd->argc) {
            if (!s->token[0]) {
                resp_add_error(out, "ERR AUTH <password> called without any password configured "
                                    "for the default user. Are you sure your configuration is "
                                    "correct?");
                return;
            }
            if (!check_auth(c, cmd, i + 1, i + 2, out))
                return;
            authed = 1;
            i += 2;
        } else if (word_is(cmd, i, "SETNAME") && i + 1 < cmd->argc) {
            name = cmd->argv[i + 1];
            nlen = cmd->argl[i + 1];
            if (!name_ok(name, nlen)) {
                resp_add_error(out, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
            i++;
        } else {
            char w[64];
            resp_add_errorf(out, "ERR Syntax error in HELLO option '%s'",
                            resp_printable(cmd->argv[i], cmd->argl[i], 32, w, sizeof(w)));
            return;
        }
    }
    if (!authed) {
        resp_add_error(out, "NOAUTH HELLO must be called with the client already authenticated, "
                            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used");
        return;
    }
    c->authed = authed;
    c->proto = proto;
    if (name) {
        memcpy(c->name, name, nlen);
        c->name[nlen] = '\0';
    }
    resp_add_map(out, 7, proto);
    resp_add_cstr(out, "server");
    resp_add_cstr(out, "redis");
    resp_add_cstr(out, "version");
    resp_add_cstr(out, RESP_REDIS_VERSION);
    resp_add_cstr(out, "proto");
    resp_add_int(out, proto);
    resp_add_cstr(out, "id");
    resp_add_int(out, (int64_t)c->id);
    resp_add_cstr(out, "mode");
    resp_add_cstr(out, "standalone");
    resp_add_cstr(out, "role");
    resp_add_cstr(out, "master");
    resp_add_cstr(out, "modules");
    resp_add_array(out, 0);
}

static void cmd_client(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 1, "SETNAME") && cmd->argc == 3) {
        if (!name_ok(cmd->argv[2], cmd->argl[2])) {
            resp_add_error(out, "ERR Client names cannot contain spaces, newlines or special "
                                "characters.");
            return;
        }
        memcpy(c->name, cmd->argv[2], cmd->argl[2]);
        c->name[cmd->argl[2]] = '\0';
        resp_add_simple(out, "OK");
    } else if (word_is(cmd, 1, "GETNAME") && cmd->argc == 2) {
        if (c->name[0])
            resp_add_cstr(out, c->name);
        else
            resp_add_nil(out, c->proto);
    } else if (word_is(cmd, 1, "ID") && cmd->argc == 2) {
        resp_add_int(out, (int64_t)c->id);
    } else if (word_is(cmd, 1, "SETINFO") && cmd->argc == 4) {
        resp_add_simple(out, "OK");
    } else if (word_is(cmd, 1, "INFO") && cmd->argc == 2) {
        char line[256];
        snprintf(line, sizeof(line), "id=%" PRIu64 " name=%s db=0 resp=%d lib=trellis\n", c->id,
                 c->name, c->proto);
        resp_add_cstr(out, line);
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: CLIENT %s is not supported (SETNAME, GETNAME, ID, "
                        "SETINFO and INFO are)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

/* INFO's sections; the keyspace section's figures come from ks (a
 * DBSIZE's result), when it was asked for. */
static void cmd_info(conn *c, const resp_command *cmd, const resp_res *ks, resp_buf *out)
{
    resp_server *s = c->srv;
    resp_buf t = {0};
    char line[512];
    uint64_t up = (clock_mono_ms() - s->started_ms) / 1000;
#define LINE(...)                                                                                  \
    do {                                                                                           \
        int k_ = snprintf(line, sizeof(line), __VA_ARGS__);                                        \
        resp_buf_put(&t, line, k_ > 0 ? (size_t)k_ : 0);                                           \
    } while (0)
    if (resp_info_wants(cmd, "server")) {
        struct utsname u;
        if (uname(&u) != 0)
            snprintf(u.sysname, sizeof(u.sysname), "?");
        LINE("# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\ntrellis_version:%s\r\n"
             "os:%s %s %s\r\narch_bits:%d\r\nprocess_id:%ld\r\ntcp_port:%d\r\n"
             "uptime_in_seconds:%" PRIu64 "\r\nuptime_in_days:%" PRIu64 "\r\n\r\n",
             RESP_REDIS_VERSION, TRELLIS_VERSION, u.sysname, u.release, u.machine,
             (int)(8 * sizeof(void *)), (long)getpid(), s->port, up, up / 86400);
    }
    if (resp_info_wants(cmd, "clients")) {
        pthread_mutex_lock(&s->mtx);
        int n = s->nconns;
        pthread_mutex_unlock(&s->mtx);
        LINE("# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n\r\n", n, s->max_clients);
    }
    if (resp_info_wants(cmd, "stats")) {
        LINE("# Stats\r\ntotal_connections_received:%" PRIu64
             "\r\ntotal_commands_processed:%" PRIu64 "\r\nrejected_connections:%" PRIu64
             "\r\ntotal_error_replies:%" PRIu64 "\r\n\r\n",
             atomic_load(&s->n_connections), atomic_load(&s->n_commands),
             atomic_load(&s->n_rejected), atomic_load(&s->n_errors));
    }
    if (resp_info_wants(cmd, "keyspace")) {
        /* As Redis: a line for database 0 when it has keys. */
        LINE("# Keyspace\r\n");
        if (ks && ks->status == TRELLIS_OK && ks->integer > 0)
            LINE("db0:keys=%" PRId64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", ks->integer,
                 ks->volatile_keys);
        else if (ks && ks->status != TRELLIS_OK)
            LINE("trellis_keyspace_error:%s\r\n", trellis_status_name(ks->status));
        LINE("\r\n");
    }
    if (resp_info_wants(cmd, "trellis")) {
        trellis_client *tc = atomic_load(&s->client);
        uint64_t epoch = tc ? trellis_ring_epoch(tc) : 0;
        int up_ok = tc != NULL;
        LINE("# Trellis\r\ntrellis_router_id:%s\r\ntrellis_cluster:%s\r\ntrellis_backend:%s\r\n"
             "trellis_connected:%d\r\ntrellis_ring_epoch:%" PRIu64 "\r\ntrellis_batches:%" PRIu64
             "\r\ntrellis_batched_commands:%" PRIu64 "\r\n\r\n",
             s->router_id, s->cfg.cluster.name, s->backend, up_ok, epoch,
             atomic_load(&s->n_batches), atomic_load(&s->n_batch_cmds));
    }
#undef LINE
    if (t.failed)
        resp_status_error(out, TRELLIS_INTERNAL);
    else
        resp_add_bulk(out, t.data ? t.data : (uint8_t *)"", t.len);
    resp_buf_free(&t);
}

int resp_info_add(resp_exec *x, resp_slot *slot, char *err)
{
    int i = x->ops->dbsize(x);
    if (i < 0) {
        snprintf(err, RESP_ERR_MAX, "ERR trellis: %s (%s)", trellis_strerror(-i),
                 trellis_status_name(-i));
        return -1;
    }
    slot->first = i;
    slot->nops = 1;
    return 0;
}

void resp_info_reply(conn *c, resp_exec *x, const resp_command *cmd, const resp_slot *slot,
                     resp_buf *out)
{
    resp_res ks;
    x->ops->result(x, slot->first, &ks);
    cmd_info(c, cmd, &ks, out);
}

/* A CONFIG GET answer: name and value pairs. */
typedef struct cfg_pairs {
    resp_buf body;
    size_t n;
} cfg_pairs;

/* Adds (name, value) when a pattern of cmd (words from 2) matches name. */
static void cfg_offer(cfg_pairs *p, const resp_command *cmd, const char *name, const char *value)
{
    for (size_t i = 2; i < cmd->argc; i++)
        if (glob_match(cmd->argv[i], cmd->argl[i], (const uint8_t *)name, strlen(name), 1)) {
            resp_add_cstr(&p->body, name);
            resp_add_cstr(&p->body, value);
            p->n++;
            return;
        }
}

/* CONFIG GET pattern...: the Redis parameters that have a meaning here,
 * with the figures of this gateway and the cluster configuration it runs
 * with, and every key of that configuration by its trellis name
 * ("kvs.capacity"), the token excepted. */
static void config_get(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    const config *cfg = &s->cfg;
    cfg_pairs p = {{0}, 0};
    char v[64];
    snprintf(v, sizeof(v), "%" PRId64, cfg->kvs.capacity);
    cfg_offer(&p, cmd, "maxmemory", v);
    cfg_offer(&p, cmd, "maxmemory-policy", "noeviction");
    snprintf(v, sizeof(v), "%d", s->max_clients);
    cfg_offer(&p, cmd, "maxclients", v);
    snprintf(v, sizeof(v), "%d", s->port);
    cfg_offer(&p, cmd, "port", v);
    cfg_offer(&p, cmd, "bind", cfg->route.listen);
    cfg_offer(&p, cmd, "databases", "1");
    cfg_offer(&p, cmd, "timeout", "0");
    cfg_offer(&p, cmd, "save", "");
    cfg_offer(&p, cmd, "appendonly", "no");
    cfg_offer(&p, cmd, "cluster-enabled", "no");
    snprintf(v, sizeof(v), "%" PRId64, cfg->limits.max_value_bytes);
    cfg_offer(&p, cmd, "proto-max-bulk-len", v);
    cfg_offer(&p, cmd, "requirepass", ""); /* never the token itself */
    char text[CONFIG_LIST_MAX * CONFIG_STR_MAX];
    for (size_t i = 0; i < config_key_count(); i++) {
        config_key_info k;
        config_key_at(i, &k);
        if (strncmp(k.name, "auth.", 5) == 0)
            continue;
        if (config_get_text(cfg, k.name, text, sizeof(text)) == 0)
            cfg_offer(&p, cmd, k.name, text);
    }
    if (p.body.failed) {
        resp_status_error(out, TRELLIS_INTERNAL);
    } else {
        resp_add_map(out, p.n, c->proto);
        resp_buf_put(out, p.body.data, p.body.len);
    }
    resp_buf_free(&p.body);
}

static void cmd_config(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 1, "GET") && cmd->argc >= 3) {
        config_get(c, cmd, out);
    } else if (word_is(cmd, 1, "GET")) {
        resp_add_error(out, "ERR wrong number of arguments for 'config|get' command");
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: CONFIG %s is not supported (CONFIG GET is; configure "
                        "trellis with its YAML file)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

/* Answers a connection command into out. Returns 1 when the connection
 * must close once the reply is sent. */
static int run_local(conn *c, const resp_cmd_def *d, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    switch (d->kind) {
    case RK_PING:
        if (cmd->argc > 2)
            resp_add_error(out, "ERR wrong number of arguments for 'ping' command");
        else if (cmd->argc == 2)
            resp_add_bulk(out, cmd->argv[1], cmd->argl[1]);
        else
            resp_add_simple(out, "PONG");
        return 0;
    case RK_ECHO:
        resp_add_bulk(out, cmd->argv[1], cmd->argl[1]);
        return 0;
    case RK_QUIT:
        resp_add_simple(out, "OK");
        return 1;
    case RK_SELECT: {
        if (cmd->argl[1] == 1 && cmd->argv[1][0] == '0') {
            resp_add_simple(out, "OK");
            return 0;
        }
        int numeric = cmd->argl[1] > 0 && cmd->argl[1] < 20;
        for (size_t i = 0; i < cmd->argl[1]; i++)
            numeric &= (cmd->argv[1][i] >= '0' && cmd->argv[1][i] <= '9') ||
                       (i == 0 && cmd->argv[1][0] == '-' && cmd->argl[1] > 1);
        resp_add_error(out, numeric ? "ERR DB index is out of range (trellis has database 0 only)"
                                    : "ERR value is not an integer or out of range");
        return 0;
    }
    case RK_AUTH:
        cmd_auth(c, cmd, out);
        return 0;
    case RK_HELLO:
        cmd_hello(c, cmd, out);
        return 0;
    case RK_CLIENT:
        cmd_client(c, cmd, out);
        return 0;
    case RK_COMMAND:
        resp_cmd_command(cmd, c->proto, out);
        return 0;
    case RK_INFO:
        cmd_info(c, cmd, NULL, out);
        return 0;
    case RK_CONFIG:
        cmd_config(c, cmd, out);
        return 0;
    case RK_RESET:
        c->in_multi = 0;
        c->proto = 2;
        c->name[0] = '\0';
        c->authed = s->token[0] == '\0';
        resp_add_simple(out, "RESET");
        return 0;
    default:
        resp_status_error(out, TRELLIS_INTERNAL);
        return 0;
    }
}

/* A queued command with a reply already made. NULL when out of memory. */
rcmd *resp_rcmd_with_reply(const resp_buf *reply, int close_after)
{
    rcmd *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->close_after = close_after;
    r->bytes = sizeof(*r) + reply->len;
    if (reply->len) {
        r->reply = malloc(reply->len);
        if (!r->reply) {
            free(r);
            return NULL;
        }
        memcpy(r->reply, reply->data, reply->len);
        r->rlen = reply->len;
    }
    return r;
}

/* A data command, its words copied into the same allocation. */
static rcmd *rcmd_data(const resp_cmd_def *d, const resp_command *cmd, int proto)
{
    size_t bytes = sizeof(rcmd) + cmd->argc * (sizeof(uint8_t *) + sizeof(size_t));
    for (size_t i = 0; i < cmd->argc; i++)
        bytes += cmd->argl[i] + 1;
    rcmd *r = malloc(bytes);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->def = d;
    r->proto = proto;
    r->bytes = bytes;
    const uint8_t **argv = (const uint8_t **)(r + 1);
    size_t *argl = (size_t *)(argv + cmd->argc);
    uint8_t *p = (uint8_t *)(argl + cmd->argc);
    for (size_t i = 0; i < cmd->argc; i++) {
        memcpy(p, cmd->argv[i], cmd->argl[i]);
        p[cmd->argl[i]] = '\0';
        argv[i] = p;
        argl[i] = cmd->argl[i];
        p += cmd->argl[i] + 1;
    }
    r->c.argc = cmd->argc;
    r->c.argv = argv;
    r->c.argl = argl;
    return r;
}

/* Transactions: trellis has none (every write is a coordination-free
 * lattice merge), and running the commands of a MULTI block one by one
 * would break what a client that sent MULTI relies on. So MULTI is
 * refused, and so is every command up to the EXEC or DISCARD that ends the
 * block: nothing of it runs, and EXEC answers EXECABORT as Redis does for a
 * transaction with errors. Returns 1 when the command was answered here. */
static int transaction_command(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 0, "MULTI")) {
        c->in_multi = 1;
        resp_add_error(out, "ERR trellis: MULTI/EXEC transactions are not supported (writes are "
                            "coordination-free merges); commands up to EXEC or DISCARD are "
                            "refused, pipeline without MULTI instead");
    } else if (word_is(cmd, 0, "EXEC")) {
        if (c->in_multi)
            resp_add_error(out, "EXECABORT Transaction discarded because of previous errors.");
        else
            resp_add_error(out, "ERR EXEC without MULTI");
        c->in_multi = 0;
    } else if (word_is(cmd, 0, "DISCARD")) {
        if (c->in_multi)
            resp_add_simple(out, "OK");
        else
            resp_add_error(out, "ERR DISCARD without MULTI");
        c->in_multi = 0;
    } else if (word_is(cmd, 0, "WATCH") || word_is(cmd, 0, "UNWATCH")) {
        resp_add_error(out, "ERR trellis: WATCH is not supported (no transactions)");
    } else if (c->in_multi && !word_is(cmd, 0, "QUIT") && !word_is(cmd, 0, "RESET")) {
        resp_add_error(out, "ERR trellis: command refused inside MULTI (transactions are not "
                            "supported); send EXEC or DISCARD");
    } else {
        return 0;
    }
    return 1;
}

/* Turns a parsed command into a queued one: a data command for the
 * workers, or the reply to anything else. NULL when out of memory. */
rcmd *resp_accept_command(conn *c, const resp_command *cmd)
{
    resp_server *s = c->srv;
    resp_buf out = {0};
    int close_after = 0;
    atomic_fetch_add(&s->n_commands, 1);
    const resp_cmd_def *d = resp_cmd_lookup(cmd->argv[0], cmd->argl[0]);
    if (!c->authed && !(d && (d->flags & RESP_CMD_NOAUTH))) {
        atomic_fetch_add(&s->n_auth_failures, 1);
        resp_add_error(&out, "NOAUTH Authentication required.");
    } else if (transaction_command(c, cmd, &out)) {
        /* answered */
    } else if (!d) {
        char name[48], args[160] = "";
        resp_printable(cmd->argv[0], cmd->argl[0], 40, name, sizeof(name));
        for (size_t i = 1; i < cmd->argc && strlen(args) < 100; i++) {
            char w[48];
            size_t used = strlen(args);
            snprintf(args + used, sizeof(args) - used, "'%s' ",
                     resp_printable(cmd->argv[i], cmd->argl[i], 40, w, sizeof(w)));
        }
        resp_add_errorf(&out, "ERR unknown command '%s', with args beginning with: %s", name, args);
    } else if (!resp_cmd_arity_ok(d, cmd->argc)) {
        resp_add_errorf(&out, "ERR wrong number of arguments for '%s' command", d->name);
    } else if ((d->flags & RESP_CMD_DATA) ||
               (d->kind == RK_INFO && resp_info_wants(cmd, "keyspace"))) {
        return rcmd_data(d, cmd, c->proto);
    } else {
        close_after = run_local(c, d, cmd, &out);
    }
    if (out.len && out.data[0] == '-')
        atomic_fetch_add(&s->n_errors, 1);
    rcmd *r = out.failed ? NULL : resp_rcmd_with_reply(&out, close_after);
    resp_buf_free(&out);
    return r;
}
