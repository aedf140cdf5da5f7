"""The one-CONNECTING rule's turns (wsproxy.proxy.turns): first come first served per key,
a client that leaves gives its place up, a cancelled waiter passes a turn it just won on,
and no key is left behind."""

from __future__ import annotations

import asyncio

import pytest

from wsproxy.proxy.turns import ClientGone, HandshakeTurns

KEY = ("127.0.0.1", "upstream.example", 443)


async def test_turns_go_in_order_and_the_key_goes_with_the_last() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    order: list[int] = []
    release = [loop.create_future() for _ in range(3)]

    async def handshake(n: int) -> None:
        async with turns.turn(KEY, loop.create_future()):
            order.append(n)
            await release[n]

    tasks = [asyncio.create_task(handshake(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert order == [0] and turns.active == 1
    for n in (2, 1, 0):  # released out of order: the turns still go 0, 1, 2
        release[n].set_result(None)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and turns.active == 0


async def test_another_key_does_not_wait() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    other = (*KEY[:2], 80)
    async with turns.turn(KEY, loop.create_future()), turns.turn(other, loop.create_future()):
        assert turns.active == 2
    assert turns.active == 0


async def test_a_client_that_leaves_while_waiting_gives_up_its_place() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    entered: list[str] = []

    async def handshake(name: str, client_gone: asyncio.Future[None]) -> None:
        async with turns.turn(KEY, client_gone):
            entered.append(name)

    holding = turns.turn(KEY, loop.create_future())
    await holding.__aenter__()
    leaving = asyncio.create_task(handshake("leaving", gone))
    staying = asyncio.create_task(handshake("staying", loop.create_future()))
    await asyncio.sleep(0)
    gone.set_result(None)
    with pytest.raises(ClientGone):
        await leaving
    await holding.__aexit__(None, None, None)
    await staying
    assert entered == ["staying"] and turns.active == 0


async def test_a_client_already_gone_does_not_wait() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    gone.set_result(None)
    async with turns.turn(KEY, loop.create_future()):
        with pytest.raises(ClientGone):
            async with turns.turn(KEY, gone):
                pytest.fail("a client gone got the turn")
    assert turns.active == 0


async def test_a_waiter_cancelled_as_it_wins_passes_the_turn_on() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    entered: list[str] = []

    async def handshake(name: str) -> None:
        async with turns.turn(KEY, loop.create_future()):
            entered.append(name)

    holding = turns.turn(KEY, loop.create_future())
    await holding.__aenter__()
    unlucky = asyncio.create_task(handshake("unlucky"))
    next_one = asyncio.create_task(handshake("next"))
    await asyncio.sleep(0)
    await holding.__aexit__(None, None, None)  # the turn goes to "unlucky"...
    unlucky.cancel()  # ...which is cancelled before it runs: "next" must get it
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    await next_one
    assert entered == ["next"] and turns.active == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    turns = HandshakeTurns()
    loop = asyncio.get_running_loop()
    holding = turns.turn(KEY, loop.create_future())
    await holding.__aenter__()
    waiting = asyncio.create_task(turns.turn(KEY, loop.create_future()).__aenter__())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await holding.__aexit__(None, None, None)
    assert turns.active == 0


async def test_disabled_turns_never_wait() -> None:
    turns = HandshakeTurns(enabled=False)
    loop = asyncio.get_running_loop()
    async with turns.turn(KEY, loop.create_future()), turns.turn(KEY, loop.create_future()):
        assert turns.active == 0
