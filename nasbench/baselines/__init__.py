"""The seed's pruning baselines and our structured ones, each a ``method`` of the benchmark with its own rows.

- ``magnitude-2:4`` (:mod:`~nasbench.baselines.magnitude`), ``wanda-2:4`` (:mod:`~nasbench.baselines.wanda`),
  ``sparsegpt-2:4`` (:mod:`~nasbench.baselines.sparsegpt`): 2:4 masks on every linear layer of the decoder blocks;
- ``slicegpt`` (:mod:`~nasbench.baselines.slicegpt`): PCA rotation and deletion of hidden channels, Llama;
- ``sliced``: the importance-sorted pretrained model cut to the archs of a parameter band, no training;
  ``sliced-recovered``: each of those distilled alone with a fixed token budget (:func:`nasbench.train.recover_arch`);
- :mod:`~nasbench.baselines.allocation`: DSA-style layer-wise widths, a few searched numbers mapped through the
  layer importance scores to per-layer widths; ``dsa`` (:mod:`~nasbench.baselines.dsa`): each band arch so
  re-allocated, ``(alpha, beta)`` searched on calibration perplexity within the band, measured as a dense per-layer
  model (:func:`~nasbench.baselines.dsa.dense_model`).

Our own code (``llmcompressor`` does not install beside the pinned transformers; ``torch-pruning`` installs but prunes
structurally by dependency graph, with neither 2:4 masks nor SliceGPT's rotation), tested against the properties of
each method on tiny models. :func:`run_baseline` builds and measures a baseline and stores the rows
(``nasbench baseline``).
"""

from nasbench.lazy import lazy_getattr

_HOMES = {
    "nasbench.baselines.methods": ("METHODS", "SLICED", "default_protocol"),
    "nasbench.baselines._config": ("BaselineConfig",),
    "nasbench.baselines._baseline": ("BaselineSummary", "baseline_id", "check_band", "run_baseline"),
    "nasbench.baselines.magnitude": ("magnitude_prune",),
    "nasbench.baselines.wanda": ("wanda_prune", "wanda_scores"),
    "nasbench.baselines.sparsegpt": ("sparsegpt_prune", "sparsegpt_weight"),
    "nasbench.baselines.slicegpt": ("slice_model", "sliced_arch", "sliced_dim"),
    "nasbench.baselines.allocation": ("Allocation", "allocate", "layer_scores"),
    "nasbench.baselines.dsa": ("dense_model", "per_layer_space"),
}
__all__ = [name for names in _HOMES.values() for name in names]

# torch loads on first use: the CLI's parser reads nasbench.baselines.methods without it
__getattr__ = lazy_getattr(__name__, {name: module for module, names in _HOMES.items() for name in names})
