#!/usr/bin/env python3
"""Compares flock's GGUF dequantization with the `gguf` Python package.

usage: check_gguf_dequant.py GGUF_DUMP_EXE MODEL

MODEL is a path, or repo:REL (tests/data), data:REL (under $FLOCK_DATA_DIR),
or models:NAME (under $FLOCK_MODEL_DIR, default ~/.cache/flock/models), or "synthetic": a file
written here with gguf.GGUFWriter holding random blocks of every type flock
dequantizes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).

Runs GGUF_DUMP_EXE (tests/gguf_dump.c) to write every tensor of MODEL as f32,
then dequantizes every tensor with gguf.GGUFReader + gguf.quants.dequantize and
compares. Prints, per quant type: tensors, elements, max abs diff (and the
largest diff relative to the tensor's max |value|). Fails (exit 1) when a
tensor's shape, type or values differ beyond float rounding; fails
also when the model file or the Python packages are missing (the set-up
provides them).
"""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import missing, resolve  # noqa: E402

# Both sides compute in float32 but in a different order (e.g. d*sc*q - dmin*m),
# so allow a few float32 ulps of the tensor's largest magnitude.
REL_TOL = 8 * 2.0**-24
ROW_CHUNK = 1 << 12  # rows dequantized at a time (bounds Python's memory)


def write_synthetic(path, np, gguf):
    """Random blocks of every dequantizable type; f16 scale fields are set to
    finite values so no NaN/inf appears (random bytes elsewhere)."""
    T = gguf.GGMLQuantizationType
    rng = np.random.default_rng(20241128)
    # f16 scale fields (byte offsets) in each block layout.
    scale_offs = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2],
                  T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
    w = gguf.GGUFWriter(path, "synthetic")
    rows, cols = 6, 512
    w.add_tensor("f32", rng.standard_normal((rows, cols)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((rows, cols)).astype(np.float16))
    bf = (rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    w.add_tensor("bf16", bf.view(np.uint8).reshape(rows, cols * 2), raw_dtype=T.BF16)
    for qt, offs in scale_offs.items():
        be, bb = gguf.GGML_QUANT_SIZES[qt]
        blocks = rng.integers(0, 256, size=(rows * cols // be, bb), dtype=np.uint8)
        for o in offs:
            scales = (rng.uniform(-0.05, 0.05, size=blocks.shape[0]) + 0.001).astype(np.float16)
            blocks[:, o:o + 2] = scales.view(np.uint8).reshape(-1, 2)
        w.add_tensor(qt.name.lower(), blocks.reshape(rows, cols // be * bb), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_dump(path):
    """Yields (name, type, n_dims, ne, count, status, offset of the f32 data)."""
    with open(path, "rb") as f:
        if f.read(8) != b"FLKDUMP1":
            raise SystemExit(f"{path}: not a flock dump")
        (nt,) = struct.unpack("<Q", f.read(8))
        for _ in range(nt):
            (nlen,) = struct.unpack("<I", f.read(4))
            name = f.read(nlen).decode()
            ttype, n_dims = struct.unpack("<II", f.read(8))
            ne = struct.unpack("<4Q", f.read(32))
            (count,) = struct.unpack("<Q", f.read(8))
            (status,) = struct.unpack("<B", f.read(1))
            off = f.tell()
            if status == 0:
                f.seek(count * 4, os.SEEK_CUR)
            yield name, ttype, n_dims, ne, count, status, off


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    exe, model = sys.argv[1], sys.argv[2]
    try:
        import numpy as np
        import gguf
        from gguf.quants import dequantize
    except ImportError as e:
        missing(f"Python package {e.name} is not installed")
    tmpdir = tempfile.TemporaryDirectory()
    if model == "synthetic":
        model = os.path.join(tmpdir.name, "synthetic.gguf")
        write_synthetic(model, np, gguf)
    else:
        model = resolve(model)

    reader = gguf.GGUFReader(model)
    ref = {t.name: t for t in reader.tensors}
    stats = {}  # type name -> [tensors, elements, max abs diff, max rel diff]
    failures = []
    with tmpdir as tmp:
        dump = os.path.join(tmp, "dump.bin")
        subprocess.run([exe, model, dump], check=True)
        mm = np.memmap(dump, dtype=np.uint8, mode="r")
        seen = 0
        for name, ttype, n_dims, ne, count, status, off in read_dump(dump):
            seen += 1
            t = ref.get(name)
            if t is None:
                failures.append(f"{name}: not in the gguf package's tensor list")
                continue
            qtype = gguf.GGMLQuantizationType(ttype)
            want_ne = [int(x) for x in t.shape] + [1] * (4 - len(t.shape))
            if int(t.tensor_type) != ttype or list(ne) != want_ne or int(t.n_elements) != count:
                failures.append(f"{name}: type/shape {ttype} {list(ne)} vs {int(t.tensor_type)} {want_ne}")
                continue
            if status != 0:
                failures.append(f"{name}: flock could not dequantize {qtype.name} (status {status})")
                continue
            ours = np.frombuffer(mm, dtype="<f4", count=count, offset=off)
            raw = np.asarray(t.data)
            rows = raw.reshape(-1, raw.shape[-1])
            row_elems = int(ne[0])
            max_abs, max_ref = 0.0, 0.0
            for r0 in range(0, rows.shape[0], ROW_CHUNK):
                chunk = rows[r0:r0 + ROW_CHUNK]
                theirs = dequantize(chunk, qtype).astype(np.float32).reshape(-1)
                mine = ours[r0 * row_elems:r0 * row_elems + theirs.size]
                if mine.size != theirs.size:
                    failures.append(f"{name}: size {mine.size} vs {theirs.size}")
                    break
                both_nan = np.isnan(mine) & np.isnan(theirs)
                d = np.where(both_nan, 0.0, np.abs(mine.astype(np.float64) - theirs))
                if np.isnan(d).any():
                    failures.append(f"{name}: NaN in one implementation only")
                    break
                max_abs = max(max_abs, float(d.max(initial=0.0)))
                max_ref = max(max_ref, float(np.nanmax(np.abs(theirs), initial=0.0)))
            rel = max_abs / max_ref if max_ref > 0 else (0.0 if max_abs == 0 else float("inf"))
            if rel > REL_TOL:
                failures.append(f"{name} ({qtype.name}): max abs diff {max_abs:.3g}, "
                                f"{rel:.3g} of max |value| {max_ref:.3g}")
            s = stats.setdefault(qtype.name, [0, 0, 0.0, 0.0])
            s[0] += 1
            s[1] += count
            s[2] = max(s[2], max_abs)
            s[3] = max(s[3], rel)
        del mm
    if seen != len(ref):
        failures.append(f"flock dumped {seen} tensors, the gguf package lists {len(ref)}")

    print(f"{os.path.basename(model)}: {seen} tensors")
    print(f"  {'type':6} {'tensors':>7} {'elements':>12} {'max abs diff':>13} {'max rel diff':>13}")
    for k in sorted(stats):
        n, e, a, r = stats[k]
        print(f"  {k:6} {n:7d} {e:12d} {a:13.3g} {r:13.3g}")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
