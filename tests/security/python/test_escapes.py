"""Python-layer escape attempts (profiles worker and strategy).

Each attack runs twice:
1. in its profile, where the Python layer must refuse it with its specific
   error (type and message);
2. with the Python layer gone (profile exec, full Python), where its aim is
   tried directly and the kernel jail must still hold.

The attacker is assumed to know everything; the script text is all it
controls.
"""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from conftest import JAILRUN  # noqa: E402

# A walk to os._wrap_close, whose methods' globals are the os module's
# (random imports os).
WALK = """
import random
def _os_globals():
    for c in ().__class__.__base__.__subclasses__():
        if c.__name__ == "_wrap_close":
            return c.__init__.__globals__
    raise ValueError("no _wrap_close")
"""

# Profiles: worker, strategy, and worker with only its audit hook and
# module views (no validator, no attribute guard): how the last layer
# holds once the earlier ones are assumed gone.
W, S, WA = "worker", "strategy", "worker-audit"
AUDIT_ONLY = os.path.join(os.path.dirname(HERE), "..", "policies", "audit-only.json")

# id, profile, source, error type, message regex, aim (the kernel check)
ATTACKS = [
    # --- imports ----------------------------------------------------------
    ("import-os", W, "import os", "ImportError",
     r"^Import of os is not allowed in worker sandbox\. Allowed: \['base64', ", "host-files"),
    ("import-sys", W, "import sys", "ImportError", r"^Import of sys is not allowed in worker sandbox\.", "host-files"),
    ("import-subprocess", W, "import subprocess", "ImportError", r"^Import of subprocess is not", "spawn"),
    ("import-socket", W, "import socket", "ImportError", r"^Import of socket is not", "network"),
    ("import-ctypes", W, "import ctypes", "ImportError", r"^Import of ctypes is not", "native"),
    ("from-os-import", W, "from os import path", "ImportError", r"^Import of os is not", "host-files"),
    ("relative-import", W, "from . import x", "ImportError", r"^Import of  is not|^Import of .* is not", "host-files"),
    ("dunder-import-builtin", W, "__import__('os')", "ImportError", r"^Import of os is not", "host-files"),
    ("c-level-import-signature", W, "m = __import__('ctypes', None, None, [], 0)", "SecurityError",
     r"^import of ctypes is not allowed in the worker sandbox", "native"),
    ("c-level-import-gives-nothing", W, "m = __import__('numpy', None, None, [], 0)\nm.load", "AttributeError",
     r"'NoneType' object has no attribute 'load'", "host-files"),
    ("dunder-import-math-works", W, "m = __import__('math')\n__import__('sys')", "ImportError",
     r"^Import of sys is not", "host-files"),
    ("submodule-to-os", W, "import json.decoder\njson.decoder.os.listdir('/')", "AttributeError", r"os", "host-files"),
    ("random-os-listdir", W, "import random\nrandom._os.listdir('/')", "SecurityError",
     r"^random\._os is not available in the worker sandbox: module os is not available", "host-files"),
    ("numpy-compat-sys", W, "import numpy as np\nnp.compat.py3k.sys.modules", "SecurityError",
     r"^numpy\.compat is not available", "host-files"),
    ("pandas-io-common-os", W, "import pandas as pd\npd.io.common.os.listdir('/')", "SecurityError",
     r"^pandas\.io is not available", "host-files"),
    ("pandas-core-common-np-load", W, "import pandas as pd\npd.core.common.np.load('/etc/passwd')", "SecurityError",
     r"^numpy\.load is not available", "host-files"),
    ("statistics-sys", W, "import statistics\nstatistics.sys.modules", "SecurityError",
     r"^statistics\.sys is not available in the worker sandbox: module sys is not available", "host-files"),
    ("worker-walk-validator", W, WALK + "_os_globals()['system']('id')", "SecurityError",
     r"access to the attribute __subclasses__ is not allowed", "spawn"),
    ("worker-ctx-globals", W, "g = type(ctx).__init__.__globals__", "SecurityError",
     r"access to the attribute __globals__ is not allowed", "host-files"),
    ("worker-getattr-globals", W, "g = getattr(getattr, '__glo' + 'bals__')", "SecurityError",
     r"^access to the attribute __globals__ is not allowed in the worker sandbox", "host-files"),
    ("str-subclass-getattr", S, "class S(str):\n    def startswith(self, *a):\n        return False\n"
     "    def endswith(self, *a):\n        return False\ng = getattr(getattr, S('__glo' + 'bals__'))",
     "SecurityError", r"^access to the attribute __globals__ is not allowed in the strategy sandbox", "host-files"),
    ("type-array-interface", W, "import numpy as np\nX = type('X', (), {'__array_' + 'interface__': {}})",
     "SecurityError", r"^access to the attribute __array_interface__ is not allowed", "native"),
    ("class-body-array-interface", W, "class X:\n    __array_interface__ = {'data': (0, False)}",
     "SecurityError", r"name __array_interface__ is not allowed", "native"),
    ("dict-array-interface", W, "class X:\n    pass\nX().__dict__['x'] = 1", "SecurityError",
     r"access to the attribute __dict__ is not allowed", "native"),
    ("reduce-ex-def", W, "class X:\n    def __reduce_ex__(self, p):\n        return (X, ())", "SecurityError",
     r"defining __reduce_ex__ is not allowed", "native"),
    ("as-strided", S, "np.lib.stride_tricks.as_strided(np.zeros(4), shape=(10 ** 6,), strides=(1,))",
     "SecurityError", r"^numpy\.lib\.stride_tricks\.as_strided is not available in the strategy sandbox: raw memory",
     "native"),
    ("as-strided-alias", W, "import numpy as np\nnp.lib.index_tricks.as_strided(np.zeros(1))", "SecurityError",
     r"^numpy\.lib\.index_tricks\.as_strided is not available", "native"),
    ("dummy-array", S, "np.lib.stride_tricks.DummyArray({'data': (0, False)})", "SecurityError",
     r"^numpy\.lib\.stride_tricks\.DummyArray is not available", "native"),
    ("numpy-rec-fromfile", W, "import numpy as np\nnp.rec.fromfile('/usr/lib/python3.11/LICENSE.txt')", "SecurityError",
     r"^numpy\.core\.records\.fromfile is not available", "host-files"),
    ("numpy-datasource", W, "import numpy as np\nnp.lib._datasource.DataSource()", "SecurityError",
     r"^numpy\.lib\._datasource is not available", "host-files"),
    ("strategy-pandas-np-random", S, "pd.core.common.np.random.rand(1)", "SecurityError",
     r"^numpy\.random is not available in the strategy sandbox", "host-files"),
    ("pandas-eval-python-engine", S, "D = '_' * 2\npd.eval('s.' + D + 'init' + D, engine='python', local_dict={'s': 1})",
     "SecurityError", r"^pandas\.eval is not available in the strategy sandbox: evaluates expressions from strings",
     "host-files"),
    ("dataframe-query", W, "import pandas as pd\npd.DataFrame({'a': [1]}).query('a > 0')", "SecurityError",
     r"^pandas\.DataFrame\.query is not available", "host-files"),
    ("register-accessor", S, "K = '_' * 2 + 'array_interface' + '_' * 2\n"
     "pd.api.extensions.register_series_accessor(K)", "SecurityError",
     r"^pandas\.api\.extensions is not available in the strategy sandbox", "native"),
    ("agg-dunder-string", S, "pd.Series([1.0]).agg('_' * 2 + 'dict' + '_' * 2)", "SecurityError",
     r"^access to the attribute __dict__ is not allowed in the strategy sandbox", "native"),
    ("groupby-agg-dunder-string", W, "import pandas as pd\n"
     "pd.DataFrame({'a': [1], 'b': [2]}).groupby('a')['b'].agg(['_' * 2 + 'dict' + '_' * 2])", "SecurityError",
     r"^access to the attribute __dict__ is not allowed", "native"),
    ("simplenamespace-kwargs", W, "import time\nSN = type(time.get_clock_info('time'))", "SecurityError",
     r"^time\.get_clock_info is not available in the worker sandbox", "native"),
    ("getattr-hook-class", W, "class X:\n    def __getattr__(self, n):\n        return {}", "SecurityError",
     r"defining __getattr__ is not allowed", "native"),
    ("strategy-sample", S, "pd.Series([1, 2]).sample()", "SecurityError",
     r"^pandas\.Series\.sample is not available in the strategy sandbox: random sampling", "host-files"),
    ("strategy-import-random", S, "import random", "SecurityError",
     r"line 1:0: Import of random is not allowed in the strategy sandbox", "host-files"),
    ("strategy-import-os", S, "import os", "SecurityError", r"Import of os is not allowed", "host-files"),
    ("strategy-dunder-import", S, "__import__('os')", "SecurityError", r"name __import__ is not allowed", "host-files"),
    # --- builtins ---------------------------------------------------------
    ("open-absent", W, "open('/etc/passwd')", "NameError",
     r"^open is not available in the worker sandbox; use ctx\.files\.read/write$", "host-files"),
    ("exec-absent", W, "exec('1')", "NameError", r"^exec is not available in the worker sandbox; ", "host-files"),
    ("eval-absent", W, "eval('1')", "NameError", r"^eval is not available in the worker sandbox; ", "host-files"),
    ("compile-absent", W, "compile('1', 'x', 'exec')", "NameError", r"^compile is not available in the worker sandbox",
     "host-files"),
    # exception classes are builtins of profile worker: no way down from them
    ("exception-class-subclasses", W, "ImportError.mro()[-1].__subclasses__()", "SecurityError",
     r"access to the attribute __subclasses__ is not allowed", "host-files"),
    ("exception-class-getattr-subclasses", W, "getattr(SecurityError.mro()[-1], '__subcl' + 'asses__')()",
     "SecurityError", r"^access to the attribute __subclasses__ is not allowed in the worker sandbox", "host-files"),
    ("exception-class-type-subclasses", W, "type.__subclasses__(MemoryError.mro()[-1])", "SecurityError",
     r"access to the attribute __subclasses__ is not allowed", "host-files"),
    ("strategy-open", S, "open('file.txt')", "SecurityError",
     r"^open\(\) is not allowed in the strategy sandbox: I/O", "host-files"),
    ("strategy-globals", S, "globals()", "SecurityError", r"^globals\(\) is not allowed", "host-files"),
    ("strategy-vars", S, "vars()", "SecurityError", r"^vars\(\) is not allowed", "host-files"),
    ("strategy-setattr", S, "setattr(1, 'x', 1)", "SecurityError", r"^setattr\(\) is not allowed", "host-files"),
    ("strategy-exec", S, "exec('1')", "SecurityError", r"exec\(\) is not allowed: dynamic code execution", "host-files"),
    # --- subclass walking (worker allows dunders, 001) ----------------------
    ("walk-os-system", WA, WALK + "_os_globals()['system']('id')", "SecurityError",
     r"^os\.system is not allowed in the worker sandbox: operating-system access", "spawn"),
    # --- module views hand out neither the real module nor its builtins -----
    ("view-internals", W, "import json\nm = json._jr_lazy", "AttributeError",
     r"^module 'json' has no attribute '_jr_lazy'$", "host-files"),
    ("view-builtins", WA, "import json\njson.__builtins__['__import__']('os')", "AttributeError",
     r"^module 'json' has no attribute '__builtins__' in the worker sandbox$", "host-files"),
    ("view-blocked-module-through-another", W, "import pandas as pd\npd.core.frame.fmt.DataFrameFormatter",
     "SecurityError", r"^pandas\.core\.frame\.fmt is not available in the worker sandbox: pandas\.io: ", "host-files"),
    ("expanding-agg-dunder", W, "import pandas as pd\npd.Series([1.0]).expanding().agg('_' * 2 + 'dict' + '_' * 2)",
     "SecurityError", r"access to the attribute __dict__ is not allowed", "host-files"),
    ("resample-agg-dunder", W, "import pandas as pd\ns = pd.Series([1.0], index=pd.to_datetime(['2020-01-01']))\n"
     "s.resample('D').agg('_' * 2 + 'dict' + '_' * 2)", "SecurityError", r"access to the attribute __dict__ is not allowed",
     "host-files"),
    ("groupby-apply-dunder", S, "import pandas as pd\npd.DataFrame({'a': [1]}).groupby('a').apply('_' * 2 + 'dict' + '_' * 2)",
     "SecurityError", r"access to the attribute __dict__ is not allowed", "host-files"),
    ("ewm-agg-dunder", W, "import pandas as pd\npd.Series([1.0]).ewm(com=1).agg('_' * 2 + 'reduce_ex' + '_' * 2, 2)",
     "SecurityError", r"access to the attribute __reduce_ex__ is not allowed", "host-files"),
    ("view-getattr-builtins", W, "import json\ngetattr(json, '__buil' + 'tins__')", "SecurityError",
     r"^access to the attribute __builtins__ is not allowed in the worker sandbox", "host-files"),
    ("walk-os-listdir", WA, WALK + "_os_globals()['listdir']('/')", "SecurityError", r"^os\.listdir is not allowed", "host-files"),
    ("walk-os-open", WA, WALK + "_os_globals()['open']('/etc/passwd', 0)", "SecurityError",
     r"^open\('/etc/passwd'\) is not allowed in the worker sandbox", "host-files"),
    ("walk-os-kill", WA, WALK + "_os_globals()['kill'](1, 9)", "SecurityError", r"^os\.kill is not allowed", "kill"),
    ("walk-real-builtins-open", WA, WALK + "_os_globals()['__builtins__']['open']('/proc/self/environ')",
     "SecurityError", r"^open\('/proc/self/environ'\) is not allowed", "environ"),
    ("walk-write-file", WA, WALK + "_os_globals()['__builtins__']['open']('/tmp/x', 'w')",
     "SecurityError", r"^open\('/tmp/x'\) is not allowed", "write"),
    ("walk-import-ctypes", WA, WALK + "_os_globals()['__builtins__']['__import__']('ctypes')",
     "SecurityError", r"^import of ctypes is not allowed in the worker sandbox", "native"),
    ("walk-import-socket", WA, WALK + "_os_globals()['__builtins__']['__import__']('socket')",
     "SecurityError", r"^import of socket is not allowed", "network"),
    ("ctx-runtime-trusted-import", WA,
     "import numpy\nrt = ctx.log.__class__.__init__.__globals__\n"
     "c = rt['_jailrun'].trusted_import('ctypes')\nc.CDLL(None)", "SecurityError",
     r"^ctypes\.dlopen is not allowed in the worker sandbox: native code", "native"),
    ("walk-sys-getframe", WA, WALK + "_os_globals()['sys']._getframe()", "SecurityError",
     r"^sys\._getframe is not allowed in the worker sandbox: frame introspection", "host-files"),
    ("walk-sys-settrace", WA, WALK + "_os_globals()['sys'].settrace(None)", "SecurityError", r"sys\.settrace is not allowed", "host-files"),
    ("walk-current-frames", WA, WALK + "_os_globals()['sys']._current_frames()", "SecurityError",
     r"^sys\._current_frames is not allowed", "host-files"),
    ("walk-gc-objects", WA, WALK + "_os_globals()['__builtins__']['__import__']('gc').get_objects()",
     "SecurityError", r"^gc\.get_objects is not allowed", "host-files"),
    ("copy-reduce-trick", WA, WALK + textwrap.dedent("""
        import copy
        class Evil:
            def __reduce__(self):
                return (_os_globals()['system'], ('id',))
        copy.copy(Evil())
        """), "SecurityError", r"^os\.system is not allowed", "spawn"),
    ("strategy-subclasses", S, "().__class__.__base__.__subclasses__()", "SecurityError",
     r"access to the attribute __class__ is not allowed", "host-files"),
    ("strategy-getattr-string", S, "getattr((), '__cl' + 'ass__')", "SecurityError",
     r"^access to the attribute __class__ is not allowed in the strategy sandbox", "host-files"),
    ("strategy-mro", S, "getattr(type(1), 'm' + 'ro')()", "SecurityError", r"attribute mro is not allowed", "host-files"),
    # --- frames -----------------------------------------------------------
    ("generator-frame", WA, "g = (x for x in [1])\ng.gi_frame", "SecurityError",
     r"^access to the attribute gi_frame is not allowed in the worker sandbox", "host-files"),
    ("coroutine-frame", WA, "async def c():\n    pass\nco = c()\nco.cr_frame", "SecurityError",
     r"attribute cr_frame is not allowed", "host-files"),
    ("traceback-frame", WA, "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame",
     "SecurityError", r"attribute tb_frame is not allowed", "host-files"),
    ("function-code", WA, "def f():\n    pass\nf.__code__", "SecurityError", r"attribute __code__ is not allowed", "host-files"),
    ("strategy-generator-frame", S, "g = (x for x in [1])\ngetattr(g, 'gi_' + 'frame')", "SecurityError",
     r"attribute gi_frame is not allowed", "host-files"),
    ("strategy-frame-literal", S, "g = (x for x in [1])\ng.gi_frame.f_back", "SecurityError",
     r"attribute gi_frame is not allowed", "host-files"),
    # --- format strings, decorators, metaclasses ------------------------------
    ("format-literal", S, "'{0.__class__}'.format(1)", "SecurityError",
     r"a format string reaches the attribute __class__", "host-files"),
    ("format-built", S, "('{0.__cl' + 'ass__}').format(1)", "SecurityError",
     r"^access to the attribute __class__ is not allowed in the strategy sandbox", "host-files"),
    ("format-map-built", S, "('{x.__glo' + 'bals__}').format_map({'x': len})", "SecurityError",
     r"access to the attribute format_map is not allowed", "host-files"),
    ("format-map-getattr", S, "getattr('{x.__glo' + 'bals__}', 'format_' + 'map')({'x': len})", "SecurityError",
     r"^access to the attribute format_map is not allowed in the strategy sandbox", "host-files"),
    ("format-nested-spec", S, "('{0:{1.__cl' + 'ass__}}').format(1, 2)", "SecurityError",
     r"attribute __class__ is not allowed", "host-files"),
    ("decorator-dunder", S, "def deco(f):\n    return getattr(f, '__glo' + 'bals__')\n@deco\ndef g():\n    pass",
     "SecurityError", r"attribute __globals__ is not allowed", "host-files"),
    ("metaclass", S, "class M(type):\n    pass\nclass C(metaclass=M):\n    pass", "SecurityError",
     r"class keyword metaclass= is not allowed", "host-files"),
    ("dunder-method-def", S, "class C:\n    def __getattr__(self, n):\n        return n", "SecurityError",
     r"defining __getattr__ is not allowed", "host-files"),
    ("lambda", S, "f = lambda x: x", "SecurityError", r"lambda is not allowed; use a def", "host-files"),
    # --- library code that reads any attribute or runs code from strings (red team) ---
    ("numpy-getmembers-func", W, "import numpy as np\ndict(np.lib.utils._getmembers(ctx.log.info))['__func__']",
     "SecurityError", r"^numpy\.lib\.utils is not available in the worker sandbox", "host-files"),
    ("strategy-getmembers-globals", S,
     "u = '_' * 2\ng = dict(np.lib.utils._getmembers(json.dumps))[u + 'glob' + 'als' + u]", "SecurityError",
     r"^numpy\.lib\.utils is not available in the strategy sandbox", "host-files"),
    ("numpy-info", W, "import numpy as np\nnp.info(ctx)", "SecurityError", r"^numpy\.info is not available", "host-files"),
    ("numpy-testing-runstring", W, "import numpy as np\nnp.testing._private.utils.runstring('import os', {})",
     "SecurityError", r"^numpy\.testing is not available in the worker sandbox", "host-files"),
    ("numpy-testing-import", W, "import numpy.testing._private.utils as u\nu.runstring('import os', {})",
     "SecurityError", r"^numpy\.testing is not available", "host-files"),
    ("numpy-f2py-eval", W, "from numpy.f2py import crackfortran\ncrackfortran.myeval('1', {}, {})",
     "SecurityError", r"^numpy\.f2py is not available", "host-files"),
    ("numpy-distutils", W, "from numpy.distutils import misc_util", "SecurityError",
     r"^numpy\.distutils is not available", "host-files"),
    ("pandas-testing", W, "import pandas as pd\npd.testing.assert_frame_equal", "SecurityError",
     r"^pandas\.testing is not available", "host-files"),
    # --- numpy / pandas I/O -------------------------------------------------
    ("numpy-load", W, "import numpy as np\nnp.load('/etc/passwd')", "SecurityError",
     r"^numpy\.load is not available in the worker sandbox: file I/O; use ctx\.files", "host-files"),
    ("numpy-fromfile", W, "import numpy as np\nnp.fromfile('/etc/passwd')", "SecurityError", r"^numpy\.fromfile is not available", "host-files"),
    ("numpy-memmap", W, "import numpy as np\nnp.memmap('/tmp/x', mode='w+', shape=(4,))", "SecurityError",
     r"^numpy\.memmap is not available", "write"),
    ("numpy-npyio", W, "import numpy as np\nnp.lib.npyio.load('/etc/passwd')", "SecurityError",
     r"^numpy\.lib\.npyio is not available", "host-files"),
    ("numpy-tofile", W, "import numpy as np\nnp.arange(3).tofile('/tmp/x')", "SecurityError",
     r"^numpy\.ndarray\.tofile is not available", "write"),
    ("numpy-ctypes", W, "import numpy as np\nnp.arange(3).ctypes.data", "SecurityError",
     r"^numpy\.ndarray\.ctypes is not available in the worker sandbox: raw memory access", "native"),
    ("numpy-ctypeslib", W, "from numpy import ctypeslib\nctypeslib.load_library('libc', '/lib')", "SecurityError",
     r"^numpy\.ctypeslib is not available", "native"),
    ("numpy-import-format", W, "import numpy.lib.format", "SecurityError", r"^numpy\.lib\.format is not available", "host-files"),
    ("pandas-read-csv", W, "import pandas as pd\npd.read_csv('/etc/passwd')", "SecurityError",
     r"^pandas\.read_csv is not available in the worker sandbox: file and network I/O", "host-files"),
    ("pandas-read-pickle", W, "import pandas as pd\npd.read_pickle('/tmp/x')", "SecurityError",
     r"^pandas\.read_pickle is not available.*arbitrary code", "host-files"),
    ("pandas-submodule-read", W, "import pandas as pd\npd.io.parsers.read_csv('/etc/passwd')", "SecurityError",
     r"^pandas\.io is not available in the worker sandbox", "host-files"),
    ("pandas-to-csv-path", W, "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('/out.csv')", "SecurityError",
     r"^open\('/out\.csv'\) is not allowed", "write"),
    ("pandas-to-pickle", W, "import pandas as pd\npd.DataFrame({'a': [1]}).to_pickle('/tmp/x')", "SecurityError",
     r"^pandas\.DataFrame\.to_pickle is not available", "write"),
    ("strategy-numpy-load", S, "np.load('/etc/passwd')", "SecurityError",
     r"^numpy\.load is not available in the strategy sandbox", "host-files"),
    ("strategy-numpy-random", S, "np.random.rand(3)", "SecurityError",
     r"^numpy\.random is not available in the strategy sandbox: randomness breaks determinism", "host-files"),
    ("strategy-pandas-read", S, "pd.read_json('/etc/passwd')", "SecurityError", r"^pandas\.read_json is not available", "host-files"),
    # --- bombs --------------------------------------------------------------
    ("recursion-bomb", W, "def f():\n    return f()\nf()", "RecursionError", r"maximum recursion depth", "host-files"),
    ("allocation-bomb", W, "x = 'a' * (2 ** 40)", "MemoryError", r"", "memory"),
    ("list-bomb", S, "x = [0] * (10 ** 11)", "MemoryError", r"", "memory"),
    ("while-true", S, "while True:\n    pass", "SecurityError", r"while True: is not allowed", "host-files"),
]

