#!/usr/bin/env python3
"""`flock eval --jsonl` (the GRIFFIN paper's XSum protocol) against an
independent computation of the same scores.

usage: check_eval_rouge.py FLOCK FLOCKC MODEL [--n N] [--gen G] [--keep K]

Compiles MODEL (f16, keep K), runs `flock eval --jsonl` on the first N
one-shot summarization prompts of tests/data/summaries.jsonl (greedy, G new
tokens, stop at "###") at keep 1.0 and K, then generates the same summaries
one by one with `flock run --temp 0 --stop '###'` and scores them with
Google's rouge_score package (ROUGE-1/2/L F1, no stemming: what the paper
used). Checks:
  1. flock eval's ROUGE-1/2/L against the references and against the full
     model's output equal the rouge_score means over the `flock run` texts
     (|difference| <= 1e-6);
  2. at keep 1.0 the scores against the full model are 1 (the same text);
  3. the full model summarizes: mean ROUGE-1 against the references is at
     least 0.15 (a model that copies or rambles scores near 0.05).
Exits 1 on a mismatch, and also (naming it) when an input or a package is
missing.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import SUMMARIES, need, resolve, summary_prompts  # noqa: E402

TOL = 1e-6
MIN_ROUGE1 = 0.15


def run(cmd):
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        print("command failed:", " ".join(cmd[:4]), "...\n", r.stderr.decode(errors="replace")[-2000:])
        sys.exit(1)
    return r.stdout.decode()


def opt(args, name, default, kind):
    return kind(args[args.index(name) + 1]) if name in args else default


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        print(__doc__)
        return 2
    flock, flockc, model = args[0], args[1], resolve(args[2])
    n = opt(args, "--n", 6, int)
    gen = opt(args, "--gen", 40, int)
    keep = opt(args, "--keep", 0.5, float)
    rouge_scorer = need("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    prompts = summary_prompts(n)
    threads = os.environ.get("FLOCK_TEST_THREADS", "2")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "m.flock")
        run([flockc, model, "-o", bundle, "--dtype", "f16", "--keep", f"{keep}", "--quiet"])
        ev = json.loads(run([flock, "eval", bundle, "--jsonl", resolve(SUMMARIES), "--n", str(n),
                             "--cont-len", str(gen), "--keep", f"1,{keep}", "--threads", threads, "--json"]))
        if ev["prompts"] != n:
            print(f"flock eval scored {ev['prompts']} prompts, expected {n} (skipped_too_long "
                  f"{ev.get('skipped_too_long')})")
            return 1
        texts = {}
        for k in (1.0, keep):
            texts[k] = []
            for p in prompts:
                out = json.loads(run([flock, "run", bundle, "-p", p["article"], "-n", str(gen), "--temp", "0",
                                      "--keep", f"{k}", "--stop", "###", "--threads", threads, "--json"]))
                texts[k].append(out["text"])
        for r in ev["results"]:
            k = float(r["keep"])
            mine = texts[1.0 if abs(k - 1.0) < 1e-9 else keep]
            for against, refs in (("", [p["summary_gt"] for p in prompts]), ("_vs_full", texts[1.0])):
                for metric in ("rouge1", "rouge2", "rougeL"):
                    want = sum(scorer.score(ref, c)[metric].fmeasure for ref, c in zip(refs, mine)) / n
                    got = r.get(metric + against)
                    ok = got is not None and abs(got - want) <= TOL
                    failures += not ok
                    print(f"keep {k:<4} {metric}{against:<9} flock eval {got!s:<22} rouge_score {want:.6f}"
                          f" {'ok' if ok else 'MISMATCH'}")
            if abs(k - 1.0) < 1e-9:
                for metric in ("rouge1", "rouge2", "rougeL"):
                    v = r.get(metric + "_vs_full")
                    if v is None or abs(v - 1.0) > TOL:
                        print(f"keep 1.0 {metric}_vs_full = {v}, expected 1 (the same text)")
                        failures += 1
                if r.get("rouge1", 0) < MIN_ROUGE1:
                    print(f"keep 1.0 mean ROUGE-1 {r.get('rouge1')} < {MIN_ROUGE1}: the model does not summarize")
                    failures += 1
        print("summary at keep 1.0 of prompt 0:", texts[1.0][0].strip()[:200])
        print(f"summary at keep {keep} of prompt 0:", texts[keep][0].strip()[:200])
    print(f"{n} prompts, {gen} tokens: {'ok' if failures == 0 else f'{failures} mismatches'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
