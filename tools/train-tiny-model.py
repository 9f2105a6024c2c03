#!/usr/bin/env python3
"""Trains the project's own tiny test model (tests/data/tiny-llama.gguf).

A Llama of stories260K's shape (dim 64, 5 layers, SwiGLU FF 172, 8 heads /
4 KV heads of 8, untied output, all F32) with a SentencePiece-style BPE
vocabulary of 512 (in llama.cpp's "llama" GGUF form), trained from scratch
on the four public-domain books of the Canterbury corpus.

usage: train-tiny-model.py --data DIR --out FILE.gguf [--steps N] [--heldout-out FILE]

DIR holds alice29.txt, asyoulik.txt, lcet10.txt and plrabn12.txt (what
tools/setup.sh --test puts in ~/.cache/flock/data/canterbury). Each book is
cut at the first line end after 90% of its bytes: the first part is the
training text (of the tokenizer and of the model), the rest is held out;
the held-out loss is printed at the end (--heldout-out writes the held-out
parts, concatenated in book order, for other tools to evaluate on).

Deterministic: fixed seeds, torch's deterministic algorithms, CPU only,
two threads (the result is the same file on the same torch build).

The tokenizer
  ids 0 <unk> (type 2), 1 <s>, 2 </s> (type 3), 3..258 the byte tokens
  <0x00>..<0xFF> (type 6), then 253 normal pieces (type 1): the merged
  pieces in the order the trainer made them (scores 0, -1, -2, ...), then the
  single characters (by frequency; scores continuing downwards). Spaces are
  U+2581 and the text gets one in front (add_space_prefix). Characters
  outside the vocabulary (control characters such as newline and tab, and
  the rarest characters past a coverage of 99.95%) are byte tokens.
  Encoding (llama.cpp's SentencePiece rule): start from the characters,
  repeatedly merge the adjacent pair whose concatenation is a piece with the
  highest score (leftmost first on ties); what is not a piece falls back to
  its UTF-8 bytes. The trainer segments its word table with that same rule
  after every new piece, so its segmentation is the encoder's by
  construction; the script checks it on the whole training text anyway.

The model
  RMSNorm (eps 1e-5), rotary embedding on all 8 dims of a head (theta
  10000), grouped-query causal attention, down(silu(gate x) * up x). It is
  trained in Hugging Face's rotate_half layout; Q and K rows are permuted
  into llama.cpp's GGUF layout when written (as llama.cpp's converter does).
"""
import argparse
import collections
import heapq
import math
import os
import re
import sys
import time
import unicodedata

BOOKS = ["alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt"]
SPACE = "\u2581"
N_VOCAB = 512
N_NORMAL = N_VOCAB - 3 - 256  # pieces after <unk> <s> </s> and the 256 byte tokens
BOS, EOS, UNK = 1, 2, 0
COVERAGE = 0.9995  # SentencePiece's default character_coverage

# model shape (stories260K's)
DIM, N_LAYER, FF, N_HEAD, N_KV, CTX, EPS, THETA = 64, 5, 172, 8, 4, 2048, 1e-5, 10000.0
HEAD_DIM = DIM // N_HEAD
SEQ = 256


def log(msg):
    print(msg, flush=True)


def split_book(data):
    """(train, held out): cut at the first line end at or after 90% of the bytes."""
    cut = data.find(b"\n", int(len(data) * 0.9))
    cut = len(data) if cut < 0 else cut + 1
    return data[:cut], data[cut:]


def load(data_dir):
    train, held = [], []
    for name in BOOKS:
        with open(os.path.join(data_dir, name), "rb") as f:
            a, b = split_book(f.read())
        train.append(a.decode("utf-8"))
        held.append(b.decode("utf-8"))
    return train, held


# ---- tokenizer ---------------------------------------------------------------


def normalize(text):
    return SPACE + text.replace(" ", SPACE)


