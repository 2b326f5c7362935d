"""Cost of a job's cgroup: set-up (create the group, apply the limits) and
teardown (kill what is left, remove it), as jailrun --verbose reports them
on the supervisor's clock. python3.11 bench/cgcost.py JAILRUN SCRIPT N OUT.json"""
import json
import re
import statistics
import subprocess
import sys


def main():
    jailrun, script, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    setup, teardown, backend = [], [], None
    for _ in range(n):
        p = subprocess.run([jailrun, "--verbose", "--profile", "exec", script], capture_output=True,
                           text=True, check=True)
        m = re.search(r"jailrun: (cgroup v[12]): set-up (\d+) us, teardown (\d+) us", p.stderr)
        if not m:
            sys.exit("cgcost: no cgroup line in: %r" % p.stderr)
        backend = m.group(1)
        setup.append(int(m.group(2)))
        teardown.append(int(m.group(3)))
    res = {"backend": backend, "runs": n,
           "setup_us": {"median": statistics.median(setup), "min": min(setup), "max": max(setup)},
           "teardown_us": {"median": statistics.median(teardown), "min": min(teardown),
                           "max": max(teardown)}}
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("%s, %d jobs: set-up median %d us (min %d, max %d), teardown median %d us (min %d, max %d)"
          % (backend, n, res["setup_us"]["median"], res["setup_us"]["min"], res["setup_us"]["max"],
             res["teardown_us"]["median"], res["teardown_us"]["min"], res["teardown_us"]["max"]))


if __name__ == "__main__":
    main()
