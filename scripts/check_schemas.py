#!/usr/bin/env python3
"""Checks agent/src/api/schemas.json against real agents.

README
  schemas.json holds the JSON Schemas (OpenAPI 3.0 schema objects) of the success
  answer of every route of agent/src/api/spec.rs:
    {"components": {NAME: schema},
     "responses": {"<method> <path>": {"<status>": schema or {"$ref": "#/components/schemas/NAME"}}}}
  This script does not read /v1/openapi.json for the schemas (the served document may
  not carry them yet): it loads schemas.json, takes a scripted tour of the whole API
  (every route of spec.rs but the two WebSocket upgrades) and validates each answer,
  status and body, against the schema of its route and status (error answers against
  components.Error). `nullable: true` is turned into "null is allowed" before
  validating. It exits non-zero on any mismatch, on a route of spec.rs without a
  schema, and on a route the tour could not exercise with its documented status.

  Needs python3 with jsonschema and requests:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install jsonschema requests

  Easiest: let it start its own cluster (nats-server from PATH and four agents from
  the built binary, in a temporary directory, all on loopback; stopped at the end):
    /tmp/venv/bin/python scripts/check_schemas.py --spawn [--bin target/debug/rmds-agent]

  Or point it at running agents (the tour is destructive: it purges outboxes, kicks,
  creates and deletes groups, domains and principals; use a test cluster):
    /tmp/venv/bin/python scripts/check_schemas.py http://127.0.0.1:17801 \
        --peer http://127.0.0.1:17802 \
        --auth-url http://127.0.0.1:17803 --admin-key KEY \
        --ghost-url http://127.0.0.1:17804 --ghost-pid PID
  where the first agent is the one under test, the peer is a second agent of the same
  cluster, the auth agent has `[api.auth] enabled = true` and `admin_key = KEY`, and
  the ghost is an agent this script may SIGSTOP for a few seconds (and SIGCONT) to get
  sender-side dead letters: that needs the first agent's `[delivery] ack_timeout`
  well below its `[discovery] node_offline_timeout` (e.g. 300ms and 3s). Without a
  ghost, the /v1/dead-letters routes cannot be exercised (reported, exit 1, unless
  --allow-unexercised).
"""

import argparse
import copy
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

try:
    import jsonschema
    import requests
except ImportError as e:  # pragma: no cover
    sys.exit(f"needs jsonschema and requests ({e}): python3 -m venv /tmp/venv && "
             "/tmp/venv/bin/pip install jsonschema requests")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WS_STATUS = 101


# ---------------------------------------------------------------- spec and schemas

def spec_routes(spec_path):
    """(method, path, ok status) of every route in spec.rs `routes()`."""
    text = open(spec_path, encoding="utf-8").read()
    body = text[text.index("pub fn routes()"):]
    body = body[:body.index("\n}\n")]
    chunks = re.split(r'(?=\br\(\s*")', body)
    out = []
    for c in chunks:
        m = re.match(r'r\(\s*"(get|post|put|delete|patch)",\s*"([^"]+)"', c)
        if not m:
            continue
        ok = re.search(r'\.ok\(\s*(\d+)', c)
        out.append((m.group(1), m.group(2), int(ok.group(1)) if ok else 200))
    return out


