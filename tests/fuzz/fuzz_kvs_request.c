/*
 * fuzz_kvs_request.c - the storage node's whole request path: bytes off the
 * wire -> decode -> validate -> apply to a memory-tier store -> encode the
 * reply. The shard is detached (no socket, no thread) and owns every key of
 * a one-node ring, so every operation reaches the store. State carries over
 * between inputs, as on a real node.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "fuzz.h"
#include "log.h"
#include "shard.h"

static shard *fz_shard;
static tr_config fz_cfg;
static mailbox fz_mb;
static size_t fz_replies;

static void on_reply(void *arg, nng_msg *m)
{
    (void)arg;
    fz_replies++;
    nng_msg_free(m);
}

static void drain_mail(void)
{
    mb_msg *m = mailbox_take(&fz_mb);
    while (m) {
        mb_msg *n = m->next;
        if (m->type == NODE_MSG_STATS)
            free(m->ptr);
        free(m);
        m = n;
    }
}

static void fz_init(void)
{
    log_set_level(LOG_OFF);
    config_defaults(&fz_cfg);
    fz_cfg.limits.max_message_bytes = 1 << 20;
    mailbox_init(&fz_mb);
    store *st;
    if (store_open_memory(64 << 20, &st) != 0)
        abort();
    shard_opts o = {0, 1, "m1", RING_TIER_MEMORY, "inproc://fuzz", st, &fz_cfg, NULL, &fz_mb};
    if (shard_open_detached(&o, on_reply, NULL, &fz_shard) != 0)
        abort();
    ring_node n;
    memset(&n, 0, sizeof(n));
    strcpy(n.id, "m1");
    n.tier = RING_TIER_MEMORY;
    n.state = NODE_ACTIVE;
    n.generation = 1;
    n.shards = 1;
    strcpy(n.endpoint, "inproc://fuzz");
    ring_params p = {16, 1, 0};
    ring *r;
    if (ring_build(&n, 1, NULL, 0, &p, 42, &r) != 0)
        abort();
    shard_feed_ring(fz_shard, ring_ref_new(r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_shard)
        fz_init();
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return 0;
    /* A raw rep request carries its backtrace in the header. */
    nng_msg_header_append_u32(m, 0x80000001u);
    nng_msg_append(m, data, size);
    shard_feed(fz_shard, m);
    drain_mail();
    return 0;
}
