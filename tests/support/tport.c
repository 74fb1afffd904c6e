/*
 * tport.c - port ranges of a test's own (see tport.h).
 */
#include "tport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
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

int tport_reserve(int first, int count, int slots, int *lock_fd)
{
    *lock_fd = -1;
    int slot = (int)(getpid() % slots);
    for (int tries = 0; tries < slots; tries++, slot = (slot + 1) % slots) {
        int base = first + slot * count;
        char lock[256];
        snprintf(lock, sizeof(lock), "/tmp/trellis-test-ports-%d.lock", base);
        int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            continue;
        }
        int ok = 1;
        for (int p = 0; p < count && ok; p++)
            ok = port_free(base + p);
        if (ok) {
            *lock_fd = fd;
            return base;
        }
        close(fd);
    }
    return -1;
}

void tport_release(int lock_fd)
{
    if (lock_fd >= 0)
        close(lock_fd);
}
