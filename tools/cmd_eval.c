/* flock eval: quality of GRIFFIN (and the baselines) against the full model.
 *
 * Text mode (--text FILE): the text is tokenized and cut into N windows of
 * P + C tokens. For each window the first P tokens are the prompt (experts
 * are selected from them, with the full FF), the next C are scored
 * teacher-forced with those experts. Per keep ratio and method: perplexity,
 * its ratio to the full model's, top-1 agreement with the full model's
 * predictions and the mean KL(full || pruned).
 *
 * Generation mode (--jsonl FILE, the paper's XSum protocol): each line's
 * "article" is the prompt; up to C tokens are generated (greedy, or --temp
 * with --seed), stopping at the line's "stop" strings (default "###");
 * ROUGE-1/2/L against "summary_gt" and against the full model's own output. */
#include "eval_metrics.h"
#include "run_common.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVAL_MAX_KEEPS 16
#define EVAL_MAX_MODES 3

typedef struct eval_args {
    const char *bundle, *text, *jsonl;
    long long prompt_len, cont_len, windows, n_prompts;
    double keeps[EVAL_MAX_KEEPS];
    int n_keeps;
    flock_select_mode modes[EVAL_MAX_MODES];
    int n_modes;
    int threads;
    uint64_t seed;
    double temp;
    bool json;
} eval_args;

static void help(FILE *f)
{
    fprintf(f,
            "usage: flock eval BUNDLE (--text FILE | --jsonl FILE) [options]\n\n"
            "Measures how close GRIFFIN (and the baselines) stay to the full model.\n\n"
            "  --text FILE         plain text: perplexity, top-1 agreement and KL over windows\n"
            "  --jsonl FILE        prompts with \"article\" and \"summary_gt\" (XSum one-shot):\n"
            "                      generate and score ROUGE-1/2/L\n"
            "  --prompt-len P      prompt tokens per window (text mode; default 256)\n"
            "  --cont-len C        tokens scored per window / generated per prompt\n"
            "                      (default 128 / 64)\n"
            "  --windows N         windows of text (default 8)\n"
            "  --n N               prompts from the JSONL file (default 20)\n"
            "  --keep LIST         keep ratios, e.g. 0.5,1 (default: those compiled, and 1)\n"
            "  --select LIST       methods: griffin,magnitude,random (default griffin)\n"
            "  --temp T            generation temperature, 0 = greedy (default 0)\n"
            "  --seed S            seed of sampling and of random selection (default 0)\n"
            "  --threads N         threads (default: all cores)\n"
            "  --json              one JSON object instead of the table\n");
}

/* ---- argument parsing -------------------------------------------------- */

static int parse_keeps(const char *v, eval_args *a)
{
    char *dup = strdup(v), *save = NULL;
    if (!dup)
        return -1;
    a->n_keeps = 0;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double k;
        if (a->n_keeps == EVAL_MAX_KEEPS || !flock_cli_parse_double(t, 1e-9, 1.0, &k)) {
            free(dup);
            return flock_cli_usage_error("eval", "bad --keep list '%s' (fractions in (0, 1], at most %d)", v,
                                         EVAL_MAX_KEEPS),
                   -1;
        }
        a->keeps[a->n_keeps++] = k;
    }
    free(dup);
    return a->n_keeps ? 0 : (flock_cli_usage_error("eval", "empty --keep list"), -1);
}

static int parse_modes(const char *v, eval_args *a)
{
    char *dup = strdup(v), *save = NULL;
    if (!dup)
        return -1;
    a->n_modes = 0;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        flock_select_mode m;
        if (a->n_modes == EVAL_MAX_MODES || flock_select_mode_parse(t, &m) != FLOCK_OK) {
            free(dup);
            return flock_cli_usage_error("eval", "bad --select list '%s' (griffin, magnitude, random)", v), -1;
        }
        a->modes[a->n_modes++] = m;
    }
    free(dup);
    return a->n_modes ? 0 : (flock_cli_usage_error("eval", "empty --select list"), -1);
}

