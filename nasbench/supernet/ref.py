"""A supernet as one value: :class:`SupernetRef`, resolved once where a user names it, passed to every stage.

"A supernet" is named five ways (an id stored in the DB, ``pretrained``, a sorted directory written by ``nasbench
importance``, a training run's directory, a packed artifact under ``results/supernets/``). :meth:`SupernetRef.resolve`
turns any of them into one reference that knows its kind, id, path, fingerprint and manifest; :meth:`SupernetRef.load`
returns its weights and :meth:`SupernetRef.record` the fields of its ``supernets`` row. Nothing else derives an id
from a directory or a directory from an id.

Light on purpose: resolving reads JSON only (no torch), so the CLI resolves ``--supernet`` before any model loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasbench.errors import NasBenchError
from nasbench.paths import PACKED_SUPERNETS, files_digest
from nasbench.supernet._files import IMPORTANCE_FILE, MANIFEST, RUN_FILE, STATE_FILE, WEIGHTS_FILE
from nasbench.supernet.artifact import checkpoints, is_artifact, load_model, read_manifest

if TYPE_CHECKING:
    import torch

    from nasbench.space import SearchSpace
    from nasbench.supernet.artifact import Loaded

__all__ = ["KINDS", "PRETRAINED", "SupernetRef"]

#: The id of the space's pretrained base model (rows measured on unmodified weights).
PRETRAINED = "pretrained"
#: What a reference can point at: the base model; a packed artifact (``manifest.json``); a training run's directory
#: (``train.json``); a sorted supernet (``importance.json`` beside ``save_pretrained`` weights); any other
#: ``save_pretrained`` directory; or an id known only from the rows of a benchmark DB (no weights here).
KINDS = ("pretrained", "artifact", "run", "sorted", "directory", "stored")


@dataclass(frozen=True)
class SupernetRef:
    """One supernet, whatever named it. Build it with :meth:`resolve` (or :meth:`at` for a directory)."""

    kind: str
    """One of :data:`KINDS`."""
    id: str
    """The id its rows are stored under: ``pretrained``, the artifact's id, the run's recorded id, or the directory's
    name."""
    path: Path | None = None
    """Its directory (None for ``pretrained`` and ``stored``)."""
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """A packed artifact's manifest (read, not verified: :meth:`load` verifies every hash)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise NasBenchError("kind", f"must be one of {', '.join(KINDS)}", self.kind)
        if (self.path is None) != (self.kind in ("pretrained", "stored")):
            raise NasBenchError("path", f"a {self.kind} supernet must have "
                                        f"{'no directory' if self.path is not None else 'a directory'} (pretrained and "
                                        "stored ones have none, every other kind has one)", self.path)

    # ------------------------------------------------------------------------------------------------- resolving
    @classmethod
    def pretrained(cls) -> SupernetRef:
        return cls("pretrained", PRETRAINED)

    @classmethod
    def resolve(cls, value: str | Path | SupernetRef | None, *, packed: str | Path = PACKED_SUPERNETS) -> SupernetRef:
        """``value`` as a reference: None or ``pretrained`` the base model; a directory (artifact, run, sorted or
        ``save_pretrained``); the id of a packed artifact under ``packed``; else an id stored in a benchmark DB
        (kind ``stored``: rows to read, no weights to load)."""
        if isinstance(value, SupernetRef):
            return value
        if value is None or str(value) == PRETRAINED:
            return cls.pretrained()
        text = str(value)
        if not text.strip():
            raise NasBenchError("supernet", "must be a supernet id, a directory or `pretrained`", text)
        path = Path(text)
        if path.is_dir():
            return cls.at(path)
        if path.exists():
            raise NasBenchError("supernet", "must be a directory (a packed artifact, a training run or a sorted "
                                            "supernet), not a file", text)
        candidate = Path(packed) / text
        if "/" not in text and "\\" not in text and candidate.is_dir():
            return cls.at(candidate)
        return cls("stored", text)

    @classmethod
    def at(cls, directory: str | Path) -> SupernetRef:
        """The supernet in ``directory``, its kind read from the files it holds."""
        path = Path(directory)
        if not path.is_dir():
            raise NasBenchError("supernet", "no such directory", str(path))
        if (path / MANIFEST).is_file():
            manifest = read_manifest(path, verify=False)
            return cls("artifact", str(manifest["id"]), path, manifest)
        if (path / RUN_FILE).is_file():
            return cls("run", _run_id(path / RUN_FILE) or path.name, path)
        kind = "sorted" if (path / IMPORTANCE_FILE).is_file() else "directory"
        return cls(kind, path.name, path)

    @classmethod
    def packed(cls, packed: str | Path = PACKED_SUPERNETS) -> list[SupernetRef]:
        """Every packed artifact under ``packed``, by directory name."""
        folder = Path(packed)
        return [cls.at(d) for d in sorted(folder.glob("*")) if is_artifact(d)] if folder.is_dir() else []

    @classmethod
    def find(cls, space: SearchSpace, packed: str | Path = PACKED_SUPERNETS) -> SupernetRef | None:
        """The packed artifact under ``packed`` of this space (same name and hash) trained on the most tokens."""
        best, tokens = None, -1
        for ref in cls.packed(packed):
            if ref.space != (space.name, space.hash):
                continue
            if ref.tokens > tokens:
                best, tokens = ref, ref.tokens
        return best

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def has_weights(self) -> bool:
        """Whether :meth:`load` can return weights (every kind but ``stored``)."""
        return self.kind != "stored"

    @property
    def space(self) -> tuple[str, str] | None:
        """A packed artifact's space (name, hash) as its manifest records it; None for the other kinds."""
        if self.manifest is None:
            return None
        return self.manifest["space"].get("name"), self.manifest["space"].get("hash")

    @property
    def tokens(self) -> int:
        """A packed artifact's training tokens over its whole chain (0 for the other kinds)."""
        return int((self.manifest or {}).get("training", {}).get("tokens_total", 0))

    @property
    def checkpoint(self) -> str | None:
        """Its directory as stored in the ``supernets`` table's ``checkpoint`` column."""
        return None if self.path is None else str(self.path)

    @cached_property
    def fingerprint(self) -> str:
        """What identifies its weights: an artifact's trained weights' sha256, ``pretrained``, a digest of a
        directory's ``*.safetensors`` (a run: of its newest checkpoint), or '' for a stored id."""
        if self.kind == "pretrained":
            return PRETRAINED
        if self.kind == "artifact":
            return str((self.manifest or {})["files"][WEIGHTS_FILE])
        if self.path is None:
            return ""
        weights = sorted(self.path.glob("*.safetensors"))
        if not weights and self.kind == "run":
            found = checkpoints(self.path)
            weights = sorted(found[-1].glob("*.safetensors")) if found else []
        return files_digest(weights) if weights else ""

    def absolute(self) -> SupernetRef:
        """The same reference with an absolute path (for a process that may start in another directory)."""
        return self if self.path is None else replace(self, path=self.path.resolve())

    def require_weights(self, where: str = "supernet") -> None:
        """Raise unless :meth:`load` can load weights (the one error for an id with no directory here)."""
        if self.has_weights:
            return
        known = sorted(p.name for p in PACKED_SUPERNETS.iterdir() if p.is_dir()) if PACKED_SUPERNETS.is_dir() else []
        raise NasBenchError(where, f"no such directory, and no packed supernet of that id under {PACKED_SUPERNETS}/ "
                                   f"(one of {', '.join([PRETRAINED, *known])}; `{PRETRAINED}`: the base model)",
                            self.id)

    # ------------------------------------------------------------------------------------------------------ use
    def load(self, space: SearchSpace, dtype: torch.dtype | None = None, *, merge: bool = True,
             where: str = "supernet") -> Loaded:
        """Its weights as a plain HF model (:class:`~nasbench.supernet.artifact.Loaded`): the base model, a directory's
        ``save_pretrained`` weights, or an artifact rebuilt on the base model with every hash verified (``merge=False``:
        the sorted base and the unmerged trained weights)."""
        import torch

        self.require_weights(where)
        if self.kind == "run" and not (self.path / "config.json").is_file():  # type: ignore[operator]
            raise NasBenchError(where, "is a training run that has not finished (its merged model is written at the "
                                       "end; resume it, or pack its newest checkpoint)", str(self.path))
        return load_model(space, self.path, torch.float32 if dtype is None else dtype, merge=merge, where=where)

    def record(self) -> dict[str, Any]:
        """The fields of its ``supernets`` row beyond id, space and base model: a packed supernet's training record
        and weights' sha256; a training run's recorded identity, config and newest checkpoint's position; nothing for
        the base model or any other directory."""
        if self.kind == "artifact":
            manifest = read_manifest(self.path)  # type: ignore[arg-type]
            training = manifest["training"]
            return dict(checkpoint=self.checkpoint, strategy=training["strategy"], kd=training["kd"],
                        peft=training["peft"], data_hash=training.get("data_hash"), steps=training["steps_total"],
                        tokens=training["tokens_total"], wall_time_s=training["wall_time_s_total"],
                        config={**training, "sha256": manifest["files"][WEIGHTS_FILE], "base": manifest["base"]})
        if self.kind == "run":
            record = json.loads((self.path / RUN_FILE).read_text(encoding="utf-8"))  # type: ignore[operator]
            identity, found = record["identity"], checkpoints(self.path)  # type: ignore[arg-type]
            state = json.loads((found[-1] / STATE_FILE).read_text(encoding="utf-8")) if found else {}
            return dict(checkpoint=self.checkpoint, strategy=identity["strategy"], kd=identity["kd"],
                        peft=identity["peft"], data_hash=record.get("data_hash"), steps=state.get("step"),
                        tokens=state.get("tokens"), wall_time_s=state.get("wall_time_s"),
                        config={**record["config"], "preset": identity.get("preset"),
                                "sorted_supernet": identity.get("sorted_supernet")})
        return {} if self.path is None else {"checkpoint": self.checkpoint}

    def __str__(self) -> str:
        return self.id if self.path is None else f"{self.id} ({self.path})"


def _run_id(run_file: Path) -> str | None:
    """The id a training run recorded in its run file, None when there is none (or it is unreadable)."""
    try:
        recorded = json.loads(run_file.read_text(encoding="utf-8")).get("supernet_id")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) and recorded else None
