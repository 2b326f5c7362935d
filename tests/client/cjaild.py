"""What the client's tests share: the client from the tree (clients/python
on sys.path), a jaild of their own (tests/jaild/jdaemon.py, with a uid range
no other suite uses), and the jails' processes by uid."""
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
CLIENT_DIR = os.path.join(TOP, "clients", "python")
sys.path.insert(0, CLIENT_DIR)
sys.path.insert(0, os.path.join(TOP, "tests", "jaild"))
sys.path.insert(0, os.path.join(TOP, "tests"))
import hostprobe  # noqa: E402,F401
from jdaemon import JAILD, Jaild  # noqa: E402,F401

PYTHON = os.environ.get("PYTHON311") or "/usr/bin/python3.11"
# The client suite's jails: a range of its own, so that its sessions and
# the other suites' jails (which count theirs) never meet.
UID_LO, UID_HI = 400000, 464999


def new_jaild(**config):
    """A started jaild for the client's tests (the caller cleans it up)."""
    config.setdefault("uid_range", {"lo": UID_LO, "hi": UID_HI})
    return Jaild(**config).start()


def jail_pids():
    """Processes running as one of the suite's jail uids."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/status" % pid) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if UID_LO <= int(line.split()[1]) <= UID_HI:
                            out.append(int(pid))
                        break
        except OSError:
            pass
    return out


def run(coro):
    """Runs a test's coroutine to its end."""
    return asyncio.run(coro)


async def wait_for(pred, limit, what):
    """Awaits pred() (a coroutine function) until it is true, within limit s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        v = await pred()
        if v:
            return v
        assert loop.time() < deadline, "%s: not within %g s" % (what, limit)
        await asyncio.sleep(0.02)


# Fixtures (the test modules import them; a conftest.py here would shadow
# tests/conftest.py, which hostprobe imports by that name).
import pytest  # noqa: E402


def _jaild_for_test():
    """A jaild started for a fixture; none of its groups may be left."""
    if not os.path.exists(JAILD):
        pytest.skip("jaild is not built (%s)" % JAILD)
    d = new_jaild()
    yield d
    left = d.cleanup()
    assert left == [], "cgroups left: %s" % left


@pytest.fixture(scope="module")
def jd():
    """One jaild for a module's tests."""
    yield from _jaild_for_test()


@pytest.fixture
def own_jd():
    """A jaild of the test's own (the test may kill it and start it again)."""
    yield from _jaild_for_test()


@pytest.fixture
def sock(jd, monkeypatch):
    """The module's jaild as the client's default socket (JAILD_SOCKET)."""
    monkeypatch.setenv("JAILD_SOCKET", jd.socket)
    return jd.socket
