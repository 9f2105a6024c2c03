#!/usr/bin/env python3
"""`flock serve` driven by OpenAI's own Python client and by raw HTTP.

usage: check_serve.py FLOCK FLOCKC MODEL [--keep K]

Compiles MODEL (keep K compiled in), then against servers on free loopback
ports checks:
  1. chat and text completions, streamed and not, through the `openai`
     client: greedy text equal to `flock run --temp 0` on the same prompt
     (keep 1 and K, with and without a stop string), usage counts equal to
     flock run's, the streamed deltas equal to the whole reply, the usage
     chunk of stream_options, the "flock" block naming the keep that ran;
  2. concurrency: 8 clients x 2 requests on --parallel 4, each prompt
     different (so are its experts), keep 1 and K mixed: every answer equals
     `flock run`'s for its prompt, none lost;
  3. a full queue (--parallel 1 --queue 1) answers 503 with Retry-After;
  4. bad requests get OpenAI's error object and the right status: malformed
     JSON and wrong types 400, unknown model 404, prompt + max_tokens beyond
     the context 400 naming both numbers, an uncompiled keep 400 naming the
     compiled ones, an oversized body 413, no or a wrong API key 401 (but
     /health open), unknown path 404, wrong method 405;
  5. a client that disconnects mid-stream frees its slot (metrics: cancelled
     1, slots busy 0), and a burst of 64 malformed requests leaves the server
     answering;
  6. SIGTERM during a stream: the stream still ends with [DONE] and the
     server exits 0.
Exits 1 on the first failed check, naming it.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import need, resolve  # noqa: E402

KEY = "sk-flock-test"
THREADS = os.environ.get("FLOCK_TEST_THREADS", "2")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def run(cmd):
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        print("command failed:", " ".join(cmd), "\n", r.stderr.decode(errors="replace")[-2000:])
        sys.exit(1)
    return r.stdout.decode()


class Server:
    def __init__(self, flock, bundle, *args, log="serve.log"):
        self.log = open(log, "w+")
        self.p = subprocess.Popen([flock, "serve", bundle, "--port", "0", "--threads", THREADS, *args],
                                  stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.write(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            print("flock serve did not start:\n" + self.p.stderr.read()[-2000:])
            sys.exit(1)
        # keep draining stderr so the server never blocks on a full pipe
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        for line in self.p.stderr:
            self.log.write(line)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "hung"
        self.t.join(5)
        return rc

    def request(self, method, path, body=None, headers=None, key=KEY):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + key
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def metrics(self):
        _, _, data = self.request("GET", "/metrics")
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^flock_(\w+) (\S+)$", data.decode(), re.M)}


def flock_run(flock, bundle, prompt, n, keep, chat=False, stop=None):
    cmd = [flock, "run", bundle, "-p", prompt, "-n", str(n), "--temp", "0", "--keep", f"{keep}", "--threads",
           THREADS, "--json"]
    if chat:
        cmd.append("--chat")
    if stop:
        cmd += ["--stop", stop]
    return json.loads(run(cmd))


def error_of(status, data):
    try:
        e = json.loads(data)["error"]
        return e if {"message", "type", "param", "code"} <= set(e) else None
    except (ValueError, KeyError, TypeError):
        return None


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        print(__doc__)
        return 2
    flock, flockc, model = os.path.abspath(args[0]), os.path.abspath(args[1]), resolve(args[2])
    keep = float(args[args.index("--keep") + 1]) if "--keep" in args else 0.5
    openai = need("openai")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "m.flock")
        run([flockc, model, "-o", bundle, "--keep", f"{keep}", "--quiet"])
        os.chdir(tmp)
        sv = Server(flock, bundle, "--parallel", "4", "--queue", "32", "--ctx", "256", "--api-key", KEY,
                    "--max-body", "65536", "--max-tokens", "200")
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{sv.port}/v1", api_key=KEY, max_retries=0)
            basic(flock, bundle, client, keep)
            concurrency(flock, bundle, client, keep)
            bad_requests(sv, client, keep)
            disconnect_and_burst(sv, client)
        finally:
            rc = sv.stop()
        check(rc == 0, f"the server exits 0 on SIGTERM (got {rc})")
        queue_full(flock, bundle)
        sigterm_mid_stream(flock, bundle)
        if failures:
            print("serve log:\n" + open("serve.log").read()[-3000:])
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


def basic(flock, bundle, client, keep):
    models = client.models.list()
    check([m.id for m in models.data] == ["m"], f"GET /v1/models lists the bundle as 'm' ({models.data})")
    prompt = "What is the capital of France?"
    for k in (1.0, keep):
        ref = flock_run(flock, bundle, prompt, 24, k, chat=True)
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}],
                                           temperature=0, max_tokens=24, extra_body={"keep": k})
        got = r.choices[0].message.content
        check(got == ref["text"], f"chat keep {k}: the reply equals flock run --chat --temp 0 ({got!r} vs "
              f"{ref['text']!r})")
        check(r.usage.prompt_tokens == ref["prompt_tokens"] and r.usage.completion_tokens == ref["generated_tokens"]
              and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
              f"chat keep {k}: usage {r.usage} equals flock run's ({ref['prompt_tokens']}, "
              f"{ref['generated_tokens']})")
        check(r.choices[0].finish_reason == ("length" if ref["stop"] == "length" else "stop"),
              f"chat keep {k}: finish_reason {r.choices[0].finish_reason} (flock run: {ref['stop']})")
        check(abs(r.model_extra["flock"]["keep"] - k) < 1e-9, f"chat keep {k}: the response names its keep")
        # the same, streamed, with the usage chunk
        s = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}],
                                           temperature=0, max_tokens=24, stream=True,
                                           stream_options={"include_usage": True}, extra_body={"keep": k})
        parts, usage, finish, roles = [], None, None, []
        for ch in s:
            if ch.usage:
                usage = ch.usage
            for c in ch.choices:
                if c.delta.role:
                    roles.append(c.delta.role)
                if c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        check("".join(parts) == ref["text"], f"chat keep {k} streamed: deltas join to the reply")
        check(roles == ["assistant"], f"chat keep {k} streamed: the first delta names the role ({roles})")
        check(usage is not None and usage.completion_tokens == ref["generated_tokens"],
              f"chat keep {k} streamed: the usage chunk ({usage})")
        check(finish == r.choices[0].finish_reason, f"chat keep {k} streamed: finish_reason {finish}")
    text = "The history of the city begins"
    for k, stop in ((1.0, None), (keep, None), (keep, ",")):
        ref = flock_run(flock, bundle, text, 32, k, stop=stop)
        r = client.completions.create(model="m", prompt=text, temperature=0, max_tokens=32, stop=stop,
                                      extra_body={"keep": k})
        check(r.choices[0].text == ref["text"], f"completion keep {k} stop {stop!r}: equals flock run "
              f"({r.choices[0].text!r} vs {ref['text']!r})")
        check(r.usage.prompt_tokens == ref["prompt_tokens"] and r.usage.completion_tokens == ref["generated_tokens"],
              f"completion keep {k} stop {stop!r}: usage {r.usage}")
        s = client.completions.create(model="m", prompt=text, temperature=0, max_tokens=32, stop=stop, stream=True,
                                      extra_body={"keep": k})
        check("".join(c.choices[0].text for c in s if c.choices) == ref["text"],
              f"completion keep {k} stop {stop!r} streamed: equals flock run")


PROMPTS = ["Write a sentence about the sea.", "Name three fruits.", "How do birds fly?",
           "Tell me about the moon.", "What is a compiler?", "Describe a forest in winter.",
           "Why is the sky blue?", "Give me a tip for cooking rice."]


def concurrency(flock, bundle, client, keep):
    jobs = [(i, p, keep if i % 2 == 0 else 1.0) for i, p in enumerate(PROMPTS)]
    refs = {i: flock_run(flock, bundle, p, 20, k, chat=True)["text"] for i, p, k in jobs}
    got, errors = {}, []

    def worker(i, p, k):
        for rep in range(2):
            try:
                if rep == 0:
                    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}],
                                                       temperature=0, max_tokens=20, extra_body={"keep": k})
                    text = r.choices[0].message.content
                else:
                    s = client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}],
                                                       temperature=0, max_tokens=20, stream=True,
                                                       extra_body={"keep": k})
                    text = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
                got[(i, rep)] = text
            except Exception as e:  # noqa: BLE001 - any failure is a failed check
                errors.append(f"{i}/{rep}: {e!r}")

    ts = [threading.Thread(target=worker, args=j) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(not errors, f"concurrency: no request failed ({errors[:3]})")
    check(len(got) == 16, f"concurrency: all 16 answers came back ({len(got)})")
    wrong = [(i, rep) for (i, rep), t in got.items() if t != refs[i]]
    check(not wrong, f"concurrency: every answer equals flock run's for its prompt (wrong: {wrong})")


def bad_requests(sv, client, keep):
    chat = "/v1/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]
    cases = [
        ("malformed JSON", "POST", chat, '{"messages": [', 400, None),
        ("not an object", "POST", chat, "[1, 2]", 400, None),
        ("no messages", "POST", chat, {"model": "m"}, 400, "messages"),
        ("messages not an array", "POST", chat, {"messages": "hi"}, 400, "messages"),
        ("temperature a string", "POST", chat, {"messages": msgs, "temperature": "hot"}, 400, "temperature"),
        ("max_tokens negative", "POST", chat, {"messages": msgs, "max_tokens": -1}, 400, "max_tokens"),
        ("n 2", "POST", chat, {"messages": msgs, "n": 2}, 400, "n"),
        ("prompt a number", "POST", "/v1/completions", {"prompt": 5}, 400, "prompt"),
        ("unknown role", "POST", chat, {"messages": [{"role": "wizard", "content": "x"}]}, 400, None),
        ("unknown model", "POST", chat, {"model": "gpt-9", "messages": msgs}, 404, "model"),
        ("unknown path", "GET", "/v1/nothing", None, 404, None),
        ("wrong method", "GET", chat, None, 405, None),
    ]
    for what, method, path, body, status, param in cases:
        st, _, data = sv.request(method, path, body)
        e = error_of(st, data)
        check(st == status and e is not None and (param is None or e["param"] == param),
              f"{what}: {status} with an error object (got {st} {data[:160]!r})")
    st, _, data = sv.request("POST", chat, {"messages": msgs, "keep": 0.3})
    e = error_of(st, data)
    check(st == 400 and e and f"{keep:g}" in e["message"], f"keep 0.3: 400 naming the compiled ratios ({data!r})")
    long_text = " ".join(["word"] * 400)
    st, _, data = sv.request("POST", "/v1/completions", {"prompt": long_text, "max_tokens": 10})
    e = error_of(st, data)
    check(st == 400 and e and e["code"] == "context_length_exceeded" and "256" in e["message"],
          f"a prompt over the context: 400 context_length_exceeded ({data[:200]!r})")
    st, _, data = sv.request("POST", "/v1/completions", {"prompt": " ".join(["word"] * 80), "max_tokens": 199})
    e = error_of(st, data)
    check(st == 400 and e and "199" in e["message"] and "256" in e["message"],
          f"prompt + max_tokens over the context: 400 naming both ({data[:200]!r})")
    st, _, data = sv.request("POST", chat, {"messages": msgs, "max_tokens": 100000})
    check(st == 400 and error_of(st, data), f"max_tokens over --max-tokens: 400 ({data[:160]!r})")
    st, _, data = sv.request("POST", chat, json.dumps({"messages": msgs, "pad": "x" * 70000}))
    check(st == 413 and error_of(st, data), f"a body over --max-body: 413 ({st} {data[:120]!r})")
    st, _, data = sv.request("GET", "/v1/models", key=None)
    check(st == 401 and error_of(st, data), f"no API key: 401 ({st})")
    st, _, data = sv.request("GET", "/v1/models", key="sk-wrong")
    check(st == 401 and error_of(st, data), f"a wrong API key: 401 ({st})")
    st, _, data = sv.request("GET", "/health", key=None)
    check(st == 200 and json.loads(data)["status"] == "ok", f"/health needs no key ({st} {data!r})")
    try:
        client.chat.completions.create(model="nope", messages=msgs)
        check(False, "openai client: unknown model raises NotFoundError")
    except Exception as e:  # noqa: BLE001
        check(type(e).__name__ == "NotFoundError", f"openai client: unknown model raises NotFoundError ({e!r})")


def disconnect_and_burst(sv, client):
    before = sv.metrics()
    s = socket.create_connection(("127.0.0.1", sv.port))
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 200, "stream": True, "temperature": 0})
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    first = s.recv(4096)
    s.close()
    check(b"200" in first.split(b"\r\n")[0], f"disconnect: the stream began ({first[:60]!r})")
    freed = False
    for _ in range(100):
        m = sv.metrics()
        if m["slots_busy"] == 0 and m["requests_cancelled_total"] == before["requests_cancelled_total"] + 1:
            freed = True
            break
        time.sleep(0.05)
    check(freed, f"disconnect: the slot is freed and the request counted cancelled ({sv.metrics()})")
    rng = random.Random(7)
    bodies = ['{"messages": [{"role": "user", "content": "hi"}]}'[:rng.randrange(1, 48)] for _ in range(32)]
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(32)]
    statuses = []

    def send(b):
        try:
            statuses.append(sv.request("POST", "/v1/chat/completions", b)[0])
        except Exception as e:  # noqa: BLE001
            statuses.append(repr(e))

    ts = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(all(st == 400 for st in statuses) and len(statuses) == 64,
          f"a burst of 64 malformed requests: all 400 ({sorted(set(map(str, statuses)))})")
    r = client.completions.create(model="m", prompt="Hello", temperature=0, max_tokens=4)
    check(r.usage.completion_tokens >= 1, "after the burst the server still answers")


def queue_full(flock, bundle):
    sv = Server(flock, bundle, "--parallel", "1", "--queue", "1", "--ctx", "256", log="serve-queue.log")
    statuses, retry = [], []

    def send():
        st, h, _ = sv.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 150,
                                                          "temperature": 0}, key=None)
        statuses.append(st)
        if st == 503:
            retry.append(h.get("Retry-After"))

    ts = [threading.Thread(target=send) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(sorted(statuses).count(200) >= 2 and 503 in statuses and set(statuses) <= {200, 503},
          f"queue full: 503 beyond 1 slot + 1 waiting, the rest 200 ({statuses})")
    check(retry and all(r == "1" for r in retry), f"queue full: 503 says Retry-After ({retry})")
    rc = sv.stop()
    check(rc == 0, f"queue server exits 0 ({rc})")


def sigterm_mid_stream(flock, bundle):
    sv = Server(flock, bundle, "--parallel", "2", "--ctx", "256", "--grace", "30", log="serve-term.log")
    s = socket.create_connection(("127.0.0.1", sv.port))
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 60, "stream": True, "temperature": 0})
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    data = s.recv(4096)
    sv.p.send_signal(signal.SIGTERM)
    s.settimeout(60)
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    check(b"data: [DONE]" in data and b'"finish_reason":"length"' in data,
          f"SIGTERM mid-stream: the stream finishes ({data[-120:]!r})")
    rc = sv.stop(signal.SIGTERM)
    check(rc == 0, f"SIGTERM mid-stream: the server exits 0 ({rc})")


if __name__ == "__main__":
    sys.exit(main())
