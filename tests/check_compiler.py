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
GGUF tensor as a row-major [out, in] array.

Then the quantized storage: with `--dtype source` every matrix flock can keep
holds the GGUF's own bytes (ffn_gate_up: gate row bytes, then up row bytes),
and what is requantized (ffn_down_t; a type flock does not store) equals
`gguf.quants.quantize` of the dequantized weights as q8_0, byte for byte;
with `--dtype q8_0|q4_0|q4_1|q5_0` every matrix equals `gguf.quants.quantize` of
its f32 values (a matrix whose rows are not whole 32-blocks is f16). Exits 1
on a mismatch, and also (naming it) when the model or a Python package is
missing.
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
        n_q = check_quantized(flockc, dump, model, reader, src, tmp, check, np, gguf)
    print(f"{os.path.basename(model)}: {n_checked} blocks checked, {n_q} quantized tensors checked, "
          f"{failures} mismatches")
    return 1 if failures else 0


STORED = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q6_K"}


def check_quantized(flockc, dump, model, reader, src, tmp, check, np, gguf):
    from gguf.quants import quantize
    Q = gguf.GGMLQuantizationType
    raw = {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in reader.tensors}
    n = 0

    def q(a, name):
        return quantize(np.ascontiguousarray(a, dtype=np.float32), Q[name]).tobytes()

    def compile_dump(dtype, sub):
        d = os.path.join(tmp, sub)
        os.makedirs(d)
        out = os.path.join(d, "m.flock")
        subprocess.run([flockc, model, "-o", out, "--dtype", dtype, "--quiet"], check=True)
        subprocess.run([dump, out, d, "--all"], check=True)
        return lambda name: open(os.path.join(d, name + ".bin"), "rb").read()

    blocks = sorted({k.split(".")[1] for k in src if k.startswith("blk.")}, key=int)
    # --dtype source
    get = compile_dump("source", "source")
    for l in blocks:
        b = f"blk.{l}."
        (tg, bg), (tu, bu) = raw[b + "ffn_gate.weight"], raw[b + "ffn_up.weight"]
        g = src[b + "ffn_gate.weight"]
        if tg == tu and tg in STORED and g.shape[1] % 64 == 0:
            rows, half = g.shape[0], len(bg) // g.shape[0]
            want = b"".join(bg[r * half:(r + 1) * half] + bu[r * half:(r + 1) * half] for r in range(rows))
            check(get(b + "ffn_gate_up") == want, b + "ffn_gate_up (source bytes)")
            n += 1
        dn = src[b + "ffn_down.weight"].T
        if raw[b + "ffn_down.weight"][0] not in ("F32", "F16", "BF16") and dn.shape[1] % 32 == 0:
            check(get(b + "ffn_down_t") == q(dn, "Q8_0"), b + "ffn_down_t (q8_0 of the dequantized weights)")
            n += 1
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            ty, by = raw[b + name + ".weight"]
            if ty in STORED:
                check(get(b + name) == by, b + name + " (source bytes)")
            else:
                check(get(b + name) == q(src[b + name + ".weight"], "Q8_0"), b + name + " (q8_0 of " + ty + ")")
            n += 1
    ty, by = raw["token_embd.weight"]
    check(get("token_embd") == (by if ty in STORED else q(src["token_embd.weight"], "Q8_0")), "token_embd (source)")
    n += 1
    # --dtype q8_0 / q4_0 / q4_1 / q5_0: every matrix requantized from its f32 values
    for dt in ("q8_0", "q4_0", "q4_1", "q5_0"):
        get = compile_dump(dt, dt)
        for l in blocks[:2]:
            b = f"blk.{l}."
            g, u = src[b + "ffn_gate.weight"], src[b + "ffn_up.weight"]
            if g.shape[1] % 32 == 0:
                check(get(b + "ffn_gate_up") == q(np.concatenate([g, u], axis=1), dt.upper()), b + "ffn_gate_up " + dt)
                n += 1
            dn = src[b + "ffn_down.weight"].T
            if dn.shape[1] % 32 == 0:
                check(get(b + "ffn_down_t") == q(dn, dt.upper()), b + "ffn_down_t " + dt)
                n += 1
            check(get(b + "attn_q") == q(src[b + "attn_q.weight"], dt.upper()), b + "attn_q " + dt)
            n += 1
    return n


if __name__ == "__main__":
    sys.exit(main())
