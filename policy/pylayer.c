/* The Python layer of profiles worker and strategy is whole or off
 * (jailrun-policy(5), "The Python layer is whole or off"). Its runtime
 * half (module views, restricted builtins, the attribute guard, the audit
 * hook) hands user code real library objects, and plain attribute syntax
 * on those (json.dumps.__globals__["__builtins__"]) reaches the real
 * builtins unless the source validator's dunder rule and the attribute
 * guard refuse the names that lead there. A policy that keeps the guard
 * but drops one of those pieces would promise a layer that does not hold:
 * it is refused, naming the key, and python.guard false says "off". */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "policy/policy.h"

/* Attributes that lead from any object to real globals, builtins, code or
 * the class tree: the dunder lists and the validator must refuse them. */
static const char *const core_dunders[] = {
        "__globals__", "__builtins__", "__subclasses__", "__bases__", "__base__", "__mro__", "__code__",
        "__closure__", "__func__", "__self__", "__dict__", "__getattribute__", "__objclass__",
        "__traceback__", "__reduce__", "__reduce_ex__",
};
/* Frame and generator attributes: the way to a caller's globals. */
static const char *const core_attributes[] = {
        "f_globals", "f_builtins", "f_locals", "f_back", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
};
/* Modules that hand user code the interpreter itself (sys.modules, the
 * real builtins, frames, code, attribute access the guard does not see):
 * never in python.imports or python.globals while the layer is on. */
static const char *const interpreter_modules[] = {
        "sys", "builtins", "operator", "_operator", "inspect", "types", "gc", "importlib", "ctypes", "_ctypes",
        "code", "codeop", "runpy", "pdb", "bdb", "traceback", "dis", "pickle", "_pickle", "marshal", "copyreg",
        "_thread", "threading", "os", "posix", "io", "_io", "subprocess", "socket", "string", "_string",
        "sysconfig", "site", "pkgutil", "zipimport", "linecache", "tracemalloc", "faulthandler", "signal",
        "weakref", "_weakref", "ast", "_ast", "symtable", "_imp", "_frozen_importlib",
};
/* Builtins that run code the validator never saw. */
static const char *const code_builtins[] = { "eval", "exec", "compile" };

static const json_t *at(const json_t *doc, const char *section, const char *key)
{
        return json_object_get(json_object_get(doc, section), key);
}

static int has_name(const json_t *arr, const char *name)
{
        size_t i;
        const json_t *v;
        json_array_foreach(arr, i, v)
                if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
                        return 1;
        return 0;
}

static int open_layer(struct jr_err *err, const char *what, const char *profile, const char *key, const char *why)
{
        return jr_fail(err, 0, "%s: $.%s: %s; in profile %s that leaves the Python layer open (plain attribute syntax such as "
                       "json.dumps.__globals__ reaches the real builtins). Undo that, or set python.guard to false to run "
                       "with the kernel jail alone", what, key, why, profile);
}

static int check_dunders(const json_t *doc, const char *what, const char *profile, struct jr_err *err)
{
        const char *policy = json_string_value(at(doc, "python", "dunder_policy"));
        int allow_list = policy && strcmp(policy, "allow-list") == 0;
        const json_t *list = at(doc, "python", allow_list ? "dunder_allow" : "dunder_deny");
        char why[160];
        for (size_t i = 0; i < ELEMENTSOF(core_dunders); i++)
                if (has_name(list, core_dunders[i]) == allow_list) {
                        snprintf(why, sizeof why, "%s %s", allow_list ? "allows" : "does not deny", core_dunders[i]);
                        return open_layer(err, what, profile, allow_list ? "python.dunder_allow" : "python.dunder_deny", why);
                }
        list = at(doc, "python", "denied_attributes");
        for (size_t i = 0; i < ELEMENTSOF(core_attributes); i++)
                if (!has_name(list, core_attributes[i])) {
                        snprintf(why, sizeof why, "does not deny %s", core_attributes[i]);
                        return open_layer(err, what, profile, "python.denied_attributes", why);
                }
        list = at(doc, "python", "builtins");
        for (size_t i = 0; i < ELEMENTSOF(code_builtins); i++)
                if (has_name(list, code_builtins[i])) {
                        snprintf(why, sizeof why, "hands out %s", code_builtins[i]);
                        return open_layer(err, what, profile, "python.builtins", why);
                }
        return 0;
}

/* The top-level module of a dotted name, if it is an interpreter module. */
static const char *interpreter_module(const char *name)
{
        size_t n = strcspn(name, ".");
        for (size_t i = 0; i < ELEMENTSOF(interpreter_modules); i++)
                if (strlen(interpreter_modules[i]) == n && strncmp(name, interpreter_modules[i], n) == 0)
                        return interpreter_modules[i];
        return NULL;
}

static int check_modules(const json_t *doc, const char *what, const char *profile, struct jr_err *err)
{
        char why[160];
        size_t i;
        const char *key, *m;
        const json_t *v;
        json_array_foreach(at(doc, "python", "imports"), i, v)
                if (json_is_string(v) && (m = interpreter_module(json_string_value(v)))) {
                        snprintf(why, sizeof why, "allows %s, which hands out the interpreter itself", m);
                        return open_layer(err, what, profile, "python.imports", why);
                }
        json_object_foreach((json_t *)at(doc, "python", "globals"), key, v)
                if (json_is_string(v) && (m = interpreter_module(json_string_value(v)))) {
                        snprintf(why, sizeof why, "injects %s as %s, which hands out the interpreter itself", m, key);
                        return open_layer(err, what, profile, "python.globals", why);
                }
        return 0;
}

int policy_check_python_layer(const json_t *doc, const char *what, struct jr_err *err)
{
        const char *profile = json_string_value(json_object_get(doc, "profile"));
        if (!profile || strcmp(profile, "exec") == 0 || !json_is_true(at(doc, "python", "guard")))
                return 0;
        if (!json_is_true(at(doc, "validator", "enabled")))
                return open_layer(err, what, profile, "validator.enabled", "the source validator is off");
        if (!has_name(at(doc, "validator", "forbid"), "dunder"))
                return open_layer(err, what, profile, "validator.forbid", "the rule \"dunder\" is missing");
        if (!json_is_true(at(doc, "python", "attribute_guard")))
                return open_layer(err, what, profile, "python.attribute_guard", "the attribute guard is off");
        int r = check_dunders(doc, what, profile, err);
        return r < 0 ? r : check_modules(doc, what, profile, err);
}
