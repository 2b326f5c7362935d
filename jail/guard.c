/* The Python layer's kernel-facing half: an audit hook (PEP 578) that turns
 * file, network, process, native-code and introspection events into the
 * policy's SecurityError once user code may run. Written in C so nothing
 * reachable from Python can switch it off or edit its lists: the hook
 * cannot be removed, its state lives here, and it is armed exactly once.
 * The kernel jail stays the boundary; this gives early, exact errors. */
#include "config.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jail/guard.h"

#define GUARD_MAX_ROOTS 32

/* The hook's state. One per process (an audit hook is process-wide and
 * cannot be removed), so it is the one static here. */
static struct guard {
        int on;
        int busy;          /* the hook's own calls are not judged again */
        int importing;     /* inside trusted_import: the policy's own imports */
        PyObject *error;   /* SecurityError */
        PyObject *filename;/* co_filename of user code */
        PyObject *profile; /* str, for messages */
        PyObject *deny;    /* {event or "prefix.": reason}, any caller */
        PyObject *deny_user; /* {event: reason}, when user code is the caller */
        PyObject *denied_modules; /* frozenset of module names */
        enum { OPEN_ALLOW, OPEN_DENY, OPEN_READ_LIBRARY } open;
        char *roots[GUARD_MAX_ROOTS];
        size_t nroots;
} G;

/* The reason `event` is denied by `table` (exact, or a "prefix." entry),
 * borrowed, or NULL. */
static PyObject *denied_by(PyObject *table, const char *event)
{
        PyObject *r = PyDict_GetItemString(table, event);
        if (r)
                return r;
        char key[128];
        for (const char *dot = strchr(event, '.'); dot; dot = strchr(dot + 1, '.')) {
                size_t n = (size_t)(dot - event) + 1;
                if (n >= sizeof key)
                        break;
                memcpy(key, event, n);
                key[n] = '\0';
                if ((r = PyDict_GetItemString(table, key)))
                        return r;
        }
        return NULL;
}

static int user_is_caller(void)
{
        PyFrameObject *f = PyEval_GetFrame();
        if (!f)
                return 0;
        PyCodeObject *code = PyFrame_GetCode(f);
        int r = PyUnicode_Compare(code->co_filename, G.filename) == 0;
        Py_DECREF(code);
        PyErr_Clear();
        return r;
}

static int deny(const char *what, PyObject *reason)
{
        PyErr_Format(G.error, "%s is not allowed in the %U sandbox: %U", what, G.profile, reason);
        return -1;
}

