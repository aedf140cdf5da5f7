"""HAR 1.2 entries for plain HTTP exchanges (the JSONL ``http`` records), as DevTools writes them.

Chrome DevTools shows a HAR as a page session: every request, with its headers, cookies, query,
posted data, response content and timings. Our entries follow its exports: ``content.text`` is
the body as the upstream sent it (content coding kept), base64 with ``encoding: "base64"`` when
it is not UTF-8 text (``postData`` the same way, an extension of the spec that HAR tools
accept); a body the capture kept only the start of says so in ``comment`` and
``_wsproxy_truncated``, while ``size`` and ``bodySize`` stay the whole body's. An exchange with
no response is status 0 with ``_error``, as Chrome writes a failed request; an error status the
proxy answered itself has ``_wsproxy_answered_by: "proxy"``. Timings: ``send`` up to the end of
the request body, ``wait`` to the response head, ``receive`` to the end; DNS, connect and TLS
are not measured (-1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wsproxy.capture.records import iso_time

_RESOURCE_TYPES = (  # Chrome's _resourceType by MIME type, for DevTools' filter buttons
    ("text/html", "document"),
    ("text/css", "stylesheet"),
    ("javascript", "script"),
    ("image/", "image"),
    ("font/", "font"),
    ("audio/", "media"),
    ("video/", "media"),
    ("json", "fetch"),
    ("xml", "fetch"),
)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _pairs(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    return [(str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2]


def _header(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in pairs if n.lower() == name), None)


def _request_cookies(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    cookies = []
    for name, value in pairs:
        if name.lower() == "cookie":
            for part in value.split(";"):
                key, eq, val = part.strip().partition("=")
                if eq and key:
                    cookies.append({"name": key, "value": val})
    return cookies


def _response_cookies(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """``Set-Cookie`` headers (RFC 6265 4.1) as HAR cookies."""
    cookies = []
    for name, value in pairs:
        if name.lower() != "set-cookie":
            continue
        first, *attributes = value.split(";")
        key, eq, val = first.strip().partition("=")
        if not eq or not key:
            continue
        cookie: dict[str, Any] = {"name": key, "value": val}
        for attribute in attributes:
            attr, _, attr_value = attribute.strip().partition("=")
            attr = attr.lower()
            if attr in ("path", "domain", "expires"):
                cookie[attr] = attr_value
            elif attr in ("httponly", "secure"):
                cookie["httpOnly" if attr == "httponly" else "secure"] = True
        cookies.append(cookie)
    return cookies


def _content(body: Any, mime: str) -> dict[str, Any]:
    """``{"size", "mimeType", "text", "encoding", "comment"}`` for one recorded body."""
    body = body if isinstance(body, dict) else {}
    size = int(body.get("size") or 0)
    out: dict[str, Any] = {"size": size, "mimeType": mime}
    if "text" in body:
        out["text"] = str(body["text"])
    elif "b64" in body:
        out["text"] = str(body["b64"])
        out["encoding"] = "base64"
    if body.get("truncated"):
        out["comment"] = f"truncated by wsproxy: the first {body.get('kept', 0)} of {size} bytes"
    return out


def _post_data(body: Any, mime: str) -> dict[str, Any] | None:
    content = _content(body, mime)
    if not content["size"]:
        return None
    post: dict[str, Any] = {"mimeType": mime, "params": [], "text": content.get("text", "")}
    if "encoding" in content:
        post["encoding"] = content["encoding"]
    elif mime.startswith("application/x-www-form-urlencoded") and "comment" not in content:
        post["params"] = [{"name": n, "value": v} for n, v in parse_qsl(post["text"], True)]
    if "comment" in content:
        post["comment"] = content["comment"]
    return post


def _timings(timings: Any) -> tuple[float, dict[str, float]]:
    """The entry's total time and ``timings``, in milliseconds, from offsets in seconds."""
    timings = timings if isinstance(timings, dict) else {}
    sent, first = _num(timings.get("request_sent")), _num(timings.get("first_byte"))
    end = _num(timings.get("end"))
    end = max(x for x in (end, sent, first, 0.0) if x is not None)
    if first is None:
        send = end if sent is None else sent
        wait, receive = end - send, 0.0
    else:
        send = first if sent is None else min(sent, first)  # answered before the body ended
        wait, receive = first - send, max(0.0, end - first)
    ms = {"send": send * 1000, "wait": wait * 1000, "receive": receive * 1000}
    unknown = {"blocked": -1.0, "dns": -1.0, "connect": -1.0, "ssl": -1.0}
    return end * 1000, {**unknown, **ms}


def _resource_type(mime: str, method: str) -> str:
    mime = mime.lower()
    for needle, kind in _RESOURCE_TYPES:
        if needle in mime:
            return kind
    return "other" if method == "GET" else "fetch"


def http_entry(record: dict[str, Any]) -> dict[str, Any]:
    """The HAR entry of one ``http`` record (a parsed JSONL line; damaged fields become
    empty ones, so one bad record does not stop ``wsproxy har``)."""
    url = str(record.get("url", ""))
    method = str(record.get("method", ""))
    request_headers = _pairs(record.get("request_headers"))
    response_headers = _pairs(record.get("response_headers"))
    status = record.get("status")
    answered = isinstance(status, int) and status > 0
    request_mime = _header(request_headers, "content-type") or ""
    mime = _header(response_headers, "content-type") or "x-unknown"
    request_body = record.get("request_body")
    response_body = record.get("response_body")
    total, timings = _timings(record.get("timings"))
    ts = record.get("ts")
    request: dict[str, Any] = {
        "method": method,
        "url": url,
        "httpVersion": str(record.get("http_version") or "HTTP/1.1"),
        "cookies": _request_cookies(request_headers),
        "headers": [{"name": n, "value": v} for n, v in request_headers],
        "queryString": [{"name": n, "value": v} for n, v in parse_qsl(urlsplit(url).query, True)],
        "headersSize": -1,
        "bodySize": int((request_body or {}).get("size") or 0),
    }
    post = _post_data(request_body, request_mime)
    if post is not None:
        request["postData"] = post
    content = _content(response_body, mime)
    response: dict[str, Any] = {
        "status": status if answered else 0,
        "statusText": str(record.get("reason") or "") if answered else "",
        "httpVersion": str(record.get("response_version") or "HTTP/1.1") if answered else "",
        "cookies": _response_cookies(response_headers),
        "headers": [{"name": n, "value": v} for n, v in response_headers],
        "content": content,
        "redirectURL": _header(response_headers, "location") or "",
        "headersSize": -1,
        "bodySize": content["size"] if answered else -1,
    }
    if not answered and record.get("error"):
        response["_error"] = str(record["error"])
    entry: dict[str, Any] = {
        "startedDateTime": iso_time(float(ts) if isinstance(ts, int | float) else 0.0),
        "time": total,
        "request": request,
        "response": response,
        "cache": {},
        "timings": timings,
        "connection": str(record.get("conn", "")),
        "_resourceType": _resource_type(mime, method),
        "_wsproxy_conn": str(record.get("conn", "")),
    }
    upstream = record.get("upstream")
    if upstream:
        entry["serverIPAddress"] = str(upstream).rsplit(":", 1)[0].strip("[]")
    for field in ("answered_by", "error"):
        if record.get(field):
            entry[f"_wsproxy_{field}"] = record[field]
    if any(isinstance(b, dict) and b.get("truncated") for b in (request_body, response_body)):
        entry["_wsproxy_truncated"] = True
    return entry
