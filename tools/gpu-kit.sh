#!/usr/bin/env bash
# The GPU kit: everything tools/gpu-check.sh needs on a bare GPU machine (a C
# compiler, CMake, the CUDA toolkit and Python 3, but none of zstd, json-c,
# PCRE2 or xxhash), made here and carried there beside the working tree.
#
#   tools/gpu-kit.sh [--model GGUF] [DIR]      (default DIR: build-gpu-kit)
#
# DIR gets:
#   bin/flock, bin/flockc, bin/gpu_check   a Release build made here against the
#                          kit's own prefix (flockc with NVRTC, without LLVM), run
#                          paths $ORIGIN/../prefix/lib and /usr/local/cuda/lib64
#   prefix/                the four dependencies' headers and shared objects (from
#                          this machine's Debian -dev packages, `dpkg -L`), their
#                          pkg-config files relocatable (${pcfiledir}), and pkgconf
#                          (prefix/bin/pkg-config) for a machine without pkg-config:
#                          enough to configure and build flock from source there
#   bundles/NAME.flock     the test model, flockc --dtype f16 --keep 0.25,0.5,0.75
#                          --target sm_80,sm_89,sm_90 --level 0 (CUBIN for each sm,
#                          plus the cuda:compute_80 PTX that any sm target adds)
#   bundles/NAME-sm80.flock  the same with --target sm_80 only: an sm_90 GPU has no
#                          CUBIN of its own there and runs the PTX (driver JIT)
#   prompts/short.txt, long.txt, longer.txt   the prompts (tests/data/gpu-prompt-*.txt):
#                          on the test model 34 and 283 tokens (the long one over one
#                          of the CUDA backend's 256-token prefill chunks, and just past
#                          the 256 positions the model was trained on); the longer one
#                          (671 tokens on SmolLM2, three chunks) is for SmolLM2
#   expected/              this machine's `flock run --device cpu` and `flock
#                          experts --device cpu` output for every prompt and keep
#   MANIFEST, SHA256SUMS   what was made from what (model, commit, glibc needed),
#                          and the sha256 of every file (`sha256sum -c SHA256SUMS`)
#
# The test model is tests/data/tiny-llama.gguf (stories260K's shape: dim 64, 5
# layers, FF 172, 8/4 heads, vocab 512); --model or $FLOCK_GPU_KIT_MODEL names
# another of that shape.
# The build folder is DIR.build (kept between runs). Needs the -dev packages,
# the CUDA toolkit (NVRTC), dpkg, objdump, python3 and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
model=${FLOCK_GPU_KIT_MODEL:-}
dir=""
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --model) [ $# -ge 2 ] || { echo "gpu-kit: --model needs a file" >&2; exit 2; }; model=$2; shift ;;
    --model=*) model=${1#--model=} ;;
    -*) echo "gpu-kit: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$dir" ] || { echo "gpu-kit: one DIR only" >&2; exit 2; }; dir=$1 ;;
    esac
    shift
done
dir=${dir:-build-gpu-kit}
model=${model:-tests/data/tiny-llama.gguf}
[ -f "$model" ] || { echo "gpu-kit: no test model at $model (give --model GGUF)" >&2; exit 1; }
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
name=$(basename "$model" .gguf)
for tool in dpkg objdump python3 sha256sum cmake; do
    command -v "$tool" > /dev/null || { echo "gpu-kit: needs $tool" >&2; exit 1; }
