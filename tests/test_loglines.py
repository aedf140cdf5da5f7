"""loglines: frame lines written once per turn of the event loop, formatted as logging would."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import pytest

from wsproxy import loglines
from wsproxy.loglines import LineHandler

LINE = re.compile(r"^\d\d:\d\d:\d\d w1 (.*)$")


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, LineHandler]]:
    stream = io.StringIO()
    handler = LineHandler(stream, "w1 ")
    log = logging.getLogger("wsproxy.test-loglines")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log, stream, handler
    log.handlers.clear()


def _messages(stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m.group(1) for m in matches if m]


def test_lines_read_as_the_plain_formatter_writes_them(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out
    loglines.info(log, "[%s] %s", "c1", "client -> server TEXT F len=2 'hi'")
    log.info("[%s] %s", "c1", "a plain record")
    plain = io.StringIO()
    reference = logging.StreamHandler(plain)
    reference.setFormatter(logging.Formatter("%(asctime)s w1 %(message)s", "%H:%M:%S"))
    reference.emit(logging.makeLogRecord({"msg": "[%s] %s", "args": ("c1", "x"), "levelno": 20}))
    assert LINE.match(plain.getvalue().rstrip("\n"))
    assert _messages(stream) == ["[c1] client -> server TEXT F len=2 'hi'", "[c1] a plain record"]


def test_outside_a_loop_a_line_is_written_at_once(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out
    loglines.info(log, "%s", "now")
    assert _messages(stream) == ["now"]


def test_in_a_loop_lines_wait_for_the_end_of_the_turn_and_keep_their_order(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out

    async def main() -> list[str]:
        loglines.info(log, "%s", "frame 1")
        loglines.info(log, "%s", "frame 2")
        assert stream.getvalue() == ""  # one write for the turn, later
        log.warning("an event")  # written at once, after the lines before it
        loglines.info(log, "%s", "frame 3")
        seen = _messages(stream)
        await asyncio.sleep(0)
        return seen

    before = asyncio.run(main())
    assert before == ["frame 1", "frame 2", "an event"]
    assert _messages(stream) == ["frame 1", "frame 2", "an event", "frame 3"]


def test_much_waiting_is_written_without_waiting_for_the_turn(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out

    async def main() -> int:
        for n in range(loglines.FLUSH_AT // 10):
            loglines.info(log, "%s", f"line {n:05d}")
        return len(stream.getvalue())

    assert asyncio.run(main()) >= loglines.FLUSH_AT
    assert len(_messages(stream)) == loglines.FLUSH_AT // 10


def test_any_other_setup_gets_a_plain_logging_call(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log.addHandler(Keep())
    loglines.info(log, "[%s] %s", "c2", "two handlers")
    assert [(r.msg, r.args) for r in seen] == [("[%s] %s", ("c2", "two handlers"))]
    assert _messages(stream) == ["[c2] two handlers"]
    log.handlers[:] = [handler]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    loglines.info(log, "%s", "own format")
    assert stream.getvalue().splitlines()[-1] == "INFO own format"
    handler.setFormatter(handler.own_formatter)
    log.setLevel(logging.WARNING)
    loglines.info(log, "%s", "not shown")
    assert "not shown" not in stream.getvalue()


def test_a_broken_stream_loses_lines_not_the_proxy(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out
    stream.close()
    loglines.info(log, "%s", "lost")  # no exception
    handler.flush()


def test_tagged_lines_read_as_one_info_call_each(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    log.handlers[:] = [handler]  # pytest's capture handlers left out
    loglines.info_tagged(log, "c3", ["client -> server TEXT F len=2 'hi'", "second"])
    loglines.info_tagged(log, "c3", [])  # nothing to write: no line
    loglines.info(log, "[%s] %s", "c3", "third")
    assert _messages(stream) == [
        "[c3] client -> server TEXT F len=2 'hi'",
        "[c3] second",
        "[c3] third",
    ]


def test_tagged_lines_for_any_other_setup_are_plain_logging_calls(
    logger: tuple[logging.Logger, io.StringIO, LineHandler],
) -> None:
    log, stream, handler = logger
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log.handlers[:] = [handler, Keep()]
    loglines.info_tagged(log, "c4", ["one", "two"])
    assert [(r.msg, r.args) for r in seen] == [
        ("[%s] %s", ("c4", "one")),
        ("[%s] %s", ("c4", "two")),
    ]
    assert _messages(stream) == ["[c4] one", "[c4] two"]
