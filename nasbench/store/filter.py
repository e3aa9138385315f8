"""The ``--where`` filter of ``nasbench pareto``: a small grammar parsed by nasbench, column names checked and values
bound as parameters, never pasted into SQL; and the one query that applies it, on an in-memory connection that cannot
touch any file."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

from nasbench.errors import NasBenchError

__all__ = ["parse_filter", "filter_rows"]


def filter_rows(table: Any, columns: Sequence[str], where: str | None) -> Any:
    """Rows of the DataFrame ``table`` where every one of ``columns`` is set and the ``where`` filter holds, ordered by
    ``arch_id``."""
    import duckdb

    from nasbench.store import SAFE_CONFIG

    condition = " AND ".join(f'"{c}" IS NOT NULL' for c in columns)
    params: list[Any] = []
    if where is not None:
        sql, params = parse_filter(where, list(table.columns))
        condition += f" AND ({sql})"
    con = duckdb.connect(":memory:", config=dict(SAFE_CONFIG))
    try:
        con.register("measured", table)
        try:
            return con.execute(f"SELECT * FROM measured WHERE {condition} ORDER BY arch_id", params).df()
        except duckdb.Error as exc:  # e.g. a number compared with a string column
            raise NasBenchError("where", "cannot be evaluated over the measured columns",
                                str(exc).splitlines()[0]) from None
    finally:
        con.close()


_FILTER_MAX_CHARS = 1000
_FILTER_MAX_DEPTH = 16
_FILTER_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | '(?P<string>(?:[^']|'')*)'
  | (?P<op><=|>=|<>|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "TRUE", "FALSE"}


def parse_filter(text: str, columns: Sequence[str]) -> tuple[str, list[Any]]:
    """A ``--where`` filter as (SQL with ``?`` placeholders, bound values).

    The grammar is small on purpose: comparisons ``<column> <op> <value>`` (op one of ``= == != <> < <= > >=``),
    ``<column> [NOT] BETWEEN <value> AND <value>``, ``<column> [NOT] IN (<value>, ...)``, ``<column> IS [NOT] NULL``,
    joined by ``AND``, ``OR``, ``NOT`` and parentheses. Columns must be among ``columns`` (quoted as identifiers);
    values are numbers, ``'strings'``, ``TRUE`` or ``FALSE`` and are bound, never pasted. Anything else (a second
    statement, a function call, a sub-query) is refused with the position of the first token that does not fit.
    """
    if not isinstance(text, str) or not text.strip():
        raise NasBenchError("where", "must be a non-empty condition", text)
    if len(text) > _FILTER_MAX_CHARS:
        raise NasBenchError("where", f"must be at most {_FILTER_MAX_CHARS} characters", len(text))
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _FILTER_TOKEN.match(text, pos)
        if m is None:
            start = len(text) - len(text[pos:].lstrip())
            raise NasBenchError("where", f"unexpected character at position {start} (the filter is not SQL: "
                                         f"columns, comparisons, AND/OR/NOT, parentheses)", text[start:start + 20])
        kind = m.lastgroup or ""
        value = m.group(kind)
        tokens.append((kind, value.upper() if kind == "word" and value.upper() in _KEYWORDS else value, m.start(kind)))
        pos = m.end()
    return _FilterParser(tokens, list(columns), text).parse()


class _FilterParser:
    """Recursive descent over the tokens of :func:`parse_filter`; depth-bounded, so no input can exhaust the stack."""

    def __init__(self, tokens: list[tuple[str, str, int]], columns: list[str], text: str) -> None:
        self.tokens, self.columns, self.text, self.i = tokens, columns, text, 0
        self.params: list[Any] = []

    def parse(self) -> tuple[str, list[Any]]:
        sql = self._or(0)
        if self.i < len(self.tokens):
            self._fail("expected AND, OR or the end of the condition")
        return sql, self.params

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, rule: str) -> None:
        token = self._peek()
        where = f" at position {token[2]}" if token else " at the end"
        raise NasBenchError("where", rule + where, token[1] if token else self.text[-20:])

    def _take(self, kind: str, value: str | None = None) -> bool:
        token = self._peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.i += 1
            return True
        return False

    def _or(self, depth: int) -> str:
        if depth > _FILTER_MAX_DEPTH:
            self._fail(f"nests deeper than {_FILTER_MAX_DEPTH} levels")
        parts = [self._and(depth)]
        while self._take("word", "OR"):
            parts.append(self._and(depth))
        return " OR ".join(parts)

    def _and(self, depth: int) -> str:
        parts = [self._not(depth)]
        while self._take("word", "AND"):
            parts.append(self._not(depth))
        return " AND ".join(parts)

    def _not(self, depth: int) -> str:
        if self._take("word", "NOT"):
            if depth + 1 > _FILTER_MAX_DEPTH:
                self._fail(f"nests deeper than {_FILTER_MAX_DEPTH} levels")
            return f"NOT ({self._not(depth + 1)})"
        if self._take("punct", "("):
            inner = self._or(depth + 1)
            if not self._take("punct", ")"):
                self._fail("expected ')'")
            return f"({inner})"
        return self._comparison()

    def _column(self) -> str:
        token = self._peek()
        if token is None or token[0] != "word" or token[1] in _KEYWORDS:
            self._fail("expected a column name (arch_id, hp_<dimension> or metric_<metric>)")
        name = token[1]
        if name not in self.columns:
            raise NasBenchError("where", f"unknown column at position {token[2]}; known: "
                                         f"{', '.join(self.columns)}", name)
        self.i += 1
        return '"' + name + '"'

    def _value(self) -> str:
        token = self._peek()
        if token is None:
            self._fail("expected a value")
        kind, text, _ = token
        if kind == "number":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                self._fail("numbers must be finite")
            if isinstance(value, int) and not -2**63 <= value < 2**63:
                self._fail("integers must fit in 64 bits")
        elif kind == "string":
            value = text.replace("''", "'")
        elif kind == "word" and text in ("TRUE", "FALSE"):
            value = text == "TRUE"
        else:
            self._fail("expected a number, a 'string', TRUE or FALSE")
        self.i += 1
        self.params.append(value)
        return "?"

    def _comparison(self) -> str:
        column = self._column()
        if self._take("word", "IS"):
            negate = self._take("word", "NOT")
            if not self._take("word", "NULL"):
                self._fail("expected NULL after IS")
            return f"{column} IS {'NOT ' if negate else ''}NULL"
        negate = self._take("word", "NOT")
        if self._take("word", "BETWEEN"):
            low = self._value()
            if not self._take("word", "AND"):
                self._fail("expected AND in BETWEEN")
            return f"{column} {'NOT ' if negate else ''}BETWEEN {low} AND {self._value()}"
        if self._take("word", "IN"):
            if not self._take("punct", "("):
                self._fail("expected '(' after IN")
            values = [self._value()]
            while self._take("punct", ","):
                values.append(self._value())
            if not self._take("punct", ")"):
                self._fail("expected ')'")
            return f"{column} {'NOT ' if negate else ''}IN ({', '.join(values)})"
        if negate:
            self._fail("expected BETWEEN or IN after NOT")
        token = self._peek()
        if token is None or token[0] != "op":
            self._fail("expected a comparison (= != <> < <= > >=), BETWEEN, IN or IS [NOT] NULL")
        self.i += 1
        op = {"==": "=", "!=": "<>"}.get(token[1], token[1])
        return f"{column} {op} {self._value()}"
