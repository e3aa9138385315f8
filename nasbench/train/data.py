"""Training data: Alpaca-format instructions (prompt template, loss on the response only) or plain text, tokenized
once into fixed ``[rows, seq_len]`` tensors, and a deterministic, resumable batch order.

Instructions: each record becomes ``template(instruction, input) + output + eos``; the prompt's labels are masked
(``-100``) so the loss covers the response (and its eos) only. By default every example is one right-padded row
(truncated to ``seq_len``; an example whose prompt fills the row is dropped); with ``packing`` the examples are
concatenated into one stream cut into full rows. Plain text is tokenized whole (no special tokens) and cut into
non-overlapping rows, every token a label.

Order: epoch ``e`` visits the rows in ``permutation(seed, e)``; a run's data position is the number of rows consumed
(all processes together), so a resumed run continues with the very next rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasbench import data as sources
from nasbench.errors import DataError, NasBenchError
from nasbench.space import SearchSpace

__all__ = ["IGNORE_INDEX", "PROMPT", "PROMPT_NO_INPUT", "TrainData", "format_prompt", "build_data",
           "tokenize_instructions", "tokenize_text"]

IGNORE_INDEX = -100
#: The Stanford Alpaca templates (with and without an input).
PROMPT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.\n\n"
          "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def format_prompt(record: dict[str, str]) -> str:
    """The Alpaca prompt of one ``{instruction, input, output}`` record (without the output)."""
    template = PROMPT if record.get("input", "").strip() else PROMPT_NO_INPUT
    return template.format(instruction=record["instruction"], input=record.get("input", ""))


@dataclass
class TrainData:
    """Tokenized rows and their deterministic order."""

    input_ids: torch.Tensor
    """``[rows, seq_len]`` long."""
    labels: torch.Tensor
    """``[rows, seq_len]`` long; ``-100`` where no loss is taken (prompt, padding)."""
    attention_mask: torch.Tensor
    """``[rows, seq_len]`` long; 0 on padding."""
    data_hash: str
    """First 16 hex digits of SHA-256 of the rows (what the ``supernets`` table records)."""
    seed: int = 0
    dropped: int = 0
    """Examples dropped because their prompt alone fills ``seq_len``."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, start: int, count: int) -> torch.Tensor:
        """Row indices ``start .. start + count - 1`` of the infinite epoch-shuffled stream."""
        n = len(self)
        out = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, n)
            out.append(int(self._permutation(epoch)[offset]))
        return torch.tensor(out, dtype=torch.long)

    def _permutation(self, epoch: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_perms", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([self.seed, 3, epoch]).permutation(len(self))
        return cache[epoch]

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows as a model batch, cut after the longest row's last real token (less padding to run)."""
        mask = self.attention_mask[rows]
        width = int(mask.sum(1).max()) if mask.numel() else 0
        width = max(width, 2)
        return {"input_ids": self.input_ids[rows, :width], "labels": self.labels[rows, :width],
                "attention_mask": mask[:, :width]}


def tokenize_instructions(tokenizer: Any, records: list[dict[str, str]], seq_len: int, packing: bool = False,
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(input_ids, labels, attention_mask, dropped)`` of Alpaca records (see the module docstring)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("tokenizer", "instruction tuning needs an eos token", None, show_got=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    adds_bos = getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None
    bos = [tokenizer.bos_token_id] if adds_bos else []
    examples = []
    for rec in records:
        prompt = bos + tokenizer(format_prompt(rec), add_special_tokens=False)["input_ids"]
        answer = tokenizer(rec["output"], add_special_tokens=False)["input_ids"] + [eos]
        examples.append((prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    dropped = 0
    if packing:
        ids = [t for e in examples for t in e[0]]
        labels = [t for e in examples for t in e[1]]
        n = len(ids) // seq_len
        if n == 0:
            raise DataError("seq_len", f"the data holds fewer than seq_len tokens ({len(ids)})", seq_len)
        input_ids = torch.tensor(ids[:n * seq_len]).view(n, seq_len)
        return input_ids, torch.tensor(labels[:n * seq_len]).view(n, seq_len), torch.ones_like(input_ids), 0
    rows_ids, rows_labels, rows_mask = [], [], []
    for ids, labels in examples:
        ids, labels = ids[:seq_len], labels[:seq_len]
        if all(t == IGNORE_INDEX for t in labels[1:]):
            dropped += 1
            continue
        fill = seq_len - len(ids)
        rows_ids.append(ids + [pad] * fill)
        rows_labels.append(labels + [IGNORE_INDEX] * fill)
        rows_mask.append([1] * len(ids) + [0] * fill)
    if not rows_ids:
        raise DataError("seq_len", "every example's prompt fills seq_len; raise it", seq_len)
    return torch.tensor(rows_ids), torch.tensor(rows_labels), torch.tensor(rows_mask), dropped


def tokenize_text(tokenizer: Any, text: str, seq_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain text as non-overlapping ``seq_len`` rows, every token a label."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    n = len(ids) // seq_len
    if n == 0:
        raise DataError("seq_len", f"the text holds fewer than seq_len tokens ({len(ids)})", seq_len)
    input_ids = torch.tensor(ids[:n * seq_len]).view(n, seq_len)
    return input_ids, input_ids.clone(), torch.ones_like(input_ids)


def build_data(space: SearchSpace, tokenizer: Any, *, source: str = "finetune", seq_len: int = 256,
               packing: bool = False, data_dir: str | Path | None = None, seed: int = 0) -> TrainData:
    """The training rows of the space's ``data.<source>`` (``instructions`` or ``text``)."""
    if source not in space.data:
        raise NasBenchError("data_source", f"the space has no data.{source} (it has: "
                                           f"{', '.join(sorted(space.data)) or 'none'})", source)
    src = space.data[source]
    directory = sources.data_dir(data_dir)
    dropped = 0
    if src.kind == "instructions":
        records = sources.read_instructions(src, directory)
        if not records:
            raise DataError(f"data.{source}", "holds no records", None, show_got=False)
        input_ids, labels, mask, dropped = tokenize_instructions(tokenizer, records, seq_len, packing)
    elif src.kind == "text":
        input_ids, labels, mask = tokenize_text(tokenizer, sources.read_text(src, directory), seq_len)
    else:
        raise NasBenchError("data_source", "training reads an instructions or text source", src.kind)
    digest = hashlib.sha256()
    for t in (input_ids, labels, mask):
        digest.update(t.numpy().tobytes())
    return TrainData(input_ids, labels, mask, digest.hexdigest()[:16], seed, dropped)
