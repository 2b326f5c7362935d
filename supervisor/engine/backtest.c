#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/backtest.h"
#include "supervisor/engine/job.h"
#include "common/fdio.h"

const char *const bt_category_names[BT_CATEGORIES] = { "SecurityError", "TimeoutError", "MemoryError",
                                                        "ProtocolError", "RuntimeError" };

/* What one bar may send: its return value as JSON text, its orders. */
#define BT_MAX_RETURN (64 * 1024)
#define BT_MAX_RETURN_DEPTH 32
#define BT_MAX_ORDERS 100
#define BT_MAX_TEXT (64 * 1024)  /* as a result's error message */
/* Most bars one run may have (the jail's parse is bounded by its memory;
 * this bounds the counts). */
#define BT_MAX_BARS (100u * 1000 * 1000)
/* Per-bar times from BT_HIST_EXACT up: 64 buckets per power of two. */
#define BT_HIST_SUB 64
#define BT_HIST_LEN (BT_HIST_EXACT + (32 - 16) * BT_HIST_SUB)
/* A batch's encoding buffer larger than this is not kept for the next. */
#define BT_TEXT_KEEP (4u << 20)
/* How signals are encoded in the report (btreport.c). */
#define BT_JSON_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII)

static int bad(struct jr_err *err, const char *what)
{
        snprintf(err->msg, sizeof err->msg, "backtest batch: %s", what);
        err->errnum = EPROTO;
        return -EPROTO;
}

void bt_init(struct backtest *b, double abort_percent, unsigned abort_min)
{
        *b = (struct backtest){ .abort_percent = abort_percent, .abort_min = abort_min, .max_total = BT_MAX_BARS,
                                .out = { .fd = -1 } };
}

int bt_report_to(struct backtest *b, const char *path, enum btr_format format, uint64_t max, struct jr_err *err)
{
        int r = btr_open(&b->out, path, format, max, err);
        if (r < 0) {
                btr_close(&b->out);
                return r;
        }
        b->reporting = 1;
        return 0;
}

int bt_start(struct backtest *b, uint64_t total, struct jr_err *err)
{
        if (!b->started && total > b->max_total) {
                snprintf(err->msg, sizeof err->msg, "the jail claims %llu bars; the bars file has %llu lines",
                         (unsigned long long)total, (unsigned long long)b->max_total);
                err->errnum = EPROTO;
                return -EPROTO;
        }
        if (b->started || total == 0 || total > BT_MAX_BARS)
                return bad(err, "the bar count is out of range");
        if (!(b->hist = calloc(BT_HIST_LEN, sizeof *b->hist)))
                return jr_fail(err, ENOMEM, "backtest");
        b->total = total;
        b->started = 1;
        return b->reporting ? btr_begin(&b->out, total, err) : 0;
}

/* Whether j nests at most BT_MAX_RETURN_DEPTH deep. */
static int shallow(const json_t *j, int depth)
{
        if (depth > BT_MAX_RETURN_DEPTH)
                return 0;
        size_t i;
        const char *key;
        json_t *v;
        if (json_is_array(j))
                json_array_foreach(j, i, v) if (!shallow(v, depth + 1)) return 0;
        if (json_is_object(j))
                json_object_foreach((json_t *)j, key, v) if (!shallow(v, depth + 1)) return 0;
        return 1;
}

static int one_of(const char *s, const char *const *names)
{
        for (; *names; names++)
                if (strcmp(s, *names) == 0)
                        return 1;
        return 0;
}

/* 1 when o's string member key holds no NUL (a C comparison of it sees
 * what every other reader of the report sees). */
static int no_nul(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
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
        if (!no_nul(o, "side") || !no_nul(o, "action") || !no_nul(o, "order_type"))
                return 0;
        return one_of(side, sides) && one_of(action, side[0] == 'b' ? buys : sells) && one_of(type, types) &&
               qty > 0 && isfinite(qty) && !p == (strcmp(type, "market") == 0);
}

