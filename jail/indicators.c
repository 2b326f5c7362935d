/* The streaming indicator module, importable in profile strategy as
 * `indicators` (and `tesstrade_indicators`, the name scripts written for
 * other engines use): Sma, Ema, Wma, Rsi, Atr and Macd, each O(1) per
 * update, with the same formulas and seeding as jail/ta.py's batch ones
 * (jailrun-policy(5)). update(x) (Atr: update(high, low, close)) adds a
 * bar; is_ready() says whether value() has one; value() is a float, None
 * before; Macd's value() is (macd, signal, histogram), the last two None
 * while the signal line has too few values, and is_ready() once all three
 * exist. Running sums are
 * recomputed exactly from their windows every `n` updates, so they do not
 * drift. */
#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <string.h>

#include "jail/indicators.h"

/* A window of the last n values and their sums. */
struct window {
        double *buf;
        long n, count, next;
        double sum, wsum;   /* plain sum; weighted (oldest 1 .. newest n) */
        long since_exact;
};

static int window_init(struct window *w, long n)
{
        w->buf = PyMem_Calloc((size_t)n, sizeof *w->buf);
        w->n = n;
        return w->buf ? 0 : -1;
}

static void window_exact(struct window *w)
{
        double s = 0, ws = 0;
        for (long i = 0; i < w->n; i++) {  /* oldest first */
                double v = w->buf[(w->next + i) % w->n];
                s += v;
                ws += (double)(i + 1) * v;
        }
        w->sum = s;
        w->wsum = ws;
        w->since_exact = 0;
}

static void window_push(struct window *w, double x)
{
        if (w->count < w->n) {
                w->buf[w->next] = x;
                w->next = (w->next + 1) % w->n;
                w->sum += x;
                w->count++;
                w->wsum += (double)w->count * x;
                return;
        }
        double old = w->buf[w->next];
        w->buf[w->next] = x;
        w->next = (w->next + 1) % w->n;
        w->wsum += (double)w->n * x - w->sum;  /* every weight drops by one, the new value gets n */
        w->sum += x - old;
        if (++w->since_exact >= w->n)
                window_exact(w);
}

static long length_arg(PyObject *args, const char *name)
{
        long n;
        if (!PyArg_ParseTuple(args, "l", &n))
                return -1;
        if (n < 1 || n > 100000) {
                PyErr_Format(PyExc_ValueError, "%s must be 1 to 100000, not %ld", name, n);
                return -1;
        }
        return n;
}

/* --- Sma, Wma ---------------------------------------------------------------- */

typedef struct {
        PyObject_HEAD
        struct window w;
        int weighted;
} WinObject;

