#!/usr/bin/env bash
# The GPU machine's side of a GPU run (see docs/gpu.md and tools/gpu/gpu.py). Run it in a copy of the checkout that
# holds the parts tools/gpu/prepare.sh (or prepare-bench.sh) wrote, from the checkout's root:
#
#   bash tools/gpu/remote.sh stage                                  preflight; with --part-mib: after each part
#                                                                    but the last
#   bash tools/gpu/remote.sh train ARTIFACT [MAX_STEPS [BATCH]]    continue training ARTIFACT (prepare.sh)
#   bash tools/gpu/remote.sh bench ARTIFACT                         the benchmark's GPU pass (prepare-bench.sh)
#
# Everything to bring back lands in the output folder, NASBENCH_GPU_OUT (default: gpu-out/ in the checkout).
#
# stage: copies the parts present in the checkout (.gpu-carry/pK: the base GGUF and, in part 1, the wheels and the
# text data) to the staging folder NASBENCH_GPU_STAGE outside the checkout (so a size-capped transfer may replace
# the checkout's copy of a part with the next one); the first time, it also installs the wheels and runs a preflight
# (versions, GPU, one tiny LoRA + KL step in bf16 through nasbench) into the output folder: if it fails, stop there.
# train: stages what is there, joins the GGUF into a stand-in package directory on PYTHONPATH (so nasbench finds it
# with importlib), continues training ARTIFACT (nasbench train --resume-from, the recovery preset) for
# MAX_STEPS x BATCH x 512 tokens (default: 30M tokens at BATCH 64), packs the newest checkpoint and leaves in the
# output folder: artifact.tar.NNN + SHA256SUMS (parts of at most prepare's --part-mib, else one), run-curve.jsonl,
# timing.json (tokens/s, GPU, versions, timeline) and train.log. Out of GPU memory before the first checkpoint, it
# tries again with half the batch. On a machine held for a fixed time, NASBENCH_GPU_SOFT_S sets a deadline: the
# schedule is fitted to it (--time-budget) and training stops right after the first checkpoint past it (at
# NASBENCH_GPU_HARD_S at the latest), so the pack still runs.
#
# Settings (environment): NASBENCH_GPU_OUT (gpu-out), NASBENCH_GPU_SOFT_S / _HARD_S (unset: no deadline; _HARD_S
# defaults to _SOFT_S + 50), NASBENCH_GPU_TOKENS (30000000: the default MAX_STEPS), NASBENCH_GPU_BATCH (64),
# NASBENCH_GPU_SEQ_LEN (512), NASBENCH_GPU_EVAL_EVERY (100 steps), NASBENCH_GPU_CHECKPOINT_MINUTES (0.5) / _EVERY
# (100 steps), NASBENCH_GPU_PRECISION (bf16-mixed), NASBENCH_GPU_LR (the preset's), NASBENCH_GPU_ID (the new
# artifact's id: ARTIFACT's name + -gpu), NASBENCH_GPU_SPACE, NASBENCH_GPU_PROBES, NASBENCH_GPU_STAGE
# (/tmp/nasbench-carry), NASBENCH_GPU_PYTHON (python3), NASBENCH_GPU_PREFLIGHT (1; 0: skip), NASBENCH_GPU_CARRY
# (.gpu-carry; prepare-bench.sh's parts: .gpu-carry-bench).
#
# bench: stages and joins as train does, then runs the plan part 1 carried (tools/gpu/gpu_bench.py): ppl of the
# trained supernet for the archs lacking it, ppl of the sorted and the pretrained supernet, lm-eval accuracy. Every
# finished arch's rows are already in the output folder's rows.jsonl (one JSON line each), so a run that is killed
# keeps them; at the end the folder also holds bench.json (per-pass counts and seconds, GPU, versions), bench.log and
# SHA256SUMS. With NASBENCH_GPU_SOFT_S no arch starts after that many seconds, and each pass gets its share of the
# window (gpu.py plan --shares). NASBENCH_GPU_BENCH_ARGS: extra `gpu.py bench` flags (--passes ...).
#
# Back here: tools/gpu/fetch.sh OUTPUT_FOLDER (train) or tools/gpu/fetch-bench.sh OUTPUT_FOLDER (bench).
set -euo pipefail
T0=$(date +%s.%N)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${NASBENCH_GPU_PYTHON:-python3}
CARRY=${NASBENCH_GPU_CARRY:-.gpu-carry}
STAGE=${NASBENCH_GPU_STAGE:-/tmp/nasbench-carry}
OUT_DIR=${NASBENCH_GPU_OUT:-$ROOT/gpu-out}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$STAGE/site:$STAGE/pkg:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mode=${1:?usage: remote.sh stage | remote.sh train ARTIFACT [MAX_STEPS [BATCH]] | remote.sh bench ARTIFACT}
gpu() { "$PY" "$HERE/gpu.py" "$@"; }
since() { "$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$T0"; }
# seconds left until the soft stop, less a margin for the end's checkpoint: the training's --time-budget, so its
# cosine schedule ends annealed before the watch would cut it (only with a deadline)
budget() { "$PY" -c "import sys, time; print(max(30, round(float(sys.argv[2]) - (time.time() - float(sys.argv[1])) - 15)))" "$T0" "$SOFT"; }

