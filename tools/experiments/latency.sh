#!/usr/bin/env bash
# The benchmark's latency measured again, in one campaign on one idle machine: every measured arch timed alternately
# with the full model with more repeats (latency_rel, and decode_rel on the retest archs), the same archs' retest at
# least an hour later, the op-level latency model timed and validated on the same machine, and the pruning baselines
# timed in the same campaign (so one protocol and one reference time every latency of the report's tables).
#
#   start      record the campaign (its start time, the CPU, the protocol) in results/retest/latency-campaign.json;
#              every later step refuses to run on another CPU model (a campaign may resume later on a machine of
#              the same kind, never on two kinds)
#   pass       the retest archs first (prefill and decode), then every other measured arch (prefill), into the
#              benchmark DB; rows stored before the campaign's start are replaced, so the command resumes
#   retest     once an hour has passed since the first pass timed them: the retest archs again, into
#              results/retest/smollm2-135m-latency-rel.duckdb, then `nasbench bench retest` prints the agreement
#   again      the retest archs' first pass timed again, into the benchmark DB (their rows replaced), then the
#              agreement printed: for a first pass that ran on a machine that was not idle (`bench retest` prints each
#              pass's median pair CV), at least an hour after the retest; every retest arch is timed again, never a
#              chosen few
#   visits     the retest archs timed again in VISITS (default 4) visits spread over the step (`profile
#              --latency-visits`: every arch visited VISITS times in turn, a fresh copy each time, all pairs
#              pooled), into the benchmark DB (their rows replaced); decode's ratio to the full model moves with the
#              machine's state over minutes, which pairs taken back to back in one visit share and cannot cancel
#   visits-retest
#              once an hour has passed since `visits` last timed them: the retest archs in visits again, into
#              the retest DB (its rows replaced), then the agreement printed
#   model      the op-level latency model timed (200 rounds), fitted on the DB's drift-cancelled latencies, stored in
#              the DB and validated on them (prefill and decode)
#   baselines  every baseline model timed the same way (tools/experiments/baselines.sh latency)
#
# Usage: tools/experiments/latency.sh STEP...   (NASBENCH_DATA_DIR must point at the data directory). The machine
# must be idle: another process on the CPU adds noise that no repeat count removes (a test suite run beside it raised
# the pairs' CV from 9% to 12-17%). REPEATS (default 24) prefill pairs per arch and DECODE_REPEATS (default REPEATS /
# 3) decode pairs of 16 tokens for the RETEST_N (default 200) retest archs; on a 2-core Intel Xeon with AMX-BF16 a
# retest arch cost about 11.5 s (prefill and decode) and any other arch 2.8 s, so `pass` took about two hours for
# 2,000 archs and `retest` about 38 minutes; `visits` with REPEATS=24 DECODE_REPEATS=24 VISITS=4 took 78.5 minutes
# (23.3 s per arch) and `visits-retest` 85.3 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
space=spaces/smollm2-135m.yaml
db=${DB:-results/smollm2-135m.duckdb}
retest_db=results/retest/smollm2-135m-latency-rel.duckdb  # its own file: no pair mixes two campaigns' machines
dir=results/retest
campaign=$dir/latency-campaign.json
repeats=${REPEATS:-24}
visits=${VISITS:-4}
decode_repeats=${DECODE_REPEATS:-$(( repeats / 3 > 3 ? repeats / 3 : 3 ))}
retest_n=${RETEST_N:-200}
supernet=results/supernets/smollm2-135m-recovery-1  # latency is weight-free: any supernet of the space extracts the
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')  # same dense shapes
mkdir -p "$dir"