static int parse_args(int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    a->prompt_len = 256;
    a->cont_len = -1;
    a->windows = 8;
    a->n_prompts = 20;
    a->modes[0] = FLOCK_SELECT_GRIFFIN;
    a->n_modes = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        long long ll;
#define OPT(name) ((r = flock_cli_opt_value("eval", argc, argv, &i, name, &v)) != 0)
        if (flock_cli_is_help(argv[i])) {
            help(stdout);
            return 1;
        } else if (OPT("--text")) {
            if (r < 0)
                return -1;
            a->text = v;
        } else if (OPT("--jsonl")) {
            if (r < 0)
                return -1;
            a->jsonl = v;
        } else if (OPT("--prompt-len")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &a->prompt_len))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --prompt-len '%s'", v), -1;
        } else if (OPT("--cont-len")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &a->cont_len))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --cont-len '%s'", v), -1;
        } else if (OPT("--windows")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &a->windows))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --windows '%s'", v), -1;
        } else if (OPT("--n")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &a->n_prompts))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --n '%s'", v), -1;
        } else if (OPT("--keep")) {
            if (r < 0 || parse_keeps(v, a) != 0)
                return -1;
        } else if (OPT("--select")) {
            if (r < 0 || parse_modes(v, a) != 0)
                return -1;
        } else if (OPT("--temp")) {
            if (r < 0 || !flock_cli_parse_double(v, 0, 100, &a->temp))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --temp '%s'", v), -1;
        } else if (OPT("--seed")) {
            if (r < 0 || !flock_cli_parse_int(v, 0, 0x7fffffffffffffffLL, &ll))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --seed '%s'", v), -1;
            a->seed = (uint64_t)ll;
        } else if (OPT("--threads")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 256, &ll))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --threads '%s'", v), -1;
            a->threads = (int)ll;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (argv[i][0] == '-' || a->bundle) {
            return flock_cli_usage_error("eval", "unexpected argument '%s'", argv[i]), -1;
        } else {
            a->bundle = argv[i];
        }
#undef OPT
    }
    if (!a->bundle)
        return flock_cli_usage_error("eval", "needs a BUNDLE"), -1;
    if (!a->text == !a->jsonl)
        return flock_cli_usage_error("eval", "give exactly one of --text FILE and --jsonl FILE"), -1;
    if (a->cont_len < 0)
        a->cont_len = a->text ? 128 : 64;
    return 0;
}

/* Default keep list: the compiled ratios and 1.0; 1.0 always first. */
static void settle_keeps(flock_model *m, eval_args *a)
{
    if (a->n_keeps == 0) {
        size_t n;
        const double *k = flock_model_keep_ratios(m, &n);
        for (size_t i = 0; i < n && a->n_keeps < EVAL_MAX_KEEPS; i++)
            if (k[i] < 1.0)
                a->keeps[a->n_keeps++] = k[i];
        if (a->n_keeps == 0)
            a->keeps[a->n_keeps++] = 0.5;
    }
    /* drop 1.0 from the list: the full model is the reference, run once */
    int w = 0;
    for (int i = 0; i < a->n_keeps; i++)
        if (a->keeps[i] < 1.0)
            a->keeps[w++] = a->keeps[i];
    a->n_keeps = w;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "flock eval: cannot open '%s'\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, cap * 2 + 1);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "flock eval: out of memory reading '%s'\n", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static flock_session *open_session(flock_model *m, const eval_args *a, double keep, flock_select_mode mode,
                                   int32_t n_ctx)
{
    flock_session_opts so = flock_session_default_opts();
    so.keep = keep;
    so.select = mode;
    so.threads = a->threads;
    so.seed = a->seed;
    so.n_ctx = n_ctx;
    flock_session *s = NULL;
    flock_error err = {0};
    if (flock_session_create(m, &so, &s, &err) != FLOCK_OK)
        fprintf(stderr, "flock eval: keep %g (%s): %s\n", keep, flock_select_mode_name(mode), err.msg);
    return s;
}

