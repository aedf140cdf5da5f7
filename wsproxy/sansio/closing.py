"""The close handshake between the two legs, and what a protocol error or a vanished peer ends.

The rules are the relay's (see its module doc): the initiator's close goes to the other peer,
the initiator gets its own close back once that peer answered, a peer that broke the protocol
gets the RFC's code and the other a clean close, and after a client's error the upstream may
answer for ``ERROR_GRACE`` first. Every change of a leg's state goes through ``Leg.change``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsproxy.sansio.events import ControlFrame, Violation
from wsproxy.sansio.frames import CloseCode, Opcode, serialize_close
from wsproxy.sansio.legs import CloseFrame, Leg, LegEvent, Side


class CloseHandshake:
    """The relay's close-handshake methods; ``Relay`` provides what they use."""

    if TYPE_CHECKING:
        _ended: list[Leg]

        def leg(self, side: Side) -> Leg: ...

        def _note(self, side: Side, text: str) -> None: ...

        def _ended_by(self, who: str) -> None: ...

    def _close_received(self, source: Leg, target: Leg, frame: ControlFrame) -> None:
        self._ended_by(source.side.value)
        source.received = CloseFrame(frame.close_code, frame.close_reason, frame.payload)
        if source.live:
            source.change(LegEvent.RECEIVE_CLOSE)
        source.held.clear()
        if target.owed_close is not None:
            # The target failed earlier and waits for this peer to finish: it now gets its
            # protocol error code, after everything this source had sent before; the source
            # gets the echo of its own close.
            self._send_owed(target)
            source.grace_close = None
            self._send_close_frame(source, source.received)
        elif target.received is not None:
            # The answer to a close the target started: the target gets its own frame back.
            self._send_close_frame(target, target.received)
        else:
            self._send_close_frame(target, source.received)
        self._settle(source)
        self._settle(target)

    def _close(self, leg: Leg, code: int, reason: str) -> None:
        self._send_close_frame(leg, CloseFrame(code, reason, serialize_close(code, reason)))

    def _send_close_frame(self, leg: Leg, frame: CloseFrame) -> None:
        """Send ``leg`` this close frame, or cut it if a frame to it is half-written."""
        if not leg.can_send:
            return
        if leg.mid_frame_out:
            # A close frame cannot go inside a frame's payload: the only way out is to cut.
            code = frame.code
            self._note(leg.side, f"aborted: a frame to it was half-sent when it had to get {code}")
            self._transport(leg, LegEvent.ABORT)
            return
        leg.writer.send_frame(Opcode.CLOSE, frame.payload)
        leg.sent = frame
        leg.change(LegEvent.SEND_CLOSE)

    def _send_owed(self, leg: Leg) -> None:
        assert leg.owed_close is not None
        code, reason = leg.owed_close
        leg.owed_close = None
        self._close(leg, code, reason)

    def _on_violation(self, source: Leg, target: Leg, violation: Violation) -> None:
        self._ended_by("proxy")
        source.violation = violation
        source.held.clear()
        self._note(source.side, f"protocol error: {violation.reason} ({violation.code})")
        if source.side is Side.CLIENT and not (target.gone or target.close_received):
            # Let the upstream answer and finish its close handshake first (module docstring).
            if not (source.close_sent or target.close_sent or target.mid_frame_out):
                target.grace_close = (CloseCode.GOING_AWAY, "client protocol error")
                source.owed_close = (violation.code, violation.reason)
            else:
                self._close(target, CloseCode.GOING_AWAY, "client protocol error")
                self._close(source, violation.code, violation.reason)
        else:
            if target.owed_close is not None:
                # The target failed first and waits for this peer's close: it gets its own
                # error code (and its transport closed by _settle), not this peer's 1014.
                self._send_owed(target)
            if source.side is Side.SERVER:
                self._close(target, CloseCode.BAD_GATEWAY, "upstream protocol error")
            else:
                self._close(target, CloseCode.GOING_AWAY, "client protocol error")
            self._close(source, violation.code, violation.reason)
        self._settle(source)
        self._settle(target)

    def _peer_gone(self, source: Leg, reason: str) -> None:
        self._transport(source, LegEvent.PEER_GONE)
        self._ended_by(source.side.value)
        target = self.leg(source.side.other)
        if target.owed_close is not None:
            # The target broke the protocol first and waited for this peer: it gets its own
            # error code, not the 1014 of an upstream failure.
            self._send_owed(target)
        if not source.close_received and not source.violation:
            why = reason or "connection closed without a close frame"
            self._note(source.side, f"{why} (1006)")
            if source.side is Side.CLIENT:
                self._close(target, CloseCode.GOING_AWAY, "client went away")
            else:
                self._close(target, CloseCode.BAD_GATEWAY, "upstream connection lost")
        self._settle(target)

    def _close_timed_out(self, leg: Leg) -> None:
        other = self.leg(leg.side.other)
        if other.owed_close is not None:
            self._send_owed(other)
            self._settle(other)
        self._transport(leg, LegEvent.END)

    def _settle(self, leg: Leg) -> None:
        """Decide whether ``leg``'s transport is closed now that its close frames moved.

        The proxy is the server towards its client, so it closes that TCP connection first
        (RFC 6455 7.1.1); towards the upstream it is the client and waits for the server to
        close (the shell bounds the wait). A peer that broke the protocol is closed right after
        its close frame went out.
        """
        if not leg.live or leg.owed_close is not None or not leg.close_sent:
            return
        if leg.violation is not None or (leg.side is Side.CLIENT and leg.close_received):
            self._transport(leg, LegEvent.END)

    def _transport(self, leg: Leg, event: LegEvent) -> None:
        """Move ``leg`` to a terminal state; the transport command follows the bytes."""
        if event is not LegEvent.PEER_GONE and not leg.live:
            return
        if leg.change(event):
            self._ended.append(leg)
