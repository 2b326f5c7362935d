"""Policy files on the command line (--policy, --print-policy) and --check."""
import json
import os
import subprocess

import pytest

from conftest import JAILRUN, run_script


def jr(*args, timeout=60, **kw):
    return subprocess.run([JAILRUN, *args], capture_output=True, text=True, timeout=timeout, **kw)


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    with open(p, mode) as f:
        f.write(text)
    return str(p)


# --- --print-policy ------------------------------------------------------------

@pytest.mark.parametrize("profile", ["worker", "strategy", "exec"])
def test_print_policy_of_each_profile(profile):
    r = jr("--profile", profile, "--print-policy")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["profile"] == profile
    assert set(p) == {"profile", "python", "validator", "limits", "state", "files", "http", "adapters", "backtest", "log",
                      "exec"}
    assert p["python"]["guard"] == (profile != "exec")
    assert p["exec"] == {"shell": False, "programs": []}


def test_print_policy_shows_overrides_and_command_line_limits(tmp_path):
    pol = write(tmp_path, "p.json", json.dumps({"limits": {"pids": 10}, "python": {"imports": ["math"]}}))
    p = json.loads(jr("--policy", pol, "--memory", "300M", "--print-policy").stdout)
    assert p["limits"]["pids"] == 10
    assert p["limits"]["memory"] == 300 << 20
    assert p["python"]["imports"] == ["math"]
    assert p["python"]["builtins"][:3] == ["abs", "all", "any"], "untouched keys stay"


def test_policy_file_picks_the_profile(tmp_path):
    pol = write(tmp_path, "p.json", '{"profile": "strategy"}')
    assert json.loads(jr("--policy", pol, "--print-policy").stdout)["profile"] == "strategy"
    r = jr("--policy", pol, "--profile", "exec", "--print-policy")
    assert r.returncode == 2 and "'strategy' differs from --profile exec" in r.stderr


# --- bad policy input: exit 2, the JSON path and the reason ------------------------

BAD = [
    ('{"pythn": {}}', "$: unknown key 'pythn'"),
    ('{"python": {"imports": "math"}}', "$.python.imports: expected an array of strings, got a string"),
    ('{"limits": {"pids": -1}}', "$.limits.pids: -1 is out of range"),
    ('{"limits": {"memory": "1G"}}', "$.limits.memory: expected an integer, got a string"),
    ('{"log": {"batch": 0}}', "$.log.batch: 0 is out of range"),
    ('{"limits": {"pids": 8},}', "line 1 column"),
    ('', "line 1 column"),
    ('[' * 5000 + ']' * 5000, "line 1 column"),
]


@pytest.mark.parametrize("text,msg", BAD, ids=range(len(BAD)))
def test_bad_policy_is_a_usage_error(tmp_path, text, msg):
    pol = write(tmp_path, "bad.json", text)
    r = jr("--policy", pol, "--print-policy")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr and pol in r.stderr, r.stderr
    assert r.stdout == ""


def test_binary_garbage_policy(tmp_path):
    pol = write(tmp_path, "bad.json", os.urandom(4096), mode="wb")
    r = jr("--policy", pol, "--print-policy")
    assert r.returncode == 2 and pol in r.stderr


def test_huge_policy_is_refused_unread(tmp_path):
    pol = write(tmp_path, "big.json", '{"python": {"imports": [' + '"a",' * 400000 + '"b"]}}')
    r = jr("--policy", pol, "--print-policy")
    assert r.returncode == 2 and "larger than 1048576 bytes" in r.stderr


def test_policy_not_a_file(tmp_path):
    assert "not a regular file" in jr("--policy", str(tmp_path), "--print-policy").stderr
    r = jr("--policy", str(tmp_path / "missing.json"), "--print-policy")
    assert r.returncode == 2 and "No such file or directory" in r.stderr


def test_limit_above_the_policy_maximum(tmp_path):
    r = jr("--profile", "strategy", "--pids", "100", "--print-policy")
    assert r.returncode == 2 and "--pids 100 is above the strategy profile's maximum of 64" in r.stderr
    pol = write(tmp_path, "p.json", '{"limits": {"pids_max": 128}}')
    assert jr("--profile", "strategy", "--policy", pol, "--pids", "100", "--print-policy").returncode == 0


