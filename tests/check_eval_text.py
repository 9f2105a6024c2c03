#!/usr/bin/env python3
"""`flock eval --text` against an independent computation of the same scores.

usage: check_eval_text.py FLOCK FLOCKC TOK_DUMP MODEL

Compiles MODEL (f32) and writes a short text (lines of the test text, a few
more tokens than W windows of P + C need, so flock eval tokenizes all of it).
The text is tokenized on its own (tok_dump), cut into the same windows, and
each window's logits come from `flock logits` (full FF; and with
--prompt-len, the experts selected from the window's prompt, with and
without --refresh). numpy computes from them the perplexity, top-1
agreement with the full model and mean KL(full || pruned). Checks against
`flock eval --json` on the same text:
  1. full perplexity (keep 1.0 is the full-model row), and per row
     (griffin at keep 0.5 with refresh 0, 4 and 1) perplexity, top-1
     agreement and mean KL, within 1e-4 relative (KL 1e-3 absolute);
  2. refresh 1 (every decoded token runs the full FF) gives the full
     model's perplexity, refresh 0 does not (so 1 means something);
  3. the bookkeeping: refresh_steps = W * floor((C - 1) / R); the mean MB
     per token is the sparse rows' MB with the refresh steps at the full
     model's; vs_griffin = ppl / ppl(griffin, same keep, refresh 0); each
     ratio lies in its 95% interval.
Exits 1 on a mismatch, and also (naming it) when an input or a package is
missing.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import english_lines, need, resolve  # noqa: E402

W, P, C = 3, 40, 17
REFRESH = (0, 4, 1)
KEEP = 0.5
REL = 1e-4
KL_ABS = 1e-3


def run(cmd, stdin=None):
    r = subprocess.run(cmd, capture_output=True, input=stdin)
    if r.returncode != 0:
        print("command failed:", " ".join(cmd[:4]), "...\n", r.stderr.decode(errors="replace")[-2000:])
        sys.exit(1)
    return r.stdout.decode()


def tokenize(tok_dump, model, text):
    out = run([tok_dump, model, "-0"], stdin=text.encode() + b"\0")
    return [int(x) for x in out.split()]


def main():
    args = sys.argv[1:]
    if len(args) < 4:
        print(__doc__)
        return 2
    flock, flockc, tok_dump, model = args[0], args[1], args[2], resolve(args[3])
    np, gguf = need("numpy", "gguf")
    threads = os.environ.get("FLOCK_TEST_THREADS", "2")
    fields = gguf.GGUFReader(model).fields
    bos = int(fields["tokenizer.ggml.bos_token_id"].contents()) if "tokenizer.ggml.bos_token_id" in fields else -1
    per, want = P + C, W * (P + C)
    # A text just long enough: flock eval tokenizes min(6 bytes per needed token, all) of it.
    text = ""
    for line in english_lines(400):
        text += line + "\n"
        if len(tokenize(tok_dump, model, text)) >= want + 8:
            break
    toks = tokenize(tok_dump, model, text)
    if len(toks) < want or len(text.encode()) >= 6 * want:
        print(f"could not build the text: {len(toks)} tokens in {len(text.encode())} bytes for {want} tokens")
        return 1
    failures = 0

    def close(what, got, exp, rel=REL, absolute=0.0):
        nonlocal failures
        ok = abs(got - exp) <= max(rel * abs(exp), absolute)
        print(f"{'ok' if ok else 'FAIL'}: {what}: flock eval {got:.6g}, expected {exp:.6g}")
        failures += not ok

    def check(what, cond):
        nonlocal failures
        print(f"{'ok' if cond else 'FAIL'}: {what}")
        failures += not cond

    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "m.flock")
        run([flockc, model, "-o", bundle, "--dtype", "f32", "--keep", f"{KEEP}", "--quiet"])
        tpath = os.path.join(tmp, "text.txt")
        with open(tpath, "w", encoding="utf-8") as f:
            f.write(text)
        ev = json.loads(run([flock, "eval", bundle, "--text", tpath, "--windows", str(W), "--prompt-len", str(P),
                             "--cont-len", str(C), "--keep", f"1,{KEEP}", "--select", "griffin", "--refresh",
                             ",".join(map(str, REFRESH)), "--bootstrap", "200", "--threads", threads, "--json"]))
        check(f"{W} windows of {P} + {C} tokens, {W * C} scored",
              (ev["windows"], ev["prompt_len"], ev["cont_len"], ev["scored_tokens"]) == (W, P, C, W * C))

        def logits(win, extra):
            ids = ([bos] if bos >= 0 else []) + win[:P + C - 1]
            out = os.path.join(tmp, "l.bin")
            run([flock, "logits", bundle, "--ids", ",".join(map(str, ids)), "--out", out, "--threads", threads]
                + extra)
            lg = np.fromfile(out, dtype="<f4").astype(np.float64).reshape(len(ids), -1)
            return lg[len(ids) - C:]  # the positions that predict the C continuation tokens

        def logp(lg):
            m = lg.max(axis=1, keepdims=True)
            return lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))

        wins = [toks[w * per:(w + 1) * per] for w in range(W)]
        full = [logp(logits(win, [])) for win in wins]
        conts = [np.array(win[P:]) for win in wins]
        nll_full = -sum(lp[np.arange(C), c].sum() for lp, c in zip(full, conts))
        ref_full_ppl = math.exp(nll_full / (W * C))
        close("full-model perplexity", ev["full_ppl"], ref_full_ppl)
        rows = {(r["select"], float(r["keep"]), int(r.get("refresh", 0))): r for r in ev["results"]}
        full_row = rows.get(("full", 1.0, 0))
        check("a full-model row", full_row is not None)
        if full_row is None:
            return 1
        full_mb = full_row["weight_mb_per_token"]
        prompt_len = P + (bos >= 0)
        check("keep 1.0 is the full-model row only", len(rows) == 1 + len(REFRESH))
        expect = [(KEEP, r) for r in REFRESH]
        ppl_of = {}
        for keep, refresh in expect:
            r = rows.get(("griffin", keep, refresh))
            name = f"griffin keep {keep:g} refresh {refresh}"
            check(f"a row {name}", r is not None)
            if r is None:
                continue
            extra = ["--keep", f"{keep}", "--prompt-len", str(prompt_len), "--refresh", str(refresh)]
            nll = agree = kl = 0.0
            for win, lpf, c in zip(wins, full, conts):
                lp = logp(logits(win, extra))
                nll -= lp[np.arange(C), c].sum()
                agree += (lp.argmax(axis=1) == lpf.argmax(axis=1)).sum()
                kl += (np.exp(lpf) * (lpf - lp)).sum()
            ppl = math.exp(nll / (W * C))
            ppl_of[(keep, refresh)] = ppl
            close(f"{name}: perplexity", r["ppl"], ppl)
            close(f"{name}: ratio to full", r["ppl_ratio"], ppl / ref_full_ppl)
            close(f"{name}: top-1 agreement", r["top1_agree"], agree / (W * C))
            close(f"{name}: mean KL", r["mean_kl"], kl / (W * C), absolute=KL_ABS)
            lo, hi = r["ppl_ratio_ci95"]
            check(f"{name}: ratio {r['ppl_ratio']:.4f} in its interval [{lo:.4f}, {hi:.4f}]",
                  lo <= r["ppl_ratio"] <= hi)
            steps = W * ((C - 1) // refresh) if refresh else 0
            check(f"{name}: refresh_steps {r['refresh_steps']} = {steps}", r["refresh_steps"] == steps)
            dec = W * (C - 1)
            mean = (r["weight_mb_per_token"] * (dec - steps) + full_mb * steps) / dec
            close(f"{name}: mean MB per token", r["mean_mb_per_token"], mean, rel=1e-9)
            check(f"{name}: {r['weight_mb_per_token']:.4f} MB per sparse token < the full model's "
                  f"{full_mb:.4f}", r["weight_mb_per_token"] < full_mb)
            if refresh:
                close(f"{name}: vs_griffin", r["vs_griffin"], r["ppl"] / rows[("griffin", keep, 0)]["ppl"], rel=1e-9)
        if (KEEP, 1) in ppl_of and (KEEP, 0) in ppl_of:
            close("refresh 1 gives the full model's perplexity", ppl_of[(KEEP, 1)], ref_full_ppl, rel=1e-3)
            check(f"refresh 0 does not (ratio {ppl_of[(KEEP, 0)] / ref_full_ppl:.4f})",
                  abs(ppl_of[(KEEP, 0)] / ref_full_ppl - 1) > 1e-2)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
