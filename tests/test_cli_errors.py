"""Bad input on the command line: one clear line on stderr, a non-zero status, no traceback.

Every case runs the real CLI (``python -m wsproxy ...``) in a subprocess with a timeout, so a
hang fails the test instead of stalling the run. Status 2 means the command line is wrong (as
argparse's own errors), 1 that a well-formed command failed (a missing file, a taken port);
``replay`` keeps its own scheme: 1 is "the server answered differently", 2 any failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import HOST, RawServerFactory, free_port, proxy_free_env, wsproxy_command
from tests.integration.wsraw import RawConnection, accept_upgrade

TIMEOUT = 60  # seconds for one CLI run: generous, the machine is shared

HEADER = {"type": "wsproxy-capture", "version": 1, "ts": 1.0, "tool": "test"}
HANDSHAKE = {"type": "handshake", "conn": "1", "ts": 1.0, "url": "ws://127.0.0.1:9/chat"}


def frame(direction: str, text: str, ts: float = 1.5) -> dict[str, object]:
    return {
        "type": "frame",
        "conn": "1",
        "ts": ts,
        "direction": direction,
        "opcode": "TEXT",
        "fin": True,
        "text": text,
    }


def write_jsonl(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(*argv: str, cwd: Path) -> tuple[int, str]:
    """Run ``python -m wsproxy *argv``; its status and stderr (asserted free of tracebacks)."""
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, result.stderr


def check(status: int, stderr: str, want_status: int, want: str) -> None:
    assert status == want_status, stderr
    assert any(want in line for line in stderr.splitlines()), stderr  # said in one line


async def arun(*argv: str, cwd: Path) -> tuple[int, str, str]:
    """``run`` for tests that serve something in this loop meanwhile; also returns stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsproxy",
        *argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=proxy_free_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"wsproxy {' '.join(argv)} hung") from None
    stdout, stderr = out.decode(), err.decode()
    assert "Traceback" not in stdout + stderr, stderr
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr


# -- the proxy's flags -----------------------------------------------------------------------

PROXY_CASES = [
    (["-p", "99999"], 2, "argument -p/--listen-port: not a port: '99999' (0-65535)"),
    (["-p", "-1"], 2, "argument -p/--listen-port: not a port: '-1'"),
    (["-p", "abc"], 2, "argument -p/--listen-port: not a port: 'abc'"),
    (["--capture-filter", "["], 2, "--capture-filter: '[': bad regex '[': unterminated character"),
    (["--capture-filter", "~u chat &"], 2, "'&' needs an expression after it, found the end at"),
    (["--view-filter", "(~u foo"], 2, "--view-filter: '(~u foo': missing ')' at column 8"),
    (["--view-filter", "~nope"], 2, "unknown operator ~nope (known: ~all, ~websocket, ~http, ~u"),
    (["--view-filter", "~from both"], 2, "~from takes client or server, not 'both' at column 7"),
    (["-s", "block", "--set", "block_filter=~u ("], 2, "block_filter: '~u (': ~u needs REGEX"),
    (["--ignore-hosts", "("], 2, "--ignore-hosts '(': missing ), unterminated subpattern"),
    (["--allow-clients", "bogus"], 2, "--allow-clients 'bogus'"),
    (["--mode", "garbage"], 2, "argument --mode: unknown mode 'garbage'"),
    (["--set", "novalue"], 2, "--set 'novalue': use --set NAME=VALUE"),
    (["-s", "log", "--set", "log_max_preview=abc"], 2, "--set log_max_preview=abc: not a int"),
    (["-s", "missing_script.py"], 2, "-s missing_script.py: no such file"),
    (["--max-frame-size", "0"], 2, "argument --max-frame-size: not a size: '0'"),
    (["--max-headers", "0"], 2, "argument --max-headers: not a count: '0' (must be more"),
    (["--max-connections", "-1"], 2, "argument --max-connections: not a count: '-1'"),
    (["--handshake-timeout", "0"], 2, "argument --handshake-timeout: not a number of seconds"),
    (["--connect-timeout", "nan"], 2, "argument --connect-timeout: not a number of seconds"),
    (["--idle-timeout", "-1"], 2, "--idle-timeout: not a number of seconds: '-1' (must be 0 or"),
    (["--pool-max-per-host", "-1"], 2, "--pool-max-per-host: not a count: '-1' (must be 0 or"),
    (["--pool-max-idle", "x"], 2, "argument --pool-max-idle: not a count: 'x'"),
    (["--pool-idle-timeout", "0"], 2, "--pool-idle-timeout: not a number of seconds: '0'"),
    (["-w", "session.pcap"], 2, "unsupported capture format .pcap; use .jsonl, .har or .mitm"),
    (["-w", "a.jsonl", "-w", "a.jsonl"], 2, "-w a.jsonl and -w a.jsonl both write a.jsonl"),
    (["-w", "a.har", "-w", "a.har.jsonl"], 2, "both write a.har.jsonl"),
    (["-w", "no/such/dir/a.jsonl"], 1, "cannot write the capture no/such/dir/a.jsonl: No such"),
    (["--upstream-ca", "no-such-ca.pem"], 1, "upstream CA file not found: no-such-ca.pem"),
]


