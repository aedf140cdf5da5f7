"""Capture records (handshake, close, plain HTTP) as the dicts the web UI sends and keeps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wsproxy.model import BodyCapture, HttpExchange
from wsproxy.web.limits import HTTP_BODY_KEEP


def handshake_dict(record: Any) -> dict[str, Any]:
    return {
        "type": "handshake",
        "conn": record.conn,
        "ts": record.time,
        "time": iso_time(record.time),
        "client": record.client,
        "upstream": record.upstream,
        "url": record.url,
        "request_headers": [list(h) for h in record.request_headers],
        "status": record.status,
        "reason": record.reason,
        "response_headers": [list(h) for h in record.response_headers],
        "subprotocol": record.subprotocol,
        "extensions": list(record.extensions),
    }


def close_dict(record: Any) -> dict[str, Any]:
    def side(info: Any) -> dict[str, Any]:
        return {"code": info.code, "reason": info.reason, "received_close": info.received_close}

    return {
        "type": "close",
        "conn": record.conn,
        "ts": record.time,
        "time": iso_time(record.time),
        "closed_by": record.closed_by,
        "client": side(record.client),
        "server": side(record.server),
        "counts": record.counts,
        "error": record.error,
    }


def http_dict(record: Any) -> dict[str, Any]:
    exchange = HttpExchange(
        conn=record.conn or "h",
        started=record.time,
        client_address=split_address(record.client),
        method=record.method,
        url=record.url,
        http_version=record.http_version,
        upstream=split_address(record.upstream) or ("", 0),
        request_headers=list(record.request_headers),
        request_body=BodyCapture(HTTP_BODY_KEEP),
        status=record.status,
        reason=record.reason,
        response_headers=list(record.response_headers),
        response_body=BodyCapture(HTTP_BODY_KEEP),
        first_byte=None if record.wait is None else record.time + record.wait,
        ended=record.time + record.duration,
        answered_by=record.answered_by,
        error=record.error,
    )
    for body, data, size in (
        (exchange.request_body, record.request_body, record.request_size),
        (exchange.response_body, record.response_body, record.response_size),
    ):
        body.add(data or b"")
        body.size = max(body.size, size)
    from wsproxy.capture import jsonl

    return jsonl.http(exchange)


def http_record(exchange: HttpExchange) -> dict[str, Any]:
    """The exchange's JSONL ``http`` record with the bodies the UI keeps (``HTTP_BODY_KEEP``)."""
    from wsproxy.capture import jsonl

    # A copy with shorter bodies: a capture beside may still be encoding the original.
    trimmed = replace(
        exchange,
        request_body=trimmed_body(exchange.request_body),
        response_body=trimmed_body(exchange.response_body),
    )
    return jsonl.http(trimmed)


def trimmed_body(body: BodyCapture) -> BodyCapture:
    kept = BodyCapture(HTTP_BODY_KEEP)
    kept.add(bytes(body.kept[:HTTP_BODY_KEEP]))
    kept.size = body.size
    return kept


def split_address(text: str | None) -> tuple[str, int] | None:
    if not text or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def iso_time(ts: float) -> str:
    from wsproxy.capture.records import iso_time

    return iso_time(ts)
