# The source validator (jailrun-policy(5), "validator"): reads a script's
# syntax tree, never runs it, and reports every violation of the profile's
# rules as (line, col, type, reason). Runs inside the jail: the parser is
# fed hostile input. Iterative walks only, so a deep tree cannot exhaust
# the C stack through us.
import sys

# Block statements: what nesting counts.
_BLOCK_NAMES = ("If", "For", "AsyncFor", "While", "With", "AsyncWith", "Try", "TryStar",
                "FunctionDef", "AsyncFunctionDef", "ClassDef", "Match", "match_case",
                "ExceptHandler")

# Sizes reported on violations are kept to this many per script.
MAX_VIOLATIONS = 200
# Characters of a violation's reason; a refused import's lists the allowed
# modules, so it gets more. 201 of them, in UTF-8, stay under the 4096 bytes
# the supervisor takes for one and the 1 MiB of a message.
REASON_MAX = 300
IMPORT_REASON_MAX = 1000


def _is_dunder(name):
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class _Report:
    def __init__(self):
        self.items = []
        self.more = 0
        self.tree = None

    def add(self, node, kind, reason, limit=REASON_MAX):
        if len(self.items) >= MAX_VIOLATIONS:
            self.more += 1
            return
        line = getattr(node, "lineno", 1) or 1
        col = getattr(node, "col_offset", 0) or 0
        if len(reason) > limit:
            reason = reason[:limit] + "..."
        self.items.append({"line": line, "col": col, "type": kind, "reason": reason})


