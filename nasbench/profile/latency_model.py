"""An op-level latency model: the space's operator shapes timed once on a device, an arch's latency their sum.

Every operator shape the space can need is timed on its own, in the dtype and with the torch threads the benchmark
measures latency with (:mod:`nasbench.profile.latency`), for a prefill of ``1 x seq_len`` tokens and for one decode
step attending to a KV cache of ``context`` tokens:

* ``linear (in, out)``: the q, k, v and o projections at every width the space allows (q: ``embed_dim x
  n_heads*head_size``; k, v: ``embed_dim x n_kv_groups*head_size``; o: ``n_heads*head_size x embed_dim``; a family
  with a fused qkv: one ``embed_dim x 3*n_heads*head_size``);
* ``mlp (embed_dim, intermediate_size)``: the whole MLP (gate, up, the activation, down; ungated: up, activation,
  down);
* ``attention (n_heads, n_kv_groups, head_size)``: the heads' reshapes, rotary embedding of q and k,
  ``scaled_dot_product_attention`` with grouped-query attention (causal over the prompt in prefill; in decode one
  query against the cache, the step's k and v appended to it as HF's cache does) and the merge of the heads;
* ``norm (embed_dim,)``: the residual add and the family's norm before it (two per block, one final);
* ``embedding (embed_dim,)`` and ``head (embed_dim,)``: the token lookup and the LM head over every position.

* ``model (embed_dim, n_heads, n_kv_groups, head_size, intermediate_size, n_layers)``: in-model probes, whole HF
  models of the family with random weights at every embed dim, one block shape (:func:`probe_ops`) and the two
  depths of :data:`PROBE_LAYERS`. Their time per layer over the sum of that block's ops timed alone is the block's
  in-model factor at that embed dim (:func:`in_model_factor`): what a block costs inside a forward pass beyond its ops
  (the HF layer's own calls, activations passed from op to op), which differs by embed dim (on a 2-core Xeon with
  AMX a block took 1.35-1.39x its ops in prefill and 1.66-1.69x in decode, by embed dim). The probes hold
  ``2 x len(embed_dim)`` small whole models in memory while the table is timed.

Timing is interleaved: every round visits all shapes of both phases in a new shuffled order, each visit times a
batch of back-to-back calls (as many as make ``min_ms``, one for a large op; a projection or MLP reads other
weights at every call, from a pool larger than a core's cache, as a forward pass does), every round's times are
divided by that round's drift (the median over shapes of its time over the shape's median), and a shape's time is
the median over rounds, so a slow minute of a shared machine touches every shape alike instead of a few. An
intermediate size range wider than :data:`MAX_WIDTHS` values is timed on a grid of that many widths and interpolated
linearly between them.

An arch's prediction is the sum of its ops (per layer, so per-layer spaces are summed layer by layer; a block's ops
times the in-model factor of the arch's embed dim, where the table has probes), each op class
(:data:`CLASSES`: the projections, attention without and with grouped kv heads, the MLP, the rest) with a factor of
its own, plus ``n_layers x`` a per-layer overhead plus a constant, all fitted by non-negative least squares against
measured latencies (:func:`fit`), else factors of 1 and zero overhead. The overheads hold what the table does not
time (biases, residual bookkeeping, HF's mask and cache code, Python dispatch); the factors what timing an op alone
gets wrong, which differs by kind of op (HF's layers add their own reshapes, casts and dispatch; SDPA's grouped
path costs another share inside the model than alone).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nasbench.errors import NasBenchError, check_choice
from nasbench.families import Family
from nasbench.families import family as family_named
from nasbench.space import SearchSpace

__all__ = ["PHASES", "METRIC_PHASES", "MAX_WIDTHS", "CLASSES", "PROBE_LAYERS", "OpTable", "space_ops", "probe_ops",
           "arch_ops", "measure_ops", "in_model_factor", "class_sums", "predict", "fit", "save_table", "load_table"]

#: The two latencies a table predicts: a prefill of ``seq_len`` tokens, and one decode step (ms per token).
PHASES = ("prefill", "decode")
#: The measured metric each phase predicts (as :mod:`nasbench.store.readings` names them: ``latency_ms`` is the
#: drift-cancelled prefill, ``latency_wall_ms`` its wall clock; ``decode_ms_per_token`` and
#: ``decode_wall_ms_per_token`` the same for decode); a ratio (``latency_rel``, ``decode_rel``) is read as
#: milliseconds, times its reference's median, which is what the drift-cancelled metric holds.
METRIC_PHASES = {"latency_ms": "prefill", "latency_wall_ms": "prefill", "latency_rel": "prefill",
                 "decode_ms_per_token": "decode", "decode_wall_ms_per_token": "decode", "decode_rel": "decode"}
#: The pool the projections' and MLPs' weights are drawn from, call by call (:meth:`_Builder.rotating`): beyond a
#: core's L2 cache (a few MiB on today's CPUs), as a forward pass's weights are.
WEIGHT_POOL_BYTES = 64 * 2**20
#: The depths of the in-model probes (:func:`probe_ops`): their difference gives a block's time inside a model.
PROBE_LAYERS = (2, 12)
#: An ``int`` / ``log_int`` intermediate size with more values than this is timed on a grid of this many widths.
MAX_WIDTHS = 16
#: The op classes :func:`fit` scales separately, and the class of each op. Attention with fewer kv groups than
#: heads is a class of its own: SDPA then broadcasts k and v over the heads (``enable_gqa``), another code path
#: whose time alone misses its time inside the model by another factor (on the shipped benchmark the one-class fit
#: over-predicted the archs without grouping by 0.9% and under-predicted the grouped ones by 0.35%).
CLASSES = ("linear", "attention", "attention_gqa", "mlp", "other")
_CLASS = {"linear": "linear", "attention": "attention", "mlp": "mlp", "norm": "other", "embedding": "other",
          "head": "other"}


def _class_of(op: str, shape: tuple[int, ...]) -> str:
    if op == "attention" and shape[0] != shape[1]:  # (n_heads, n_kv_groups, head_size)
        return "attention_gqa"
    return _CLASS[op]


Op = tuple[str, tuple[int, ...]]
"""(op, shape): ``("linear", (576, 192))``, ``("attention", (9, 3, 64))``, ..."""


@dataclass(frozen=True)
class OpTable:
    """The timed operator shapes of a space on one device, and the overhead fitted on top of them."""

    space: str
    family: str
    """The model family (:mod:`nasbench.families`): which ops make up a block."""
    device: str
    dtype: str
    threads: int
    """Torch threads while timing (``torch.get_num_threads()``)."""
    cpu: str
    """CPU model (:func:`nasbench.precision.machine`)."""
    cpu_flags: str
    gpu: str
    """The GPU's name on a CUDA device, else ``''``."""
    seq_len: int
    """Prefill tokens (batch 1)."""
    context: int
    """KV-cache length a decode step attends to."""
    vocab_size: int
    rounds: int
    ms: Mapping[tuple[str, str, tuple[int, ...]], float]
    """(phase, op, shape) -> median milliseconds of one call over the rounds."""
    spread: Mapping[tuple[str, str, tuple[int, ...]], float] = field(default_factory=dict)
    """(phase, op, shape) -> interquartile range of the rounds, ms."""
    overhead: Mapping[str, tuple[float, float]] = field(default_factory=lambda: {p: (0.0, 0.0) for p in PHASES})
    """phase -> (ms per layer, constant ms), fitted by :func:`fit` (zero until then)."""
    fitted_n: Mapping[str, int] = field(default_factory=dict)
    """phase -> how many measured archs its overhead was fitted on."""
    scale: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {p: {c: 1.0 for c in CLASSES} for p in PHASES})
    """phase -> op class (:data:`CLASSES`) -> the factor on that class's op times, fitted by :func:`fit` with the
    overhead (1 until then): ops timed one at a time run faster or slower than inside a whole forward pass (caches
    warm or cold, dispatch), and a table timed on one day is fitted to latencies measured on another."""

    @property
    def hardware(self) -> str:
        """What the timings belong to: the GPU on a CUDA device, else the CPU model."""
        return self.gpu or self.cpu


