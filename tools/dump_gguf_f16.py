#!/usr/bin/env python3
"""Dumps every tensor of a GGUF file, dequantized and converted to f16, for
tools/bundle_bench (docs/bundle-format.md, "Figures").

usage: dump_gguf_f16.py MODEL.gguf OUT_PREFIX
writes OUT_PREFIX.bin (tensors back to back, little-endian f16, row-major)
and OUT_PREFIX.idx (one line per tensor: name f16 offset nbytes dim0 dim1 ...).
Needs the Python packages gguf and numpy.
"""
import sys

try:
    import numpy as np
    import gguf
    from gguf import quants
except ImportError as e:  # pragma: no cover
    print(f"SKIPPED: {e}")
    sys.exit(77)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    reader = gguf.GGUFReader(sys.argv[1])
    off = 0
    with open(sys.argv[2] + ".bin", "wb") as fb, open(sys.argv[2] + ".idx", "w") as fi:
        for t in reader.tensors:
            shape = [int(d) for d in reversed(t.shape.tolist())]  # GGUF ne[0] is the contiguous dim
            f32 = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            data = f32.reshape(shape).astype("<f2").tobytes()
            fb.write(data)
            fi.write(f"{t.name} f16 {off} {len(data)} {' '.join(map(str, shape))}\n")
            off += len(data)
    print(f"{len(reader.tensors)} tensors, {off} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
