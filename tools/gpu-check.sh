#!/usr/bin/env bash
# The GPU check. On a GPU machine (a C compiler, CMake, the CUDA toolkit,
# Python 3; zstd, json-c, PCRE2 and xxhash need not be there when a kit is
# given), in one run of at most 8 minutes that prints its table last:
#
#  1. builds tools/gpu_check from the sources it needs (NVRTC, no other
#     dependency; the kit's prebuilt one if that fails), checks the kit (sha256,
#     its flock runs, else flock is built against the kit's prefix) and its
#     bundles' kernel sections;
#  2. end to end, `flock --device cuda` against `flock --device cpu` on the kit's
#     test model (bundles compiled with --target sm_80,sm_89,sm_90, and one with
#     sm_80 only, which an sm_90 GPU runs from the compute_80 PTX): a short prompt
#     and one longer than the CUDA backend's 256-token prefill chunk (SmolLM2: a
#     longer one, three chunks), at keep
#     1.0, 0.75, 0.5 and 0.25: the 32 greedy tokens of `flock run` equal, the
#     GRIFFIN experts of `flock experts` equal per layer (the fraction per layer
#     when not), and decode tokens/s from `flock bench --device cuda`;
#  3. gpu_check's kernel checks: every generated kernel against a CPU reference
#     on fresh random data, and the bundle's sections loaded on the device;
#     then 2. on SmolLM2-135M-Instruct.Q4_1 when its GGUF is on the machine
#     ($FLOCK_MODEL_DIR, default ~/.cache/flock/models), compiled there; when
#     it is not, the output says it was not checked;
#  4. gpu_check's decode-step timing of Llama-2-7B/13B-shaped layer stacks, and
#     the codegen tests when the full CMake build (cmocka) configures, as time
#     allows.
# Every step has a timeout within the whole budget ($GPU_CHECK_BUDGET seconds,
# default 450). Exit status 0 when every check that ran passed.
#
#   tools/gpu-check.sh --kit build-gpu-kit [OUT]   with a kit from tools/gpu-kit.sh
#   tools/gpu-check.sh [OUT] [BUNDLE.flock]        without one: flock and flockc are built
#                        here with the system's packages, the test model from tests/data;
#                        BUNDLE's cuda:* sections go to gpu_check --blob
#   tools/gpu-check.sh --no-gpu [--kit DIR] [OUT]  dry mode, for a machine without a GPU
#                        (and CI): builds gpu_check and checks that it and flock find
#                        every driver entry point in the toolkit's libcuda stub and report
#                        that no GPU is there; with a kit: its sha256 sums, that its
#                        flock runs, that flock builds from source against the kit's
#                        prefix alone, that its bundles' cuda sections parse (and the
#                        PTX goes through ptxas for sm_90 without spills), and the whole
#                        end-to-end step with `--device cpu --threads 1` standing in for
#                        the GPU. About 2 minutes on 2 cores.
#   GPU_CHECK_ARGS=--no-bench tools/gpu-check.sh   (no decode-step timing)
#   GPU_CHECK_E2E=0 tools/gpu-check.sh             (no end-to-end step)
#   GPU_CHECK_STAND_IN=1 tools/gpu-check.sh --kit DIR   a rehearsal of the GPU run on a
#                        machine without one: every step as on a GPU, but gpu_check is not
#                        run and `--device cpu --threads 1` stands in for `--device cuda`
#
# OUT defaults to build-gpu (build-gpu-dry with --no-gpu). docs/runtime.md,
# "Checking the CUDA path", has the command for a GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
kit=""
dry=0
pos=()
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --kit) [ $# -ge 2 ] || { echo "gpu-check: --kit needs a folder (tools/gpu-kit.sh makes one)" >&2; exit 2; }
        kit=$2; shift ;;
    --kit=*) kit=${1#--kit=} ;;
    --no-gpu) dry=1 ;;
    -*) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) pos+=("$1") ;;
    esac
    shift
done
[ ${#pos[@]} -le 2 ] || { echo "gpu-check: at most OUT and BUNDLE (see --help)" >&2; exit 2; }
out=${pos[0]:-}
[ -n "$out" ] || { [ "$dry" = 1 ] && out=build-gpu-dry || out=build-gpu; }
bundle_arg=${pos[1]:-}
if [ -n "$kit" ]; then
    [ -d "$kit" ] || { echo "gpu-check: no kit folder $kit (tools/gpu-kit.sh makes it)" >&2; exit 2; }
    kit=$(cd "$kit" && pwd)
fi
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
start=$(date +%s)
budget=${GPU_CHECK_BUDGET:-450}
no_bench=0
case " ${GPU_CHECK_ARGS:-} " in *" --no-bench "*) no_bench=1 ;; esac

elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( budget - $(elapsed) )); }
# tmo N: N seconds, or what is left of the budget when that is less (at least 5)
tmo() { local l=$(( $(left) - 5 )); [ "$l" -lt "$1" ] || l=$1; [ "$l" -ge 5 ] || l=5; echo "$l"; }
step() { printf '\n== %s (at %d s) ==\n' "$1" "$(elapsed)"; }
failures=()
notes=()
rows=()
checks=()
failed() { failures+=("$1"); checks+=("FAIL  $1"); echo "FAIL: $1"; }
ok() { checks+=("ok    $1"); echo "ok: $1"; }
note() { notes+=("$1"); echo "($1)"; }
compare() { python3 tools/gpu_check_compare.py "$@"; }
have_python=1
command -v python3 > /dev/null || have_python=0
standin=$dry
[ "${GPU_CHECK_STAND_IN:-0}" != 1 ] || standin=1
if [ "$dry" = 1 ]; then echo "gpu-check: dry mode (--no-gpu): no GPU is used; --device cpu --threads 1 stands in for cuda"
elif [ "$standin" = 1 ]; then echo "gpu-check: rehearsal (GPU_CHECK_STAND_IN=1): no GPU is used; --device cpu --threads 1 stands in for cuda"; fi

