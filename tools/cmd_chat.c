/* flock chat: an interactive conversation with the model's chat template.
 * Each turn re-runs the whole conversation as the prompt, so GRIFFIN selects
 * the experts for the conversation so far (the prompt is what selects). */
#include "run_common.h"

#include <stdlib.h>
#include <string.h>

char *flock_cli_chat_prompt(flock_model *m, const char *user_text)
{
    flock_chat_message msg = {"user", user_text};
    char *out = NULL;
    flock_error err = {0};
    if (flock_chat_format(m, &msg, 1, true, &out, &err) != FLOCK_OK) {
        fprintf(stderr, "flock: chat template: %s\n", err.msg);
        return NULL;
    }
    return out;
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
    int pr = run_args_parse("chat", argc, argv, &a, help);
    if (pr >= 0)
        return pr;
    if (!a.bundle)
        return flock_cli_usage_error("chat", "needs a BUNDLE");
    flock_model *m;
    flock_session *s;
    if (run_open("chat", &a, &m, &s) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    flock_sampler *smp = NULL;
    flock_error err = {0};
    int rc = FLOCK_EXIT_FAIL;
    char line[4096];
    /* the conversation: 2 messages per turn, contents malloc'd */
    flock_chat_message *msgs = NULL;
    size_t n_msgs = 0;
    if (flock_sampler_create(&a.sp, flock_model_n_vocab(m), &smp, &err) != FLOCK_OK) {
        fprintf(stderr, "flock chat: %s\n", err.msg);
        goto out;
    }
    for (;;) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            break;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            break;
        flock_chat_message *grown = realloc(msgs, (n_msgs + 2) * sizeof *msgs);
        if (!grown)
            goto out;
        msgs = grown;
        msgs[n_msgs].role = "user";
        if (!(msgs[n_msgs].content = strdup(line)))
            goto out;
        n_msgs++;
        char *text = NULL;
        if (flock_chat_format(m, msgs, n_msgs, true, &text, &err) != FLOCK_OK) {
            fprintf(stderr, "flock chat: %s\n", err.msg);
            goto out;
        }
        size_t n = 0;
        int32_t *ids = run_prompt_ids("chat", m, &a, text, &n);
        free(text);
        if (!ids)
            goto out;
        flock_session_reset(s);
        char *reply = NULL;
        flock_gen_stats gs;
        flock_status st = flock_generate(s, smp, ids, n, (size_t)a.n_predict, a.stops, (size_t)a.n_stops, on_text,
                                         &reply, &gs);
        free(ids);
        printf("\n");
        if (st != FLOCK_OK) {
            fprintf(stderr, "flock chat: %s (%s)\n", flock_session_error(s), flock_status_str(st));
            free(reply);
            goto out;
        }
        msgs[n_msgs].role = "assistant";
        msgs[n_msgs].content = reply ? reply : strdup("");
        if (!msgs[n_msgs].content)
            goto out;
        n_msgs++;
        fprintf(stderr, "[%zu prompt tokens, %.2f tok/s]\n", gs.prompt_tokens,
                gs.decode_s > 0 ? gs.generated_tokens / gs.decode_s : 0.0);
    }
    rc = FLOCK_EXIT_OK;
out:
    for (size_t i = 0; i < n_msgs; i++)
        free((char *)msgs[i].content);
    free(msgs);
    flock_sampler_free(smp);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
