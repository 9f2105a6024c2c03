#!/usr/bin/env python3
"""flock against Hugging Face transformers and a torch GRIFFIN reference.

usage: check_hf_parity.py FLOCK FLOCKC TOK_DUMP MODEL [--tokens N] [--gen N] [--keep K]
                           [--min-griffin M]

MODEL is repo:REL (tests/data), data:REL (under $FLOCK_DATA_DIR) or
models:NAME (under $FLOCK_MODEL_DIR, default ~/.cache/flock/models): a GGUF Llama or Gemma 3.
The text is the start of the test text (data:english.txt), tokenized by
flock's tokenizer (tok_dump, special tokens added as the model asks; the
tokenizer itself is checked against Hugging Face's by check_tokenizer.py);
both sides get the same ids.

The other side is transformers' own model class, loaded by transformers' own
GGUF loader (which dequantizes with the `gguf` package and undoes llama.cpp's
Q/K row permutation and Gemma's norm offset), float32, eager attention. flock
runs a bundle that flockc compiles with --dtype f32. Checks:
  1. logits of every position of N tokens (default 256), full FF: relative
     error per position <= 1e-4 and the same argmax everywhere;
  2. greedy generation of --gen tokens (default 64) at keep 1.0: transformers'
     model.generate(do_sample=False) tokens are flock's argmax at every step of
     its decode path (`flock logits --prompt-len`, the tokens fed back; equal
     to free-running generation up to the first difference), and `flock run
     --temp 0` prints the same text (the tokens detokenized from the GGUF's
     vocabulary);
  3. GRIFFIN's experts at keep K (default 0.5) against the reference
     statistic computed in torch on transformers' MLP inputs (the prompt's
     z = act(gate(x)) * up(x); rows divided by their L2 norm; column L2 norm
     over the tokens; topk of int(K * d_ff)): >= 99% equal in every layer;
  4. greedy generation at keep K with GRIFFIN: the torch reference (prompt
     with the full MLP, then each MLP restricted to the selected rows of
     gate/up and columns of down) against flock's decode path with its own
     experts. Reported as the number of tokens that match from the start;
     all must (--min-griffin M: at least M).

Exits 1 on a mismatch, and also (naming it) when torch / transformers /
accelerate / gguf / numpy, the model or the text are missing: the set-up
provides them.
"""
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import ENGLISH_TEXT, missing, resolve  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's progress bars
# torch's OpenMP threads spin while they wait: on a shared machine (more
# runnable threads than cores) that made a decode step 10-20x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


try:
    import numpy as np
    import torch
    import gguf  # noqa: F401  (transformers' GGUF loader needs it)
    import accelerate  # noqa: F401  (ditto)
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError as e:  # optional packages (tools/setup.sh installs them)
    missing(f"Python package {e.name} is not installed")


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True)
    if r.returncode != 0:
        print("command failed:", " ".join(cmd[:3]), "...\n", r.stderr.decode(errors="replace")[-2000:])
        sys.exit(1)
    return r.stdout


# ---- detokenizing from the GGUF vocabulary (for `flock run`'s text) ---------

def gpt2_byte_decoder():
    """GPT-2's byte-level BPE spells each byte as one printable character:
    printable Latin-1 bytes as themselves, the others as 256, 257, ... in order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    dec, extra = {}, 0
    for b in range(256):
        if b in keep:
            dec[chr(b)] = b
        else:
            dec[chr(256 + extra)] = b
            extra += 1
    return dec


def detokenizer(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields.get("tokenizer.ggml.token_type")
    types = [int(f.parts[i][0]) for i in f.data] if f else [1] * len(toks)
    kind = bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode()
    bdec = gpt2_byte_decoder()

    def piece(t):
        s, ty = toks[t], types[t]
        if ty == 3:  # control tokens (BOS, EOS, end of turn) print nothing
            return b""
        if kind == "gpt2":
            return bytes(bdec[c] for c in s) if all(c in bdec for c in s) else s.encode()
        if ty == 6 and s.startswith("<0x") and s.endswith(">"):  # SentencePiece byte fallback
            return bytes([int(s[3:-1], 16)])
        return s.replace("\u2581", " ").encode()

    return lambda ids: b"".join(piece(t) for t in ids).decode("utf-8", errors="replace")


# ---- the torch GRIFFIN reference -------------------------------------------

class GriffinMLP(torch.nn.Module):
    """Wraps one of transformers' gated MLPs (gate_proj, up_proj, down_proj,
    act_fn: LlamaMLP, Gemma3MLP). Full MLP until `prune` is called; on a
    multi-token (prompt) call it records GRIFFIN's statistic, per neuron the
    L2 norm over tokens of z / ||z|| (z = act(gate(x)) * up(x), one row per
    token). After `prune(keep)` it uses only the top int(keep * d_ff) neurons."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp
        self.stat = None
        self.pruned = None

    def forward(self, x):  # x [batch 1, T, d]
        if self.pruned is not None:
            g, u, d = self.pruned
            return torch.nn.functional.linear(self.mlp.act_fn(x @ g.T) * (x @ u.T), d)
        z = self.mlp.act_fn(self.mlp.gate_proj(x)) * self.mlp.up_proj(x)
        if x.shape[1] > 1:
            self.stat = (z / z.norm(dim=-1, keepdim=True)).norm(dim=1)[0]
        return self.mlp.down_proj(z)

    def select(self, keep):
        return torch.topk(self.stat, int(keep * self.stat.numel())).indices

    def prune(self, idx):
        m = self.mlp
        self.pruned = (m.gate_proj.weight[idx], m.up_proj.weight[idx], m.down_proj.weight[:, idx])


