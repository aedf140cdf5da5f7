"""Filter expressions as tokens: ``( ) ! & |``, ``~name`` operators and words.

A word is a run of characters up to whitespace, a parenthesis, a quote or ``~`` (as in
mitmproxy), or a quoted string: ``"..."`` or ``'...'``, where a backslash escapes the quote
and itself (``\\"``, ``\\'``, ``\\\\``) and every other backslash stays as it is, so regex
escapes (``\\d``, ``\\.``) need no doubling. ``!``, ``&`` and ``|`` are operators at the start
of a token and plain characters inside a word (``a|b`` is one regex). The argument of an
operator is read in argument mode, where a leading ``!``, ``&`` or ``|`` belongs to the word
too (``~b !important``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from wsproxy.filters.errors import FilterError

__all__ = ["Lexer", "Token", "quote"]

Kind = Literal["(", ")", "!", "&", "|", "op", "word", "end"]

_WORD_STOPS = frozenset("()'\"~")
_SYMBOLS = frozenset("()!&|")
_QUOTES = frozenset("'\"")
_ESCAPED = re.compile(r"\\(?=[\\']|$)")


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # an operator's name without ``~``; a word's value, quotes and escapes undone
    start: int  # index of the first character in the expression (columns are this + 1)
    end: int
    quoted: bool = False


class Lexer:
    """Reads tokens one at a time; the parser says when it wants an argument."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.position = 0
        self._peeked: Token | None = None

    def error(self, problem: str, index: int, note: str = "") -> FilterError:
        return FilterError(problem, self.expression, index + 1, note)

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._read(argument=False)
        return self._peeked

    def next(self) -> Token:
        token = self.peek()
        self._peeked = None
        return token

    def argument(self) -> Token:
        """The next token read as an operator's argument: a word if one is there."""
        assert self._peeked is None  # the parser asks right after the operator's token
        return self._read(argument=True)

    def _skip_space(self) -> None:
        text = self.expression
        while self.position < len(text) and text[self.position].isspace():
            self.position += 1

    def _read(self, *, argument: bool) -> Token:
        self._skip_space()
        text, start = self.expression, self.position
        if start >= len(text):
            return Token("end", "", start, start)
        char = text[start]
        if char in _QUOTES:
            return self._quoted(char)
        if char == "~" and not argument:
            return self._operator()
        if char in _SYMBOLS and not (argument and char in "!&|"):
            self.position += 1
            kind: Kind = char  # type: ignore[assignment]
            return Token(kind, char, start, start + 1)
        if char == "~" or char in "()":
            return Token("end", "", start, start)  # no word here: the parser says what it wanted
        end = start
        while end < len(text) and not text[end].isspace() and text[end] not in _WORD_STOPS:
            end += 1
        self.position = end
        return Token("word", text[start:end], start, end)

    def _operator(self) -> Token:
        text, start = self.expression, self.position
        end = start + 1
        while end < len(text) and (text[end].isascii() and text[end].isalpha()):
            end += 1
        name = text[start + 1 : end]
        if not name:
            raise self.error("'~' must be followed by an operator name (~u, ~d, ...)", start)
        self.position = end
        return Token("op", name, start, end)

    def _quoted(self, quote_char: str) -> Token:
        text, start = self.expression, self.position
        out: list[str] = []
        index = start + 1
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text) and text[index + 1] in (quote_char, "\\"):
                out.append(text[index + 1])
                index += 2
                continue
            if char == quote_char:
                self.position = index + 1
                return Token("word", "".join(out), start, index + 1, quoted=True)
            out.append(char)
            index += 1
        raise self.error(f"unterminated string: no closing {quote_char}", start)


def is_bare(value: str) -> bool:
    """Whether ``value`` reads back as itself when written without quotes (as an argument)."""
    return bool(value) and not any(c.isspace() or c in _WORD_STOPS for c in value)


def quote(value: str) -> str:
    """``value`` as an argument token: bare when it can be, else single-quoted."""
    if is_bare(value):
        return value
    # A backslash is doubled only where the reader would take it as an escape (before a
    # backslash, the quote, or the closing quote), so regexes print as written: '\d+ \.'.
    escaped = _ESCAPED.sub(r"\\\\", value).replace("'", "\\'")
    return f"'{escaped}'"
