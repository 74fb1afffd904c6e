/*
 * config.h - the cluster configuration: one YAML file (deploy/trellis.yml)
 * shared by every daemon, every key defaulted, every key overridable from
 * the command line.
 *
 * The schema (names, types, ranges, defaults, one-line docs) is a single
 * table in config.c; deploy/trellis.yml documents the same keys and a test
 * keeps the two in step. Keys are `section.name`. Unknown keys, values of
 * the wrong type and values out of range are errors naming the key.
 */
#ifndef TRELLIS_CONFIG_H
#define TRELLIS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/net.h"
#include "base/tls.h"
#include "base/wire.h"

#define CONFIG_STR_MAX  256 /* bytes of a string value, NUL included */
#define CONFIG_LIST_MAX 16  /* entries of a list value */
#define CONFIG_ERR_MAX  512 /* bytes of an error message */

typedef struct config_list {
    int n;
    char v[CONFIG_LIST_MAX][CONFIG_STR_MAX];
} config_list;

enum { CONFIG_ACK_ONE = 0, CONFIG_ACK_ALL = 1 };
enum { CONFIG_PROV_LOCAL = 0, CONFIG_PROV_KUBERNETES = 1, CONFIG_PROV_COMMAND = 2 };

typedef struct config {
    struct {
        char name[CONFIG_STR_MAX];
        config_list routers;          /* router URLs nodes, clients and the monitor contact */
        char monitor[CONFIG_STR_MAX]; /* monitor URL nodes report statistics to ("" = none) */
        int64_t vnodes;
        int64_t memory_replicas;
        int64_t disk_replicas;
    } cluster;
    struct {
        int64_t max_message_bytes;
        int64_t max_key_bytes;
        int64_t max_value_bytes;
        int64_t max_ops_per_batch;
        int64_t max_set_members;
        int64_t unauth_message_bytes;
        int64_t handshake_ms;
        int64_t decode_budget_factor;
    } limits;
    struct {
        char id[CONFIG_STR_MAX];
        int64_t tier; /* RING_TIER_MEMORY / RING_TIER_DISK */
        int64_t threads;
        char listen[CONFIG_STR_MAX];
        char advertise[CONFIG_STR_MAX];
        int64_t port_base;
        int64_t admin_port;
        int64_t data_port;
        int64_t metrics_port;
        char data_dir[CONFIG_STR_MAX];
        int64_t capacity;
        int64_t gossip_period_ms;
        int64_t anti_entropy_period_ms;
        int64_t expiry_grace_ms;
        int64_t heartbeat_period_ms;
        int64_t stats_period_ms;
        int64_t handoff_batch_keys;
        int64_t max_ops_per_sec;
        int64_t max_pending;
        double cpu_limit;
        int64_t join_timeout_ms;
        int64_t force_active;
        int64_t drain_timeout_ms;
        int64_t force_depart;
        int64_t exit_after_depart;
        int64_t sync_writes;
        int64_t rocksdb_cache_bytes;
        int64_t rocksdb_write_buffer_bytes;
        int64_t fault_drop_percent;
        int64_t fault_dup_percent;
        int64_t fault_delay_ms;
        int64_t fault_hold_ms;
        int64_t fault_seed;
    } kvs;
    struct {
        char id[CONFIG_STR_MAX];
        char listen[CONFIG_STR_MAX];
        int64_t port;
        config_list peers;
        int64_t metrics_port;
        int64_t resp_port;
        int64_t node_timeout_ms;
        int64_t gossip_period_ms;
        int64_t resp_max_clients;
        int64_t resp_max_pending;
    } route;
    struct {
        char listen[CONFIG_STR_MAX];
        int64_t port;
        int64_t metrics_port;
        int64_t period_ms;
        char log_file[CONFIG_STR_MAX];
        int64_t provisioner;
        char command[CONFIG_STR_MAX];
        char kubectl[CONFIG_STR_MAX];
        char namespace_[CONFIG_STR_MAX];
        char statefulset_memory[CONFIG_STR_MAX];
        char statefulset_disk[CONFIG_STR_MAX];
        char state_dir[CONFIG_STR_MAX];
        char kvs_binary[CONFIG_STR_MAX];
        int64_t local_port_base;
        int64_t local_threads;
        int64_t min_memory_nodes;
        int64_t max_memory_nodes;
        int64_t min_disk_nodes;
        int64_t max_disk_nodes;
        double busy_high;
        double busy_low;
        double capacity_high;
        double capacity_low;
        int64_t latency_slo_us;
        int64_t slo_periods;
        int64_t grace_ms;
        int64_t elasticity;
        int64_t hot_keys;
        double hot_k;
        int64_t hot_min_rate;
        double hot_min_share;
        double hot_cool_ratio;
        int64_t hot_replicas;
        int64_t cool_periods;
        int64_t tiering;
        int64_t demote_idle_ms;
        int64_t promote_reads;
        int64_t promote_max;
    } monitor;
    struct {
        int64_t timeout_ms;
        int64_t retries;
        int64_t ack;
        int64_t report_latency;
    } client;
    struct {
        char ca_file[CONFIG_STR_MAX];
        char cert_key_file[CONFIG_STR_MAX];
        char server_name[CONFIG_STR_MAX];
        int64_t mutual;
    } tls;
    struct {
        char token_file[CONFIG_STR_MAX];
        char token[CONFIG_STR_MAX]; /* loaded from token_file, never from YAML */
    } auth;
    struct {
        int64_t level;
    } log;
    struct {
        int64_t exit_grace_ms;
        int64_t fault_exit_stall_ms;
    } process;
} config;

