/* _jailrun.Bars: a backtest's bars as a C array of 48-byte records
 * (struct bar), where a list of candle dicts took ~700 bytes a bar. The
 * read-only candles a strategy sees (jail/candle.c) are made from it as
 * bars enter the window and dropped as they leave, so a bar is a dict only
 * while it is in some window: the same candle object from the bar it
 * enters to the bar it leaves, as before. Each candle's dict version tag
 * (CPython 3.11, PEP 509) is taken when it is made; changed() compares
 * them after a bar, which finds a write the candles' own methods did not
 * refuse (dict.update(candle, ...)).
 *
 * Every method checks its arguments: in profile exec the type is reachable
 * by any code. */
#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "jail/bars.h"

typedef struct {
        PyObject_HEAD
        struct bar *v;
        Py_ssize_t n, cap;
        /* The candles of bars [lo, hi), bar i in slot i & (ring_cap - 1). */
        PyObject **ring;
        uint64_t *tags;
        Py_ssize_t ring_cap, lo, hi;
} Bars;

/* Set once, when the module is made: the candles' types and their keys. */
static PyTypeObject *candle_t, *candles_t;
static PyObject *keys[6];

/* Each candle leaves the ring before it is released: its release may run
 * code (a __del__ of what a candle was made to hold) that reads the ring. */
static void drop(Bars *b, Py_ssize_t upto)
{
        while (b->lo < upto && b->lo < b->hi) {
                PyObject **slot = &b->ring[b->lo & (b->ring_cap - 1)];
                PyObject *c = *slot;
                *slot = NULL;
                b->lo++;
                Py_XDECREF(c);
        }
        if (b->lo >= b->hi)
                b->lo = b->hi = upto;
}

static int bars_clear(PyObject *self)
{
        Bars *b = (Bars *)self;
        if (b->ring)
                drop(b, b->hi);
        return 0;
}

static int bars_traverse(PyObject *self, visitproc visit, void *arg)
{
        Bars *b = (Bars *)self;
        for (Py_ssize_t i = b->lo; b->ring && i < b->hi; i++)
                Py_VISIT(b->ring[i & (b->ring_cap - 1)]);
        Py_VISIT(Py_TYPE(self));
        return 0;
}

static void bars_dealloc(PyObject *self)
{
        Bars *b = (Bars *)self;
        PyTypeObject *t = Py_TYPE(self);
        PyObject_GC_UnTrack(self);
        bars_clear(self);
        free(b->v);  /* malloc'd, by bars_parse or append */
        PyMem_Free(b->ring);
        PyMem_Free(b->tags);
        t->tp_free(self);
        Py_DECREF(t);
}

static Bars *bars_alloc(PyTypeObject *t)
{
        return (Bars *)t->tp_alloc(t, 0);
}

static PyObject *bars_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
        if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw)))
                return PyErr_Format(PyExc_TypeError, "Bars() takes no arguments");
        return (PyObject *)bars_alloc(t);
}

/* Bars.read(fd) -> the bars of the file on fd by the fast reader, or None
 * when it declines (the full reader then reads fd from its start). */
static PyObject *bars_read(PyObject *cls, PyObject *arg)
{
        long fd = PyLong_AsLong(arg);
        struct stat st;
        if (fd == -1 && PyErr_Occurred())
                return NULL;
        if (fd < 0 || fd > INT_MAX)
                return PyErr_Format(PyExc_ValueError, "read(fd): not a descriptor");
        if (fstat((int)fd, &st) < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        if (!S_ISREG(st.st_mode) || st.st_size == 0)
                Py_RETURN_NONE;
        void *text = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, (int)fd, 0);
        if (text == MAP_FAILED)
                return PyErr_SetFromErrno(PyExc_OSError);
        struct bar *v = NULL;
        size_t n = 0;
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = bars_parse(text, (size_t)st.st_size, &v, &n);
        Py_END_ALLOW_THREADS
        munmap(text, (size_t)st.st_size);
        if (r == 0)
                Py_RETURN_NONE;
        Bars *b = bars_alloc((PyTypeObject *)cls);
        if (!b) {
                free(v);
                return NULL;
        }
        b->v = v;
        b->n = b->cap = (Py_ssize_t)n;
        return (PyObject *)b;
}