def spm_merge_word(sym, score):
    """The encoding rule on one list of symbols: merge the adjacent pair whose
    concatenation has the highest score (leftmost on ties) until none is a piece."""
    sym = list(sym)
    while True:
        best, best_i = None, -1
        for i in range(len(sym) - 1):
            s = score.get(sym[i] + sym[i + 1])
            if s is not None and (best is None or s > best):
                best, best_i = s, i
        if best_i < 0:
            return sym
        sym[best_i : best_i + 2] = [sym[best_i] + sym[best_i + 1]]


def train_bpe(texts):
    """Returns (pieces, chars): the merged pieces in merge order and the base
    characters by frequency, len(pieces) + len(chars) == N_NORMAL, and the
    trainer's segmentation of every word (for the check)."""
    norm = [normalize(t) for t in texts]
    counts = collections.Counter()
    for t in norm:
        counts.update(t)
    # base characters: no control characters; the most frequent ones up to the
    # coverage of the other characters' occurrences
    cands = sorted(((n, c) for c, n in counts.items() if not unicodedata.category(c).startswith("C")),
                   key=lambda x: (-x[0], x[1]))
    total = sum(n for n, _ in cands)
    chars, acc = [], 0
    for n, c in cands:
        if acc >= COVERAGE * total:
            break
        chars.append(c)
        acc += n
    if SPACE not in chars:
        chars.append(SPACE)
    charset = set(chars)
    # words: a maximal run of vocabulary characters, a U+2581 only at its start
    # (no piece holds one elsewhere, so no merge crosses a space; characters
    # outside the vocabulary are byte tokens no merge crosses either)
    body = "".join(re.escape(c) for c in sorted(charset - {SPACE}))
    word_re = re.compile(f"{SPACE}?[{body}]+|{SPACE}")
    wfreq = collections.Counter()
    for t in norm:
        wfreq.update(word_re.findall(t))
    words = sorted(wfreq)  # deterministic order
    freq = [wfreq[w] for w in words]
    seg = [list(w) for w in words]
    pairs = collections.Counter()

    def count(i, sign):
        s, f = seg[i], freq[i] * sign
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += f

    for i in range(len(words)):
        count(i, 1)
    n_merge = N_NORMAL - len(chars)
    score, pieces = {}, []
    for k in range(n_merge):
        (a, b), n = max(pairs.items(), key=lambda x: (x[1], x[0]))
        if n <= 0:
            sys.exit("train_bpe: ran out of pairs")
        p = a + b
        assert p not in score and len(p) > 1
        pieces.append(p)
        score[p] = -float(k)
        for i, w in enumerate(words):  # only words holding p can change
            if p in w:
                count(i, -1)
                seg[i] = spm_merge_word(list(w), score)
                count(i, 1)
        for key in [key for key, v in pairs.items() if v == 0]:
            del pairs[key]
    return pieces, chars, dict(zip(words, seg)), word_re


class Tokenizer:
    def __init__(self, pieces, chars):
        normal = pieces + chars
        assert len(normal) == N_NORMAL and len(set(normal)) == N_NORMAL
        self.tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + normal
        self.scores = [0.0] * 259 + [-float(i) for i in range(N_NORMAL)]
        self.types = [2, 3, 3] + [6] * 256 + [1] * N_NORMAL
        self.id = {t: i for i, t in enumerate(self.tokens) if i >= 259}
        self.score = {t: self.scores[i] for t, i in self.id.items()}

    def encode(self, text, bos=False):
        """llama.cpp's SentencePiece encoder (a heap of adjacent pairs) on the whole text."""
        s = normalize(text)
        n = len(s)
        ln = [1] * n
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap = []
        score = self.score

        def push(l, r):
            if l < 0 or r >= n:
                return
            t = s[l : r + ln[r]] if l + ln[l] == r else None
            sc = score.get(t)
            if sc is not None:
                heapq.heappush(heap, (-sc, l, r, len(t)))

        for i in range(n - 1):
            push(i, i + 1)
        while heap:
            _, l, r, size = heapq.heappop(heap)
            if ln[l] == 0 or ln[r] == 0 or ln[l] + ln[r] != size or nxt[l] != r:
                continue
            ln[l] += ln[r]
            ln[r] = 0
            nxt[l] = nxt[r]
            if nxt[l] < n:
                prv[nxt[l]] = l
            push(prv[l], l)
            push(l, nxt[l])
        ids = [BOS] if bos else []
        i = 0
        while i < n:
            t = s[i : i + ln[i]]
            tid = self.id.get(t)
            if tid is not None:
                ids.append(tid)
            else:
                ids.extend(3 + b for b in t.encode("utf-8"))  # byte fallback
            i = nxt[i]
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if 3 <= i < 259:
                out.append(i - 3)
            elif i >= 259:
                out += t.replace(SPACE, " ").encode("utf-8")
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text