def openapi_to_jsonschema(s):
    """An OpenAPI 3.0 schema object as JSON Schema: `nullable: true` allows null."""
    if isinstance(s, list):
        return [openapi_to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    s = {k: openapi_to_jsonschema(v) for k, v in s.items()}
    if s.pop("nullable", False):
        if "type" in s and not any(k in s for k in ("allOf", "anyOf", "oneOf", "$ref")):
            t = s["type"]
            s["type"] = (t if isinstance(t, list) else [t]) + ["null"]
            if "enum" in s:
                s["enum"] = list(s["enum"]) + [None]
        elif s and not (set(s) <= {"description", "example"}):
            desc = s.pop("description", None)
            s = {"anyOf": [s, {"type": "null"}]}
            if desc:
                s["description"] = desc
        # an empty schema (or one with only a description) allows null already
    return s


def closed(s):
    """`s` with additionalProperties: false on every object that lists properties and
    says nothing of others: finds fields the answers have and the schemas do not name."""
    if isinstance(s, list):
        return [closed(x) for x in s]
    if not isinstance(s, dict):
        return s
    s = {k: closed(v) for k, v in s.items()}
    if "properties" in s and "additionalProperties" not in s:
        s["additionalProperties"] = False
    return s


class Schemas:
    def __init__(self, path, strict_extra=False):
        raw = json.load(open(path, encoding="utf-8"))
        if set(raw) != {"components", "responses"}:
            raise SystemExit(f"{path}: top-level keys must be components and responses, not {sorted(raw)}")
        self.raw = raw
        self.components = {k: openapi_to_jsonschema(v) for k, v in raw["components"].items()}
        if strict_extra:
            self.components = {k: closed(v) for k, v in self.components.items()}
        self.responses = raw["responses"]
        self.problems = []
        for name, s in raw["components"].items():
            self._lint(s, f"components.{name}")
        for route, by_status in self.responses.items():
            for st, s in by_status.items():
                self._lint(s, f"responses[{route!r}][{st}]")

    def _lint(self, s, where):
        if isinstance(s, dict):
            if "$ref" in s:
                name = s["$ref"].rsplit("/", 1)[-1]
                if not s["$ref"].startswith("#/components/schemas/") or name not in self.raw["components"]:
                    self.problems.append(f"{where}: unresolvable $ref {s['$ref']}")
                if len(s) > 1:
                    self.problems.append(f"{where}: $ref with siblings (ignored by OpenAPI 3.0)")
            if s.get("additionalProperties") is False:
                self.problems.append(f"{where}: additionalProperties: false (extra fields would break clients)")
            for k, v in s.items():
                self._lint(v, f"{where}.{k}")
        elif isinstance(s, list):
            for i, v in enumerate(s):
                self._lint(v, f"{where}[{i}]")

    def resolve(self, s, depth=0):
        """Inlines every $ref (the schemas have no cycles)."""
        if depth > 50:
            raise ValueError("$ref too deep (a cycle?)")
        if isinstance(s, list):
            return [self.resolve(x, depth + 1) for x in s]
        if not isinstance(s, dict):
            return s
        if "$ref" in s:
            return self.resolve(self.components[s["$ref"].rsplit("/", 1)[-1]], depth + 1)
        return {k: self.resolve(v, depth + 1) for k, v in s.items()}

    def for_route(self, route, status):
        s = self.responses.get(route, {}).get(str(status))
        if s is None:
            return None
        return self.resolve(openapi_to_jsonschema(s))

    def error(self):
        return self.resolve(self.components["Error"])


def validate(schema, value):
    v = jsonschema.Draft7Validator(schema)
    errs = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [f"at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}" for e in errs]


# ---------------------------------------------------------------- the checker

class Checker:
    def __init__(self, schemas, routes, verbose=False, dump=None):
        self.dump = dump
        self.schemas = schemas
        self.routes = {f"{m} {p}": ok for m, p, ok in routes}
        self.verbose = verbose
        self.failures = []
        self.seen = {}  # route -> set of statuses
        self.calls = 0
        self.http = requests.Session()

    def fail(self, msg):
        self.failures.append(msg)
        print(f"FAIL {msg}", flush=True)

    def call(self, route, base, path, expect, params=None, json_body=None, data=None,
             headers=None, timeout=30):
        """One request to `base + path` for the route `route` ("get /v1/x/{id}"),
        validated; `expect`: the status (or statuses) the tour expects."""
        method = route.split(" ", 1)[0]
        if route not in self.routes:
            self.fail(f"{route}: the tour calls a route that spec.rs does not have")
        expect = (expect,) if isinstance(expect, int) else tuple(expect)
        h = dict(headers or {})
        if method in ("post", "put", "delete") and json_body is None and data is None:
            h.setdefault("X-Rmds-Request", "1")
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        self.calls += 1
        url = base.rstrip("/") + path
        try:
            r = self.http.request(method.upper(), url, params=params, data=data, headers=h, timeout=timeout)
        except requests.RequestException as e:
            self.fail(f"{route} {method.upper()} {path}: request failed: {e}")
            return None
        what = f"{route} ({method.upper()} {r.request.path_url})"
        self.seen.setdefault(route, set()).add(r.status_code)
        ok = True
        if r.status_code not in expect:
            self.fail(f"{what}: status {r.status_code}, expected {'/'.join(map(str, expect))}: {r.text[:300]}")
            ok = False
        body = None
        ctype = r.headers.get("content-type", "")
        if r.status_code == 204:
            if r.content:
                self.fail(f"{what}: 204 with a body: {r.text[:200]}")
                ok = False
        else:
            schema = self.schemas.for_route(route, r.status_code)
            if schema is None and r.status_code >= 400:
                schema = self.schemas.error()
            if schema is None:
                self.fail(f"{what}: no schema in schemas.json for status {r.status_code}")
                return r
            if schema.get("type") == "string":
                if not ctype.startswith("text/plain"):
                    self.fail(f"{what}: content-type {ctype!r}, expected text/plain")
                    ok = False
                body = r.text
            else:
                if not ctype.startswith("application/json"):
                    self.fail(f"{what}: content-type {ctype!r}, expected application/json")
                    ok = False
                try:
                    body = r.json()
                except ValueError:
                    self.fail(f"{what}: body is not JSON: {r.text[:200]}")
                    return r
            if self.dump is not None:
                self.dump.write(json.dumps({"route": route, "status": r.status_code, "body": body}) + "\n")
            for e in validate(schema, body):
                self.fail(f"{what} {r.status_code}: {e}")
                ok = False
        if ok and self.verbose:
            print(f"ok   {what} {r.status_code}", flush=True)
        r.checked_json = body
        return r

    def j(self, *a, **kw):
        """`call`, returning the parsed body (or {} when the call failed)."""
        r = self.call(*a, **kw)
        b = getattr(r, "checked_json", None) if r is not None else None
        return b if b is not None else {}


def wait_for(what, fn, timeout=15.0, every=0.2):
    end = time.time() + timeout
    while True:
        try:
            v = fn()
        except (OSError, ValueError, KeyError, TypeError):
            v = None
        if v:
            return v
        if time.time() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def get_json(base, path, **kw):
    return requests.get(base.rstrip("/") + path, timeout=10, **kw).json()


# ---------------------------------------------------------------- the tour

def tour(ck, a, b, auth=None, admin_key=None, ghost=None, ghost_pid=None, nats_stop=None):
    t = uuid.uuid4().hex[:6]
    ch, dch, kch, dlq = f"sc-{t}", f"scd-{t}", f"sck-{t}", f"scq-{t}"
    dom, dom2, grp = f"scdom{t}", f"scdomb{t}", f"w-{t}"
    me_a = get_json(a, "/livez")["node_id"]
    me_b = get_json(b, "/livez")["node_id"]
    print(f"# tour {t}: agent {me_a} ({a}), peer {me_b} ({b})", flush=True)

    # -- probes and observability
    ck.call("get /healthz", a, "/healthz", 200)
    ck.call("get /livez", a, "/livez", 200)
    ck.call("get /readyz", a, "/readyz", 200)
    ck.call("get /metrics", a, "/metrics", 200)
    doc = ck.j("get /v1/openapi.json", a, "/v1/openapi.json", 200)
    served = {f"{m} {p}" for p, ops in doc.get("paths", {}).items() for m in ops}
    if served and served != set(ck.routes):
        print(f"WARN the served document and spec.rs differ (binary older than the source?): "
              f"only served {sorted(served - set(ck.routes))}, only in spec.rs {sorted(set(ck.routes) - served)}")
    ck.call("get /v1/stats", a, "/v1/stats", 200)
    ck.call("get /v1/resources/current", a, "/v1/resources/current", 200)
    ck.call("get /v1/resources/history", a, "/v1/resources/history", 200)
    ck.call("get /v1/resources/history", a, "/v1/resources/history", 200, params={"limit": "3"})
    ck.call("get /v1/resources/history", a, "/v1/resources/history", 400, params={"limit": "0"})

    # -- channels and cluster views
    ck.call("put /v1/channels/{ch}", a, f"/v1/channels/{ch}", 200, json_body={"role": "rw"})
    ck.call("put /v1/channels/{ch}", a, f"/v1/channels/{ch}", 200, json_body={"role": "rw"})
    ck.call("put /v1/channels/{ch}", b, f"/v1/channels/{ch}", 200, json_body={"role": "rw"})
    ck.call("put /v1/channels/{ch}", a, f"/v1/channels/{ch}", 400, json_body={"role": "boss"})
    members = lambda base, c, node: any(m["node"] == node for m in get_json(base, f"/v1/channels/{c}").get("members", []))
    wait_for(f"{me_a} to see {me_b} in {ch}", lambda: members(a, ch, me_b))
    wait_for(f"{me_b} to see {me_a} in {ch}", lambda: members(b, ch, me_a))
    ck.call("get /v1/nodes", a, "/v1/nodes", 200)
    ck.call("get /v1/topology", a, "/v1/topology", 200)
    ck.call("get /v1/channels", a, "/v1/channels", 200)
    ck.call("get /v1/channels/{ch}", a, f"/v1/channels/{ch}", 200)
    ck.call("get /v1/channels/{ch}", a, f"/v1/channels/nobody-{t}", 404)
    ck.call("get /v1/channels/{ch}/subscribers", a, f"/v1/channels/{ch}/subscribers", 200)
    ck.call("get /v1/channels/{ch}/subscribers", a, f"/v1/channels/nobody-{t}/subscribers", 200)
    ck.call("get /v1/channels/{ch}/policy", a, f"/v1/channels/{ch}/policy", 200)
    ck.call("put /v1/channels/{ch}/policy", a, f"/v1/channels/{ch}/policy", 200,
            json_body={"ttl": "2h", "max_messages_per_receiver": 5000, "compression": False, "unrouted": "keep",
                       "retry": {"max_attempts": 8, "initial_delay": "500ms", "factor": 1.5, "max_delay": "20s"}})
    ck.call("put /v1/channels/{ch}/policy", b, f"/v1/channels/{ch}/policy", 200,
            json_body={"circuit_breaker": {"error_threshold": 0.9, "min_requests": 50, "open_timeout": "1s"}})
    ck.call("put /v1/channels/{ch}/policy", a, f"/v1/channels/{ch}/policy", 400, json_body={"nope": 1})

    # -- publish from the peer, so that this agent's log gets the messages
    pub = "post /v1/channels/{ch}/messages"
    m_json = ck.j(pub, b, f"/v1/channels/{ch}/messages", 201, json_body={"text": "hello"}).get("id")
    m_text = ck.j(pub, b, f"/v1/channels/{ch}/messages", 201, data=b"plain text", params={"ttl": "10m"},
                  headers={"Content-Type": "text/plain", "X-Rmds-Request": "1", "rmds-header-trace": "abc"}).get("id")
    m_bin = ck.j(pub, b, f"/v1/channels/{ch}/messages", 201, data=b"\xff\x00\xfe",
                 headers={"Content-Type": "application/octet-stream"}).get("id")
    key = f"idem-{t}"
    m_idem = ck.j(pub, b, f"/v1/channels/{ch}/messages", 201, json_body=None, data=b"null",
                  headers={"Content-Type": "application/json", "Idempotency-Key": key}).get("id")
    dup = ck.j(pub, b, f"/v1/channels/{ch}/messages", 200, data=b"null",
               headers={"Content-Type": "application/json", "Idempotency-Key": key})
    if dup and dup.get("id") != m_idem:
        ck.fail(f"{pub}: a repeated Idempotency-Key answered another id")
    ck.call(pub, b, f"/v1/channels/{ch}/messages", 400, data=b"{not json", headers={"Content-Type": "application/json"})
    ck.call(pub, b, f"/v1/channels/nomember-{t}/messages", 403, json_body={"x": 1})
    bat = "post /v1/channels/{ch}/messages:batch"
    batch = ck.j(bat, b, f"/v1/channels/{ch}/messages:batch", 201, json_body=[{"n": 1}, {"n": 2}])
    batch_ids = [x.get("id") for x in batch.get("results", [])]
    ck.call(bat, b, f"/v1/channels/{ch}/messages:batch", 201, data=b'{"n":3}\n{"n":4}\n',
            headers={"Content-Type": "application/x-ndjson", "Idempotency-Key": f"b-{t}"})
    again = ck.j(bat, b, f"/v1/channels/{ch}/messages:batch", 201, data=b'{"n":3}\n{"n":4}\n',
                 headers={"Content-Type": "application/x-ndjson", "Idempotency-Key": f"b-{t}"})
    if again and not all(x.get("duplicate") for x in again.get("results", [])):
        ck.fail(f"{bat}: a repeated batch Idempotency-Key did not answer duplicates")
    ck.call(bat, b, f"/v1/channels/{ch}/messages:batch", 400, json_body=[])
    big = "x" * (2 * 1024 * 1024)  # over the NATS max payload: that item alone fails
    ck.call(bat, b, f"/v1/channels/{ch}/messages:batch", 207, json_body=[{"n": 5}, big])
    n_published = 8  # json, text, binary, idempotent, 2 batch, 2 ndjson, 1 of the 207

    # -- pull through the default group on this agent, then settle
    pull = "get /v1/channels/{ch}/messages"
    got = {}

    def pull_all():
        body = ck.j(pull, a, f"/v1/channels/{ch}/messages", 200, params={"max": "20", "wait": "1s"})
        for m in body.get("messages", []):
            got[m["id"]] = m
        return len(got) >= n_published
    wait_for(f"{n_published} messages on {me_a}", pull_all, timeout=20)
    if m_bin in got and "data_base64" not in got[m_bin]:
        ck.fail(f"{pull}: the binary payload came without data_base64")
    if m_text in got and got[m_text].get("headers", {}).get("trace") != "abc":
        ck.fail(f"{pull}: the rmds-header-trace header was not kept")
    ck.call(pull, a, f"/v1/channels/{ch}/messages", 200, params={"group": "default", "max": "5", "consumer": "c1"})
    ck.call(pull, a, f"/v1/channels/{ch}/messages", 404, params={"group": f"none-{t}"})
    settle = {"group": "default", "ids": [m_json, "01NOSUCHMESSAGE0000000000"]}
    ck.call("post /v1/channels/{ch}/acks", a, f"/v1/channels/{ch}/acks", 200, json_body=settle)
    ck.call("post /v1/channels/{ch}/nacks", a, f"/v1/channels/{ch}/nacks", 200,
            json_body={"group": "default", "ids": [m_text], "delay": "1s", "error": "temporarily failed"})
    ck.call("post /v1/channels/{ch}/extends", a, f"/v1/channels/{ch}/extends", 200,
            json_body={"ids": [m_bin]})
    ck.call("post /v1/channels/{ch}/terms", a, f"/v1/channels/{ch}/terms", 200,
            json_body={"group": "default", "ids": [m_bin]})
    ck.call("post /v1/channels/{ch}/acks", a, f"/v1/channels/{ch}/acks", 400,
            json_body={"ids": [m_json], "delay": "1s"})

    # -- status at the sender (the peer published them)
    st = "get /v1/messages/{id}"
    wait_for(f"{m_json} consumed", lambda: any(
        r["state"] == "consumed" and r["receiver"] == me_a
        for r in get_json(b, f"/v1/messages/{m_json}")["receivers"]))
    for mid in (m_json, m_text, m_bin, batch_ids[0] if batch_ids else m_json):
        ck.call(st, b, f"/v1/messages/{mid}", 200)
    ck.call(st, b, "/v1/messages/01NOSUCHMESSAGE0000000000", 404)
    ck.call("put /v1/channels/{ch}", b, f"/v1/channels/{ch}-w", 200, json_body={"role": "writer"})
    unr = ck.j(pub, b, f"/v1/channels/{ch}-w/messages", 201, json_body={"nobody": "reads"})
    if unr and not unr.get("unrouted"):
        ck.fail(f"{pub}: a message without readers is not unrouted")
    if unr.get("id"):
        ck.call(st, b, f"/v1/messages/{unr['id']}", 200)
    ck.call("delete /v1/channels/{ch}", b, f"/v1/channels/{ch}-w", 200)
    ck.call(st, b, "/v1/messages/not-a-ulid!", 400)

    # -- consumer groups and their dead letters
    gp = f"/v1/channels/{ch}/groups"
    ck.call("get /v1/channels/{ch}/groups", a, gp, 200)
    ck.call("post /v1/channels/{ch}/groups", a, gp, 201,
            json_body={"name": grp, "start": "earliest", "ack_wait": "300ms", "max_deliveries": 1,
                       "max_in_flight": 0, "idle_ttl": "1d", "backoff": ["100ms", "1s"]})
    ck.call("post /v1/channels/{ch}/groups", a, gp, 409, json_body={"name": grp})
    ck.call("post /v1/channels/{ch}/groups", a, gp, 201, json_body={"name": f"{grp}-late", "start": "latest"})
    ck.call("post /v1/channels/{ch}/groups", a, gp, 201, json_body={"name": f"{grp}-off", "offset": 2})
    ck.call("post /v1/channels/{ch}/groups", a, gp, 201,
            json_body={"name": f"{grp}-time", "time": "2020-01-01T00:00:00Z"})
    leased = ck.j(pull, a, f"/v1/channels/{ch}/messages", 200,
                  params={"group": grp, "max": "3", "consumer": "worker-1"}).get("messages", [])
    if leased:
        ck.call("post /v1/channels/{ch}/nacks", a, f"/v1/channels/{ch}/nacks", 200,
                json_body={"group": grp, "ids": [leased[0]["id"]], "error": "boom"})
    ck.call("get /v1/channels/{ch}/groups/{g}", a, f"{gp}/{grp}", 200)
    dl = f"{gp}/{grp}/dead-letters"

    def two_dead():
        ck.j(pull, a, f"/v1/channels/{ch}/messages", 200, params={"group": grp, "max": "1", "wait": "300ms"})
        return len(get_json(a, dl).get("dead_letters", [])) >= 2
    wait_for(f"dead letters in {grp}", two_dead, timeout=15)
    dead = ck.j("get /v1/channels/{ch}/groups/{g}/dead-letters", a, dl, 200).get("dead_letters", [])
    ck.call("get /v1/channels/{ch}/groups/{g}/dead-letters", a, dl, 200, params={"limit": "1"})
    if len(dead) >= 2:
        d1, d2 = dead[0]["id"], dead[1]["id"]
        ck.call("get /v1/channels/{ch}/groups/{g}/dead-letters/{id}", a, f"{dl}/{d1}", 200)
        ck.call("get /v1/channels/{ch}/groups/{g}/dead-letters/{id}", a, f"{dl}/{d2}", 200)
        ck.call("post /v1/channels/{ch}/groups/{g}/dead-letters/{id}/redrive", a, f"{dl}/{d1}/redrive", 200)
        ck.call("get /v1/channels/{ch}/groups/{g}/dead-letters", a, dl, 200)
        ck.call("delete /v1/channels/{ch}/groups/{g}/dead-letters/{id}", a, f"{dl}/{d2}", 204)
        ck.call("delete /v1/channels/{ch}/groups/{g}/dead-letters/{id}", a, f"{dl}/{d2}", 404)
    ck.call("get /v1/channels/{ch}/groups/{g}/dead-letters/{id}", a, f"{dl}/01NOSUCH", 404)
    ck.call("get /v1/channels/{ch}/groups", a, gp, 200)
    ck.call("post /v1/channels/{ch}/groups/{g}/reset", a, f"{gp}/{grp}/reset", 200, json_body={"start": "latest"})
    ck.call("post /v1/channels/{ch}/groups/{g}/reset", a, f"{gp}/{grp}/reset", 200, json_body={"offset": 1})
    ck.call("post /v1/channels/{ch}/groups/{g}/reset", a, f"{gp}/{grp}/reset", 400,
            json_body={"offset": 1, "start": "latest"})
    ck.call("get /v1/channels/{ch}/groups/{g}", a, f"{gp}/{grp}", 200)
    for g in (grp, f"{grp}-late", f"{grp}-off", f"{grp}-time"):
        ck.call("delete /v1/channels/{ch}/groups/{g}", a, f"{gp}/{g}", 204)
    ck.call("get /v1/channels/{ch}/groups/{g}", a, f"{gp}/{grp}", 404)

    # -- domains
    schema = {"fields": {"item": "string", "qty": "number"}}
    dpol = {"ttl": "1h", "overflow": "reject", "retry": {"max_attempts": 3, "initial_delay": "2s"},
            "circuit_breaker": {"error_threshold": 0.5, "open_timeout": "10s"}}
    ck.call("get /v1/domains", a, "/v1/domains", 200)
    ck.call("post /v1/domains", a, "/v1/domains", 201, json_body={"name": dom, "schema": schema, "policy": dpol})
    ck.call("post /v1/domains", a, "/v1/domains", 409, json_body={"name": dom})
    ck.call("post /v1/domains", a, "/v1/domains", 201, json_body={"name": dom2})
    ck.call("post /v1/domains", b, "/v1/domains", 201, json_body={"name": dom, "schema": schema})
    ck.call("get /v1/domains/{d}", a, f"/v1/domains/{dom}", 200)
    ck.call("get /v1/domains/{d}", a, "/v1/domains/default", 200)
    ck.call("put /v1/domains/{d}", a, f"/v1/domains/{dom2}", 200,
            json_body={"schema": {"type": "object", "required": ["a"]}, "policy": {"unrouted": "keep"}})
    ck.call("put /v1/domains/{d}/channels/{ch}", a, f"/v1/domains/{dom}/channels/{dch}", 200,
            json_body={"role": "rw", "policy": {"overflow": "drop_oldest"}})
    ck.call("put /v1/domains/{d}/channels/{ch}", b, f"/v1/domains/{dom}/channels/{dch}", 200, json_body={"role": "rw"})
    ck.call("put /v1/domains/{d}/channels/{ch}", a, f"/v1/domains/{dom2}/channels/{dch}-x", 200, json_body={})
    ck.call("get /v1/domains/{d}/channels/{ch}", a, f"/v1/domains/{dom}/channels/{dch}", 200)
    ck.call("get /v1/domains/{d}/channels/{ch}", a, f"/v1/domains/{dom2}/channels/{dch}", 404)
    ck.call("get /v1/channels/{ch}/policy", a, f"/v1/channels/{dch}/policy", 200)
    ck.call("get /v1/domains", a, "/v1/domains", 200)
    wait_for(f"{me_b} to see {me_a} in {dch}", lambda: members(b, dch, me_a))
    dpub = f"/v1/domains/{dom}/channels/{dch}/messages"
    ck.call("post /v1/domains/{d}/channels/{ch}/messages", b, dpub, 201, json_body={"item": "tea", "qty": 2},
            params={"ttl": "1h"})
    ck.call("post /v1/domains/{d}/channels/{ch}/messages", b, dpub, 400, json_body={"item": 5})
    for status in (201, 200):
        ck.call("post /v1/domains/{d}/channels/{ch}/messages", b, dpub, status, data=b'{"item":"jam","qty":1}',
                headers={"Content-Type": "application/json", "Idempotency-Key": f"d-{t}"})
    ck.call("post /v1/domains/{d}/channels/{ch}/messages:batch", b, dpub + ":batch", 201,
            json_body=[{"item": "tea", "qty": 2}, {"item": "cake", "qty": 1}])
    ck.call("post /v1/domains/{d}/channels/{ch}/messages:batch", b, dpub + ":batch", 207,
            json_body=[{"item": "tea", "qty": 2}, {"item": 5}])
    seen = set()

    def dpull():
        body = ck.j("get /v1/domains/{d}/channels/{ch}/messages", a, dpub, 200,
                    params={"group": "default", "max": "10", "wait": "1s", "consumer": "shop-1"})
        seen.update(m["id"] for m in body.get("messages", []))
        return len(seen) >= 5
    wait_for(f"domain messages on {me_a}", dpull, timeout=20)
    ck.call("delete /v1/domains/{d}", a, f"/v1/domains/{dom2}", 204)
    ck.call("get /v1/domains/{d}", a, f"/v1/domains/{dom2}", 404)
    ck.call("delete /v1/domains/{d}", a, "/v1/domains/default", 400)
    ck.call("delete /v1/domains/{d}", b, f"/v1/domains/{dom}", 204)

    # -- management: kick, purge, audit
    ck.call("put /v1/channels/{ch}", b, f"/v1/channels/{kch}", 200, json_body={"role": "reader"})
    wait_for(f"{me_a} to see {me_b} in {kch}", lambda: members(a, kch, me_b))
    ck.call("post /v1/nodes/{id}/channels/{ch}/kick", a, f"/v1/nodes/{me_b}/channels/{kch}/kick", 200,
            params={"wait": "2s"})
    ck.call("post /v1/nodes/{id}/channels/{ch}/kick", a, "/v1/nodes/bad%20id/channels/x/kick", 400)
    kicked = ck.j("get /healthz", b, "/healthz", 200).get("kicked")
    if not kicked:
        ck.fail(f"get /healthz: {me_b} does not show its kick record")
    ck.call("get /v1/nodes", b, "/v1/nodes", 200)
    ck.call("post /v1/nodes/{id}/kick", a, f"/v1/nodes/nosuchnode-{t}/kick", 200, params={"wait": "1s"})
    ck.call("post /v1/nodes/{id}/kick", a, f"/v1/nodes/x/kick", 400, params={"wait": "2min"})
    ck.call("put /v1/channels/{ch}", b, f"/v1/channels/{kch}", 200, json_body={"role": "reader"})
    ck.call("delete /v1/channels/{ch}", b, f"/v1/channels/{kch}", 200)
    ck.call("delete /v1/channels/{ch}", b, f"/v1/channels/{kch}", 404)
    ck.call("post /v1/purge", a, "/v1/purge", 200, json_body={"what": "queued", "scope": "self"})
    ck.call("post /v1/purge", a, "/v1/purge", 200, json_body={"what": "sent"})
    ck.call("post /v1/purge", a, "/v1/purge", 200, json_body={"what": "sent", "scope": me_b}, params={"wait": "2s"})
    ck.call("post /v1/purge", a, "/v1/purge", 200, json_body={"what": "sent", "scope": "all"}, params={"wait": "1s"})
    ck.call("post /v1/purge", a, "/v1/purge", 400, json_body={"what": "everything"})
    ck.call("get /v1/audit", a, "/v1/audit", 200)
    ck.call("get /v1/audit", b, "/v1/audit", 200, params={"limit": "3"})
    ck.call("get /v1/audit", a, "/v1/audit", 400, params={"limit": "0"})

    # -- stats with a series, after all this traffic
    ck.call("get /v1/stats", a, "/v1/stats", 200, params={"period": "1h", "granularity": "1m"})
    ck.call("get /v1/stats", b, "/v1/stats", 200, params={"period": "1m"})
    ck.call("get /v1/stats", a, "/v1/stats", 400, params={"period": "forever"})
    ck.call("get /v1/topology", b, "/v1/topology", 200)

    # -- auth (this agent: disabled; the auth agent: enabled)
    ck.call("get /v1/auth/whoami", a, "/v1/auth/whoami", 200)
    ck.call("get /v1/auth/users", a, "/v1/auth/users", 200)
    if auth and admin_key:
        tour_auth(ck, auth, admin_key, t)
    else:
        print("# no --auth-url/--admin-key: auth routes with auth enabled not exercised")

    # -- sender-side dead letters (the ghost stops answering for a moment)
    if ghost and ghost_pid:
        tour_dead(ck, a, ghost, ghost_pid, dlq, t)
    else:
        print("# no --ghost-url/--ghost-pid: /v1/dead-letters/{id} routes not exercised")
    ck.call("get /v1/dead-letters", a, "/v1/dead-letters", 200)
    ck.call("get /v1/dead-letters/{id}", a, "/v1/dead-letters/01NOSUCHMESSAGE0000000000", 404)

    # -- readiness when NATS is gone (only when this script started nats-server)
    if nats_stop:
        nats_stop()
        wait_for("readyz 503", lambda: requests.get(a + "/readyz", timeout=5).status_code == 503, timeout=20)
        ck.call("get /readyz", a, "/readyz", 503)
        h = ck.j("get /healthz", a, "/healthz", 200)
        if h.get("nats") != "disconnected":
            ck.fail("get /healthz: nats is not disconnected after nats-server stopped")
        ck.call("get /v1/nodes", a, "/v1/nodes", 200)
        ck.call("post /v1/purge", a, "/v1/purge", 200, json_body={"what": "sent", "scope": "all"},
                params={"wait": "200ms"})


def tour_auth(ck, c, admin_key, t):
    adm = {"X-API-Key": admin_key}
    ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 401)
    ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 200, headers=adm)
    ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 200, headers={"Authorization": f"Bearer {admin_key}"})
    user, pw = "admin", f"pw-{t}-long-enough"
    r = ck.call("post /v1/auth/bootstrap", c, "/v1/auth/bootstrap", (201, 409),
                json_body={"username": user, "password": pw})
    if r is not None and r.status_code == 409:
        print("# a user existed already: bootstrap answered 409; logging in as a new user instead")
        user = f"op-{t}"
        ck.call("post /v1/auth/users", c, "/v1/auth/users", 201, headers=adm,
                json_body={"username": user, "password": pw, "role": "admin"})
    ck.call("post /v1/auth/bootstrap", c, "/v1/auth/bootstrap", 409, json_body={"username": "x2", "password": pw})
    ck.call("post /v1/auth/login", c, "/v1/auth/login", 401, json_body={"username": user, "password": "wrong password"})
    tok = ck.j("post /v1/auth/login", c, "/v1/auth/login", 200, json_body={"username": user, "password": pw})
    if tok.get("refresh_token"):
        tok2 = ck.j("post /v1/auth/refresh", c, "/v1/auth/refresh", 200,
                    json_body={"refresh_token": tok["refresh_token"]})
        ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 200,
                headers={"Authorization": f"Bearer {tok2.get('access_token', tok['access_token'])}"})
        ck.call("post /v1/auth/refresh", c, "/v1/auth/refresh", 401,
                json_body={"refresh_token": tok["access_token"]})
    ann = f"ann-{t}"
    ck.call("post /v1/auth/users", c, "/v1/auth/users", 201, headers=adm,
            json_body={"username": ann, "password": "a long password", "role": "consumer",
                       "grants": [{"channel": "orders*", "actions": ["consume"]}]})
    ck.call("post /v1/auth/users", c, "/v1/auth/users", 409, headers=adm,
            json_body={"username": ann, "password": "a long password", "role": "consumer"})
    key = ck.j("post /v1/auth/keys", c, "/v1/auth/keys", 201, headers=adm,
               json_body={"name": "billing", "role": "publisher"})
    ck.call("post /v1/auth/keys", c, "/v1/auth/keys", 400, headers=adm, json_body={"name": "", "role": "publisher"})
    if key.get("key"):
        ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 200, headers={"X-API-Key": key["key"]})
        ck.call("get /v1/auth/users", c, "/v1/auth/users", 403, headers={"X-API-Key": key["key"]})
    svc = ck.j("post /v1/auth/service-accounts", c, "/v1/auth/service-accounts", 201, headers=adm,
               json_body={"name": "etl", "role": "reader-only",
                          "grants": [{"channel": "*", "actions": ["publish", "manage"]}]})
    if svc.get("secret"):
        ts, nonce = str(int(time.time())), uuid.uuid4().hex
        canon = "\n".join(["GET", "/v1/auth/whoami", ts, nonce, hashlib.sha256(b"").hexdigest()])
        sig = hmac.new(svc["secret"].encode(), canon.encode(), hashlib.sha256).hexdigest()
        signed = {"X-Service-ID": svc["id"], "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": sig}
        ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 200, headers=signed)
        ck.call("get /v1/auth/whoami", c, "/v1/auth/whoami", 401, headers=signed)  # replayed nonce
    ck.call("get /v1/auth/users", c, "/v1/auth/users", 200, headers=adm)
    ck.call("get /v1/auth/keys", c, "/v1/auth/keys", 200, headers=adm)
    ck.call("get /v1/auth/service-accounts", c, "/v1/auth/service-accounts", 200, headers=adm)
    ck.call("get /v1/nodes", c, "/v1/nodes", 200, headers=adm)
    ck.call("delete /v1/auth/users/{id}", c, f"/v1/auth/users/{ann}", 204, headers=adm)
    ck.call("delete /v1/auth/users/{id}", c, f"/v1/auth/users/{ann}", 404, headers=adm)
    if key.get("id"):
        ck.call("delete /v1/auth/keys/{id}", c, f"/v1/auth/keys/{key['id']}", 204, headers=adm)
    ck.call("delete /v1/auth/keys/{id}", c, "/v1/auth/keys/0000000000000000", 404, headers=adm)
    if svc.get("id"):
        ck.call("delete /v1/auth/service-accounts/{id}", c, f"/v1/auth/service-accounts/{svc['id']}", 204,
                headers=adm)
    ck.call("delete /v1/auth/service-accounts/{id}", c, "/v1/auth/service-accounts/0000000000000000", 404,
            headers=adm)


