/*
 * conn.c - buffered nonblocking connections (conn.h).
 */
#include "base/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trellis/trellis_status.h"

enum { ST_CONNECTING = 0, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

/* A piece of output: bytes of the connection's buffer (ref NULL, at off),
 * or referenced bytes (ref). */
typedef struct seg {
    const uint8_t *ref;
    size_t off;
    size_t len;
} seg;

struct conn {
    ev_loop *loop;
    ev_watch w;
    ev_task task;
    int fd;
    const conn_proto *proto;
    void *arg;
    const conn_transport *tr;
    void *tr_arg;
    unsigned flags;
    int state;
    int depth;   /* callbacks of this connection running */
    int closing; /* conn_close was called, or I/O failed */
    int close_status;
    int paused;       /* by the owner */
    int out_paused;   /* by the high-water mark */
    int kicked;       /* deliver buffered input before sleeping */
    int want_read;    /* the transport wants to read again (buffered records) */
    uint32_t tr_want; /* what the transport waits for (EV_*), 0 if nothing */
    /* input */
    uint8_t *ibuf;
    size_t icap, ipos, ilen;
    size_t expect;
    /* output */
    uint8_t *obuf;
    size_t ocap, olen;
    seg *segs;
    size_t shead, nsegs, csegs;
    size_t pending, nrefs;
    size_t out_high, out_low;
};

static void conn_finish(conn *c);
static void conn_task(ev_task *t);

/* ---- the plain transport -------------------------------------------------------------- */

static ssize_t plain_read(void *t, int fd, void *buf, size_t n, uint32_t *want)
{
    (void)t;
    (void)want;
    return read(fd, buf, n);
}

static ssize_t plain_writev(void *t, int fd, const struct iovec *iov, int n, uint32_t *want)
{
    (void)t;
    (void)want;
    return writev(fd, iov, n);
}

static const conn_transport plain = {plain_read, plain_writev, NULL, NULL, NULL};

/* ---- small helpers --------------------------------------------------------------------- */

static void lock(conn *c)
{
    if (c->proto->lock)
        c->proto->lock(c);
}

static void unlock(conn *c)
{
    if (c->proto->unlock)
        c->proto->unlock(c);
}

/* Marks the connection failed. The loop finishes the close: at once when
 * a callback of the connection is running (the last one out closes it),
 * else from a before-sleep task, or, for an output side shared with other
 * threads, from the EV_WRITE event that asking for it raises at once. */
static void fail(conn *c, int status)
{
    if (c->closing || c->state == ST_CLOSED)
        return;
    c->closing = 1;
    c->close_status = status;
    if (c->depth > 0)
        return;
    if (c->flags & CONN_SHARED_OUTPUT) {
        if (c->w.loop)
            ev_watch_set_events(&c->w, EV_WRITE);
    } else {
        ev_task_queue(c->loop, &c->task, conn_task, c);
    }
}

/* 1 when the unconsumed input fills what the protocol may buffer: it
 * neither consumed it nor said it needs more (conn_expect). */
static int input_full(const conn *c)
{
    size_t have = c->ilen - c->ipos;
    return have >= CONN_READ_CHUNK && c->expect <= have;
}

/* What the watch waits for, from the state. With CONN_SHARED_OUTPUT the
 * caller holds the owner's lock. */
static void update_events(conn *c)
{
    if (c->state == ST_CLOSED || !c->w.loop)
        return;
    uint32_t ev = 0;
    if (c->closing) {
        ev = 0;
    } else if (c->state == ST_CONNECTING) {
        ev = EV_WRITE;
    } else if (c->state == ST_HANDSHAKE) {
        ev = c->tr_want ? c->tr_want : EV_READ;
    } else {
        if (!c->paused && !c->out_paused && !input_full(c))
            ev |= EV_READ;
        if (c->pending)
            ev |= EV_WRITE;
        if (c->tr_want)
            ev |= c->tr_want;
    }
    if (ev_watch_set_events(&c->w, ev) != TRELLIS_OK)
        fail(c, TRELLIS_INTERNAL);
}

static void queue_task(conn *c)
{
    if (!c->closing && c->state != ST_CLOSED)
        ev_task_queue(c->loop, &c->task, conn_task, c);
}

/* Enters a section of the loop's own work on c: the owner's lock is
 * held in it (CONN_SHARED_OUTPUT), except around the protocol's
 * callbacks. */
static void enter(conn *c)
{
    lock(c);
    c->depth++;
}

/* Leaves it; the last one out closes a connection that was asked to close
 * meanwhile. */
static void leave(conn *c)
{
    int finish = --c->depth == 0 && c->closing;
    unlock(c);
    if (finish)
        conn_finish(c);
}

/* ---- output ---------------------------------------------------------------------------- */

static int seg_push(conn *c, const uint8_t *ref, size_t off, size_t len)
{
    if (c->nsegs == c->csegs) {
        if (c->shead > 0) {
            memmove(c->segs, c->segs + c->shead, (c->nsegs - c->shead) * sizeof(*c->segs));
            c->nsegs -= c->shead;
            c->shead = 0;
        }
        if (c->nsegs == c->csegs) {
            size_t cap = c->csegs ? c->csegs * 2 : 16;
            seg *s = realloc(c->segs, cap * sizeof(*s));
            if (!s)
                return TRELLIS_INTERNAL;
            c->segs = s;
            c->csegs = cap;
        }
    }
    c->segs[c->nsegs++] = (seg){ref, off, len};
    c->pending += len;
    if (ref)
        c->nrefs++;
    return TRELLIS_OK;
}

/* Room for n more bytes at the end of the buffer. */
static int obuf_reserve(conn *c, size_t n)
{
    if (c->ocap - c->olen >= n)
        return TRELLIS_OK;
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap - c->olen < n)
        cap *= 2;
    uint8_t *b = realloc(c->obuf, cap);
    if (!b)
        return TRELLIS_INTERNAL;
    c->obuf = b;
    c->ocap = cap;
    return TRELLIS_OK;
}

