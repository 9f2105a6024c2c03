/* flock logits: raw little-endian f32 logits of every position. */
#include "run_common.h"

#include <stdlib.h>

static void help(FILE *f)
{
    fprintf(f, "usage: flock logits BUNDLE --ids 1,2,3 [--keep K --prompt-len P] --out FILE\n\n"
               "Writes the logits after each token, [n_tokens, n_vocab] little-endian f32, to FILE.\n"
               "Without --prompt-len every token runs with the full feed-forward blocks. With it,\n"
               "the first P tokens are the prompt (full FF, expert selection) and the rest run\n"
               "with the selected experts only (the paper's classification setting: P = n-1).\n\n"
               "options:\n"
               "  --ids 1,2,3         the tokens\n"
               "  -p, --prompt TEXT   the tokens as text instead\n"
               "  --prompt-len P      tokens that form the prompt\n"
               "  -o, --out FILE      output file\n");
    run_args_help(f, false);
}

int flock_cmd_logits(int argc, char **argv)
{
    run_args a;
    run_args_init(&a);
    int pr = run_args_parse("logits", argc, argv, &a, help);
    if (pr >= 0)
        return pr;
    if (!a.bundle || (!a.prompt && !a.ids) || !a.out)
        return flock_cli_usage_error("logits", "needs a BUNDLE, --ids (or -p) and --out FILE");
    a.so.all_logits = true;
    flock_model *m;
    flock_session *s = NULL;
    if (run_open_model("logits", &a, &m) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    size_t n = 0;
    int rc = FLOCK_EXIT_FAIL;
    int32_t *ids = run_prompt_ids("logits", m, &a, NULL, &n);
    if (!ids)
        goto out;
    /* the logits of every position are kept: size the context to the tokens */
    if (a.so.n_ctx == 0)
        a.so.n_ctx = n < (size_t)flock_model_n_ctx(m) ? (int32_t)n : flock_model_n_ctx(m);
    if (run_open_session("logits", &a, m, &s) != FLOCK_EXIT_OK)
        goto out;
    size_t p = a.prompt_len > 0 ? (size_t)a.prompt_len : n;
    if (p > n) {
        fprintf(stderr, "flock logits: --prompt-len %zu is more than the %zu tokens\n", p, n);
        goto out;
    }
    flock_status st = flock_session_prefill(s, ids, p);
    if (st == FLOCK_OK && p < n)
        st = flock_session_decode(s, ids + p, n - p);
    if (st != FLOCK_OK) {
        fprintf(stderr, "flock logits: %s (%s)\n", flock_session_error(s), flock_status_str(st));
        goto out;
    }
    size_t n_pos;
    const float *l = flock_session_logits(s, &n_pos);
    FILE *f = fopen(a.out, "wb");
    /* f32 is little-endian on every host flock builds for (x86-64, aarch64) */
    if (!f || fwrite(l, sizeof(float) * (size_t)flock_model_n_vocab(m), n_pos, f) != n_pos) {
        fprintf(stderr, "flock logits: cannot write %s\n", a.out);
        if (f)
            fclose(f);
        goto out;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "flock logits: cannot write %s\n", a.out);
        goto out;
    }
    rc = FLOCK_EXIT_OK;
out:
    free(ids);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
