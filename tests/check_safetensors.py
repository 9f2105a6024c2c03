#!/usr/bin/env python3
"""Independent check of flock's safetensors reader.

Files are written by the reference `safetensors` package (safetensors.numpy),
then read by flock through tests/st_dump; the tensors flock reports (names,
dtypes, shapes, byte counts and every value, bit for bit) must match what
numpy computes from the arrays that were saved.

numpy has no bfloat16, so BF16 tensors are saved as their uint16 bit patterns
(dtype U16) and the header's dtype is then rewritten to "BF16"; the data
layout is still the reference writer's.

usage: check_safetensors.py PATH/TO/st_dump       (exit 1 also when packages are missing)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors.numpy import save_file, load_file
except ImportError as e:
    print(f"MISSING: Python package {e.name} is not installed (run tools/setup.sh --test (make test does))")
    sys.exit(1)

DUMP = sys.argv[1]


def bf16_bits(x):
    """Round-to-nearest-even f32 -> bf16 bit patterns (finite inputs)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def expected(arrays, bf16_names):
    """name -> (dtype, shape, nbytes, f32 bit patterns), as st_dump prints them."""
    out = {}
    for name, a in arrays.items():
        if name in bf16_names:
            f = (a.astype(np.uint32) << 16).view(np.float32)
            dt = "bf16"
        elif a.dtype == np.float16:
            f, dt = a.astype(np.float32), "f16"
        else:
            f, dt = a.astype(np.float32), "f32"
        bits = [f"{b:08x}" for b in f.reshape(-1).view(np.uint32)]
        out[name] = (dt, ",".join(str(d) for d in a.shape) or "-", a.nbytes, bits)
    return out


def run_dump(*args):
    p = subprocess.run([DUMP, *args], capture_output=True, text=True)
    return p.returncode, p.stdout


def parse_dump(text):
    got = {}
    for line in text.splitlines():
        f = line.split(" ")
        got[f[0]] = (f[1], f[2], int(f[3]), f[4:])
    return got


def retag_bf16(path, names):
    """Rewrites the header so the U16 tensors in `names` say BF16."""
    with open(path, "rb") as fh:
        raw = fh.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for k in names:
        assert header[k]["dtype"] == "U16"
        header[k]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def make_arrays(rng, prefix):
    arrays = {
        f"{prefix}embed_tokens.weight": rng.standard_normal((17, 8)).astype(np.float32),
        f"{prefix}layers.0.mlp.down_proj.weight": rng.standard_normal((8, 12)).astype(np.float16),
        f"{prefix}layers.0.mlp.up_proj.weight": bf16_bits(rng.standard_normal((12, 8))),
        f"{prefix}layers.0.input_layernorm.weight": bf16_bits(rng.standard_normal(8)),
        f"{prefix}norm.weight": rng.standard_normal(8).astype(np.float32),
        f"{prefix}scale": np.array(rng.standard_normal(), dtype=np.float16),
        f"{prefix}empty": np.zeros((0, 3), dtype=np.float32),
        f"{prefix}cube": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
    }
    bf16 = {k for k, v in arrays.items() if v.dtype == np.uint16}
    return arrays, bf16


def compare(what, want, code, out):
    if code != 0:
        print(f"FAIL {what}: st_dump failed: {out.strip()}")
        return 1
    got = parse_dump(out)
    bad = 0
    if sorted(got) != sorted(want):
        print(f"FAIL {what}: tensor names differ: flock {sorted(got)} vs reference {sorted(want)}")
        return 1
    if list(got) != sorted(got):
        print(f"FAIL {what}: flock's order is not sorted by name: {list(got)}")
        bad += 1
    for k in want:
        if got[k] != want[k]:
            print(f"FAIL {what}: tensor {k}: flock {got[k][:3]} vs reference {want[k][:3]}"
                  f" (values equal: {got[k][3] == want[k][3]})")
            bad += 1
    print(f"{what}: {len(want)} tensors, {sum(len(w[3]) for w in want.values())} values, "
          f"{'OK' if not bad else 'MISMATCH'}")
    return bad


def main():
    rng = np.random.default_rng(1234)
    fails = 0
    with tempfile.TemporaryDirectory(prefix="flock_st_") as d:
        # One file.
        arrays, bf16 = make_arrays(rng, "model.")
        path = os.path.join(d, "one.safetensors")
        save_file(arrays, path, metadata={"format": "np"})
        retag_bf16(path, bf16)
        fails += compare("single file", expected(arrays, bf16), *run_dump(path))

        # The reference reader agrees that the untagged file holds these arrays.
        plain = os.path.join(d, "plain.safetensors")
        save_file(arrays, plain)
        back = load_file(plain)
        assert all(np.array_equal(back[k], arrays[k]) for k in arrays)

        # A dtype flock does not support is refused, naming the tensor.
        code, out = run_dump(plain)
        if code == 0 or "unsupported" not in out or "U16" not in out:
            print(f"FAIL: U16 tensors should be refused as unsupported, got: {out.strip()}")
            fails += 1
        ints = os.path.join(d, "ints.safetensors")
        save_file({"position_ids": np.arange(6, dtype=np.int64)}, ints)
        code, out = run_dump(ints)
        if code == 0 or "position_ids" not in out or "I64" not in out:
            print(f"FAIL: I64 tensor should be refused naming it, got: {out.strip()}")
            fails += 1

        # A sharded folder with an index, as transformers writes it.
        model = os.path.join(d, "model")
        os.mkdir(model)
        a1, b1 = make_arrays(rng, "model.a.")
        a2, b2 = make_arrays(rng, "model.b.")
        weight_map = {}
        for i, (arr, bf) in enumerate([(a1, b1), (a2, b2)]):
            shard = f"model-0000{i + 1}-of-00002.safetensors"
            save_file(arr, os.path.join(model, shard), metadata={"format": "pt"})
            retag_bf16(os.path.join(model, shard), bf)
            weight_map.update({k: shard for k in arr})
        total = sum(v.nbytes for v in list(a1.values()) + list(a2.values()))
        with open(os.path.join(model, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
        with open(os.path.join(model, "config.json"), "w") as fh:
            json.dump({"model_type": "llama", "hidden_size": 8}, fh, indent=2)
        want = expected(a1, b1)
        want.update(expected(a2, b2))
        fails += compare("sharded folder", want, *run_dump("--hf", model))
    print("check_safetensors:", "FAILED" if fails else "all checks passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
