#!/usr/bin/env bash
# Here, before a GPU run: bash tools/gpu/prepare.sh results/supernets/<id> [--part-mib N] [gpu.py prepare options]
#
# Writes .gpu-carry/p1 (ignored by git) with what the GPU machine needs beside the checkout: the base GGUF,
# gzip-compressed (it is the file of an installed Python package here), the wheels nasbench needs beyond torch and
# transformers for training (gguf and peft at the versions of constraints.txt; NASBENCH_GPU_NO_WHEELS=1: none, for a
# machine that installs them itself) and the text the run reads (the space's recovery and perplexity sources from
# NASBENCH_DATA_DIR). Then copy the checkout with .gpu-carry/ to the GPU machine and run tools/gpu/remote.sh there
# (docs/gpu.md). Where one transfer is capped in size, --part-mib N cuts this into p1 .. pK of at most N MiB each
# (--count-tree: each transfer also carries the checkout, whose size is then counted in every part); every part has
# SHA256SUMS and base.json, and .gpu-carry/parts.json lists them with the command to run after each. Extra arguments
# go to `tools/gpu/gpu.py prepare` (--space, --part-mib, --count-tree, --base/--package/--file, --tree-bytes).
set -euo pipefail
ART=${1:?usage: prepare.sh ARTIFACT [gpu.py prepare options]}
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python}
CARRY=${NASBENCH_GPU_CARRY:-.gpu-carry}
WHEELS=${NASBENCH_GPU_WHEELS:-$CARRY.wheels}
if [ "${NASBENCH_GPU_NO_WHEELS:-0}" != 1 ]; then
  mkdir -p "$WHEELS"
  for name in gguf peft; do
    pin=$(grep -i "^$name==" "$ROOT/constraints.txt" | head -n 1)
    [ -n "$pin" ] || { echo "prepare: $name is not pinned in constraints.txt" >&2; exit 2; }
    ls "$WHEELS"/"$name"-"${pin#*==}"-*.whl >/dev/null 2>&1 \
      || "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" "$pin"
  done
fi
"$PY" "$HERE/gpu.py" prepare "$ART" --carry "$CARRY" \
  $( [ "${NASBENCH_GPU_NO_WHEELS:-0}" != 1 ] && echo --wheels "$WHEELS" ) "$@"
