"""Pareto helpers against brute force and hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasbench.errors import NasBenchError
from nasbench.pareto import (crowding_distance, hypervolume, igd, knee_point, measured_front, non_dominated_mask,
                             non_dominated_ranks, normalize, objective_directions, pareto_front, plot_front)

#: Not on a GPU machine (duckdb, pandas) or not needed by the numpy core (torch).
_HEAVY = ("duckdb", "pandas", "torch")
_NUMPY_ONLY = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, _Blocked())
import nasbench.pareto as pareto
print(pareto.non_dominated_mask([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]], [True, True]).tolist())
"""


def test_the_numpy_core_imports_without_the_db_libraries() -> None:
    """``import nasbench.pareto`` is numpy only: the measured fronts (duckdb, pandas) load on first use."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _NUMPY_ONLY.format(blocked=_HEAVY)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[True,", "True,", "False]"]


def _brute_mask(Y: np.ndarray, minimize: list[bool]) -> np.ndarray:
    sign = np.where(minimize, 1.0, -1.0)
    Z = Y * sign
    keep = []
    for i in range(len(Z)):
        dominated = any((Z[j] <= Z[i]).all() and (Z[j] < Z[i]).any() for j in range(len(Z)) if j != i)
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("minimize", [[True, True], [True, False], [False, True, True], [False, False, True]])
def test_mask_matches_brute_force(minimize: list[bool]) -> None:
    rng = np.random.default_rng(len(minimize) * 10 + sum(minimize))
    for trial in range(20):
        # Small integer values make ties and exact duplicates common.
        Y = rng.integers(0, 6, size=(int(rng.integers(1, 40)), len(minimize))).astype(float)
        assert (non_dominated_mask(Y, minimize) == _brute_mask(Y, minimize)).all()


def test_ranks_peel_fronts() -> None:
    Y = np.random.default_rng(1).random((60, 2))
    ranks = non_dominated_ranks(Y, [True, False])
    assert (ranks == 0).tolist() == non_dominated_mask(Y, [True, False]).tolist()
    rest = ranks > 0
    assert ((ranks[rest] == 1) == non_dominated_mask(Y[rest], [True, False])).all()


def test_pareto_front_sorted_by_first_objective() -> None:
    Y = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 3.0]])
    assert pareto_front(Y).tolist() == [1, 2, 0]


def test_knee_two_objectives_is_farthest_from_chord() -> None:
    # Normalised front; the chord is x + y = 1. Distances: (0.2, 0.3) -> 0.354, (0.5, 0.15) -> 0.247.
    Y = np.array([[0.0, 1.0], [0.2, 0.3], [0.5, 0.15], [1.0, 0.0], [0.9, 0.9]])
    assert knee_point(Y) == 1
    # Same front with the second objective maximised (negated values): same knee.
    assert knee_point(Y * [1, -1], [True, False]) == 1


def test_knee_three_objectives_is_closest_to_ideal() -> None:
    Y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.4, 0.4, 0.5]])
    assert knee_point(Y) == 3


def test_hypervolume_hand_values() -> None:
    Y = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(Y, [4.0, 4.0]) == pytest.approx(3 + 2 + 1)
    # A point outside the reference box adds nothing; a maximised objective mirrors the box.
    assert hypervolume(np.vstack([Y, [5.0, 0.0]]), [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(Y * [1, -1], [4.0, -4.0], [True, False]) == pytest.approx(6.0)
    assert hypervolume([[1.0, 1.0, 1.0]], [2.0, 3.0, 4.0]) == pytest.approx(1 * 2 * 3)
    assert hypervolume([[5.0, 5.0]], [4.0, 4.0]) == 0.0


def test_igd() -> None:
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert igd(front, front) == 0.0
    assert igd(front + [0.3, 0.4], front) == pytest.approx(0.5)
    assert igd(np.vstack([front, [[5.0, 5.0]]]), front) == 0.0


def test_normalize_and_crowding() -> None:
    Y = np.array([[1.0, 10.0], [3.0, 10.0], [2.0, 10.0]])
    assert normalize(Y).tolist() == [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]
    d = crowding_distance(np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]))
    assert np.isinf(d[[0, 2]]).all() and d[1] == pytest.approx(2.0)


def test_errors_name_the_values() -> None:
    with pytest.raises(NasBenchError, match="finite"):
        non_dominated_mask([[1.0, np.nan]])
    with pytest.raises(NasBenchError, match="one minimize flag per objective"):
        non_dominated_mask([[1.0, 2.0]], [True])
    with pytest.raises(NasBenchError, match="reference point"):
        hypervolume([[1.0, 2.0]], [3.0])


def test_directions() -> None:
    assert objective_directions(["ppl", "metric_latency_ms", "acc_arc_easy", "mc2_truthfulqa", "params"]) == \
        [True, True, False, False, True]


def test_measured_front_filter_knee_and_plot(tmp_path) -> None:
    from nasbench.space import arch_id, load_space
    from nasbench.store import Measurement, Store

    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "smollm2-135m.yaml")
    archs = space.sample(6, seed=0)
    ids = [arch_id(space.canonical(a)) for a in archs]
    values = [(10.0, 50.0), (20.0, 20.0), (40.0, 12.0), (80.0, 10.0), (30.0, 30.0), (15.0, None)]
    db = tmp_path / "b.duckdb"
    with Store(db) as store:
        store.add_space(space)
        for arch, a, (ppl, latency) in zip(archs, ids, values):
            rows = [Measurement(a, "pretrained", "ppl", ppl, "perplexity")]
            if latency is not None:  # latency_ms = latency_rel x the median reference time (1 ms here)
                rows.append(Measurement(a, "pretrained", "latency_rel", latency, "x full model", device="cpu",
                                        extra={"reference_ms": 1.0}))
            store.add_results(space, arch, rows)
    result = measured_front(db, space.name, ["ppl", "latency_ms"])
    assert len(result.rows) == 5  # the arch without latency is left out, not imputed
    assert result.front["arch_id"].tolist() == ids[:4]
    assert result.knee_arch_id in set(ids[1:3])
    assert result.front["knee"].sum() == 1
    filtered = measured_front(db, space.name, ["ppl", "latency_ms"], where="metric_latency_ms < 25")
    assert set(filtered.rows["arch_id"]) == set(ids[1:4])
    assert plot_front(result, tmp_path / "front.png").stat().st_size > 0
    with pytest.raises(NasBenchError, match="^where: "):
        measured_front(db, space.name, ["ppl", "latency_ms"], where="no_such_column > 1")
    with pytest.raises(NasBenchError, match="not measured"):
        measured_front(db, space.name, ["ppl", "energy_j"])


def test_pareto_cli_prints_per_layer_archs_that_profile_and_build_read_back(tmp_path, capsys) -> None:
    import json

    from nasbench.cli import main
    from nasbench.cli._common import read_arch_lines
    from nasbench.space import arch_id, load_space
    from nasbench.store import Measurement, Store

    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "smollm2-135m-layerwise.yaml")
    archs = [space.canonical(a) for a in space.sample(4, seed=1)]
    db = tmp_path / "layerwise.duckdb"
    with Store(db) as store:
        store.add_space(space)
        for i, arch in enumerate(archs):
            store.add_results(space, arch, [
                Measurement(arch_id(arch), "pretrained", "ppl", 10.0 * (i + 1), "perplexity"),
                Measurement(arch_id(arch), "pretrained", "latency_rel", 1.0 / (i + 1), "x full model", device="cpu",
                            extra={"reference_ms": 40.0})])
    capsys.readouterr()
    assert main(["pareto", space.path, "--db", str(db), "--format", "json"]) == 0
    lines = capsys.readouterr().out
    (tmp_path / "front.jsonl").write_text(lines)
    back = read_arch_lines(str(tmp_path / "front.jsonl"))
    assert [arch_id(space.check(a)) for a in back] == [arch_id(a) for a in archs]
    assert all(isinstance(json.loads(line)["hp_n_heads"], list) for line in lines.splitlines())
    assert main(["pareto", space.path, "--db", str(db)]) == 0
    knee = capsys.readouterr().out.split("--arch '")[1].split("'")[0]
    assert arch_id(space.check(json.loads(knee))) in {arch_id(a) for a in archs}
