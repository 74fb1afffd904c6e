/*
 * fuzz_kvs_request.c - the storage node's request paths, from bytes off
 * the wire to the store and back, and the replication that follows. State
 * carries over between inputs, as on a real node.
 *
 * An input that starts with a frame's first byte (FRAME_MAGIC0) is what a
 * client sends on a data-plane connection: it goes through a socket pair
 * into the shard's connection layer, which reads it in whatever pieces the
 * socket gives, decodes the frames in place, executes and writes the
 * replies, which the harness reads back; then the client hangs up. Any
 * other input is a peer's message on the shard's nng socket (replication,
 * anti-entropy, fetches of stored states).
 *
 * The fuzzed shard (node m1) is detached (no listener, no thread). After
 * each input its timers run (shard_feed_timers), so what the input wrote
 * goes out by gossip, hand-off and anti-entropy. Its peers: m2, a second
 * detached shard behind a raw rep socket on inproc:// that this harness
 * relays, so replies and acknowledgements come back; and m3, an address
 * nobody serves, so requests also time out and are retried. Every
 * FZ_RING_EVERY inputs the ring changes between {m1, m2} and {m1, m2, m3}
 * (two memory replicas), which moves keys and starts hand-off scans.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "base/frame.h"
#include "base/log.h"
#include "fuzz.h"
#include "kvs/shard.h"

#define FZ_RING_EVERY 64 /* inputs between ring changes */
#define FZ_RELAY_MAX  64 /* peer messages relayed per input */
#define FZ_IO_TURNS   64 /* turns of the shard's loop per data-plane input */

static const char *const fz_ids[] = {"m1", "m2", "m3"};
static const char *const fz_urls[] = {"inproc://fuzz-m1", "inproc://fuzz-m2", "inproc://fuzz-m3"};

static shard *fz_shard, *fz_peer;
static config fz_cfg;
static mailbox fz_mb;
static nng_socket fz_relay; /* m2's address: raw rep, requests go to fz_peer */
static uint64_t fz_inputs, fz_epoch;

static void on_reply(void *arg, nng_msg *m)
{
    (void)arg;
    nng_msg_free(m);
}

/* m2's replies go back through the relay socket to m1's peer pool. */
static void on_peer_reply(void *arg, nng_msg *m)
{
    (void)arg;
    if (nng_sendmsg(fz_relay, m, NNG_FLAG_NONBLOCK) != 0)
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

static shard *fz_open(int idx, shard_reply_hook hook)
{
    store *st;
    if (store_open_memory(64 << 20, 60000, &st) != 0)
        abort();
    shard_opts o = {0,    1, fz_ids[idx], RING_TIER_MEMORY, fz_urls[idx], st, &fz_cfg, NULL, &fz_mb,
                    NULL, 0, NULL};
    shard *s;
    if (shard_open_detached(&o, hook, NULL, &s) != 0)
        abort();
    return s;
}

/* Installs a ring of the first n nodes (two memory replicas) in both
 * shards. */
static void fz_set_ring(size_t n)
{
    ring_node nodes[3];
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < n; i++) {
        strcpy(nodes[i].id, fz_ids[i]);
        strcpy(nodes[i].endpoint, fz_urls[i]);
        nodes[i].tier = RING_TIER_MEMORY;
        nodes[i].state = NODE_ACTIVE;
        nodes[i].generation = 1;
        nodes[i].shards = 1;
    }
    ring_params p = {16, 2, 0};
    ring *r;
    if (ring_build(nodes, n, NULL, 0, &p, ++fz_epoch, &r) != 0)
        abort();
    ring_ref *rr = ring_ref_new(r);
    shard_feed_ring(fz_shard, ring_ref_get(rr));
    shard_feed_ring(fz_peer, rr);
}

static void fz_init(void)
{
    log_set_level(LOG_LVL_OFF);
    config_defaults(&fz_cfg);
    fz_cfg.limits.max_message_bytes = 1 << 20;
    fz_cfg.kvs.anti_entropy_period_ms = 100; /* the shortest allowed */
    mailbox_init(&fz_mb);
    if (nng_rep0_open_raw(&fz_relay) != 0 || nng_listen(fz_relay, fz_urls[1], NULL, 0) != 0)
        abort();
    fz_shard = fz_open(0, on_reply);
    fz_peer = fz_open(1, on_peer_reply);
    fz_set_ring(2);
}

/* Hands what m1 sent to m2 so far to m2, whose replies go back. */
static void fz_relay_peer(void)
{
    nng_msg *m;
    for (int i = 0; i < FZ_RELAY_MAX && nng_recvmsg(fz_relay, &m, NNG_FLAG_NONBLOCK) == 0; i++)
        shard_feed(fz_peer, m);
}

/* Reads and drops what the shard wrote; 0 once it closed its end. */
static int fz_drain(int fd)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n == 0 ? 0 : 1;
    }
}

/* The input as a client's bytes on a data-plane connection: written as
 * the socket takes them, the shard's loop turning in between; once all is
 * in, the client stops writing, and the shard closes the connection after
 * reading the end. */
static void fz_frames(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (shard_feed_conn(fz_shard, sv[0]) != 0) {
        close(sv[1]);
        return;
    }
    size_t off = 0;
    int open = 1, shut = 0;
    for (int turn = 0; turn < FZ_IO_TURNS && open; turn++) {
        while (off < size) {
            ssize_t n = send(sv[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        /* A turn to answer before the end, so replies are written too. */
        if (off == size && !shut && turn > 0) {
            shutdown(sv[1], SHUT_WR);
            shut = 1;
        }
        shard_feed_io(fz_shard);
        open = fz_drain(sv[1]);
    }
    close(sv[1]);
    shard_feed_io(fz_shard); /* a connection still open sees the hang-up */
}

/* The input as a peer's message on the shard's nng socket. */
static void fz_peer_msg(const uint8_t *data, size_t size)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return;
    /* A raw rep request carries its backtrace in the header. */
    nng_msg_header_append_u32(m, 0x80000001u);
    nng_msg_append(m, data, size);
    shard_feed(fz_shard, m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_shard)
        fz_init();
    if (size && data[0] == FRAME_MAGIC0)
        fz_frames(data, size);
    else
        fz_peer_msg(data, size);
    if (++fz_inputs % FZ_RING_EVERY == 0)
        fz_set_ring(fz_epoch % 2 ? 3 : 2);
    shard_feed_timers(fz_shard);
    fz_relay_peer();
    shard_feed_timers(fz_peer);
    drain_mail();
    return 0;
}
