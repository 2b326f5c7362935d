#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <malloc.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/proto.h"
#include "jail/runclock.h"
#include "jail/candle.h"
#include "jail/guard.h"
#include "jail/indicators.h"
#include "jail/pyrt.h"

#include <marshal.h>

/* The runtime's modules, compiled at build time (build-aux/pyc2c), in the
 * order they are executed. */
struct jr_module {
        const char *name;
        const unsigned char *code;
        size_t len;
};
extern const struct jr_module jr_runtime_modules[];

/* Largest message the supervisor sends to the jail (a state value). */
#define PYRT_MAX_IN CHAN_MAX_MSG

/* Nesting the runtime sends: a user's value (ctx.state.set) sits three
 * deep in its message, and the supervisor takes CHAN_MAX_DEPTH. */
#define PYRT_MAX_DEPTH (CHAN_MAX_DEPTH - 1)

/* Python value -> JSON, for the runtime's own messages (dicts with str
 * keys, lists, str, int, float, bool, None). Text that is not valid UTF-8
 * (lone surrogates) is replaced, as JSON cannot carry it. */
static json_t *to_json(PyObject *o, int depth)
{
        if (depth > PYRT_MAX_DEPTH)
                return PyErr_Format(PyExc_ValueError, "message nested too deeply"), NULL;
        if (o == Py_None)
                return json_null();
        if (PyBool_Check(o))
                return json_boolean(o == Py_True);
        if (PyLong_Check(o)) {
                long long v = PyLong_AsLongLong(o);
                return v == -1 && PyErr_Occurred() ? NULL : json_integer(v);
        }
        if (PyFloat_Check(o)) {
                json_t *j = json_real(PyFloat_AS_DOUBLE(o));
                return j ? j : (PyErr_SetString(PyExc_ValueError, "NaN and infinity are not JSON"), NULL);
        }
        if (PyUnicode_Check(o)) {
                PyObject *b = PyUnicode_AsEncodedString(o, "utf-8", "replace");
                json_t *j = b ? json_stringn(PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)) : NULL;
                Py_XDECREF(b);
                return j;
        }
        json_t *out = NULL;
        if (PyList_Check(o) || PyTuple_Check(o)) {
                out = json_array();
                Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
                for (Py_ssize_t i = 0; out && i < n; i++) {
                        json_t *v = to_json(PySequence_Fast_GET_ITEM(o, i), depth + 1);
                        if (!v || json_array_append_new(out, v) < 0)
                                json_decref(out), out = NULL;
                }
        } else if (PyDict_Check(o)) {
                out = json_object();
                PyObject *k, *v;
                Py_ssize_t pos = 0;
                while (out && PyDict_Next(o, &pos, &k, &v)) {
                        if (!PyUnicode_Check(k)) {
                                PyErr_Format(PyExc_TypeError, "keys must be str, not %s", Py_TYPE(k)->tp_name);
                                json_decref(out);
                                return NULL;
                        }
                        Py_ssize_t klen;
                        const char *key = PyUnicode_AsUTF8AndSize(k, &klen);
                        json_t *jv = key ? to_json(v, depth + 1) : NULL;
                        if (!jv || json_object_setn_new(out, key, (size_t)klen, jv) < 0)
                                json_decref(out), out = NULL;
                }
        } else {
                PyErr_Format(PyExc_TypeError, "cannot send %s", Py_TYPE(o)->tp_name);
        }
        return out;
}

/* JSON from the supervisor -> Python value. */
static PyObject *to_py(json_t *j)
{
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                PyObject *d = PyDict_New();
                const char *k;
                json_t *v;
                json_object_foreach(j, k, v) {
                        /* A key of its own, not the interned one: interning
                         * writes to the shared string's refcount, which in a
                         * warm jail copies the page it sits on. */
                        PyObject *pk = d ? PyUnicode_FromString(k) : NULL;
                        PyObject *pv = pk ? to_py(v) : NULL;
                        if (!pv || PyDict_SetItem(d, pk, pv) < 0)
                                Py_CLEAR(d);
                        Py_XDECREF(pk);
                        Py_XDECREF(pv);
                }
                return d;
        }
        case JSON_ARRAY: {
                PyObject *l = PyList_New((Py_ssize_t)json_array_size(j));
                for (size_t i = 0; l && i < json_array_size(j); i++) {
                        PyObject *pv = to_py(json_array_get(j, i));
                        if (!pv)
                                Py_CLEAR(l);
                        else
                                PyList_SET_ITEM(l, (Py_ssize_t)i, pv);
                }
                return l;
        }
        case JSON_STRING:
                return PyUnicode_FromStringAndSize(json_string_value(j), (Py_ssize_t)json_string_length(j));
        case JSON_INTEGER:
                return PyLong_FromLongLong(json_integer_value(j));
        case JSON_REAL:
                return PyFloat_FromDouble(json_real_value(j));
        case JSON_TRUE:
                Py_RETURN_TRUE;
        case JSON_FALSE:
                Py_RETURN_FALSE;
        case JSON_NULL:
                Py_RETURN_NONE;
        }
        Py_RETURN_NONE;
}

