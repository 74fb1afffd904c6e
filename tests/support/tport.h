/*
 * tport.h - a range of loopback TCP ports of a test's own: derived from
 * the pid, locked against every other test process of the machine (a lock
 * file per range, /tmp/trellis-test-ports-BASE.lock, held until released or
 * the process exits), and moved on while any of its ports is taken. Every
 * harness takes its ports here (tcluster, the client tests' tcl).
 */
#ifndef TRELLIS_TESTS_SUPPORT_TPORT_H
#define TRELLIS_TESTS_SUPPORT_TPORT_H

/* Reserves `count` consecutive ports at first + slot * count, for a slot
 * below `slots`. Returns the range's first port and sets *lock_fd (give it
 * to tport_release), or -1 when every range is locked or busy. */
int tport_reserve(int first, int count, int slots, int *lock_fd);

/* Lets the range go (lock_fd -1 is fine). */
void tport_release(int lock_fd);

#endif
