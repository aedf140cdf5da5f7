"""``wsproxy show a b c``: several captures merged by time (``wsproxy.capture.merge``).

Real captures come from two proxies running at once (the files of two workers or two runs:
both number their connections from ``c1``); edge cases are hand-made JSONL files.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import itertools
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.capture.conftest import CaptureProxy
from tests.harness import HOST, proxy_free_env, stop_server
from wsproxy.capture.har import CaptureFormatError
from wsproxy.capture.merge import MergedCaptures, merge_journals
from wsproxy.capture.records import Connection, Frame
from wsproxy.capture.show import show

HEADER = {"type": "wsproxy-capture", "version": 2, "ts": 1.0, "tool": "test"}


def handshake(conn: str, ts: float, path: str = "/chat") -> dict[str, Any]:
    return {"type": "handshake", "conn": conn, "ts": ts, "url": f"ws://127.0.0.1:9{path}"}


def frame(conn: str, ts: float, text: str, **more: Any) -> dict[str, Any]:
    return {
        "type": "frame",
        "conn": conn,
        "ts": ts,
        "direction": "client",
        "opcode": "TEXT",
        "fin": True,
        "text": text,
        **more,
    }


def write_jsonl(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in [HEADER, *records]))
    return path


def run_show(*argv: str | Path, status: int = 0) -> list[str]:
    out = io.StringIO()
    assert show([str(a) for a in argv], out) == status
    return out.getvalue().splitlines()


def texts(lines: list[str]) -> list[str]:
    """The quoted payload preview of each text frame's line: ``... len=2 'a1'`` -> ``a1``."""
    return [line.rsplit(" '", 1)[1].split("'")[0] for line in lines if " TEXT " in line]


