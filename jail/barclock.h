/* The backtest's bar clock (jail/barclock.c), functions of _jailrun. */
#ifndef JR_BARCLOCK_H
#define JR_BARCLOCK_H

#include <Python.h>

extern PyMethodDef barclock_methods[];

#endif
