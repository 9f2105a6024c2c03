"""The C API of libflock (flock/flock.h) through ctypes.

The structures below mirror flock.h field for field; the ABI is stable
within a minor version (libflock.so.MAJOR.MINOR), and load() refuses a
library of another minor version. ctypes releases the GIL around every call
into the library, so generation on one thread does not hold up the others.
"""
import ctypes
import ctypes.util
import os
import subprocess
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_size_t,
                    c_uint64, c_void_p)

ABI_MAJOR, ABI_MINOR = 0, 2

STATUS = ["ok", "invalid_arg", "io", "nomem", "truncated", "corrupt", "checksum", "version", "unsupported",
          "not_found", "type", "range", "device", "internal"]
FLOCK_E_RANGE = 11
DEVICES = {"auto": 0, "cpu": 1, "cuda": 2}
SELECT = {"griffin": 0, "magnitude": 1, "random": 2, "griffin-adaptive": 3, "glass": 4}
KERNELS = {"auto": 0, "generated": 1, "portable": 2}
KV_TYPES = {"f16": 0, "f32": 1}


class Error(Exception):
    """A failure reported by libflock: `status` is its name ("io", "range", ...), the message is the C one."""

    def __init__(self, status, message):
        self.status = STATUS[status] if isinstance(status, int) and 0 <= status < len(STATUS) else str(status)
        super().__init__(message)


class flock_error(Structure):
    _fields_ = [("status", c_int), ("msg", c_char * 512)]


class flock_model_opts(Structure):
    _fields_ = [("load_threads", c_int)]


class flock_session_opts(Structure):
    _fields_ = [("keep", c_double), ("n_ctx", c_int32), ("threads", c_int), ("seed", c_uint64), ("select", c_int),
                ("all_logits", c_bool), ("device", c_int), ("kernels", c_int), ("refresh", c_int32),
                ("glass_weight", c_double), ("pack_rows", c_bool), ("kv_type", c_int)]


class flock_sampler_opts(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32), ("seed", c_uint64)]


class flock_chat_message(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class flock_gen_stats(Structure):
    _fields_ = [("prompt_tokens", c_size_t), ("generated_tokens", c_size_t), ("prefill_s", c_double),
                ("decode_s", c_double), ("stopped_eos", c_bool), ("stopped_string", c_bool),
                ("tokens", POINTER(c_int32))]


P = c_void_p
I32P = POINTER(c_int32)
# name: (restype, argtypes)
PROTOTYPES = {
    "flock_version": (c_char_p, []),
    "flock_version_number": (c_int, []),
    "flock_status_str": (c_char_p, [c_int]),
    "flock_model_open": (c_int, [c_char_p, POINTER(flock_model_opts), POINTER(P), POINTER(flock_error)]),
    "flock_model_free": (None, [P]),
    "flock_model_n_vocab": (c_int32, [P]),
    "flock_model_n_layer": (c_int32, [P]),
    "flock_model_n_ctx": (c_int32, [P]),
    "flock_model_arch": (c_char_p, [P]),
    "flock_model_storage": (c_char_p, [P]),
    "flock_model_weight_bytes": (c_uint64, [P]),
    "flock_model_keep_ratios": (POINTER(c_double), [P, POINTER(c_size_t)]),
    "flock_model_bos": (c_int32, [P]),
    "flock_model_eos": (c_int32, [P]),
    "flock_model_chat_template": (c_char_p, [P]),
    "flock_chat_format": (c_int, [P, POINTER(flock_chat_message), c_size_t, c_bool, POINTER(c_void_p),
                                  POINTER(flock_error)]),
    "flock_tokenize": (c_int, [P, c_char_p, c_size_t, c_bool, I32P, c_size_t, POINTER(c_size_t),
                               POINTER(flock_error)]),
    "flock_detokenize": (c_int, [P, I32P, c_size_t, POINTER(c_void_p), POINTER(flock_error)]),
    "flock_session_default_opts": (flock_session_opts, []),
    "flock_session_create": (c_int, [P, POINTER(flock_session_opts), POINTER(P), POINTER(flock_error)]),
    "flock_session_free": (None, [P]),
    "flock_session_error": (c_char_p, [P]),
    "flock_session_prefill": (c_int, [P, I32P, c_size_t]),
    "flock_session_decode": (c_int, [P, I32P, c_size_t]),
    "flock_session_reset": (None, [P]),
    "flock_session_n_past": (c_size_t, [P]),
    "flock_session_n_ctx": (c_size_t, [P]),
    "flock_session_logits": (POINTER(c_float), [P, POINTER(c_size_t)]),
    "flock_session_n_ffn": (c_size_t, [P]),
    "flock_session_experts": (c_int, [P, c_size_t, I32P, POINTER(I32P), POINTER(c_size_t)]),
    "flock_session_decode_bytes": (c_uint64, [P]),
    "flock_session_packed_bytes": (c_uint64, [P]),
    "flock_session_kv_bytes": (c_uint64, [P, c_size_t]),
    "flock_session_device": (c_int, [P]),
    "flock_session_device_note": (c_char_p, [P]),
    "flock_session_kernels": (c_char_p, [P]),
    "flock_session_threads": (c_int, [P]),
    "flock_session_kv_type": (c_int, [P]),
    "flock_sampler_default_opts": (flock_sampler_opts, []),
    "flock_sampler_create": (c_int, [POINTER(flock_sampler_opts), c_int32, POINTER(P), POINTER(flock_error)]),
    "flock_sampler_free": (None, [P]),
    "flock_gen_start": (c_int, [P, P, I32P, c_size_t, c_size_t, POINTER(c_char_p), c_size_t, POINTER(P)]),
    "flock_gen_next": (c_int, [P, I32P, POINTER(c_char_p), POINTER(c_size_t)]),
    "flock_gen_done": (c_bool, [P]),
    "flock_gen_get_stats": (POINTER(flock_gen_stats), [P]),
    "flock_gen_free": (None, [P]),
}


def _candidates():
    env = os.environ.get("FLOCK_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if name.startswith("libflock.so"):
            yield os.path.join(here, name)
    yield f"libflock.so.{ABI_MAJOR}.{ABI_MINOR}"
    found = ctypes.util.find_library("flock")
    if found:
        yield found
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "flock"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        if libdir:
            yield os.path.join(libdir, "libflock.so")
    except (OSError, subprocess.SubprocessError):
        pass


def load():
    """Loads libflock and declares its functions; ImportError naming every place tried."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        for name, (res, args) in PROTOTYPES.items():
            try:
                f = getattr(lib, name)
            except AttributeError:
                raise ImportError(f"{path} has no {name}: not libflock {ABI_MAJOR}.{ABI_MINOR}") from None
            f.restype, f.argtypes = res, args
        v = lib.flock_version_number()
        if (v // 10000, v // 100 % 100) != (ABI_MAJOR, ABI_MINOR):
            raise ImportError(f"{path} is libflock {lib.flock_version().decode()}, these bindings are for "
                              f"{ABI_MAJOR}.{ABI_MINOR}.x")
        return lib, path
    raise ImportError("libflock not found (set FLOCK_LIBRARY to the path of libflock.so, or install flock: "
                      "cmake --install BUILD); tried:\n  " + "\n  ".join(tried))


lib, path = load()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None


def take_string(p):
    """A malloc'd C string returned by libflock, as str; frees it."""
    try:
        return ctypes.string_at(p).decode("utf-8", errors="replace") if p else ""
    finally:
        _libc.free(p)