def tour_dead(ck, a, ghost, ghost_pid, dlq, t):
    me_g = get_json(ghost, "/livez")["node_id"]
    ck.call("put /v1/channels/{ch}", ghost, f"/v1/channels/{dlq}", 200, json_body={"role": "reader"})
    ck.call("put /v1/channels/{ch}", a, f"/v1/channels/{dlq}", 200, json_body={"role": "writer"})
    ck.call("put /v1/channels/{ch}/policy", a, f"/v1/channels/{dlq}/policy", 200,
            json_body={"retry": {"max_attempts": 1, "initial_delay": "50ms"}})
    wait_for(f"the ghost {me_g} online in {dlq}", lambda: any(
        m["node"] == me_g and m["online"] for m in get_json(a, f"/v1/channels/{dlq}").get("members", [])))
    ids = []
    os.kill(ghost_pid, signal.SIGSTOP)
    try:
        for i in range(2):
            r = ck.j("post /v1/channels/{ch}/messages", a, f"/v1/channels/{dlq}/messages", 201,
                     json_body={"n": i})
            ids.append(r.get("id"))
        wait_for("sender-side dead letters", lambda: len(
            get_json(a, "/v1/dead-letters", params={"channel": dlq}).get("dead_letters", [])) >= 2, timeout=20)
        ck.call("get /v1/dead-letters", a, "/v1/dead-letters", 200,
                params={"channel": dlq, "receiver": me_g, "limit": "10"})
        ck.call("get /v1/dead-letters/{id}", a, f"/v1/dead-letters/{ids[0]}", 200)
        ck.call("get /v1/dead-letters/{id}", a, f"/v1/dead-letters/{ids[1]}", 200)
        ck.call("delete /v1/dead-letters/{id}", a, f"/v1/dead-letters/{ids[1]}", 204, params={"receiver": me_g})
        ck.call("delete /v1/dead-letters/{id}", a, f"/v1/dead-letters/{ids[1]}", 404)
        ck.call("post /v1/dead-letters/{id}/redrive", a, f"/v1/dead-letters/{ids[0]}/redrive", 200,
                params={"receiver": me_g})
        ck.call("post /v1/dead-letters/{id}/redrive", a, f"/v1/dead-letters/{ids[0]}/redrive", 404)
        ck.call("get /v1/messages/{id}", a, f"/v1/messages/{ids[0]}", 200)
        ck.call("get /v1/messages/{id}", a, f"/v1/messages/{ids[1]}", 200)
        # offline now: a new message stays queued (never sent: sent_at null)
        wait_for(f"the ghost {me_g} offline", lambda: any(
            m["node"] == me_g and not m["online"] for m in get_json(a, f"/v1/channels/{dlq}").get("members", [])),
            timeout=20)
        ck.call("get /v1/channels/{ch}", a, f"/v1/channels/{dlq}", 200)
        ck.call("get /v1/nodes", a, "/v1/nodes", 200)
        ck.call("get /v1/topology", a, "/v1/topology", 200)
        q = ck.j("post /v1/channels/{ch}/messages", a, f"/v1/channels/{dlq}/messages", 201, json_body={"n": 9})
        if q.get("id"):
            ck.call("get /v1/messages/{id}", a, f"/v1/messages/{q['id']}", 200)
    finally:
        os.kill(ghost_pid, signal.SIGCONT)
    ck.call("delete /v1/channels/{ch}", ghost, f"/v1/channels/{dlq}", 200)


