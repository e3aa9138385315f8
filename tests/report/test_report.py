"""nasbench report: band ratios against the goals, a curve figure, byte-identical reruns, README blocks."""

from __future__ import annotations

import json

import pytest

from nasbench.cli import main
from nasbench.errors import NasBenchError
from nasbench.models import tiny_space
from nasbench.report import band_ratios
from nasbench.space import arch_id
from nasbench.store import Measurement, Store


def _db(space, path, bands):
    with Store(path) as store:
        store.add_space(space)
        store.add_supernet("trained-x", space.name, "tiny", tokens=1000, steps=3)
        full = space.largest()
        store.add_supernet("baseline-wanda-2:4", space.name, "tiny", strategy="wanda-2:4", tokens=64,
                           config={"arch": full, "arch_id": arch_id(full)})
        store.add_results(space, full, [
            Measurement(arch_id=arch_id(full), supernet_id="baseline-wanda-2:4", metric="ppl", value=50.0,
                        unit="perplexity", seq_len=512),
            Measurement(arch_id=arch_id(full), supernet_id="baseline-wanda-2:4", metric="params_nonzero",
                        value=float(space.params(full)) * 0.6, unit="params")])
        for supernet, scale in (("pretrained", 100.0), ("trained-x", 2.0)):
            archs = [space.largest(), *(a for archs in bands.values() for a in archs)]
            for i, arch in enumerate(archs):
                value = 10.0 if i == 0 else 10.0 * scale * (1 + i / 10)
                store.add_results(space, arch, [Measurement(arch_id=arch_id(arch), supernet_id=supernet, metric="ppl",
                                                            value=value, unit="perplexity", seq_len=512)])
                if supernet == "trained-x":  # the selection split ranks the archs as the reported tokens do
                    store.add_results(space, arch, [Measurement(
                        arch_id=arch_id(arch), supernet_id=supernet, metric="ppl_selection", value=1.1 * value,
                        unit="perplexity", seq_len=512)])


def test_report_rebuilds_the_recovery_section_byte_identically(tmp_path):
    space = tiny_space(tmp_path / "s", "llama")
    bands = {"50": space.sample(3, seed=1), "75": space.sample(3, seed=2)}
    band_dir = tmp_path / "bands"
    band_dir.mkdir()
    for label, archs in bands.items():
        (band_dir / f"{space.name}-{label}.jsonl").write_text("".join(json.dumps({"arch": a}) + "\n" for a in archs))
    db = tmp_path / "b.duckdb"
    _db(space, db, bands)
    ratios = band_ratios(db, space, {k: band_dir / f"{space.name}-{k}.jsonl" for k in bands})
    assert ratios["full"] == {"pretrained": 10.0, "trained-x": 10.0}
    assert min(ratios["bands"]["50"]["trained-x"]) == 2.0 * 1.1
    curve = tmp_path / "curve.jsonl"
    points = [(0, "full", 10, 100), (0, "probe0", 900, 50), (8, "full", 10, 100), (8, "probe0", 40, 50)]
    curve.write_text("".join(json.dumps({"tokens": t, "role": r, "ppl": p, "params": n}) + "\n"
                             for t, r, p, n in points))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- nasbench report: recovery -->\nold\n<!-- /nasbench report: recovery -->\nend\n")
    args = ["report", space.path, "--db", str(db), "--bands", str(band_dir), "--curve", str(curve), "--out",
            str(tmp_path / "out"), "--readme", str(readme)]
    assert main(args) == 0
    report = (tmp_path / "out" / "REPORT.md").read_bytes()
    assert b"not met" in report and (tmp_path / "out" / "recovery-curve.png").stat().st_size > 0
    assert b"| wanda-2:4 (n = 1) | none (training-free" in report and b"| 50.0 | 5.00x |" in report
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n") and "2.2x" in text
    assert main(args) == 0
    assert (tmp_path / "out" / "REPORT.md").read_bytes() == report and readme.read_text() == text


