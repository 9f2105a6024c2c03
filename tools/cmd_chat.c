/* flock chat: an interactive conversation with the model's chat template.
 * Each turn re-runs the whole conversation as the prompt, so GRIFFIN selects
 * the experts for the conversation so far (the prompt is what selects). */
#include "run_common.h"

#include <stdlib.h>
#include <string.h>

/* Turn markers of the two template families flock's models use, recognized
 * from the template source. */
typedef struct chat_style {
    const char *marker;  /* substring of the template that identifies it */
    const char *user_pre, *user_post, *asst_pre, *asst_post;
    const char *stop;
} chat_style;

static const chat_style styles[] = {
    {"<|im_start|>", "<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>\n", "<|im_end|>"},
    {"<start_of_turn>", "<start_of_turn>user\n", "<end_of_turn>\n", "<start_of_turn>model\n", "<end_of_turn>\n",
     "<end_of_turn>"},
};

static const chat_style *find_style(flock_model *m)
{
    const char *t = flock_model_chat_template(m);
    for (size_t i = 0; t && i < sizeof styles / sizeof styles[0]; i++)
        if (strstr(t, styles[i].marker))
            return &styles[i];
    if (!t && strcmp(flock_model_arch(m), "gemma3") == 0)
        return &styles[1]; /* Gemma 3 GGUFs carry no template key */
    return NULL;
}

/* Appends to a growing string; returns false on allocation failure. */
static bool append(char **buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    char *b = realloc(*buf, *len + n + 1);
    if (!b)
        return false;
    memcpy(b + *len, s, n + 1);
    *buf = b;
    *len += n;
    return true;
}

char *flock_cli_chat_prompt(flock_model *m, const char *user_text)
{
    const chat_style *cs = find_style(m);
    if (!cs) {
        fprintf(stderr, "flock: this model's chat template is not one flock knows (ChatML or Gemma turns)\n");
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    if (!append(&buf, &len, cs->user_pre) || !append(&buf, &len, user_text) || !append(&buf, &len, cs->user_post) ||
        !append(&buf, &len, cs->asst_pre)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void help(FILE *f)
{
    fprintf(f, "usage: flock chat BUNDLE [options]\n\n"
               "An interactive conversation: type a message and press Enter; an empty line or\n"
               "end of input ends the session. Each turn runs the whole conversation as the\n"
               "prompt (so GRIFFIN selects experts for it) and generates the reply.\n\noptions:\n");
    run_args_help(f, true);
}

static bool on_text(void *user, const char *text, size_t len)
{
    char **reply = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    size_t old = *reply ? strlen(*reply) : 0;
    char *b = realloc(*reply, old + len + 1);
    if (!b)
        return false;
    memcpy(b + old, text, len);
    b[old + len] = '\0';
    *reply = b;
    return true;
}

int flock_cmd_chat(int argc, char **argv)
{
    run_args a;
    run_args_init(&a);
    a.n_predict = 512;
    for (int i = 1; i < argc; i++) {
        if (flock_cli_is_help(argv[i])) {
            help(stdout);
            return FLOCK_EXIT_OK;
        }
        int r = run_args_parse_one("chat", argc, argv, &i, &a);
        if (r < 0)
            return FLOCK_EXIT_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || a.bundle)
            return flock_cli_usage_error("chat", "unexpected argument '%s'", argv[i]);
        a.bundle = argv[i];
    }
    if (!a.bundle)
        return flock_cli_usage_error("chat", "needs a BUNDLE");
    flock_model *m;
    flock_session *s;
    if (run_open("chat", &a, &m, &s) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    const chat_style *cs = find_style(m);
    flock_sampler *smp = NULL;
    flock_error err = {0};
    int rc = FLOCK_EXIT_FAIL;
    char *conv = NULL, line[4096];
    size_t conv_len = 0;
    if (!cs) {
        fprintf(stderr, "flock chat: this model's chat template is not one flock knows (ChatML or Gemma turns)\n");
        goto out;
    }
    if (flock_sampler_create(&a.sp, flock_model_n_vocab(m), &smp, &err) != FLOCK_OK) {
        fprintf(stderr, "flock chat: %s\n", err.msg);
        goto out;
    }
    const char *stops[RUN_MAX_STOPS + 1];
    size_t n_stops = 0;
    for (int i = 0; i < a.n_stops; i++)
        stops[n_stops++] = a.stops[i];
    stops[n_stops++] = cs->stop;
    for (;;) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            break;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            break;
        if (!append(&conv, &conv_len, cs->user_pre) || !append(&conv, &conv_len, line) ||
            !append(&conv, &conv_len, cs->user_post) || !append(&conv, &conv_len, cs->asst_pre))
            goto out;
        a.prompt = conv;
        size_t n = 0;
        int32_t *ids = run_prompt_ids("chat", m, &a, conv, &n);
        if (!ids)
            goto out;
        flock_session_reset(s);
        char *reply = NULL;
        flock_gen_stats gs;
        flock_status st = flock_generate(s, smp, ids, n, (size_t)a.n_predict, stops, n_stops, on_text, &reply, &gs);
        free(ids);
        printf("\n");
        if (st != FLOCK_OK) {
            fprintf(stderr, "flock chat: %s (%s)\n", flock_session_error(s), flock_status_str(st));
            free(reply);
            goto out;
        }
        bool ok = append(&conv, &conv_len, reply ? reply : "") && append(&conv, &conv_len, cs->asst_post);
        free(reply);
        if (!ok)
            goto out;
        fprintf(stderr, "[%zu prompt tokens, %.2f tok/s]\n", gs.prompt_tokens,
                gs.decode_s > 0 ? gs.generated_tokens / gs.decode_s : 0.0);
    }
    rc = FLOCK_EXIT_OK;
out:
    free(conv);
    flock_sampler_free(smp);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