/* append(time, open, high, low, close, volume): the full reader's bars. */
static PyObject *bars_append(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
        Bars *b = (Bars *)self;
        if (nargs != 6)
                return PyErr_Format(PyExc_TypeError, "append(time, open, high, low, close, volume)");
        struct bar r;
        double *f[5] = { &r.open, &r.high, &r.low, &r.close, &r.volume };
        r.time = PyLong_AsLongLong(args[0]);
        if (r.time == -1 && PyErr_Occurred())
                return NULL;
        for (int i = 0; i < 5; i++)
                if ((*f[i] = PyFloat_AsDouble(args[i + 1])) == -1.0 && PyErr_Occurred())
                        return NULL;
        if (b->hi > 0)
                return PyErr_Format(PyExc_ValueError, "append: the bars are in use");
        if (b->n == b->cap) {
                Py_ssize_t cap = b->cap ? b->cap * 2 : 1024;
                struct bar *v = cap < PY_SSIZE_T_MAX / (Py_ssize_t)sizeof *v ? realloc(b->v, (size_t)cap * sizeof *v) : NULL;
                if (!v)
                        return PyErr_NoMemory();
                b->v = v;
                b->cap = cap;
        }
        b->v[b->n++] = r;
        Py_RETURN_NONE;
}

static Py_ssize_t bars_len(PyObject *self)
{
        return ((Bars *)self)->n;
}

/* time(i) -> the time of bar i. */
static PyObject *bars_time(PyObject *self, PyObject *arg)
{
        Bars *b = (Bars *)self;
        Py_ssize_t i = PyLong_AsSsize_t(arg);
        if (i == -1 && PyErr_Occurred())
                return NULL;
        if (i < 0 || i >= b->n)
                return PyErr_Format(PyExc_IndexError, "bar %zd is not in 0..%zd", i, b->n - 1);
        return PyLong_FromLongLong(b->v[i].time);
}

/* A new read-only candle for bar i, its keys in the order of the file
 * format (time, open, high, low, close, volume). */
static PyObject *make_candle(const struct bar *r)
{
        PyObject *c = PyObject_CallNoArgs((PyObject *)candle_t);
        if (!c)
                return NULL;
        PyObject *v[6] = { PyLong_FromLongLong(r->time), PyFloat_FromDouble(r->open), PyFloat_FromDouble(r->high),
                           PyFloat_FromDouble(r->low), PyFloat_FromDouble(r->close),
                           PyFloat_FromDouble(r->volume) };
        int ok = 1;
        for (int k = 0; k < 6; k++) {
                ok = ok && v[k] && PyDict_SetItem(c, keys[k], v[k]) == 0;
                Py_XDECREF(v[k]);
        }
        if (!ok)
                Py_CLEAR(c);
        return c;
}

/* Room in the ring for bars [lo, hi). */
static int ring_fit(Bars *b, Py_ssize_t lo, Py_ssize_t hi)
{
        if (hi - lo <= b->ring_cap)
                return 0;
        Py_ssize_t cap = b->ring_cap ? b->ring_cap : 64;
        while (cap < hi - lo)
                cap *= 2;
        PyObject **ring = PyMem_New(PyObject *, (size_t)cap);
        uint64_t *tags = PyMem_New(uint64_t, (size_t)cap);
        if (!ring || !tags) {
                PyMem_Free(ring);
                PyMem_Free(tags);
                PyErr_NoMemory();
                return -1;
        }
        for (Py_ssize_t i = b->lo; i < b->hi; i++) {
                ring[i & (cap - 1)] = b->ring[i & (b->ring_cap - 1)];
                tags[i & (cap - 1)] = b->tags[i & (b->ring_cap - 1)];
        }
        PyMem_Free(b->ring);
        PyMem_Free(b->tags);
        b->ring = ring;
        b->tags = tags;
        b->ring_cap = cap;
        return 0;
}

/* The candles of [lo, hi) made, those before lo dropped. */
static int ring_move(Bars *b, Py_ssize_t lo, Py_ssize_t hi)
{
        if (lo < b->lo || lo > b->hi)  /* not the next window: start again */
                drop(b, b->hi);
        if (b->lo == b->hi)
                b->lo = b->hi = lo;
        drop(b, lo);
        if (ring_fit(b, lo, hi > b->hi ? hi : b->hi) < 0)
                return -1;
        for (; b->hi < hi; b->hi++) {
                PyObject *c = make_candle(&b->v[b->hi]);
                if (!c)
                        return -1;
                Py_ssize_t k = b->hi & (b->ring_cap - 1);
                b->ring[k] = c;
                b->tags[k] = ((PyDictObject *)c)->ma_version_tag;
        }
        return 0;
}