class Validator:
    def __init__(self, policy, check_mode=False):
        py, v = policy["python"], policy["validator"]
        self.profile = policy["profile"]
        self.rules = frozenset(v["forbid"]) if v["enabled"] else frozenset()
        self.max_bytes = v["max_source_bytes"]
        self.max_nesting = v["max_nesting"]
        self.max_nodes = v["max_nodes"]
        # Imports are refused when they run, except where the policy wants
        # them refused up front; --check reports them either way.
        statically = check_mode or "imports" in self.rules
        self.imports = frozenset(py["imports"]) if py["guard"] and statically else None
        self.import_error = py["import_error"]
        self.allow_list = py["dunder_policy"] == "allow-list"
        self.dunder_allow = frozenset(py["dunder_allow"])
        self.dunder_deny = frozenset(py["dunder_deny"])
        self.denied_attrs = frozenset(py["denied_attributes"])

    def attr_ok(self, name):
        """The same rule as the attribute guard's (jail/guard.py)."""
        if name in self.denied_attrs:
            return False
        if _is_dunder(name):
            return name in self.dunder_allow if self.allow_list else name not in self.dunder_deny
        return True

    # --- entry ------------------------------------------------------------
    def run(self, source, filename):
        """The report on `source` (bytes): violations sorted by position,
        and the syntax tree when it parsed. The cyclic garbage collector
        is held off meanwhile: tens of thousands of fresh nodes would
        otherwise set it off over and over, for nothing (it doubled the
        time on a 100 KB source)."""
        import gc

        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(source, filename)
        finally:
            if enabled:
                gc.enable()

    def _run(self, source, filename):
        import ast

        rep = _Report()
        rep.tree = None
        if len(source) > self.max_bytes:
            rep.add(None, "SecurityError", "Code too complex: the source is %d bytes; the limit is %d"
                    % (len(source), self.max_bytes))
            return rep
        try:
            tree = ast.parse(source, filename)
        except SyntaxError as e:
            rep.add(None, type(e).__name__, str(e.msg))
            rep.items[-1]["line"] = max(e.lineno or 1, 1)
            rep.items[-1]["col"] = max((e.offset or 1) - 1, 0)
            return rep
        except (RecursionError, MemoryError):
            rep.add(None, "SecurityError", "Code too complex: nested too deeply to parse")
            return rep
        except ValueError as e:  # NUL bytes in the source
            rep.add(None, "SyntaxError", str(e))
            return rep
        self.scan(tree, rep, ast)
        rep.items.sort(key=lambda v: (v["line"], v["col"]))
        rep.tree = tree
        return rep

    # --- the walk ---------------------------------------------------------
    def scan(self, tree, rep, ast):
        """One iterative pass: counts nodes, tracks block nesting, and hands
        each node to its rule, if it has one."""
        AST, rules = ast.AST, self.rules
        skip = set()
        for base in (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop):
            skip.update(base.__subclasses__())
        blocks = {getattr(ast, n) for n in _BLOCK_NAMES if hasattr(ast, n)}
        handlers = self.handlers(ast)
        limit = self.max_nodes if rules else float("inf")
        nodes, deepest = 0, None
        stack = [(tree, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            node, depth = pop()
            t = type(node)
            if t in skip:
                continue
            nodes += 1
            if nodes > limit:
                rep.add(None, "SecurityError", "Code too complex: more than %d syntax nodes" % self.max_nodes)
                return
            if t in blocks:
                depth += 1
                if depth > self.max_nesting and rules and (deepest is None or depth > deepest[1]):
                    deepest = (node, depth)
            h = handlers.get(t)
            if h is not None:
                h(node, rep)
            for f in node._fields:
                v = getattr(node, f, None)
                if type(v) is list:
                    for x in v:
                        if isinstance(x, AST):
                            push((x, depth))
                elif isinstance(v, AST):
                    push((v, depth))
        if deepest is not None:
            rep.add(deepest[0], "SecurityError", "Code too complex: blocks nested %d deep; the limit is %d"
                    % (deepest[1], self.max_nesting))

    def handlers(self, ast):
        """{node type: rule} for the rules the policy turns on."""
        rules = self.rules
        h = {}
        if self.imports is not None:
            h[ast.Import] = h[ast.ImportFrom] = self.visit_import
        table = [
            ("lambda", ast.Lambda, self.visit_lambda),
            ("dunder", ast.Attribute, self.visit_attribute),
            ("dunder", ast.MatchClass, self.visit_match_class),
            ("dunder", ast.alias, self.visit_alias),
            ("global", ast.Global, self.visit_global),
            ("nonlocal", ast.Nonlocal, self.visit_nonlocal),
            ("while_true", ast.While, self.visit_while),
            ("del", ast.Delete, self.visit_delete),
            ("string_attributes", ast.Call, self.visit_call),
            ("string_attributes", ast.Constant, self.visit_constant),
        ]
        for rule, t, fn in table:
            if rule in rules:
                h[t] = fn
        if rules & {"dunder", "dynamic_code"}:
            h[ast.Name] = self.visit_name
        if rules & {"dunder", "metaclass"}:
            h[ast.FunctionDef] = h[ast.AsyncFunctionDef] = h[ast.ClassDef] = self.visit_def
        return h

    def visit_lambda(self, node, rep):
        rep.add(node, "SecurityError", "lambda is not allowed; use a def")

    def visit_attribute(self, node, rep):
        if not self.attr_ok(node.attr):
            rep.add(node, "SecurityError", "access to the attribute %s is not allowed" % node.attr)

    def visit_match_class(self, node, rep):
        for name in node.kwd_attrs:
            if not self.attr_ok(name):
                rep.add(node, "SecurityError", "access to the attribute %s is not allowed" % name)

    def visit_alias(self, node, rep):
        for name in (node.name, node.asname or ""):
            if _is_dunder(name) and not self.attr_ok(name):
                rep.add(node, "SecurityError", "name %s is not allowed" % name)

    def visit_global(self, node, rep):
        rep.add(node, "SecurityError", "global is not allowed; pass values as parameters or keep them in sdk.state")

    def visit_nonlocal(self, node, rep):
        rep.add(node, "SecurityError", "nonlocal is not allowed; pass values as parameters or keep them in sdk.state")

    def visit_while(self, node, rep):
        test = node.test
        if type(test).__name__ == "Constant" and test.value:
            rep.add(node, "SecurityError", "while True: is not allowed; loop over a range or a finite condition")

    def visit_delete(self, node, rep):
        for target in node.targets:
            if type(target).__name__ != "Subscript":
                rep.add(target, "SecurityError", "del of a name or attribute is not allowed; "
                        "re-bind it to None (del of items and slices, del buf[:n], is fine)")

    def visit_constant(self, node, rep):
        if isinstance(node.value, str):
            self.visit_format(node, rep)

    def visit_import(self, node, rep):
        if self.imports is None:
            return
        if type(node).__name__ == "ImportFrom":
            names = [("." * node.level) + (node.module or "")]
        else:
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith(".") or name.partition(".")[0] not in self.imports:
                rep.add(node, self.import_error, self.import_refusal(name), IMPORT_REASON_MAX)

    def import_refusal(self, name):
        """The guard's own text (jail/guard.py), so a refused import reads
        the same found here or where it runs."""
        import _jailrun

        refusal = _jailrun.runtime_module("_jailrun_guard").import_refusal
        return refusal(name, self.profile, self.import_error, self.imports)

    def visit_name(self, node, rep):
        name, rules = node.id, self.rules
        if "dunder" in rules and _is_dunder(name) and not self.attr_ok(name):
            rep.add(node, "SecurityError", "name %s is not allowed" % name)
        elif "dynamic_code" in rules and name in ("exec", "eval", "compile"):
            rep.add(node, "SecurityError", "%s() is not allowed: dynamic code execution" % name)

    def visit_def(self, node, rep):
        rules = self.rules
        if "dunder" in rules and _is_dunder(node.name) and not self.attr_ok(node.name):
            rep.add(node, "SecurityError", "defining %s is not allowed" % node.name)
        if type(node).__name__ == "ClassDef" and "metaclass" in rules:
            for kw in node.keywords:
                rep.add(node, "SecurityError", "class keyword %s= is not allowed" % kw.arg)

    def visit_call(self, node, rep):
        f = node.func
        if type(f).__name__ == "Name" and f.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2:
            a = node.args[1]
            if type(a).__name__ == "Constant" and isinstance(a.value, str) and not self.attr_ok(a.value):
                rep.add(node, "SecurityError", "%s() with the attribute %s is not allowed" % (f.id, a.value))

    def visit_format(self, node, rep):
        s = node.value
        if "{" not in s or "." not in s:
            return
        import _string

        try:
            fields = [(f, spec) for _lit, f, spec, _c in _string.formatter_parser(s) if f or spec]
            for field, spec in fields:
                for text in (field, spec):
                    if not text:
                        continue
                    for part in _attr_parts(text, _string):
                        if not self.attr_ok(part):
                            rep.add(node, "SecurityError", "a format string reaches the attribute %s" % part)
                            return
        except ValueError:
            return


def _attr_parts(text, _string):
    """Attribute names a format field (or a nested spec) reaches."""
    out = []
    try:
        _first, rest = _string.formatter_field_name_split(text)
        out.extend(key for is_attr, key in rest if is_attr)
    except ValueError:
        pass
    if "{" in text:
        for _lit, f, _spec, _c in _string.formatter_parser(text):
            if f:
                out.extend(_attr_parts(f, _string))
    return out


def check(policy, source, filename):
    """The violations of `source`, as a list of dicts (jailrun --check)."""
    return check_tree(policy, source, filename, True)[0]


def check_tree(policy, source, filename, check_mode=False):
    """(violations, syntax tree or None) of `source`."""
    v = Validator(policy, check_mode)
    rep = v.run(source, filename)
    items = rep.items
    if rep.more:
        items.append({"line": items[-1]["line"], "col": 0, "type": "SecurityError",
                      "reason": "%d more violations not listed" % rep.more})
    return items, rep.tree
