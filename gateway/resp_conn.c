/*
 * resp_conn.c - a gateway connection (resp_impl.h): references and
 * lifecycle, the read side (parse, answer or queue) and the send side.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/resp_impl.h"

static void conn_pump(conn *c);

/* ---- connections: references and lifecycle ----------------------------------------------- */

void resp_rcmd_free_list(rcmd *r)
{
    while (r) {
        rcmd *next = r->next;
        free(r->reply);
        free(r);
        r = next;
    }
}

/* srv->mtx held. */
void resp_conn_unref_locked(conn *c)
{
    resp_server *s = c->srv;
    if (--c->refs > 0)
        return;
    c->qnext = s->dead;
    s->dead = c;
    pthread_cond_broadcast(&s->cv);
}

void resp_conn_unref(conn *c)
{
    resp_server *s = c->srv;
    pthread_mutex_lock(&s->mtx);
    resp_conn_unref_locked(c);
    pthread_mutex_unlock(&s->mtx);
}

/* Frees a connection nobody refers to any more. Not on nng's threads. */
void resp_conn_free(conn *c)
{
    nng_aio_free(c->raio);
    nng_aio_free(c->saio);
    if (c->st)
        nng_stream_free(c->st);
    resp_rcmd_free_list(c->qhead);
    free(c->in);
    resp_parser_free(&c->parser);
    resp_buf_free(&c->out);
    resp_buf_free(&c->sbuf);
    free(c);
}

/* Frees the dead connections; srv->mtx held on entry and exit. */
void resp_reap_locked(resp_server *s)
{
    while (s->dead) {
        conn *c = s->dead;
        s->dead = NULL;
        pthread_mutex_unlock(&s->mtx);
        while (c) {
            conn *next = c->qnext;
            resp_conn_free(c);
            c = next;
            pthread_mutex_lock(&s->mtx);
            s->nalloc--;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mtx);
        }
        pthread_mutex_lock(&s->mtx);
    }
}

/* Closes the connection's stream (once): pending receives and sends end
 * with NNG_ECLOSED and drop their references. Without srv->mtx. */
void resp_conn_close(conn *c)
{
    resp_server *s = c->srv;
    pthread_mutex_lock(&s->mtx);
    int first = !c->closed;
    if (first) {
        c->closed = 1;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->nconns--;
    }
    pthread_mutex_unlock(&s->mtx);
    if (!first)
        return;
    nng_stream_close(c->st);
    resp_conn_unref(c); /* the list's reference, kept across the close */
}

/* Reply bytes not yet written (srv->mtx held). The part of sbuf already
 * sent is not subtracted: soff belongs to the send side. */
static size_t out_backlog(const conn *c)
{
    return c->out.len + (c->sending ? c->sbuf.len : 0);
}

/* srv->mtx held: appends c to the ready queue, taking a reference. */
void resp_schedule_locked(conn *c)
{
    resp_server *s = c->srv;
    if (c->queued || c->running || c->closed || !c->qhead)
        return;
    if (out_backlog(c) > RESP_OUT_LIMIT) {
        c->out_blocked = 1;
        return;
    }
    c->queued = 1;
    c->refs++;
    c->qnext = NULL;
    if (s->ready_tail)
        s->ready_tail->qnext = c;
    else
        s->ready_head = c;
    s->ready_tail = c;
    pthread_cond_signal(&s->cv);
}

/* 1 when the connection has as much work waiting as it may: reading
 * stops (srv->mtx held). */
int resp_conn_full(const conn *c)
{
    const resp_server *s = c->srv;
    return c->npending >= s->max_pending || c->qbytes > s->queue_limit ||
           out_backlog(c) > RESP_OUT_LIMIT;
}

/* srv->mtx held: after replies were added or sent, decides whether to
 * send, resume reading or close. */
void resp_conn_progress_locked(conn *c, after_unlock *t)
{
    resp_server *s = c->srv;
    if (c->closed)
        return;
    if (c->out.failed) {
        t->close = 1;
        return;
    }
    if (!c->sending && c->out.len > 0) {
        resp_buf tmp = c->sbuf;
        c->sbuf = c->out;
        c->out = tmp;
        c->out.len = 0;
        c->soff = 0;
        c->sending = 1;
        c->refs++;
        t->send = 1;
    }
    if (c->out_blocked && out_backlog(c) <= RESP_OUT_LIMIT) {
        c->out_blocked = 0;
        resp_schedule_locked(c);
    }
    if (c->read_paused && !c->read_done && c->npending <= s->max_pending / 2 &&
        c->qbytes <= s->queue_limit / 2 && out_backlog(c) <= RESP_OUT_LIMIT) {
        c->read_paused = 0;
        c->reading = 1;
        c->refs++;
        t->pump = 1;
    }
    if (c->close_when_flushed && c->npending == 0 && !c->sending && c->out.len == 0) {
        if (!c->linger) {
            t->close = 1;
        } else if (!c->draining && !c->reading) {
            /* The peer may still be sending the command that was refused:
             * closing now would reset the connection and could destroy the
             * error reply in flight. Read and drop a while first. */
            c->draining = 1;
            c->reading = 1;
            c->refs++;
            t->drain = 1;
        }
    }
}

