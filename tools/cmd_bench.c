/* flock bench: generation speed per keep ratio, next to the machine's memory
 * bandwidth measured in the same run.
 *
 * For each keep ratio: a warm-up run, then R repeats of (reset, prefill of P
 * prompt tokens, G greedy decode steps). Reported: time to first token,
 * prefill tok/s, decode tok/s and ms/token (median over repeats, with min
 * and max), the bytes of weights read per decode token and the GB/s that
 * implies, next to the copy and read bandwidth of this machine, peak memory,
 * and the decode speed-up over keep 1.0. */
#include "run_common.h"
#include "flock/base.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_MAX_KEEPS 16
#define BENCH_MAX_REPEATS 64

/* A fixed English paragraph, cycled to the prompt length. */
static const char bench_text[] =
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a small "
    "lantern and a notebook in which he recorded the weather, the ships that passed, and the birds "
    "that rested on the railing. Over forty years he had filled more than a hundred notebooks, and "
    "the town's children liked to ask him what the sea had been like on the day they were born. ";

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void help(FILE *f)
{
    fprintf(f, "usage: flock bench BUNDLE [options]\n\n"
               "Times prefill and decode at each keep ratio (GRIFFIN selection) and compares the\n"
               "weights streamed per token with the memory bandwidth measured in the same run.\n\n"
               "  --prompt-len P   prompt tokens (default 128)\n"
               "  --gen-len G      decode steps per repeat (default 64)\n"
               "  --keep LIST      keep ratios, e.g. 1,0.75,0.5 (default: 1 and those compiled)\n"
               "  --select MODE    griffin (default), magnitude, random, griffin-adaptive or glass\n"
               "  --refresh R      reselect every R decoded tokens after a full-FF step (default 0)\n"
               "  --repeats R      timed repeats after one warm-up (default 3)\n"
               "  --threads N      threads (default: all cores)\n"
               "  --device D       cpu, cuda or auto (default): cuda runs the bundle's CUDA kernels\n"
               "                   (flockc --target sm_XY) on GPU 0; auto takes the GPU when it can,\n"
               "                   else the CPU, and says why\n"
               "  --kernels LIST   auto, generated, portable, comma-separated: each keep ratio is timed\n"
               "                   with each (default auto); e.g. generated,portable side by side\n"
               "  --pack-rows on|off  copy the kept FF rows into one block per layer after the\n"
               "                   selection (default on; costs keep x the FF weights of memory)\n"
               "  --kv-type T      the KV cache's elements: f16 (the default) or f32\n"
               "  --json           one JSON object instead of the table\n");
}

/* ---- memory bandwidth ------------------------------------------------------ */

typedef struct bw_job {
    const float *src;
    float *dst;
    size_t n;
    double sum;
} bw_job;

static void *bw_copy(void *p)
{
    bw_job *j = p;
    memcpy(j->dst, j->src, j->n * sizeof(float));
    return NULL;
}

static void *bw_read(void *p)
{
    bw_job *j = p;
    /* integer XOR: vectorizes freely, so the loop is bound by memory, not adds */
    const uint64_t *w = (const uint64_t *)j->src;
    size_t n = j->n / 2;
    uint64_t acc[4] = {0, 0, 0, 0};
    for (size_t i = 0; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] ^= w[i + k];
    j->sum = (double)(acc[0] ^ acc[1] ^ acc[2] ^ acc[3]);
    return NULL;
}

/* Best of 5 passes over 256 MiB split across `threads`; returns GB/s
 * counting bytes read + written (copy) or read (read). */
