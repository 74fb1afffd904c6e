/*
 * mailbox.h - how the node's main thread and its shard threads talk:
 * a queue of messages plus an eventfd the receiver polls with its sockets.
 * The lock is held only to link or unlink messages, and only when there is
 * mail; the request path never touches a mailbox.
 */
#ifndef TRELLIS_MAILBOX_H
#define TRELLIS_MAILBOX_H

#include <pthread.h>
#include <stdint.h>

typedef struct mb_msg {
    struct mb_msg *next;
    int type;
    /* Payload; the type says which fields mean something. ptr belongs to
     * the message until the receiver takes it; a message that is never
     * delivered (the receiver stopped first) frees it with free_ptr. */
    void *ptr;
    void (*free_ptr)(void *ptr);
    uint64_t u64[4];
    char text[128];
} mb_msg;

typedef struct mailbox {
    pthread_mutex_t lock;
    mb_msg *head, *tail;
    int fd; /* eventfd: readable while mail is waiting */
} mailbox;

/* 0, or -1 if the eventfd cannot be created. */
int mailbox_init(mailbox *mb);
/* Frees undelivered messages, and their payloads through free_ptr. */
void mailbox_fini(mailbox *mb);
/* Allocates a zeroed message of the given type; NULL on OOM. */
mb_msg *mailbox_msg(int type);
/* Queues m (which then belongs to the mailbox) and wakes the receiver. */
void mailbox_post(mailbox *mb, mb_msg *m);
/* Takes every queued message, oldest first, as a list the caller frees
 * with free(); clears the eventfd. */
mb_msg *mailbox_take(mailbox *mb);

#endif
