#!/usr/bin/env bash
# One prepared run on a machine with a real GPU: build in release, run the GPU
# parity tests (on the real adapter, every kernel, tiny chunks included), then
# `memkin bench --workload kinetics|sweep|mc --json`, everything under $OUT.
# Budget: under 8 minutes in all: each stage has its own timeout (they sum to
# 460 s), so one slow stage cannot eat the others' time; a stage that times
# out is recorded as such in $OUT/summary.txt and the script goes on.
#
#   OUT=/tmp/out benches/device/run.sh
#
# Outputs ($OUT):
#   devices.json                     memkin devices --json (the adapter used)
#   build.log                        cargo build of the binary and the test binary
#   parity.log                       the GPU parity tests (names below)
#   bench_kinetics.json, kinetics/   trajectory-steps/s per size, wall and kernel-only (timestamps)
#   bench_sweep.json, sweep/         end-to-end sweep points/s (ridge readout), beside the kernel-only figure
#   bench_mc.json, mc/               end-to-end Monte Carlo draws/s, beside the kernel-only figure
#   summary.txt                      each stage's exit status and seconds
set -u
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
export MEMKIN_REQUIRE_GPU=1 CI=true
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$(nproc)}
# The real GPU, not lavapipe (Vulkan sees both when Mesa is installed).
export WGPU_ADAPTER_NAME=${WGPU_ADAPTER_NAME:-NVIDIA}
: >"$OUT/summary.txt"

stage() { # stage NAME TIMEOUT_S LOG CMD...
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$SECONDS
    timeout "$limit" "$@" >"$log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - t0))$([ $rc = 124 ] && echo ' (timed out)')" | tee -a "$OUT/summary.txt"
    return $rc
}

stage build 200 "$OUT/build.log" cargo test --release --no-run || {
    echo "build failed: see $OUT/build.log" | tee -a "$OUT/summary.txt"
    exit 1
}
BIN=target/release/memkin
"$BIN" devices --json >"$OUT/devices.json" 2>&1

# Every kernel's GPU-vs-CPU parity (batch sizes 1, 63, 64, 65 and tiny
# chunks), the dispatcher's bit-identity, counts and bytes, and the NaN flags.
stage parity 60 "$OUT/parity.log" cargo test --release --test integration -- \
    gpu_ ddk_multi_chunk model_multi_chunk a_nan_producing cycle_noise_on_gpu

# Kinetics: wall (host to host) and kernel-only (timestamps) steps/s.
stage kinetics 60 "$OUT/bench_kinetics.json" "$BIN" bench --json --workload kinetics \
    --sizes 1e5,1e6,4e6,1.6e7 --steps 28 --runs 5 --min-seconds 0.5 --out "$OUT/kinetics"
# End to end on MNIST-shaped synthetic data (28 x 28, 10 classes): 10,000
# training samples, 16 points / 64 draws per timed run, f32 on both backends.
stage sweep 70 "$OUT/bench_sweep.json" "$BIN" bench --json --workload sweep --precision f32 \
    --samples 10000 --points 16 --runs 2 --min-seconds 0 --out "$OUT/sweep"
stage mc 70 "$OUT/bench_mc.json" "$BIN" bench --json --workload mc --precision f32 \
    --samples 10000 --points 64 --runs 2 --min-seconds 0 --out "$OUT/mc"
cat "$OUT/summary.txt"
