/* Whole reads and writes on a file descriptor, EINTR retried. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Writes all of buf to fd; 0 or -errno (-ENOSPC when write returns 0),
 * never a short write. */
int jr_write_all(int fd, const void *buf, size_t len);

/* Reads exactly len bytes; 0 or -errno (-EIO when the file ends first). */
int jr_read_all(int fd, void *buf, size_t len);

/* Most descriptors one jr_send_fds / jr_recv_fds datagram carries. */
#define JR_MAX_PASSED_FDS 16

/* sendmsg of one datagram of len bytes with n (<= JR_MAX_PASSED_FDS) fds
 * attached; 0 or -errno (-EIO when cut short). */
int jr_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n);

/* recvmsg of one datagram of exactly len bytes with at most n fds
 * (close-on-exec; *got of them, the rest closed): bytes received (0 at
 * EOF) or -errno (-EPROTO for a wrong size or too many fds, none kept). */
ssize_t jr_recv_fds(int sock, void *buf, size_t len, int *fds, size_t n, size_t *got);