field() { python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$campaign" "$1"; }

check_cpu() {
  [ -f "$campaign" ] || { echo "latency.sh: no campaign yet: run the 'start' step first" >&2; exit 2; }
  if [ "$(field cpu)" != "$cpu" ]; then
    echo "latency.sh: the campaign in $campaign runs on '$(field cpu)', this machine is '$cpu': finish it there," \
         "or delete the file to start a new campaign here (every latency is then measured again)" >&2
    exit 2
  fi
}

archs() {  # the benchmark's measured archs, the retest subset (every k-th by arch_id) first, as JSONL
  python - "$db" "$retest_n" "$dir/latency-retest.jsonl" > "$dir/latency-archs.jsonl" <<'EOF'
import json, sys
from nasbench.store import architectures, metric_values
db, n, retest_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
measured = sorted({aid for _, aid in metric_values(db, "smollm2-135m", "latency_rel")})
known = architectures(db, "smollm2-135m")
step = max(1, len(measured) // n)
retest = measured[::step][:n]
rest = [a for a in measured if a not in set(retest)]
with open(retest_file, "w") as f:
    f.writelines(json.dumps({"arch_id": a, "arch": known[a]}) + "\n" for a in retest)
for a in retest + rest:
    print(json.dumps({"arch_id": a, "arch": known[a]}))
EOF
}

profile() {  # ARCHS DB DECODE_TOKENS [REMEASURE_BEFORE [VISITS]]
  nasbench profile "$space" --supernet "$supernet" --n 0 --archs "$1" --metrics latency_rel \
    --latency-repeats "$repeats" --decode-tokens "$3" --dtype bfloat16 --remeasure-before "${4:-$(field since)}" \
    --decode-repeats "$decode_repeats" --latency-visits "${5:-1}" --db "$2"
}

since_of() {  # KEY: the campaign's start of a step, recorded at its first start so that the step resumes; a step
  # started again with another protocol (repeats, decode repeats, visits) starts over from now
  python - "$campaign" "$1" "$repeats" "$decode_repeats" "$visits" <<'EOF'
import datetime as d, json, sys
path, key = sys.argv[1], sys.argv[2]
step = key.removesuffix("_since")
protocol = {f"{step}_repeats": int(sys.argv[3]), f"{step}_decode_repeats": int(sys.argv[4]),
            f"{step}_latency_visits": int(sys.argv[5])}
c = json.load(open(path))
if key not in c or any(c.get(k) != v for k, v in protocol.items()):
    c[key] = d.datetime.now(d.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
c.update(protocol)
json.dump(c, open(path, "w"), indent=1)
print(c[key])
EOF
}

hour_since() {  # DB: exit unless an hour has passed since the retest archs were last timed into DB (the two
  # measurements of an arch are an hour apart at least)
  python - "$1" "$dir/latency-retest.jsonl" <<'EOF'
import datetime as d, json, sys, duckdb
ids = [json.loads(line)["arch_id"] for line in open(sys.argv[2])]
con = duckdb.connect(sys.argv[1], read_only=True)
last = con.execute("SELECT max(created_at) FROM measurements WHERE metric = 'latency_rel' AND arch_id IN "
                   f"({','.join('?' * len(ids))})", ids).fetchone()[0]
if last is not None and d.datetime.now(d.timezone.utc).replace(tzinfo=None) - last < d.timedelta(hours=1):
    sys.exit(f"latency.sh: the retest archs were timed into {sys.argv[1]} until {last} (UTC); wait until an hour "
             "has passed")
EOF
}

for step in "$@"; do
  case "$step" in
    start)
      if [ -f "$campaign" ]; then check_cpu; echo "latency.sh: campaign of $(field since) continues" >&2; continue; fi
      python -c "import json, sys, datetime; json.dump({'since': datetime.datetime.now(datetime.timezone.utc)
        .replace(tzinfo=None).isoformat(timespec='seconds'), 'cpu': sys.argv[1], 'repeats': int(sys.argv[2]),
        'retest_archs': int(sys.argv[3])}, open(sys.argv[4], 'w'), indent=1)" "$cpu" "$repeats" "$retest_n" "$campaign"
      echo "latency.sh: campaign started $(field since) on $cpu" >&2 ;;
    pass)
      check_cpu
      archs
      profile "$dir/latency-retest.jsonl" "$db" 16  # prefill and decode of the retest archs, first
      profile "$dir/latency-archs.jsonl" "$db" 0 ;;
    retest)
      check_cpu
      hour_since "$db"
      profile "$dir/latency-retest.jsonl" "$retest_db" 16
      nasbench bench retest "$db" "$retest_db" --space smollm2-135m \
        --metrics latency_ms,latency_rel,decode_ms_per_token,decode_rel ;;
    again)
      check_cpu
      [ -f "$dir/latency-retest.jsonl" ] || { echo "latency.sh: no retest archs yet: run 'pass' first" >&2; exit 2; }
      hour_since "$retest_db"
      # rows older than the step's first start are the first pass's, all replaced; kept in the campaign file so
      # that the step resumes instead of starting over
      python -c "import json, sys, datetime as d; c = json.load(open(sys.argv[1])); json.dump({**c, 'again_since':
        c.get('again_since', d.datetime.now(d.timezone.utc).replace(tzinfo=None).isoformat(timespec='seconds')),
        'again_repeats': int(sys.argv[2])}, open(sys.argv[1], 'w'), indent=1)" "$campaign" "$repeats"
      again_since=$(field again_since)
      profile "$dir/latency-retest.jsonl" "$db" 16 "$again_since"
      nasbench bench retest "$db" "$retest_db" --space smollm2-135m \
        --metrics latency_ms,latency_rel,decode_ms_per_token,decode_rel ;;
    visits)
      check_cpu
      [ -f "$dir/latency-retest.jsonl" ] || { echo "latency.sh: no retest archs yet: run 'pass' first" >&2; exit 2; }
      profile "$dir/latency-retest.jsonl" "$db" 16 "$(since_of visits_since)" "$visits" ;;
    visits-retest)
      check_cpu
      [ -n "$(python -c "import json, sys; print(json.load(open(sys.argv[1])).get('visits_since', ''))" \
        "$campaign")" ] || { echo "latency.sh: run 'visits' first" >&2; exit 2; }
      hour_since "$db"
      profile "$dir/latency-retest.jsonl" "$retest_db" 16 "$(since_of visits_retest_since)" "$visits"
      nasbench bench retest "$db" "$retest_db" --space smollm2-135m \
        --metrics latency_ms,latency_rel,decode_ms_per_token,decode_rel ;;
    model)
      check_cpu
      nasbench bench latency-model smollm2-135m --db "$db" --rounds 200
      for metric in latency_ms decode_ms_per_token; do
        nasbench bench latency-model smollm2-135m --db "$db" --validate --metric "$metric" --splits 5
      done ;;
    baselines)
      check_cpu
      LATENCY_SINCE=$(field since) REPEATS=$repeats tools/experiments/baselines.sh latency ;;
    *) echo "latency.sh: unknown step '$step'; one of start pass retest again visits visits-retest model" \
            "baselines" >&2
       exit 2 ;;
  esac
done
