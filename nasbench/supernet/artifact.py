"""A trained supernet as a small artifact that outlives a machine: ``results/supernets/<id>/``.

A LoRA-trained supernet differs from its base model by its importance order (a permutation) and a low-rank delta.
So the artifact holds only those, rebuilt on top of the base model the space names (the GGUF embedded in a Python
package for SmolLM2), and is small enough to commit:

- ``manifest.json``: format, id, space (name, hash), the base model's source and sha256, the training run (strategy,
  KD, PEFT, LoRA rank/alpha, steps, tokens, wall time, the chain of earlier pieces), and the sha256 of every file;
- ``importance.json``: the importance scores that :func:`nasbench.importance.apply_order` turns into the permutation
  (the permutation it recorded is checked on load);
- ``trainable.safetensors``: the trained weights (LoRA A/B, and norm weights when they were trained) in bf16;
- ``curve.jsonl``: the recovery curve of the run(s), when one was recorded.

:func:`load_model` verifies every hash, rebuilds the sorted base, applies and merges the delta, and returns a plain
HF model, so ``nasbench export | profile --supernet results/supernets/<id>`` work on a fresh clone.
``nasbench train --resume-from results/supernets/<id>`` continues training from the unmerged adapters (a new run,
with a fresh optimizer: AdamW's moments are not shipped, they would triple the size).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace
from nasbench.supernet._files import (CHECKPOINTS, CURVE_FILE, IMPORTANCE_FILE, MANIFEST, RUN_FILE, STATE_FILE,
                                      WEIGHTS_FILE)

if TYPE_CHECKING:  # torch loads with the weights: reading a manifest (resolving a --supernet) needs none
    import torch

    from nasbench.supernet.order import Importance

__all__ = ["MANIFEST", "WEIGHTS", "FORMAT", "RUN_FILE", "CHECKPOINTS", "STATE_FILE", "WEIGHTS_FILE", "CURVE_FILE",
           "Loaded", "is_artifact", "checkpoints", "pack", "read_manifest", "load_model", "base_sha256",
           "load_trainable"]

FORMAT = "nasbench-supernet/1"

WEIGHTS = WEIGHTS_FILE  # the checkpoint's file name, its weights cast to bf16


@dataclass
class Loaded:
    """A supernet's weights, loaded from what names them: the HF model and what identifies it."""

    model: Any
    importance: Importance | None
    origin: str
    """Where the weights came from (the base model source, a directory or an artifact)."""
    sha256: str | None = None
    """The artifact's trained weights' sha256 (None for the base model or a plain directory)."""
    trainable: dict[str, torch.Tensor] | None = None
    """``load_model(..., merge=False)``: the unmerged trained weights, by parameter name of the LoRA model."""
    manifest: dict[str, Any] | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_sha256(space: SearchSpace) -> str:
    """sha256 of the base model's weights file(s): the GGUF file, or a local directory's safetensors (sorted)."""
    from nasbench.models import _gguf_path, _hf_source

    if space.model.gguf_file:
        directory, file = _gguf_path(space.model)
        return _sha256(directory / file)
    source = Path(_hf_source(space.model))
    digest = hashlib.sha256()
    for f in sorted(source.glob("*.safetensors")):
        digest.update(_sha256(f).encode())
    return digest.hexdigest()