static void win_dealloc(WinObject *self)
{
        PyMem_Free(self->w.buf);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int sma_init(WinObject *self, PyObject *args, PyObject *kw)
{
        (void)kw;
        long n = length_arg(args, "length");
        return n < 0 || window_init(&self->w, n) < 0 ? -1 : 0;
}

static int wma_init(WinObject *self, PyObject *args, PyObject *kw)
{
        self->weighted = 1;
        return sma_init(self, args, kw);
}

static int number(PyObject *o, double *x)
{
        *x = PyFloat_AsDouble(o);
        if (*x == -1.0 && PyErr_Occurred())
                return -1;
        if (!isfinite(*x)) {
                PyErr_SetString(PyExc_ValueError, "indicators take finite numbers");
                return -1;
        }
        return 0;
}

static PyObject *win_update(WinObject *self, PyObject *arg)
{
        double x;
        if (number(arg, &x) < 0)
                return NULL;
        window_push(&self->w, x);
        Py_RETURN_NONE;
}

static PyObject *win_ready(WinObject *self, PyObject *noarg)
{
        (void)noarg;
        return PyBool_FromLong(self->w.count >= self->w.n);
}

static PyObject *win_value(WinObject *self, PyObject *noarg)
{
        (void)noarg;
        if (self->w.count < self->w.n)
                Py_RETURN_NONE;
        double n = (double)self->w.n;
        return PyFloat_FromDouble(self->weighted ? self->w.wsum / (n * (n + 1) / 2) : self->w.sum / n);
}

static PyMethodDef win_methods[] = {
        { "update", (PyCFunction)win_update, METH_O, "update(x): one more value" },
        { "is_ready", (PyCFunction)win_ready, METH_NOARGS, "whether value() has a value" },
        { "value", (PyCFunction)win_value, METH_NOARGS, "the current value, or None" },
        { NULL, NULL, 0, NULL },
};

/* --- Ema ---------------------------------------------------------------------- */

/* An EMA seeded with the mean of its first n inputs. */
struct ema {
        long n, count;
        double alpha, seed, value;
};

static void ema_push(struct ema *e, double x)
{
        if (e->count < e->n) {
                e->seed += x;
                if (++e->count == e->n)
                        e->value = e->seed / (double)e->n;
                return;
        }
        e->value += e->alpha * (x - e->value);
}

static int ema_ready(const struct ema *e)
{
        return e->count >= e->n;
}

typedef struct {
        PyObject_HEAD
        struct ema e;
} EmaObject;

static int ema_init(EmaObject *self, PyObject *args, PyObject *kw)
{
        (void)kw;
        long n = length_arg(args, "length");
        if (n < 0)
                return -1;
        self->e = (struct ema){ .n = n, .alpha = 2.0 / ((double)n + 1) };
        return 0;
}

static PyObject *ema_update(EmaObject *self, PyObject *arg)
{
        double x;
        if (number(arg, &x) < 0)
                return NULL;
        ema_push(&self->e, x);
        Py_RETURN_NONE;
}

static PyObject *ema_is_ready(EmaObject *self, PyObject *noarg)
{
        (void)noarg;
        return PyBool_FromLong(ema_ready(&self->e));
}

static PyObject *ema_value(EmaObject *self, PyObject *noarg)
{
        (void)noarg;
        if (!ema_ready(&self->e))
                Py_RETURN_NONE;
        return PyFloat_FromDouble(self->e.value);
}

static PyMethodDef ema_methods[] = {
        { "update", (PyCFunction)ema_update, METH_O, "update(x): one more value" },
        { "is_ready", (PyCFunction)ema_is_ready, METH_NOARGS, "whether value() has a value" },
        { "value", (PyCFunction)ema_value, METH_NOARGS, "the current value, or None" },
        { NULL, NULL, 0, NULL },
};

/* --- Rsi, Atr (Wilder) ---------------------------------------------------------- */

/* Wilder's smoothing seeded with the mean of its first n inputs. */
struct wilder {
        long n, count;
        double seed, value;
};

static void wilder_push(struct wilder *w, double x)
{
        if (w->count < w->n) {
                w->seed += x;
                if (++w->count == w->n)
                        w->value = w->seed / (double)w->n;
                return;
        }
        w->value = (w->value * (double)(w->n - 1) + x) / (double)w->n;
}

typedef struct {
        PyObject_HEAD
        struct wilder gain, loss;   /* Rsi; Atr uses gain alone */
        double prev;
        int have_prev;
} WilderObject;

static int wilder_init(WilderObject *self, PyObject *args, PyObject *kw)
{
        (void)kw;
        long n = length_arg(args, "length");
        if (n < 0)
                return -1;
        self->gain = self->loss = (struct wilder){ .n = n };
        self->have_prev = 0;
        return 0;
}

static PyObject *rsi_update(WilderObject *self, PyObject *arg)
{
        double x;
        if (number(arg, &x) < 0)
                return NULL;
        if (self->have_prev) {
                double d = x - self->prev;
                wilder_push(&self->gain, d > 0 ? d : 0);
                wilder_push(&self->loss, d < 0 ? -d : 0);
        }
        self->prev = x;
        self->have_prev = 1;
        Py_RETURN_NONE;
}

static PyObject *wilder_is_ready(WilderObject *self, PyObject *noarg)
{
        (void)noarg;
        return PyBool_FromLong(self->gain.count >= self->gain.n);
}

static PyObject *rsi_value(WilderObject *self, PyObject *noarg)
{
        (void)noarg;
        if (self->gain.count < self->gain.n)
                Py_RETURN_NONE;
        double g = self->gain.value, l = self->loss.value;
        return PyFloat_FromDouble(l == 0 ? (g == 0 ? 50.0 : 100.0) : 100.0 - 100.0 / (1.0 + g / l));
}

static PyObject *atr_update(WilderObject *self, PyObject *args)
{
        double h, l, c;
        if (!PyArg_ParseTuple(args, "ddd", &h, &l, &c))
                return NULL;
        if (!isfinite(h) || !isfinite(l) || !isfinite(c)) {
                PyErr_SetString(PyExc_ValueError, "indicators take finite numbers");
                return NULL;
        }
        if (self->have_prev) {  /* a true range needs the previous close */
                double tr = fmax(h - l, fmax(fabs(h - self->prev), fabs(l - self->prev)));
                wilder_push(&self->gain, tr);
        }
        self->prev = c;
        self->have_prev = 1;
        Py_RETURN_NONE;
}

static PyObject *atr_value(WilderObject *self, PyObject *noarg)
{
        (void)noarg;
        if (self->gain.count < self->gain.n)
                Py_RETURN_NONE;
        return PyFloat_FromDouble(self->gain.value);
}

static PyMethodDef rsi_methods[] = {
        { "update", (PyCFunction)rsi_update, METH_O, "update(close): one more bar" },
        { "is_ready", (PyCFunction)wilder_is_ready, METH_NOARGS, "whether value() has a value" },
        { "value", (PyCFunction)rsi_value, METH_NOARGS, "the current RSI, or None" },
        { NULL, NULL, 0, NULL },
};

static PyMethodDef atr_methods[] = {
        { "update", (PyCFunction)atr_update, METH_VARARGS, "update(high, low, close): one more bar" },
        { "is_ready", (PyCFunction)wilder_is_ready, METH_NOARGS, "whether value() has a value" },
        { "value", (PyCFunction)atr_value, METH_NOARGS, "the current ATR, or None" },
        { NULL, NULL, 0, NULL },
};

/* --- Macd ------------------------------------------------------------------------- */

typedef struct {
        PyObject_HEAD
        struct ema fast, slow, signal;
} MacdObject;

static int macd_init(MacdObject *self, PyObject *args, PyObject *kw)
{
        static char *names[] = { "fast", "slow", "signal", NULL };
        long f = 12, s = 26, g = 9;
        if (!PyArg_ParseTupleAndKeywords(args, kw, "|lll", names, &f, &s, &g))
                return -1;
        if (f < 1 || s < 1 || g < 1 || f > 100000 || s > 100000 || g > 100000) {
                PyErr_SetString(PyExc_ValueError, "fast, slow and signal must be 1 to 100000");
                return -1;
        }
        self->fast = (struct ema){ .n = f, .alpha = 2.0 / ((double)f + 1) };
        self->slow = (struct ema){ .n = s, .alpha = 2.0 / ((double)s + 1) };
        self->signal = (struct ema){ .n = g, .alpha = 2.0 / ((double)g + 1) };
        return 0;
}

static PyObject *macd_update(MacdObject *self, PyObject *arg)
{
        double x;
        if (number(arg, &x) < 0)
                return NULL;
        ema_push(&self->fast, x);
        ema_push(&self->slow, x);
        /* The MACD line exists once both EMAs do; the signal line is the
         * EMA of it from then on. */
        if (ema_ready(&self->fast) && ema_ready(&self->slow))
                ema_push(&self->signal, self->fast.value - self->slow.value);
        Py_RETURN_NONE;
}

static PyObject *macd_is_ready(MacdObject *self, PyObject *noarg)
{
        (void)noarg;
        return PyBool_FromLong(ema_ready(&self->signal));
}

static PyObject *macd_value(MacdObject *self, PyObject *noarg)
{
        (void)noarg;
        if (!ema_ready(&self->fast) || !ema_ready(&self->slow))
                Py_RETURN_NONE;
        double line = self->fast.value - self->slow.value;
        if (!ema_ready(&self->signal))
                return Py_BuildValue("(dOO)", line, Py_None, Py_None);
        return Py_BuildValue("(ddd)", line, self->signal.value, line - self->signal.value);
}

static PyMethodDef macd_methods[] = {
        { "update", (PyCFunction)macd_update, METH_O, "update(close): one more bar" },
        { "is_ready", (PyCFunction)macd_is_ready, METH_NOARGS, "whether value() has a value" },
        { "value", (PyCFunction)macd_value, METH_NOARGS,
          "(macd, signal, histogram); signal and histogram None until the signal line starts; None before" },
        { NULL, NULL, 0, NULL },
};

/* --- the module -------------------------------------------------------------------- */

#define TYPE(var, pyname, obj, init, dealloc, methods, doc)                                            \
        static PyTypeObject var = {                                                                      \
                PyVarObject_HEAD_INIT(NULL, 0).tp_name = "indicators." pyname,                         \
                .tp_basicsize = sizeof(obj),                                                             \
                .tp_flags = Py_TPFLAGS_DEFAULT,                                                          \
                .tp_doc = doc,                                                                           \
                .tp_new = PyType_GenericNew,                                                             \
                .tp_init = (initproc)init,                                                               \
                .tp_dealloc = dealloc,                                                                   \
                .tp_methods = methods,                                                                   \
        }

TYPE(SmaType, "Sma", WinObject, sma_init, (destructor)win_dealloc, win_methods, "Sma(length): simple moving average");
TYPE(WmaType, "Wma", WinObject, wma_init, (destructor)win_dealloc, win_methods, "Wma(length): weighted moving average");
TYPE(EmaType, "Ema", EmaObject, ema_init, NULL, ema_methods, "Ema(length): exponential moving average, SMA-seeded");
TYPE(RsiType, "Rsi", WilderObject, wilder_init, NULL, rsi_methods, "Rsi(length): Wilder's RSI");
TYPE(AtrType, "Atr", WilderObject, wilder_init, NULL, atr_methods, "Atr(length): Wilder's average true range");
TYPE(MacdType, "Macd", MacdObject, macd_init, NULL, macd_methods, "Macd(fast=12, slow=26, signal=9)");

static struct PyModuleDef indicators_module = {
        PyModuleDef_HEAD_INIT, "indicators", "Streaming technical indicators, O(1) per bar.", -1,
        NULL, NULL, NULL, NULL, NULL,
};

PyObject *indicators_init(void)
{
        PyTypeObject *types[] = { &SmaType, &WmaType, &EmaType, &RsiType, &AtrType, &MacdType };
        PyObject *m = PyModule_Create(&indicators_module);
        for (size_t i = 0; m && i < sizeof types / sizeof types[0]; i++) {
                const char *name = strrchr(types[i]->tp_name, '.') + 1;
                if (PyType_Ready(types[i]) < 0 || PyModule_AddObjectRef(m, name, (PyObject *)types[i]) < 0)
                        Py_CLEAR(m);
        }
        return m;
}