void resp_do_after_unlock(conn *c, const after_unlock *t)
{
    if (t->send) {
        nng_iov iov = {c->sbuf.data, c->sbuf.len};
        nng_aio_set_iov(c->saio, 1, &iov);
        nng_stream_send(c->st, c->saio);
    }
    if (t->pump)
        conn_pump(c);
    if (t->drain) {
        nng_aio_set_timeout(c->raio, RESP_LINGER_MS);
        nng_iov iov = {c->in, c->incap};
        nng_aio_set_iov(c->raio, 1, &iov);
        nng_stream_recv(c->st, c->raio);
    }
    if (t->close)
        resp_conn_close(c);
}

/* ---- the read side ------------------------------------------------------------------------ */

/* Makes room in the input buffer for need bytes and a receive. 0 or -1. */
static int input_reserve(conn *c, size_t need)
{
    size_t want = c->inlen + RESP_READ_CHUNK;
    if (need > want)
        want = need;
    if (want <= c->incap) {
        /* Give back what a large value took once it is gone. */
        if (c->incap > 4 * RESP_READ_CHUNK && want <= 2 * RESP_READ_CHUNK) {
            uint8_t *in = realloc(c->in, 2 * RESP_READ_CHUNK);
            if (in) {
                c->in = in;
                c->incap = 2 * RESP_READ_CHUNK;
            }
        }
        return 0;
    }
    uint8_t *in = realloc(c->in, want);
    if (!in)
        return -1;
    c->in = in;
    c->incap = want;
    return 0;
}

/* Parses what the input buffer holds, queues the commands and either
 * starts the next receive or gives the read turn up. The caller holds the
 * read turn (c->reading and its reference). */
static void conn_pump(conn *c)
{
    resp_server *s = c->srv;
    for (;;) {
        pthread_mutex_lock(&s->mtx);
        size_t room = s->max_pending > c->npending ? s->max_pending - c->npending : 0;
        int stop = c->closed;
        pthread_mutex_unlock(&s->mtx);

        rcmd *head = NULL, *tail = NULL;
        size_t k = 0, consumed = 0, need = 0, qbytes = 0;
        int fail = 0, proto_error = 0;
        while (!stop && k < room) {
            resp_command cmd;
            size_t used = 0, nd = 0;
            int rc = resp_parse(&c->parser, c->in + consumed, c->inlen - consumed,
                                c->authed ? &s->lim : &s->unauth_lim, &cmd, &used, &nd);
            consumed += used;
            if (rc == RESP_NEED_MORE) {
                need = nd;
                break;
            }
            rcmd *r = NULL;
            if (rc == RESP_COMMAND) {
                r = resp_accept_command(c, &cmd);
            } else if (rc == RESP_PROTO_ERROR) {
                atomic_fetch_add(&s->n_protocol_errors, 1);
                atomic_fetch_add(&s->n_errors, 1);
                log_debug("resp: client %" PRIu64 ": %s", c->id, c->parser.err);
                resp_buf out = {0};
                resp_add_errorf(&out, "ERR %s", c->parser.err);
                r = out.failed ? NULL : resp_rcmd_with_reply(&out, 1);
                resp_buf_free(&out);
                proto_error = 1;
            }
            if (!r) { /* out of memory */
                fail = 1;
                break;
            }
            if (tail)
                tail->next = r;
            else
                head = r;
            tail = r;
            k++;
            qbytes += r->bytes;
            if (r->close_after)
                stop = 1;
        }
        if (consumed > 0) {
            memmove(c->in, c->in + consumed, c->inlen - consumed);
            c->inlen -= consumed;
        }
        /* k == room: the budget of pending commands is used up and more
         * may be buffered; otherwise the parser wants more bytes. */
        int budget_used = !stop && !fail && k == room;
        if (!stop && !fail && !budget_used && input_reserve(c, need) != 0)
            fail = 1;

        after_unlock t = {0};
        int recv = 0, again = 0;
        pthread_mutex_lock(&s->mtx);
        if (head) {
            if (c->qtail)
                c->qtail->next = head;
            else
                c->qhead = head;
            c->qtail = tail;
            c->npending += k;
            c->qbytes += qbytes;
            resp_schedule_locked(c);
        }
        if (stop || fail || c->closed) {
            c->read_done = 1;
            c->close_when_flushed = 1;
            c->linger |= proto_error;
            c->reading = 0;
            if (fail)
                t.close = 1;
            resp_conn_progress_locked(c, &t);
            resp_conn_unref_locked(c);
        } else if (resp_conn_full(c)) {
            /* Wait until the workers and the peer caught up; whoever
             * brings it below the marks resumes (resp_conn_progress_locked). */
            c->read_paused = 1;
            c->reading = 0;
            resp_conn_progress_locked(c, &t);
            resp_conn_unref_locked(c);
        } else if (budget_used) {
            again = 1;
        } else {
            recv = 1;
        }
        pthread_mutex_unlock(&s->mtx);
        resp_do_after_unlock(c, &t);
        if (again)
            continue;
        if (recv) {
            nng_iov iov = {c->in + c->inlen, c->incap - c->inlen};
            nng_aio_set_iov(c->raio, 1, &iov);
            nng_stream_recv(c->st, c->raio);
        }
        return;
    }
}

