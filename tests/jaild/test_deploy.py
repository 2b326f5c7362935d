"""The deployment files (deploy/kubernetes, deploy/nomad; docs/deploy.md)
against the daemon they deploy: their jaild configuration is checked by
jaild itself (jaild --check), the paths jaild writes are the volumes the
pod has, the socket is on the node where the probes and jailctl look for
it; the Kubernetes start script's cgroup placement on the cgroup layouts
of a privileged container (v2 with the node's cgroup namespace or its own,
v1); and the two things of jaild the deployments lean on: --check, and a
socket directory jaild makes itself."""
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jdaemon import JAILD, TOP, Jaild  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")

DAEMONSET = os.path.join(TOP, "deploy", "kubernetes", "jaild-daemonset.yaml")
NOMAD = os.path.join(TOP, "deploy", "nomad", "jaild.nomad")


def drain_seconds():
    """How long jaild's SIGTERM drain lasts (JAILD_DRAIN_S)."""
    with open(os.path.join(TOP, "supervisor", "jaild", "daemon.h")) as f:
        return int(re.search(r"#define JAILD_DRAIN_S (\d+)", f.read()).group(1))


def check(tmp_path, config_text, name="jaild.json"):
    """jaild --check on the text, as root's private file: (exit status, output)."""
    path = tmp_path / name
    path.write_text(config_text)
    path.chmod(0o600)
    p = subprocess.run([JAILD, "--config", str(path), "--check"], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def manifest():
    yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed (scripts/setup installs it)")
    with open(DAEMONSET) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {d["kind"]: d for d in docs}


def under(path, mounts):
    """The mount path (of `mounts`) that path is in, or None."""
    best = None
    for m in mounts:
        if (path == m or path.startswith(m.rstrip("/") + "/")) and (best is None or len(m) > len(best)):
            best = m
    return best


def test_daemonset_runs_one_jaild_a_node_with_its_socket_on_the_node(tmp_path):
    m = manifest()
    assert set(m) == {"Namespace", "ConfigMap", "DaemonSet"}
    ds, cm = m["DaemonSet"], m["ConfigMap"]
    assert ds["apiVersion"] == "apps/v1"
    assert ds["metadata"]["namespace"] == cm["metadata"]["namespace"] == m["Namespace"]["metadata"]["name"]
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    (c,) = spec["containers"]
    assert c["securityContext"]["privileged"] is True and not spec.get("hostPID")
    assert spec["terminationGracePeriodSeconds"] > drain_seconds()

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {vm["mountPath"]: volumes[vm["name"]] for vm in c["volumeMounts"]}
    host = {p: v["hostPath"]["path"] for p, v in mounts.items() if "hostPath" in v}

    # The configuration jaild is given is the ConfigMap's, as jaild reads it.
    text = cm["data"]["jaild.json"]
    rc, out = check(tmp_path, text)
    assert rc == 0, out
    cfg = json.loads(text)
    sock_dir = os.path.dirname(cfg["socket"]["path"])
    # The socket is on the node at the same path, for node-local orchestrators.
    assert host.get(sock_dir) == sock_dir, (sock_dir, host)
    # Registry and workspaces on the node too (kept across pods), and the
    # node's uid locks shared with every jaild and jailrun of the node.
    for p in (os.path.dirname(cfg["registry"]), cfg["workspace_root"]):
        assert under(p, host) and host[under(p, host)] == under(p, host), (p, host)
    assert host.get("/run/jailrun") == "/run/jailrun"
    assert cfg["state"]["backend"] == "redis"

    # The start script is the ConfigMap's, reads the ConfigMap's file and
    # writes where jaild can read it.
    start = load_start(tmp_path, cm)
    assert c["command"][-1] == os.path.join(under(c["command"][-1], mounts), "start.py")
    assert mounts[under(start.CONFIG, mounts)]["configMap"]["name"] == cm["metadata"]["name"]
    assert os.path.basename(start.CONFIG) == "jaild.json"
    assert "emptyDir" in mounts[under(start.RUN_CONFIG, mounts)]

    # With a read-only root, everything jaild writes is a volume.
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for p in (sock_dir, os.path.dirname(cfg["registry"]), cfg["workspace_root"], "/run/jailrun", "/tmp",
              os.path.dirname(start.RUN_CONFIG)):
        assert under(p, mounts), p

    # Probes ask the health endpoint over the socket jaild serves.
    env = {e["name"]: e["value"] for e in c.get("env", [])}
    assert env["JAILD_SOCKET"] == cfg["socket"]["path"]
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][0] == "jailctl" and c[probe]["exec"]["command"][-1] == "health"


