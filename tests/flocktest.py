"""What every Python check of tests/ shares: where its inputs are, and how it
says that one is missing.

Inputs come from the set-up (`tools/setup.sh --test`, which `make test` runs)
or from the repository itself, never from beside it:

  repo:REL     tests/data/REL in this repository (the tiny trained model,
               the summarization prompts; see tests/data/README.md)
  data:REL     $FLOCK_DATA_DIR/REL (default ~/.cache/flock/data: the text)
  models:NAME  $FLOCK_MODEL_DIR/NAME (default ~/.cache/flock/models)
  PATH         a file

A missing input or Python package is a failure (exit 1) that names it and
the command that provides it: the set-up installs all of them, so a check
that skipped for one would be a hole that reports as a pass. `skip()` (exit
77, counted as skipped by ctest) is kept for what no set-up can provide.
"""
import os
import sys

SKIP = 77
FAIL = 1
SETUP = "run tools/setup.sh --test (make test does)"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The repository's own trained test model and the text the checks read.
TINY_MODEL = "repo:tiny-llama.gguf"
ENGLISH_TEXT = "data:english.txt"
SUMMARIES = "repo:summaries.jsonl"


def skip(why):
    """Skips the whole check (ctest counts it as skipped): only for what no
    set-up can give this machine."""
    print(f"SKIPPED: {why}", flush=True)
    sys.exit(SKIP)


def missing(why):
    """Fails the check because an input is missing, saying what provides it."""
    print(f"MISSING: {why} ({SETUP})", flush=True)
    sys.exit(FAIL)


def data_dir():
    return os.path.expanduser(os.environ.get("FLOCK_DATA_DIR") or "~/.cache/flock/data")


def model_dir():
    return os.path.expanduser(os.environ.get("FLOCK_MODEL_DIR") or "~/.cache/flock/models")


def path_of(spec):
    """The file a spec (repo:, data:, models: or a path) names; no check."""
    kind, sep, rel = spec.partition(":")
    if sep and kind == "repo":
        return os.path.join(REPO, "tests", "data", rel)
    if sep and kind == "data":
        return os.path.join(data_dir(), rel)
    if sep and kind == "models":
        return os.path.join(model_dir(), rel)
    return os.path.expanduser(spec)


def resolve(spec):
    """The file a spec names; fails the check (naming it) when it is not there."""
    path = path_of(spec)
    if not os.path.exists(path):
        missing(f"{spec}: {path} not found")
    return path


def need(*modules):
    """Imports the named modules and returns them; fails the check naming the
    first one that is not installed."""
    import importlib

    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            missing(f"Python package {e.name or name} is not installed")
    return out[0] if len(out) == 1 else out


def english_lines(n=None):
    """Non-empty lines of the test text, spread evenly over it (all when n is
    None)."""
    with open(resolve(ENGLISH_TEXT), encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    if n is None or n >= len(lines):
        return lines
    step = len(lines) // n
    return lines[::step][:n]


def summary_prompts(n=None):
    """The one-shot summarization prompts (dicts with article, summary_gt)."""
    import json

    with open(resolve(SUMMARIES), encoding="utf-8") as f:
        items = [json.loads(l) for l in f if l.strip()]
    return items if n is None else items[:n]


def gguf_model(path):
    """A GGUF file as (arch, meta, tensors): meta holds the arch's own keys
    without their "<arch>." prefix; tensors are dequantized to float32 numpy
    arrays in row-major shape (the reverse of GGUF's ne order)."""
    import numpy as np
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    meta = {}
    for key, f in reader.fields.items():
        if key.startswith(arch + "."):
            try:
                meta[key[len(arch) + 1:]] = f.contents()
            except Exception:  # a field type contents() cannot render is not one the references read
                pass
    tensors = {}
    for ten in reader.tensors:
        shape = [int(x) for x in reversed(ten.shape.tolist())]
        tensors[ten.name] = dequantize(ten.data, ten.tensor_type).astype(np.float32).reshape(shape)
    return arch, meta, tensors
