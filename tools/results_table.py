#!/usr/bin/env python3
"""Markdown tables from the JSON of `flock eval --json` and `flock bench --json`.

usage: tools/results_table.py FILE.json [FILE.json ...]
Each file is recognized by its content (eval text, eval generate, bench)."""
import json
import sys


def ci(r, key, fmt=".3f"):
    v = r.get(key)
    return f" [{v[0]:{fmt}}, {v[1]:{fmt}}]" if v else ""


def label(r):
    g = r.get("glass_weight")
    return r["select"] + (f" (w {g:g})" if g is not None and r["select"] == "glass" else "")


def mb(r):
    """Mean weight MB per decoded token (refresh steps at the full model's), else the sparse one."""
    return r.get("mean_mb_per_token", r.get("weight_mb_per_token"))


def order(rows):
    return sorted(rows, key=lambda r: (r["select"] != "full", -r["keep"], r["select"] != "griffin", r["select"],
                                       r.get("refresh", 0)))


def eval_text(d):
    print(f"{d['windows']} windows of {d['prompt_len']} prompt + {d['cont_len']} scored tokens "
          f"({d['scored_tokens']} scored); full-model perplexity {d['full_ppl']:.3f}"
          + (f"; 95% intervals from {d['bootstrap']} bootstrap resamples of the windows" if "bootstrap" in d else "")
          + "\n")
    print("| select | keep | refresh | ratio to full [95%] | vs GRIFFIN [95%] | top-1 agreement | mean KL (nats) | "
          "MB/token | decode tok/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in order(d["results"]):
        vs = f"{r['vs_griffin']:.3f}{ci(r, 'vs_griffin_ci95')}" if "vs_griffin" in r else ""
        m, t = mb(r), r.get("decode_tok_s")
        print(f"| {label(r)} | {r['keep']:g} | {r.get('refresh', 0) or '-'} | {r['ppl_ratio']:.3f}"
              f"{ci(r, 'ppl_ratio_ci95')} | {vs} | {r['top1_agree']:.3f} | {r['mean_kl']:.4f} | "
              f"{'' if m is None else f'{m:.1f}'} | {'' if t is None else f'{t:.1f}'} |")


def eval_gen(d):
    print(f"{d['prompts']} prompts ({d['skipped_too_long']} skipped, longer than the context), "
          f"up to {d['max_new_tokens']} new tokens, temperature {d['temperature']:g}\n")
    print("| select | keep | refresh | ROUGE-1 [95%] | R-1 minus GRIFFIN [95%] | ROUGE-2 | ROUGE-L | R-1 vs full | "
          "R-L vs full | MB/token |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in order(d["results"]):
        dg = (f"{r['rouge1_minus_griffin']:+.4f}{ci(r, 'rouge1_minus_griffin_ci95', '+.4f')}"
              if "rouge1_minus_griffin" in r else "")
        m = mb(r)
        print(f"| {label(r)} | {r['keep']:g} | {r.get('refresh', 0) or '-'} | {r['rouge1']:.4f}"
              f"{ci(r, 'rouge1_ci95', '.4f')} | {dg} | {r['rouge2']:.4f} | {r['rougeL']:.4f} | "
              f"{r['rouge1_vs_full']:.4f} | {r['rougeL_vs_full']:.4f} | {'' if m is None else f'{m:.1f}'} |")


def bench(d):
    print(f"{d['arch']}, {d['threads']} threads ({d['kernels']} kernels), prompt {d['prompt_len']} tokens, "
          f"{d['gen_len']} decode steps, {d['repeats']} repeats; memory bandwidth measured in the same run: "
          f"copy {d['copy_gbs']:.2f} GB/s, read {d['read_gbs']:.2f} GB/s; peak RSS {d['peak_rss_mb']:.0f} MB\n")
    print("| kernels | keep | TTFT ms | prefill tok/s | decode tok/s (min-max) | ms/token | MB weights/token | GB/s | "
          "% of copy bw | vs keep 1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in d["results"]:
        sp = r["speedup_vs_keep1"]
        print(f"| {r.get('kernels', '')} | {r['keep']:g} | {r['ttft_ms']:.1f} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.2f} "
              f"({r['decode_tok_s_min']:.2f}-{r['decode_tok_s_max']:.2f}) | {r['ms_per_token']:.2f} | "
              f"{r['weight_bytes_per_token'] / 1e6:.1f} | {r['achieved_gbs']:.2f} | "
              f"{100 * r['achieved_gbs'] / d['copy_gbs']:.0f}% | {'%.3f' % sp if sp is not None else '-'} |")


for path in sys.argv[1:]:
    d = json.load(open(path))
    print(f"<!-- {path} -->")
    if d.get("mode") == "text":
        eval_text(d)
    elif d.get("mode") == "generate":
        eval_gen(d)
    elif "results" in d and "copy_gbs" in d:
        bench(d)
    else:
        sys.exit(f"{path}: not the JSON of flock eval or flock bench")
    print()
