"""The one fit loop: sampled sub-networks, in-place distillation, LoRA or full fine-tuning, resumable checkpoints,
data parallel over processes (``torchrun`` / ``accelerate launch``), progress and the ``supernets`` row.

One optimizer step: the sampler's picks (largest first when it is the teacher) each run forward + backward on every
micro-batch of the step (:func:`~nasbench.train.step.run_picks`), their gradients accumulating in the same buffers;
then (with several processes, :mod:`~nasbench.train.parallel`) gradients are averaged across processes, clipped, and
AdamW steps under a warmup + cosine schedule. Checkpoints (:mod:`~nasbench.train.checkpoint`) hold all of a run's
state; ``resume=True`` restores it and continues exactly where the run stopped. The recovery curve is
:mod:`~nasbench.train.curve`.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from nasbench.allocator import freed_memory_kept
from nasbench.errors import NasBenchError, check_choice
from nasbench.supernet.order import IMPORTANCE_FILE, Importance, load_importance
from nasbench.space import SearchSpace
from nasbench.supernet import Supernet, SupernetRef
from nasbench.train.checkpoint import (CHECKPOINTS, CURVE_FILE, RUN_FILE, STATE_FILE, checkpoints, read_checkpoint,
                                       make_run_id, resumed_config, write_checkpoint, write_run_file)
from nasbench.train.config import IMPORTANCE_STRATEGIES, KD_LOSSES, PEFT_MODES, STRATEGIES, TrainConfig, make_config
from nasbench.train.curve import RecoveryCurve
from nasbench.train.data import TrainData, build_data
from nasbench.train.parallel import processes
from nasbench.precision import resolve_precision
from nasbench.train.step import lm_loss, loss_keys, prepare_trainable, run_picks, teacher_forward
from nasbench.train.strategies import Sampler, make_sampler

# the step's pieces and the run's file names are imported from here by tests, tools and older code
#: ``deadline``: the steps timed (after a call's first) before the schedule is fitted to it, and the share of the time
#: left that training steps may fill (the rest: evaluations, checkpoints).
FIT_AFTER_STEPS = 10
DEADLINE_SHARE = 0.9

__all__ = ["TrainResult", "train", "lm_loss", "run_picks", "teacher_forward", "prepare_trainable", "RUN_FILE",
           "CHECKPOINTS", "CURVE_FILE", "STATE_FILE"]


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


# ----------------------------------------------------------------------------------------------------- the public
def train(space: SearchSpace, *, strategy: str, kd: str, peft: str, preset: str, out: str | Path,
          db: str | Path | None = None, max_steps: int | None = None, batch_size: int | None = None,
          seq_len: int | None = None, resume: bool = False, sorted_supernet: str | Path | None = None,
          data_dir: str | Path | None = None, seed: int | None = None, progress: bool = True,
          resume_from: str | Path | None = None, deadline: float | None = None, **overrides: Any) -> TrainResult:
    """Fine-tune the space's supernet and write it to ``out`` (a ``from_pretrained`` directory, LoRA merged, plus
    :data:`RUN_FILE`, ``adapter/`` for LoRA, ``importance.json`` for sorted supernets, and ``checkpoints/``).

    ``strategy``: :data:`~nasbench.train.config.STRATEGIES`; the ``importance-*`` ones need ``sorted_supernet`` (a
    directory written by ``nasbench importance SPACE --out DIR``). ``kd``: :data:`~nasbench.train.config.KD_LOSSES`
    (in-place distillation from the largest sub-network; needs a strategy that runs it). ``peft``: ``lora`` or ``full``.
    ``preset``: ``quick`` or ``paper``; ``max_steps``, ``batch_size``, ``seq_len``, ``seed`` and ``overrides``
    (any :class:`~nasbench.train.config.TrainConfig` field) replace its values. ``db``: the DuckDB file whose
    ``supernets`` table gets the run's row (updated at every checkpoint). ``resume``: continue from the newest
    checkpoint in ``out`` (a fresh start when there is none). ``deadline`` (``time.time()`` seconds, ``--time-budget``):
    once 10 steps are timed, the schedule shrinks (never grows) to the steps that end by then at the measured rate,
    minus a tenth for evaluations and checkpoints, so a run cut by a clock still ends annealed.
    """
    check_choice("strategy", strategy, STRATEGIES)
    check_choice("kd", kd, KD_LOSSES)
    check_choice("peft", peft, PEFT_MODES)
    resumed = None
    if resume_from is not None:
        resumed = SupernetRef.at(resume_from) if Path(resume_from).is_dir() else None
        if resumed is None or resumed.kind != "artifact":
            raise NasBenchError("resume_from", "must be a supernet artifact directory (with manifest.json, written "
                                               "by nasbench pack)", str(resume_from))
        if sorted_supernet is not None and Path(sorted_supernet).resolve() != Path(resume_from).resolve():
            raise NasBenchError("sorted_supernet", "resume_from brings its own sorted supernet; leave it out",
                                str(sorted_supernet))
        if (resumed.manifest or {})["training"]["peft"] != peft:
            raise NasBenchError("peft", "must be the artifact's (lora)", peft)
        sorted_supernet = resume_from
    if strategy in IMPORTANCE_STRATEGIES and sorted_supernet is None:
        raise NasBenchError("sorted_supernet", f"{strategy} starts from a sorted supernet directory (nasbench "
                                               f"importance SPACE --out DIR)", None, show_got=False)
    if strategy not in IMPORTANCE_STRATEGIES and sorted_supernet is not None:
        raise NasBenchError("sorted_supernet", f"only the importance-* strategies train a sorted supernet; use "
                                               f"importance-{strategy} or leave it out", str(sorted_supernet))
    if not isinstance(resume, bool):
        raise NasBenchError("resume", "must be true or false", resume)
    if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)
                                     and deadline > time.time()):
        raise NasBenchError("deadline", "must leave time to train (a time.time() after now)", deadline)
    explicit = {k: v for k, v in dict(overrides, steps=max_steps, batch_size=batch_size, seq_len=seq_len,
                                      seed=seed).items() if v is not None}
    config = make_config(preset, **explicit)
    if kd != "none" and config.kd_teacher == "largest" and strategy.removeprefix("importance-") in ("standard",
                                                                                                    "random"):
        # a frozen teacher (the recovery preset) distils any sampler; in-place distillation needs the largest
        raise NasBenchError("kd", f"in-place distillation needs the largest sub-network in every step; {strategy} "
                                  f"runs one network per step (use sandwich-type strategies, kd none or a "
                                  f"frozen teacher: preset recovery)", kd)
    out = Path(out)
    sorted_dir = None if sorted_supernet is None else Path(sorted_supernet)
    if sorted_dir is not None and not sorted_dir.is_dir():
        raise NasBenchError("sorted_supernet", "no such directory", str(sorted_dir))
    identity = {"space": space.name, "space_hash": space.hash, "strategy": strategy, "kd": kd, "peft": peft,
                "preset": preset, "sorted_supernet": None if sorted_dir is None else str(sorted_dir.resolve())}
    if resumed is not None:
        identity["resume_from"] = resumed.fingerprint  # the artifact's trained weights' sha256
    run_file = out / RUN_FILE
    if resume and run_file.is_file():
        config, run_id = resumed_config(run_file, identity, explicit)
    else:
        if run_file.is_file() and checkpoints(out):
            raise NasBenchError("out", "holds a training run already: resume it (resume=True), or choose another "
                                       "directory", str(out))
        run_id = make_run_id(identity, config)
    run = _Run(space, config, identity, run_id, out, db, sorted_dir, data_dir, progress)
    run.deadline = deadline
    return run.fit(resume)


# ---------------------------------------------------------------------------------------------------------- a run
class _Run:
    def __init__(self, space: SearchSpace, config: TrainConfig, identity: dict[str, Any], run_id: str,
                 out: Path, db: str | Path | None, sorted_dir: Path | None, data_dir: str | Path | None,
                 progress: bool) -> None:
        self.space, self.config, self.identity, self.supernet_id = space, config, identity, run_id
        self.out, self.db, self.sorted_dir, self.progress = out, db, sorted_dir, progress
        self.data_dir = data_dir
        self.procs = processes()
        self.strategy, self.kd, self.peft = identity["strategy"], identity["kd"], identity["peft"]
        self.step = self.position = self.tokens = 0
        self.wall = 0.0
        self.losses: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self.deadline: float | None = None
        _seed_everything(config.seed)
        self.importance: Importance | None = None
        self.resume_weights: dict[str, torch.Tensor] | None = None
        self.tokenizer = self._tokenizer()
        self.data: TrainData = build_data(space, self.tokenizer, source=config.data_source, seq_len=config.seq_len,
                                          packing=config.packing, data_dir=data_dir, seed=config.seed)
        self.curve = RecoveryCurve(space, config, self.tokenizer, data_dir, out)
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
            from nasbench.supernet.artifact import load_trainable

            load_trainable(self.supernet.model, self.resume_weights, where="resume_from")
        self.supernet.to(self.procs.device)
        if self.teacher is not None:
            self.teacher.to(self.procs.device)
        if config.gradient_checkpointing:
            self.supernet.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params = [(n, p) for n, p in self.supernet.model.named_parameters() if p.requires_grad]
        self.procs.broadcast([p for _, p in self.params])
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
        ref = SupernetRef.at(self.sorted_dir)
        if ref.kind == "artifact":  # --resume-from: the sorted base rebuilt, the adapters loaded after LoRA
            loaded = ref.load(self.space, merge=False, where="resume_from")
            self.importance, self.resume_weights = loaded.importance, loaded.trainable
            return Supernet(loaded.model, self.space)
        self.importance = load_importance(self.sorted_dir)
        if self.importance is None or not self.importance.layers:
            raise NasBenchError("sorted_supernet", f"needs {IMPORTANCE_FILE} with layer scores (written by nasbench "
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

    # -- the loop -----------------------------------------------------------------------------------------------------
    def fit(self, resume: bool) -> TrainResult:
        c, procs = self.config, self.procs
        if resume:
            self._load_latest()
            if procs.main:
                self.curve.rewind(self.step)
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
        timed_from: tuple[int, float] | None = None  # (step, time) after this call's first step (allocations, caches)
        kept = contextlib.ExitStack()
        try:
            if procs.device.type == "cpu":  # steps reuse their freed memory instead of page-faulting it in again
                kept.enter_context(freed_memory_kept())
            while self.step < stop:
                start = time.perf_counter()
                step_tokens = self._train_step()
                seconds = time.perf_counter() - start
                if self.deadline is not None:
                    if timed_from is None:
                        timed_from = (self.step + 1, time.perf_counter())
                    elif self.step + 1 - timed_from[0] == FIT_AFTER_STEPS:
                        stop = self._fit_schedule(timed_from)
                        bar.total = c.steps
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
            kept.close()
            bar.close()
            self.supernet.reset()
        complete = self.step >= c.steps
        if complete:
            self._finish()
        return TrainResult(self.supernet_id, self.step, self.tokens, self.wall, dict(self.losses),
                           None if self.last_checkpoint is None else str(self.last_checkpoint), str(self.out),
                           complete, self.history)

    def _fit_schedule(self, timed_from: tuple[int, float]) -> int:
        """Shrink ``steps`` (the cosine's span) to what ends by the deadline at the rate of the timed steps; returns the
        new stop. Rank 0 decides for all; the run record keeps the new span, so a resume follows it."""
        c = self.config
        now = time.perf_counter()
        per_step = (now - timed_from[1]) / (self.step + 1 - timed_from[0])
        fits = self.step + 1 + int(DEADLINE_SHARE * max(0.0, self.deadline - time.time()) / per_step)
        fits = self.procs.agree(fits)
        if fits < c.steps:
            print(f"train: {per_step:.2f} s/step, the deadline fits {fits} of {c.steps} steps: the schedule ends "
                  f"there", flush=True)
            c.steps = max(fits, self.step + 1, c.warmup_steps + 1)
            if self.procs.main:
                self._write_run_file()
        return c.steps if c.stop_at is None else min(c.steps, c.stop_at)

    def _minutes_due(self) -> bool:
        """``checkpoint_minutes`` of wall clock passed since the last checkpoint (rank 0 decides for all)."""
        return self.procs.decide(time.perf_counter() - self.checkpoint_wall >= 60.0 * self.config.checkpoint_minutes)

    def _evaluate(self) -> None:
        """One point of the recovery curve (rank 0)."""
        if self.procs.main:
            self.curve.evaluate(self.supernet, self.importance, step=self.step, tokens=self.tokens,
                                wall_time_s=self.wall, precision=self.precision, peft=self.peft)
            self.supernet.train()
        self.procs.barrier()

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
        keys = loss_keys(picks)
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
        self.procs.all_reduce_grads([p for _, p in self.params])
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.params], c.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses = losses
        return tokens

    # -- checkpoints --------------------------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Write a checkpoint (:func:`~nasbench.train.checkpoint.write_checkpoint`) and record it in the DB."""
        state = {"step": self.step, "position": self.position, "tokens": self.tokens, "wall_time_s": self.wall,
                 "losses": self.losses, "scheduler": self.scheduler.state_dict(),
                 "sampler": self.sampler.state_dict(), "precision": self.precision}
        final = write_checkpoint(self.out, self.procs, state, self.params, self.optimizer,
                                 self.config.keep_checkpoints)
        if self.procs.main:
            self._store(checkpoint=final)
        self.last_checkpoint = final
        self.checkpoint_wall = time.perf_counter()
        self.procs.barrier()

    def _load_latest(self) -> None:
        found = checkpoints(self.out)
        if not found:
            return
        checkpoint = read_checkpoint(found[-1], self.procs)
        with torch.no_grad():
            for name, p in self.params:
                if name not in checkpoint.weights or checkpoint.weights[name].shape != p.shape:
                    raise NasBenchError("resume", f"the checkpoint {checkpoint.path} does not match the model's "
                                                  f"trainable weights", name)
                p.copy_(checkpoint.weights[name])
        state = checkpoint.state
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.position, self.tokens = state["step"], state["position"], state["tokens"]
        self.wall, self.losses = state["wall_time_s"], state["losses"]
        checkpoint.restore_rng()
        self.last_checkpoint = checkpoint.path

    # -- outputs ------------------------------------------------------------------------------------------------------
    def _write_run_file(self) -> None:
        from nasbench.precision import machine

        record = {"supernet_id": self.supernet_id, "identity": self.identity, "config": self.config.to_dict(),
                  "data_hash": self.data.data_hash, "data_rows": len(self.data), "data_dropped": self.data.dropped,
                  "world": self.procs.world, "machine": machine()}  # the run's numerics depend on the CPU's bf16 path
        write_run_file(self.out, record)

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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
