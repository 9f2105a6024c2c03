#!/usr/bin/env python3
"""flock installed, and used from outside its tree.

usage: check_install.py SOURCE_DIR BUILD_DIR [--runtime-only]

1. `cmake --install BUILD --prefix P` lays out bin/flock, bin/flockc,
   libflock.so (soname libflock.so.MAJOR.MINOR), libflock.a, the three
   public headers (and no internal one), flock.pc and the CMake package;
2. the installed headers compile alone, as C17 and as C++17, with -Wall
   -Wextra -Werror;
3. libflock.so exports exactly the functions the installed headers declare
   with FLOCK_API (nm -D), and needs no library beyond libc, libm, libzstd,
   json-c, PCRE2 and xxhash (ldd);
4. tests/install/consumer.c, built four ways against P -- pkg-config shared
   and static, find_package(flock) with flock::flock and flock::flock_static
   -- prints the same greedy text as the installed `flock run --temp 0` on a
   bundle the installed flockc compiled, at keep 1.0 and 0.5; the static
   builds do not load libflock.so; a missing bundle is a clear error;
5. with --runtime-only: a second build with -DFLOCK_COMPILER=OFF
   -DFLOCK_SERVE=OFF configures without LLVM or NVRTC, builds and installs
   flock and libflock only (no flockc), and its flock prints the same text.
Exits 1 on the first failed check, naming it.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flocktest import resolve  # noqa: E402

PROMPT = "Once upon a time, a little girl"
N = 24
ALLOWED_DEPS = ("linux-vdso", "libc.so", "libm.so", "ld-linux", "libzstd.so", "libjson-c.so", "libpcre2-8.so",
                "libxxhash.so")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
        raise SystemExit(1)


def run(cmd, env=None, cwd=None, ok_codes=(0,)):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if r.returncode not in ok_codes:
        check(False, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def flock_text(flock, bundle, keep):
    import json
    r = run([flock, "run", bundle, "-p", PROMPT, "-n", str(N), "--temp", "0", "--keep", str(keep), "--threads",
             "2", "--device", "cpu", "--json"])
    return json.loads(r.stdout)["text"]


def libdir_of(prefix):
    for d in ("lib", "lib64", "lib/x86_64-linux-gnu"):
        if os.path.exists(os.path.join(prefix, d, "pkgconfig", "flock.pc")):
            return os.path.join(prefix, d)
    check(False, f"{prefix}: no lib*/pkgconfig/flock.pc")


def api_functions(incdir):
    """Names declared FLOCK_API in the installed headers."""
    names = set()
    for h in ("flock.h", "status.h"):
        text = open(os.path.join(incdir, "flock", h)).read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        for decl in re.findall(r"\bFLOCK_API\b([^;{]*)", text):
            m = re.search(r"\b(flock_\w+)\s*\(", decl)
            if m:
                names.add(m.group(1))
    return names


def layout(prefix, compiler):
    lib = libdir_of(prefix)
    want = ["bin/flock", "include/flock/flock.h", "include/flock/status.h", "include/flock/version.h"]
    if compiler:
        want.append("bin/flockc")
    for w in want:
        check(os.path.isfile(os.path.join(prefix, w)), f"installed {w}")
    for w in ("libflock.a", "libflock.so", "cmake/flock/flockConfig.cmake", "cmake/flock/flockConfigVersion.cmake"):
        check(os.path.exists(os.path.join(lib, w)), f"installed {os.path.relpath(os.path.join(lib, w), prefix)}")
    headers = sorted(os.listdir(os.path.join(prefix, "include", "flock")))
    check(headers == ["flock.h", "status.h", "version.h"], f"only the public headers are installed ({headers})")
    if not compiler:
        check(not os.path.exists(os.path.join(prefix, "bin", "flockc")), "the runtime-only install has no flockc")
    soname = run(["objdump", "-p", os.path.join(lib, "libflock.so")]).stdout
    m = re.search(r"SONAME\s+(\S+)", soname)
    check(m is not None and re.fullmatch(r"libflock\.so\.\d+\.\d+", m.group(1)) is not None,
          f"libflock.so's soname is libflock.so.MAJOR.MINOR ({m.group(1) if m else None})")
    return lib


def headers_compile(prefix, tmp):
    inc = os.path.join(prefix, "include")
    src_c = os.path.join(tmp, "h.c")
    with open(src_c, "w") as f:
        f.write("#include <flock/flock.h>\nint main(void) { return FLOCK_VERSION_MAJOR < 0; }\n")
    run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", inc, "-c", src_c, "-o",
         os.path.join(tmp, "h.o")])
    check(True, "the installed headers compile alone as C17 (-Wall -Wextra -pedantic -Werror)")
    src_cc = os.path.join(tmp, "h.cc")
    shutil.copy(src_c, src_cc)
    run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", inc, "-c", src_cc, "-o",
         os.path.join(tmp, "hcc.o")])
    check(True, "the installed headers compile as C++17")


def exports(prefix, lib):
    so = os.path.join(lib, "libflock.so")
    nm = run(["nm", "-D", "--defined-only", so]).stdout.split("\n")
    got = {ln.split()[-1] for ln in nm if ln.strip() and ln.split()[-2] in ("T", "W")}
    other = {ln.split()[-1] for ln in nm if ln.strip() and ln.split()[-2] not in ("T", "W")}
    want = api_functions(os.path.join(prefix, "include"))
    check(len(want) > 50, f"the headers declare the API with FLOCK_API ({len(want)} functions)")
    check(got == want, f"libflock.so exports exactly the {len(want)} API functions "
          f"(not declared: {sorted(got - want)[:10]}, missing: {sorted(want - got)[:10]})")
    check(not other, f"libflock.so exports no data symbols ({sorted(other)[:10]})")
    deps = [ln.split()[0] for ln in run(["ldd", so]).stdout.split("\n") if ln.strip()]
    bad = [d for d in deps if not d.startswith(ALLOWED_DEPS) and "ld-linux" not in d]
    check(not bad, f"libflock.so needs only libc, libm, libzstd, json-c, PCRE2, xxhash (extra: {bad}; all: {deps})")
    print(f"     exported functions: {len(got)}; libflock.so {os.path.getsize(os.path.realpath(so))} bytes")


def consumers(src, prefix, lib, tmp, bundle, refs):
    consumer = os.path.join(src, "tests", "install", "consumer.c")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
    pc = lambda *a: run(["pkg-config", *a, "flock"], env=env).stdout.split()  # noqa: E731
    check(run(["pkg-config", "--modversion", "flock"], env=env).stdout.strip() != "", "pkg-config finds flock")
    builds = {}
    exe = os.path.join(tmp, "consumer-pc-shared")
    run(["cc", "-std=c17", "-O2", consumer, "-o", exe, *pc("--cflags"), *pc("--libs"),
         f"-Wl,-rpath,{pc('--variable=libdir')[0]}"])
    builds["pkg-config shared"] = exe
    exe = os.path.join(tmp, "consumer-pc-static")
    libs = [a for a in pc("--static", "--libs") if a != "-lflock"]
    run(["cc", "-std=c17", "-O2", consumer, "-o", exe, *pc("--cflags"), "-Wl,-Bstatic", "-lflock",
         "-Wl,-Bdynamic", *libs])
    builds["pkg-config static"] = exe
    for kind, flag in (("find_package flock::flock", "OFF"), ("find_package flock::flock_static", "ON")):
        b = os.path.join(tmp, "cm-" + flag)
        run(["cmake", "-S", os.path.join(src, "tests", "install"), "-B", b, f"-DCMAKE_PREFIX_PATH={prefix}",
             f"-DFLOCK_STATIC={flag}", "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", b])
        builds[kind] = os.path.join(b, "consumer")
    for kind, exe in builds.items():
        loads = run(["ldd", exe]).stdout
        if "static" in kind:
            check("libflock" not in loads, f"{kind}: the program does not load libflock.so")
        else:
            check(os.path.realpath(lib) in loads or lib in loads,
                  f"{kind}: the program loads the installed libflock.so")
        for keep, ref in refs.items():
            got = run([exe, bundle, PROMPT, str(N), str(keep)]).stdout
            check(got == ref, f"{kind}, keep {keep}: the text equals flock run --temp 0 ({got!r} vs {ref!r})")
        r = run([exe, os.path.join(tmp, "no-such.flock"), PROMPT, "4", "1"], ok_codes=(1,))
        check("no-such.flock" in r.stderr, f"{kind}: a missing bundle is an error naming it ({r.stderr.strip()!r})")


def runtime_only(src, tmp, bundle, refs):
    b = os.path.join(tmp, "build-runtime")
    r = run(["cmake", "-S", src, "-B", b, "-DCMAKE_BUILD_TYPE=Release", "-DFLOCK_COMPILER=OFF",
             "-DFLOCK_SERVE=OFF"])
    check("COMPILER=OFF CUDA=OFF LLVM=OFF" in r.stdout, "the runtime-only configuration has no code generators")
    cache = open(os.path.join(b, "CMakeCache.txt")).read()
    found = re.findall(r"^(CUDA_nvrtc_LIBRARY|FLOCK_LLVM_CONFIG|CUDAToolkit_\w+|LLVM_\w+)[:=]", cache, re.M)
    check(not found, f"the runtime-only configuration looks for neither LLVM nor NVRTC (cache: {found})")
    run(["cmake", "--build", b, "-j2"])
    prefix = os.path.join(tmp, "prefix-runtime")
    run(["cmake", "--install", b, "--prefix", prefix])
    lib = layout(prefix, compiler=False)
    flock = os.path.join(prefix, "bin", "flock")
    deps = run(["ldd", flock]).stdout
    check(not re.search(r"libLLVM|libnvrtc|libcuda|libmicrohttpd", deps),
          "the runtime-only flock links no LLVM, NVRTC, libcuda or libmicrohttpd")
    exports(prefix, lib)
    for keep, ref in refs.items():
        check(flock_text(flock, bundle, keep) == ref, f"runtime-only flock, keep {keep}: the same text")


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__)
        return 2
    src, build = os.path.abspath(args[0]), os.path.abspath(args[1])
    model = resolve("repo:tiny-llama.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "prefix")
        run(["cmake", "--install", build, "--prefix", prefix])
        lib = layout(prefix, compiler=True)
        headers_compile(prefix, tmp)
        exports(prefix, lib)
        bundle = os.path.join(tmp, "tiny.flock")
        run([os.path.join(prefix, "bin", "flockc"), model, "-o", bundle, "--keep", "0.5", "--quiet"])
        flock = os.path.join(prefix, "bin", "flock")
        refs = {keep: flock_text(flock, bundle, keep) for keep in (1.0, 0.5)}
        check(all(len(t) > 10 for t in refs.values()) and refs[1.0] != "",
              f"the installed flock generates text ({refs})")
        consumers(src, prefix, lib, tmp, bundle, refs)
        if "--runtime-only" in args:
            runtime_only(src, tmp, bundle, refs)
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
