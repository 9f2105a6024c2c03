#!/bin/sh
# Decode speed with the bundle's LLVM-generated CPU kernels against the
# runtime's built-in (portable: AVX2 or scalar) kernels, side by side in each
# `flock bench` run (--kernels generated,portable), at keep 1.0 and 0.5, for
# 1 and 2 threads, repeated ROUNDS times (the machine may be shared: report
# the ranges). Figures: docs/cpu-codegen.md.
#
# usage: tools/bench_cpu_kernels.sh [BUILD_DIR] [MODEL.gguf] [ROUNDS] [DTYPES]
#   defaults: build, ~/.cache/flock/models/SmolLM2-135M-Instruct.Q4_1.gguf, 3, "f16 f32"
set -eu
build=${1:-build}
model=${2:-${FLOCK_MODEL_DIR:-$HOME/.cache/flock/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
rounds=${3:-3}
dtypes=${4:-"f16 f32"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for dt in $dtypes; do
    "$build/tools/flockc" "$model" -o "$tmp/m-$dt.flock" --dtype "$dt" --target cpu --level 0 --keep 0.5
    for r in $(seq "$rounds"); do
        for t in 1 2; do
            echo "# dtype $dt, round $r, $t thread(s)"
            "$build/tools/flock" bench "$tmp/m-$dt.flock" --keep 1,0.5 --kernels generated,portable \
                --threads "$t" --prompt-len 16 --gen-len 32 --repeats 3 2>/dev/null | tail -n +3
        done
    done
done
