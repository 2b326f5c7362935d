"""Packages per session through the client: refused (PackagesUnavailable)
where jaild has no package source; installed with pip from a wheel
directory of wheels this test builds, at setup and later."""
import os
import subprocess
import textwrap

import pytest

from cjaild import JAILD, PYTHON, jd, new_jaild, run, sock  # noqa: F401 (fixtures)
from jailrun_client import InstallFailed, PackagesUnavailable, SandboxClient


def test_no_package_source_is_packages_unavailable(sock):
    c = SandboxClient(packages=["anything"])
    with pytest.raises(PackagesUnavailable) as e:
        run(c.setup())
    assert e.value.status == 409 and "package source" in e.value.message
    run(c.cleanup())

    async def later():
        async with SandboxClient() as d:
            with pytest.raises(PackagesUnavailable):
                await d.install("anything")
            assert (await d.execute_code("1")).success  # the session is fine
    run(later())


def build_wheel(src, out, name, value):
    """A wheel of a one-module distribution `name` (module name with '_')
    whose VALUE is value, built offline with the host's setuptools."""
    mod = name.replace("-", "_")
    d = os.path.join(src, name)
    os.makedirs(d)
    with open(os.path.join(d, "pyproject.toml"), "w") as f:
        f.write(textwrap.dedent("""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "%s"
            version = "1.0"
            [tool.setuptools]
            py-modules = ["%s"]
            """ % (name, mod)))
    with open(os.path.join(d, mod + ".py"), "w") as f:
        f.write("VALUE = %r\n" % value)
    subprocess.run([PYTHON, "-m", "pip", "wheel", "-q", "--no-index", "--no-build-isolation", "--no-deps",
                    "-w", out, d], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def wheel_jd(tmp_path_factory):
    if not os.path.exists(JAILD):
        pytest.skip("jaild is not built (%s)" % JAILD)
    base = tmp_path_factory.mktemp("wheels")
    out = os.path.join(str(base), "wheels")
    os.makedirs(out)
    build_wheel(os.path.join(str(base), "src"), out, "jrdemo-one", "one")
    build_wheel(os.path.join(str(base), "src"), out, "jrdemo-two", "two")
    for p in [str(base), out] + [os.path.join(out, w) for w in os.listdir(out)]:
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    d = new_jaild(sessions={"packages": {"wheel_dir": out}})
    yield d
    left = d.cleanup()
    assert left == [], "cgroups left: %s" % left


def test_packages_from_a_wheel_directory(wheel_jd):
    async def main():
        async with SandboxClient(socket=wheel_jd.socket, packages=["jrdemo-one"]) as c:
            r = await c.execute_code("import jrdemo_one\njrdemo_one.VALUE")
            assert r.success and r.result == "'one'", r
            r = await c.execute_code("import jrdemo_two")
            assert not r.success and r.error_type == "ModuleNotFoundError"
            got = await c.install(["jrdemo-two"])
            assert got["success"] is True and got["installed"] == ["jrdemo-two"]
            assert "Successfully installed jrdemo-two" in got["output"]
            r = await c.execute_code("import jrdemo_two\njrdemo_two.VALUE")
            assert r.success and r.result == "'two'", r
            with pytest.raises(InstallFailed) as e:
                await c.install("jrdemo-not-there")
            assert "jrdemo-not-there" in str(e.value) and e.value.output
        c = SandboxClient(socket=wheel_jd.socket, packages=["jrdemo-one", "jrdemo-not-there"])
        with pytest.raises(InstallFailed) as e:
            await c.setup()
        assert "jrdemo-not-there" in str(e.value) and c.session_id is None
        await c.cleanup()
        live = [x for x in wheel_jd.get("/v1/sessions").json()["sessions"] if x["state"] != "dead"]
        assert live == []  # the session whose packages failed was ended
        async with SandboxClient(socket=wheel_jd.socket) as other:  # installed per session only
            r = await other.execute_code("import jrdemo_one")
            assert not r.success and r.error_type == "ModuleNotFoundError"
    run(main())
