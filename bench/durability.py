#!/usr/bin/python3.11
"""bench/durability.py: 1000 kill -9 trials per ctx.state backend (issue 6).

Each trial starts a worker that sets k0, k1, ... as fast as it can and
writes "acked i" to its stderr after each set returns (jailrun relays it);
after a random number of acknowledgements jailrun is killed with SIGKILL.
Every acknowledged key must then be in the store with its value. Redis is
a real redis-server on a private unix socket with appendfsync always.
Writes bench/out/durability.json. Knob: DURABILITY_TRIALS (1000)."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
TRIALS = int(os.environ.get("DURABILITY_TRIALS", "1000"))

STORM = """
import os
def tick(ctx):
    i = 0
    while True:
        r = ctx.state.set("k%d" % i, {"i": i})
        if r != {"ok": True}:
            os.write(2, b"FAILED %r\\n" % r)
            return
        os.write(2, b"acked %d\\n" % i)
        i += 1
"""


def trial(script, pol, state, want):
    p = subprocess.Popen([JAILRUN, "--policy", pol, "--state", state, "--name", "storm", script],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    acked = -1
    try:
        for line in p.stderr:
            line = line.decode(errors="replace")
            if "FAILED" in line:
                raise SystemExit("bench/durability.py: " + line)
            if line.startswith("OUTPUT acked "):
                acked = int(line.split()[2])
                if acked + 1 >= want:
                    break
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stderr.close()
    return acked


def stored_sqlite(path):
    con = sqlite3.connect(path)
    rows = dict(con.execute("SELECT key, value FROM kv WHERE ns = 'storm'").fetchall())
    con.close()
    return rows


def stored_redis(sock):
    out = subprocess.run(["redis-cli", "-s", sock, "--raw", "HGETALL", "jailrun:state:storm"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return dict(zip(out[::2], out[1::2]))


def run(backend, tmp, script, pol, rnd):
    lost = acked_total = 0
    t0 = time.monotonic()
    sock = None
    if backend == "redis":
        sock = os.path.join(tmp, "r.sock")
        srv = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", tmp, "--appendonly",
                                "yes", "--appendfsync", "always", "--save", ""], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.05)
    try:
        for t in range(TRIALS):
            if sock:
                subprocess.run(["redis-cli", "-s", sock, "FLUSHALL"], capture_output=True, check=True)
                state = "unix://" + sock
            else:
                state = os.path.join(tmp, "t.sqlite")
            acked = trial(script, pol, state, rnd.randint(1, 30))
            rows = stored_redis(sock) if sock else stored_sqlite(state)
            acked_total += acked + 1
            lost += sum(1 for i in range(acked + 1) if json.loads(rows.get("k%d" % i, "null")) != {"i": i})
            if not sock:
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(state + suffix):
                        os.unlink(state + suffix)
    finally:
        if sock:
            srv.terminate()
            srv.wait(timeout=10)
    return {"trials": TRIALS, "acknowledged_sets": acked_total, "lost": lost, "seconds": time.monotonic() - t0}


def main():
    res = {}
    rnd = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "storm.py")
        with open(script, "w") as f:
            f.write(STORM)
        pol = os.path.join(tmp, "native.json")
        with open(pol, "w") as f:
            json.dump({"python": {"guard": False}}, f)
        for backend in ("sqlite", "redis"):
            res[backend] = run(backend, tmp, script, pol, rnd)
            r = res[backend]
            print("%-6s %d trials, %d acknowledged sets checked, %d lost (%.0f s)"
                  % (backend, r["trials"], r["acknowledged_sets"], r["lost"], r["seconds"]))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "durability.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
