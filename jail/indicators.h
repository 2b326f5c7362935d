/* The streaming indicator module (jail/indicators.c), built in. */
#ifndef JR_INDICATORS_H
#define JR_INDICATORS_H

#include <Python.h>

/* The module's init function, for PyImport_AppendInittab("indicators"). */
PyObject *indicators_init(void);

#endif
