"""The importance stage's names, without torch: the activation scoring schemes, the layer schemes and the defaults
of :func:`nasbench.importance.sort_model`, so the CLI's parser offers and shows them without loading the scoring
code (the package imports them from here at once, the scoring code on first use)."""

from __future__ import annotations

__all__ = ["AGGREGATIONS", "SCHEMES", "LAYER_SCHEMES", "DEFAULT_SCHEME", "DEFAULT_LAYER_SCHEME", "SORT_TOKENS",
           "SORT_SEQ_LEN", "STUDY_TOKENS"]

AGGREGATIONS = ("mean", "norm", "var")
#: ``<batch>-<sequence>``: how a component's per-token magnitudes are aggregated over each window, then over windows.
SCHEMES = tuple(f"{b}-{s}" for b in AGGREGATIONS for s in AGGREGATIONS)
LAYER_SCHEMES = ("block-importance", "block-drop")
#: The seed's best scheme.
DEFAULT_SCHEME = "mean-mean"
DEFAULT_LAYER_SCHEME = "block-importance"
#: Calibration tokens and window length of a sort.
SORT_TOKENS = 8192
SORT_SEQ_LEN = 512
#: Calibration tokens of the RPD study (``nasbench bench rpd``) and of ``nasbench bench importance``: half a
#: sort's.
STUDY_TOKENS = SORT_TOKENS // 2
