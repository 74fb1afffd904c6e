/*
 * io.c - the client's I/O thread: one event loop (base/evloop) over every
 * data-plane connection to the storage shards. It reads replies and hands
 * them to their callers, running asynchronous executions' continuations
 * right there (their next requests leave before the loop sleeps); it also
 * wakes executions whose back-off is over, expires parts that outlived
 * their deadline, and closes connections nobody uses any more. Other
 * threads reach it through a queue and an eventfd. It sleeps when there is
 * nothing to do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/client_impl.h"

static _Thread_local const trellis_client *io_self;

int cl_io_here(const trellis_client *c)
{
    return io_self == c;
}

int cl_io_any(void)
{
    return io_self != NULL;
}

static void io_wake(cl_io *io)
{
    uint64_t one = 1;
    ssize_t w = write(io->efd, &one, sizeof(one));
    (void)w; /* a full counter wakes the loop as well */
}

static void on_wake(ev_watch *w, uint32_t ev)
{
    uint64_t n;
    ssize_t r = read(w->fd, &n, sizeof(n));
    (void)r;
    (void)ev;
}

/* Expires overdue parts on every connection of the client. */
static void io_reap(trellis_client *c, nng_time now)
{
    pthread_mutex_lock(&c->lock);
    size_t n = 0;
    for (size_t b = 0; b < CL_CONN_BUCKETS; b++)
        for (cl_conn *cn = c->conns[b]; cn; cn = cn->next)
            n++;
    cl_conn **v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t k = 0;
    for (size_t b = 0; v && b < CL_CONN_BUCKETS; b++) {
        for (cl_conn *cn = c->conns[b]; cn; cn = cn->next) {
            atomic_fetch_add(&cn->refs, 1);
            v[k++] = cn;
        }
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < k; i++) {
        cl_lane_expire(v[i], now);
        cl_conn_put(v[i]);
    }
    free(v);
}

/* Runs what other threads posted, then the back-offs that are due. */
static void io_run_posted(trellis_client *c, nng_time now)
{
    cl_io *io = &c->io;
    pthread_mutex_lock(&io->mu);
    cl_async_item *posted = io->posted;
    io->posted = io->posted_tail = NULL;
    cl_async_item *due = NULL;
    for (cl_async_item **pp = &io->sleeping; *pp;) {
        cl_async_item *it = *pp;
        if (it->at > now) {
            pp = &it->next;
            continue;
        }
        *pp = it->next;
        it->next = due;
        due = it;
    }
    pthread_mutex_unlock(&io->mu);
    while (posted) {
        cl_async_item *it = posted;
        posted = it->next;
        cl_conn_destroy(it->cn); /* frees it, which lives in the connection */
    }
    while (due) {
        cl_async_item *it = due;
        due = it->next;
        cl_run_work(it->r, CL_WORK_STEP);
    }
}

/* Milliseconds until the next back-off is due (1000 at most). */
static int io_timeout(cl_io *io, nng_time now, int reaping)
{
    nng_time next = now + 1000;
    pthread_mutex_lock(&io->mu);
    if (io->posted)
        next = now;
    for (cl_async_item *it = io->sleeping; it; it = it->next)
        if (it->at < next)
            next = it->at;
    pthread_mutex_unlock(&io->mu);
    if (reaping && io->next_reap < next)
        next = io->next_reap;
    return next <= now ? 0 : (int)(next - now);
}

static void *io_main(void *arg)
{
    trellis_client *c = arg;
    cl_io *io = &c->io;
    io_self = c;
    while (!atomic_load(&io->stop)) {
        nng_time now = cl_now();
        /* Parts with deadlines are out: look at them every CL_REAP_MS. */
        int reaping = atomic_load(&io->parts) > 0;
        if (reaping && now >= io->next_reap) {
            io_reap(c, now);
            io->next_reap = now + CL_REAP_MS;
        }
        if (ev_loop_poll(io->loop, io_timeout(io, now, reaping)) < 0 && errno != EINTR)
            break;
        io_run_posted(c, cl_now());
    }
    /* What was posted meanwhile (connections to close, and those their
     * closing released) still runs. */
    for (;;) {
        pthread_mutex_lock(&io->mu);
        int more = io->posted != NULL;
        pthread_mutex_unlock(&io->mu);
        if (!more)
            break;
        io_run_posted(c, (nng_time)-1);
    }
    ev_loop_run_tasks(io->loop);
    io_self = NULL;
    return NULL;
}

int cl_io_start(trellis_client *c)
{
    cl_io *io = &c->io;
    atomic_init(&io->stop, 0);
    atomic_init(&io->parts, 0);
    io->efd = -1;
    if (pthread_mutex_init(&io->mu, NULL) != 0)
        return TRELLIS_INTERNAL;
    io->inited = 1;
    if (ev_loop_new(&io->loop) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->efd < 0 || ev_watch_start(io->loop, &io->ew, io->efd, EV_READ, on_wake, io) != 0)
        return TRELLIS_INTERNAL;
    if (pthread_create(&io->thread, NULL, io_main, c) != 0)
        return TRELLIS_INTERNAL;
    io->started = 1;
    return TRELLIS_OK;
}

void cl_io_stop(trellis_client *c)
{
    cl_io *io = &c->io;
    if (!io->inited)
        return;
    if (io->started) {
        atomic_store(&io->stop, 1);
        io_wake(io);
        pthread_join(io->thread, NULL);
        io->started = 0;
    }
    if (io->loop) {
        ev_watch_stop(&io->ew);
        ev_loop_free(io->loop);
        io->loop = NULL;
    }
    if (io->efd >= 0)
        close(io->efd);
    io->efd = -1;
    pthread_mutex_destroy(&io->mu);
    io->inited = 0;
}

void cl_io_wake(trellis_client *c)
{
    io_wake(&c->io);
}

void cl_io_post_conn(trellis_client *c, cl_conn *cn)
{
    cl_io *io = &c->io;
    cl_async_item *it = &cn->gone;
    it->next = NULL;
    it->r = NULL;
    it->cn = cn;
    pthread_mutex_lock(&io->mu);
    if (io->posted_tail)
        io->posted_tail->next = it;
    else
        io->posted = it;
    io->posted_tail = it;
    pthread_mutex_unlock(&io->mu);
    if (!cl_io_here(c))
        io_wake(io); /* on the thread itself, the loop runs it after this turn */
}

void cl_io_sleep(trellis_client *c, cl_async_item *it, cl_run *r, nng_time at)
{
    cl_io *io = &c->io;
    it->r = r;
    it->cn = NULL;
    it->work = CL_WORK_STEP;
    it->at = at;
    pthread_mutex_lock(&io->mu);
    it->next = io->sleeping;
    io->sleeping = it;
    pthread_mutex_unlock(&io->mu);
    if (!cl_io_here(c))
        io_wake(io);
}
