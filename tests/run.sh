#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs all of it: ruff, mypy,
# the per-module coverage gate of the sans-I/O core (tests/coverage_gate.py), the pytest suite
# (unit, integration, TLS, browser) and the Autobahn|Testsuite through wsproxy.
# Usage (from the repository root): bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-python3}"

# System packages (Debian names): Chromium, Firefox ESR and certutil for the browser tests
# (tests/browser runs both by hand; tests/web drives Chromium with Playwright from the test
# extra, never a browser of Playwright's own); iproute2, iptables and nftables for the
# transparent-mode tests in network namespaces; curl for the SOCKS5 tests; tinyproxy (the
# binary alone, no service) as a next proxy for the upstream-mode tests; mosquitto (an MQTT
# broker with a websockets listener) for the MQTT decoder's real-peer test; haproxy (run by
# the test, never as a service) as the TCP balancer in front of two --proxy-protocol
# instances. Only what is missing is installed.
missing=()
for pair in chromium:chromium firefox-esr:firefox-esr certutil:libnss3-tools ip:iproute2 \
  iptables:iptables ip6tables:iptables nft:nftables curl:curl tinyproxy:tinyproxy-bin \
  mosquitto:mosquitto haproxy:haproxy; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "!! ${missing[*]} missing and cannot apt-get: the tests needing them skip (outside CI)"
  fi
fi

echo "== Python environment (.venv): pip install '.[test,mitmproxy]' (the extra: mitmproxy)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# mitmproxy goes into the same environment on purpose: this checks that wsproxy's
# dependency ranges (cryptography above all) resolve together with mitmproxy's, and lets the
# tests check CA files and addon scripts against the real mitmproxy (they also hide it to test
# the stand-in).
# Playwright (tests/web) uses the system's Chromium: it must never fetch a browser build.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
.venv/bin/pip install -q --disable-pip-version-check '.[test,mitmproxy]'
.venv/bin/python -c 'import cryptography, mitmproxy.version, wsproxy; print("wsproxy with mitmproxy", mitmproxy.version.VERSION, "and cryptography", cryptography.__version__)'
.venv/bin/mitmdump --version

# pip built the C extension (wsproxy.sansio._speedups) into the installed copy; the tests import
# this checkout, so build it here too. Both are optional builds: without a compiler the pure
# fallback serves, and under CI=true tests/sansio/test_masking.py fails instead of skipping.
echo "== C extension: as pip installed it, and built in place for the tests"
(cd / && "$ROOT/.venv/bin/python" -c 'import wsproxy.sansio.masking as m; print("installed wsproxy masks in", m.IMPLEMENTATION)')
.venv/bin/python setup.py -q build_ext --inplace

echo "== Node peers for the tests (tests/node: the Socket.IO JavaScript client)"
if command -v npm >/dev/null; then
  npm install --prefix tests/node --no-audit --no-fund --loglevel=error
else
  echo "!! npm missing: tests/integration/test_decoder_peers.py fails its JavaScript test under CI"
fi

echo "== static checks: ruff, mypy"
.venv/bin/ruff check wsproxy plugins tests bench
.venv/bin/mypy

echo "== branch coverage of each wsproxy/sansio module by tests/sansio alone"
.venv/bin/python tests/coverage_gate.py

echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider "$@"

echo "== Autobahn|Testsuite through wsproxy"
bash "$ROOT/tests/conformance/autobahn.sh"
