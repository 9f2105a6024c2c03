#!/usr/bin/env bash
# The GPU check's dry mode on the GPU kit, as CI runs it (no GPU needed):
# tools/gpu-kit.sh into BUILD/gpu-kit, then tools/gpu-check.sh --no-gpu --kit on
# it (docs/runtime.md, "Checking the CUDA path"). Exit 77 (skipped) without the
# CUDA toolkit, python3 or the test model (tests/data/tiny-llama.gguf, or
# $FLOCK_TEST_DATA/models/stories260K.gguf).
#   tests/check_gpu_dry.sh SOURCE_DIR BUILD_DIR HAVE_CUDA
set -uo pipefail
src=$1 build=$2 have_cuda=$3
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$have_cuda" = 1 ] || skip "flock is built without FLOCK_CUDA (no NVRTC): no gpu_check, no CUDA sections"
command -v python3 > /dev/null || skip "no python3"
[ -f "$src/tests/data/tiny-llama.gguf" ] || [ -f "${FLOCK_TEST_DATA:-/nonexistent}/models/stories260K.gguf" ] ||
    skip "no test model (tests/data/tiny-llama.gguf or \$FLOCK_TEST_DATA/models/stories260K.gguf)"
"$src/tools/gpu-kit.sh" "$build/gpu-kit" > "$build/gpu-kit.log" 2>&1 || { tail -30 "$build/gpu-kit.log"; exit 1; }
tail -1 "$build/gpu-kit.log"
exec "$src/tools/gpu-check.sh" --no-gpu --kit "$build/gpu-kit" "$build/gpu-check-dry"