static int under_roots(const char *path)
{
        for (size_t i = 0; i < G.nroots; i++) {
                size_t n = strlen(G.roots[i]);
                if (strncmp(path, G.roots[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
                        return 1;
        }
        return 0;
}

/* A path we may read: it, or (when it does not exist) its directory,
 * resolves below one of the library roots. */
static int library_path(const char *path)
{
        char real[PATH_MAX];
        if (realpath(path, real))
                return under_roots(real);
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
                return 0;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        return realpath(dir, real) && under_roots(real);
}

static int read_only(PyObject *mode, PyObject *flags)
{
        if (mode && PyUnicode_Check(mode)) {
                const char *m = PyUnicode_AsUTF8(mode);
                return m && !strpbrk(m, "wax+");
        }
        long fl = flags && PyLong_Check(flags) ? PyLong_AsLong(flags) : -1;
        return fl >= 0 && (fl & O_ACCMODE) == O_RDONLY && !(fl & (O_CREAT | O_TRUNC));
}

/* open(path, mode, flags): the interpreter's and the libraries' own files,
 * read-only; nothing else. */
static int judge_open(PyObject *args)
{
        if (G.open == OPEN_ALLOW)
                return 0;
        PyObject *path = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : Py_None;
        PyObject *mode = PyTuple_GET_SIZE(args) > 1 ? PyTuple_GET_ITEM(args, 1) : NULL;
        PyObject *flags = PyTuple_GET_SIZE(args) > 2 ? PyTuple_GET_ITEM(args, 2) : NULL;
        PyObject *reason = PyUnicode_FromString("file access; use ctx.files");
        if (!reason)
                return -1;
        char what[300] = "open() of a file descriptor";
        int ok = 0;
        PyObject *fs = PyLong_Check(path) ? NULL : PyOS_FSPath(path);
        PyObject *bytes = fs && PyUnicode_Check(fs) ? PyUnicode_EncodeFSDefault(fs) : Py_XNewRef(fs);
        if (bytes && PyBytes_Check(bytes)) {
                const char *p = PyBytes_AS_STRING(bytes);
                snprintf(what, sizeof what, "open('%.200s')", p);
                /* An allowed module's own initialisation may read what it
                 * likes (pandas opens /dev/null); user code, library files. */
                ok = G.open == OPEN_READ_LIBRARY && strlen(p) == (size_t)PyBytes_GET_SIZE(bytes) &&
                     (strcmp(p, "/dev/null") == 0 ||
                      (read_only(mode, flags) && (G.importing || library_path(p))));
        }
        PyErr_Clear();
        Py_XDECREF(fs);
        Py_XDECREF(bytes);
        int r = ok ? 0 : deny(what, reason);
        Py_DECREF(reason);
        return r;
}

/* import NAME outside the policy's own imports (a library importing
 * lazily): refused for the denied modules and their submodules. */
static int judge_import(PyObject *args)
{
        if (G.importing || PyTuple_GET_SIZE(args) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0)))
                return 0;
        PyObject *name = PyTuple_GET_ITEM(args, 0);
        const char *s = PyUnicode_AsUTF8(name);
        if (!s)
                return -1;
        char top[128];
        snprintf(top, sizeof top, "%.*s", (int)strcspn(s, "."), s);
        PyObject *t = PyUnicode_FromString(top);
        int hit = t ? PySet_Contains(G.denied_modules, t) : -1;
        Py_XDECREF(t);
        if (hit <= 0)
                return hit;
        char what[200];
        snprintf(what, sizeof what, "import of %.150s", s);
        PyObject *reason = PyUnicode_FromString("native or system module");
        int r = reason ? deny(what, reason) : -1;
        Py_XDECREF(reason);
        return r;
}

static int judge(const char *event, PyObject *args)
{
        if (strcmp(event, "open") == 0)
                return judge_open(args);
        if (strcmp(event, "import") == 0)
                return judge_import(args);
        /* A module the policy allows runs its own initialisation (numpy
         * sets environment variables); only its file reads are judged. */
        if (G.importing)
                return 0;
        /* An event in deny_user is judged by its caller alone, even where a
         * deny prefix covers it (os.listdir: the import system lists
         * directories, user code may not). */
        PyObject *reason = denied_by(G.deny_user, event);
        if (reason)
                reason = user_is_caller() ? reason : NULL;
        else
                reason = denied_by(G.deny, event);
        if (!reason)
                return 0;
        char what[200];
        if (strcmp(event, "object.__getattr__") == 0 || strcmp(event, "object.__setattr__") == 0 ||
            strcmp(event, "object.__delattr__") == 0) {
                PyObject *attr = PyTuple_GET_SIZE(args) > 1 ? PyTuple_GET_ITEM(args, 1) : NULL;
                const char *a = attr && PyUnicode_Check(attr) ? PyUnicode_AsUTF8(attr) : NULL;
                snprintf(what, sizeof what, "%s attribute %.100s", strcmp(event, "object.__getattr__") == 0 ? "access to the" :
                         "changing the", a ? a : "?");
                PyErr_Clear();
        } else {
                snprintf(what, sizeof what, "%.150s", event);
        }
        Py_INCREF(reason);
        int r = deny(what, reason);
        Py_DECREF(reason);
        return r;
}

static int audit_hook(const char *event, PyObject *args, void *data)
{
        (void)data;
        if (!G.on || G.busy)
                return 0;
        G.busy = 1;
        int r = judge(event, args);
        G.busy = 0;
        return r;
}

int guard_install(void)
{
        return PySys_AddAuditHook(audit_hook, NULL);
}

static int set_roots(PyObject *roots)
{
        PyObject *seq = PySequence_Fast(roots, "roots must be a sequence");
        if (!seq)
                return -1;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && G.nroots < GUARD_MAX_ROOTS; i++) {
                PyObject *b = PyUnicode_EncodeFSDefault(PySequence_Fast_GET_ITEM(seq, i));
                char real[PATH_MAX];
                if (!b) {
                        Py_DECREF(seq);
                        return -1;
                }
                if (realpath(PyBytes_AS_STRING(b), real) && !(G.roots[G.nroots] = strdup(real))) {
                        Py_DECREF(b);
                        Py_DECREF(seq);
                        PyErr_NoMemory();
                        return -1;
                }
                if (G.roots[G.nroots])
                        G.nroots++;
                Py_DECREF(b);
        }
        Py_DECREF(seq);
        return 0;
}

