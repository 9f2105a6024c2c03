#!/usr/bin/env python3
"""The comparisons of tools/gpu-check.sh (Python's standard library only).

    gpu_check_compare.py tokens  A.json B.json    `flock run --json` outputs: the "tokens" lists
    gpu_check_compare.py experts A.json B.json    `flock experts` outputs: per layer
    gpu_check_compare.py field   FILE.json KEY    print one top-level field
    gpu_check_compare.py bench   FILE.json        `flock bench --json`: "KEEP DECODE_TOK_S" lines
    gpu_check_compare.py inspect FILE.json SM,..  `flock inspect --json`: a cuda:sm_XY CUBIN
                                                  section per SM and the cuda:compute_80 PTX one,
                                                  each with the kernels of every keep ratio
    gpu_check_compare.py blob    FILE [PTX_OUT]   a kernels section (tools/extract_section.py):
                                                  header, image kind and arch, CUBIN ELF header;
                                                  writes a PTX image to PTX_OUT
    gpu_check_compare.py ptxas   LOG              `ptxas -v` output: no spills, no stack frame

Prints one line saying what it found. Exit 0: equal / fine, 1: different /
wrong, 2: unreadable input or bad usage.
"""
import json
import struct
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print("unreadable %s: %s" % (path, e))
        sys.exit(2)


def tokens(a_path, b_path):
    a, b = load(a_path).get("tokens"), load(b_path).get("tokens")
    if not isinstance(a, list) or not isinstance(b, list):
        print("no \"tokens\" list in %s" % (a_path if not isinstance(a, list) else b_path))
        return 2
    if a == b:
        print("equal %d/%d" % (len(a), len(a)))
        return 0
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), n)
    same = sum(1 for i in range(n) if a[i] == b[i])
    print("DIFFERENT from token %d (%d/%d same; %d vs %d tokens)" % (first, same, max(len(a), len(b)),
                                                                    len(a), len(b)))
    return 1


def layers(path):
    d = load(path)
    out = {}
    for entry in d.get("layers", []):
        out[entry["layer"]] = entry["experts"]
    if not out:
        print("no \"layers\" in %s" % path)
        sys.exit(2)
    return out


def experts(a_path, b_path):
    a, b = layers(a_path), layers(b_path)
    if sorted(a) != sorted(b):
        print("DIFFERENT layers: %s vs %s" % (sorted(a), sorted(b)))
        return 1
    frac = []
    for layer in sorted(a):
        ea, eb = set(a[layer]), set(b[layer])
        k = max(len(ea), len(eb), 1)
        frac.append((layer, len(ea & eb) / k, len(ea), len(eb)))
    if all(f == 1.0 and na == nb for _, f, na, nb in frac):
        print("equal %d/%d layers" % (len(frac), len(frac)))
        return 0
    worst = min(frac, key=lambda t: t[1])
    per = " ".join("%.3f" % f for _, f, _, _ in frac)
    print("DIFFERENT: min %.1f%% (layer %d); per layer %s" % (100 * worst[1], worst[0], per))
    return 1


def field(path, key):
    d = load(path)
    if key not in d:
        print("-")
        return 2
    v = d[key]
    print("%.1f" % v if isinstance(v, float) else v)
    return 0


def bench(path):
    d = load(path)
    for r in d.get("results", []):
        print("%g %.1f" % (r["keep"], r["decode_tok_s"]))
    return 0