# ---- the CUDA toolkit -------------------------------------------------------------
cuda=${CUDA_HOME:-}
if [ -z "$cuda" ]; then
    if [ -d /usr/local/cuda ]; then cuda=/usr/local/cuda
    elif command -v nvcc > /dev/null; then cuda=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    fi
fi
cudalibs=""
if [ -n "$cuda" ]; then
    for d in "$cuda/lib64" "$cuda/lib" "$cuda"/targets/*/lib; do
        [ -e "$d/libnvrtc.so" ] || ls "$d"/libnvrtc.so.* > /dev/null 2>&1 && cudalibs=${cudalibs:+$cudalibs:}$d
    done
fi
# What runs NVRTC (flockc, gpu_check) finds it here.
nvrtc_env=(env "LD_LIBRARY_PATH=$cudalibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

# ---- 1. gpu_check -------------------------------------------------------------------
gpu_check=""
build_gpu_check() {
    local lib t
    lib=${cudalibs%%:*}
    for t in kernels attention gemm quant; do
        cmake -DIN=codegen/cuda_$t.cu -DOUT="$out/cuda_${t}_src.c" -DSYM=flock_cuda_src_$t -P codegen/embed.cmake ||
            return 1
    done
    # The sources of tools/CMakeLists.txt's gpu_check, flock_gpu_check_ref and
    # what they use of flock_codegen, flock_ir and flock_formats.
    local srcs=(formats/common.c formats/quant.c formats/dequant.c formats/wbuf.c formats/cuda_blob.c ir/ir.c
        codegen/cuda_model.c codegen/cuda_source.c codegen/cuda_blob.c codegen/cuda_nvrtc.c
        "$out/cuda_kernels_src.c" "$out/cuda_attention_src.c" "$out/cuda_gemm_src.c" "$out/cuda_quant_src.c"
        tools/gpu_check.c tools/gpu_check_util.c tools/gpu_check_kernels.c tools/gpu_check_quant.c tools/gpu_check_bench.c
        tools/gpu_check_ref.c)
    timeout 180 "${CC:-cc}" -std=c17 -O2 -D_GNU_SOURCE -DFLOCK_HAVE_NVRTC=1 -Wall -Wextra -Wno-unused-parameter \
        -Iformats/include -Iformats -Iir/include -Icodegen/include -Icodegen -Itools -I"$cuda/include" \
        "${srcs[@]}" -L"$lib" -Wl,-rpath,"$lib" -lnvrtc -ldl -lm -lpthread -o "$out/gpu_check"
}
step "build gpu_check"
if [ -z "$cuda" ] || [ -z "$cudalibs" ]; then
    failed "no CUDA toolkit with NVRTC (set CUDA_HOME): gpu_check not built"
elif t0=$(date +%s) && build_gpu_check > "$out/gpu_check-build.log" 2>&1; then
    gpu_check=$out/gpu_check
    ok "gpu_check built from source in $(( $(date +%s) - t0 )) s (CUDA at $cuda)"
else
    tail -15 "$out/gpu_check-build.log"
    failed "gpu_check did not build from source ($out/gpu_check-build.log)"
    if [ -n "$kit" ] && "${nvrtc_env[@]}" "$kit/bin/gpu_check" --help 2>&1 | grep -q '^usage: gpu_check'; then
        gpu_check=$kit/bin/gpu_check
        note "using the kit's prebuilt gpu_check instead"
    fi
fi

# A libcuda.so.1 that is the toolkit's stub: every entry point resolves, cuInit fails.
stubdir=""
if [ -n "$cuda" ]; then
    for s in "$cuda/lib64/stubs/libcuda.so" "$cuda/lib/stubs/libcuda.so" "$cuda"/targets/*/lib/stubs/libcuda.so; do
        if [ -f "$s" ]; then stubdir=$out/stub; mkdir -p "$stubdir"; ln -sf "$s" "$stubdir/libcuda.so.1"; break; fi
    done
