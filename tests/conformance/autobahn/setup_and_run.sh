#!/usr/bin/env bash
# Autobahn|Testsuite (PyPI autobahntestsuite 25.10.1, Python 2 code) ported to Python 3.11.
#
# Port = autobahntestsuite 25.10.1 sdist  --(CRLF->LF, lib2to3)-->  + autobahn 0.10.9 sdist (the
# version the suite pins; already py2/py3 code) + abport.patch (unified diff, next to this script).
# In wsproxy this pair lives in tests/conformance/autobahn/; tests/conformance/autobahn.sh runs it.
# Building needs python3 (3.11: lib2to3), patch and PyPI (pip install / pip download).
#
# Usage:
#   setup_and_run.sh build
#       build the ported suite into $ABPORT_PREFIX (default $TMPDIR/abport-suite), idempotent:
#       rebuilt only when abport.patch changed (its SHA-256 is kept in $ABPORT_PREFIX/.built)
#   setup_and_run.sh run URL CASES OUTDIR [AGENT]
#       (builds if needed) run `wstest -m fuzzingclient` against ws URL, CASES = comma separated
#       case patterns (e.g. "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*" or "*"), reports (index.json,
#       index.html, per-case json/html) go to OUTDIR; prints
#       "OK=N NON-STRICT=N INFORMATIONAL=N UNIMPLEMENTED=N FAILED=N" as the LAST line of stdout.
#       env: EXCLUDE="9.*,12.*"  (exclude-cases), PROXY=host:port (go through an HTTP CONNECT proxy)
#   setup_and_run.sh server PORT CASES OUTDIR
#       run `wstest -m fuzzingserver` on ws://127.0.0.1:PORT (client loop: /getCaseCount,
#       /runCase?case=N&agent=X, /updateReports?agent=X). Runs in the foreground.
#   setup_and_run.sh summary OUTDIR     re-print the summary of an existing report dir
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${ABPORT_PREFIX:-${TMPDIR:-/tmp}/abport-suite}"
PY="${PYTHON:-python3}"
PATCH_FILE="$HERE/abport.patch"
VENV="$PREFIX/venv"
WSTEST="$VENV/bin/wstest"

build() {
  local want; want="$(sha256sum "$PATCH_FILE" | cut -d' ' -f1)"
  if [[ -x "$WSTEST" && "$(cat "$PREFIX/.built" 2>/dev/null)" == "$want" ]]; then return 0; fi
  echo "[abport] building ported suite in $PREFIX" >&2
  rm -rf "$PREFIX"; mkdir -p "$PREFIX/dl" "$PREFIX/src"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
      "Twisted==26.10.0" "txaio==26.6.1" "zope.interface==8.7" "six==1.17.0" "Jinja2==3.1.6" \
      "pyOpenSSL==26.4.0" "service-identity==26.1.0" "wsaccel==0.6.7" >&2 \
   || "$VENV/bin/pip" install -q --disable-pip-version-check \
      Twisted txaio zope.interface six Jinja2 pyOpenSSL service-identity wsaccel >&2
  # wsaccel = the suite's original "accelerate" extra (C XOR masker + UTF-8 validator). Without it
  # autobahn 0.10.9 falls back to per-byte pure-Python masking: sections 9/12/13 get ~10x slower.
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$PREFIX/dl" "autobahntestsuite==25.10.1" "autobahn==0.10.9" >&2
  tar -xzf "$PREFIX/dl/autobahntestsuite-25.10.1.tar.gz" -C "$PREFIX/dl"
  tar -xzf "$PREFIX/dl/autobahn-0.10.9.tar.gz" -C "$PREFIX/dl"
  cp -r "$PREFIX/dl/autobahntestsuite-25.10.1/autobahntestsuite" "$PREFIX/src/"
  cp -r "$PREFIX/dl/autobahn-0.10.9/autobahn" "$PREFIX/src/"
  find "$PREFIX/src" -name '*.py' -exec sed -i 's/\r$//' {} +          # sdist has CRLF files
  ( cd "$PREFIX/src" && "$VENV/bin/python" -W ignore -m lib2to3 -w -n -j 4 autobahntestsuite >/dev/null 2>&1 )
  ( cd "$PREFIX/src" && patch -p1 -s --no-backup-if-mismatch < "$PATCH_FILE" )
  echo "$PREFIX/src" > "$VENV/lib/python3.11/site-packages/abport.pth" 2>/dev/null \
    || echo "$PREFIX/src" > "$("$VENV/bin/python" -c 'import site;print(site.getsitepackages()[0])')/abport.pth"
  cat > "$WSTEST" <<EOF
#!$VENV/bin/python
import sys
from autobahntestsuite.wstest import run
sys.exit(run())
EOF
  chmod +x "$WSTEST"
  "$VENV/bin/python" -c 'import autobahntestsuite.wstest' >&2
  echo "$want" > "$PREFIX/.built"
  echo "[abport] build ok: $WSTEST" >&2
}

