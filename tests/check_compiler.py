#!/usr/bin/env python3
"""Checks flockc's tensor passes on a real GGUF model against numpy.

usage: check_compiler.py FLOCKC_EXE BUNDLE_DUMP_EXE MODEL

MODEL is repo:REL (tests/data), data:REL (under $FLOCK_DATA_DIR) or
models:NAME (under $FLOCK_MODEL_DIR, default ~/.cache/flock/models). Compiles MODEL with
`flockc --dtype f32`, dumps the bundle's tensors (tests/bundle_dump.c) and
recomputes, from the weights the `gguf` package dequantizes, for every block:
ffn_gate_up (row i = gate row i, then up row i), ffn_down_t (= ffn_down
transposed), ffn_magnitude_rank (neurons by descending ||gate_i||*||up_i||,
ties to the lower index; compared as score sequences, since equal scores may
order either way only when exactly equal), and that every other matrix is the
GGUF tensor as a row-major [out, in] array. Exits 1 on a mismatch, and
also (naming it) when the model or a Python package is missing.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import missing, resolve  # noqa: E402



def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    flockc, dump, model = sys.argv[1], sys.argv[2], resolve(sys.argv[3])
    if not os.path.exists(model):
        missing(f"{model} not found")
    try:
        import numpy as np
        import gguf
        from gguf.quants import dequantize
    except ImportError as e:
        missing(f"Python package {e.name} is not installed")

    reader = gguf.GGUFReader(model)
    src = {}
    for t in reader.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(x) for x in reversed(t.shape.tolist())]  # ne reversed: row-major
        src[t.name] = a.reshape(shape)

    def w(name):
        return src[name + ".weight"]

    failures = 0

    def check(cond, what):
        nonlocal failures
        if not cond:
            failures += 1
            print(f"MISMATCH: {what}")

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.flock")
        subprocess.run([flockc, model, "-o", out, "--dtype", "f32", "--quiet"], check=True)
        subprocess.run([dump, out, tmp, "--all"], check=True)

        def get(name, dtype=np.float32):
            return np.fromfile(os.path.join(tmp, name + ".bin"), dtype=dtype)

        n_layer = 0
        while f"blk.{n_layer}.ffn_up.weight" in src:
            n_layer += 1
        n_checked = 0
        for l in range(n_layer):
            b = f"blk.{l}."
            g, u, d = w(b + "ffn_gate"), w(b + "ffn_up"), w(b + "ffn_down")
            dff = g.shape[0]
            gu = get(b + "ffn_gate_up").reshape(dff, -1)
            check(np.array_equal(gu, np.concatenate([g, u], axis=1)), b + "ffn_gate_up")
            check(np.array_equal(get(b + "ffn_down_t").reshape(dff, -1), d.T), b + "ffn_down_t")
            score = np.linalg.norm(g.astype(np.float64), axis=1) * np.linalg.norm(u.astype(np.float64), axis=1)
            want = np.lexsort((np.arange(dff), -score))  # descending score, ties to the lower index
            rank = get(b + "ffn_magnitude_rank", np.int32)
            check(sorted(rank.tolist()) == list(range(dff)), b + "ffn_magnitude_rank is a permutation")
            # Scores are summed in another order than numpy's: compare the
            # score sequence, and the order itself where scores are not close.
            s_got, s_want = score[rank], score[want]
            check(np.allclose(s_got, s_want, rtol=1e-9, atol=0), b + "ffn_magnitude_rank order")
            n_same = int((rank == want).sum())
            for name in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_norm"):
                check(np.array_equal(get(b + name), w(b + name).reshape(-1)), b + name)
            n_checked += 1
            if l == 0:
                print(f"layer 0: d_ff {dff}, rank identical to numpy at {n_same}/{dff} positions")
        check(np.array_equal(get("token_embd"), w("token_embd").reshape(-1)), "token_embd")
        check(np.array_equal(get("output_norm"), w("output_norm").reshape(-1)), "output_norm")
        if "output.weight" in src:
            check(np.array_equal(get("output"), w("output").reshape(-1)), "output")
    print(f"{os.path.basename(model)}: {n_checked} blocks checked, {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
