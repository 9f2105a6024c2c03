#!/usr/bin/env bash
# The GPU check: builds flock with FLOCK_CUDA, runs the codegen tests, then
# tools/gpu_check (every generated kernel against a CPU reference on fresh
# random data, then decode-step timing of Llama-2-7B/13B-shaped layer stacks
# at keep 1.0 / 0.75 / 0.5). Meant to finish within 8 minutes on one GPU.
#
#   tools/gpu-check.sh [build-dir]        (default: build-gpu)
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh   (kernel checks only)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
jobs=$(nproc 2>/dev/null || echo 4)
start=$(date +%s)

echo "== configure and build ($build, -j$jobs) =="
cmake -S . -B "$build" -DFLOCK_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$jobs" --target gpu_check test_codegen test_codegen_nvrtc test_gpu_check_ref \
    > "$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"

echo "== codegen tests (no GPU needed) =="
(cd "$build" && ctest --output-on-failure -R 'test_codegen$|test_gpu_check_ref' --timeout 120)

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
    --format=csv,noheader || true

echo "== gpu_check =="
# The budget left for the GPU part: 8 minutes in all.
left=$(( 470 - ($(date +%s) - start) ))
[ "$left" -gt 60 ] || left=60
timeout "$left" "$build/tools/gpu_check" ${GPU_CHECK_ARGS:-}
echo "gpu-check finished in $(( $(date +%s) - start )) s"
