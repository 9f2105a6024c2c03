/* Encodes each line of stdin with a GGUF model's tokenizer and prints the ids,
 * one line of space-separated ids per input line (the trailing newline is not
 * part of the text). For tests/check_tokenizer.py.
 *   tok_dump MODEL.gguf [--add-special] [--roundtrip] [-0]
 * -0: texts are separated by NUL bytes instead of newlines (multi-line texts).
 * --hf-json: MODEL is a Hugging Face tokenizer.json instead of a GGUF.
 * --chat ARCH: format conversations with the model's chat template instead:
 *   stdin holds conversations, each a list of role 0x1F content 0x1F ...
 *   ended by 0x1E; prints each formatted with and without the generation
 *   prompt, both followed by a NUL.
 * --pre NAME: replace a BPE model's pre-tokenizer by the one llama.cpp names
 *   NAME ("llama3", "qwen2", ...), to test those patterns on a vocabulary at hand.
 * --roundtrip prints "OK" or "DIFF" per line instead: decode(encode(line)) == line. */
#include "tokdata_internal.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dump_chat(const flock_tokenizer_data *d, const char *arch)
{
    flock_chat_template ct;
    flock_error err = {0};
    if (flock_chat_init(d->chat_template, arch, &ct, &err)) {
        fprintf(stderr, "tok_dump: %s\n", err.msg);
        return 1;
    }
    char *rec = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getdelim(&rec, &cap, 0x1E, stdin)) >= 0) {
        if (n > 0 && rec[n - 1] == 0x1E)
            rec[--n] = '\0';
        flock_chat_msg msgs[64];
        size_t n_msgs = 0;
        char *p = rec;
        while (*p && n_msgs < 64) { /* role 0x1F content 0x1F ... */
            char *role = p, *sep = strchr(p, 0x1F);
            if (!sep)
                break;
            *sep = '\0';
            char *content = sep + 1, *end = strchr(content, 0x1F);
            if (end)
                *end = '\0';
            msgs[n_msgs++] = (flock_chat_msg){role, content};
            p = end ? end + 1 : content + strlen(content);
        }
        for (int gen = 1; gen >= 0 && rc == 0; gen--) {
            char *text = NULL;
            if (flock_chat_apply(&ct, msgs, n_msgs, gen, &text, &err)) {
                fprintf(stderr, "tok_dump: %s\n", err.msg);
                rc = 1;
                break;
            }
            fwrite(text, 1, strlen(text) + 1, stdout);
            free(text);
        }
    }
    free(rec);
    flock_chat_template_free(&ct);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--add-special] [--roundtrip] [-0] [--hf-json] [--pre NAME] [--chat ARCH]\n", argv[0]);
        return 2;
    }
    bool add_special = false, roundtrip = false, hf_json = false;
    const char *pre = NULL, *chat_arch = NULL;
    int delim = '\n';
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--add-special") == 0)
            add_special = true;
        else if (strcmp(argv[i], "--roundtrip") == 0)
            roundtrip = true;
        else if (strcmp(argv[i], "--chat") == 0 && i + 1 < argc)
            chat_arch = argv[++i];
        else if (strcmp(argv[i], "--pre") == 0 && i + 1 < argc)
            pre = argv[++i];
        else if (strcmp(argv[i], "--hf-json") == 0)
            hf_json = true;
        else if (strcmp(argv[i], "-0") == 0)
            delim = '\0';
    }
    flock_error err = {0};
    flock_gguf *g = NULL;
    flock_tokenizer_data *d = NULL;
    flock_tokenizer *t = NULL;
    flock_status st;
    if (hf_json) {
        flock_file_map m = {0};
        st = flock_map_file(argv[1], &m, &err);
        if (!st)
            st = flock_tokdata_from_hf_json((const char *)m.data, m.size, NULL, 0, &d, &err);
        flock_unmap_file(&m);
    } else {
        st = flock_gguf_open(argv[1], &g, &err);
        if (!st)
            st = flock_tokdata_from_gguf(g, &d, &err);
    }
    if (!st && pre) {
        const char *pat = flock_tokdata_pre_pattern(pre, strlen(pre));
        if (!pat) {
            fprintf(stderr, "tok_dump: unknown pre-tokenizer '%s'\n", pre);
            flock_tokdata_free(d);
            flock_gguf_free(g);
            return 2;
        }
        free(d->pre_pattern);
        free(d->model_name);
        d->pre_pattern = strdup(pat);
        d->model_name = strdup(pre);
    }
    if (st || flock_tokenizer_create(d, &t, &err)) {
        fprintf(stderr, "tok_dump: %s: %s\n", argv[1], err.msg);
        flock_tokdata_free(d);
        flock_gguf_free(g);
        return 1;
    }
    if (chat_arch) {
        int rc = dump_chat(d, chat_arch);
        flock_tokenizer_free(t);
        flock_tokdata_free(d);
        flock_gguf_free(g);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getdelim(&line, &cap, delim, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == delim)
            n--;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (flock_tokenizer_encode(t, line, (size_t)n, add_special, true, &ids, &n_ids, &err)) {
            fprintf(stderr, "tok_dump: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (roundtrip) {
            char *back = NULL;
            if (flock_tokenizer_decode_all(t, ids, n_ids, true, &back, &err)) {
                fprintf(stderr, "tok_dump: %s\n", err.msg);
                free(ids);
                rc = 1;
                break;
            }
            puts(strlen(back) == (size_t)n && memcmp(back, line, (size_t)n) == 0 ? "OK" : "DIFF");
            free(back);
        } else {
            for (size_t i = 0; i < n_ids; i++)
                printf(i ? " %d" : "%d", (int)ids[i]);
            putchar('\n');
        }
        free(ids);
    }
    free(line);
    flock_tokenizer_free(t);
    flock_tokdata_free(d);
    flock_gguf_free(g);
    return rc;
}