/* _jailrun.send(obj): obj as one JSON datagram to the supervisor. */
static PyObject *chan_send(PyObject *self, PyObject *arg)
{
        (void)self;
        json_t *j = to_json(arg, 0);
        if (!j)
                return PyErr_Occurred() ? NULL : PyErr_NoMemory();
        char *buf = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!buf)
                return PyErr_NoMemory();
        ssize_t n;
        int saved;
        size_t len = strlen(buf);
        Py_BEGIN_ALLOW_THREADS
        do
                n = send(CHAN_FD, buf, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        saved = errno;
        Py_END_ALLOW_THREADS
        free(buf);
        if (n < 0) {
                errno = saved;
                return PyErr_SetFromErrno(PyExc_OSError);
        }
        Py_RETURN_NONE;
}

/* _jailrun.recv() -> the next message as a dict, or None once the
 * supervisor has gone. */
/* The receive buffer, allocated by the first recv and kept: a ctx call
 * is a round trip of microseconds, and a fresh 1 MiB buffer each time
 * (mmap, page faults, munmap) cost more than the rest of it. The runtime
 * receives from one thread at a time. */
static char *recv_buf;

static PyObject *chan_recv(PyObject *self, PyObject *noarg)
{
        (void)self;
        (void)noarg;
        if (!recv_buf && !(recv_buf = malloc(PYRT_MAX_IN)))
                return PyErr_NoMemory();
        char *buf = recv_buf;
        ssize_t n;
        int saved;
        Py_BEGIN_ALLOW_THREADS
        do
                n = recv(CHAN_FD, buf, PYRT_MAX_IN, MSG_TRUNC);
        while (n < 0 && errno == EINTR);
        saved = errno;
        Py_END_ALLOW_THREADS
        PyObject *out = NULL;
        if (n < 0) {
                errno = saved;
                PyErr_SetFromErrno(PyExc_OSError);
        } else if (n == 0) {
                out = Py_NewRef(Py_None);
        } else if (n > PYRT_MAX_IN) {
                PyErr_Format(PyExc_OSError, "message from supervisor too large (%zd bytes)", n);
        } else {
                json_error_t je;
                json_t *j = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
                if (j && json_is_object(j))
                        out = to_py(j);
                else
                        PyErr_Format(PyExc_ValueError, "bad message from supervisor: %s", je.text);
                json_decref(j);
        }
        return out;
}

/* Largest payload the supervisor announces (a file read, an HTTP body). */
#define PYRT_MAX_PAYLOAD (64L << 20)

/* _jailrun.recv_payload(n) -> bytes: the n bytes that follow a reply,
 * as raw datagrams of at most CHAN_MAX_MSG each. */
static PyObject *chan_recv_payload(PyObject *self, PyObject *arg)
{
        (void)self;
        Py_ssize_t want = PyLong_AsSsize_t(arg);
        if (want < 0 || want > PYRT_MAX_PAYLOAD)
                return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "bad payload size %zd", want);
        PyObject *out = PyBytes_FromStringAndSize(NULL, want);
        if (!out)
                return NULL;
        char *p = PyBytes_AS_STRING(out);
        Py_ssize_t got = 0;
        while (got < want) {
                ssize_t n;
                int saved;
                Py_BEGIN_ALLOW_THREADS
                do
                        n = recv(CHAN_FD, p + got, (size_t)(want - got), MSG_TRUNC);
                while (n < 0 && errno == EINTR);
                saved = errno;
                Py_END_ALLOW_THREADS
                if (n <= 0 || n > want - got) {
                        Py_DECREF(out);
                        if (n < 0) {
                                errno = saved;
                                return PyErr_SetFromErrno(PyExc_OSError);
                        }
                        return PyErr_Format(PyExc_OSError, "payload from supervisor cut short or too long");
                }
                got += n;
        }
        return out;
}

