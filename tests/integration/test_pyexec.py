"""Profile exec runs everyday Python: process pools with the fork, spawn
and forkserver start methods (a private /dev/shm for their semaphores),
subprocesses of sys.executable (the interpreter bound in the jail), the
optional shell (policy exec.shell) and matplotlib. Every pool stays inside
the job's task and CPU limits. Cold and warm alike (integration-warm.test)."""
import json
import os

import pytest

from jr_helpers import final_json, host_stays_clean, log_lines  # noqa: F401

SHELL_POLICY = {"profile": "exec", "exec": {"shell": True}}


def policy_file(tmp_path, doc, name="policy.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def lines(r):
    return r.out.splitlines()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_runs_a_function_of_the_script(jail, method):
    # The function lives in the script: pickled by reference to __main__,
    # which the spawn child re-runs (as __mp_main__) from a copy.
    r = jail("""
        import multiprocessing as mp, os, sys

        def square(x):
            return x * x, os.getpid()

        if __name__ == "__main__":
            with mp.get_context(sys.argv[1]).Pool(3) as pool:
                out = pool.map(square, range(20))
            print([v for v, _ in out])
            print(len({p for _, p in out} - {os.getpid()}) >= 1)
    """, script_args=[method])
    assert r.code == 0, r
    assert lines(r) == [str([x * x for x in range(20)]), "True"], r


@pytest.mark.parametrize("method", [None, "spawn"])
def test_process_pool_executor(jail, method):
    r = jail("""
        import multiprocessing as mp, sys
        from concurrent.futures import ProcessPoolExecutor

        def cube(x):
            return x ** 3

        if __name__ == "__main__":
            ctx = mp.get_context(sys.argv[1]) if sys.argv[1:] else None
            with ProcessPoolExecutor(2, mp_context=ctx) as ex:
                print(sum(ex.map(cube, range(10))))
    """, script_args=[method] if method else [])
    assert r.code == 0, r
    assert r.out == "2025\n", r


def test_spawn_children_import_numpy(jail):
    r = jail("""
        import multiprocessing as mp

        def version(_):
            import numpy
            return numpy.__version__ + " " + str(int(numpy.arange(5).sum()))

        if __name__ == "__main__":
            with mp.get_context("spawn").Pool(2) as pool:
                print(set(pool.map(version, range(4))))
    """)
    assert r.code == 0, r
    import numpy  # the jail's numpy is the host's Debian one
    assert r.out.strip() == str({numpy.__version__ + " 10"}), r


CHILD_REPORT = """
import json, os, sys, numpy
st = dict(l.split(":", 1) for l in open("/proc/self/status"))
print(json.dumps({"numpy": numpy.__version__, "version": sys.version,
                  "nnp": st["NoNewPrivs"].strip(), "seccomp": st["Seccomp"].strip(),
                  "capeff": st["CapEff"].strip(), "uid_map": open("/proc/self/uid_map").read().split(),
                  "cwd": os.getcwd()}))
"""


def test_sys_executable_runs_the_same_python_under_the_jail(jail):
    r = jail("""
        import json, subprocess, sys
        print(sys.executable, sys._base_executable)
        child = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
        print(child.returncode, child.stderr.strip() or "-")
        print(child.stdout.strip())
        print(json.dumps({"version": sys.version, "uid_map": open("/proc/self/uid_map").read().split()}))
        # the usual name on PATH too
        print(subprocess.run(["python3", "-c", "print(6 * 7)"], capture_output=True, text=True).stdout.strip())
    """, script_args=[CHILD_REPORT])
    assert r.code == 0, r
    out = lines(r)
    assert out[0] == "/usr/bin/python3.11 /usr/bin/python3.11", r
    assert out[1] == "0 -", r
    child, parent = json.loads(out[2]), json.loads(out[3])
    import numpy
    assert child["numpy"] == numpy.__version__
    assert child["version"] == parent["version"], (child, parent)
    assert (child["nnp"], child["seccomp"], child["capeff"]) == ("1", "2", "0000000000000000"), child
    assert child["uid_map"] == parent["uid_map"], (child, parent)
    assert child["cwd"] == "/scratch"
    assert out[4] == "42", r


def test_channel_does_not_reach_executed_programs(jail):
    # fd 3 is close-on-exec: a program executed with every inherited fd
    # kept (close_fds=False, or a bare execv) has no fd 3.
    r = jail("""
        import fcntl, os, subprocess, sys
        print(bool(fcntl.fcntl(3, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
        probe = "import os\\ntry:\\n    os.fstat(3); print('open')\\nexcept OSError as e:\\n    print(e.errno)"
        print(subprocess.run([sys.executable, "-c", probe], close_fds=False,
                             capture_output=True, text=True).stdout.strip())
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv(sys.executable, [sys.executable, "-c", probe])
        os.close(w)
        os.waitpid(pid, 0)
        print(os.read(r, 100).decode().strip())
    """)
    assert r.code == 0, r
    import errno
    assert lines(r) == ["True", str(errno.EBADF), str(errno.EBADF)], r


def test_pool_beyond_the_task_limit_fails_cleanly(jail):
    # 32 workers under --pids 16: the fork that meets the limit fails
    # (EAGAIN), the pool cleans up after itself, the script goes on.
    r = jail("""
        import multiprocessing as mp, os, sys

        def pid(_):
            return os.getpid()

        if __name__ == "__main__":
            for method in ("fork", "spawn"):
                try:
                    with mp.get_context(method).Pool(32) as pool:
                        print(method, "pool of", len(set(pool.map(pid, range(64)))))
                except OSError as e:
                    print(method, type(e).__name__, e.errno)
            print("alive")
    """, "--pids", "16", "--json")
    assert r.code == 0, r
    import errno
    assert lines(r)[:3] == ["fork BlockingIOError %d" % errno.EAGAIN, "spawn BlockingIOError %d" % errno.EAGAIN,
                            "alive"], r
    stats = final_json(r)["stats"]
    if "pids_peak" in stats:
        assert stats["pids_peak"] <= 16, stats


def test_pool_stays_within_the_cpu_limit(jail):
    # Four workers spin for 2 s of wall time each under --cpus 0.5: what
    # they got in all is the job's half core (test_limits' bound for one
    # spinner), not the host's two cores.
    r = jail("""
        import multiprocessing as mp, time

        def spin(_):
            t0, c0 = time.monotonic(), time.process_time()
            while time.monotonic() - t0 < 2:
                pass
            return time.process_time() - c0

        if __name__ == "__main__":
            with mp.get_context("fork").Pool(4) as pool:
                t0 = time.monotonic()
                cpu = sum(pool.map(spin, range(4), chunksize=1))
                wall = time.monotonic() - t0
            print("%.3f" % (cpu / wall))
    """, "--cpus", "0.5", timeout=120)
    assert r.code == 0, r
    share = float(r.out.split()[0])
    assert 0.05 <= share <= 0.575, share


def test_dev_shm_is_the_jobs_own_tmpfs(jail):
    r = jail("""
        import os, stat
        st = os.statvfs("/dev/shm")
        print(oct(stat.S_IMODE(os.stat("/dev/shm").st_mode)), sorted(os.listdir("/dev/shm")))
        print(st.f_blocks * st.f_frsize >> 20, bool(st.f_flag & os.ST_NOEXEC), bool(st.f_flag & os.ST_NOSUID))
        from multiprocessing import shared_memory
        m = shared_memory.SharedMemory(create=True, size=1 << 20)
        m.buf[:5] = b"hello"
        other = shared_memory.SharedMemory(m.name)
        print(bytes(other.buf[:5]), m.name in os.listdir("/dev/shm"))
        other.close(); m.close(); m.unlink()
    """, "--memory", "256M")
    assert r.code == 0, r
    assert lines(r) == ["0o1777 []", "128 True True", "b'hello' True"], r


def test_shell_is_off_by_default(jail):
    r = jail("""
        import os, subprocess
        print(sorted(os.listdir("/usr/bin")))
        try:
            subprocess.run("ls", shell=True)
        except FileNotFoundError as e:
            print(e.filename, e.strerror)
    """)
    assert r.code == 0, r
    assert lines(r) == ["['python3', 'python3.11']", "/bin/sh No such file or directory"], r


def test_shell_on_runs_commands(jail, tmp_path):
    r = jail("""
        import subprocess
        open("data.txt", "w").write("pear\\napple\\nfig\\n")
        cmd = "ls; cat data.txt | sort | head -2; grep -c p data.txt; echo x | sed s/x/y/; wc -l < data.txt; pwd"
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        print(p.returncode, repr(p.stderr))
        print(p.stdout, end="")
    """, "--policy", policy_file(tmp_path, SHELL_POLICY))
    assert r.code == 0, r
    assert lines(r) == ["0 ''", "data.txt", "apple", "fig", "2", "y", "3", "/scratch"], r


def test_shell_needs_profile_exec(worker, tmp_path):
    r = worker("def tick(ctx):\n    pass\n",
               "--policy", policy_file(tmp_path, {"profile": "worker", "exec": {"shell": True}}))
    assert r.code == 2, r
    assert "$.exec.shell: only profile exec runs programs" in r.err, r


def test_matplotlib_writes_a_png(jail):
    r = jail("""
        import os
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [3, 1, 2], label="line")
        ax.set_title("jailed plot")
        ax.legend()
        fig.savefig("plot.png")
        with open("plot.png", "rb") as f:
            head = f.read(8)
        print(head.hex(), os.path.getsize("plot.png") > 1000, os.environ["MPLCONFIGDIR"])
    """, timeout=120)
    assert r.code == 0, r
    assert r.out.split() == [b"\x89PNG\r\n\x1a\n".hex(), "True", "/scratch/.config/matplotlib"], r
    assert "font" not in r.err.lower(), r  # found its fonts: no "findfont" warning


def test_a_forked_child_shares_the_channel_and_is_as_untrusted(jail):
    # A pool worker's ctx.log arrives as the script's; a forked child that
    # breaks the protocol ends its own job as a ProtocolError, as the
    # script itself would (the supervisor trusts no datagram).
    r = jail("""
        import multiprocessing as mp

        def work(x):
            ctx.log.info("from a worker %d" % x)
            return x

        if __name__ == "__main__":
            with mp.get_context("fork").Pool(1) as pool:
                pool.map(work, [7])
    """)
    assert r.code == 0, r
    assert "INFO from a worker 7" in r.err, r
    # what the script logged before the fork is sent once, by the script
    r = jail("""
        import os
        ctx.log.info("before the fork")
        pid = os.fork()
        if pid == 0:
            ctx.log.info("in the child")
            os._exit(0)
        os.waitpid(pid, 0)
        ctx.log.info("after")
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == ["INFO in the child", "INFO before the fork", "INFO after"], r
    r = jail("""
        import os, time, _jailrun
        pid = os.fork()
        if pid == 0:
            _jailrun.send({"type": "nonsense"})
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(30)
    """, "--json", timeout=60)
    assert r.code == 1, r
    assert final_json(r)["error"]["type"] == "ProtocolError", r


# --- exec.programs: programs the operator adds (jailrun-policy(5)) -----------

PROGRAMS_POLICY = {"profile": "exec", "exec": {"programs": ["/usr/bin/id", "/usr/bin/stat"]}}


def test_programs_the_policy_names_run_read_only_and_jailed(jail, tmp_path):
    r = jail("""
        import errno, os, subprocess
        print(sorted(os.listdir("/usr/bin")))
        print(subprocess.run(["/usr/bin/id", "-u"], capture_output=True, text=True).stdout.strip())
        # its own process: the same no_new_privs and seccomp filter
        out = subprocess.run(["/usr/bin/stat", "-c", "%a %u", "/usr/bin/id"], capture_output=True, text=True).stdout
        print(out.strip())
        for mode in (os.O_WRONLY, os.O_RDWR | os.O_TRUNC):
            try:
                os.open("/usr/bin/id", mode)
            except OSError as e:
                print(errno.errorcode[e.errno])
        st = open("/proc/self/status").read()
        print([l.split()[1] for l in st.splitlines() if l.startswith(("NoNewPrivs", "Seccomp:"))])
    """, "--policy", policy_file(tmp_path, PROGRAMS_POLICY))
    assert r.code == 0, r
    out = lines(r)
    assert out[0] in ("['id', 'python3', 'python3.11', 'stat']", "['id', 'python3.11', 'stat']"), out
    assert out[1] == "0" and out[2] == "755 65534", out  # root of the host is nobody in the jail
    assert out[3] in ("EACCES", "EROFS") and out[4] == "EROFS" and out[5] == "['1', '2']", out


def test_programs_need_profile_exec_and_a_root_owned_program(jail, worker, tmp_path):
    r = worker("def tick(ctx):\n    pass\n", "--policy", policy_file(tmp_path, {"exec": {"programs": ["/usr/bin/id"]}}))
    assert r.code == 2 and "$.exec.programs: only profile exec runs programs" in r.err, r
    for path, why in (("/nonexistent/prog", "No such file or directory"), ("/etc/passwd", "is not a program everyone may run"),
                      ("usr/bin/id", "is not a plain absolute path"), ("/usr/bin/../bin/id", "is not a plain absolute path")):
        r = jail("pass", "--policy", policy_file(tmp_path, {"profile": "exec", "exec": {"programs": [path]}}))
        assert r.code == 2 and why in r.err, (path, r)
    mine = tmp_path / "prog"
    mine.write_text("#!/bin/sh\n")
    os.chmod(mine, 0o777)
    r = jail("pass", "--policy", policy_file(tmp_path, {"profile": "exec", "exec": {"programs": [str(mine)]}}))
    assert r.code == 2 and "must be root's and writable by root alone" in r.err, r
