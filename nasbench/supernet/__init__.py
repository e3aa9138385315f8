"""The elastic supernet: a pretrained HF model whose sub-networks run sliced, extract dense, and export; and a
supernet as one value wherever it goes.

- :mod:`~nasbench.supernet.ref`: :class:`SupernetRef`, what names a supernet (``pretrained``, an id, a sorted
  directory, a training run, a packed artifact), resolved once and passed to every stage;
- :mod:`~nasbench.supernet.artifact`: a trained supernet packed as a small artifact, and loading any supernet's weights;
- :mod:`~nasbench.supernet.modules`: the elastic layers (``set_sub_network`` / ``reset_super_network``);
- :mod:`~nasbench.supernet.wiring`: the llama and gpt_neox wiring (which rows and columns an arch activates);
- :mod:`~nasbench.supernet.model`: :class:`Supernet` (``set_sub_network``, ``reset``, ``extract``);
- :mod:`~nasbench.supernet.lora`: peft LoRA whose adapters slice with the active sub-network;
- :func:`export`: a sub-network to a ``from_pretrained`` directory with its model card.
"""

from __future__ import annotations

from nasbench.lazy import lazy_getattr
from nasbench.supernet.ref import KINDS, PRETRAINED, SupernetRef

# torch-heavy modules load on first use: resolving a reference (the CLI's --supernet) imports no torch
_LAZY = {
    "Supernet": "nasbench.supernet.model",
    "export": "nasbench.supernet._export",
    "PROVENANCE_FILE": "nasbench.supernet._export",
    "CARD_FILE": "nasbench.supernet._export",
    "TASKS_DIR": "nasbench.supernet._export",
    "default_eval_tasks": "nasbench.supernet._export",
    "head_channels": "nasbench.supernet.wiring",
    "ElasticLinear": "nasbench.supernet.modules",
    "ElasticEmbedding": "nasbench.supernet.modules",
    "ElasticRMSNorm": "nasbench.supernet.modules",
    "ElasticLayerNorm": "nasbench.supernet.modules",
    "ElasticBlocks": "nasbench.supernet.modules",
    "apply_lora": "nasbench.supernet.lora",
    "make_lora_elastic": "nasbench.supernet.lora",
    "Loaded": "nasbench.supernet.artifact",
    "pack": "nasbench.supernet.artifact",
    "read_manifest": "nasbench.supernet.artifact",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "SupernetRef",
    "KINDS",
    "PRETRAINED",
    "Supernet",
    "export",
    "PROVENANCE_FILE",
    "CARD_FILE",
    "TASKS_DIR",
    "default_eval_tasks",
    "head_channels",
    "ElasticLinear",
    "ElasticEmbedding",
    "ElasticRMSNorm",
    "ElasticLayerNorm",
    "ElasticBlocks",
    "apply_lora",
    "make_lora_elastic",
    "Loaded",
    "pack",
    "read_manifest",
]