/* ---- text mode ----------------------------------------------------------- */

typedef struct text_result {
    flock_select_mode mode;
    double keep;
    flock_ppl_acc acc;
} text_result;

/* The first W windows of P + C tokens of the text (fewer, said, when the
 * text is short): *toks holds W * (P + C) tokens. Returns 0 or -1 after
 * printing why. */
static int text_windows(flock_model *m, const eval_args *a, int32_t **toks_out, size_t *W_out)
{
    size_t len;
    char *text = read_file(a->text, &len);
    if (!text)
        return -1;
    size_t per = (size_t)(a->prompt_len + a->cont_len), W = (size_t)a->windows, need = per * W;
    /* tokenize only as much text as the windows need (about 4 bytes a token, grown if short) */
    size_t take = need * 6 < len ? need * 6 : len, n_tok = 0;
    int32_t *toks = NULL;
    flock_error err = {0};
    int rc = -1;
    for (;;) {
        size_t cap = take + 16;
        int32_t *t = realloc(toks, cap * sizeof *t);
        if (!t) {
            fprintf(stderr, "flock eval: out of memory\n");
            goto out;
        }
        toks = t;
        if (flock_tokenize(m, text, take, false, toks, cap, &n_tok, &err) != FLOCK_OK) {
            fprintf(stderr, "flock eval: tokenizing '%s': %s\n", a->text, err.msg);
            goto out;
        }
        if (n_tok >= need || take == len)
            break;
        take = take * 2 < len ? take * 2 : len;
    }
    if (n_tok < need) {
        W = n_tok / per;
        if (W == 0) {
            fprintf(stderr, "flock eval: '%s' has %zu tokens, fewer than one window of %zu\n", a->text, n_tok, per);
            goto out;
        }
        fprintf(stderr, "flock eval: text has %zu tokens: %zu windows instead of %lld\n", n_tok, W, a->windows);
    }
    *toks_out = toks;
    toks = NULL;
    *W_out = W;
    rc = 0;
out:
    free(toks);
    free(text);
    return rc;
}

/* Scores W windows: the full model gives the reference distributions of
 * the C continuation positions; every (mode, keep) session is scored
 * against them. res[n_res] is the full model. Returns 0 or -1 after
 * printing why. */
