"""A small structural check of HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/):
the required fields of log, creator, entries, request, response, content, cache and timings,
with their JSON types, plus Chrome's ``_webSocketMessages`` items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

_NUM = (int, float)


def _need(obj: Any, where: str, fields: dict[str, Any]) -> None:
    assert isinstance(obj, dict), f"{where}: not an object"
    for name, kind in fields.items():
        assert name in obj, f"{where}.{name} missing"
        assert isinstance(obj[name], kind), f"{where}.{name}: {type(obj[name]).__name__}"


def _headers(items: Any, where: str) -> None:
    assert isinstance(items, list), where
    for i, item in enumerate(items):
        _need(item, f"{where}[{i}]", {"name": str, "value": str})


def check_har(doc: Any) -> None:
    _need(doc, "har", {"log": dict})
    log = doc["log"]
    _need(log, "log", {"version": str, "creator": dict, "entries": list})
    _need(log["creator"], "log.creator", {"name": str, "version": str})
    for i, entry in enumerate(log["entries"]):
        where = f"entries[{i}]"
        _need(
            entry,
            where,
            {
                "startedDateTime": str,
                "time": _NUM,
                "request": dict,
                "response": dict,
                "cache": dict,
                "timings": dict,
            },
        )
        datetime.fromisoformat(entry["startedDateTime"])
        request = entry["request"]
        _need(
            request,
            f"{where}.request",
            {
                "method": str,
                "url": str,
                "httpVersion": str,
                "cookies": list,
                "headers": list,
                "queryString": list,
                "headersSize": int,
                "bodySize": int,
            },
        )
        _headers(request["headers"], f"{where}.request.headers")
        response = entry["response"]
        _need(
            response,
            f"{where}.response",
            {
                "status": int,
                "statusText": str,
                "httpVersion": str,
                "cookies": list,
                "headers": list,
                "content": dict,
                "redirectURL": str,
                "headersSize": int,
                "bodySize": int,
            },
        )
        _headers(response["headers"], f"{where}.response.headers")
        _need(response["content"], f"{where}.response.content", {"size": int, "mimeType": str})
        _need(entry["timings"], f"{where}.timings", {"send": _NUM, "wait": _NUM, "receive": _NUM})
        for j, message in enumerate(entry.get("_webSocketMessages", [])):
            _need(
                message,
                f"{where}._webSocketMessages[{j}]",
                {"type": str, "time": _NUM, "opcode": int, "data": str},
            )
            assert message["type"] in ("send", "receive")