# --- the policy governs the run ------------------------------------------------------

def test_policy_import_allowlist_and_audit_still_apply(tmp_path):
    imports = ["math", "os"]
    pol = write(tmp_path, "p.json", json.dumps({"python": {"imports": imports}}))
    r = run_script(tmp_path, """
        import os
        def tick(ctx):
            ctx.log.info(os.getcwd())
            os.listdir("/")
    """, "--unsafe-python-layer", "--policy", pol, "--json")
    err = json.loads(r.out.splitlines()[-1])["error"]
    assert err["type"] == "SecurityError" and err["message"].startswith("os.listdir is not allowed"), r
    r = run_script(tmp_path, "import json\ndef tick(ctx):\n    pass\n", "--unsafe-python-layer", "--policy", pol, "--json")
    err = json.loads(r.out.splitlines()[-1])["error"]
    assert err["message"] == "Import of json is not allowed in worker sandbox. Allowed: ['math', 'os']"


def test_policy_log_limits(tmp_path):
    pol = write(tmp_path, "p.json", '{"log": {"max_chars": 100, "batch": 3}}')
    r = run_script(tmp_path, "def tick(ctx):\n    for i in range(4):\n        ctx.log.info('y' * 500)\n",
                   "--policy", pol, "--json")
    lines = [json.loads(x) for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    assert [len(x["message"]) for x in lines] == [100] * 4


def test_policy_timeout(tmp_path):
    pol = write(tmp_path, "p.json", '{"limits": {"timeout": 1}}')
    r = run_script(tmp_path, "import time\ndef tick(ctx):\n    time.sleep(10)\n", "--policy", pol, "--json")
    assert r.code == 124 and json.loads(r.out.splitlines()[-1])["status"] == "timeout"


def test_guard_off_is_plain_python(tmp_path):
    pol = write(tmp_path, "p.json", '{"python": {"guard": false}}')
    r = run_script(tmp_path, "import os\ndef tick(ctx):\n    ctx.log.info(sorted(os.listdir('/'))[:2])\n",
                   "--policy", pol, "--json")
    assert r.code == 0, r


# --- --check ---------------------------------------------------------------------

def check(tmp_path, source, *args, name="s.py", mode="w"):
    path = write(tmp_path, name, source, mode=mode)
    r = jr("--check", *args, path)
    return r, path


def test_check_lists_every_violation(tmp_path):
    r, path = check(tmp_path, "import random\nf = lambda: 1\nx = ().__class__\n", "--profile", "strategy")
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        "%s:1:0: SecurityError: Import of random is not allowed in the strategy sandbox. Allowed: ['datetime', "
        "'indicators', 'json', 'math', 'numpy', 'pandas', 'pandas_ta', 'ta', 'talib', 'tesstrade_indicators']" % path,
        "%s:2:4: SecurityError: lambda is not allowed; use a def" % path,
        "%s:3:4: SecurityError: access to the attribute __class__ is not allowed" % path,
    ]


def test_check_clean_script(tmp_path):
    r, _ = check(tmp_path, "def on_bar_strategy(sdk, params):\n    return None\n", "--profile", "strategy")
    assert (r.returncode, r.stdout) == (0, "")