/* Accounts n bytes just placed at obuf + olen. */
static int obuf_commit(conn *c, size_t n)
{
    if (n == 0)
        return TRELLIS_OK;
    seg *last = c->nsegs > c->shead ? &c->segs[c->nsegs - 1] : NULL;
    if (last && !last->ref && last->off + last->len == c->olen) {
        last->len += n;
        c->pending += n;
    } else if (seg_push(c, NULL, c->olen, n) != TRELLIS_OK) {
        return TRELLIS_INTERNAL;
    }
    c->olen += n;
    return TRELLIS_OK;
}

static void after_output(conn *c)
{
    if (!(c->flags & CONN_SHARED_OUTPUT))
        queue_task(c);
}

int conn_write(conn *c, const void *p, size_t n)
{
    if (c->closing)
        return TRELLIS_UNAVAILABLE;
    if (obuf_reserve(c, n) != TRELLIS_OK) {
        fail(c, TRELLIS_INTERNAL);
        return TRELLIS_INTERNAL;
    }
    if (n)
        memcpy(c->obuf + c->olen, p, n);
    if (obuf_commit(c, n) != TRELLIS_OK) {
        fail(c, TRELLIS_INTERNAL);
        return TRELLIS_INTERNAL;
    }
    after_output(c);
    return TRELLIS_OK;
}

uint8_t *conn_reserve(conn *c, size_t n)
{
    if (c->closing)
        return NULL;
    if (obuf_reserve(c, n) != TRELLIS_OK) {
        fail(c, TRELLIS_INTERNAL);
        return NULL;
    }
    return c->obuf + c->olen;
}

void conn_commit(conn *c, size_t used)
{
    if (c->closing)
        return;
    if (obuf_commit(c, used) != TRELLIS_OK)
        fail(c, TRELLIS_INTERNAL);
    after_output(c);
}

int conn_write_ref(conn *c, const void *p, size_t n)
{
    if (n < CONN_REF_MIN)
        return conn_write(c, p, n);
    if (c->closing)
        return TRELLIS_UNAVAILABLE;
    if (seg_push(c, p, 0, n) != TRELLIS_OK) {
        fail(c, TRELLIS_INTERNAL);
        return TRELLIS_INTERNAL;
    }
    after_output(c);
    return TRELLIS_OK;
}

