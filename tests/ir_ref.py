#!/usr/bin/env python3
"""A plain numpy interpreter of flock's IR (docs/ir.md), for checks.

Reads the text form (`flockc --emit-ir`) and the tensors of an f32 bundle
(dumped by tests/bundle_dump.c into a folder as NAME.bin), and runs a whole
token sequence at once (prefill semantics: causal attention over the
sequence), returning the logits of every position. Slow and obviously
written; the point is to say what each op means.
"""
import math
import re

import numpy as np

OP_RE = re.compile(r'^\s*op (\d+)(?: \(layer (-?\d+)\))?: %(\d+) (\w+)\[(\d+)\] "([^"]*)" = (\w+)\(([^)]*)\)(.*)$')
TENSOR_RE = re.compile(r'^\s*#(\d+) (\S+) (\w+) \[([\d, ]+)\]$')


def parse(text):
    """Returns (tensors: list of (name, dtype, shape)), ops: list of dicts)."""
    tensors, ops = [], []
    for line in text.splitlines():
        m = TENSOR_RE.match(line)
        if m:
            tensors.append((m.group(2), m.group(3), [int(x) for x in m.group(4).split(",")]))
            continue
        m = OP_RE.match(line)
        if not m:
            continue
        op = {"layer": int(m.group(2)) if m.group(2) else -1, "out": int(m.group(3)), "kind": m.group(7),
              "in": [int(a.strip()[1:]) for a in m.group(8).split(",") if a.strip()], "w": [], "attrs": {}}
        rest = m.group(9)
        wm = re.search(r" w=\[([^\]]*)\]", rest)
        if wm:
            op["w"] = [None if x.strip() == "-" else x.strip() for x in wm.group(1).split(",")]
            rest = rest[:wm.start()] + rest[wm.end():]
        for k, v in re.findall(r"(\w+)=(\S+)", rest):
            try:
                op["attrs"][k] = float(v) if any(c in v for c in ".en") and not v.isalpha() else int(v)
            except ValueError:
                op["attrs"][k] = v
        ops.append(op)
    return tensors, ops


def act(kind, x):
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if kind == "gelu":
        from math import erf
        return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))
    if kind == "relu":
        return np.maximum(x, 0.0)
    return x


def rope_freqs(a):
    """Inverse frequencies of the rotated pairs, after the op's scaling."""
    rd = int(a["rope_dim"])
    inv = 1.0 / (float(a["theta"]) ** (np.arange(0, rd, 2, dtype=np.float64) / rd))
    if a["scaling"] == "llama3":
        factor, lo, hi, orig = float(a["factor"]), float(a["low_freq_factor"]), float(a["high_freq_factor"]), float(a["orig_ctx"])
        wavelen = 2 * math.pi / inv
        smooth = (orig / wavelen - lo) / (hi - lo)
        scaled = np.where(wavelen > orig / lo, inv / factor, inv)
        mid = (wavelen <= orig / lo) & (wavelen >= orig / hi)
        inv = np.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    return inv


def rope(x, a, T):
    nh, hd, rd = int(a["n_head"]), int(a["head_dim"]), int(a["rope_dim"])
    x = x.reshape(T, nh, hd).copy()
    pos = np.arange(T, dtype=np.float64)
    if a["scaling"] == "linear":
        pos = pos / float(a["factor"])
    ang = pos[:, None] * rope_freqs(a)[None, :]  # [T, rd/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if a["style"] == "normal":  # pairs (2i, 2i+1)
        x0, x1 = x[:, :, 0:rd:2].copy(), x[:, :, 1:rd:2].copy()
        x[:, :, 0:rd:2] = x0 * c - x1 * s
        x[:, :, 1:rd:2] = x0 * s + x1 * c
    else:  # neox: pairs (i, i + rd/2)
        h = rd // 2
        x0, x1 = x[:, :, :h].copy(), x[:, :, h:rd].copy()
        x[:, :, :h] = x0 * c - x1 * s
        x[:, :, h:rd] = x0 * s + x1 * c
    return x.reshape(T, nh * hd)


def attention(q, k, v, a, T):
    nh, nkv, hd = int(a["n_head"]), int(a["n_kv_head"]), int(a["head_dim"])
    scale = float(a["scale"]) or 1.0 / math.sqrt(hd)
    cap, window = float(a["softcap"]), int(a["window"])
    q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
    out = np.zeros((T, nh, hd))
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = (j <= i) & ((window == 0) | (i - j < window))  # a query sees the last `window` positions
    for h in range(nh):
        kh = h // (nh // nkv)
        s = (q[:, h, :] @ k[:, kh, :].T) * scale
        if cap > 0:
            s = cap * np.tanh(s / cap)
        s = np.where(visible, s, -np.inf)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kh, :]
    return out.reshape(T, nh * hd)


def run(text, load, tokens, last=None):
    """load(name) -> array in the bundle's shape; returns the logits [T, vocab]
    (of the last `last` positions only, when given: the LM head is the
    costly op for large vocabularies)."""
    _, ops = parse(text)
    T = len(tokens)
    vals = {0: np.array(tokens)}
    W = lambda name: None if name is None else load(name)  # noqa: E731
    for op in ops:
        a, k, x = op["attrs"], op["kind"], vals[op["in"][0]]
        w = (op["w"] + [None] * 6)[:6]
        if k == "embed":
            y = W(w[0])[x] * float(a["scale"])
        elif k == "pos_embed":
            y = x + W(w[0])[np.arange(T) + int(a["pos_offset"])]
        elif k == "rmsnorm":
            g = int(a["group"])
            xg = x.reshape(T, -1, g)
            y = xg / np.sqrt((xg ** 2).mean(axis=2, keepdims=True) + float(a["eps"]))
            y = (y * (W(w[0]) + int(a["unit_offset"]))).reshape(T, -1)
        elif k == "layernorm":
            mu = x.mean(axis=1, keepdims=True)
            y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + float(a["eps"])) * W(w[0])
            if w[1]:
                y = y + W(w[1])
        elif k == "linear":
            y = x @ W(w[0]).T + (W(w[1]) if w[1] else 0)
        elif k == "rope":
            y = rope(x, a, T)
        elif k == "attention":
            y = attention(x, vals[op["in"][1]], vals[op["in"][2]], a, T)
        elif k == "add":
            y = x + vals[op["in"][1]]
        elif k == "ffn":
            d = x.shape[1]
            w0 = W(w[0])
            b1 = W(w[3]) if w[3] else 0
            b2 = W(w[4]) if w[4] else 0
            packed = a["layout"] == "packed"
            if int(a["gated"]):
                g, u = (x @ w0[:, :d].T, x @ w0[:, d:].T) if packed else (x @ w0.T, x @ W(w[1]).T)
                z = act(a["act"], g + b1) * u
            else:
                z = act(a["act"], x @ w0.T + b1)
            y = z @ (W(w[2]) if packed else W(w[2]).T) + b2
        elif k == "lm_head":
            if last:
                x = x[-last:]
            y = x @ W(w[0]).T + (W(w[1]) if w[1] else 0)
            cap = float(a["softcap"])
            if cap > 0:
                y = cap * np.tanh(y / cap)
        else:
            raise ValueError(f"unknown op {k}")
        vals[op["out"]] = y
    return vals[ops[-1]["out"]]
