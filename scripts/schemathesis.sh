#!/usr/bin/env bash
# Property-based API test of one real agent with Schemathesis.
#
# README
#   Starts nats-server and one rmds-agent (binary: $RMDS_AGENT_BIN, default
#   target/debug/rmds-agent; built beforehand, this script never runs cargo) on free
#   loopback ports in a temporary directory, then runs Schemathesis against
#   http://127.0.0.1:PORT/v1/openapi.json with the checks not_a_server_error,
#   status_code_conformance and response_schema_conformance, every phase (examples,
#   coverage, fuzzing, stateful), the WebSocket routes excluded, in two passes:
#     1. free:      every parameter generated, no extra header (the cross-site guard's
#                   415/403 answers are part of the contract);
#     2. realistic: {ch}=chat (the agent is rw there), {g}=default, {d}=default, and
#                   X-Rmds-Request: 1 on every request, so requests reach the handlers.
#   Each pass is bounded by a number of examples per operation and a hard timeout, so
#   the whole run takes about a minute or two. Prints Schemathesis's report and a
#   summary of the failures (operation, check, status, reproduction), exits non-zero
#   on any failure or error, and stops every process it started.
#
#   Schemathesis is installed, pinned, into target/venv (python3 -m venv).
#
#   Usage: scripts/schemathesis.sh [--merge-schemas]
#     --merge-schemas  test the served document with agent/src/api/schemas.json merged
#                      into its success responses (a preview until spec.rs serves them;
#                      a no-op once it does). Statuses that schemas.json knows and the
#                      document does not (e.g. 200 for a repeated Idempotency-Key, 207
#                      for a partly failed batch) are added to the copy.
#   Environment: RMDS_AGENT_BIN, RMDS_ST_EXAMPLES (examples per operation and pass,
#   default 25), RMDS_ST_SEED (default 1), RMDS_ST_TIMEOUT (seconds per pass, default
#   150), RMDS_ST_CHECKS (comma-separated, default the three above).
#   Reports (JUnit, JSON) go to target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ST_VERSION=4.32.5
VENV=$ROOT/target/venv
BIN=${RMDS_AGENT_BIN:-target/debug/rmds-agent}
EXAMPLES=${RMDS_ST_EXAMPLES:-25}
SEED=${RMDS_ST_SEED:-1}
PASS_TIMEOUT=${RMDS_ST_TIMEOUT:-150}
CHECKS=${RMDS_ST_CHECKS:-not_a_server_error,status_code_conformance,response_schema_conformance}
REPORTS=$ROOT/target/schemathesis
MERGE=0
for arg in "$@"; do
  case $arg in
    --merge-schemas) MERGE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
if [ ! -x "$BIN" ]; then
  echo "no agent binary at $BIN: build it first (cargo build -p rmds-agent) or set RMDS_AGENT_BIN" >&2
  exit 2
fi
if ! command -v nats-server >/dev/null 2>&1; then
  echo "nats-server is not installed: run scripts/install-deps.sh" >&2
  exit 2
fi

# -- Schemathesis, pinned, in target/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$ST_VERSION" ]; then
  echo "installing schemathesis==$ST_VERSION into $VENV..."
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
PY=$VENV/bin/python
ST=$VENV/bin/schemathesis

# -- nats-server and one agent, on free ports, in a temporary directory
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rmds-schemathesis.XXXXXX")
NATS_PID=""
AGENT_PID=""
cleanup() {
  local rc=$?
  for pid in $AGENT_PID $NATS_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$rc" = 0 ]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT=$(free_port)
API_PORT=$(free_port)
BASE=http://127.0.0.1:$API_PORT

nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
mkdir -p "$WORK/data"
cat >"$WORK/agent.toml" <<EOF
node_id = "schemathesis-agent"
data_dir = "$WORK/data"
listen = "127.0.0.1:$API_PORT"
join = ["chat:rw"]
[nats]
urls = ["nats://127.0.0.1:$NATS_PORT"]
[discovery]
keepalive_interval = "500ms"
node_offline_timeout = "3s"
EOF
"$BIN" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 100); do
  if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$AGENT_PID" 2>/dev/null; then echo "the agent exited:" >&2; cat "$WORK/agent.log" >&2; exit 1; fi
  [ "$i" = 100 ] && { echo "the agent did not become ready" >&2; cat "$WORK/agent.log" >&2; exit 1; }
  sleep 0.2
done
echo "agent $("$BIN" --version 2>/dev/null || echo "$BIN") ready at $BASE (nats on $NATS_PORT); schemathesis $ST_VERSION"

# -- the document under test
SCHEMA=$BASE/v1/openapi.json
if [ "$MERGE" = 1 ]; then
  "$PY" - "$SCHEMA" "$ROOT/agent/src/api/schemas.json" "$WORK/openapi-merged.json" <<'EOF'