int conn_pin(conn *c)
{
    if (c->nrefs == 0 || c->state == ST_CLOSED)
        return TRELLIS_OK;
    for (size_t i = c->shead; i < c->nsegs; i++) {
        seg *s = &c->segs[i];
        if (!s->ref)
            continue;
        if (obuf_reserve(c, s->len) != TRELLIS_OK) {
            /* Nothing referenced may be read later: drop the output. */
            fail(c, TRELLIS_INTERNAL);
            c->shead = c->nsegs = 0;
            c->pending = c->nrefs = 0;
            return TRELLIS_INTERNAL;
        }
        memcpy(c->obuf + c->olen, s->ref, s->len);
        s->ref = NULL;
        s->off = c->olen;
        c->olen += s->len;
    }
    c->nrefs = 0;
    return TRELLIS_OK;
}

/* Moves the buffer's live bytes to its front once the written prefix is
 * most of it. */
static void obuf_compact(conn *c)
{
    if (c->pending == 0) {
        c->olen = 0;
        c->shead = c->nsegs = 0;
        return;
    }
    size_t low = c->olen;
    for (size_t i = c->shead; i < c->nsegs; i++)
        if (!c->segs[i].ref && c->segs[i].off < low)
            low = c->segs[i].off;
    if (low < (64u << 10) || low < c->olen / 2)
        return;
    memmove(c->obuf, c->obuf + low, c->olen - low);
    c->olen -= low;
    for (size_t i = c->shead; i < c->nsegs; i++)
        if (!c->segs[i].ref)
            c->segs[i].off -= low;
}

/* Writes until the socket is full or the output empty. TRELLIS_OK, or the
 * error (the connection is failed). */
static int flush_locked(conn *c)
{
    if (c->state != ST_OPEN || c->closing)
        return c->closing ? c->close_status : TRELLIS_OK;
    while (c->pending > 0) {
        struct iovec iov[CONN_IOV_MAX];
        int n = 0;
        for (size_t i = c->shead; i < c->nsegs && n < CONN_IOV_MAX; i++) {
            const seg *s = &c->segs[i];
            iov[n].iov_base = (void *)(s->ref ? s->ref : c->obuf + s->off);
            iov[n].iov_len = s->len;
            n++;
        }
        uint32_t want = 0;
        ssize_t w = c->tr->writev(c->tr_arg, c->fd, iov, n, &want);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->tr_want = want & EV_READ; /* a TLS write that must read first */
                break;
            }
            fail(c, TRELLIS_UNAVAILABLE);
            return TRELLIS_UNAVAILABLE;
        }
        c->tr_want = 0;
        size_t left = (size_t)w;
        c->pending -= left;
        while (left > 0) {
            seg *s = &c->segs[c->shead];
            size_t k = left < s->len ? left : s->len;
            if (s->ref)
                s->ref += k;
            else
                s->off += k;
            s->len -= k;
            left -= k;
            if (s->len == 0) {
                if (s->ref)
                    c->nrefs--;
                c->shead++;
            }
        }
        if ((size_t)w == 0)
            break;
    }
    obuf_compact(c);
    if (!c->out_paused && c->pending > c->out_high) {
        c->out_paused = 1;
    } else if (c->out_paused && c->pending <= c->out_low) {
        c->out_paused = 0;
        if (c->proto->on_drain && c->depth > 0) {
            unlock(c);
            c->proto->on_drain(c);
            lock(c);
        }
        c->kicked = 1; /* input held back while paused waits in the buffer */
        queue_task(c);
    }
    update_events(c);
    return TRELLIS_OK;
}

int conn_flush(conn *c)
{
    return flush_locked(c);
}

int conn_settle(conn *c)
{
    if (c->nrefs == 0)
        return TRELLIS_OK;
    int rc = flush_locked(c);
    if (rc != TRELLIS_OK)
        return rc;
    return conn_pin(c);
}

size_t conn_pending(const conn *c)
{
    return c->pending;
}

int conn_has_refs(const conn *c)
{
    return c->nrefs > 0;
}

/* ---- input ------------------------------------------------------------------------------ */

int conn_expect(conn *c, size_t total)
{
    /* The room is made when the connection next reads (read_room), after
     * the protocol returned and the consumed bytes can go. */
    c->expect = total;
    return TRELLIS_OK;
}

void conn_pause(conn *c, int paused)
{
    if (c->paused == !!paused)
        return;
    c->paused = !!paused;
    if (!c->paused) {
        c->kicked = 1;
        queue_task(c);
    }
    lock(c);
    update_events(c);
    unlock(c);
}

