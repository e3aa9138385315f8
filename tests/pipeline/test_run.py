"""nasbench run: the stage runner on a tiny model: every stage, skipping by input hash, resuming after an
interruption, a matching artifact instead of training, preset validation, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.pipeline import PRESETS, Preset, run_pipeline
from nasbench.supernet import SupernetRef
from nasbench.pipeline import _stages as runner_module

TINY = Preset(name="tiny", importance_tokens=256, train_preset="quick", strategy="importance-grid-params",
              kd="cosine", peft="lora", train_steps=2,
              train_options=(("seq_len", 32), ("batch_size", 2), ("data_source", "calibration"), ("grid_trials", 50),
                             ("checkpoint_every", 1)),
              total=12, per_shard=6, grid=4, grid_bins=2, bands=True, metrics=("ppl",), ppl_tokens=256, seq_len=64,
              dtype="float32", fit_metrics=("ppl",), models=("random-forest",), objectives=("ppl", "params"),
              methods=("rs", "ls"), seeds=2, max_evals=12, mode="table", processes=1)


def _run(space, data, root, preset=TINY, **kwargs):
    lines: list[str] = []
    manifest = run_pipeline(space, preset, root=root, data_dir=data, progress=False, echo=lines.append, **kwargs)
    return manifest, lines


def _skipped(lines: list[str]) -> set[str]:
    return {line.split("] ")[1].split(":")[0] for line in lines if ": skipped" in line}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One full run of TINY on a tiny random llama space (as conftest's tiny_with_data, for the module), with a band
    file; the tests below rerun it with changed inputs."""
    from conftest import make_tiny_with_data

    tmp = tmp_path_factory.mktemp("run")
    space, data = make_tiny_with_data(tmp)
    root = tmp / "results"
    (root / "bands").mkdir(parents=True)
    (root / "bands" / f"{space.name}-50.jsonl").write_text(
        "".join(json.dumps({"arch": a}) + "\n" for a in space.sample(3, seed=7)), encoding="utf-8")
    manifest, lines = _run(space, data, root)
    return space, data, root, manifest, lines


@pytest.mark.slow  # the whole pipeline once for the module (~1 min on 2 cores)
def test_a_run_does_every_stage_then_skips_them_all(tiny_run) -> None:
    space, data, root, manifest, lines = tiny_run
    assert manifest.statuses() == dict.fromkeys(runner_module.STAGES, "done")
    out = TINY.paths(root, space.name)
    assert manifest.path == out.out / "manifest.json"
    report = (out.report / "REPORT.md").read_text(encoding="utf-8")
    assert "## Recovery" in report and "## Optimizer comparison" in report and "## S2 Supernet training" in report
    profile = manifest.stage("profile")["outputs"]
    assert profile["measured"] >= 12 and profile["complete_shards"] == [0, 1]
    assert any("archs measured in" in line and "archs/min" in line for line in lines)  # progress with units
    first, _ = _run(space, data, root)  # (another test may have changed an input meanwhile)
    again, lines = _run(space, data, root)
    assert _skipped(lines) == set(runner_module.STAGES)
    assert again.data["stages"] == json.loads(json.dumps(first.data["stages"], default=str))


@pytest.mark.slow
def test_a_changed_input_reruns_that_stage_and_the_later_ones(tiny_run) -> None:
    space, data, root, _, _ = tiny_run
    manifest, lines = _run(space, data, root, dataclasses.replace(TINY, max_evals=10))
    assert _skipped(lines) == {"importance", "train", "profile", "fit"}
    assert manifest.statuses()["compare"] == "done"
    assert manifest.stage("compare")["inputs"]["max_evals"] == 10


