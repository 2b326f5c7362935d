#!/usr/bin/python3.11
"""jailctl: the operator's command line for jaild, over its HTTP API on a
unix socket (jaild(8), docs/api.md)."""

import argparse
import json
import os
import sys

import httpx

SOCKET_DEFAULT = "/run/jaild/jaild.sock"
EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE = 1, 3, 2


class ApiError(Exception):
    def __init__(self, status, etype, message):
        super().__init__(f"{etype}: {message}")
        self.status, self.etype, self.message = status, etype, message


def client(socket_path, timeout):
    transport = httpx.HTTPTransport(uds=socket_path)
    return httpx.Client(transport=transport, base_url="http://jaild", timeout=timeout)


def call(c, method, path, body=None):
    r = c.request(method, path, json=body)
    if r.status_code >= 400:
        try:
            e = r.json()["error"]
            raise ApiError(r.status_code, e["type"], e["message"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(r.status_code, "HTTPError", r.text.strip() or r.reason_phrase)
    return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def read_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"jailctl: {path}: {e}")


def show(obj, as_json):
    if as_json or not isinstance(obj, dict):
        print(json.dumps(obj, indent=None if as_json else 2) if not isinstance(obj, str) else obj, end="" if isinstance(obj, str) else "\n")
        return
    for k, v in obj.items():
        print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")


def cmd_list(c, a):
    workers = call(c, "GET", "/v1/workers")["workers"]
    if a.json:
        return show(workers, True)
    print(f"{'ID':<20} {'NAME':<24} {'STATE':<11} {'TICKS':>7} {'FAILED':>7} GEN")
    for w in workers:
        s = w.get("stats", {})
        print(f"{w['id']:<20} {w['name']:<24} {w['state']:<11} {s.get('ticks', 0):>7} {s.get('ticks_failed', 0):>7} {w['generation']}")


def spec_from(a):
    spec = {"name": a.name, "source": read_file(a.script)}
    if a.profile:
        spec["profile"] = a.profile
    if a.policy:
        try:
            spec["policy"] = json.loads(read_file(a.policy))
        except ValueError as e:
            raise SystemExit(f"jailctl: {a.policy}: not JSON: {e}")
    sched = {}
    if a.interval is not None:
        sched["interval"] = a.interval
    if a.tick_timeout is not None:
        sched["tick_timeout"] = a.tick_timeout
    if sched:
        spec["schedule"] = sched
    return spec


def cmd_add(c, a):
    show(call(c, "POST", "/v1/workers", spec_from(a)), a.json)


def cmd_simple(method, suffix):
    def run(c, a):
        show(call(c, method, f"/v1/workers/{a.id}{suffix}"), a.json)
    return run


def cmd_update(c, a):
    body = {}
    if a.script:
        body["source"] = read_file(a.script)
    if a.interval is not None or a.tick_timeout is not None:
        body["schedule"] = {k: v for k, v in (("interval", a.interval), ("tick_timeout", a.tick_timeout)) if v is not None}
    if not body:
        raise SystemExit("jailctl: update: nothing to change (--source, --interval, --tick-timeout)")
    show(call(c, "PATCH", f"/v1/workers/{a.id}", body), a.json)


def cmd_logs(c, a):
    params = {"follow": "1"} if a.follow else {}
    with c.stream("GET", f"/v1/workers/{a.id}/logs", params=params, timeout=None) as r:
        if r.status_code >= 400:
            r.read()
            e = r.json().get("error", {})
            raise ApiError(r.status_code, e.get("type", "HTTPError"), e.get("message", ""))
        for line in r.iter_lines():
            if not line:
                continue
            if a.json:
                print(line, flush=True)
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            kind = e.get("type")
            text = e.get("message", "")
            label = e.get("level", "").upper() if kind == "log" else "OUTPUT" if kind == "output" else "jaild:"
            print(f"{label} {text}", flush=True)


def cmd_run(c, a):
    body = {"source": read_file(a.script)}
    if a.profile:
        body["profile"] = a.profile
    if a.policy:
        body["policy"] = json.loads(read_file(a.policy))
    if a.args:
        body["args"] = a.args
    r = call(c, "POST", "/v1/jobs", body)
    if a.json:
        return show(r, True)
    sys.stdout.write(r.get("stdout", ""))
    sys.stderr.write(r.get("stderr", ""))
    if r.get("error"):
        print(f"jailctl: {r['error']['type']}: {r['error']['message']}", file=sys.stderr)
    return r.get("exit_code", 0)


def cmd_health(c, a):
    show(call(c, "GET", "/v1/health"), a.json)


def cmd_metrics(c, a):
    sys.stdout.write(call(c, "GET", "/metrics"))


def parser():
    p = argparse.ArgumentParser(prog="jailctl", description="Drive jaild over its API socket.")
    p.add_argument("--socket", default=os.environ.get("JAILD_SOCKET", SOCKET_DEFAULT), help="jaild's socket (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for an answer (default: none)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the workers").set_defaults(fn=cmd_list)
    add = sub.add_parser("add", help="create a worker from a script")
    add.add_argument("name")
    add.add_argument("script")
    for q in (add,):
        q.add_argument("--profile")
        q.add_argument("--policy", help="a JSON file of policy overrides")
    up = sub.add_parser("update", help="a new source or schedule for a worker")
    up.add_argument("id")
    up.add_argument("--source", dest="script")
    for q in (add, up):
        q.add_argument("--interval", type=float, help="seconds between ticks (none: ticks only when asked)")
        q.add_argument("--tick-timeout", type=float)
    add.set_defaults(fn=cmd_add)
    up.set_defaults(fn=cmd_update)
    for name, method, suffix, text in (("show", "GET", "", "one worker"), ("rm", "DELETE", "", "delete a worker"),
                                       ("tick", "POST", "/tick", "tick a worker now"),
                                       ("pause", "POST", "/pause", "stop a worker, keeping it"),
                                       ("resume", "POST", "/resume", "start a paused worker")):
        q = sub.add_parser(name, help=text)
        q.add_argument("id", help="the worker's id or name")
        q.set_defaults(fn=cmd_simple(method, suffix))
    logs = sub.add_parser("logs", help="a worker's log")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(fn=cmd_logs)
    run = sub.add_parser("run", help="run a script once (POST /v1/jobs)")
    run.add_argument("script")
    run.add_argument("--profile")
    run.add_argument("--policy")
    run.add_argument("args", nargs="*")
    run.set_defaults(fn=cmd_run)
    sub.add_parser("health").set_defaults(fn=cmd_health)
    sub.add_parser("metrics").set_defaults(fn=cmd_metrics)
    return p


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        with client(a.socket, a.timeout) as c:
            code = a.fn(c, a)
    except ApiError as e:
        print(f"jailctl: {e.etype}: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except (httpx.ConnectError, FileNotFoundError, PermissionError) as e:
        print(f"jailctl: cannot reach jaild at {a.socket}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except httpx.HTTPError as e:
        print(f"jailctl: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
