# A worker that keeps a counter in ctx.state and a log file in ctx.files.
#   jailrun --ticks 3 --state /tmp/demo.sqlite --workspace /tmp/demo-ws examples/ctx_worker.py
import json


def tick(ctx):
    n = ctx.state.get("ticks", 0) + 1
    r = ctx.state.set("ticks", n)
    if "error" in r:
        ctx.log.error("state not saved:", r["error"])
        return
    old = ctx.files.read("history.jsonl")
    lines = old["content"] if "content" in old else ""
    lines += json.dumps({"tick": n}) + "\n"
    ctx.files.write("history.jsonl", lines[-4000:])
    ctx.log.info("tick", n, "history:", ctx.files.size("history.jsonl"), "bytes")
