"""What every verb group of the CLI shares: the one-line-error parser, arch parsing, comma lists, common flags."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, NoReturn

from nasbench.errors import NasBenchError

EXIT_USAGE = 2
DATA_DIR_HELP = "data directory (default: NASBENCH_DATA_DIR)"
#: ``--supernet`` means the same in every verb: a supernet id as stored in the DB (``pretrained`` is the base model),
#: or a trained supernet directory / packed artifact (``results/supernets/<id>``) that names one.
SUPERNET_HELP = ("a supernet id (`pretrained`: the base model) or a trained directory / packed artifact "
                 "(results/supernets/<id>) that resolves to one")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    pass


def csv_list(text: str | None) -> list[str] | None:
    """A comma-list flag as its items (blanks dropped); None stays None."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def positive(flag: str, value: int) -> None:
    if value < 1:
        raise NasBenchError(flag, "must be >= 1", value)


def number(value: Any) -> Any:
    value = float(value)
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def parse_arch(text: str) -> dict[str, Any]:
    """``--arch``: the ``arch`` object printed by ``space sample``, a whole sample line, or ``@file`` holding either."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise NasBenchError("--arch", "file not found", str(path))
        text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NasBenchError("--arch", f"not valid JSON ({exc.msg} at char {exc.pos})", text) from None
    if isinstance(value, dict) and isinstance(value.get("arch"), dict):
        value = value["arch"]
    if not isinstance(value, dict):
        raise NasBenchError("--arch", "must be a JSON object of dimensions (or a `space sample` line)", value)
    return value


def read_arch_lines(path: str | None, flag: str = "--archs") -> list[dict[str, Any]]:
    """``--archs FILE``: one arch per line (an arch object or a `space sample` line); none without a file."""
    if path is None:
        return []
    file = Path(path)
    if not file.is_file():
        raise NasBenchError(flag, "file not found", path)
    archs = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                archs.append(parse_arch(line))
            except NasBenchError as exc:
                raise NasBenchError(f"{path}:{n}", exc.rule, exc.got, show_got=exc.show_got) from None
    return archs

