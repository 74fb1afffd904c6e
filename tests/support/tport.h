/*
 * tport.h - TCP ports for tests, locked machine-wide.
 *
 * Ports TPORT_FIRST .. TPORT_END-1 (below Linux's ephemeral ports, so no
 * outgoing connection takes one) are cut into blocks of TPORT_BLOCK. A
 * test reserves a run of consecutive blocks: it takes an flock on each
 * block's lock file, TPORT_LOCK_DIR/<first port of the block>.lock, and
 * keeps the run only if none of its ports is bound. The locks are held
 * until tport_release or the end of the process, so tests of every
 * checkout on this machine (and the scripts of tests/support/lib.sh, which
 * take the same locks with flock(1)) never share a port.
 *
 * TRELLIS_PORT_LOCKS names another lock directory (tests of the allocator
 * itself); every process that must not collide has to use the same one.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TPORT_H
#define TRELLIS_TESTS_SUPPORT_TPORT_H

#define TPORT_FIRST    10000
#define TPORT_END      32768 /* Linux's first ephemeral port */
#define TPORT_BLOCK    32
#define TPORT_BLOCKS   ((TPORT_END - TPORT_FIRST) / TPORT_BLOCK)
#define TPORT_MAX_RUN  64 /* blocks one reservation may take: 2048 ports */
#define TPORT_LOCK_DIR "/tmp/trellis-ports"

typedef struct tport {
    int base;  /* the first port, 0 while nothing is reserved */
    int count; /* ports reserved: whole blocks, at least what was asked */
    int nfd;
    int fd[TPORT_MAX_RUN]; /* the locks, one per block */
} tport;

/* Reserves `count` consecutive free ports (1 .. TPORT_MAX_RUN *
 * TPORT_BLOCK). The search starts at a block derived from the pid. Returns
 * 0 with p filled in, or -1 (the reason on stderr) when no run of blocks
 * is free. */
int tport_reserve(tport *p, int count);

/* Releases the locks (a no-op on a zeroed or released tport). */
void tport_release(tport *p);

/* 1 if nothing is bound to 127.0.0.1:port (nor to the wildcard address). */
int tport_free(int port);

#endif
