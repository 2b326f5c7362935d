/* The audit hook of the Python layer (jail/guard.c) and the functions the
 * runtime reaches it by, added to the _jailrun module. */
#ifndef JR_GUARD_H
#define JR_GUARD_H

#include <Python.h>

/* Installs the (unarmed) hook; before Py_Initialize. 0 or -1. */
int guard_install(void);

extern PyMethodDef guard_methods[];

#endif
