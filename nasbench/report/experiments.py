"""The report's controlled experiments, from the benchmark DB only: S1 (importance sorting on the shipped space), the
training factorial behind S2-S4 (arms at one token budget, matched archs, seeds) and S6 (what weight sharing costs
against models distilled alone, and whether the supernet ranks them right).

Every comparison is paired over the same archs, measured under one protocol (the project's perplexity on the first
4,096 WikiText-2 test tokens, bf16): the effect is the median over archs of ``ln(ppl_a / ppl_b)``, printed as a ratio
with a 95% percentile bootstrap interval over archs; the test is the two-sided Wilcoxon signed-rank test on those
differences; p-values of one family are Holm-corrected. The factorial's reference is the per-arch geometric mean of
the shipped recipe's runs (seeds 0 and 1, and seed 0 trained by an earlier version of the code where the DB has it),
not one run of it; an arm whose effect is smaller than the widest median ratio between any two of those runs is
called "within seed noise" (they differ in what any two arms may differ in beyond their factor: seed, code version,
machine).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nasbench.perplexity import Protocol
from nasbench.report._common import BOOTSTRAP, fmt_ratio
from nasbench.report._common import fmt_p as _fmt_p
from nasbench.space import SearchSpace, arch_id

__all__ = ["BUDGET", "ARMS", "Arm", "Paired", "paired", "sorting_section", "factorial_section", "standalone_section",
           "threats_section", "test_ppl"]

#: The factorial's token budget: the shipped recipe's first piece (140 steps x 4 rows x 512 tokens), what
#: ``smollm2-135m-recovery-1`` and every ``sliced-recovered`` model were trained with.
BUDGET = 286_720
#: The per-arch geometric mean of the shipped recipe's runs, the factorial's reference (a key of the values, no id).
_MEAN = "(shipped recipe, mean of its runs)"

#: Fewer paired archs than this get no bootstrap interval or test (a resample of 2-4 archs says nothing).
MIN_INTERVAL = 5
#: The reported protocol every comparison here reads: tokens of the perplexity corpus and the weights' dtype.
PROTOCOL = {"tokens": Protocol.tokens, "dtype": "bfloat16"}


@dataclass(frozen=True)
class Arm:
    """One arm of the training factorial: the shipped recipe with one factor changed."""

    name: str
    strategy: str
    kd: str
    seed: int
    factor: str
    """What differs from the shipped recipe (its section: S2 training, S3 sampling, S4 distillation, seed)."""
    command: str
    """The ``tools/experiments/factorial.sh`` arm that trains it."""


#: The arms, the shipped recipe (importance-grid-params, KL to the frozen pretrained model, LoRA, seed 0) first.
ARMS = (
    Arm("shipped recipe", "importance-grid-params", "kl", 0, "reference", "shipped-seed0"),
    Arm("shipped recipe, earlier code", "importance-grid-params", "kl", 0, "code", "(smollm2-135m-recovery-1)"),
    Arm("shipped recipe, seed 1", "importance-grid-params", "kl", 1, "seed", "shipped-seed1"),
    Arm("fine-tune-then-slice", "importance-standard", "kl", 0, "S2", "standard"),
    Arm("sandwich (uniform middles)", "importance-sandwich", "kl", 0, "S3", "sandwich"),
    Arm("random (one sub-network per step)", "importance-random", "kl", 0, "S3", "random"),
    Arm("calibrate-mag (one arch per bin)", "importance-calibrate-mag", "kl", 0, "S3", "calibrate-mag"),
    Arm("LM loss, no distillation", "importance-grid-params", "none", 0, "S4", "kd-none"),
)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of ``a`` against ``b`` over the archs both were measured on."""

    n: int
    ratio: float
    """exp(median over archs of ln(ppl_a / ppl_b)): < 1 means ``a`` has the lower perplexity."""
    low: float
    high: float
    p: float
    """Two-sided Wilcoxon signed-rank p-value of the log ratios (1.0 when every difference is 0)."""
    improved: float
    """Share of archs where ``a`` has the lower perplexity."""


