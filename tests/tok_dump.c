/* Encodes each line of stdin with a GGUF model's tokenizer and prints the ids,
 * one line of space-separated ids per input line (the trailing newline is not
 * part of the text). For tests/check_tokenizer.py.
 *   tok_dump MODEL.gguf [--add-special] [--roundtrip] [-0]
 * -0: texts are separated by NUL bytes instead of newlines (multi-line texts).
 * --roundtrip prints "OK" or "DIFF" per line instead: decode(encode(line)) == line. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--add-special] [--roundtrip] [-0]\n", argv[0]);
        return 2;
    }
    bool add_special = false, roundtrip = false;
    int delim = '\n';
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--add-special") == 0)
            add_special = true;
        else if (strcmp(argv[i], "--roundtrip") == 0)
            roundtrip = true;
        else if (strcmp(argv[i], "-0") == 0)
            delim = '\0';
    }
    flock_error err = {0};
    flock_gguf *g = NULL;
    flock_tokenizer_data *d = NULL;
    flock_tokenizer *t = NULL;
    if (flock_gguf_open(argv[1], &g, &err) || flock_tokdata_from_gguf(g, &d, &err) ||
        flock_tokenizer_create(d, &t, &err)) {
        fprintf(stderr, "tok_dump: %s: %s\n", argv[1], err.msg);
        flock_tokdata_free(d);
        flock_gguf_free(g);
        return 1;
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
