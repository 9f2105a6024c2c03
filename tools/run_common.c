/* Options and steps shared by the commands that run a model. */
#include "run_common.h"

#include <stdlib.h>
#include <string.h>

void run_args_init(run_args *a)
{
    memset(a, 0, sizeof *a);
    a->n_predict = 128;
    a->prompt_len = -1;
    a->so = flock_session_default_opts();
    a->sp = flock_sampler_default_opts();
}

int run_args_parse_one(const char *cmd, int argc, char **argv, int *i, run_args *a)
{
    const char *v = NULL;
    int r;
    long long ll;
    double d;
#define OPT(name) ((r = flock_cli_opt_value(cmd, argc, argv, i, name, &v)) != 0)
#define BAD(what) (flock_cli_usage_error(cmd, "bad value '%s' for %s", v, what), -1)
    if (OPT("-p") || (r == 0 && OPT("--prompt"))) {
        if (r < 0)
            return -1;
        a->prompt = v;
    } else if (OPT("--ids")) {
        if (r < 0)
            return -1;
        a->ids = v;
    } else if (OPT("-n")) {
        if (r < 0 || !flock_cli_parse_int(v, 0, 1 << 24, &a->n_predict))
            return r < 0 ? -1 : BAD("-n");
    } else if (OPT("--keep")) {
        if (r < 0 || !flock_cli_parse_double(v, 1e-9, 1.0, &a->so.keep))
            return r < 0 ? -1 : BAD("--keep (a fraction in (0, 1])");
    } else if (OPT("--select")) {
        if (r < 0 || flock_select_mode_parse(v, &a->so.select) != FLOCK_OK)
            return r < 0 ? -1 : BAD("--select (griffin, magnitude, random, griffin-adaptive or glass)");
    } else if (OPT("--refresh")) {
        if (r < 0 || !flock_cli_parse_int(v, 0, 1 << 30, &ll))
            return r < 0 ? -1 : BAD("--refresh (tokens, 0 = never)");
        a->so.refresh = (int32_t)ll;
    } else if (OPT("--glass-weight")) {
        if (r < 0 || !flock_cli_parse_double(v, 0, 1, &a->so.glass_weight))
            return r < 0 ? -1 : BAD("--glass-weight (in [0, 1])");
    } else if (OPT("--pack-rows")) {
        if (r < 0 || (strcmp(v, "on") != 0 && strcmp(v, "off") != 0))
            return r < 0 ? -1 : BAD("--pack-rows (on or off)");
        a->so.pack_rows = strcmp(v, "on") == 0;
        a->pack_rows_given = true;
    } else if (OPT("--kv-type")) {
        if (r < 0 || flock_kv_type_parse(v, &a->so.kv_type) != FLOCK_OK)
            return r < 0 ? -1 : BAD("--kv-type (f16 or f32)");
    } else if (OPT("--temp")) {
        if (r < 0 || !flock_cli_parse_double(v, 0, 100, &d))
            return r < 0 ? -1 : BAD("--temp");
        a->sp.temperature = (float)d;
    } else if (OPT("--top-k")) {
        if (r < 0 || !flock_cli_parse_int(v, 0, 1 << 30, &ll))
            return r < 0 ? -1 : BAD("--top-k");
        a->sp.top_k = (int32_t)ll;
    } else if (OPT("--top-p")) {
        if (r < 0 || !flock_cli_parse_double(v, 1e-9, 1, &d))
            return r < 0 ? -1 : BAD("--top-p");
        a->sp.top_p = (float)d;
    } else if (OPT("--min-p")) {
        if (r < 0 || !flock_cli_parse_double(v, 0, 1, &d))
            return r < 0 ? -1 : BAD("--min-p");
        a->sp.min_p = (float)d;
    } else if (OPT("--repeat-penalty")) {
        if (r < 0 || !flock_cli_parse_double(v, 1e-3, 100, &d))
            return r < 0 ? -1 : BAD("--repeat-penalty");
        a->sp.repeat_penalty = (float)d;
    } else if (OPT("--seed")) {
        if (r < 0 || !flock_cli_parse_int(v, 0, 0x7fffffffffffffffLL, &ll))
            return r < 0 ? -1 : BAD("--seed");
        a->sp.seed = a->so.seed = (uint64_t)ll;
    } else if (OPT("--threads")) {
        if (r < 0 || !flock_cli_parse_int(v, 1, 256, &ll))
            return r < 0 ? -1 : BAD("--threads");
        a->so.threads = (int)ll;
    } else if (OPT("--device")) {
        if (r < 0 || flock_device_parse(v, &a->so.device) != FLOCK_OK)
            return r < 0 ? -1 : BAD("--device (cpu, cuda or auto)");
    } else if (OPT("--kernels")) {
        if (r < 0 || flock_kernel_choice_parse(v, &a->so.kernels) != FLOCK_OK)
            return r < 0 ? -1 : BAD("--kernels (auto, generated or portable)");
    } else if (OPT("--ctx")) {
        if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 24, &ll))
            return r < 0 ? -1 : BAD("--ctx");
        a->so.n_ctx = (int32_t)ll;
    } else if (OPT("--stop")) {
        if (r < 0)
            return -1;
        if (a->n_stops == RUN_MAX_STOPS)
            return flock_cli_usage_error(cmd, "at most %d --stop strings", RUN_MAX_STOPS), -1;
        a->stops[a->n_stops++] = v;
    } else if (OPT("--prompt-len")) {
        if (r < 0 || !flock_cli_parse_int(v, 1, 1 << 24, &a->prompt_len))
            return r < 0 ? -1 : BAD("--prompt-len");
    } else if (OPT("--out") || (r == 0 && OPT("-o"))) {
        if (r < 0)
            return -1;
        a->out = v;
    } else if (strcmp(argv[*i], "--chat") == 0) {
        a->chat = true;
    } else if (strcmp(argv[*i], "--json") == 0) {
        a->json = true;
    } else {
        return 0;
    }
    return 1;
