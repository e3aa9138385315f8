"""Reading a space file: UTF-8, at most 1 MiB, duplicate keys refused, aliases, nodes and depth bounded before
anything is built, ``include:`` chains merged (at most 8 deep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nasbench.errors import InvalidSpaceError

__all__ = ["read_merged", "yaml_mapping", "MAX_FILE_BYTES"]

# Bounds that hold before anything is expanded or stored: a space file is data from anywhere.
MAX_FILE_BYTES = 1 << 20
"""A space file (or an included one) is at most 1 MiB."""
_MAX_FILE_BYTES = MAX_FILE_BYTES
_MAX_NODES = 20_000
"""YAML nodes after expanding aliases (an alias bomb stops here, before it is built)."""
_MAX_DEPTH = 32
"""Nesting depth of the YAML document."""
_MAX_INCLUDES = 8
"""Length of an ``include:`` chain."""


def read_merged(path: Path) -> dict[str, Any]:
    """The document of a space file with its ``include:`` chain merged in."""
    return _load_merged(path, stack=())


def yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """YAML text that must hold a mapping (the bounds above enforced)."""
    return _yaml_mapping(text, where)


def _read_yaml(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidSpaceError(where, "file not found", str(path))
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise InvalidSpaceError(str(path), f"must be at most {_MAX_FILE_BYTES:,} bytes", size)
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidSpaceError(str(path), "cannot read the file", exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidSpaceError(f"{path}:{line}", "must be UTF-8 text", raw[exc.start:exc.start + 4]) from None
    return _yaml_mapping(text, str(path))


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys (YAML says they are an error; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse YAML text into a mapping, refusing alias bombs, deep nesting and duplicate keys before building it."""
    loader = None
    try:
        loader = _StrictLoader(text)  # its reader already refuses non-printable characters
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise InvalidSpaceError(where, f"nests too deeply (at most {_MAX_DEPTH} levels)", None,
                                    show_got=False) from None
        if node is None:
            raise InvalidSpaceError(where, "a search space is a YAML mapping", "an empty document")
        _check_size(node, where)
        doc = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSpaceError(f"{where}{line}", "malformed YAML", problem) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(doc, dict):
        raise InvalidSpaceError(where, "a search space is a YAML mapping", type(doc).__name__)
    return doc


def _check_size(root: yaml.Node, where: str) -> None:
    """Count the nodes the document expands to (aliases counted at every use) and its depth, without recursion."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            raise InvalidSpaceError(where, f"expands to more than {_MAX_NODES:,} YAML nodes (aliases count at every "
                                           f"use)", None, show_got=False)
        if depth > _MAX_DEPTH:
            line = node.start_mark.line + 1 if node.start_mark is not None else 0
            raise InvalidSpaceError(f"{where}:{line}", f"nests too deeply (at most {_MAX_DEPTH} levels)", depth)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def _load_merged(path: Path, stack: tuple[Path, ...], where: str | None = None) -> dict[str, Any]:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InvalidSpaceError(where or str(path), "cannot resolve the path", str(exc)) from None
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise InvalidSpaceError(f"{stack[-1]}:include", "include cycle", chain)
    if len(stack) >= _MAX_INCLUDES:
        raise InvalidSpaceError(f"{stack[-1]}:include", f"includes nest at most {_MAX_INCLUDES} deep", len(stack))
    doc = _read_yaml(path, where or str(path))
    include = doc.pop("include", None)
    if include is None:
        return doc
    if not isinstance(include, str) or not include.strip() or "\x00" in include:
        raise InvalidSpaceError(f"{path}:include", "must be a path string", include)
    base = _load_merged(path.parent / include, (*stack, resolved), where=f"{path}:include")
    return _deep_merge(base, doc)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``top`` replaces ``base`` (the including file wins)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
