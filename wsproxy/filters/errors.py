"""The one error a filter expression raises: what is wrong, and where (a column and a caret)."""

from __future__ import annotations

__all__ = ["FilterError"]


class FilterError(ValueError):
    """A filter expression that cannot be compiled.

    ``str(error)`` is one line for a command line's error (``'(~u foo': missing ')' at column
    8 (to close the '(' at column 1)``); ``pointer()`` is the expression with a caret under
    the column, for a person reading it at a terminal. ``column`` counts from 1; one past
    the end means "at the end".
    """

    def __init__(self, problem: str, expression: str, column: int, note: str = "") -> None:
        self.problem = problem
        self.expression = expression
        self.column = column
        more = f" ({note})" if note else ""
        super().__init__(f"{expression!r}: {problem} at column {column}{more}")

    def pointer(self) -> str:
        """Two lines: the expression, and a caret under the column."""
        return f"{self.expression}\n{' ' * (self.column - 1)}^"