def test_check_json(tmp_path):
    r, path = check(tmp_path, "import os\n", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 1
    assert j == {"file": path, "status": "violations", "exit_code": 1, "violations": [
        {"line": 1, "col": 0, "type": "ImportError", "reason": "Import of os is not allowed in worker sandbox. Allowed: "
         "['base64', 'collections', 'copy', 'datetime', 'decimal', 'functools', 'hashlib', 'hmac', 'itertools', "
         "'json', 'math', 'numpy', 'pandas', 'random', 're', 'statistics', 'time']"}]}


def test_check_refused_imports_name_the_allowed_modules_within_bounds(tmp_path):
    # Each reason carries the allowed list (cut at 1000 characters past a
    # long name): 250 of them stay one message the supervisor takes.
    src = "".join("import m%d_%s\n" % (i, "x" * 3000) for i in range(250))
    r, path = check(tmp_path, src, "--json")
    assert r.returncode == 1, r.stderr
    v = json.loads(r.stdout)["violations"]
    assert len(v) == 201 and v[-1]["reason"] == "50 more violations not listed"
    assert all(len(x["reason"]) == 1003 and x["reason"].endswith("...") for x in v[:200])
    r, _ = check(tmp_path, "import os.path\nfrom sys import argv\n", "--json")
    reasons = [x["reason"] for x in json.loads(r.stdout)["violations"]]
    assert [x.split(". Allowed: ")[0] for x in reasons] == [
        "Import of os.path is not allowed in worker sandbox", "Import of sys is not allowed in worker sandbox"]
    assert all(x.endswith("'re', 'statistics', 'time']") for x in reasons)


def test_check_does_not_run_the_script(tmp_path):
    r, _ = check(tmp_path, "print('ran')\nimport time\ntime.sleep(30)\n", "--json", "--timeout", "10")
    assert r.returncode == 0 and "ran" not in r.stderr and json.loads(r.stdout)["status"] == "clean"


def test_check_syntax_error(tmp_path):
    r, path = check(tmp_path, "def f(:\n")
    assert r.returncode == 1
    assert r.stdout.startswith("%s:1:6: SyntaxError: " % path), r.stdout


def test_check_profile_exec_only_checks_syntax(tmp_path):
    r, _ = check(tmp_path, "import os\nf = lambda: 1\n", "--profile", "exec")
    assert (r.returncode, r.stdout) == (0, "")


# --- hostile scripts: a clean error, never a crash --------------------------------------

@pytest.mark.parametrize("profile", ["worker", "strategy"])
def test_binary_garbage_script(tmp_path, profile):
    data = bytes(range(256)) * 64
    r, path = check(tmp_path, data, "--profile", profile, mode="wb")
    assert r.returncode == 1 and ": SyntaxError: " in r.stdout, (r.stdout, r.stderr)
    run = run_script(tmp_path, "x", "--profile", profile, "--json")  # and running garbage
    path2 = write(tmp_path, "g.py", data, mode="wb")
    p = jr("--profile", profile, "--json", path2)
    res = json.loads(p.stdout.splitlines()[-1])
    assert p.returncode == 1 and res["error"]["type"] == "SyntaxError", p.stdout
    assert run.code == 1


def test_ten_megabyte_script(tmp_path):
    src = "x = 1\n" * (10 * 1024 * 1024 // 6)
    for profile, want in (("strategy", "the limit is 102400"), ("worker", "the limit is 1048576")):
        r, _ = check(tmp_path, src, "--profile", profile)
        assert r.returncode == 1 and "Code too complex: the source is" in r.stdout and want in r.stdout
        path = write(tmp_path, "big.py", src)
        p = jr("--profile", profile, "--json", path)
        err = json.loads(p.stdout.splitlines()[-1])["error"]
        assert err["type"] == "SecurityError" and "Code too complex" in err["message"]


NESTED = ["x = " + "[" * 100000 + "]" * 100000 + "\n",
          "x = " + "(" * 300 + "1" + ")" * 300 + "\n",
          "x = " + "+".join(["a"] * 200000) + "\n",
          "".join(" " * d + "if x:\n" for d in range(120)) + " " * 120 + "pass\n"]


@pytest.mark.parametrize("src", NESTED, ids=["brackets", "parens", "long-expression", "indentation"])
def test_deeply_nested_source(tmp_path, src):
    for profile in ("worker", "strategy"):
        r, _ = check(tmp_path, src, "--profile", profile)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "Error: " in r.stdout, r.stdout


def test_non_utf8_source(tmp_path):
    r, path = check(tmp_path, b"x = '\xff\xfe'\n", mode="wb")
    assert r.returncode == 1 and ": SyntaxError: " in r.stdout and "utf-8" in r.stdout
    p = jr("--json", path)
    assert json.loads(p.stdout.splitlines()[-1])["error"]["type"] == "SyntaxError"


def test_nul_in_source(tmp_path):
    r, _ = check(tmp_path, b"x = 1\x00\n", mode="wb")
    assert r.returncode == 1 and "SyntaxError" in r.stdout


def test_policy_log_total_is_capped(tmp_path):
    """A flood of well-formed log messages ends at log.max_bytes: the rest
    is counted and dropped, said once, and counted in the result."""
    pol = write(tmp_path, "p.json", '{"log": {"max_bytes": 1000}}')
    r = run_script(tmp_path, "def tick(ctx):\n    for i in range(50):\n        ctx.log.info('y' * 100)\n",
                   "--policy", pol, "--json")
    lines = [json.loads(x) for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    assert len(lines) == 6  # 100 characters and 48 of frame each: 6 * 148 = 888
    assert r.err.count("log messages beyond 1000 bytes dropped") == 1
    assert json.loads(r.out.splitlines()[-1])["stats"]["log_dropped"] == 44


def test_default_log_total_is_16_mib():
    p = json.loads(jr("--print-policy").stdout)
    assert p["log"]["max_bytes"] == 16 << 20


# --- the Python layer is whole or off (jailrun-policy(5)) ------------------------

@pytest.mark.parametrize("profile,over,key", [
    ("worker", {"validator": {"enabled": False}}, "validator.enabled"),
    ("strategy", {"validator": {"enabled": False}}, "validator.enabled"),
    ("worker", {"validator": {"forbid": ["string_attributes"]}}, "validator.forbid"),
    ("worker", {"python": {"attribute_guard": False}}, "python.attribute_guard"),
    ("worker", {"python": {"dunder_deny": ["__code__"]}}, "python.dunder_deny"),
    ("strategy", {"python": {"dunder_allow": ["__name__", "__globals__"]}}, "python.dunder_allow"),
    ("worker", {"python": {"builtins": ["print", "eval"]}}, "python.builtins"),
    ("worker", {"python": {"imports": ["math", "sys"]}}, "python.imports"),
    ("strategy", {"python": {"imports": ["numpy", "operator"]}}, "python.imports"),
    ("worker", {"python": {"imports": ["importlib.util"]}}, "python.imports"),
    ("worker", {"python": {"globals": {"B": "builtins"}}}, "python.globals"),
])
def test_a_partial_python_layer_is_refused(tmp_path, profile, over, key):
    src = write(tmp_path, "w.py", "import json\ndef tick(ctx):\n    json.dumps.__globals__\n"
                "def on_bar_strategy(sdk, params):\n    pass\n")
    pol = write(tmp_path, "p.json", json.dumps(over))
    r = jr("--profile", profile, "--policy", pol, src)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "%s: $.%s: " % (pol, key) in r.stderr, r.stderr
    assert "leaves the Python layer open" in r.stderr and "set python.guard to false" in r.stderr, r.stderr
    # --unsafe-python-layer takes it (testing one layer alone)
    r = jr("--unsafe-python-layer", "--profile", profile, "--policy", pol, "--print-policy")
    assert r.returncode == 0, r.stderr


def test_the_python_layer_off_is_a_declared_choice(tmp_path):
    # python.guard false: real builtins, the kernel jail alone; not refused
    pol = write(tmp_path, "p.json", json.dumps({"python": {"guard": False}, "validator": {"enabled": False}}))
    src = write(tmp_path, "w.py", "import os\ndef tick(ctx):\n    ctx.log.info(os.getuid() != 0)\n")
    r = jr("--policy", pol, "--json", src)
    assert r.returncode == 0, r.stderr


def test_views_keep_the_real_module_and_builtins(tmp_path):
    src = write(tmp_path, "w.py", "import json, math\ndef tick(ctx):\n"
                "    for m, n in ((json, '_jr_lazy'), (math, '__builtins__'), (json, '__builtins__')):\n"
                "        try:\n            getattr(m, n)\n        except (AttributeError, SecurityError) as e:\n"
                "            ctx.log.info(type(e).__name__)\n")
    r = jr("--json", src)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert [x["message"] for x in lines if x.get("type") == "log"] == ["AttributeError", "SecurityError", "SecurityError"]
