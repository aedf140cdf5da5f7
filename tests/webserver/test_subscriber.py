"""A page's push queue (``livemodel.Subscriber``) and the UI's batch (``LiveState.push``):
whatever overflows is counted once in a ``dropped_events``, never lost from the count."""

from __future__ import annotations

import json

from wsproxy.web.limits import MAX_PENDING, SUBSCRIBER_QUEUE
from wsproxy.web.live import LiveState
from wsproxy.web.livemodel import Subscriber


def _batch(events: int, size: int) -> str:
    return json.dumps({"type": "batch", "events": [{"type": "x", "pad": "p" * size}] * events})


def _counted(batches: list[str]) -> tuple[int, int]:
    """Events in these batches, and what their dropped_events say was dropped."""
    seen = dropped = 0
    for batch in batches:
        for event in json.loads(batch)["events"]:
            if event["type"] == "dropped_events":
                dropped += event["count"]
            else:
                seen += 1
    return seen, dropped


def test_overflows_in_a_row_carry_the_count_of_the_notice_they_clear() -> None:
    """Overflow, one batch that fits, overflow again: the second notice replaces the first
    (cleared with the queue), so it must count the events of both."""
    subscriber = Subscriber()
    size = SUBSCRIBER_QUEUE // 3
    pushed = 0
    for _ in range(12):
        subscriber.push(_batch(2, size // 2), 2)
        pushed += 2
    seen, dropped = _counted(subscriber.take())
    assert seen + dropped == pushed
    assert dropped > 0
    subscriber.push(_batch(1, 10), 1)  # after a take: counted afresh
    assert _counted(subscriber.take()) == (1, 0)


def test_a_workers_dropped_count_joins_the_batch_count() -> None:
    """A worker's dropped_events (records it could not send) and the batch's own overflow
    come out as one count, however full the batch was."""
    state = LiveState()
    subscriber = Subscriber()
    state.subscribers.add(subscriber)
    for n in range(MAX_PENDING + 5):
        state.push({"type": "pause", "n": n})
    state.push({"type": "dropped_events", "count": 40})
    state.flush()
    assert _counted(subscriber.take()) == (MAX_PENDING, 45)


def test_a_batch_with_an_overflow_notice_counts_what_it_stands_for_when_dropped() -> None:
    """A batch that carries the UI's own dropped_events, then dropped by a page's full queue:
    the page's notice counts the events that notice stood for, not one."""
    state = LiveState()
    subscriber = Subscriber()
    state.subscribers.add(subscriber)
    pushed = 0
    for _ in range(12):
        for _event in range(MAX_PENDING + 300):  # 300 over: a dropped_events of 300 in each batch
            state.push({"type": "pause", "pad": "p" * (SUBSCRIBER_QUEUE // MAX_PENDING // 3)})
            pushed += 1
        state.flush()
    seen, dropped = _counted(subscriber.take())
    assert dropped > 300  # the page's queue overflowed too
    assert seen + dropped == pushed
