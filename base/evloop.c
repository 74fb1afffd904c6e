/*
 * evloop.c - the event loop (evloop.h) over epoll.
 */
#include "base/evloop.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "trellis/trellis_status.h"

struct ev_loop {
    int epfd;
    ev_task *tasks, *tasks_tail;
    size_t ntasks;
    /* The turn being dispatched: entries of stopped watches are cleared. */
    struct epoll_event ready[EV_MAX_EVENTS];
    int nready, cursor;
};

int ev_loop_new(ev_loop **out)
{
    *out = NULL;
    ev_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return TRELLIS_INTERNAL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return TRELLIS_INTERNAL;
    }
    *out = l;
    return TRELLIS_OK;
}

void ev_loop_free(ev_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l);
}

static uint32_t to_epoll(uint32_t events)
{
    return (events & EV_READ ? EPOLLIN : 0) | (events & EV_WRITE ? EPOLLOUT : 0);
}

static uint32_t from_epoll(uint32_t e)
{
    return (e & EPOLLIN ? EV_READ : 0) | (e & EPOLLOUT ? EV_WRITE : 0) |
           (e & EPOLLERR ? EV_ERROR : 0) | (e & (EPOLLHUP | EPOLLRDHUP) ? EV_HUP : 0);
}

int ev_watch_start(ev_loop *l, ev_watch *w, int fd, uint32_t events, ev_watch_cb cb, void *arg)
{
    w->loop = NULL;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->arg = arg;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return TRELLIS_INTERNAL;
    w->loop = l;
    return TRELLIS_OK;
}

int ev_watch_set_events(ev_watch *w, uint32_t events)
{
    if (!w->loop)
        return TRELLIS_INTERNAL;
    if (events == w->events)
        return TRELLIS_OK;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = w};
    if (epoll_ctl(w->loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) != 0)
        return TRELLIS_INTERNAL;
    w->events = events;
    return TRELLIS_OK;
}

void ev_watch_stop(ev_watch *w)
{
    ev_loop *l = w->loop;
    if (!l)
        return;
    /* The descriptor may already be closed by a peer's hang-up handling
     * elsewhere; epoll forgets closed descriptors by itself. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    for (int i = l->cursor; i < l->nready; i++)
        if (l->ready[i].data.ptr == w)
            l->ready[i].data.ptr = NULL;
    w->loop = NULL;
}

void ev_task_queue(ev_loop *l, ev_task *t, ev_task_cb cb, void *arg)
{
    t->cb = cb;
    t->arg = arg;
    if (t->queued)
        return;
    t->queued = 1;
    t->next = NULL;
    if (l->tasks_tail)
        l->tasks_tail->next = t;
    else
        l->tasks = t;
    l->tasks_tail = t;
    l->ntasks++;
}

void ev_task_cancel(ev_loop *l, ev_task *t)
{
    if (!t->queued)
        return;
    ev_task *prev = NULL;
    for (ev_task *c = l->tasks; c; prev = c, c = c->next) {
        if (c != t)
            continue;
        if (prev)
            prev->next = c->next;
        else
            l->tasks = c->next;
        if (l->tasks_tail == c)
            l->tasks_tail = prev;
        l->ntasks--;
        break;
    }
    t->queued = 0;
    t->next = NULL;
}

int ev_loop_has_tasks(const ev_loop *l)
{
    return l->tasks != NULL;
}

void ev_loop_run_tasks(ev_loop *l)
{
    /* As many tasks as are queued now, one at a time from the live queue
     * (a task may cancel another); those queued while they run wait for
     * the next round (the loop then does not block). */
    size_t n = l->ntasks;
    while (n-- > 0 && l->tasks) {
        ev_task *t = l->tasks;
        l->tasks = t->next;
        if (!l->tasks)
            l->tasks_tail = NULL;
        l->ntasks--;
        t->queued = 0;
        t->next = NULL;
        t->cb(t); /* may free t */
    }
}

int ev_loop_wait(ev_loop *l, int timeout_ms)
{
    ev_loop_run_tasks(l);
    if (l->tasks)
        timeout_ms = 0;
    l->nready = l->cursor = 0;
    int n = epoll_wait(l->epfd, l->ready, EV_MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    l->nready = n;
    return n;
}

void ev_loop_dispatch(ev_loop *l)
{
    for (l->cursor = 0; l->cursor < l->nready; l->cursor++) {
        ev_watch *w = l->ready[l->cursor].data.ptr;
        if (!w)
            continue; /* stopped by an earlier callback of this turn */
        w->cb(w, from_epoll(l->ready[l->cursor].events));
    }
    l->nready = l->cursor = 0;
}

int ev_loop_poll(ev_loop *l, int timeout_ms)
{
    int n = ev_loop_wait(l, timeout_ms);
    if (n > 0)
        ev_loop_dispatch(l);
    return n;
}