def is_artifact(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def checkpoints(out: Path) -> list[Path]:
    """A training run's complete checkpoints (renamed from their temporary directory), oldest first."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"step-\d{6,}", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def read_manifest(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The artifact's manifest, with every listed file's sha256 checked (``verify``)."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NasBenchError("supernet", f"cannot read {path / MANIFEST}", str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NasBenchError(f"{path / MANIFEST}:format", f"must be {FORMAT}",
                            manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__)
    if verify:
        for name, digest in manifest.get("files", {}).items():
            file = path / name
            if Path(name).name != name or not file.is_file() or file.is_symlink():
                raise NasBenchError(f"{path / MANIFEST}:files", "names a missing (or linked) file", name)
            if _sha256(file) != digest:
                raise NasBenchError(str(file), "sha256 differs from the manifest (a changed or truncated file)",
                                    digest[:16])
    return manifest


# ---------------------------------------------------------------------------------------------------------- pack
def pack(space: SearchSpace, run_dir: str | Path, out: str | Path, *, artifact_id: str | None = None) -> Path:
    """Pack the newest checkpoint of ``space``'s LoRA training run in ``run_dir`` as an artifact in ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    try:
        run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NasBenchError("RUN_DIR", f"not a training run directory (no readable {RUN_FILE})", str(exc)) from None
    identity, config = run["identity"], run["config"]
    if identity["peft"] != "lora":
        raise NasBenchError("RUN_DIR", "only LoRA runs pack into a small artifact (a full fine-tune's delta is the "
                                       "size of the model)", identity["peft"])
    if identity.get("sorted_supernet") is None:
        raise NasBenchError("RUN_DIR", "the artifact rebuilds a sorted supernet: pack runs of the importance-* "
                                       "strategies", identity["strategy"])
    found = checkpoints(run_dir)
    if not found:
        raise NasBenchError("RUN_DIR", f"holds no checkpoint ({run_dir / CHECKPOINTS} is empty)", str(run_dir))
    checkpoint = found[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    sorted_dir = Path(identity["sorted_supernet"])
    parent = read_manifest(sorted_dir) if is_artifact(sorted_dir) else None
    if not (sorted_dir / IMPORTANCE_FILE).is_file():
        raise NasBenchError("RUN_DIR", f"its sorted supernet has no {IMPORTANCE_FILE}", str(sorted_dir))
    if identity["space"] != space.name or identity["space_hash"] != space.hash:
        raise NasBenchError("SPACE", f"the run trained {identity['space']} (hash {identity['space_hash']})",
                            f"{space.name} (hash {space.hash})")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copyfile(sorted_dir / IMPORTANCE_FILE, tmp / IMPORTANCE_FILE)
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(checkpoint / WEIGHTS_FILE))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sorted(weights.items())}, str(tmp / WEIGHTS),
              metadata={"format": FORMAT})
    curve_lines = []
    if parent is not None and (sorted_dir / CURVE_FILE).is_file():
        curve_lines += (sorted_dir / CURVE_FILE).read_text(encoding="utf-8").splitlines()
    if (run_dir / CURVE_FILE).is_file():
        offset = int(parent["training"]["tokens_total"]) if parent else 0
        for line in (run_dir / CURVE_FILE).read_text(encoding="utf-8").splitlines():
            if line.strip():
                point = json.loads(line)
                point["tokens_total"] = point["tokens"] + offset
                point["piece"] = run["supernet_id"]
                curve_lines.append(json.dumps(point))
    if curve_lines:
        (tmp / CURVE_FILE).write_text("\n".join(curve_lines) + "\n", encoding="utf-8")
    chain = (list(parent["training"]["chain"]) if parent else []) + [
        {"run": run["supernet_id"], "steps": state["step"], "tokens": state["tokens"],
         "wall_time_s": round(state["wall_time_s"], 1), "schedule_steps": config["steps"]}]
    manifest = {
        "format": FORMAT,
        "id": artifact_id or out.name,
        "space": {"name": space.name, "hash": space.hash},
        "base": {"source": space.model.source, "sha256": base_sha256(space)},
        "training": {"strategy": identity["strategy"], "kd": identity["kd"], "peft": "lora",
                     "kd_teacher": config.get("kd_teacher", "largest"), "lora_r": config["lora_r"],
                     "lora_alpha": config["lora_alpha"], "train_norms": bool(config.get("train_norms", False)),
                     "precision": state.get("precision", config.get("precision")),
                     "data_source": config.get("data_source"), "data_hash": run.get("data_hash"),
                     "seq_len": config["seq_len"], "batch_size": config["batch_size"], "lr": config["lr"],
                     "steps_total": sum(c["steps"] for c in chain), "tokens_total": sum(c["tokens"] for c in chain),
                     "wall_time_s_total": round(sum(c["wall_time_s"] for c in chain), 1), "chain": chain},
        "files": {},
    }
    for f in sorted(tmp.iterdir()):
        manifest["files"][f.name] = _sha256(f)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


