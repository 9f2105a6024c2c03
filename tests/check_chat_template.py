#!/usr/bin/env python3
"""flock's chat formatting against the model's own Jinja chat template.

Renders tokenizer.chat_template from the GGUF with jinja2 (a sandboxed
environment with trim_blocks and lstrip_blocks, as Hugging Face's
apply_chat_template does) for several conversations, with and without the
generation prompt, and compares the text with `tok_dump --chat`. Exit 0 when
all match, 1 otherwise (also when jinja2/gguf, the file, or a template in it
is missing: the set-up provides them).

usage: check_chat_template.py TOK_DUMP (repo:REL | data:REL | models:NAME | PATH)
"""
import os
import subprocess
import sys

from flocktest import missing, need, resolve

CONVERSATIONS = [
    [("user", "Hi")],
    [("system", "Be brief."), ("user", "What is 2+2?")],
    [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a story\nabout a cat.")],
    [("system", "You are a pirate."), ("user", "Hello"), ("assistant", "Arr!"), ("user", "Where is the gold?")],
    [("user", "  spaces kept  ")],
    [("user", "naïve café — 日本語 🙂")],
    [],
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tok_dump, path = sys.argv[1], resolve(sys.argv[2])
    gguf = need("gguf")
    ImmutableSandboxedEnvironment = need("jinja2.sandbox").ImmutableSandboxedEnvironment
    r = gguf.GGUFReader(path)

    def string(key):
        f = r.fields.get(key)
        return bytes(f.parts[f.data[0]]).decode("utf-8") if f is not None else None

    template = string("tokenizer.chat_template")
    if not template:
        missing(f"{os.path.basename(path)} has no tokenizer.chat_template to compare with")
    arch = string("general.architecture") or "llama"
    tokens = r.fields["tokenizer.ggml.tokens"]

    def token(key):
        f = r.fields.get(key)
        if f is None:
            return ""
        i = int(f.parts[f.data[0]][0])
        return bytes(tokens.parts[tokens.data[i]]).decode("utf-8") if i < len(tokens.data) else ""

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(template)
    want = []
    for conv in CONVERSATIONS:
        msgs = [{"role": ro, "content": c} for ro, c in conv]
        for gen in (True, False):
            want.append(tmpl.render(messages=msgs, add_generation_prompt=gen,
                                    bos_token=token("tokenizer.ggml.bos_token_id"),
                                    eos_token=token("tokenizer.ggml.eos_token_id")))
    inp = "".join("".join(f"{ro}\x1f{c}\x1f" for ro, c in conv) + "\x1e" for conv in CONVERSATIONS)
    res = subprocess.run([tok_dump, path, "--chat", arch], input=inp.encode(), capture_output=True)
    if res.returncode != 0:
        print(res.stderr.decode(errors="replace"))
        sys.exit(1)
    got = res.stdout.decode().split("\0")[:len(want)]
    match = sum(g == w for g, w in zip(got, want))
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            print(f"MISMATCH conversation {i // 2} (generation prompt {i % 2 == 0}):\n"
                  f"  flock:  {g!r}\n  jinja2: {w!r}")
    print(f"{os.path.basename(path)}: {match}/{len(want)} formatted conversations identical")
    sys.exit(0 if match == len(want) else 1)


if __name__ == "__main__":
    main()
