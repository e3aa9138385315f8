"""The RPD study: how much does importance sorting improve prefix sub-networks?

For N sampled archs of each space, perplexity before sorting (prefix slicing of the pretrained model, first
``n_layers`` layers) and after sorting, for every (aggregation scheme, layer scheme). After-sorting sub-networks are
selected on the one unsorted supernet with the index lists of :func:`nasbench.importance.sub_network_indices`,
which tests show equal prefix slicing of the permuted model, so no model is copied.

``RPD = mean((ppl_before - ppl_after) / ppl_before)`` over the archs: positive when sorting helps.
Per-arch perplexities go to DuckDB ``measurements`` (metric ``ppl``, task ``wikitext2-<tokens>`` since the token
budget is smaller than the benchmark's) under supernet ids ``pretrained`` and ``sorted-<scheme>-<layers>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from nasbench.errors import NasBenchError, check_each
from nasbench.importance._scores import (
    LAYER_SCHEMES,
    SCHEMES,
    calibration_windows,
    layer_importance,
    score,
    sub_network_indices,
)
from nasbench.space import SearchSpace, arch_id
from nasbench.store import Measurement
from nasbench.supernet.ref import PRETRAINED

__all__ = ["RpdResult", "run_rpd", "variant_id"]


def variant_id(scheme: str, layers: str) -> str:
    """Id of the sorted supernet a (scheme, layer scheme) pair defines."""
    return f"sorted-{scheme}-{layers}"


@dataclass
class RpdResult:
    rpd: dict[str, float]
    """``<space>/<scheme>/<layers>`` -> RPD."""
    per_arch: list[dict[str, Any]]
    """One row per (space, arch, supernet): arch_id, ppl."""
    seconds: float

    def table(self) -> str:
        """RPD as a text table: one row per space, one column per scheme/layers."""
        spaces = sorted({k.split("/")[0] for k in self.rpd})
        columns = sorted({"/".join(k.split("/")[1:]) for k in self.rpd})
        width = max(len(s) for s in spaces)
        lines = [" " * width + "  " + "  ".join(f"{c:>30}" for c in columns)]
        for s in spaces:
            cells = [f"{self.rpd[f'{s}/{c}']:>30.4f}" if f"{s}/{c}" in self.rpd else " " * 30 for c in columns]
            lines.append(f"{s:<{width}}  " + "  ".join(cells))
        return "\n".join(lines)


def run_rpd(spaces: Sequence[SearchSpace], *, n: int, seed: int, tokens: int, ppl_tokens: int, seq_len: int = 512,
            schemes: Sequence[str] = SCHEMES, layer_schemes: Sequence[str] = LAYER_SCHEMES,
            data_dir: Path | None = None, db: str | Path | None = None, dtype: torch.dtype = torch.bfloat16,
            batch_size: int = 4, progress: bool = True) -> RpdResult:
    """Run the study on spaces that share one base model (e.g. the joint, fixed-head and fixed-head-size variants).

    One supernet serves every space (they share the base model and so the reference dimensions).
    """
    from nasbench.models import load_tokenizer
    from nasbench.perplexity import Protocol, perplexity
    from nasbench.supernet import Supernet

    start = time.perf_counter()
    first = spaces[0]
    for space in spaces[1:]:
        if space.model != first.model:
            raise NasBenchError(space.path, f"RPD spaces must share the base model of {first.path}", space.model.source)
    check_each("schemes", schemes, SCHEMES)
    check_each("layer_schemes", layer_schemes, LAYER_SCHEMES)
    tokenizer = load_tokenizer(first.model)
    supernet = Supernet.from_space(first, dtype=dtype)
    model = supernet.hf_model
    calib = calibration_windows(first, tokenizer, data_dir, tokens, seq_len)
    evaluation = Protocol(ppl_tokens, seq_len).windows(first, tokenizer, data_dir)

    def ppl() -> tuple[float, float]:
        result = perplexity(supernet, evaluation, batch_size=batch_size)
        return result.ppl, result.seconds

    # scores: one pass for every aggregation scheme, one per layer scheme
    supernet.reset()
    importance = score(model, calib, schemes, batch_size=batch_size)
    layer_scores = {}
    for layers in layer_schemes:
        nll = (lambda m, w: perplexity(m, w, batch_size=batch_size).nll)
        layer_scores[layers] = layer_importance(model, calib, layers, batch_size=batch_size, nll=nll)

    ref = first.reference
    q_per_kv = ref.n_heads // ref.n_kv_groups
    variants = [(s, l) for s in schemes for l in layer_schemes]
    dtype_name = str(dtype).removeprefix("torch.")
    task = f"wikitext2-{ppl_tokens}"
    store = _open_store(db, spaces, first, variants, tokens) if db is not None else None
    rows: list[dict[str, Any]] = []
    rpd: dict[str, float] = {}
    try:
        with tqdm(total=n * len(spaces) * (1 + len(variants)), unit="eval", desc="rpd", disable=not progress) as bar:
            for space in spaces:
                supernet.space = space  # spaces sharing the base model share the supernet; archs validate in their own
                gains: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
                for arch in space.sample(n, seed=seed):
                    canon = space.canonical(arch)
                    aid = arch_id(canon)
                    done = _stored(store, space.name, aid, task) if store is not None else {}
                    arch_rows = []
                    for variant in [None, *variants]:
                        sid = PRETRAINED if variant is None else variant_id(*variant)
                        if sid in done:
                            value, seconds = done[sid], None
                        else:
                            if variant is None:
                                supernet.set_sub_network(canon)
                            else:
                                imp = importance[variant[0]]
                                imp.layers, imp.layer_scheme = layer_scores[variant[1]], variant[1]
                                supernet.set_sub_network(canon, **sub_network_indices(imp, canon, space.family,
                                                                                      q_per_kv))
                            value, seconds = ppl()
                        arch_rows.append({"space": space.name, "arch": canon, "supernet_id": sid, "ppl": value,
                                          "seconds": seconds})
                        bar.update()
                    before = arch_rows[0]["ppl"]
                    for variant, row in zip(variants, arch_rows[1:]):
                        gains[variant].append((before - row["ppl"]) / before)
                    if store is not None:  # one transaction per arch: a kill loses at most the arch in flight
                        store.add_architectures(space, [canon])
                        store.add_measurements(space.name, [
                            Measurement(aid, r["supernet_id"], "ppl", r["ppl"], "perplexity", task=task, device="cpu",
                                        dtype=dtype_name, seq_len=seq_len, cost_s=r["seconds"])
                            for r in arch_rows if r["seconds"] is not None])
                    rows += arch_rows
                for (scheme, layers), values in gains.items():
                    rpd[f"{space.name}/{scheme}/{layers}"] = float(np.mean(values))
    finally:
        supernet.reset()
        if store is not None:
            store.close()
    return RpdResult(rpd, rows, time.perf_counter() - start)


def _open_store(db: str | Path, spaces: Sequence[SearchSpace], first: SearchSpace,
                variants: Sequence[tuple[str, str]], tokens: int) -> Any:
    """Open the DB and record the spaces and supernets (the pretrained one and one per sorting variant)."""
    from nasbench.store import Store

    store = Store(db)
    for space in spaces:
        store.add_space(space)
    store.add_supernet(PRETRAINED, first.name, first.model.source)
    for scheme, layers in variants:
        store.add_supernet(variant_id(scheme, layers), first.name, first.model.source, strategy="importance-sorted",
                           config={"scheme": scheme, "layers": layers, "calibration_tokens": tokens})
    return store


def _stored(store: Any, space: str, aid: str, task: str) -> dict[str, float]:
    """Perplexities already stored for an arch (what a resumed study reuses), by supernet id."""
    return store.values_by_supernet(space, aid, "ppl", task)
