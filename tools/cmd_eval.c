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
#include <unistd.h>

#define EVAL_MAX_KEEPS 16
#define EVAL_MAX_MODES FLOCK_SELECT_COUNT
#define EVAL_MAX_REFRESH 8
#define EVAL_BOOT_SEED 20240229 /* fixed: the same run gives the same intervals */

typedef struct eval_args {
    const char *bundle, *text, *jsonl;
    long long prompt_len, cont_len, windows, n_prompts;
    double keeps[EVAL_MAX_KEEPS];
    int n_keeps;
    flock_select_mode modes[EVAL_MAX_MODES];
    int n_modes;
    int32_t refreshes[EVAL_MAX_REFRESH];
    int n_refresh;
    double glass_weight;
    long long boot;
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
            "  --select LIST       methods: griffin, magnitude, random, griffin-adaptive, glass\n"
            "                      (default griffin)\n"
            "  --refresh LIST      refresh intervals in tokens for the statistic methods, e.g.\n"
            "                      0,16 (default 0: never; see flock run --help)\n"
            "  --glass-weight W    glass: weight of the prompt's rank (default 0.9)\n"
            "  --bootstrap B       resamples of the 95%% intervals over windows / prompts\n"
            "                      (default 2000)\n"
            "  --temp T            generation temperature, 0 = greedy (default 0)\n"
            "  --seed S            seed of sampling and of random selection (default 0)\n"
            "  --threads N         threads (default: all cores)\n"
            "  --json              one JSON object instead of the table\n");
}

/* ---- argument parsing -------------------------------------------------- */

static bool parse_keep(const char *t, int i, void *out)
{
    return flock_cli_parse_double(t, 1e-9, 1.0, &((double *)out)[i]);
}

static bool parse_mode(const char *t, int i, void *out)
{
    return flock_select_mode_parse(t, &((flock_select_mode *)out)[i]) == FLOCK_OK;
}

static bool parse_refresh(const char *t, int i, void *out)
{
    long long r;
    bool ok = flock_cli_parse_int(t, 0, 1 << 30, &r);
    ((int32_t *)out)[i] = (int32_t)r;
    return ok;
}

/* A comma list of --NAME through parse_one; the usage error names what is
 * wrong: an empty list, or a bad item or too many (`what` says which items
 * are good). Returns 0 or -1. */
