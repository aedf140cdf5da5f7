"""Helpers shared by the bench scripts (``bench/*.py``, run as ``python bench/NAME.py``, so
this directory is on ``sys.path`` and ``from _common import ...`` finds this file).

* /proc readings: ``proc_tree``, ``cpu_seconds``, ``rss_kib``, ``hwm_kib``, ``reset_hwm``.
* ports: ``free_port``, ``wait_port`` (async, asyncio children), ``wait_port_sync``
  (``subprocess.Popen`` children).
* children in their own process group: ``spawn`` (``subprocess.Popen`` in a new session,
  with ``die_with_parent`` as its ``preexec_fn``), ``stop_group`` (SIGTERM the group,
  SIGKILL if it lingers).
* output: ``render`` (a plain-text table).
* what a plain ``pip install .`` does not bring, each missing piece named in one line with the
  command that installs it: ``find_mitmdump`` and ``MITMPROXY_MISSING`` (the mitmproxy
  comparison target), ``NODE_MISSING`` (bench/node_modules), ``require_modules``; the nginx
  anchor: ``find_nginx``, ``NGINX_MISSING``, ``write_nginx_conf``, ``nginx_cmd``.

Benches never import from tests/: they run by hand from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# pip's extra for the benches (mitmproxy, websockets, trustme), run from the repository root.
INSTALL_BENCH = f"{sys.executable} -m pip install '.[bench]'"
MITMPROXY_MISSING = (
    f"mitmproxy (the comparison target) is not installed for {sys.executable}: run "
    f"`{INSTALL_BENCH}` from the repository root; until then its column shows n/a"
)
NODE_MISSING = (
    "the Node echo server and load generator are missing (bench/node_modules with ws and "
    "bufferutil): run `npm install --prefix bench` from the repository root (Node 18 or newer)"
)


NGINX_MISSING = (
    "nginx (the native anchor) is not installed: run `apt-get install -y nginx-light` "
    "(Debian/Ubuntu; the bench runs its own nginx from a temporary directory, never the "
    "system service); until then its column shows n/a"
)


def find_nginx() -> str | None:
    """nginx on PATH, else Debian's /usr/sbin/nginx (not on a non-root user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def write_nginx_conf(
    prefix: Path,
    port: int,
    upstream: str,
    *,
    tls_port: int | None = None,
    tls_upstream: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    upstream_ca: Path | None = None,
) -> Path:
    """An nginx.conf for a WebSocket reverse proxy: one worker, ``proxy_buffering off``, 64 KiB
    proxy buffers, no access log; pid, error log and temp paths inside ``prefix``.

    ``port`` forwards to ``upstream`` (``http://HOST:PORT``). With ``tls_port``, that port
    terminates TLS with ``cert``/``key`` and forwards to ``tls_upstream`` (``https://...``),
    verifying it against ``upstream_ca`` as the name ``localhost`` (nginx 1.22 does not match
    IP addresses in certificates; the upstream's certificate names both). Neither leg resumes
    TLS sessions: wsproxy's upstream leg never does (asyncio passes no session), so
    ``proxy_ssl_session_reuse off``, and the server side has no session cache (the bench's
    clients do not offer one anyway). Both legs offer TLS 1.2 and 1.3, as wsproxy's contexts
    do: nginx 1.22's defaults stop at TLS 1.2 (``ssl_protocols``, ``proxy_ssl_protocols``),
    which compared its TLS 1.2 handshakes with wsproxy's 1.3 ones.
    """
    prefix.mkdir(parents=True, exist_ok=True)
    temp = {n: prefix / "temp" / n for n in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir(parents=True, exist_ok=True)
    location = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $proxy_host;
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;"""
    servers = f"""
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass {upstream};{location}
        }}
    }}"""
    if tls_port is not None:
        servers += f"""
    server {{
        listen {HOST}:{tls_port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache off;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass {tls_upstream};{location}
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {upstream_ca};
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse off;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
        }}
    }}"""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# written by the wsproxy bench: a reverse proxy for WebSockets, never the system service
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}{servers}
}}
"""
    )
    return conf


def nginx_cmd(nginx: str, prefix: Path, conf: Path) -> list[str]:
    """Run nginx in the foreground with its own prefix and config (-e: the error log before
    the config is read goes there too, not to /var/log/nginx)."""
    return [
        nginx,
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]


def find_mitmdump() -> str | None:
    """mitmproxy's ``mitmdump`` next to this Python (its venv), else on PATH."""
    here = Path(sys.executable).parent / "mitmdump"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("mitmdump")


def require_modules(script: str, *modules: str) -> None:
    """Exit with status 2 and one line when a Python package the bench needs is missing."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        print(
            f"{script} needs {', '.join(missing)}, not installed for {sys.executable}: run "
            f"`{INSTALL_BENCH}` from the repository root",
            file=sys.stderr,
        )
        raise SystemExit(2)  # as bench.py: 2 is a missing set-up


class SetupError(Exception):
    """The bench could not set up what it measures (a child died, a port never opened)."""


# ----------------------------------------------------------------------------- /proc


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def proc_tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of the given processes (all their threads, dead ones too)."""
    total = 0
    for p in pids:
        stat = _read(f"/proc/{p}/stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def _status_kib(pids: list[int], key: str) -> int:
    total = 0
    for p in pids:
        status = _read(f"/proc/{p}/status")
        if status is None:
            continue
        for line in status.splitlines():
            if line.startswith(key + ":"):
                total += int(line.split()[1])
                break
    return total


def rss_kib(pids: list[int]) -> int:
    return _status_kib(pids, "VmRSS")


def hwm_kib(pids: list[int]) -> int:
    return _status_kib(pids, "VmHWM")


def reset_hwm(pids: list[int]) -> bool:
    """Reset VmHWM (peak RSS) to the current RSS: 'echo 5 > /proc/PID/clear_refs'."""
    ok = bool(pids)
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


# ----------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float, proc: asyncio.subprocess.Process | None) -> None:
    """Poll-connect until the port accepts; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"process exited with status {proc.returncode}")
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing accepts on {HOST}:{port} after {timeout:.0f} s")
        await asyncio.sleep(0.05)


def wait_port_sync(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """``wait_port`` for ``subprocess.Popen`` children, outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise SetupError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SetupError(f"nothing listens on {port} after {timeout} s") from None
            time.sleep(0.05)


# ----------------------------------------------------------------------------- children


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG, as a child's ``preexec_fn``: the child gets SIGTERM when the driver
    goes, however it goes (even SIGKILLed)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` in its own process group (``stop_group`` ends it
    and whatever it started), and SIGTERMed if the driver dies."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=die_with_parent, **kwargs)


def stop_group(proc: subprocess.Popen[bytes] | None, grace: float = 3.0) -> int | None:
    """SIGTERM the child's group, SIGKILL if it lingers; its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(3)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left of its group
    return proc.returncode


# ----------------------------------------------------------------------------- output


def render(rows: list[list[str]], left: int = 1) -> str:
    """``rows`` (the first is the header) as aligned columns: the first ``left`` columns
    flush left, the others flush right, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(r[:left], widths[:left], strict=True)]
        cells += [c.rjust(w) for c, w in zip(r[left:], widths[left:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