def test_table_1_shows_accuracy_and_the_findings_compare_it_with_its_error(tmp_path):
    space = tiny_space(tmp_path / "s", "llama")
    bands = {"50": space.sample(3, seed=1), "75": space.sample(3, seed=2)}
    for label, archs in bands.items():
        (tmp_path / f"{space.name}-{label}.jsonl").write_text("".join(json.dumps({"arch": a}) + "\n" for a in archs))
    db = tmp_path / "b.duckdb"
    _db(space, db, bands)
    full = space.largest()
    # the Table's NAS row at <= 50%: the lowest selection-split ppl there, i.e. the first in _db's order (ppl grows
    # with it)
    small = next(a for a in bands["50"] + bands["75"] if space.params(a) <= 0.5 * space.params(full))
    # a NAS arch of higher perplexity and higher accuracy that fits the budget too: the finding must not pick it
    # (the best accuracy of many is biased upward; the pick is by selection-split perplexity)
    archs = bands["50"] + bands["75"]
    other = next(a for a in archs[archs.index(small) + 1:] if space.params(a) <= 0.6 * space.params(full))
    tasks = ("arc_easy", "piqa")
    with Store(db) as store:  # wanda (full arch, 60% non-zero) at 0.40 and 0.50; the NAS arch well above it
        rows = [(full, "baseline-wanda-2:4", 0.40), (full, "baseline-wanda-2:4", 0.50), (small, "trained-x", 0.70),
                (small, "trained-x", 0.80), (other, "trained-x", 0.95), (other, "trained-x", 0.95)]
        for (arch, sid, value), task in zip(rows, tasks * 3):
            store.add_results(space, arch, [Measurement(arch_id=arch_id(arch), supernet_id=sid, metric="acc",
                                                        value=value, unit="accuracy", task=task,
                                                        extra={"items": 500, "stderr": 0.02})])
        # a second trained supernet with perplexity only: its pick (by the selection split, as for the perplexity
        # findings) has no accuracy, so one line names it with the command, not one per baseline and budget
        store.add_supernet("trained-y", space.name, "tiny", tokens=2000, steps=6)
        for arch in [full, small]:
            store.add_results(space, arch, [
                Measurement(arch_id=arch_id(arch), supernet_id="trained-y", metric=metric, value=12.0,
                            unit="perplexity", seq_len=512) for metric in ("ppl", "ppl_selection")])
    out = tmp_path / "out"
    assert main(["report", space.path, "--db", str(db), "--bands", str(tmp_path), "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "| arc_easy acc | piqa acc |" in report and "| 0.400 | 0.500 |" in report
    nas_row = next(line for line in report.splitlines() if line.startswith("| NAS `trained-x` <= 50%"))
    assert nas_row.endswith("| 0.700 | 0.800 |")
    # mean 0.75 vs 0.45, error sqrt(2 * 0.02^2) / 2 per side: the interval excludes 0
    finding = next(line for line in report.splitlines() if line.startswith("| `wanda-2:4` | params |"))
    assert f"| `{arch_id(small)}` (" in finding and "| 0.750 | 0.450 |" in finding
    assert finding.endswith("| +0.300 [+0.261, +0.339] | < 1e-4 | < 1e-4 | **NAS wins** |")
    missing = [line for line in report.splitlines() if line.startswith("`trained-y`: 1 pick")]
    assert missing == [f"`trained-y`: 1 pick without accuracy on every task yet (`{arch_id(small)}`), so its "
                       f"comparisons are not drawn: `nasbench profile {space.path} --supernet trained-y --n 0 --archs "
                       "FILE --metrics acc --tasks arc_easy,piqa` with those archs in FILE."]
    assert "NAS `trained-y` against each baseline" not in report and "Accuracy scorers differ" not in report
    # the NAS side scored by the packed scorer, the baseline by lm-eval's HFLM loop: not compared, and said
    with Store(db) as store:
        store.con.execute("UPDATE measurements SET extra = json_merge_patch(extra, '{\"scorer\": \"packed\"}') "
                          "WHERE metric = 'acc' AND supernet_id = 'trained-x'")
    assert main(["report", space.path, "--db", str(db), "--bands", str(tmp_path), "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    finding = next(line for line in report.splitlines() if line.startswith("| `wanda-2:4` | params |"))
    assert finding.endswith("| 0.750 | 0.450 | - | - | - | not compared: NAS scored by packed, the baseline by "
                            "lm-eval HFLM |")
    assert "Accuracy scorers differ between rows" in report and "lm-eval HFLM: wanda-2:4 (n = 1); packed: NAS" in report


def test_a_baseline_row_says_when_a_column_covers_fewer_of_its_archs(tmp_path):
    space = tiny_space(tmp_path / "s", "llama")
    bands = {"50": space.sample(3, seed=1)}
    for label, archs in bands.items():
        (tmp_path / f"{space.name}-{label}.jsonl").write_text("".join(json.dumps({"arch": a}) + "\n" for a in archs))
    db = tmp_path / "b.duckdb"
    _db(space, db, bands)
    archs = space.sample(3, seed=3)
    with Store(db) as store:  # three models of one baseline: every one has params, two perplexity, one accuracy
        store.add_supernet("baseline-sliced-50", space.name, "tiny", strategy="sliced")
        for i, arch in enumerate(archs):
            rows = [Measurement(arch_id=arch_id(arch), supernet_id="baseline-sliced-50", metric="params_nonzero",
                                value=float(space.params(arch)), unit="params")]
            if i < 2:
                rows.append(Measurement(arch_id=arch_id(arch), supernet_id="baseline-sliced-50", metric="ppl",
                                        value=100.0 + i, unit="perplexity", seq_len=512))
            if i == 0:
                rows.append(Measurement(arch_id=arch_id(arch), supernet_id="baseline-sliced-50", metric="acc",
                                        value=0.3, unit="accuracy", task="piqa", extra={"items": 500}))
            store.add_results(space, arch, rows)
    out = tmp_path / "out"
    assert main(["report", space.path, "--db", str(db), "--bands", str(tmp_path), "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "| sliced-50 (n = 3; perplexity of 2; accuracy of 1) |" in report
    assert "| wanda-2:4 (n = 1) |" in report  # a column over every arch says nothing


def test_the_datasheet_says_which_latency_the_baselines_are_compared_on(tmp_path):
    from nasbench.report.datasheet import _baselines_latency

    space = tiny_space(tmp_path / "s", "llama")
    full = space.largest()
    db = tmp_path / "b.duckdb"
    common = dict(device="cpu", dtype="bfloat16", batch=1, seq_len=128)
    with Store(db) as store:
        store.add_results(space, full, [Measurement(arch_id(full), "baseline-wanda-2:4", "latency_ms", 80.0, "ms",
                                                    **common)])
    assert _baselines_latency(db, space) == ", and the pruning baselines, timed by wall clock only, are compared on it"
    with Store(db) as store:  # timed alternately with the full model as well: the default latency on both sides
        store.add_results(space, full, [Measurement(arch_id(full), "baseline-wanda-2:4", "latency_rel", 1.0,
                                                    "x full model", extra={"reference_ms": 80.0}, **common)])
    assert "compared with the sub-networks on the drift-cancelled latency" in _baselines_latency(db, space)


def _curve(path, points, peft):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"tokens": t, "role": r, "ppl": p, "params": n, "peft": peft,
                                        "wall_time_s": 60.0 * t}) + "\n" for t, r, p, n in points))
    return path


def test_recovery_recipes_are_compared_at_equal_tokens_and_the_better_one_is_named(tmp_path):
    from nasbench.report import compare_curves

    lora = _curve(tmp_path / "lora" / "curve.jsonl", [(0, "full", 10, 100), (0, "probe0", 900, 50),
                                                       (0, "probe1", 500, 70), (8, "full", 10, 100),
                                                       (8, "probe0", 40, 50), (8, "probe1", 30, 70)], "lora")
    full = _curve(tmp_path / "full" / "curve.jsonl", [(0, "full", 10, 100), (0, "probe0", 900, 50),
                                                       (0, "probe1", 500, 70), (8, "full", 11, 100),
                                                       (8, "probe0", 22, 50), (8, "probe1", 33, 70),
                                                       (16, "full", 11, 100), (16, "probe0", 12, 50),
                                                       (16, "probe1", 13, 70)], "full")
    (full.parent / "train.json").write_text(json.dumps({"config": {"lr": 1e-4}}))
    text = compare_curves([lora, full], tmp_path / "out" / "recipes.png")
    # compared at the budget both reached (8 tokens), not at the longer run's end; ratios to each run's own full model
    assert "| `full` | full | 0.0001 | 8 | 8 min | 11.00 | 2.5x | 2x | 3x |" in text
    assert "| `lora` | lora | - | 8 | 8 min | 10.00 | 3.5x | 3x | 4x |" in text
    assert "median ratio is 2.5x with full, lr 0.0001 against 3.5x with lora" in text
    assert (tmp_path / "out" / "recipes.png").stat().st_size > 0
    other = _curve(tmp_path / "other" / "curve.jsonl", [(0, "full", 10, 100), (0, "probeX", 900, 50)], "full")
    with pytest.raises(NasBenchError, match="must share probe archs"):
        compare_curves([lora, other], tmp_path / "out" / "x.png")


def test_a_chains_row_names_the_piece_that_reached_the_budget_and_its_cumulative_wall_time(tmp_path):
    from nasbench.report import compare_curves

    def point(tokens, total, role, ppl, wall, piece):
        return {"tokens": tokens, "tokens_total": total, "role": role, "ppl": ppl, "params": 50, "peft": "lora",
                "wall_time_s": wall, "piece": piece}

    # piece a: 0 -> 8 tokens in 10 min; piece b resumes at 8 (re-evaluated at its step 0) and reaches 16 in 5 min
    chain = [point(0, 0, "full", 10, 0, "a"), point(0, 0, "probe0", 900, 0, "a"),
             point(8, 8, "full", 10, 600, "a"), point(8, 8, "probe0", 40, 600, "a"),
             point(0, 8, "full", 10, 0, "b"), point(0, 8, "probe0", 41, 0, "b"),
             point(8, 16, "full", 10, 300, "b"), point(8, 16, "probe0", 20, 300, "b")]
    path = tmp_path / "chain" / "curve.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(p) + "\n" for p in chain))
    short = _curve(tmp_path / "short" / "curve.jsonl", [(0, "full", 10, 100), (0, "probe0", 900, 50),
                                                         (8, "full", 10, 100), (8, "probe0", 30, 50)], "full")
    assert "| `chain`, piece 1 of 2 | lora | - | 8 | 10 min |" in compare_curves([path, short], tmp_path / "a.png")
    longer = _curve(tmp_path / "long" / "curve.jsonl", [(0, "full", 10, 100), (0, "probe0", 900, 50),
                                                         (16, "full", 10, 100), (16, "probe0", 30, 50)], "full")
    # at the chain's end: its own name, and both pieces' wall time
    assert "| `chain` | lora | - | 16 | 15 min |" in compare_curves([path, longer], tmp_path / "b.png")


def test_curve_budget_extrapolates_each_probe_to_its_band_goal(tmp_path):
    """An exact power law is recovered and extrapolated; a flat probe never gets there; one at its goal needs none;
    points before a quarter of the tokens (the steep start) are left out of the fit."""
    from nasbench.report.recovery import _budget_text, curve_budget

    lines = []
    for t in (0, 1000, 2000, 4000, 8000, 16000):
        lines += [{"tokens": t, "role": "full", "ppl": 10.0, "params": 100},
                  {"tokens": t, "role": "probe0", "ppl": 10.0 * (1e9 if t < 4000 else 100 * (t / 4000) ** -1.0),
                   "params": 50},                                        # 50% band: goal 4.0x
                  {"tokens": t, "role": "probe1", "ppl": 10.0 * 30, "params": 75},     # flat at 30x
                  {"tokens": t, "role": "probe2", "ppl": 10.0 * 1.5, "params": 76}]    # 75% band, below 2.0x
    curve = tmp_path / "curve.jsonl"
    curve.write_text("".join(json.dumps(x) + "\n" for x in lines))
    budget = curve_budget(curve)
    assert budget["from_tokens"] == 4000 and budget["tokens"] == 16000
    by_role = {p["role"]: p for p in budget["probes"]}
    assert by_role["probe0"]["band"] == "50" and by_role["probe0"]["exponent"] == pytest.approx(-1.0)
    assert by_role["probe0"]["tokens_to_goal"] == pytest.approx(4000 * 25)  # 100x / 4.0x = 25 times the tokens
    assert by_role["probe1"]["tokens_to_goal"] is None and by_role["probe2"]["tokens_to_goal"] == 16000
    text = _budget_text(budget)
    assert "1 of 3 never do" in text and "| probe0 | 50% | 25.0x | -1.00 | 100k |" in text


def test_restart_costs_measure_each_continuation_piece_from_its_own_start(tmp_path):
    """Piece 2 gets worse after its restart and is back below its start two evaluations later; piece 3 never gets
    back; the first piece (no restart) is not reported."""
    from nasbench.report.recovery import _restarts_text, restart_costs

    medians = {"a": [(0, 900.0), (100, 20.0)], "b": [(0, 20.0), (50, 22.0), (100, 21.0), (150, 18.0)],
               "c": [(0, 18.0), (50, 19.0), (100, 18.5)]}
    lines, total = [], 0
    for piece, points in medians.items():
        for tokens, ratio in points:
            lines += [{"step": tokens // 50, "tokens": tokens, "tokens_total": total + tokens, "piece": piece,
                       "role": "full", "ppl": 10.0, "params": 100}]
            # three probes whose median is the ratio
            lines += [{"step": tokens // 50, "tokens": tokens, "tokens_total": total + tokens, "piece": piece,
                       "role": f"probe{i}", "ppl": 10.0 * ratio * f, "params": 50} for i, f in enumerate((0.5, 1, 3))]
        total += points[-1][0]
    curve = tmp_path / "curve.jsonl"
    curve.write_text("".join(json.dumps(x) + "\n" for x in lines))
    costs = restart_costs(curve)
    assert [c["piece"] for c in costs] == [2, 3]
    assert costs[0] == {"piece": 2, "start": 20.0, "first_tokens": 50, "first": 22.0, "back_after_tokens": 150,
                        "piece_tokens": 150}
    assert costs[1]["back_after_tokens"] is None and costs[1]["first"] == pytest.approx(19.0)
    text = _restarts_text(costs)
    assert "piece 2 started at a median probe ratio of 20.0x and stood at 22.0x (+10%) after its first 50 tokens, " \
           "back at or below its start after 150 of its 150 tokens" in text
    assert "piece 3" in text and "never back within the piece" in text


def test_accuracy_section_tells_tasks_with_signal_from_tasks_at_chance(tmp_path):
    from nasbench.report.accuracy import accuracy_section

    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(16, seed=5)
    path = tmp_path / "acc.duckdb"
    with Store(path) as store:
        store.add_space(space)
        for i, arch in enumerate(archs):
            ppl = 20.0 * 1.2 ** i  # arch i is worse than arch i - 1
            se = lambda p: (p * (1 - p) / 499) ** 0.5  # noqa: E731
            easy = 0.70 - 0.02 * i  # falls with perplexity, far above 0.25
            wino = 0.5 + (0.01 if i % 2 else -0.01)  # around chance, unrelated to perplexity
            piqa = 0.5 + 0.001 * (16 - i)  # ranks like perplexity, but within 2 SE of chance
            rows = [Measurement(arch_id(arch), "trained", "ppl", ppl, "perplexity", seq_len=512)]
            below = 0.16 + (0.01 if i % 3 else -0.01)  # far under its 0.25 chance, unrelated to perplexity
            for task, value in (("arc_easy", easy), ("winogrande", wino), ("piqa", piqa), ("arc_challenge", below)):
                rows.append(Measurement(arch_id(arch), "trained", "acc", value, "accuracy", task=task,
                                        extra={"items": 500, "stderr": se(value)}))
            if i < 2:  # a task tried on two archs only does not shrink the set the verdicts rest on
                rows.append(Measurement(arch_id(arch), "trained", "acc", 0.3, "accuracy", task="mmlu",
                                        extra={"items": 500, "stderr": se(0.3)}))
            store.add_results(space, arch, rows)
    text = accuracy_section(path, space)
    assert ("`trained`: 16 archs with accuracy on all of arc_challenge, arc_easy, piqa, winogrande "
            "(500 items per task)") in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["arc_easy"].endswith("| yes |") and "16/16" in rows["arc_easy"]
    assert rows["winogrande"].endswith("| no: at chance |")
    assert rows["piqa"].endswith("| weak: near chance |")
    assert rows["arc_challenge"].endswith("| no: below chance |") and "| 0/16 |" in rows["arc_challenge"]
    assert "Tasks with signal on this supernet: arc_easy; weak (ranks, but near or below chance): piqa (near " \
           "chance); without: arc_challenge (below chance), winogrande (at chance)." in text
    assert "`acc_chance_avg` over all 4 tasks" in text
    assert accuracy_section(path, space) == text  # seeded bootstrap: the same bytes
    drawn = accuracy_section(path, space, tmp_path / "report")
    assert drawn == text + "\n![accuracy against perplexity, per task](accuracy.png)\n"
    assert (tmp_path / "report" / "accuracy.png").stat().st_size > 10_000
    empty = tmp_path / "none.duckdb"
    with Store(empty) as store:
        store.add_space(space)
    assert accuracy_section(empty, space).startswith("No supernet has accuracy")


def test_optimizer_runs_count_the_newest_table_and_say_when_the_benchmark_moved_on(tmp_path):
    from datetime import datetime

    from nasbench.report.optimizers import optimizer_section
    from nasbench.store import run_scores
    from nasbench.store.runs import RUN_COLUMNS, write_run

    space = tiny_space(tmp_path / "s", "llama")

    def run(method, seed, table, when, hv, **config):
        row = dict(run_id=f"{method}-{seed}-{table}-{config}", space=space.name, supernet_id="s1", mode="table",
                   method=method, seed=seed, objectives="ppl,latency_ms", max_evals=8, max_sim_time_s=None, workers=1,
                   n_evals=8, sim_time_s=1.0, wall_time_s=1.0, hv=hv, hv_norm=hv, igd=0.0, front_share=0.0,
                   config=json.dumps({"table": table, **config}), created_at=when)
        return [row[c] for c in RUN_COLUMNS], [(row["run_id"], e, float(e), "a", "{}", hv, hv, 0.0, 0.0)
                                               for e in (1, 2, 4, 8)]

    def runs_db(name, when):
        path = tmp_path / name
        with Store(path) as store:
            for method, old, new in (("rs", 0.9, 0.5), ("ls", 0.1, 0.7)):
                for seed in range(3):
                    write_run(store, *run(method, seed, "before", datetime(2000, 1, 1), old))
                    write_run(store, *run(method, seed, "after", when, new + seed / 100))
                    write_run(store, *run(method, seed, "after", when, 0.0, noise=True))  # another question
        return path

    db = tmp_path / "bench.duckdb"
    with Store(db) as store:
        store.add_space(space)
        store.add_results(space, space.largest(), [Measurement(arch_id=arch_id(space.largest()), supernet_id="s1",
                                                               metric="ppl", value=10.0, unit="perplexity")])
    earlier = runs_db("earlier.duckdb", datetime(2001, 1, 1))
    scores = run_scores(earlier, space.name)[("table", "ppl,latency_ms", "s1")]
    # only the runs on the newest table count: a rerun supersedes the runs before it, never pooled with them
    assert {s: scores["rs"][s][8] for s in range(3)} == pytest.approx({0: 0.5, 1: 0.51, 2: 0.52})
    text = optimizer_section(earlier, space, tmp_path, db=db)
    assert "Made on an earlier table" in text and "`ppl` rows" in text and "--runs-db" in text
    later = runs_db("later.duckdb", datetime(2999, 1, 1))
    assert "earlier table" not in optimizer_section(later, space, tmp_path, db=db)


def test_findings_are_holm_corrected_over_their_table():
    from nasbench.report.baselines import _acc_verdict, _corrected, _ppl_verdict

    # p 0.03 and 0.04 pass alone; Holm over the two makes both 0.06, and a finished row (n = 1) is kept as it is
    rows = ["| n = 1 row |", ("| a |", 0.03, (0.5, 0.9)), ("| b |", 0.04, (1.1, 1.3))]
    assert _corrected(rows, _ppl_verdict) == [
        "| n = 1 row |", "| a | 0.03 | 0.06 | **no clear winner (Holm p >= 0.05)** |",
        "| b | 0.04 | 0.06 | **no clear winner (Holm p >= 0.05)** |"]
    assert _corrected(rows[:2], _ppl_verdict) == ["| n = 1 row |", "| a | 0.03 | 0.03 | **NAS wins** |"]
    assert _corrected([("| c |", 0.01, (0.9, 1.2))], _ppl_verdict)[0].endswith("(the interval holds 1)** |")
    assert _corrected([("| d |", 1e-5, (-0.2, -0.1))], _acc_verdict) == [
        "| d | < 1e-4 | < 1e-4 | **the baseline wins** |"]
