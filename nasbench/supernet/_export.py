"""Export a sub-network as a standalone HF model directory (safetensors, config, tokenizer, provenance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import AutoTokenizer

from nasbench.cards import model_card
from nasbench.models import load_tokenizer
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.wiring import check_extractable
from nasbench.supernet.model import Supernet
from nasbench.supernet.ref import SupernetRef

__all__ = ["export", "default_eval_tasks", "PROVENANCE_FILE", "CARD_FILE", "TASKS_DIR"]

#: Written next to the weights: the space, the arch and its id, the parameter count and the weights' origin.
PROVENANCE_FILE = "nasbench.json"
#: The model card: YAML front matter as the HF hub reads it (license, base_model, tags, library_name, model-index).
CARD_FILE = "README.md"
#: Where the card's ``lm_eval --include_path`` finds nasbench's task YAMLs, relative to the exported directory.
TASKS_DIR = "lm_eval_tasks"


def default_eval_tasks(space: SearchSpace, measurements: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The tasks of the accuracy rows in ``measurements``, else the space's evaluation tasks, else ``arc_easy``."""
    measured = sorted({m["task"] for m in measurements if m.get("task") and m["metric"] in ("acc", "mc2")})
    return measured or list(space.eval_tasks) or ["arc_easy"]


def export(space: SearchSpace, arch: Mapping[str, Any], out_dir: str | Path, source: SupernetRef | str | None = None,
           *, supernet: Supernet | None = None, dtype: torch.dtype = torch.float32,
           measurements: Sequence[Mapping[str, Any]] = (), eval_tasks: Sequence[str] | None = None,
           tasks_written: bool = False, **indices: Any) -> Path:
    """Write the dense model of ``arch`` to ``out_dir`` so that ``AutoModelForCausalLM.from_pretrained(out_dir)``
    loads it, with the tokenizer, :data:`PROVENANCE_FILE` and a model card (:data:`CARD_FILE`).

    The card (:func:`nasbench.cards.model_card`) shows ``measurements`` (this arch's rows of a benchmark DB, with
    their protocol) under ``source``'s id, and an
    ``lm_eval`` line over ``eval_tasks`` (default: the tasks of the accuracy rows in ``measurements``, else the
    space's evaluation tasks) that reads nasbench's task YAMLs from :data:`TASKS_DIR` in ``out_dir``
    (``tasks_written``: the caller wrote them there, e.g. with ``nasbench tasks``).

    ``source`` names the weights (:meth:`SupernetRef.resolve`: None the space's base model, a directory, a packed
    artifact); ``supernet``, when given, is those weights already loaded (made elastic). ``indices`` are :meth:`Supernet.set_sub_network`'s index
    lists (e.g. the layers a sorted supernet ranks highest). Returns ``out_dir``. Raises IllegalSubNetworkError for
    archs outside the space or with per-layer widths (a dense HF config has one width for all layers).
    """
    canon = space.canonical(arch)
    check_extractable(space.family, canon)  # fail before loading anything
    source = SupernetRef.resolve(source)
    origin = str(source.path) if source.path is not None else "supernet object" if supernet is not None \
        else space.model.source
    if supernet is None:
        supernet = Supernet(source.load(space, dtype).model, space)
    dense = supernet.extract(canon, **indices)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dense.save_pretrained(out)
    _tokenizer(space, source.path).save_pretrained(out)
    provenance = {"space": space.name, "space_hash": space.hash, "arch": canon, "arch_id": arch_id(canon),
                  "params": space.params(canon), "weights": origin,
                  "indices": {k: v for k, v in indices.items() if v is not None}}
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    roles = ["perplexity"]
    if source.path is not None:
        roles += [role for role, marker in (("calibration", "importance.json"), ("finetune", "train.json"),
                                            ("recovery", "manifest.json"))
                  if (source.path / marker).is_file()]
    if eval_tasks is None:
        eval_tasks = default_eval_tasks(space, measurements)
    card = model_card(space, canon, arch_id=provenance["arch_id"], params=provenance["params"],
                      flops=space.flops(canon), supernet_id=source.id, weights=origin,
                      measurements=measurements, data_roles=roles, eval_tasks=eval_tasks, tasks_dir=TASKS_DIR,
                      tasks_written=tasks_written)
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return out


def _tokenizer(space: SearchSpace, directory: Path | None) -> Any:
    if directory is not None and any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    return load_tokenizer(space.model)