static int parse_eval_list(const char *name, const char *what, const char *v, int cap, int *n,
                           bool (*parse_one)(const char *, int, void *), void *out)
{
    if (flock_cli_parse_list(v, cap, n, parse_one, out))
        return 0;
    if (*n == 0)
        return flock_cli_usage_error("eval", "empty --%s list", name), -1;
    return flock_cli_usage_error("eval", "bad --%s list '%s' (%s, at most %d)", name, v, what, cap), -1;
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
    a->n_refresh = 1; /* refreshes[0] = 0: never */
    a->glass_weight = flock_session_default_opts().glass_weight;
    a->boot = 2000;
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
            if (r < 0 || parse_eval_list("keep", "fractions in (0, 1]", v, EVAL_MAX_KEEPS, &a->n_keeps, parse_keep,
                                         a->keeps) != 0)
                return -1;
        } else if (OPT("--select")) {
            if (r < 0 || parse_eval_list("select", "griffin, magnitude, random, griffin-adaptive, glass", v,
                                         EVAL_MAX_MODES, &a->n_modes, parse_mode, a->modes) != 0)
                return -1;
        } else if (OPT("--refresh")) {
            if (r < 0 || parse_eval_list("refresh", "token counts >= 0", v, EVAL_MAX_REFRESH, &a->n_refresh,
                                         parse_refresh, a->refreshes) != 0)
                return -1;
        } else if (OPT("--glass-weight")) {
            if (r < 0 || !flock_cli_parse_double(v, 0, 1, &a->glass_weight))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --glass-weight '%s' (in [0, 1])", v), -1;
        } else if (OPT("--bootstrap")) {
            if (r < 0 || !flock_cli_parse_int(v, 2, 1000000, &a->boot))
                return r < 0 ? -1 : flock_cli_usage_error("eval", "bad --bootstrap '%s' (2 to 1000000)", v), -1;
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

/* One row of the tables: a selection method at a keep ratio. */
typedef struct eval_method {
    flock_select_mode mode;
    double keep;
    int32_t refresh;
} eval_method;

static const eval_method full_method = {FLOCK_SELECT_GRIFFIN, 1.0, 0};

static bool uses_statistic(flock_select_mode m)
{
    return m == FLOCK_SELECT_GRIFFIN || m == FLOCK_SELECT_GRIFFIN_ADAPTIVE || m == FLOCK_SELECT_GLASS;
}

/* Every (mode, refresh, keep) asked for, in that order; a refresh only for
 * the methods that read the statistic. Returns the count (<= cap). */
static int build_methods(const eval_args *a, eval_method *out, int cap)
{
    int n = 0;
    for (int mi = 0; mi < a->n_modes; mi++)
        for (int ri = 0; ri < a->n_refresh; ri++) {
            if (a->refreshes[ri] > 0 && !uses_statistic(a->modes[mi]))
                continue;
            for (int ki = 0; ki < a->n_keeps && n < cap; ki++)
                out[n++] = (eval_method){a->modes[mi], a->keeps[ki], a->refreshes[ri]};
        }
    return n;
}

/* "griffin", "glass r16": the method's name in the table. */
static const char *method_label(const eval_method *e, bool full, char *buf, size_t cap)
{
    if (full)
        return "full";
    if (e->refresh == 0)
        return flock_select_mode_name(e->mode);
    snprintf(buf, cap, "%s r%d", flock_select_mode_name(e->mode), e->refresh);
    return buf;
}

/* The paper's GRIFFIN at the same keep ratio (the baseline each new method
 * is compared with), or -1 when it is not among the rows. */
static int griffin_row(const eval_method *meth, int n, int i)
{
    for (int j = 0; j < n; j++)
        if (j != i && meth[j].mode == FLOCK_SELECT_GRIFFIN && meth[j].refresh == 0 && meth[j].keep == meth[i].keep)
            return j;
    return -1;
}

static flock_session *open_session(flock_model *m, const eval_args *a, const eval_method *e, int32_t n_ctx)
{
    flock_session_opts so = flock_session_default_opts();
    so.keep = e->keep;
    so.select = e->mode;
    so.refresh = e->refresh;
    so.glass_weight = a->glass_weight;
    so.threads = a->threads;
    so.seed = a->seed;
    so.n_ctx = n_ctx;
    flock_session *s = NULL;
    flock_error err = {0};
    if (flock_session_create(m, &so, &s, &err) != FLOCK_OK)
        fprintf(stderr, "flock eval: keep %g (%s, refresh %d): %s\n", e->keep, flock_select_mode_name(e->mode),
                e->refresh, err.msg);
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Progress on stderr, also with --json (the JSON goes to stdout): one line
 * rewritten in place on a terminal, a line per step in a log file. */
static int progress_tty = -1, progress_open;

static void progress(const char *what, size_t i, size_t n)
{
    if (progress_tty < 0)
        progress_tty = isatty(STDERR_FILENO) != 0;
    fprintf(stderr, progress_tty ? "\r[eval] %s %zu/%zu" : "[eval] %s %zu/%zu\n", what, i, n);
    progress_open = progress_tty;
}

static void progress_end(void)
{
    if (progress_open)
        fprintf(stderr, "\n");
    progress_open = 0;
}

/* Decode speed and bytes of one row: the decode calls' wall time (refresh
 * steps included), the weight bytes per token after each selection, and
 * how many of the decoded tokens were refresh steps (full FF). */
typedef struct eval_speed {
    double dec_s, mb_sum;
    uint64_t dec_tok, n_mb, dense;
} eval_speed;

/* Refresh steps among `decoded` tokens decoded after one selection: every
 * refresh-th one (session.c's refresh_due). */
static uint64_t refresh_steps(int32_t refresh, uint64_t decoded)
{
    return refresh > 0 ? decoded / (uint64_t)refresh : 0;
}

static double sparse_mb(const eval_speed *v)
{
    return v->n_mb ? v->mb_sum / (double)v->n_mb : NAN;
}

/* Mean weight MB per decoded token, the refresh steps read at the full
 * model's `full_mb`. */
static double mean_mb(const eval_speed *v, double full_mb)
{
    if (!v->dec_tok)
        return sparse_mb(v);
    return (sparse_mb(v) * (double)(v->dec_tok - v->dense) + full_mb * (double)v->dense) / (double)v->dec_tok;
}

static void print_speed_json(const eval_speed *v, double full_mb)
{
    printf(",\"decode_tok_s\":");
    flock_cli_json_double(stdout, v->dec_s > 0 ? (double)v->dec_tok / v->dec_s : NAN);
    printf(",\"weight_mb_per_token\":");
    flock_cli_json_double(stdout, sparse_mb(v));
    printf(",\"refresh_steps\":%llu,\"mean_mb_per_token\":", (unsigned long long)v->dense);
    flock_cli_json_double(stdout, mean_mb(v, full_mb));
}

/* ---- text mode ----------------------------------------------------------- */

typedef struct text_result {
    eval_method meth;
    flock_ppl_acc acc;
    double *win_nll; /* [W]: each window's NLL sum (for the intervals) */
    eval_speed speed;
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
    flock_session *full = open_session(m, a, &full_method, n_ctx);
    flock_session **ss = calloc((size_t)n_res, sizeof *ss);
    int rc = -1;
    if (!ref || !prompt || !ss || !full)
        goto out;
    for (int i = 0; i <= n_res; i++)
        if (!(res[i].win_nll = calloc(W, sizeof *res[i].win_nll))) {
            fprintf(stderr, "flock eval: out of memory\n");
            goto out;
        }
    for (int i = 0; i < n_res; i++)
        if (!(ss[i] = open_session(m, a, &res[i].meth, n_ctx)))
            goto out;
    text_result *fr = &res[n_res];
    fr->meth = full_method;
    for (size_t w = 0; w < W; w++) {
        const int32_t *win = toks + w * per;
        if (has_bos)
            prompt[0] = bos;
        memcpy(prompt + has_bos, win, P * sizeof *prompt);
        const int32_t *cont = win + P;
        flock_session_reset(full);
        if (flock_session_prefill(full, prompt, P + has_bos) != FLOCK_OK)
            goto full_fail;
        double nll0 = fr->acc.nll_sum;
        fr->speed.mb_sum += (double)flock_session_decode_bytes(full) / 1e6;
        fr->speed.n_mb++;
        for (size_t j = 0; j < C; j++) {
            const float *lg = flock_session_last_logits(full);
            memcpy(ref + j * V, lg, V * sizeof *ref);
            flock_ppl_add(&fr->acc, ref + j * V, ref + j * V, V, (size_t)cont[j]);
            double t0 = now_s();
            if (j + 1 < C && flock_session_decode(full, &cont[j], 1) != FLOCK_OK)
                goto full_fail;
            fr->speed.dec_s += now_s() - t0;
            fr->speed.dec_tok += j + 1 < C;
        }
        fr->win_nll[w] = fr->acc.nll_sum - nll0;
        for (int i = 0; i < n_res; i++) {
            flock_session *s = ss[i];
            text_result *r = &res[i];
            flock_session_reset(s);
            bool ok = flock_session_prefill(s, prompt, P + has_bos) == FLOCK_OK;
            double r0 = r->acc.nll_sum;
            if (ok) {
                r->speed.mb_sum += (double)flock_session_decode_bytes(s) / 1e6;
                r->speed.n_mb++;
            }
            for (size_t j = 0; ok && j < C; j++) {
                flock_ppl_add(&r->acc, flock_session_last_logits(s), ref + j * V, V, (size_t)cont[j]);
                double t0 = now_s();
                ok = j + 1 == C || flock_session_decode(s, &cont[j], 1) == FLOCK_OK;
                r->speed.dec_s += now_s() - t0;
                r->speed.dec_tok += j + 1 < C;
            }
            r->win_nll[w] = r->acc.nll_sum - r0;
            r->speed.dense += ok ? refresh_steps(r->meth.refresh, C - 1) : 0;
            if (!ok) {
                fprintf(stderr, "flock eval: %s\n", flock_session_error(s));
                goto out;
            }
        }
        progress("window", w + 1, W);
    }
    progress_end();
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

/* The 95% interval of exp(mean over windows of (nll_x - nll_y) / C): a
 * ratio of perplexities (x against y), paired by window. */
static void ratio_ci(const eval_args *a, const double *x, const double *y, size_t W, size_t C, double *lo,
                     double *hi)
{
    double *d = malloc(W * sizeof *d);
    *lo = *hi = NAN;
    if (!d)
        return;
    for (size_t w = 0; w < W; w++)
        d[w] = (x[w] - y[w]) / (double)C;
    if (flock_bootstrap_mean_ci(d, W, (int)a->boot, EVAL_BOOT_SEED, 0.95, lo, hi) == 0) {
        *lo = exp(*lo);
        *hi = exp(*hi);
    }
    free(d);
}

static void report_text(const eval_args *a, size_t W, const text_result *res, int n_res)
{
    size_t P = (size_t)a->prompt_len, C = (size_t)a->cont_len;
    const text_result *fr = &res[n_res];
    double full_ppl = flock_ppl_value(&fr->acc);
    eval_method meth[EVAL_MAX_MODES * EVAL_MAX_REFRESH * EVAL_MAX_KEEPS];
    for (int i = 0; i < n_res; i++)
        meth[i] = res[i].meth;
    char lb[64];
    if (a->json) {
        printf("{\"mode\":\"text\",\"file\":");
        flock_cli_json_str(stdout, a->text);
        printf(",\"windows\":%zu,\"prompt_len\":%zu,\"cont_len\":%zu,\"scored_tokens\":%llu,"
               "\"bootstrap\":%lld,\"glass_weight\":%g,\"full_ppl\":",
               W, P, C, (unsigned long long)fr->acc.count, a->boot, a->glass_weight);
        flock_cli_json_double(stdout, full_ppl);
        printf(",\"results\":[");
        for (int i = 0; i <= n_res; i++) {
            const text_result *r = &res[i];
            double lo, hi;
            printf("%s{\"select\":\"%s\",\"keep\":%g,\"refresh\":%d,\"ppl\":", i ? "," : "",
                   i == n_res ? "full" : flock_select_mode_name(r->meth.mode), r->meth.keep, r->meth.refresh);
            flock_cli_json_double(stdout, flock_ppl_value(&r->acc));
            printf(",\"ppl_ratio\":");
            flock_cli_json_double(stdout, flock_ppl_value(&r->acc) / full_ppl);
            ratio_ci(a, r->win_nll, fr->win_nll, W, C, &lo, &hi);
            printf(",\"ppl_ratio_ci95\":[");
            flock_cli_json_double(stdout, lo);
            printf(",");
            flock_cli_json_double(stdout, hi);
            printf("]");
            int g = i < n_res ? griffin_row(meth, n_res, i) : -1;
            if (g >= 0) {
                ratio_ci(a, r->win_nll, res[g].win_nll, W, C, &lo, &hi);
                printf(",\"vs_griffin\":");
                flock_cli_json_double(stdout, flock_ppl_value(&r->acc) / flock_ppl_value(&res[g].acc));
                printf(",\"vs_griffin_ci95\":[");
                flock_cli_json_double(stdout, lo);
                printf(",");
                flock_cli_json_double(stdout, hi);
                printf("]");
            }
            printf(",\"top1_agree\":");
            flock_cli_json_double(stdout, flock_ppl_top1(&r->acc));
            printf(",\"mean_kl\":");
            flock_cli_json_double(stdout, flock_ppl_mean_kl(&r->acc));
            print_speed_json(&r->speed, sparse_mb(&fr->speed));
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("%zu windows x (%zu prompt + %zu scored) tokens of %s; 95%% intervals from %lld resamples of the "
           "windows\n",
           W, P, C, a->text, a->boot);
    printf("%-22s %6s %10s %9s %17s %9s %17s %10s %9s %8s %7s\n", "select", "keep", "ppl", "ppl/full", "interval",
           "vs-griff", "interval", "top1-agree", "mean-KL", "tok/s", "MB/tok");
    for (int i = n_res; i >= 0; i--) {
        const text_result *r = &res[i];
        double lo, hi, glo = NAN, ghi = NAN, gv = NAN;
        ratio_ci(a, r->win_nll, fr->win_nll, W, C, &lo, &hi);
        int g = i < n_res ? griffin_row(meth, n_res, i) : -1;
        if (g >= 0) {
            ratio_ci(a, r->win_nll, res[g].win_nll, W, C, &glo, &ghi);
            gv = flock_ppl_value(&r->acc) / flock_ppl_value(&res[g].acc);
        }
        printf("%-22s %6.3g %10.4f %9.4f [%7.4f,%7.4f] %9.4f [%7.4f,%7.4f] %10.4f %9.5f %8.2f %7.2f\n",
               method_label(&r->meth, i == n_res, lb, sizeof lb), r->meth.keep, flock_ppl_value(&r->acc),
               flock_ppl_value(&r->acc) / full_ppl, lo, hi, gv, glo, ghi, flock_ppl_top1(&r->acc),
               flock_ppl_mean_kl(&r->acc), r->speed.dec_s > 0 ? (double)r->speed.dec_tok / r->speed.dec_s : NAN,
               mean_mb(&r->speed, sparse_mb(&fr->speed)));
    }
}

/* Prompt of window w: [BOS] + P text tokens, then C continuation tokens. */
static int eval_text(flock_model *m, const eval_args *a)
{
    int32_t *toks = NULL;
    size_t W = 0;
    if (text_windows(m, a, &toks, &W) != 0)
        return FLOCK_EXIT_FAIL;
    eval_method meth[EVAL_MAX_MODES * EVAL_MAX_REFRESH * EVAL_MAX_KEEPS];
    int n_res = build_methods(a, meth, (int)(sizeof meth / sizeof meth[0]));
    text_result *res = calloc((size_t)n_res + 1, sizeof *res);
    int rc = FLOCK_EXIT_FAIL;
    if (!res)
        fprintf(stderr, "flock eval: out of memory\n");
    else {
        for (int i = 0; i < n_res; i++)
            res[i].meth = meth[i];
        if (score_text(m, a, toks, W, res, n_res) == 0) {
            report_text(a, W, res, n_res);
            rc = FLOCK_EXIT_OK;
        }
        for (int i = 0; i <= n_res; i++)
            free(res[i].win_nll);
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
    eval_method meth;
    double r_ref[3], r_full[3]; /* sums of ROUGE-1/2/L F1 */
    double *r1;                 /* [n_prompts]: each prompt's ROUGE-1 against the reference */
    size_t n;
    eval_speed speed;
} gen_result;

/* Generates for one prompt into `out` (reset first), adding to `sp`. */
static int gen_one(flock_session *s, int32_t refresh, flock_sampler *smp, const int32_t *ids, size_t n,
                   size_t max_new, const char *const *stops, size_t n_stops, gen_buf *out, eval_speed *sp)
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
    sp->dec_s += gs.decode_s;
    uint64_t decoded = gs.generated_tokens > 0 ? gs.generated_tokens - 1 : 0; /* the first comes from the prefill */
    sp->dec_tok += decoded;
    sp->dense += refresh_steps(refresh, decoded);
    sp->mb_sum += (double)flock_session_decode_bytes(s) / 1e6;
    sp->n_mb++;
    if (!out->s && !gen_append(out, "", 0))
        return -1;
    return 0;
}

static double add_rouge(double sums[3], const char *cand, const char *ref)
{
    flock_rouge r = {0, 0, 0};
    if (flock_rouge_score(cand, ref, &r) == 0) {
        sums[0] += r.r1;
        sums[1] += r.r2;
        sums[2] += r.rl;
    }
    return r.r1;
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
    res[n_res].meth = full_method;
    for (int i = 0; i <= n_res; i++)
        if (!(ss[i] = open_session(m, a, &res[i].meth, c->n_ctx)))
            goto out;
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
            gen_result *fr = &res[n_res];
            fail = gen_one(ss[n_res], 0, smp, ids, n, (size_t)a->cont_len, p.stops, p.n_stops, &full_out,
                           &fr->speed) != 0;
            if (!fail) {
                fr->r1[fr->n] = add_rouge(fr->r_ref, full_out.s, p.ref);
                add_rouge(fr->r_full, full_out.s, full_out.s);
                fr->n++;
            }
            for (int i = 0; !fail && i < n_res; i++) {
                gen_result *r = &res[i];
                fail = gen_one(ss[i], r->meth.refresh, smp, ids, n, (size_t)a->cont_len, p.stops, p.n_stops, &out, &r->speed) != 0;
                if (!fail) {
                    r->r1[r->n] = add_rouge(r->r_ref, out.s, p.ref);
                    add_rouge(r->r_full, out.s, full_out.s);
                    r->n++;
                }
            }
            c->done += !fail;
            if (!fail)
                progress("prompt", c->done, (size_t)a->n_prompts);
        }
        json_object_put(p.obj);
        if (fail)
            goto out;
    }
    progress_end();
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

/* 95% interval of the mean of x - y (y NULL: of x) over the n prompts. */
static void mean_ci(const eval_args *a, const double *x, const double *y, size_t n, double *lo, double *hi)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    *lo = *hi = NAN;
    if (!d)
        return;
    for (size_t i = 0; i < n; i++)
        d[i] = x[i] - (y ? y[i] : 0);
    flock_bootstrap_mean_ci(d, n, (int)a->boot, EVAL_BOOT_SEED, 0.95, lo, hi);
    free(d);
}

static void report_gen(const eval_args *a, const gen_result *res, int n_res, const gen_counts *c)
{
    eval_method meth[EVAL_MAX_MODES * EVAL_MAX_REFRESH * EVAL_MAX_KEEPS];
    for (int i = 0; i < n_res; i++)
        meth[i] = res[i].meth;
    char lb[64];
    if (a->json) {
        printf("{\"mode\":\"generate\",\"file\":");
        flock_cli_json_str(stdout, a->jsonl);
        printf(",\"prompts\":%zu,\"skipped_too_long\":%zu,\"max_new_tokens\":%lld,\"temperature\":%g,"
               "\"bootstrap\":%lld,\"glass_weight\":%g,\"results\":[",
               c->done, c->skipped, a->cont_len, a->temp, a->boot, a->glass_weight);
        for (int i = n_res; i >= 0; i--) {
            const gen_result *r = &res[i];
            double lo, hi;
            printf("%s{\"select\":\"%s\",\"keep\":%g,\"refresh\":%d", i == n_res ? "" : ",",
                   i == n_res ? "full" : flock_select_mode_name(r->meth.mode), r->meth.keep, r->meth.refresh);
            const char *names[3] = {"rouge1", "rouge2", "rougeL"};
            for (int k = 0; k < 3; k++) {
                printf(",\"%s\":", names[k]);
                flock_cli_json_double(stdout, r->r_ref[k] / (double)r->n);
                printf(",\"%s_vs_full\":", names[k]);
                flock_cli_json_double(stdout, r->r_full[k] / (double)r->n);
            }
            mean_ci(a, r->r1, NULL, r->n, &lo, &hi);
            printf(",\"rouge1_ci95\":[");
            flock_cli_json_double(stdout, lo);
            printf(",");
            flock_cli_json_double(stdout, hi);
            printf("]");
            int g = i < n_res ? griffin_row(meth, n_res, i) : -1;
            if (g >= 0) {
                mean_ci(a, r->r1, res[g].r1, r->n, &lo, &hi);
                printf(",\"rouge1_minus_griffin\":");
                flock_cli_json_double(stdout, (r->r_ref[0] - res[g].r_ref[0]) / (double)r->n);
                printf(",\"rouge1_minus_griffin_ci95\":[");
                flock_cli_json_double(stdout, lo);
                printf(",");
                flock_cli_json_double(stdout, hi);
                printf("]");
            }
            print_speed_json(&r->speed, sparse_mb(&res[n_res].speed));
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("%zu prompts of %s (%zu skipped: longer than the context), up to %lld new tokens, temp %g\n", c->done,
           a->jsonl, c->skipped, a->cont_len, a->temp);
    printf("%-22s %6s | %7s %17s %7s %7s | vs full: %7s %7s %7s | R-1 - griffin %17s | %8s %7s\n", "select",
           "keep", "R-1", "interval", "R-2", "R-L", "R-1", "R-2", "R-L", "interval", "tok/s", "MB/tok");
    for (int i = n_res; i >= 0; i--) {
        const gen_result *r = &res[i];
        double d = (double)r->n, lo, hi, glo = NAN, ghi = NAN, gd = NAN;
        mean_ci(a, r->r1, NULL, r->n, &lo, &hi);
        int g = i < n_res ? griffin_row(meth, n_res, i) : -1;
        if (g >= 0) {
            mean_ci(a, r->r1, res[g].r1, r->n, &glo, &ghi);
            gd = (r->r_ref[0] - res[g].r_ref[0]) / d;
        }
        printf("%-22s %6.3g | %7.4f [%7.4f,%7.4f] %7.4f %7.4f |          %7.4f %7.4f %7.4f | %13.4f "
               "[%7.4f,%7.4f] | %8.2f %7.2f\n",
               method_label(&r->meth, i == n_res, lb, sizeof lb), r->meth.keep, r->r_ref[0] / d, lo, hi,
               r->r_ref[1] / d, r->r_ref[2] / d, r->r_full[0] / d, r->r_full[1] / d, r->r_full[2] / d, gd, glo, ghi,
               r->speed.dec_s > 0 ? (double)r->speed.dec_tok / r->speed.dec_s : NAN,
               mean_mb(&r->speed, sparse_mb(&res[n_res].speed)));
    }
}

static int eval_jsonl(flock_model *m, const eval_args *a)
{
    FILE *f = fopen(a->jsonl, "r");
    if (!f) {
        fprintf(stderr, "flock eval: cannot open '%s'\n", a->jsonl);
        return FLOCK_EXIT_FAIL;
    }
    eval_method meth[EVAL_MAX_MODES * EVAL_MAX_REFRESH * EVAL_MAX_KEEPS];
    int n_res = build_methods(a, meth, (int)(sizeof meth / sizeof meth[0]));
    gen_counts c = {.n_ctx = flock_model_n_ctx(m) < 4096 ? flock_model_n_ctx(m) : 4096};
    gen_result *res = calloc((size_t)n_res + 1, sizeof *res);
    int rc = FLOCK_EXIT_FAIL;
    bool ok = res != NULL;
    for (int i = 0; ok && i <= n_res; i++) {
        if (i < n_res)
            res[i].meth = meth[i];
        ok = (res[i].r1 = calloc((size_t)a->n_prompts, sizeof *res[i].r1)) != NULL;
    }
    if (!ok)
        fprintf(stderr, "flock eval: out of memory\n");
    if (ok && score_gen(m, a, f, res, n_res, &c) == 0) {
        if (c.done == 0)
            fprintf(stderr, "flock eval: no usable prompt in '%s' (%zu longer than the context of %d)\n", a->jsonl,
                    c.skipped, c.n_ctx);
        else {
            report_gen(a, res, n_res, &c);
            rc = FLOCK_EXIT_OK;
        }
    }
    for (int i = 0; res && i <= n_res; i++)
        free(res[i].r1);
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