# ------------------------------------------------------------------------------------------------ which ops
def _widths(space: SearchSpace, name: str) -> list[int]:
    """The widths of ``name`` to time: every value, or a grid of :data:`MAX_WIDTHS` for a wide intermediate size."""
    dim = space.dimensions[name]
    if name != "intermediate_size" or dim.kind not in ("int", "log_int") or dim.count() <= MAX_WIDTHS:
        return dim.candidates()
    spaced = np.geomspace if dim.kind == "log_int" else np.linspace
    return sorted({int(round(v)) for v in spaced(dim.low, dim.high, MAX_WIDTHS)} | {dim.low, dim.high})


def _head_combos(space: SearchSpace) -> list[tuple[int, int, int, int]]:
    """Every (embed_dim, n_heads, n_kv_groups, head_size) one block of the space may have (the family's rules)."""
    f, ref = space.model_family, space.reference
    names = ("embed_dim", "n_heads", "n_kv_groups", "head_size")
    grid = np.array(list(itertools.product(*(space.dimensions[n].candidates() for n in names))), dtype=np.int64)
    cols = {n: grid[:, k] for k, n in enumerate(names)}
    if f.kv_follows_heads:
        cols["n_kv_groups"] = cols["n_heads"]
    ok = cols["n_heads"] % cols["n_kv_groups"] == 0
    for rule in f.head_rules(ref):
        ok &= np.asarray(rule.holds(cols, ref), dtype=bool)
    rows = np.stack([cols[n] for n in names], axis=1)[ok]
    return sorted({tuple(int(v) for v in row) for row in rows})