@pytest.mark.parametrize(("args", "status", "message"), PROXY_CASES, ids=lambda v: str(v))
def test_proxy_flags(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    argv = wsproxy_command(free_port(), tmp_path / "confdir", *args)[3:]
    check(*run(*argv, cwd=tmp_path), status, message)


def test_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = wsproxy_command(port, tmp_path / "confdir")[3:]
        status, stderr = run(*argv, cwd=tmp_path)
    check(status, stderr, 1, f"cannot listen on {HOST}:{port}: Address already in use")


def test_a_taken_port_leaves_an_existing_capture_alone(tmp_path: Path) -> None:
    """The port is bound before captures are opened: yesterday's capture survives a failed start."""
    old = tmp_path / "old.jsonl"
    old.write_text('{"type": "header"}\n')
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = wsproxy_command(port, tmp_path / "confdir", "-w", str(old))[3:]
        status, stderr = run(*argv, cwd=tmp_path)
    check(status, stderr, 1, f"cannot listen on {HOST}:{port}: Address already in use")
    assert old.read_text() == '{"type": "header"}\n'


def test_a_capture_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    argv = wsproxy_command(free_port(), tmp_path / "confdir", "-w", "dir.jsonl")[3:]
    check(*run(*argv, cwd=tmp_path), 1, "cannot write the capture dir.jsonl: Is a directory")


# -- show, replay, har: files that are not captures --------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of bad inputs, and one good capture (``good.jsonl``)."""
    write_jsonl(tmp_path / "good.jsonl", HEADER, HANDSHAKE, frame("client", "hi"))
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "garbage.jsonl").write_bytes(b"\x00\xff not json\n" * 3)
    (tmp_path / "truncated.jsonl").write_bytes(b'{"type":"wsproxy-capt')
    (tmp_path / "nothar.json").write_text('{"a": 1}\n')
    (tmp_path / "nothar.har").write_text('{"log": {"pages": []}}\n')
    (tmp_path / "broken.har").write_text('{"log": {"entries": [')
    entry = {"_resourceType": "websocket", "_webSocketMessages": [{"time": "soon"}]}
    (tmp_path / "badentry.har").write_text(json.dumps({"log": {"entries": [entry]}}))
    return tmp_path


BAD_FILES = [
    ("missing.jsonl", "missing.jsonl: No such file or directory"),
    ("folder.jsonl", "folder.jsonl: Is a directory"),
    ("empty.jsonl", "empty.jsonl: not a capture (empty file)"),
    ("garbage.bin", "garbage.bin: not a capture (not wsproxy JSONL, HAR or a mitmproxy flow"),
    ("garbage.jsonl", "garbage.jsonl: not a capture (line 1 is not a wsproxy JSONL record)"),
    ("truncated.jsonl", "truncated.jsonl: not a capture (line 1 is not a wsproxy JSONL"),
    ("nothar.json", "nothar.json: not a HAR file (no log.entries list)"),
    ("nothar.har", "nothar.har: not a HAR file (no log.entries list)"),
    ("broken.har", "broken.har: not a HAR file (not JSON: "),
    ("badentry.har", "badentry.har: log.entries[0] is not a valid WebSocket entry"),
]


@pytest.mark.parametrize(("name", "message"), BAD_FILES, ids=[n for n, _ in BAD_FILES])
def test_show_and_replay_refuse_what_is_not_a_capture(files: Path, name: str, message: str) -> None:
    check(*run("show", name, cwd=files), 1, f"wsproxy show: {message}")
    check(*run("replay", name, cwd=files), 2, f"wsproxy replay: {message}")


HAR_BAD_FILES = [
    *[case for case in BAD_FILES if case[0].endswith((".jsonl", ".bin"))],
    ("nothar.har", "nothar.har: already a HAR file; 'wsproxy har' turns a JSONL capture"),
]


@pytest.mark.parametrize(("name", "message"), HAR_BAD_FILES, ids=[n for n, _ in HAR_BAD_FILES])
def test_har_refuses_what_is_not_a_jsonl_capture(files: Path, name: str, message: str) -> None:
    check(*run("har", name, cwd=files), 1, f"wsproxy har: {message}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 file anyway")
def test_an_unreadable_capture(files: Path) -> None:
    os.chmod(files / "good.jsonl", 0)
    for command, status in (("show", 1), ("replay", 2), ("har", 1)):
        check(*run(command, "good.jsonl", cwd=files), status, "good.jsonl: Permission denied")


def test_har_output_problems(files: Path) -> None:
    check(*run("har", "good.jsonl", "-o", "good.jsonl", cwd=files), 1, "is the capture itself")
    check(
        *run("har", "good.jsonl", "-o", "no/dir/out.har", cwd=files),
        1,
        "wsproxy har: cannot write no/dir/out.har: No such file or directory",
    )
    assert json.loads((files / "good.jsonl").read_text().splitlines()[0])["type"] == HEADER["type"]


