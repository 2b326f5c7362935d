/* A backtest's outcome, built by the supervisor from the jail's batches
 * (every batch is hostile and checked against the run so far): the
 * signals, written to the report as they come (supervisor/engine/btreport.c) and
 * otherwise only counted, the failed bars by category, a histogram of the
 * per-bar times and the 5 % rule. What it holds does not grow with the
 * bars. Its report (jailrun-backtest(7)) holds no wall-clock figure, so
 * the same bars, params and script give the same bytes. */
#ifndef JR_BACKTEST_H
#define JR_BACKTEST_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "supervisor/engine/btreport.h"
#include "supervisor/engine/msg.h"

/* The error categories of a failed bar, in report order. */
#define BT_CATEGORIES 5
/* Per-bar times below this many microseconds are counted exactly. */
#define BT_HIST_EXACT 65536
extern const char *const bt_category_names[BT_CATEGORIES];

struct backtest {
        uint64_t total;            /* bars in the file, as the jail parsed them */
        uint64_t max_total;        /* the file's lines: no more bars can be in it */
        uint64_t done;             /* bars reported */
        uint64_t failed;
        uint64_t orders;
        uint64_t signals;
        int started;
        uint32_t *hist;            /* per-bar times: BT_HIST_EXACT exact buckets, then log-linear */
        uint32_t us_max;
        int reporting;             /* signals go to out */
        struct btr out;
        char *text;                /* a batch's encoded signals, checked before any is written */
        size_t text_len, text_cap;
        uint64_t count[BT_CATEGORIES];
        json_t *first[BT_CATEGORIES];  /* the first failure of each category */
        double abort_percent;      /* the run stops once failed > percent of total ... */
        unsigned abort_min;        /* ... and failed >= this */
};

void bt_init(struct backtest *b, double abort_percent, unsigned abort_min);
/* The jail said how many bars it parsed; the report's head is written. */
int bt_start(struct backtest *b, uint64_t total, struct jr_err *err);
/* One batch, taken whole or not at all: -EPROTO with the reason when it
 * does not fit the run, -EFBIG when its signals would pass --report-max,
 * another -errno when the report cannot be written. */
int bt_add(struct backtest *b, const struct msg *m, struct jr_err *err);
/* The failures crossed the 5 % rule. */
int bt_over(const struct backtest *b);
/* The report's summary (everything but the signals); outcome is
 * "completed", "aborted", "timeout", ...; reason may be NULL. */
json_t *bt_report(const struct backtest *b, const char *outcome, const char *reason);
/* Per-bar time percentiles over the bars run (0 when none): exact below
 * BT_HIST_EXACT microseconds, within 1/64 above it; the max is exact. */
void bt_times(const struct backtest *b, uint32_t *p50, uint32_t *p99, uint32_t *max);
/* The report goes to path ("-": stdout) as the run goes; before bt_start. */
int bt_report_to(struct backtest *b, const char *path, enum btr_format format, uint64_t max, struct jr_err *err);
/* The summary written last and the report put in place; 0 or -errno. */
int bt_report_finish(struct backtest *b, json_t *summary, struct jr_err *err);
/* Frees it all; a report not finished is removed. */
void bt_free(struct backtest *b);

/* The bars file at `path` copied into a sealed memfd (*out), for the jail's
 * DATA_FD, and its count of lines (*lines), which bounds the bars the jail
 * may claim and so what the run costs the supervisor. */
int bt_bars_memfd(const char *path, int *out, uint64_t *lines, struct jr_err *err);

/* Why a data file that is a symbolic link is refused: jailrun reads it as
 * root, and a link planted where the file should be would hand the jail
 * (and the messages of its parse) a file its user could not read. */
#define BT_NO_LINK "a symbolic link; data files are read as root and no link is followed: name the file itself"

/* A backtest's params (jailrun --params): a JSON object of at most
 * BT_PARAMS_MAX bytes nesting at most 32 levels, read-only to the
 * strategy. Returns 0 with *out (the caller's), -EBADMSG for invalid JSON
 * (msg "LINE:COLUMN: reason") or -EINVAL (msg says why); *out is NULL then. */
#define BT_PARAMS_MAX (64 * 1024)
int bt_params_parse(const char *text, size_t len, json_t **out, char *msg, size_t size);

#endif
