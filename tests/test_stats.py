"""Optimizer statistics: Holm, Friedman, ranks, the Nemenyi CD, Wilcoxon against random search."""

from __future__ import annotations

import numpy as np
import pytest

from nasbench.stats import average_ranks, cd_diagram, friedman, holm, nemenyi_cd, versus_baseline


def test_holm_matches_the_step_down_procedure():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).max() <= 1.0


def test_a_method_that_is_better_on_every_seed_is_found_and_ties_are_not(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.7, size=20)
    x = np.column_stack([base, base + 0.1 + rng.uniform(0, 0.01, 20), base + rng.normal(0, 0.01, 20)])
    methods = ["rs", "good", "same"]
    assert friedman(x)[1] < 1e-4
    np.testing.assert_allclose(average_ranks(x)[1], 1.0)
    result = {v.method: v for v in versus_baseline(x, methods, "rs")}
    assert result["good"].significant and result["good"].wins == 20
    assert not result["same"].significant
    assert friedman(np.column_stack([base, base, base])) == (0.0, 1.0)
    assert nemenyi_cd(3, 20) == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 20)))
    assert cd_diagram(average_ranks(x), methods, nemenyi_cd(3, 20), tmp_path / "cd.png").stat().st_size > 0
    with pytest.raises(ValueError):
        versus_baseline(x, methods, "cmaes")
