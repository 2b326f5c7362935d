#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/backtest.h"
#include "supervisor/job.h"

const char *const bt_category_names[BT_CATEGORIES] = { "SecurityError", "TimeoutError", "MemoryError",
                                                        "ProtocolError", "RuntimeError" };

/* What one bar may send: its return value as JSON text, its orders. */
#define BT_MAX_RETURN (64 * 1024)
#define BT_MAX_RETURN_DEPTH 32
#define BT_MAX_ORDERS 100
#define BT_MAX_TEXT (64 * 1024)  /* as a result's error message */
/* Most bars one run may have, and most bytes its signals may take in the
 * report (the jail's parse is bounded by its memory; these bound ours). */
#define BT_MAX_BARS (100u * 1000 * 1000)
#define BT_MAX_SIGNAL_BYTES (128u << 20)
#define BT_NODE_COST 256

static int bad(struct jr_err *err, const char *what)
{
        snprintf(err->msg, sizeof err->msg, "backtest batch: %s", what);
        err->errnum = EPROTO;
        return -EPROTO;
}

void bt_init(struct backtest *b, double abort_percent, unsigned abort_min)
{
        *b = (struct backtest){ .abort_percent = abort_percent, .abort_min = abort_min, .max_total = BT_MAX_BARS };
}

int bt_start(struct backtest *b, uint64_t total, struct jr_err *err)
{
        if (!b->signals && total > b->max_total) {
                snprintf(err->msg, sizeof err->msg, "the jail claims %llu bars; the bars file has %llu lines",
                         (unsigned long long)total, (unsigned long long)b->max_total);
                err->errnum = EPROTO;
                return -EPROTO;
        }
        if (b->signals || total == 0 || total > BT_MAX_BARS)
                return bad(err, "the bar count is out of range");
        b->total = total;
        b->signals = json_array();
        if (!b->signals)
                return jr_fail(err, ENOMEM, "backtest");
        return 0;
}

/* The number of values in j (itself included), or 0 if it nests deeper
 * than BT_MAX_RETURN_DEPTH. */
static size_t nodes(const json_t *j, int depth)
{
        if (depth > BT_MAX_RETURN_DEPTH)
                return 0;
        size_t i, n = 1, k;
        const char *key;
        json_t *v;
        if (json_is_array(j))
                json_array_foreach(j, i, v) {
                        if (!(k = nodes(v, depth + 1)))
                                return 0;
                        n += k;
                }
        if (json_is_object(j))
                json_object_foreach((json_t *)j, key, v) {
                        if (!(k = nodes(v, depth + 1)))
                                return 0;
                        n += k;
                }
        return n;
}

static int one_of(const char *s, const char *const *names)
{
        for (; *names; names++)
                if (strcmp(s, *names) == 0)
                        return 1;
        return 0;
}

static int check_order(json_t *o)
{
        static const char *const sides[] = { "buy", "sell", NULL };
        static const char *const buys[] = { "buy_to_open", "buy_to_close", NULL };
        static const char *const sells[] = { "sell_to_open", "sell_to_close", NULL };
        static const char *const types[] = { "market", "limit", "stop", NULL };
        const char *side, *action, *type;
        double qty, price = 0;
        json_t *p = NULL;
        if (json_unpack(o, "{s:s, s:s, s:F, s:s, s?o!}", "side", &side, "action", &action, "qty", &qty,
                        "order_type", &type, "price", &p) < 0)
                return 0;
        if (p && (!json_is_number(p) || (price = json_number_value(p)) <= 0 || !isfinite(price)))
                return 0;
        return one_of(side, sides) && one_of(action, side[0] == 'b' ? buys : sells) && one_of(type, types) &&
               qty > 0 && isfinite(qty) && !p == (strcmp(type, "market") == 0);
}

/* A batch being checked: it joins the run only once all of it is good. */
struct pending {
        json_t *signals;
        uint64_t signal_bytes;     /* the run's, with this batch's */
        uint64_t orders, failed;
        uint64_t count[BT_CATEGORIES];
        json_t *first[BT_CATEGORIES];
};

