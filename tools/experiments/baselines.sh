#!/usr/bin/env bash
# The pruning baselines of the report's S5 under the sub-networks' protocol, in three resumable steps:
#
#   accuracy   every baseline model's accuracy scored again with the packed scorer the sub-networks were scored with
#              (rows stored before SCORER_SINCE came from lm-eval's HFLM loop and are replaced); a baseline of
#              several archs gets accuracy on its first 4 (sliced has 16, whose first arch is the one scored before;
#              dsa on all 16), so its Table 1 row is their mean and says of how many. sliced-recovered keeps no weights
#              after its rows are stored, so its models are distilled again (seed 0, as before).
#   perplexity every arch of the DSA baselines gets its perplexity (their first 4 had it), so that their findings rest
#              on 16 archs: a paired test over 4 cannot reach p < 0.05.
#   recovered  SliceGPT (10/20/30%) and DSA (50/75%) models distilled with the supernet's recovery recipe and budget
#              (286,720 tokens each, as sliced-recovered and smollm2-135m-recovery-1), every row group measured; DSA
#              on the first 4 archs of each band, two per band first, so that a run stopped early has both bands
#              (~10-14 min per model on a 2-core Xeon, training and measuring).
#   latency    every baseline model (S6's standalone models too) timed alternately with the space's full model
#              (latency_rel, decode over 16 tokens), replacing rows stored before LATENCY_SINCE; run it on an idle
#              machine right after the benchmark's own latency_rel pass, on the same machine, so that one protocol
#              and one reference time every latency of the table. Shape-only rows: recovered models are timed
#              untrained.
#
# Usage: tools/experiments/baselines.sh STEP...   (NASBENCH_DATA_DIR must point at the data directory; DB defaults to
# the benchmark's; LATENCY_SINCE, an ISO time (UTC) such as the start of the latency pass, is required by `latency`,
# and REPEATS (default 24) sets its pairs per model, as the benchmark's pass: tools/experiments/latency.sh baselines).
# Each command resumes where it stopped (rows are committed per model and metric group).
set -euo pipefail
cd "$(dirname "$0")/../.."
space=spaces/smollm2-135m.yaml
db=${DB:-results/smollm2-135m.duckdb}
order=results/supernets/smollm2-135m-recovery-1  # the importance order every sliced baseline was cut in
budget=286720
work=results/scratch/baselines
SCORER_SINCE=2026-12-06T07:00  # the stored baseline accuracies are older; anything written by this script is newer

# one line per baseline model set: its method flags
models=(
  "--method magnitude-2:4"
  "--method wanda-2:4"
  "--method sparsegpt-2:4"
  "--method slicegpt --slicing 0.1"
  "--method slicegpt --slicing 0.2"
  "--method slicegpt --slicing 0.3"
  "--method sliced --target 0.5 --supernet $order"
  "--method sliced --target 0.75 --supernet $order"
  "--method sliced-recovered --target 0.5 --supernet $order --tokens $budget --n-archs 1 --work-dir $work"
  "--method sliced-recovered --target 0.75 --supernet $order --tokens $budget --n-archs 1 --work-dir $work"
  "--method dsa --target 0.5 --supernet $order"
  "--method dsa --target 0.75 --supernet $order"
)
recovered=(
  "--method slicegpt --slicing 0.1 --tokens $budget --work-dir $work"
  "--method slicegpt --slicing 0.2 --tokens $budget --work-dir $work"
  "--method slicegpt --slicing 0.3 --tokens $budget --work-dir $work"
  "--method dsa --target 0.5 --supernet $order --tokens $budget --work-dir $work --n-archs 2"
  "--method dsa --target 0.75 --supernet $order --tokens $budget --work-dir $work --n-archs 2"
  "--method dsa --target 0.5 --supernet $order --tokens $budget --work-dir $work --n-archs 4"
  "--method dsa --target 0.75 --supernet $order --tokens $budget --work-dir $work --n-archs 4"
)
accuracy=(--metrics acc --tasks arc_easy,arc_challenge,piqa,hellaswag,winogrande --limit-items 500)
# S6's standalone models (one sliced-recovered arch per file): timed with the others
standalone=()
for f in results/standalone/smollm2-135m-*.jsonl; do
  p=${f##*-}; p=${p%.jsonl}
  standalone+=("--method sliced-recovered --target 0.$p --archs $f --supernet $order --tokens $budget --work-dir $work")
done

for step in "$@"; do
  case "$step" in
    accuracy)
      for m in "${models[@]}"; do
        # shellcheck disable=SC2086  # the method flags are words
        case "$m" in *"--method sliced "*) m="$m --n-archs 4" ;; esac
        nasbench baseline "$space" $m "${accuracy[@]}" --dtype bfloat16 --remeasure-before "$SCORER_SINCE" --db "$db"
      done ;;
    perplexity)
      for target in 0.5 0.75; do
        nasbench baseline "$space" --method dsa --target $target --supernet $order --metrics ppl --dtype bfloat16 \
          --db "$db"
      done ;;
    recovered)
      for m in "${recovered[@]}"; do
        # shellcheck disable=SC2086
        nasbench baseline "$space" $m --metrics ppl,acc,latency,memory "${accuracy[@]:2}" --decode-tokens 16 \
          --dtype bfloat16 --db "$db"
      done ;;
    latency)
      : "${LATENCY_SINCE:?latency needs LATENCY_SINCE, an ISO time (UTC): the start of the latency pass}"
      for m in "${models[@]}" "${recovered[@]}" "${standalone[@]}"; do
        # shellcheck disable=SC2086
        nasbench baseline "$space" $m --metrics latency_rel --decode-tokens 16 \
          --latency-repeats "${REPEATS:-24}" --dtype bfloat16 --remeasure-before "$LATENCY_SINCE" --db "$db"
      done ;;
    *) echo "baselines.sh: unknown step '$step'; one of accuracy perplexity recovered latency" >&2
       exit 2 ;;
  esac
done
