"""Filter expressions, parsed by recursive descent (the grammar is in the README)::

    expression = term { "|" term } ;
    term       = factor { [ "&" ] factor } ;       (* side by side means & *)
    factor     = "!" factor | "(" expression ")" | operator | word ;
    operator   = "~" name [ argument ] ;
    word       = bare word | quoted string ;        (* a word alone is ~u word *)

``!`` binds tightest, then ``&``, then ``|`` (mitmproxy's order). Unlike mitmproxy, which
joins top-level expressions written side by side after every ``|`` (``a b | c`` is ``a &
(b | c)`` there), side by side is exactly ``&`` here: ``a b | c`` is ``(a & b) | c``.
"""

from __future__ import annotations

from wsproxy.filters.errors import FilterError
from wsproxy.filters.lexer import Lexer, Token
from wsproxy.filters.nodes import And, Leaf, Node, Not, Or
from wsproxy.filters.operators import OPERATORS, ArgumentError, Url

__all__ = ["parse"]

MAX_DEPTH = 200  # nested ( and !: beyond this a person did not write it; Python's stack stays safe
_STARTS = ("(", "!", "op", "word")


def parse(expression: str) -> Node:
    """The tree of ``expression``; ``FilterError`` says what is wrong and at which column."""
    return _Parser(expression).parse()


class _Parser:
    def __init__(self, expression: str) -> None:
        self.lexer = Lexer(expression)
        self.depth = 0

    def error(self, problem: str, token: Token, note: str = "") -> FilterError:
        return self.lexer.error(problem, token.start, note)

    def parse(self) -> Node:
        if self.lexer.peek().kind == "end":
            raise self.error("empty filter expression", self.lexer.peek())
        node = self.expression()
        token = self.lexer.peek()
        if token.kind == ")":
            raise self.error("unexpected ')' (no '(' to close)", token)
        assert token.kind == "end"  # every other token starts a factor or joins two
        return node

    def expression(self, after: str | None = None) -> Node:
        terms = [self.term(after)]
        while self.lexer.peek().kind == "|":
            self.lexer.next()
            terms.append(self.term(after="|"))
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def term(self, after: str | None = None) -> Node:
        factors = [self.factor(after)]
        while True:
            kind = self.lexer.peek().kind
            if kind == "&":
                self.lexer.next()
                factors.append(self.factor("&"))
            elif kind in _STARTS:
                factors.append(self.factor())
            else:
                break
        return factors[0] if len(factors) == 1 else And(tuple(factors))

    def factor(self, after: str | None = None) -> Node:
        token = self.lexer.peek()
        if token.kind in ("end", ")", "&", "|"):
            raise self.error(self._missing(token, after), token)
        self.lexer.next()
        if token.kind == "word":
            return self.leaf(Url, token, token)
        if token.kind == "op":
            return self.operator(token)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} deep", token)
        try:
            if token.kind == "!":
                return Not(self.factor("!"))
            node = self.expression(after="(")
            closing = self.lexer.peek()
            if closing.kind != ")":
                note = f"to close the '(' at column {token.start + 1}"
                raise self.error("missing ')'", closing, note)
            self.lexer.next()
            return node
        finally:
            self.depth -= 1

    def _missing(self, token: Token, after: str | None) -> str:
        found = "the end" if token.kind == "end" else f"'{token.text}'"
        if after is not None:
            return f"'{after}' needs an expression after it, found {found}"
        if token.kind in ("&", "|"):
            return f"'{token.text}' needs an expression before it"
        return f"expected an expression, found {found}"

    def operator(self, token: Token) -> Node:
        cls = OPERATORS.get(token.text)
        if cls is None:
            known = ", ".join(f"~{code}" for code in OPERATORS)
            raise self.error(f"unknown operator ~{token.text} (known: {known})", token)
        if cls.metavar is None:
            return cls()
        argument = self.lexer.argument()
        if argument.kind != "word":
            what = "the end" if argument.kind == "end" else f"'{argument.text or argument.kind}'"
            if argument.kind == "end" and argument.start < len(self.lexer.expression):
                what = f"'{self.lexer.expression[argument.start]}'"
            note = "quote an argument with spaces, parentheses or ~: ~u '(a|b) c'"
            raise self.error(f"~{token.text} needs {cls.metavar}, found {what}", argument, note)
        return self.leaf(cls, token, argument)

    def leaf(self, cls: type[Leaf], token: Token, argument: Token) -> Node:
        try:
            return cls(argument.text)  # type: ignore[call-arg]
        except ArgumentError as error:
            # Point where in the argument the problem is (a quoted one with escapes: its start).
            raw = self.lexer.expression[argument.start : argument.end]
            offset = min(error.offset, len(argument.text))
            if argument.quoted:
                offset = offset + 1 if raw[1:-1] == argument.text else 0
            raise self.lexer.error(str(error), argument.start + offset) from None
