#!/usr/bin/env python3
"""Writes a small seed corpus for fuzz_safetensors into DIR (no dependencies).

usage: make_safetensors_seeds.py DIR
"""
import json
import os
import struct
import sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def image(tensors, metadata=None, pad_to=8):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        nbytes = n * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes((len(data) + i) * 37 % 251 for i in range(nbytes))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % pad_to)
    if pad_to == 1:
        text += b" " * (1 - len(text) % 2)  # odd length: every tensor lands unaligned
    return struct.pack("<Q", len(text)) + text + data


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "three_dtypes": image([("a.weight", "F32", [3, 2]), ("b", "F16", [5]), ("c.bias", "BF16", [2, 2, 2])],
                              {"format": "pt"}),
        "scalar_empty": image([("s", "F32", []), ("e", "F16", [0, 7])]),
        "unaligned": image([("h", "F16", [3]), ("f", "F32", [2]), ("b", "BF16", [1])], pad_to=1),
        "int64": image([("position_ids", "I64", [1, 4])]),
        "empty_header": image([]),
    }
    for name, blob in seeds.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as fh:
            fh.write(blob)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()
