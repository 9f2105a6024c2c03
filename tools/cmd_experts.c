/* flock experts: the FF neurons each layer selects for a prompt, as JSON. */
#include "run_common.h"

#include <stdlib.h>

static void help(FILE *f)
{
    fprintf(f, "usage: flock experts BUNDLE (-p TEXT | --ids 1,2,3) --keep K [--select MODE] [--json]\n\n"
               "Runs the prompt with the full feed-forward blocks and prints the neurons each\n"
               "layer keeps: {\"layers\":[{\"layer\":0,\"experts\":[...]},...]} (JSON is the only\n"
               "output form; --json is accepted for symmetry).\n\noptions:\n"
               "  -p, --prompt TEXT   the prompt (tokenized with special tokens)\n"
               "  --ids 1,2,3         the prompt as token ids\n");
    run_args_help(f, false);
}

int flock_cmd_experts(int argc, char **argv)
{
    run_args a;
    run_args_init(&a);
    int pr = run_args_parse("experts", argc, argv, &a, help);
    if (pr >= 0)
        return pr;
    if (!a.bundle || (!a.prompt && !a.ids))
        return flock_cli_usage_error("experts", "needs a BUNDLE and a prompt (-p TEXT or --ids)");
    flock_model *m;
    flock_session *s;
    if (run_open("experts", &a, &m, &s) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    size_t n = 0;
    int rc = FLOCK_EXIT_FAIL;
    int32_t *ids = run_prompt_ids("experts", m, &a, NULL, &n);
    if (ids) {
        flock_status st = flock_session_prefill(s, ids, n);
        if (st != FLOCK_OK) {
            fprintf(stderr, "flock experts: %s (%s)\n", flock_session_error(s), flock_status_str(st));
        } else {
            printf("{\"keep\":%.17g,\"select\":\"%s\",\"prompt_tokens\":%zu,\"layers\":[", a.so.keep,
                   flock_select_mode_name(a.so.select), n);
            for (size_t i = 0; i < flock_session_n_ffn(s); i++) {
                int32_t layer;
                const int32_t *idx;
                size_t k;
                flock_session_experts(s, i, &layer, &idx, &k);
                printf("%s{\"layer\":%d,\"experts\":[", i ? "," : "", layer);
                for (size_t j = 0; j < k; j++)
                    printf("%s%d", j ? "," : "", idx[j]);
                printf("]}");
            }
            printf("]}\n");
            rc = FLOCK_EXIT_OK;
        }
    }
    free(ids);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
