"""Build one baseline model (or one per arch of a band) and store its full row set, resumably.

Each baseline is one row set of the benchmark under its own supernet id ``baseline-<method id>``, with the method
and its config in ``supernets``:

- ``magnitude-2:4``, ``wanda-2:4``, ``sparsegpt-2:4`` (``baseline-wanda-2:4``; ``+<id>`` appended when ``supernet``
  names other weights): the space's full arch with 2:4 masks; the store lists it in ``baseline_archs`` (a
  baseline's arch of the space, apart from the space's own ``architectures``).
- ``slicegpt`` (``baseline-slicegpt-20``): not an arch of the space; its rows carry the arch_id of its own encoding
  (:func:`nasbench.baselines.slicegpt.sliced_arch`, in each row's ``extra.arch`` and the supernet's config) and stay
  out of ``architectures``.
- ``sliced`` (``baseline-sliced-50``): one-shot structured pruning, the importance-sorted pretrained model (the order
  of ``supernet``: an artifact's, its trained delta *not* applied, or a ``nasbench importance`` directory's) cut to
  each arch of the target's band and extracted as a dense model; no training.
- ``sliced-recovered`` (``baseline-sliced-recovered-50``): the same, each model then distilled alone for ``tokens``
  training tokens (:func:`nasbench.train.recover_arch`); every row says ``extra.train_tokens``.
- ``dsa`` (``baseline-dsa-50``): each band arch re-allocated layer by layer, ``(alpha, beta)`` searched on calibration
  perplexity within the band (:mod:`nasbench.baselines.dsa`), the winner cut from the same sorted model as a dense
  per-layer model, no training. Its rows carry the chosen arch's id (the band arch's own when the uniform allocation
  won; otherwise a per-layer arch, in ``extra.arch``, out of ``architectures``) and ``extra.band_arch_id``; the
  ``params`` rows and the supernets row's ``config.search`` hold every tried combo (widths, params, calibration ppl).

The row set per model (measured as ``nasbench profile`` measures, with the profile package's functions, under one
:class:`~nasbench.profile.ProfileConfig`): ``params`` (every stored parameter entry, zeros included: the
dense size a 2:4 model keeps on disk and in memory), ``params_nonzero`` (non-zero entries: what a sparse kernel could
skip; equal to ``params`` for every structured method), ``ppl``, lm-eval ``acc`` per task, ``latency_ms`` (prefill
``latency_batch x latency_seq_len``) and ``decode_ms_per_token`` with ``decode_tokens`` > 0, ``memory_mb`` (weights +
measured prefill peak), ``weights_mb``, ``kv_bytes_per_token``. Latency is of the model as it runs: 2:4 masks run on
dense kernels (no speed-up on a CPU), and every such row says so in ``extra.note``.

Resumable per (arch, supernet id, metric, task, device): what is stored is skipped, nothing is pruned, trained or
searched for a model whose rows are all stored, and each metric group is committed as soon as it is measured (a
``dsa`` model with some rows stored is rebuilt from the arch they name, without searching again).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from nasbench.baselines._config import _DTYPES, BAND_TOLERANCE, BaselineConfig
from nasbench.baselines.build import Builder
from nasbench.baselines.dsa import TOLERANCE
from nasbench.baselines.measure import measure_group
from nasbench.baselines.methods import SLICED
from nasbench.errors import NasBenchError
from nasbench.profile.config import ProfileConfig
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.ref import SupernetRef

if TYPE_CHECKING:  # the store (duckdb) loads on first use: the CLI's parser reads METHODS without it
    from nasbench.store import Store

__all__ = ["BaselineSummary", "baseline_id", "run_baseline", "check_band"]

#: The groups whose rows depend on a model's shapes only, not on its weights (a recovered model's parameter count is
#: its pruned shape's: the distillation merges its adapters back).
_SHAPE_ONLY = ("params", "latency", "latency_rel", "memory")
#: Stored metric -> the group that measures it.
_GROUP = {"params": "params", "params_nonzero": "params", "ppl": "ppl", "latency_ms": "latency",
          "decode_ms_per_token": "latency", "latency_rel": "latency_rel", "decode_rel": "latency_rel",
          "memory_mb": "memory", "weights_mb": "memory", "kv_bytes_per_token": "memory"}


@dataclass
class BaselineSummary:
    supernet_id: str
    arch_id: str
    """The (first) model's arch_id."""
    params: int
    """Dense parameter count of the (first) baseline model."""
    rows: int
    """New measurement rows."""
    seconds: float
    values: dict[str, float]
    """This run's new values of the first model by stored metric name (``acc_<task>`` for accuracies)."""
    models: int = 1
    """Models (archs) of this baseline; ``trained``: how many needed building in this run."""
    built: int = 0


