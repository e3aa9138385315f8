"""The report's controlled experiments (S1 sorting, the S2-S4 training factorial, S6 standalone models) on tiny DBs
whose answer is known: paired effects with intervals, Holm-corrected tests, seed noise, arms not yet measured."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nasbench.models import tiny_space
from nasbench.report.experiments import BUDGET, factorial_section, paired, sorting_section, standalone_section
from nasbench.space import arch_id
from nasbench.store import Measurement, Store


def _rows(space, store, supernet, archs, value_of, tokens=4096, dtype="bfloat16"):
    for arch in archs:
        store.add_results(space, arch, [Measurement(
            arch_id=arch_id(arch), supernet_id=supernet, metric="ppl", value=value_of(arch), unit="perplexity",
            seq_len=512, dtype=dtype, device="cpu", extra={"tokens": tokens})])


def _noise(arch, scale=0.02, salt=0):
    """A deterministic per-arch factor near 1 (so paired differences are not all equal)."""
    return math.exp(scale * (int(arch_id(arch)[:6], 16) % 1000 / 500.0 - 1.0 + salt))


def test_paired_effect_interval_and_test():
    rng = np.random.default_rng(0)
    b = np.exp(rng.normal(5.0, 1.0, 40))
    a = b * np.exp(rng.normal(-0.7, 0.1, 40))  # a is about half of b on every arch
    c = paired(a, b)
    assert c.n == 40 and c.low <= c.ratio <= c.high < 1.0 and c.p < 1e-6 and c.improved == 1.0
    same = paired(b, b)
    assert same.ratio == 1.0 and same.p == 1.0
    with pytest.raises(ValueError):
        paired([1.0], [2.0])


def _factorial_db(tmp_path, arms):
    """A DB with the band archs and the full model measured on each ``(id, strategy, kd, seed, factor_fn)``."""
    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(24, seed=3)
    bands = {}
    for label, part in (("50", archs[:12]), ("75", archs[12:])):
        path = tmp_path / f"{space.name}-{label}.jsonl"
        path.write_text("".join(json.dumps(a) + "\n" for a in part), encoding="utf-8")
        bands[label] = path
    db = tmp_path / "f.duckdb"
    with Store(db) as store:
        store.add_space(space)
        for sid, strategy, kd, seed, factor in arms:
            store.add_supernet(sid, space.name, "tiny", strategy=strategy, kd=kd, peft="lora", tokens=BUDGET,
                               config={"seed": seed} if seed is not None else {})
            _rows(space, store, sid, [*archs, space.largest()], lambda a, f=factor: 100.0 * f(a))
    return space, bands, db


def test_factorial_verdicts_holm_seed_noise_and_missing_arms(tmp_path):
    space, bands, db = _factorial_db(tmp_path, [
        ("ref", "importance-grid-params", "kl", None, lambda a: _noise(a)),  # no recorded seed: the default, 0
        ("seed1", "importance-grid-params", "kl", 1, lambda a: 1.05 * _noise(a, salt=0.3)),
        ("ftts", "importance-standard", "kl", 0, lambda a: 2.0 * _noise(a, 0.05)),
        ("lm", "importance-grid-params", "none", 0, lambda a: 1.02 * _noise(a, salt=0.1)),
    ])
    out = factorial_section(db, space, bands)
    assert set(out) == {"training", "strategies", "distillation"}
    s2, s3, s4 = out["training"], out["strategies"], out["distillation"]
    # the reference is the per-arch geometric mean of the two runs: each run sits about 1.025x off it
    assert "median ratio to the shipped recipe (the geometric mean per arch of its 2 runs)" in s2
    assert "| shipped recipe | reference | `ref` | importance-grid-params | kl | 0 | 25 | 0.973x" in s2
    assert "**fine-tune-then-slice** (importance-standard, KD kl, seed 0, 286,720 tokens, n = 25 archs)" in s2
    assert "**worse than the shipped recipe**" in s2
    assert "Seed noise: the shipped recipe at seed 1 against the shipped recipe (the geometric mean per arch of " \
           "its 2 runs), median ratio 1.03x" in s2 and "within 1.06x of 1 is within seed noise" in s2
    assert "**within seed noise**" in s4  # 1.02x of run 0 is 0.994x of the mean, inside the runs' 1.06x
    assert "No arm of sampling strategies is measured yet." in s3
    assert "`random (one sub-network per step)` (`tools/experiments/factorial.sh random`)" in s3
    assert factorial_section(db, space, bands) == out  # the same bytes every run


def test_seed_noise_is_the_widest_gap_between_runs_of_the_shipped_recipe(tmp_path):
    """Three runs of the shipped recipe (today's seed 0 and seed 1, seed 0 by earlier code): the noise band is the
    widest pair (earlier code vs seed 1, 1.5x here), so an arm 1.3x off today's run is within it."""
    space, bands, db = _factorial_db(tmp_path, [
        ("seed1", "importance-grid-params", "kl", 1, lambda a: 1.2 * _noise(a, salt=0.3)),
        ("rand", "importance-random", "kl", 0, lambda a: 1.3 * _noise(a, salt=0.2)),
    ])
    with Store(db) as store:
        for sid, checkpoint, factor in (("today", "results/scratch/factorial/shipped-seed0", 1.0),
                                        ("earlier", "results/supernets/earlier", 0.8)):
            store.add_supernet(sid, space.name, "tiny", strategy="importance-grid-params", kd="kl", peft="lora",
                               tokens=BUDGET, checkpoint=checkpoint, config={"seed": 0})
            _rows(space, store, sid, [*space.sample(24, seed=3), space.largest()],
                  lambda a, f=factor: 100.0 * f * _noise(a, salt=0.1))
    out = factorial_section(db, space, bands)
    s2, s3 = out["training"], out["strategies"]
    assert "| shipped recipe | reference | `today` |" in s2
    assert "| shipped recipe, earlier code | code | `earlier` |" in s2
    assert "the widest of the 3 pairs among the shipped recipe's 3 runs (shipped recipe, earlier code against " \
           "shipped recipe, seed 1), 1.51x: an arm whose median ratio lies within 1.51x of 1" in s2
    # 1.3x today's run is 1.3 / (0.8 * 1.2)^(1/3) = 1.34x the mean: inside the replicates' 1.5x
    assert "**random (one sub-network per step)**" in s3 and "**within seed noise**" in s3


def test_factorial_ignores_other_budgets_and_protocols(tmp_path):
    space, bands, db = _factorial_db(tmp_path, [("ref", "importance-grid-params", "kl", 0, lambda a: 1.0)])
    with Store(db) as store:
        store.add_supernet("longer", space.name, "tiny", strategy="importance-standard", kd="kl", peft="lora",
                           tokens=2 * BUDGET, config={"seed": 0})
        _rows(space, store, "longer", [space.largest()], lambda a: 1.0)
    out = factorial_section(db, space, bands)["training"]
    assert "`longer`" not in out and "fine-tune-then-slice` (`tools/experiments/factorial.sh standard`)" in out


def test_sorting_section_is_paired_over_shared_archs(tmp_path):
    space = tiny_space(tmp_path / "s", "llama")
    archs = space.sample(30, seed=4)
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.add_space(space)
        _rows(space, store, "pretrained", archs, lambda a: 1000.0 * _noise(a, 0.5))
        _rows(space, store, "sorted", archs[:20], lambda a: 100.0 * _noise(a, 0.5))
        _rows(space, store, "sorted", archs[20:], lambda a: 100.0, tokens=1024)  # another protocol: left out
    text = sorting_section(db, space, appendix="| old table |")
    assert "| 20 | 2.30 [2.30, 2.30] | 10.0x [10.0x, 10.0x] | 100% | " in text
    assert "**Appendix: the earlier RPD study.**" in text and text.rstrip().endswith("| old table |")
    import dataclasses

    assert "not answered" in sorting_section(db, dataclasses.replace(space, name="other"))


def _standalone_db(tmp_path, n, seed, alone, supernet):
    """``n`` archs (by params), each distilled alone (ppl ``alone(i)``) and as a sub-network of
    ``smollm2-135m-recovery-1`` (ppl ``supernet(i)``)."""
    space = tiny_space(tmp_path / "s", "llama")
    archs = sorted(space.sample(n, seed=seed), key=space.params)
    db = tmp_path / "a.duckdb"
    with Store(db) as store:
        store.add_space(space)
        for i, arch in enumerate(archs):
            sid = f"baseline-sliced-recovered-{i}"
            store.add_supernet(sid, space.name, "tiny", strategy="sliced-recovered", tokens=BUDGET,
                               config={"arch_id": arch_id(arch), "tokens_per_model": BUDGET})
            _rows(space, store, sid, [arch], lambda a, i=i: alone(i))
        _rows(space, store, "smollm2-135m-recovery-1", archs, lambda a: supernet(archs.index(a)))
    return space, db


def test_standalone_section_ratios_and_rank_agreement(tmp_path):
    # the supernet ranks the archs as the standalone models do, 1.5x worse on each
    space, db = _standalone_db(tmp_path, 10, 5, lambda i: 100.0 - 5 * i, lambda i: 1.5 * (100.0 - 5 * i))
    text = standalone_section(db, space)
    assert "median ratio 1.5x [1.5x, 1.5x]" in text and "Kendall tau of the two rankings 1.00 [1.00, 1.00]" in text
    assert "worse on 100% of archs" in text and "Fewer than 8 archs" not in text
    # both tests pass after Holm over the two (10 archs all one way: Wilcoxon p 0.002; tau 1: p < 1e-4)
    assert "Holm p 0.002" in text and "**weight sharing costs perplexity**" in text
    assert "**the supernet ranks the archs as the standalone models do, beyond chance**" in text
    assert "not answered yet" in standalone_section(db, space, supernet="missing")
    # rankings unrelated (alternating): the rank verdict says so
    loose = tmp_path / "loose"
    loose.mkdir()
    space, db = _standalone_db(loose, 10, 5, lambda i: 100.0 - 5 * i, lambda i: 1.5 * (100.0 + 7 * (i % 3)))
    assert "**the rank agreement is not distinguishable from none" in standalone_section(db, space)


def test_standalone_section_gives_no_interval_for_a_handful_of_archs(tmp_path):
    space, db = _standalone_db(tmp_path, 3, 6, lambda i: 50.0 + i, lambda i: 2.0 * (50.0 + i))
    text = standalone_section(db, space)
    assert "Over 3 archs" in text and "median ratio 2x," in text and "no interval or test, and no verdict" in text
    assert "Wilcoxon" not in text.split("Over 3 archs")[1]


def test_todays_reference_run_is_preferred_and_the_earlier_code_is_its_own_row(tmp_path):
    space, bands, db = _factorial_db(tmp_path, [
        ("artifact", "importance-grid-params", "kl", None, lambda a: 1.3 * _noise(a)),
        ("rerun", "importance-grid-params", "kl", 0, lambda a: _noise(a, salt=0.2)),
        ("seed1", "importance-grid-params", "kl", 1, lambda a: 1.05 * _noise(a, salt=0.3)),
    ])
    with Store(db) as store:  # the factorial script's run: its checkpoint lies under results/scratch/factorial/
        store.add_supernet("rerun", space.name, "tiny", checkpoint="results/scratch/factorial/shipped-seed0")
    s2 = factorial_section(db, space, bands)["training"]
    assert "| shipped recipe | reference | `rerun` |" in s2
    assert "| shipped recipe, earlier code | code | `artifact` |" in s2 and "by an earlier version of the code" in s2
    assert "retrains it with today's" not in s2
    only_artifact = tmp_path / "only"
    only_artifact.mkdir()
    space, bands, db = _factorial_db(only_artifact, [("artifact", "importance-grid-params", "kl", None,
                                                      lambda a: 1.0)])
    s2 = factorial_section(db, space, bands)["training"]
    assert "`tools/experiments/factorial.sh shipped-seed0` retrains it with today's" in s2
    assert "earlier code" not in s2