static PyObject *chan_runtime_module(PyObject *self, PyObject *arg);

static PyMethodDef chan_methods[] = {
        { "send", chan_send, METH_O, "send(obj): obj as one JSON datagram to the supervisor" },
        { "recv", chan_recv, METH_NOARGS, "recv() -> dict, or None at end" },
        { "recv_payload", chan_recv_payload, METH_O, "recv_payload(n) -> the n bytes after a reply" },
        { "runtime_module", chan_runtime_module, METH_O, "runtime_module(name) -> a module of the runtime, made on first use" },
        { NULL, NULL, 0, NULL },
};

static struct PyModuleDef chan_module = {
        PyModuleDef_HEAD_INIT, "_jailrun", "The jail's channel to its supervisor.", -1,
        chan_methods, NULL, NULL, NULL, NULL,
};

/* Set by pyrt_run before the interpreter starts (inittab functions take
 * no arguments). */
static const char *data_name = "";

static PyObject *chan_init(void)
{
        PyObject *m = PyModule_Create(&chan_module);
        if (m && (PyModule_AddFunctions(m, guard_methods) < 0 || PyModule_AddFunctions(m, runclock_methods) < 0 ||
                  candle_add_types(m) < 0 ||
                  PyModule_AddStringConstant(m, "DATAPATH", JR_DATAPATH) < 0 ||
                  PyModule_AddStringConstant(m, "EXECUTABLE", JR_PYTHON_EXE) < 0 ||
                  PyModule_AddIntConstant(m, "DATA_FD", DATA_FD) < 0 ||
                  PyModule_AddStringConstant(m, "DATA_NAME", data_name) < 0))
                Py_CLEAR(m);
        return m;
}

static PyStatus set_paths(PyConfig *c, const struct pyrt_cfg *cfg)
{
        PyStatus st = PyConfig_SetBytesString(c, &c->home, cfg->home);
        if (PyStatus_Exception(st))
                return st;
        st = PyConfig_SetBytesString(c, &c->program_name, "jailrun");
        if (PyStatus_Exception(st))
                return st;
        c->module_search_paths_set = 1;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", cfg->pypath);
        for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                wchar_t *w = Py_DecodeLocale(d, NULL);
                if (!w)
                        return PyStatus_NoMemory();
                st = PyWideStringList_Append(&c->module_search_paths, w);
                PyMem_RawFree(w);
                if (PyStatus_Exception(st))
                        return st;
        }
        return PyStatus_Ok();
}

static int init_interpreter(const struct pyrt_cfg *cfg)
{
        if (PyImport_AppendInittab("_jailrun", chan_init) < 0 ||
            PyImport_AppendInittab("indicators", indicators_init) < 0 || guard_install() < 0)
                return -1;
        /* UTF-8 mode: the jail's text (argv, file names, stdio) is UTF-8
         * whatever the C library's locale data says. */
        PyPreConfig pre;
        PyPreConfig_InitIsolatedConfig(&pre);
        pre.utf8_mode = 1;
        PyStatus st = Py_PreInitialize(&pre);
        if (PyStatus_Exception(st)) {
                fprintf(stderr, "jailrun: python pre-init: %s\n", st.err_msg ? st.err_msg : "failed");
                return -1;
        }
        PyConfig c;
        PyConfig_InitIsolatedConfig(&c);
        c.site_import = 0;
        c.user_site_directory = 0;
        c.write_bytecode = 0;
        c.use_environment = 0;
        /* A backtest is reproducible: str hashes (set order) too. */
        if (strcmp(cfg->entry, "backtest") == 0) {
                c.use_hash_seed = 1;
                c.hash_seed = 0;
        }
        c.parse_argv = 0;
        st = set_paths(&c, cfg);
        if (!PyStatus_Exception(st))
                st = Py_InitializeFromConfig(&c);
        PyConfig_Clear(&c);
        if (PyStatus_Exception(st)) {
                fprintf(stderr, "jailrun: python init: %s\n", st.err_msg ? st.err_msg : "failed");
                return -1;
        }
        return 0;
}

