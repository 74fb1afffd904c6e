/*
 * config.c - the configuration schema and its YAML loader (libyaml).
 */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "trellis/trellis_status.h"

#define CONFIG_MAX_FILE_BYTES (1 << 20) /* a config file larger than this is refused */

enum config_kind { K_STR, K_INT, K_SIZE, K_BOOL, K_FLOAT, K_ENUM, K_LIST };

typedef struct config_key {
    const char *name;
    enum config_kind kind;
    size_t off;
    double min, max;   /* K_INT, K_SIZE, K_FLOAT */
    const char *def;   /* text form, parsed like a value from the file */
    const char *enums; /* K_ENUM: "a|b|c", index = stored value (+ enum_base) */
    int enum_base;
    const char *doc;
} config_key;

#define OFF(f) offsetof(config, f)
#define GiB    (1024.0 * 1024 * 1024)
#define TiB    (1024.0 * GiB)

/* The schema. deploy/trellis.yml documents exactly these keys and defaults
 * (tests/server/test_config.c checks it). */
static const config_key config_keys[] = {
    {"cluster.name", K_STR, OFF(cluster.name), 0, 0, "trellis", NULL, 0,
     "cluster name, shown in logs and metrics"},
    {"cluster.routers", K_LIST, OFF(cluster.routers), 0, 0, "tcp://127.0.0.1:6450", NULL, 0,
     "router URLs that storage nodes, clients and the monitor contact"},
    {"cluster.monitor", K_STR, OFF(cluster.monitor), 0, 0, "", NULL, 0,
     "monitor URL storage nodes send statistics to (empty: no monitor)"},
    {"cluster.vnodes", K_INT, OFF(cluster.vnodes), 1, 1024, "256", NULL, 0,
     "virtual nodes per storage node on the hash ring"},
    {"cluster.memory_replicas", K_INT, OFF(cluster.memory_replicas), 0, 16, "1", NULL, 0,
     "default replicas of each key in the memory tier"},
    {"cluster.disk_replicas", K_INT, OFF(cluster.disk_replicas), 0, 16, "1", NULL, 0,
     "default replicas of each key in the disk tier"},

    {"limits.max_message_bytes", K_SIZE, OFF(limits.max_message_bytes), 4096, 256 << 20, "4MiB",
     NULL, 0, "largest message any endpoint accepts"},
    {"limits.max_key_bytes", K_SIZE, OFF(limits.max_key_bytes), 1, 65535, "1KiB", NULL, 0,
     "largest key"},
    {"limits.max_value_bytes", K_SIZE, OFF(limits.max_value_bytes), 16, 64 << 20, "1MiB", NULL, 0,
     "largest encoded lattice state of one key"},
    {"limits.max_ops_per_batch", K_INT, OFF(limits.max_ops_per_batch), 1, 1 << 20, "4096", NULL, 0,
     "most operations in one request"},
    {"limits.max_set_members", K_INT, OFF(limits.max_set_members), 1, 1 << 24, "65536", NULL, 0,
     "most members of one SET or ORSET"},
    {"limits.unauth_message_bytes", K_SIZE, OFF(limits.unauth_message_bytes), 64, 1 << 20, "4KiB",
     NULL, 0, "largest message accepted before a peer authenticated"},
    {"limits.handshake_ms", K_INT, OFF(limits.handshake_ms), 100, 600000, "10000", NULL, 0,
     "a data-plane connection that has not completed its TLS handshake and sent a whole first "
     "frame (or command) within this many milliseconds is closed"},
    {"limits.decode_budget_factor", K_INT, OFF(limits.decode_budget_factor), 2, 1024, "16", NULL, 0,
     "decoding a message may allocate at most this many times its size (plus 64 KiB and 256 bytes "
     "per allowed operation)"},

    {"kvs.id", K_STR, OFF(kvs.id), 0, 0, "", NULL, 0,
     "node id (empty: derived from the tier and port, e.g. m6500)"},
    {"kvs.tier", K_ENUM, OFF(kvs.tier), 0, 0, "memory", "memory|disk", 1, "storage tier"},
    {"kvs.threads", K_INT, OFF(kvs.threads), 0, 256, "0", NULL, 0,
     "shard threads (0: one per CPU)"},
    {"kvs.listen", K_STR, OFF(kvs.listen), 0, 0, "127.0.0.1", NULL, 0,
     "address the shards and the admin endpoint bind"},
    {"kvs.advertise", K_STR, OFF(kvs.advertise), 0, 0, "", NULL, 0,
     "host other processes use to reach this node (empty: the listen address)"},
    {"kvs.port_base", K_INT, OFF(kvs.port_base), 1, 65535, "6500", NULL, 0,
     "shard i listens on port_base + i"},
    {"kvs.admin_port", K_INT, OFF(kvs.admin_port), 0, 65535, "0", NULL, 0,
     "control endpoint port (0: port_base + threads)"},
    {"kvs.data_port", K_INT, OFF(kvs.data_port), 0, 65535, "0", NULL, 0,
     "shard i serves clients (data-plane frames) on data_port + i (0: port_base + threads + 1)"},
    {"kvs.metrics_port", K_INT, OFF(kvs.metrics_port), 0, 65535, "0", NULL, 0,
     "HTTP port for /metrics and /healthz (0: off)"},
    {"kvs.data_dir", K_STR, OFF(kvs.data_dir), 0, 0, "./data", NULL, 0,
     "directory of the disk tier's RocksDB databases"},
    {"kvs.capacity", K_SIZE, OFF(kvs.capacity), 1 << 20, 64 * TiB, "1GiB", NULL, 0,
     "bytes of lattice state this node stores before refusing writes with OVERLOADED"},
    {"kvs.gossip_period_ms", K_INT, OFF(kvs.gossip_period_ms), 5, 60000, "100", NULL, 0,
     "how often shards send changed keys to the other replicas"},
    {"kvs.anti_entropy_period_ms", K_INT, OFF(kvs.anti_entropy_period_ms), 100, 3600000, "2000",
     NULL, 0, "how often shards compare digests with each peer replica"},
    {"kvs.expiry_grace_ms", K_INT, OFF(kvs.expiry_grace_ms), 0, 1e10, "60000", NULL, 0,
     "how long after its deadline an expired key's tombstone is kept (docs/lattices.md: at "
     "least twice the clock skew plus the anti-entropy and retry horizons)"},
    {"kvs.heartbeat_period_ms", K_INT, OFF(kvs.heartbeat_period_ms), 50, 60000, "500", NULL, 0,
     "how often the node heartbeats to the routers"},
    {"kvs.stats_period_ms", K_INT, OFF(kvs.stats_period_ms), 100, 60000, "1000", NULL, 0,
     "statistics period reported to the monitor"},
    {"kvs.handoff_batch_keys", K_INT, OFF(kvs.handoff_batch_keys), 1, 65536, "256", NULL, 0,
     "keys per hand-off, gossip or repair message"},
    {"kvs.max_ops_per_sec", K_INT, OFF(kvs.max_ops_per_sec), 0, 1e9, "0", NULL, 0,
     "per-shard service-rate cap, a simulation knob for benchmarks (0: unlimited)"},
    {"kvs.max_pending", K_INT, OFF(kvs.max_pending), 1, 1 << 20, "2048", NULL, 0,
     "requests a rate-capped shard queues before refusing with OVERLOADED"},
    {"kvs.cpu_limit", K_FLOAT, OFF(kvs.cpu_limit), 0, 4096, "0", NULL, 0,
     "CPU cores the node may use: at start it moves itself into a cgroup of its own with this "
     "quota (needs a writable cgroup cpu controller). 0: none; the node reports against the "
     "allotment it runs with (its cgroup's quota, a Kubernetes CPU limit, or its CPUs)"},
    {"kvs.join_timeout_ms", K_INT, OFF(kvs.join_timeout_ms), 100, 3600000, "30000", NULL, 0,
     "a join not confirmed by every owner within this long says which shards are missing and "
     "keeps waiting (or, with kvs.force_active, serves)"},
    {"kvs.force_active", K_BOOL, OFF(kvs.force_active), 0, 0, "false", NULL, 0,
     "operator's override: a join still unconfirmed after kvs.join_timeout_ms serves anyway "
     "(logged; observed removes on unconfirmed ranges are refused until they confirm)"},
    {"kvs.drain_timeout_ms", K_INT, OFF(kvs.drain_timeout_ms), 100, 3600000, "60000", NULL, 0,
     "a departure still handing off after this long says so and keeps going (or, with "
     "kvs.force_depart, stops)"},
    {"kvs.force_depart", K_BOOL, OFF(kvs.force_depart), 0, 0, "false", NULL, 0,
     "operator's choice: the drain timeout or a second SIGTERM end a departure before every key "
     "was handed off, logging the keys that leave with the node"},
    {"kvs.exit_after_depart", K_BOOL, OFF(kvs.exit_after_depart), 0, 0, "true", NULL, 0,
     "exit once a departure told through the control endpoint completes (false: stay, LEFT, "
     "until stopped; for orchestrators that restart exited processes)"},
    {"kvs.sync_writes", K_BOOL, OFF(kvs.sync_writes), 0, 0, "false", NULL, 0,
     "disk tier: fsync the write-ahead log before acknowledging"},
    {"kvs.rocksdb_cache_bytes", K_SIZE, OFF(kvs.rocksdb_cache_bytes), 1 << 20, 64 * GiB, "64MiB",
     NULL, 0, "disk tier: block cache per node"},
    {"kvs.rocksdb_write_buffer_bytes", K_SIZE, OFF(kvs.rocksdb_write_buffer_bytes), 1 << 20,
     4 * GiB, "16MiB", NULL, 0, "disk tier: memtable size per shard"},
    {"kvs.fault_drop_percent", K_INT, OFF(kvs.fault_drop_percent), 0, 100, "0", NULL, 0,
     "testing only: drop this share of outgoing replication messages"},
    {"kvs.fault_dup_percent", K_INT, OFF(kvs.fault_dup_percent), 0, 100, "0", NULL, 0,
     "testing only: send this share of outgoing replication messages twice"},
    {"kvs.fault_delay_ms", K_INT, OFF(kvs.fault_delay_ms), 0, 60000, "0", NULL, 0,
     "testing only: hold outgoing replication messages up to this long"},
    {"kvs.fault_hold_ms", K_INT, OFF(kvs.fault_hold_ms), 0, 60000, "0", NULL, 0,
     "testing only: acknowledge every client write this much later (deferred replies)"},
    {"kvs.fault_seed", K_INT, OFF(kvs.fault_seed), 0, 1e15, "0", NULL, 0,
     "testing only: seed of the faults above (0: from the clock), so that a test's seed replays "
     "its losses"},

    {"route.id", K_STR, OFF(route.id), 0, 0, "", NULL, 0,
     "router id (empty: derived from the port, e.g. r6450)"},
    {"route.listen", K_STR, OFF(route.listen), 0, 0, "127.0.0.1", NULL, 0,
     "address the router binds"},
    {"route.port", K_INT, OFF(route.port), 1, 65535, "6450", NULL, 0, "router port"},
    {"route.peers", K_LIST, OFF(route.peers), 0, 0, "", NULL, 0,
     "other routers' URLs to gossip membership with"},
    {"route.metrics_port", K_INT, OFF(route.metrics_port), 0, 65535, "0", NULL, 0,
     "HTTP port for /metrics and /healthz (0: off)"},
    {"route.resp_port", K_INT, OFF(route.resp_port), 0, 65535, "0", NULL, 0,
     "port of the Redis protocol gateway (0: off)"},
    {"route.node_timeout_ms", K_INT, OFF(route.node_timeout_ms), 100, 3600000, "3000", NULL, 0,
     "a node without a heartbeat for this long is marked DEAD"},
    {"route.gossip_period_ms", K_INT, OFF(route.gossip_period_ms), 10, 60000, "500", NULL, 0,
     "how often routers exchange membership"},
    {"route.resp_max_clients", K_INT, OFF(route.resp_max_clients), 1, 100000, "1024", NULL, 0,
     "Redis gateway: most connections"},
    {"route.resp_max_pending", K_INT, OFF(route.resp_max_pending), 1, 65536, "1024", NULL, 0,
     "Redis gateway: most commands in flight per connection"},

    {"monitor.listen", K_STR, OFF(monitor.listen), 0, 0, "127.0.0.1", NULL, 0,
     "address the monitor binds"},
    {"monitor.port", K_INT, OFF(monitor.port), 1, 65535, "6460", NULL, 0, "monitor port"},
    {"monitor.metrics_port", K_INT, OFF(monitor.metrics_port), 0, 65535, "0", NULL, 0,
     "HTTP port for /metrics and /healthz (0: off)"},
    {"monitor.period_ms", K_INT, OFF(monitor.period_ms), 100, 3600000, "1000", NULL, 0,
     "policy evaluation period"},
    {"monitor.log_file", K_STR, OFF(monitor.log_file), 0, 0, "monitor-decisions.jsonl", NULL, 0,
     "decision log, one JSON line per decision"},
    {"monitor.provisioner", K_ENUM, OFF(monitor.provisioner), 0, 0, "local",
     "local|kubernetes|command", 0, "how nodes are added and removed"},
    {"monitor.command", K_STR, OFF(monitor.command), 0, 0, "", NULL, 0,
     "command provisioner: script run as SCRIPT add|remove TIER NODE"},
    {"monitor.kubectl", K_STR, OFF(monitor.kubectl), 0, 0, "kubectl", NULL, 0,
     "kubernetes provisioner: kubectl binary"},
    {"monitor.namespace", K_STR, OFF(monitor.namespace_), 0, 0, "trellis", NULL, 0,
     "kubernetes provisioner: namespace"},
    {"monitor.statefulset_memory", K_STR, OFF(monitor.statefulset_memory), 0, 0, "trellis-memory",
     NULL, 0, "kubernetes provisioner: memory tier StatefulSet"},
    {"monitor.statefulset_disk", K_STR, OFF(monitor.statefulset_disk), 0, 0, "trellis-disk", NULL,
     0, "kubernetes provisioner: disk tier StatefulSet"},
    {"monitor.state_dir", K_STR, OFF(monitor.state_dir), 0, 0, ".trellis", NULL, 0,
     "local provisioner: directory for the nodes it starts"},
    {"monitor.kvs_binary", K_STR, OFF(monitor.kvs_binary), 0, 0, "", NULL, 0,
     "local provisioner: trellis-kvs path (empty: next to trellis-monitor)"},
    {"monitor.local_port_base", K_INT, OFF(monitor.local_port_base), 1, 65535, "7000", NULL, 0,
     "local provisioner: first port of the nodes it starts"},
    {"monitor.local_threads", K_INT, OFF(monitor.local_threads), 1, 256, "2", NULL, 0,
     "local provisioner: shard threads of the nodes it starts"},
    {"monitor.min_memory_nodes", K_INT, OFF(monitor.min_memory_nodes), 0, 4096, "1", NULL, 0,
     "elasticity never goes below this many memory nodes"},
    {"monitor.max_memory_nodes", K_INT, OFF(monitor.max_memory_nodes), 0, 4096, "8", NULL, 0,
     "elasticity never goes above this many memory nodes"},
    {"monitor.min_disk_nodes", K_INT, OFF(monitor.min_disk_nodes), 0, 4096, "0", NULL, 0,
     "elasticity never goes below this many disk nodes"},
    {"monitor.max_disk_nodes", K_INT, OFF(monitor.max_disk_nodes), 0, 4096, "8", NULL, 0,
     "elasticity never goes above this many disk nodes"},
    {"monitor.busy_high", K_FLOAT, OFF(monitor.busy_high), 0, 1, "0.7", NULL, 0,
     "add a node when a tier's average busy fraction is above this"},
    {"monitor.busy_low", K_FLOAT, OFF(monitor.busy_low), 0, 1, "0.2", NULL, 0,
     "remove a node when every node of the tier is below this"},
    {"monitor.capacity_high", K_FLOAT, OFF(monitor.capacity_high), 0, 1, "0.8", NULL, 0,
     "add a node (or demote keys) when a tier's storage use is above this share"},
    {"monitor.capacity_low", K_FLOAT, OFF(monitor.capacity_low), 0, 1, "0.3", NULL, 0,
     "storage use below which a node may be removed"},
    {"monitor.latency_slo_us", K_INT, OFF(monitor.latency_slo_us), 0, 1e9, "10000", NULL, 0,
     "p99 latency objective in microseconds (0: none)"},
    {"monitor.slo_periods", K_INT, OFF(monitor.slo_periods), 1, 1000, "2", NULL, 0,
     "periods a high mark or a missed objective must last before adding a node"},
    {"monitor.grace_ms", K_INT, OFF(monitor.grace_ms), 0, 3600000, "10000", NULL, 0,
     "no further action of the same policy for this long after one"},
    {"monitor.elasticity", K_BOOL, OFF(monitor.elasticity), 0, 0, "true", NULL, 0,
     "enable adding and removing nodes"},
    {"monitor.hot_keys", K_BOOL, OFF(monitor.hot_keys), 0, 0, "true", NULL, 0,
     "enable hot-key replication"},
    {"monitor.hot_k", K_FLOAT, OFF(monitor.hot_k), 0, 1000, "3", NULL, 0,
     "a key is hot when its access rate exceeds mean + hot_k standard deviations"},
    {"monitor.hot_min_rate", K_INT, OFF(monitor.hot_min_rate), 0, 1e9, "200", NULL, 0,
     "and at least this many accesses per second"},
    {"monitor.hot_min_share", K_FLOAT, OFF(monitor.hot_min_share), 0, 1, "0.02", NULL, 0,
     "and at least this share of the tier's accesses"},
    {"monitor.hot_cool_ratio", K_FLOAT, OFF(monitor.hot_cool_ratio), 0, 1, "0.5", NULL, 0,
     "a hot key returns to the default only below this share of the mark that made it hot"},
    {"monitor.hot_replicas", K_INT, OFF(monitor.hot_replicas), 1, 16, "3", NULL, 0,
     "memory replicas of a hot key"},
    {"monitor.cool_periods", K_INT, OFF(monitor.cool_periods), 1, 100000, "5", NULL, 0,
     "periods below the low mark (hot_cool_ratio) before a hot key returns to the default"},
    {"monitor.tiering", K_BOOL, OFF(monitor.tiering), 0, 0, "true", NULL, 0,
     "enable moving keys between tiers"},
    {"monitor.demote_idle_ms", K_INT, OFF(monitor.demote_idle_ms), 100, 1e10, "60000", NULL, 0,
     "memory-tier keys not read for this long move to the disk tier"},
    {"monitor.promote_reads", K_INT, OFF(monitor.promote_reads), 1, 1e9, "20", NULL, 0,
     "disk-tier keys whose reads found a value this many times in a period move back to memory"},
    {"monitor.promote_max", K_INT, OFF(monitor.promote_max), 1, 256, "64", NULL, 0,
     "keys promoted per period at most (the most read first)"},

    {"client.timeout_ms", K_INT, OFF(client.timeout_ms), 1, 3600000, "2000", NULL, 0,
     "deadline of one client call"},
    {"client.retries", K_INT, OFF(client.retries), 0, 100, "4", NULL, 0,
     "retries after WRONG_SHARD or an unreachable replica, within the deadline"},
    {"client.ack", K_ENUM, OFF(client.ack), 0, 0, "one", "one|all", 0,
     "writes return after one replica merged them, or after all did"},
    {"client.report_latency", K_BOOL, OFF(client.report_latency), 0, 0, "true", NULL, 0,
     "send the latency of the client's calls, sampled, to the cluster's monitor (which the "
     "routers name) about once a second"},

    {"tls.ca_file", K_STR, OFF(tls.ca_file), 0, 0, "", NULL, 0,
     "CA certificate (PEM); setting it makes every process listen on, advertise and dial "
     "tls+tcp:// (tcp:// URLs are upgraded)"},
    {"tls.cert_key_file", K_STR, OFF(tls.cert_key_file), 0, 0, "", NULL, 0,
     "this process's certificate and private key (PEM, one file)"},
    {"tls.server_name", K_STR, OFF(tls.server_name), 0, 0, "", NULL, 0,
     "DNS name every server certificate must carry (empty: only the chain to tls.ca_file is "
     "checked; mbed TLS never matches IP addresses)"},
    {"tls.mutual", K_BOOL, OFF(tls.mutual), 0, 0, "true", NULL, 0,
     "servers require and verify client certificates"},

    {"auth.token_file", K_STR, OFF(auth.token_file), 0, 0, "", NULL, 0,
     "file holding the shared token every peer must present (empty: no authentication)"},

    {"log.level", K_ENUM, OFF(log.level), 0, 0, "info", "debug|info|warn|error|off", 0,
     "lowest level logged"},

    {"process.exit_grace_ms", K_INT, OFF(process.exit_grace_ms), 100, 600000, "10000", NULL, 0,
     "a daemon whose cleanup after it stopped takes longer exits anyway, with the status it "
     "stopped with, and logs that it did"},
    {"process.fault_exit_stall_ms", K_INT, OFF(process.fault_exit_stall_ms), 0, 600000, "0", NULL,
     0, "testing only: the cleanup after a daemon stopped waits this long before it starts"},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static void config_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const config_key *config_find(const char *name)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

/* Parses a size: an integer with an optional K/M/G/T (1000s) or
 * KiB/MiB/GiB/TiB (1024s) suffix. */
static int config_parse_size(const char *s, double *out)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-')
        return -1;
    while (*end == ' ')
        end++;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},      {"b", 1},    {"k", 1e3},         {"kb", 1e3}, {"kib", 1024.0},
                 {"m", 1e6},   {"mb", 1e6}, {"mib", 1048576.0}, {"g", 1e9},  {"gb", 1e9},
                 {"gib", GiB}, {"t", 1e12}, {"tb", 1e12},       {"tib", TiB}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            *out = (double)v * units[i].mult;
            return 0;
        }
    }
    return -1;
}

