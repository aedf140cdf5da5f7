"""Header grammar shared by the handshake and the extensions: RFC 6455 section 9.1.

``Sec-WebSocket-Extensions`` is a comma list of extensions, each a token followed by
``; name`` or ``; name=value`` parameters, where a value is a token or a quoted string.
The header may be repeated; its values are concatenated (RFC 7230 section 3.2.2).
"""

from __future__ import annotations

import re

from wsproxy.sansio.errors import HandshakeError

ExtensionParams = list[tuple[str, str | None]]
Extension = tuple[str, ExtensionParams]

# RFC 7230 section 3.2.6: token = 1*tchar
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED}))?\s*")
_TOKEN_RE = re.compile(rf"\s*({_TOKEN})\s*")
_BARE_TOKEN_RE = re.compile(_TOKEN)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:  # no quoted string (what browsers send): nothing hides a separator
        return text.split(sep)
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_extension_header(values: list[str], status: int = 400) -> list[Extension]:
    """Parse every ``Sec-WebSocket-Extensions`` value into (name, [(param, value|None)]).

    Raises HandshakeError with ``status`` (400 for a client's offer, 502 for an upstream's
    answer) when the header does not follow the grammar.
    """
    extensions: list[Extension] = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            if not item.strip():
                continue  # RFC 7230 7: empty list elements are ignored
            pieces = _split_outside_quotes(item, ";")
            name_match = _TOKEN_RE.fullmatch(pieces[0])
            if name_match is None:
                raise HandshakeError(status, f"malformed Sec-WebSocket-Extensions: {value!r}")
            params: ExtensionParams = []
            for piece in pieces[1:]:
                param = _PARAM_RE.fullmatch(piece)
                if param is None:
                    raise HandshakeError(status, f"malformed extension parameter: {piece!r}")
                raw = param.group(2)
                if raw is not None and raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params.append((param.group(1), raw))
            extensions.append((name_match.group(1), params))
    return extensions


def serialize_extension_header(extensions: list[Extension]) -> str:
    """The inverse of parse_extension_header, for one header line."""
    items = []
    for name, params in extensions:
        parts = [name]
        for key, value in params:
            parts.append(key if value is None else f"{key}={value}")
        items.append("; ".join(parts))
    return ", ".join(items)


def parse_token_list(values: list[str], status: int = 400) -> list[str]:
    """Parse comma lists of tokens (``Connection``, ``Upgrade``, ``Sec-WebSocket-Protocol``)."""
    tokens: list[str] = []
    for value in values:
        if _BARE_TOKEN_RE.fullmatch(value) is not None:  # one token, no spaces: most values
            tokens.append(value)
            continue
        for item in value.split(","):
            if not item.strip():
                continue
            match = _TOKEN_RE.fullmatch(item)
            if match is None:
                raise HandshakeError(status, f"malformed token list: {value!r}")
            tokens.append(match.group(1))
    return tokens
