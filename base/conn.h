/*
 * conn.h - buffered, nonblocking stream connections on an event loop,
 * with the protocol and the transport plugged in through ops tables.
 *
 * Input. The connection reads into one contiguous buffer and hands the
 * protocol everything not yet consumed (conn_proto.on_input), which
 * decodes it in place and says how many bytes it used; the rest (a partial
 * frame) stays for the next read. A protocol that knows how long the
 * current frame is says so (conn_expect) after checking it against its own
 * limits, and the buffer grows to hold it; otherwise it never grows beyond
 * CONN_READ_CHUNK of unconsumed bytes, so a peer cannot make the process
 * buffer more than the protocol allows.
 *
 * Output. Replies are appended to an output queue: small pieces are copied
 * into the connection's buffer (conn_write, conn_reserve), large ones may
 * be referenced where they lie (conn_write_ref) and leave by writev
 * straight from there. A reference stays valid only until the owner's next
 * change to what it points at, so the owner calls conn_settle (write now,
 * then copy whatever the socket did not take) before it changes such bytes;
 * nothing referenced is ever read after that. Pending output is written
 * before the loop sleeps (a before-sleep task), in as few system calls as
 * the kernel allows; what the socket cannot take waits for EV_WRITE.
 * Output above the high-water mark pauses input until it drains below the
 * low-water mark, so a peer that pipelines without reading cannot grow the
 * queue without bound.
 *
 * Protocols (conn_proto): the binary frames of the data plane now; RESP
 * next, on the same loops. Transports (conn_transport): plain sockets by
 * default, TLS through the same four hooks.
 *
 * Lifetime. conn_new takes the descriptor. conn_close may be called at any
 * time on the loop's thread, from inside the connection's own callbacks
 * too: the connection stops reading and writing, and once no callback of
 * it is running it calls on_close and frees itself. The owner must not
 * touch it after on_close.
 *
 * Threads. Everything runs on the loop's thread, except that a connection
 * created with CONN_SHARED_OUTPUT has its output side (conn_write*,
 * conn_reserve/commit, conn_flush, conn_settle, conn_pending) callable from
 * any thread holding the owner's lock. The connection then does all its
 * own work under that lock too (conn_proto.lock/unlock), releasing it
 * around the protocol's callbacks, which are called without it; the owner
 * must not hold it when it calls conn_close, conn_pause or conn_kick. Such
 * a connection queues no before-sleep task when written: its owner
 * flushes. After on_close the owner makes no more calls; output calls
 * made before it, once the connection is closing, return at once.
 */
#ifndef TRELLIS_CONN_H
#define TRELLIS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "base/evloop.h"

#define CONN_READ_CHUNK    (16u << 10)  /* bytes read at a time without a known frame */
#define CONN_READ_BUDGET   (256u << 10) /* bytes read per readiness event */
#define CONN_REF_MIN       2048u        /* conn_write_ref copies pieces shorter than this */
#define CONN_IOV_MAX       64           /* pieces per writev */
#define CONN_OUT_HIGH      (8u << 20)   /* default high-water mark of pending output */
#define CONN_SHARED_OUTPUT 0x1u         /* see Threads */
#define CONN_CONNECTING    0x2u         /* fd is a nonblocking connect in progress */

typedef struct conn conn;

/* What runs over a connection. */
typedef struct conn_proto {
    /* Input arrived: data[0..len) (len >= 1) is all that is unconsumed.
     * Returns how many bytes it consumed (at most len). It may write
     * output and close the connection. */
    size_t (*on_input)(conn *c, uint8_t *data, size_t len);
    /* The connection is closed (status TRELLIS_OK when conn_close asked
     * for it with OK, TRELLIS_UNAVAILABLE when the peer hung up, the error
     * otherwise) and is freed when this returns. Required. */
    void (*on_close)(conn *c, int status);
    /* Optional: the connection is established (its connect finished and
     * the transport's handshake is done); input and output flow from now. */
    void (*on_ready)(conn *c);
    /* Optional: pending output fell below the low-water mark. */
    void (*on_drain)(conn *c);
    /* Optional (CONN_SHARED_OUTPUT): the owner's lock over the output side. */
    void (*lock)(conn *c);
    void (*unlock)(conn *c);
} conn_proto;

