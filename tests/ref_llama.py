#!/usr/bin/env python3
"""Independent check of flock's runtime on a GGUF Llama model.

A float64 numpy forward pass written from the model definition (RMSNorm,
interleaved-pair RoPE as GGUF Llama stores Q/K, grouped-query causal
attention, SiLU-gated FF) reads the weights with the `gguf` package, and is
compared with `flock logits` and `flock experts` on a bundle that flockc
compiles at f32:
  - logits of every position, full FF: relative error per position <= 1e-4,
    same argmax;
  - GRIFFIN's experts for the prompt: >= 99% of each layer's set equal;
  - the classification setting (prompt = all tokens but the last; the last
    uses the experts): logits of the last position, same bounds.

  - greedy generation (--greedy IDS N): the reference's N greedy tokens
    after the prompt IDS, fed to `flock logits --prompt-len`, must be flock's
    argmax at every step (so flock's decode path generates the same tokens).

usage: ref_llama.py FLOCK FLOCKC MODEL [--tokens N] [--keep K] [--greedy IDS N]
MODEL is a path, or repo:REL (tests/data), data:REL (under $FLOCK_DATA_DIR)
or models:NAME (under $FLOCK_MODEL_DIR, default ~/.cache/flock/models).
Exits 1, naming it, also when numpy / gguf or the model are absent.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import missing, resolve  # noqa: E402


try:
    import numpy as np
    import gguf
    from gguf.quants import dequantize
except ImportError as e:  # optional packages
    missing(f"Python package {e.name} is not installed")


def field(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    v = f.parts[f.data[0]]
    return v.tolist()[0] if hasattr(v, "tolist") else v


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        if arch != "llama":
            missing(f"{path}: architecture {arch}: this reference implements llama only")
        self.n_layer = field(r, "llama.block_count")
        self.d = field(r, "llama.embedding_length")
        self.n_head = field(r, "llama.attention.head_count")
        self.n_kv = field(r, "llama.attention.head_count_kv", self.n_head)
        self.eps = field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5)
        self.theta = field(r, "llama.rope.freq_base", 10000.0)
        self.hd = self.d // self.n_head
        self.rope_dim = field(r, "llama.rope.dimension_count", self.hd)
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            shape = [int(x) for x in reversed(t.shape)]  # row-major: rows = output features
            self.w[t.name] = np.asarray(a, dtype=np.float64).reshape(shape)
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])
        self.vocab = self.head.shape[0]

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, n_heads):
        # x [T, n_heads * hd]; pairs (2i, 2i+1) of each head's first rope_dim
        T = x.shape[0]
        x = x.reshape(T, n_heads, self.hd).copy()
        half = self.rope_dim // 2
        freq = self.theta ** (-2.0 * np.arange(half) / self.rope_dim)
        ang = np.arange(T)[:, None] * freq[None, :]  # [T, half]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[:, :, 0:self.rope_dim:2].copy(), x[:, :, 1:self.rope_dim:2].copy()
        x[:, :, 0:self.rope_dim:2] = a * c - b * s
        x[:, :, 1:self.rope_dim:2] = a * s + b * c
        return x.reshape(T, n_heads * self.hd)

    def forward(self, ids, prompt_len=None, kept=None):
        """Logits [T, vocab] and the FF activations z per layer [T, d_ff].
        Positions >= prompt_len use only the neurons kept[layer]."""
        T = len(ids)
        x = self.w["token_embd.weight"][ids]
        zs = []
        grp = self.n_head // self.n_kv
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rms(x, self.w[p + "attn_norm.weight"])
            q = self.rope(h @ self.w[p + "attn_q.weight"].T, self.n_head)
            k = self.rope(h @ self.w[p + "attn_k.weight"].T, self.n_kv)
            v = h @ self.w[p + "attn_v.weight"].T
            out = np.zeros((T, self.n_head * self.hd))
            for hh in range(self.n_head):
                kh = hh // grp
                qs = q[:, hh * self.hd:(hh + 1) * self.hd]
                ks = k[:, kh * self.hd:(kh + 1) * self.hd]
                vs = v[:, kh * self.hd:(kh + 1) * self.hd]
                sc = qs @ ks.T / np.sqrt(self.hd) + mask
                sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                sc /= sc.sum(axis=1, keepdims=True)
                out[:, hh * self.hd:(hh + 1) * self.hd] = sc @ vs
            x = x + out @ self.w[p + "attn_output.weight"].T
            h = self.rms(x, self.w[p + "ffn_norm.weight"])
            g = h @ self.w[p + "ffn_gate.weight"].T
            u = h @ self.w[p + "ffn_up.weight"].T
            z = g / (1 + np.exp(-g)) * u
            zs.append(z.copy())
            if kept is not None:
                m = np.zeros(z.shape[1], dtype=bool)
                m[kept[l]] = True
                z[prompt_len:, ~m] = 0
            x = x + z @ self.w[p + "ffn_down.weight"].T
        x = self.rms(x, self.w["output_norm.weight"])
        return x @ self.head.T, zs


def griffin_select(z, keep):
    """The reference code's statistic: rows divided by their L2 norm, column
    L2 norm over the prompt; top floor(keep * d_ff), ties to the lower index."""
    n = np.linalg.norm(z, axis=1, keepdims=True)
    zn = np.divide(z, n, out=np.zeros_like(z), where=n > 0)
    score = np.linalg.norm(zn, axis=0)
    k = int(z.shape[1] * keep)
    order = np.lexsort((np.arange(len(score)), -score))  # by -score, then index
    return np.sort(order[:k])


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("command failed:", " ".join(cmd), "\n", r.stderr)
        sys.exit(1)
    return r.stdout


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def main():
    import json
    args = sys.argv[1:]
    if len(args) < 3:
        print(__doc__)
        return 2
    flock, flockc, model = args[:3]
    n_tok, keep = 24, 0.5
    if "--tokens" in args:
        n_tok = int(args[args.index("--tokens") + 1])
    if "--keep" in args:
        keep = float(args[args.index("--keep") + 1])
    model = resolve(model)
    m = Model(model)
    rng = np.random.default_rng(1234)
    ids = [1] + [int(i) for i in rng.integers(3, m.vocab, n_tok - 1)]
    ids_s = ",".join(map(str, ids))
    failures = 0
    # the reference keeps K/V in double: flock's cache as computed (f32), so
    # the bounds measure the kernels, not the default f16 cache's rounding
    F32KV = ["--kv-type", "f32"]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "m.flock")
        run([flockc, model, "-o", bundle, "--dtype", "f32", "--keep", f"{keep}", "--quiet"])
        # 1. full-FF logits of every position
        out = os.path.join(tmp, "logits.bin")
        run([flock, "logits", bundle, "--ids", ids_s, "--out", out, "--threads", "2"] + F32KV)
        got = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
        ref, zs = m.forward(ids)
        worst = 0.0
        for t in range(len(ids)):
            e = rel_err(got[t], ref[t])
            worst = max(worst, e)
            if e > 1e-4 or np.argmax(got[t]) != np.argmax(ref[t]):
                print(f"position {t}: relative error {e:.3g}, argmax {np.argmax(got[t])} vs {np.argmax(ref[t])}")
                failures += 1
        print(f"logits, full FF, {len(ids)} positions: worst relative error {worst:.3g}")
        # 2. GRIFFIN experts for the prompt (all tokens)
        js = json.loads(run([flock, "experts", bundle, "--ids", ids_s, "--keep", f"{keep}"] + F32KV))
        worst_agree = 1.0
        kept = []
        for l, layer in enumerate(js["layers"]):
            mine = set(layer["experts"])
            ref_sel = griffin_select(zs[l], keep)
            kept.append(ref_sel)
            agree = len(mine & set(ref_sel.tolist())) / max(1, len(ref_sel))
            worst_agree = min(worst_agree, agree)
            if agree < 0.99 or len(mine) != len(ref_sel):
                print(f"layer {l}: {agree:.4f} of the experts agree ({len(mine)} vs {len(ref_sel)})")
                failures += 1
        print(f"experts, keep {keep}, {len(js['layers'])} layers: worst agreement {worst_agree:.4f}")
        # 3. classification setting: prompt = all but the last token
        P = len(ids) - 1
        _, zp = m.forward(ids[:P])
        kept = [griffin_select(zp[l], keep) for l in range(m.n_layer)]
        ref2, _ = m.forward(ids, prompt_len=P, kept=kept)
        run([flock, "logits", bundle, "--ids", ids_s, "--keep", f"{keep}", "--prompt-len", str(P),
             "--out", out, "--threads", "1"] + F32KV)
        got2 = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
        e = rel_err(got2[-1], ref2[-1])
        print(f"logits, keep {keep}, last position with the experts: relative error {e:.3g}, "
              f"argmax {np.argmax(got2[-1])} vs {np.argmax(ref2[-1])}; "
              f"differs from full FF by {rel_err(ref2[-1], ref[-1]):.3g}")
        if e > 1e-4 or np.argmax(got2[-1]) != np.argmax(ref2[-1]):
            failures += 1
        # 4. greedy generation through flock's decode path (keep 1.0)
        if "--greedy" in args:
            i = args.index("--greedy")
            seq = [int(x) for x in args[i + 1].split(",")]
            n_new, P = int(args[i + 2]), len(seq)
            for _ in range(n_new):
                lg, _ = m.forward(seq)
                seq.append(int(np.argmax(lg[-1])))
            print("reference greedy tokens:", ",".join(map(str, seq[P:])))
            run([flock, "logits", bundle, "--ids", ",".join(map(str, seq)), "--prompt-len", str(P),
                 "--out", out] + F32KV)
            got3 = np.fromfile(out, dtype="<f4").reshape(len(seq), -1)
            mine = [int(np.argmax(got3[t])) for t in range(P - 1, len(seq) - 1)]
            same = mine == seq[P:]
            print(f"greedy, {n_new} tokens through the decode path: {'same' if same else 'DIFFERENT'}")
            failures += 0 if same else 1
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
