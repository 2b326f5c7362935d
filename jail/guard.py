# The Python layer of profiles worker and strategy (jailrun-policy(5)):
# restricted builtins, the import allowlist, module views without the names
# the policy neutralises, the attribute guard, and arming the audit hook
# (jail/guard.c). Everything it enforces comes from the policy's "python"
# section. The kernel jail stays the boundary; this layer gives early,
# exact errors.
import builtins
import sys

import _jailrun


class SecurityError(PermissionError):
    """An operation the sandbox's policy does not allow. A PermissionError,
    so library code that copes with an unreadable file copes with this."""


SecurityError.__module__ = "builtins"


class ProtocolError(Exception):
    """A contract broken: a message on the channel to the supervisor out of
    turn, or in a backtest a bad order or a return value that is not JSON
    (jail/backtest.py raises this same class)."""


ProtocolError.__module__ = "builtins"

# Exception classes of the sandbox's own that a policy's "builtins" may
# name; the rest come from the builtins module.
_OWN_CLASSES = {"SecurityError": SecurityError, "ProtocolError": ProtocolError}


class _Blocked:
    """Stands where the policy neutralised a name: any use says why."""

    __slots__ = ("_what", "_why")

    def __init__(self, what, why):
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_why", why)

    def _refuse(self):
        raise SecurityError("%s is not available in the %s sandbox: %s" % (self._what, _State.profile, self._why))

    def __call__(self, *args, **kwargs):
        self._refuse()

    def __getattr__(self, name):
        self._refuse()

    def __setattr__(self, name, value):
        self._refuse()

    def __repr__(self):
        return "<%s: not available in the %s sandbox>" % (self._what, _State.profile)


class _State:
    profile = "worker"


def import_refusal(name, profile, kind, allowed):
    """The text of a refused import, the same whether the validator finds
    it (jail/validate.py) or the import runs: profile worker's is the one
    its users know (no "the"), the allowed modules sorted."""
    article = "" if kind == "ImportError" else "the "
    return "Import of %s is not allowed in %s%s sandbox. Allowed: %r" % (name, article, profile, sorted(allowed))


