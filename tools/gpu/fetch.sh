#!/usr/bin/env bash
# Here, after a GPU training run: bash tools/gpu/fetch.sh DIR [--force]
#
# DIR: the output folder of `remote.sh train` (NASBENCH_GPU_OUT there, default gpu-out/), copied back from the GPU
# machine. Checks every part against SHA256SUMS, joins them,
# unpacks the artifact to results/supernets/<id>/ (its manifest's sha256 of every file checked with
# nasbench.supernet.artifact.read_manifest), keeps timing.json, run-curve.jsonl and the tail of train.log in
# results/gpu-runs/<id>/, and prints how to profile it.
set -euo pipefail
DIR=${1:?usage: fetch.sh DIR [--force]}
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"${PYTHON:-python}" "$HERE/gpu.py" fetch "$DIR" "$@"
