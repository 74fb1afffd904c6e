/*
 * test_config.c - the configuration schema, its YAML loader and the
 * command line: defaults, deploy/trellis.yml in step with the schema and
 * with `trellis-kvs --print-config`, errors that name the file, line and
 * key (and exit status 2 through the binaries), overrides, list flags and
 * the relations config_check enforces.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/config.h"
#include "trellis/trellis.h"
#include "server/daemon.h"
#include "tsupport.h"

static char tmpdir[4096];

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/trellis-config-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    int rc = system(cmd);
    (void)rc;
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 30);

static const char *src_path(const char *rel, char *buf, size_t cap)
{
    const char *src = getenv("TRELLIS_SRC");
    snprintf(buf, cap, "%s/%s", src && *src ? src : ".", rel);
    return buf;
}

static const char *bin_path(const char *name, char *buf, size_t cap)
{
    const char *bin = getenv("TRELLIS_BIN");
    snprintf(buf, cap, "%s/%s", bin && *bin ? bin : "build/bin", name);
    return buf;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[4200];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Every key's text form in a and b agree. */
static void assert_same_config(const config *a, const config *b, const char *what)
{
    for (size_t i = 0; i < config_key_count(); i++) {
        config_key_info k;
        config_key_at(i, &k);
        char va[4096], vb[4096];
        cr_assert_eq(config_get_text(a, k.name, va, sizeof(va)), TRELLIS_OK, "%s", k.name);
        cr_assert_eq(config_get_text(b, k.name, vb, sizeof(vb)), TRELLIS_OK, "%s", k.name);
        cr_assert_str_eq(va, vb, "%s: key %s differs ('%s' vs '%s')", what, k.name, va, vb);
    }
}

Test(config, defaults_are_valid_and_round_trip)
{
    config *c = calloc(1, sizeof(*c)), *d = calloc(1, sizeof(*d));
    config_defaults(c);
    char err[CONFIG_ERR_MAX] = "";
    cr_assert_eq(config_check(c, err, sizeof(err)), TRELLIS_OK, "%s", err);
    cr_assert_gt(config_key_count(), 50);
    for (size_t i = 0; i < config_key_count(); i++) {
        config_key_info k;
        config_key_at(i, &k);
        cr_assert_not_null(strchr(k.name, '.'), "%s has no section", k.name);
        cr_assert(k.doc && k.doc[0], "%s has no doc", k.name);
        /* The default text parses, and the text form parses back to itself. */
        config_defaults(d);
        cr_assert_eq(config_set(d, k.name, k.def, err, sizeof(err)), TRELLIS_OK, "%s: %s", k.name,
                     err);
        char text[4096];
        cr_assert_eq(config_get_text(c, k.name, text, sizeof(text)), TRELLIS_OK);
        cr_assert_eq(config_set(d, k.name, text, err, sizeof(err)), TRELLIS_OK, "%s='%s': %s",
                     k.name, text, err);
        assert_same_config(c, d, k.name);
    }
    /* A few values the rest of the system relies on. */
    cr_assert_eq(c->limits.max_message_bytes, 4 << 20);
    cr_assert_eq(c->limits.max_key_bytes, 1024);
    cr_assert_eq(c->limits.max_value_bytes, 1 << 20);
    cr_assert_eq(c->kvs.capacity, INT64_C(1) << 30);
    cr_assert_eq(c->cluster.memory_replicas, 1);
    cr_assert_eq(c->cluster.disk_replicas, 1);
    cr_assert_eq(c->cluster.routers.n, 1);
    cr_assert_str_eq(c->cluster.routers.v[0], "tcp://127.0.0.1:6450");
    cr_assert_eq(c->kvs.tier, 1);
    cr_assert_eq(c->route.peers.n, 0);
    free(c);
    free(d);
}