def _is_dunder(name):
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class Guard:
    """One profile's rules, built from the policy's "python" section."""

    def __init__(self, policy, filename):
        py = policy["python"]
        self.profile = policy["profile"]
        _State.profile = self.profile
        self.filename = filename
        self.py = py
        self.allowed = frozenset(py["imports"])
        self.blocked = dict(py["blocked_names"])
        self.views = {}
        self.checked = frozenset(py["checked_names"])
        # class-level names not yet patched: neutralised ones and checked ones
        self.pending = list(self.blocked) + [n for n in self.checked if n not in self.blocked]
        self.allow_list = py["dunder_policy"] == "allow-list"
        self.dunder_allow = frozenset(py["dunder_allow"])
        self.dunder_deny = frozenset(py["dunder_deny"])
        self.denied_attrs = frozenset(py["denied_attributes"])

    # --- attributes -------------------------------------------------------
    def attr_ok(self, name):
        if name in self.denied_attrs:
            return False
        if _is_dunder(name):
            return name in self.dunder_allow if self.allow_list else name not in self.dunder_deny
        return True

    def check_attr(self, name):
        """The name as a plain str (a str subclass cannot show the check
        one text and the lookup another), or SecurityError."""
        if isinstance(name, str):
            name = "".join((name,))
            if not self.attr_ok(name):
                raise SecurityError("access to the attribute %s is not allowed in the %s sandbox"
                                    % (name, self.profile))
        return name

    def _getattr(self):
        real = builtins.getattr
        check = self.check_attr

        def getattr(obj, name, *default):
            return real(obj, check(name), *default)

        return getattr

    def _hasattr(self):
        real = builtins.hasattr
        check = self.check_attr

        def hasattr(obj, name):
            return real(obj, check(name))

        return hasattr

    def guard_format(self):
        """str.format and str.format_map refuse fields that reach a denied
        attribute ("{0.__class__}"), whoever built the string."""
        import _string

        fmt, fmt_map = str.format, str.format_map
        check = self.check_attr
        parse, split = _string.formatter_parser, _string.formatter_field_name_split

        def check_fields(s, depth):
            if "{" not in s or depth > 2:
                return
            for _literal, field, spec, _conv in parse(s):
                if field:
                    _first, rest = split(field)
                    for is_attr, key in rest:
                        if is_attr:
                            check(key)
                if spec:
                    check_fields(spec, depth + 1)

        def format(self, *args, **kwargs):
            check_fields(self, 0)
            return fmt(self, *args, **kwargs)

        def format_map(self, mapping):
            check_fields(self, 0)
            return fmt_map(self, mapping)

        _jailrun.set_type_attr(str, "format", format)
        _jailrun.set_type_attr(str, "format_map", format_map)

    # --- imports ----------------------------------------------------------
    def _import_error(self, name):
        kind = self.py["import_error"]
        text = import_refusal(name, self.profile, kind, self.allowed)
        return ImportError(text, name=name) if kind == "ImportError" else SecurityError(text)

    def blocked_reason(self, name):
        """The reason a dotted module name (or one of its parents) is
        neutralised, or None."""
        parts = name.split(".")
        for i in range(2, len(parts) + 1):
            why = self.blocked.get(".".join(parts[:i]))
            if why is not None:
                return ".".join(parts[:i]), why
        return None

    def importer(self):
        allowed = self.allowed
        trusted = _jailrun.trusted_import
        modules = sys.modules

        def __import__(name, globals=None, locals=None, fromlist=(), level=0):
            if type(fromlist) is list and type(name) is str and level == 0:
                # PyImport_Import (a list, where import statements pass None
                # or a tuple): a C extension importing lazily while user code
                # called it (numpy's numpy.core._internal). The caller takes
                # the module from sys.modules; whoever called, it gets
                # nothing. Allowed packages load as their own imports do;
                # anything else faces the audit hook.
                if name.partition(".")[0] in allowed:
                    trusted(name, globals, locals, fromlist, 0)
                    self.patch_classes()
                else:
                    builtins.__import__(name, globals, locals, fromlist, 0)
                return None
            if level != 0 or not isinstance(name, str) or name.partition(".")[0] not in allowed:
                raise self._import_error(name if isinstance(name, str) else repr(name))
            hit = self.blocked_reason(name)
            if hit:
                raise SecurityError("%s is not available in the %s sandbox: %s" % (hit[0], self.profile, hit[1]))
            trusted(name, globals, locals, fromlist, 0)
            self.patch_classes()
            if fromlist:
                return self.view(modules[name])
            return self.view(modules[name.partition(".")[0]])

        return __import__

    def module_ok(self, name):
        return name.partition(".")[0] in self.allowed

    def view(self, mod):
        """The user's copy of a module: its names, with the neutralised ones
        replaced, and every module it holds seen through a view in turn, or
        refused when outside the allowlist (numpy.compat.py3k.os). Names are
        taken from the module when first used (_ModuleView.__getattr__):
        copying numpy's hundreds up front touched every object they name,
        which in a jail cloned from a zygote copies each page they sit on."""
        name = mod.__name__
        v = self.views.get(name)
        if v is not None:
            return v
        v = _ModuleView(name, mod.__doc__)
        self.views[name] = v
        prefix = name + "."
        for full, why in self.blocked.items():
            if full.startswith(prefix) and "." not in full[len(prefix):]:
                v.__dict__[full[len(prefix):]] = _Blocked(full, why)
        _VIEWED[id(v)] = (self, mod)  # never an attribute of the view (json._jr_lazy was one)
        return v

    def user_value(self, owner, attr, val):
        """What the user may see of `val`, found as owner.attr."""
        if isinstance(val, _ModuleType):
            if not self.module_ok(val.__name__):
                return _Blocked("%s.%s" % (owner, attr), "module %s is not available" % val.__name__)
            hit = self.blocked_reason(val.__name__)  # pandas.core.frame.fmt is pandas.io's
            if hit:
                return _Blocked("%s.%s" % (owner, attr), "%s: %s" % hit)
            return self.view(val)
        return val

    def patch_classes(self):
        """Neutralised methods of classes (pandas.DataFrame.to_pickle): on
        the class itself, once its module is loaded."""
        left = []
        for name in self.pending:
            parts = name.split(".")
            mod = None
            if len(parts) < 2:
                continue
            if name in self.checked and len(parts) > 3 and parts[0] in sys.modules:
                self._load_lazy(".".join(parts[:-2]))
            for i in range(len(parts) - 1, 0, -1):
                mod = sys.modules.get(".".join(parts[:i]))
                if mod is not None:
                    break
            if mod is None:
                left.append(name)
                continue
            obj = mod
            for p in parts[i:-1]:
                obj = builtins.getattr(obj, p, None)
            if isinstance(obj, type) and name in self.checked:
                self.set_class_attr(obj, parts[-1], self.checked_method(name, builtins.getattr(obj, parts[-1])))
            elif isinstance(obj, type):
                blocked = _Blocked(name, self.blocked[name])
                self.set_class_attr(obj, parts[-1], blocked)
        self.pending = left

    @staticmethod
    def _load_lazy(modname):
        """The module of a checked method, loaded now when its package
        loads it only on first use (pandas.core.resample: the first
        .resample() would otherwise bring Resampler.agg in unchecked)."""
        if modname not in sys.modules:
            try:
                _jailrun.trusted_import(modname, None, None, None, 0)
            except ImportError:
                pass

    @staticmethod
    def set_class_attr(cls, name, value):
        try:
            builtins.setattr(cls, name, value)
        except TypeError:  # a built-in type
            _jailrun.set_type_attr(cls, name, value)

    def checked_method(self, name, method):
        """`method`, refusing string arguments that name an attribute the
        guard refuses (pandas' agg('__dict__') looks the name up)."""
        check = self.check_attr

        def walk(v, depth):
            if isinstance(v, str):
                check(v)
            elif depth < 3 and isinstance(v, (list, tuple)):
                for x in v:
                    walk(x, depth + 1)
            elif depth < 3 and isinstance(v, dict):
                for x in v.values():
                    walk(x, depth + 1)

        def checked(*args, **kwargs):
            walk(args, 0)
            walk(kwargs, 0)
            return method(*args, **kwargs)

        checked.__name__ = checked.__qualname__ = name.rpartition(".")[2]
        checked.__doc__ = method.__doc__
        return checked

    # --- builtins and globals ---------------------------------------------
    def builtins(self, print_fn, code=None):
        """The builtins of user code compiled as `code` (its module's code
        object, nested code included)."""
        real = builtins.__dict__
        b = {}
        for name in self.py["builtins"]:
            if name in real:
                b[name] = real[name]
            elif name in _OWN_CLASSES:
                b[name] = _OWN_CLASSES[name]
        for name, why in self.py["blocked_builtins"].items():
            b[name] = _blocked_builtin(name, why, self.profile)
        b["__build_class__"] = real["__build_class__"]
        b["__import__"] = self.importer()
        if "print" in b:
            b["print"] = print_fn
        if self.py["attribute_guard"]:
            if "getattr" in b:
                b["getattr"] = self._getattr()
            if "hasattr" in b:
                b["hasattr"] = self._hasattr()
            if "type" in b:
                b["type"] = self._type()
        hints = {k: v for k, v in self.py["absent_builtins"].items() if k not in b}
        if hints and code is not None and _looks_up(code, hints):
            b = _absent_builtins_dict(hints, self.profile)(b)
        return b

    def _type(self):
        """type, except that a class built by type(name, bases, dict) gets
        only names the attribute guard allows (no __array_interface__)."""
        real = builtins.type
        check = self.check_attr

        class _Meta(real):
            def __instancecheck__(cls, obj):
                return isinstance(obj, real)

            def __subclasscheck__(cls, sub):
                return issubclass(sub, real)

            def __repr__(cls):
                return "<class 'type'>"

        class type(real, metaclass=_Meta):
            def __new__(mcls, *args, **kwargs):
                if len(args) == 3 and isinstance(args[2], dict):
                    for key in args[2]:
                        check(key)
                return real(*args, **kwargs)

        return type

    def globals(self, g, b):
        """Injected modules, imported on first use (a strategy that never
        touches pandas does not pay for it)."""
        imp = b["__import__"]
        for key, modname in self.py["globals"].items():
            g[key] = _Lazy(key, modname, g, imp)

    def arm(self, roots):
        py = self.py
        _jailrun.guard_on(SecurityError, self.filename, self.profile, py["audit_deny"], py["audit_deny_user"],
                          py["denied_modules"], py["open"], roots)


