#!/usr/bin/env bash
# Here, after the benchmark's GPU pass: bash tools/gpu/fetch-bench.sh DIR [--db results/smollm2-135m.duckdb]
#
# DIR: the output folder of `remote.sh bench` (NASBENCH_GPU_OUT there, default gpu-out/), copied back from the GPU
# machine. Checks rows.jsonl against SHA256SUMS (a killed run has none: every complete line is imported), keeps
# rows.jsonl.gz, bench.json and the log's tail in
# results/gpu-runs/bench-<stamp>/, replays the rows into the DB through the store's own write path
# (nasbench.profile.jsonl.import_rows: rows already there are skipped) and prints the GPU-vs-CPU perplexity check.
# The DB must not be open for writing elsewhere (a `nasbench build` merging into it): run it between two build runs.
set -euo pipefail
DIR=${1:?usage: fetch-bench.sh DIR [--db DB] [--space SPACE]}
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"${PYTHON:-python}" "$HERE/gpu.py" fetch-bench "$DIR" "$@"
