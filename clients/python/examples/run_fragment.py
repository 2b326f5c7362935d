"""Runs one of the documentation's fragments unchanged, compiled with
top-level await, around a session this script sets up and cleans up:

  resources.py makes `client`: it is set up, runs a snippet, and its
  session's limits (as jaild granted them) are printed;
  files.py uses a `client` and awaits at top level: it gets a set-up one.

    PYTHONPATH=clients/python /usr/bin/python3.11 run_fragment.py files.py
"""
import ast
import asyncio
import sys

from ai_computer import SandboxClient


async def run(source: str, path: str, scope: dict) -> None:
    code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    made = eval(code, scope)  # a coroutine when the fragment awaits
    if made is not None:
        await made


async def main(path: str) -> None:
    with open(path) as f:
        source = f.read()
    scope = {"SandboxClient": SandboxClient, "asyncio": asyncio}
    if "client = SandboxClient(" in source:
        await run(source, path, scope)
        client = scope["client"]
        await client.setup()
        try:
            s = client.session
            print("session limits: memory_limit=%d cpu_limit=%g timeout=%g"
                  % (s["memory_limit"], s["cpu_limit"], s["timeout"]))
            r = await client.execute_code("print(6 * 7)")
            print("success=%s output=%r" % (r.success, r.data["output"]))
        finally:
            await client.cleanup()
    else:
        scope["client"] = client = SandboxClient()
        await client.setup()
        try:
            await run(source, path, scope)
        finally:
            await client.cleanup()


asyncio.run(main(sys.argv[1]))