fi
if [ "$dry" = 1 ] && [ -n "$gpu_check" ]; then
    if [ -n "$stubdir" ]; then
        LD_LIBRARY_PATH=$stubdir:$cudalibs timeout 30 "$gpu_check" --no-bench > "$out/gpu_check-stub.log" 2>&1
        if grep -q 'CU.init(0) failed' "$out/gpu_check-stub.log" && ! grep -q 'lacks' "$out/gpu_check-stub.log"; then
            ok "gpu_check resolves every driver entry point in the toolkit's libcuda stub and stops at cuInit ($(grep -m1 -o 'failed: [0-9]*' "$out/gpu_check-stub.log"); 34 = CUDA_ERROR_STUB_LIBRARY)"
        else
            failed "gpu_check on the libcuda stub: $(tail -1 "$out/gpu_check-stub.log")"
        fi
    else
        note "no libcuda stub in $cuda: gpu_check's driver entry points not checked"
    fi
fi

# ---- flock and flockc: the kit's, or built here ------------------------------------------
flock=""
flockc=""
pdir=tests/data
pfile() { if [ -n "$kit" ]; then echo "$kit/prompts/$1.txt"; else echo "$pdir/gpu-prompt-$1.txt"; fi; }
models=() # "NAME BUNDLE SMS": bundles of the test model to run end to end

# flock + flockc from source against the kit's prefix only: its .pc files
# (PKG_CONFIG_LIBDIR hides the system's), its pkgconf when it runs here, and a
# check that every dependency header and library the build used is the kit's.
build_from_kit() {
    local b=$out/src-build pc cudaopt=-DFLOCK_CUDA=OFF bad
    if "$kit/prefix/bin/pkg-config" --modversion libzstd > /dev/null 2>&1; then pc=$kit/prefix/bin/pkg-config
    elif command -v pkg-config > /dev/null; then pc=$(command -v pkg-config)
    else failed "neither the kit's pkgconf nor a pkg-config runs here: flock cannot be configured"; return 1; fi
    [ -z "$cudalibs" ] || cudaopt=-DFLOCK_CUDA=ON
    mkdir -p "$b" && rm -f "$b/CMakeCache.txt"
    if ! PKG_CONFIG_LIBDIR=$kit/prefix/lib/pkgconfig PKG_CONFIG_PATH=$kit/prefix/lib/pkgconfig \
            timeout "$(tmo 120)" cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release $cudaopt -DFLOCK_LLVM=OFF \
            -DFLOCK_TESTS=OFF -DFLOCK_SERVE=OFF -DPKG_CONFIG_EXECUTABLE="$pc" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
            ${cuda:+-DCUDAToolkit_ROOT=$cuda} > "$b/configure.log" 2>&1; then
        tail -8 "$b/configure.log"
        failed "flock does not configure against the kit's prefix ($b/configure.log)"; return 1
    fi
    if ! timeout "$(tmo 240)" cmake --build "$b" -j"$(nproc)" --target flock flockc > "$b/build.log" 2>&1; then
        grep -m5 -i 'error' "$b/build.log"
        failed "flock does not build against the kit's prefix ($b/build.log)"; return 1
    fi
    bad=$(grep -rhoE '/usr/(local/)?include/(zstd|zdict|zstd_errors|pcre2|xxhash|xxh3)\.h|/usr/(local/)?include/json-c/[a-z_]+\.h' \
        --include='*.o.d' "$b" | sort -u | tr '\n' ' ')
    if [ -n "$bad" ]; then failed "the from-source build read the system's headers: $bad"; return 1; fi
    incs=$(grep -oE -- '(-isystem |-I)[^ "]+' "$b/compile_commands.json" | sed -E 's/^(-isystem |-I)//' | sort -u |
        xargs -r realpath -m)
    if ! grep -rqF "$kit/prefix/include/zstd.h" --include='*.o.d' "$b" ||
        ! grep -qxF "$(realpath -m "$kit/prefix/include")" <<< "$incs"; then
        failed "the from-source build's compile lines do not name the kit's prefix/include"; return 1
    fi
    bad=$(env -u LD_LIBRARY_PATH ldd "$b/tools/flock" | grep -E 'zstd|json-c|pcre2|xxhash' | grep -vF "$kit/prefix/lib/" |
        tr -s ' \t' ' ')
    if [ -n "$bad" ]; then failed "the from-source flock loads a dependency from outside the kit: $bad"; return 1; fi
    "$b/tools/flock" --help > /dev/null 2>&1 || { failed "the from-source flock does not run"; return 1; }
    ok "flock and flockc built from source against the kit's prefix only (pkg-config: ${pc#"$kit"/}; headers and libraries the kit's, checked in the dependency files and with ldd; $cudaopt)"
    src_flock=$b/tools/flock
    src_flockc=$b/tools/flockc
}

