#!/usr/bin/env bash
# The training factorial behind the report's S2-S4: arms trained at one token budget B = 140 steps x 4 x 512 =
# 286,720 tokens, each the shipped recipe (recovery preset: KL to the frozen pretrained model, LoRA r=32 + norms,
# the sorted supernet, lr 5e-4, seed 0) except for one factor:
#
#   shipped-seed0  importance-grid-params, kl, seed 0: the reference (smollm2-135m-recovery-1 is the same recipe,
#                  trained by an earlier version of the code)
#   shipped-seed1  importance-grid-params, kl, seed 1
#   standard       importance-standard: the full model only, then sliced (fine-tune-then-slice)
#   kd-none        importance-grid-params with the LM loss on the recovery text instead of KL
#   sandwich       importance-sandwich: largest + smallest + 2 uniformly random sub-networks
#   random         importance-random: one uniformly random sub-network per step
#   calibrate-mag  importance-calibrate-mag: one fixed arch per parameter bin, the largest mean |w|
#
# Usage: tools/experiments/factorial.sh ARM...   (NASBENCH_DATA_DIR must point at the data directory)
# Each arm trains into results/scratch/factorial/<arm> (checkpointed every 10 minutes; the same command resumes a
# killed run), then its 32 band archs + the full and the smallest sub-network are profiled (ppl, 4,096 tokens,
# bf16) into results/shards/factorial-<arm>.duckdb and its curve is copied to results/curves/factorial-<arm>/.
# `nasbench merge results/smollm2-135m.duckdb SHARD` then brings the shard into the benchmark DB, where `nasbench
# report` finds the arms; the merged shard need not be kept. An arm whose curve is in results/curves/ is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
space=spaces/smollm2-135m.yaml
sorted=results/scratch/sorted
mkdir -p results/scratch/factorial results/shards
[ -d "$sorted" ] || nasbench importance "$space" --out "$sorted"
cat results/bands/smollm2-135m-50.jsonl results/bands/smollm2-135m-75.jsonl > results/scratch/factorial/bands.jsonl

for arm in "$@"; do
  seed=0 kd=kl
  case "$arm" in
    shipped-seed0) strategy=importance-grid-params ;;
    shipped-seed1) strategy=importance-grid-params seed=1 ;;
    standard) strategy=importance-standard ;;
    kd-none) strategy=importance-grid-params kd=none ;;
    sandwich) strategy=importance-sandwich ;;
    random) strategy=importance-random ;;
    calibrate-mag) strategy=importance-calibrate-mag ;;
    *) echo "factorial.sh: unknown arm '$arm'; one of shipped-seed0 shipped-seed1 standard kd-none sandwich random calibrate-mag" >&2
       exit 2 ;;
  esac
  if [ -f "results/curves/factorial-$arm/train.json" ]; then  # copied last: the arm is trained and measured
    echo "factorial.sh: $arm is done (results/curves/factorial-$arm/); merge its shard if the DB lacks it" >&2
    continue
  fi
  out=results/scratch/factorial/$arm
  resume=()
  [ -f "$out/train.json" ] && resume=(--resume)
  if [ ! -f "$out/config.json" ]; then  # written when the run ends (the merged model)
    nasbench train "$space" --strategy "$strategy" --kd "$kd" --peft lora --preset recovery --seed "$seed" \
      --sorted-supernet "$sorted" --out "$out" --max-steps 140 --eval-every 40 \
      --eval-archs results/bands/smollm2-135m-probes.jsonl "${resume[@]}"
  fi
  nasbench profile "$space" --supernet "$out" --n 0 --archs results/scratch/factorial/bands.jsonl --metrics ppl \
    --ppl-tokens 4096 --dtype bfloat16 --db "results/shards/factorial-$arm.duckdb"
  mkdir -p "results/curves/factorial-$arm"
  cp "$out/curve.jsonl" "$out/train.json" "results/curves/factorial-$arm/"
done
