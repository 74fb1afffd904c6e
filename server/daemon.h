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
    const char *arg;  /* argument name for --help; NULL: a switch that sets the key to true
                         (--name=false still works) */
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

/* Bounds the cleanup of a daemon that stopped with `status` (its run
 * returned): call it between the run and the cleanup. A detached thread
 * ends the process with `status` (_exit: nothing else runs) and a warning
 * in the log once process.exit_grace_ms, plus `wait_ms` that the cleanup
 * may spend waiting on purpose (the monitor stopping the nodes it started),
 * passed; a cleanup that finishes first returns from main as usual. By then the daemon has departed
 * or was told to stop, so nothing it still holds needs the cleanup for the data's sake (RocksDB's
 * log is written through to the kernel with every write), and a cleanup that hangs (a library, a
 * disk) must not leave a process that never exits. Honours the testing knob
 * process.fault_exit_stall_ms (the cleanup waits that long first). */
void daemon_bound_exit(const config *cfg, int status, int64_t wait_ms);

#endif