static int measure_bandwidth(int threads, double *copy_gbs, double *read_gbs)
{
    size_t bytes = (size_t)256 << 20, n = bytes / sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 1023);
    memset(b, 0, bytes);
    bw_job jobs[64];
    pthread_t tid[64];
    if (threads > 64)
        threads = 64;
    double best_copy = 1e30, best_read = 1e30, sink = 0;
    for (int pass = 0; pass < 5; pass++) {
        for (int kind = 0; kind < 2; kind++) {
            size_t per = n / (size_t)threads;
            for (int t = 0; t < threads; t++)
                jobs[t] = (bw_job){a + per * (size_t)t, b + per * (size_t)t, t == threads - 1 ? n - per * (size_t)t : per, 0};
            double t0 = now_s();
            for (int t = 0; t < threads; t++)
                pthread_create(&tid[t], NULL, kind ? bw_read : bw_copy, &jobs[t]);
            for (int t = 0; t < threads; t++)
                pthread_join(tid[t], NULL);
            double dt = now_s() - t0;
            for (int t = 0; t < threads; t++)
                sink += jobs[t].sum;
            if (kind == 0 && dt < best_copy)
                best_copy = dt;
            if (kind == 1 && dt < best_read)
                best_read = dt;
        }
    }
    *copy_gbs = 2.0 * (double)bytes / best_copy / 1e9;
    *read_gbs = (double)bytes / best_read / 1e9 + sink * 0.0;
    free(a);
    free(b);
    return 0;
}

/* ---- timing ------------------------------------------------------------------ */

