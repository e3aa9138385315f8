"""The recovery curve of a training run: at every evaluation, the project's perplexity of each probe arch (the first
``eval_tokens`` tokens of the space's selection split, windows of 512), one JSON line each in
:data:`~nasbench.train.checkpoint.CURVE_FILE`.

A curve is tracked on the space's ``data.selection`` source, text disjoint from the training data and from the
reported tokens, so that watching it (or stopping on it) selects nothing on the test tokens. A space without one
falls back to its ``data.perplexity`` source; every line names the split it was measured on (``eval_split``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nasbench.errors import NasBenchError
from nasbench.importance import Importance
from nasbench.space import SearchSpace
from nasbench.supernet import Supernet
from nasbench.train.checkpoint import CURVE_FILE
from nasbench.train.config import TrainConfig
from nasbench.train.strategies import sub_network_kwargs

__all__ = ["RecoveryCurve"]


class RecoveryCurve:
    """The probes and evaluation windows of one run (both read on the first evaluation)."""

    def __init__(self, space: SearchSpace, config: TrainConfig, tokenizer: Any, data_dir: str | Path | None,
                 out: Path) -> None:
        self.space, self.config, self.tokenizer, self.data_dir = space, config, tokenizer, data_dir
        self.path = out / CURVE_FILE
        self._windows: torch.Tensor | None = None
        self.split = "selection" if "selection" in space.data else "perplexity"

    def evaluate(self, supernet: Supernet, importance: Importance | None, *, step: int, tokens: int,
                 wall_time_s: float, precision: str, peft: str) -> None:
        """Append one line per probe arch: where the run is, the arch's role, params and perplexity (under
        ``precision``). Leaves the supernet reset."""
        from nasbench.perplexity import perplexity

        windows = self.windows()
        dtype = torch.bfloat16 if precision == "bf16-mixed" else None
        lines = []
        for role, arch in self.probes():
            if arch is None:
                supernet.reset()
            else:
                supernet.set_sub_network(arch, **sub_network_kwargs(arch, importance))
            try:
                result = perplexity(supernet, windows, batch_size=4, autocast_dtype=dtype)
            finally:
                supernet.reset()
            lines.append({"step": step, "tokens": tokens, "wall_time_s": round(wall_time_s, 3), "role": role,
                          "params": self.space.params(arch or self.space.largest()), "ppl": result.ppl,
                          "eval_tokens": int(windows.numel()), "eval_split": self.split, "precision": precision,
                          "peft": peft})
        with open(self.path, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")

    def rewind(self, step: int) -> None:
        """Drop the lines of evaluations after ``step``: a run resumed from a checkpoint at ``step`` evaluates those
        steps again (with the same numbers, the resume being exact), and the curve keeps one line per step and probe."""
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            self.path.write_text("".join(kept), encoding="utf-8")

    def windows(self) -> torch.Tensor:
        if self._windows is None:
            from nasbench import data as sources
            from nasbench.perplexity import Protocol

            if self.split not in self.space.data:
                raise NasBenchError("eval_every", "the curve needs the space's data.selection (or data.perplexity) "
                                    "source", None, show_got=False)
            tokens = self.config.eval_tokens
            protocol = Protocol(tokens, min(Protocol.seq_len, tokens), self.split)
            self._windows = protocol.windows(self.space, self.tokenizer, sources.data_dir(self.data_dir))
        return self._windows

    def probes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """The curve's archs: ``eval_archs`` (role ``probe<i>``), else the full model and the smallest admitted."""
        if self.config.eval_archs is None:
            return [("full", None), ("smallest", self.space.smallest_admitted())]
        path = Path(self.config.eval_archs)
        try:
            lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (OSError, ValueError) as exc:
            raise NasBenchError("eval_archs", "must be a readable JSONL file of archs", str(exc)) from None
        archs = [self.space.canonical(x.get("arch", x), where=f"{path}") for x in lines]
        return [("full", None)] + [(f"probe{i}", a) for i, a in enumerate(archs)]
