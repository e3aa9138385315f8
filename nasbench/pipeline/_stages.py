"""The stage runner of ``nasbench run``: importance -> train -> profile -> fit -> compare -> report.

Each stage calls the library function its verb calls (no subprocesses) and is recorded in the run directory's
manifest (:mod:`nasbench.pipeline.manifest`). A stage whose inputs are unchanged since it finished is skipped; once a
stage runs, every later one runs too (their inputs are its outputs). A stage interrupted by a kill runs again, and
the stages that resume by themselves continue where they stopped: ``train`` from its newest checkpoint, ``profile``
arch by arch (``nasbench build``), ``compare`` run by run, ``fit`` from the surrogate cache.

The supernet: ``--supernet`` (a packed artifact, a trained directory, the id of an artifact under
``results/supernets/`` or ``pretrained``), else the packed artifact of the same space (name and hash) trained on the
most tokens, else one trained here (``importance`` then ``train``). With a supernet, ``importance`` and ``train``
are recorded as ``artifact`` (the artifact carries the importance order and the trained delta) or ``not-needed``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nasbench.errors import NasBenchError
from nasbench.paths import files_digest
from nasbench.pipeline.manifest import RunManifest, code_version, digest
from nasbench.pipeline.presets import Preset, RunPaths
from nasbench.space import SearchSpace
from nasbench.supernet.ref import SupernetRef

__all__ = ["STAGES", "run_pipeline"]

STAGES = ("importance", "train", "profile", "fit", "compare", "report")


def _choose(space: SearchSpace, value: str | None, paths: RunPaths) -> SupernetRef | None:
    """``supernet`` as a reference with weights, or nothing: the space's packed artifact trained on the most tokens,
    else None (trained here)."""
    if value is None:
        return SupernetRef.find(space, paths.supernets)
    ref = SupernetRef.resolve(value, packed=paths.supernets)
    if ref.kind == "stored":
        raise NasBenchError("supernet", f"no such directory, and no packed supernet of that id under "
                                        f"{paths.supernets}/ (`pretrained`: the base model)", value)
    if ref.space is not None and ref.space[0] != space.name:
        raise NasBenchError("supernet", f"the artifact was trained on the space {ref.space[0]!r}, not "
                                        f"{space.name!r}", str(ref.path))
    if ref.kind != "pretrained" and not ref.fingerprint:
        raise NasBenchError("supernet", "neither a packed artifact (manifest.json) nor a trained supernet "
                                        "directory (*.safetensors)", str(ref.path))
    return ref


@dataclass
class _Run:
    space: SearchSpace
    preset: Preset
    paths: RunPaths
    supernet: SupernetRef | None
    """The weights to profile; None: trained here (``importance`` then ``train``)."""
    manifest: RunManifest
    data_dir: Path | None
    echo: Callable[[str], None]
    progress: bool
    keys: dict[str, str]
    """This call's input key per stage."""
    previous: dict[str, dict[str, Any]]
    """Each stage's record as the last call left it (before this call started it)."""

    def say(self, stage: str, text: str) -> None:
        self.echo(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: {text}")

    def outputs(self, stage: str) -> dict[str, Any]:
        return self.manifest.stage(stage).get("outputs", {})

    def data_digest(self, source: str) -> str:
        """The hash of a data source's files (or its HF ids when it is read online)."""
        from nasbench import data
        from nasbench.perplexity import WIKITEXT2_TEST

        src = self.space.data.get(source) or (WIKITEXT2_TEST if source == "perplexity" else None)
        if src is None:
            return "none"
        if self.data_dir is None:
            return "online:" + ",".join(src.hf)
        return files_digest(data.resolve(src, self.data_dir))

    def bands(self) -> dict[str, Path]:
        if not self.preset.bands:
            return {}
        found = sorted(self.paths.bands.glob(f"{self.space.name}-*.jsonl"))
        return {p.stem.rsplit("-", 1)[-1]: p for p in found if p.stem.rsplit("-", 1)[-1].isdigit()}

    def weights(self) -> SupernetRef:
        """The supernet to profile: the given one, or the one trained here."""
        if self.supernet is None:
            return SupernetRef.at(self.outputs("train")["supernet"])
        return self.supernet


# ------------------------------------------------------------------------------------------------------- inputs
def _inputs(run: _Run, stage: str) -> dict[str, Any]:
    p, common = run.preset, {"space": run.space.hash, "code": code_version(), "preset": run.preset.name}
    if stage in ("importance", "train") and run.supernet is not None:
        return {**common, "supernet": run.supernet.kind, "fingerprint": run.supernet.fingerprint}
    if stage == "importance":
        return {**common, "tokens": p.importance_tokens, "data": run.data_digest("calibration")}
    if stage == "train":
        from nasbench.train.config import make_config

        source = make_config(p.train_preset, **dict(p.train_options)).data_source
        return {**common, "train_preset": p.train_preset, "strategy": p.strategy, "kd": p.kd, "peft": p.peft,
                "steps": p.train_steps, "options": dict(p.train_options), "data": run.data_digest(source),
                "importance": run.keys["importance"]}
    if stage == "profile":
        return {**common, "protocol": _protocol(run), "train": run.keys["train"],
                "plan": {"total": p.total, "per_shard": p.per_shard, "grid": p.grid, "grid_bins": p.grid_bins,
                         "seed": p.seed, "bands": {k: files_digest([v]) for k, v in run.bands().items()}}}
    if stage == "fit":
        return {**common, "metrics": p.fit_metrics, "models": p.models, "profile": run.keys["profile"]}
    if stage == "compare":
        return {**common, "objectives": p.objectives, "methods": p.methods, "seeds": p.seeds,
                "max_evals": p.max_evals, "mode": p.mode, "ehvi_max_evals": p.ehvi_max_evals, "fit": run.keys["fit"]}
    return {**common, "compare": run.keys["compare"], "bands": sorted(run.bands())}


def _protocol(run: _Run) -> dict[str, Any]:
    """What decides the values a DB row holds: a DB never mixes two of these."""
    p = run.preset
    fingerprint = run.supernet.fingerprint if run.supernet is not None else run.keys["train"]
    return {"supernet": fingerprint, "metrics": p.metrics, "tasks": p.tasks, "limit_items": p.limit_items,
            "ppl_tokens": p.ppl_tokens, "seq_len": p.seq_len, "dtype": p.dtype, "decode_tokens": p.decode_tokens,
            "latency_repeats": p.latency_repeats, "data": run.data_digest("perplexity")}


# ------------------------------------------------------------------------------------------------------- stages
def _importance(run: _Run) -> tuple[str, dict[str, Any]]:
    if run.supernet is not None:
        return _not_needed(run, "importance", "carries the importance order")
    from nasbench.importance import sort_model

    out = run.paths.out / "sorted"
    run.say("importance", f"scoring heads, neurons, channels and layers on {run.preset.importance_tokens:,} "
                          f"calibration tokens -> {out}")
    importance = sort_model(run.space, out, tokens=run.preset.importance_tokens, data_dir=run.data_dir,
                            progress=run.progress)
    return "done", {"sorted": str(out), "tokens": importance.tokens, "layer_order": importance.layer_order()}


def _train(run: _Run) -> tuple[str, dict[str, Any]]:
    if run.supernet is not None:
        return _not_needed(run, "train", "is the trained supernet")
    from nasbench.train import train

    p, out = run.preset, run.paths.out / "train"
    if run.previous["train"].get("key") not in (None, run.keys["train"]) and out.exists():
        shutil.rmtree(out)  # trained on other inputs: this run's own directory, started afresh
    run.say("train", f"{p.strategy}, {p.kd} distillation, {p.peft}, preset {p.train_preset}, "
                     f"{p.train_steps or 'the preset'} steps -> {out} (resumes from its newest checkpoint)")
    result = train(run.space, strategy=p.strategy, kd=p.kd, peft=p.peft, preset=p.train_preset, out=out,
                   db=run.paths.db, max_steps=p.train_steps, resume=True,
                   sorted_supernet=run.outputs("importance")["sorted"], data_dir=run.data_dir, seed=p.seed,
                   progress=run.progress, **dict(p.train_options))
    run.say("train", f"{result.steps} steps, {result.tokens:,} tokens in {result.wall_time_s:.1f} s "
                     f"({result.tokens / max(result.wall_time_s, 1e-9):,.0f} tokens/s)")
    return ("done" if result.complete else "partial"), {"supernet": str(out), "id": result.supernet_id,
                                                        "steps": result.steps, "tokens": result.tokens}


def _not_needed(run: _Run, stage: str, what: str) -> tuple[str, dict[str, Any]]:
    s = run.supernet
    assert s is not None  # only called with a given supernet
    if s.kind == "pretrained":
        run.say(stage, "not needed: profiling the pretrained base model (supernet='pretrained')")
        return "not-needed", {"supernet": "pretrained"}
    kind = "packed artifact" if s.kind == "artifact" else "trained directory"
    run.say(stage, f"skipped: the {kind} {s.path} ({s.id}, weights sha256 {s.fingerprint[:16]}) {what}")
    return ("artifact" if s.kind == "artifact" else "not-needed"), {"supernet": str(s.path), "id": s.id,
                                                                     "sha256": s.fingerprint}


def _profile(run: _Run) -> tuple[str, dict[str, Any]]:
    from nasbench.profile.build import build
    from nasbench.profile import ProfileConfig

    p, paths = run.preset, run.paths
    recorded = run.previous["profile"].get("inputs", {}).get("protocol")
    if recorded is not None and recorded != _protocol(run) and (paths.db.exists() or paths.shards.exists()):
        if not p.owns_db:
            changed = sorted(k for k in recorded if recorded.get(k) != _protocol(run).get(k))
            raise NasBenchError(str(paths.db), f"was measured under another protocol ({', '.join(changed)} differ): "
                                               f"move it and {paths.shards} away, or give another root",
                                None, show_got=False)
        run.say("profile", f"the protocol changed: starting {paths.db} and {paths.shards} afresh")
        shutil.rmtree(paths.shards, ignore_errors=True)
        for f in (paths.db, paths.db.with_name(paths.db.name + ".wal")):
            f.unlink(missing_ok=True)
    supernet = run.weights()
    config = ProfileConfig(metrics=p.metrics, tasks=p.tasks or ProfileConfig.tasks, limit_items=p.limit_items,
                           ppl_tokens=p.ppl_tokens, seq_len=p.seq_len, dtype=p.dtype, decode_tokens=p.decode_tokens,
                           latency_repeats=p.latency_repeats)
    bands = run.bands()
    run.say("profile", f"a plan of {p.total:,} archs ({len(bands)} band files first, {p.grid} over {p.grid_bins} "
                       f"parameter bins, + largest and smallest) in shards of {p.per_shard}; "
                       f"{', '.join(p.metrics)} (ppl on {p.ppl_tokens:,} tokens), dtype {p.dtype}"
                       + (f"; no arch started after {p.minutes:g} min" if p.minutes else ""))
    summary = build(run.space, supernet=supernet, db=paths.db, shards=paths.shards, config=config, total=p.total,
                    per_shard=p.per_shard, grid=p.grid, grid_bins=p.grid_bins, seed=p.seed,
                    bands=tuple(bands.values()), minutes=p.minutes, data_dir=run.data_dir, progress=run.progress)
    from nasbench.store import metric_values

    supernet_id = supernet.id
    measured = sum(1 for s, _ in metric_values(paths.db, run.space.name, "ppl") if s == supernet_id) \
        if paths.db.is_file() else 0
    rate = summary.profiled / (summary.seconds / 60) if summary.seconds > 0 else 0.0
    run.say("profile", f"{summary.profiled} archs measured in {summary.seconds:.1f} s ({rate:.1f} archs/min); "
                       f"{measured:,} archs with ppl of {supernet_id} in {paths.db}; complete shards "
                       f"{len(summary.done_shards)}/{summary.shards}")
    status = "partial" if summary.stopped else "done"
    return status, {"db": str(paths.db), "supernet_id": supernet_id, "planned": summary.archs,
                    "shards": summary.shards, "complete_shards": summary.done_shards, "measured": measured,
                    "profiled_this_call": summary.profiled}


def _open_benchmark(run: _Run) -> Any:
    from nasbench.surrogate import CANDIDATES, Benchmark

    return Benchmark.open(run.paths.db, run.space, run.outputs("profile")["supernet_id"], cache=run.paths.cache,
                          models=run.preset.models or CANDIDATES)


def _fit(run: _Run) -> tuple[str, dict[str, Any]]:
    from nasbench.store import Store

    run.say("fit", f"surrogates of {', '.join(run.preset.fit_metrics)} (model chosen by 5-fold CV; cache "
                   f"{run.paths.cache})")
    bm = _open_benchmark(run)
    cards = bm.fit(list(run.preset.fit_metrics))
    with Store(run.paths.db) as store:
        stored = store.card_hashes(run.space.name, bm.supernet_id)
        fresh = [c for c in cards if stored.get(c.metric) != c.data_hash]
        if fresh:
            store.add_cards(fresh)
    out = {}
    for c in cards:
        run.say("fit", f"{c.metric}: {c.model}, Kendall tau {c.kendall_tau:.3f}, R2 {c.r2:.3f} on {c.n_test} "
                       f"held-out archs ({c.n_train} to fit)")
        out[c.metric] = {"model": c.model, "kendall_tau": c.kendall_tau, "r2": c.r2, "n_train": c.n_train,
                         "n_test": c.n_test}
    return "done", out


def _compare(run: _Run) -> tuple[str, dict[str, Any]]:
    from nasbench.optimize import CompareSettings, compare, write_report

    p = run.preset
    bm = _open_benchmark(run)
    blackbox = bm.blackbox(list(p.objectives), mode=p.mode)
    settings = CompareSettings(space=run.space.name, objectives=p.objectives, methods=p.methods,
                               seeds=tuple(range(p.seeds)), max_evals=p.max_evals, mode=p.mode,
                               supernet_id=bm.supernet_id, method_max_evals=(("ehvi", p.ehvi_max_evals),))
    run.say("compare", f"{len(p.methods)} methods x {p.seeds} seeds x {p.max_evals:,} evaluations in {p.mode} mode, "
                       f"objectives {', '.join(p.objectives)} (finished runs in {run.paths.runs_db} are kept)")
    runs = compare(blackbox, settings, run.paths.runs_db, true_table=blackbox.table, arch_id_of=blackbox.arch_id_of,
                   processes=p.processes, progress=run.progress)
    column = "hv_norm" if p.mode == "table" else "hv"
    means = runs.groupby("method")[column].mean()
    summary = {m: float(means[m]) for m in p.methods if m in means.index}
    run.say("compare", f"final {column} (mean over seeds): "
                       + ", ".join(f"{m} {v:.4g}" for m, v in summary.items()))
    written = write_report(run.paths.runs_db, run.space.name, list(p.objectives), run.paths.out / "compare",
                           mode=p.mode, supernet_id=bm.supernet_id, run_ids=list(runs["run_id"]))
    return "done", {column: summary, "runs": len(runs), "files": [str(w) for w in written]}


def _report(run: _Run) -> tuple[str, dict[str, Any]]:
    from nasbench.report import write_report

    supernet = run.weights()
    curve = None if supernet.path is None else supernet.path / "curve.jsonl"
    runs_db = run.paths.runs_db if run.paths.runs_db.is_file() else None
    path = run.paths.report / "REPORT.md"
    try:
        sections = write_report(run.paths.db, run.space, run.paths.report, bands=run.bands(),
                                curve=curve if curve is not None and curve.is_file() else None, runs_db=runs_db)
    except NasBenchError as exc:  # too little measured for a section (a profile stopped early): the report says so
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {run.space.name}: what the benchmark shows\n\nNot yet: {exc.line()}. Run `nasbench run` "
                        f"again once more archs are profiled.\n", encoding="utf-8")
        run.say("report", f"{path}: too little data yet ({exc.line()})")
        return "partial", {"report": str(path), "sections": []}
    run.say("report", f"{path} ({', '.join(sections)})")
    return "done", {"report": str(path), "sections": list(sections)}


