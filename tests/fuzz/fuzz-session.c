/* libFuzzer target for what a session's requests carry: the first byte
 * picks the request, the rest is its body or file path.
 *   0: POST /v1/sessions body: the route's field check, the limits, the
 *      package names (session_take_limits, session_package_names_check)
 *   1: POST /v1/sessions/{id}/execute body (session_execute_check)
 *   2: POST /v1/sessions/{id}/packages body (its names)
 *   3: a file path of .../files/{path} as it comes in the URL: decoded
 *      (api_unescape), checked (api_path_check), then GET, and for a name
 *      not there PUT, GET and DELETE (supervisor/jaild/sfiles.c) in a
 *      private directory holding what a hostile session plants (a link
 *      out, a FIFO, a subdirectory), which no path may leave or follow.
 * Build: make fuzz; run: tests/fuzz/run SECONDS session. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/jaild/api_int.h"
#include "supervisor/jaild/sesscheck.h"
#include "supervisor/jaild/session.h"
#include "supervisor/jaild/sfiles.h"

static char dir[64];
static int dirfd_ = -1;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
        (void)st, (void)flag, (void)f;
        return remove(path);
}

static void cleanup(void)
{
        if (dirfd_ >= 0)
                close(dirfd_);
        if (dir[0])
                nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The session directory, made once in a private one: a file, a
 * subdirectory, and what a hostile session plants (a symbolic link out of
 * it, to a directory beside it, and a FIFO). */
static int setup(void)
{
        const char *tmp = getenv("TMPDIR");
        char target[128];
        snprintf(dir, sizeof dir, "%.40s/fuzz-session-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
                return -1;
        atexit(cleanup);
        snprintf(target, sizeof target, "%s/outside", dir);
        int top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (top < 0 || mkdirat(top, "jail", 0755) < 0 || mkdirat(top, "outside", 0755) < 0)
                return -1;
        dirfd_ = openat(top, "jail", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(top);
        if (dirfd_ < 0 || mkdirat(dirfd_, "sub", 0755) < 0 || symlinkat(target, dirfd_, "out") < 0 ||
            mkfifoat(dirfd_, "fifo", 0644) < 0)
                return -1;
        int fd = openat(dirfd_, "sub/a.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, "hello\n", 6) != 6)
                return -1;
        close(fd);
        return 0;
}

static void files(const char *p, size_t n)
{
        char *path = strndup(p, n), msg[256];
        /* the URL's path, as MHD hands it over: a C string */
        if (!path)
                return;
        api_unescape(path);
        if (api_path_check(path, 1, msg, sizeof msg) < 0) {
                free(path);
                return;
        }
        struct sfiles_out out = { .fd = -1 };
        struct jr_err err = { 0 };
        int r = sfiles_get(dirfd_, path, 1 << 20, &out, &err);
        if (r == 0 && (strncmp(path, "out/", 4) == 0 || strcmp(path, "out") == 0 || strcmp(path, "fifo") == 0))
                __builtin_trap();  /* followed the link out, or read a FIFO */
        sfiles_out_free(&out);
        if (r == -ENOENT && path[0]) {
                static const char body[] = "fuzz\0bytes";
                if (sfiles_put(dirfd_, path, body, sizeof body, &err) == 0) {
                        struct sfiles_out back = { .fd = -1 };
                        if (strncmp(path, "out/", 4) == 0 || sfiles_get(dirfd_, path, 1 << 20, &back, &err) != 0 ||
                            back.len != sizeof body || memcmp(back.data, body, sizeof body) != 0 ||
                            sfiles_delete(dirfd_, path, &err) != 0)
                                __builtin_trap();  /* what was put reads back, and goes */
                        sfiles_out_free(&back);
                }
        }
        free(path);
}

static void body(int op, const char *p, size_t n)
{
        static const char *const paths[] = { "/v1/sessions", "/v1/sessions/s-1/execute", "/v1/sessions/s-1/packages" };
        char id[API_ID_MAX + 1], allow[64], msg[256];
        const char *tail;
        unsigned status;
        const struct api_route *r = api_route_find("POST", paths[op], id, &tail, allow, sizeof allow, &status);
        json_t *j = NULL;
        if (!r)
                __builtin_trap();
        if (api_body_parse(r, p, n, &j, msg, sizeof msg) < 0)
                return;
        if (op == 0) {
                struct session_limits l = { .memory = 512 << 20, .mem_max = SESSION_MEMORY_MAX, .cpus = 1,
                                            .cpus_max = SESSION_CPUS_MAX, .timeout = SESSION_TIMEOUT_DEFAULT,
                                            .idle_max = 600 };
                if (session_take_limits(j, &l, msg, sizeof msg) == 0 &&
                    (l.memory < SESSION_MEMORY_MIN || l.memory > l.mem_max || !(l.cpus >= 0.01 && l.cpus <= l.cpus_max) ||
                     !(l.timeout >= 0.001 && l.timeout <= SESSION_TIMEOUT_MAX) || !(l.idle_s >= 1 && l.idle_s <= 600)))
                        __builtin_trap();
                json_t *pk = json_object_get(j, "packages");
                if (pk)
                        (void)session_package_names_check(pk, msg, sizeof msg);
        } else if (op == 1) {
                double t;
                int rc = session_execute_check(j, 300, &t, msg, sizeof msg);
                if (rc == 0 && !(t >= 0.001 && t <= 300))
                        __builtin_trap();
                if (rc < 0 && rc != -EINVAL && rc != -EMSGSIZE)
                        __builtin_trap();
        } else {
                (void)session_package_names_check(json_object_get(j, "names"), msg, sizeof msg);
        }
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int ready;
        if (!ready) {
                if (setup() < 0)
                        __builtin_trap();  /* the harness's own directory could not be made */
                ready = 1;
        }
        if (size == 0)
                return 0;
        int op = data[0] % 4;
        if (op == 3)
                files((const char *)data + 1, size - 1);
        else
                body(op, (const char *)data + 1, size - 1);
        return 0;
}