# Attacks whose job ends by a limit rather than an exception.
LIMITED = [
    ("re-backtracking", W, "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", "timeout"),
    ("cpu-burn-loop", S, "for i in range(10 ** 12):\n    pass", "timeout"),
]

ENTRY = {W: "\ndef tick(ctx):\n    pass\n", WA: "\ndef tick(ctx):\n    pass\n",
         S: "\ndef on_bar_strategy(sdk, params):\n    pass\n"}


def run(tmp_path, profile, source, *args, timeout=60):
    path = tmp_path / "attack.py"
    path.write_text(source)
    if profile == WA:
        args = ("--unsafe-python-layer", "--policy", AUDIT_ONLY) + args
        profile = W
    p = subprocess.run([JAILRUN, "--profile", profile, "--json", *args, str(path)], capture_output=True,
                       text=True, timeout=timeout)
    return p, json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("aid,profile,src,etype,msg,aim", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_python_layer_refuses(tmp_path, aid, profile, src, etype, msg, aim):
    p, res = run(tmp_path, profile, src + ENTRY[profile])
    assert p.returncode == 1, (p.stdout, p.stderr)
    err = res["error"]
    assert err["type"] == etype, err
    assert re.search(msg, err["message"]), err
    assert err["line"] is not None, err


@pytest.mark.parametrize("aid,profile,src,status", LIMITED, ids=[a[0] for a in LIMITED])
def test_python_layer_bounded(tmp_path, aid, profile, src, status):
    p, res = run(tmp_path, profile, src + ENTRY[profile], "--timeout", "2")
    assert res["status"] == status and p.returncode == 124, (p.stdout, p.stderr)


# --- the same aims, Python layer off: the kernel jail holds -----------------

@pytest.fixture(scope="module")
def host_secret(tmp_path_factory):
    d = tmp_path_factory.mktemp("host")
    f = d / "secret.txt"
    f.write_text("HOST-SECRET")
    return str(f)


@pytest.fixture(scope="module")
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


AIMS = {
    # no host file is visible, whatever the path
    "host-files": """
        import os
        seen = [p for p in (SECRET, "/etc/shadow", "/etc/passwd", "/root", "/home") if os.path.exists(p)]
        print("HELD" if not seen else "BROKE %r" % seen)
    """,
    # no program to run, and exec of the interpreter itself is not a shell
    "spawn": """
        import os, subprocess
        rc = os.system("id")
        try:
            subprocess.run(["/bin/sh", "-c", "id"])
            print("BROKE ran /bin/sh")
        except OSError:
            print("HELD" if rc != 0 else "BROKE system rc 0")
    """,
    # the host's loopback is another network namespace
    "network": """
        import socket
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2)
            print("BROKE connected")
        except OSError:
            print("HELD")
    """,
    # native code cannot leave the namespaces or mount
    "native": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        bad = [libc.unshare(0x10000000), libc.mount(b"none", b"/", b"tmpfs", 0, None)]
        print("HELD" if all(r == -1 for r in bad) else "BROKE %r" % bad)
    """,
    # writes go nowhere outside the private scratch dir
    "write": """
        import os
        ok = []
        for p in ("/tmp/x", "/x", "/usr/lib/x", "/proc/sys/kernel/hostname"):
            try:
                open(p, "w").write("x")
                ok.append(p)
            except OSError:
                pass
        print("HELD" if not ok else "BROKE %r" % ok)
    """,
    # the operator's environment is not the jail's
    "environ": """
        import os
        try:
            env = open("/proc/self/environ", "rb").read()
        except PermissionError:
            env = b""
        print("BROKE" if b"JR_HOST_MARKER" in env or "JR_HOST_MARKER" in os.environ else "HELD")
    """,
    # host processes are invisible
    "kill": """
        import os
        try:
            os.kill(HOSTPID, 0)
            print("BROKE signalled the host")
        except ProcessLookupError:
            print("HELD")
    """,
    # allocation ends at the cgroup's limit, not the host's
    "memory": """
        try:
            x = bytearray(4 << 30)
            print("BROKE allocated 4 GiB")
        except MemoryError:
            print("HELD")
    """,
}


def exec_variant(src, aim, host_secret, port):
    """The attack itself with nothing in its way (profile exec, the strategy
    globals imported by hand), then its aim checked from the same process."""
    body = "import numpy as np, pandas as pd, math, json, datetime\n"
    if "while True" not in src:  # the one attack that is only a hang
        body += "try:\n" + textwrap.indent(src, "    ") + "\nexcept BaseException:\n    pass\n"
    code = body + textwrap.dedent(AIMS[aim])
    return code.replace("SECRET", repr(host_secret)).replace("PORT", str(port)).replace("HOSTPID", str(os.getpid()))


@pytest.mark.parametrize("aid,profile,src,etype,msg,aim", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_kernel_holds_without_the_python_layer(tmp_path, host_secret, listener, aid, profile, src, etype, msg, aim):
    code = exec_variant(src, aim, host_secret, listener)
    path = tmp_path / "aim.py"
    path.write_text(code)
    env = dict(os.environ, JR_HOST_MARKER="1")
    p = subprocess.run([JAILRUN, "--profile", "exec", "--memory", "512M", str(path)], capture_output=True,
                       text=True, timeout=60, env=env)
    out = p.stdout.strip().splitlines()
    if (aim == "memory" and p.returncode == 137) or (aim == "native" and p.returncode == 159):
        return  # the cgroup or the seccomp filter killed it: held
    assert out and out[-1] == "HELD", (p.returncode, p.stdout, p.stderr)
