#!/usr/bin/env bash
# Here, before the benchmark's GPU pass: bash tools/gpu/prepare-bench.sh results/supernets/<id> [gpu.py prepare options]
#
# The benchmark's GPU pass (tools/gpu/gpu_bench.py). Writes the plan from the benchmark DB and the build's shard DBs
# (NASBENCH_GPU_PLAN_ARGS: extra `gpu.py plan` flags, e.g. --ref-archs 500 --shares 0.3,0.4,0.5,1), downloads the
# wheels the pass needs beyond torch and transformers (gguf, peft, lm-eval without its built-in tasks, datasets,
# dill, multiprocess, at the versions of constraints.txt, for the GPU machine's Python: NASBENCH_GPU_PYTHON_VERSION,
# default 3.12), and writes .gpu-carry-bench/p1 as prepare.sh does (p1..pK with --part-mib N): part 1 also holds the
# plan, the wheels, WikiText-2 test and the five tasks' files. Then copy the checkout with .gpu-carry-bench/ to the
# GPU machine and run there: NASBENCH_GPU_CARRY=.gpu-carry-bench bash tools/gpu/remote.sh bench results/supernets/<id>
set -euo pipefail
ART=${1:?usage: prepare-bench.sh ARTIFACT [gpu.py prepare options]}
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python}
CARRY=${NASBENCH_GPU_CARRY:-.gpu-carry-bench}
WHEELS=${NASBENCH_GPU_WHEELS:-$CARRY.wheels}
SPACE=${NASBENCH_GPU_SPACE:-spaces/smollm2-135m.yaml}
TASKS=${NASBENCH_GPU_TASKS:-arc_easy,arc_challenge,piqa,hellaswag,winogrande}
mkdir -p "$CARRY.tmp"
# shellcheck disable=SC2086
"$PY" "$HERE/gpu.py" plan "$ART" --space "$SPACE" --tasks "$TASKS" --out "$CARRY.tmp/plan.json" \
  ${NASBENCH_GPU_PLAN_ARGS:-}
wheel_args=()
if [ "${NASBENCH_GPU_NO_WHEELS:-0}" != 1 ]; then
  mkdir -p "$WHEELS/raw" "$WHEELS/slim"
  for name in gguf peft lm_eval datasets dill multiprocess; do
    pin=$(grep -i "^$name==" "$ROOT/constraints.txt" | head -n 1)
    [ -n "$pin" ] || { echo "prepare-bench: $name is not pinned in constraints.txt" >&2; exit 2; }
    version=${pin#*==}
    ls "$WHEELS"/raw/"$name"-"$version"-*.whl >/dev/null 2>&1 \
      || "$PY" -m pip download -q --no-deps --only-binary=:all: \
           --python-version "${NASBENCH_GPU_PYTHON_VERSION:-3.12}" --implementation cp \
           --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
           -d "$WHEELS/raw" "$pin"
  done
  rm -f "$WHEELS"/slim/*.whl
  for wheel in "$WHEELS"/raw/*.whl; do
    case "$(basename "$wheel")" in
      lm_eval-*) "$PY" "$HERE/gpu.py" slim-wheel "$wheel" --out "$WHEELS/slim" ;;
      *) cp "$wheel" "$WHEELS/slim/" ;;
    esac
  done
  wheel_args=(--wheels "$WHEELS/slim")
fi
"$PY" "$HERE/gpu.py" prepare "$ART" --mode bench --carry "$CARRY" --space "$SPACE" --sources perplexity \
  --tasks "$TASKS" --plan "$CARRY.tmp/plan.json" "${wheel_args[@]}" "$@"
rm -rf "$CARRY.tmp"
