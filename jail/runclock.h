/* The clocks of a run (jail/runclock.c): the backtest bar clock and the worker tick clock, functions of _jailrun. */
#ifndef JR_RUNCLOCK_H
#define JR_RUNCLOCK_H

#include <Python.h>

extern PyMethodDef runclock_methods[];

#endif
