"""lm-eval's HF model with context-packed log-likelihoods: the same answers as ``HFLM`` in a fraction of the compute.

A multiple-choice item asks lm-eval for one log-likelihood per choice, all with the same context (ARC, HellaSwag,
PIQA). ``HFLM`` runs ``context + choice`` once per choice and computes the logits (49,152 of them per token for
SmolLM2, more FLOPs than a 40%-params sub-network's layers) and a log-softmax at every position, context included.
:class:`PackedLM` instead runs each distinct context once, with every choice after it in the same row, each choice
seeing the context and itself only (a block attention mask; each choice's position ids continue from the context's
end, as in its own row), and computes the logits and a float32 log-softmax at the positions that predict a choice
token only. Every choice token then sees exactly the tokens it sees in ``HFLM``'s row, at the same positions, so the
log-likelihoods agree up to float rounding (``tests/test_accuracy.py`` checks them against ``HFLM``'s in float32;
in bfloat16 ``HFLM``'s log-softmax runs in bf16, ~0.1 nat off).

Models whose attention implementation is neither ``sdpa`` nor ``eager`` (the mask formats built here), or whose logits
are more than the output embedding of the last hidden state (see ``_LOGITS_ARE_HEAD``), fall back to ``HFLM``'s own
loop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from lm_eval import utils as lm_eval_utils
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

__all__ = ["PackedLM", "cache_template_compilation"]

Request = tuple[tuple[str, str], list[int], list[int]]
#: Model types whose logits are their output embedding applied to the decoder's last hidden state, nothing more
#: (no soft-capping or scaling): the families nasbench slices.
_LOGITS_ARE_HEAD = ("llama", "gpt_neox")
#: Rows of the head (and its float32 log-softmax) computed at once: 512 x 49,152 floats = 96 MiB.
_HEAD_ROWS = 512


def cache_template_compilation() -> None:
    """Compile each of lm-eval's Jinja prompt templates once per process.

    lm-eval 0.4 compiles a task's template string again for every document and field it renders
    (``utils.apply_template``: ``env.from_string(template).render(**doc)``; lm-eval issue #1286, open): for 5 tasks
    of 500 items that is 12,500 compilations, ~10 s of the ~30 s an arch's evaluation spends outside the model. A
    string compiles to the same template every time, so the cache changes no prompt. Idempotent.
    """
    if getattr(lm_eval_utils.apply_template, "nasbench_cached", False):
        return
    compile_template = functools.lru_cache(maxsize=1024)(lm_eval_utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_template(template).render(**doc)

    apply_template.nasbench_cached = True  # type: ignore[attr-defined]
    lm_eval_utils.apply_template = apply_template


@dataclass
class _Row:
    """One packed row: a context and the choices that follow it."""
    context: list[int]
    conts: list[tuple[int, list[int]]] = field(default_factory=list)
    """(request index, continuation tokens)."""

    def __len__(self) -> int:
        return len(self.context) + sum(len(c) - 1 for _, c in self.conts)


class PackedLM(HFLM):
    """``HFLM`` with :meth:`_loglikelihood_tokens` packed by context (see the module docstring)."""

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if (self.backend != "causal" or implementation not in ("sdpa", "eager")
                or getattr(self.model.config, "model_type", None) not in _LOGITS_ARE_HEAD):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        rows = self._rows(requests)
        rows.sort(key=len, reverse=True)  # similar lengths share a batch: little padding
        batch_size = self.batch_size if isinstance(self.batch_size, int) else 8
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        with tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                  desc="Running loglikelihood requests (packed)") as bar:
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                for index, answer in self._score(batch, implementation):
                    results[index] = answer
                    if requests[index][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
                bar.update(sum(len(row.conts) for row in batch))
        return results  # type: ignore[return-value]

    def _rows(self, requests: list[Request]) -> list[_Row]:
        """Requests grouped by context, a group split where a row would exceed the model's length. The window is
        HFLM's: ``(context + continuation)[-(max_length + 1):]``, so a long context is cut from the left first."""
        rows: dict[tuple[int, ...], list[_Row]] = {}
        for index, (_, context, cont) in enumerate(requests):
            if not context or not cont or len(cont) > self.max_length:  # HFLM asserts the same
                raise ValueError(f"lm-eval request {index}: context of {len(context)} tokens, continuation of "
                                 f"{len(cont)}; both must be non-empty, the continuation <= {self.max_length}")
            context = (context + cont)[-(self.max_length + 1):][:-len(cont)]  # never empty: len(cont) <= max_length
            group = rows.setdefault(tuple(context), [_Row(list(context))])
            if len(group[-1]) + len(cont) - 1 > self.max_length and group[-1].conts:
                group.append(_Row(list(context)))
            group[-1].conts.append((index, cont))
        return [row for group in rows.values() for row in group]

    @torch.no_grad()
    def _score(self, batch: list[_Row], implementation: str) -> list[tuple[int, tuple[float, bool]]]:
        length = max(len(row) for row in batch)
        ids = torch.zeros(len(batch), length, dtype=torch.long)
        positions = torch.zeros(len(batch), length, dtype=torch.long)
        segment = torch.full((len(batch), length), -1, dtype=torch.long)  # -1 padding, 0 context, k the k-th choice
        targets: list[list[tuple[int, list[int], list[int]]]] = []  # per row: (request, positions, tokens)
        for b, row in enumerate(batch):
            n = len(row.context)
            ids[b, :n], positions[b, :n], segment[b, :n] = torch.tensor(row.context), torch.arange(n), 0
            at, wanted = n, []
            for k, (index, cont) in enumerate(row.conts, start=1):
                body = cont[:-1]  # the last continuation token is predicted, never fed (as in HFLM)
                ids[b, at:at + len(body)] = torch.tensor(body, dtype=torch.long)
                positions[b, at:at + len(body)] = torch.arange(n, n + len(body))
                segment[b, at:at + len(body)] = k
                # cont[0] is predicted by the context's last position, cont[j] by the position of cont[j - 1]
                wanted.append((index, [n - 1] + list(range(at, at + len(body))), cont))
                at += len(body)
            targets.append(wanted)
        q, kv = segment.unsqueeze(2), segment.unsqueeze(1)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = causal & ((kv == 0) | (kv == q)) & (q >= 0)
        allowed |= torch.eye(length, dtype=torch.bool) & (q < 0)  # a padding query sees itself: no all-masked row
        mask = allowed.unsqueeze(1)
        if implementation == "eager":  # eager attention adds the mask to the scores
            mask = torch.zeros(mask.shape, dtype=self.model.dtype).masked_fill(~mask, torch.finfo(self.model.dtype).min)
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        hidden = decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=False).last_hidden_state
        spans, where = [], []  # per request: its slice of the gathered rows; (row, position) of every gathered row
        for b, wanted in enumerate(targets):
            for index, at, cont in wanted:
                spans.append((index, len(where), cont))
                where += [(b, p) for p in at]
        rows_at, positions_at = torch.tensor(where, device=self.device).unbind(1)
        # a gathered, contiguous (tokens, hidden) input: the head on a strided 3-D view of the hidden states runs a
        # CPU bf16 path ~100x slower (2 s against 12 ms for 16 rows of SmolLM2's 49,152 x 576 head)
        chosen = hidden[rows_at, positions_at].contiguous()
        tokens = torch.tensor([t for _, _, cont in spans for t in cont], device=self.device)
        picked, hits = [], []
        for part, wanted in zip(chosen.split(_HEAD_ROWS), tokens.split(_HEAD_ROWS)):  # bounded float32 memory
            scores = head(part).float().log_softmax(-1)
            picked.append(scores.gather(1, wanted.unsqueeze(1)).squeeze(1))
            hits.append(scores.argmax(-1) == wanted)
        picked, hits = torch.cat(picked), torch.cat(hits)
        out = []
        for index, at, cont in spans:
            out.append((index, (float(picked[at:at + len(cont)].sum()), bool(hits[at:at + len(cont)].all()))))
        return out
