/*
 * daemon.c - command-line handling shared by the daemons.
 */
#include "server/daemon.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "trellis/trellis_status.h"

static void usage(FILE *f, const char *prog, const char *summary, const daemon_flag *flags)
{
    fprintf(f, "usage: %s [--config FILE] [OPTION...]\n\n%s\n\noptions:\n", prog, summary);
    fprintf(f, "  --config FILE          YAML configuration (see deploy/trellis.yml)\n");
    for (const daemon_flag *fl = flags; fl && fl->name; fl++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", fl->name, fl->arg ? fl->arg : "");
        fprintf(f, "  %-22s %s (%s)\n", left, fl->help, fl->key);
    }
    fprintf(
        f,
        "  --set KEY=VALUE        set any configuration key, e.g. --set kvs.gossip_period_ms=50\n"
        "  --KEY=VALUE            the same, e.g. --kvs.gossip_period_ms=50\n"
        "  --print-config         print the effective configuration and exit\n"
        "  --version              print the version and exit\n"
        "  --help                 print this help and exit\n");
}

static const daemon_flag *find_flag(const daemon_flag *flags, const char *name, size_t len)
{
    for (const daemon_flag *fl = flags; fl && fl->name; fl++)
        if (strlen(fl->name) == len && strncmp(fl->name, name, len) == 0)
            return fl;
    return NULL;
}

void daemon_print_config(const config *cfg)
{
    char section[32] = "";
    for (size_t i = 0; i < config_key_count(); i++) {
        config_key_info k;
        config_key_at(i, &k);
        const char *dot = strchr(k.name, '.');
        if (strncmp(section, k.name, (size_t)(dot - k.name)) != 0 ||
            section[dot - k.name] != '\0') {
            snprintf(section, sizeof(section), "%.*s", (int)(dot - k.name), k.name);
            printf("%s%s:\n", i ? "\n" : "", section);
        }
        char v[CONFIG_STR_MAX * 4];
        config_get_text(cfg, k.name, v, sizeof(v));
        printf("  # %s (%s)\n", k.doc, k.type);
        if (strcmp(k.type, "list") == 0)
            printf("  %s: [%s]\n", dot + 1, v);
        else if (strcmp(k.type, "string") == 0)
            printf("  %s: \"%s\"\n", dot + 1, v);
        else
            printf("  %s: %s\n", dot + 1, v);
    }
}

int daemon_parse(int argc, char **argv, const char *prog, const char *summary,
                 const daemon_flag *flags, config *cfg)
{
    char err[CONFIG_ERR_MAX];
    config_defaults(cfg);
    /* The file first, so that flags override it wherever they appear. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *path = NULL;
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s needs a file\n", a);
                return DAEMON_USAGE;
            }
            path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            path = a + 9;
        }
        if (path && config_load_file(cfg, path, err, sizeof(err)) != TRELLIS_OK) {
            fprintf(stderr, "error: config %s\n", err);
            return DAEMON_USAGE;
        }
    }
    int print = 0;
    int list_reset[64] = {0}; /* a repeated list flag appends after its first use */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, prog, summary, flags);
            return DAEMON_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", prog, TRELLIS_VERSION);
            return DAEMON_EXIT_OK;
        }
        if (strcmp(a, "--print-config") == 0) {
            print = 1;
            continue;
        }
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "error: unexpected argument '%s' (see --help)\n", a);
            return DAEMON_USAGE;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        const daemon_flag *fl = find_flag(flags, name, nlen);
        int is_set = nlen == 3 && strncmp(name, "set", 3) == 0;
        int dotted = memchr(name, '.', nlen) != NULL;
        if (!fl && !is_set && !dotted) {
            fprintf(stderr, "error: unknown option '--%.*s' (see --help)\n", (int)nlen, name);
            return DAEMON_USAGE;
        }
        if (!value && fl && !fl->arg) {
            value = "true"; /* a switch: --force-active */
        } else if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: --%.*s needs a value\n", (int)nlen, name);
                return DAEMON_USAGE;
            }
            value = argv[++i];
        }
        int rc;
        if (is_set) {
            rc = config_set_pair(cfg, value, err, sizeof(err));
        } else {
            char key[128];
            if (fl) {
                snprintf(key, sizeof(key), "%s", fl->key);
            } else {
                snprintf(key, sizeof(key), "%.*s", (int)nlen, name);
                for (char *p = key; *p; p++)
                    if (*p == '-')
                        *p = '_';
            }
            config_key_info info = {0};
            for (size_t k = 0; k < config_key_count(); k++) {
                config_key_at(k, &info);
                if (strcmp(info.name, key) == 0)
                    break;
                info.type = NULL;
            }
            if (info.type && strcmp(info.type, "list") == 0 && fl) {
                /* --router a --router b: the first use replaces the file's list. */
                int idx = (int)(fl - flags) % 64;
                char joined[CONFIG_STR_MAX * 4] = "";
                if (list_reset[idx])
                    config_get_text(cfg, key, joined, sizeof(joined));
                size_t jl = strlen(joined);
                snprintf(joined + jl, sizeof(joined) - jl, "%s%s", jl ? "," : "", value);
                list_reset[idx] = 1;
                rc = config_set(cfg, key, joined, err, sizeof(err));
            } else {
                rc = config_set(cfg, key, value, err, sizeof(err));
            }
        }
        if (rc != TRELLIS_OK) {
            fprintf(stderr, "error: %s\n", err);
            return DAEMON_USAGE;
        }
    }
    if (config_check(cfg, err, sizeof(err)) != TRELLIS_OK) {
        fprintf(stderr, "error: config: %s\n", err);
        return DAEMON_USAGE;
    }
    if (print) {
        daemon_print_config(cfg);
        return DAEMON_EXIT_OK;
    }
    if (config_load_token(cfg, err, sizeof(err)) != TRELLIS_OK) {
        fprintf(stderr, "error: %s\n", err);
        return DAEMON_USAGE;
    }
    log_set_level((int)cfg->log.level);
    return DAEMON_RUN;
}

/* ---- the exit bound ------------------------------------------------------------------------ */

static int exit_status;
static int64_t exit_grace_ms;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *exit_watchdog(void *arg)
{
    (void)arg;
    sleep_ms(exit_grace_ms);
    log_warn("cleanup did not finish within %lld ms; exiting with status %d",
             (long long)exit_grace_ms, exit_status);
    _exit(exit_status);
    return NULL;
}

void daemon_bound_exit(const config *cfg, int status, int64_t wait_ms)
{
    exit_status = status;
    exit_grace_ms = cfg->process.exit_grace_ms + (wait_ms > 0 ? wait_ms : 0);
    pthread_t t;
    if (pthread_create(&t, NULL, exit_watchdog, NULL) == 0)
        pthread_detach(t);
    else
        log_warn("cannot start the exit watchdog: the cleanup is not bounded");
    if (cfg->process.fault_exit_stall_ms > 0) {
        log_info("testing: the cleanup waits %lld ms (process.fault_exit_stall_ms)",
                 (long long)cfg->process.fault_exit_stall_ms);
        sleep_ms(cfg->process.fault_exit_stall_ms);
    }
}