static int score_text(flock_model *m, const eval_args *a, const int32_t *toks, size_t W, text_result *res,
                      int n_res)
{
    int32_t bos = flock_model_bos(m);
    size_t P = (size_t)a->prompt_len, C = (size_t)a->cont_len, per = P + C, has_bos = bos >= 0;
    int32_t n_ctx = (int32_t)(P + C + has_bos);
    size_t V = (size_t)flock_model_n_vocab(m);
    float *ref = malloc(C * V * sizeof *ref);
    int32_t *prompt = malloc((P + 1) * sizeof *prompt);
    flock_session *full = open_session(m, a, 1.0, FLOCK_SELECT_GRIFFIN, n_ctx);
    flock_session **ss = calloc((size_t)n_res, sizeof *ss);
    int rc = -1;
    if (!ref || !prompt || !ss || !full)
        goto out;
    for (int mi = 0; mi < a->n_modes; mi++)
        for (int ki = 0; ki < a->n_keeps; ki++) {
            text_result *r = &res[mi * a->n_keeps + ki];
            r->mode = a->modes[mi];
            r->keep = a->keeps[ki];
            if (!(ss[mi * a->n_keeps + ki] = open_session(m, a, r->keep, r->mode, n_ctx)))
                goto out;
        }
    text_result *fr = &res[n_res];
    fr->keep = 1.0;
    for (size_t w = 0; w < W; w++) {
        const int32_t *win = toks + w * per;
        if (has_bos)
            prompt[0] = bos;
        memcpy(prompt + has_bos, win, P * sizeof *prompt);
        const int32_t *cont = win + P;
        flock_session_reset(full);
        if (flock_session_prefill(full, prompt, P + has_bos) != FLOCK_OK)
            goto full_fail;
        for (size_t j = 0; j < C; j++) {
            const float *lg = flock_session_last_logits(full);
            memcpy(ref + j * V, lg, V * sizeof *ref);
            flock_ppl_add(&fr->acc, ref + j * V, ref + j * V, V, (size_t)cont[j]);
            if (j + 1 < C && flock_session_decode(full, &cont[j], 1) != FLOCK_OK)
                goto full_fail;
        }
        for (int i = 0; i < n_res; i++) {
            flock_session *s = ss[i];
            flock_session_reset(s);
            bool ok = flock_session_prefill(s, prompt, P + has_bos) == FLOCK_OK;
            for (size_t j = 0; ok && j < C; j++) {
                flock_ppl_add(&res[i].acc, flock_session_last_logits(s), ref + j * V, V, (size_t)cont[j]);
                ok = j + 1 == C || flock_session_decode(s, &cont[j], 1) == FLOCK_OK;
            }
            if (!ok) {
                fprintf(stderr, "flock eval: %s\n", flock_session_error(s));
                goto out;
            }
        }
        if (!a->json)
            fprintf(stderr, "\r[eval] window %zu/%zu", w + 1, W);
    }
    if (!a->json)
        fprintf(stderr, "\n");
    rc = 0;
    goto out;
full_fail:
    fprintf(stderr, "flock eval: full model: %s\n", flock_session_error(full));
out:
    if (ss)
        for (int i = 0; i < n_res; i++)
            flock_session_free(ss[i]);
    free(ss);
    flock_session_free(full);
    free(prompt);
    free(ref);
    return rc;
}

