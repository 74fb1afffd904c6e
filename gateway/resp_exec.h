/*
 * resp_exec.h - the gateway's executor of Redis commands (resp_cmd.h):
 * the key operations of a round of commands become one libtrellis batch,
 * executed against the cluster at once; walks of the key space (SCAN,
 * KEYS, DBSIZE) run after it with trellis_scan and trellis_dbsize.
 */
#ifndef TRELLIS_RESP_EXEC_H
#define TRELLIS_RESP_EXEC_H

#include "gateway/resp_cmd.h"
#include "trellis/trellis.h"

typedef struct resp_gw_exec resp_gw_exec;

/* A new executor (NULL when out of memory), and its end. */
resp_gw_exec *resp_gw_exec_new(void);
void resp_gw_exec_free(resp_gw_exec *g);
/* The executor as resp_cmd.c sees it. */
resp_exec *resp_gw_exec_base(resp_gw_exec *g);
/* Starts a round: forgets the last one's operations and results. The
 * client (may be NULL until the cluster is reachable: then now_ms is the
 * wall clock) is the one the round will run on. */
void resp_gw_exec_reset(resp_gw_exec *g, trellis_client *client);
/* The number of operations asked for in this round. */
size_t resp_gw_exec_count(const resp_gw_exec *g);
/* Runs the round's operations on the client given to reset. */
void resp_gw_exec_run(resp_gw_exec *g);

#endif
