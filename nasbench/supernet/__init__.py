"""The elastic supernet: a pretrained HF model whose sub-networks run sliced, extract dense, and export.

- :mod:`~nasbench.supernet.modules`: the elastic layers (``set_sub_network`` / ``reset_super_network``);
- :mod:`~nasbench.supernet.wiring`: the llama and gpt_neox wiring (which rows and columns an arch activates);
- :mod:`~nasbench.supernet.model`: :class:`Supernet` (``set_sub_network``, ``reset``, ``extract``);
- :mod:`~nasbench.supernet.export`: :func:`export` to a ``from_pretrained`` directory.
"""

from nasbench.supernet.export import PROVENANCE_FILE, export
from nasbench.supernet.wiring import head_channels
from nasbench.supernet.model import Supernet
from nasbench.supernet.modules import (
    ElasticBlocks,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticRMSNorm,
)

__all__ = [
    "Supernet",
    "export",
    "PROVENANCE_FILE",
    "head_channels",
    "ElasticLinear",
    "ElasticEmbedding",
    "ElasticRMSNorm",
    "ElasticLayerNorm",
    "ElasticBlocks",
]
