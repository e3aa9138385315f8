"""One manifest per run directory: per stage its input hash, status, outputs and time, so a rerun skips what is done.

``<run dir>/manifest.json`` is rewritten atomically (a temporary file, then a rename) when a stage starts and when it
ends, so a killed run leaves a readable manifest whose interrupted stage says ``running``. A stage is skipped when
its recorded status is final (``done``, or ``artifact`` / ``not-needed`` for the training stages that a supernet makes
unnecessary) and its recorded key equals the key of this call's inputs (the space's hash, the preset's fields, the
data files' hash, the code version and the keys of the stages before it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError

__all__ = ["FORMAT", "MANIFEST", "FINAL", "RunManifest", "digest", "code_version"]

FORMAT = "nasbench-run/1"
MANIFEST = "manifest.json"
#: Statuses a rerun with the same inputs skips.
FINAL = ("done", "artifact", "not-needed")
_PACKAGE = Path(__file__).resolve().parent.parent


def digest(value: Any) -> str:
    """16 hex digits of SHA-256 of the value's canonical JSON."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_CODE: str | None = None


def code_version() -> str:
    """The package version and a hash of its source (every ``.py`` and ``.yaml`` file of ``nasbench/``): the same on
    every clone of the same commit, different after any change of the code."""
    global _CODE
    if _CODE is None:
        from nasbench import __version__

        files = sorted(p for p in _PACKAGE.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts)
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(_PACKAGE).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
        _CODE = f"{__version__}+{h.hexdigest()[:12]}"
    return _CODE


class RunManifest:
    """The manifest of one run directory (see the module docstring)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, out: str | Path, *, space: str, space_hash: str, preset: str) -> "RunManifest":
        """The run directory's manifest, or a new one; a manifest of another space or preset is refused."""
        path = Path(out) / MANIFEST
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise NasBenchError(str(path), "not a readable run manifest (remove it to start the run afresh)",
                                    str(exc)) from None
            if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("stages"), dict):
                raise NasBenchError(f"{path}:format", f"must be {FORMAT} with a stages object (remove the file to "
                                                      f"start the run afresh)", data.get("format")
                                    if isinstance(data, dict) else type(data).__name__)
            if (data.get("space"), data.get("preset")) != (space, preset):
                raise NasBenchError(str(path), f"belongs to the run of space {data.get('space')!r}, preset "
                                               f"{data.get('preset')!r}, not {space!r}, {preset!r}", str(path.parent))
        else:
            data = {"format": FORMAT, "space": space, "preset": preset, "stages": {}}
        data["space_hash"] = space_hash
        data["code"] = code_version()
        return cls(path, data)

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].get(name, {})

    def is_done(self, name: str, key: str) -> bool:
        record = self.stage(name)
        return record.get("status") in FINAL and record.get("key") == key

    def start(self, name: str, key: str, inputs: dict[str, Any]) -> None:
        previous = self.stage(name)
        self.data["stages"][name] = {"key": key, "status": "running", "inputs": inputs,
                                     "started": _now(), "outputs": previous.get("outputs", {}),
                                     "attempts": int(previous.get("attempts", 0)) + 1}
        self.save()

    def finish(self, name: str, status: str, outputs: dict[str, Any], seconds: float, note: str = "") -> None:
        record = self.data["stages"][name]
        record.update(status=status, outputs=outputs, seconds=round(seconds, 1), finished=_now())
        if note:
            record["note"] = note
        else:
            record.pop("note", None)
        self.save()

    def statuses(self) -> dict[str, str]:
        return {name: record.get("status", "") for name, record in self.data["stages"].items()}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