static void report_text(const eval_args *a, size_t W, const text_result *res, int n_res)
{
    size_t P = (size_t)a->prompt_len, C = (size_t)a->cont_len;
    const text_result *fr = &res[n_res];
    double full_ppl = flock_ppl_value(&fr->acc);
    if (a->json) {
        printf("{\"mode\":\"text\",\"file\":");
        flock_cli_json_str(stdout, a->text);
        printf(",\"windows\":%zu,\"prompt_len\":%zu,\"cont_len\":%zu,\"scored_tokens\":%llu,\"full_ppl\":", W, P, C,
               (unsigned long long)fr->acc.count);
        flock_cli_json_double(stdout, full_ppl);
        printf(",\"results\":[");
        for (int i = 0; i <= n_res; i++) {
            const text_result *r = &res[i];
            printf("%s{\"select\":\"%s\",\"keep\":%g,\"ppl\":", i ? "," : "",
                   i == n_res ? "full" : flock_select_mode_name(r->mode), r->keep);
            flock_cli_json_double(stdout, flock_ppl_value(&r->acc));
            printf(",\"ppl_ratio\":");
            flock_cli_json_double(stdout, flock_ppl_value(&r->acc) / full_ppl);
            printf(",\"top1_agree\":");
            flock_cli_json_double(stdout, flock_ppl_top1(&r->acc));
            printf(",\"mean_kl\":");
            flock_cli_json_double(stdout, flock_ppl_mean_kl(&r->acc));
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("%zu windows x (%zu prompt + %zu scored) tokens of %s\n", W, P, C, a->text);
    printf("%-10s %6s %10s %9s %10s %10s\n", "select", "keep", "ppl", "ppl/full", "top1-agree", "mean-KL");
    for (int i = n_res; i >= 0; i--) {
        const text_result *r = &res[i];
        printf("%-10s %6.3g %10.4f %9.4f %10.4f %10.5f\n", i == n_res ? "full" : flock_select_mode_name(r->mode),
               r->keep, flock_ppl_value(&r->acc), flock_ppl_value(&r->acc) / full_ppl, flock_ppl_top1(&r->acc),
               flock_ppl_mean_kl(&r->acc));
    }
}

/* Prompt of window w: [BOS] + P text tokens, then C continuation tokens. */
static int eval_text(flock_model *m, const eval_args *a)
{
    int32_t *toks = NULL;
    size_t W = 0;
    if (text_windows(m, a, &toks, &W) != 0)
        return FLOCK_EXIT_FAIL;
    int n_res = a->n_modes * a->n_keeps;
    text_result *res = calloc((size_t)n_res + 1, sizeof *res);
    int rc = FLOCK_EXIT_FAIL;
    if (!res)
        fprintf(stderr, "flock eval: out of memory\n");
    else if (score_text(m, a, toks, W, res, n_res) == 0) {
        report_text(a, W, res, n_res);
        rc = FLOCK_EXIT_OK;
    }
    free(res);
    free(toks);
    return rc;
}

/* ---- generation mode ----------------------------------------------------- */

typedef struct gen_buf {
    char *s;
    size_t len, cap;
} gen_buf;

static bool gen_append(void *user, const char *text, size_t len)
{
    gen_buf *b = user;
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return false;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, text, len);
    b->len += len;
    b->s[b->len] = '\0';
    return true;
}

typedef struct gen_result {
    flock_select_mode mode;
    double keep;
    double r_ref[3], r_full[3]; /* sums of ROUGE-1/2/L F1 */
    size_t n;
} gen_result;

/* Generates for one prompt into `out` (reset first). */
static int gen_one(flock_session *s, flock_sampler *smp, const int32_t *ids, size_t n, size_t max_new,
                   const char *const *stops, size_t n_stops, gen_buf *out)
{
    out->len = 0;
    if (out->s)
        out->s[0] = '\0';
    flock_session_reset(s);
    flock_gen_stats gs;
    flock_status st = flock_generate(s, smp, ids, n, max_new, stops, n_stops, gen_append, out, &gs);
    if (st != FLOCK_OK) {
        fprintf(stderr, "flock eval: %s\n", flock_session_error(s));
        return -1;
    }
    if (!out->s && !gen_append(out, "", 0))
        return -1;
    return 0;
}

static void add_rouge(double sums[3], const char *cand, const char *ref)
{
    flock_rouge r = {0, 0, 0};
    if (flock_rouge_score(cand, ref, &r) == 0) {
        sums[0] += r.r1;
        sums[1] += r.r2;
        sums[2] += r.rl;
    }
}

/* One line of the prompts file: its "article", "summary_gt" and "stop"
 * strings (default "###"), pointing into obj. */
typedef struct gen_prompt {
    json_object *obj;
    const char *article, *ref;
    const char *stops[4];
    size_t n_stops;
} gen_prompt;

/* Returns 0, or -1 after printing what is wrong with the line. */
static int parse_prompt(const char *line, const char *file, size_t lineno, gen_prompt *p)
{
    json_object *art, *gt, *stop;
    *p = (gen_prompt){.obj = json_tokener_parse(line), .stops = {"###"}, .n_stops = 1};
    if (!p->obj || !json_object_object_get_ex(p->obj, "article", &art) ||
        !json_object_object_get_ex(p->obj, "summary_gt", &gt) || !json_object_is_type(art, json_type_string) ||
        !json_object_is_type(gt, json_type_string)) {
        fprintf(stderr, "flock eval: %s:%zu: not a JSON object with string \"article\" and \"summary_gt\"\n", file,
                lineno);
        json_object_put(p->obj);
        p->obj = NULL;
        return -1;
    }
    if (json_object_object_get_ex(p->obj, "stop", &stop) && json_object_is_type(stop, json_type_array)) {
        p->n_stops = 0;
        for (size_t i = 0; i < json_object_array_length(stop) && p->n_stops < 4; i++) {
            json_object *e = json_object_array_get_idx(stop, i);
            if (json_object_is_type(e, json_type_string))
                p->stops[p->n_stops++] = json_object_get_string(e);
        }
    }
    p->article = json_object_get_string(art);
    p->ref = json_object_get_string(gt);
    return 0;
}

/* The counts of one generation run. */
typedef struct gen_counts {
    size_t done, skipped; /* prompts scored; longer than the context */
    int32_t n_ctx;
} gen_counts;

/* Generates for each prompt of f with the full model (res[n_res]) and every
 * (mode, keep) session, adding ROUGE against the reference and against the
 * full model's text. Returns 0 or -1 after printing why. */
static int score_gen(flock_model *m, const eval_args *a, FILE *f, gen_result *res, int n_res, gen_counts *c)
{
    flock_session **ss = calloc((size_t)n_res + 1, sizeof *ss);
    int32_t *ids = malloc((size_t)c->n_ctx * sizeof *ids);
    flock_sampler *smp = NULL;
    gen_buf full_out = {0}, out = {0};
    char *line = NULL;
    size_t line_cap = 0, lineno = 0;
    int rc = -1;
    flock_error err = {0};
    flock_sampler_opts so = flock_sampler_default_opts();
    so.temperature = (float)a->temp;
    so.top_k = 0;
    so.top_p = 1;
    so.min_p = 0;
    so.seed = a->seed;
    if (!ids || !ss)
        goto out;
    if (flock_sampler_create(&so, flock_model_n_vocab(m), &smp, &err) != FLOCK_OK) {
        fprintf(stderr, "flock eval: %s\n", err.msg);
        goto out;
    }
    if (!(ss[n_res] = open_session(m, a, 1.0, FLOCK_SELECT_GRIFFIN, c->n_ctx)))
        goto out;
    res[n_res].keep = 1.0;
    for (int mi = 0; mi < a->n_modes; mi++)
        for (int ki = 0; ki < a->n_keeps; ki++) {
            int i = mi * a->n_keeps + ki;
            res[i].mode = a->modes[mi];
            res[i].keep = a->keeps[ki];
            if (!(ss[i] = open_session(m, a, res[i].keep, res[i].mode, c->n_ctx)))
                goto out;
        }
    while (c->done < (size_t)a->n_prompts && getline(&line, &line_cap, f) > 0) {
        gen_prompt p;
        if (parse_prompt(line, a->jsonl, ++lineno, &p) != 0)
            goto out;
        size_t n = 0;
        flock_status st = flock_tokenize(m, p.article, strlen(p.article), true, ids, (size_t)c->n_ctx, &n, &err);
        bool fail = false;
        if (st == FLOCK_E_RANGE || (st == FLOCK_OK && n + (size_t)a->cont_len > (size_t)c->n_ctx)) {
            c->skipped++; /* longer than the context */
        } else if (st != FLOCK_OK) {
            fprintf(stderr, "flock eval: %s:%zu: %s\n", a->jsonl, lineno, err.msg);
            fail = true;
        } else {
            fail = gen_one(ss[n_res], smp, ids, n, (size_t)a->cont_len, p.stops, p.n_stops, &full_out) != 0;
            if (!fail) {
                add_rouge(res[n_res].r_ref, full_out.s, p.ref);
                add_rouge(res[n_res].r_full, full_out.s, full_out.s);
                res[n_res].n++;
            }
            for (int i = 0; !fail && i < n_res; i++) {
                fail = gen_one(ss[i], smp, ids, n, (size_t)a->cont_len, p.stops, p.n_stops, &out) != 0;
                if (!fail) {
                    add_rouge(res[i].r_ref, out.s, p.ref);
                    add_rouge(res[i].r_full, out.s, full_out.s);
                    res[i].n++;
                }
            }
            c->done += !fail;
            if (!fail && !a->json)
                fprintf(stderr, "\r[eval] prompt %zu/%lld", c->done, a->n_prompts);
        }
        json_object_put(p.obj);
        if (fail)
            goto out;
    }
    if (!a->json)
        fprintf(stderr, "\n");
    rc = 0;
out:
    if (ss)
        for (int i = 0; i <= n_res; i++)
            flock_session_free(ss[i]);
    free(ss);
    flock_sampler_free(smp);
    free(full_out.s);
    free(out.s);
    free(line);
    free(ids);
    return rc;
}

static void report_gen(const eval_args *a, const gen_result *res, int n_res, const gen_counts *c)
{
    if (a->json) {
        printf("{\"mode\":\"generate\",\"file\":");
        flock_cli_json_str(stdout, a->jsonl);
        printf(",\"prompts\":%zu,\"skipped_too_long\":%zu,\"max_new_tokens\":%lld,\"temperature\":%g,\"results\":[",
               c->done, c->skipped, a->cont_len, a->temp);
        for (int i = n_res; i >= 0; i--) {
            const gen_result *r = &res[i];
            printf("%s{\"select\":\"%s\",\"keep\":%g", i == n_res ? "" : ",",
                   i == n_res ? "full" : flock_select_mode_name(r->mode), r->keep);
            const char *names[3] = {"rouge1", "rouge2", "rougeL"};
            for (int k = 0; k < 3; k++) {
                printf(",\"%s\":", names[k]);
                flock_cli_json_double(stdout, r->r_ref[k] / (double)r->n);
                printf(",\"%s_vs_full\":", names[k]);
                flock_cli_json_double(stdout, r->r_full[k] / (double)r->n);
            }
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("%zu prompts of %s (%zu skipped: longer than the context), up to %lld new tokens, temp %g\n", c->done,
           a->jsonl, c->skipped, a->cont_len, a->temp);
    printf("%-10s %6s | %7s %7s %7s | vs full: %7s %7s %7s\n", "select", "keep", "R-1", "R-2", "R-L", "R-1", "R-2",
           "R-L");
    for (int i = n_res; i >= 0; i--) {
        const gen_result *r = &res[i];
        double d = (double)r->n;
        printf("%-10s %6.3g | %7.4f %7.4f %7.4f |          %7.4f %7.4f %7.4f\n",
               i == n_res ? "full" : flock_select_mode_name(r->mode), r->keep, r->r_ref[0] / d, r->r_ref[1] / d,
               r->r_ref[2] / d, r->r_full[0] / d, r->r_full[1] / d, r->r_full[2] / d);
    }
}

static int eval_jsonl(flock_model *m, const eval_args *a)
{
    FILE *f = fopen(a->jsonl, "r");
    if (!f) {
        fprintf(stderr, "flock eval: cannot open '%s'\n", a->jsonl);
        return FLOCK_EXIT_FAIL;
    }
    int n_res = a->n_modes * a->n_keeps;
    gen_counts c = {.n_ctx = flock_model_n_ctx(m) < 4096 ? flock_model_n_ctx(m) : 4096};
    gen_result *res = calloc((size_t)n_res + 1, sizeof *res);
    int rc = FLOCK_EXIT_FAIL;
    if (res && score_gen(m, a, f, res, n_res, &c) == 0) {
        if (c.done == 0)
            fprintf(stderr, "flock eval: no usable prompt in '%s' (%zu longer than the context of %d)\n", a->jsonl,
                    c.skipped, c.n_ctx);
        else {
            report_gen(a, res, n_res, &c);
            rc = FLOCK_EXIT_OK;
        }
    }
    free(res);
    fclose(f);
    return rc;
}

int flock_cmd_eval(int argc, char **argv)
{
    eval_args a;
    int r = parse_args(argc, argv, &a);
    if (r != 0)
        return r > 0 ? FLOCK_EXIT_OK : FLOCK_EXIT_USAGE;
    flock_model *m = NULL;
    flock_error err = {0};
    if (flock_model_open(a.bundle, NULL, &m, &err) != FLOCK_OK) {
        fprintf(stderr, "flock eval: %s (%s)\n", err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    settle_keeps(m, &a);
    int rc = a.text ? eval_text(m, &a) : eval_jsonl(m, &a);
    flock_model_free(m);
    return rc;
}
