/* The read-only candles of a backtest (jail/candle.c), types of _jailrun. */
#ifndef JR_CANDLE_H
#define JR_CANDLE_H

#include <Python.h>

/* Adds Candle and Candles to module m; -1 with an exception set. */
int candle_add_types(PyObject *m);

#endif
