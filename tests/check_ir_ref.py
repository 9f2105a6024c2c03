#!/usr/bin/env python3
"""Checks what flockc's program means against a direct forward pass.

usage: check_ir_ref.py FLOCKC_EXE BUNDLE_DUMP_EXE MODEL

MODEL is repo:REL (tests/data), data:REL (under $FLOCK_DATA_DIR) or
models:NAME (under $FLOCK_MODEL_DIR, default ~/.cache/flock/models): a GGUF Llama or Gemma 3.
Compiles MODEL with `flockc --dtype f32`, runs the program with ir_ref.py (a
numpy interpreter of the IR) over a fixed token sequence, and compares the
logits with a forward pass written directly from the GGUF weights with the
`gguf` package (llama.cpp's conventions: Q/K rows permuted for interleaved
RoPE on Llama; Gemma norm weights already hold 1 + w). The Gemma 3 sequence is
longer than its 512-token window, so local and global layers differ. Exits 1
on a mismatch, and also (naming it) when the model or a package is missing.
"""
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import gguf_model, missing, need, resolve  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def softmax_attend(q, k, v, scale, window):
    """q [T, nh, hd], k/v [T, nkv, hd]; causal, optional window."""
    T, nh, hd = q.shape
    rep = nh // k.shape[1]
    out = np.empty_like(q)
    for t in range(T):
        lo = 0 if not window else max(0, t - window + 1)
        for h in range(nh):
            s = k[lo:t + 1, h // rep, :] @ q[t, h, :] * scale
            p = np.exp(s - s.max())
            out[t, h, :] = (p / p.sum()) @ v[lo:t + 1, h // rep, :]
    return out


def rope_interleaved(x, theta, rd):
    """llama.cpp's 'normal' RoPE: rotate (x[2i], x[2i+1]) by pos * theta^(-2i/rd)."""
    T = x.shape[0]
    y = x.copy()
    for i in range(rd // 2):
        ang = np.arange(T) * theta ** (-2.0 * i / rd)
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        a, b = x[:, :, 2 * i], x[:, :, 2 * i + 1]
        y[:, :, 2 * i], y[:, :, 2 * i + 1] = a * c - b * s, a * s + b * c
    return y


def rope_halves(x, theta):
    """HF's rotate_half RoPE: pairs (i, i + hd/2)."""
    T, _, hd = x.shape
    h = hd // 2
    ang = np.arange(T)[:, None] * theta ** (-np.arange(h) * 2.0 / hd)[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[:, :, :h], x[:, :, h:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=2)


def direct_llama(t, meta, tokens):
    nh = meta["attention.head_count"]
    nkv = meta.get("attention.head_count_kv", nh)
    d = t["token_embd.weight"].shape[1]
    hd = d // nh
    rd = meta.get("rope.dimension_count", hd)
    theta, eps = meta.get("rope.freq_base", 10000.0), meta["attention.layer_norm_rms_epsilon"]
    x = t["token_embd.weight"][tokens].astype(np.float64)
    T = len(tokens)
    for l in range(meta["block_count"]):
        p = lambda n: t[f"blk.{l}.{n}.weight"]  # noqa: E731
        h = rms(x, p("attn_norm"), eps)
        q = rope_interleaved((h @ p("attn_q").T).reshape(T, nh, hd), theta, rd)
        k = rope_interleaved((h @ p("attn_k").T).reshape(T, nkv, hd), theta, rd)
        v = (h @ p("attn_v").T).reshape(T, nkv, hd)
        x = x + softmax_attend(q, k, v, 1 / math.sqrt(hd), 0).reshape(T, -1) @ p("attn_output").T
        h = rms(x, p("ffn_norm"), eps)
        g, u = h @ p("ffn_gate").T, h @ p("ffn_up").T
        x = x + (g / (1 + np.exp(-g)) * u) @ p("ffn_down").T
    x = rms(x, t["output_norm.weight"], eps)
    return x[-1:] @ t.get("output.weight", t["token_embd.weight"]).T


def direct_gemma3(t, meta, tokens):
    nh, nkv, hd = meta["attention.head_count"], meta["attention.head_count_kv"], meta["attention.key_length"]
    eps, window = meta["attention.layer_norm_rms_epsilon"], meta["attention.sliding_window"]
    d = t["token_embd.weight"].shape[1]
    T = len(tokens)
    x = t["token_embd.weight"][tokens].astype(np.float64) * np.float32(math.sqrt(d))
    for l in range(meta["block_count"]):
        p = lambda n: t[f"blk.{l}.{n}.weight"]  # noqa: E731
        is_global = l % 6 == 5
        theta = meta["rope.freq_base"] if is_global else 10000.0
        h = rms(x, p("attn_norm"), eps)
        q = rms((h @ p("attn_q").T).reshape(T, nh, hd), p("attn_q_norm"), eps)
        k = rms((h @ p("attn_k").T).reshape(T, nkv, hd), p("attn_k_norm"), eps)
        v = (h @ p("attn_v").T).reshape(T, nkv, hd)
        q, k = rope_halves(q, theta), rope_halves(k, theta)
        a = softmax_attend(q, k, v, 1 / math.sqrt(hd), 0 if is_global else window).reshape(T, -1)
        x = x + rms(a @ p("attn_output").T, p("post_attention_norm"), eps)
        h = rms(x, p("ffn_norm"), eps)
        g, u = h @ p("ffn_gate").T, h @ p("ffn_up").T
        gelu = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
        x = x + rms((gelu * u) @ p("ffn_down").T, p("post_ffw_norm"), eps)
    x = rms(x, t["output_norm.weight"], eps)
    return x[-1:] @ t["token_embd.weight"].T


def main():
    global np
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    flockc, dump, model = sys.argv[1], sys.argv[2], resolve(sys.argv[3])
    if not os.path.exists(model):
        missing(f"{model} not found")
    try:
        import numpy as np
        import ir_ref
    except ImportError as e:
        missing(f"Python package {e.name} is not installed")

    need("gguf")
    arch, meta, t = gguf_model(model)
    vocab = t["token_embd.weight"].shape[0]
    rng = np.random.default_rng(7)
    n_tok = 530 if arch == "gemma3" else 24
    tokens = [int(meta.get("bos", 2 if arch == "gemma3" else 1))] + rng.integers(3, vocab, n_tok - 1).tolist()

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.flock")
        subprocess.run([flockc, model, "-o", out, "--dtype", "f32", "--quiet"], check=True)
        text = subprocess.run([flockc, model, "--emit-ir", "--dtype", "f32"], check=True, capture_output=True,
                              text=True).stdout
        subprocess.run([dump, out, tmp, "--all"], check=True)
        shapes = {n: (dt, s) for n, dt, s in ir_ref.parse(text)[0]}
        cache = {}

        def load(name):
            if name not in cache:
                dt, s = shapes[name]
                a = np.fromfile(os.path.join(tmp, name + ".bin"), dtype=np.int32 if dt == "i32" else np.float32)
                cache[name] = a.reshape(s) if dt == "i32" else a.reshape(s).astype(np.float64)
            return cache[name]

        got = ir_ref.run(text, load, tokens, last=1)
    want = direct_gemma3(t, meta, tokens) if arch == "gemma3" else direct_llama(t, meta, tokens)
    err = float(np.abs(got - want).max() / np.abs(want).max())
    same_top = int(np.argmax(got)) == int(np.argmax(want))
    print(f"{os.path.basename(model)}: {len(tokens)} tokens, last-position logits max |diff| / max |logit| = "
          f"{err:.2e}, argmax {int(np.argmax(got))} vs {int(np.argmax(want))}")
    return 0 if err < 1e-5 and same_top else 1


if __name__ == "__main__":
    sys.exit(main())