done
start=$(date +%s)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bdir=${FLOCK_GPU_KIT_BUILD:-$dir.build}
case "$bdir" in "$dir"/*) echo "gpu-kit: the build folder must be outside DIR" >&2; exit 2 ;; esac
rm -rf "${dir:?}"/{bin,prefix,bundles,prompts,expected,MANIFEST,SHA256SUMS}
mkdir -p "$dir"/{bin,bundles,prompts,expected} "$dir"/prefix/{include,lib/pkgconfig,bin,share/doc}
prefix=$dir/prefix
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2> /dev/null || echo x86_64-linux-gnu)

# ---- (b) the dependencies: headers, shared objects, pkg-config files ---------
# dev package, pkg-config module, runtime library (soname) it links.
deps=(
    "libzstd-dev libzstd libzstd.so"
    "libjson-c-dev json-c libjson-c.so"
    "libpcre2-dev libpcre2-8 libpcre2-8.so"
    "libxxhash-dev libxxhash libxxhash.so"
)
echo "== dependencies (from the installed -dev packages) =="
for d in "${deps[@]}"; do
    read -r pkg module solink <<< "$d"
    files=$(dpkg -L "$pkg") || { echo "gpu-kit: $pkg is not installed (tools/setup.sh installs it)" >&2; exit 1; }
    # headers: everything the package puts under /usr/include
    while read -r f; do
        [ -f "$f" ] || continue
        rel=${f#/usr/include/}
        mkdir -p "$prefix/include/$(dirname "$rel")"
        cp "$f" "$prefix/include/$rel"
    done < <(grep '^/usr/include/.*\.h$' <<< "$files")
    pc=$(grep "/pkgconfig/$module\.pc\$" <<< "$files" | head -1)
    so=$(grep "/$solink\$" <<< "$files" | head -1)
    [ -n "$pc" ] && [ -n "$so" ] || { echo "gpu-kit: $pkg lacks $module.pc or $solink" >&2; exit 1; }
    real=$(readlink -f "$so")
    soname=$(objdump -p "$real" | awk '$1 == "SONAME" { print $2 }')
    [ -n "$soname" ] || { echo "gpu-kit: $real has no SONAME" >&2; exit 1; }
    # No symbolic links in the kit: the file under its soname (what programs
    # load) and again under the link-time name (what -l finds).
    cp "$real" "$prefix/lib/$soname"
    cp "$real" "$prefix/lib/$solink"
    # Relocatable: the prefix is wherever the .pc file is.
    sed -e 's|^prefix=.*|prefix=${pcfiledir}/../..|' -e 's|^exec_prefix=.*|exec_prefix=${prefix}|' \
        -e 's|^libdir=.*|libdir=${prefix}/lib|' -e 's|^includedir=.*|includedir=${prefix}/include|' \
        "$pc" > "$prefix/lib/pkgconfig/$module.pc"
    runtime_pkg=$(dpkg -S "$real" | head -1 | cut -d: -f1)
    mkdir -p "$prefix/share/doc/$runtime_pkg"
    cp "/usr/share/doc/$runtime_pkg/copyright" "$prefix/share/doc/$runtime_pkg/" 2> /dev/null || true
    ver=$(dpkg-query -W -f '${Version}' "$pkg")
    echo "  $pkg $ver: $soname, $(grep -c '^/usr/include/.*\.h$' <<< "$files") headers, $module.pc"
    echo "dep $module $ver $soname" >> "$dir/MANIFEST.deps"
done
# pkgconf, for a machine without pkg-config (CMake's FindPkgConfig needs one):
# prefix/bin/pkg-config runs it with the kit's library and .pc files only.
if pkgconf=$(command -v pkgconf); then
    pkgconf=$(readlink -f "$pkgconf")
    cp "$pkgconf" "$prefix/bin/pkgconf"
    lib=$(ldd "$pkgconf" | awk '/libpkgconf/ { print $3 }')
    [ -z "$lib" ] || cp "$(readlink -f "$lib")" "$prefix/lib/$(basename "$lib")"
    for p in pkgconf-bin libpkgconf3; do
        [ -f "/usr/share/doc/$p/copyright" ] && mkdir -p "$prefix/share/doc/$p" && cp "/usr/share/doc/$p/copyright" "$prefix/share/doc/$p/"
    done
    cat > "$prefix/bin/pkg-config" << 'EOF'
#!/bin/sh
# pkgconf from the GPU kit, seeing only the kit's .pc files.
here=$(cd "$(dirname "$0")" && pwd)
export PKG_CONFIG_LIBDIR="$here/../lib/pkgconfig" PKG_CONFIG_PATH="$here/../lib/pkgconfig"
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/pkgconf" "$@"
EOF
    chmod +x "$prefix/bin/pkg-config"
    "$prefix/bin/pkg-config" --modversion libzstd > /dev/null || { echo "gpu-kit: the kit's pkgconf does not run" >&2; exit 1; }
else
    echo "  (no pkgconf here: the kit will need the GPU machine's pkg-config)"
fi
mv "$dir/MANIFEST.deps" "$dir/MANIFEST.tmp"

# ---- (a) flock, flockc and gpu_check, built against the kit's prefix only ----
echo "== build (against $prefix only) in $bdir =="
cuda_lib=/usr/local/cuda/lib64
rm -f "$bdir/CMakeCache.txt"
mkdir -p "$bdir"
# The system's .pc files are hidden (PKG_CONFIG_LIBDIR); no build rpath, but
# one relative to the binary (and the usual CUDA place, for NVRTC).
# shellcheck disable=SC2016
if ! PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig PKG_CONFIG_PATH=$prefix/lib/pkgconfig \
        cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DFLOCK_CUDA=ON -DFLOCK_LLVM=OFF -DFLOCK_TESTS=OFF -DFLOCK_SERVE=OFF \
        -DCMAKE_SKIP_BUILD_RPATH=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
        '-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath,$ORIGIN/../prefix/lib:'"$cuda_lib:/usr/local/cuda/lib" \
        > "$bdir/configure.log" 2>&1; then
    tail -20 "$bdir/configure.log"; echo "gpu-kit: configure failed ($bdir/configure.log)" >&2; exit 1
fi
if ! cmake --build "$bdir" -j"$(nproc)" --target flock flockc gpu_check > "$bdir/build.log" 2>&1; then
    tail -30 "$bdir/build.log"; echo "gpu-kit: build failed ($bdir/build.log)" >&2; exit 1
fi
for t in flock flockc gpu_check; do
    cp "$bdir/tools/$t" "$dir/bin/$t"
    strip "$dir/bin/$t" 2> /dev/null || true
done
# Every dependency header the build read came from the prefix.
if grep -rhoE '/usr/(local/)?include/(zstd|zdict|zstd_errors|pcre2|xxhash|xxh3)\.h|/usr/(local/)?include/json-c/' \
        --include='*.o.d' "$bdir" | sort -u | grep .; then
    echo "gpu-kit: the build above read dependency headers from the system, not the prefix" >&2; exit 1
fi
grep -rqF "$prefix/include/zstd.h" --include='*.o.d' "$bdir" ||
    { echo "gpu-kit: no dependency file of the build names $prefix/include/zstd.h" >&2; exit 1; }
for t in flock flockc; do
    missing=$(env -u LD_LIBRARY_PATH ldd "$dir/bin/$t" | grep -E 'zstd|json-c|pcre2|xxhash' | grep -v "$dir/bin/../prefix/lib/" || true)
    [ -z "$missing" ] || { echo "gpu-kit: bin/$t loads a dependency from outside the kit: $missing" >&2; exit 1; }
done
"$dir/bin/flock" --help > /dev/null
echo "  bin/flock, bin/flockc, bin/gpu_check (RUNPATH $(objdump -p "$dir/bin/flock" | awk '$1 == "RUNPATH" { print $2 }'))"

# ---- glibc: the newest symbol version each ELF file needs ------------------------
echo "== glibc needed (objdump -T) =="
glibc_max=0
while read -r f; do
    v=$( (objdump -T "$f" 2> /dev/null || true) | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)
    [ -n "$v" ] || continue
    echo "  ${f#"$dir"/}: GLIBC_$v"
    echo "glibc ${f#"$dir"/} $v" >> "$dir/MANIFEST.tmp"
    glibc_max=$(printf '%s\n%s\n' "$glibc_max" "$v" | sort -V | tail -1)
done < <(find "$dir/bin" "$dir/prefix/lib" "$dir/prefix/bin" -type f \( -name '*.so*' -o -perm -u+x \) | sort)
echo "  newest: GLIBC_$glibc_max (this machine: $(getconf GNU_LIBC_VERSION 2> /dev/null || echo '?'))"

# ---- (c) the bundles -------------------------------------------------------------
echo "== bundles of $name ($model) =="
flockc=$dir/bin/flockc
bundle=$dir/bundles/$name.flock
"$flockc" "$model" -o "$bundle" --dtype f16 --keep 0.25,0.5,0.75 --target sm_80,sm_89,sm_90 --level 0 --quiet
"$flockc" "$model" -o "$dir/bundles/$name-sm80.flock" --dtype f16 --keep 0.25,0.5,0.75 --target sm_80 --level 0 --quiet
for b in "$dir"/bundles/*.flock; do
    echo "  $(basename "$b"): $(stat -c %s "$b") bytes, sections $("$dir/bin/flock" inspect "$b" --json |
        python3 -c 'import json,sys; print(" ".join(c["section"] for c in json.load(sys.stdin)["cuda_kernels"]))')"
done

# ---- (d) the prompts, (e) the CPU reference, the manifest ---------------------------
cp tests/data/gpu-prompt-short.txt "$dir/prompts/short.txt"
cp tests/data/gpu-prompt-long.txt "$dir/prompts/long.txt"
cp tests/data/gpu-prompt-longer.txt "$dir/prompts/longer.txt"
echo "== the CPU reference (flock --device cpu) =="
for p in short long; do
    for keep in 1.0 0.75 0.5 0.25; do
        "$dir/bin/flock" run "$bundle" -p "$(cat "$dir/prompts/$p.txt")" -n 32 --temp 0 --keep "$keep" --device cpu \
            --json > "$dir/expected/$name-$p-$keep.run.json" 2>> "$bdir/expected.log"
        [ "$keep" = 1.0 ] || "$dir/bin/flock" experts "$bundle" -p "$(cat "$dir/prompts/$p.txt")" --keep "$keep" \
            --device cpu > "$dir/expected/$name-$p-$keep.experts.json" 2>> "$bdir/expected.log"
    done
    n=$(python3 tools/gpu_check_compare.py field "$dir/expected/$name-$p-1.0.run.json" prompt_tokens)
    echo "  prompt $p: $n tokens"
    echo "prompt $p prompts/$p.txt $n" >> "$dir/MANIFEST.tmp"
done

rev=$(git rev-parse --short=12 HEAD 2> /dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2> /dev/null)" ] || rev="$rev+changes"
{
    echo "# flock GPU kit (tools/gpu-kit.sh); checked by tools/gpu-check.sh --kit DIR"
    echo "kit 1"
    echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m) $(. /etc/os-release 2> /dev/null && echo "${ID:-?}-${VERSION_ID:-?}")"
    echo "commit $rev"
    echo "model $name $(sha256sum "$model" | cut -d' ' -f1) $(basename "$model")"
    echo "bundle $name bundles/$name.flock sm_80,sm_89,sm_90"
    echo "bundle $name-sm80 bundles/$name-sm80.flock sm_80"
    echo "flockc_flags --dtype f16 --keep 0.25,0.5,0.75 --level 0"
    echo "glibc_max $glibc_max"
    cat "$dir/MANIFEST.tmp"
} > "$dir/MANIFEST"
rm -f "$dir/MANIFEST.tmp"
(cd "$dir" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

size=$(du -sb "$dir" | cut -f1)
echo "== kit $dir: $(find "$dir" -type f | wc -l) files, $size bytes ($(( size / 1024 )) KiB), made in $(( $(date +%s) - start )) s =="
if [ "$size" -gt $(( 32 * 1024 * 1024 )) ]; then
    echo "gpu-kit: the kit is over 32 MiB: it must travel with the working tree in 64 MiB" >&2; exit 1
fi
