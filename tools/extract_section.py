#!/usr/bin/env python3
"""Writes the kernels sections of a .flock bundle to files, one per section.

    tools/extract_section.py BUNDLE OUTDIR [--prefix cuda:]

For machines without the full flock build (tools/gpu-check.sh on a GPU
machine): Python's standard library only, plus, for zstd-compressed
sections, the `zstandard` module or the `zstd` command (a bundle compiled
with `flockc --level 0` stores its sections uncompressed). Every offset is
checked against the file size (docs/bundle-format.md); checksums are not
verified here (the kernel blob reader checks the blob's own structure).
Prints one line per file written: "NAME PATH". Exit 1 on a bad bundle.
"""
import os
import struct
import subprocess
import sys

MAGIC = b"\x89FLK\r\n\x1a\n"
KIND_KERNELS = 6


def fail(msg):
    sys.stderr.write("extract_section: %s\n" % msg)
    sys.exit(1)


def span(data, off, n, what):
    if off < 0 or n < 0 or off > len(data) or n > len(data) - off:
        fail("%s [%d, +%d) is outside the %d-byte file" % (what, off, n, len(data)))
    return data[off:off + n]


def zstd_decompress(blob, raw_size, name):
    try:
        import zstandard  # optional
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=raw_size)
    except ImportError:
        pass
    try:
        out = subprocess.run(["zstd", "-d", "-c"], input=blob, stdout=subprocess.PIPE, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        fail("section %s is zstd-compressed and neither the zstandard module nor the zstd command "
             "could decompress it (%s); compile with flockc --level 0" % (name, e))
    return out


def main(argv):
    args = [a for a in argv[1:]]
    prefix = "cuda:"
    if "--prefix" in args:
        i = args.index("--prefix")
        if i + 1 >= len(args):
            fail("--prefix needs a value")
        prefix = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    path, outdir = args
    with open(path, "rb") as f:
        data = f.read()
    if span(data, 0, 8, "magic") != MAGIC:
        fail("%s is not a .flock bundle (bad magic)" % path)
    major, _minor, header_size, _flags, count, entry_size = struct.unpack_from(
        "<HHIIII", span(data, 8, 20, "header"))
    if major != 1:
        fail("bundle format %d.x (this script reads 1.x)" % major)
    table_off, table_size, file_size = struct.unpack_from("<QQQ", span(data, 32, 24, "header"))
    if header_size < 64 or entry_size < 64 or file_size != len(data):
        fail("bad header (header_size %d, entry_size %d, file_size %d of %d bytes)"
             % (header_size, entry_size, file_size, len(data)))
    table = span(data, table_off, table_size, "section table")
    if count * entry_size > len(table):
        fail("%d sections of %d bytes overrun the table" % (count, entry_size))
    names = table[count * entry_size:]
    os.makedirs(outdir, exist_ok=True)
    for i in range(count):
        kind, comp, off, stored, raw = struct.unpack_from("<IIQQQ", table, i * entry_size)
        name_off, name_len = struct.unpack_from("<II", table, i * entry_size + 48)
        if name_len > 255 or name_off > len(names) or name_len > len(names) - name_off:
            fail("section %d: name outside the name blob" % i)
        name = names[name_off:name_off + name_len].decode("utf-8", "replace")
        if kind != KIND_KERNELS or not name.startswith(prefix):
            continue
        blob = span(data, off, stored, "section " + name)
        if comp == 1:
            blob = zstd_decompress(blob, raw, name)
        elif comp != 0:
            fail("section %s: unknown compression %d" % (name, comp))
        if len(blob) != raw:
            fail("section %s: %d bytes, the table says %d" % (name, len(blob), raw))
        out = os.path.join(outdir, name.replace(":", "_") + ".blob")
        with open(out, "wb") as f:
            f.write(blob)
        print(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
