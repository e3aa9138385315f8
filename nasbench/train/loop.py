"""The one fit loop: sampled sub-networks, in-place distillation, LoRA or full fine-tuning, resumable checkpoints,
data parallel over processes (``torchrun`` / ``accelerate launch``), progress and the ``supernets`` row.

One optimizer step: the sampler's picks (largest first when it is the teacher) each run forward + backward on every
micro-batch of the step, their gradients accumulating in the same buffers; then (with several processes) gradients
are averaged across processes, clipped, and AdamW steps under a warmup + cosine schedule.

Data parallel: every process samples the same sub-networks (same seed, same sampler state), so the graphs match;
each takes its own rows of the global micro-batch. Gradients are averaged by one all-reduce per step over the
parameters that have a gradient (identical on every process, since the archs are). We do not wrap the model in
``DistributedDataParallel``: with a different sub-network per backward, DDP would need ``find_unused_parameters`` and
``no_sync`` for all but the last backward of a step; one explicit all-reduce after the last backward is the same
arithmetic without the bucket bookkeeping.

Checkpoints (``out/checkpoints/step-NNNNNN``) are written to a temporary directory and renamed, so a ``kill -9`` loses
at most the steps since the last one: the trainable weights (safetensors), optimizer, scheduler, sampler state, data
position, counters and, per process, the Python, numpy and torch RNG states. ``resume=True`` restores all of it and
continues exactly where the run stopped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from nasbench.errors import NasBenchError
from nasbench.importance import IMPORTANCE_FILE, Importance, load_importance
from nasbench.space import SearchSpace
from nasbench.supernet import Supernet
from nasbench.train.config import (IMPORTANCE_STRATEGIES, KD_LOSSES, PEFT_MODES, STRATEGIES, TrainConfig,
                                   config_from_dict, make_config)
from nasbench.train.data import IGNORE_INDEX, TrainData, build_data
from nasbench.train.distill import TeacherTargets, distill_loss, kl_to_targets, student_loss
from nasbench.supernet.modules import ElasticLayerNorm, ElasticLinear, ElasticRMSNorm
from nasbench.train.lora import apply_lora
from nasbench.train.precision import resolve_precision
from nasbench.train.strategies import Pick, Sampler, make_sampler, sub_network_kwargs

__all__ = ["TrainResult", "train", "lm_loss", "run_picks", "teacher_forward", "prepare_trainable", "RUN_FILE", "CHECKPOINTS", "CURVE_FILE"]

#: Written in ``out``: the run's identity and config (what ``resume`` checks).
RUN_FILE = "train.json"
#: Checkpoints live in ``out/CHECKPOINTS/step-NNNNNN``.
CHECKPOINTS = "checkpoints"
#: Options a resumed run may change; any other given option must equal the stored one.
_RESUMABLE = ("steps", "stop_at", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "eval_every")
#: A checkpoint's non-tensor state (JSON); tensors are in ``*.safetensors`` beside it.
STATE_FILE = "state.json"
#: The recovery curve: one JSON line per probe arch and evaluation.
CURVE_FILE = "curve.jsonl"
_LOSS_CHUNK = 1024  # tokens per float32 chunk of the loss (bounds the [tokens, vocab] copies)


@dataclass
class TrainResult:
    """What a training call did."""

    supernet_id: str
    steps: int
    """Optimizer steps done in total (all calls of the run)."""
    tokens: int
    """Data tokens (non-padding, all processes) consumed in total; each is seen by every sampled sub-network."""
    wall_time_s: float
    """Training wall clock in total (all calls), without model loading."""
    losses: dict[str, float]
    """The last step's loss per sampled role (``largest``, ``smallest``, ``random``, ``bin<j>``, ``full``)."""
    checkpoint: str | None
    """The newest checkpoint directory."""
    out: str
    """The output directory; once the run is complete it is a ``from_pretrained`` supernet directory."""
    complete: bool
    """All ``steps`` are done and the final supernet is written (False after ``stop_at``)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per step of this call: the losses per role (for tests and plots)."""


