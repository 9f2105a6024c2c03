#!/usr/bin/env python3
"""flock's runtime against the direct numpy forward passes of
check_ir_ref.py (written from the GGUF weights, float64): the last
position's logits of a random token sequence, through an f32 bundle.

For Gemma 3 the sequence (530 tokens) is longer than the sliding window
(512), and its last 10 tokens go through the decode path (`flock logits
--prompt-len`, keep 1.0: the gather FF over every neuron, the KV cache),
so windowed attention is checked in both prefill and decode.

usage: check_runtime_direct.py FLOCK FLOCKC MODEL   (exit 1 also when an input is missing)
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_ir_ref as ref  # noqa: E402
from flocktest import gguf_model, missing, need, resolve  # noqa: E402


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    flock, flockc, model = sys.argv[1], sys.argv[2], resolve(sys.argv[3])
    try:
        import numpy as np
    except ImportError as e:
        missing(f"Python package {e.name} is not installed")
    ref.np = np
    need("gguf")
    arch, meta, t = gguf_model(model)
    vocab = t["token_embd.weight"].shape[0]
    rng = np.random.default_rng(11)
    n_tok = 530 if arch == "gemma3" else 40
    tokens = [2 if arch == "gemma3" else 1] + rng.integers(3, vocab, n_tok - 1).tolist()
    want = (ref.direct_gemma3 if arch == "gemma3" else ref.direct_llama)(t, meta, tokens)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        bundle, out = os.path.join(tmp, "m.flock"), os.path.join(tmp, "logits.bin")
        subprocess.run([flockc, model, "-o", bundle, "--dtype", "f32", "--quiet"], check=True)
        subprocess.run([flock, "logits", bundle, "--ids", ",".join(map(str, tokens)),
                        "--prompt-len", str(n_tok - 10), "--out", out, "--kv-type", "f32"], check=True)
        got = np.fromfile(out, dtype="<f4").reshape(n_tok, -1)[-1].astype(np.float64)
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    same = int(np.argmax(got)) == int(np.argmax(want))
    print(f"{os.path.basename(model)}: {n_tok} tokens (last 10 decoded), last-position logits relative error "
          f"{err:.2e}, argmax {int(np.argmax(got))} vs {int(np.argmax(want))}")
    return 0 if err < 1e-4 and same else 1


if __name__ == "__main__":
    sys.exit(main())
