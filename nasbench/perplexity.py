"""Perplexity, once and for all: the one definition every stage of the project uses.

The whole text of WikiText-2 raw test (``wiki.test.raw``) is tokenized once with no special tokens; the first ``T``
tokens are cut into non-overlapping windows of ``seq_len`` (default 512); every token of a window but its first is
scored; ``ppl = exp(total NLL / scored tokens)``.

:class:`Protocol` is the one place that chain (corpus, tokenizer, windows, token count, window length) is built:
every driver (profiling, the baselines, the RPD study, the measurements, the training curve) asks it for its
windows. The steps are separate functions (:func:`source_tokens`, :func:`windows`, :func:`perplexity`) so a caller
that scores many sub-networks tokenizes once; :func:`wikitext_perplexity` chains them. The module imports no torch
until a function needs it, so configurations (and the CLI's parser) read :class:`Protocol`'s defaults for free.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nasbench import data
from nasbench.allocator import freed_memory_kept
from nasbench.errors import DataError, NasBenchError
from nasbench.space import DataSource

if TYPE_CHECKING:
    import torch

    from nasbench.space import SearchSpace

__all__ = [
    "WIKITEXT2_TEST",
    "Protocol",
    "PerplexityResult",
    "tokenize_corpus",
    "source_tokens",
    "windows",
    "perplexity",
    "wikitext_perplexity",
    "logit_rows",
]

#: The perplexity corpus: ``wiki.test.raw`` in the data directory, or its HF split online.
WIKITEXT2_TEST = DataSource(
    "perplexity", "text", ("wikitext-2-raw/wiki.test.raw",), ("Salesforce/wikitext:wikitext-2-raw-v1@test",)
)


@dataclass(frozen=True)
class Protocol:
    """What a perplexity is measured on: the first ``tokens`` tokens of a space's ``split`` cut into windows of
    ``seq_len``. The shipped benchmark's protocol is the default (4,096 tokens, 8 windows of 512, the reported
    split); compare perplexities only under the same protocol (and dtype)."""

    tokens: int | None = 4096
    """``T``: the first ``T`` tokens of the split are scored (``None``: all of them); at least ``seq_len``."""
    seq_len: int = 512
    """Tokens per window; every token of a window but its first is scored."""
    split: str = "perplexity"
    """The space's data source: ``perplexity`` (the reported tokens; WikiText-2 raw test when the space names none,
    or when no space is given) or ``selection`` (text disjoint from them, for picking an arch, a checkpoint or a
    hyperparameter, and for training curves)."""

    def source(self, space: SearchSpace | None) -> DataSource:
        """The data source of :attr:`split` in ``space``."""
        if self.split == WIKITEXT2_TEST.name:
            return WIKITEXT2_TEST if space is None else space.data.get(self.split, WIKITEXT2_TEST)
        if space is None or self.split not in space.data:
            where = "the space" if space is None else f"the space file {space.path}"
            raise DataError(f"data.{self.split}", f"{where} names no such source", self.split)
        return space.data[self.split]

    def windows(self, space: SearchSpace | None, tokenizer: Any, data_dir: Path | None) -> torch.Tensor:
        """The split's text tokenized once (its ``skip_tokens`` dropped, :func:`source_tokens`) and cut into
        ``[tokens // seq_len, seq_len]`` windows (:func:`windows`)."""
        return windows(source_tokens(tokenizer, self.source(space), data_dir), self.seq_len, self.tokens)


def logit_rows(device: torch.device) -> int:
    """Tokens per chunk of a float32 pass over ``[tokens, vocab]`` logits (a loss, a perplexity).

    Small on a CPU on purpose: 16 rows of 49,152 float32 logits (3 MiB) stay in a core's cache across the loss's
    passes (cast, max, exp, sum, pick), where 512 rows (100 MiB) went to memory on every pass. A GPU takes large
    chunks: there each pass is a kernel launch, and memory bandwidth is not the limit.
    """
    import torch

    return 16 if torch.device(device).type == "cpu" else 2048


@dataclass(frozen=True)
class PerplexityResult:
    """One perplexity measurement."""

    ppl: float
    """``exp(nll)``."""
    nll: float
    """Mean negative log-likelihood per scored token, in nats (the total was summed in float64)."""
    n_scored_tokens: int
    """``n_windows * (seq_len - 1)``: every token of a window but its first."""
    n_windows: int
    seq_len: int
    seconds: float
    """Wall clock of the forward passes and the loss."""
    tokens_per_s: float
    """Tokens fed to the model (``n_windows * seq_len``) per second."""


def tokenize_corpus(tokenizer: Any, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """``text`` tokenized whole, with no special tokens, as a 1-D ``LongTensor``; the first ``max_tokens`` if given.

    The text is always tokenized whole and cut afterwards, so the first ``T`` tokens do not depend on ``T``.
    """
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    out = torch.tensor(ids, dtype=torch.long)
    return out if max_tokens is None else out[:max_tokens]


def source_tokens(tokenizer: Any, source: DataSource, data_dir: Path | None, max_tokens: int | None = None
                  ) -> torch.Tensor:
    """A ``text`` source's tokens: its text tokenized whole (:func:`tokenize_corpus`), the first
    ``source.skip_tokens`` dropped, then the first ``max_tokens`` of the rest if given."""
    ids = tokenize_corpus(tokenizer, data.read_text(source, data_dir))[source.skip_tokens:]
    if ids.numel() == 0:
        raise DataError(f"data.{source.name}.skip_tokens", "must leave tokens of the text",
                        f"{source.skip_tokens} skipped of a shorter text")
    return ids if max_tokens is None else ids[:max_tokens]


def windows(ids: torch.Tensor, seq_len: int = 512, max_tokens: int | None = None) -> torch.Tensor:
    """The first ``T = max_tokens`` tokens of ``ids`` (all of them when ``None``) as ``[n_windows, seq_len]``.

    Windows do not overlap; a trailing partial window (the last ``T % seq_len`` tokens) is dropped, so
    ``n_windows = T // seq_len``. ``T`` must be at least ``seq_len`` and at most the corpus length.
    """
    if ids.dim() != 1:
        raise DataError("ids", "must be a 1-D tensor of token ids", tuple(ids.shape))
    if seq_len < 2:
        raise DataError("seq_len", "must be >= 2 (the first token of a window is not scored)", seq_len)
    n = ids.numel()
    t = n if max_tokens is None else max_tokens
    if t > n:
        raise DataError("ppl_tokens", f"must be <= the corpus length ({n} tokens)", t)
    if t < seq_len:
        rule = f"must be >= seq_len={seq_len} (one full window)"
        raise DataError("ppl_tokens", rule + (f"; the corpus has only {n} tokens" if max_tokens is None else ""), t)
    n_windows = t // seq_len
    return ids[: n_windows * seq_len].reshape(n_windows, seq_len)


def perplexity(
    model: Callable[..., Any],
    ids_windows: torch.Tensor,
    *,
    batch_size: int = 4,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``ids_windows`` (``[n_windows, seq_len]``, from :func:`windows`).

    ``model`` is anything called as ``model(input_ids=...)`` that returns an object with ``.logits`` of shape
    ``[batch, seq_len, vocab]`` (an HF causal LM, the supernet). In a window, position ``i`` predicts token ``i + 1``;
    the logits of the last position are unused and the first token is never scored. The forward pass runs under
    ``torch.autocast`` with ``autocast_dtype`` (``torch.bfloat16`` or ``torch.float16``) when given; the loss is
    always computed in float32 and summed in float64. An ``nn.Module`` is put in eval mode for the call and then back.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    if ids_windows.dim() != 2 or ids_windows.shape[1] < 2:
        raise DataError("ids_windows", "must be [n_windows, seq_len] with seq_len >= 2", tuple(ids_windows.shape))
    if batch_size < 1:
        raise NasBenchError("batch_size", "must be >= 1", batch_size)
    if autocast_dtype is not None and autocast_dtype not in (torch.bfloat16, torch.float16):
        raise NasBenchError("autocast_dtype", "must be None, torch.bfloat16 or torch.float16", autocast_dtype)
    n_windows, seq_len = ids_windows.shape
    device = _device(model)
    ids_windows = ids_windows.to(device=device, dtype=torch.long)

    bar = tqdm(total=n_windows * seq_len, unit="tok", unit_scale=True, desc="ppl", disable=not progress)
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    start = time.perf_counter()
    kept = freed_memory_kept() if device.type == "cpu" else nullcontext()  # no page faults for each batch's logits
    try:
        with torch.inference_mode(), kept:
            for lo in range(0, n_windows, batch_size):
                batch = ids_windows[lo: lo + batch_size]
                with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext():
                    logits = model(input_ids=batch).logits
                if logits.shape[:2] != batch.shape:
                    raise NasBenchError("model", "logits must be [batch, seq_len, vocab]", tuple(logits.shape))
                rows = logit_rows(device)
                for row, ids in zip(logits, batch):  # cache-sized chunks of the float32 copy of the logits
                    for lo in range(0, seq_len - 1, rows):
                        hi = min(lo + rows, seq_len - 1)
                        nll = F.cross_entropy(row[lo:hi].float(), ids[lo + 1:hi + 1], reduction="none")
                        total += nll.double().sum()
                bar.update(batch.numel())
        total_nll = total.item()  # waits for the device, so the wall clock below covers all the work
        seconds = time.perf_counter() - start
    finally:
        bar.close()
        if was_training:
            model.train()
    n_scored = n_windows * (seq_len - 1)
    mean = total_nll / n_scored
    return PerplexityResult(
        ppl=math.exp(mean),
        nll=mean,
        n_scored_tokens=n_scored,
        n_windows=n_windows,
        seq_len=seq_len,
        seconds=seconds,
        tokens_per_s=n_windows * seq_len / seconds if seconds > 0 else float("inf"),
    )


def wikitext_perplexity(
    model: Callable[..., Any],
    tokenizer: Any,
    data_dir: Path | None,
    max_tokens: int | None = None,
    seq_len: int = 512,
    *,
    batch_size: int = 4,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """:func:`perplexity` on the first ``max_tokens`` tokens (all when ``None``) of WikiText-2 raw test.

    ``data_dir`` is the data directory (``wikitext-2-raw/wiki.test.raw`` in it); ``None`` loads the HF split online.
    """
    ids = Protocol(max_tokens, seq_len).windows(None, tokenizer, data_dir)
    return perplexity(model, ids, batch_size=batch_size, autocast_dtype=autocast_dtype, progress=progress)


def _device(model: Any) -> torch.device:
    import torch

    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")
