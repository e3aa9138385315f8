#!/usr/bin/env bash
# Here, before the GPU calls: bash tools/gpu/prepare.sh results/supernets/<id>
#
# Writes .gpu-carry/p1 .. pN (ignored by git): the base GGUF gzip-compressed and cut so that each part plus the
# repository tree (measured now: commit or place the artifact first) fits the device tool's 64 MiB per call; part 1
# also carries the wheels the device lacks (gguf and peft at the versions of constraints.txt) and the text the run
# reads (the space's recovery and perplexity sources from NASBENCH_DATA_DIR). Every part has SHA256SUMS and
# base.json. Prints the `run` calls to make, in order and back to back (.gpu-carry/calls.json holds them too).
# Extra arguments go to `tools/gpu/gpu.py prepare` (--space, --margin-mib, --base/--package/--file, --tree-bytes).
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
