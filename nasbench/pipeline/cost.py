"""What a benchmark costs on GPUs, from the space's FLOPs formula at a stated utilisation (``nasbench cost SPACE``).

Nothing is measured here: every number follows from the space file (the reference model, the dimensions), the
training and profiling protocols and the assumptions in :class:`CostAssumptions`, which the table prints beside it.

- Supernet training per token: each step trains the largest, the smallest admitted and ``n_random`` sampled
  sub-networks (the sandwich rule) on the same tokens; a sub-network's forward and backward are
  :meth:`SearchSpace.training_flops` (its forward ``F`` plus, with LoRA, the activations' gradients ``F`` and the
  second operand's of attention ``A``: ``2F + A``; with every weight trained ``3F``); a frozen base teacher adds one
  forward of the full model. The middle sub-networks cost the mean of
  ``samples`` seeded archs.
- Profiling per arch (the ``--metrics`` of the protocol): the perplexity tokens and every latency and memory
  prefill (warm-ups included) are forward FLOPs at ``profile_mfu``; each decode step reads every weight once, so it
  costs the weights' bytes over the GPU's memory bandwidth; ``overhead_s`` covers extracting the dense model and
  moving it. lm-eval accuracy is not included (its cost depends on the tasks and ``--limit-items``). Archs are spread
  over GPUs one task each (``--engine ray``), so N GPUs divide the hours.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from nasbench.errors import NasBenchError, check_choice
from nasbench.space import SearchSpace
from nasbench.train.config import KD_TEACHERS, PEFT_MODES

__all__ = ["GPUS", "CostAssumptions", "cost_estimate", "cost_table", "parse_count"]

#: Dense BF16 tensor-core peak (TFLOP/s) and memory bandwidth (TB/s) of one GPU, from the vendors' data sheets.
GPUS = {"h100": (989.0, 3.35), "h200": (989.0, 4.8), "a100": (312.0, 2.0), "l40s": (362.0, 0.864)}


@dataclass(frozen=True)
class CostAssumptions:
    """Every assumption of the estimate; printed with the table."""

    gpu: str = "h100"
    """One of :data:`GPUS` (its peak and bandwidth, unless given below)."""
    peak_tflops: float | None = None
    hbm_tbps: float | None = None
    train_mfu: float = 0.40
    """Model FLOPs utilisation of supernet training (LoRA, bf16, sequences of ``train_seq_len``)."""
    profile_mfu: float = 0.20
    """Utilisation of the profiling forwards (perplexity windows, batch-1 prefills: smaller matmuls)."""
    overhead_s: float = 5.0
    """Seconds per arch that are not FLOPs: extracting the dense model, moving it, Python."""
    train_seq_len: int = 512
    n_random: int = 2
    """Middle sub-networks per step (``nasbench train``'s ``n_random``)."""
    peft: str = "lora"
    kd_teacher: str = "base"
    """``base``: a frozen teacher forward per token (the recovery preset); ``largest``: in-place, no extra forward."""
    samples: int = 256
    """Seeded archs whose mean FLOPs stand for a sampled sub-network."""

    def __post_init__(self) -> None:
        check_choice("gpu", self.gpu, GPUS)
        for name in ("train_mfu", "profile_mfu"):
            if not 0 < getattr(self, name) <= 1:
                raise NasBenchError(name, "must be in (0, 1]", getattr(self, name))
        check_choice("peft", self.peft, PEFT_MODES)
        check_choice("kd_teacher", self.kd_teacher, KD_TEACHERS)

    @property
    def peak_flops(self) -> float:
        return (self.peak_tflops or GPUS[self.gpu][0]) * 1e12

    @property
    def bandwidth(self) -> float:
        return (self.hbm_tbps or GPUS[self.gpu][1]) * 1e12


def parse_count(text: str, flag: str) -> int:
    """``"30M"`` -> 30,000,000 (suffixes k, M, B; plain integers too); >= 1."""
    scale = {"k": 10**3, "m": 10**6, "b": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise NasBenchError(flag, "must be a count such as 2000, 30M or 1.5B", text) from None
    if not value >= 1 or value != int(value):
        raise NasBenchError(flag, "must be a whole count >= 1", text)
    return int(value)


def cost_estimate(space: SearchSpace, *, tokens: Sequence[int], archs: int, config: Any = None,
                  assumptions: CostAssumptions = CostAssumptions()) -> dict[str, Any]:
    """Training GPU-hours per token budget and profiling GPU-hours for ``archs`` archs (``config``: a
    :class:`nasbench.profile.ProfileConfig`, its defaults when ``None``), with every input stated."""
    from nasbench.profile import ProfileConfig

    config = config or ProfileConfig()
    a = assumptions
    largest, smallest = space.largest(), space.smallest_admitted()
    sampled = space.sample(a.samples, seed=0)
    train_f = {"largest": space.flops(largest, a.train_seq_len), "smallest": space.flops(smallest, a.train_seq_len),
               "sampled_mean": statistics.fmean(space.flops(x, a.train_seq_len) for x in sampled)}
    per_token = (space.training_flops(largest, a.train_seq_len, a.peft)
                 + space.training_flops(smallest, a.train_seq_len, a.peft)
                 + a.n_random * statistics.fmean(space.training_flops(x, a.train_seq_len, a.peft) for x in sampled))
    per_token += train_f["largest"] if a.kd_teacher == "base" else 0
    training = [{"tokens": t, "flops": per_token * t, "gpu_hours": per_token * t / (a.peak_flops * a.train_mfu) / 3600}
                for t in tokens]
    per_arch_seconds, per_arch_flops = zip(*(_profile_seconds(space, arch, config, a) for arch in sampled))
    per_arch = statistics.fmean(per_arch_seconds)
    return {"space": space.name, "reference_params": space.params(largest),
            "train_flops_per_token": per_token, "train_flops_per_token_by_subnet": train_f, "training": training,
            "profile_seconds_per_arch": per_arch,
            "profile": {"archs": archs, "flops": archs * statistics.fmean(per_arch_flops),
                        "gpu_hours": archs * per_arch / 3600},
            "protocol": {"metrics": ",".join(config.metrics), "ppl_tokens": config.ppl_tokens,
                         "seq_len": config.seq_len, "latency_batch": config.latency_batch,
                         "latency_seq_len": config.latency_seq_len, "latency_repeats": config.latency_repeats,
                         "decode_tokens": config.decode_tokens},
            "assumptions": {**asdict(a), "peak_tflops": a.peak_flops / 1e12, "hbm_tbps": a.bandwidth / 1e12}}


def _profile_seconds(space: SearchSpace, arch: dict[str, Any], config: Any, a: CostAssumptions,
                     ) -> tuple[float, float]:
    """One arch's profiling (seconds, FLOPs): forwards at ``profile_mfu``, decode steps at the memory bandwidth."""
    prefill = config.latency_batch * config.latency_seq_len * space.flops(arch, config.latency_seq_len)
    warmup, metrics = 2, set(config.metrics)
    flops = config.ppl_tokens * space.flops(arch, config.seq_len) if "ppl" in metrics else 0.0
    if metrics & {"latency", "latency_rel", "memory", "energy"}:
        flops += prefill  # the dense model's warm-up after extraction
    flops += (warmup + config.latency_repeats) * prefill if "latency" in metrics else 0.0
    if "latency_rel" in metrics:  # each repeat also times the full model
        flops += (warmup + config.latency_repeats) * (prefill + config.latency_batch * config.latency_seq_len
                                                      * space.flops(space.largest(), config.latency_seq_len))
    flops += 2 * prefill if "memory" in metrics else 0.0  # warm-up + measured prefill
    decode = 0.0
    repeats = config.decode_pairs
    step = config.decode_tokens * 2 / a.bandwidth  # per decode run: the bf16 weights read once per step
    if config.decode_tokens and "latency" in metrics:
        flops += repeats * prefill
        decode = repeats * space.params(arch) * step
    if config.decode_tokens and "latency_rel" in metrics:  # decode_rel: each pair also decodes with the full model
        full = space.largest()
        flops += (1 + repeats) * (prefill + config.latency_batch * config.latency_seq_len
                                  * space.flops(full, config.latency_seq_len))
        decode += (1 + repeats) * (space.params(arch) + space.params(full)) * step
    return flops / (a.peak_flops * a.profile_mfu) + decode + a.overhead_s, flops


def cost_table(estimate: dict[str, Any], gpus: Sequence[int]) -> str:
    """The estimate as a Markdown table: GPU-hours and the wall clock on each GPU count, then the assumptions."""
    a = estimate["assumptions"]
    head = "| work | FLOPs | GPU-hours | " + " | ".join(f"wall clock, {n} GPU{'s' * (n > 1)}" for n in gpus) + " |"
    lines = [head, "|" + " --- |" * (3 + len(gpus))]

    def row(name: str, flops: float, hours: float) -> str:
        return f"| {name} | {flops:.2e} | {hours:,.1f} | " + " | ".join(_duration(hours / n) for n in gpus) + " |"

    for t in estimate["training"]:
        lines.append(row(f"supernet training, {_count(t['tokens'])} tokens", t["flops"], t["gpu_hours"]))
    p = estimate["profile"]
    lines.append(row(f"profiling {p['archs']:,} archs", p["flops"], p["gpu_hours"]))
    f = estimate["train_flops_per_token_by_subnet"]
    lines += ["", f"{estimate['space']} ({estimate['reference_params'] / 1e9:.2f}B parameters at the largest arch) on "
              f"{a['gpu'].upper()} ({a['peak_tflops']:.0f} TFLOP/s dense BF16, {a['hbm_tbps']:.2f} TB/s). Training: "
              f"{estimate['train_flops_per_token']:.3g} FLOPs per token (largest {f['largest']:.3g}, smallest "
              f"{f['smallest']:.3g}, {a['n_random']} sampled at a mean {f['sampled_mean']:.3g}; {a['peft']} "
              f"backward, teacher {a['kd_teacher']}; sequences of {a['train_seq_len']}) at {a['train_mfu']:.0%} "
              f"utilisation. Profiling: {estimate['profile_seconds_per_arch']:.1f} s per arch (perplexity on "
              f"{estimate['protocol']['ppl_tokens']:,} tokens, {estimate['protocol']['metrics']} at "
              f"{a['profile_mfu']:.0%} utilisation, {estimate['protocol']['decode_tokens']} decode steps at the "
              "memory bandwidth, "
              f"{a['overhead_s']:g} s overhead; no lm-eval accuracy). Wall clock: GPU-hours / N (linear scaling, "
              "optimistic for training beyond one node; profiling is one independent task per arch)."]
    return "\n".join(lines)


def _count(n: int) -> str:
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return str(n)


def _duration(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h" if hours < 48 else f"{hours / 24:,.1f} d"
