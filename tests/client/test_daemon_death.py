"""A jaild killed (kill -9) under a client: the call in flight, plain or
streamed, raises DaemonUnavailable naming the socket; cleanup() is quiet;
after a restart the session is reported gone (SessionDied)."""
import asyncio

import pytest

from cjaild import hostprobe, jail_pids, own_jd, run, wait_for  # noqa: F401 (fixture)
from jailrun_client import DaemonUnavailable, SandboxClient, SessionDied

SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(30)\nprint('woke')"


async def busy(c):
    return (await c.info())["state"] == "busy"


async def kill_under(jd, c, call):
    """Starts call (a coroutine), kills jaild once the session is busy with
    it, and returns what the call raised."""
    task = asyncio.ensure_future(call)
    await wait_for(lambda: busy(c), hostprobe.slack(10), "the session busy with the snippet")
    jd.kill9()
    with pytest.raises(DaemonUnavailable) as e:
        await task  # a response would mean the snippet ran to its end: it cannot without its daemon
    return e.value


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_daemon_killed_mid_execute(own_jd, streamed):
    async def main():
        c = SandboxClient(socket=own_jd.socket)
        await c.setup()
        try:
            seen = []
            call = c.execute_code(SLEEP, on_output=(lambda s, t: seen.append(t)) if streamed else None)
            err = await kill_under(own_jd, c, call)
            assert err.socket == own_jd.socket and own_jd.socket in str(err)
            assert "closed the connection during POST /v1/sessions/%s/execute" % c.session_id in str(err)
            with pytest.raises(DaemonUnavailable, match="does not exist|nothing is listening"):
                await c.execute_code("1")  # the next call finds no daemon
        finally:
            await c.cleanup()  # the session died with its daemon: nothing to do, no error
        assert c.session_id is None
    run(main())

    async def jails_gone():
        return not jail_pids()
    run(wait_for(jails_gone, hostprobe.slack(5), "the session's jail dying with its jaild"))
    own_jd.start()  # a jaild removes what a killed one left (its job groups)


def test_session_of_a_killed_daemon_is_reported_dead_after_restart(own_jd):
    async def main():
        c = SandboxClient(socket=own_jd.socket)
        await c.setup()
        r = await c.execute_code("x = 1")
        assert r.success
        sid = c.session_id
        own_jd.kill9()
        own_jd.start()
        try:
            with pytest.raises(SessionDied) as e:
                await c.execute_code("print(x)")
            assert e.value.status == 410 and sid in e.value.message and "stopped" in e.value.message
        finally:
            await c.cleanup()
        async with SandboxClient(socket=own_jd.socket) as d:  # the restarted daemon serves new sessions
            r = await d.execute_code("print('fresh')")
            assert r.success and r.data["output"] == "fresh\n"
    run(main())
