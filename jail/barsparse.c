/* The fast reader of a bars file (jail/bars.h). It takes the common,
 * plain files, and reads them as the full reader in jail/backtest.py
 * would (Python's csv, json, int() and float(), whose results it must
 * match bar for bar); anything else, and any file with an error in it, it
 * declines, and the full reader reads the file instead and names the line
 * of the problem. So it never has to word an error, and a file it cannot
 * be sure of costs time, never a different result. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jail/bars.h"

#define NFIELDS 6
/* Python's csv module refuses a field longer than this (field_size_limit). */
#define CSV_FIELD_LIMIT 131072
/* Header cells the fast reader compares (the full reader takes any). */
#define MAX_HEADER_CELLS 64
/* Longest number text the fast reader takes. */
#define MAX_NUMBER 63

static const char *const names[NFIELDS] = { "time", "open", "high", "low", "close", "volume" };

struct span {
        const char *p, *e;
};

/* Python's str.strip() for the only whitespace the fast reader lets
 * through (scan() declined the rest). */
static struct span strip(struct span s)
{
        while (s.p < s.e && (*s.p == ' ' || *s.p == '\t'))
                s.p++;
        while (s.e > s.p && (s.e[-1] == ' ' || s.e[-1] == '\t'))
                s.e--;
        return s;
}

static size_t digits(const char *p, const char *e)
{
        const char *q = p;
        while (q < e && *q >= '0' && *q <= '9')
                q++;
        return (size_t)(q - p);
}

/* float(text) for the plain decimal forms, [+-] digits [. digits] [e [+-]
 * digits], finite; 0 for anything else (underscores, inf, nan, ...). Both
 * strtod and Python round correctly, so they agree. */
static int number(struct span s, double *out)
{
        s = strip(s);
        size_t len = (size_t)(s.e - s.p);
        if (len == 0 || len > MAX_NUMBER)
                return 0;
        const char *q = s.p;
        if (*q == '+' || *q == '-')
                q++;
        size_t a = digits(q, s.e), b = 0;
        q += a;
        if (q < s.e && *q == '.') {
                b = digits(++q, s.e);
                q += b;
        }
        if (a + b == 0)
                return 0;
        if (q < s.e && (*q == 'e' || *q == 'E')) {
                q++;
                if (q < s.e && (*q == '+' || *q == '-'))
                        q++;
                size_t x = digits(q, s.e);
                if (x == 0)
                        return 0;
                q += x;
        }
        if (q != s.e)
                return 0;
        char buf[MAX_NUMBER + 1], *end;
        memcpy(buf, s.p, len);
        buf[len] = '\0';
        *out = strtod(buf, &end);
        return end == buf + len && isfinite(*out);
}

/* A double that is a whole number in int64's range, as the full reader
 * takes a time given as a float. */
static int whole_double(double d, int64_t *out)
{
        if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
                return 0;
        *out = (int64_t)d;
        return 1;
}

/* int(text), else a float that is whole (the full reader's _time). */
static int whole(struct span s, int64_t *out)
{
        s = strip(s);
        const char *q = s.p;
        int neg = q < s.e && *q == '-';
        if (q < s.e && (*q == '+' || *q == '-'))
                q++;
        size_t n = digits(q, s.e);
        if (n > 0 && q + n == s.e) {
                uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
                for (; q < s.e; q++) {
                        if (v > (lim - (uint64_t)(*q - '0')) / 10)
                                return 0;
                        v = v * 10 + (uint64_t)(*q - '0');
                }
                *out = neg ? (int64_t)(0 - v) : (int64_t)v;
                return 1;
        }
        double d;
        return number(s, &d) && whole_double(d, out);
}

/* The bytes the fast reader takes: ASCII without control characters but
 * tab and line ends, a carriage return only before a newline, and for
 * CSV no quotes (quoted fields are the full reader's). */
static int scan(const char *p, const char *e, int csv)
{
        for (const char *q = p; q < e; q++) {
                unsigned char c = (unsigned char)*q;
                if (c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || (csv && c == '"'))
                        return 0;
                if (csv && c == '\r' && (q + 1 == e || q[1] != '\n'))
                        return 0;
        }
        return 1;
}

struct out {
        struct bar *v;
        size_t n, cap;
        int64_t prev;
};

static int push(struct out *o, const struct bar *b)
{
        if (o->n && b->time <= o->prev)
                return 0;  /* out of order: the full reader says where */
        if (o->n == o->cap)
                return 0;  /* cannot be: cap is the file's lines */
        o->v[o->n++] = *b;
        o->prev = b->time;
        return 1;
}

/* The cells of a CSV line, at most max of them; their count, which may
 * exceed max (the rest are only counted). */
static size_t cells(struct span line, struct span *cell, size_t max)
{
        size_t k = 0;
        const char *p = line.p;
        for (;;) {
                const char *c = memchr(p, ',', (size_t)(line.e - p));
                if (k < max)
                        cell[k] = (struct span){ p, c ? c : line.e };
                k++;
                if (!c)
                        return k;
                p = c + 1;
        }
}

static int blank_csv(struct span line)
{
        for (const char *q = line.p; q < line.e; q++)
                if (*q != ' ' && *q != '\t' && *q != ',')
                        return 0;
        return 1;
}

struct header {
        size_t idx[NFIELDS];
        size_t size;   /* distinct names: what the full reader compares a row's length to */
        size_t need;   /* a row must have this many cells */
};

