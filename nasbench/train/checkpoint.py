"""A training run's files in its ``out`` directory: the run record, the checkpoints and the recovery curve's name.

- :data:`RUN_FILE` (``train.json``): the run's identity (space, strategy, KD, PEFT, preset, sorted supernet), config,
  data hash and process count; what ``resume`` checks and ``pack`` reads.
- :data:`CHECKPOINTS` ``/step-NNNNNN``: written to a temporary directory and renamed, so a ``kill -9`` loses at most
  the steps since the last one: the trainable weights (safetensors), optimizer, scheduler, sampler state, data
  position, counters (:data:`STATE_FILE`) and, per process, the Python, numpy and torch RNG states. Tensors are in
  safetensors, everything else in JSON: nothing a load would execute.
- :data:`CURVE_FILE` (``curve.jsonl``): the recovery curve, one JSON line per probe arch and evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nasbench.errors import NasBenchError
from nasbench.supernet.artifact import CHECKPOINTS, CURVE_FILE, RUN_FILE, STATE_FILE, WEIGHTS_FILE, checkpoints
from nasbench.train.config import TrainConfig, config_from_dict
from nasbench.train.parallel import Procs

__all__ = ["RUN_FILE", "CHECKPOINTS", "STATE_FILE", "CURVE_FILE", "WEIGHTS_FILE", "Checkpoint", "checkpoints",
           "write_checkpoint", "read_checkpoint", "make_run_id", "write_run_file", "resumed_config", "atomic_write"]

#: Options a resumed run may change; any other given option must equal the stored one.
RESUMABLE = ("steps", "stop_at", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "eval_every")


# ------------------------------------------------------------------------------------------------------ run record
def make_run_id(identity: dict[str, Any], config: TrainConfig) -> str:
    """The run's id: space, strategy, KD and PEFT, and a hash of its identity and config."""
    payload = json.dumps({"identity": identity, "config": config.to_dict()}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    return f"{identity['space']}-{identity['strategy']}-{identity['kd']}-{identity['peft']}-{digest}"


def write_run_file(out: Path, record: dict[str, Any]) -> None:
    atomic_write(out / RUN_FILE, json.dumps(record, indent=2) + "\n")


def resumed_config(run_file: Path, identity: dict[str, Any], explicit: dict[str, Any]) -> tuple[TrainConfig, str]:
    """The config and id of the run recorded in ``run_file``, with the given options that may change
    (:data:`RESUMABLE`) applied; any other given option, and every part of the identity, must equal the stored one."""
    try:
        record = json.loads(run_file.read_text(encoding="utf-8"))
        record["identity"], record["config"], record["supernet_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NasBenchError("resume", f"{run_file} is not a readable training record (start a new run in another out)",
                            f"{type(exc).__name__}: {exc}") from None
    for key, value in identity.items():
        if record["identity"].get(key) != value:
            raise NasBenchError(key, f"differs from the run being resumed in "
                                     f"{run_file.parent} ({record['identity'].get(key)!r})",
                                value)
    stored = record["config"]
    values = dict(stored, stop_at=None)
    for key, value in explicit.items():
        if key in RESUMABLE:
            values[key] = value
        elif key in stored and (list(value) if isinstance(value, tuple) else value) != stored[key]:
            raise NasBenchError(key, f"differs from the run being resumed ({stored[key]!r}); "
                                     f"only {', '.join(RESUMABLE)} may change", value)
    return config_from_dict(values), record["supernet_id"]


# ----------------------------------------------------------------------------------------------------- checkpoints
def write_checkpoint(out: Path, procs: Procs, state: dict[str, Any], params: list[tuple[str, torch.Tensor]],
                     optimizer: torch.optim.Optimizer, keep: int) -> Path:
    """Write ``out/checkpoints/step-<state["step"]>`` (every process its RNG states, rank 0 the rest) and keep the
    newest ``keep``; returns its path. Rank 0 has renamed it in place when this returns."""
    root = out / CHECKPOINTS
    final = root / f"step-{state['step']:06d}"
    tmp = root / f".tmp-step-{state['step']:06d}"
    if procs.main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    procs.barrier()
    rng_tensors, rng_json = _rng_state()
    save_file(rng_tensors, str(tmp / f"rng-{procs.rank}.safetensors"))
    (tmp / f"rng-{procs.rank}.json").write_text(json.dumps(rng_json), encoding="utf-8")
    procs.barrier()
    if procs.main:
        save_file({n: p.detach().contiguous().cpu() for n, p in params}, str(tmp / WEIGHTS_FILE))
        opt_tensors, opt_json = _split_tensors(optimizer.state_dict(), "optimizer")
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / STATE_FILE).write_text(json.dumps({**state, "world": procs.world, "optimizer": opt_json}),
                                      encoding="utf-8")
        for f in tmp.iterdir():
            _fsync(f)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` read back."""

    path: Path
    state: dict[str, Any]
    """The counters and the scheduler's and sampler's states (:data:`STATE_FILE`)."""
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    """The optimizer's state dict."""
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]]
    """This process's RNG states (tensors, JSON)."""

    def restore_rng(self) -> None:
        """Set this process's Python, numpy and torch (and CUDA) RNG states to the checkpoint's."""
        _set_rng_state(*self.rng)


def read_checkpoint(path: Path, procs: Procs) -> Checkpoint:
    """The checkpoint at ``path`` as this process reads it, checked to be of this version, readable and written by as
    many processes."""
    if not (path / STATE_FILE).is_file():
        raise NasBenchError("resume", f"{path} is not a checkpoint of this version (no {STATE_FILE}; older "
                                      f"runs pickled their state, which is no longer loaded): start a new run",
                            str(path))
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        weights = load_file(str(path / WEIGHTS_FILE))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        rng_tensors = load_file(str(path / f"rng-{procs.rank}.safetensors"))
        rng_json = json.loads((path / f"rng-{procs.rank}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NasBenchError("resume", f"cannot read the checkpoint {path}", str(exc)) from None
    if state["world"] != procs.world:
        raise NasBenchError("world_size", f"the checkpoint {path} was written by {state['world']} "
                                            f"processes; resume with as many", procs.world)
    return Checkpoint(path, state, weights, _join_tensors(state["optimizer"], opt_tensors, "optimizer"),
                      (rng_tensors, rng_json))


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------- helpers
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states as (tensors, JSON): python, numpy, torch (and CUDA)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, t in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = t
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    version, internal, gauss = values["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _split_tensors(value: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """A nested state dict as (flat tensors for safetensors, the JSON rest with ``{"__tensor__": key}`` marks)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(v: Any, key: str) -> Any:
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().contiguous().cpu()
            return {"__tensor__": key}
        if isinstance(v, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(x, f"{key}.{i}")] for i, (k, x) in enumerate(v.items())]}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{key}.{i}") for i, x in enumerate(v)]
        return v

    return tensors, walk(value, prefix)


def _join_tensors(value: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """The inverse of :func:`_split_tensors`."""
    def walk(v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"__tensor__"}:
            return tensors[v["__tensor__"]]
        if isinstance(v, dict) and set(v) == {"__dict__"}:
            return {walk(k): walk(x) for k, x in v["__dict__"]}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
