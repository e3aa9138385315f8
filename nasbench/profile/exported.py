"""An exported sub-network measured again: the plain HF model directory that ``nasbench export`` wrote, loaded back
from disk, scored with the benchmark's own perplexity protocol (the tokens, window length and dtype of the arch's
stored row), so a user can check that what they deploy is what the benchmark measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasbench.errors import NasBenchError
from nasbench.space import SearchSpace

__all__ = ["VERIFY_TOLERANCE", "exported_perplexity"]

#: ``export --verify-ppl``: the reloaded model's perplexity may differ from the stored row by this share (the
#: benchmark scored the sliced supernet, the check the dense copy: the same weights in other matmul shapes).
VERIFY_TOLERANCE = 0.001


def exported_perplexity(space: SearchSpace, model_dir: str | Path, row: dict[str, Any],
                        data_dir: Path | None) -> dict[str, Any]:
    """``{"ppl", "benchmark_ppl", "rel_diff", "dtype", "tokens", "seq_len"}`` of the model in ``model_dir`` against
    ``row`` (the arch's ``ppl`` row of ``measurements``: value, dtype, seq_len and ``extra.tokens``)."""
    import json

    from transformers import AutoModelForCausalLM

    from nasbench.models import load_tokenizer
    from nasbench.perplexity import perplexity
    from nasbench.profile.config import ProfileConfig
    from nasbench.profile._measure import DTYPES

    extra = row["extra"] if isinstance(row["extra"], dict) else json.loads(row["extra"] or "{}")
    if row["dtype"] not in DTYPES or not extra.get("tokens"):
        raise NasBenchError("row", "the stored ppl row must record its dtype and tokens",
                            f"dtype={row['dtype']!r}, extra={extra}")
    config = ProfileConfig(ppl_tokens=int(extra["tokens"]), seq_len=int(row["seq_len"]), dtype=row["dtype"])
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[row["dtype"]]).eval()
    windows = config.ppl_protocol().windows(space, load_tokenizer(space.model), data_dir)
    result = perplexity(model, windows, batch_size=config.batch_size)
    return {"ppl": result.ppl, "benchmark_ppl": row["value"], "rel_diff": result.ppl / row["value"] - 1.0,
            "dtype": row["dtype"], "tokens": int(windows.numel()), "seq_len": config.seq_len}
