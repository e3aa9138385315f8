"""The seed's pruning baselines and our structured ones, each a ``method`` of the benchmark with its own rows.

- ``magnitude-2:4`` (:mod:`~nasbench.baselines.magnitude`), ``wanda-2:4`` (:mod:`~nasbench.baselines.wanda`),
  ``sparsegpt-2:4`` (:mod:`~nasbench.baselines.sparsegpt`): 2:4 masks on every linear layer of the decoder blocks;
- ``slicegpt`` (:mod:`~nasbench.baselines.slicegpt`): PCA rotation and deletion of hidden channels, Llama;
- ``sliced``: the importance-sorted pretrained model cut to the archs of a parameter band, no training;
  ``sliced-recovered``: each of those distilled alone with a fixed token budget (:mod:`~nasbench.baselines.recover`);
- :mod:`~nasbench.baselines.allocation`: DSA-style layer-wise widths, a few searched numbers mapped through the
  layer importance scores to per-layer widths; ``dsa`` (:mod:`~nasbench.baselines.dsa`): each band arch so
  re-allocated, ``(alpha, beta)`` searched on calibration perplexity within the band, measured as a dense per-layer
  model (:func:`~nasbench.baselines.dsa.dense_model`).

Our own code (``llmcompressor`` does not install beside the pinned transformers; ``torch-pruning`` installs but prunes
structurally by dependency graph, with neither 2:4 masks nor SliceGPT's rotation), tested against the properties of
each method on tiny models. :func:`run_baseline` builds and measures a baseline and stores the rows
(``nasbench baseline``).
"""

from nasbench.baselines.allocation import Allocation, allocate, layer_scores
from nasbench.baselines.dsa import dense_model, per_layer_space
from nasbench.baselines.magnitude import magnitude_prune
from nasbench.baselines.runner import (METHODS, SLICED, BaselineConfig, BaselineSummary, baseline_id, check_band,
                                       default_protocol, run_baseline)
from nasbench.baselines.slicegpt import slice_model, sliced_arch, sliced_dim
from nasbench.baselines.sparsegpt import sparsegpt_prune, sparsegpt_weight
from nasbench.baselines.wanda import wanda_prune, wanda_scores

__all__ = ["METHODS", "SLICED", "BaselineConfig", "BaselineSummary", "baseline_id", "check_band", "default_protocol",
           "run_baseline", "magnitude_prune", "wanda_prune", "wanda_scores", "sparsegpt_prune", "sparsegpt_weight",
           "slice_model", "sliced_arch", "sliced_dim", "Allocation", "allocate", "layer_scores",
           "dense_model", "per_layer_space"]
