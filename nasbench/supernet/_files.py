"""The files a supernet's directory holds, by kind: what tells a packed artifact, a training run and a sorted
supernet apart (:class:`~nasbench.supernet.ref.SupernetRef` reads them), and what ``train`` writes and ``pack`` reads.
No imports: every module of the package, torch-free or not, names the files from here."""

__all__ = ["MANIFEST", "RUN_FILE", "IMPORTANCE_FILE", "CHECKPOINTS", "STATE_FILE", "WEIGHTS_FILE", "CURVE_FILE"]

#: A packed artifact's manifest (format, id, space, base model, training chain, every file's sha256).
MANIFEST = "manifest.json"
#: A training run's record in its ``out`` directory: identity, config and id (what ``resume`` checks).
RUN_FILE = "train.json"
#: Saved beside a sorted supernet's weights: the importance scores and the permutation they gave.
IMPORTANCE_FILE = "importance.json"
#: A training run's checkpoints live in ``out/CHECKPOINTS/step-NNNNNN``.
CHECKPOINTS = "checkpoints"
#: A checkpoint's non-tensor state (JSON); tensors are in ``*.safetensors`` beside it.
STATE_FILE = "state.json"
#: A checkpoint's trainable weights (and, cast to bf16, an artifact's).
WEIGHTS_FILE = "trainable.safetensors"
#: The recovery curve: one JSON line per probe arch and evaluation.
CURVE_FILE = "curve.jsonl"