@pytest.mark.slow
def test_an_interrupted_stage_resumes_and_the_done_ones_are_skipped(tiny_run, monkeypatch) -> None:
    space, data, root, _, _ = tiny_run
    changed = dataclasses.replace(TINY, seeds=3)
    real = runner_module._STAGE_FUNCTIONS["compare"]

    def killed(run):
        raise KeyboardInterrupt

    path = TINY.paths(root, space.name).out / "manifest.json"
    attempts = json.loads(path.read_text())["stages"]["compare"]["attempts"]
    monkeypatch.setitem(runner_module._STAGE_FUNCTIONS, "compare", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(space, data, root, changed)
    manifest = json.loads(path.read_text())
    assert manifest["stages"]["compare"]["status"] == "interrupted"
    assert manifest["stages"]["fit"]["status"] == "done"
    monkeypatch.setitem(runner_module._STAGE_FUNCTIONS, "compare", real)
    resumed, lines = _run(space, data, root, changed)
    assert _skipped(lines) == {"importance", "train", "profile", "fit"}
    assert resumed.statuses()["compare"] == "done" and resumed.stage("compare")["attempts"] == attempts + 2
    assert resumed.stage("compare")["outputs"]["runs"] == 2 * 3


@pytest.mark.slow
def test_a_profile_stopped_by_its_deadline_is_continued(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    root = tmp_path / "results"
    bounded = dataclasses.replace(TINY, minutes=1e-9, after_partial=False)
    manifest, lines = _run(space, data, root, bounded)
    assert manifest.statuses()["profile"] == "partial" and "fit" not in manifest.statuses()
    assert any("run the same command again" in line for line in lines)
    manifest, lines = _run(space, data, root)  # the same inputs (a time bound is none): profile continues
    assert _skipped(lines) == {"importance", "train"}
    assert manifest.statuses() == dict.fromkeys(runner_module.STAGES, "done")


@pytest.mark.slow
def test_a_matching_artifact_replaces_importance_and_train(tiny_run) -> None:
    from nasbench.supernet.artifact import pack

    space, data, root, manifest, _ = tiny_run
    artifact = pack(space, manifest.stage("train")["outputs"]["supernet"], root / "supernets" / "tiny-art")
    assert SupernetRef.find(space, root / "supernets").path == artifact
    other = root / "supernets" / "other-space"
    shutil.copytree(artifact, other)  # the same files for another space hash: never chosen
    doc = json.loads((other / "manifest.json").read_text())
    doc["space"]["hash"], doc["training"]["tokens_total"] = "0" * 16, 10**9
    (other / "manifest.json").write_text(json.dumps(doc))
    assert SupernetRef.find(space, root / "supernets").path == artifact
    preset = dataclasses.replace(TINY, out="{root}/scratch/{space}-artifact")
    run, lines = _run(space, data, root, preset)
    assert run.statuses()["importance"] == run.statuses()["train"] == "artifact"
    assert run.stage("train")["outputs"]["id"] == "tiny-art"
    assert run.stage("profile")["outputs"]["supernet_id"] == "tiny-art"
    assert any("train: skipped: the packed artifact" in line for line in lines)


@pytest.mark.parametrize("field, value", [("total", 0), ("metrics", ("latency",)), ("metrics", ("ppl", "speed")),
                                          ("fit_metrics", ("params",)), ("objectives", ("ppl",)),
                                          ("methods", ("rs", "nope")), ("mode", "both"), ("models", ("svm",)),
                                          ("strategy", "sandwich"), ("train_options", (("steps_per_day", 3),)),
                                          ("dtype", "int8"), ("minutes", 0.0), ("out", "{nowhere}/x"),
                                          ("ppl_tokens", 32)])
def test_preset_validation_names_the_field(field, value) -> None:
    with pytest.raises(NasBenchError) as err:
        dataclasses.replace(TINY, **{field: value}).check()
    assert err.value.where.startswith(f"preset tiny.{field}")


def test_the_shipped_presets_are_valid() -> None:
    for preset in PRESETS.values():
        preset.check()
    full = PRESETS["full"].paths("results", "smollm2-135m")
    assert str(full.db) == "results/smollm2-135m.duckdb" and str(full.shards) == "results/shards"
    quick = PRESETS["quick"].paths("results", "smollm2-135m")
    assert quick.db.parent == quick.out and "scratch" in quick.out.parts  # its own scratch DB, never the shipped one


@pytest.mark.parametrize("argv, where", [
    (["--preset", "medium"], "argument --preset"),
    (["--supernet", "/no/such/dir"], "--supernet"),
    (["--supernet", "no-such-id"], "--supernet"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_with_data, tmp_path, capsys, argv, where) -> None:
    space, data = tiny_with_data
    code = main(["run", space.path, "--results", str(tmp_path / "r"), "--data-dir", str(data), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nasbench: error: ") and len(err.strip().splitlines()) == 1
    assert where in err


@pytest.mark.slow
def test_the_verb_runs_a_preset_and_ends_with_one_json_line(tiny_with_data, tmp_path, capsys, monkeypatch) -> None:
    space, data = tiny_with_data
    monkeypatch.setitem(PRESETS, "quick", dataclasses.replace(TINY, name="quick", bands=False))
    code = main(["run", space.path, "--preset", "quick", "--supernet", "pretrained", "--results",
                 str(tmp_path / "r"), "--data-dir", str(data)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert summary["stages"]["train"] == "not-needed" and summary["stages"]["report"] == "done"
    assert out[0].startswith("[1/6] importance: not needed")
