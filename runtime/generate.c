/* The generation loop: prefill, then sample / decode token by token,
 * streaming text with stop strings held back until they cannot match. */
#include "model_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Length of the longest suffix of text[0..n) that is a proper prefix of a stop string. */
static size_t hold_back(const char *text, size_t n, const char *const *stops, size_t n_stops)
{
    size_t best = 0;
    for (size_t i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t l = sl > n ? n : sl - 1; l > best; l--)
            if (memcmp(text + n - l, stops[i], l) == 0) {
                best = l;
                break;
            }
    }
    return best;
}

/* Index of the first occurrence of any stop string, or -1. */
static long find_stop(const char *text, size_t n, const char *const *stops, size_t n_stops)
{
    long first = -1;
    for (size_t i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0 || sl > n)
            continue;
        for (size_t p = 0; p + sl <= n; p++)
            if (memcmp(text + p, stops[i], sl) == 0) {
                if (first < 0 || (long)p < first)
                    first = (long)p;
                break;
            }
    }
    return first;
}

struct flock_gen {
    flock_session *s;
    flock_sampler *smp;
    const char *const *stops;
    size_t n_stops;
    size_t max_tokens;
    flock_tok_decoder dec;
    /* s->pend holds [emitted][held]: the text the last call returned, then
     * the bytes held back (a stop string may start there); held < 4096. */
    size_t emitted, held;
    bool done;
    double t1; /* when decoding began */
    flock_gen_stats st;
};

/* Fills *g and prefills: flock_gen_start's state on the heap, flock_generate's
 * on its stack (the token loop allocates nothing). */
static flock_status gen_init(flock_gen *g, flock_session *s, flock_sampler *smp, const int32_t *prompt,
                             size_t n_prompt, size_t max_tokens, const char *const *stops, size_t n_stops)
{
    flock_error err;
    if (!smp || (!prompt && n_prompt) || (!stops && n_stops))
        return flock_session_fail(s, flock_error_set(&err, FLOCK_E_INVALID_ARG, "generate: NULL argument"), &err);
    if (flock_sampler_n_vocab(smp) != flock_model_n_vocab(s->m))
        return flock_session_fail(s,
                                  flock_error_set(&err, FLOCK_E_INVALID_ARG,
                                                  "generate: the sampler was made for %d tokens, the model has %d",
                                                  flock_sampler_n_vocab(smp), flock_model_n_vocab(s->m)),
                                  &err);
    for (size_t i = 0; i < n_stops; i++)
        if (strlen(stops[i]) >= 4096)
            return flock_session_fail(
                s, flock_error_set(&err, FLOCK_E_INVALID_ARG, "stop string %zu is longer than 4095 bytes", i), &err);
    *g = (flock_gen){.s = s, .smp = smp, .stops = stops, .n_stops = n_stops, .max_tokens = max_tokens};
    g->st.prompt_tokens = n_prompt;
    g->st.tokens = s->generated;
    double t0 = now_s();
    flock_status st = flock_session_prefill(s, prompt, n_prompt);
    if (st != FLOCK_OK)
        return st;
    g->t1 = now_s();
    g->st.prefill_s = g->t1 - t0;
    flock_tok_decoder_init(&g->dec, false);
    return FLOCK_OK;
}

flock_status flock_gen_start(flock_session *s, flock_sampler *smp, const int32_t *prompt, size_t n_prompt,
                             size_t max_tokens, const char *const *stops, size_t n_stops, flock_gen **out)
{
    flock_error err;
    if (!s)
        return FLOCK_E_INVALID_ARG;
    if (!out)
        return flock_session_fail(s, flock_error_set(&err, FLOCK_E_INVALID_ARG, "flock_gen_start: NULL out"), &err);
    flock_gen *g = malloc(sizeof *g);
    if (!g)
        return flock_session_fail(s, flock_error_set(&err, FLOCK_E_NOMEM, "out of memory (generation state)"), &err);
    flock_status st = gen_init(g, s, smp, prompt, n_prompt, max_tokens, stops, n_stops);
    if (st != FLOCK_OK) {
        free(g);
        return st;
    }
    *out = g;
    return FLOCK_OK;
}

