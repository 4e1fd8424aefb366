#!/bin/bash
# A memkin sweep as a Slurm job array, then a merge job that runs once every
# shard has finished.
#
#   SPEC=sweep.toml OUT=$SCRATCH/sweep SHARDS=8 bash examples/slurm/sweep_array.sh
#
# Each array task runs one contiguous block of the plan into OUT/shard-<i>.
# Rerunning this script (or `scontrol requeue`) is safe: every task passes
# --resume, so finished points are kept and a finished shard is a no-op.
set -euo pipefail

SPEC=${SPEC:?set SPEC to the sweep spec (.toml or .json)}
OUT=${OUT:?set OUT to the output directory}
SHARDS=${SHARDS:-8}
MEMKIN=${MEMKIN:-memkin}
BACKEND=${BACKEND:-auto}
mkdir -p "$OUT/logs"

# One task per shard. memkin reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT
# itself; --shard is spelled out here so the log shows it.
array_job=$(sbatch --parsable \
    --job-name=memkin-sweep \
    --array="0-$((SHARDS - 1))" \
    --output="$OUT/logs/shard-%a.log" \
    ${SBATCH_EXTRA:-} \
    --wrap="$MEMKIN sweep '$SPEC' --backend $BACKEND \
        --out '$OUT/shard-'\$SLURM_ARRAY_TASK_ID \
        --shard \$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT --resume")
echo "submitted array job $array_job ($SHARDS shards)"

# The merge checks that every shard came from the same spec and that the
# shards cover every point exactly once; it names any missing shard.
shard_dirs=$(for i in $(seq 0 $((SHARDS - 1))); do printf "'%s' " "$OUT/shard-$i"; done)
merge_job=$(sbatch --parsable \
    --job-name=memkin-merge \
    --dependency="afterok:$array_job" \
    --output="$OUT/logs/merge.log" \
    --wrap="$MEMKIN merge $shard_dirs --out '$OUT/merged'")
echo "submitted merge job $merge_job (runs after all shards succeed): $OUT/merged"
