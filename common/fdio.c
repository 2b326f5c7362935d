#include "config.h"

#include <errno.h>
#include <unistd.h>

#include "common/fdio.h"

int jr_write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -ENOSPC;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int jr_read_all(int fd, void *buf, size_t len)
{
        char *p = buf;
        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}
