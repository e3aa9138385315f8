"""Archs as text: one arch from a JSON line, the archs of a JSONL file (the CLI's arch arguments, build plans)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasbench.errors import NasBenchError

if TYPE_CHECKING:
    from nasbench.space._searchspace import SearchSpace

__all__ = ["parse_arch_line", "read_arch_file"]


def parse_arch_line(text: str, where: str) -> dict[str, Any]:
    """One arch from JSON: an arch object, or a line holding one under ``arch`` (``space sample``, ``pareto --format
    json``); ``where`` names the flag or ``file:line`` in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NasBenchError(where, f"not valid JSON ({exc.msg} at char {exc.pos})", text) from None
    if isinstance(value, dict) and isinstance(value.get("arch"), dict):
        value = value["arch"]
    if not isinstance(value, dict):
        raise NasBenchError(where, "must be a JSON object of dimensions (or a `space sample` line)", value)
    return value


def read_arch_file(path: str | Path, space: SearchSpace | None = None) -> list[dict[str, Any]]:
    """The archs of a JSONL file, one per non-blank line (:func:`parse_arch_line`); with ``space``, each checked in it.
    Errors name ``path:line``."""
    archs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            arch = parse_arch_line(line, f"{path}:{n}")
            archs.append(arch if space is None else space.check(arch, f"{path}:{n}"))
    return archs