def paired(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Paired:
    """The paired comparison of two perplexity vectors over the same archs (see the module docstring)."""
    from scipy.stats import wilcoxon

    d = np.log(np.asarray(a, dtype=np.float64)) - np.log(np.asarray(b, dtype=np.float64))
    if len(d) < 2 or not np.isfinite(d).all():
        raise ValueError(f"a paired comparison needs >= 2 finite pairs, got {len(d)}")
    rng = np.random.default_rng(seed)
    medians = np.median(d[rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    p = 1.0 if not np.any(d) else float(wilcoxon(d).pvalue)
    return Paired(len(d), float(np.exp(np.median(d))), float(np.exp(low)), float(np.exp(high)), p,
                  float(np.mean(d < 0)))


def _effect(c: Paired) -> str:
    return f"{fmt_ratio(c.ratio)} [{fmt_ratio(c.low)}, {fmt_ratio(c.high)}]"


def test_ppl(db: str | Path, space: SearchSpace, arch_ids: Sequence[str] | None = None) -> dict[tuple[str, str], float]:
    """``{(supernet, arch): ppl}`` under the reported protocol (:data:`PROTOCOL`); rows of another token count or
    dtype are left out, so no comparison mixes protocols."""
    from nasbench.store import metric_values

    out = {}
    for key, row in metric_values(db, space.name, "ppl", arch_ids).items():
        extra = json.loads(row["extra"]) if row["extra"] else {}
        if extra.get("tokens") == PROTOCOL["tokens"] and row["dtype"] == PROTOCOL["dtype"]:
            out[key] = float(row["value"])
    return out


def _pairs(values: dict[tuple[str, str], float], a: str, b: str, archs: Sequence[str] | None = None
           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = sorted({x for s, x in values if s == a} & {x for s, x in values if s == b})
    if archs is not None:
        ids = [x for x in ids if x in set(archs)]
    return ids, np.array([values[(a, x)] for x in ids]), np.array([values[(b, x)] for x in ids])


# ------------------------------------------------------------------------------------------------------------ S1
def sorting_section(db: str | Path, space: SearchSpace, appendix: str = "") -> str:
    """S1: the untrained sorted supernet against the pretrained (unsorted) model, on every arch both were measured
    on; ``appendix``: the earlier RPD study's table, shown below with its caveat."""
    values = test_ppl(db, space)
    ids, sorted_ppl, unsorted = _pairs(values, "sorted", "pretrained")
    lines = []
    if len(ids) < 2:
        lines.append("The DB holds fewer than 2 archs measured both pretrained (unsorted) and sorted, so S1 is not "
                     "answered here.")
    else:
        c = paired(unsorted, sorted_ppl)
        gain = np.log(unsorted / sorted_ppl)
        lines += [
            f"Pretrained (unsorted) against the importance-sorted supernet, both untrained, on the {c.n} archs of "
            f"`{space.name}` v{space.version} measured on both (the project's perplexity on the first "
            f"{PROTOCOL['tokens']:,} test tokens, {PROTOCOL['dtype']}). Per arch, ln(ppl unsorted / ppl sorted): "
            "above 0 means sorting lowered the perplexity.", "",
            "| archs | median ln(ppl unsorted / ppl sorted) [95% CI] | as a ratio | archs improved | "
            "Wilcoxon signed-rank p |", "|---|---|---|---|---|",
            f"| {c.n} | {math.log(c.ratio):.2f} [{math.log(c.low):.2f}, {math.log(c.high):.2f}] | "
            f"{_effect(c)} | {np.mean(gain > 0):.0%} | {_fmt_p(c.p)} |", "",
            f"Sorting lowers the perplexity of the median sub-network by a factor of {fmt_ratio(c.ratio)} "
            f"[{fmt_ratio(c.low)}, {fmt_ratio(c.high)}] and improves {np.mean(gain > 0):.0%} of {c.n} archs "
            f"(one test, no correction needed; n = {c.n} archs, no training, one calibration of "
            "`nasbench importance`). Both sides are untrained, so the ratios are those of broken models (median "
            f"perplexity unsorted {np.median(unsorted):,.0f}, sorted {np.median(sorted_ppl):,.0f}): sorting is the "
            "starting point recovery needs, not a compressed model by itself."]
    if appendix:
        lines += ["", "**Appendix: the earlier RPD study.** Measured on the first version of the space (no 40% "
                      "parameter floor: about half of its archs are smaller than any arch of today's space) with "
                      "1,024 test tokens, on untrained sub-networks whose perplexities reach 10^3-10^30. RPD = "
                      "(ppl unsorted - ppl sorted) / ppl unsorted tends to 1 whenever the unsorted perplexity is "
                      "huge, whatever sorting did, and one arch made worse can move its mean by any amount; the "
                      "table is kept for its per-scheme medians, not for a verdict. The schemes are not "
                      "Holm-corrected against each other.", "", appendix]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- S2-S4 factorial
def _band_ids(bands: dict[str, Path], space: SearchSpace) -> dict[str, list[str]]:
    out = {}
    for label, path in sorted(bands.items()):
        lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        out[label] = [arch_id(space.canonical(x.get("arch", x))) for x in lines]
    return out


def arm_supernets(db: str | Path, space: SearchSpace) -> dict[str, str]:
    """``{arm name: supernet id}`` of the factorial's arms the DB holds: trained at :data:`BUDGET` tokens from the
    sorted supernet with LoRA, matched on strategy, distillation loss and seed (a run that records no seed used the
    default, 0). Of two runs of one arm the first by id is taken."""
    from nasbench.store import supernet_rows

    found: dict[str, str] = {}
    # a run of the factorial script (today's code) before a packed artifact of the same recipe (an earlier version
    # of the code): the artifact then becomes the "earlier code" arm, which says what the code changes cost or gave
    rows = sorted(supernet_rows(db, space.name), key=lambda r: ("factorial" not in str(r["checkpoint"] or ""), r["id"]))
    for row in rows:
        if row["tokens"] != BUDGET or row["peft"] != "lora" or not row["strategy"]:
            continue
        config = json.loads(row["config"]) if row["config"] else {}
        seed = int(config.get("seed", 0))
        for arm in ARMS:
            if (arm.strategy, arm.kd, arm.seed) == (row["strategy"], row["kd"], seed) and arm.name not in found:
                found[arm.name] = row["id"]
                break
    return found


def factorial_section(db: str | Path, space: SearchSpace, bands: dict[str, Path]) -> dict[str, str]:
    """S2, S3 and S4 from the training factorial: ``{"training": ..., "strategies": ..., "distillation": ...}``."""
    values = test_ppl(db, space)
    band_ids = _band_ids(bands, space)
    full = arch_id(space.largest())
    archs = [full, *(a for ids in band_ids.values() for a in ids)]
    found = arm_supernets(db, space)
    reference = found.get(ARMS[0].name)
    head = (f"Every arm is the shipped recipe (recovery preset: forward KL to the frozen pretrained model, LoRA r=32 + "
            f"norms, lr 5e-4, the importance-sorted supernet, seed 0) trained for the same {BUDGET:,} tokens, with one "
            f"factor changed; each is measured on the same {len(archs)} archs (the full model and the "
            f"{sum(map(len, band_ids.values()))} band archs of `results/bands/`) under one protocol (first "
            f"{PROTOCOL['tokens']:,} WikiText-2 test tokens, {PROTOCOL['dtype']}). Effect: the median over archs of "
            "ppl(arm) / ppl(shipped recipe), the latter the geometric mean per arch of the shipped recipe's runs "
            "(seeds 0 and 1, and seed 0 by an earlier version of the code where the DB has them), 95% bootstrap CI "
            "over archs; test: two-sided Wilcoxon signed-rank on ln ppl, Holm-corrected over the factorial's arms "
            "(the replicates' rows excluded). The "
            "arms are trained by `tools/experiments/factorial.sh ARM`.")
    if reference is None:
        text = head + ("\n\nThe shipped recipe at this budget (`smollm2-135m-recovery-1`) is not measured in this DB, "
                       "so no arm is compared.\n")
        return {"training": text, "strategies": text, "distillation": text}
    # replicates: the runs of the shipped recipe itself (today's seed 0, seed 1, seed 0 by earlier code). Every arm is
    # compared with their geometric mean per arch (one run, the worst or the best replicate, would tilt every
    # verdict), and their widest pairwise median ratio is the noise band: they differ in seed, code version and
    # machine, as the arms may
    replicates = [(arm.name, found[arm.name]) for arm in ARMS if arm.factor in ("reference", "seed", "code")
                  and arm.name in found]
    base = reference
    if len(replicates) > 1:
        base = _MEAN
        for a in archs:
            if all((sid, a) in values for _, sid in replicates):
                values[(_MEAN, a)] = math.exp(float(np.mean([math.log(values[(sid, a)]) for _, sid in replicates])))
    rows, missing = [], []
    for arm in ARMS if base == _MEAN else ARMS[1:]:
        supernet = found.get(arm.name)
        if supernet is None:
            if arm.factor != "code":  # only there when today's reference run is
                missing.append(arm)
            continue
        ids, a, b = _pairs(values, supernet, base, archs)
        if len(ids) < 2:
            missing.append(arm)
            continue
        rows.append((arm, supernet, paired(a, b)))
    tested = [r for r in rows if r[0].factor not in ("reference", "seed", "code")]
    holm = dict(zip((r[0].name for r in tested), _holm([r[2].p for r in tested])))
    seed_row = next((r for r in rows if r[0].factor == "seed"), None)
    spread = []
    for i, (name_a, a) in enumerate(replicates):
        for name_b, b in replicates[i + 1:]:
            ids, x, y = _pairs(values, a, b, archs)
            if len(ids) >= 2:
                spread.append((abs(math.log(paired(x, y).ratio)), name_a, name_b))
    noise = max(spread)[0] if seed_row and spread else None
    against = (f"the shipped recipe (the geometric mean per arch of its {len(replicates)} runs)" if base == _MEAN
               else "the shipped recipe")
    table = ["| arm | factor | supernet | strategy | KD | seed | archs | median ratio to " + against + " [95% CI] "
             "| archs better | Wilcoxon p | Holm p |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    if base != _MEAN:
        table.append(f"| {ARMS[0].name} | reference | `{reference}` | {ARMS[0].strategy} | {ARMS[0].kd} | 0 | "
                     f"{len([a for a in archs if (reference, a) in values])} | 1 | - | - | - |")
    for arm, supernet, c in rows:
        p_holm = "-" if arm.name not in holm else _fmt_p(holm[arm.name])
        table.append(f"| {arm.name} | {arm.factor} | `{supernet}` | {arm.strategy} | {arm.kd} | {arm.seed} | {c.n} "
                     f"| {_effect(c)} | {c.improved:.0%} | {_fmt_p(c.p)} | {p_holm} |")
    verdicts = {}
    for arm, supernet, c in rows:
        if arm.factor == "reference":
            continue
        if arm.factor == "code":
            verdicts[arm.name] = (f"The same recipe and seed trained by an earlier version of the code (`{supernet}`) "
                                  f"against {against}: median ratio {_effect(c)} over {c.n} archs (Wilcoxon p "
                                  f"{_fmt_p(c.p)}, uncorrected). The factorial's own runs come from its script "
                                  "(`tools/experiments/factorial.sh`), run one at a time over several days: their "
                                  "code versions and machines may differ as these replicates do, which the noise "
                                  "band covers.")
            continue
        if arm.factor == "seed":
            widest = max(spread)
            verdicts[arm.name] = (f"Seed noise: the shipped recipe at seed 1 against {against}, median ratio "
                                  f"{_effect(c)} over {c.n} archs (Wilcoxon p {_fmt_p(c.p)}, uncorrected); the noise "
                                  f"band is the widest of the {len(spread)} pair{'s' if len(spread) > 1 else ''} "
                                  f"among the shipped recipe's {len(replicates)} runs ({widest[1]} against "
                                  f"{widest[2]}), {fmt_ratio(math.exp(noise))}: an arm whose median ratio lies within "
                                  f"{fmt_ratio(math.exp(noise))} of 1 is within seed noise.")
            continue
        p = holm[arm.name]
        if noise is not None and abs(math.log(c.ratio)) <= noise:
            word = "within seed noise"
        elif p < 0.05:
            word = "worse than the shipped recipe" if c.ratio > 1 else "better than the shipped recipe"
        else:
            word = "no significant difference"
        verdicts[arm.name] = (f"**{arm.name}** ({arm.strategy}, KD {arm.kd}, seed {arm.seed}, {BUDGET:,} tokens, "
                              f"n = {c.n} archs): median ratio {_effect(c)}, {c.improved:.0%} of archs better, "
                              f"Wilcoxon p {_fmt_p(c.p)}, Holm p {_fmt_p(p)}: **{word}**.")
    noise_line = (verdicts[seed_row[0].name] if seed_row else
                  "Without the seed arm there is no noise estimate yet: a significant arm may still differ by no "
                  "more than two seeds do.")
    code_row = next((r for r in rows if r[0].factor == "code"), None)
    if code_row:
        noise_line += " " + verdicts[code_row[0].name]
    out = {}
    for key, factor, title in (("training", "S2", "fine-tune-then-slice against training the supernet"),
                               ("strategies", "S3", "sampling strategies"), ("distillation", "S4",
                                                                          "distillation against the LM loss")):
        mine = [verdicts[r[0].name] for r in rows if r[0].factor == factor]
        body = [*(f"- {v}" for v in mine)] or [f"No arm of {title} is measured yet."]
        not_yet = [f"`{arm.name}` (`tools/experiments/factorial.sh {arm.command}`)" for arm in missing
                   if arm.factor in (factor, "seed")]
        pending = ["Not yet measured in this DB: " + ", ".join(not_yet) + ".", ""] if not_yet else []
        if key == "training" and ARMS[1].name not in found:
            pending += [f"The reference `{reference}` is the only run of the shipped recipe at seed 0 here; if it was "
                        "trained by an earlier version of the code, the seed arm's difference mixes seed and code: "
                        "`tools/experiments/factorial.sh shipped-seed0` retrains it with today's.", ""]
        intro = ([head, "", *table, ""] if key == "training" else
                 ["From the training factorial (its design and the table of every arm are in S2).", ""])
        out[key] = "\n".join([*intro, noise_line, "", f"{factor}, {title}:", "", *body, "", *pending]).rstrip() + "\n"
    return out


def _holm(pvalues: Sequence[float]) -> list[float]:
    from nasbench.stats import holm

    return [float(p) for p in holm(pvalues)] if len(pvalues) else []


# ------------------------------------------------------------------------------------------------------------ S6
def standalone_section(db: str | Path, space: SearchSpace, supernet: str = "smollm2-135m-recovery-1") -> str:
    """S6: each arch distilled alone (``sliced-recovered``, :data:`BUDGET` tokens for the one model) against the same
    arch as a sub-network of ``supernet`` (trained with the same recipe and budget for all its sub-networks)."""
    from scipy.stats import kendalltau

    from nasbench.store import supernet_rows

    values = test_ppl(db, space)
    alone = {}
    for row in supernet_rows(db, space.name):
        config = json.loads(row["config"]) if row["config"] else {}
        if row["strategy"] == "sliced-recovered" and config.get("tokens_per_model") == BUDGET:
            aid = config.get("arch_id")
            if aid and (row["id"], aid) in values:
                alone[aid] = (row["id"], values[(row["id"], aid)])
    params = {a: p for a, p in _arch_params(db, space).items()}
    pairs = sorted(((params.get(a, 0), a, ppl, values[(supernet, a)]) for a, (_, ppl) in alone.items()
                    if (supernet, a) in values))
    head = (f"Each arch distilled alone with the shipped recipe for {BUDGET:,} tokens (`nasbench baseline --method "
            f"sliced-recovered`: the same loss, LoRA, data and schedule, one arch per step) against the same arch as "
            f"a sub-network of `{supernet}`, which spent the same {BUDGET:,} tokens on all its sub-networks at once. "
            "Ratio: supernet sub-network ppl / standalone ppl (above 1: weight sharing costs perplexity). Rank "
            "agreement: Kendall tau between the two perplexity rankings, 95% bootstrap CI over archs.")
    if len(pairs) < 2:
        return head + f"\n\nFewer than 2 archs have both measurements ({len(pairs)}), so S6 is not answered yet.\n"
    full = space.params(space.largest())
    lines = [head, "", "| arch | params share | standalone ppl | supernet ppl | ratio |", "|---|---|---|---|---|"]
    for p, a, ppl_alone, ppl_super in pairs:
        lines.append(f"| `{a}` | {p / full:.0%} | {ppl_alone:.1f} | {ppl_super:.1f} | "
                     f"{fmt_ratio(ppl_super / ppl_alone)} |")
    x = np.array([r[2] for r in pairs])
    y = np.array([r[3] for r in pairs])
    ratio = y / x
    tau, tau_p = (float(v) for v in kendalltau(x, y))
    rng = np.random.default_rng(0)
    taus = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(x), len(x))
        if len(set(idx)) > 1:
            taus.append(kendalltau(x[idx], y[idx])[0])
    taus = np.array([t for t in taus if np.isfinite(t)])
    low, high = (np.percentile(taus, [2.5, 97.5]) if len(taus) else (float("nan"), float("nan")))
    c = paired(y, x)
    span = f"Over {len(pairs)} archs ({pairs[0][0] / full:.0%} to {pairs[-1][0] / full:.0%} of the params): "
    if len(pairs) < MIN_INTERVAL:
        summary = (span + f"median ratio {fmt_ratio(c.ratio)}, the supernet sub-network worse on "
                   f"{np.mean(ratio > 1):.0%} of archs; Kendall tau of the two rankings {tau:.2f}. Fewer than "
                   f"{MIN_INTERVAL} archs: no interval or test, and no verdict yet.")
    else:  # two tests, Holm-corrected together: does sharing cost perplexity, do the rankings agree
        cost_p, rank_p = _holm([c.p, tau_p])
        cost = ("weight sharing costs perplexity" if c.ratio > 1 and c.low > 1 and cost_p < 0.05 else
                "the supernet sub-networks are better" if c.high < 1 and cost_p < 0.05 else
                "no significant cost of weight sharing")
        ranks = ("the supernet ranks the archs as the standalone models do, beyond chance" if low > 0
                 and rank_p < 0.05 else "the rank agreement is not distinguishable from none (the interval holds 0 "
                 "or the corrected p >= 0.05)")
        summary = (span + f"median ratio {_effect(c)} (Wilcoxon signed-rank p {_fmt_p(c.p)}, Holm p "
                   f"{_fmt_p(cost_p)}; the supernet sub-network is worse on {np.mean(ratio > 1):.0%} of archs): "
                   f"**{cost}**. Kendall tau of the two rankings {tau:.2f} [{low:.2f}, {high:.2f}] (its test p "
                   f"{_fmt_p(tau_p)}, Holm p {_fmt_p(rank_p)}): **{ranks}**. Two tests, Holm-corrected together; "
                   f"one supernet and one standalone run per arch at {BUDGET:,} tokens, no seed replicates."
                   + (" Fewer than 8 archs: the interval is wide and the verdict provisional." if len(pairs) < 8
                      else ""))
    lines += ["", summary,
              "",
              f"What one-model recovery buys: {BUDGET:,} tokens give one standalone model; the supernet's {BUDGET:,} "
              f"tokens give every arch of the space at once (the {space.name} space holds "
              f"{_valid_archs(db, space)}).", ""]
    return "\n".join(lines)


def _arch_params(db: str | Path, space: SearchSpace) -> dict[str, int]:
    from nasbench.store import arch_params

    return arch_params(db, space.name)


def _valid_archs(db: str | Path, space: SearchSpace) -> str:
    count = space.valid_count()
    return f"{count:,} valid archs" if count else "more archs than can be counted"


# ------------------------------------------------------------------------------------------------ threats to validity
def threats_section(space: SearchSpace) -> str:
    """What limits every verdict above (a list, closing the report)."""
    return "\n".join([
        "- **In-domain recovery data.** Recovery distils on WikiText-2 *validation* (and a TinyStories excerpt), the "
        "domain of the reported WikiText-2 test tokens: perplexity gains, the full model's included, are partly "
        "domain adaptation and need not carry to other text (the accuracy tasks are the out-of-domain check).",
        "- **One model, one space.** Every verdict is about SmolLM2-135M and the `" + space.name + "` space; the "
        "seed's findings were on Llama-3.1-8B.",
        "- **One budget, few replicates.** The factorial's arms are trained for " + f"{BUDGET:,}" + " tokens each; "
        "the shipped recipe has the only replicates (two seeds, and seed 0 by an earlier version of the code), every "
        "other arm one run. A ranking of recipes can change with the budget (the recovery curve is still falling "
        "steeply there).",
        "- **Runs across machines and days.** The arms were trained one at a time over several days, on 2-core "
        "machines that differ in their bf16 path (AVX-512 BF16 or AMX) and with the code of their day; bf16 "
        "training is not bit-reproducible across such machines. The noise band is taken from the shipped "
        "recipe's replicates, which differ in the same ways; training runs record their CPU (`machine` in "
        "`train.json`). Its widest pair is one seed on two machines (the artifact's first piece, trained on an AMD "
        "EPYC without AMX, and its rerun on an Intel Xeon with AMX): a review of the training code between the two "
        "found no change of behaviour, only of rounding (the LoRA product fused into the frozen matmul, the "
        "distillation loss computed in chunks), so the likeliest cause is that a 140-step run at this learning rate "
        "is that sensitive to bf16 arithmetic; either way one run per arm cannot resolve smaller effects.",
        "- **CPU latency.** Latencies are measured on 2-core CPUs whose wall clock drifts by +-15% over minutes; "
        "only interleaved measurements against a common reference compare well, which is why the default "
        "`latency_ms` and `decode_ms_per_token` are drift-cancelled (the ratio to the full model, timed pair by "
        "pair, x the full model's median time) and the wall clocks are kept beside them. A latency ranks archs for "
        "the CPU it was measured on (What the benchmark cannot tell names it); a GPU or another CPU needs its own.",
        "- **Selection.** Picks use the selection split (the perplexity corpus from token 65,536 on), the same "
        "domain as the test tokens; a pick can still fit that domain better than others.",
        "- **Archs.** The band archs are 16 seeded samples per band, not every arch of the band.",
        ""])