static void conn_recv_cb(void *arg)
{
    conn *c = arg;
    resp_server *s = c->srv;
    int rv = nng_aio_result(c->raio);
    if (c->draining) {
        c->drained += nng_aio_count(c->raio);
        if (rv == 0 && c->drained < RESP_LINGER_BYTES) {
            nng_iov iov = {c->in, c->incap};
            nng_aio_set_iov(c->raio, 1, &iov);
            nng_stream_recv(c->st, c->raio);
            return;
        }
        pthread_mutex_lock(&s->mtx);
        c->reading = 0;
        pthread_mutex_unlock(&s->mtx);
        resp_conn_close(c);
        resp_conn_unref(c);
        return;
    }
    if (rv == 0) {
        c->inlen += nng_aio_count(c->raio);
        conn_pump(c);
        return;
    }
    /* The peer closed, the connection failed or we closed it: answer what
     * is pending if the peer still listens, then close. */
    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->read_done = 1;
    c->close_when_flushed = 1;
    c->reading = 0;
    if (rv != NNG_ECONNSHUT)
        t.close = 1;
    resp_conn_progress_locked(c, &t);
    resp_conn_unref_locked(c);
    pthread_mutex_unlock(&s->mtx);
    resp_do_after_unlock(c, &t);
}

/* ---- the send side ------------------------------------------------------------------------ */

static void conn_send_cb(void *arg)
{
    conn *c = arg;
    resp_server *s = c->srv;
    int rv = nng_aio_result(c->saio);
    if (rv == 0) {
        c->soff += nng_aio_count(c->saio);
        if (c->soff < c->sbuf.len) {
            nng_iov iov = {c->sbuf.data + c->soff, c->sbuf.len - c->soff};
            nng_aio_set_iov(c->saio, 1, &iov);
            nng_stream_send(c->st, c->saio);
            return;
        }
    }
    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->sending = 0;
    c->sbuf.len = 0;
    c->soff = 0;
    if (c->sbuf.cap > RESP_OUT_LIMIT) {
        resp_buf_free(&c->sbuf);
    }
    if (rv != 0)
        t.close = 1;
    else
        resp_conn_progress_locked(c, &t);
    resp_conn_unref_locked(c); /* the send's reference; progress took one for a new send */
    pthread_mutex_unlock(&s->mtx);
    resp_do_after_unlock(c, &t);
}

/* ---- a new connection
 * ------------------------------------------------------------------------------- */

void resp_conn_start(resp_server *s, nng_stream *st)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c || nng_aio_alloc(&c->raio, conn_recv_cb, c) != 0 ||
        nng_aio_alloc(&c->saio, conn_send_cb, c) != 0 || !(c->in = malloc(RESP_READ_CHUNK))) {
        if (c) {
            nng_aio_free(c->raio);
            nng_aio_free(c->saio);
            free(c);
        }
        nng_stream_close(st);
        nng_stream_free(st);
        return;
    }
    c->srv = s;
    c->st = st;
    c->incap = RESP_READ_CHUNK;
    c->proto = 2;
    c->authed = s->token[0] == '\0';
    resp_parser_init(&c->parser);
    nng_stream_set_bool(st, NNG_OPT_TCP_NODELAY, true);

    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->id = ++s->next_id;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nalloc++;
    c->refs = 1; /* the list */
    int reject = s->nconns > s->max_clients;
    if (reject) {
        /* As Redis does: say why, then close. */
        resp_add_error(&c->out, "ERR max number of clients reached");
        c->read_done = 1;
        c->close_when_flushed = 1;
        c->linger = 1;
        resp_conn_progress_locked(c, &t);
    } else {
        c->reading = 1;
        c->refs++;
    }
    pthread_mutex_unlock(&s->mtx);
    atomic_fetch_add(reject ? &s->n_rejected : &s->n_connections, 1);
    if (reject) {
        resp_do_after_unlock(c, &t);
        return;
    }
    nng_iov iov = {c->in, c->incap};
    nng_aio_set_iov(c->raio, 1, &iov);
    nng_stream_recv(c->st, c->raio);
}