summary() {
  "$VENV/bin/python" - "$1/index.json" <<'EOF'
import json, sys, collections
d = json.load(open(sys.argv[1]))
c = collections.Counter(); bad = []
key = lambda k: [int(x) for x in k.split(".")]
for agent, cases in d.items():
    for k in sorted(cases, key=key):
        v = cases[k]; c[v["behavior"]] += 1
        if v["behavior"] not in ("OK", "INFORMATIONAL"):
            bad.append("%s:%s/%s(%s)" % (k, v["behavior"], v["behaviorClose"], v["remoteCloseCode"]))
print("non-OK cases:", " ".join(bad) if bad else "none")
print("OK=%d NON-STRICT=%d INFORMATIONAL=%d UNIMPLEMENTED=%d FAILED=%d" % (
    c["OK"], c["NON-STRICT"], c["INFORMATIONAL"], c["UNIMPLEMENTED"], c["FAILED"]))
EOF
}

mklist() { "$VENV/bin/python" -c 'import json,sys;print(json.dumps([x.strip() for x in sys.argv[1].split(",") if x.strip()]))' "$1"; }

cmd="${1:-}"; shift || true
case "$cmd" in
  build) build ;;
  run)
    [[ $# -ge 3 ]] || { echo "usage: $0 run URL CASES OUTDIR [AGENT]" >&2; exit 2; }
    URL="$1"; CASES="$2"; OUTDIR="$3"; AGENT="${4:-testee}"
    build
    mkdir -p "$OUTDIR"; OUTDIR="$(cd "$OUTDIR" && pwd)"
    PROXYJ=""; [[ -n "${PROXY:-}" ]] && PROXYJ=", \"proxy\": \"$PROXY\""
    cat > "$OUTDIR/spec.json" <<EOF
{"outdir": "$OUTDIR", "options": {"failByDrop": false},
 "servers": [{"agent": "$AGENT", "url": "$URL"$PROXYJ}],
 "cases": $(mklist "$CASES"), "exclude-cases": $(mklist "${EXCLUDE:-}"), "exclude-agent-cases": {}}
EOF
    start=$(date +%s)
    ( cd "$OUTDIR" && "$WSTEST" -m fuzzingclient -s "$OUTDIR/spec.json" ) > "$OUTDIR/wstest.log" 2>&1 \
      || { echo "wstest failed, see $OUTDIR/wstest.log" >&2; tail -n 20 "$OUTDIR/wstest.log" >&2; exit 1; }
    echo "runtime: $(( $(date +%s) - start )) s, reports: $OUTDIR/index.html"
    summary "$OUTDIR" ;;
  server)
    [[ $# -ge 3 ]] || { echo "usage: $0 server PORT CASES OUTDIR" >&2; exit 2; }
    PORT="$1"; CASES="$2"; OUTDIR="$3"
    build
    mkdir -p "$OUTDIR"; OUTDIR="$(cd "$OUTDIR" && pwd)"
    cat > "$OUTDIR/spec.json" <<EOF
{"url": "ws://127.0.0.1:$PORT", "outdir": "$OUTDIR",
 "cases": $(mklist "$CASES"), "exclude-cases": $(mklist "${EXCLUDE:-}"), "exclude-agent-cases": {}}
EOF
    cd "$OUTDIR" && exec "$WSTEST" -m fuzzingserver -s "$OUTDIR/spec.json" ;;
  summary) build >/dev/null; summary "$1" ;;
  *) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 2 ;;
esac