def _absent_builtins_dict(hints, profile):
    """A dict class for builtins whose missing names in `hints` fail with
    what to use instead: NameError("open is not available in the worker
    sandbox; use ctx.files.read/write"), still a NameError (with .name) so
    `except NameError` works, and the names stay absent ('open' in the
    builtins is false). CPython consults __missing__ only when builtins is
    not an exact dict, which takes global lookups off their fast path:
    Guard.builtins uses this only for code that looks one of the names up."""

    class Builtins(dict):
        __slots__ = ()

        def __missing__(self, name):
            hint = hints.get(name) if type(name) is str else None
            if hint is None:
                raise KeyError(name)  # the interpreter's own NameError
            raise NameError("%s is not available in the %s sandbox; %s" % (name, profile, hint), name=name)

    return Builtins


def _looks_up(code, names):
    """Whether `code`, or code nested in it, looks one of `names` up as a
    global or builtin (LOAD_GLOBAL, LOAD_NAME: CPython 3.11 bytecode; an
    attribute such as re.compile does not count)."""
    import opcode

    load_global, load_name = opcode.opmap["LOAD_GLOBAL"], opcode.opmap["LOAD_NAME"]
    extended = opcode.EXTENDED_ARG
    code_type = type(code)
    stack = [code]
    while stack:
        co = stack.pop()
        stack.extend(c for c in co.co_consts if type(c) is code_type)
        co_names = co.co_names
        if names.keys().isdisjoint(co_names):
            continue
        raw, arg = co.co_code, 0
        for i in range(0, len(raw), 2):
            op, arg = raw[i], arg << 8 | raw[i + 1]
            if op == extended:
                continue
            if op == load_global or op == load_name:
                if co_names[arg >> 1 if op == load_global else arg] in names:
                    return True
            arg = 0
    return False


