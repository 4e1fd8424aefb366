#!/usr/bin/env bash
# The Slurm fault test: examples/slurm/sweep_array.sh end to end on a real
# one-node cluster (.ci/slurm-up.sh), with a fault. One array task is killed
# (SIGKILL) once its first rows are seen in its results.csv (driven by
# progress, not by a timer), requeued (the task's command passes --resume),
# and the dependent merge job then runs; the merged rows must equal an
# unsharded run of the same spec (every column but the wall time `seconds`).
# Prints the time it took. Needs root (it starts the cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
say() { echo "slurm-test: $*"; }
fail() { echo "slurm-test: FAIL: $*" >&2; exit 1; }

bash .ci/slurm-up.sh
if [ -z "${MEMKIN:-}" ]; then
  [ -x target/release/memkin ] || cargo build --release --bin memkin
  MEMKIN=$(pwd)/target/release/memkin
fi
work=$(mktemp -d /tmp/memkin-slurm.XXXXXX)
trap 'scancel --name=memkin-sweep --name=memkin-merge >/dev/null 2>&1 || true' EXIT

# 48 points, 16 per shard, one row appended (and synced) per point.
cat > "$work/sweep.toml" <<'SPEC'
dataset = "digits"
readout = "mlp"
epochs = 60
batch = 1
seed = 11
[grid]
alpha = { linspace = [0.3, 1.0, 8] }
beta = { values = [0.5, 0.8, 1.1, 1.4, 1.7, 2.0] }
SPEC
SHARDS=3
victim=1

submit=$(SPEC="$work/sweep.toml" OUT="$work/out" SHARDS=$SHARDS MEMKIN="$MEMKIN" BACKEND=cpu \
  bash examples/slurm/sweep_array.sh)
echo "$submit"
array=$(echo "$submit" | sed -n 's/^submitted array job \([0-9]*\).*/\1/p')
merge=$(echo "$submit" | sed -n 's/^submitted merge job \([0-9]*\).*/\1/p')
[ -n "$array" ] && [ -n "$merge" ] || fail "could not read the job ids"

# The reference while the cluster works: the same spec, unsharded.
"$MEMKIN" sweep "$work/sweep.toml" --backend cpu --out "$work/ref" 2> "$work/ref.log" &
ref_pid=$!

# Kill the victim task once its first rows are in (at a random row 1..4).
csv="$work/out/shard-$victim/results.csv"
want=$(( (RANDOM % 4) + 1 ))
rows() { [ -f "$csv" ] && echo $(( $(wc -l < "$csv") - 1 )) || echo 0; }
for _ in $(seq 1 6000); do
  [ "$(rows)" -ge "$want" ] && break
  sleep 0.05
done
[ "$(rows)" -ge "$want" ] || fail "shard $victim never wrote $want rows"
# The task's processes (the batch shell and memkin), from Slurm itself.
task=$(squeue -h -j "${array}_${victim}" -o %A 2>/dev/null | head -1 || true)
[ -n "$task" ] || fail "task ${array}_${victim} is not running"
pids=$(scontrol listpids "$task" 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}' || true)
[ -n "$pids" ] || fail "no processes for task ${array}_${victim} (job $task)"
kill -KILL $pids 2>/dev/null || true
at_kill=$(rows)
say "killed task ${array}_${victim} (pids $(echo $pids)) with $at_kill of 16 rows written (trigger: $want)"
[ "$at_kill" -lt 16 ] || fail "the task had finished before the kill; the fault was not injected"

# Wait for the task to end (failed), then requeue it: it resumes.
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1 || true; }
st=
for _ in $(seq 1 600); do
  st=$(state "$task")
  case "$st" in RUNNING|PENDING|COMPLETING|"") sleep 0.2 ;; *) break ;; esac
done
say "task ${array}_${victim} ended: $st"
# Requeue it (it resumes). Slurm can report the old FAILED for a moment after
# the requeue, or fail a launch that races the killed step's cleanup (seen
# here once, with an empty log): wait for the state to leave FAILED, and
# requeue again (at most 3 attempts) when the task fails with its log shown;
# a resume that memkin gets wrong fails every attempt.
for attempt in 1 2 3; do
  scontrol requeue "$task"
  # A requeued job waits out a begin-time delay (about two minutes); start it now.
  scontrol update JobId="$task" StartTime=now
  say "requeued ${array}_${victim} (attempt $attempt)"
  for _ in $(seq 1 100); do
    st=$(state "$task")
    [ "$st" != FAILED ] && break
    sleep 0.1
  done
  for _ in $(seq 1 3000); do
    st=$(state "$task")
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    sleep 0.2
  done
  [ "$st" = COMPLETED ] && break
  echo "slurm-test: requeued task ended $st; its log:" >&2
  cat "$work/out/logs/shard-$victim.log" >&2 || true
  [ "$attempt" -lt 3 ] || fail "requeued task $st after $attempt attempts"
done
[ "$st" = COMPLETED ] || fail "the requeued task did not complete (state $st)"
# Slurm marked the merge's afterok dependency failed when the task failed;
# with every task now complete, the same dependency is set again and holds.
# (`afterok:<array>` would be marked failed again: the tasks are named.)
tasks=$(seq -s: -f "${array}_%g" 0 $((SHARDS - 1)))
scontrol update JobId="$merge" Dependency="afterok:$tasks"
say "requeued task completed; merge job $merge released"

# The merge runs once every task has succeeded.
for _ in $(seq 1 3000); do
  st=$(state "$merge")
  case "$st" in COMPLETED) break ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) cat "$work/out/logs/merge.log" >&2 || true; fail "merge job $st" ;; esac
  sleep 0.2
done
[ "$st" = COMPLETED ] || fail "merge job did not complete (state $st)"
wait "$ref_pid" || fail "the unsharded reference run failed: $(cat "$work/ref.log")"

grep -Eq "evaluated \([1-9][0-9]* already done\)" "$work/out/logs/shard-$victim.log" \
  || fail "the requeued task did not resume (log: $(tail -3 "$work/out/logs/shard-$victim.log"))"
strip() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") s = i }
           { out = ""; for (i = 1; i <= NF; i++) if (i != s) out = out (out == "" ? "" : ",") $i; print out }' "$1"
}
if ! diff <(strip "$work/ref/results.csv") <(strip "$work/out/merged/results.csv") > "$work/diff.txt"; then
  head "$work/diff.txt" >&2
  fail "merged results differ from the unsharded run"
fi
n=$(( $(wc -l < "$work/out/merged/results.csv") - 1 ))
[ "$n" = 48 ] || fail "merged $n rows, expected 48"
ls "$work/out/merged/heatmap.png" >/dev/null || fail "no merged heatmap"
say "OK: $n merged rows equal the unsharded run; task $victim killed at row $at_kill, requeued, resumed; $(( $(date +%s) - t0 )) s"
rm -rf "$work"
