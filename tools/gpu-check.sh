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
# Then, when flock and flockc build here (the project's dependencies: zstd,
# json-c, pcre2, xxhash) and python3 is present, the runtime end to end: the
# models compiled with --dtype f16 --keep 0.5 --target sm_XY (XY = this GPU's
# compute capability), greedy generation with `flock run --device cuda` equal
# to `--device cpu` at keep 1.0 and 0.5 (the tiny model of tests/data,
# SmolLM2-135M-Instruct.Q4_1 from $FLOCK_MODEL_DIR, default
# ~/.cache/flock/models; a missing one is skipped, saying so), and SmolLM2's
# decode tokens/s on the GPU (`flock bench --device cuda`). A table of those
# comes last.
#
#   tools/gpu-check.sh [out-dir] [BUNDLE.flock]     (default out-dir: build-gpu)
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh    (kernel checks only)
#   GPU_CHECK_E2E=0 tools/gpu-check.sh              (no end-to-end step)
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
    formats/common.c formats/wbuf.c formats/cuda_blob.c ir/ir.c codegen/cuda_model.c codegen/cuda_source.c codegen/cuda_blob.c \
    codegen/cuda_nvrtc.c "$out"/cuda_kernels_src.c "$out"/cuda_attention_src.c "$out"/cuda_gemm_src.c \
    tools/gpu_check.c tools/gpu_check_util.c tools/gpu_check_kernels.c tools/gpu_check_bench.c \
    tools/gpu_check_ref.c -L"$lib" -Wl,-rpath,"$lib" -lnvrtc -ldl -lm -lpthread -o "$out/gpu_check"
echo "built in $(( $(date +%s) - start )) s"

# The codegen tests (no GPU needed) when the project's dependencies are there.
full=""
if cmake -S . -B "$out/cmake" -DFLOCK_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$out/configure.log" 2>&1; then
    full="$out/cmake"
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

# ---- the runtime end to end: flock --device cuda against --device cpu ----------
e2e_table=()
e2e_fail=0
e2e() {
    local flock=$1/tools/flock flockc=$1/tools/flockc
    if ! command -v python3 > /dev/null; then echo "(no python3: end-to-end step skipped)"; return 0; fi
    local cap
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -1 | tr -d ' .' || true)
    [[ "$cap" =~ ^[0-9]+$ ]] || { echo "(nvidia-smi gave no compute capability: assuming sm_90)"; cap=90; }
    local target=sm_$cap dir=$out/e2e prompt="Alice was beginning to get very tired of sitting by her sister on the bank"
    mkdir -p "$dir"
    local models=()
    local tiny=tests/data/tiny-llama.gguf
    local smol=${FLOCK_MODEL_DIR:-$HOME/.cache/flock/models}/SmolLM2-135M-Instruct.Q4_1.gguf
    if [ -f "$tiny" ]; then models+=("tiny-llama:$tiny")
    else echo "(tiny-llama not checked: $tiny not found)"; fi
    if [ -f "$smol" ]; then models+=("SmolLM2-135M:$smol")
    else echo "(SmolLM2 skipped: $smol not found)"; fi
    local entry name src bundle keep a b
    for entry in ${models[@]+"${models[@]}"}; do
        name=${entry%%:*}; src=${entry#*:}; bundle=$dir/$name.flock
        echo "-- $name: flockc --dtype f16 --keep 0.5 --target $target"
        if ! timeout 240 "$flockc" "$src" -o "$bundle" --dtype f16 --keep 0.5 --target "$target" --level 0 \
                > "$dir/$name.flockc.log" 2>&1; then
            echo "flockc failed for $name: $(tail -3 "$dir/$name.flockc.log")"
            e2e_table+=("$(printf '%-14s %-5s %-22s %s' "$name" "-" "flockc FAILED" "-")"); e2e_fail=1; continue
        fi
        for keep in 1.0 0.5; do
            local same="?" tps="-"
            for dev in cpu cuda; do
                if ! timeout 120 "$flock" run "$bundle" -p "$prompt" -n 32 --temp 0 --keep "$keep" --device "$dev" \
                        --json > "$dir/$name-$keep-$dev.json" 2> "$dir/$name-$keep-$dev.err"; then
                    echo "flock run --device $dev --keep $keep failed: $(tail -3 "$dir/$name-$keep-$dev.err")"
                    same="run FAILED ($dev)"
                fi
            done
            if [ "$same" = "?" ]; then
                a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$dir/$name-$keep-cpu.json") ||
                    a="(unreadable cpu output)"
                b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$dir/$name-$keep-cuda.json") ||
                    b="(unreadable cuda output)"
                if [ "$a" = "$b" ]; then same="same 32 tokens"; else same="DIFFERENT"; fi
                echo "keep $keep cpu : $a"
                echo "keep $keep cuda: $b"
                tps=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["decode_tok_s"])' \
                      "$dir/$name-$keep-cuda.json") || tps="?"
            fi
            [[ "$same" == same* ]] || e2e_fail=1
            e2e_table+=("$(printf '%-14s %-5s %-22s %s' "$name" "$keep" "$same" "$tps (run)")")
        done
        if [ "$name" = SmolLM2-135M ]; then
            echo "-- $name: flock bench --device cuda --keep 1,0.5"
            if timeout 150 "$flock" bench "$bundle" --device cuda --keep 1,0.5 --repeats 3 --json \
                    > "$dir/bench.json" 2> "$dir/bench.err"; then
                while read -r keep tps; do
                    e2e_table+=("$(printf '%-14s %-5s %-22s %s' "$name" "$keep" "bench --device cuda" "$tps")")
                done < <(python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]: print(r["keep"], "%.1f" % r["decode_tok_s"])' "$dir/bench.json")
            else
                echo "flock bench --device cuda failed: $(tail -3 "$dir/bench.err")"; e2e_fail=1
            fi
        fi
    done
}

if [ "${GPU_CHECK_E2E:-1}" = 1 ]; then
    echo "== end to end: flock --device cuda vs --device cpu =="
    if [ -z "$full" ] && cmake -S . -B "$out/full" -DFLOCK_CUDA=ON -DFLOCK_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
            > "$out/full-configure.log" 2>&1; then
        full="$out/full"
    fi
    if [ -z "$full" ]; then
        echo "(flock cannot be configured here: $(grep -m1 -i 'error\|needs' "$out/full-configure.log" || true)); skipped"
    elif ! cmake --build "$full" -j"$(nproc)" --target flock flockc > "$out/flock-build.log" 2>&1; then
        echo "(flock/flockc did not build: see $out/flock-build.log); skipped"; e2e_fail=1
    else
        e2e "$full"
    fi
fi

echo "== gpu_check =="
left=$(( 470 - ($(date +%s) - start) ))
[ "$left" -gt 60 ] || left=60
rc=0
timeout "$left" "$out/gpu_check" ${GPU_CHECK_ARGS:-} ${blob_args[@]+"${blob_args[@]}"} || rc=$?
[ "$rc" -eq 0 ] || echo "gpu_check: exit status $rc (124: ran out of its $left s)"
if [ ${#e2e_table[@]} -gt 0 ]; then
    echo "== end to end (flock run -n 32 --temp 0: cuda vs cpu; decode tok/s on the GPU) =="
    printf '%-14s %-5s %-22s %s\n' model keep "greedy / what" "cuda decode tok/s"
    printf '%s\n' "${e2e_table[@]}"
fi
echo "gpu-check finished in $(( $(date +%s) - start )) s"
[ "$rc" -eq 0 ] && [ "$e2e_fail" -eq 0 ]
