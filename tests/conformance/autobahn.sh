#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client through wsproxy in front of a websockets echo
# server, once along each of the relay's paths: reverse mode, quiet (the fast path); regular
# (HTTP proxy) mode with -v and a -w capture (every frame recorded); reverse mode through the
# log plugin reading every message (plain hooks); wsproxy-web with the log plugin reading
# every frame (frame hooks, and the UI's breakpoints as async message hooks); and reverse mode
# with a rewrite rule for the client's messages only (the client's through the hooks, the
# server's the quiet way; the rule matches nothing the suite sends). It fails unless
# every case is OK or INFORMATIONAL: no FAILED and no NON-STRICT.
# CASES defaults to the CI set: sections 1-7, 9 and 10 whole, and a subset of the
# permessage-deflate sections 12 and 13 (every parameter set, small and mid sizes; all 216
# cases take about 17 minutes here). Run everything by hand with CASES='*'.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
# The suite's build script is in the repository (tests/conformance/autobahn/); AUTOBAHN points
# at another copy. It builds the suite once into $TMPDIR/abport-suite (needs PyPI).
AUTOBAHN="${AUTOBAHN:-$ROOT/tests/conformance/autobahn/setup_and_run.sh}"
if [ ! -f "$AUTOBAHN" ]; then
  echo "autobahn: $AUTOBAHN not found (AUTOBAHN must name the suite's setup_and_run.sh)" >&2
  exit 1
fi
DEFLATE="12.1.1,12.1.2,12.1.3,12.1.11,12.2.1,12.2.2,12.3.1,12.3.11,12.4.1,12.4.2,12.5.1,12.5.2"
DEFLATE="$DEFLATE,13.1.1,13.1.2,13.1.11,13.2.1,13.2.2,13.3.1,13.3.2,13.4.1,13.4.2,13.5.1,13.5.2"
DEFLATE="$DEFLATE,13.6.1,13.6.2,13.7.1,13.7.2,13.7.11"
CASES="${CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,$DEFLATE}"
PY="$ROOT/.venv/bin/python"
# wsproxy and the echo server's websockets (the test extra) in .venv, as tests/run.sh makes it;
# on a fresh clone this script makes it itself.
if ! { [ -x "$PY" ] && "$PY" -c 'import websockets, wsproxy.cli' 2>/dev/null; }; then
  echo "== autobahn: pip install '.[test]' into .venv (wsproxy and the echo server's websockets)"
  [ -x "$PY" ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check '.[test]'
fi
# Build first (a no-op once built), in the open: a failed build says why here, not in a report.
bash "$AUTOBAHN" build || { echo "autobahn: building the suite failed (see above)" >&2; exit 1; }
OUT="$(mktemp -d)"
pids=()
# The logs and the capture stay for a look when a run failed; they go when all passed.
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ "$rc" = 0 ]; then rm -rf "$OUT"; else echo "autobahn: logs in $OUT" >&2; fi
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # port, pid, log: until the port accepts; fails with the log if the process ends
  for _ in $(seq 300); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "autobahn: $3 ended before listening on $1:" >&2; tail -n 5 "$3" >&2; return 1; }
    sleep 0.1
  done
  echo "autobahn: port $1 never opened (see $3)" >&2; return 1
}

ECHO=$(free_port); REV=$(free_port); REG=$(free_port); MSG=$(free_port); FRM=$(free_port)
ONE=$(free_port)
"$PY" tests/conformance/echo_server.py "$ECHO" > "$OUT/echo.log" 2>&1 & pids+=($!)
wait_port "$ECHO" $! "$OUT/echo.log"
"$PY" -m wsproxy -q --confdir "$OUT/conf" -p "$REV" --mode "reverse:ws://127.0.0.1:$ECHO" > "$OUT/reverse.log" 2>&1 & pids+=($!)
wait_port "$REV" $! "$OUT/reverse.log"
"$PY" -m wsproxy -v --confdir "$OUT/conf" -p "$REG" -w "$OUT/capture.jsonl" > "$OUT/regular.log" 2>&1 & pids+=($!)
wait_port "$REG" $! "$OUT/regular.log"
"$PY" -m wsproxy -q --confdir "$OUT/conf" -p "$MSG" --mode "reverse:ws://127.0.0.1:$ECHO" \
  -s log --set log_file="$OUT/messages-plugin.log" > "$OUT/messages.log" 2>&1 & pids+=($!)
wait_port "$MSG" $! "$OUT/messages.log"
"$PY" -m wsproxy.web -q --web-port 0 --confdir "$OUT/conf" -p "$FRM" --mode "reverse:ws://127.0.0.1:$ECHO" \
  -s log --set log_frames=true --set log_file="$OUT/frames-plugin.log" > "$OUT/frames.log" 2>&1 & pids+=($!)
wait_port "$FRM" $! "$OUT/frames.log"
echo '{"rules": [{"direction": "client", "match": "^wsproxy-never$", "replace": "x"}]}' > "$OUT/rules.json"
"$PY" -m wsproxy -q --confdir "$OUT/conf" -p "$ONE" --mode "reverse:ws://127.0.0.1:$ECHO" \
  -s rewrite --set rewrite_rules="$OUT/rules.json" > "$OUT/one-side.log" 2>&1 & pids+=($!)
wait_port "$ONE" $! "$OUT/one-side.log"

status=0
check() {  # name, summary-file
  local line; line=$(tail -n 1 "$2")
  echo "autobahn $1: $line"
  grep -q "NON-STRICT=0 .*FAILED=0" <<<"$line" || { status=1; tail -n 2 "$2"; }
}
bash "$AUTOBAHN" run "ws://127.0.0.1:$REV" "$CASES" "$OUT/ab-reverse" > "$OUT/reverse.txt" 2>&1 || status=1
check "reverse mode" "$OUT/reverse.txt"
PROXY="127.0.0.1:$REG" bash "$AUTOBAHN" run "ws://127.0.0.1:$ECHO" "$CASES" "$OUT/ab-regular" > "$OUT/regular.txt" 2>&1 || status=1
check "regular mode, -v -w" "$OUT/regular.txt"
bash "$AUTOBAHN" run "ws://127.0.0.1:$MSG" "$CASES" "$OUT/ab-messages" > "$OUT/messages.txt" 2>&1 || status=1
check "message hooks" "$OUT/messages.txt"
bash "$AUTOBAHN" run "ws://127.0.0.1:$FRM" "$CASES" "$OUT/ab-frames" > "$OUT/frames.txt" 2>&1 || status=1
check "wsproxy-web, frame hooks" "$OUT/frames.txt"
bash "$AUTOBAHN" run "ws://127.0.0.1:$ONE" "$CASES" "$OUT/ab-one-side" > "$OUT/one-side.txt" 2>&1 || status=1
check "client message hooks only" "$OUT/one-side.txt"
if grep -l Traceback "$OUT"/reverse.log "$OUT"/regular.log "$OUT"/messages.log "$OUT"/frames.log "$OUT"/one-side.log; then echo "a traceback reached the proxy's console"; status=1; fi
exit $status
