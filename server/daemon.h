/*
 * daemon.h - command-line handling shared by the daemons: --config FILE,
 * named flags that set configuration keys, the generic --set KEY=VALUE and
 * --section.key=VALUE forms, --help, --version and --print-config.
 */
#ifndef TRELLIS_DAEMON_H
#define TRELLIS_DAEMON_H

#include "server/config.h"

typedef struct daemon_flag {
    const char *name; /* without the leading "--" */
    const char *key;  /* configuration key it sets */
    const char *arg;  /* argument name for --help */
    const char *help;
} daemon_flag;

enum { DAEMON_RUN = 0, DAEMON_EXIT_OK = 1, DAEMON_USAGE = 2 };

/* Fills cfg: defaults, then the --config file, then every flag in order,
 * then the token file and the cross-key checks. Returns DAEMON_RUN,
 * DAEMON_EXIT_OK (after --help, --version or --print-config) or
 * DAEMON_USAGE (the error is printed to stderr as "error: ..."). Flags that
 * are lists (e.g. --router) append when repeated. */
int daemon_parse(int argc, char **argv, const char *prog, const char *summary,
                 const daemon_flag *flags, config *cfg);

/* Prints every key and its current value as YAML. */
void daemon_print_config(const config *cfg);

#endif