static int config_parse_bool(const char *s, int64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Index of `s` among the '|'-separated names, or -1. */
static int config_enum_index(const char *names, const char *s)
{
    int idx = 0;
    size_t slen = strlen(s);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == slen && strncasecmp(p, s, n) == 0)
            return idx;
        idx++;
        p += n + (bar ? 1 : 0);
        if (!bar)
            break;
    }
    return -1;
}

static int config_enum_name(const char *names, int idx, char *buf, size_t cap)
{
    const char *p = names;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p)
        return -1;
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, cap, "%.*s", (int)n, p);
    return 0;
}

static int config_list_add(config_list *l, const char *v)
{
    if (l->n >= CONFIG_LIST_MAX || strlen(v) >= CONFIG_STR_MAX)
        return -1;
    snprintf(l->v[l->n++], CONFIG_STR_MAX, "%s", v);
    return 0;
}

/* Sets key k from text. For lists, `value` is one entry when `append` is set,
 * else a comma-separated list replacing the old one. */
static int config_set_key(config *cfg, const config_key *k, const char *value, int append,
                          char *err, size_t errlen)
{
    char *field = (char *)cfg + k->off;
    switch (k->kind) {
    case K_STR:
        if (strlen(value) >= CONFIG_STR_MAX) {
            config_err(err, errlen, "%s: value longer than %d bytes", k->name, CONFIG_STR_MAX - 1);
            return TRELLIS_INVALID;
        }
        snprintf(field, CONFIG_STR_MAX, "%s", value);
        return TRELLIS_OK;
    case K_INT: {
        errno = 0;
        char *end;
        double v;
        long long iv = strtoll(value, &end, 10);
        if (end != value && *end == '\0' && !errno) {
            v = (double)iv;
        } else {
            /* Allow 1e9-style numbers where they are exact integers. */
            v = strtod(value, &end);
            if (end == value || *end != '\0' || v != floor(v)) {
                config_err(err, errlen, "%s: expected an integer, got '%s'", k->name, value);
                return TRELLIS_INVALID;
            }
            /* Converting a double beyond long long is undefined; such a
             * value fails the range check below anyway. */
            iv = fabs(v) < 0x1p62 ? (long long)v : 0;
        }
        if (v < k->min || v > k->max) {
            config_err(err, errlen, "%s: %s is out of range [%.0f, %.0f]", k->name, value, k->min,
                       k->max);
            return TRELLIS_INVALID;
        }
        *(int64_t *)field = iv;
        return TRELLIS_OK;
    }
    case K_SIZE: {
        double v;
        if (config_parse_size(value, &v) != 0) {
            config_err(err, errlen, "%s: expected a size such as 4096, 64KiB or 1GiB, got '%s'",
                       k->name, value);
            return TRELLIS_INVALID;
        }
        if (v < k->min || v > k->max) {
            config_err(err, errlen, "%s: %s is out of range [%.0f, %.0f] bytes", k->name, value,
                       k->min, k->max);
            return TRELLIS_INVALID;
        }
        *(int64_t *)field = (int64_t)v;
        return TRELLIS_OK;
    }
    case K_BOOL:
        if (config_parse_bool(value, (int64_t *)field) != 0) {
            config_err(err, errlen, "%s: expected true or false, got '%s'", k->name, value);
            return TRELLIS_INVALID;
        }
        return TRELLIS_OK;
    case K_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || errno || isnan(v)) {
            config_err(err, errlen, "%s: expected a number, got '%s'", k->name, value);
            return TRELLIS_INVALID;
        }
        if (v < k->min || v > k->max) {
            config_err(err, errlen, "%s: %s is out of range [%g, %g]", k->name, value, k->min,
                       k->max);
            return TRELLIS_INVALID;
        }
        *(double *)field = v;
        return TRELLIS_OK;
    }
    case K_ENUM: {
        int idx = config_enum_index(k->enums, value);
        if (idx < 0) {
            config_err(err, errlen, "%s: expected one of %s, got '%s'", k->name, k->enums, value);
            return TRELLIS_INVALID;
        }
        *(int64_t *)field = idx + k->enum_base;
        return TRELLIS_OK;
    }
    case K_LIST: {
        config_list *l = (config_list *)field;
        if (append) {
            if (config_list_add(l, value) != 0) {
                config_err(err, errlen, "%s: more than %d entries or an entry over %d bytes",
                           k->name, CONFIG_LIST_MAX, CONFIG_STR_MAX - 1);
                return TRELLIS_INVALID;
            }
            return TRELLIS_OK;
        }
        config_list nl;
        nl.n = 0;
        char tmp[CONFIG_STR_MAX * 4];
        if (strlen(value) >= sizeof(tmp)) {
            config_err(err, errlen, "%s: value too long", k->name);
            return TRELLIS_INVALID;
        }
        snprintf(tmp, sizeof(tmp), "%s", value);
        char *save = NULL;
        for (char *tok = strtok_r(tmp, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
            if (config_list_add(&nl, tok) != 0) {
                config_err(err, errlen, "%s: more than %d entries or an entry over %d bytes",
                           k->name, CONFIG_LIST_MAX, CONFIG_STR_MAX - 1);
                return TRELLIS_INVALID;
            }
        }
        *l = nl;
        return TRELLIS_OK;
    }
    }
    return TRELLIS_INTERNAL;
}