_STAGE_FUNCTIONS = {"importance": _importance, "train": _train, "profile": _profile, "fit": _fit,
                    "compare": _compare, "report": _report}


# ------------------------------------------------------------------------------------------------------- driver
def run_pipeline(space: SearchSpace, preset: Preset, *, supernet: str | None = None, root: str | Path = "results",
                 data_dir: Path | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print) -> RunManifest:
    """Run (or continue) the preset's stages for ``space``; returns the run's manifest. See the module docstring."""
    preset.check()
    paths = preset.paths(root, space.name)
    choice = _choose(space, supernet, paths)
    manifest = RunManifest.open(paths.out, space=space.name, space_hash=space.hash, preset=preset.name)
    manifest.data["supernet"] = {"kind": "train", "path": None, "id": None, "fingerprint": ""} if choice is None else {
        "kind": choice.kind, "path": choice.checkpoint, "id": choice.id, "fingerprint": choice.fingerprint}
    manifest.data["paths"] = {k: str(v) for k, v in vars(paths).items()}
    manifest.save()
    run = _Run(space, preset, paths, choice, manifest, data_dir, echo, progress, {}, {})
    upstream_ran = False
    for name in STAGES:
        inputs = _inputs(run, name)
        key = run.keys[name] = digest(inputs)
        if not upstream_ran and manifest.is_done(name, key):
            record = manifest.stage(name)
            run.say(name, f"skipped: {record['status']} with the same inputs ({record.get('finished', '?')}, "
                          f"{record.get('seconds', 0):.1f} s)")
            continue
        upstream_ran = True
        run.previous[name] = manifest.stage(name)
        manifest.start(name, key, inputs)
        start = time.perf_counter()
        try:
            status, outputs = _STAGE_FUNCTIONS[name](run)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest.finish(name, status, {}, time.perf_counter() - start, note=str(exc)[:500])
            raise
        manifest.finish(name, status, outputs, time.perf_counter() - start)
        if status == "partial":
            if not (name == "profile" and preset.after_partial):
                run.say(name, "partial: run the same command again to continue")
                break
            run.say(name, "partial: the later stages use what is measured; run the same command again to continue")
    return manifest