def main():
    args = sys.argv[1:]
    if len(args) < 4:
        print(__doc__)
        return 2
    flock, flockc, tok_dump, model = args[:4]

    def opt(name, default, conv):
        return conv(args[args.index(name) + 1]) if name in args else default
    n_tok = opt("--tokens", 256, int)
    n_gen = opt("--gen", 64, int)
    keep = opt("--keep", 0.5, float)
    min_griffin = opt("--min-griffin", n_gen, int)
    threads = os.environ.get("FLOCK_TEST_THREADS", "2")  # flock's
    # One torch thread by default: the reference's small matrix products gain
    # little from a second one, and lose much when the cores are shared.
    torch.set_num_threads(int(os.environ.get("FLOCK_TORCH_THREADS", "1")))

    path = resolve(model)
    text_path = resolve(ENGLISH_TEXT)
    name = os.path.basename(path)
    t0 = time.time()

    # The same ids for both sides; 16 characters per token is far more than needed.
    with open(text_path, encoding="utf-8") as f:
        text = f.read(16 * n_tok)
    line = run([tok_dump, path, "--add-special", "-0"], stdin=text.encode() + b"\0").decode().split("\n")[0]
    ids = [int(x) for x in line.split()][:n_tok]
    if len(ids) < n_tok:
        print(f"only {len(ids)} tokens in the text")
        return 1
    ids_s = ",".join(map(str, ids))

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # pad_token_id=None: stories260K's GGUF stores -1 as a uint32, which
    # transformers would take for an embedding row.
    hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=name, dtype=torch.float32,
                                              attn_implementation="eager", pad_token_id=None).eval()
    t_load = time.time() - t0
    print(f"{name}: transformers {transformers.__version__} {type(hf).__name__} from its GGUF loader "
          f"({t_load:.0f} s), torch {torch.__version__}, {n_tok} tokens of text")
    failures = 0
    last = [time.time()]

    def lap(what):  # seconds per check, for the record (never asserted)
        now = time.time()
        print(f"   ({what}: {now - last[0]:.0f} s)")
        last[0] = now
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        bundle, out = os.path.join(tmp, "m.flock"), os.path.join(tmp, "logits.bin")
        run([flockc, path, "-o", bundle, "--dtype", "f32", "--quiet"])
        lap("compile")
        # K/V as computed, as transformers keeps them (the default f16 cache
        # is checked on its own in 1b)
        flock_args = ["--threads", threads, "--kv-type", "f32"]

        # 1. logits of every position, full FF
        run([flock, "logits", bundle, "--ids", ids_s, "--out", out] + flock_args)
        got = np.fromfile(out, dtype="<f4").reshape(n_tok, -1).astype(np.float64)
        want = hf(torch.tensor([ids])).logits[0].double().numpy()
        # 1b. the same with the default KV cache (f16): K and V rounded to 11
        # bits move the logits by about 1e-3
        run([flock, "logits", bundle, "--ids", ids_s, "--out", out, "--threads", threads])
        got16 = np.fromfile(out, dtype="<f4").reshape(n_tok, -1).astype(np.float64)
        err16 = np.linalg.norm(got16 - want, axis=1) / np.linalg.norm(want, axis=1)
        same16 = int((got16.argmax(1) == want.argmax(1)).sum())
        print(f"1b. logits, f16 KV cache (the default): max relative error {err16.max():.2e} "
              f"(median {np.median(err16):.2e}), argmax equal at {same16}/{n_tok}")
        failures += int(err16.max() > 1e-2) + int(same16 < 0.99 * n_tok)
        del got16
        err = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
        diff_arg = np.nonzero(got.argmax(1) != want.argmax(1))[0]
        print(f"1. logits, full FF, {n_tok} positions: max relative error {err.max():.2e} "
              f"(median {np.median(err):.2e}), argmax equal at {n_tok - len(diff_arg)}/{n_tok}")
        for t in diff_arg[:5]:
            top2 = np.sort(want[t])[-2:]
            print(f"   position {t}: argmax {got[t].argmax()} vs {want[t].argmax()} "
                  f"(transformers' top-2 gap {top2[1] - top2[0]:.3g})")
        failures += int(err.max() > 1e-4) + int(len(diff_arg) > 0)
        lap("1")
        del got, want

        # 2. greedy generation at keep 1.0: transformers' generate
        gen = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, n_tok, dtype=torch.long),
                          max_new_tokens=n_gen, do_sample=False, top_k=None, top_p=None, temperature=None)
        ref_gen = gen[0, n_tok:].tolist()
        matched = decode_match(flock, bundle, ids, ref_gen, 1.0, out, flock_args)
        detok = detokenizer(path)
        js = json.loads(run([flock, "run", bundle, "--ids", ids_s, "-n", str(n_gen), "--temp", "0",
                             "--keep", "1", "--json"] + flock_args))
        same_text = js["text"] == detok(ref_gen)
        print(f"2. greedy, keep 1.0, {len(ref_gen)} tokens from transformers' generate: {matched} equal to flock's "
              f"decode path; flock run's text {'equal' if same_text else 'DIFFERENT'}")
        if not same_text:
            print(f"   flock run:    {js['text']!r}\n   transformers: {detok(ref_gen)!r}")
        failures += int(matched != len(ref_gen)) + int(not same_text)
        lap("2")

        # 3. GRIFFIN's experts for the prompt, keep K: one prompt pass through
        # the wrapped MLPs records the statistic (and starts check 4's decode)
        layers = hf.model.layers
        wrapped = [GriffinMLP(layer.mlp) for layer in layers]
        for layer, w in zip(layers, wrapped):
            layer.mlp = w
        o = hf(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        cache, tok = o.past_key_values, int(o.logits[0, -1].argmax())
        selected = [w.select(keep) for w in wrapped]
        js = json.loads(run([flock, "experts", bundle, "--ids", ids_s, "--keep", f"{keep}", "--json"] + flock_args))
        agree = []
        for sel, layer in zip(selected, js["layers"]):
            ref = set(sel.tolist())
            mine = set(layer["experts"])
            agree.append(len(ref & mine) / len(ref) if len(mine) == len(ref) else 0.0)
        worst = int(np.argmin(agree))
        print(f"3. experts, keep {keep}, {len(agree)} layers of {len(js['layers'][0]['experts'])} neurons: "
              f"min agreement {100 * agree[worst]:.2f}% (layer {worst}), mean {100 * np.mean(agree):.2f}%")
        failures += int(min(agree) < 0.99)
        lap("3")

        # 4. greedy generation at keep K with GRIFFIN: the torch reference. The
        # first token comes from the prompt pass (full MLP), the rest from the
        # pruned MLPs with the KV cache.
        for w, sel in zip(wrapped, selected):
            w.prune(sel)
        # transformers 5.24 renamed the forward's past_key_values to cache
        kw = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
        ref_g = [tok]
        for _ in range(n_gen - 1):
            o = hf(torch.tensor([[tok]]), use_cache=True, **{kw: cache})
            cache, tok = o.past_key_values, int(o.logits[0, -1].argmax())
            ref_g.append(tok)
        matched_g = decode_match(flock, bundle, ids, ref_g, keep, out, flock_args)
        print(f"4. greedy, keep {keep} (GRIFFIN), {n_gen} tokens of the torch reference: the first {matched_g} "
              f"equal to flock's decode path (required: {min_griffin})")
        failures += int(matched_g < min_griffin)
        lap("4")
    print(f"{time.time() - t0:.0f} s in all")
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


def decode_match(flock, bundle, prompt, gen, keep, out, flock_args):
    """Feeds prompt + gen to flock's decode path (prompt = the prompt, full FF
    and expert selection; the rest one token at a time with the experts of
    keep) and returns how many of gen are flock's argmax from the start."""
    seq = prompt + gen
    run([flock, "logits", bundle, "--ids", ",".join(map(str, seq)), "--prompt-len", str(len(prompt)),
         "--keep", f"{keep}", "--out", out] + flock_args)
    lg = np.fromfile(out, dtype="<f4").reshape(len(seq), -1)
    mine = lg[len(prompt) - 1:len(seq) - 1].argmax(axis=1)
    n = 0
    while n < len(gen) and mine[n] == gen[n]:
        n += 1
    return n


if __name__ == "__main__":
    sys.exit(main())
