/* flock run: generate text from a prompt, streaming it, then a stats line. */
#include "run_common.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
    fprintf(f, "usage: flock run BUNDLE (-p TEXT | --ids 1,2,3) [options]\n\n"
               "Runs the prompt with the full feed-forward blocks, selects each layer's experts\n"
               "(GRIFFIN by default), and generates with only those, streaming the text.\n"
               "A stats line follows on stderr.\n\noptions:\n"
               "  -p, --prompt TEXT   the prompt\n"
               "  --ids 1,2,3         the prompt as token ids\n"
               "  --chat              wrap the prompt in the model's chat template (one user turn)\n"
               "  --json              print one JSON object (text, token ids, stats) instead\n");
    run_args_help(f, true);
}

typedef struct out_ctx {
    bool json;
    char *buf; /* collected text for --json */
    size_t len, cap;
} out_ctx;

static bool on_text(void *user, const char *text, size_t len)
{
    out_ctx *o = user;
    if (!o->json) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        return true;
    }
    if (o->len + len > o->cap) {
        size_t cap = (o->len + len) * 2 + 256;
        char *b = realloc(o->buf, cap);
        if (!b)
            return false;
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, text, len);
    o->len += len;
    return true;
}

int flock_cmd_run(int argc, char **argv)
{
    run_args a;
    run_args_init(&a);
    int pr = run_args_parse("run", argc, argv, &a, help);
    if (pr >= 0)
        return pr;
    if (!a.bundle || (!a.prompt && !a.ids))
        return flock_cli_usage_error("run", "needs a BUNDLE and a prompt (-p TEXT or --ids)");
    flock_model *m;
    flock_session *s;
    if (run_open("run", &a, &m, &s) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    int rc = FLOCK_EXIT_FAIL;
    char *chat = NULL;
    int32_t *ids = NULL;
    flock_sampler *smp = NULL;
    size_t n = 0;
    if (a.chat && !a.ids && !(chat = flock_cli_chat_prompt(m, a.prompt)))
        goto out;
    if (!(ids = run_prompt_ids("run", m, &a, chat, &n)))
        goto out;
    flock_error err = {0};
    if (flock_sampler_create(&a.sp, flock_model_n_vocab(m), &smp, &err) != FLOCK_OK) {
        fprintf(stderr, "flock run: %s\n", err.msg);
        goto out;
    }
    out_ctx o = {a.json, NULL, 0, 0};
    flock_gen_stats gs;
    flock_status st = flock_generate(s, smp, ids, n, (size_t)a.n_predict, a.stops, (size_t)a.n_stops, on_text, &o, &gs);
    if (st != FLOCK_OK) {
        fprintf(stderr, "%sflock run: %s (%s)\n", a.json ? "" : "\n", flock_session_error(s), flock_status_str(st));
        free(o.buf);
        goto out;
    }
    double pre = gs.prefill_s > 0 ? gs.prompt_tokens / gs.prefill_s : 0;
    double dec = gs.decode_s > 0 ? gs.generated_tokens / gs.decode_s : 0;
    double mb = (double)flock_session_decode_bytes(s) / 1e6;
    if (a.json) {
        printf("{\"text\":");
        flock_cli_json_strn(stdout, o.buf ? o.buf : "", o.len);
        printf(",\"tokens\":[");
        for (size_t i = 0; i < gs.generated_tokens; i++)
            printf("%s%d", i ? "," : "", (int)gs.tokens[i]);
        printf("],\"prompt_tokens\":%zu,\"generated_tokens\":%zu,\"prefill_tok_s\":", gs.prompt_tokens,
               gs.generated_tokens);
        flock_cli_json_double(stdout, pre);
        printf(",\"decode_tok_s\":");
        flock_cli_json_double(stdout, dec);
        printf(",\"keep\":%g,\"select\":\"%s\",\"threads\":%d,\"kernels\":\"%s\",\"weight_mb_per_token\":", a.so.keep,
               flock_select_mode_name(a.so.select), flock_session_threads(s), flock_session_kernels(s));
        flock_cli_json_double(stdout, mb);
        printf(",\"device\":\"%s\",\"device_note\":", flock_device_name(flock_session_device(s)));
        flock_cli_json_str(stdout, flock_session_device_note(s));
        printf(",\"stop\":\"%s\"}\n", gs.stopped_eos ? "eos" : gs.stopped_string ? "string" : "length");
    } else {
        printf("\n");
        fprintf(stderr,
                "[prompt %zu tokens, prefill %.1f tok/s | generated %zu tokens, decode %.2f tok/s | keep %g (%s) | "
                "%.1f MB weights/token | %d threads, %s | %s]\n",
                gs.prompt_tokens, pre, gs.generated_tokens, dec, a.so.keep, flock_select_mode_name(a.so.select), mb,
                flock_session_threads(s), flock_session_kernels(s), flock_session_device_note(s));
    }
    free(o.buf);
    rc = FLOCK_EXIT_OK;
out:
    flock_sampler_free(smp);
    free(ids);
    free(chat);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