Test(config, committed_file_matches_schema)
{
    char path[4200];
    src_path("deploy/trellis.yml", path, sizeof(path));
    config *def = calloc(1, sizeof(*def)), *c = calloc(1, sizeof(*c));
    config_defaults(def);
    /* Start from values that differ from every default, so that a key
     * missing from the file shows up as a difference. */
    config_defaults(c);
    for (size_t i = 0; i < config_key_count(); i++) {
        config_key_info k;
        config_key_at(i, &k);
        char err[CONFIG_ERR_MAX];
        if (strcmp(k.type, "string") == 0 || strcmp(k.type, "list") == 0)
            cr_assert_eq(config_set(c, k.name, "not-the-default", err, sizeof(err)), TRELLIS_OK);
        else if (strcmp(k.type, "bool") == 0)
            config_set(c, k.name, strcmp(k.def, "true") == 0 ? "false" : "true", err, sizeof(err));
    }
    char err[CONFIG_ERR_MAX] = "";
    cr_assert_eq(config_load_file(c, path, err, sizeof(err)), TRELLIS_OK, "%s", err);
    cr_assert_eq(config_load_file(def, path, err, sizeof(err)), TRELLIS_OK, "%s", err);
    config *d2 = calloc(1, sizeof(*d2));
    config_defaults(d2);
    assert_same_config(c, d2, "deploy/trellis.yml over non-defaults");
    assert_same_config(def, d2, "deploy/trellis.yml over defaults");

    /* Every schema key appears under its section, and nothing else does. */
    char *text = read_file(path, NULL);
    char section[64] = "";
    size_t found = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (line[0] != ' ') {
            cr_assert(sscanf(line, "%63[^:]:", section) == 1, "bad line '%s'", line);
            continue;
        }
        char name[128];
        if (sscanf(line, "  %127[a-z0-9_]:", name) != 1 || strstr(line, "  #") == line)
            continue;
        char full[256];
        snprintf(full, sizeof(full), "%s.%s", section, name);
        int known = 0;
        for (size_t i = 0; i < config_key_count() && !known; i++) {
            config_key_info k;
            config_key_at(i, &k);
            known = strcmp(k.name, full) == 0;
        }
        cr_assert(known, "deploy/trellis.yml has '%s', which the schema lacks", full);
        found++;
    }
    cr_assert_eq(found, config_key_count(), "the file lists %zu keys, the schema %zu", found,
                 config_key_count());
    free(text);
    free(c);
    free(def);
    free(d2);
}

/* Runs a binary with args until it exits; returns its exit status and its
 * output (stdout and stderr) in a malloc'd string. */
