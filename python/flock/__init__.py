"""flock: run compiled .flock bundles with GRIFFIN's prompt-time expert selection.

    import flock
    m = flock.Model("model.flock")
    s = m.session(keep=0.5)
    text = s.generate("The capital of France is", max_tokens=32, temperature=0)
    for piece in s.stream("Once upon a time", max_tokens=64):
        print(piece, end="")

A Model is immutable once open and may be shared by sessions on many
threads; a Session (KV cache, selected experts) is used by one thread at a
time. Every call into libflock releases the GIL. Failures raise flock.Error
with the library's message.
"""
import ctypes
from ctypes import byref, c_char_p, c_int32, c_size_t, c_void_p

from . import _lib
from ._lib import Error

__all__ = ["Error", "Model", "Session", "version", "library_path"]
__version__ = "0.2.0"

_L = _lib.lib


def version():
    """The version of the libflock loaded ("0.2.0")."""
    return _L.flock_version().decode()


def library_path():
    """The path of the libflock loaded."""
    return _lib.path


def _raise(st, err=None, msg=None):
    if msg is None:
        msg = err.msg.decode("utf-8", errors="replace") if err is not None else ""
    raise Error(st, msg or _L.flock_status_str(st).decode())


def _ids_array(ids):
    ids = [int(i) for i in ids]
    return (c_int32 * max(len(ids), 1))(*ids), len(ids)


class Model:
    """A compiled bundle, opened: its program, weights and tokenizer."""

    def __init__(self, path, load_threads=0):
        err = _lib.flock_error()
        h = c_void_p()
        opts = _lib.flock_model_opts(load_threads=int(load_threads))
        st = _L.flock_model_open(str(path).encode(), byref(opts), byref(h), byref(err))
        if st != 0:
            _raise(st, err)
        self._h = h
        self.path = str(path)

    def close(self):
        """Frees the model; its sessions must be closed first."""
        if getattr(self, "_h", None):
            _L.flock_model_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h:
            raise Error("invalid_arg", "the model is closed")
        return self._h

    @property
    def n_vocab(self):
        return _L.flock_model_n_vocab(self._handle())

    @property
    def n_layer(self):
        return _L.flock_model_n_layer(self._handle())

    @property
    def n_ctx(self):
        """The trained context length."""
        return _L.flock_model_n_ctx(self._handle())

    @property
    def arch(self):
        return _L.flock_model_arch(self._handle()).decode()

    @property
    def storage(self):
        """How the weights are stored: "f16", "q4_1", "source", ..."""
        return _L.flock_model_storage(self._handle()).decode()

    @property
    def weight_bytes(self):
        return _L.flock_model_weight_bytes(self._handle())

    @property
    def keep_ratios(self):
        """The keep ratios the bundle was compiled for (besides 1.0)."""
        n = c_size_t()
        p = _L.flock_model_keep_ratios(self._handle(), byref(n))
        return [p[i] for i in range(n.value)]

    @property
    def chat_template(self):
        t = _L.flock_model_chat_template(self._handle())
        return t.decode() if t else None

    def tokenize(self, text, add_special=True):
        """Token ids of UTF-8 text (BOS as the model asks; chat markers become their control tokens)."""
        b = text.encode() if isinstance(text, str) else bytes(text)
        err = _lib.flock_error()
        n = c_size_t()
        st = _L.flock_tokenize(self._handle(), b, len(b), add_special, None, 0, byref(n), byref(err))
        if st not in (0, _lib.FLOCK_E_RANGE):
            _raise(st, err)
        buf = (c_int32 * max(n.value, 1))()
        st = _L.flock_tokenize(self._handle(), b, len(b), add_special, buf, n.value, byref(n), byref(err))
        if st != 0:
            _raise(st, err)
        return list(buf[:n.value])

    def detokenize(self, ids):
        """The text of token ids (control tokens omitted)."""
        arr, n = _ids_array(ids)
        err = _lib.flock_error()
        out = c_void_p()
        st = _L.flock_detokenize(self._handle(), arr, n, byref(out), byref(err))
        if st != 0:
            _raise(st, err)
        return _lib.take_string(out.value)

    def chat(self, messages, add_generation_prompt=True):
        """A conversation [{"role": ..., "content": ...}] formatted with the model's chat template."""
        msgs = (_lib.flock_chat_message * max(len(messages), 1))()
        keep = []
        for i, m in enumerate(messages):
            role, content = m["role"].encode(), m["content"].encode()
            keep += [role, content]
            msgs[i].role, msgs[i].content = role, content
        err = _lib.flock_error()
        out = c_void_p()
        st = _L.flock_chat_format(self._handle(), msgs, len(messages), add_generation_prompt, byref(out),
                                  byref(err))
        if st != 0:
            _raise(st, err)
        return _lib.take_string(out.value)

    def session(self, keep=1.0, select="griffin", threads=None, ctx=None, device="auto", seed=0, all_logits=False,
                refresh=0,
                kernels="auto", pack_rows=True, kv_type="f16"):
        """A session: KV cache and selected experts (all buffers allocated now).

        keep: fraction of FF neurons kept during generation (1.0, or a ratio the bundle was compiled for);
        select: "griffin" (the paper, per prompt), "magnitude", "random", "griffin-adaptive" or "glass";
        refresh: reselect every R decoded tokens after a full-FF step (0 = never); threads: None = all cores;
        ctx: context length in tokens, None = min(trained, 4096); device: "auto", "cpu" or "cuda";
        all_logits: keep every position's logits (Session.logits needs it);
        pack_rows: copy the kept FF rows into one block per layer after each selection (CPU, keep < 1:
        a faster decode for keep x the FF weights of memory; stats()["packed_bytes"] says how much);
        kv_type: the KV cache's elements, "f16" (half the bytes per position) or "f32" (CPU).
        """
        return Session(self, keep=keep, select=select, threads=threads, ctx=ctx, device=device, seed=seed, refresh=refresh,
                       all_logits=all_logits, kernels=kernels, pack_rows=pack_rows, kv_type=kv_type)