if [ -n "$kit" ]; then
    step "the kit $kit"
    # Programs that lost their mode on the way
    for f in "$kit"/bin/* "$kit"/prefix/bin/*; do [ -x "$f" ] || chmod u+x "$f" 2> /dev/null || true; done
    if [ ! -f "$kit/MANIFEST" ] || ! grep -q '^kit 1$' "$kit/MANIFEST"; then
        failed "$kit has no MANIFEST of a version-1 kit (tools/gpu-kit.sh)"
    else
        grep -E '^(made|commit|model) ' "$kit/MANIFEST" | sed 's/^/  /'
        if (cd "$kit" && sha256sum --quiet --strict -c SHA256SUMS) > "$out/kit-sha256.log" 2>&1; then
            n=$(wc -l < "$kit/SHA256SUMS")
            extra=$(cd "$kit" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
                comm -23 - <(awk '{print $2}' SHA256SUMS | LC_ALL=C sort) | head -3 | tr '\n' ' ')
            ok "the kit's sha256 sums: $n files as made${extra:+ (files not in SHA256SUMS: $extra)}"
        else
            failed "the kit's sha256 sums do not match: $(grep -v ': OK$' "$out/kit-sha256.log" | head -3 | tr '\n' ' ')"
        fi
        need=$(awk '$1 == "glibc_max" { print $2 }' "$kit/MANIFEST")
        have=$(getconf GNU_LIBC_VERSION 2> /dev/null | awk '{ print $2 }')
        if [ -n "$need" ] && [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
            note "the kit's binaries need GLIBC_$need, this machine has $have"
        else
            echo "  glibc: the kit needs GLIBC_${need:-?}, this machine has ${have:-?}"
        fi
        while read -r _ name path sms; do models+=("$name $kit/$path $sms"); done < <(grep '^bundle ' "$kit/MANIFEST")
    fi
    if out_help=$("$kit/bin/flock" --help 2>&1) && grep -q '^usage: flock' <<< "$out_help"; then
        flock=$kit/bin/flock
        ok "the kit's prebuilt flock runs here ($("$flock" --version 2> /dev/null | head -1))"
    else
        note "the kit's prebuilt flock does not run here: $(head -1 <<< "$out_help"); building it from source"
    fi
    if "${nvrtc_env[@]}" "$kit/bin/flockc" --help > /dev/null 2>&1; then
        flockc=$kit/bin/flockc
    else
        note "the kit's prebuilt flockc does not run here"
    fi
    src_flock=""
    src_flockc=""
    # In dry mode always (that is what a machine without the packages does);
    # on a GPU machine when a prebuilt program does not run.
    if [ "$dry" = 1 ] || [ -z "$flock" ] || [ -z "$flockc" ]; then
        step "flock from source against the kit's prefix"
        if build_from_kit; then
            [ -n "$flock" ] || flock=$src_flock
            [ -n "$flockc" ] || flockc=$src_flockc
        fi
    fi
elif [ "${GPU_CHECK_E2E:-1}" = 1 ] || [ "$dry" = 1 ]; then
    step "flock and flockc from source with this machine's packages"
    b=$out/full
    if ! timeout "$(tmo 120)" cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DFLOCK_TESTS=OFF -DFLOCK_LLVM=OFF -DFLOCK_SERVE=OFF \
            > "$out/full-configure.log" 2>&1; then
        failed "flock cannot be configured here: $(grep -m1 -i 'error\|needs' "$out/full-configure.log") (tools/gpu-kit.sh makes a kit for that: --kit)"
    elif ! timeout "$(tmo 240)" cmake --build "$b" -j"$(nproc)" --target flock flockc > "$out/flock-build.log" 2>&1; then
        failed "flock/flockc did not build: see $out/flock-build.log"
    else
        flock=$b/tools/flock
        flockc=$b/tools/flockc
        ok "flock and flockc built"
    fi
fi

cap=90
gpu=0       # a GPU run (not --no-gpu)
flock_gpu=1 # flock --device cuda finds a device (checked below)
if [ "$dry" = 0 ]; then
    step "the GPU"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
        c=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -1 | tr -d ' .' || true)
        if [[ "$c" =~ ^[0-9]+$ ]]; then cap=$c; else note "nvidia-smi gave no compute capability: assuming sm_90"; fi
    else
        note "no nvidia-smi: assuming sm_90"
    fi
    gpu=1
fi

# ---- the test model's bundles without a kit: compiled here ------------------------------------
if [ -z "$kit" ] && [ -n "$flockc" ]; then
    src=tests/data/tiny-llama.gguf
    if [ -f "$src" ]; then
        name=$(basename "$src" .gguf)
        mkdir -p "$out/e2e"
        if timeout "$(tmo 120)" "${nvrtc_env[@]}" "$flockc" "$src" -o "$out/e2e/$name.flock" --dtype f16 \
                --keep 0.25,0.5,0.75 --target "sm_$cap" --level 0 --quiet > "$out/e2e/$name.flockc.log" 2>&1; then
            models+=("$name $out/e2e/$name.flock sm_$cap")
        else
            failed "flockc $src --target sm_$cap: $(tail -2 "$out/e2e/$name.flockc.log" | tr '\n' ' ')"
        fi
    else
        failed "no test model: $src is missing"
    fi
fi

# ---- the bundles' kernel sections -----------------------------------------------------------
blob_args=()
sect_bundles=()
[ -z "$bundle_arg" ] || sect_bundles+=("arg $bundle_arg -")
for m in ${models[@]+"${models[@]}"}; do sect_bundles+=("$m"); done
if [ ${#sect_bundles[@]} -gt 0 ] && [ "$have_python" = 1 ]; then
    step "kernel sections"
    for e in "${sect_bundles[@]}"; do
        read -r name b sms <<< "$e"
        if [ -n "$flock" ] && [ "$sms" != - ]; then
            if "$flock" inspect "$b" --json > "$out/inspect-$name.json" 2> "$out/inspect-$name.err" &&
                r=$(compare inspect "$out/inspect-$name.json" "$sms"); then
                ok "flock inspect $(basename "$b"): $r"
            else
                failed "flock inspect $(basename "$b"): ${r:-$(tail -1 "$out/inspect-$name.err")}"
            fi
        fi
        rm -rf "$out/sections/$name"
        if ! python3 tools/extract_section.py "$b" "$out/sections/$name" > "$out/sections-$name.txt" 2>&1; then
            failed "extract_section.py $b: $(tail -1 "$out/sections-$name.txt")"; continue
        fi
        [ -s "$out/sections-$name.txt" ] || note "no cuda:* kernel sections in $b (flockc --target sm_XY)"
        while read -r sec file; do
            ptx=""
            [[ "$sec" != *compute_* ]] || ptx=$out/sections/$name/${sec#cuda:}.ptx
            if r=$(compare blob "$file" $ptx); then echo "  $name $sec: $r"; else failed "$name $sec: $r"; continue; fi
            # gpu_check --blob: the main bundle's (or the one given) sections
            if [ "$name" = arg ] || { [ -z "$bundle_arg" ] && [ "$b" = "$(awk 'NR == 1 {print $2}' <<< "${models[0]}")" ]; }; then
                blob_args+=(--blob "$file")
            fi
            # What the driver does with the PTX on an sm_90 GPU, by ptxas here
            if [ "$dry" = 1 ] && [ -n "$ptx" ] && [ -n "$cuda" ] && [ -x "$cuda/bin/ptxas" ] && [ "$name" != arg ] &&
                [[ "$b" == *-sm80.flock ]]; then
                if timeout "$(tmo 120)" "$cuda/bin/ptxas" -arch=sm_90 -v "$ptx" -o /dev/null > "$ptx.ptxas.log" 2>&1 &&
                    r=$(compare ptxas "$ptx.ptxas.log"); then
                    ok "ptxas -arch=sm_90 -v on $name's $sec PTX (the driver's JIT on an H200): $r"
                else
                    failed "ptxas -arch=sm_90 on $name's $sec PTX: ${r:-$(tail -2 "$ptx.ptxas.log" | tr '\n' ' ')}"
                fi
            fi
        done < "$out/sections-$name.txt"
    done
fi

# ---- is a GPU there for flock? ----------------------------------------------------------------
first_bundle=""
[ ${#models[@]} -eq 0 ] || first_bundle=$(awk '{print $2}' <<< "${models[0]}")
if [ -n "$flock" ] && [ -n "$first_bundle" ]; then
    if [ "$dry" = 1 ]; then
        step "flock --device cuda without a GPU"
        for lib in "" "$stubdir/libcuda.so.1"; do
            [ -z "$lib" ] || [ -n "$stubdir" ] || continue
            if [ -z "$lib" ]; then cl=(env -u FLOCK_CUDA_LIBRARY); else cl=(env "FLOCK_CUDA_LIBRARY=$lib"); fi
            "${cl[@]}" timeout 30 "$flock" run "$first_bundle" -p hi -n 1 --device cuda > /dev/null 2> "$out/nogpu.err"
            rc=$?
            msg=$(tail -1 "$out/nogpu.err")
            if [ "$rc" = 1 ] && grep -q 'no CUDA device' <<< "$msg"; then
                via=""
                [ -z "$lib" ] || via=" (libcuda.so.1 = the toolkit's stub)"
                ok "no GPU, reported cleanly$via: $msg"
            elif [ -z "$lib" ] && [ "$rc" = 0 ]; then
                note "flock --device cuda ran here: this machine has a GPU (dry mode does not use it)"
            else
                failed "flock --device cuda without a GPU: exit $rc, $msg"
            fi
        done
    elif [ "$standin" = 1 ]; then
        note "rehearsal: flock --device cuda not run"
    else
        timeout 60 "$flock" run "$first_bundle" -p hi -n 1 --temp 0 --device cuda > /dev/null 2> "$out/probe.err"
        rc=$?
        if [ "$rc" = 0 ]; then
            ok "flock --device cuda runs:$(tail -1 "$out/probe.err" | awk -F'|' '{ print $(NF-1) "|" $NF }' | tr -d ']')"
        else
            failed "flock --device cuda: exit $rc: $(tail -1 "$out/probe.err") (no GPU? tools/gpu-check.sh --no-gpu runs the checks that need none)"
            # Without a device every run would say the same; another error
            # may be this bundle's alone: each run then says what it is.
            ! grep -q 'no CUDA device' "$out/probe.err" || flock_gpu=0
        fi
    fi
fi

# ---- 2. end to end ---------------------------------------------------------------------------
ref_same=0
ref_all=0
# row MODEL KERNELS PROMPT KEEP TOKENS EXPERTS TOKS
row() { rows+=("$(printf '%-16s %-15s %6s %5s  %-34s %-40s %s' "$@")"); }
# e2e NAME BUNDLE PROMPTS KEEPS SECTION SECONDS: flock run and flock experts on
# the device against the CPU, for each prompt and keep ratio, each run within
# SECONDS; the device runs must use the kernel section SECTION. After a device
# run that times out, the bundle's other device runs are not tried ($dead).
dead=""
e2e() {
    local name=$1 b=$2 prompts=$3 keeps=$4 want=$5 t=$6
    local p keep base text n tk ex tps kern rc dev
    dead=""
    local dir=$out/e2e
    mkdir -p "$dir"
    if [ "$standin" = 1 ]; then dev=(--device cpu --threads 1); else dev=(--device cuda); fi
    for p in $prompts; do
        text=$(cat "$(pfile "$p")")
        for keep in $keeps; do
            base=$dir/$(basename "$b" .flock)-$p-$keep
            if [ "$(left)" -lt 15 ]; then row "$name" "-" "$p" "$keep" "not run: no time left" "" ""; failed "$name $p keep $keep: no time left"; continue; fi
            n="?" tk="" ex="-" tps="-" kern="-"
            timeout "$(tmo "$t")" "$flock" run "$b" -p "$text" -n 32 --temp 0 --keep "$keep" --device cpu --json \
                > "$base.cpu.json" 2> "$base.cpu.err" || tk="cpu run FAILED: $(tail -1 "$base.cpu.err")"
            [ -n "$tk" ] || n=$(compare field "$base.cpu.json" prompt_tokens)
            if [ -n "$dead" ]; then
                tk="not run: $dead"
            elif [ -z "$tk" ]; then
                timeout "$(tmo "$t")" "$flock" run "$b" -p "$text" -n 32 --temp 0 --keep "$keep" "${dev[@]}" --json \
                    > "$base.dev.json" 2> "$base.dev.err"
                rc=$?
                if [ "$rc" = 0 ]; then
                    tk=$(compare tokens "$base.cpu.json" "$base.dev.json")
                    kern=$(compare field "$base.dev.json" kernels)
                    [ "$standin" = 1 ] || [ "$kern" = "$want" ] ||
                        failed "$name ($(basename "$b")): the device ran $kern, not $want"
                    if [ "$standin" = 1 ]; then tps="no GPU"
                    else tps="$(compare field "$base.dev.json" decode_tok_s) (run)"; fi
                else
                    tk="run FAILED: exit $rc $(tail -1 "$base.dev.err" | cut -c1-60)"
                    [ "$rc" -lt 124 ] || dead="an earlier run timed out"
                fi
            fi
            if [ "$keep" != 1.0 ] && [ -z "$dead" ]; then
                if timeout "$(tmo "$t")" "$flock" experts "$b" -p "$text" --keep "$keep" --device cpu > "$base.cpu.experts" 2>&1 &&
                    timeout "$(tmo "$t")" "$flock" experts "$b" -p "$text" --keep "$keep" "${dev[@]}" > "$base.dev.experts" 2>&1; then
                    ex=$(compare experts "$base.cpu.experts" "$base.dev.experts")
                else
                    rc=$?
                    ex="experts FAILED: exit $rc"
                    [ "$rc" -lt 124 ] || dead="an earlier run timed out"
                fi
            fi
            # The kit's CPU reference, made where the kit was made.
            local ref=${kit:+$kit/expected/$name-$p-$keep}
            if [ -n "$ref" ] && [ -f "$ref.run.json" ] && [ -f "$base.cpu.json" ]; then
                ref_all=$((ref_all + 1))
                compare tokens "$ref.run.json" "$base.cpu.json" > /dev/null && ref_same=$((ref_same + 1))
            fi
            [[ "$tk" == equal* ]] || failed "$name ($(basename "$b")) $p keep $keep: tokens $tk"
            [[ "$ex" == equal* || "$ex" == - ]] || failed "$name ($(basename "$b")) $p keep $keep: experts $ex"
            echo "  $name $p ($n tokens) keep $keep [$kern]: tokens $tk; experts $ex; $tps"
            row "$name" "$kern" "$n" "$keep" "$tk" "$ex" "$tps"
        done
    done
}
# bench NAME BUNDLE PROMPT_LEN KEEPS
bench() {
    local name=$1 b=$2 plen=$3 keeps=$4 k tps args
    local base=$out/e2e/$(basename "$b" .flock)-bench
    if [ "$dry" = 1 ]; then args=(--device cpu --prompt-len 64 --gen-len 8 --repeats 1)
    elif [ "$standin" = 1 ]; then args=(--device cpu --prompt-len "$plen" --gen-len 64 --repeats 3)
    else args=(--device cuda --prompt-len "$plen" --gen-len 64 --repeats 3); fi
    if [ "$(left)" -lt 40 ]; then note "$name: flock bench not run (no time left)"; return; fi
    if [ -n "$dead" ]; then note "$name: flock bench not run ($dead)"; return; fi
    if timeout "$(tmo 120)" "$flock" bench "$b" --keep "$keeps" "${args[@]}" --json > "$base.json" 2> "$base.err"; then
        while read -r k tps; do
            [ "$standin" = 0 ] || tps="$tps on the cpu (no GPU)"
            row "$name" "$(compare field "$base.json" kernels)" "${args[3]}" "$k" \
                "flock bench ${args[0]} ${args[1]}" "(decode: ${args[5]} tokens x ${args[7]})" "$tps"
        done < <(compare bench "$base.json")
        echo "  $name: flock bench ${args[*]}: $(compare bench "$base.json" | tr '\n' ' ')"
    else
        failed "$name: flock bench ${args[*]}: $(tail -1 "$base.err")"
    fi
}

e2e_on=0
if [ "${GPU_CHECK_E2E:-1}" = 1 ] && [ -n "$flock" ] && [ "$have_python" = 1 ] && { [ "$gpu" = 1 ] || [ "$dry" = 1 ]; } &&
    [ "$flock_gpu" = 1 ]; then
    e2e_on=1
elif [ "${GPU_CHECK_E2E:-1}" = 1 ]; then
    [ -n "$flock" ] || note "end to end NOT CHECKED: no flock runs here"
    [ "$have_python" = 1 ] || note "end to end NOT CHECKED: no python3"
    [ "$flock_gpu" = 1 ] || note "end to end NOT CHECKED: flock finds no CUDA device"
fi
if [ "$e2e_on" = 1 ]; then
    if [ "$standin" = 1 ]; then step "end to end: flock --device cpu --threads 1 (standing in for cuda) vs --device cpu"
    else step "end to end: flock --device cuda vs --device cpu"; fi
    for m in ${models[@]+"${models[@]}"}; do
        read -r name b sms <<< "$m"
        want=cuda:compute_80 # the PTX, when the bundle has no CUBIN for this GPU
        [[ ",$sms," != *",sm_$cap,"* ]] || want=cuda:sm_$cap
        if [[ "$b" == *-sm80.flock ]]; then
            e2e "$name" "$b" "long" "1.0 0.5" "$want" 45
        else
            e2e "$name" "$b" "short long" "1.0 0.75 0.5 0.25" "$want" 45
            long_n=$(compare field "$out/e2e/$(basename "$b" .flock)-long-1.0.cpu.json" prompt_tokens)
            [[ "$long_n" =~ ^[0-9]+$ ]] || long_n=256
            bench "$name" "$b" "$long_n" "1,0.75,0.5,0.25"
        fi
    done
    if [ "$standin" = 1 ] && [ -n "$kit" ]; then
        # The comparisons can fail: two things that differ must read as different.
        e=$kit/expected/$(awk '{print $1}' <<< "${models[0]}")
        if ! compare tokens "$e-short-1.0.run.json" "$e-long-1.0.run.json" > /dev/null &&
            ! compare experts "$e-long-0.5.experts.json" "$e-long-0.25.experts.json" > /dev/null; then
            ok "the comparisons tell different tokens and experts apart (the kit's short/long, keep 0.5/0.25)"
        else
            failed "the token or expert comparison calls different outputs equal"
        fi
    fi
fi

# ---- 3. gpu_check's kernel checks (after the test model end to end: that is the new part) ------
kernel_summary=""
if [ "$gpu" = 1 ] && [ "$standin" = 1 ]; then
    note "rehearsal: gpu_check not run"
elif [ "$gpu" = 1 ] && [ -n "$gpu_check" ]; then
    step "gpu_check: the kernels against the CPU reference"
    t=$(tmo 150)
    "${nvrtc_env[@]}" timeout -k 5 "$t" "$gpu_check" --no-bench ${blob_args[@]+"${blob_args[@]}"} 2>&1 | tee "$out/gpu_check.log"
    rc=${PIPESTATUS[0]}
    kernel_summary=$(grep 'kernel checks:' "$out/gpu_check.log" | tail -1)
    blobs_ok=$(grep -c '^ok   blob' "$out/gpu_check.log")
    if [ "$rc" = 0 ]; then ok "gpu_check: ${kernel_summary:-?} (bundle sections loaded: $blobs_ok)"
    elif [ "$rc" -ge 124 ]; then failed "gpu_check: ran out of its $t s${kernel_summary:+ ($kernel_summary)}"
    else failed "gpu_check: exit $rc: ${kernel_summary:-$(tail -1 "$out/gpu_check.log")}"; fi
fi

if [ "$e2e_on" = 1 ]; then
    smol=${FLOCK_MODEL_DIR:-$HOME/.cache/flock/models}/SmolLM2-135M-Instruct.Q4_1.gguf
    step "SmolLM2-135M"
    if [ ! -f "$smol" ]; then
        note "SmolLM2-135M NOT CHECKED: $smol is not on this machine (its f16 bundle, 270 MB, cannot travel in the kit)"
        row "SmolLM2-135M" "-" "-" "-" "NOT CHECKED: no model file here" "" ""
    elif [ -z "$flockc" ]; then
        note "SmolLM2-135M NOT CHECKED: no flockc runs here"
        row "SmolLM2-135M" "-" "-" "-" "NOT CHECKED: no flockc" "" ""
    elif [ "$(left)" -lt 150 ]; then
        note "SmolLM2-135M NOT CHECKED: $(left) s left of the budget"
        row "SmolLM2-135M" "-" "-" "-" "NOT CHECKED: no time left" "" ""
    else
        sb=$out/e2e/SmolLM2-135M.flock
        if timeout "$(tmo 150)" "${nvrtc_env[@]}" "$flockc" "$smol" -o "$sb" --dtype f16 --keep 0.25,0.5,0.75 \
                --target "sm_$cap" --level 0 --quiet > "$out/e2e/smollm2.flockc.log" 2>&1; then
            if [ "$dry" = 1 ]; then e2e SmolLM2-135M "$sb" longer "1.0 0.5" "cuda:sm_$cap" 90
            else
                e2e SmolLM2-135M "$sb" longer "1.0 0.75 0.5 0.25" "cuda:sm_$cap" 90
                n=$(compare field "$out/e2e/SmolLM2-135M-longer-1.0.cpu.json" prompt_tokens)
                [[ "$n" =~ ^[0-9]+$ ]] || n=256
                bench SmolLM2-135M "$sb" "$n" "1,0.5"
            fi
        else
            failed "flockc SmolLM2 --target sm_$cap: $(tail -2 "$out/e2e/smollm2.flockc.log" | tr '\n' ' ')"
        fi
    fi
fi

# ---- 4. decode-step timing, codegen tests ------------------------------------------------------
if [ "$gpu" = 1 ] && [ "$standin" = 0 ] && [ -n "$gpu_check" ] && [ "$no_bench" = 0 ]; then
    step "gpu_check: decode-step timing"
    if [ "$(left)" -lt 60 ]; then
        note "gpu_check's timing NOT RUN: $(left) s left of the budget"
    else
        t=$(tmo 240)
        "${nvrtc_env[@]}" timeout -k 5 "$t" "$gpu_check" --bench-only 2>&1 | tee "$out/gpu_check-bench.log"
        rc=${PIPESTATUS[0]}
        if [ "$rc" = 0 ]; then ok "gpu_check --bench-only (its table is above)"
        elif [ "$rc" -ge 124 ]; then failed "gpu_check --bench-only: ran out of its $t s"
        else failed "gpu_check --bench-only: exit $rc: $(tail -1 "$out/gpu_check-bench.log")"; fi
    fi
fi
if [ "$gpu" = 1 ] && [ "$(left)" -ge 150 ]; then
    step "codegen tests (no GPU needed; when the full build with cmocka configures)"
    envs=()
    [ -z "$kit" ] || envs=(PKG_CONFIG_PATH="$kit/prefix/lib/pkgconfig")
    if env ${envs[@]+"${envs[@]}"} timeout 60 cmake -S . -B "$out/cmake" -DFLOCK_CUDA=ON -DFLOCK_LLVM=OFF -DFLOCK_SERVE=OFF \
            -DCMAKE_BUILD_TYPE=Release > "$out/configure.log" 2>&1; then
        if timeout "$(tmo 120)" cmake --build "$out/cmake" -j"$(nproc)" --target test_codegen test_gpu_check_ref \
                > "$out/build.log" 2>&1 &&
            (cd "$out/cmake" && timeout "$(tmo 60)" ctest --output-on-failure -R 'test_codegen$|test_gpu_check_ref' --timeout 60); then
            ok "codegen tests"
        else
            note "codegen tests did not build or failed: see $out/build.log"
        fi
    else
        note "codegen tests not run: the full CMake build does not configure here ($(grep -m1 -iE 'needs|could not find|not found' "$out/configure.log" || grep -m1 -i error "$out/configure.log"))"
    fi
fi

# ---- the table -------------------------------------------------------------------------------
echo
echo "== gpu-check summary =="
[ -z "$kernel_summary" ] || echo "gpu_check $kernel_summary"
printf '%s\n' ${checks[@]+"${checks[@]}"}
[ "$ref_all" = 0 ] || echo "cpu runs equal to the kit's recorded ones (made where the kit was made): $ref_same/$ref_all"
for n in ${notes[@]+"${notes[@]}"}; do echo "note: $n"; done
if [ ${#rows[@]} -gt 0 ]; then
    echo
    if [ "$standin" = 1 ]; then
        echo "== end to end, $([ "$dry" = 1 ] && echo 'dry mode' || echo rehearsal): '--device cpu --threads 1' stands in for cuda; no GPU was used =="
    else
        echo "== end to end: flock --device cuda against --device cpu (32 greedy tokens; experts per layer) =="
    fi
    printf '%-16s %-15s %6s %5s  %-34s %-40s %s\n' model kernels prompt keep "tokens (cuda = cpu?)" \
        "experts (cuda = cpu?)" "cuda decode tok/s"
    printf '%s\n' "${rows[@]}"
fi
echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "gpu-check: PASS in $(elapsed) s${kit:+ (kit $kit)}$([ "$standin" = 1 ] && echo ', no GPU used')"
    exit 0
fi
echo "gpu-check: FAIL (${#failures[@]} failed) in $(elapsed) s$([ "$standin" = 1 ] && echo ', no GPU used')"
exit 1
