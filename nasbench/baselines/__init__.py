"""The seed's pruning baselines, each a ``method`` of the benchmark with its own rows (Table 1 of the seed paper).

- ``magnitude-2:4`` (:mod:`~nasbench.baselines.magnitude`), ``wanda-2:4`` (:mod:`~nasbench.baselines.wanda`),
  ``sparsegpt-2:4`` (:mod:`~nasbench.baselines.sparsegpt`): 2:4 masks on every linear layer of the decoder blocks;
- ``slicegpt`` (:mod:`~nasbench.baselines.slicegpt`): PCA rotation and deletion of hidden channels, Llama.

Our own code (``llmcompressor`` does not install beside the pinned transformers; ``torch-pruning`` installs but prunes
structurally by dependency graph, with neither 2:4 masks nor SliceGPT's rotation), tested against the properties of
each method on tiny models. :func:`run_baseline` prunes a space's model and stores the rows (``nasbench baseline``).
"""

from nasbench.baselines.magnitude import magnitude_prune
from nasbench.baselines.runner import METHODS, BaselineConfig, BaselineSummary, baseline_id, run_baseline
from nasbench.baselines.slicegpt import slice_model, sliced_arch, sliced_dim
from nasbench.baselines.sparsegpt import sparsegpt_prune, sparsegpt_weight
from nasbench.baselines.wanda import wanda_prune, wanda_scores

__all__ = ["METHODS", "BaselineConfig", "BaselineSummary", "baseline_id", "run_baseline", "magnitude_prune",
           "wanda_prune", "wanda_scores", "sparsegpt_prune", "sparsegpt_weight", "slice_model", "sliced_arch",
           "sliced_dim"]