/* _jailrun.guard_on(error, filename, profile, deny, deny_user,
 * denied_modules, open_rule, roots): arms the hook, once. */
static PyObject *guard_on(PyObject *self, PyObject *args)
{
        (void)self;
        PyObject *error, *filename, *profile, *deny_any, *deny_user, *modules, *roots;
        const char *open_rule;
        if (G.on)
                return PyErr_Format(PyExc_RuntimeError, "the guard is already on");
        if (!PyArg_ParseTuple(args, "OUUO!O!OsO:guard_on", &error, &filename, &profile, &PyDict_Type, &deny_any,
                              &PyDict_Type, &deny_user, &modules, &open_rule, &roots))
                return NULL;
        if (!PyExceptionClass_Check(error))
                return PyErr_Format(PyExc_TypeError, "error must be an exception class");
        if (strcmp(open_rule, "allow") == 0)
                G.open = OPEN_ALLOW;
        else if (strcmp(open_rule, "deny") == 0)
                G.open = OPEN_DENY;
        else if (strcmp(open_rule, "read-library") == 0)
                G.open = OPEN_READ_LIBRARY;
        else
                return PyErr_Format(PyExc_ValueError, "unknown open rule '%s'", open_rule);
        if (set_roots(roots) < 0)
                return NULL;
        /* Private copies: later changes to the caller's objects change nothing. */
        G.deny = PyDict_Copy(deny_any);
        G.deny_user = PyDict_Copy(deny_user);
        G.denied_modules = PyFrozenSet_New(modules);
        if (!G.deny || !G.deny_user || !G.denied_modules)
                return NULL;
        G.error = Py_NewRef(error);
        G.filename = Py_NewRef(filename);
        G.profile = Py_NewRef(profile);
        G.on = 1;
        Py_RETURN_NONE;
}

/* _jailrun.trusted_import(name, globals, locals, fromlist, level): the
 * real import, for a module the policy allows; the libraries it pulls in
 * are its own business. */
static PyObject *trusted_import(PyObject *self, PyObject *args)
{
        (void)self;
        PyObject *name, *globals = NULL, *locals = NULL, *fromlist = NULL;
        int level = 0;
        if (!PyArg_ParseTuple(args, "U|OOOi:trusted_import", &name, &globals, &locals, &fromlist, &level))
                return NULL;
        int saved = G.importing;
        G.importing = 1;
        PyObject *m = PyImport_ImportModuleLevelObject(name, globals, locals, fromlist, level);
        G.importing = saved;
        return m;
}

/* _jailrun.set_type_attr(type, name, value): replaces a method on a type,
 * built-in ones included (their dict is closed to Python code). */
static PyObject *set_type_attr(PyObject *self, PyObject *args)
{
        (void)self;
        PyTypeObject *type;
        PyObject *name, *value;
        if (!PyArg_ParseTuple(args, "O!UO:set_type_attr", &PyType_Type, &type, &name, &value))
                return NULL;
        if (!type->tp_dict || PyDict_SetItem(type->tp_dict, name, value) < 0)
                return NULL;
        PyType_Modified(type);
        Py_RETURN_NONE;
}

PyMethodDef guard_methods[] = {
        { "guard_on", guard_on, METH_VARARGS, "arm the audit hook (once)" },
        { "trusted_import", trusted_import, METH_VARARGS, "import a module the policy allows" },
        { "set_type_attr", set_type_attr, METH_VARARGS, "replace an attribute of a type" },
        { NULL, NULL, 0, NULL },
};
