/* The backtest's bar clock: one periodic SIGALRM for the whole run instead
 * of a timer per bar. The runtime marks each bar's start and end (no
 * system call: the clock is the vDSO's); the signal handler, which runs
 * even while the bar is inside C code, notices a bar past its budget,
 * names the process after it (BAR_COMM_PREFIX, where the supervisor reads
 * it should it have to kill a stuck bar) and asks the interpreter to run
 * the Python-level SIGALRM handler, which raises TimeoutError in the bar
 * at its next bytecode, again at every tick until the bar returns.
 * A worker's tick shares the clock, which also asks for its log entries
 * to go out once the first has waited LOG_WAIT_NS. */
#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <time.h>

#include "common/proto.h"
#include "jail/runclock.h"

static volatile sig_atomic_t in_bar;
static volatile sig_atomic_t overdue;
static volatile int64_t bar_index, bar_start_ns, budget_ns;
static volatile int64_t log_since;      /* when the oldest unsent log entry came; 0: none */
static volatile sig_atomic_t log_due;  /* the Python-level handler is to send them */
/* A worker's clock runs only while it has something to watch (a tick, a
 * log entry waiting), so an idle jail is not woken: armed by bar_begin and
 * log_mark, stopped by bar_end and log_take when nothing is left. Those
 * run with the GIL held, never at once; the handler never arms. */
static int lazy, armed;
static struct itimerval period;

#define LOG_WAIT_NS 100000000

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* PR_SET_NAME "jr-bar N", formatted without stdio (a signal handler). */
static void name_bar(int64_t i)
{
        char name[16] = BAR_COMM_PREFIX, digits[20];
        size_t p = sizeof BAR_COMM_PREFIX - 1, n = 0;
        uint64_t v = i < 0 ? 0 : (uint64_t)i;
        do
                digits[n++] = (char)('0' + v % 10);
        while ((v /= 10) && n < sizeof digits);
        while (n && p < sizeof name - 1)
                name[p++] = digits[--n];
        name[p] = '\0';
        prctl(PR_SET_NAME, name);
}

static void on_tick(int sig)
{
        int saved = errno, trip = 0;
        int64_t now = now_ns();
        if (in_bar && now - bar_start_ns >= budget_ns) {
                overdue = 1;
                name_bar(bar_index);
                trip = 1;
        }
        if (log_since && now - log_since >= LOG_WAIT_NS) {
                log_since = 0;
                log_due = 1;
                trip = 1;
        }
        if (trip)
                PyErr_SetInterruptEx(sig);
        errno = saved;
}

static int arm(void)
{
        if (armed)
                return 0;
        if (setitimer(ITIMER_REAL, &period, NULL) < 0)
                return -1;
        armed = 1;
        return 0;
}

static int disarm(void)
{
        struct itimerval off = { 0 };
        if (!armed)
                return 0;
        if (setitimer(ITIMER_REAL, &off, NULL) < 0)
                return -1;
        armed = 0;
        return 0;
}

/* bar_watch(budget_s, tick_s[, lazy]): the C handler on SIGALRM (after the
 * Python-level handler was set with signal.signal) and the periodic timer,
 * running from now on, or with lazy only while a tick runs or a log entry
 * waits. */
static PyObject *bar_watch(PyObject *self, PyObject *args)
{
        (void)self;
        double budget, tick;
        int want_lazy = 0;
        if (!PyArg_ParseTuple(args, "dd|p", &budget, &tick, &want_lazy))
                return NULL;
        if (!(budget > 0) || !(tick > 0)) {
                PyErr_SetString(PyExc_ValueError, "budget and tick must be positive");
                return NULL;
        }
        budget_ns = (int64_t)(budget * 1e9);
        struct sigaction sa = { .sa_handler = on_tick, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGALRM, &sa, NULL) < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        struct timeval tv = { (time_t)tick, (suseconds_t)((tick - (double)(time_t)tick) * 1e6) };
        if (tv.tv_sec == 0 && tv.tv_usec == 0)
                tv.tv_usec = 1;
        period = (struct itimerval){ .it_interval = tv, .it_value = tv };
        lazy = want_lazy;
        armed = 0;
        if (!lazy && arm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

static PyObject *bar_unwatch(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        in_bar = 0;
        armed = 1;  /* whatever it was: stopped now */
        if (disarm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

static PyObject *bar_begin(PyObject *self, PyObject *arg)
{
        (void)self;
        long long i = PyLong_AsLongLong(arg);
        if (i == -1 && PyErr_Occurred())
                return NULL;
        in_bar = 0;
        bar_index = i;
        overdue = 0;
        bar_start_ns = now_ns();
        in_bar = 1;
        if (lazy && arm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

/* bar_overdue() -> whether the bar in progress is past its budget */
static PyObject *bar_overdue(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        return PyBool_FromLong(in_bar && overdue);
}

/* log_mark(): a log entry waits to be sent (kept: the oldest's time) */
static PyObject *log_mark(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        if (!log_since)
                log_since = now_ns();
        if (lazy && arm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

/* log_sent(): every waiting entry went out; with nothing else to watch, a
 * lazy clock stops */
static PyObject *log_sent(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        log_since = 0;
        log_due = 0;
        if (lazy && !in_bar && disarm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

/* log_take() -> whether the clock asked for the waiting entries to be sent */
static PyObject *log_take(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        int due = log_due;
        log_due = 0;
        if (lazy && !in_bar && !log_since && disarm() < 0)  /* the entries go now: nothing left to watch */
                return PyErr_SetFromErrno(PyExc_OSError);
        return PyBool_FromLong(due);
}

/* bar_end() -> (nanoseconds the bar took, whether it overran) */
static PyObject *bar_end(PyObject *self, PyObject *noarg)
{
        (void)self, (void)noarg;
        in_bar = 0;
        int64_t took = now_ns() - bar_start_ns;
        if (lazy && !log_since && !log_due && disarm() < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(LO)", (long long)took, overdue || took >= budget_ns ? Py_True : Py_False);
}

PyMethodDef runclock_methods[] = {
        { "bar_watch", bar_watch, METH_VARARGS, "bar_watch(budget_s, tick_s[, lazy]): start the bar clock" },
        { "log_sent", log_sent, METH_NOARGS, "log_sent(): the waiting log entries went out" },
        { "bar_unwatch", bar_unwatch, METH_NOARGS, "stop the bar clock" },
        { "bar_begin", bar_begin, METH_O, "bar_begin(i): bar i starts" },
        { "bar_end", bar_end, METH_NOARGS, "bar_end() -> (ns, overran)" },
        { "bar_overdue", bar_overdue, METH_NOARGS, "whether the bar in progress overran" },
        { "log_mark", log_mark, METH_NOARGS, "log_mark(): a log entry waits to be sent" },
        { "log_take", log_take, METH_NOARGS, "log_take() -> whether the waiting log entries are due" },
        { NULL, NULL, 0, NULL },
};