/* Calls runtime.main(entry, source, name, argv, policy). */
static int call_main(PyObject *rt, const struct pyrt_cfg *cfg)
{
        /* Bytes: compile() then honours a coding declaration and reports a
         * bad encoding as a SyntaxError with its line, as python3 does. */
        PyObject *src = PyBytes_FromStringAndSize(cfg->script, (Py_ssize_t)cfg->script_len);
        PyObject *argv = PyList_New(0);
        PyObject *policy = NULL, *res = NULL;
        for (int i = 0; argv && i < cfg->argc; i++) {
                PyObject *a = PyUnicode_DecodeFSDefault(cfg->argv[i]);
                if (!a || PyList_Append(argv, a) < 0)
                        Py_CLEAR(argv);
                Py_XDECREF(a);
        }
        json_error_t je;
        json_t *pj = json_loads(cfg->policy_json, 0, &je);
        if (pj)
                policy = to_py(pj);
        else
                PyErr_Format(PyExc_ValueError, "policy: %s", je.text);
        json_decref(pj);
        if (src && argv && policy)
                res = PyObject_CallMethod(rt, "main", "sOsOO", cfg->entry, src, cfg->script_name, argv, policy);
        Py_XDECREF(src);
        Py_XDECREF(argv);
        Py_XDECREF(policy);
        if (!res) {
                /* The runtime's own failure goes to the real stderr, whole. */
                PySys_SetObject("stderr", PySys_GetObject("__stderr__"));
                PyErr_Print();
                return 70;  /* EX_SOFTWARE: the runtime itself failed */
        }
        long status = PyLong_AsLong(res);
        Py_DECREF(res);
        return status < 0 || status > 255 ? 70 : (int)status;
}

static PyObject *exec_runtime_module(const struct jr_module *m)
{
        PyObject *code = PyMarshal_ReadObjectFromString((const char *)m->code, (Py_ssize_t)m->len);
        PyObject *mod = code ? PyImport_ExecCodeModule(m->name, code) : NULL;
        Py_XDECREF(code);
        return mod;
}

/* The runtime proper, the last module; the others (the Python layer, the
 * validator, the indicators, the backtest runner) are made when the
 * runtime first asks for them: a job that needs none pays for none. */
static PyObject *load_runtime(void)
{
        const struct jr_module *last = jr_runtime_modules;
        while (last[1].name)
                last++;
        return exec_runtime_module(last);
}

/* _jailrun.runtime_module(name) -> the runtime module `name`, made on the
 * first call. */
static PyObject *chan_runtime_module(PyObject *self, PyObject *arg)
{
        (void)self;
        const char *name = PyUnicode_AsUTF8(arg);
        if (!name)
                return NULL;
        PyObject *have = PyDict_GetItemWithError(PyImport_GetModuleDict(), arg);
        if (have || PyErr_Occurred())
                return Py_XNewRef(have);
        for (const struct jr_module *m = jr_runtime_modules; m->name; m++)
                if (strcmp(m->name, name) == 0)
                        return exec_runtime_module(m);
        return PyErr_Format(PyExc_ImportError, "no runtime module %s", name);
}

/* Runs the entry on the loaded runtime, then what teardown owes the
 * script; the exit status. */
static int run_main(PyObject *rt, const struct pyrt_cfg *cfg)
{
        int status = call_main(rt, cfg);
        /* No interpreter teardown: the jail and everything in it are about
         * to go. runtime.finish() did what teardown owes the script
         * (threads joined, atexit handlers, stdio flushed). */
        PyObject *r = PyObject_CallMethod(rt, "finish", "i", status);
        if (!r) {
                PyErr_Print();
                status = 70;
        } else {
                status = (int)PyLong_AsLong(r);
                Py_DECREF(r);
        }
        fflush(NULL);
        return status;
}

int pyrt_run(const struct pyrt_cfg *cfg)
{
        data_name = cfg->data_name ? cfg->data_name : "";
        if (init_interpreter(cfg) < 0)
                return 70;
        PyObject *rt = load_runtime();
        if (!rt) {
                PyErr_Print();
                return 70;
        }
        return run_main(rt, cfg);
}

/* The runtime of a warm zygote, made once by pyrt_prepare: every child
 * forked from it runs its entry on it. */
static PyObject *warm_runtime;

/* Appends "name: why" of the pending exception to *report. */
static void note_failure(const char *name, char **report)
{
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *s = value ? PyObject_Str(value) : NULL;
        const char *why = s ? PyUnicode_AsUTF8(s) : NULL;
        PyErr_Clear();
        char *old = *report, *out = NULL;
        if (asprintf(&out, "%s%s%s: %s", old ? old : "", old ? "; " : "", name, why ? why : "failed") >= 0) {
                free(old);
                *report = out;
        }
        Py_XDECREF(s);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
}

