#!/usr/bin/env python3
"""Token-id parity of flock's tokenizer with an independent reference.

The reference is a Hugging Face `tokenizers` tokenizer built here from the
GGUF's vocabulary with the `gguf` package, the way Hugging Face's own
converters describe these models:
  - gpt2 (byte-level BPE): models.BPE(vocab, merges) with the model's
    pre-tokenizer (SmolLM: Digits(individual) + ByteLevel; Llama 3 / Qwen 2:
    their Split regex + ByteLevel), control / user-defined tokens as added tokens;
  - llama (SentencePiece): models.BPE with byte_fallback and merges recovered
    from the scores (every split of a piece into two pieces, ranked by the
    piece's score), normalizer Prepend("▁") (when add_space_prefix) + Replace(" ", "▁").
It encodes lines of the test text (english.txt, see tests/data/README.md),
the summarization prompts and edge cases with both and reports the
exact-match rate. Exit 0 when every text matches, 1 otherwise (also when a
package or a file is missing: the set-up provides them).

usage: check_tokenizer.py TOK_DUMP (repo:REL | data:REL | models:NAME | PATH) [--n-text N] [--n-prompts N] [--pre NAME]
"""
import argparse
import os
import subprocess
import sys
import tempfile

from flocktest import english_lines, missing, need, resolve, summary_prompts


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if len(f.types) and f.types[0] == 9:  # array
        et = f.types[1]
        if et == 8:
            return [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    v = f.parts[f.data[0]]
    if f.types[0] == 8:
        return bytes(v).decode("utf-8")
    return v[0].item()


SPLITS = {
    "llama3": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
SPLITS["llama-bpe"] = SPLITS["llama3"]


def build_reference(path, pre_override=None):
    gguf = need("gguf")
    need("tokenizers")
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    r = gguf.GGUFReader(path)
    kind = field(r, "tokenizer.ggml.model")
    pre = pre_override or field(r, "tokenizer.ggml.pre") or "gpt2"
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
        tk = Tokenizer(models.BPE(vocab, merges, ignore_merges=pre in ("llama3", "llama-bpe")))
        if pre == "smollm":
            tk.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        elif pre in SPLITS:
            tk.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        elif pre == "gpt2":
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            missing(f"no reference pre-tokenizer for '{pre}' in this check")
        tk.decoder = decoders.ByteLevel()
    elif kind == "llama":
        scores = field(r, "tokenizer.ggml.scores")
        mergeable = {t: i for i, t in enumerate(tokens) if types[i] in (1, 4) and vocab.get(t) == i}
        merges = []
        for piece, i in mergeable.items():
            for k in range(1, len(piece)):
                a, b = piece[:k], piece[k:]
                if a in vocab and b in vocab:
                    merges.append((-scores[i], i, vocab[a], a, b))
        merges.sort()
        unk_id = field(r, "tokenizer.ggml.unknown_token_id")
        unk = tokens[unk_id] if unk_id is not None and unk_id < len(tokens) else None
        tk = Tokenizer(models.BPE(vocab, [(a, b) for _, _, _, a, b in merges], unk_token=unk,
                                  byte_fallback=True, fuse_unk=True))
        space_prefix = field(r, "tokenizer.ggml.add_space_prefix")
        norms = [normalizers.Replace(" ", "▁")]
        if space_prefix is None or space_prefix:
            norms.insert(0, normalizers.Prepend("▁"))
        tk.normalizer = normalizers.Sequence(norms)
        tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    else:
        missing(f"tokenizer.ggml.model '{kind}' has no reference in this check")
    added = [AddedToken(t, special=(types[i] == 3), normalized=False)
             for i, t in enumerate(tokens) if types[i] in (3, 4) and t]
    tk.add_tokens(added)
    return tk


def texts(n_text, n_prompts):
    out = english_lines(n_text)
    out += [p["article"] for p in summary_prompts(n_prompts)]
    # Edge cases: whitespace runs, digits, contractions, non-ASCII, newlines.
    out += ["", " ", "  leading", "trailing  ", "a\n\nb\n", "\t tab", "I'm we'll they've DON'T",
            "1234567 3.14159 x=42", "naïve café über Æsir — “quotes” …", "日本語のテキスト",
            "emoji 🙂👍🏽 done", "   \n   \n", "line\r\nbreaks\r\n\r\n  x", "12345678901 a1b22c333",
            "it's IT'S It'Ll ?!... ---", "\u00a0nbsp\u2003em space\u3000ideographic", "<|im_start|>user\nhi<|im_end|>", "<start_of_turn>user"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tok_dump")
    ap.add_argument("model")
    ap.add_argument("--n-text", type=int, default=400, help="lines of the test text")
    ap.add_argument("--n-prompts", type=int, default=200, help="summarization prompts")
    ap.add_argument("--pre", help="use this llama.cpp pre-tokenizer (llama3, qwen2) on the model's BPE vocabulary")
    a = ap.parse_args()
    path = resolve(a.model)
    ref = build_reference(path, a.pre)
    extra = ["--pre", a.pre] if a.pre else []
    items = texts(a.n_text, a.n_prompts)
    if any("\0" in t for t in items):
        sys.exit("texts may not hold NUL")
    inp = "\0".join(items).encode("utf-8") + b"\0"
    want_ids = [ref.encode(text, add_special_tokens=False).ids for text in items]
    ok = compare(ref, items, want_ids, run_dump([a.tok_dump, path, "-0"] + extra, inp),
                 os.path.basename(path) + (f" (pre {a.pre})" if a.pre else ""))
    # The same reference saved as tokenizer.json and loaded by flock's
    # tokenizer.json reader (flock_tokdata_from_hf_json).
    if a.pre:
        sys.exit(0 if ok else 1)
    with tempfile.TemporaryDirectory() as tmp:
        tj = os.path.join(tmp, "tokenizer.json")
        ref.save(tj)
        ok_hf = compare(ref, items, want_ids, run_dump([a.tok_dump, tj, "-0", "--hf-json"], inp),
                        os.path.basename(path) + " via tokenizer.json")
    sys.exit(0 if ok and ok_hf else 1)


def run_dump(cmd, inp):
    res = subprocess.run(cmd, input=inp, capture_output=True)
    if res.returncode != 0:
        print(res.stderr.decode(errors="replace"))
        sys.exit(1)
    return res.stdout.decode().split("\n")


def compare(ref, items, want_ids, got, label):
    match, shown = 0, 0
    for text, line, want in zip(items, got, want_ids):
        mine = [int(x) for x in line.split()]
        if mine == want:
            match += 1
            continue
        if shown < 5:
            shown += 1
            k = next((i for i, (x, y) in enumerate(zip(mine, want)) if x != y), min(len(mine), len(want)))
            print(f"MISMATCH at token {k} in {text[:60]!r}...\n  flock: {mine[max(0,k-3):k+5]}"
                  f" {[ref.id_to_token(x) for x in mine[max(0,k-3):k+5]]}\n  ref:   {want[max(0,k-3):k+5]}"
                  f" {[ref.id_to_token(x) for x in want[max(0,k-3):k+5]]}")
    n = len(items)
    print(f"{label}: {match}/{n} texts identical ({100.0 * match / n:.2f}%)")
    return match == n


if __name__ == "__main__":
    main()
