/* The read-only candles of a backtest (_jailrun.Candle, _jailrun.Candles):
 * a dict and a list whose every mutator raises TypeError. They are C types
 * so that reads cost what a plain dict's and list's do: a subclass written
 * in Python reaches dict's and list's C lookup through a Python-level
 * __getitem__ call (+7 ns a lookup, +55 % on 500 closes read per bar),
 * these inherit it as it is. Being immutable types, their methods cannot
 * be swapped for dict's; a write past them (dict.update(candle, ...)) is
 * found after the bar by the version tags (runclock.c). A copy, pickle or
 * deepcopy of one gives a plain dict or list, which the strategy may
 * change. */
#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "jail/bars.h"
#include "jail/candle.h"

#define CANDLE_RO "sdk.candles is read-only; copy a candle with dict(candle) to change it"
#define CANDLES_RO "sdk.candles is read-only; copy it with list(sdk.candles) to change it"

static PyObject *candle_ro(PyObject *self, PyObject *args, PyObject *kw)
{
        (void)self, (void)args, (void)kw;
        PyErr_SetString(PyExc_TypeError, CANDLE_RO);
        return NULL;
}

static PyObject *candles_ro(PyObject *self, PyObject *args, PyObject *kw)
{
        (void)self, (void)args, (void)kw;
        PyErr_SetString(PyExc_TypeError, CANDLES_RO);
        return NULL;
}

static int candle_ass(PyObject *self, PyObject *key, PyObject *value)
{
        (void)self, (void)key, (void)value;
        PyErr_SetString(PyExc_TypeError, CANDLE_RO);
        return -1;
}

static int candles_ass(PyObject *self, PyObject *key, PyObject *value)
{
        (void)self, (void)key, (void)value;
        PyErr_SetString(PyExc_TypeError, CANDLES_RO);
        return -1;
}

static int candles_ass_item(PyObject *self, Py_ssize_t i, PyObject *value)
{
        (void)self, (void)i, (void)value;
        PyErr_SetString(PyExc_TypeError, CANDLES_RO);
        return -1;
}

static PyObject *candle_ro2(PyObject *self, PyObject *other)
{
        return candle_ro(self, other, NULL);
}

static PyObject *candles_ro2(PyObject *self, PyObject *other)
{
        return candles_ro(self, other, NULL);
}

static PyObject *candles_rep(PyObject *self, Py_ssize_t n)
{
        (void)n;
        return candles_ro(self, NULL, NULL);
}

/* Filled once, by the runtime: __init__ on a candle that holds its bar. */
static int candle_init(PyObject *self, PyObject *args, PyObject *kw)
{
        if (PyDict_GET_SIZE(self)) {
                PyErr_SetString(PyExc_TypeError, CANDLE_RO);
                return -1;
        }
        return PyDict_Type.tp_init(self, args, kw);
}

static int candles_init(PyObject *self, PyObject *args, PyObject *kw)
{
        if (PyList_GET_SIZE(self)) {
                PyErr_SetString(PyExc_TypeError, CANDLES_RO);
                return -1;
        }
        return PyList_Type.tp_init(self, args, kw);
}

/* (dict, (dict(self),)): what copy, deepcopy and pickle make of it. */
static PyObject *candle_reduce(PyObject *self, PyObject *noarg)
{
        (void)noarg;
        PyObject *copy = PyDict_Copy(self);
        return copy ? Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, copy) : NULL;
}

static PyObject *candles_reduce(PyObject *self, PyObject *noarg)
{
        (void)noarg;
        PyObject *copy = PyList_GetSlice(self, 0, PyList_GET_SIZE(self));
        return copy ? Py_BuildValue("(O(N))", (PyObject *)&PyList_Type, copy) : NULL;
}

#define RO(name, fn) { name, (PyCFunction)(void (*)(void))fn, METH_VARARGS | METH_KEYWORDS, NULL }

static PyMethodDef candle_methods[] = {
        RO("setdefault", candle_ro), RO("pop", candle_ro), RO("popitem", candle_ro),
        RO("clear", candle_ro), RO("update", candle_ro),
        { "__reduce__", candle_reduce, METH_NOARGS, NULL },
        { NULL, NULL, 0, NULL },
};

static PyMethodDef candles_methods[] = {
        RO("append", candles_ro), RO("extend", candles_ro), RO("insert", candles_ro),
        RO("pop", candles_ro), RO("remove", candles_ro), RO("clear", candles_ro),
        RO("sort", candles_ro), RO("reverse", candles_ro),
        { "__reduce__", candles_reduce, METH_NOARGS, NULL },
        { NULL, NULL, 0, NULL },
};

static PyType_Slot candle_slots[] = {
        { Py_tp_doc, (void *)"One bar of sdk.candles: a dict that cannot be changed." },
        { Py_tp_methods, candle_methods },
        { Py_tp_init, candle_init },
        { Py_mp_ass_subscript, candle_ass },
        { Py_nb_inplace_or, candle_ro2 },
        { 0, NULL },
};

static PyType_Slot candles_slots[] = {
        { Py_tp_doc, (void *)"sdk.candles: the bars up to the current one, a list that cannot be changed." },
        { Py_tp_methods, candles_methods },
        { Py_tp_init, candles_init },
        { Py_mp_ass_subscript, candles_ass },
        { Py_sq_ass_item, candles_ass_item },
        { Py_sq_inplace_concat, candles_ro2 },
        { Py_sq_inplace_repeat, candles_rep },
        { 0, NULL },
};

/* No BASETYPE: a subclass could give back the mutators. */
#define FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE)

static PyType_Spec candle_spec = { "jailrun.Candle", 0, 0, FLAGS, candle_slots };
static PyType_Spec candles_spec = { "jailrun.Candles", 0, 0, FLAGS, candles_slots };

/* The new type, also added to m as name; NULL with an exception set. */
static PyObject *add_type(PyObject *m, const char *name, PyType_Spec *spec, PyTypeObject *base)
{
        PyObject *t = PyType_FromModuleAndSpec(m, spec, (PyObject *)base);
        if (t && PyModule_AddObjectRef(m, name, t) < 0)
                Py_CLEAR(t);
        return t;
}

int candle_add_types(PyObject *m)
{
        PyObject *candle = add_type(m, "Candle", &candle_spec, &PyDict_Type);
        PyObject *candles = candle ? add_type(m, "Candles", &candles_spec, &PyList_Type) : NULL;
        int rc = candles ? bars_add_type(m, candle, candles) : -1;
        Py_XDECREF(candle);
        Py_XDECREF(candles);
        return rc;
}
