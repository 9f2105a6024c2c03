#!/usr/bin/env python3
"""Load for tools/bench-serve.sh: N concurrent streaming /v1/completions
requests against an OpenAI-compatible server, timed per request.

usage: bench_serve_client.py BASE_URL --streams N [--max-tokens 64] [--rounds 2]
                             [--keep K] [--ignore-eos]

Each round sends N requests at once (a different prompt each, temperature 0,
stream_options.include_usage) and records, per request, the time to its first
text chunk (TTFT) and to its end, and its generated tokens (the usage chunk;
counted text chunks when a server sends none). One warm-up round first.
Prints one JSON object:
  agg_tok_s      all generated tokens of a round / the round's wall time
                 (first send to last end: prefill included), median of rounds
  stream_tok_s   a request's (tokens - 1) / (end - first token), the mean
  ttft_p50_ms, ttft_p95_ms over all measured requests
Standard library only.
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "The history of the old harbour town begins with the fishermen who settled on its rocky shore, and over the",
    "In the spring of that year the village council met to decide what should be done about the bridge across",
    "Scientists who study the deep ocean have found that the animals living far below the surface have learned to",
    "When the first railway reached the valley, the farmers who had always carried their grain to market by cart",
    "The library on the corner of the main square was built a century ago by a merchant who wanted every child to",
    "On the morning of the race the runners gathered at the starting line while the crowd along the river bank",
    "A good recipe for bread needs only flour, water, salt and yeast, but the baker who wants a crust that is",
    "The mountain path climbs through forests of pine and beech before it reaches the high meadows where shepherds",
]


def one(url, i, max_tokens, keep, ignore_eos, out):
    u = urllib.parse.urlparse(url)
    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if keep is not None:
        body["keep"] = keep
    if ignore_eos:
        body["ignore_eos"] = True
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        out[i] = {"error": f"HTTP {r.status}: {r.read()[:200]!r}"}
        return
    first, chunks, usage = None, 0, None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        for ch in ev.get("choices") or []:
            if ch.get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    c.close()
    out[i] = {"t0": t0, "first": first if first else end, "end": end, "tokens": usage if usage else chunks}


def round_(url, n, max_tokens, keep, ignore_eos):
    out = [None] * n
    ts = [threading.Thread(target=one, args=(url, i, max_tokens, keep, ignore_eos, out)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    errs = [o["error"] for o in out if "error" in o]
    if errs:
        raise SystemExit("bench_serve_client: " + errs[0])
    return out


def main():
    a = sys.argv[1:]
    if not a or a[0] in ("-h", "--help"):
        print(__doc__)
        return 0

    def opt(name, default, kind):
        return kind(a[a.index(name) + 1]) if name in a else default

    url = a[0]
    n = opt("--streams", 1, int)
    max_tokens = opt("--max-tokens", 64, int)
    rounds = opt("--rounds", 2, int)
    keep = opt("--keep", None, float)
    ignore_eos = "--ignore-eos" in a
    round_(url, n, max_tokens, keep, ignore_eos)  # warm-up
    aggs, streams, ttfts, toks = [], [], [], []
    for _ in range(rounds):
        out = round_(url, n, max_tokens, keep, ignore_eos)
        wall = max(o["end"] for o in out) - min(o["t0"] for o in out)
        total = sum(o["tokens"] for o in out)
        aggs.append(total / wall)
        toks.append(total)
        for o in out:
            ttfts.append((o["first"] - o["t0"]) * 1000)
            if o["tokens"] > 1 and o["end"] > o["first"]:
                streams.append((o["tokens"] - 1) / (o["end"] - o["first"]))
    ttfts.sort()
    p95 = ttfts[min(len(ttfts) - 1, int(round(0.95 * (len(ttfts) - 1))))]
    print(json.dumps({"streams": n, "agg_tok_s": statistics.median(aggs),
                      "stream_tok_s": statistics.mean(streams) if streams else 0.0,
                      "ttft_p50_ms": statistics.median(ttfts), "ttft_p95_ms": p95,
                      "tokens_per_round": toks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
