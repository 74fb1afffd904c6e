/*
 * tport.c - TCP ports for tests, locked machine-wide (see tport.h).
 */
#include "tport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int tport_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    /* SO_REUSEADDR: a port in TIME_WAIT is free for a listener. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* The lock directory, created world-writable (sticky) on first use so that
 * every user of the machine shares it. */
static const char *lock_dir(void)
{
    const char *dir = getenv("TRELLIS_PORT_LOCKS");
    if (!dir || !*dir)
        dir = TPORT_LOCK_DIR;
    if (mkdir(dir, 01777) == 0)
        chmod(dir, 01777); /* whatever the umask */
    return dir;
}

/* Opens and locks block b's lock file; the descriptor, or -1 if the block
 * is taken or cannot be locked. flock needs no write access, so a lock
 * file another user created serves as well. */
static int lock_block(const char *dir, int b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%d.lock", dir, TPORT_FIRST + b * TPORT_BLOCK);
    int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tport_reserve(tport *p, int count)
{
    memset(p, 0, sizeof(*p));
    int need = (count + TPORT_BLOCK - 1) / TPORT_BLOCK;
    if (count < 1 || need > TPORT_MAX_RUN) {
        fprintf(stderr, "tport: cannot reserve %d ports\n", count);
        return -1;
    }
    const char *dir = lock_dir();
    int starts = TPORT_BLOCKS - need + 1;
    int first = (int)(getpid() % starts);
    for (int tried = 0; tried < starts; tried += need) {
        int b0 = (first + tried) % starts;
        int ok = 1;
        for (int b = b0; b < b0 + need && ok; b++) {
            int fd = lock_block(dir, b);
            if (fd < 0)
                ok = 0;
            else
                p->fd[p->nfd++] = fd;
        }
        int base = TPORT_FIRST + b0 * TPORT_BLOCK;
        for (int port = base; port < base + need * TPORT_BLOCK && ok; port++)
            ok = tport_free(port);
        if (ok) {
            p->base = base;
            p->count = need * TPORT_BLOCK;
            return 0;
        }
        tport_release(p);
    }
    fprintf(stderr, "tport: no %d free ports in %d..%d (locks in %s)\n", count, TPORT_FIRST,
            TPORT_END - 1, dir);
    return -1;
}

void tport_release(tport *p)
{
    for (int i = 0; i < p->nfd; i++)
        close(p->fd[i]);
    memset(p, 0, sizeof(*p));
}