/* A batch being checked: it joins the run only once all of it is good. */
struct pending {
        uint64_t signals, orders, failed;
        uint64_t count[BT_CATEGORIES];
        json_t *first[BT_CATEGORIES];
};

/* sig encoded at the end of b->text, then a newline. */
static int encode(struct backtest *b, const json_t *sig, struct jr_err *err)
{
        for (;;) {
                size_t room = b->text_cap - b->text_len;
                size_t n = json_dumpb(sig, b->text + b->text_len, room, BT_JSON_FLAGS);
                if (n == 0)
                        return jr_fail(err, ENOMEM, "backtest: encode a signal");
                if (n < room) {
                        b->text_len += n;
                        b->text[b->text_len++] = '\n';
                        return 0;
                }
                size_t cap = b->text_cap ? b->text_cap : 64 * 1024;
                while (cap < b->text_len + n + 1)
                        cap *= 2;
                char *t = realloc(b->text, cap);
                if (!t)
                        return jr_fail(err, ENOMEM, "backtest");
                b->text = t;
                b->text_cap = cap;
        }
}

/* The return text, parsed and checked; NULL (and err) if it is not JSON
 * of at most BT_MAX_RETURN bytes and BT_MAX_RETURN_DEPTH levels. */
static json_t *parse_return(const char *ret, size_t rlen, struct jr_err *err)
{
        json_error_t je;
        json_t *v = rlen <= BT_MAX_RETURN ? json_loadb(ret, rlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je)
                                          : NULL;
        if (!v || !shallow(v, 1)) {
                json_decref(v);
                bad(err, "a return value is not JSON of at most 64 KiB and depth 32");
                return NULL;
        }
        return v;
}

/* {bar, time, return?, orders?}: the return text is parsed here, and the
 * signal encoded for the report. */
static int add_signal(struct backtest *b, struct pending *p, json_t *s, uint64_t lo, uint64_t hi,
                      uint64_t *last, struct jr_err *err)
{
        json_int_t bar, t;
        json_t *orders = NULL;
        const char *ret = NULL;
        size_t rlen = 0, i, n = 0;
        if (json_unpack(s, "{s:I, s:I, s?s%, s?o!}", "bar", &bar, "time", &t, "return", &ret, &rlen, "orders",
                        &orders) < 0 || (!ret && !orders))
                return bad(err, "a signal is not {bar, time, return?, orders?}");
        if (bar < (json_int_t)lo || bar >= (json_int_t)hi || (*last != UINT64_MAX && (uint64_t)bar <= *last))
                return bad(err, "a signal's bar is outside the batch or out of order");
        *last = (uint64_t)bar;
        if (orders) {
                json_t *o;
                n = json_array_size(orders);
                if (!json_is_array(orders) || n == 0 || n > BT_MAX_ORDERS)
                        return bad(err, "orders must be an array of 1 to 100");
                json_array_foreach(orders, i, o) if (!check_order(o)) return bad(err, "an order is invalid");
        }
        _cleanup_(json_decrefp) json_t *v = ret ? parse_return(ret, rlen, err) : NULL;
        if (ret && !v)
                return -EPROTO;
        p->orders += n;
        p->signals++;
        if (!b->reporting)
                return 0;
        _cleanup_(json_decrefp) json_t *out = json_pack("{s:I, s:I}", "bar", bar, "time", t);
        if (!out || (v && json_object_set(out, "return", v) < 0) ||
            (orders && json_object_set(out, "orders", orders) < 0))
                return jr_fail(err, ENOMEM, "backtest");
        return encode(b, out, err);
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
        int c = no_nul(e, "type") ? 0 : BT_CATEGORIES;
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
        for (int c = 0; c < BT_CATEGORIES; c++)
                json_decref(p->first[c]);
}