#undef OPT
#undef BAD
}

int run_args_parse(const char *cmd, int argc, char **argv, run_args *a, void (*help)(FILE *))
{
    for (int i = 1; i < argc; i++) {
        if (flock_cli_is_help(argv[i])) {
            help(stdout);
            return FLOCK_EXIT_OK;
        }
        int r = run_args_parse_one(cmd, argc, argv, &i, a);
        if (r < 0)
            return FLOCK_EXIT_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || a->bundle)
            return flock_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        a->bundle = argv[i];
    }
    return -1;
}

void run_args_help(FILE *f, bool sampling)
{
    fprintf(f, "  --keep K            fraction of FF neurons kept in generation (default 1.0)\n"
               "  --select MODE       griffin (default, the paper), magnitude, random,\n"
               "                      griffin-adaptive (per-layer counts from the prompt, same\n"
               "                      total) or glass (prompt rank blended with the static one)\n"
               "  --refresh R         every R generated tokens, one runs with the full FF and the\n"
               "                      experts are selected again from prompt + those (default 0: never)\n"
               "  --glass-weight W    glass: weight of the prompt's rank, in [0, 1] (default 0.9)\n"
               "  --seed S            seed of the sampler and of random selection (default 0)\n"
               "  --threads N         threads (default: all cores)\n"
               "  --device D          cpu, cuda or auto (default): cuda runs the bundle's CUDA kernels\n"
               "                      (flockc --target sm_XY) on GPU 0; auto takes the GPU when it\n"
               "                      can, else the CPU, and says why\n"
               "  --kernels K         generated (the bundle's LLVM kernels when they run here),\n"
               "                      portable (the built-in ones) or auto (default: $FLOCK_KERNELS,\n"
               "                      else generated for f32 bundles, built-in for f16/bf16)\n"
               "  --ctx N             context length in tokens (default: min(trained, 4096))\n"
               "  --pack-rows on|off  CPU, keep < 1: copy the kept FF rows into one block per layer\n"
               "                      after each selection, so the decode streams them (faster; keep x\n"
               "                      the FF weights more memory per session; default on)\n"
               "  --kv-type T         the KV cache's elements: f16 (the default: half the bytes per\n"
               "                      position) or f32 (K and V as computed)\n");
    if (sampling)
        fprintf(f, "  -n N                tokens to generate (default 128)\n"
                   "  --temp T            temperature; 0 = greedy (default 0.8)\n"
                   "  --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"
                   "  --top-p P           nucleus sampling; 1 = off (default 0.95)\n"
                   "  --min-p P           drop tokens below P x the best one's probability (default 0.05)\n"
                   "  --repeat-penalty R  penalty on the last 64 tokens; 1 = off (default 1)\n"
                   "  --stop STR          stop when the text contains STR (repeatable)\n");
}

int32_t *run_parse_ids(const char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return NULL;
    size_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff || (*end && *end != ',')) {
            free(ids);
            return NULL;
        }
        ids[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    *n = k;
    if (k == 0) {
        free(ids);
        return NULL;
    }
    return ids;
}

int32_t *run_prompt_ids(const char *cmd, flock_model *m, const run_args *a, const char *text, size_t *n)
{
    if (a->ids && !text) {
        int32_t *ids = run_parse_ids(a->ids, n);
        if (!ids)
            fprintf(stderr, "flock %s: --ids must be a comma-separated list of token ids, got '%s'\n", cmd, a->ids);
        return ids;
    }
    if (!text)
        text = a->prompt;
    size_t len = strlen(text), need = 0;
    flock_error err = {0};
    size_t cap = len + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return NULL;
    flock_status st = flock_tokenize(m, text, len, true, ids, cap, &need, &err);
    if (st == FLOCK_E_RANGE && need > cap) {
        int32_t *bigger = realloc(ids, need * sizeof *ids);
        if (!bigger) {
            free(ids);
            return NULL;
        }
        ids = bigger;
        st = flock_tokenize(m, text, len, true, ids, need, &need, &err);
    }
    if (st != FLOCK_OK) {
        fprintf(stderr, "flock %s: tokenizing the prompt: %s\n", cmd, err.msg);
        free(ids);
        return NULL;
    }
    *n = need;
    return ids;
}

int run_open_model(const char *cmd, const run_args *a, flock_model **m)
{
    flock_error err = {0};
    /* The device first: --device cuda fails before a large model is loaded. */
    flock_device got;
    char note[512];
    if (flock_device_resolve(a->so.device, &got, note, sizeof note, &err) != FLOCK_OK) {
        fprintf(stderr, "flock %s: %s (%s)\n", cmd, err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    if (flock_model_open(a->bundle, NULL, m, &err) != FLOCK_OK) {
        fprintf(stderr, "flock %s: %s (%s)\n", cmd, err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    return FLOCK_EXIT_OK;
}

int run_open_session(const char *cmd, const run_args *a, flock_model *m, flock_session **s)
{
    flock_error err = {0};
    if (flock_session_create(m, &a->so, s, &err) != FLOCK_OK) {
        fprintf(stderr, "flock %s: %s (%s)\n", cmd, err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    return FLOCK_EXIT_OK;
}

int run_open(const char *cmd, const run_args *a, flock_model **m, flock_session **s)
{
    if (run_open_model(cmd, a, m) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    if (run_open_session(cmd, a, *m, s) != FLOCK_EXIT_OK) {
        flock_model_free(*m);
        *m = NULL;
        return FLOCK_EXIT_FAIL;
    }
    return FLOCK_EXIT_OK;
}
