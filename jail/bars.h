/* The bars of a backtest, held compactly (jail/bars.c, jail/barsparse.c):
 * a C array of 48-byte records, from which the read-only candles a
 * strategy sees are made as bars enter its window. */
#ifndef JR_BARS_H
#define JR_BARS_H

#include <Python.h>

#include <stddef.h>
#include <stdint.h>

struct bar {
        int64_t time;
        double open, high, low, close, volume;
};

/* The fast reader: the bars in text (the whole bars file), when the file
 * is of the plain kinds it takes (CSV without quotes, JSON lines of flat
 * objects; ASCII; every bar valid). Returns 1 with *out (malloc'd) and *n,
 * 0 when it declines, leaving the file to the full reader in
 * jail/backtest.py, which gives the same bars or names the line of the
 * problem (so also when memory runs short here). */
int bars_parse(const char *text, size_t len, struct bar **out, size_t *n);

/* Adds the Bars type to module m (after the candles' types); -1 with an
 * exception set. */
int bars_add_type(PyObject *m, PyObject *candle_type, PyObject *candles_type);

#endif