import json, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1]))
extra = json.load(open(sys.argv[2]))
doc.setdefault("components", {}).setdefault("schemas", {}).update(extra["components"])
added = []
for key, by_status in extra["responses"].items():
    method, path = key.split(" ", 1)
    op = doc["paths"][path][method]
    for status, schema in by_status.items():
        resp = op["responses"].get(status)
        if resp is None:
            resp = op["responses"][status] = {"description": "from schemas.json"}
            added.append(f"{key} {status}")
        media = "text/plain" if schema.get("type") == "string" else "application/json"
        content = resp.setdefault("content", {})
        if set(content) != {media}:
            content.clear()
        content.setdefault(media, {})["schema"] = schema
json.dump(doc, open(sys.argv[3], "w"))
print(f"merged schemas.json into the document; statuses added: {', '.join(added) or 'none'}")
EOF
  SCHEMA=$WORK/openapi-merged.json
fi

cat >"$WORK/realistic.toml" <<'EOF'
[parameters]
ch = "chat"
g = "default"
d = "default"

# Leaving chat would end the realistic part for every later request.
[[operations]]
include-name = "DELETE /v1/channels/{ch}"
parameters = { ch = "not-joined" }
EOF

mkdir -p "$REPORTS"
rm -f "$REPORTS"/*-free.* "$REPORTS"/*-realistic.*
failed=0
run_pass() {
  local name=$1; shift
  echo
  echo "=== schemathesis pass: $name (max $EXAMPLES examples per operation, seed $SEED)"
  local rc=0
  (cd "$WORK" && timeout --signal=INT --kill-after=20 "$PASS_TIMEOUT" "$ST" "$@" run "$SCHEMA" \
    --url "$BASE" \
    --checks "$CHECKS" \
    --exclude-path /v1/ws --exclude-path /v1/ws/tap \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 2 --request-timeout 20 \
    --report junit,json \
    --report-junit-path "$REPORTS/junit-$name.xml" --report-json-path "$REPORTS/report-$name.json" \
    ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}) || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 130 ]; then
    echo "pass $name: stopped after ${PASS_TIMEOUT}s (RMDS_ST_TIMEOUT)"
  fi
  if [ "$rc" != 0 ]; then failed=1; fi
  if ! kill -0 "$AGENT_PID" 2>/dev/null; then
    echo "the agent died during pass $name" >&2
    tail -50 "$WORK/agent.log" >&2
    failed=1
  fi
}
EXTRA_ARGS=()
run_pass free
EXTRA_ARGS=(--header "X-Rmds-Request: 1")
run_pass realistic --config-file "$WORK/realistic.toml"

# -- summary
echo
echo "=== summary"
summary_rc=0
"$PY" - "$REPORTS" <<'EOF' || summary_rc=$?
import glob, json, os, re, sys
import xml.etree.ElementTree as ET
d = sys.argv[1]
total = 0
for name in ("free", "realistic"):
    path = os.path.join(d, f"junit-{name}.xml")
    if not os.path.exists(path):
        print(f"{name}: no report (the pass did not finish)")
        total += 1
        continue
    root = ET.parse(path).getroot()
    cases = root.findall(".//testcase")
    bad = [(c, f) for c in cases for f in list(c) if f.tag in ("failure", "error")]
    print(f"{name}: {len(cases)} operations tested, {len(bad)} with failures or errors")
    total += len(bad)
    for case, f in bad:
        text = f.text or f.get("message") or ""
        checks = sorted(set(re.findall(r"^- (ST\d+ [^\n]+|[A-Z][^\n]+)$", text, re.M)))
        statuses = sorted(set(re.findall(r"^\[(\d{3})\] ", text, re.M)))
        details = [l.strip() for l in text.splitlines()
                   if l.startswith("    ") and not l.strip().startswith(("curl", "st replay", "`"))][:3]
        curl = next((l.strip() for l in text.splitlines() if l.strip().startswith("curl ")), "")
        print(f"  {case.get('name')}: {f.tag} {'; '.join(checks) or f.get('message', '')}"
              f"{' [status ' + ', '.join(statuses) + ']' if statuses else ''}")
        for l in details:
            print(f"      {l}")
        if curl:
            print(f"      {curl}")
    rep = os.path.join(d, f"report-{name}.json")
    if os.path.exists(rep):
        r = json.load(open(rep))
        tc = r.get("test_cases", {})
        warn = {k: len(v) for k, v in (r.get("warnings") or {}).items() if v}
        print(f"  test cases: {tc.get('generated')} generated, {tc.get('with_failures')} with failures, "
              f"{tc.get('errored')} errored; warnings: {warn or 'none'}")
sys.exit(1 if total else 0)
EOF
if [ "$failed" != 0 ] || [ "$summary_rc" != 0 ]; then
  echo "FAILED (reports in $REPORTS)"
  exit 1
fi
echo "PASSED (reports in $REPORTS)"