/* Imports each name of the JSON array `names`; the failures in *report. */
static void preload(const char *names, char **report)
{
        json_error_t je;
        json_t *a = json_loads(names, 0, &je);
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v) {
                if (!json_is_string(v))
                        continue;
                PyObject *m = PyImport_ImportModule(json_string_value(v));
                if (!m)
                        note_failure(json_string_value(v), report);
                Py_XDECREF(m);
        }
        json_decref(a);
}

/* What an import printed leaves the zygote now (its stdout is /dev/null,
 * its stderr the supervisor's): a buffer every child inherited would be
 * flushed into each job's output. */
static void flush_stdio(void)
{
        static const char *const names[] = { "stdout", "stderr" };
        for (size_t i = 0; i < 2; i++) {
                PyObject *f = PySys_GetObject(names[i]);
                PyObject *r = f ? PyObject_CallMethod(f, "flush", NULL) : NULL;
                if (!r)
                        PyErr_Clear();
                Py_XDECREF(r);
        }
        fflush(NULL);
}

/* gc.collect(), then gc.freeze(): what the zygote made is left out of
 * every later collection, so no child's collector writes to (and so
 * copies) the pages it shares with its siblings. */
static int freeze_heap(void)
{
        PyObject *gc = PyImport_ImportModule("gc");
        PyObject *r = gc ? PyObject_CallMethod(gc, "collect", NULL) : NULL;
        Py_XDECREF(r);
        r = r ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
        Py_XDECREF(gc);
        Py_XDECREF(r);
        return r ? 0 : -1;
}

/* Takes up the free chunks inside the C heap, left there by the imports:
 * a child's first mallocs would otherwise land in them, scattered over
 * hundreds of pages it shares with the zygote, and copy each (a 14 KB
 * policy decoded cost a warm jail 1.4 MB of its own). Held for the
 * zygote's life; the child's own allocations then come from the top of
 * the heap, on pages of their own. */
static void fill_heap_holes(void)
{
        malloc_trim(0);
        for (long n = 0; n < 1000000; n += 64) {
                struct mallinfo2 mi = mallinfo2();
                if (mi.fordblks - mi.keepcost < 8192)
                        break;
                for (int i = 0; i < 64; i++)
                        if (!malloc(24))
                                return;
        }
}

int pyrt_prepare(const struct pyrt_cfg *cfg, const char *preload_json, char **report)
{
        static const char *const own[] = { "_jailrun_guard", "_jailrun_validate" };
        *report = NULL;
        if (init_interpreter(cfg) < 0)
                return -1;
        if (!(warm_runtime = load_runtime())) {
                note_failure("the runtime", report);
                return -1;
        }
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
                PyObject *name = PyUnicode_FromString(own[i]);
                PyObject *m = name ? chan_runtime_module(NULL, name) : NULL;
                Py_XDECREF(name);
                if (!m) {
                        note_failure(own[i], report);
                        return -1;
                }
                Py_DECREF(m);
        }
        preload(preload_json, report);
        flush_stdio();
        if (freeze_heap() < 0) {
                note_failure("gc.freeze", report);
                return -1;
        }
        fill_heap_holes();
        return 0;
}

void pyrt_before_fork(void)
{
        PyOS_BeforeFork();
}

void pyrt_after_fork_parent(void)
{
        PyOS_AfterFork_Parent();
}

/* numpy's global generator was seeded once, in the zygote: each child
 * draws its own seed, as a fresh import would. */
static int reseed_numpy(void)
{
        PyObject *m = PyDict_GetItemString(PyImport_GetModuleDict(), "numpy.random");
        if (!m)
                return 0;
        PyObject *r = PyObject_CallMethod(m, "seed", NULL);
        Py_XDECREF(r);
        return r ? 0 : -1;
}

int pyrt_after_fork_child(const char *data_name_now, char **why)
{

        *why = NULL;
        /* Thread states, locks, and the at-fork hooks (random's reseed). */
        PyOS_AfterFork_Child();
        PyObject *chan = PyDict_GetItemString(PyImport_GetModuleDict(), "_jailrun");
        PyObject *dn = PyUnicode_FromString(data_name_now ? data_name_now : "");
        int r = chan && dn ? PyObject_SetAttrString(chan, "DATA_NAME", dn) : -1;
        Py_XDECREF(dn);
        if (r == 0)
                r = reseed_numpy();
        if (r < 0)
                note_failure("reseed", why);
        return r;
}

int pyrt_run_forked(const struct pyrt_cfg *cfg)
{

        return run_main(warm_runtime, cfg);
}
