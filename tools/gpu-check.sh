#!/usr/bin/env bash
# The GPU check: builds tools/gpu_check straight from the sources it needs
# (a C compiler, CMake for one embedding step, and NVRTC from the CUDA
# toolkit: no zstd, json-c, pcre2, xxhash or cmocka needed on the GPU
# machine), then runs it: every generated kernel against a CPU reference on
# fresh random data (outputs poisoned with NaN), then decode-step timing of
# Llama-2-7B/13B-shaped layer stacks at keep 1.0 / 0.75 / 0.5 with a table
# at the end. Fits in 8 minutes on one GPU. When the full CMake build can be
# configured there, the codegen tests run too. Given a bundle that flockc
# compiled with --target sm_XY, its cuda:* kernel sections are extracted
# (tools/extract_section.py: Python; zstd-compressed sections need the zstd
# command or the zstandard module, or compile with --level 0) and gpu_check
# loads each one for this GPU and resolves every kernel of its table first.
#
#   tools/gpu-check.sh [out-dir] [BUNDLE.flock]     (default out-dir: build-gpu)
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh    (kernel checks only)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-gpu}
bundle=${2:-}
mkdir -p "$out"
start=$(date +%s)

cuda=${CUDA_HOME:-}
if [ -z "$cuda" ]; then
    if [ -d /usr/local/cuda ]; then cuda=/usr/local/cuda
    elif command -v nvcc > /dev/null; then cuda=$(dirname "$(dirname "$(command -v nvcc)")")
    else echo "no CUDA toolkit (set CUDA_HOME)"; exit 1; fi
fi
lib=$cuda/lib64
[ -e "$lib/libnvrtc.so" ] || lib=$cuda/lib
cc=${CC:-cc}

echo "== build gpu_check (CUDA at $cuda) =="
for t in kernels attention gemm; do
    cmake -DIN=codegen/cuda_$t.cu -DOUT="$out/cuda_${t}_src.c" -DSYM=flock_cuda_src_$t -P codegen/embed.cmake
done
$cc -std=c17 -O2 -D_GNU_SOURCE -DFLOCK_HAVE_NVRTC=1 -Wall -Wextra -Wno-unused-parameter \
    -Iformats/include -Iformats -Iir/include -Icodegen/include -Icodegen -Itools -I"$cuda/include" \
    formats/common.c formats/cuda_blob.c ir/ir.c codegen/cuda_model.c codegen/cuda_source.c codegen/cuda_blob.c \
    codegen/cuda_nvrtc.c "$out"/cuda_kernels_src.c "$out"/cuda_attention_src.c "$out"/cuda_gemm_src.c \
    tools/gpu_check.c tools/gpu_check_util.c tools/gpu_check_kernels.c tools/gpu_check_bench.c \
    tools/gpu_check_ref.c -L"$lib" -Wl,-rpath,"$lib" -lnvrtc -ldl -lm -lpthread -o "$out/gpu_check"
echo "built in $(( $(date +%s) - start )) s"

# The codegen tests (no GPU needed) when the project's dependencies are there.
if cmake -S . -B "$out/cmake" -DFLOCK_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$out/configure.log" 2>&1; then
    echo "== codegen tests =="
    cmake --build "$out/cmake" -j"$(nproc)" --target test_codegen test_gpu_check_ref > "$out/build.log" 2>&1 &&
        (cd "$out/cmake" && ctest --output-on-failure -R 'test_codegen$|test_gpu_check_ref' --timeout 60) ||
        echo "(codegen tests did not build or failed: see $out/build.log)"
else
    echo "(full CMake build not configurable here: $(grep -m1 -i 'error\|needs' "$out/configure.log" || true))"
fi

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
    --format=csv,noheader || true

blob_args=()
if [ -n "$bundle" ]; then
    echo "== kernel sections of $bundle =="
    rm -rf "$out/sections"
    python3 tools/extract_section.py "$bundle" "$out/sections" > "$out/sections.txt"
    while read -r name file; do
        echo "$name -> $file"
        blob_args+=(--blob "$file")
    done < "$out/sections.txt"
    [ ${#blob_args[@]} -gt 0 ] || echo "(no cuda:* kernel sections in $bundle: compile it with flockc --target sm_XY)"
fi

echo "== gpu_check =="
left=$(( 470 - ($(date +%s) - start) ))
[ "$left" -gt 60 ] || left=60
timeout "$left" "$out/gpu_check" ${GPU_CHECK_ARGS:-} ${blob_args[@]+"${blob_args[@]}"}
echo "gpu-check finished in $(( $(date +%s) - start )) s"