# ---------------------------------------------------------------- a cluster of our own

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """nats-server and four agents (a: under test, b: peer, c: auth enabled, g: ghost)."""

    ADMIN_KEY = "check-schemas-admin-key-0123456789"

    def __init__(self, binary, nats_bin):
        self.dir = tempfile.mkdtemp(prefix="rmds-schemas-")
        self.binary, self.nats_bin = binary, nats_bin
        self.procs = {}
        self.nats_port = free_port()
        self.urls = {}

    def start(self):
        self.procs["nats"] = subprocess.Popen(
            [self.nats_bin, "-a", "127.0.0.1", "-p", str(self.nats_port)],
            stdout=open(os.path.join(self.dir, "nats.log"), "w"), stderr=subprocess.STDOUT)
        wait_for("nats-server", lambda: socket.create_connection(("127.0.0.1", self.nats_port), 1).close() or True)
        # a: short ack_timeout (well below its node_offline_timeout) for sender dead letters
        extra = {
            "a": '[delivery]\nack_timeout = "300ms"\nretry_initial = "50ms"\n',
            "c": f'[api.auth]\nenabled = true\nadmin_key = "{self.ADMIN_KEY}"\n',
        }
        for n in ("a", "b", "c", "g"):
            port = free_port()
            self.urls[n] = f"http://127.0.0.1:{port}"
            data = os.path.join(self.dir, n)
            os.makedirs(data)
            conf = os.path.join(self.dir, f"{n}.toml")
            with open(conf, "w") as f:
                f.write(f'node_id = "{n}"\ndata_dir = "{data}"\nlisten = "127.0.0.1:{port}"\n'
                        f'[nats]\nurls = ["nats://127.0.0.1:{self.nats_port}"]\n'
                        '[discovery]\nkeepalive_interval = "500ms"\n'
                        f'node_offline_timeout = "{"5s" if n == "a" else "3s"}"\n'
                        '[stats]\nsample_interval = "1s"\n' + extra.get(n, ""))
            self.procs[n] = subprocess.Popen(
                [self.binary, "--config", conf],
                stdout=open(os.path.join(self.dir, f"{n}.log"), "w"), stderr=subprocess.STDOUT)
        for n in ("a", "b", "c", "g"):
            wait_for(f"agent {n} ready", lambda: requests.get(self.urls[n] + "/readyz", timeout=2).status_code == 200,
                     timeout=30)
        # every agent has seen every other one
        wait_for("peers online", lambda: all(
            len([x for x in get_json(self.urls[n], "/v1/nodes")["nodes"] if x["online"]]) == 4
            for n in ("a", "b", "g")), timeout=20)

    def stop_nats(self):
        p = self.procs.get("nats")
        if p and p.poll() is None:
            p.terminate()
            p.wait(10)

    def stop(self, keep=False):
        for n, p in self.procs.items():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if keep:
            print(f"# logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url", nargs="?", help="base URL of the agent under test (not with --spawn)")
    ap.add_argument("--peer", help="base URL of a second agent of the same cluster")
    ap.add_argument("--auth-url", help="base URL of an agent with api.auth enabled")
    ap.add_argument("--admin-key", help="its api.auth.admin_key")
    ap.add_argument("--ghost-url", help="base URL of an agent that may be paused (SIGSTOP) for sender dead letters")
    ap.add_argument("--ghost-pid", type=int, help="its process id")
    ap.add_argument("--spawn", action="store_true", help="start nats-server and four agents of our own")
    ap.add_argument("--bin", default=os.environ.get("RMDS_AGENT_BIN", os.path.join(ROOT, "target/debug/rmds-agent")))
    ap.add_argument("--nats-bin", default=shutil.which("nats-server") or "nats-server")
    ap.add_argument("--schemas", default=os.path.join(ROOT, "agent/src/api/schemas.json"))
    ap.add_argument("--spec", default=os.path.join(ROOT, "agent/src/api/spec.rs"))
    ap.add_argument("--allow-unexercised", action="store_true",
                    help="do not fail for routes the tour could not exercise")
    ap.add_argument("--keep", action="store_true", help="keep the spawned cluster's logs")
    ap.add_argument("--strict-extra", action="store_true",
                    help="also fail on answer fields that the schemas do not name (a completeness check)")
    ap.add_argument("--dump", help="write every checked answer (route, status, body) to this file, one JSON a line")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every passing call too")
    args = ap.parse_args()

    schemas = Schemas(args.schemas, strict_extra=args.strict_extra)
    routes = spec_routes(args.spec)
    ck = Checker(schemas, routes, verbose=args.verbose, dump=open(args.dump, "w") if args.dump else None)
    static = []
    for p in schemas.problems:
        static.append(p)
    keys = set()
    for m, p, ok in routes:
        key = f"{m} {p}"
        keys.add(key)
        if ok in (WS_STATUS, 204):
            continue
        if str(ok) not in schemas.responses.get(key, {}):
            static.append(f"{key}: no schema for its success status {ok}")
    for key in schemas.responses:
        if key not in keys:
            static.append(f"{key}: in schemas.json but not a route of spec.rs")
    for s in static:
        ck.fail(f"schemas.json: {s}")
    print(f"# {len(routes)} routes in spec.rs, {len(schemas.responses)} with schemas, "
          f"{len(schemas.components)} components", flush=True)

    cluster = None
    try:
        if args.spawn:
            cluster = Cluster(args.bin, args.nats_bin)
            print(f"# starting nats-server and 4 agents ({args.bin}) in {cluster.dir}", flush=True)
            cluster.start()
            u = cluster.urls
            tour(ck, u["a"], u["b"], auth=u["c"], admin_key=Cluster.ADMIN_KEY, ghost=u["g"],
                 ghost_pid=cluster.procs["g"].pid, nats_stop=cluster.stop_nats)
        else:
            if not args.url or not args.peer:
                ap.error("give the agent's URL and --peer (or --spawn)")
            tour(ck, args.url, args.peer, auth=args.auth_url, admin_key=args.admin_key,
                 ghost=args.ghost_url, ghost_pid=args.ghost_pid)
    except TimeoutError as e:
        ck.fail(f"tour stopped: {e}")
    finally:
        if cluster:
            cluster.stop(keep=args.keep or bool(ck.failures))

    # coverage: every route but the WebSocket upgrades answered its documented status
    unexercised = []
    undocumented = []
    for m, p, ok in routes:
        key = f"{m} {p}"
        if ok == WS_STATUS:
            continue
        seen = ck.seen.get(key, set())
        if ok not in seen:
            unexercised.append(f"{key} (wanted {ok}, saw {sorted(seen) or 'nothing'})")
        for s in sorted(seen):
            if 200 <= s < 300 and s != ok:
                undocumented.append(f"{key}: {s} (spec.rs documents only {ok})")
    for key, by_status in schemas.responses.items():
        for s in by_status:
            if int(s) not in ck.seen.get(key, set()):
                print(f"# note: {key} {s} has a schema but was not observed")
    for u in undocumented:
        print(f"# undocumented success status: {u}")
    for u in unexercised:
        msg = f"not exercised: {u}"
        if args.allow_unexercised:
            print(f"# {msg}")
        else:
            ck.fail(msg)
    print(f"# {ck.calls} calls, {len(ck.seen)} routes exercised, {len(ck.failures)} failures")
    print("PASS" if not ck.failures else "FAILED")
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