void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        char err[CONFIG_ERR_MAX];
        int rc = config_set_key(cfg, &config_keys[i], config_keys[i].def, 0, err, sizeof(err));
        (void)rc; /* defaults are valid by construction; the config test checks */
    }
}

int config_set(config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const config_key *k = config_find(key);
    if (!k) {
        config_err(err, errlen, "unknown configuration key '%s'", key);
        return TRELLIS_INVALID;
    }
    return config_set_key(cfg, k, value, 0, err, errlen);
}

int config_set_pair(config *cfg, const char *pair, char *err, size_t errlen)
{
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair) {
        config_err(err, errlen, "expected KEY=VALUE, got '%s'", pair);
        return TRELLIS_INVALID;
    }
    char key[128];
    size_t n = (size_t)(eq - pair);
    if (n >= sizeof(key)) {
        config_err(err, errlen, "unknown configuration key '%.*s'", (int)n, pair);
        return TRELLIS_INVALID;
    }
    memcpy(key, pair, n);
    key[n] = '\0';
    return config_set(cfg, key, eq + 1, err, errlen);
}

/* ---- YAML ------------------------------------------------------------------ */

static const char *config_scalar(yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int config_load_section(config *cfg, yaml_document_t *doc, const char *section,
                               yaml_node_t *map, const char *name, char *err, size_t errlen)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (!kn || !vn || kn->type != YAML_SCALAR_NODE) {
            config_err(err, errlen, "%s: section '%s' must map names to values", name, section);
            return TRELLIS_INVALID;
        }
        char full[160];
        if ((size_t)snprintf(full, sizeof(full), "%s.%s", section, config_scalar(kn)) >=
            sizeof(full)) {
            config_err(err, errlen, "%s:%lu: key name too long", name,
                       (unsigned long)kn->start_mark.line + 1);
            return TRELLIS_INVALID;
        }
        const config_key *k = config_find(full);
        if (!k) {
            config_err(err, errlen, "%s:%lu: unknown key '%s'", name,
                       (unsigned long)kn->start_mark.line + 1, full);
            return TRELLIS_INVALID;
        }
        char kerr[CONFIG_ERR_MAX];
        int rc;
        if (vn->type == YAML_SCALAR_NODE) {
            rc = config_set_key(cfg, k, config_scalar(vn), 0, kerr, sizeof(kerr));
        } else if (vn->type == YAML_SEQUENCE_NODE && k->kind == K_LIST) {
            ((config_list *)((char *)cfg + k->off))->n = 0;
            rc = TRELLIS_OK;
            for (yaml_node_item_t *it = vn->data.sequence.items.start;
                 rc == TRELLIS_OK && it < vn->data.sequence.items.top; it++) {
                yaml_node_t *en = yaml_document_get_node(doc, *it);
                if (!en || en->type != YAML_SCALAR_NODE) {
                    snprintf(kerr, sizeof(kerr), "%s: list entries must be plain values", full);
                    rc = TRELLIS_INVALID;
                    break;
                }
                rc = config_set_key(cfg, k, config_scalar(en), 1, kerr, sizeof(kerr));
            }
        } else {
            snprintf(kerr, sizeof(kerr), "%s: expected a %s", full,
                     k->kind == K_LIST ? "list" : "plain value");
            rc = TRELLIS_INVALID;
        }
        if (rc != TRELLIS_OK) {
            config_err(err, errlen, "%s:%lu: %s", name, (unsigned long)vn->start_mark.line + 1,
                       kerr);
            return rc;
        }
    }
    return TRELLIS_OK;
}

