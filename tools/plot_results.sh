#!/usr/bin/env bash
# Turns the JSON of `flock eval --json` and `flock bench --json` into figures
# (gnuplot, PNG).
#   tools/plot_results.sh OUT_DIR NAME EVAL.json [BENCH.json]
# writes OUT_DIR/NAME-quality.png (perplexity ratio and top-1 agreement
# against keep, one line per selection method) and, with BENCH.json,
# OUT_DIR/NAME-speed.png (decode tok/s and achieved GB/s against keep).
set -euo pipefail
if [ $# -lt 3 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 3 ] && exit 0 || exit 2
fi
out=$1 name=$2 eval_json=$3 bench_json=${4:-}
command -v gnuplot >/dev/null || { echo "plot_results: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One data file per method: keep ppl_ratio top1 kl (full model at keep 1 added to each).
python3 - "$eval_json" "$tmp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if d.get("mode") != "text":
    sys.exit("plot_results: expected the JSON of 'flock eval --text ... --json'")
full = [r for r in d["results"] if r["select"] == "full"][0]
methods = sorted({r["select"] for r in d["results"]} - {"full"})
for m in methods:
    rows = sorted((r for r in d["results"] if r["select"] == m), key=lambda r: r["keep"])
    rows.append(full)
    with open(f"{sys.argv[2]}/{m}.dat", "w") as f:
        for r in rows:
            f.write(f'{r["keep"]} {r["ppl_ratio"]} {r["top1_agree"]} {r["mean_kl"]}\n')
open(f"{sys.argv[2]}/methods", "w").write(" ".join(methods))
PY
methods=$(cat "$tmp/methods")
plot1="" plot2=""
for m in $methods; do
    plot1+="'$tmp/$m.dat' using 1:2 with linespoints lw 2 title '$m',"
    plot2+="'$tmp/$m.dat' using 1:3 with linespoints lw 2 title '$m',"
done
gnuplot <<GP
set terminal png size 1100,420 font ",11"
set output "$out/$name-quality.png"
set multiplot layout 1,2 title "$name: quality against keep ratio (1.0 = full model)"
set xlabel "keep ratio"; set grid
set ylabel "perplexity / full"; set logscale y
plot ${plot1%,}
unset logscale y
set ylabel "top-1 agreement with full"; set yrange [0:1.05]
plot ${plot2%,}
unset multiplot
GP
echo "wrote $out/$name-quality.png"

if [ -n "$bench_json" ]; then
    python3 - "$bench_json" "$tmp/bench.dat" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for r in sorted(d["results"], key=lambda r: r["keep"]):
        f.write(f'{r["keep"]} {r["decode_tok_s"]} {r["achieved_gbs"]} {d["read_gbs"]}\n')
PY
    gnuplot <<GP
set terminal png size 1100,420 font ",11"
set output "$out/$name-speed.png"
set multiplot layout 1,2 title "$name: decode speed against keep ratio"
set xlabel "keep ratio"; set grid
set ylabel "decode tokens/s"
plot '$tmp/bench.dat' using 1:2 with linespoints lw 2 title 'decode tok/s'
set ylabel "GB/s"
plot '$tmp/bench.dat' using 1:3 with linespoints lw 2 title 'weights streamed', \
     '$tmp/bench.dat' using 1:4 with lines dt 2 title 'measured read bandwidth'
unset multiplot
GP
    echo "wrote $out/$name-speed.png"
fi
