"""The Python bindings against the flock CLI on the same bundle.

Run from ctest (tests/CMakeLists.txt, python_*): FLOCK_BIN and FLOCKC name the
programs, FLOCK_LIBRARY the libflock.so, FLOCK_PY_MODEL the GGUF to compile
(compiled once per run, keep 0.5 compiled in), FLOCK_PY_CHAT=1 when the model
has a chat template.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import flock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from flocktest import path_of  # noqa: E402

FLOCK = os.environ["FLOCK_BIN"]
FLOCKC = os.environ["FLOCKC"]
MODEL = path_of(os.environ["FLOCK_PY_MODEL"])
CHAT = os.environ.get("FLOCK_PY_CHAT") == "1"
PROMPTS = ["Once upon a time, there was a little", "The cat sat on the mat and"]


def cli(*args):
    r = subprocess.run([FLOCK, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"flock {' '.join(args)}: {r.stderr}"
    return r.stdout


def cli_run(bundle, prompt, n, keep, stop=None, chat=False):
    args = ["run", bundle, "-p", prompt, "-n", str(n), "--temp", "0", "--keep", str(keep), "--threads", "2",
            "--device", "cpu", "--json"]
    if stop:
        args += ["--stop", stop]
    if chat:
        args.append("--chat")
    return json.loads(cli(*args))


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    assert os.path.exists(MODEL), f"{MODEL} not found (tools/setup.sh --test fetches it)"
    out = str(tmp_path_factory.mktemp("b") / "m.flock")
    subprocess.run([FLOCKC, MODEL, "-o", out, "--keep", "0.5", "--quiet"], check=True)
    return out


@pytest.fixture(scope="session")
def model(bundle):
    m = flock.Model(bundle)
    yield m


def test_version_matches_the_cli():
    v = flock.version()
    assert v.count(".") == 2 and all(p.isdigit() for p in v.split("."))
    assert cli("--version").split()[1] == v
    assert flock.__version__ == v
    assert os.path.samefile(flock.library_path(), os.environ["FLOCK_LIBRARY"])


def test_model_properties(model, bundle):
    info = json.loads(cli("inspect", bundle, "--json"))
    assert model.n_vocab > 0 and model.n_layer > 0 and model.n_ctx > 0
    assert model.keep_ratios == [0.5]
    assert model.arch in json.dumps(info["manifest"])
    assert model.weight_bytes > 0


@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_generate_greedy_equals_flock_run(model, bundle, keep):
    s = model.session(keep=keep, threads=2, device="cpu")
    for p in PROMPTS:
        ref = cli_run(bundle, p, 32, keep)
        got = s.generate(p, max_tokens=32, temperature=0)
        assert got == ref["text"], (p, keep)
        assert s.stats["generated_tokens"] == ref["generated_tokens"]
        assert s.stats["prompt_tokens"] == ref["prompt_tokens"]
        assert s.stats["device"] == "cpu" and s.stats["threads"] == 2
        assert s.stats["decode_bytes"] > 0


def test_pack_rows_changes_memory_not_text(model):
    """pack_rows (default True) copies the kept rows at keep 0.5; off, nothing is held and the text is the same."""
    on = model.session(keep=0.5, threads=2, device="cpu")
    off = model.session(keep=0.5, threads=2, device="cpu", pack_rows=False)
    a = on.generate(PROMPTS[0], max_tokens=24, temperature=0)
    b = off.generate(PROMPTS[0], max_tokens=24, temperature=0)
    assert a == b
    assert 0 < on.stats["packed_bytes"] < on.stats["decode_bytes"]
    assert off.stats["packed_bytes"] == 0


def test_stop_string(model, bundle):
    s = model.session(keep=0.5, threads=2, device="cpu")
    full = s.generate(PROMPTS[0], max_tokens=32, temperature=0)
    words = full.split()
    assert len(words) >= 4
    stop = words[3]
    ref = cli_run(bundle, PROMPTS[0], 32, 0.5, stop=stop)
    got = s.generate(PROMPTS[0], max_tokens=32, temperature=0, stop=stop)
    assert got == ref["text"] and stop not in got and s.stats["stopped_string"]


def test_stream_pieces_make_the_text(model):
    s = model.session(keep=0.5, threads=2, device="cpu")
    pieces = list(s.stream(PROMPTS[1], max_tokens=24, temperature=0))
    assert len(pieces) > 2
    assert "".join(pieces) == s.generate(PROMPTS[1], max_tokens=24, temperature=0)


def test_sampling_is_seeded(model):
    s = model.session(threads=2, device="cpu")
    a = s.generate(PROMPTS[0], max_tokens=24, temperature=1.0, seed=7)
    b = s.generate(PROMPTS[0], max_tokens=24, temperature=1.0, seed=7)
    assert a == b


if CHAT:  # the tiny model has no chat template; the SmolLM2 run has this test
    def test_chat_equals_flock_run_chat(model, bundle):
        s = model.session(keep=0.5, threads=2, device="cpu")
        q = "What is the capital of France?"
        ref = cli_run(bundle, q, 24, 0.5, chat=True)
        got = s.generate(q, max_tokens=24, temperature=0, chat=True)
        assert got == ref["text"] and got
        assert "<|im_start|>" in model.chat([{"role": "user", "content": q}])


def test_logits_equal_flock_logits(model, bundle, tmp_path):
    ids = model.tokenize(PROMPTS[0])
    out = tmp_path / "l.bin"
    cli("logits", bundle, "--ids", ",".join(map(str, ids)), "--out", str(out), "--threads", "2", "--device", "cpu")
    ref = np.fromfile(out, dtype="<f4").reshape(len(ids), model.n_vocab)
    s = model.session(threads=2, device="cpu", all_logits=True)
    got = s.logits(ids)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.array_equal(got, ref)
    assert np.array_equal(s.logits(), ref[-1])


def test_experts_equal_flock_experts(model, bundle):
    ref = json.loads(cli("experts", bundle, "-p", PROMPTS[1], "--keep", "0.5", "--threads", "2", "--device", "cpu"))
    s = model.session(keep=0.5, threads=2, device="cpu")
    s.prefill(model.tokenize(PROMPTS[1]))
    got = s.experts()
    assert sorted(got) == [L["layer"] for L in ref["layers"]]
    for L in ref["layers"]:
        e = got[L["layer"]]
        assert e.dtype == np.int32 and e.tolist() == L["experts"]
        assert np.all(np.diff(e) > 0)


def test_tokenize_round_trip(model):
    text = "The quick brown fox jumps over the lazy dog."
    ids = model.tokenize(text)
    assert ids and all(0 <= i < model.n_vocab for i in ids)
    assert model.detokenize(ids).strip() == text
    s = model.session(threads=1)
    assert s.tokenize(text) == ids and s.detokenize(ids) == model.detokenize(ids)


def test_errors_carry_the_library_message(model, bundle, tmp_path):
    with pytest.raises(flock.Error) as e:
        flock.Model(str(tmp_path / "missing.flock"))
    assert e.value.status == "io" and "missing.flock" in str(e.value)

    data = open(bundle, "rb").read()
    cut = tmp_path / "cut.flock"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(flock.Error) as e:
        flock.Model(str(cut))
    assert e.value.status in ("truncated", "corrupt") and str(e.value)

    bad = tmp_path / "bad.flock"
    b = bytearray(data)
    b[len(b) // 3] ^= 0xFF
    b[len(b) // 3 + 1] ^= 0xFF
    bad.write_bytes(bytes(b))
    with pytest.raises(flock.Error) as e:
        flock.Model(str(bad))
    assert e.value.status in ("checksum", "corrupt") and str(e.value)

    with pytest.raises(flock.Error) as e:
        model.session(keep=0.3)
    assert e.value.status == "invalid_arg" and "0.5" in str(e.value)
    with pytest.raises(flock.Error) as e:
        model.session(device="tpu")
    assert "device" in str(e.value)

    s = model.session(ctx=16, threads=1)
    with pytest.raises(flock.Error) as e:
        s.generate("word " * 40, max_tokens=4)
    assert e.value.status == "range" and "16" in str(e.value)
    with pytest.raises(flock.Error) as e:
        s.decode([1])
    assert e.value.status == "invalid_arg"
    with pytest.raises(flock.Error):
        s.logits([1, 2])  # made without all_logits


def test_the_gil_is_released_during_a_call(model):
    """A thread keeps running while one long call (a prefill) runs in the library."""
    s = model.session(threads=1, device="cpu", all_logits=True, kernels="portable")
    ids = (model.tokenize(PROMPTS[0] + " " + PROMPTS[1]) * 64)[: min(model.n_ctx, 512)]
    stamps = []
    stop = threading.Event()

    def counter():
        clock = time.perf_counter
        while not stop.is_set():
            stamps.append(clock())

    t = threading.Thread(target=counter)
    t.start()
    try:
        time.sleep(0.02)
        s.reset()
        arr = (ctypes.c_int32 * len(ids))(*ids)
        prefill = flock._lib.lib.flock_session_prefill  # what Session.prefill calls, timed alone
        t0 = time.perf_counter()
        st = prefill(s._h, arr, len(ids))
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    dt = t1 - t0
    inside = [x for x in stamps if t0 < x < t1]
    # Held through the call, the GIL would let the other thread run only once
    # the call returned (at most the 5 ms switch interval before t1);
    # released, it runs from the start of the call.
    assert st == 0 and s.n_past == len(ids)
    assert dt > 0.012, f"the prefill took only {dt:.4f} s: too short to tell"
    assert inside and inside[0] - t0 < dt / 2, (dt, inside[0] - t0 if inside else None)


def test_sessions_on_threads_share_a_model(model, bundle):
    refs = {p: cli_run(bundle, p, 16, 0.5)["text"] for p in PROMPTS}
    out = {}

    def work(p):
        with model.session(keep=0.5, threads=1, device="cpu") as s:
            out[p] = s.generate(p, max_tokens=16, temperature=0)

    ts = [threading.Thread(target=work, args=(p,)) for p in PROMPTS]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == refs


def test_installs_without_a_compiler(tmp_path):
    """pip install ./python: a pure-Python package (no build step needs a C compiler)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    src = tmp_path / "src"  # a copy: the build writes beside the sources
    shutil.copytree(here, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "tests"))
    target = tmp_path / "site"
    env = dict(os.environ, CC="/bin/false", CXX="/bin/false")
    r = subprocess.run(["python3", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(target), src],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (target / "flock" / "__init__.py").exists()
    r = subprocess.run(["python3", "-c", "import flock, sys; sys.stdout.write(flock.version())"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(target)), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == flock.version(), r.stderr
    shutil.rmtree(target)