/* Fills cfg with every default. */
void config_defaults(config *cfg);

/* Loads a YAML file over cfg (which should hold defaults). On error returns
 * TRELLIS_INVALID (bad key or value) or TRELLIS_NOT_FOUND (unreadable file)
 * with a message naming the file, line and key in err; cfg may then be
 * partly updated and should be discarded. */
int config_load_file(config *cfg, const char *path, char *err, size_t errlen);

/* Same, from a buffer (for tests and fuzzing). */
int config_load_buffer(config *cfg, const char *buf, size_t len, const char *name, char *err,
                       size_t errlen);

/* Sets one key ("kvs.threads") from its text form, as a command-line flag
 * does. TRELLIS_INVALID with a message for an unknown key or a bad value. */
int config_set(config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Applies a "KEY=VALUE" override. */
int config_set_pair(config *cfg, const char *pair, char *err, size_t errlen);

/* Reads auth.token_file into auth.token (trailing newline stripped).
 * TRELLIS_OK when no file is configured. */
int config_load_token(config *cfg, char *err, size_t errlen);

/* Checks relations between keys (e.g. busy_low < busy_high). */
int config_check(const config *cfg, char *err, size_t errlen);

/* The `limits` section as the base layer's decoding limits. */
void config_wire_limits(const config *cfg, wire_limits *out);

/* The `tls` section as TLS settings for this process's endpoints
 * (net_tls_new: *out is NULL when tls.ca_file is empty). */
int config_tls_new(const config *cfg, net_tls **out, char *err, size_t errlen);
/* The same settings for the data plane (base/tls.h), as its server side
 * (server 1) or client side: *out is NULL when tls.ca_file is empty. */
int config_dp_tls_new(const config *cfg, int server, tls_ctx **out, char *err, size_t errlen);

/* Iteration over the schema, for --help output and the defaults test. */
typedef struct config_key_info {
    const char *name;
    const char
        *type; /* "string", "int", "size", "bool", "float", "list", or the enum values "a|b" */
    const char *def; /* default in text form */
    const char *doc;
} config_key_info;
size_t config_key_count(void);
void config_key_at(size_t i, config_key_info *out);
/* Text form of a key's current value into buf. */
int config_get_text(const config *cfg, const char *key, char *buf, size_t cap);

#endif