def _block_ops(f: Family, e: int, h: int, g: int, d: int, i: int) -> list[Op]:
    """The ops of one block, with repeats (two norms; k and v share a shape)."""
    qkv = [("linear", (e, 3 * h * d))] if f.modules.fused_qkv else [
        ("linear", (e, h * d)), ("linear", (e, g * d)), ("linear", (e, g * d))]
    return [("norm", (e,)), *qkv, ("attention", (h, g, d)), ("linear", (h * d, e)), ("norm", (e,)),
            ("mlp", (e, i))]


def space_ops(space: SearchSpace) -> list[Op]:
    """Every op shape an arch of ``space`` can need (each timed once per phase), sorted."""
    f = space.model_family
    ops: set[Op] = set()
    combos = _head_combos(space)
    if not combos:
        raise NasBenchError("space", f"{space.name}: no (embed_dim, n_heads, n_kv_groups, head_size) meets the "
                                     f"family's rules", space.name)
    inner = _widths(space, "intermediate_size")
    for e, h, g, d in combos:
        ops.update(op for op in _block_ops(f, e, h, g, d, inner[0]) if op[0] != "mlp")
    for e in space.dimensions["embed_dim"].candidates():
        ops.update({("norm", (e,)), ("embedding", (e,)), ("head", (e,))})
        ops.update(("mlp", (e, i)) for i in inner)
    return sorted(ops)


