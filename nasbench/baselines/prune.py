"""A pruning baseline's model: the base (or a supernet's) weights pruned by the configured method, in float32."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from nasbench.baselines._config import BaselineConfig
from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace
from nasbench.supernet.ref import SupernetRef

__all__ = ["pruned_model"]


def pruned_model(space: SearchSpace, config: BaselineConfig, supernet: SupernetRef, data_dir: Path | None,
            progress: bool, tokenizer: Any) -> tuple[Any, float]:
    """The pruned float32 model and the pruning seconds."""
    from tqdm.auto import tqdm

    from nasbench.baselines import magnitude, slicegpt, sparsegpt, wanda
    from nasbench.baselines._layerwise import decoder_layers
    from nasbench.importance import calibration_windows

    device = config.protocol.device
    model = supernet.load(space, torch.float32).model.to(device).eval()
    start = time.perf_counter()
    if config.method == "magnitude-2:4":
        magnitude.magnitude_prune(model)
    else:
        windows = calibration_windows(space, tokenizer, data_dir, config.calibration_tokens,
                                      config.calibration_seq_len)
        batch = config.protocol.batch_size
        with tqdm(total=len(decoder_layers(model)), unit="block", desc=config.method_id, disable=not progress) as bar:
            step = (lambda i: bar.update())
            if config.method == "wanda-2:4":
                wanda.wanda_prune(model, windows, batch_size=batch, progress=step)
            elif config.method == "sparsegpt-2:4":
                sparsegpt.sparsegpt_prune(model, windows, batch_size=batch, progress=step)
            elif config.method == "slicegpt":
                slicegpt.slice_model(model, windows, config.slicing, batch_size=batch, progress=step)
            else:
                raise NasBenchError("method", "is not a pruning method", config.method)
    return model, time.perf_counter() - start