/* How bytes move. Each returns as read(2)/writev(2) do: >= 0, or -1 with
 * errno (EAGAIN: not now; *want, when set, says which readiness the
 * transport waits for, EV_READ or EV_WRITE). */
typedef struct conn_transport {
    ssize_t (*read)(void *t, int fd, void *buf, size_t n, uint32_t *want);
    ssize_t (*writev)(void *t, int fd, const struct iovec *iov, int n, uint32_t *want);
    /* Drives the handshake: 0 done, 1 not yet (*want set), -1 failed. */
    int (*handshake)(void *t, int fd, uint32_t *want);
    /* Bytes the transport holds that read can return without the socket
     * (decrypted TLS records). */
    size_t (*pending)(void *t);
    void (*free)(void *t);
} conn_transport;

/* Options of a new connection; zero fields take the defaults. */
typedef struct conn_opts {
    unsigned flags;                  /* CONN_SHARED_OUTPUT, CONN_CONNECTING */
    size_t out_high;                 /* pending output that pauses input (CONN_OUT_HIGH) */
    size_t out_low;                  /* resumes it (out_high / 4) */
    const conn_transport *transport; /* NULL: plain socket */
    void *transport_arg;             /* its state; the connection frees it */
} conn_opts;

/* Wraps the connected socket fd (or, with CONN_CONNECTING, one whose
 * nonblocking connect is in progress), made nonblocking here, and starts
 * the transport's handshake and reading. Output written before the
 * connection is ready waits for it. TRELLIS_OK with *out; on failure (TRELLIS_INTERNAL)
 * fd and the transport state are closed and freed. o may be NULL. */
int conn_new(ev_loop *l, int fd, const conn_proto *proto, void *arg, const conn_opts *o,
             conn **out);

/* Closes the connection (see Lifetime); status is what on_close gets. */
void conn_close(conn *c, int status);

/* The owner's argument, the descriptor, the loop. */
void *conn_arg(const conn *c);
int conn_fd(const conn *c);
ev_loop *conn_loop(const conn *c);
/* 1 once conn_close was called or the connection failed. */
int conn_closing(const conn *c);

/* ---- input ---------------------------------------------------------------------------- */

/* The protocol needs `total` unconsumed bytes to go on (a frame's header
 * and body): the buffer grows to hold them. The protocol has checked
 * total against its limits. TRELLIS_OK or TRELLIS_INTERNAL (out of
 * memory: the connection closes). */
int conn_expect(conn *c, size_t total);

/* Stops (paused = 1) or resumes delivering input: a paused connection
 * neither reads nor calls on_input; resuming hands on_input what is
 * buffered, before the loop next sleeps. */
void conn_pause(conn *c, int paused);

/* Hands on_input the buffered input again before the loop next sleeps (a
 * protocol that stopped consuming, say under a rate cap, goes on). */
void conn_kick(conn *c);

/* ---- output -------------------------------------------------------------------------- */

/* Copies p[0..n) to the output. TRELLIS_OK or TRELLIS_INTERNAL (out of
 * memory: the connection closes). */
int conn_write(conn *c, const void *p, size_t n);

/* n bytes at the end of the output to fill in place, then conn_commit
 * with how many were used (at most n). NULL when out of memory (the
 * connection closes). The pointer is valid until the next output call. */
uint8_t *conn_reserve(conn *c, size_t n);
void conn_commit(conn *c, size_t used);

/* Queues p[0..n) by reference; pieces under CONN_REF_MIN are copied. The
 * bytes must stay unchanged until they are written or conn_settle /
 * conn_pin copies them. TRELLIS_OK or TRELLIS_INTERNAL. */
int conn_write_ref(conn *c, const void *p, size_t n);

/* Copies every referenced byte not yet written into the connection's own
 * buffer. TRELLIS_OK or TRELLIS_INTERNAL (the connection closes). */
int conn_pin(conn *c);

/* Writes what it can now. TRELLIS_OK (whatever is left waits for the
 * socket), or the error that closes the connection. */
int conn_flush(conn *c);

/* conn_flush, then conn_pin: afterwards the output refers to nothing
 * outside the connection. */
int conn_settle(conn *c);

/* Bytes of output not yet written. */
size_t conn_pending(const conn *c);

/* 1 if the output holds references (conn_settle has work to do). */
int conn_has_refs(const conn *c);

#endif
