#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/btreport.h"
#include "common/fdio.h"

/* Every value of the report is encoded so: one line per signal, ASCII
 * (the report is read by tools that may not take UTF-8). */
#define BTR_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII)

static int flush(struct btr *r, struct jr_err *err)
{
        int e = jr_write_all(r->fd, r->buf, r->len);
        r->len = 0;
        return e < 0 ? jr_fail(err, -e, "--report %s", r->path ? r->path : "-") : 0;
}

/* Bytes into the buffer, written out whenever it fills. */
static int put(struct btr *r, const char *p, size_t len, struct jr_err *err)
{
        r->bytes += len;
        while (len > 0) {
                if (r->len == BTR_BUF) {
                        int e = flush(r, err);
                        if (e < 0)
                                return e;
                }
                size_t n = BTR_BUF - r->len < len ? BTR_BUF - r->len : len;
                memcpy(r->buf + r->len, p, n);
                r->len += n;
                p += n;
                len -= n;
        }
        return 0;
}

/* An unnamed file for the stdout spool: in $TMPDIR or /tmp, else in
 * memory. */
static int spool(void)
{
        const char *dir = getenv("TMPDIR");
        int fd = open(dir && *dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && dir && *dir)
                fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                fd = memfd_create("jailrun-report", MFD_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int btr_open(struct btr *r, const char *path, enum btr_format format, uint64_t max, struct jr_err *err)
{
        *r = (struct btr){ .fd = -1, .format = format, .max = max };
        if (!(r->buf = malloc(BTR_BUF)))
                return jr_fail(err, ENOMEM, "--report");
        if (strcmp(path, "-") == 0) {
                r->to_stdout = 1;
                r->fd = spool();
                return r->fd < 0 ? jr_fail(err, -r->fd, "--report -: a temporary file") : 0;
        }
        char tmp[PATH_MAX];
        if (jr_snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
                return jr_fail(err, ENAMETOOLONG, "--report %s", path);
        if (!(r->path = strdup(path)) || !(r->tmp = strdup(tmp)))
                return jr_fail(err, ENOMEM, "--report");
        r->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (r->fd < 0) {
                free(r->tmp);
                r->tmp = NULL;  /* not ours to remove */
                return jr_fail(err, errno, "--report %s: create %s", path, tmp);
        }
        return 0;
}

/* j encoded and appended, less `skip` bytes at each end. */
static int put_json(struct btr *r, const json_t *j, size_t skip, struct jr_err *err)
{
        _cleanup_free_ char *s = json_dumps(j, BTR_FLAGS);
        if (!s)
                return jr_fail(err, ENOMEM, "--report");
        size_t n = strlen(s);
        return n < 2 * skip ? jr_fail(err, EINVAL, "--report: encoding") : put(r, s + skip, n - 2 * skip, err);
}

int btr_begin(struct btr *r, uint64_t bars, struct jr_err *err)
{
        if (r->format == BTR_JSONL)
                return 0;
        /* {"jailrun_backtest":1,"bars":N,"signals":[ ... ],SUMMARY} */
        _cleanup_(json_decrefp) json_t *head = json_pack("{s:i, s:I, s:[]}", "jailrun_backtest", 1, "bars",
                                                         (json_int_t)bars, "signals");
        if (!head)
                return jr_fail(err, ENOMEM, "--report");
        _cleanup_free_ char *s = json_dumps(head, BTR_FLAGS);
        size_t n = s ? strlen(s) : 0;
        if (n < 2 || strcmp(s + n - 2, "]}") != 0)
                return jr_fail(err, ENOMEM, "--report");
        return put(r, s, n - 2, err);  /* the array and the object stay open */
}

int btr_fits(const struct btr *r, size_t lines_len, uint64_t n)
{
        /* JSON: each line's newline becomes ",\n" before it, "\n" before
         * the first; JSON lines: the newline after it, as given. */
        size_t len = lines_len;
        if (r->format == BTR_JSON && n)
                len += n - (r->signals == 0);
        return r->bytes + len + 2 <= r->max;
}

int btr_signal(struct btr *r, const char *text, size_t len, struct jr_err *err)
{
        int e = 0;
        if (r->format == BTR_JSON)
                e = put(r, r->signals ? ",\n" : "\n", r->signals ? 2 : 1, err);
        if (e == 0)
                e = put(r, text, len, err);
        if (e == 0 && r->format == BTR_JSONL)
                e = put(r, "\n", 1, err);
        r->signals++;
        return e;
}

static int copy_to_stdout(struct btr *r, struct jr_err *err)
{
        if (lseek(r->fd, 0, SEEK_SET) < 0)
                return jr_fail(err, errno, "--report -: rewind the spool");
        fflush(stdout);
        for (;;) {
                ssize_t n = read(r->fd, r->buf, BTR_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jr_fail(err, errno, "--report -: read the spool");
                if (n == 0)
                        return 0;
                int e = jr_write_all(STDOUT_FILENO, r->buf, (size_t)n);
                if (e < 0)
                        return jr_fail(err, -e, "--report -");
        }
}

static int put_summary(struct btr *r, json_t *summary, uint64_t bars, struct jr_err *err)
{
        if (r->format == BTR_JSONL) {
                _cleanup_(json_decrefp) json_t *line = json_pack("{s:i, s:I}", "jailrun_backtest", 1, "bars",
                                                                 (json_int_t)bars);
                if (!line || json_object_update(line, summary) < 0)
                        return jr_fail(err, ENOMEM, "--report");
                int e = put_json(r, line, 0, err);
                return e < 0 ? e : put(r, "\n", 1, err);
        }
        /* The members of summary close the object the head opened. */
        _cleanup_(json_decrefp) json_t *rest = json_copy(summary);
        if (!rest)
                return jr_fail(err, ENOMEM, "--report");
        json_object_del(rest, "jailrun_backtest");
        json_object_del(rest, "bars");
        json_object_del(rest, "signals");
        int e = put(r, "\n],", 3, err);
        if (e == 0 && json_object_size(rest) == 0)
                return jr_fail(err, EINVAL, "--report: an empty summary");
        if (e == 0)
                e = put_json(r, rest, 1, err);
        return e < 0 ? e : put(r, "}\n", 2, err);
}

int btr_finish(struct btr *r, json_t *summary, uint64_t bars, struct jr_err *err)
{
        int e = put_summary(r, summary, bars, err);
        if (e == 0)
                e = flush(r, err);
        if (e == 0 && r->to_stdout)
                e = copy_to_stdout(r, err);
        if (e == 0 && !r->to_stdout && fsync(r->fd) < 0)
                e = jr_fail(err, errno, "--report %s: fsync", r->path);
        if (e == 0 && !r->to_stdout && rename(r->tmp, r->path) < 0)
                e = jr_fail(err, errno, "--report %s: rename %s", r->path, r->tmp);
        if (e == 0) {
                free(r->tmp);
                r->tmp = NULL;
        }
        btr_close(r);
        return e;
}

void btr_close(struct btr *r)
{
        closep(&r->fd);
        if (r->tmp)
                unlink(r->tmp);
        free(r->tmp);
        free(r->path);
        free(r->buf);
        *r = (struct btr){ .fd = -1 };
}
