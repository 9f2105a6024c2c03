/* The generation loop: prefill, then sample / decode token by token,
 * streaming text with stop strings held back until they cannot match. */
#include "model_impl.h"

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

flock_status flock_generate(flock_session *s, flock_sampler *smp, const int32_t *prompt, size_t n_prompt,
                            size_t max_tokens, const char *const *stops, size_t n_stops, flock_text_fn fn,
                            void *user, flock_gen_stats *stats)
{
    flock_gen_stats st0 = {0};
    flock_gen_stats *gs = stats ? stats : &st0;
    memset(gs, 0, sizeof *gs);
    gs->prompt_tokens = n_prompt;
    gs->tokens = s->generated;
    for (size_t i = 0; i < n_stops; i++)
        if (strlen(stops[i]) >= 4096) {
            flock_error err;
            flock_status bad =
                flock_error_set(&err, FLOCK_E_INVALID_ARG, "stop string %zu is longer than 4095 bytes", i);
            return flock_session_fail(s, bad, &err);
        }
    double t0 = now_s();
    flock_status st = flock_session_prefill(s, prompt, n_prompt);
    if (st != FLOCK_OK)
        return st;
    double t1 = now_s();
    gs->prefill_s = t1 - t0;
    flock_tok_decoder dec;
    flock_tok_decoder_init(&dec, false);
    size_t np = 0; /* bytes pending in s->pend; the hold-back keeps np < 4096 before a token */
    bool go = true;
    for (size_t i = 0; i < max_tokens && go; i++) {
        if (flock_session_n_past(s) >= flock_session_n_ctx(s))
            break; /* the context is full */
        int32_t tok = flock_sampler_sample(smp, flock_session_last_logits(s), s->history, s->n_history);
        if (flock_model_is_eog(s->m, tok)) {
            gs->stopped_eos = true;
            break;
        }
        s->generated[gs->generated_tokens++] = tok; /* at most n_ctx - n_prompt tokens: n_past grows by each */
        size_t len = 0;
        if ((st = flock_model_decode_token(s->m, &dec, tok, s->dec, s->dec_cap, &len)) != FLOCK_OK) {
            flock_error err;
            return flock_session_fail(s, flock_error_set(&err, st, "decoding token %d", tok), &err);
        }
        memcpy(s->pend + np, s->dec, len);
        np += len;
        long at = find_stop(s->pend, np, stops, n_stops);
        if (at >= 0) {
            if (fn && at > 0)
                fn(user, s->pend, (size_t)at);
            np = 0;
            gs->stopped_string = true;
            break;
        }
        size_t keep = hold_back(s->pend, np, stops, n_stops);
        if (np > keep) {
            if (fn && !fn(user, s->pend, np - keep))
                go = false;
            memmove(s->pend, s->pend + (np - keep), keep);
            np = keep;
        }
        if (!go || i + 1 == max_tokens)
            break;
        if ((st = flock_session_decode(s, &tok, 1)) != FLOCK_OK)
            return st;
    }
    if (!gs->stopped_string)
        np += flock_model_decode_flush(s->m, &dec, s->pend + np, s->pend_cap - np);
    if (np > 0 && fn && !gs->stopped_string)
        fn(user, s->pend, np);
    gs->decode_s = now_s() - t1;
    return FLOCK_OK;
}
