"""Package attributes loaded on first use (PEP 562): a package names its public objects without importing the
modules that define them, so importing the package (or reading a light constant beside them, as the CLI's parser
does) loads neither torch-heavy code nor the optional libraries (duckdb, Syne Tune) that GPU machines lack."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``name`` is ``modules[name]``'s attribute of that name, imported on
    first use."""

    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