int config_load_buffer(config *cfg, const char *buf, size_t len, const char *name, char *err,
                       size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        config_err(err, errlen, "%s: out of memory", name);
        return TRELLIS_INTERNAL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        config_err(err, errlen, "%s:%lu: YAML error: %s", name,
                   (unsigned long)parser.problem_mark.line + 1,
                   parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        return TRELLIS_INVALID;
    }
    int rc = TRELLIS_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        /* An empty file: all defaults. */
    } else if (root->type != YAML_MAPPING_NODE) {
        config_err(err, errlen, "%s: the top level must be a mapping of sections", name);
        rc = TRELLIS_INVALID;
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
             rc == TRELLIS_OK && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
            yaml_node_t *vn = yaml_document_get_node(&doc, p->value);
            if (!kn || !vn || kn->type != YAML_SCALAR_NODE) {
                config_err(err, errlen, "%s: section names must be plain words", name);
                rc = TRELLIS_INVALID;
                break;
            }
            const char *section = config_scalar(kn);
            int known = 0;
            size_t slen = strlen(section);
            for (size_t i = 0; i < CONFIG_NKEYS && !known; i++)
                known = strncmp(config_keys[i].name, section, slen) == 0 &&
                        config_keys[i].name[slen] == '.';
            if (!known) {
                config_err(err, errlen, "%s:%lu: unknown section '%s'", name,
                           (unsigned long)kn->start_mark.line + 1, section);
                rc = TRELLIS_INVALID;
                break;
            }
            if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0)
                continue; /* "section:" with nothing under it */
            if (vn->type != YAML_MAPPING_NODE) {
                config_err(err, errlen, "%s:%lu: section '%s' must be a mapping", name,
                           (unsigned long)vn->start_mark.line + 1, section);
                rc = TRELLIS_INVALID;
                break;
            }
            rc = config_load_section(cfg, &doc, section, vn, name, err, errlen);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int config_load_file(config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        config_err(err, errlen, "%s: %s", path, strerror(errno));
        return TRELLIS_NOT_FOUND;
    }
    char *buf = malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        config_err(err, errlen, "%s: out of memory", path);
        return TRELLIS_INTERNAL;
    }
    size_t n = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    int ioerr = ferror(f);
    fclose(f);
    int rc;
    if (ioerr) {
        config_err(err, errlen, "%s: read error", path);
        rc = TRELLIS_NOT_FOUND;
    } else if (n > CONFIG_MAX_FILE_BYTES) {
        config_err(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_FILE_BYTES);
        rc = TRELLIS_TOO_LARGE;
    } else {
        rc = config_load_buffer(cfg, buf, n, path, err, errlen);
    }
    free(buf);
    return rc;
}

