#!/usr/bin/env bash
# The GPU check's dry mode on the GPU kit, as CI runs it (no GPU needed):
# tools/gpu-kit.sh into BUILD/gpu-kit, then tools/gpu-check.sh --no-gpu --kit on
# it (docs/runtime.md, "Checking the CUDA path"). Skipped (77) when flock is
# built without FLOCK_CUDA; a missing input fails, naming it.
#   tests/check_gpu_dry.sh SOURCE_DIR BUILD_DIR HAVE_CUDA
set -uo pipefail
src=$1 build=$2 have_cuda=$3
[ "$have_cuda" = 1 ] || { echo "SKIPPED: flock is built without FLOCK_CUDA (no NVRTC): no gpu_check, no CUDA sections"; exit 77; }
command -v python3 > /dev/null || { echo "MISSING: python3 (tools/setup.sh --test)"; exit 1; }
[ -f "$src/tests/data/tiny-llama.gguf" ] || { echo "MISSING: tests/data/tiny-llama.gguf"; exit 1; }
"$src/tools/gpu-kit.sh" "$build/gpu-kit" > "$build/gpu-kit.log" 2>&1 || { tail -30 "$build/gpu-kit.log"; exit 1; }
tail -1 "$build/gpu-kit.log"
exec "$src/tools/gpu-check.sh" --no-gpu --kit "$build/gpu-kit" "$build/gpu-check-dry"
