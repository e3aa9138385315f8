"""``nasbench report``: what the benchmark shows, regenerated from the DBs (and the committed artifacts) only.

Every number in ``results/<space>/REPORT.md`` and in the README's marked blocks (``<!-- nasbench report: NAME -->``
... ``<!-- /nasbench report: NAME -->``) comes from here, so rerunning the command on the same DBs gives the same
bytes. One module per section: ``recovery``, ``experiments`` (S1 importance sorting, the training factorial of S2
supernet training, S3 sampling strategies and S4 distillation losses, S6 weight sharing against standalone models,
the threats to validity), ``findings`` (the fronts of the training chain, the earlier RPD study), ``baselines`` (S5:
the seed's Table 1 and NAS against the pruning baselines),
``accuracy`` (which lm-eval tasks carry signal), ``optimizers`` (significance of the optimizer comparison per
budget) and ``datasheet`` (surrogate cards, provenance, what the benchmark cannot tell).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from nasbench.report.baselines import TABLE_SHARES, baseline_section
from nasbench.report.optimizers import optimizer_section
from nasbench.report.recovery import GOALS, band_ratios, compare_curves, plot_curve, recovery_section
from nasbench.space import SearchSpace

__all__ = ["GOALS", "TABLE_SHARES", "SECTION_TITLES", "band_ratios", "recovery_section", "baseline_section",
           "optimizer_section", "plot_curve", "compare_curves", "write_report", "update_readme"]

#: Section name (the README block's NAME) -> its heading in REPORT.md, in report order.
SECTION_TITLES = {
    "recovery": "Recovery: are the sub-networks real compressed models?",
    "importance": "S1 Importance sorting",
    "training": "S2 Supernet training vs fine-tune-then-slice vs untrained",
    "strategies": "S3 Sampling strategies",
    "distillation": "S4 Distillation losses",
    "baselines": "S5 NAS vs the pruning baselines (the seed's Table 1)",
    "standalone": "S6 Weight sharing against models distilled alone",
    "accuracy": "Accuracy: which tasks carry signal",
    "optimizers": "Optimizer comparison",
    "cards": "Surrogate cards",
    "provenance": "Provenance",
    "limits": "What the benchmark cannot tell",
    "threats": "Threats to validity",
}


def write_report(db: str | Path, space: SearchSpace, out_dir: str | Path, *, bands: dict[str, Path],
                 curve: Path | None = None, compare: Sequence[Path] = (), runs_db: str | Path | None = None,
                 rpd_db: str | Path | None = None, history_dbs: Sequence[str | Path] = ()) -> dict[str, str]:
    """Write ``out_dir/REPORT.md`` (+ PNGs); returns the sections' Markdown by name (for the README's blocks), with
    ``glance``, the README's summary of the shipped benchmark, beside them.

    ``compare``: other recovery runs' curves shown beside ``curve``; ``rpd_db``: the RPD study's DB (S1);
    ``history_dbs``: earlier benchmark DBs of the space whose supernets S2-S4 also compare (each within itself: other
    spaces or token budgets are not compared across DBs)."""
    from nasbench.report.accuracy import accuracy_section
    from nasbench.report.datasheet import cards_section, limits_section, provenance_section
    from nasbench.report.experiments import factorial_section, sorting_section, standalone_section, threats_section
    from nasbench.report.findings import compare_supernets, importance_section, training_section

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    factorial = factorial_section(db, space, bands)
    # the training chain (one recipe at growing budgets, and the untrained starting points) on their shared archs:
    # what more tokens buy, beside the factorial's equal-budget verdicts
    compared = compare_supernets([("this benchmark", db), *((Path(h).stem, h) for h in history_dbs)], space)
    chain = ("**The training chain** (not a verdict on recipes: one recipe at growing token budgets, with the "
             "untrained starting points, and earlier DBs of the space each within itself):\n\n"
             + training_section(compared, space, out_dir))
    sections = {"recovery": recovery_section(db, space, bands, curve, out_dir, tuple(compare)),
                "importance": sorting_section(db, space, appendix=importance_section(rpd_db, out_dir)
                                              if rpd_db is not None else ""),
                "training": factorial["training"] + "\n" + chain,
                "strategies": factorial["strategies"],
                "distillation": factorial["distillation"],
                "baselines": baseline_section(db, space, out_dir),
                "standalone": standalone_section(db, space),
                "accuracy": accuracy_section(db, space, out_dir)}
    if runs_db is not None:
        sections["optimizers"] = optimizer_section(runs_db, space, out_dir, db=db)
    sections.update(cards=cards_section(db, space), provenance=provenance_section(db, space),
                    limits=limits_section(db, space), threats=threats_section(space))
    text = [f"# {space.name}: what the benchmark shows", "",
            f"Generated by `nasbench report` from `{Path(db).as_posix()}`; do not edit by hand.", ""]
    for name, body in sections.items():
        text += [f"## {SECTION_TITLES[name]}", "", body]
    (out_dir / "REPORT.md").write_text("\n".join(text), encoding="utf-8")
    from nasbench.report.glance import glance_section

    return {**sections, "glance": glance_section(db, space, bands)}  # the README's summary, not a REPORT.md section


def update_readme(readme: Path, sections: dict[str, str], image_dir: str) -> int:
    """Replace each ``<!-- nasbench report: NAME -->`` ... ``<!-- /nasbench report: NAME -->`` block; returns how
    many were replaced. Image links are made relative to the README."""
    text = readme.read_text(encoding="utf-8")
    count = 0
    for name, body in sections.items():
        body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", lambda m: f"![{m[1]}]({image_dir}/{m[2]})", body)
        pattern = re.compile(rf"(<!-- nasbench report: {name} -->\n).*?(<!-- /nasbench report: {name} -->)", re.S)
        text, n = pattern.subn(lambda m: m[1] + body + m[2], text)
        count += n
    readme.write_text(text, encoding="utf-8")
    return count
