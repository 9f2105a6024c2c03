#!/usr/bin/env bash
# The main job on the default model: compile SmolLM2-135M-Instruct into a
# bundle, then generate text with GRIFFIN at keep 0.5 (and the full model for
# comparison). Run by `make demo` after set-up and the build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
MODEL_DIR="${FLOCK_MODEL_DIR:-$HOME/.cache/flock/models}"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR="${FLOCK_DEMO_DIR:-$BUILD/demo}"
BUNDLE="$OUT_DIR/smollm2-135m.flock"
# GRIFFIN selects each layer's experts from the prompt, so a prompt with some
# substance (here a paragraph to summarize, as in the paper's XSum task) gives
# it more to go on than a one-line question.
PROMPT="${FLOCK_DEMO_PROMPT:-The Amazon rainforest covers much of the Amazon basin of South America. The basin covers seven million square kilometres, of which five and a half million are covered by the rainforest. The region includes territory belonging to nine nations. The majority of the forest is contained within Brazil, with 60% of the rainforest, followed by Peru with 13%, and Colombia with 10%. Summarize the text above in one sentence.}"
FLOCKC="$BUILD/tools/flockc"
FLOCK="$BUILD/tools/flock"

say() { printf '\n[demo] %s\n' "$*"; }
stop_here() {
    say "stops here: $*"
    exit 0
}

[ -f "$MODEL" ] || { echo "[demo] error: $MODEL is missing: run tools/setup.sh" >&2; exit 1; }
mkdir -p "$OUT_DIR"

[ -x "$FLOCKC" ] || stop_here "the compiler (flockc) is not built yet"
say "compiling $MODEL -> $BUNDLE (its own Q4_1 blocks, keep ratios 0.5 and 0.75)"
"$FLOCKC" "$MODEL" -o "$BUNDLE" --keep 0.5,0.75

[ -x "$FLOCK" ] || stop_here "the flock CLI is not built yet"
"$FLOCK" inspect "$BUNDLE" | sed -n '1,12p' || true
"$FLOCK" help run >/dev/null 2>&1 || stop_here "'flock run' (the CPU runtime) is not built yet"

say "GRIFFIN, keep 0.5: experts selected from the prompt, then generation with half of each FF layer"
"$FLOCK" run "$BUNDLE" --chat -p "$PROMPT" -n 64 --temp 0 --keep 0.5 --select griffin
say "full model (keep 1.0), for comparison"
"$FLOCK" run "$BUNDLE" --chat -p "$PROMPT" -n 64 --temp 0 --keep 1.0
