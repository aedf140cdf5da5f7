"""Accept failures (wsproxy.proxy.accept): bursts by a fake clock, the warning's text, and the
exception handler that passes on every other context."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from typing import Any

import pytest

from tests.harness import wait_until
from wsproxy.proxy.accept import (
    ACCEPT_OUT_OF_RESOURCE,
    AcceptFailures,
    AcceptWatch,
    describe,
)

EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_one_warning_per_burst_and_a_reminder_when_it_lasts() -> None:
    bursts = AcceptFailures(settle_after=2, remind_after=60)
    assert bursts.failed(0.0) is True
    assert [bursts.failed(t) for t in (0.0, 0.0, 1.0, 2.0, 59.0)] == [False] * 5
    assert bursts.failed(60.0) is True  # still failing a minute later: say so again
    assert bursts.failed(61.0) is False
    assert bursts.count == 8


def test_a_burst_settles_two_seconds_after_its_last_failure() -> None:
    bursts = AcceptFailures(settle_after=2)
    assert bursts.settle(0.0) is None  # no burst
    bursts.failed(10.0)
    bursts.failed(10.0)
    bursts.accepted(10.5)
    assert bursts.settle(11.0) is None  # too soon: asyncio retries after one second
    assert bursts.settles_in(11.0) == 1.0
    bursts.failed(11.0)  # at the limit: fails again
    assert not bursts.recovering
    assert bursts.settle(14.0) is None  # no accept worked since
    bursts.accepted(14.0)
    assert bursts.settle(14.0) == 3
    assert not bursts.in_burst
    assert bursts.failed(20.0) is True  # the next one warns again


def test_the_warning_names_the_limit_and_how_to_raise_it() -> None:
    text = describe(EMFILE, (64, 4096))
    assert "EMFILE (Too many open files)" in text
    assert "the open files limit is 64 (hard limit 4096)" in text
    assert "ulimit -n" in text and "LimitNOFILE" in text
    assert "(hard limit unlimited)" in describe(EMFILE, (64, resource.RLIM_INFINITY))
    assert "fs.file-max" in describe(OSError(errno.ENFILE, "Too many open files in system"), (1, 1))
    assert "out of memory" in describe(OSError(errno.ENOBUFS, "No buffer space"), (1, 1))
    assert "an error" in describe(None, (1, 1))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_handler_logs_once_and_passes_the_rest_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "wsproxy")
    loop = asyncio.get_running_loop()
    passed: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: passed.append(context))
    clock = Clock()
    watch = AcceptWatch(clock)
    watch.install(loop)
    watch.install(loop)  # twice (two servers in one loop) is once
    try:
        for _ in range(100):
            loop.call_exception_handler({"message": ACCEPT_OUT_OF_RESOURCE, "exception": EMFILE})
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot accept new connections" in warnings[0].message
        assert not warnings[0].exc_info  # no traceback

        loop.call_exception_handler({"message": "something else"})
        assert [c["message"] for c in passed] == ["something else"]

        def _start_serving() -> None: ...

        handle = asyncio.Handle(_start_serving, (), loop)  # as the loop would report it
        retry = {"message": "Exception in callback", "exception": ValueError(), "handle": handle}
        loop.call_exception_handler(retry)  # the retry after shutdown: not an error
        assert len(passed) == 1

        factory = watch.watching(lambda: "peer")
        clock.now += 0.5
        assert factory() == "peer"  # too soon to call it over
        assert watch.failures.in_burst
        clock.now += 2
        assert factory() == "peer"
        assert "accepting connections again (100 accept() calls had failed)" in caplog.text
    finally:
        loop.set_exception_handler(None)


async def test_a_timer_ends_the_burst_when_no_accept_comes_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "wsproxy")
    loop = asyncio.get_running_loop()
    watch = AcceptWatch()
    watch.failures.settle_after = 0.05
    watch.install(loop)
    try:
        loop.call_exception_handler({"message": ACCEPT_OUT_OF_RESOURCE, "exception": EMFILE})
        watch.watching(lambda: None)()  # one accept works; then nothing
        await wait_until(lambda: not watch.failures.in_burst, 5)
        assert "accepting connections again (1 accept() calls had failed)" in caplog.text
    finally:
        loop.set_exception_handler(None)