def cli(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m wsproxy show ...`` in a subprocess: status, stdout, stderr; no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", "show", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


# -- real captures: two proxies at once --------------------------------------------------------


async def two_runs(capture_proxy: CaptureProxy, first: Path, second: Path) -> None:
    """Two proxies, each with its own capture; one client on each, taking turns, so the two
    files interleave in time: a1 b1 a2 b2 a3 b3."""
    server_a, _ = await capture_proxy(first)
    server_b, _ = await capture_proxy(second)
    async with (
        connect(f"ws://{HOST}:{server_a.port}/alpha") as a,
        connect(f"ws://{HOST}:{server_b.port}/beta") as b,
    ):
        for n in (1, 2, 3):
            for ws, name in ((a, "a"), (b, "b")):
                await ws.send(f"{name}{n}")
                assert await ws.recv() == f"{name}{n}"  # echoed: recorded before the next
    await stop_server(server_a)
    await stop_server(server_b)


async def test_two_real_captures_merged(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    first, second = tmp_path / "capture.w1.jsonl", tmp_path / "capture.w2.jsonl"
    await two_runs(capture_proxy, first, second)
    alone = run_show(first)
    assert all("[c1]" in line for line in alone)  # both files number from c1
    lines = run_show(first, second)
    client = [line for line in lines if "client -> server TEXT" in line]
    assert texts(client) == ["a1", "b1", "a2", "b2", "a3", "b3"]
    assert all(("[c1]" if "'a" in line else "[c1@2]") in line for line in client)
    opens = [line for line in lines if "WebSocket open" in line]
    assert "[c1] WebSocket open ws://" in opens[0] and "/alpha (client" in opens[0]
    assert "[c1@2] WebSocket open ws://" in opens[1] and "/beta (client" in opens[1]
    assert sum("WebSocket closed" in line for line in lines) == 2
    assert len(lines) == len(alone) + len(run_show(second))  # nothing lost, nothing doubled

    # Every option works over the merged stream, with the id as shown.
    only = run_show(first, second, "--conn", "c1@2", "--direction", "client")
    assert texts(only) == ["b1", "b2", "b3"] and all("[c1@2]" in line for line in only)
    assert "/beta" in run_show(first, second, "--conn", "c1@2")[0]
    assert texts(run_show(first, second, "--conn", "c1", "--direction", "client")) == [
        "a1",
        "a2",
        "a3",
    ]
    beta = run_show(first, second, "--filter", "~u /beta & ~from client")
    assert texts(beta) == ["b1", "b2", "b3"] and all("[c1@2]" in line for line in beta)
    grep = run_show(first, second, "--grep", "^.2$")
    assert texts(grep) == ["a2", "a2", "b2", "b2"]  # each echoed: both directions
    times = [r.time for r in MergedCaptures([first, second]) if isinstance(r, Frame)]
    since = run_show(first, second, "--since", str(times[4]), "--direction", "server")
    assert texts(since) == ["a2", "b2", "a3", "b3"]
    decoded = run_show(second, first, "--decode", "--direction", "client")
    assert texts(decoded) == ["a1", "b1", "a2", "b2", "a3", "b3"]
    # Given the other way round, the earlier connection keeps its id all the same.
    decoded = [line for line in decoded if " TEXT " in line]
    assert all(("[c1]" if "'a" in line else "[c1@1]") in line for line in decoded)
    missing = cli(first, second, "--conn", "c1@3", cwd=tmp_path)
    assert missing.returncode == 1
    assert "no connection c1@3 in these captures (they have: c1, c1@2)" in missing.stderr


async def test_mixed_formats(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    """A JSONL, a HAR and a mitmproxy flow file of three runs: one stream, three c1s."""
    pytest.importorskip("mitmproxy")
    paths = [tmp_path / "one.jsonl", tmp_path / "two.har", tmp_path / "three.mitm"]
    for path, text in zip(paths, ("json", "har", "mitm"), strict=True):
        server, _ = await capture_proxy(path)
        async with connect(f"ws://{HOST}:{server.port}/{text}") as ws:
            await ws.send(text)
            await ws.recv()
        await stop_server(server)
    lines = run_show(*paths, "--direction", "client")
    assert texts(lines) == ["json", "har", "mitm"]
    ids = [line.split("[", 1)[1].split("]")[0] for line in lines if " TEXT " in line]
    assert ids == ["c1", "c1@2", "c1@3"]
    assert texts(run_show(*paths, "--conn", "c1@3", "--direction", "client")) == ["mitm"]


async def test_follow_several_files(capture_proxy: CaptureProxy, tmp_path: Path) -> None:
    """``show -f a b``: what each live capture gets is printed as it comes, neither file
    waited on for the other."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    server_a, _ = await capture_proxy(first)
    server_b, _ = await capture_proxy(second)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wsproxy", "show", "-f", str(first), str(second)),
        stdout=asyncio.subprocess.PIPE,
        env=proxy_free_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []

    async def line_with(text: str) -> str:
        while not any(text in line for line in seen):
            seen.append((await asyncio.wait_for(proc.stdout.readline(), 10)).decode())  # type: ignore[union-attr]
        return next(line for line in seen if text in line)

    try:
        async with connect(f"ws://{HOST}:{server_b.port}/") as b:
            await b.send("only b so far")
            await b.recv()
            assert "[c1]" in await line_with("'only b so far'")
            async with connect(f"ws://{HOST}:{server_a.port}/") as a:
                await a.send("now a")
                await a.recv()
                assert "[c1@1]" in await line_with("'now a'")  # b's c1 came first
            await b.send("b again")
            await b.recv()
            assert "[c1]" in await line_with("'b again'")
    finally:
        proc.terminate()
        await proc.wait()
        await stop_server(server_a)
        await stop_server(server_b)


# -- hand-made files: order ---------------------------------------------------------------------


def test_three_files_interleave_and_ties_keep_the_order_given(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", *(frame("w1-c1", t, f"a{t}") for t in (1, 4, 7)))
    b = write_jsonl(tmp_path / "b.jsonl", *(frame("w2-c1", t, f"b{t}") for t in (2, 4, 8)))
    c = write_jsonl(tmp_path / "c.jsonl", *(frame("w3-c1", t, f"c{t}") for t in (3, 4, 6)))
    lines = run_show(a, b, c)
    assert texts(lines) == ["a1", "b2", "c3", "a4", "b4", "c4", "c6", "a7", "b8"]
    assert texts(run_show(c, a, b))[3:6] == ["c4", "a4", "b4"]  # a tie: as listed
    # Ids that are unique already are shown as they are.
    assert {line.split("[")[1].split("]")[0] for line in lines} == {"w1-c1", "w2-c1", "w3-c1"}


def test_a_clock_step_inside_one_file(tmp_path: Path) -> None:
    """A time that goes back inside a file does not break the merge: that file's records
    keep their order, and every record of every file is shown once."""
    a = write_jsonl(tmp_path / "a.jsonl", *(frame("c1", t, f"a{t}") for t in (1, 5, 2, 6)))
    b = write_jsonl(tmp_path / "b.jsonl", *(frame("c9", t, f"b{t}") for t in (3, 4)))
    shown = texts(run_show(a, b))
    assert shown == ["a1", "b3", "b4", "a5", "a2", "a6"]
    assert [t for t in shown if t[0] == "a"] == ["a1", "a5", "a2", "a6"]


def test_a_time_that_is_no_number(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", frame("c1", 1, "a1"), frame("c1", "nan", "odd"))  # type: ignore[arg-type]
    b = write_jsonl(tmp_path / "b.jsonl", frame("c2", 2, "b2"), frame("c2", 3, "b3"))
    assert sorted(texts(run_show(a, b))) == ["a1", "b2", "b3", "odd"]


# -- hand-made files: ids -----------------------------------------------------------------------


def test_colliding_ids_are_told_apart(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", handshake("c1", 1, "/a"), frame("c1", 2, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", handshake("c1", 3, "/b"), frame("c1", 4, "b"))
    # A third file happens to have an id spelt like a qualified one, and a c1 of its own.
    c = write_jsonl(
        tmp_path / "c.jsonl",
        handshake("c1@2", 5, "/odd"),
        frame("c1@2", 6, "odd"),
        handshake("c1", 7, "/c"),
        frame("c1", 8, "c"),
    )
    merged = MergedCaptures([a, b, c])
    opened = [(r.conn, r.url) for r in merged if isinstance(r, Connection)]
    assert opened == [
        ("c1", "ws://127.0.0.1:9/a"),
        ("c1@2", "ws://127.0.0.1:9/b"),
        ("c1@2@3", "ws://127.0.0.1:9/odd"),
        ("c1@3", "ws://127.0.0.1:9/c"),
    ]
    assert merged.origin("c1@2") == (b, "c1")
    assert merged.origin("c1@2@3") == (c, "c1@2")
    assert merged.origin("c1") == (a, "c1") and merged.origin("c7") is None
    assert texts(run_show(a, b, c, "--conn", "c1@3")) == ["c"]
    assert texts(run_show(a, b, c, "--conn", "c1@2@3", "--conn", "c1")) == ["a", "odd"]


def test_state_per_connection_does_not_mix_between_files(tmp_path: Path) -> None:
    """Both files have a c1, each with a frame in flight: file a's frame in two pieces with
    b's frame between them in time. Keyed by the id shown, b's frame is not taken for the
    rest of a's (it has a line of its own), and --decode decodes each message alone."""
    a = write_jsonl(
        tmp_path / "a.jsonl",
        handshake("c1", 1),
        frame("c1", 2, '{"x": ', length=10, more=True),
        frame("c1", 4, "1}", length=10, offset=6),
    )
    b = write_jsonl(tmp_path / "b.jsonl", handshake("c1", 1.5), frame("c1", 3, '{"y": 2}'))
    lines = run_show(a, b)
    frames = [line for line in lines if " -> " in line]
    assert len(frames) == 2
    assert "[c1]" in frames[0] and "[from byte 0, more follows]" in frames[0]
    assert "[c1@2]" in frames[1] and "'{\"y\": 2}'" in frames[1]
    decoded = run_show(a, b, "--decode")
    assert any("[c1] message:" in line and '"x"' in line for line in decoded), decoded
    assert any("[c1@2]" in line and '"y"' in line for line in decoded), decoded


# -- hand-made files: bad input -----------------------------------------------------------------


def test_a_missing_or_foreign_file_is_named_and_the_others_shown(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", frame("c1", 1, "a1"))
    write_jsonl(tmp_path / "b.jsonl", frame("c2", 2, "b2"))
    (tmp_path / "notes.txt").write_text("shopping list\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = cli("a.jsonl", "missing.jsonl", "b.jsonl", "notes.txt", "empty.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert texts(result.stdout.splitlines()) == ["a1", "b2"]
    problems = result.stderr.splitlines()
    assert problems == [
        "wsproxy show: missing.jsonl: No such file or directory",
        "wsproxy show: notes.txt: not a capture (not wsproxy JSONL, HAR or a mitmproxy flow file)",
        "wsproxy show: empty.jsonl: not a capture (empty file)",
    ]
    alone = cli("missing.jsonl", cwd=tmp_path)  # one file: as show has always said it
    assert (alone.returncode, alone.stderr) == (1, problems[0] + "\n")
    # -f: the line at once, then a.jsonl is followed (until stopped: -f never ends by itself)
    with subprocess.Popen(
        [sys.executable, "-m", "wsproxy", "show", "-f", "a.jsonl", "nothere.har"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=proxy_free_env(),
    ) as follow:
        assert follow.stderr is not None and follow.stdout is not None
        try:
            assert (
                follow.stderr.readline() == "wsproxy show: nothere.har: No such file or directory\n"
            )
            assert "'a1'" in follow.stdout.readline()
        finally:
            follow.terminate()


def test_a_truncated_last_line(tmp_path: Path) -> None:
    """A capture still being written or cut by a crash: its complete records are merged,
    the half line is skipped, as for one file."""
    a = write_jsonl(tmp_path / "a.jsonl", frame("c1", 1, "a1"), frame("c1", 3, "a3"))
    with open(a, "a") as file:
        file.write(json.dumps(frame("c1", 5, "cut"))[:40])
    b = write_jsonl(tmp_path / "b.jsonl", frame("c2", 2, "b2"), frame("c2", 4, "b4"))
    assert texts(run_show(a, b)) == ["a1", "b2", "a3", "b4"]
    assert texts(run_show(a)) == ["a1", "a3"]


def test_a_file_that_fails_part_way(tmp_path: Path) -> None:
    """A HAR whose second entry is damaged: the first entry is shown, then one line on the
    error, and the other file goes on to its end."""
    har = {
        "log": {
            "version": "1.2",
            "entries": [
                {
                    "startedDateTime": "1970-01-01T00:00:01+00:00",
                    "request": {"method": "GET", "url": "ws://127.0.0.1:9/h", "headers": []},
                    "response": {"status": 101, "headers": []},
                    "_resourceType": "websocket",
                    "_webSocketMessages": [{"type": "send", "time": 1.5, "opcode": 1, "data": "h"}],
                },
                {"request": 5, "_webSocketMessages": "no"},
            ],
        }
    }
    (tmp_path / "bad.har").write_text(json.dumps(har))
    write_jsonl(tmp_path / "b.jsonl", frame("c2", 2, "b2"), frame("c2", 9, "b9"))
    result = cli("bad.har", "b.jsonl", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert texts(result.stdout.splitlines()) == ["h", "b2", "b9"]
    assert result.stderr.startswith("wsproxy show: bad.har: log.entries[1]")
    with pytest.raises(CaptureFormatError, match=r"bad\.har"):
        list(MergedCaptures([tmp_path / "bad.har", tmp_path / "b.jsonl"]))  # no on_error


# -- large files, bounded memory ------------------------------------------------------------


def test_the_merge_is_lazy_and_its_memory_bounded(tmp_path: Path) -> None:
    """Three files of 12 MiB each: the first records come without reading the files, and
    reading all of it holds about one record per file, not the files."""
    payload = "x" * (200 * 1024)
    paths = [
        write_jsonl(
            tmp_path / f"big{n}.jsonl",
            *(frame(f"c{n}", 10 + t * 3 + n, payload) for t in range(64)),
        )
        for n in range(3)
    ]
    total = sum(path.stat().st_size for path in paths)
    assert total > 36 * 1024 * 1024
    tracemalloc.start()
    try:
        records = iter(MergedCaptures(paths))
        first = list(itertools.islice(records, 6))  # 3 headers, 3 frames
        assert [r.conn for r in first if isinstance(r, Frame)] == ["c0", "c1", "c2"]
        _, early_peak = tracemalloc.get_traced_memory()
        del first
        count = sum(1 for _ in records)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3 * 65 - 6  # every record but those read first
    assert early_peak < 8 * 1024 * 1024, early_peak
    assert peak < 8 * 1024 * 1024, f"{peak} bytes at peak for {total} bytes of captures"


# -- wsproxy har / wsproxy mitm: several journals into one file -----------------------------


def convert(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m wsproxy har|mitm ...``: status, stdout, stderr; no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "wsproxy", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=proxy_free_env(),
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


async def test_har_and_mitm_of_several_captures(
    capture_proxy: CaptureProxy, tmp_path: Path
) -> None:
    first, second = tmp_path / "capture.w1.jsonl", tmp_path / "capture.w2.jsonl"
    await two_runs(capture_proxy, first, second)
    kinds = ["har"] + (["mitm"] if importlib.util.find_spec("mitmproxy") else [])
    for kind in kinds:
        out = tmp_path / f"all.{kind}"
        result = convert(kind, first.name, second.name, "-o", out.name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{out.name}: 2 ")
        assert out.stat().st_mode & 0o777 == 0o600  # traffic: private, as every capture
        opened = [(r.conn, r.url) for r in MergedCaptures([out]) if isinstance(r, Connection)]
        assert [(conn, url.rsplit("/", 1)[1]) for conn, url in opened] == [
            ("c1", "alpha"),
            ("c1@2", "beta"),
        ], kind
        for conn, sent in (("c1", ["a1", "a2", "a3"]), ("c1@2", ["b1", "b2", "b3"])):
            assert texts(run_show(out, "--conn", conn, "--direction", "client")) == sent
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted([first.name, second.name, *(f"all.{kind}" for kind in kinds)])
    no_out = convert("har", first.name, second.name, cwd=tmp_path)
    assert no_out.returncode == 2
    assert "2 captures merge into one file: name it with -o" in no_out.stderr
    bad = convert("har", first.name, "gone.jsonl", "-o", "x.har", cwd=tmp_path)
    assert bad.returncode == 1 and "wsproxy har: gone.jsonl: No such file" in bad.stderr
    assert not (tmp_path / "x.har").exists()


def test_merged_journal_lines(tmp_path: Path) -> None:
    """What ``wsproxy har a b`` converts: one header, lines by ts (ties in file order), ids as
    ``show`` shows them, lines that are no record and a cut last line left out."""
    a = write_jsonl(tmp_path / "a.jsonl", handshake("c1", 1), frame("c1", 3, "a3"))
    with open(a, "a") as file:
        file.write("not json\n" + json.dumps(frame("c1", 4, "cut"))[:30])
    b = write_jsonl(tmp_path / "b.jsonl", handshake("c1", 2), frame("c1", 3, "b3"))
    out = io.BytesIO()
    merge_journals([a, b], out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == HEADER
    assert [(r["conn"], r["ts"], r.get("text")) for r in lines[1:]] == [
        ("c1", 1, None),
        ("c1@2", 2, None),
        ("c1", 3, "a3"),
        ("c1@2", 3, "b3"),
    ]