typedef struct bench_row {
    double keep;
    char kernels[160]; /* flock_session_kernels */
    double ttft_ms[BENCH_MAX_REPEATS], prefill_tps[BENCH_MAX_REPEATS], decode_tps[BENCH_MAX_REPEATS];
    uint64_t bytes_per_token;
    int ok;
} bench_row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n, double *lo, double *hi)
{
    double tmp[BENCH_MAX_REPEATS];
    memcpy(tmp, v, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    *lo = tmp[0];
    *hi = tmp[n - 1];
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* One run: reset, prefill, G greedy decode steps (the argmax is part of the
 * decode cost, as a sampler's would be). */
static int run_once(flock_session *s, int32_t n_vocab, const int32_t *prompt, size_t P, long long G, double *ttft,
                    double *pre_tps, double *dec_tps)
{
    flock_session_reset(s);
    double t0 = now_s();
    if (flock_session_prefill(s, prompt, P) != FLOCK_OK)
        return -1;
    double t1 = now_s();
    *ttft = (t1 - t0) * 1e3;
    *pre_tps = (double)P / (t1 - t0);
    for (long long g = 0; g < G; g++) {
        const float *l = flock_session_last_logits(s);
        int32_t tok = 0;
        for (int32_t v = 1; v < n_vocab; v++)
            if (l[v] > l[tok])
                tok = v;
        if (flock_session_decode(s, &tok, 1) != FLOCK_OK)
            return -1;
    }
    *dec_tps = (double)G / (now_s() - t1);
    return 0;
}

/* ---- parse ------------------------------------------------------------------ */

typedef struct bench_opts {
    long long P, G, R;
    double keeps[BENCH_MAX_KEEPS];
    int n_keeps; /* 0: 1.0 and the bundle's compiled ratios */
    flock_select_mode mode;
    long long refresh;
    int threads;
    flock_device device;
    bool json;
    bool pack_rows; /* --pack-rows on|off (default on) */
    flock_kv_type kv_type; /* --kv-type (default: the session default, f16) */
    flock_kernel_choice kchoice[FLOCK_KERNELS_CHOICE_COUNT];
    int n_kchoice;
    const char *bundle;
} bench_opts;

static bool parse_keep(const char *t, int i, void *out)
{
    return flock_cli_parse_double(t, 1e-9, 1.0, &((double *)out)[i]);
}

static bool parse_kernels(const char *t, int i, void *out)
{
    return flock_kernel_choice_parse(t, &((flock_kernel_choice *)out)[i]) == FLOCK_OK;
}

/* Returns -1 when the options are good (run the benchmark), else the exit code. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.P = 128, .G = 64, .R = 3, .mode = FLOCK_SELECT_GRIFFIN, .device = FLOCK_DEVICE_AUTO, .pack_rows = true, .kv_type = FLOCK_KV_F16,
                      .kchoice = {FLOCK_KERNELS_AUTO}, .n_kchoice = 1};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        long long ll;
#define OPT(name) ((r = flock_cli_opt_value("bench", argc, argv, &i, name, &v)) != 0)
#define BAD(...) return r < 0 ? FLOCK_EXIT_USAGE : flock_cli_usage_error("bench", __VA_ARGS__)
        if (flock_cli_is_help(argv[i])) {
            help(stdout);
            return FLOCK_EXIT_OK;
        } else if (OPT("--prompt-len")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &o->P))
                BAD("bad --prompt-len '%s'", v);
        } else if (OPT("--gen-len")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 20, &o->G))
                BAD("bad --gen-len '%s'", v);
        } else if (OPT("--repeats")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, BENCH_MAX_REPEATS, &o->R))
                BAD("bad --repeats '%s' (1 to %d)", v, BENCH_MAX_REPEATS);
        } else if (OPT("--threads")) {
            if (r < 0 || !flock_cli_parse_int(v, 1, 256, &ll))
                BAD("bad --threads '%s'", v);
            o->threads = (int)ll;
        } else if (OPT("--kernels")) {
            if (r < 0 || !flock_cli_parse_list(v, FLOCK_KERNELS_CHOICE_COUNT, &o->n_kchoice, parse_kernels, o->kchoice))
                BAD("bad --kernels list '%s' (auto, generated, portable)", v);
        } else if (OPT("--select")) {
            if (r < 0 || flock_select_mode_parse(v, &o->mode) != FLOCK_OK)
                BAD("bad --select '%s' (griffin, magnitude, random, griffin-adaptive, glass)", v);
        } else if (OPT("--refresh")) {
            if (r < 0 || !flock_cli_parse_int(v, 0, 1 << 30, &o->refresh))
                BAD("bad --refresh '%s' (tokens, 0 = never)", v);
        } else if (OPT("--device")) {
            if (r < 0 || flock_device_parse(v, &o->device) != FLOCK_OK)
                BAD("bad --device '%s' (cpu, cuda or auto)", v);
        } else if (OPT("--keep")) {
            if (r < 0 || !flock_cli_parse_list(v, BENCH_MAX_KEEPS, &o->n_keeps, parse_keep, o->keeps))
                BAD("bad --keep list '%s'", v);
        } else if (OPT("--pack-rows")) {
            if (r < 0 || (strcmp(v, "on") != 0 && strcmp(v, "off") != 0))
                BAD("bad --pack-rows '%s' (on or off)", v);
            o->pack_rows = strcmp(v, "on") == 0;
        } else if (OPT("--kv-type")) {
            if (r < 0 || flock_kv_type_parse(v, &o->kv_type) != FLOCK_OK)
                BAD("bad --kv-type '%s' (f16 or f32)", v);
        } else if (strcmp(argv[i], "--json") == 0) {
            o->json = true;
        } else if (argv[i][0] == '-' || o->bundle) {
            return flock_cli_usage_error("bench", "unexpected argument '%s'", argv[i]);
        } else {
            o->bundle = argv[i];
        }
#undef BAD
#undef OPT
    }
    if (!o->bundle)
        return flock_cli_usage_error("bench", "needs a BUNDLE");
    return -1;
}

/* ---- measure ----------------------------------------------------------------- */

/* What one benchmark run measured. */
typedef struct bench_result {
    bench_row *rows; /* [n_rows]: keep ratio ki with kernel choice c at ki * n_kchoice + c */
    int n_rows;
    int threads;
    flock_device device;   /* what the sessions ran on (auto may fall back to the CPU) */
    char device_note[512];
    const char *kernels;   /* the last row's kernels */
    double load_s, peak_mb, copy_gbs, read_gbs;
    double weights_mb, kv_mb; /* what the model holds, and the KV cache at prompt + decode tokens */
    flock_kv_type kv_type;    /* the cache's elements in use (f16 on a GPU whatever was asked) */
    double packed_mb;         /* the most any row's session held in packed kept FF rows */
} bench_result;

/* The paragraph's tokens, cycled to P after the BOS (when the model has one). */
static flock_status bench_prompt(flock_model *m, long long P, int32_t *prompt, flock_error *err)
{
    int32_t para[512];
    size_t n_para = 0;
    flock_status st = flock_tokenize(m, bench_text, sizeof bench_text - 1, false, para, 512, &n_para, err);
    if (st == FLOCK_OK && n_para == 0)
        st = flock_error_set(err, FLOCK_E_INVALID_ARG, "the benchmark paragraph has no tokens");
    if (st != FLOCK_OK)
        return st;
    size_t off = 0;
    if (flock_model_bos(m) >= 0)
        prompt[off++] = flock_model_bos(m);
    for (; off < (size_t)P; off++)
        prompt[off] = para[off % n_para];
    return FLOCK_OK;
}

/* Every (keep, kernels) row: a session, a warm-up, R timed repeats; then
 * the peak memory and the machine's bandwidth. Returns 0, or -1 after
 * printing why. */
static int measure(flock_model *m, const bench_opts *o, const int32_t *prompt, bench_result *res)
{
    int32_t n_vocab = flock_model_n_vocab(m);
    flock_error err = {0};
    for (int ri = 0; ri < res->n_rows; ri++) {
        int ki = ri / o->n_kchoice;
        flock_session_opts so = flock_session_default_opts();
        so.keep = o->keeps[ki];
        so.kernels = o->kchoice[ri % o->n_kchoice];
        so.select = o->mode;
        so.refresh = (int32_t)o->refresh;
        so.threads = o->threads;
        so.n_ctx = (int32_t)(o->P + o->G);
        so.device = o->device;
        so.pack_rows = o->pack_rows;
        so.kv_type = o->kv_type;
        flock_session *s = NULL;
        if (flock_session_create(m, &so, &s, &err) != FLOCK_OK) {
            fprintf(stderr, "flock bench: keep %g: %s\n", o->keeps[ki], err.msg);
            return -1;
        }
        bench_row *row = &res->rows[ri];
        row->keep = o->keeps[ki];
        double d0, d1, d2;
        int bad = run_once(s, n_vocab, prompt, (size_t)o->P, o->G < 8 ? o->G : 8, &d0, &d1, &d2); /* warm-up */
        for (int r = 0; !bad && r < o->R; r++) {
            bad = run_once(s, n_vocab, prompt, (size_t)o->P, o->G, &row->ttft_ms[r], &row->prefill_tps[r],
                           &row->decode_tps[r]);
            if (!o->json)
                fprintf(stderr, "\r[bench] keep %g: repeat %d/%lld", o->keeps[ki], r + 1, o->R);
        }
        if (bad) {
            fprintf(stderr, "flock bench: %s\n", flock_session_error(s));
            flock_session_free(s);
            return -1;
        }
        row->bytes_per_token = flock_session_decode_bytes(s);
        res->kv_mb = (double)flock_session_kv_bytes(s, (size_t)(o->P + o->G)) / 1e6;
        double packed = (double)flock_session_packed_bytes(s) / 1e6;
        if (packed > res->packed_mb)
            res->packed_mb = packed;
        res->threads = flock_session_threads(s);
        res->kv_type = flock_session_kv_type(s);
        res->device = flock_session_device(s);
        snprintf(res->device_note, sizeof res->device_note, "%s", flock_session_device_note(s));
        snprintf(row->kernels, sizeof row->kernels, "%s", flock_session_kernels(s));
        res->kernels = row->kernels;
        row->ok = 1;
        flock_session_free(s);
    }
    if (!o->json)
        fprintf(stderr, "\r%60s\r", "");
    /* peak memory of the model and its sessions, before the bandwidth buffers */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->peak_mb = (double)ru.ru_maxrss * 1024.0 / 1e6;
    res->weights_mb = (double)flock_model_weight_bytes(m) / 1e6;
    if (measure_bandwidth(res->threads > 0 ? res->threads : 1, &res->copy_gbs, &res->read_gbs) != 0)
        fprintf(stderr, "flock bench: not enough memory to measure bandwidth\n");
    return 0;
}

/* ---- report ------------------------------------------------------------------ */

static void report(flock_model *m, const bench_opts *o, const bench_result *res)
{
    long long P = o->P, G = o->G, R = o->R;
    /* speed-ups against keep 1.0 with the same kernel choice */
    double base_dec[FLOCK_KERNELS_CHOICE_COUNT] = {0};
    for (int ri = 0; ri < res->n_rows; ri++)
        if (res->rows[ri].keep == 1.0) {
            double lo, hi;
            base_dec[ri % o->n_kchoice] = median(res->rows[ri].decode_tps, (int)R, &lo, &hi);
        }
    const char *model_k_why = "";
    const char *model_k = flock_model_cpu_kernels(m, &model_k_why);
    if (o->json) {
        printf("{\"bundle\":");
        flock_cli_json_str(stdout, o->bundle);
        printf(",\"arch\":");
        flock_cli_json_str(stdout, flock_model_arch(m));
        printf(",\"storage\":");
        flock_cli_json_str(stdout, flock_model_storage(m));
        printf(",\"device\":\"%s\",\"device_note\":", flock_device_name(res->device));
        flock_cli_json_str(stdout, res->device_note);
        printf(",\"threads\":%d,\"kernels\":\"%s\",\"prompt_len\":%lld,\"gen_len\":%lld,"
               "\"repeats\":%lld,\"select\":\"%s\",\"refresh\":%lld,\"pack_rows\":%s,\"load_s\":%.3f,\"copy_gbs\":%.2f,\"read_gbs\":%.2f,"
               "\"peak_rss_mb\":%.1f,\"weights_mb\":%.1f,\"kv_type\":\"%s\",\"kv_mb\":%.1f,\"packed_mb\":%.1f,",
               res->threads, res->kernels, P, G, R, flock_select_mode_name(o->mode), o->refresh,
               o->pack_rows ? "true" : "false", res->load_s,
               res->copy_gbs,
               res->read_gbs, res->peak_mb, res->weights_mb, flock_kv_type_name(res->kv_type), res->kv_mb,
               res->packed_mb);
        printf("\"generated_kernels\":");
        flock_cli_json_str(stdout, model_k ? model_k : "");
        printf(",\"generated_fallback\":");
        flock_cli_json_str(stdout, model_k_why);
        printf(",\"results\":[");
    } else {
        printf("%s: %s, %s weights, %d threads (%s kernels), prompt %lld tokens, %lld decode steps, %lld repeats, %s\n",
               o->bundle, flock_model_arch(m), flock_model_storage(m), res->threads, res->kernels, P, G, R,
               flock_select_mode_name(o->mode));
        printf("device: %s\n", res->device_note);
        printf("memory bandwidth (same run): copy %.2f GB/s, read %.2f GB/s; load %.2f s\n", res->copy_gbs,
               res->read_gbs, res->load_s);
        printf("memory: weights %.1f MB + KV cache %.1f MB (%s, %lld tokens); peak RSS %.1f MB = %.2fx",
               res->weights_mb, res->kv_mb, flock_kv_type_name(res->kv_type), P + G, res->peak_mb,
               res->weights_mb + res->kv_mb > 0 ? res->peak_mb / (res->weights_mb + res->kv_mb) : 0.0);
        if (res->packed_mb > 0)
            printf(" (of it, packed kept FF rows: %.1f MB)", res->packed_mb);
        printf("\n");
        printf("generated kernels: %s%s%s\n", model_k ? model_k : "none", model_k ? "" : " - ", model_k_why);
        printf("%-26s %6s %10s %11s %11s %9s %15s %9s %7s %8s\n", "kernels", "keep", "TTFT ms", "prefill t/s",
               "decode t/s", "ms/token", "(min-max t/s)", "MB/token", "GB/s", "vs keep1");
    }
    for (int ri = 0; ri < res->n_rows; ri++) {
        const bench_row *row = &res->rows[ri];
        double lo, hi, plo, phi, tlo, thi;
        double dec = median(row->decode_tps, (int)R, &lo, &hi);
        double pre = median(row->prefill_tps, (int)R, &plo, &phi);
        double ttft = median(row->ttft_ms, (int)R, &tlo, &thi);
        double mb = (double)row->bytes_per_token / 1e6, gbs = (double)row->bytes_per_token * dec / 1e9;
        double base = base_dec[ri % o->n_kchoice], speedup = base > 0 ? dec / base : NAN;
        if (o->json) {
            printf("%s{\"kernels\":\"%s\",\"keep\":%g,\"ttft_ms\":%.3f,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.3f,"
                   "\"decode_tok_s_min\":%.3f,\"decode_tok_s_max\":%.3f,\"ms_per_token\":%.4f,"
                   "\"weight_bytes_per_token\":%llu,\"achieved_gbs\":%.3f,\"speedup_vs_keep1\":",
                   ri ? "," : "", row->kernels, row->keep, ttft, pre, dec, lo, hi, 1e3 / dec,
                   (unsigned long long)row->bytes_per_token, gbs);
            flock_cli_json_double(stdout, speedup);
            printf("}");
        } else {
            printf("%-26s %6g %10.2f %11.1f %11.2f %9.3f %7.2f-%-7.2f %9.2f %7.2f %8.3f\n", row->kernels, row->keep,
                   ttft, pre, dec, 1e3 / dec, lo, hi, mb, gbs, speedup);
        }
    }
    if (o->json)
        printf("]}\n");
}

/* ---- the command ------------------------------------------------------------- */

int flock_cmd_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    flock_error err = {0};
    bench_result res = {.kernels = "?"};
    /* The device first: --device cuda fails before the model is loaded. */
    if (flock_device_resolve(o.device, &res.device, res.device_note, sizeof res.device_note, &err) != FLOCK_OK) {
        fprintf(stderr, "flock bench: %s (%s)\n", err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    flock_model *m = NULL;
    double t0 = now_s();
    if (flock_model_open(o.bundle, NULL, &m, &err) != FLOCK_OK) {
        fprintf(stderr, "flock bench: %s (%s)\n", err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    res.load_s = now_s() - t0;
    if (o.n_keeps == 0) {
        o.keeps[o.n_keeps++] = 1.0;
        size_t nk;
        const double *k = flock_model_keep_ratios(m, &nk);
        for (size_t i = 0; i < nk && o.n_keeps < BENCH_MAX_KEEPS; i++)
            if (k[i] < 1.0)
                o.keeps[o.n_keeps++] = k[i];
    }
    rc = FLOCK_EXIT_FAIL;
    int32_t *prompt = malloc((size_t)o.P * sizeof *prompt);
    res.n_rows = o.n_keeps * o.n_kchoice;
    res.rows = calloc((size_t)res.n_rows, sizeof *res.rows);
    if (o.P + o.G > flock_model_n_ctx(m))
        fprintf(stderr, "flock bench: prompt %lld + generation %lld tokens exceed the model's context of %d\n", o.P,
                o.G, flock_model_n_ctx(m));
    else if (!prompt || !res.rows)
        fprintf(stderr, "flock bench: out of memory\n");
    else if (bench_prompt(m, o.P, prompt, &err) != FLOCK_OK)
        fprintf(stderr, "flock bench: cannot tokenize the benchmark prompt: %s\n", err.msg);
    else if (measure(m, &o, prompt, &res) == 0) {
        report(m, &o, &res);
        rc = FLOCK_EXIT_OK;
    }
    free(res.rows);
    free(prompt);
    flock_model_free(m);
    return rc;
}