static int check_batch(struct backtest *b, const struct msg *m, struct pending *p, struct jr_err *err)
{
        uint64_t lo = b->done, hi = b->done + json_array_size(m->bars.us), last = UINT64_MAX;
        size_t i;
        json_t *v;
        json_array_foreach(m->bars.signals, i, v) {
                int r = add_signal(b, p, v, lo, hi, &last, err);
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

/* The checked batch's signals into the report, one a line. */
static int write_signals(struct backtest *b, uint64_t n, struct jr_err *err)
{
        if (!btr_fits(&b->out, b->text_len, n)) {
                char max[32];
                format_size(b->out.max, max, sizeof max);
                snprintf(err->msg, sizeof err->msg, "the report reached --report-max %s by bar %llu (%llu "
                         "signals): return less per bar, or raise --report-max", max, (unsigned long long)b->done,
                         (unsigned long long)b->signals);
                err->errnum = EFBIG;
                return -EFBIG;
        }
        for (char *p = b->text, *end = b->text + b->text_len; p < end;) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                int r = btr_signal(&b->out, p, (size_t)(nl - p), err);
                if (r < 0)
                        return r;
                p = nl + 1;
        }
        return 0;
}

static size_t hist_bucket(uint32_t us)
{
        if (us < BT_HIST_EXACT)
                return us;
        int e = 32 - __builtin_clz(us);  /* 17 .. 32 bits */
        return BT_HIST_EXACT + (size_t)(e - 17) * BT_HIST_SUB + ((us >> (e - 7)) & (BT_HIST_SUB - 1));
}

/* The smallest time a bucket holds. */
static uint32_t hist_value(size_t k)
{
        if (k < BT_HIST_EXACT)
                return (uint32_t)k;
        k -= BT_HIST_EXACT;
        int e = (int)(k / BT_HIST_SUB) + 17;
        return (uint32_t)((BT_HIST_SUB + k % BT_HIST_SUB) << (e - 7));
}

static void add_times(struct backtest *b, const json_t *us)
{
        size_t i;
        json_t *v;
        json_array_foreach(us, i, v) {
                json_int_t t = json_integer_value(v);
                uint32_t u = t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
                b->hist[hist_bucket(u)]++;
                if (u > b->us_max)
                        b->us_max = u;
        }
}

int bt_add(struct backtest *b, const struct msg *m, struct jr_err *err)
{
        size_t n = json_array_size(m->bars.us);
        if (!b->started || (uint64_t)m->bars.first != b->done || n > b->total - b->done)
                return bad(err, "it does not follow the bars reported so far");
        struct pending p = { 0 };
        b->text_len = 0;
        int r = check_batch(b, m, &p, err);
        if (r == 0 && b->reporting)
                r = write_signals(b, p.signals, err);
        if (b->text_cap > BT_TEXT_KEEP) {
                free(b->text);
                b->text = NULL;
                b->text_cap = 0;
        }
        if (r < 0) {
                pending_free(&p);
                return r;
        }
        b->signals += p.signals;
        b->orders += p.orders;
        b->failed += p.failed;
        for (int c = 0; c < BT_CATEGORIES; c++) {
                b->count[c] += p.count[c];
                if (p.first[c])
                        b->first[c] = TAKE_PTR(p.first[c]);
        }
        add_times(b, m->bars.us);
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
        json_t *r = json_pack("{s:i, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "jailrun_backtest", 1,
                              "bars", (json_int_t)b->total, "outcome", outcome, "bars_run", (json_int_t)b->done,
                              "bars_ok", (json_int_t)(b->done - b->failed), "bars_failed", (json_int_t)b->failed,
                              "signals_count", (json_int_t)b->signals, "orders_count", (json_int_t)b->orders,
                              "failures", counts, "errors", errors);
        if (r && reason)
                json_object_set_new(r, "reason", json_string(reason));
        return r;
}

int bt_report_finish(struct backtest *b, json_t *summary, struct jr_err *err)
{
        if (!b->reporting)
                return 0;
        b->reporting = 0;
        return btr_finish(&b->out, summary, b->total, err);
}

/* The time of rank k (0-based) among the bars run. */
static uint32_t hist_rank(const struct backtest *b, uint64_t k)
{
        uint64_t seen = 0;
        for (size_t i = 0; i < BT_HIST_LEN; i++)
                if ((seen += b->hist[i]) > k)
                        return hist_value(i) > b->us_max ? b->us_max : hist_value(i);
        return b->us_max;
}

void bt_times(const struct backtest *b, uint32_t *p50, uint32_t *p99, uint32_t *max)
{
        *p50 = *p99 = *max = 0;
        if (!b->done || !b->hist)
                return;
        *p50 = hist_rank(b, (b->done - 1) / 2);
        *p99 = hist_rank(b, (b->done - 1) * 99 / 100);
        *max = b->us_max;
}

void bt_free(struct backtest *b)
{
        free(b->hist);
        free(b->text);
        btr_close(&b->out);
        for (int c = 0; c < BT_CATEGORIES; c++)
                json_decref(b->first[c]);
        *b = (struct backtest){ .out = { .fd = -1 } };
}

/* Bytes copied at a time: the file passes through this buffer only, and
 * is never mapped here (a mapping would count its pages to jailrun's own
 * resident memory: 1 GiB for the largest file). */
#define BT_COPY_BUF (256 * 1024)

/* in copied to out, its lines counted: its newlines, and one more for a
 * last line without one. */
static int copy_counting(int in, int out, const char *path, uint64_t *lines, struct jr_err *err)
{
        _cleanup_free_ char *buf = malloc(BT_COPY_BUF);
        if (!buf)
                return jr_fail(err, ENOMEM, "--bars %s", path);
        uint64_t n = 0, size = 0;
        char last = '\n';
        for (;;) {
                ssize_t got = read(in, buf, BT_COPY_BUF);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return jr_fail(err, errno, "--bars %s: read", path);
                if (got == 0)
                        break;
                if ((size += (uint64_t)got) > JOB_MAX_BARS_FILE)  /* it grew while we read */
                        return jr_fail(err, EFBIG, "--bars %s: more than %lu bytes", path, JOB_MAX_BARS_FILE);
                for (const char *q = buf, *end = buf + got; (q = memchr(q, '\n', (size_t)(end - q))); q++)
                        n++;
                last = buf[got - 1];
                int r = jr_write_all(out, buf, (size_t)got);
                if (r < 0)
                        return jr_fail(err, -r, "--bars %s: copy", path);
        }
        *lines = n + (last != '\n');
        return 0;
}

/* Copies the bars file into a sealed memfd for the jail: it gets the bytes
 * as they are now, read-only, and never the host path. */
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
        int r = copy_counting(in, fd, path, lines, err);
        if (r < 0)
                return r;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return jr_fail(err, errno, "seal the bars");
        if (lseek(fd, 0, SEEK_SET) < 0)
                return jr_fail(err, errno, "lseek");
        *out = TAKE_FD(fd);
        return 0;
}

