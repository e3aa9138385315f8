"""Every error the project raises on purpose.

Each is a ``ValueError`` so callers that only know the standard library can still catch them; the CLI turns them
into one line ``nasbench: error: <where>: <rule> (got <value>)`` and exit code 2 (an argument's ``<where>``
spelled as the flag that sets it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, TypeVar

__all__ = [
    "NasBenchError",
    "InvalidSpaceError",
    "IllegalSubNetworkError",
    "StoreError",
    "DataError",
    "one_of",
    "check_choice",
    "check_each",
]

T = TypeVar("T")


class NasBenchError(ValueError):
    """Base class: ``where`` names a file, file:key, dimension, or the function argument or config field that is
    wrong, in the library's own words (``ppl_tokens``; the CLI shows the flag that sets it, ``--ppl-tokens``);
    ``rule`` says what must hold."""

    def __init__(self, where: str, rule: str, got: Any = None, *, show_got: bool = True) -> None:
        self.where = where
        self.rule = rule
        self.got = got
        self.show_got = show_got
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.rule}" if self.where else self.rule
        if self.show_got:
            text += f" (got {_short(self.got)})"
        return text


class InvalidSpaceError(NasBenchError):
    """A search-space file breaks a rule: bad YAML, unknown key, wrong type, empty choice, low > high, ..."""


class IllegalSubNetworkError(NasBenchError):
    """An architecture outside the space or the supernet: names the dimension, the value and the allowed range."""


class StoreError(NasBenchError):
    """A DuckDB file is missing, read-only, or has an unknown schema version."""


class DataError(NasBenchError):
    """A data source is missing from the data directory or malformed."""


def one_of(choices: Collection[str], *, each: bool = False) -> str:
    """The rule of a closed set of names, ``must be one of a, b, c`` (``each must be ...`` for a list): the one
    wording every flag, preset field and space key uses, so tests and users can match it."""
    return f"{'each ' if each else ''}must be one of {', '.join(choices)}"


def check_choice(where: str, value: T, choices: Collection[str]) -> T:
    """``value`` if it is in ``choices`` (a tuple, or a dict's keys), else the error naming ``where`` and the set."""
    if value not in choices:
        raise NasBenchError(where, one_of(choices), value)
    return value


def check_each(where: str, values: Iterable[T], choices: Collection[str]) -> Iterable[T]:
    """``values`` if each is in ``choices``, else the error naming the first one outside."""
    for value in values:
        if value not in choices:
            raise NasBenchError(where, one_of(choices, each=True), value)
    return values


def _short(value: Any, limit: int = 120) -> str:
    """A bounded excerpt of ``value``: never more than ``limit`` characters, and never the repr of a whole huge or
    deeply nested value (reprlib stops after a few items and levels before anything is formatted)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _make_repr() -> Any:
    import reprlib
    from itertools import islice

    class _Repr(reprlib.Repr):
        def repr_dict(self, x: dict, level: int) -> str:  # insertion order, as repr() (reprlib sorts keys)
            if not x:
                return "{}"
            if level <= 0:
                return "{...}"
            items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in islice(x.items(),
                                                                                                   self.maxdict)]
            return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"

    r = _Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxset, r.maxdict = 4, 24, 24, 12, 12
    r.maxstring, r.maxlong, r.maxother = 160, 60, 160
    return r


_REPR = _make_repr()