install_wheels() {
  if ls "$STAGE"/*.whl >/dev/null 2>&1 && [ ! -f "$STAGE/site/.installed" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STAGE/site" \
      "$STAGE"/*.whl
    touch "$STAGE/site/.installed"
  fi
}

case "$mode" in
  stage)
    gpu stage --carry "$CARRY" --stage "$STAGE"
    install_wheels
    if [ "${NASBENCH_GPU_PREFLIGHT:-1}" = 1 ] && [ -f "$STAGE/plan.json" ] && [ ! -f "$STAGE/preflight.json" ]; then
      gpu bench-preflight --out "$STAGE/preflight.json" \
        || echo "gpu: PREFLIGHT FAILED (see preflight.json): the accuracy pass will be skipped unless it is fixed"
      cp "$STAGE/preflight.json" "$OUT_DIR/preflight.json"
    elif [ "${NASBENCH_GPU_PREFLIGHT:-1}" = 1 ] && [ -f "$STAGE/data.tar.gz" ] \
        && [ ! -f "$STAGE/preflight.json" ]; then
      gpu preflight --out "$STAGE/preflight.json" \
        || echo "gpu: PREFLIGHT FAILED (see preflight.json): fix it before the training run"
      cp "$STAGE/preflight.json" "$OUT_DIR/preflight.json"
    fi
    echo "gpu: stage done in $(since) s"
    ;;
  train)
    ART=${2:?usage: remote.sh train ARTIFACT [MAX_STEPS [BATCH]]}
    BATCH=${4:-${NASBENCH_GPU_BATCH:-64}}
    SEQ=${NASBENCH_GPU_SEQ_LEN:-512}
    TOKENS=${NASBENCH_GPU_TOKENS:-30000000}
    STEPS=${3:-$(( (TOKENS + BATCH * SEQ - 1) / (BATCH * SEQ) ))}
    SPACE=${NASBENCH_GPU_SPACE:-spaces/smollm2-135m.yaml}
    PROBES=${NASBENCH_GPU_PROBES:-results/bands/smollm2-135m-probes.jsonl}
    PRECISION=${NASBENCH_GPU_PRECISION:-bf16-mixed}
    SOFT=${NASBENCH_GPU_SOFT_S:-}
    HARD=${NASBENCH_GPU_HARD_S:-}
    if [ -n "$SOFT" ] && [ -z "$HARD" ]; then HARD=$("$PY" -c "import sys; print(float(sys.argv[1]) + 50)" "$SOFT"); fi
    NEW_ID=${NASBENCH_GPU_ID:-$(basename "$ART")-gpu}
    RUN="$STAGE/run"
    [ -f "$ART/manifest.json" ] || { echo "gpu: $ART is not a supernet artifact (no manifest.json)" >&2; exit 2; }
    gpu stage --carry "$CARRY" --stage "$STAGE"
    gpu assemble --stage "$STAGE"
    install_wheels
    export NASBENCH_DATA_DIR="$STAGE/data"
    rm -rf "$RUN" "$STAGE/artifact" "$STAGE/artifact.tar" "$STAGE/watch.json" "$STAGE/attempt.log" \
      "$STAGE/pack.json"
    # an earlier run's files in the output folder would be taken for this one's (preflight.json stays)
    rm -f "$OUT_DIR"/artifact.tar.* "$OUT_DIR/SHA256SUMS" "$OUT_DIR/train.log" "$OUT_DIR/run-curve.jsonl" \
      "$OUT_DIR/timing.json"
    mkdir -p "$STAGE/artifact"
    ready=$(since)
    while :; do
      echo "gpu: training $ART for $STEPS steps x $BATCH x $SEQ tokens" \
        "${SOFT:+(soft stop at +${SOFT}s, hard at +${HARD}s)}"
      rm -rf "$RUN"
      rc=0
      gpu watch --run "$RUN" --t0 "$T0" ${SOFT:+--soft "$SOFT" --hard "$HARD"} --poll "${NASBENCH_GPU_POLL_S:-2}" \
        --log "$STAGE/attempt.log" --status "$STAGE/watch.json" -- \
        "$PY" "$HERE/gpu.py" nasbench train "$SPACE" --preset recovery --strategy importance-grid-params --kd kl \
        --peft lora --resume-from "$ART" --out "$RUN" --max-steps "$STEPS" --batch-size "$BATCH" --seq-len "$SEQ" \
        --eval-every "${NASBENCH_GPU_EVAL_EVERY:-100}" --eval-archs "$PROBES" --precision "$PRECISION" \
        --checkpoint-minutes "${NASBENCH_GPU_CHECKPOINT_MINUTES:-0.5}" \
        --checkpoint-every "${NASBENCH_GPU_CHECKPOINT_EVERY:-100}" ${NASBENCH_GPU_LR:+--lr "$NASBENCH_GPU_LR"} \
        ${SOFT:+--time-budget "$(budget)"} || rc=$?
      cat "$STAGE/attempt.log" >>"$OUT_DIR/train.log"
      # out of memory before the first checkpoint: half the batch (same token budget unless MAX_STEPS was given)
      if [ "$rc" != 0 ] && [ "$BATCH" -gt 8 ] \
          && grep -q "OutOfMemoryError\|CUDA out of memory" "$STAGE/attempt.log"; then
        BATCH=$(( BATCH / 2 ))
        [ -n "${3:-}" ] || STEPS=$(( (TOKENS + BATCH * SEQ - 1) / (BATCH * SEQ) ))
        echo "gpu: out of GPU memory: again with batch $BATCH"
        rm -f "$STAGE/attempt.log"
        continue
      fi
      rm -f "$STAGE/attempt.log"
      break
    done
    trained=$(since)
    if grep -q '"stopped_by": "error"' "$STAGE/watch.json" 2>/dev/null; then
      echo "gpu: WARNING: the training process failed; last lines of train.log:"
      tail -c 3000 "$OUT_DIR/train.log" | tr '\r' '\n' | tail -n 25
    fi
    [ "$rc" = 0 ] || echo "gpu: no checkpoint to pack (rc $rc)"
    prc=0
    if [ "$rc" = 0 ]; then
      gpu nasbench pack "$SPACE" "$RUN" --out "$STAGE/artifact/$NEW_ID" >"$STAGE/pack.json" || prc=$?
      [ "$prc" = 0 ] && gpu bundle --artifact "$STAGE/artifact/$NEW_ID" --out "$OUT_DIR" --tmp "$STAGE" || prc=1
    fi
    packed=$(since)
    [ -f "$RUN/curve.jsonl" ] && cp "$RUN/curve.jsonl" "$OUT_DIR/run-curve.jsonl"
    gpu report --run "$RUN" --status "$STAGE/watch.json" --pack "$STAGE/pack.json" \
      --preflight "$STAGE/preflight.json" --t0 "$T0" --out "$OUT_DIR/timing.json" \
      --timeline "{\"ready\": $ready, \"trained\": $trained, \"packed\": $packed}" || true
    ls -l "$OUT_DIR"
    if [ "$rc" != 0 ] || [ "$prc" != 0 ]; then exit 1; fi
    echo "gpu: done in $(since) s: artifact $NEW_ID in $OUT_DIR (copy that folder back; there: tools/gpu/fetch.sh DIR)"
    ;;
  bench)
    ART=${2:?usage: remote.sh bench ARTIFACT}
    SOFT=${NASBENCH_GPU_SOFT_S:-}
    [ -f "$ART/manifest.json" ] || { echo "gpu: $ART is not a supernet artifact (no manifest.json)" >&2; exit 2; }
    gpu stage --carry "$CARRY" --stage "$STAGE"
    gpu assemble --stage "$STAGE"
    install_wheels
    [ -f "$STAGE/plan.json" ] || { echo "gpu: no plan.json staged (part 1 of a prepare-bench.sh run)" >&2; exit 3; }
    export NASBENCH_DATA_DIR="$STAGE/data" LM_HARNESS_CACHE_PATH="$STAGE/lm-eval-cache" \
      HF_DATASETS_CACHE="$STAGE/hf-datasets" TQDM_DISABLE=1
    echo "gpu: bench ready at +$(since) s${SOFT:+: no arch starts after +${SOFT}s}"
    rc=0
    # shellcheck disable=SC2086
    gpu bench --plan "$STAGE/plan.json" --artifact "$ART" --stage "$STAGE" --out "$OUT_DIR" --t0 "$T0" \
      ${SOFT:+--soft "$SOFT"} \
      ${NASBENCH_GPU_BENCH_ARGS:-} >"$OUT_DIR/bench.log" 2>&1 || rc=$?
    tail -c 4000 "$OUT_DIR/bench.log"
    (cd "$OUT_DIR" && ls rows.jsonl bench.json 2>/dev/null | xargs -r sha256sum >SHA256SUMS)
    ls -l "$OUT_DIR"
    echo "gpu: bench done in $(since) s (rc $rc): copy $OUT_DIR back; there: tools/gpu/fetch-bench.sh DIR"
    exit "$rc"
    ;;
  *)
    echo "usage: remote.sh stage | remote.sh train ARTIFACT [MAX_STEPS [BATCH]] | remote.sh bench ARTIFACT" >&2
    exit 2
    ;;
esac