def _choice(table, value, what):
    if value not in table:
        raise Error("invalid_arg", f"{what} '{value}': expected one of {', '.join(table)}")
    return table[value]


class Session:
    """One sequence on a Model: generate, stream, logits, experts. One thread at a time."""

    def __init__(self, model, keep=1.0, select="griffin", threads=None, ctx=None, device="auto", seed=0,
                 all_logits=False, kernels="auto", refresh=0, pack_rows=True, kv_type="f16"):
        self.model = model
        o = _L.flock_session_default_opts()
        o.keep = float(keep)
        o.n_ctx = int(ctx or 0)
        o.threads = int(threads or 0)
        o.seed = int(seed)
        o.select = _choice(_lib.SELECT, select, "select")
        o.all_logits = bool(all_logits)
        o.device = _choice(_lib.DEVICES, device, "device")
        o.kernels = _choice(_lib.KERNELS, kernels, "kernels")
        o.refresh = int(refresh)
        o.pack_rows = bool(pack_rows)
        o.kv_type = _choice(_lib.KV_TYPES, kv_type, "kv_type")
        err = _lib.flock_error()
        h = c_void_p()
        st = _L.flock_session_create(model._handle(), byref(o), byref(h), byref(err))
        if st != 0:
            _raise(st, err)
        self._h = h
        self._all_logits = bool(all_logits)
        self._stats = None

    def close(self):
        if getattr(self, "_h", None):
            _L.flock_session_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h:
            raise Error("invalid_arg", "the session is closed")
        return self._h

    def _check(self, st):
        if st != 0:
            _raise(st, msg=_L.flock_session_error(self._h).decode("utf-8", errors="replace"))

    # ---- tokens ----------------------------------------------------------
    def tokenize(self, text, add_special=True):
        return self.model.tokenize(text, add_special)

    def detokenize(self, ids):
        return self.model.detokenize(ids)

    # ---- the model, step by step -------------------------------------------
    def reset(self):
        """Forgets the context and the selection."""
        _L.flock_session_reset(self._handle())

    def prefill(self, ids):
        """Runs a prompt with the full FF and selects each layer's experts (fresh or reset session)."""
        arr, n = _ids_array(ids)
        self._check(_L.flock_session_prefill(self._handle(), arr, n))

    def decode(self, ids):
        """Appends tokens that run with the selected experts only."""
        arr, n = _ids_array(ids)
        self._check(_L.flock_session_decode(self._handle(), arr, n))

    @property
    def n_past(self):
        return _L.flock_session_n_past(self._handle())

    @property
    def n_ctx(self):
        return _L.flock_session_n_ctx(self._handle())

    def logits(self, ids=None):
        """Resets, prefills `ids` (full FF) and returns the logits of every position, a numpy array
        [len(ids), n_vocab] (float32), as `flock logits --ids` writes them. Without ids: the last
        token's logits [n_vocab]. Needs a session with all_logits=True for ids."""
        import numpy as np
        h = self._handle()
        nv = self.model.n_vocab
        if ids is None:
            n = c_size_t()
            p = _L.flock_session_logits(h, byref(n))
            rows = n.value if self._all_logits else 1
            return np.ctypeslib.as_array(p, shape=(rows * nv,))[(rows - 1) * nv:].copy()
        if not self._all_logits:
            raise Error("invalid_arg", "logits(ids) needs a session made with all_logits=True")
        self.reset()
        self.prefill(ids)
        n = c_size_t()
        p = _L.flock_session_logits(h, byref(n))
        return np.ctypeslib.as_array(p, shape=(n.value, nv)).copy()

    def experts(self):
        """The selected experts: {layer: numpy int32 array of sorted neuron indices}."""
        import numpy as np
        h = self._handle()
        out = {}
        for i in range(_L.flock_session_n_ffn(h)):
            layer, idx, k = c_int32(), ctypes.POINTER(c_int32)(), c_size_t()
            self._check(_L.flock_session_experts(h, i, byref(layer), byref(idx), byref(k)))
            out[layer.value] = np.ctypeslib.as_array(idx, shape=(k.value,)).copy() if k.value else \
                np.zeros(0, np.int32)
        return out

    # ---- generation ----------------------------------------------------------
    def stream(self, prompt, max_tokens=128, temperature=None, top_p=None, top_k=None, min_p=None,
               repeat_penalty=None, seed=None, stop=None, chat=False, add_special=True):
        """Generates from `prompt` (text, or a list of token ids) and yields the text piece by piece.

        The session is reset first. Sampling defaults are the library's (temperature 0.8, top_k 40,
        top_p 0.95, min_p 0.05); temperature=0 is greedy. stop: a string or a list of strings that end
        the text (not emitted). chat=True formats `prompt` (a string, or a list of messages) with the
        model's chat template first. Ends at EOS / end of turn, a stop string, max_tokens or a full
        context. Session.stats then holds the counts and times.
        """
        h = self._handle()
        if chat:
            msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            prompt = self.model.chat(msgs)  # tokenized as `flock run --chat` does
        ids = self.model.tokenize(prompt, add_special) if isinstance(prompt, (str, bytes)) else list(prompt)
        so = _L.flock_sampler_default_opts()
        for name, v in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("min_p", min_p),
                        ("repeat_penalty", repeat_penalty), ("seed", seed)):
            if v is not None:
                setattr(so, name, v)
        err = _lib.flock_error()
        smp = c_void_p()
        st = _L.flock_sampler_create(byref(so), self.model.n_vocab, byref(smp), byref(err))
        if st != 0:
            _raise(st, err)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        stop_b = [s.encode() for s in stops]
        stop_arr = (c_char_p * max(len(stop_b), 1))(*stop_b)
        arr, n = _ids_array(ids)
        g = c_void_p()
        self._stats = None
        try:
            _L.flock_session_reset(h)
            self._check(_L.flock_gen_start(h, smp, arr, n, int(max_tokens), stop_arr, len(stop_b), byref(g)))
            tok, text, tlen = c_int32(), c_char_p(), c_size_t()
            pending = b""
            while True:
                self._check(_L.flock_gen_next(g, byref(tok), byref(text), byref(tlen)))
                if tlen.value:
                    # the library emits whole characters; a piece is held back only if it were not
                    pending += ctypes.string_at(text, tlen.value)
                    try:
                        piece, pending = pending.decode("utf-8"), b""
                    except UnicodeDecodeError:
                        piece = None
                    if piece:
                        yield piece
                if tok.value < 0:
                    if pending:
                        yield pending.decode("utf-8", errors="replace")
                    break
                t = c_int32(tok.value)
                self._check(_L.flock_session_decode(h, byref(t), 1))
            self._stats = self._read_stats(g)
        finally:
            if g:
                if self._stats is None:
                    self._stats = self._read_stats(g)
                _L.flock_gen_free(g)
            _L.flock_sampler_free(smp)

    def generate(self, prompt, max_tokens=128, temperature=None, top_p=None, top_k=None, min_p=None,
                 repeat_penalty=None, seed=None, stop=None, chat=False, add_special=True):
        """The whole text of stream(...) (same arguments)."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                   top_k=top_k, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop,
                                   chat=chat, add_special=add_special))

    def _read_stats(self, g):
        s = _L.flock_gen_get_stats(g).contents
        h = self._h
        return {
            "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens,
            "tokens": [s.tokens[i] for i in range(s.generated_tokens)] if s.tokens else [],
            "prefill_s": s.prefill_s,
            "decode_s": s.decode_s,
            "decode_tok_s": (s.generated_tokens / s.decode_s) if s.decode_s > 0 else None,
            "stopped_eos": bool(s.stopped_eos),
            "stopped_string": bool(s.stopped_string),
            "decode_bytes": _L.flock_session_decode_bytes(h),
            "packed_bytes": _L.flock_session_packed_bytes(h),
            "device": ["auto", "cpu", "cuda"][_L.flock_session_device(h)],
            "kernels": _L.flock_session_kernels(h).decode(),
            "threads": _L.flock_session_threads(h),
            "kv_type": ["f16", "f32"][_L.flock_session_kv_type(h)],
        }

    @property
    def stats(self):
        """Counts and times of the last generation (None before one), with the session's device, kernels,
        threads, bytes of weights read per token and bytes of packed kept FF rows held."""
        return self._stats
