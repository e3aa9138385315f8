"""The ``run`` verb: the whole pipeline of a preset (:mod:`nasbench.pipeline`), skipping what is done."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from nasbench.cli._common import DATA_DIR_HELP


def _cmd_run(args: argparse.Namespace) -> int:
    from nasbench import data
    from nasbench.pipeline import get_preset, run_pipeline
    from nasbench.space import load_space

    preset = get_preset(args.preset)
    space = load_space(args.space)
    data_dir = data.data_dir(args.data_dir)
    start = time.perf_counter()
    manifest = run_pipeline(space, preset, supernet=args.run_supernet, root=args.results, data_dir=data_dir,
                            echo=lambda line: print(line, flush=True))
    report = manifest.stage("report").get("outputs", {}).get("report")
    print(json.dumps({"run": space.name, "preset": preset.name, "stages": manifest.statuses(),
                      "manifest": str(manifest.path), "report": report,
                      "seconds": round(time.perf_counter() - start, 1)}))
    return 0


def add_verbs(verbs: Any) -> None:
    from nasbench.pipeline import PRESETS, STAGES

    p = verbs.add_parser("run", help=f"the whole pipeline ({' -> '.join(STAGES)}), each stage skipped when done "
                                     f"for the same inputs and resumed when interrupted")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick",
                   help="quick: the shipped supernet on a small plan, <= 15 min on 2 CPU cores, its own scratch DB; "
                        "full: the shipped benchmark's protocol (nasbench build, 2,000 archs) (default quick)")
    # its own dest: the weights directory is resolved by the pipeline (the shared --supernet normalisation would turn
    # a directory into an id)
    p.add_argument("--supernet", dest="run_supernet", metavar="ARTIFACT",
                   help="a packed artifact, a trained directory, an artifact id under results/supernets/ or "
                        "`pretrained` (default: the artifact of the same space and hash trained on the most tokens; "
                        "none: importance + train first)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root: band files, artifacts and the presets' DBs and run directories (default "
                        "results)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.set_defaults(func=_cmd_run)
