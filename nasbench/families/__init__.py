"""The family registry: everything nasbench knows about a model family, once, one module per family.

Ground floor (numpy only): the structural rules of an arch, the parameter and FLOP formulas written once over arrays
(a single arch is one row: its per-layer values are summed), whether kv groups follow the heads, the HF config keys
and the HF module names. The space, the supernet wiring, importance sorting, the surrogates and the tiny test models
read them from here; nothing outside this package branches on a family's name.
"""

from __future__ import annotations

from typing import Any

from nasbench.errors import NasBenchError, check_choice
from nasbench.families.base import Family, HeadRule, Modules, uniform
from nasbench.families.gpt_neox import GPT_NEOX
from nasbench.families.llama import LLAMA

__all__ = ["Family", "Modules", "HeadRule", "FAMILIES", "LLAMA", "GPT_NEOX", "family", "family_of_model_type",
           "uniform"]

#: name -> Family, every family nasbench knows.
FAMILIES: dict[str, Family] = {f.name: f for f in (LLAMA, GPT_NEOX)}


def family(name: str, where: str = "model.family") -> Family:
    """The registered family ``name``."""
    return FAMILIES[check_choice(where, name, FAMILIES)]


def family_of_model_type(model_type: Any, what: str) -> Family:
    """The family of an HF ``config.model_type``; ``what`` names the caller in the error."""
    for f in FAMILIES.values():
        if f.model_type == model_type:
            return f
    raise NasBenchError("model", f"{what} knows {' and '.join(f.model_type for f in FAMILIES.values())} models",
                        model_type)
