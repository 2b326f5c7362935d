#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "common/proto.h"
#include "jail/pyrt.h"

extern const char jr_runtime_py[];

/* Largest message the supervisor sends to the jail. */
#define PYRT_MAX_IN (64 * 1024)

/* _jailrun.send(bytes): one datagram to the supervisor. */
static PyObject *chan_send(PyObject *self, PyObject *arg)
{
        (void)self;
        Py_buffer b;
        if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
                return NULL;
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        do
                n = send(CHAN_FD, b.buf, (size_t)b.len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&b);
        if (n < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
}

/* _jailrun.recv() -> bytes, or None once the supervisor has gone. */
static PyObject *chan_recv(PyObject *self, PyObject *noarg)
{
        (void)self;
        (void)noarg;
        PyObject *out = PyBytes_FromStringAndSize(NULL, PYRT_MAX_IN);
        if (!out)
                return NULL;
        ssize_t n;
        int saved = 0;
        Py_BEGIN_ALLOW_THREADS
        do
                n = recv(CHAN_FD, PyBytes_AS_STRING(out), PYRT_MAX_IN, MSG_TRUNC);
        while (n < 0 && errno == EINTR);
        saved = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
                Py_DECREF(out);
                errno = saved;
                return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (n == 0) {
                Py_DECREF(out);
                Py_RETURN_NONE;
        }
        if (n > PYRT_MAX_IN) {
                Py_DECREF(out);
                return PyErr_Format(PyExc_OSError, "message from supervisor too large (%zd bytes)", n);
        }
        if (_PyBytes_Resize(&out, n) < 0)
                return NULL;
        return out;
}

static PyMethodDef chan_methods[] = {
        { "send", chan_send, METH_O, "send(bytes): one datagram to the supervisor" },
        { "recv", chan_recv, METH_NOARGS, "recv() -> bytes or None at end" },
        { NULL, NULL, 0, NULL },
};

static struct PyModuleDef chan_module = {
        PyModuleDef_HEAD_INIT, "_jailrun", "The jail's channel to its supervisor.", -1,
        chan_methods, NULL, NULL, NULL, NULL,
};

static PyObject *chan_init(void)
{
        return PyModule_Create(&chan_module);
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
        if (PyImport_AppendInittab("_jailrun", chan_init) < 0)
                return -1;
        PyConfig c;
        PyConfig_InitIsolatedConfig(&c);
        c.site_import = 0;
        c.user_site_directory = 0;
        c.write_bytecode = 0;
        c.use_environment = 0;
        c.parse_argv = 0;
        PyStatus st = set_paths(&c, cfg);
        if (!PyStatus_Exception(st))
                st = Py_InitializeFromConfig(&c);
        PyConfig_Clear(&c);
        if (PyStatus_Exception(st)) {
                fprintf(stderr, "jailrun: python init: %s\n", st.err_msg ? st.err_msg : "failed");
                return -1;
        }
        return 0;
}

/* Calls runtime.worker_main(source, name) or exec_main(source, name, argv). */
static int call_main(PyObject *rt, const struct pyrt_cfg *cfg)
{
        PyObject *src = PyUnicode_DecodeUTF8(cfg->script, (Py_ssize_t)cfg->script_len, "surrogateescape");
        PyObject *res = NULL;
        if (src && cfg->exec_profile) {
                PyObject *argv = PyList_New(0);
                for (int i = 0; argv && i < cfg->argc; i++) {
                        PyObject *a = PyUnicode_DecodeFSDefault(cfg->argv[i]);
                        if (!a || PyList_Append(argv, a) < 0)
                                Py_CLEAR(argv);
                        Py_XDECREF(a);
                }
                if (argv)
                        res = PyObject_CallMethod(rt, "exec_main", "OsO", src, cfg->script_name, argv);
                Py_XDECREF(argv);
        } else if (src) {
                res = PyObject_CallMethod(rt, "worker_main", "Os", src, cfg->script_name);
        }
        Py_XDECREF(src);
        if (!res) {
                PyErr_Print();
                return 70;  /* EX_SOFTWARE: the runtime itself failed */
        }
        long status = PyLong_AsLong(res);
        Py_DECREF(res);
        return status < 0 || status > 255 ? 70 : (int)status;
}

int pyrt_run(const struct pyrt_cfg *cfg)
{
        if (init_interpreter(cfg) < 0)
                return 70;
        PyObject *code = Py_CompileString(jr_runtime_py, "<jailrun runtime>", Py_file_input);
        PyObject *rt = code ? PyImport_ExecCodeModule("_jailrun_runtime", code) : NULL;
        Py_XDECREF(code);
        int status;
        if (!rt) {
                PyErr_Print();
                status = 70;
        } else {
                status = call_main(rt, cfg);
                Py_DECREF(rt);
        }
        if (Py_FinalizeEx() < 0 && status == 0)
                status = 120;  /* as python3 does when flushing stdout fails */
        return status;
}
