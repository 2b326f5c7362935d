/* Whole reads and writes on a file descriptor, EINTR retried. */
#pragma once

#include <stddef.h>

/* Writes all of buf to fd; 0 or -errno (-ENOSPC when write returns 0),
 * never a short write. */
int jr_write_all(int fd, const void *buf, size_t len);

/* Reads exactly len bytes; 0 or -errno (-EIO when the file ends first). */
int jr_read_all(int fd, void *buf, size_t len);
