"""A jaild for a test: its own socket, registry, state, workspaces and
cgroup parent in a fresh directory, started and stopped by the test, and a
client for its API over the unix socket (httpx, and curl where the test
wants the real command line)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import hostprobe  # noqa: E402
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
JAILD = os.environ.get("JAILD") or os.path.join(TOP, "supervisor", "jaild", "jaild")
# Each jaild of the tests has a cgroup parent of its own below this one: a
# jaild owns its parent (it removes every job group under it at start).
CGROUP_PARENT = "jaild-test"


def cgroup_dirs(parent):
    """The parent's directory in each cgroup hierarchy of this host."""
    roots = ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", e) for e in sorted(os.listdir("/sys/fs/cgroup"))]
    out = []
    for root in roots:
        d = os.path.join(root, parent)
        if os.path.isdir(d) and os.path.realpath(d) not in [os.path.realpath(x) for x in out]:
            out.append(d)
    return out


def all_groups(parent):
    """Every group jaild made under the parent, in any hierarchy: a job's
    own (job-ID, with cgroup_pool.size 0) and those of its pool (pool-N)."""
    return sorted({e for d in cgroup_dirs(parent) for e in os.listdir(d) if e.startswith(("job-", "pool-"))})


def _busy(parent, group):
    for d in cgroup_dirs(parent):
        try:
            with open(os.path.join(d, group, "cgroup.procs")) as f:
                if f.read().strip():
                    return True
        except OSError:
            pass
    return False


def job_groups(parent):
    """The groups of jobs: a job's own, and the pool's that a job is in (a
    process in it); the pool's idle groups are not a job's."""
    return [g for g in all_groups(parent) if g.startswith("job-") or _busy(parent, g)]


def remove_parent(parent):
    """The parent's now empty directories (and the tests' own parent above
    it, once no other jaild of the tests uses it)."""
    for p in (parent, CGROUP_PARENT):
        for d in cgroup_dirs(p):
            try:
                os.rmdir(d)
            except OSError:
                pass


class Jaild:
    def __init__(self, **config):
        self.dir = tempfile.mkdtemp(prefix="jd-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "jaild.sock")
        self.cgroup_parent = "%s/%s" % (CGROUP_PARENT, os.path.basename(self.dir))
        self.config = {
            "socket": {"path": self.socket, "mode": "0666"},
            "cgroup_parent": self.cgroup_parent,
            "state": {"backend": "sqlite", "sqlite": {"path": os.path.join(self.dir, "state.sqlite")}},
            "workspace_root": os.path.join(self.dir, "ws"),
            "registry": os.path.join(self.dir, "reg", "registry.db"),
            "log_level": "info",
            # Not jailrun's default range: the integration suite, running
            # beside these, counts jails there without a jailrun as leaks.
            "uid_range": {"lo": 200000, "hi": 264999},
        }
        self.config.update(config)
        self.config_path = os.path.join(self.dir, "jaild.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        self.proc = None
        self.log_path = os.path.join(self.dir, "jaild.log")

    def start(self, wait=None):
        """Starts jaild and waits for its health; if it does not answer, it
        is killed before the error is raised (nothing of it outlives a test)."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([JAILD, "--config", self.config_path], stdout=self.log, stderr=self.log)
        try:
            return self._wait_healthy(wait if wait is not None else hostprobe.slack(30))
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise

    def _wait_healthy(self, wait):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("jaild exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                if self.get("/v1/health").status_code == 200:
                    return self
            except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError):
                pass
            time.sleep(0.05)
        raise AssertionError("jaild did not answer within %s s:\n%s" % (wait, self.logs()))

    def logs(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def client(self, timeout=60):
        return httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), base_url="http://jaild", timeout=timeout)

    def request(self, method, path, **kw):
        with self.client(kw.pop("timeout", 60)) as c:
            return c.request(method, path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json=body, **kw)

    def wait_idle(self, wid, limit=None):
        """The worker once its jail is up and no tick runs (a tick asked
        before that is 409 WorkerBusy, as docs/api.md says)."""
        deadline = time.monotonic() + (limit or hostprobe.slack(30))
        while True:
            w = self.get("/v1/workers/%s" % wid).json()
            if w["state"] == "idle":
                return w
            assert w["state"] in ("starting", "busy") and time.monotonic() < deadline, \
                "worker %s is %s, not idle:\n%s" % (wid, w, self.logs()[-3000:])
            time.sleep(0.02)

    def curl(self, *args, user=None):
        """The real curl against the socket: (status, body)."""
        cmd = ["curl", "-sS", "--unix-socket", self.socket, "-o", "-", "-w", "\n%{http_code}", *args]
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        body, _, status = p.stdout.rpartition("\n")
        return int(status), body

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def job_groups(self):
        return job_groups(self.cgroup_parent)

    def all_groups(self):
        return all_groups(self.cgroup_parent)

    def cleanup(self):
        """Stops jaild; returns the groups it left, its pool's too (then
        removes its parent)."""
        try:
            self.stop(signal.SIGQUIT)
        finally:
            left = self.all_groups()
            if not left:
                remove_parent(self.cgroup_parent)
            shutil.rmtree(self.dir, ignore_errors=True)
        return left


def worker_spec(name, source, **kw):
    spec = {"name": name, "source": source}
    spec.update(kw)
    return spec


@pytest.fixture
def jd():
    """A jaild for the test (test modules import this fixture); none of its
    cgroups may be left."""
    d = Jaild().start()
    yield d
    left = d.cleanup()
    assert left == [], "cgroups left: %s" % left
