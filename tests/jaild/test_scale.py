"""50 workers ticking every second on one jaild for 60 s: no tick missed,
none overlapping, none late by more than the host's own pace allows."""
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostprobe  # noqa: E402
from jdaemon import JAILD, Jaild  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")

WORKERS = 50
SECONDS = 60

# Each tick logs when it began and ended, on the host's monotonic clock
# (the jail has no time namespace of its own).
TICK = """
import time
def tick(ctx):
    t0 = time.monotonic()
    ctx.log.info("%.6f" % t0)
"""


def test_fifty_workers_tick_every_second_for_a_minute():
    d = Jaild(uid_range={"lo": 310000, "hi": 310999}).start()
    try:
        ids = []
        for i in range(WORKERS):
            r = d.post("/v1/workers", {"name": "w%02d" % i, "source": TICK, "schedule": {"interval": 1}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        time.sleep(SECONDS)
        starts = {}
        for wid in ids:
            w = d.get("/v1/workers/%s" % wid).json()
            assert w["state"] in ("idle", "busy"), w
            assert w["stats"]["restarts"] == 0 and w["stats"]["ticks_failed"] == 0, w
            assert w["stats"]["slots_skipped"] == 0, w
            lines = [json.loads(x) for x in d.get("/v1/workers/%s/logs" % wid).text.splitlines() if x]
            starts[wid] = [float(e["message"]) for e in lines if e.get("type") == "log"]
        # a tick at most this late in its slot (under half a slot, so the
        # slot each tick is in stays unambiguous on any host)
        late_limit = min(hostprobe.slack(0.25), 0.45)
        for wid, ts in starts.items():
            assert len(ts) >= SECONDS // 2, (wid, len(ts))
            # tick k started in slot k: none missed, none twice in a slot
            slots = [round(t - ts[0]) for t in ts]
            assert slots == list(range(len(ts))), (wid, slots)
            assert all(abs(t - ts[0] - k) < late_limit for k, t in enumerate(ts)), wid
        assert d.get("/v1/health").json()["workers"] == WORKERS
    finally:
        left = d.cleanup()
    assert left == []
