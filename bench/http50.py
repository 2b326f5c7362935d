#!/usr/bin/python3.11
"""bench/http50.py: ctx.http.get to a local server with 50 workers at once
(issue 6). Starts a threaded HTTP server on 127.0.0.1 (allowed by the
bench's policy), then 50 jailruns at once, each timing HTTP50_N gets of a
small JSON document from inside its jail. Reports the latency of a get
(p50/p99 over all calls) and the throughput of the whole run. Writes
bench/out/http50.json. Knobs: HTTP50_WORKERS (50), HTTP50_N (100)."""
import http.server
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
WORKERS = int(os.environ.get("HTTP50_WORKERS", "50"))
N = int(os.environ.get("HTTP50_N", "100"))

BODY = json.dumps({"symbol": "BTCUSDT", "price": "97000.5", "ts": 1}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write: no Nagle / delayed-ACK stall

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


WORKER = """
import time
def tick(ctx):
    ts = []
    for i in range(N):
        t0 = time.perf_counter_ns()
        r = ctx.http.get(URL)
        ts.append(time.perf_counter_ns() - t0)
        if r.get("status") != 200:
            ctx.log.error("failed", r)
            return
    ctx.log.info("T", ts)
"""


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/ticker" % srv.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        pol = os.path.join(tmp, "p.json")
        with open(pol, "w") as f:
            json.dump({"http": {"allow_addresses": ["127.0.0.1"], "rate_per_second": 0},
                       "limits": {"timeout": 600}}, f)
        script = os.path.join(tmp, "w.py")
        with open(script, "w") as f:
            f.write(WORKER.replace("N)", "%d)" % N).replace("URL", repr(url)))
        t0 = time.monotonic()
        ps = [subprocess.Popen([JAILRUN, "--json", "--policy", pol, "--name", "w%d" % i, "--state",
                                os.path.join(tmp, "s.sqlite"), script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for i in range(WORKERS)]
        outs = [p.communicate(timeout=900) for p in ps]
        wall = time.monotonic() - t0
    srv.shutdown()
    lat = []
    for (out, err), p in zip(outs, ps):
        if p.returncode != 0:
            raise SystemExit("bench/http50.py: a worker failed: %s" % err[-1000:])
        for line in err.splitlines():
            m = json.loads(line).get("message", "") if line.startswith("{") else ""
            if m.startswith("T "):
                lat.extend(int(x) / 1000 for x in m[3:-1].split(", "))
    lat.sort()
    res = {"workers": WORKERS, "gets_each": N, "calls": len(lat), "wall_s": wall,
           "p50_us": lat[len(lat) // 2], "p99_us": lat[len(lat) * 99 // 100], "mean_us": statistics.mean(lat),
           "calls_per_s": len(lat) / wall, "loadavg": open("/proc/loadavg").read().split()[:3]}
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "http50.json"), "w") as f:
        json.dump(res, f, indent=2)
    print("ctx.http.get, %d workers x %d: p50 %.0f us, p99 %.0f us, %.0f calls/s over %.1f s (jail start-ups included)"
          % (WORKERS, N, res["p50_us"], res["p99_us"], res["calls_per_s"], wall))


if __name__ == "__main__":
    main()
