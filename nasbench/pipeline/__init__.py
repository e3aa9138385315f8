"""``nasbench run SPACE --preset quick|full``: the whole pipeline, importance -> train -> profile -> fit -> compare ->
report, each stage skipped when its inputs are unchanged since it finished and resumed when it was interrupted.

- :mod:`~nasbench.pipeline.presets`: :class:`Preset` (what each stage does, as data), ``quick`` and ``full``;
- :mod:`~nasbench.pipeline.manifest`: the run directory's ``manifest.json`` and the input hashes;
- ``_stages``: :func:`run_pipeline`, the stages in order (:data:`STAGES`).
"""

from __future__ import annotations

from nasbench.pipeline._stages import STAGES, run_pipeline
from nasbench.pipeline.manifest import RunManifest, code_version
from nasbench.pipeline.presets import PRESETS, Preset, RunPaths, get_preset

__all__ = ["PRESETS", "Preset", "RunPaths", "get_preset", "RunManifest", "code_version", "STAGES", "run_pipeline"]