/* Nesting of a JSON value, 1 for a scalar; stops counting past limit. */
static int json_depth(const json_t *j, int limit)
{
        int d = 0;
        size_t i;
        const char *k;
        json_t *v;
        if (limit <= 0)
                return 1;
        if (json_is_array(j))
                json_array_foreach(j, i, v) {
                        int x = json_depth(v, limit - 1);
                        d = x > d ? x : d;
                }
        if (json_is_object(j))
                json_object_foreach((json_t *)j, k, v) {
                        int x = json_depth(v, limit - 1);
                        d = x > d ? x : d;
                }
        return d + 1;
}

int bt_params_parse(const char *text, size_t len, json_t **out, char *msg, size_t size)
{
        json_error_t je;
        *out = NULL;
        if (len > BT_PARAMS_MAX)
                return jr_snprintf(msg, size, "not a regular file of at most 64 KiB"), -EINVAL;
        json_t *p = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!p)
                return jr_snprintf(msg, size, "%d:%d: %s", je.line, je.column, je.text), -EBADMSG;
        const char *why = !json_is_object(p) ? "the params must be a JSON object"
                          : json_depth(p, 40) > 32 ? "the params nest deeper than 32 levels" : NULL;
        if (why) {
                json_decref(p);
                return jr_snprintf(msg, size, "%s", why), -EINVAL;
        }
        *out = p;
        return 0;
}