def baseline_id(config: BaselineConfig, weights_id: str = "pretrained") -> str:
    """``baseline-<method id>``, plus ``+<weights_id>`` for a pruning method applied to weights other than the
    pretrained base model (the sliced methods always use the pretrained weights, in the order of ``supernet``)."""
    own = weights_id == "pretrained" or config.method in SLICED
    return f"baseline-{config.method_id}" + ("" if own else f"+{weights_id}")


def check_band(space: SearchSpace, archs: Sequence[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """The archs canonical, each within :data:`BAND_TOLERANCE` of ``target`` x the full model's params."""
    full = space.params(space.largest())
    out = []
    for i, arch in enumerate(archs):
        canon = space.check(arch, f"archs[{i}]")
        share = space.params(canon) / full
        if abs(share - target) > BAND_TOLERANCE:
            raise NasBenchError(f"archs[{i}]", f"holds {share:.1%} of the full params, not within "
                                               f"{BAND_TOLERANCE:.0%} of the target {target:.0%}", arch_id(canon))
        out.append(canon)
    return out


def _full_arch(space: SearchSpace) -> dict[str, Any]:
    """The space's reference model as an arch of the space (what a 2:4 model keeps)."""
    ref = space.reference
    arch = space.largest()
    for name in ("embed_dim", "n_layers", "n_heads", "head_size", "n_kv_groups", "intermediate_size"):
        values = arch[name] if isinstance(arch[name], list) else [arch[name]]
        if any(v != getattr(ref, name) for v in values):
            raise NasBenchError(f"{space.path}:dimensions.{name}", "the 2:4 baselines keep the whole model: the "
                                "space's largest arch must be its reference model", arch[name])
    return arch


def _resolved(protocol: ProfileConfig) -> ProfileConfig:
    """``dtype="auto"`` made concrete as ``nasbench profile`` does (bfloat16 where its matmuls are fast)."""
    from nasbench.profile import resolve

    return resolve(protocol)


def _wanted(protocol: ProfileConfig) -> list[tuple[str, str]]:
    """(stored metric, task) pairs of one model's row set."""
    from nasbench.profile.accuracy import PRIMARY_METRIC

    out = [("params", ""), ("params_nonzero", "")]
    for group in protocol.metrics:
        if group == "acc":
            out += [(PRIMARY_METRIC[t], t) for t in protocol.tasks]
        elif group == "latency":
            out += [("latency_ms", "")] + ([("decode_ms_per_token", "")] if protocol.decode_tokens else [])
        elif group == "latency_rel":
            out += [("latency_rel", "")] + ([("decode_rel", "")] if protocol.decode_tokens else [])
        elif group == "memory":
            out += [("memory_mb", ""), ("weights_mb", ""), ("kv_bytes_per_token", "")]
        else:
            out.append((group, ""))
    return out


def _units(space: SearchSpace, config: BaselineConfig) -> list[tuple[dict[str, Any], bool]]:
    """(arch, is an arch of the space) of every model of the baseline."""
    from nasbench.baselines.slicegpt import sliced_arch

    if config.method == "slicegpt":
        return [(sliced_arch(space.reference, config.slicing), False)]
    if config.method in SLICED:
        return [(a, True) for a in check_band(space, config.archs, float(config.target))]
    return [(_full_arch(space), True)]


def run_baseline(space: SearchSpace, db: str | Path, config: BaselineConfig, *,
                 supernet: SupernetRef | str | None = None, data_dir: Path | None = None, progress: bool = True,
                 work_dir: str | Path | None = None, recover: Callable[..., Any] | None = None,
                 recover_model: Callable[..., Any] | None = None) -> BaselineSummary:
    """Build what is missing, measure it and store it; see the module docstring.

    ``supernet``: the weights to prune (2:4, SliceGPT; None: the base model), or the importance order to cut
    (``sliced`` methods: an artifact or a ``nasbench importance`` directory; required). ``work_dir``: where
    ``sliced-recovered`` keeps each trained model until all its rows are stored (default: a temporary directory, lost
    with the process). ``recover``: how ``sliced-recovered`` trains each model, the training stage's
    :func:`nasbench.train.recover_arch` (a baseline composes the stages: it builds and measures, training trains);
    ``recover_model``: how a SliceGPT or DSA baseline with ``tokens`` distils each model,
    :func:`nasbench.train.recover_model`.
    """
    start = time.perf_counter()
    supernet = SupernetRef.resolve(supernet)
    if config.method in SLICED and supernet.kind == "pretrained":
        raise NasBenchError("supernet", f"{config.method} cuts the importance-sorted model: name a packed "
                                        "supernet (results/supernets/<id>, its order only) or a `nasbench "
                                        "importance` directory", None, show_got=False)
    supernet.require_weights()
    if config.method == "sliced-recovered" and recover is None:
        raise NasBenchError("recover", "sliced-recovered distils each model alone: pass the training stage's "
                                       "nasbench.train.recover_arch", None, show_got=False)
    if config.tokens and config.method != "sliced-recovered" and recover_model is None:
        raise NasBenchError("recover_model", f"{config.method_id} distils each pruned model: pass the training "
                                             "stage's nasbench.train.recover_model", None, show_got=False)
    weights_id = supernet.id
    sid = baseline_id(config, weights_id)
    wanted = _wanted(config.protocol)
    device = config.protocol.device
    from nasbench.store import Measurement, Store

    units = [(arch, arch_id(arch), in_space, None) for arch, in_space in _units(space, config)]
    with Store(db) as store:
        _check_same_build(store, sid, config, weights_id)
        reused = None  # the untrained dsa baseline whose stored search this recovered one's models reuse
        if config.method == "dsa":  # a band arch's rows are under the arch its search chose: find it, if stored
            chosen = _dsa_choices(store, space, sid, units)
            untrained = baseline_id(dataclasses.replace(config, tokens=0), weights_id)
            if config.recovered and _same_search(store, untrained, config):
                # the search runs on the pretrained model before any training: the untrained dsa baseline's is this
                # one's (the same grid and calibration), so its choices are reused instead of searched again
                chosen = _dsa_choices(store, space, untrained, units) | chosen
                reused = untrained
            units = [chosen.get(unit[1], unit) for unit in units]
        since = config.protocol.remeasure_before  # a re-measurement: rows stored before it count as missing
        todo = [(*unit, _missing(store, space, sid, unit[1], wanted, device, since)) for unit in units]
        todo = [u for u in todo if u[4]]
        first = units[0]
        summary = BaselineSummary(sid, first[1], _stored_params(store, space, first[1], sid) or
                                  (space.params(first[0]) if first[2] else 0), 0, 0.0, {}, len(units), len(todo))
        if not todo:
            summary.seconds = time.perf_counter() - start
            return summary
        protocol = _resolved(config.protocol)
        builder = Builder(space, config, supernet, data_dir, progress, work_dir, sid, recover, recover_model)
        reference = None  # the full model that latency_rel is timed against, built at its first use
        from nasbench.profile._measure import _software

        software = _software(protocol.device)
        store.add_space(space)
        for arch, aid, in_space, stored, missing in todo:
            is_first = aid == first[1]
            # only shape-given rows missing (latency, memory: e.g. re-timing every model in one pass): a recovered
            # model is measured untrained, as its latency does not depend on its weights
            train = not all(_GROUP.get(m) in _SHAPE_ONLY for m, _ in missing)
            model, tokenizer, build, (arch, aid, in_space) = builder.model(arch, aid, stored, train=train)
            if stored is None and config.method == "dsa":  # searched now: the chosen arch's rows decide what is left
                missing = _missing(store, space, sid, aid, wanted, device, since)
            search = build.pop("search", None)
            dense = int(sum(p.numel() for p in model.parameters()))
            if is_first:
                summary.arch_id, summary.params = aid, dense
            record = _record(config, weights_id, arch if len(units) == 1 else None, aid if len(units) == 1 else None,
                             dense if len(units) == 1 else None, builder.source)
            seconds = builder.seconds
            if config.method == "dsa":  # every band arch's search, this run's and the stored ones
                record["search"] = _stored_searches(store, sid) | builder.searches
                if reused is not None:  # the reused searches stay in their own baseline's record, named here
                    record["search_from"] = reused
                seconds = sum(s.get("seconds", 0.0) for s in record["search"].values())
            # a recovered baseline's run that trained nothing (shape-only rows) keeps the stored training time
            if not config.recovered or builder.trained or not store.has_supernet(sid):
                store.add_supernet(sid, space.name, space.model.source, strategy=config.method,
                                   tokens=config.tokens or _calib_tokens(config), wall_time_s=seconds,
                                   checkpoint=supernet.checkpoint, config=record)
            model = model.to(device=device, dtype=_DTYPES[protocol.dtype]).eval()
            extra = {"method": config.method_id, **({} if in_space else {"arch": arch}), **build}
            for group in ("params", "ppl", "acc", "latency", "latency_rel", "memory"):
                tasks = [t for m, t in missing if t]
                if not (tasks if group == "acc" else any(_GROUP.get(m) == group for m, t in missing if not t)):
                    continue
                if group == "latency_rel" and reference is None:  # the space's full model, as profile times against
                    from nasbench.supernet import Supernet

                    base = Supernet(SupernetRef.pretrained().load(space, _DTYPES[protocol.dtype]).model, space)
                    reference = base.extract(space.largest()).to(device).eval()
                rows = measure_group(group, model, tokenizer, space, config.method, protocol, data_dir, tasks,
                                     reference)
                new = [Measurement(**{k: v for k, v in r.items() if k != "extra"}, arch_id=aid, supernet_id=sid,
                                   software=software, extra={**r.get("extra", {}), **extra, **(
                                       {"search": search} if search is not None and r["metric"] == "params" else {})})
                       for r in rows]
                before = store.count_measurements(space.name)
                if in_space:
                    store.add_results(space, arch, new, replace=since is not None)
                else:
                    store.add_measurements(space.name, new, replace=since is not None)
                summary.rows += store.count_measurements(space.name) - before
                if is_first:
                    summary.values.update({m.metric + (f"_{m.task}" if m.task else ""): m.value for m in new})
            builder.done(aid)
            del model
    summary.seconds = time.perf_counter() - start
    return summary


def _missing(store: Store, space: SearchSpace, sid: str, aid: str, wanted: list[tuple[str, str]],
             device: str, since: str | None = None) -> list[tuple[str, str]]:
    """The (metric, task) pairs of ``wanted`` not stored for ``aid`` (params rows are device-free); with ``since``
    (``--remeasure-before``) a row of the asked metrics stored before it counts as missing (the params rows, which
    every run writes, are not re-measured)."""
    def stored(m: str, t: str) -> bool:
        if m.startswith("params"):
            return store.has_measurement(space.name, aid, sid, m, t, "")
        return store.has_measurement(space.name, aid, sid, m, t, device, **({} if since is None else {"since": since}))

    return [(m, t) for m, t in wanted if not stored(m, t)]


#: What every row of a ``dsa`` model says about its search (its ``params`` rows add every combo, ``search``).
_DSA_EXTRA = ("band_arch_id", "alpha", "beta", "calibration_ppl", "uniform_calibration_ppl")


def _dsa_choices(store: Store, space: SearchSpace, sid: str,
                 units: list[tuple[dict[str, Any], str, bool, Any]]) -> dict[str, tuple[dict[str, Any], str, bool,
                                                                                        dict[str, Any]]]:
    """``band arch_id -> (chosen arch, its arch_id, in the space, its rows' dsa extra)`` of the band archs whose
    search a stored row records (the rows of an interrupted model name the arch to rebuild)."""
    bands = {aid: arch for arch, aid, _, _ in units}
    rows = store.con.execute("SELECT arch_id, extra FROM measurements WHERE space = ? AND supernet_id = ? "
                             "ORDER BY created_at", [space.name, sid]).fetchall()
    out: dict[str, tuple[dict[str, Any], str, bool, dict[str, Any]]] = {}
    for aid, text in rows:
        extra = json.loads(text) if text else {}
        band = extra.get("band_arch_id")
        if band not in bands or band in out:
            continue
        info = {k: extra[k] for k in _DSA_EXTRA if k in extra}
        if "arch" in extra:  # a per-layer arch, out of the space
            out[band] = (extra["arch"], aid, False, info)
        else:  # a uniform allocation won (the band arch itself, unless every layer snapped alike to another width)
            row = store.con.execute("SELECT arch FROM baseline_archs WHERE space = ? AND arch_id = ? AND in_space "
                                    "LIMIT 1", [space.name, aid]).fetchone()
            out[band] = (bands[band] if row is None else json.loads(row[0]), aid, True, info)
    return out


def _same_search(store: Store, sid: str, config: BaselineConfig) -> bool:
    """``sid``'s stored dsa rows were searched on ``config``'s grid and calibration data."""
    row = store.con.execute("SELECT config FROM supernets WHERE id = ?", [sid]).fetchone()
    stored = json.loads(row[0]) if row is not None and row[0] else {}
    return (stored.get("alpha_grid"), stored.get("beta_grid"), stored.get("calibration_tokens"),
            stored.get("calibration_seq_len")) == (sorted(config.alpha), sorted(config.beta), _calib_tokens(config),
                                                   config.calibration_seq_len)


def _stored_searches(store: Store, sid: str) -> dict[str, Any]:
    row = store.con.execute("SELECT config FROM supernets WHERE id = ?", [sid]).fetchone()
    return (json.loads(row[0]).get("search") or {}) if row is not None and row[0] else {}


def _stored_params(store: Store, space: SearchSpace, aid: str, sid: str) -> int:
    row = store.con.execute("SELECT value FROM measurements WHERE space = ? AND arch_id = ? AND supernet_id = ? AND "
                            "metric = 'params'", [space.name, aid, sid]).fetchone()
    return 0 if row is None else int(row[0])


def _check_same_build(store: Store, sid: str, config: BaselineConfig, weights_id: str) -> None:
    """A resumed run must build as the stored rows were built: one calibration set, one budget, one order."""
    row = store.con.execute("SELECT config FROM supernets WHERE id = ?", [sid]).fetchone()
    if row is None or not row[0]:
        return
    stored = json.loads(row[0])
    checks = [("calibration_tokens", "calibration_tokens", _calib_tokens(config)),
              ("calibration_seq_len", "calibration_seq_len", config.calibration_seq_len)] if _calib_tokens(config) \
        else []
    if config.recovered:
        checks.append(("tokens_per_model", "tokens", config.tokens))
    if config.method in SLICED:
        checks.append(("order_from", "supernet", weights_id))
    if config.method == "dsa":  # another grid could have chosen other archs for the stored band archs
        checks += [("alpha_grid", "alpha", sorted(config.alpha)), ("beta_grid", "beta", sorted(config.beta))]
    for key, name, value in checks:
        if key in stored and stored[key] != value:
            raise NasBenchError(name, f"{sid} in this DB was built with {key} = {stored[key]}: use that value or "
                                      "another db", value)


def _calib_tokens(config: BaselineConfig) -> int:
    return config.calibration_tokens if config.method in ("wanda-2:4", "sparsegpt-2:4", "slicegpt", "dsa") else 0


_RECOVER_MODEL = ("nasbench.train.recover_model (recovery preset: LoRA on every linear layer + the norms, KL to the "
                  "frozen full model)")


def _record(config: BaselineConfig, weights_id: str, arch: dict[str, Any] | None, aid: str | None,
            params: int | None, source: dict[str, Any]) -> dict[str, Any]:
    """The supernets row's config: the method, its settings and (for a single model) what the model is."""
    out: dict[str, Any] = {"method": config.method_id, "implementation": "nasbench.baselines (own code)",
                           "protocol": {k: v for k, v in dataclasses.asdict(config.protocol).items()
                                        if k not in ("n", "seed", "grid_params", "archs", "shard", "deadline",
                                                     "endpoints")}, **source}
    if arch is not None:
        out |= {"arch": arch, "arch_id": aid, "params": params}
    if config.method in SLICED:
        out |= {"target": config.target, "order_from": weights_id, "weights": "pretrained",
                "archs": [arch_id(a) for a in config.archs]}
        if config.method == "sliced-recovered":
            out |= {"tokens_per_model": config.tokens, "recovery": "nasbench.train.recover_arch (recovery preset, "
                                                                   "one arch per model)"}
        elif config.tokens:
            out |= {"tokens_per_model": config.tokens, "recovery": _RECOVER_MODEL}
        if config.method == "dsa":
            out |= {"alpha_grid": sorted(config.alpha), "beta_grid": sorted(config.beta), "tolerance": TOLERANCE,
                    "calibration_tokens": _calib_tokens(config), "calibration_seq_len": config.calibration_seq_len,
                    "calibration_source": "data.calibration",
                    "allocation": "nasbench.baselines.allocation.allocate over the block importance of the kept "
                                  "layers: n_heads (llama) and intermediate_size per layer",
                    "selection": "lowest calibration perplexity among the combos within the band (ties: smaller "
                                 "beta)"}
        return out
    out |= {"weights": weights_id, "calibration_tokens": _calib_tokens(config),
            "calibration_seq_len": config.calibration_seq_len, "calibration_source": "data.calibration"}
    if config.method == "slicegpt":
        out |= {"slicing": config.slicing, "hidden_size": arch["embed_dim"] if arch else None}
        if config.tokens:
            out |= {"tokens_per_model": config.tokens, "recovery": _RECOVER_MODEL}
    else:
        out |= {"sparsity": "2:4", "pruned": "every nn.Linear of the decoder blocks (embedding and head dense)"}
    return out