/* The header row as the full reader maps it ({name: last index}). */
static int header(struct span line, struct header *h)
{
        struct span cell[MAX_HEADER_CELLS];
        size_t k = cells(line, cell, MAX_HEADER_CELLS);
        if (k > MAX_HEADER_CELLS)
                return 0;
        int found[NFIELDS] = { 0 };
        h->size = 0;
        for (size_t i = 0; i < k; i++) {
                struct span c = strip(cell[i]);
                size_t len = (size_t)(c.e - c.p), j;
                for (j = 0; j < i; j++) {  /* seen before? (lower-case, stripped) */
                        struct span d = strip(cell[j]);
                        if ((size_t)(d.e - d.p) == len && strncasecmp(c.p, d.p, len) == 0)
                                break;
                }
                h->size += j == i;
                for (int f = 0; f < NFIELDS; f++)
                        if (strlen(names[f]) == len && strncasecmp(c.p, names[f], len) == 0) {
                                h->idx[f] = i;
                                found[f] = 1;
                        }
        }
        h->need = h->size;
        for (int f = 0; f < NFIELDS; f++) {
                if (!found[f])
                        return 0;
                if (h->idx[f] + 1 > h->need)
                        h->need = h->idx[f] + 1;
        }
        return 1;
}

static int csv_row(struct span line, const struct header *h, struct out *o)
{
        struct span cell[MAX_HEADER_CELLS];
        size_t k = cells(line, cell, MAX_HEADER_CELLS);
        if (k < h->need)
                return 0;
        struct bar b;
        double *v[NFIELDS - 1] = { &b.open, &b.high, &b.low, &b.close, &b.volume };
        if (!whole(cell[h->idx[0]], &b.time))
                return 0;
        for (int f = 1; f < NFIELDS; f++)
                if (!number(cell[h->idx[f]], v[f - 1]))
                        return 0;
        return push(o, &b);
}

static int csv(const char *p, const char *e, struct out *o)
{
        int have_header = 0;
        struct header h;
        while (p < e) {
                const char *nl = memchr(p, '\n', (size_t)(e - p));
                struct span line = { p, nl ? nl : e };
                p = nl ? nl + 1 : e;
                if (line.e > line.p && line.e[-1] == '\r')
                        line.e--;
                if (line.e - line.p > CSV_FIELD_LIMIT)
                        return 0;
                if (blank_csv(line))
                        continue;
                if (!have_header) {
                        if (!header(line, &h))
                                return 0;
                        have_header = 1;
                } else if (!csv_row(line, &h, o)) {
                        return 0;
                }
        }
        return 1;
}

/* One JSON line: an object with the six keys, numbers all (json.loads). */
static int jsonl_row(struct span line, struct out *o)
{
        json_error_t je;
        json_t *j = json_loadb(line.p, (size_t)(line.e - line.p), 0, &je);
        struct bar b;
        double *v[NFIELDS - 1] = { &b.open, &b.high, &b.low, &b.close, &b.volume };
        json_t *t = json_object_get(j, "time");
        int ok = json_is_object(j) && (json_is_integer(t) || (json_is_real(t) &&
                                                             whole_double(json_real_value(t), &b.time)));
        const char *k;
        json_t *m;
        /* Flat objects only: Python's reader fails on nesting jansson takes
         * (past ~1000 levels), and the two must never differ. */
        json_object_foreach(ok ? j : NULL, k, m) if (json_is_object(m) || json_is_array(m)) ok = 0;
        if (ok && json_is_integer(t))
                b.time = (int64_t)json_integer_value(t);
        for (int f = 1; ok && f < NFIELDS; f++) {
                json_t *x = json_object_get(j, names[f]);
                ok = json_is_number(x);  /* true, false and null are not */
                if (ok)
                        *v[f - 1] = json_number_value(x);
                ok = ok && isfinite(*v[f - 1]);
        }
        json_decref(j);
        return ok && push(o, &b);
}

static int jsonl(const char *p, const char *e, struct out *o)
{
        while (p < e) {
                const char *nl = memchr(p, '\n', (size_t)(e - p));
                struct span line = { p, nl ? nl : e };
                p = nl ? nl + 1 : e;
                const char *q = line.p;
                while (q < line.e && (*q == ' ' || *q == '\t' || *q == '\r'))
                        q++;
                if (q == line.e)
                        continue;
                if (!jsonl_row(line, o))
                        return 0;
        }
        return 1;
}

int bars_parse(const char *text, size_t len, struct bar **out, size_t *n)
{
        const char *p = text, *e = text + len;
        if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)  /* utf-8-sig */
                p += 3;
        const char *first = p;
        while (first < e && (*first == ' ' || *first == '\t' || *first == '\n' || *first == '\r'))
                first++;
        int is_csv = first == e || *first != '{';
        if (!scan(p, e, is_csv))
                return 0;
        size_t lines = 1;
        for (const char *q = p; (q = memchr(q, '\n', (size_t)(e - q))); q++)
                lines++;
        struct out o = { .cap = lines };
        if (!(o.v = malloc(lines * sizeof *o.v)))
                return 0;  /* declined: the Python reader gives the same result, or the same error */
        int ok = is_csv ? csv(p, e, &o) : jsonl(p, e, &o);
        if (!ok || o.n == 0) {
                free(o.v);
                return 0;
        }
        struct bar *v = realloc(o.v, o.n * sizeof *o.v);
        *out = v ? v : o.v;
        *n = o.n;
        return 1;
}