void conn_kick(conn *c)
{
    c->kicked = 1;
    queue_task(c);
}

/* Hands the protocol what is buffered; then keeps the buffer tidy. */
static void deliver(conn *c)
{
    c->kicked = 0;
    while (!c->closing && !c->paused && c->ilen > c->ipos) {
        size_t have = c->ilen - c->ipos;
        c->expect = 0;
        unlock(c);
        size_t used = c->proto->on_input(c, c->ibuf + c->ipos, have);
        lock(c);
        if (used > have)
            used = have;
        c->ipos += used;
        if (used == 0 || c->paused)
            break;
    }
    if (c->ipos == c->ilen) {
        c->ipos = c->ilen = 0;
        /* A large frame's buffer is not kept once it is done with. */
        if (c->icap > 4 * CONN_READ_CHUNK && !c->expect) {
            uint8_t *b = realloc(c->ibuf, 2 * CONN_READ_CHUNK);
            if (b) {
                c->ibuf = b;
                c->icap = 2 * CONN_READ_CHUNK;
            }
        }
    }
}

/* Room to read into: the unconsumed bytes, or the frame the protocol
 * expects, plus a chunk. 0 when the unconsumed bytes already fill what the
 * protocol may have buffered. */
static size_t read_room(conn *c)
{
    if (input_full(c))
        return 0;
    size_t have = c->ilen - c->ipos;
    size_t need = (c->expect > have ? c->expect : have) + CONN_READ_CHUNK;
    if (c->ipos > 0 && c->ipos + need > c->icap) {
        memmove(c->ibuf, c->ibuf + c->ipos, have);
        c->ilen = have;
        c->ipos = 0;
    }
    if (c->icap < need) {
        uint8_t *b = realloc(c->ibuf, need);
        if (!b) {
            fail(c, TRELLIS_INTERNAL);
            return 0;
        }
        c->ibuf = b;
        c->icap = need;
    }
    return c->icap - c->ilen;
}

/* Reads what the socket has (within the budget), handing it to the
 * protocol as it comes. */
static void do_read(conn *c)
{
    size_t budget = CONN_READ_BUDGET;
    c->want_read = 0;
    while (!c->closing && !c->paused && !c->out_paused) {
        size_t room = read_room(c);
        if (room == 0)
            break;
        uint32_t want = 0;
        ssize_t r = c->tr->read(c->tr_arg, c->fd, c->ibuf + c->ilen, room, &want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->tr_want = want & EV_WRITE; /* a TLS read that must write first */
                break;
            }
            fail(c, TRELLIS_UNAVAILABLE);
            break;
        }
        if (r == 0) {
            fail(c, TRELLIS_UNAVAILABLE);
            break;
        }
        c->ilen += (size_t)r;
        deliver(c);
        if ((size_t)r >= budget)
            break;
        budget -= (size_t)r;
        /* A short read drained the socket (unless the transport holds
         * more): save the system call that would say EAGAIN. */
        if ((size_t)r < room && !(c->tr->pending && c->tr->pending(c->tr_arg)))
            break;
    }
    if (!c->closing && c->tr->pending && c->tr->pending(c->tr_arg)) {
        /* Decrypted bytes wait inside the transport, invisible to epoll. */
        c->want_read = 1;
        queue_task(c);
    }
}

/* ---- connecting and the handshake ----------------------------------------------------------- */

static void become_open(conn *c)
{
    c->state = ST_OPEN;
    c->tr_want = 0;
    if (c->proto->on_ready) {
        unlock(c);
        c->proto->on_ready(c);
        lock(c);
    }
    /* Output written meanwhile goes now; a handshake may have left input
     * inside the transport. */
    c->want_read = c->tr->handshake != NULL;
    queue_task(c);
}

static void do_handshake(conn *c)
{
    uint32_t want = 0;
    int rc = c->tr->handshake(c->tr_arg, c->fd, &want);
    if (rc < 0) {
        fail(c, TRELLIS_UNAUTHORIZED);
    } else if (rc == 0) {
        become_open(c);
    } else {
        c->tr_want = want ? want : EV_READ;
    }
}

static void connected(conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        fail(c, TRELLIS_UNAVAILABLE);
        return;
    }
    if (c->tr->handshake) {
        c->state = ST_HANDSHAKE;
        do_handshake(c);
    } else {
        become_open(c);
    }
}