/* {bar, time, return?, orders?}: the return text is parsed here. */
static int add_signal(struct pending *b, json_t *s, uint64_t lo, uint64_t hi, uint64_t *last,
                      struct jr_err *err)
{
        json_int_t bar, t;
        json_t *orders = NULL;
        const char *ret = NULL;
        size_t rlen = 0;
        if (json_unpack(s, "{s:I, s:I, s?s%, s?o!}", "bar", &bar, "time", &t, "return", &ret, &rlen, "orders",
                        &orders) < 0 || (!ret && !orders))
                return bad(err, "a signal is not {bar, time, return?, orders?}");
        if (bar < (json_int_t)lo || bar >= (json_int_t)hi || (*last != UINT64_MAX && (uint64_t)bar <= *last))
                return bad(err, "a signal's bar is outside the batch or out of order");
        *last = (uint64_t)bar;
        _cleanup_(json_decrefp) json_t *out = json_pack("{s:I, s:I}", "bar", bar, "time", t);
        if (!out)
                return jr_fail(err, ENOMEM, "backtest");
        if (ret) {
                json_error_t je;
                json_t *v = rlen <= BT_MAX_RETURN ? json_loadb(ret, rlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je)
                                                  : NULL;
                size_t n = v ? nodes(v, 1) : 0;
                if (!n) {
                        json_decref(v);
                        return bad(err, "a return value is not JSON of at most 64 KiB and depth 32");
                }
                /* What the parsed value costs us: its text and about this
                 * much per value (a jansson node and its key). */
                b->signal_bytes += rlen + BT_NODE_COST * n;
                json_object_set_new(out, "return", v);
        }
        b->signal_bytes += BT_NODE_COST * (4 + 8 * json_array_size(orders));
        if (b->signal_bytes > BT_MAX_SIGNAL_BYTES)
                return bad(err, "the signals exceed 128 MiB; return less per bar");
        if (orders) {
                size_t i, n = json_array_size(orders);
                json_t *o;
                if (!json_is_array(orders) || n == 0 || n > BT_MAX_ORDERS)
                        return bad(err, "orders must be an array of 1 to 100");
                json_array_foreach(orders, i, o) if (!check_order(o)) return bad(err, "an order is invalid");
                json_object_set(out, "orders", orders);
                b->orders += n;
        }
        return json_array_append(b->signals, out) < 0 ? jr_fail(err, ENOMEM, "backtest") : 0;
}

/* {bar, time, type, message, line}. */
static int add_error(const struct backtest *run, struct pending *b, json_t *e, uint64_t lo, uint64_t hi, uint64_t *last, struct jr_err *err)
{
        json_int_t bar, t;
        const char *type, *msg;
        json_t *line;
        if (json_unpack(e, "{s:I, s:I, s:s, s:s, s:o!}", "bar", &bar, "time", &t, "type", &type, "message", &msg,
                        "line", &line) < 0)
                return bad(err, "an error is not {bar, time, type, message, line}");
        if (bar < (json_int_t)lo || bar >= (json_int_t)hi || (*last != UINT64_MAX && (uint64_t)bar <= *last))
                return bad(err, "an error's bar is outside the batch or out of order");
        *last = (uint64_t)bar;
        if (strlen(msg) > BT_MAX_TEXT || (!json_is_null(line) && (!json_is_integer(line) ||
                                                                  json_integer_value(line) < 1)))
                return bad(err, "an error's message or line is invalid");
        int c = 0;
        while (c < BT_CATEGORIES && strcmp(type, bt_category_names[c]) != 0)
                c++;
        if (c == BT_CATEGORIES)
                return bad(err, "an error's type is not a category");
        b->failed++;
        if (run->count[c] + b->count[c]++ == 0)
                b->first[c] = json_pack("{s:I, s:I, s:s, s:O}", "bar", bar, "time", t, "message", msg, "line", line);
        return 0;
}

static void pending_free(struct pending *p)
{
        json_decref(p->signals);
        for (int c = 0; c < BT_CATEGORIES; c++)
                json_decref(p->first[c]);
}

