# Run by bench/run inside the jail (jailrun --profile exec log.py -- N MODE),
# where `ctx` is a global. MODE "inside" times, with time.perf_counter() in
# the jail, N calls of ctx.log.info("x") and N calls of a no-op method of the
# same shape, and prints the cost per call in microseconds. MODE "log" only
# makes the N calls (timed from outside by bench/logcost.py). Both print a
# last line to stdout, so the caller can tell that the script ran to its end.
import sys
import time

n = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "log"


class _NopLog:
    def info(self, *args):
        pass


class _NopCtx:
    log = _NopLog()


def run(c, n):
    t = time.perf_counter()
    for _ in range(n):
        c.log.info("x")
    return time.perf_counter() - t


if mode == "inside":
    nop = run(_NopCtx(), n)
    log = run(ctx, n)  # noqa: F821 - the jail's global
    print("log_us=%.4f noop_us=%.4f" % (log / n * 1e6, nop / n * 1e6))
else:
    run(ctx, n)  # noqa: F821
    print("done")