def test_a_connection_that_is_not_in_the_file(files: Path) -> None:
    has = "no connection c99 in this capture (it has: 1)"
    check(*run("show", "good.jsonl", "--conn", "c99", cwd=files), 1, f"good.jsonl: {has}")
    check(*run("replay", "good.jsonl", "--conn", "c99", cwd=files), 2, f"good.jsonl: {has}")


def test_bad_regex_and_numbers_in_show_and_replay(files: Path) -> None:
    check(
        *run("show", "good.jsonl", "--grep", "[", cwd=files),
        2,
        "argument --grep: bad regex '[': unterminated character set at position 0",
    )
    for flag, value, message in (
        ("--wait", "-1", "argument --wait: not a number of seconds: '-1' (must be 0 or more)"),
        ("--timeout", "0", "argument --timeout: not a number of seconds: '0' (must be more"),
        ("--listen-port", "70000", "argument --listen-port: not a port: '70000'"),
    ):
        check(*run("replay", "good.jsonl", flag, value, cwd=files), 2, message)


def test_damaged_records_do_not_crash_the_readers(tmp_path: Path) -> None:
    """Values of the wrong type or out of range (a hostile or damaged capture): shown or
    skipped, and ``har`` still writes a file."""
    bad_close = {"type": "close", "conn": "1", "ts": 2.0, "counts": [1, 2]}
    far = dict(frame("client", "far"), ts=1e300)
    nan = dict(HANDSHAKE, ts="nan", request_headers="not a list")
    write_jsonl(tmp_path / "odd.jsonl", HEADER, nan, far, bad_close)
    status, stderr = run("show", "odd.jsonl", cwd=tmp_path)
    assert status == 0, stderr
    status, stderr = run("har", "odd.jsonl", "-o", "odd.har", cwd=tmp_path)
    assert status == 0, stderr
    status, stderr = run("show", "odd.har", cwd=tmp_path)
    assert status == 0, stderr


# -- replay against servers that do not answer ---------------------------------------------------


async def never_answer(conn: RawConnection) -> None:
    await asyncio.Event().wait()  # accepts TCP, reads nothing, says nothing


async def upgrade_then_silence(conn: RawConnection) -> None:
    """Answers the upgrade (RFC 6455 4.2.2), then neither reads nor writes."""
    await accept_upgrade(conn)
    await asyncio.Event().wait()


async def test_replay_against_a_server_that_never_answers_the_upgrade(
    raw_server: RawServerFactory, files: Path
) -> None:
    port = (await raw_server(never_answer)).port
    url = f"ws://{HOST}:{port}/chat"
    argv = ("replay", "good.jsonl", "--url", url, "--timeout", "1")
    status, _, stderr = await arun(*argv, cwd=files)
    check(status, stderr, 2, f"{url}: no answer to the WebSocket upgrade within 1 s (--timeout)")


async def test_replay_against_a_server_that_goes_silent(
    raw_server: RawServerFactory, tmp_path: Path
) -> None:
    write_jsonl(
        tmp_path / "talk.jsonl",
        HEADER,
        HANDSHAKE,
        frame("client", "hi"),
        frame("server", "hello", ts=1.6),
    )
    port = (await raw_server(upgrade_then_silence)).port
    url = f"ws://{HOST}:{port}/chat"
    argv = ("replay", "talk.jsonl", "--url", url, "--timeout", "1", "--wait", "0.1")
    status, stdout, stderr = await arun(*argv, cwd=tmp_path)
    assert status == 1, stderr  # it ended, and says the answers differ
    assert "server answered 0, the capture has 1" in stdout
    assert "the server did not answer the close frame (--timeout)" in stdout


async def test_replay_against_a_server_that_stops_reading(
    raw_server: RawServerFactory, tmp_path: Path
) -> None:
    # 16 MiB: more than the socket buffers of both ends hold, so the send has to wait.
    big = frame("client", "x" * (16 << 20))
    write_jsonl(tmp_path / "big.jsonl", HEADER, HANDSHAKE, big, frame("client", "next"))
    port = (await raw_server(upgrade_then_silence)).port
    url = f"ws://{HOST}:{port}/chat"
    argv = ("replay", "big.jsonl", "--url", url, "--timeout", "1", "--fast")
    status, _, stderr = await arun(*argv, cwd=tmp_path)
    check(
        status,
        stderr,
        2,
        f"{url}: the server stopped reading: client message 1 of 2 not sent within 1 s",
    )


async def test_replay_serve_on_a_taken_port(files: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ("replay", "good.jsonl", "--serve", "--listen-port", str(port))
        status, _, stderr = await arun(*argv, cwd=files)
    check(status, stderr, 2, f"cannot listen on {HOST}:{port}: Address already in use")