static int run_wait(const char *bin, const char *const *args, char **output)
{
    char b[4200], log[4200];
    bin_path(bin, b, sizeof(b));
    static int seq;
    snprintf(log, sizeof(log), "%s/out-%d.log", tmpdir, seq++);
    char *argv[32];
    int n = 0;
    argv[n++] = b;
    for (; *args && n < 31; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    tproc *p;
    cr_assert_eq(tproc_spawn(argv, log, &p), 0, "cannot start %s", b);
    for (int i = 0; i < 1000 && tproc_running(p); i++)
        usleep(10000);
    cr_assert(!tproc_running(p), "%s did not exit", bin);
    int st = tproc_status(p);
    tproc_free(p);
    *output = read_file(log, NULL);
    cr_assert(WIFEXITED(st), "%s died of a signal", bin);
    return WEXITSTATUS(st);
}

Test(config, print_config_equals_committed_file)
{
    char *out;
    const char *args[] = {"--print-config", NULL};
    cr_assert_eq(run_wait("trellis-kvs", args, &out), 0, "%s", out);
    char path[4200];
    char *file = read_file(src_path("deploy/trellis.yml", path, sizeof(path)), NULL);
    /* The committed file is the output below its comment header. */
    char *body = strstr(file, "\ncluster:\n");
    cr_assert_not_null(body, "no cluster section in deploy/trellis.yml");
    body++;
    cr_assert(strncmp(out, "cluster:\n", 9) == 0, "output does not start with 'cluster:'");
    if (strcmp(out, body) != 0) {
        /* Name the first differing line. */
        size_t lineno = 1, i = 0;
        while (out[i] && out[i] == body[i]) {
            if (out[i] == '\n')
                lineno++;
            i++;
        }
        cr_assert_fail(
            "--print-config differs from deploy/trellis.yml at line %zu: '%.60s' vs '%.60s'",
            lineno, out + i, body + i);
    }
    /* The router prints the same schema. */
    char *rout;
    cr_assert_eq(run_wait("trellis-route", args, &rout), 0);
    cr_assert_str_eq(rout, out);
    free(rout);
    free(out);
    free(file);
}

/* The base layer and the client library have defaults of their own (they
 * read no configuration file): the schema's must be the same. */
Test(config, defaults_match_base_and_client)
{
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    wire_limits from_cfg, def;
    config_wire_limits(c, &from_cfg);
    wire_limits_default(&def);
    cr_assert_eq(from_cfg.max_message, def.max_message);
    cr_assert_eq(from_cfg.max_key, def.max_key);
    cr_assert_eq(from_cfg.max_value, def.max_value);
    cr_assert_eq(from_cfg.max_ops, def.max_ops);
    cr_assert_eq(from_cfg.max_set_members, def.max_set_members);
    cr_assert_eq(from_cfg.budget_factor, def.budget_factor);
    trellis_options o;
    trellis_options_init(&o);
    cr_assert_eq(o.timeout_ms, c->client.timeout_ms);
    cr_assert_eq(o.retries, c->client.retries);
    cr_assert_eq(o.ack, c->client.ack == CONFIG_ACK_ALL ? TRELLIS_ACK_ALL : TRELLIS_ACK_ONE);
    cr_assert_eq(o.report_latency, (int)c->client.report_latency);
    cr_assert_eq(o.max_message_bytes, (size_t)c->limits.max_message_bytes);
    /* An override reaches the limits. */
    char err[CONFIG_ERR_MAX];
    cr_assert_eq(config_set(c, "limits.max_ops_per_batch", "12", err, sizeof(err)), TRELLIS_OK);
    cr_assert_eq(config_set(c, "limits.max_key_bytes", "100", err, sizeof(err)), TRELLIS_OK);
    config_wire_limits(c, &from_cfg);
    cr_assert_eq(from_cfg.max_ops, 12);
    cr_assert_eq(from_cfg.max_key, 100);
    free(c);
}

Test(config, missing_file)
{
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    char err[CONFIG_ERR_MAX] = "";
    char path[4200];
    snprintf(path, sizeof(path), "%s/no-such.yml", tmpdir);
    cr_assert_eq(config_load_file(c, path, err, sizeof(err)), TRELLIS_NOT_FOUND);
    cr_assert(strstr(err, path), "'%s' does not name the file", err);
    free(c);
}

typedef struct bad_case {
    const char *yaml;
    int line;
    const char *key; /* text the message must contain */
} bad_case;

Test(config, bad_files_name_file_line_and_key)
{
    static const bad_case cases[] = {
        /* unknown key */
        {"kvs:\n  threads: 2\n  thraeds: 3\n", 3, "kvs.thraeds"},
        /* unknown section */
        {"cluster:\n  vnodes: 8\nkvss:\n  threads: 2\n", 3, "kvss"},
        /* wrong type */
        {"kvs:\n  threads: many\n", 2, "kvs.threads"},
        {"monitor:\n  busy_high: high\n", 2, "monitor.busy_high"},
        {"kvs:\n  sync_writes: perhaps\n", 2, "kvs.sync_writes"},
        {"kvs:\n  threads: [1, 2]\n", 2, "kvs.threads"},
        {"kvs:\n  threads:\n    a: 1\n", 3, "kvs.threads"},
        {"cluster:\n  routers:\n    a: 1\n", 3, "cluster.routers"},
        /* out of range */
        {"kvs:\n\n  threads: 100000\n", 3, "kvs.threads"},
        {"kvs:\n  gossip_period_ms: 0\n", 2, "kvs.gossip_period_ms"},
        {"monitor:\n  busy_high: 1.5\n", 2, "monitor.busy_high"},
        {"limits:\n  max_message_bytes: 1GiB\n", 2, "limits.max_message_bytes"},
        {"kvs:\n  capacity: -5\n", 2, "kvs.capacity"},
        {"kvs:\n  threads: 1e300\n", 2, "kvs.threads"},
        /* bad enum */
        {"kvs:\n  tier: tape\n", 2, "kvs.tier"},
        {"log:\n  level: loud\n", 2, "log.level"},
        /* bad size suffix */
        {"kvs:\n  capacity: 10XiB\n", 2, "kvs.capacity"},
        {"kvs:\n  capacity: 1.5GiB\n", 2, "kvs.capacity"},
        {"kvs:\n  capacity: GiB\n", 2, "kvs.capacity"},
        /* a section that is not a mapping */
        {"kvs: 3\n", 1, "kvs"},
        /* too many list entries */
        {"route:\n  peers: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]\n", 2, "route.peers"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "bad%zu.yml", i);
        const char *path = write_file(name, cases[i].yaml);
        config *c = calloc(1, sizeof(*c));
        config_defaults(c);
        char err[CONFIG_ERR_MAX] = "";
        int rc = config_load_file(c, path, err, sizeof(err));
        cr_assert_eq(rc, TRELLIS_INVALID, "case %zu (%s) loaded", i, cases[i].yaml);
        char where[4300];
        snprintf(where, sizeof(where), "%s:%d:", path, cases[i].line);
        cr_assert(strstr(err, where), "case %zu: '%s' lacks '%s'", i, err, where);
        cr_assert(strstr(err, cases[i].key), "case %zu: '%s' lacks '%s'", i, err, cases[i].key);
        free(c);
    }
    /* A YAML syntax error names the file and line too. */
    const char *path = write_file("syntax.yml", "kvs:\n  threads: 2\n   bad: [\n");
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    char err[CONFIG_ERR_MAX] = "";
    cr_assert_eq(config_load_file(c, path, err, sizeof(err)), TRELLIS_INVALID);
    cr_assert(strstr(err, path), "'%s'", err);
    free(c);
}

Test(config, good_file_values)
{
    const char *path = write_file("good.yml", "# comment\n"
                                              "cluster:\n"
                                              "  routers:\n"
                                              "    - tcp://10.0.0.1:6450\n"
                                              "    - tcp://10.0.0.2:6450\n"
                                              "  disk_replicas: 2\n"
                                              "kvs:\n"
                                              "  tier: DISK\n"
                                              "  capacity: 2 GiB\n"
                                              "  rocksdb_cache_bytes: 64MB\n"
                                              "  max_ops_per_sec: 1e6\n"
                                              "  sync_writes: yes\n"
                                              "  data_dir: \"/var/lib/a b\"\n"
                                              "route:\n"
                                              "  peers: tcp://a:1, tcp://b:2\n"
                                              "monitor:\n"
                                              "  busy_low: 0.25\n"
                                              "log:\n"
                                              "auth:\n");
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    char err[CONFIG_ERR_MAX] = "";
    cr_assert_eq(config_load_file(c, path, err, sizeof(err)), TRELLIS_OK, "%s", err);
    cr_assert_eq(c->cluster.routers.n, 2);
    cr_assert_str_eq(c->cluster.routers.v[1], "tcp://10.0.0.2:6450");
    cr_assert_eq(c->cluster.disk_replicas, 2);
    cr_assert_eq(c->kvs.tier, 2);
    cr_assert_eq(c->kvs.capacity, INT64_C(2) << 30);
    cr_assert_eq(c->kvs.rocksdb_cache_bytes, 64000000);
    cr_assert_eq(c->kvs.max_ops_per_sec, 1000000);
    cr_assert_eq(c->kvs.sync_writes, 1);
    cr_assert_str_eq(c->kvs.data_dir, "/var/lib/a b");
    cr_assert_eq(c->route.peers.n, 2);
    cr_assert_str_eq(c->route.peers.v[0], "tcp://a:1");
    cr_assert_float_eq(c->monitor.busy_low, 0.25, 1e-12);
    /* An empty file is all defaults. */
    path = write_file("empty.yml", "");
    config *d = calloc(1, sizeof(*d)), *e = calloc(1, sizeof(*e));
    config_defaults(d);
    config_defaults(e);
    cr_assert_eq(config_load_file(d, path, err, sizeof(err)), TRELLIS_OK, "%s", err);
    assert_same_config(d, e, "empty file");
    free(c);
    free(d);
    free(e);
}

Test(config, set_and_text_forms)
{
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    char err[CONFIG_ERR_MAX] = "", text[4096];
    static const struct {
        const char *key, *in, *out;
    } ok[] = {
        {"limits.unauth_message_bytes", "64KiB", "65536"},
        {"kvs.capacity", "2M", "2000000"},
        {"kvs.capacity", "1gib", "1073741824"},
        {"kvs.capacity", "3 MiB", "3145728"},
        {"kvs.threads", "7", "7"},
        {"kvs.max_ops_per_sec", "2e3", "2000"},
        {"kvs.tier", "disk", "disk"},
        {"kvs.sync_writes", "on", "true"},
        {"kvs.sync_writes", "0", "false"},
        {"log.level", "WARN", "warn"},
        {"monitor.hot_k", "2.5", "2.5"},
        {"cluster.routers", "a, b,c", "a,b,c"},
        {"cluster.routers", "", ""},
        {"cluster.monitor", "tcp://m:1", "tcp://m:1"},
        {"monitor.provisioner", "command", "command"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(config_set(c, ok[i].key, ok[i].in, err, sizeof(err)), TRELLIS_OK, "%s=%s: %s",
                     ok[i].key, ok[i].in, err);
        cr_assert_eq(config_get_text(c, ok[i].key, text, sizeof(text)), TRELLIS_OK);
        cr_assert_str_eq(text, ok[i].out, "%s=%s", ok[i].key, ok[i].in);
    }
    static const struct {
        const char *key, *in;
    } bad[] = {
        {"kvs.capacity", "1KiB"},
        {"kvs.capacity", "12 parsecs"},
        {"kvs.capacity", "-1"},
        {"kvs.capacity", ""},
        {"kvs.capacity", "99999999999999999999999"},
        {"kvs.threads", "2.5"},
        {"kvs.threads", "nan"},
        {"kvs.threads", "12abc"},
        {"kvs.threads", "-0.5"},
        {"monitor.hot_k", "inf"},
        {"monitor.hot_k", "nan"},
        {"monitor.hot_k", "-1"},
        {"kvs.tier", ""},
        {"kvs.tier", "memory|disk"},
        {"kvs.sync_writes", "2"},
        {"kvs.nothing", "1"},
        {"nosection", "1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        config *before = calloc(1, sizeof(*before));
        memcpy(before, c, sizeof(*c));
        err[0] = '\0';
        cr_assert_eq(config_set(c, bad[i].key, bad[i].in, err, sizeof(err)), TRELLIS_INVALID,
                     "%s='%s' accepted", bad[i].key, bad[i].in);
        cr_assert(strstr(err, bad[i].key), "'%s' does not name %s", err, bad[i].key);
        assert_same_config(c, before, "a refused value changed the config");
        free(before);
    }
    cr_assert_eq(config_set_pair(c, "kvs.threads=9", err, sizeof(err)), TRELLIS_OK);
    cr_assert_eq(c->kvs.threads, 9);
    cr_assert_eq(config_set_pair(c, "kvs.threads", err, sizeof(err)), TRELLIS_INVALID);
    cr_assert_eq(config_set_pair(c, "=3", err, sizeof(err)), TRELLIS_INVALID);
    cr_assert_eq(config_get_text(c, "kvs.nothing", text, sizeof(text)), TRELLIS_INVALID);
    free(c);
}

static const daemon_flag flags[] = {
    {"threads", "kvs.threads", "N", "shard threads"},
    {"router", "cluster.routers", "URL", "router (repeatable)"},
    {"capacity", "kvs.capacity", "BYTES", "capacity"},
    {NULL, NULL, NULL, NULL},
};

static int parse(config *c, const char *const *args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)"prog";
    for (; *args && n < 31; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    return daemon_parse(n, argv, "prog", "a test", flags, c);
}

Test(config, command_line_overrides)
{
    const char *path = write_file("base.yml", "cluster:\n  routers: [tcp://f:1, tcp://f:2]\n"
                                              "kvs:\n  threads: 3\n  gossip_period_ms: 70\n");
    config *c = calloc(1, sizeof(*c));
    /* Flags win over the file wherever --config appears. */
    const char *a1[] = {"--threads",
                        "5",
                        "--set",
                        "kvs.capacity=2GiB",
                        "--config",
                        path,
                        "--kvs.handoff_batch_keys=17",
                        "--kvs.data-dir",
                        "/d",
                        NULL};
    cr_assert_eq(parse(c, a1), DAEMON_RUN);
    cr_assert_eq(c->kvs.threads, 5);
    cr_assert_eq(c->kvs.capacity, INT64_C(2) << 30);
    cr_assert_eq(c->kvs.gossip_period_ms, 70);
    cr_assert_eq(c->kvs.handoff_batch_keys, 17);
    cr_assert_str_eq(c->kvs.data_dir, "/d");
    cr_assert_eq(c->cluster.routers.n, 2, "the file's list");

    /* A repeated list flag: the first use replaces the file's list, the
     * next ones append. */
    const char *a2[] = {"--config", path, "--router", "tcp://x:1", "--router=tcp://y:2", NULL};
    cr_assert_eq(parse(c, a2), DAEMON_RUN);
    cr_assert_eq(c->cluster.routers.n, 2);
    cr_assert_str_eq(c->cluster.routers.v[0], "tcp://x:1");
    cr_assert_str_eq(c->cluster.routers.v[1], "tcp://y:2");
    const char *a3[] = {"--config", path, "--cluster.routers=tcp://z:1,tcp://z:2,tcp://z:3", NULL};
    cr_assert_eq(parse(c, a3), DAEMON_RUN);
    cr_assert_eq(c->cluster.routers.n, 3);
    cr_assert_str_eq(c->cluster.routers.v[2], "tcp://z:3");

    /* Usage errors. */
    const char *bad[][4] = {
        {"--bogus", NULL},        {"--threads", NULL},
        {"--threads", "x", NULL}, {"--set", "kvs.threads", NULL},
        {"--kvs.nope=1", NULL},   {"stray", NULL},
        {"--config", NULL},       {"--monitor.busy_low=0.95", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(c, bad[i]), DAEMON_USAGE, "case %zu (%s) accepted", i, bad[i][0]);
    free(c);
}

Test(config, check_relations)
{
    static const struct {
        const char *set[2];
        const char *names;
    } cases[] = {
        {{"monitor.busy_low=0.8", "monitor.busy_high=0.7"}, "busy_low"},
        {{"monitor.busy_low=0.7", "monitor.busy_high=0.7"}, "busy_low"},
        {{"monitor.capacity_low=0.9", NULL}, "capacity_low"},
        {{"monitor.min_memory_nodes=9", NULL}, "minimum"},
        {{"monitor.min_disk_nodes=3", "monitor.max_disk_nodes=2"}, "minimum"},
        {{"limits.max_message_bytes=1MiB", "limits.max_value_bytes=1MiB"}, "max_message_bytes"},
        {{"cluster.memory_replicas=0", "cluster.disk_replicas=0"}, "replicas"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config *c = calloc(1, sizeof(*c));
        config_defaults(c);
        char err[CONFIG_ERR_MAX] = "";
        for (int j = 0; j < 2; j++)
            if (cases[i].set[j])
                cr_assert_eq(config_set_pair(c, cases[i].set[j], err, sizeof(err)), TRELLIS_OK,
                             "%s", err);
        cr_assert_eq(config_check(c, err, sizeof(err)), TRELLIS_INVALID, "case %zu passed", i);
        cr_assert(strstr(err, cases[i].names), "case %zu: '%s'", i, err);
        free(c);
    }
    /* Each tier alone is a valid cluster. */
    config *c = calloc(1, sizeof(*c));
    config_defaults(c);
    char err[CONFIG_ERR_MAX];
    config_set_pair(c, "cluster.memory_replicas=0", err, sizeof(err));
    cr_assert_eq(config_check(c, err, sizeof(err)), TRELLIS_OK, "%s", err);
    free(c);
}

static void assert_usage(const char *bin, const char *const *args, const char *needle)
{
    char *out;
    int st = run_wait(bin, args, &out);
    cr_assert_eq(st, 2, "%s %s: exit status %d, output '%s'", bin, args[0], st, out);
    cr_assert(strncmp(out, "error: ", 7) == 0, "%s %s: output '%s'", bin, args[0], out);
    cr_assert(strstr(out, needle), "%s %s: '%s' lacks '%s'", bin, args[0], out, needle);
    free(out);
}

Test(config, binaries_exit_2_on_bad_configuration)
{
    const char *bad = write_file("bad.yml", "kvs:\n  threads: 2\n  bogus_key: 1\n");
    char where[4300];
    snprintf(where, sizeof(where), "%s:3", bad);
    const char *a1[] = {"--config", bad, NULL};
    assert_usage("trellis-kvs", a1, where);
    assert_usage("trellis-kvs", a1, "kvs.bogus_key");
    assert_usage("trellis-route", a1, "kvs.bogus_key");
    const char *badval = write_file("badval.yml", "kvs:\n  capacity: 12XB\n");
    const char *a2[] = {"--config", badval, NULL};
    assert_usage("trellis-kvs", a2, "kvs.capacity");
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/absent.yml", tmpdir);
    const char *a3[] = {"--config", missing, NULL};
    assert_usage("trellis-kvs", a3, missing);
    const char *a4[] = {"--bogus", NULL};
    assert_usage("trellis-route", a4, "--bogus");
    assert_usage("trellis-kvs", a4, "--bogus");
    const char *a5[] = {"--kvs.threads=lots", NULL};
    assert_usage("trellis-kvs", a5, "kvs.threads");
    const char *a6[] = {"--tier", "tape", NULL};
    assert_usage("trellis-kvs", a6, "kvs.tier");
    const char *a7[] = {"--monitor.busy_low=0.99", NULL};
    assert_usage("trellis-route", a7, "busy_low");
    /* --help and --version exit 0. */
    char *out;
    const char *h[] = {"--help", NULL};
    cr_assert_eq(run_wait("trellis-kvs", h, &out), 0);
    cr_assert(strstr(out, "usage: trellis-kvs"), "%s", out);
    free(out);
    const char *v[] = {"--version", NULL};
    cr_assert_eq(run_wait("trellis-route", v, &out), 0);
    free(out);
}
