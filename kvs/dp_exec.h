/*
 * dp_exec.h - the executor (gateway/resp_cmd.h, resp_exec_ops) of the
 * Redis commands a shard serves on its own keys (dp_resp.c). Private to
 * kvs/.
 *
 * A command's operations become the shard_ops of one request, which the
 * shard runs in place (shard_exec); writes carry the shard's clock and a
 * writer id of the shard's own. Strings, sets, counters, keys and expiry
 * run here; hashes and walks of the key space are refused
 * (dp_exec_refused) and the command answers an error that names the
 * gateway, which serves them.
 */
#ifndef TRELLIS_KVS_DP_EXEC_H
#define TRELLIS_KVS_DP_EXEC_H

#include <stddef.h>

#include "gateway/resp_cmd.h"
#include "kvs/shard.h"

typedef struct dp_exec dp_exec;
struct shard_op;
struct shard_res;

/* A new executor for shard s; NULL when out of memory. */
dp_exec *dp_exec_new(shard *s);
void dp_exec_free(dp_exec *x);
resp_exec *dp_exec_base(dp_exec *x);

/* Before a round of commands: no operations, no results. */
void dp_exec_reset(dp_exec *x);
size_t dp_exec_count(const dp_exec *x);
/* 1 if a command asked for an operation the shard does not serve. */
int dp_exec_refused(const dp_exec *x);
/* Drops the operations from the n-th on (those of a refused command) and
 * forgets the refusal. */
void dp_exec_truncate(dp_exec *x, size_t n);
/* The keys of the round were fetched from the disk tier before it was
 * planned (a transaction's look-up), so a key the shard lacks is new. */
void dp_exec_set_fetched(dp_exec *x, int fetched);
/* The operations, copied into scratch (dp_exec_count entries). */
struct shard_op *dp_exec_ops(dp_exec *x, struct shard_op *scratch);
/* The request ran: its results (values copied), or one failure for all.
 * TRELLIS_OK or TRELLIS_INTERNAL. */
int dp_exec_done(dp_exec *x, const struct shard_res *res, size_t n);
int dp_exec_failed(dp_exec *x, int status);

#endif
