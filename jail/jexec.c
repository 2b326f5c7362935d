/* The configuration memfd between the jail's set-up and the jail program,
 * and the set-up reports both sides send. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/proto.h"
#include "jail/jexec.h"
#include "jail/pyrt.h"
#include "common/fdio.h"

int jail_notify(int chan, const char *type)
{
        char *s = NULL;
        json_t *m = json_pack("{s:s}", "type", type);
        if (m)
                s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        ssize_t n = s ? send(chan, s, strlen(s), MSG_NOSIGNAL) : -1;
        free(s);
        return n < 0 ? -1 : 0;
}

_Noreturn void jail_fatal(const char *step, const struct jr_err *err, int chan)
{
        json_t *m = json_pack("{s:s, s:s, s:i, s:s}", "type", "fatal", "step", step, "errno",
                              err->errnum, "message", err->msg);
        char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (s && chan >= 0)
                (void)!send(chan, s, strlen(s), MSG_NOSIGNAL);
        else
                dprintf(STDERR_FILENO, "jailrun: jail set-up failed at %s: %s\n", step, err->msg);
        _exit(EXIT_SETUP);
}

/* Takes the next text of len bytes and its NUL from *p (bounded by end). */
static const char *take(char **p, const char *end, uint64_t len)
{
        if (len >= (uint64_t)(end - *p) || (*p)[len] != '\0')
                return NULL;
        const char *s = *p;
        *p += len + 1;
        return s;
}

/* Splits the argument block into argv (argc strings, all inside it). */
static int split_args(struct jexec_cfg *c, char *args, uint64_t len, uint32_t argc)
{
        if (argc > len || !(c->argv = calloc((size_t)argc + 1, sizeof *c->argv)))
                return -1;
        char *p = args, *end = args + len;
        for (uint32_t i = 0; i < argc; i++) {
                char *nul = memchr(p, '\0', (size_t)(end - p));
                if (!nul)
                        return -1;
                c->argv[i] = p;
                p = nul + 1;
        }
        c->argc = (int)argc;
        return p == end ? 0 : -1;
}

static int parse(struct jexec_cfg *c, size_t size)
{
        struct jexec_hdr h;
        if (size < sizeof h)
                return -1;
        memcpy(&h, c->buf, sizeof h);
        if (h.magic != JEXEC_MAGIC)
                return -1;
        char *p = c->buf + sizeof h;
        const char *end = c->buf + size;
        c->profile = (int)h.profile;
        c->entry = (int)h.entry;
        c->host_uid = h.host_uid;
        c->host_gid = h.host_gid;
        c->max_tasks = h.max_tasks;
        c->flags = h.flags;
        c->scratch_bytes = (unsigned long)h.scratch_bytes;
        c->policy_json = take(&p, end, h.policy_len);
        c->script = c->policy_json ? take(&p, end, h.script_len) : NULL;
        c->script_len = (size_t)h.script_len;
        c->script_name = c->script ? take(&p, end, h.name_len) : NULL;
        c->data_name = c->script_name ? take(&p, end, h.data_name_len) : NULL;
        c->cgroup_path = c->data_name ? take(&p, end, h.cgroup_len) : NULL;
        if (!c->cgroup_path || h.args_len != (uint64_t)(end - p))
                return -1;
        return split_args(c, p, h.args_len, h.argc);
}

int jexec_read(int fd, struct jexec_cfg *out, struct jr_err *err)
{
        struct stat st;
        memset(out, 0, sizeof *out);
        if (fstat(fd, &st) < 0)
                return jr_fail(err, errno, "stat the configuration");
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > JEXEC_MAX_BYTES)
                return jr_fail(err, EINVAL, "the configuration is not a file of at most %u bytes",
                               JEXEC_MAX_BYTES);
        size_t size = (size_t)st.st_size;
        if (!(out->buf = malloc(size)))
                return jr_fail(err, ENOMEM, "configuration buffer");
        int r = (int)lseek(fd, 0, SEEK_SET);
        r = r < 0 ? -errno : jr_read_all(fd, out->buf, size);
        if (r < 0)
                return jr_fail(err, -r, "read the configuration");
        if (parse(out, size) < 0)
                return jr_fail(err, EPROTO, "the configuration is malformed");
        return 0;
}

/* Appends s (len bytes) and a NUL at *p. */
static void put(char **p, const char *s, size_t len)
{
        memcpy(*p, s, len);
        (*p)[len] = '\0';
        *p += len + 1;
}

/* Fills a buffer of the header and the texts; its size in *size. */
static char *build(const struct jexec_cfg *c, size_t *size)
{
        struct jexec_hdr h = {
                .magic = JEXEC_MAGIC,
                .profile = (uint32_t)c->profile,
                .entry = (uint32_t)c->entry,
                .argc = (uint32_t)c->argc,
                .host_uid = c->host_uid,
                .host_gid = c->host_gid,
                .max_tasks = c->max_tasks,
                .flags = c->flags,
                .scratch_bytes = c->scratch_bytes,
                .policy_len = strlen(c->policy_json),
                .script_len = c->script_len,
                .name_len = strlen(c->script_name),
                .data_name_len = strlen(c->data_name),
                .cgroup_len = strlen(c->cgroup_path ? c->cgroup_path : ""),
        };
        for (int i = 0; i < c->argc; i++)
                h.args_len += strlen(c->argv[i]) + 1;
        size_t n = sizeof h + h.policy_len + h.script_len + h.name_len + h.data_name_len + h.cgroup_len + 5 +
                   h.args_len;
        char *buf = n <= JEXEC_MAX_BYTES ? malloc(n) : NULL;
        if (!buf)
                return NULL;
        char *p = buf;
        memcpy(p, &h, sizeof h);
        p += sizeof h;
        put(&p, c->policy_json, h.policy_len);
        put(&p, c->script, h.script_len);
        put(&p, c->script_name, h.name_len);
        put(&p, c->data_name, h.data_name_len);
        put(&p, c->cgroup_path ? c->cgroup_path : "", h.cgroup_len);
        for (int i = 0; i < c->argc; i++)
                put(&p, c->argv[i], strlen(c->argv[i]));
        *size = n;
        return buf;
}

int jexec_make(const struct jexec_cfg *c, struct jr_err *err)
{
        size_t size = 0;
        char *buf = build(c, &size);
        if (!buf)
                return jr_fail(err, ENOMEM, "configuration of %zu bytes", c->script_len);
        int fd = memfd_create("jailrun-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        int r = fd < 0 ? -errno : 0;
        for (size_t off = 0; r == 0 && off < size;) {
                ssize_t n = write(fd, buf + off, size - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        r = n < 0 ? -errno : -EIO;
                else
                        off += (size_t)n;
        }
        free(buf);
        if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                r = -errno;
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return jr_fail(err, -r, "write the configuration memfd");
        }
        return fd;
}

struct pyrt_cfg jexec_pyrt_cfg(const struct jexec_cfg *c, const char *entry)
{
        return (struct pyrt_cfg){
                .entry = entry,
                .policy_json = c->policy_json,
                .script = c->script,
                .script_len = c->script_len,
                .script_name = c->script_name,
                .data_name = c->data_name,
                .argc = c->argc,
                .argv = c->argv,
                .pypath = JR_PYPATH,
                .home = JR_PYHOME,
        };
}
