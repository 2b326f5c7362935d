/* Scope-exit destructors for every resource type the project uses.
 * Initialise each annotated variable (NULL or -1); hand ownership out with
 * TAKE_PTR / TAKE_FD. Shared by supervisor/ and jail/. */
#ifndef JR_CLEANUP_H
#define JR_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                  \
        static inline void func##p(type *p)                      \
        {                                                        \
                if (*p)                                          \
                        func(*p);                                \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

/* Closes without clobbering errno: callers report the errno of the failure
 * that made them unwind, not of the close. */
static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void fclosep(FILE **f)
{
        if (*f) {
                int saved = errno;
                fclose(*f);
                errno = saved;
        }
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

#define TAKE_PTR(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define TAKE_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#endif