# ---------------------------------------------------------------------------------------------------------- losses
def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy (float32) over the labelled positions (``labels != -100``).

    Computed in chunks of tokens, so no float32 copy of the whole ``[tokens, vocab]`` logits is materialised."""
    shift = logits[:, :-1].reshape(-1, logits.shape[-1])
    target = labels[:, 1:].reshape(-1).to(logits.device)
    count = (target != IGNORE_INDEX).sum()
    total = shift.new_zeros((), dtype=torch.float32)
    for lo in range(0, shift.shape[0], _LOSS_CHUNK):
        total = total + F.cross_entropy(shift[lo:lo + _LOSS_CHUNK].float(), target[lo:lo + _LOSS_CHUNK],
                                        ignore_index=IGNORE_INDEX, reduction="sum")
    return total / count.clamp(min=1)


def run_picks(supernet: Supernet, picks: list[Pick], batch: dict[str, torch.Tensor], *, kd: str = "none",
              teacher_first: bool = False, temperature: float = 1.0, alpha: float = 0.5,
              precision: str = "bf16-mixed", importance: Importance | None = None, scale: float = 1.0,
              teacher_logits: torch.Tensor | None = None) -> list[float]:
    """Forward + backward of each pick on ``batch`` (gradients accumulate); returns each pick's loss.

    With ``teacher_first`` the first pick (the largest) trains on the LM loss and, unless ``kd == "none"``, its
    detached logits are the students' distillation target: ``(1 - alpha) * lm + alpha * kd``. With
    ``teacher_logits`` (a frozen teacher's logits of ``batch``) every pick is a student of those instead. Losses are
    multiplied by ``scale`` before ``backward`` (``1 / grad_accum``). The supernet is reset afterwards.
    """
    autocast = (torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    teacher: torch.Tensor | None = teacher_logits if kd != "none" else None
    mask = batch["attention_mask"].bool()
    targets: TeacherTargets | None = None
    out = []
    try:
        for i, pick in enumerate(picks):
            if pick.arch is None:
                supernet.reset()
            else:
                supernet.set_sub_network(pick.arch, **sub_network_kwargs(pick.arch, importance))
            with autocast:
                logits = supernet(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=False).logits
            if teacher_logits is None and teacher_first and i == 0:
                loss = lm_loss(logits, batch["labels"])
                if kd != "none":
                    teacher = logits.detach()
            elif teacher is not None:
                if targets is None and kd == "kl" and teacher_logits is not None:
                    targets = TeacherTargets(teacher, temperature, mask)  # once, for every student of the batch
                kd_term = (kl_to_targets(logits, targets) if targets is not None
                           else distill_loss(logits, teacher, kd, temperature, mask=mask))
                # alpha == 1: distillation only (the LM term would cost a second pass over the logits for nothing)
                loss = kd_term if alpha >= 1.0 else student_loss(lm_loss(logits, batch["labels"]), kd_term, alpha)
            else:
                loss = lm_loss(logits, batch["labels"])
            (loss * scale).backward()
            out.append(float(loss.detach()))
            del logits, loss
    finally:
        supernet.reset()
    return out


def prepare_trainable(supernet: Supernet, *, peft: str, precision: str, teacher: bool = False, lora_r: int = 32,
                      lora_alpha: int = 16, lora_dropout: float = 0.0,
                      train_norms: bool = False) -> tuple[Supernet, torch.nn.Module | None]:
    """The supernet made trainable (``lora``: peft adapters, plus the norm weights with ``train_norms``; ``full``:
    every weight) and, with ``teacher``, a frozen copy of the starting model (taken before any adapter). Under
    ``bf16-mixed`` the frozen linear weights are stored in bf16: autocast would cast them at every forward to the
    same numbers; trainable weights stay fp32 (AdamW's updates need the mantissa)."""
    frozen = copy.deepcopy(supernet.hf_model).eval().requires_grad_(False) if teacher else None
    if peft == "lora":
        supernet = apply_lora(supernet, lora_r, lora_alpha, lora_dropout)
        if train_norms:
            for module in supernet.model.modules():
                if isinstance(module, (ElasticRMSNorm, ElasticLayerNorm)):
                    module.requires_grad_(True)
    else:
        for p in supernet.parameters():
            p.requires_grad_(True)
    if precision == "bf16-mixed":
        for model in (supernet.model, frozen):
            if model is not None:
                _frozen_linears_to_bf16(model)
    return supernet, frozen


@torch.no_grad()
def teacher_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str) -> torch.Tensor:
    """A frozen teacher's logits of ``batch`` (in the autocast dtype when ``precision`` is ``bf16-mixed``)."""
    autocast = (torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    with autocast:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


def _loss_keys(picks: list[Pick]) -> list[str]:
    """One name per pick: its role, numbered when a role repeats (``random.1``, ``random.2``)."""
    roles = [p.role for p in picks]
    seen: dict[str, int] = {}
    keys = []
    for role in roles:
        seen[role] = seen.get(role, 0) + 1
        keys.append(f"{role}.{seen[role]}" if roles.count(role) > 1 else role)
    return keys


# ------------------------------------------------------------------------------------------------------ processes
@dataclass(frozen=True)
class _Procs:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _processes() -> _Procs:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if world > 1:
        return _Procs(dist.get_rank(), dist.get_world_size(), device)
    return _Procs(0, 1, device)


# ----------------------------------------------------------------------------------------------------- the public
def train(space: SearchSpace, *, strategy: str, kd: str, peft: str, preset: str, out: str | Path,
          db: str | Path | None = None, max_steps: int | None = None, batch_size: int | None = None,
          seq_len: int | None = None, resume: bool = False, sorted_supernet: str | Path | None = None,
          data_dir: str | Path | None = None, seed: int = 0, progress: bool = True,
          resume_from: str | Path | None = None, **overrides: Any) -> TrainResult:
    """Fine-tune the space's supernet and write it to ``out`` (a ``from_pretrained`` directory, LoRA merged, plus
    :data:`RUN_FILE`, ``adapter/`` for LoRA, ``importance.json`` for sorted supernets, and ``checkpoints/``).

    ``strategy``: :data:`~nasbench.train.config.STRATEGIES`; the ``importance-*`` ones need ``sorted_supernet`` (a
    directory written by ``nasbench importance SPACE --out DIR``). ``kd``: :data:`~nasbench.train.config.KD_LOSSES` (in-place
    distillation from the largest sub-network; needs a strategy that runs it). ``peft``: ``lora`` or ``full``.
    ``preset``: ``quick`` or ``paper``; ``max_steps``, ``batch_size``, ``seq_len``, ``seed`` and ``overrides``
    (any :class:`~nasbench.train.config.TrainConfig` field) replace its values. ``db``: the DuckDB file whose
    ``supernets`` table gets the run's row (updated at every checkpoint). ``resume``: continue from the newest
    checkpoint in ``out`` (a fresh start when there is none).
    """
    if strategy not in STRATEGIES:
        raise NasBenchError("--strategy", f"must be one of {', '.join(STRATEGIES)}", strategy)
    if kd not in KD_LOSSES:
        raise NasBenchError("--kd", f"must be one of {', '.join(KD_LOSSES)}", kd)
    if peft not in PEFT_MODES:
        raise NasBenchError("--peft", f"must be one of {', '.join(PEFT_MODES)}", peft)
    if resume_from is not None:
        from nasbench.train.artifact import is_artifact, read_manifest

        if not is_artifact(resume_from):
            raise NasBenchError("--resume-from", "must be a supernet artifact directory (with manifest.json, written "
                                                 "by nasbench pack)", str(resume_from))
        if sorted_supernet is not None and Path(sorted_supernet).resolve() != Path(resume_from).resolve():
            raise NasBenchError("--sorted-supernet", "--resume-from brings its own sorted supernet; leave it out",
                                str(sorted_supernet))
        if read_manifest(resume_from)["training"]["peft"] != peft:
            raise NasBenchError("--peft", "must be the artifact's (lora)", peft)
        sorted_supernet = resume_from
    if strategy in IMPORTANCE_STRATEGIES and sorted_supernet is None:
        raise NasBenchError("--sorted-supernet", f"{strategy} starts from a sorted supernet directory (nasbench "
                                                 f"importance SPACE --out DIR)", None, show_got=False)
    if strategy not in IMPORTANCE_STRATEGIES and sorted_supernet is not None:
        raise NasBenchError("--sorted-supernet", f"only the importance-* strategies train a sorted supernet; use "
                                                 f"importance-{strategy} or leave it out", str(sorted_supernet))
    if kd != "none" and strategy in ("standard", "random", "importance-random"):
        raise NasBenchError("--kd", f"in-place distillation needs the largest sub-network in every step; {strategy} "
                                    f"runs one network per step (use sandwich-type strategies or --kd none)", kd)
    if not isinstance(resume, bool):
        raise NasBenchError("--resume", "must be true or false", resume)
    explicit = {k: v for k, v in dict(overrides, steps=max_steps, batch_size=batch_size, seq_len=seq_len,
                                      seed=seed).items() if v is not None}
    config = make_config(preset, **explicit)
    out = Path(out)
    sorted_dir = None if sorted_supernet is None else Path(sorted_supernet)
    if sorted_dir is not None and not sorted_dir.is_dir():
        raise NasBenchError("--sorted-supernet", "no such directory", str(sorted_dir))
    identity = {"space": space.name, "space_hash": space.hash, "strategy": strategy, "kd": kd, "peft": peft,
                "preset": preset, "sorted_supernet": None if sorted_dir is None else str(sorted_dir.resolve())}
    if resume_from is not None:
        identity["resume_from"] = read_manifest(resume_from, verify=False)["files"]["trainable.safetensors"]
    run_file = out / RUN_FILE
    if resume and run_file.is_file():
        config, supernet_id = _resumed_config(run_file, identity, explicit)
    else:
        if run_file.is_file() and _checkpoints(out):
            raise NasBenchError("--out", "holds a training run already: pass --resume to continue it, or choose "
                                         "another directory", str(out))
        supernet_id = _supernet_id(identity, config)
    return _Run(space, config, identity, supernet_id, out, db, sorted_dir, data_dir, progress).fit(resume)


def _supernet_id(identity: dict[str, Any], config: TrainConfig) -> str:
    payload = json.dumps({"identity": identity, "config": config.to_dict()}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    return f"{identity['space']}-{identity['strategy']}-{identity['kd']}-{identity['peft']}-{digest}"


def _resumed_config(run_file: Path, identity: dict[str, Any], explicit: dict[str, Any]) -> tuple[TrainConfig, str]:
    try:
        record = json.loads(run_file.read_text(encoding="utf-8"))
        record["identity"], record["config"], record["supernet_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NasBenchError("--resume", f"{run_file} is not a readable training record (start a new --out)",
                            f"{type(exc).__name__}: {exc}") from None
    for key, value in identity.items():
        if record["identity"].get(key) != value:
            raise NasBenchError(f"--{key.replace('_', '-')}", f"differs from the run being resumed in "
                                                              f"{run_file.parent} ({record['identity'].get(key)!r})",
                                value)
    stored = record["config"]
    values = dict(stored, stop_at=None)
    for key, value in explicit.items():
        if key in _RESUMABLE:
            values[key] = value
        elif key in stored and (list(value) if isinstance(value, tuple) else value) != stored[key]:
            raise NasBenchError(f"--{key.replace('_', '-')}", f"differs from the run being resumed ({stored[key]!r}); "
                                                              f"only {', '.join(_RESUMABLE)} may change", value)
    return config_from_dict(values), record["supernet_id"]


def _checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (renamed from their temporary directory), oldest first."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"step-\d{6,}", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


# ---------------------------------------------------------------------------------------------------------- a run
class _Run:
    def __init__(self, space: SearchSpace, config: TrainConfig, identity: dict[str, Any], supernet_id: str,
                 out: Path, db: str | Path | None, sorted_dir: Path | None, data_dir: str | Path | None,
                 progress: bool) -> None:
        self.space, self.config, self.identity, self.supernet_id = space, config, identity, supernet_id
        self.out, self.db, self.sorted_dir, self.progress = out, db, sorted_dir, progress
        self.data_dir = data_dir
        self.procs = _processes()
        self.strategy, self.kd, self.peft = identity["strategy"], identity["kd"], identity["peft"]
        self.step = self.position = self.tokens = 0
        self.wall = 0.0
        self.losses: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        _seed_everything(config.seed)
        self.importance: Importance | None = None
        self.resume_weights: dict[str, torch.Tensor] | None = None
        self.tokenizer = self._tokenizer()
        self.data: TrainData = build_data(space, self.tokenizer, source=config.data_source, seq_len=config.seq_len,
                                          packing=config.packing, data_dir=data_dir, seed=config.seed)
        self.supernet = self._supernet()
        self.sampler: Sampler = make_sampler(self.strategy, space, config, supernet=self.supernet,
                                             importance=self.importance)
        self.precision = resolve_precision(config.precision, self.procs.device.type)
        torch.manual_seed(config.seed)  # the same adapters' initialisation on every process
        self.supernet, self.teacher = prepare_trainable(self.supernet, peft=self.peft, precision=self.precision,
                                                        teacher=config.kd_teacher == "base" and self.kd != "none",
                                                        lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                                                        lora_dropout=config.lora_dropout,
                                                        train_norms=config.train_norms)
        if self.resume_weights is not None:
            from nasbench.train.artifact import load_trainable

            load_trainable(self.supernet.model, self.resume_weights, flag="--resume-from")
        self.supernet.to(self.procs.device)
        if self.teacher is not None:
            self.teacher.to(self.procs.device)
        if config.gradient_checkpointing:
            self.supernet.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params = [(n, p) for n, p in self.supernet.model.named_parameters() if p.requires_grad]
        self._broadcast_params()
        decay = [p for n, p in self.params if p.ndim >= 2]
        no_decay = [p for n, p in self.params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": config.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    # -- setup --------------------------------------------------------------------------------------------------------
    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        from nasbench.models import load_tokenizer

        if self.sorted_dir is not None and any((self.sorted_dir / f).is_file()
                                               for f in ("tokenizer.json", "tokenizer_config.json")):
            return AutoTokenizer.from_pretrained(self.sorted_dir, local_files_only=True)
        return load_tokenizer(self.space.model)

    def _supernet(self) -> Supernet:
        from transformers import AutoModelForCausalLM

        from nasbench.models import load_base_model

        if self.sorted_dir is None:
            return Supernet(load_base_model(self.space.model, dtype=torch.float32), self.space)
        from nasbench.train.artifact import is_artifact, load_model

        if is_artifact(self.sorted_dir):  # --resume-from: the sorted base rebuilt, the adapters loaded after LoRA
            loaded = load_model(self.space, self.sorted_dir, merge=False, flag="--resume-from")
            self.importance, self.resume_weights = loaded.importance, loaded.trainable
            return Supernet(loaded.model, self.space)
        self.importance = load_importance(self.sorted_dir)
        if self.importance is None or not self.importance.layers:
            raise NasBenchError("--sorted-supernet", f"needs {IMPORTANCE_FILE} with layer scores (written by nasbench "
                                                     f"importance SPACE --out DIR)", str(self.sorted_dir))
        model = AutoModelForCausalLM.from_pretrained(self.sorted_dir, dtype=torch.float32, local_files_only=True)
        return Supernet(model, self.space)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        span = max(1, c.steps - c.warmup_steps)
        progress = min(1.0, (step - c.warmup_steps) / span)
        return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _broadcast_params(self) -> None:
        if self.procs.world > 1:
            with torch.no_grad():
                for _, p in self.params:
                    dist.broadcast(p.data, src=0)

    # -- the loop -----------------------------------------------------------------------------------------------------
    def fit(self, resume: bool) -> TrainResult:
        c, procs = self.config, self.procs
        if resume:
            self._load_latest()
        if procs.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_run_file()
            self._store()
        stop = c.steps if c.stop_at is None else min(c.steps, c.stop_at)
        if c.eval_every and self.step == 0 and not (self.out / CURVE_FILE).is_file():
            self._evaluate()  # the curve's first point: the untrained supernet
        bar = tqdm(total=c.steps, initial=self.step, unit="step", desc=f"train {self.strategy}",
                   disable=not (self.progress and procs.main), dynamic_ncols=True)
        self.supernet.train()
        self.checkpoint_wall = time.perf_counter()
        try:
            while self.step < stop:
                start = time.perf_counter()
                step_tokens = self._train_step()
                seconds = time.perf_counter() - start
                self.wall += seconds
                self.tokens += step_tokens
                self.step += 1
                self.history.append(dict(self.losses))
                bar.update(1)
                bar.set_postfix_str(f"{step_tokens / seconds:,.0f} tok/s " +
                                    " ".join(f"{k}={v:.3f}" for k, v in self.losses.items()))
                if c.eval_every and (self.step % c.eval_every == 0 or self.step == stop):
                    self._evaluate()
                if self.step % c.checkpoint_every == 0 or self.step == stop or self._minutes_due():
                    self._checkpoint()
        finally:
            bar.close()
            self.supernet.reset()
        complete = self.step >= c.steps
        if complete:
            self._finish()
        return TrainResult(self.supernet_id, self.step, self.tokens, self.wall, dict(self.losses),
                           None if self.last_checkpoint is None else str(self.last_checkpoint), str(self.out),
                           complete, self.history)

    def _minutes_due(self) -> bool:
        """``checkpoint_minutes`` of wall clock passed since the last checkpoint (rank 0 decides for all)."""
        due = time.perf_counter() - self.checkpoint_wall >= 60.0 * self.config.checkpoint_minutes
        if self.procs.world > 1:
            flag = torch.tensor([int(due)], device=self.procs.device)
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
        return due

    def _evaluate(self) -> None:
        """One point of the recovery curve per probe arch: the project's perplexity (first ``eval_tokens`` tokens
        of the space's perplexity data, windows of 512), appended to :data:`CURVE_FILE` (rank 0)."""
        if self.procs.main:
            from nasbench.perplexity import perplexity

            windows = self._eval_windows()
            dtype = torch.bfloat16 if self.precision == "bf16-mixed" else None
            lines = []
            for role, arch in self._probes():
                if arch is None:
                    self.supernet.reset()
                else:
                    self.supernet.set_sub_network(arch, **sub_network_kwargs(arch, self.importance))
                try:
                    result = perplexity(self.supernet, windows, batch_size=4, autocast_dtype=dtype)
                finally:
                    self.supernet.reset()
                lines.append({"step": self.step, "tokens": self.tokens, "wall_time_s": round(self.wall, 3),
                              "role": role, "params": self.space.params(arch or self.space.largest()),
                              "ppl": result.ppl, "eval_tokens": int(windows.numel()),
                              "precision": self.precision, "peft": self.peft})
            with open(self.out / CURVE_FILE, "a", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line) + "\n")
            self.supernet.train()
        self.procs.barrier()

    def _eval_windows(self) -> torch.Tensor:
        if getattr(self, "_windows", None) is None:
            from nasbench import data as sources
            from nasbench.perplexity import tokenize_corpus, windows

            if "perplexity" not in self.space.data:
                raise NasBenchError("--eval-every", "the curve needs the space's data.perplexity source", None,
                                    show_got=False)
            text = sources.read_text(self.space.data["perplexity"], sources.data_dir(self.data_dir))
            tokens = self.config.eval_tokens
            self._windows = windows(tokenize_corpus(self.tokenizer, text, tokens), min(512, tokens), tokens)
        return self._windows

    def _probes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """The curve's archs: ``eval_archs`` (role ``probe<i>``), else the full model and the smallest admitted."""
        from nasbench.train.strategies import smallest_admitted

        if self.config.eval_archs is None:
            return [("full", None), ("smallest", smallest_admitted(self.space))]
        path = Path(self.config.eval_archs)
        try:
            lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (OSError, ValueError) as exc:
            raise NasBenchError("--eval-archs", "must be a readable JSONL file of archs", str(exc)) from None
        archs = [self.space.canonical(x.get("arch", x), where=f"{path}") for x in lines]
        return [("full", None)] + [(f"probe{i}", a) for i, a in enumerate(archs)]

    def _micro_batches(self) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        """This process's rows of each micro-batch of the step, and the step's global token count per batch."""
        c, procs = self.config, self.procs
        for _ in range(c.grad_accum):
            rows = self.data.rows(self.position, c.batch_size * procs.world)
            self.position += len(rows)
            tokens = int(self.data.attention_mask[rows].sum())
            local = rows[procs.rank * c.batch_size:(procs.rank + 1) * c.batch_size]
            batch = {k: v.to(procs.device) for k, v in self.data.batch(local).items()}
            yield batch, tokens

    def _train_step(self) -> int:
        c = self.config
        picks = self.sampler.step()
        keys = _loss_keys(picks)
        losses = dict.fromkeys(keys, 0.0)
        tokens = 0
        for batch, batch_tokens in self._micro_batches():
            tokens += batch_tokens
            teacher = None if self.teacher is None else teacher_forward(self.teacher, batch, self.precision)
            values = run_picks(self.supernet, picks, batch, kd=self.kd, teacher_first=self.sampler.teacher,
                               temperature=c.kd_temperature, alpha=c.kd_alpha, precision=self.precision,
                               importance=self.importance, scale=1.0 / c.grad_accum, teacher_logits=teacher)
            del teacher
            for key, value in zip(keys, values):
                losses[key] += value / c.grad_accum
        self._all_reduce_grads()
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.params], c.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses = losses
        return tokens

    def _all_reduce_grads(self) -> None:
        if self.procs.world == 1:
            return
        grads = [p.grad for _, p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.procs.world
        for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    # -- checkpoints --------------------------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Write a checkpoint: tensors in safetensors, everything else in JSON (nothing a load would execute)."""
        procs, root = self.procs, self.out / CHECKPOINTS
        final = root / f"step-{self.step:06d}"
        tmp = root / f".tmp-step-{self.step:06d}"
        if procs.main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        procs.barrier()
        rng_tensors, rng_json = _rng_state()
        save_file(rng_tensors, str(tmp / f"rng-{procs.rank}.safetensors"))
        (tmp / f"rng-{procs.rank}.json").write_text(json.dumps(rng_json), encoding="utf-8")
        procs.barrier()
        if procs.main:
            weights = {n: p.detach().contiguous().cpu() for n, p in self.params}
            save_file(weights, str(tmp / "trainable.safetensors"))
            opt_tensors, opt_json = _split_tensors(self.optimizer.state_dict(), "optimizer")
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            state = {"step": self.step, "position": self.position, "tokens": self.tokens, "wall_time_s": self.wall,
                     "losses": self.losses, "world": procs.world, "optimizer": opt_json,
                     "scheduler": self.scheduler.state_dict(), "sampler": self.sampler.state_dict(),
                     "precision": self.precision}
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            for f in tmp.iterdir():
                _fsync(f)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync(root)
            for old in _checkpoints(self.out)[:-self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            self._store(checkpoint=final)
        self.last_checkpoint = final
        self.checkpoint_wall = time.perf_counter()
        procs.barrier()

    def _load_latest(self) -> None:
        found = _checkpoints(self.out)
        if not found:
            return
        path = found[-1]
        if not (path / STATE_FILE).is_file():
            raise NasBenchError("--resume", f"{path} is not a checkpoint of this version (no {STATE_FILE}; older "
                                            f"runs pickled their state, which is no longer loaded): start a new run",
                                str(path))
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            weights = load_file(str(path / "trainable.safetensors"))
            opt_tensors = load_file(str(path / "optimizer.safetensors"))
            rng_tensors = load_file(str(path / f"rng-{self.procs.rank}.safetensors"))
            rng_json = json.loads((path / f"rng-{self.procs.rank}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NasBenchError("--resume", f"cannot read the checkpoint {path}", str(exc)) from None
        if state["world"] != self.procs.world:
            raise NasBenchError("--nproc-per-node", f"the checkpoint {path} was written by {state['world']} "
                                                    f"processes; resume with as many", self.procs.world)
        with torch.no_grad():
            for name, p in self.params:
                if name not in weights or weights[name].shape != p.shape:
                    raise NasBenchError("--resume", f"the checkpoint {path} does not match the model's trainable "
                                                    f"weights", name)
                p.copy_(weights[name])
        self.optimizer.load_state_dict(_join_tensors(state["optimizer"], opt_tensors, "optimizer"))
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.position, self.tokens = state["step"], state["position"], state["tokens"]
        self.wall, self.losses = state["wall_time_s"], state["losses"]
        _set_rng_state(rng_tensors, rng_json)
        self.last_checkpoint = path

    # -- outputs ------------------------------------------------------------------------------------------------------
    def _write_run_file(self) -> None:
        record = {"supernet_id": self.supernet_id, "identity": self.identity, "config": self.config.to_dict(),
                  "data_hash": self.data.data_hash, "data_rows": len(self.data), "data_dropped": self.data.dropped,
                  "world": self.procs.world}
        _atomic_write(self.out / RUN_FILE, json.dumps(record, indent=2) + "\n")

    def _store(self, checkpoint: Path | None = None) -> None:
        if self.db is None:
            return
        from nasbench.store import Store

        base = self.identity["sorted_supernet"] or self.space.model.source
        with Store(self.db) as store:
            store.add_space(self.space)
            store.add_supernet(self.supernet_id, self.space.name, base, strategy=self.strategy, kd=self.kd,
                               peft=self.peft, data_hash=self.data.data_hash, steps=self.step, tokens=self.tokens,
                               wall_time_s=self.wall,
                               checkpoint=None if checkpoint is None else str(checkpoint),
                               config={**self.config.to_dict(), "preset": self.identity["preset"],
                                       "sorted_supernet": self.identity["sorted_supernet"]})

    def _finish(self) -> None:
        """Write the trained supernet to ``out`` (rank 0): adapters, then the merged model, tokenizer, importance."""
        if self.procs.main:
            model = self.supernet.model.float()  # frozen weights stored in bf16 for speed: merge and save in fp32
            if self.peft == "lora":
                model.save_pretrained(self.out / "adapter")
                model = model.merge_and_unload()
                self.supernet = Supernet(model, self.space)
            model.save_pretrained(self.out)
            self.tokenizer.save_pretrained(self.out)
            if self.sorted_dir is not None:
                shutil.copyfile(self.sorted_dir / IMPORTANCE_FILE, self.out / IMPORTANCE_FILE)
            self._store(checkpoint=self.out)
        self.procs.barrier()


# ------------------------------------------------------------------------------------------------------- helpers
@torch.no_grad()
def _frozen_linears_to_bf16(model: torch.nn.Module) -> None:
    """Store the frozen weights of linear layers (elastic or dense) in bf16. A head tied to the token embedding keeps
    fp32 (casting it would cast the embedding, and with it the residual stream)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for module in model.modules():
        if (isinstance(module, torch.nn.Linear) and not module.weight.requires_grad
                and id(module.weight) not in embeddings):
            module.weight.data = module.weight.data.to(torch.bfloat16)
            if module.bias is not None and not module.bias.requires_grad:
                module.bias.data = module.bias.data.to(torch.bfloat16)
            if isinstance(module, ElasticLinear):
                module.clear_cache()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states as (tensors, JSON): python, numpy, torch (and CUDA)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, t in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = t
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    version, internal, gauss = values["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _split_tensors(value: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """A nested state dict as (flat tensors for safetensors, the JSON rest with ``{"__tensor__": key}`` marks)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(v: Any, key: str) -> Any:
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().contiguous().cpu()
            return {"__tensor__": key}
        if isinstance(v, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(x, f"{key}.{i}")] for i, (k, x) in enumerate(v.items())]}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{key}.{i}") for i, x in enumerate(v)]
        return v

    return tensors, walk(value, prefix)


def _join_tensors(value: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """The inverse of :func:`_split_tensors`."""
    def walk(v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"__tensor__"}:
            return tensors[v["__tensor__"]]
        if isinstance(v, dict) and set(v) == {"__dict__"}:
            return {walk(k): walk(x) for k, x in v["__dict__"]}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