def probe_ops(space: SearchSpace) -> list[Op]:
    """The in-model probes of ``space``: per embed dim, whole models of the two depths of :data:`PROBE_LAYERS` whose
    blocks have the (n_heads, n_kv_groups, head_size) of that embed dim with the median attention width and the
    median timed intermediate size, as ``("model", (e, h, g, d, i, layers))``."""
    combos = _head_combos(space)
    inner = _widths(space, "intermediate_size")
    i = inner[len(inner) // 2]
    out = []
    for e in space.dimensions["embed_dim"].candidates():
        mine = sorted((h * d, h, g, d) for e2, h, g, d in combos if e2 == e)
        if not mine:
            continue
        _, h, g, d = mine[len(mine) // 2]
        out += [("model", (e, h, g, d, i, layers)) for layers in PROBE_LAYERS]
    return out


def arch_ops(family: str, arch: Mapping[str, Any]) -> Counter[Op]:
    """The ops of one arch and how often each runs in a forward pass: every block's (a per-layer dimension's value
    per layer), the embedding, the final norm and the head."""
    f = family_named(family, "family")
    layers = int(arch["n_layers"])
    per = {n: _per_layer(arch[n], layers, n) for n in ("n_heads", "n_kv_groups", "head_size", "intermediate_size")}
    e = _per_layer(arch["embed_dim"], layers, "embed_dim")[0]
    ops: Counter[Op] = Counter({("embedding", (e,)): 1, ("norm", (e,)): 1, ("head", (e,)): 1})
    for h, g, d, i in zip(per["n_heads"], per["n_kv_groups"], per["head_size"], per["intermediate_size"]):
        ops.update(_block_ops(f, e, int(h), int(h) if f.kv_follows_heads else int(g), int(d), int(i)))
    return ops


def _per_layer(value: Any, layers: int, name: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != layers:
            raise NasBenchError(f"arch.{name}", f"needs one value per layer ({layers})", list(value))
        return [int(v) for v in value]
    return [int(value)] * layers


# ------------------------------------------------------------------------------------------------ timing
def measure_ops(space: SearchSpace, *, rounds: int = 5, device: str = "cpu", dtype: str = "auto",
                seq_len: int = 128, context: int = 136, min_ms: float = 1.0, seed: int = 0) -> OpTable:
    """Time every op shape of ``space`` (:func:`space_ops`) in both phases on ``device`` in ``dtype``, interleaved
    over ``rounds`` shuffled rounds (see the module docstring). ``context``: the decode step's KV-cache length (136:
    the middle of the benchmark's 16-token decode after its 128-token prompt). ``dtype="auto"``: decided as
    ``profile`` decides it (:func:`nasbench.profile.resolve`). Uses the process's torch threads."""
    from nasbench.profile.latency import _timed
    from nasbench.precision import machine
    from nasbench.profile._measure import DTYPES, ProfileConfig, resolve

    for name, value in (("rounds", rounds), ("seq_len", seq_len), ("context", context)):
        if value < 1:
            raise NasBenchError(name, "must be >= 1", value)
    where = _device(device)
    check_choice("dtype", dtype, ("auto", *DTYPES))
    dtype = resolve(ProfileConfig(n=0, metrics=("latency",), device=device, dtype=dtype)).dtype
    torch_dtype = DTYPES[dtype]
    f = space.model_family
    builder = _Builder(f, where, torch_dtype, space.reference.vocab_size, context, space.reference.tied_head)
    calls: dict[tuple[str, str, tuple[int, ...]], tuple[Callable[[], Any], int]] = {}
    with torch.inference_mode():
        for phase, (op, shape) in itertools.product(PHASES, space_ops(space) + probe_ops(space)):
            fn = builder.build(op, shape, seq_len if phase == "prefill" else 1, phase)
            fn()  # warm-up: kernels chosen, lazy allocations made
            once = _timed(where, fn)
            calls[(phase, op, shape)] = fn, max(1, min(1000, math.ceil(min_ms / max(once, 1e-4))))
        times: dict[tuple[str, str, tuple[int, ...]], list[float]] = {key: [] for key in calls}
        order, rng = list(calls), random.Random(seed)
        for _ in range(rounds):
            rng.shuffle(order)
            for key in order:
                fn, n = calls[key]
                times[key].append(_timed(where, lambda fn=fn, n=n: [fn() for _ in range(n)]) / n)
    times = _drift_cancelled(times)
    info = machine()
    return OpTable(space=space.name, family=f.name, device=device, dtype=dtype, threads=torch.get_num_threads(),
                   cpu=info["cpu"], cpu_flags=info["cpu_flags"],
                   gpu=torch.cuda.get_device_name(where) if where.type == "cuda" else "", seq_len=seq_len,
                   context=context, vocab_size=space.reference.vocab_size, rounds=rounds,
                   ms={k: statistics.median(v) for k, v in times.items()},
                   spread={k: _iqr(v) for k, v in times.items()})


def _drift_cancelled(times: Mapping[Any, Sequence[float]]) -> dict[Any, list[float]]:
    """Every round's times divided by that round's drift: the median over all shapes of the round's time over the
    shape's median. A round lasts seconds, the machine's speed drifts over minutes, so a whole round runs fast or
    slow alike; without this a shape's median still carries the drift of the rounds that happened to time it fast
    or slow, on top of the visits' own noise (an interquartile range of about 10% of a prefill visit on a 2-core
    Xeon, which only more rounds shrink)."""
    keys = list(times)
    rounds = min((len(times[k]) for k in keys), default=0)
    if rounds < 2:
        return {k: list(v) for k, v in times.items()}
    raw = np.array([times[k][:rounds] for k in keys], dtype=np.float64)
    drift = np.median(raw / np.median(raw, axis=1, keepdims=True), axis=0)
    return {k: list(row) for k, row in zip(keys, raw / drift)}


def _device(device: str) -> torch.device:
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError):
        where = None
    if where is None or where.type not in ("cpu", "cuda") or (where.type == "cuda" and not torch.cuda.is_available()):
        raise NasBenchError("device", "must be cpu or an available CUDA device (cuda, cuda:N)", device)
    return where


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


class _Builder:
    """Each op as a closure over its own inputs; weights of one shape are shared by both phases."""

    def __init__(self, f: Family, device: torch.device, dtype: torch.dtype, vocab: int, context: int,
                 tied: bool = True) -> None:
        self.f, self.device, self.dtype, self.vocab, self.context, self.tied = f, device, dtype, vocab, context, tied
        self.generator = torch.Generator().manual_seed(0)
        self.weights: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        self.pool: torch.Tensor | None = None
        self.models: dict[tuple[int, ...], Any] = {}

    def tensor(self, *shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.generator) * 0.02).to(self.device, self.dtype)

    def rotating(self, *shape: int) -> Callable[[], torch.Tensor]:
        """Weights of ``shape`` that change from call to call: views at successive offsets of one shared pool of
        :data:`WEIGHT_POOL_BYTES`, so a timed call reads its weights from beyond the core's cache as a forward pass
        does (every layer's weights are its own), not from the cache the previous call left them in."""
        if self.pool is None:
            self.pool = self.tensor(WEIGHT_POOL_BYTES // torch.finfo(self.dtype).bits * 8)
        n, size = math.prod(shape), self.pool.element_size()
        # a weight larger than half the pool is larger than any cache too: one copy of its own is enough
        pool = self.pool if n <= self.pool.numel() // 2 else self.tensor(n)
        # enough views that one cycle through them reads 16 MiB (more than any L2), spread over the pool
        count = min(max(1, (pool.numel() - n) // n), max(8, math.ceil(16 * 2**20 / (n * size))))
        starts = np.linspace(0, pool.numel() - n, count).astype(np.int64) // 64 * 64
        views = [pool[o: o + n].view(*shape) for o in starts.tolist()]
        return itertools.cycle(views).__next__

    def weight(self, name: str, *shape: int) -> torch.Tensor:
        key = (name, shape)
        if key not in self.weights:
            self.weights[key] = self.tensor(*shape)
        return self.weights[key]

    def build(self, op: str, shape: tuple[int, ...], tokens: int, phase: str) -> Callable[[], Any]:
        if op == "linear":
            n_in, n_out = shape
            x, w = self.tensor(1, tokens, n_in), self.rotating(n_out, n_in)
            return lambda: F.linear(x, w())
        if op == "mlp":
            return self._mlp(*shape, tokens)
        if op == "attention":
            return self._attention(*shape, tokens, phase)
        if op == "norm":
            return self._norm(shape[0], tokens)
        if op == "embedding":
            ids = torch.randint(0, self.vocab, (1, tokens), generator=self.generator).to(self.device)
            table = self.weight("embedding", self.vocab, shape[0])
            return lambda: F.embedding(ids, table)
        if op == "head":
            x, w = self.tensor(1, tokens, shape[0]), self.weight("head", self.vocab, shape[0])
            return lambda: F.linear(x, w)
        if op == "model":
            return self._model(shape, tokens, phase)
        raise NasBenchError("op", "must be one of linear, mlp, attention, norm, embedding, head, model", op)

    def _model(self, shape: tuple[int, ...], tokens: int, phase: str) -> Callable[[], Any]:
        """A whole HF model of the family (random weights, the space's vocabulary), as the benchmark times one: a
        prefill of ``tokens``, or one decode step against a cache of ``context`` tokens, cut back after each step."""
        if shape not in self.models:
            e, h, g, d, i, layers = shape
            config = {**self.f.hf_config({"embed_dim": e, "n_layers": layers, "n_heads": h, "n_kv_groups": g,
                                          "head_size": d, "intermediate_size": i}),
                      "vocab_size": self.vocab, "tie_word_embeddings": self.tied}
            torch.manual_seed(0)
            self.models[shape] = self.f.hf_model(config).to(self.device, self.dtype).eval()
        model = self.models[shape]
        if phase == "prefill":
            ids = torch.randint(0, self.vocab, (1, tokens), generator=self.generator).to(self.device)
            return lambda: model(input_ids=ids, use_cache=False)
        prompt = torch.randint(0, self.vocab, (1, self.context), generator=self.generator).to(self.device)
        cache = model(input_ids=prompt, use_cache=True).past_key_values
        step = prompt[:, -1:]

        def run() -> Any:
            out = model(input_ids=step, past_key_values=cache, use_cache=True)
            cache.crop(-1)  # the step appended one token: the next call attends to the same length
            return out

        return run

    def _mlp(self, e: int, i: int, tokens: int) -> Callable[[], Any]:
        act = {"silu": F.silu, "gelu": F.gelu}[self.f.activation]
        x, up, down = self.tensor(1, tokens, e), self.rotating(i, e), self.rotating(e, i)
        if self.f.mlp_mats == 3:
            gate = self.rotating(i, e)
            return lambda: F.linear(act(F.linear(x, gate())) * F.linear(x, up()), down())
        return lambda: F.linear(act(F.linear(x, up())), down())

    def _norm(self, e: int, tokens: int) -> Callable[[], Any]:
        x, residual, w = self.tensor(1, tokens, e), self.tensor(1, tokens, e), self.weight("norm", e)
        if self.f.norm == "layernorm":
            b = self.weight("norm_bias", e)
            return lambda: F.layer_norm(x + residual, (e,), w, b)

        def rms() -> torch.Tensor:  # HF's RMSNorm: in float32, back to the input's dtype, then the weight
            h = (x + residual).float()
            return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)

        return rms

    def _attention(self, h: int, g: int, d: int, tokens: int, phase: str) -> Callable[[], Any]:
        q, k, v = self.tensor(1, tokens, h * d), self.tensor(1, tokens, g * d), self.tensor(1, tokens, g * d)
        angles = torch.arange(tokens)[:, None] * torch.ones(d)[None, :] * 1e-2
        cos, sin = angles.cos().to(self.device, self.dtype), angles.sin().to(self.device, self.dtype)
        cache = [self.tensor(1, g, self.context, d) for _ in range(2)] if phase == "decode" else None
        gqa = h != g

        def rotate(x: torch.Tensor) -> torch.Tensor:
            half = x.shape[-1] // 2
            return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

        def run() -> torch.Tensor:
            qh = rotate(q.view(1, tokens, h, d).transpose(1, 2))
            kh = rotate(k.view(1, tokens, g, d).transpose(1, 2))
            vh = v.view(1, tokens, g, d).transpose(1, 2)
            if cache is None:
                out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, enable_gqa=gqa)
            else:
                kh, vh = torch.cat((cache[0], kh), dim=2), torch.cat((cache[1], vh), dim=2)
                out = F.scaled_dot_product_attention(qh, kh, vh, enable_gqa=gqa)
            return out.transpose(1, 2).reshape(1, tokens, h * d)

        return run


# ------------------------------------------------------------------------------------------------ prediction
def _lookup(table: OpTable, phase: str, op: str, shape: tuple[int, ...]) -> float:
    """The op's time; between two timed widths of its last dimension (an intermediate size grid), interpolated."""
    found = table.ms.get((phase, op, shape))
    if found is not None:
        return found
    near = sorted((s[-1], ms) for (p, o, s), ms in table.ms.items() if p == phase and o == op and s[:-1] == shape[:-1])
    if len(near) < 2 or not near[0][0] <= shape[-1] <= near[-1][0]:
        raise NasBenchError("archs", f"need op shapes the table of space {table.space} lacks (an arch of another "
                                     f"space?)", f"{phase} {op} {shape}")
    widths, values = zip(*near)
    return float(np.interp(shape[-1], widths, values))


def in_model_factor(table: OpTable, phase: str, embed_dim: int) -> float:
    """A block's time inside a whole model over the sum of its ops timed alone, at ``embed_dim``: the per-layer time
    of the table's two probes of that embed dim (their difference over their depths' difference) over the sum of the
    probe block's op times. 1 where the table has no probes (one timed before they existed)."""
    probes = sorted((shape[-1], ms) for (p, op, shape), ms in table.ms.items()
                    if p == phase and op == "model" and shape[0] == embed_dim)
    if len(probes) < 2:
        return 1.0
    (shallow, t_shallow), (deep, t_deep) = probes[0], probes[-1]
    e, h, g, d, i, _ = next(shape for (p, op, shape) in table.ms if p == phase and op == "model"
                            and shape[0] == embed_dim)
    f = family_named(table.family, "family")
    block = sum(count * _lookup(table, phase, *op) for op, count in Counter(_block_ops(f, e, h, g, d, i)).items())
    return (t_deep - t_shallow) / (deep - shallow) / block


def class_sums(table: OpTable, archs: Sequence[Mapping[str, Any]], phase: str) -> np.ndarray:
    """Per arch and op class (:data:`CLASSES`), the sum of its op times (no overhead), a block's ops times the
    in-model factor of the arch's embed dim: ``(archs, classes)``."""
    check_choice("phase", phase, PHASES)
    cost: dict[Op, float] = {}
    factor: dict[int, float] = {}
    out = np.zeros((len(archs), len(CLASSES)))
    for k, arch in enumerate(archs):
        e = _per_layer(arch["embed_dim"], int(arch["n_layers"]), "embed_dim")[0]
        if e not in factor:
            factor[e] = in_model_factor(table, phase, e)
        stem = {("embedding", (e,)): 1, ("norm", (e,)): 1, ("head", (e,)): 1}  # outside the blocks
        for op, count in arch_ops(table.family, arch).items():
            if op not in cost:
                cost[op] = _lookup(table, phase, *op)
            outside = stem.get(op, 0)
            out[k, CLASSES.index(_class_of(*op))] += ((count - outside) * factor[e] + outside) * cost[op]
    return out


def _layers(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([int(a["n_layers"]) for a in archs], dtype=np.float64)


def _factors(table: OpTable, phase: str) -> np.ndarray:
    scale = table.scale.get(phase, {})
    return np.array([scale.get(c, 1.0) for c in CLASSES])


def predict(table: OpTable, archs: Sequence[Mapping[str, Any]], phase: str = "prefill",
            sums: np.ndarray | None = None) -> np.ndarray:
    """Predicted milliseconds of each arch (canonical arch dicts of the table's space): the sum of its ops, each op
    class times its fitted factor, plus ``n_layers x`` the per-layer overhead and the constant of ``phase``.
    ``sums``: the archs' :func:`class_sums`, when already computed."""
    per_layer, constant = table.overhead.get(phase, (0.0, 0.0))
    sums = class_sums(table, archs, phase) if sums is None else sums
    return sums @ _factors(table, phase) + per_layer * _layers(archs) + constant


def fit(table: OpTable, archs: Sequence[Mapping[str, Any]], measured: Iterable[float],
        phase: str = "prefill", sums: np.ndarray | None = None) -> OpTable:
    """``table`` with the factor of each op class, the per-layer overhead and the constant of ``phase`` fitted by
    non-negative least squares to the ``measured`` milliseconds of ``archs``. Where the archs cannot tell the
    classes apart (their sums are collinear with each other or the overheads, e.g. a space of one shape per
    class), one factor is fitted for all of them. A class none of the archs has (no grouped kv heads in the space)
    keeps its factor. ``sums``: the archs' :func:`class_sums`, when already computed."""
    from scipy.optimize import nnls

    y = np.asarray(list(measured), dtype=np.float64)
    if len(y) != len(archs) or len(y) < 2:
        raise NasBenchError("measured", f"needs one value per arch and >= 2 archs ({len(archs)} archs)", len(y))
    if not np.all(np.isfinite(y) & (y > 0)):
        raise NasBenchError("measured", "must be finite milliseconds > 0", y[~(np.isfinite(y) & (y > 0))][0])
    sums = class_sums(table, archs, phase) if sums is None else sums
    rest = np.stack([_layers(archs), np.ones(len(y))], axis=1)
    present = sums.any(axis=0)
    design = np.concatenate([sums[:, present], rest], axis=1)
    if np.linalg.matrix_rank(design) == design.shape[1]:
        coef, _ = nnls(design, y)
        factors, (per_layer, constant) = _factors(table, phase), coef[-2:]
        factors[present] = coef[:-2]
    else:
        (one, per_layer, constant), _ = nnls(np.concatenate([sums.sum(axis=1, keepdims=True), rest], axis=1), y)
        factors = np.full(len(CLASSES), one)
    return dataclasses.replace(table, overhead={**table.overhead, phase: (float(per_layer), float(constant))},
                               scale={**table.scale, phase: {c: float(v) for c, v in zip(CLASSES, factors)}},
                               fitted_n={**table.fitted_n, phase: len(y)})


# ------------------------------------------------------------------------------------------------ the DB
def save_table(table: OpTable, db: str | Path) -> None:
    """Store ``table`` in ``db`` (replacing the model of the same space, device, hardware, dtype and threads)."""
    from nasbench.store import Store

    model = {name: getattr(table, name) for name in ("space", "device", "hardware", "dtype", "threads", "family",
                                                     "cpu", "cpu_flags", "gpu", "seq_len", "context", "vocab_size",
                                                     "rounds")}
    # per phase [ms per layer, constant ms, {op class: factor}]
    model.update(overhead={p: [*v, dict(table.scale.get(p, {}))] for p, v in table.overhead.items()},
                 fitted_n=dict(table.fitted_n),
                 software={"torch": torch.__version__})
    ops = [(phase, op, "x".join(map(str, shape)), ms, table.spread.get((phase, op, shape)))
           for (phase, op, shape), ms in sorted(table.ms.items())]
    with Store(db) as store:
        store.add_latency_model(model, ops)


def load_table(db: str | Path, space: str, device: str = "cpu", dtype: str | None = None) -> OpTable:
    """The latest table of ``space`` measured on ``device`` (in ``dtype`` when given) stored in ``db``."""
    from nasbench.store.latency import read_latency_model

    found = read_latency_model(db, space, device, dtype)
    if found is None:
        raise NasBenchError("db", f"holds no latency model of space {space!r} on {device}"
                                  f"{'' if dtype is None else ' in ' + dtype}: measure one first", str(db))
    model, rows = found
    ms = {(p, op, tuple(int(v) for v in shape.split("x"))): value for p, op, shape, value, _ in rows}
    spread = {(p, op, tuple(int(v) for v in shape.split("x"))): s for p, op, shape, _, s in rows if s is not None}
    return OpTable(**{k: model[k] for k in ("space", "family", "device", "dtype", "threads", "cpu", "cpu_flags", "gpu",
                                            "seq_len", "context", "vocab_size", "rounds")},
                   ms=ms, spread=spread, overhead={p: (float(v[0]), float(v[1])) for p, v in model["overhead"].items()},
                   scale={p: _stored_factors(v) for p, v in model["overhead"].items()},
                   fitted_n={p: int(n) for p, n in model["fitted_n"].items()})


def _stored_factors(stored: Sequence[Any]) -> dict[str, float]:
    """The op classes' factors of a stored phase: ``{class: factor}`` (a table fitted before grouped attention had a
    class of its own: its attention factor for both), or one factor for every class (a table fitted before the
    classes had factors of their own), or none (1)."""
    if len(stored) < 3:
        return {c: 1.0 for c in CLASSES}
    if isinstance(stored[2], Mapping):
        given = {"attention_gqa": stored[2].get("attention", 1.0), **stored[2]}
        return {c: float(given.get(c, 1.0)) for c in CLASSES}
    return {c: float(stored[2]) for c in CLASSES}
