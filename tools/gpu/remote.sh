#!/usr/bin/env bash
# The device side of the prepared GPU run (see tools/gpu/gpu.py and the README, "On a lent GPU"). Run from the
# repository root by the device tool, with $OUT set:
#
#   bash tools/gpu/remote.sh stage                                  calls 1..N-1, each carrying .gpu-carry/pK
#   bash tools/gpu/remote.sh train ARTIFACT [MAX_STEPS [BATCH]]    call N, carrying the last part
#   bash tools/gpu/remote.sh bench ARTIFACT                         call N of a `prepare-bench.sh` run
#
# stage: copies the carried parts of the base GGUF (and, from part 1, the wheels and the text data) to $STAGE outside
# the tree, where they live while the machine stays warm (~30 s after a call); the first call also installs the
# wheels and runs a preflight (versions, GPU, one tiny LoRA + KL step in bf16 through nasbench) into $OUT.
# train: joins the GGUF into a stand-in package directory on PYTHONPATH (so nasbench finds it with importlib),
# continues training ARTIFACT (nasbench train --resume-from) for MAX_STEPS x BATCH x 512 tokens (default: 30M tokens
# at BATCH 64; --time-budget shrinks the schedule to the steps that end before the soft stop), stops it right after
# a checkpoint once NASBENCH_GPU_SOFT_S seconds of the call passed (at
# NASBENCH_GPU_HARD_S at the latest), packs the newest checkpoint and leaves in $OUT: artifact.tar.NNN (parts below
# 16 MiB) + SHA256SUMS, run-curve.jsonl, timing.json (tokens/s, GPU, versions, timeline) and train.log. Out of GPU
# memory before the first checkpoint, it tries again with half the batch.
#
# Settings (environment): NASBENCH_GPU_SOFT_S / _HARD_S (440 / 490 s after the call's start), NASBENCH_GPU_TOKENS
# (30000000: the default MAX_STEPS), NASBENCH_GPU_BATCH (64), NASBENCH_GPU_SEQ_LEN (512), NASBENCH_GPU_EVAL_EVERY
# (100 steps), NASBENCH_GPU_CHECKPOINT_MINUTES (0.5) / _EVERY (100 steps), NASBENCH_GPU_PRECISION (bf16-mixed),
# NASBENCH_GPU_LR (the preset's), NASBENCH_GPU_ID (the new artifact's id: ARTIFACT's name + -h200),
# NASBENCH_GPU_SPACE, NASBENCH_GPU_PROBES, NASBENCH_GPU_STAGE (/tmp/nasbench-carry), NASBENCH_GPU_PYTHON (python3),
# NASBENCH_GPU_PREFLIGHT (1; 0: skip).
#
# bench: joins the GGUF as train does, then runs the plan part 1 carried (tools/gpu/gpu_bench.py): ppl of the trained
# supernet for the archs lacking it, ppl of the sorted and the pretrained supernet, lm-eval accuracy; no arch starts
# after NASBENCH_GPU_SOFT_S seconds of the call (default 520: give timeout_s >= SOFT + 60). Every finished arch's rows
# are already in $OUT/rows.jsonl (one JSON line each), so a call cut at its limit still returns them; at the end
# $OUT also holds bench.json (per-pass counts and seconds, GPU, versions), bench.log and SHA256SUMS. Bring them in
# with tools/gpu/fetch-bench.sh FILES_AT. NASBENCH_GPU_BENCH_ARGS: extra `gpu.py bench` flags (--passes ...).
set -euo pipefail
T0=$(date +%s.%N)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${NASBENCH_GPU_PYTHON:-python3}
CARRY=${NASBENCH_GPU_CARRY:-.gpu-carry}
STAGE=${NASBENCH_GPU_STAGE:-/tmp/nasbench-carry}
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$STAGE/site:$STAGE/pkg:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mode=${1:?usage: remote.sh stage | remote.sh train ARTIFACT [MAX_STEPS [BATCH]] | remote.sh bench ARTIFACT}
gpu() { "$PY" "$HERE/gpu.py" "$@"; }
since() { "$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$T0"; }
# seconds left until the soft stop, less a margin for the end's checkpoint: the training's --time-budget, so its
# cosine schedule ends annealed before the watch would cut it
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
      cp "$STAGE/preflight.json" "$OUT/preflight.json"
    elif [ "${NASBENCH_GPU_PREFLIGHT:-1}" = 1 ] && [ -f "$STAGE/data.tar.gz" ] \
        && [ ! -f "$STAGE/preflight.json" ]; then
      gpu preflight --out "$STAGE/preflight.json" \
        || echo "gpu: PREFLIGHT FAILED (see preflight.json): fix it before spending the training call"
      cp "$STAGE/preflight.json" "$OUT/preflight.json"
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
    SOFT=${NASBENCH_GPU_SOFT_S:-440}
    HARD=${NASBENCH_GPU_HARD_S:-490}
    NEW_ID=${NASBENCH_GPU_ID:-$(basename "$ART")-h200}
    RUN="$STAGE/run"
    [ -f "$ART/manifest.json" ] || { echo "gpu: $ART is not a supernet artifact (no manifest.json)" >&2; exit 2; }
    gpu stage --carry "$CARRY" --stage "$STAGE"
    gpu assemble --stage "$STAGE"
    install_wheels
    export NASBENCH_DATA_DIR="$STAGE/data"
    rm -rf "$RUN" "$STAGE/artifact" "$STAGE/artifact.tar" "$STAGE/watch.json" "$STAGE/attempt.log" \
      "$STAGE/pack.json"
    mkdir -p "$STAGE/artifact"
    ready=$(since)
    while :; do
      echo "gpu: training $ART for $STEPS steps x $BATCH x $SEQ tokens (soft stop at +${SOFT}s, hard at +${HARD}s)"
      rm -rf "$RUN"
      rc=0
      gpu watch --run "$RUN" --t0 "$T0" --soft "$SOFT" --hard "$HARD" --poll "${NASBENCH_GPU_POLL_S:-2}" \
        --log "$STAGE/attempt.log" --status "$STAGE/watch.json" -- \
        "$PY" "$HERE/gpu.py" nasbench train "$SPACE" --preset recovery --strategy importance-grid-params --kd kl \
        --peft lora --resume-from "$ART" --out "$RUN" --max-steps "$STEPS" --batch-size "$BATCH" --seq-len "$SEQ" \
        --eval-every "${NASBENCH_GPU_EVAL_EVERY:-100}" --eval-archs "$PROBES" --precision "$PRECISION" \
        --checkpoint-minutes "${NASBENCH_GPU_CHECKPOINT_MINUTES:-0.5}" \
        --checkpoint-every "${NASBENCH_GPU_CHECKPOINT_EVERY:-100}" ${NASBENCH_GPU_LR:+--lr "$NASBENCH_GPU_LR"} \
        --time-budget "$(budget)" || rc=$?
      cat "$STAGE/attempt.log" >>"$OUT/train.log"
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
      tail -c 3000 "$OUT/train.log" | tr '\r' '\n' | tail -n 25
    fi
    [ "$rc" = 0 ] || echo "gpu: no checkpoint to pack (rc $rc)"
    prc=0
    if [ "$rc" = 0 ]; then
      gpu nasbench pack "$SPACE" "$RUN" --out "$STAGE/artifact/$NEW_ID" >"$STAGE/pack.json" || prc=$?
      [ "$prc" = 0 ] && gpu bundle --artifact "$STAGE/artifact/$NEW_ID" --out "$OUT" --tmp "$STAGE" || prc=1
    fi
    packed=$(since)
    [ -f "$RUN/curve.jsonl" ] && cp "$RUN/curve.jsonl" "$OUT/run-curve.jsonl"
    gpu report --run "$RUN" --status "$STAGE/watch.json" --pack "$STAGE/pack.json" \
      --preflight "$STAGE/preflight.json" --t0 "$T0" --out "$OUT/timing.json" \
      --timeline "{\"ready\": $ready, \"trained\": $trained, \"packed\": $packed}" || true
    ls -l "$OUT"
    if [ "$rc" != 0 ] || [ "$prc" != 0 ]; then exit 1; fi
    echo "gpu: done in $(since) s: artifact $NEW_ID in $OUT (bring it in with tools/gpu/fetch.sh FILES_AT)"
    ;;
  bench)
    ART=${2:?usage: remote.sh bench ARTIFACT}
    SOFT=${NASBENCH_GPU_SOFT_S:-520}
    [ -f "$ART/manifest.json" ] || { echo "gpu: $ART is not a supernet artifact (no manifest.json)" >&2; exit 2; }
    gpu stage --carry "$CARRY" --stage "$STAGE"
    gpu assemble --stage "$STAGE"
    install_wheels
    [ -f "$STAGE/plan.json" ] || { echo "gpu: no plan.json staged (part 1 of a prepare-bench.sh run)" >&2; exit 3; }
    export NASBENCH_DATA_DIR="$STAGE/data" LM_HARNESS_CACHE_PATH="$STAGE/lm-eval-cache" \
      HF_DATASETS_CACHE="$STAGE/hf-datasets" TQDM_DISABLE=1
    echo "gpu: bench ready at +$(since) s: no arch starts after +${SOFT}s"
    rc=0
    # shellcheck disable=SC2086
    gpu bench --plan "$STAGE/plan.json" --artifact "$ART" --stage "$STAGE" --out "$OUT" --t0 "$T0" --soft "$SOFT" \
      ${NASBENCH_GPU_BENCH_ARGS:-} >"$OUT/bench.log" 2>&1 || rc=$?
    tail -c 4000 "$OUT/bench.log"
    (cd "$OUT" && ls rows.jsonl bench.json 2>/dev/null | xargs -r sha256sum >SHA256SUMS)
    ls -l "$OUT"
    echo "gpu: bench done in $(since) s (rc $rc): bring the rows in with tools/gpu/fetch-bench.sh FILES_AT"
    exit "$rc"
    ;;
  *)
    echo "usage: remote.sh stage | remote.sh train ARTIFACT [MAX_STEPS [BATCH]] | remote.sh bench ARTIFACT" >&2
    exit 2
    ;;
esac