def check_tokenizer(tok, texts, word_seg, word_re):
    """The trainer's segmentation of each training text must be the encoder's."""
    for t in texts:
        want = []
        norm = normalize(t)
        pos = 0
        for m in word_re.finditer(norm):
            want.extend(3 + b for b in norm[pos : m.start()].encode("utf-8"))  # not in the vocabulary
            want.extend(tok.id[p] for p in word_seg[m.group()])
            pos = m.end()
        want.extend(3 + b for b in norm[pos:].encode("utf-8"))
        got = tok.encode(t)
        if got != want:
            i = next(k for k in range(min(len(got), len(want))) if got[k] != want[k])
            sys.exit(f"tokenizer check failed at token {i}: encoder {got[i:i+8]} trainer {want[i:i+8]}")
    return True


# ---- model ---------------------------------------------------------------------


def build_model(torch):
    nn, F = torch.nn, torch.nn.functional

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(DIM))

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))

    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = RMSNorm()
            self.q = nn.Linear(DIM, N_HEAD * HEAD_DIM, bias=False)
            self.k = nn.Linear(DIM, N_KV * HEAD_DIM, bias=False)
            self.v = nn.Linear(DIM, N_KV * HEAD_DIM, bias=False)
            self.o = nn.Linear(N_HEAD * HEAD_DIM, DIM, bias=False)
            self.ffn_norm = RMSNorm()
            self.gate = nn.Linear(DIM, FF, bias=False)
            self.up = nn.Linear(DIM, FF, bias=False)
            self.down = nn.Linear(FF, DIM, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            h = self.attn_norm(x)
            q = self.q(h).view(B, T, N_HEAD, HEAD_DIM).transpose(1, 2)
            k = self.k(h).view(B, T, N_KV, HEAD_DIM).transpose(1, 2)
            v = self.v(h).view(B, T, N_KV, HEAD_DIM).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = N_HEAD // N_KV  # query head j uses KV head j // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(B, T, DIM))
            h = self.ffn_norm(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(N_VOCAB, DIM)
            self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
            self.norm = RMSNorm()
            self.output = nn.Linear(DIM, N_VOCAB, bias=False)
            inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
            self.register_buffer("inv_freq", inv, persistent=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * N_LAYER) if name.endswith(("o.weight", "down.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, ids):
            T = ids.shape[1]
            f = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
            emb = torch.cat((f, f), dim=-1)
            cos, sin = emb.cos(), emb.sin()
            x = self.embed(ids)
            for b in self.blocks:
                x = b(x, cos, sin)
            return self.output(self.norm(x))

    return Llama()


def heldout_loss(torch, model, seqs, batch=32):
    """Mean NLL (nats/token) of every token of the given texts: each in
    consecutive windows of SEQ tokens, each window after <s>."""
    F = torch.nn.functional
    full, tails = [], []
    for ids in seqs:
        for s in range(0, len(ids), SEQ):
            (full if len(ids) - s >= SEQ else tails).append(ids[s : s + SEQ])
    groups = [full[i : i + batch] for i in range(0, len(full), batch)] + [[t] for t in tails]
    tot, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for grp in groups:
            y = torch.tensor(grp)
            x = torch.cat((torch.full((len(grp), 1), BOS), y[:, :-1]), dim=1)
            tot += F.cross_entropy(model(x).reshape(-1, N_VOCAB), y.reshape(-1), reduction="sum").item()
            n += y.numel()
    model.train()
    return tot / n, n


# ---- GGUF ------------------------------------------------------------------------


def llama_cpp_permute(w, n_head):
    """Hugging Face rotate_half rows -> llama.cpp's GGUF rows (its converter's permute)."""
    out, dim = w.shape
    return w.reshape(n_head, 2, out // n_head // 2, dim).swapaxes(1, 2).reshape(out, dim)


def write_gguf(path, tok, model):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(path, "llama")
    w.add_array("tokenizer.ggml.tokens", tok.tokens)
    w.add_array("tokenizer.ggml.scores", tok.scores)
    w.add_array("tokenizer.ggml.token_type", tok.types)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_string("general.name", "tiny-llama")
    w.add_uint32("tokenizer.ggml.unknown_token_id", UNK)
    w.add_uint32("tokenizer.ggml.bos_token_id", BOS)
    w.add_uint32("tokenizer.ggml.eos_token_id", EOS)
    w.add_uint32("tokenizer.ggml.seperator_token_id", 0xFFFFFFFF)  # (sic) the GGUF key; none
    w.add_uint32("tokenizer.ggml.padding_token_id", 0xFFFFFFFF)
    w.add_uint32("llama.context_length", CTX)
    w.add_uint32("llama.embedding_length", DIM)
    w.add_uint32("llama.feed_forward_length", FF)
    w.add_uint32("llama.attention.head_count", N_HEAD)
    w.add_uint32("llama.attention.head_count_kv", N_KV)
    w.add_uint32("llama.block_count", N_LAYER)
    w.add_uint32("llama.rope.dimension_count", HEAD_DIM)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", EPS)
    # stories260K's key order: the tokenizer's arrays first
    kv = w.kv_data[0]
    first = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
             "tokenizer.ggml.model", "general.architecture"]
    w.kv_data[0] = {k: kv[k] for k in first + [k for k in kv if k not in first]}

    def t(name, p):
        w.add_tensor(name, np.ascontiguousarray(p.detach().numpy().astype(np.float32)))

    t("token_embd.weight", model.embed.weight)
    t("output_norm.weight", model.norm.weight)
    t("output.weight", model.output.weight)
    for i, b in enumerate(model.blocks):
        q = llama_cpp_permute(b.q.weight.detach().numpy(), N_HEAD)
        k = llama_cpp_permute(b.k.weight.detach().numpy(), N_KV)
        w.add_tensor(f"blk.{i}.attn_q.weight", np.ascontiguousarray(q, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_k.weight", np.ascontiguousarray(k, dtype=np.float32))
        t(f"blk.{i}.attn_v.weight", b.v.weight)
        t(f"blk.{i}.attn_output.weight", b.o.weight)
        t(f"blk.{i}.attn_norm.weight", b.attn_norm.weight)
        t(f"blk.{i}.ffn_gate.weight", b.gate.weight)
        t(f"blk.{i}.ffn_down.weight", b.down.weight)
        t(f"blk.{i}.ffn_up.weight", b.up.weight)
        t(f"blk.{i}.ffn_norm.weight", b.ffn_norm.weight)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- main ------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--data", required=True, help="directory with the four Canterbury books")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    ap.add_argument("--batch", type=int, default=16, help="sequences of 256 tokens a step (default 16)")
    ap.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (default 4e-3)")
    ap.add_argument("--eval-every", type=int, default=500, help="held-out loss every N steps (0: only at the end)")
    ap.add_argument("--heldout-out", help="also write the held-out text (the books' last parts, concatenated) here")
    ap.add_argument("--save-torch", help="also save the torch state dict here (for checks)")
    a = ap.parse_args()

    import torch

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    t0 = time.time()

    train_txt, held_txt = load(a.data)
    if a.heldout_out:
        with open(a.heldout_out, "w", encoding="utf-8", newline="") as f:
            f.write("".join(held_txt))
    log(f"text: {sum(map(len, train_txt))} training bytes, {sum(map(len, held_txt))} held out")

    pieces, chars, word_seg, word_re = train_bpe(train_txt)
    tok = Tokenizer(pieces, chars)
    check_tokenizer(tok, train_txt, word_seg, word_re)
    train_ids = [tok.encode(t) for t in train_txt]
    held_ids = [tok.encode(t) for t in held_txt]
    n_tr = sum(map(len, train_ids))
    log(f"tokenizer: {len(pieces)} merges + {len(chars)} characters; training text {n_tr} tokens "
        f"({sum(map(len, train_txt)) / n_tr:.2f} bytes/token), held out {sum(map(len, held_ids))}; "
        f"trainer's segmentation == encoder's: yes ({time.time() - t0:.1f} s)")

    # windows of SEQ + 1 tokens ([<s>] + SEQ inputs' targets) start at a word or a line
    stream, starts = [], []
    for ids in train_ids:
        base = len(stream)
        for i in range(len(ids) - SEQ + 1):
            t = tok.tokens[ids[i]]
            if t.startswith(SPACE) or (i > 0 and ids[i - 1] == 3 + 10):
                starts.append(base + i)
        stream.extend(ids)
    stream = torch.tensor(stream, dtype=torch.long)
    starts = torch.tensor(starts, dtype=torch.long)
    offs = torch.arange(SEQ)

    model = build_model(torch)
    n_param = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    warm = max(1, a.steps // 20)

    def lr_at(s):
        if s < warm:
            return a.lr * (s + 1) / warm
        p = (s - warm) / max(1, a.steps - warm)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    g = torch.Generator().manual_seed(1234)
    bos_col = torch.full((a.batch, 1), BOS, dtype=torch.long)
    log(f"model: {n_param} parameters; {a.steps} steps of {a.batch} x {SEQ} tokens, peak lr {a.lr}")
    t1 = time.time()
    ema = None
    for step in range(a.steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        st = starts[torch.randint(len(starts), (a.batch,), generator=g)]
        y = stream[st[:, None] + offs]
        x = torch.cat((bos_col, y[:, :-1]), dim=1)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, N_VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if (step + 1) % 50 == 0 or step == 0:
            msg = f"step {step + 1:5d}  loss {loss.item():.4f}  (avg {ema:.4f})  lr {lr_at(step):.2e}  {time.time() - t1:6.1f} s"
            if a.eval_every and (step + 1) % a.eval_every == 0 and step + 1 < a.steps:
                msg += f"  held-out {heldout_loss(torch, model, held_ids)[0]:.4f}"
            log(msg)
    train_time = time.time() - t1

    # final losses: the whole training text and the held-out text, same windows
    tr_loss, tr_n = heldout_loss(torch, model, train_ids)
    ho_loss, ho_n = heldout_loss(torch, model, held_ids)
    log(f"final: training text {tr_loss:.4f} nats/token ({tr_n} tokens), held out {ho_loss:.4f} nats/token "
        f"({ho_n} tokens, perplexity {math.exp(ho_loss):.2f}); training {train_time:.1f} s")

    write_gguf(a.out, tok, model)
    if a.save_torch:
        torch.save(model.state_dict(), a.save_torch)
    prompt = "Alice was beginning to get very"
    ids = tok.encode(prompt, bos=True)
    model.eval()
    with torch.no_grad():
        for _ in range(32):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    log(f"greedy: {prompt!r} -> {tok.decode(ids[1:])!r}")
    log(f"wrote {a.out} ({os.path.getsize(a.out)} bytes) in {time.time() - t0:.1f} s, torch {torch.__version__}")


if __name__ == "__main__":
    main()