void flock_gen_free(flock_gen *g)
{
    free(g);
}

const flock_gen_stats *flock_gen_get_stats(const flock_gen *g)
{
    return &g->st;
}

bool flock_gen_done(const flock_gen *g)
{
    return g->done;
}

/* Ends generation, returning the first n bytes of s->pend: with a stop
 * string, the text before it; otherwise everything held, and what the
 * decoder still holds. */
static void gen_finish(flock_gen *g, size_t n, const char **text, size_t *len)
{
    flock_session *s = g->s;
    if (!g->st.stopped_string)
        n += flock_model_decode_flush(s->m, &g->dec, s->pend + n, s->pend_cap - n);
    *text = s->pend;
    *len = n;
    g->held = g->emitted = 0;
    g->done = true;
    g->st.decode_s = now_s() - g->t1;
}

flock_status flock_gen_next(flock_gen *g, int32_t *tok, const char **text, size_t *len)
{
    flock_session *s = g->s;
    *tok = -1;
    *text = "";
    *len = 0;
    if (g->done)
        return FLOCK_OK;
    memmove(s->pend, s->pend + g->emitted, g->held);
    g->emitted = 0;
    if (g->st.generated_tokens >= g->max_tokens || flock_session_n_past(s) >= flock_session_n_ctx(s)) {
        gen_finish(g, g->held, text, len); /* the token budget, or the context, is used up */
        return FLOCK_OK;
    }
    int32_t t = flock_sampler_sample(g->smp, flock_session_last_logits(s), s->history, s->n_history);
    if (flock_model_is_eog(s->m, t)) {
        g->st.stopped_eos = true;
        gen_finish(g, g->held, text, len);
        return FLOCK_OK;
    }
    s->generated[g->st.generated_tokens++] = t; /* at most n_ctx - n_prompt tokens: n_past grows by each */
    size_t n = 0;
    flock_status st = flock_model_decode_token(s->m, &g->dec, t, s->dec, s->dec_cap, &n);
    if (st != FLOCK_OK) {
        flock_error err;
        g->done = true;
        return flock_session_fail(s, flock_error_set(&err, st, "decoding token %d", t), &err);
    }
    memcpy(s->pend + g->held, s->dec, n);
    size_t np = g->held + n;
    long at = find_stop(s->pend, np, g->stops, g->n_stops);
    if (at >= 0) {
        g->st.stopped_string = true;
        gen_finish(g, (size_t)at, text, len);
        return FLOCK_OK;
    }
    if (g->st.generated_tokens == g->max_tokens) {
        gen_finish(g, np, text, len); /* the last token: nothing is left to decode */
        return FLOCK_OK;
    }
    g->held = hold_back(s->pend, np, g->stops, g->n_stops);
    g->emitted = np - g->held;
    *text = s->pend;
    *len = g->emitted;
    *tok = t;
    return FLOCK_OK;
}

flock_status flock_generate(flock_session *s, flock_sampler *smp, const int32_t *prompt, size_t n_prompt,
                            size_t max_tokens, const char *const *stops, size_t n_stops, flock_text_fn fn,
                            void *user, flock_gen_stats *stats)
{
    if (!s)
        return FLOCK_E_INVALID_ARG;
    flock_gen_stats st0 = {0};
    flock_gen_stats *gs = stats ? stats : &st0;
    memset(gs, 0, sizeof *gs);
    gs->prompt_tokens = n_prompt;
    gs->tokens = s->generated;
    flock_gen gen, *g = &gen;
    flock_status st = gen_init(g, s, smp, prompt, n_prompt, max_tokens, stops, n_stops);
    if (st != FLOCK_OK)
        return st;
    while (!g->done) {
        int32_t tok;
        const char *text;
        size_t len;
        if ((st = flock_gen_next(g, &tok, &text, &len)) != FLOCK_OK)
            break;
        if (len > 0 && fn && !fn(user, text, len))
            break;
        if (tok >= 0 && (st = flock_session_decode(s, &tok, 1)) != FLOCK_OK)
            break;
    }
    if (!g->done)
        g->st.decode_s = now_s() - g->t1;
    *gs = g->st;
    return st;
}