def inspect(path, sms):
    d = load(path)
    keeps = sorted(set([1.0] + [float(k) for k in d.get("manifest", {}).get("keep_ratios", [])]))
    sections = {c["section"]: c for c in d.get("cuda_kernels", [])}
    want = [("cuda:" + sm, "cubin", int(sm[3:])) for sm in sms.split(",") if sm] + [("cuda:compute_80", "ptx", 80)]
    bad = []
    for name, kind, arch in want:
        c = sections.get(name)
        if c is None:
            bad.append("no section %s" % name)
            continue
        if c["image_kind"] != kind or c["arch"] != arch:
            bad.append("%s is %s for %s" % (name, c["image_kind"], c["arch"]))
        ks = c["kernels"]
        for keep in keeps:
            for kind_ in ("ffn_gather", "ffn_down", "griffin_rank"):
                if not any(k["kind"] == kind_ and abs(k["keep"] - keep) < 1e-6 for k in ks):
                    bad.append("%s has no %s kernel for keep %g" % (name, kind_, keep))
    if sorted(sections) != sorted(n for n, _, _ in want):
        bad.append("sections %s, expected %s" % (sorted(sections), sorted(n for n, _, _ in want)))
    if bad:
        print("WRONG: " + "; ".join(bad))
        return 1
    print("%d cuda sections (%s), %s kernels each, keep %s" % (
        len(sections), " ".join(sorted(sections)), "/".join(str(len(sections[n]["kernels"])) for n, _, _ in want),
        ",".join("%g" % k for k in keeps)))
    return 0


def blob(path, ptx_out=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print("unreadable %s: %s" % (path, e))
        return 2
    if len(data) < 128 or data[:4] != b"FLKC":
        print("WRONG: %s is not a kernel blob" % path)
        return 1
    major, minor, header_size, kind, arch, n_kernels = struct.unpack_from("<HHIIII", data, 4)
    image_off, image_size = struct.unpack_from("<QQ", data, 56)
    if major != 1 or image_off > len(data) or image_size > len(data) - image_off or n_kernels == 0:
        print("WRONG: %s: version %d.%d, image [%d, +%d) of %d bytes, %d kernels" % (
            path, major, minor, image_off, image_size, len(data), n_kernels))
        return 1
    image = data[image_off:image_off + image_size]
    if kind == 1:
        # CUBIN: an ELF64 for EM_CUDA (190); the SM is in the low byte of
        # e_flags (newer toolkits: bits 8-15); only report it.
        if image[:4] != b"\x7fELF" or image[4] != 2 or struct.unpack_from("<H", image, 18)[0] != 190:
            print("WRONG: %s: the CUBIN image is not a CUDA ELF" % path)
            return 1
        flags = struct.unpack_from("<I", image, 48)[0]
        print("CUBIN sm_%d, %d kernels, ELF for CUDA (e_flags 0x%x), %d bytes" % (arch, n_kernels, flags, image_size))
        return 0
    if kind == 2:
        text = image.rstrip(b"\0")
        if b".target" not in text[:4096] or b".entry" not in text:
            print("WRONG: %s: the PTX image has no .target / .entry" % path)
            return 1
        target = text[text.index(b".target"):].split(b"\n", 1)[0].decode("ascii", "replace")
        if ptx_out:
            with open(ptx_out, "wb") as f:
                f.write(text)
        print("PTX compute_%d, %d kernels, %s, %d bytes" % (arch, n_kernels, target, image_size))
        return 0
    print("WRONG: %s: image kind %d" % (path, kind))
    return 1


def ptxas(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        print("unreadable %s: %s" % (path, e))
        return 2
    fns, bad, cur = 0, [], None
    for line in lines:
        if "Function properties for " in line:
            cur = line.split("Function properties for ", 1)[1].strip()
            fns += 1
        elif cur and "bytes stack frame" in line:
            nums = [int(w) for w in line.replace(",", " ").split() if w.isdigit()]
            if len(nums) >= 3 and any(nums[:3]):
                bad.append("%s: %s" % (cur, line.strip()))
        elif "error" in line.lower():
            bad.append(line.strip())
    if fns == 0:
        print("WRONG: no functions in the ptxas report")
        return 1
    if bad:
        print("WRONG: %d of %d kernels use local memory: %s" % (len(bad), fns, "; ".join(bad[:3])))
        return 1
    print("%d kernels, no spills, no stack frame" % fns)
    return 0


def main(argv):
    cmds = {"tokens": (tokens, 2), "experts": (experts, 2), "field": (field, 2), "bench": (bench, 1),
            "inspect": (inspect, 2), "blob": (blob, (1, 2)), "ptxas": (ptxas, 1)}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.stderr.write(__doc__)
        return 2
    fn, n = cmds[argv[1]]
    args = argv[2:]
    if len(args) not in (n if isinstance(n, tuple) else (n,)):
        sys.stderr.write(__doc__)
        return 2
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