def test_daemonset_config_with_a_bad_key_is_refused(tmp_path):
    """The check above can fail: the same text with a key jaild does not know."""
    cfg = json.loads(manifest()["ConfigMap"]["data"]["jaild.json"])
    cfg["state"]["redis"]["password"] = "x"
    rc, out = check(tmp_path, json.dumps(cfg))
    assert rc == 2 and "state.redis.password: unknown key" in out, out


def load_start(tmp_path, cm):
    path = tmp_path / "start.py"
    path.write_text(cm["data"]["start.py"])
    spec = importlib.util.spec_from_file_location("jaild_start", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


POD = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f0c_41a2.slice/runtime-9ab3.scope"


def fake_node(root, mountinfo, proc_cgroup, groups):
    """A /proc/self and cgroup mounts under root: groups is {dir: files}."""
    os.makedirs(root + "/proc/self")
    with open(root + "/proc/self/mountinfo", "w") as f:
        f.write(mountinfo)
    with open(root + "/proc/self/cgroup", "w") as f:
        f.write(proc_cgroup)
    for d, files in groups.items():
        os.makedirs(root + d, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(root + d, name), "w") as f:
                f.write(text)


V2_MOUNT = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = "".join("%d 24 0:%d %s /sys/fs/cgroup/%s rw,nosuid - cgroup cgroup rw,%s\n" % (40 + i, 30 + i, "%s", c, c)
                    for i, c in enumerate(("memory", "pids", "cpu", "cpuacct")))
V1_CGROUP = "".join("%d:%s:%s\n" % (9 - i, c, "%s") for i, c in enumerate(("memory", "pids", "cpu", "cpuacct")))
CONTROLLERS = {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma\n"}


@pytest.mark.parametrize("case", ["v2-node-namespace", "v2-own-namespace", "v1-own-group", "v1-whole-tree"])
def test_start_script_puts_jails_in_the_pods_cgroup(tmp_path, case):
    cm = manifest()["ConfigMap"]
    start = load_start(tmp_path, cm)
    root = str(tmp_path / "node")
    if case == "v2-node-namespace":  # a privileged container: the node's cgroup namespace
        fake_node(root, V2_MOUNT, "0::/%s\n" % POD,
                  {"/sys/fs/cgroup": CONTROLLERS, "/sys/fs/cgroup/" + POD: {"cgroup.procs": "1\n"}})
        want, own = POD + "/jaild", "/sys/fs/cgroup/" + POD
    elif case == "v2-own-namespace":  # a cgroup namespace of its own: the mount is the container's group
        fake_node(root, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup": dict(CONTROLLERS, **{"cgroup.procs": "1\n"})})
        want, own = "jaild", "/sys/fs/cgroup"
    elif case == "v1-own-group":  # v1: each hierarchy mounted at the container's own group
        g = "/kubepods/burstable/pod6f0c-41a2/9ab3"
        fake_node(root, V1_MOUNTS.replace("%s", g), V1_CGROUP.replace("%s", g), {})
        want, own = "jaild", None
    else:  # v1 with the whole hierarchy visible
        g = "/kubepods/burstable/pod6f0c-41a2/9ab3"
        fake_node(root, V1_MOUNTS.replace("%s", "/"), V1_CGROUP.replace("%s", g), {})
        want, own = g[1:] + "/jaild", None
    src = tmp_path / "in.json"
    src.write_text(cm["data"]["jaild.json"])
    out = tmp_path / "conf" / "jaild.json"
    cfg = start.prepare(root=root, config=str(src), run_config=str(out))
    assert cfg["cgroup_parent"] == want
    assert json.loads(out.read_text()) == dict(json.loads(src.read_text()), cgroup_parent=want)
    assert out.stat().st_mode & 0o777 == 0o600
    assert os.stat(root + "/run/jailrun").st_mode & 0o777 == 0o700
    if own:  # v2: the container's process moved to a leaf, so jaild's groups can have controllers
        with open(root + own + "/daemon/cgroup.procs") as f:
            assert f.read() == "1"
    else:
        assert not os.path.exists(root + "/sys/fs/cgroup/memory")  # v1: nothing moved
    rc, msg = check(tmp_path, out.read_text(), "placed.json")
    assert rc == 0, msg  # a cgroup_parent jaild takes


def test_start_script_refuses_a_group_outside_the_mount(tmp_path):
    cm = manifest()["ConfigMap"]
    start = load_start(tmp_path, cm)
    root = str(tmp_path / "node")
    g = "/kubepods/burstable/pod6f0c-41a2/9ab3"
    fake_node(root, V1_MOUNTS.replace("%s", "/elsewhere"), V1_CGROUP.replace("%s", g), {})
    src = tmp_path / "in.json"
    src.write_text(cm["data"]["jaild.json"])
    with pytest.raises(start.Refused, match="not below the mount's /elsewhere"):
        start.prepare(root=root, config=str(src), run_config=str(tmp_path / "out.json"))


def hcl_heredoc(text, key):
    m = re.search(r"^\s*%s\s*=\s*<<(\w+)\n(.*?)^\1$" % key, text, re.S | re.M)
    assert m, "no %s heredoc in %s" % (key, NOMAD)
    return m.group(2)


def hcl_string(text, key):
    m = re.search(r'^\s*%s\s*=\s*"([^"]*)"' % key, text, re.M)
    assert m, "no %s in %s" % (key, NOMAD)
    return m.group(1)


def test_nomad_job_config_and_stop(tmp_path):
    with open(NOMAD) as f:
        job = f.read()
    assert hcl_string(job, "type") == "system" and hcl_string(job, "driver") == "raw_exec"
    text = hcl_heredoc(job, "data")
    rc, out = check(tmp_path, text)
    assert rc == 0, out
    # jaild reads the file the template renders, private to root.
    assert hcl_string(job, "destination") == "local/jaild.json" and hcl_string(job, "perms") == "0600"
    assert re.search(r'args\s*=\s*\["--config", "\$\{NOMAD_TASK_DIR\}/jaild.json"\]', job)
    # SIGTERM drains; the kill comes after the drain, within a client's
    # default max_kill_timeout (30 s).
    assert hcl_string(job, "kill_signal") == "SIGTERM"
    assert drain_seconds() < int(hcl_string(job, "kill_timeout").rstrip("s")) <= 30


def test_check_validates_without_root_or_side_effects():
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="jd-check-", dir="/tmp"))  # reachable by uid 65534
    try:
        check_only(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def check_only(tmp_path):
    os.chmod(tmp_path, 0o755)
    cfg = {"socket": {"path": str(tmp_path / "not" / "made" / "jaild.sock")}, "registry": str(tmp_path / "r" / "r.db"),
           "workspace_root": str(tmp_path / "ws"), "cgroup_parent": "jaild-test/check-only"}
    path = tmp_path / "jaild.json"
    path.write_text(json.dumps(cfg))
    path.chmod(0o644)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", JAILD, "--config", str(path),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "jaild: %s: valid\n" % path, p
    assert sorted(os.listdir(tmp_path)) == ["jaild.json"]
    path.write_text(json.dumps(dict(cfg, max_live_jobs=0)))
    p = subprocess.run([JAILD, "--config", str(path), "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "max_live_jobs: out of range" in p.stderr, p


def test_jaild_makes_its_socket_directory():
    d = Jaild()
    sock_dir = os.path.join(d.dir, "run", "jaild")
    d.config["socket"]["path"] = os.path.join(sock_dir, "jaild.sock")
    d.socket = d.config["socket"]["path"]
    with open(d.config_path, "w") as f:
        json.dump(d.config, f)
    try:
        d.start()
        assert os.stat(sock_dir).st_mode & 0o777 == 0o755
        assert d.get("/v1/health").json()["status"] == "ok"
    finally:
        assert d.cleanup() == []