static int check_batch(const struct backtest *b, const struct msg *m, struct pending *p, struct jr_err *err)
{
        uint64_t lo = b->done, hi = b->done + json_array_size(m->bars.us), last = UINT64_MAX;
        size_t i;
        json_t *v;
        json_array_foreach(m->bars.signals, i, v) {
                int r = add_signal(p, v, lo, hi, &last, err);
                if (r < 0)
                        return r;
        }
        last = UINT64_MAX;
        json_array_foreach(m->bars.errors, i, v) {
                int r = add_error(b, p, v, lo, hi, &last, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int grow_times(struct backtest *b, size_t n, struct jr_err *err)
{
        if (b->done + n <= b->us_cap)
                return 0;
        size_t cap = b->us_cap ? b->us_cap : 4096;  /* grown as bars come, not as the jail claims */
        while (cap < b->done + n)
                cap *= 2;
        uint32_t *us = realloc(b->us, cap * sizeof *us);
        if (!us)
                return jr_fail(err, ENOMEM, "backtest");
        b->us = us;
        b->us_cap = cap;
        return 0;
}

int bt_add(struct backtest *b, const struct msg *m, struct jr_err *err)
{
        size_t n = json_array_size(m->bars.us), i;
        if (!b->signals || (uint64_t)m->bars.first != b->done || n > b->total - b->done)
                return bad(err, "it does not follow the bars reported so far");
        struct pending p = { .signals = json_array(), .signal_bytes = b->signal_bytes };
        int r = p.signals ? check_batch(b, m, &p, err) : jr_fail(err, ENOMEM, "backtest");
        if (r == 0)
                r = grow_times(b, n, err);
        if (r == 0 && json_array_extend(b->signals, p.signals) < 0)
                r = jr_fail(err, ENOMEM, "backtest");
        if (r < 0) {
                pending_free(&p);
                return r;
        }
        b->signal_bytes = p.signal_bytes;
        b->orders += p.orders;
        b->failed += p.failed;
        for (int c = 0; c < BT_CATEGORIES; c++) {
                b->count[c] += p.count[c];
                if (p.first[c])
                        b->first[c] = TAKE_PTR(p.first[c]);
        }
        json_t *v;
        json_array_foreach(m->bars.us, i, v) {
                json_int_t us = json_integer_value(v);
                b->us[b->done + i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        }
        b->done += n;
        pending_free(&p);
        return 0;
}

int bt_over(const struct backtest *b)
{
        return (double)b->failed * 100.0 > b->abort_percent * (double)b->total && b->failed >= b->abort_min;
}

json_t *bt_report(const struct backtest *b, const char *outcome, const char *reason)
{
        json_t *errors = json_object(), *counts = json_object();
        for (int c = 0; c < BT_CATEGORIES; c++) {
                json_object_set_new(counts, bt_category_names[c], json_integer((json_int_t)b->count[c]));
                if (b->count[c])
                        json_object_set_new(errors, bt_category_names[c],
                                            json_pack("{s:I, s:O}", "count", (json_int_t)b->count[c], "first",
                                                      b->first[c]));
        }
        json_t *r = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:O}", "jailrun_backtest", 1,
                              "outcome", outcome, "bars", (json_int_t)b->total, "bars_run", (json_int_t)b->done,
                              "bars_ok", (json_int_t)(b->done - b->failed), "bars_failed", (json_int_t)b->failed,
                              "signals_count", (json_int_t)json_array_size(b->signals), "orders_count",
                              (json_int_t)b->orders, "failures", counts, "errors", errors, "signals",
                              b->signals ? b->signals : json_array());
        if (r && reason)
                json_object_set_new(r, "reason", json_string(reason));
        return r;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return (x > y) - (x < y);
}

void bt_times(const struct backtest *b, uint32_t *p50, uint32_t *p99, uint32_t *max)
{
        *p50 = *p99 = *max = 0;
        if (!b->done)
                return;
        _cleanup_free_ uint32_t *s = malloc(b->done * sizeof *s);
        if (!s)
                return;
        memcpy(s, b->us, b->done * sizeof *s);
        qsort(s, b->done, sizeof *s, cmp_u32);
        *p50 = s[(b->done - 1) / 2];
        *p99 = s[(b->done - 1) * 99 / 100];
        *max = s[b->done - 1];
}

void bt_free(struct backtest *b)
{
        free(b->us);
        json_decref(b->signals);
        for (int c = 0; c < BT_CATEGORIES; c++)
                json_decref(b->first[c]);
        *b = (struct backtest){ 0 };
}

/* Copies the bars file into a sealed memfd for the jail: it gets the bytes
 * as they are now, read-only, and never the host path. */
/* Lines in the sealed memfd of `size` bytes: its newlines, and one more
 * for a last line without one. */
static int count_lines(int fd, off_t size, uint64_t *lines, struct jr_err *err)
{
        *lines = 0;
        if (size == 0)
                return 0;
        const char *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
                return jr_fail(err, errno, "map the bars");
        uint64_t n = 0;
        for (const char *q = p, *end = p + size; q < end; q++) {
                q = memchr(q, '\n', (size_t)(end - q));
                if (!q)
                        break;
                n++;
        }
        *lines = n + (p[size - 1] != '\n');
        munmap((void *)p, (size_t)size);
        return 0;
}

int bt_bars_memfd(const char *path, int *out, uint64_t *lines, struct jr_err *err)
{
        /* O_NONBLOCK: a FIFO must not hang us before it is refused. */
        _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        struct stat st;
        if (in < 0 && errno == ELOOP)
                return jr_fail(err, 0, "--bars %s: %s", path, BT_NO_LINK);
        if (in < 0)
                return jr_fail(err, errno, "--bars %s", path);
        if (fstat(in, &st) < 0)
                return jr_fail(err, errno, "--bars %s: fstat", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, EINVAL, "--bars %s: not a regular file", path);
        if ((uint64_t)st.st_size > JOB_MAX_BARS_FILE)
                return jr_fail(err, EFBIG, "--bars %s: %lld bytes; the limit is %lu", path, (long long)st.st_size,
                               JOB_MAX_BARS_FILE);
        _cleanup_close_ int fd = memfd_create("jailrun-bars", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return jr_fail(err, errno, "memfd_create");
        for (off_t left = st.st_size; left > 0;) {
                ssize_t n = copy_file_range(in, NULL, fd, NULL, (size_t)left, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP))
                        n = sendfile(fd, in, NULL, (size_t)left);
                if (n < 0)
                        return jr_fail(err, errno, "--bars %s: copy", path);
                if (n == 0)
                        break;  /* it shrank while we read: what is there */
                left -= n;
        }
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return jr_fail(err, errno, "seal the bars");
        struct stat sealed;
        if (fstat(fd, &sealed) < 0)
                return jr_fail(err, errno, "fstat the bars");
        int r = count_lines(fd, sealed.st_size, lines, err);
        if (r < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return jr_fail(err, errno, "lseek");
        *out = TAKE_FD(fd);
        return 0;
}