/* ---- the loop's callbacks -------------------------------------------------------------- */

static void on_events(ev_watch *w, uint32_t ev)
{
    conn *c = w->arg;
    enter(c);
    if (c->state == ST_CONNECTING) {
        if (ev & (EV_WRITE | EV_ERROR | EV_HUP))
            connected(c);
    } else if (c->state == ST_HANDSHAKE) {
        do_handshake(c);
    } else if (c->state == ST_OPEN) {
        if (ev & (EV_WRITE | EV_ERROR))
            flush_locked(c);
        if (ev & (EV_READ | EV_HUP | EV_ERROR))
            do_read(c);
    }
    if (!c->closing)
        update_events(c);
    leave(c);
}

/* Before the loop sleeps: input that waited, then the output. */
static void conn_task(ev_task *t)
{
    conn *c = t->arg;
    enter(c);
    if (c->state == ST_OPEN) {
        if (c->want_read)
            do_read(c);
        if (c->kicked)
            deliver(c);
        flush_locked(c);
        if (!c->closing)
            update_events(c);
    }
    leave(c);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

int conn_new(ev_loop *l, int fd, const conn_proto *proto, void *arg, const conn_opts *o, conn **out)
{
    *out = NULL;
    conn_opts defaults = {0};
    if (!o)
        o = &defaults;
    conn *c = calloc(1, sizeof(*c));
    int fl = fcntl(fd, F_GETFL);
    if (!c || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        free(c);
        if (o->transport && o->transport->free)
            o->transport->free(o->transport_arg);
        close(fd);
        return TRELLIS_INTERNAL;
    }
    c->loop = l;
    c->fd = fd;
    c->proto = proto;
    c->arg = arg;
    c->tr = o->transport ? o->transport : &plain;
    c->tr_arg = o->transport_arg;
    c->flags = o->flags;
    c->out_high = o->out_high ? o->out_high : CONN_OUT_HIGH;
    c->out_low = o->out_low ? o->out_low : c->out_high / 4;
    uint32_t ev;
    if (o->flags & CONN_CONNECTING) {
        c->state = ST_CONNECTING;
        ev = EV_WRITE;
    } else if (c->tr->handshake) {
        c->state = ST_HANDSHAKE;
        ev = EV_READ | EV_WRITE; /* the first call says what it waits for */
    } else {
        c->state = ST_OPEN;
        ev = EV_READ;
    }
    if (ev_watch_start(l, &c->w, fd, ev, on_events, c) != TRELLIS_OK) {
        if (c->tr->free)
            c->tr->free(c->tr_arg);
        close(fd);
        free(c);
        return TRELLIS_INTERNAL;
    }
    *out = c;
    return TRELLIS_OK;
}

/* Tears the connection down: a last best-effort write of what is pending
 * (an error reply before the close), then on_close and free. */
static void conn_finish(conn *c)
{
    lock(c);
    if (c->state == ST_OPEN && c->pending && c->close_status != TRELLIS_UNAVAILABLE) {
        int status = c->close_status;
        c->closing = 0;
        flush_locked(c);
        c->closing = 1;
        c->close_status = status;
    }
    /* From here on output calls return at once (state CLOSED): the owner
     * may still make some until on_close tells it the connection is gone. */
    c->state = ST_CLOSED;
    ev_watch_stop(&c->w);
    ev_task_cancel(c->loop, &c->task);
    if (c->tr->free)
        c->tr->free(c->tr_arg);
    close(c->fd);
    c->pending = c->nrefs = 0;
    c->shead = c->nsegs = 0;
    unlock(c);
    c->proto->on_close(c, c->close_status);
    free(c->ibuf);
    free(c->obuf);
    free(c->segs);
    free(c);
}

void conn_close(conn *c, int status)
{
    if (c->state == ST_CLOSED)
        return;
    fail(c, status);
    if (c->depth == 0) {
        c->depth++; /* on_close may call back into the connection */
        conn_finish(c);
    }
}

void *conn_arg(const conn *c)
{
    return c->arg;
}

int conn_fd(const conn *c)
{
    return c->fd;
}

ev_loop *conn_loop(const conn *c)
{
    return c->loop;
}

int conn_closing(const conn *c)
{
    return c->closing;
}
