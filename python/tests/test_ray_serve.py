"""flock.serve_ray on a local Ray cluster: 2 replicas behind Ray's router.

Run from ctest (python_ray_serve): FLOCKC compiles FLOCK_PY_MODEL (a model
with a chat template), FLOCK_LIBRARY names libflock.so. Concurrent chat
requests must each get the single-process greedy answer, from both replicas.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

import flock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from flocktest import path_of  # noqa: E402

import ray  # noqa: E402  (ray[serve]: tools/setup.sh --test installs it)
from ray import serve  # noqa: E402

from flock.serve_ray import build_app  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name a color.", "What is 2 + 2?", "Say hello.",
             "What is the sun?", "Name an animal.", "What is water?", "Count to three."]
N = 24


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body, timeout=300):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    model = path_of(os.environ["FLOCK_PY_MODEL"])
    assert os.path.exists(model), f"{model} not found (tools/setup.sh --test fetches it)"
    out = str(tmp_path_factory.mktemp("b") / "m.flock")
    subprocess.run([os.environ["FLOCKC"], model, "-o", out, "--keep", "0.5", "--quiet"], check=True)
    return out


@pytest.fixture(scope="module")
def cluster(bundle):
    port = free_port()
    env = {k: os.environ[k] for k in ("FLOCK_LIBRARY", "PYTHONPATH") if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(bundle, replicas=2, keep=0.5, threads=1, model_name="m"), route_prefix="/")
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_as_one_process(bundle, cluster):
    m = flock.Model(bundle)
    s = m.session(keep=0.5, threads=1, device="cpu")
    refs = {q: s.generate(q, max_tokens=N, temperature=0, chat=True) for q in QUESTIONS}
    assert all(refs.values())
    out = {}

    def ask(q):
        out[q] = post(cluster, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": q}],
                                                         "max_tokens": N, "temperature": 0})

    ts = [threading.Thread(target=ask, args=(q,)) for q in QUESTIONS]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    pids = set()
    for q in QUESTIONS:
        status, text = out[q]
        assert status == 200, (q, status, text)
        r = json.loads(text)
        assert r["object"] == "chat.completion"
        assert r["choices"][0]["message"]["content"] == refs[q], q
        assert r["usage"]["completion_tokens"] > 0 and r["flock"]["keep"] == 0.5
        pids.add(r["flock"]["replica_pid"])
    assert len(pids) == 2, f"the requests ran on replicas {pids}"
    assert os.getpid() not in pids


def test_bad_requests(cluster):
    status, text = post(cluster, "/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and "messages" in json.loads(text)["error"]["message"]
    status, text = post(cluster, "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"})
    assert status == 400 and "max_tokens" in text
    status, text = post(cluster, "/v1/nothing", {})
    assert status == 404


def test_stream(bundle, cluster):
    m = flock.Model(bundle)
    ref = m.session(keep=0.5, threads=1).generate(QUESTIONS[0], max_tokens=N, temperature=0, chat=True)
    status, text = post(cluster, "/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTIONS[0]}],
                                                          "max_tokens": N, "temperature": 0, "stream": True})
    assert status == 200
    events = [ln[6:] for ln in text.split("\n") if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert len(pieces) > 2 and "".join(pieces) == ref
