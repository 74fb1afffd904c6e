/*
 * evloop.h - a small event loop over epoll: descriptors to watch, and work
 * to run before the loop sleeps.
 *
 * One thread runs a loop (a storage shard, libtrellis's I/O thread). A turn
 * is ev_loop_poll: first the "before sleep" tasks queued since the last
 * turn (connections write their pending output there, so replies produced
 * anywhere in a turn leave in one system call per connection), then one
 * epoll_wait, then the callbacks of the ready descriptors. Watches are
 * level-triggered: a descriptor that still has input is reported again in
 * the next turn, which keeps one busy connection from starving the others.
 *
 * Watches and tasks are the caller's structures, embedded in its own
 * objects; the loop never allocates per watch. A watch stopped from inside
 * a callback is not reported again, even if it was ready in the same turn,
 * so a callback may stop (and free) any watch, its own included.
 *
 * Not thread-safe, except ev_watch_set_events, which other threads may
 * call on a watch whose owner serializes its calls (libtrellis's callers
 * asking for EPOLLOUT while writing on their own thread).
 */
#ifndef TRELLIS_EVLOOP_H
#define TRELLIS_EVLOOP_H

#include <stdint.h>

#define EV_READ  0x001u /* EPOLLIN */
#define EV_WRITE 0x004u /* EPOLLOUT */
#define EV_ERROR 0x008u /* EPOLLERR, reported whatever was asked */
#define EV_HUP   0x010u /* EPOLLHUP, likewise */

#define EV_MAX_EVENTS 256 /* descriptors reported per turn */

typedef struct ev_loop ev_loop;
typedef struct ev_watch ev_watch;
typedef struct ev_task ev_task;

/* Called with the ready events (EV_*). */
typedef void (*ev_watch_cb)(ev_watch *w, uint32_t events);
typedef void (*ev_task_cb)(ev_task *t);

struct ev_watch {
    ev_loop *loop; /* NULL while stopped */
    int fd;
    uint32_t events;
    ev_watch_cb cb;
    void *arg;
};

struct ev_task {
    ev_task *next;
    ev_task_cb cb;
    void *arg;
    int queued;
};

/* A new loop. TRELLIS_OK, or TRELLIS_INTERNAL (epoll_create1 failed;
 * errno says why). */
int ev_loop_new(ev_loop **out);

/* Frees the loop. Watches still started are forgotten, not closed: their
 * descriptors belong to their owners. */
void ev_loop_free(ev_loop *l);

/* Starts watching fd for events (EV_READ and/or EV_WRITE; may be 0) with
 * cb(w, ready). TRELLIS_OK, or TRELLIS_INTERNAL when epoll refuses the
 * descriptor (w stays stopped). */
int ev_watch_start(ev_loop *l, ev_watch *w, int fd, uint32_t events, ev_watch_cb cb, void *arg);

/* Changes what w waits for. TRELLIS_OK or TRELLIS_INTERNAL. */
int ev_watch_set_events(ev_watch *w, uint32_t events);

/* Stops watching (before the descriptor is closed). A stopped watch may be
 * started again. No-op on a stopped watch. */
void ev_watch_stop(ev_watch *w);

/* Queues t to run before the loop next sleeps (once, however often it is
 * queued). */
void ev_task_queue(ev_loop *l, ev_task *t, ev_task_cb cb, void *arg);

/* Takes t off the queue if it is on it (before freeing its owner). */
void ev_task_cancel(ev_loop *l, ev_task *t);

/* 1 if before-sleep tasks are queued (the next turn should not block). */
int ev_loop_has_tasks(const ev_loop *l);

/* One turn: runs the queued tasks, waits at most timeout_ms (-1: no
 * limit; 0 when tasks queued more tasks) for events, runs their
 * callbacks. Returns how many descriptors were ready, or -1 when epoll
 * failed (errno; EINTR is reported as 0). */
int ev_loop_poll(ev_loop *l, int timeout_ms);

/* ev_loop_poll in two halves, for a loop that measures its busy time:
 * ev_loop_wait runs the tasks and waits (same result), ev_loop_dispatch
 * runs the callbacks of what the wait found. */
int ev_loop_wait(ev_loop *l, int timeout_ms);
void ev_loop_dispatch(ev_loop *l);

/* Runs the queued tasks now (a loop about to stop flushes its output). */
void ev_loop_run_tasks(ev_loop *l);

#endif