static int range(Bars *b, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *lo, Py_ssize_t *hi)
{
        if (nargs != 2) {
                PyErr_SetString(PyExc_TypeError, "takes (lo, hi)");
                return -1;
        }
        *lo = PyLong_AsSsize_t(args[0]);
        *hi = PyLong_AsSsize_t(args[1]);
        if ((*lo == -1 || *hi == -1) && PyErr_Occurred())
                return -1;
        if (*lo < 0 || *hi < *lo || *hi > b->n) {
                PyErr_Format(PyExc_IndexError, "bars %zd..%zd are not within 0..%zd", *lo, *hi, b->n);
                return -1;
        }
        return 0;
}

/* window(lo, hi) -> a new Candles holding the candles of bars [lo, hi). */
static PyObject *bars_window(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
        Bars *b = (Bars *)self;
        Py_ssize_t lo, hi;
        if (range(b, args, nargs, &lo, &hi) < 0 || ring_move(b, lo, hi) < 0)
                return NULL;
        PyObject *w = candles_t->tp_alloc(candles_t, 0);
        if (!w || hi == lo)
                return w;
        PyObject **items = PyMem_New(PyObject *, (size_t)(hi - lo));
        if (!items) {
                Py_DECREF(w);
                return PyErr_NoMemory();
        }
        for (Py_ssize_t i = lo; i < hi; i++)
                items[i - lo] = Py_NewRef(b->ring[i & (b->ring_cap - 1)]);
        PyListObject *l = (PyListObject *)w;
        l->ob_item = items;
        l->allocated = hi - lo;
        Py_SET_SIZE(l, hi - lo);
        return w;
}

/* changed(lo, hi) -> the first bar in [lo, hi) whose candle changed since
 * it was made, or -1; bars without a candle now have none to change. */
static PyObject *bars_changed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
        Bars *b = (Bars *)self;
        Py_ssize_t lo, hi;
        if (range(b, args, nargs, &lo, &hi) < 0)
                return NULL;
        for (Py_ssize_t i = lo > b->lo ? lo : b->lo; i < hi && i < b->hi; i++) {
                Py_ssize_t k = i & (b->ring_cap - 1);
                if (((PyDictObject *)b->ring[k])->ma_version_tag != b->tags[k])
                        return PyLong_FromSsize_t(i);
        }
        return PyLong_FromLong(-1);
}

static PyMethodDef bars_methods[] = {
        { "read", bars_read, METH_O | METH_CLASS, "read(fd) -> Bars by the fast reader, or None" },
        { "append", (PyCFunction)(void (*)(void))bars_append, METH_FASTCALL,
          "append(time, open, high, low, close, volume)" },
        { "time", bars_time, METH_O, "time(i) -> the time of bar i" },
        { "window", (PyCFunction)(void (*)(void))bars_window, METH_FASTCALL,
          "window(lo, hi) -> Candles of bars [lo, hi)" },
        { "changed", (PyCFunction)(void (*)(void))bars_changed, METH_FASTCALL,
          "changed(lo, hi) -> first bar in [lo, hi) whose candle changed, or -1" },
        { NULL, NULL, 0, NULL },
};

static PyType_Slot bars_slots[] = {
        { Py_tp_doc, (void *)"A backtest's bars, 48 bytes each; candles made as bars enter the window." },
        { Py_tp_new, bars_new },
        { Py_tp_dealloc, bars_dealloc },
        { Py_tp_traverse, bars_traverse },
        { Py_tp_clear, bars_clear },
        { Py_tp_methods, bars_methods },
        { Py_sq_length, bars_len },
        { Py_mp_length, bars_len },
        { 0, NULL },
};

static PyType_Spec bars_spec = { "jailrun.Bars", sizeof(Bars), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC, bars_slots };

int bars_add_type(PyObject *m, PyObject *candle_type, PyObject *candles_type)
{
        static const char *const names[6] = { "time", "open", "high", "low", "close", "volume" };
        for (int k = 0; k < 6; k++)
                if (!keys[k] && !(keys[k] = PyUnicode_InternFromString(names[k])))
                        return -1;
        candle_t = (PyTypeObject *)Py_NewRef(candle_type);
        candles_t = (PyTypeObject *)Py_NewRef(candles_type);
        PyObject *t = PyType_FromModuleAndSpec(m, &bars_spec, NULL);
        if (!t)
                return -1;
        int rc = PyModule_AddObjectRef(m, "Bars", t);
        Py_DECREF(t);
        return rc;
}