int config_load_token(config *cfg, char *err, size_t errlen)
{
    cfg->auth.token[0] = '\0';
    if (cfg->auth.token_file[0] == '\0')
        return TRELLIS_OK;
    FILE *f = fopen(cfg->auth.token_file, "rb");
    if (!f) {
        config_err(err, errlen, "auth.token_file %s: %s", cfg->auth.token_file, strerror(errno));
        return TRELLIS_NOT_FOUND;
    }
    size_t n = fread(cfg->auth.token, 1, CONFIG_STR_MAX - 1, f);
    fclose(f);
    cfg->auth.token[n] = '\0';
    while (n > 0 && (cfg->auth.token[n - 1] == '\n' || cfg->auth.token[n - 1] == '\r' ||
                     cfg->auth.token[n - 1] == ' '))
        cfg->auth.token[--n] = '\0';
    if (n == 0) {
        config_err(err, errlen, "auth.token_file %s: empty token", cfg->auth.token_file);
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

int config_check(const config *c, char *err, size_t errlen)
{
    if (c->monitor.busy_low >= c->monitor.busy_high) {
        config_err(err, errlen, "monitor.busy_low (%g) must be below monitor.busy_high (%g)",
                   c->monitor.busy_low, c->monitor.busy_high);
        return TRELLIS_INVALID;
    }
    if (c->monitor.capacity_low >= c->monitor.capacity_high) {
        config_err(err, errlen,
                   "monitor.capacity_low (%g) must be below monitor.capacity_high (%g)",
                   c->monitor.capacity_low, c->monitor.capacity_high);
        return TRELLIS_INVALID;
    }
    if (c->monitor.min_memory_nodes > c->monitor.max_memory_nodes ||
        c->monitor.min_disk_nodes > c->monitor.max_disk_nodes) {
        config_err(err, errlen, "monitor: a tier's minimum node count exceeds its maximum");
        return TRELLIS_INVALID;
    }
    if (c->limits.max_key_bytes + c->limits.max_value_bytes + 1024 > c->limits.max_message_bytes) {
        config_err(err, errlen,
                   "limits.max_message_bytes must exceed max_key_bytes + max_value_bytes + 1 KiB");
        return TRELLIS_INVALID;
    }
    if (c->cluster.memory_replicas + c->cluster.disk_replicas == 0) {
        config_err(err, errlen, "cluster: memory_replicas + disk_replicas must be at least 1");
        return TRELLIS_INVALID;
    }
    return TRELLIS_OK;
}

size_t config_key_count(void)
{
    return CONFIG_NKEYS;
}

static const char *config_kind_name(const config_key *k)
{
    switch (k->kind) {
    case K_STR:
        return "string";
    case K_INT:
        return "int";
    case K_SIZE:
        return "size";
    case K_BOOL:
        return "bool";
    case K_FLOAT:
        return "float";
    case K_LIST:
        return "list";
    case K_ENUM:
        return k->enums;
    }
    return "?";
}

void config_key_at(size_t i, config_key_info *out)
{
    const config_key *k = &config_keys[i < CONFIG_NKEYS ? i : 0];
    out->name = k->name;
    out->type = config_kind_name(k);
    out->def = k->def;
    out->doc = k->doc;
}

int config_get_text(const config *cfg, const char *key, char *buf, size_t cap)
{
    const config_key *k = config_find(key);
    if (!k || cap == 0)
        return TRELLIS_INVALID;
    const char *field = (const char *)cfg + k->off;
    switch (k->kind) {
    case K_STR:
        snprintf(buf, cap, "%s", field);
        break;
    case K_INT:
    case K_SIZE:
        snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field);
        break;
    case K_BOOL:
        snprintf(buf, cap, "%s", *(const int64_t *)field ? "true" : "false");
        break;
    case K_FLOAT:
        snprintf(buf, cap, "%g", *(const double *)field);
        break;
    case K_ENUM:
        if (config_enum_name(k->enums, (int)(*(const int64_t *)field - k->enum_base), buf, cap) !=
            0)
            return TRELLIS_INTERNAL;
        break;
    case K_LIST: {
        const config_list *l = (const config_list *)field;
        size_t n = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "," : "", l->v[i]);
        break;
    }
    }
    return TRELLIS_OK;
}

void config_wire_limits(const config *cfg, wire_limits *out)
{
    out->max_message = (size_t)cfg->limits.max_message_bytes;
    out->max_key = (size_t)cfg->limits.max_key_bytes;
    out->max_value = (size_t)cfg->limits.max_value_bytes;
    out->max_ops = (size_t)cfg->limits.max_ops_per_batch;
    out->max_set_members = (size_t)cfg->limits.max_set_members;
    out->budget_factor = (size_t)cfg->limits.decode_budget_factor;
}

int config_tls_new(const config *cfg, net_tls **out, char *err, size_t errlen)
{
    net_tls_opts o = {cfg->tls.ca_file, cfg->tls.cert_key_file, cfg->tls.server_name,
                      (int)cfg->tls.mutual};
    return net_tls_new(&o, out, err, errlen);
}

int config_dp_tls_new(const config *cfg, int server, tls_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->tls.ca_file[0])
        return TRELLIS_OK;
    tls_opts o = {cfg->tls.ca_file, cfg->tls.cert_key_file, cfg->tls.server_name,
                  (int)cfg->tls.mutual, server};
    return tls_ctx_new(&o, out, err, errlen);
}