# ---------------------------------------------------------------------------------------------------------- load
def load_model(space: SearchSpace, path: str | Path | None, dtype: torch.dtype | None = None, *,
               merge: bool = True, where: str = "supernet") -> Loaded:
    """The supernet weights ``path`` names: ``None`` the space's base model; an artifact (rebuilt on the base
    model, hashes verified; ``merge=False`` returns the sorted base and the unmerged trained weights); or a
    ``save_pretrained`` directory (with its ``importance.json`` when it is sorted). ``dtype``: default float32."""
    import torch
    from safetensors.torch import load_file

    from nasbench.models import load_base_model
    from nasbench.supernet.order import apply_order, load_importance

    dtype = torch.float32 if dtype is None else dtype
    if path is None:
        return Loaded(load_base_model(space.model, dtype=dtype), None, space.model.source)
    path = Path(path)
    if not path.is_dir():
        raise NasBenchError(where, "no such directory", str(path))
    if not is_artifact(path):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        return Loaded(model, load_importance(path), str(path))
    manifest = read_manifest(path)
    if manifest["space"]["name"] != space.name:
        raise NasBenchError(where, f"the artifact was trained on the space {manifest['space']['name']!r}",
                            space.name)
    recorded = (manifest.get("base") or {}).get("sha256")
    if recorded and recorded != base_sha256(space):
        raise NasBenchError(where, f"the artifact was trained on another base model (sha256 {recorded[:16]}); the "
                                   f"space's {space.model.source} differs", str(path))
    importance = load_importance(path)
    if importance is None:
        raise NasBenchError(where, f"the artifact has no {IMPORTANCE_FILE}", str(path))
    model = load_base_model(space.model, dtype=torch.float32)
    record = apply_order(model, importance)
    expected = json.loads((path / IMPORTANCE_FILE).read_text(encoding="utf-8")).get("permutation")
    if expected is not None and expected != record:
        raise NasBenchError(str(path / IMPORTANCE_FILE), "its scores no longer give the recorded permutation", None,
                            show_got=False)
    trainable = {k: v.float() for k, v in load_file(str(path / WEIGHTS)).items()}
    sha = manifest["files"][WEIGHTS]
    if not merge:
        return Loaded(model.to(dtype), importance, str(path), sha, trainable, manifest)
    from nasbench.supernet.model import Supernet
    from nasbench.supernet.lora import apply_lora

    training = manifest["training"]
    supernet = apply_lora(Supernet(model, space), int(training["lora_r"]), int(training["lora_alpha"]), 0.0)
    load_trainable(supernet.model, trainable, where=where)
    merged = supernet.model.merge_and_unload()
    return Loaded(merged.to(dtype).eval(), importance, str(path), sha, None, manifest)


def load_trainable(model: torch.nn.Module, trainable: dict[str, torch.Tensor], where: str = "supernet") -> None:
    """Copy the artifact's trained weights into ``model`` (a LoRA-wrapped supernet), every name matched."""
    import torch

    params = dict(model.named_parameters())
    missing = sorted(set(trainable) - set(params))
    if missing:
        raise NasBenchError(where, "the artifact's weights do not match the model (unknown parameter)", missing[0])
    with torch.no_grad():
        for name, value in trainable.items():
            if params[name].shape != value.shape:
                raise NasBenchError(where, f"shape of {name} differs from the model's {tuple(params[name].shape)}",
                                    tuple(value.shape))
            params[name].copy_(value.to(params[name].dtype))