def _blocked_builtin(name, why, profile):
    def blocked(*args, **kwargs):
        raise SecurityError("%s() is not allowed in the %s sandbox: %s" % (name, profile, why))

    blocked.__name__ = blocked.__qualname__ = name
    return blocked


_ModuleType = type(sys)


# What each view shows: id(view) -> (guard, real module). Kept here, not on
# the view, so no attribute of a view leads to the real module; views live
# as long as the process (Guard.views), so their ids are never reused.
_VIEWED = {}

# Names of a module a view never hands out: the real builtins.
_UNVIEWED = frozenset(("__builtins__", "__getattr__"))


class _ModuleView(_ModuleType):
    """A module as user code sees it (Guard.view). Its names are resolved
    on first use, so building one does not walk the module or the
    library."""

    def __getattr__(self, name):
        guard, mod = _VIEWED[id(self)]
        d = mod.__dict__
        if name in _UNVIEWED:
            raise AttributeError("module %r has no attribute %r in the %s sandbox" % (mod.__name__, name, guard.profile))
        if name in d:
            val = guard.user_value(mod.__name__, name, d[name])
        else:
            hook = d.get("__getattr__")  # PEP 562, e.g. numpy's lazy names
            if hook is None:
                raise AttributeError("module %r has no attribute %r" % (mod.__name__, name))
            val = guard.user_value(mod.__name__, name, hook(name))
        self.__dict__[name] = val
        return val

    def __dir__(self):
        guard, mod = _VIEWED[id(self)]
        return sorted((set(mod.__dict__) - _UNVIEWED) | set(self.__dict__))


class _Lazy:
    """A module injected as a global, imported when first used; then the
    global is the module itself."""

    __slots__ = ("_key", "_name", "_globals", "_import")

    def __init__(self, key, name, g, imp):
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_globals", g)
        object.__setattr__(self, "_import", imp)

    def _load(self):
        mod = self._import(self._name, None, None, ("__name__",), 0)
        if self._globals.get(self._key) is self:
            self._globals[self._key] = mod
        return mod

    def __getattr__(self, name):
        return builtins.getattr(self._load(), name)

    def __repr__(self):
        return repr(self._load())

    def __dir__(self):
        return dir(self._load())
