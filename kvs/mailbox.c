/*
 * mailbox.c - message queues between threads.
 */
#include "kvs/mailbox.h"

#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mailbox_init(mailbox *mb)
{
    mb->head = mb->tail = NULL;
    mb->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->fd < 0)
        return -1;
    pthread_mutex_init(&mb->lock, NULL);
    return 0;
}

void mailbox_fini(mailbox *mb)
{
    mb_msg *m = mailbox_take(mb);
    while (m) {
        mb_msg *n = m->next;
        if (m->ptr && m->free_ptr)
            m->free_ptr(m->ptr);
        free(m);
        m = n;
    }
    if (mb->fd >= 0)
        close(mb->fd);
    mb->fd = -1;
    pthread_mutex_destroy(&mb->lock);
}

mb_msg *mailbox_msg(int type)
{
    mb_msg *m = calloc(1, sizeof(*m));
    if (m)
        m->type = type;
    return m;
}

void mailbox_post(mailbox *mb, mb_msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&mb->lock);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->lock);
    uint64_t one = 1;
    ssize_t w = write(mb->fd, &one, sizeof(one));
    (void)w; /* a full counter still leaves the fd readable */
}

mb_msg *mailbox_take(mailbox *mb)
{
    uint64_t v;
    ssize_t r = read(mb->fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&mb->lock);
    mb_msg *m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return m;
}
