/* The compiler driver: options, frontend dispatch, passes, and the bundle
 * (manifest, tensors streamed one at a time, tokenizer and program sections). */
#include "cuda_sections.h"
#include "error_impl.h"
#include "frontend.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

flock_compile_opts flock_compile_default_opts(void)
{
    flock_compile_opts o;
    memset(&o, 0, sizeof o);
    o.keep[0] = 0.25;
    o.keep[1] = 0.5;
    o.keep[2] = 0.75;
    o.n_keep = 3;
    o.dtype = FLOCK_DTYPE_F16;
    o.down_dtype = FLOCK_DTYPE_Q8_0;
    snprintf(o.targets[0], sizeof o.targets[0], "cpu");
    o.n_targets = 1;
    o.level = 3; /* zstd-compressed chunks; 0 = stored, mapped in place */
    return o;
}

/* Splits a comma-separated list into items (empty items are errors). */
static flock_status split(const char *list, const char *what, char items[][32], size_t max, size_t *n,
                          flock_error *err)
{
    *n = 0;
    if (!list || !*list)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "%s: empty list", what);
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == 0 || len >= 32)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "%s: bad item '%.*s' in '%s'", what, (int)len, p, list);
        if (*n == max)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "%s: more than %zu items in '%s'", what, max, list);
        memcpy(items[*n], p, len);
        items[(*n)++][len] = '\0';
        if (!c)
            return FLOCK_OK;
        p = c + 1;
    }
}

flock_status flock_compile_parse_keep(flock_compile_opts *o, const char *list, flock_error *err)
{
    char items[FLOCK_MAX_KEEP][32];
    size_t n;
    TRY(split(list, "--keep", items, FLOCK_MAX_KEEP, &n, err));
    double keep[FLOCK_MAX_KEEP];
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        keep[i] = strtod(items[i], &end);
        if (*end || errno || !isfinite(keep[i]) || keep[i] <= 0 || keep[i] > 1)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "--keep: '%s' is not a ratio in (0, 1]", items[i]);
    }
    memcpy(o->keep, keep, n * sizeof *keep);
    o->n_keep = n;
    return FLOCK_OK;
}

flock_status flock_compile_parse_targets(flock_compile_opts *o, const char *list, flock_error *err)
{
    static const char *const gpu[] = {"sm_80", "sm_86", "sm_89", "sm_90"};
    char items[FLOCK_MAX_TARGETS][32];
    size_t n;
    TRY(split(list, "--target", items, FLOCK_MAX_TARGETS, &n, err));
    for (size_t i = 0; i < n; i++) {
        bool ok = flock_compile_is_cpu_target(items[i]);
        for (size_t k = 0; k < sizeof gpu / sizeof gpu[0]; k++)
            ok |= !strcmp(items[i], gpu[k]);
        if (!ok)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "--target: unknown target '%s' (cpu, x86-64-v3, "
                                   "x86-64-v4, aarch64, sm_80, sm_86, sm_89, sm_90)", items[i]);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(items[i], items[j]))
                return flock_error_set(err, FLOCK_E_INVALID_ARG, "--target: '%s' given twice", items[i]);
        if (flock_compile_is_cpu_target(items[i])) {
            if (flock_compile_check_cpu_target(items[i], err) != FLOCK_OK) {
                if (err)
                    err->status = FLOCK_E_INVALID_ARG;
                return FLOCK_E_INVALID_ARG;
            }
        }
    }
    TRY(flock_cuda_check_targets(items, n, err));
    for (size_t i = 0; i < n; i++) /* known names are short */
        memcpy(o->targets[i], items[i], strlen(items[i]) + 1);
    o->n_targets = n;
    return FLOCK_OK;
}

static flock_status build(const flock_source *s, const flock_compile_opts *o, cmodel *cm, flock_error *err)
{
    memset(cm, 0, sizeof *cm);
    if (flock_program_create(&cm->p))
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    const char *arch = flock_source_arch(s);
    fe f = {s, cm, err, arch};
    flock_status st;
    if (!strcmp(arch, "llama") || !strcmp(arch, "mistral") || !strcmp(arch, "qwen2"))
        st = flock_frontend_llama(&f);
    else if (!strcmp(arch, "gemma") || !strcmp(arch, "gemma2") || !strcmp(arch, "gemma3"))
        st = flock_frontend_gemma(&f);
    else if (!strcmp(arch, "opt") || !strcmp(arch, "gpt2"))
        st = flock_frontend_opt(&f);
    else
        st = flock_error_set(err, FLOCK_E_UNSUPPORTED, "unsupported architecture '%s' (supported: llama, mistral, "
                             "qwen2, gemma, gemma2, gemma3, opt, gpt2)", arch);
    if (!st) {
        st = flock_program_verify(cm->p, err);
        if (st)
            flock_error_prefix(err, st, "%s frontend produced an invalid program", arch);
    }
    if (!st)
        st = flock_pass_pack_ffn(cm, err);
    if (!st)
        st = flock_pass_magnitude_rank(cm, err);
    if (!st)
        st = flock_pass_storage_dtype(cm, s, o, &cm->n_dtype_fallback, err);
    if (!st) {
        st = flock_program_verify(cm->p, err);
        if (st)
            flock_error_prefix(err, st, "after the passes");
    }
    if (st)
        cmodel_free(cm);
    return st;
}

flock_compile_opts flock_compile_resolve_opts(const flock_source *s, const flock_compile_opts *o)
{
    flock_compile_opts r = o ? *o : flock_compile_default_opts(); /* NULL: the defaults */
    if (r.auto_dtype)
        r.source_dtype = flock_source_is_quantized(s);
    r.auto_dtype = false;
    return r;
}

flock_status flock_compile_program(const flock_source *s, const flock_compile_opts *o, flock_program **out,
                                   flock_error *err)
{
    if (!s || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_compile_program: NULL argument");
    flock_compile_opts def = flock_compile_default_opts();
    const flock_compile_opts r = flock_compile_resolve_opts(s, o ? o : &def);
    cmodel cm;
    TRY(build(s, &r, &cm, err));
    *out = cm.p;
    cm.p = NULL;
    cmodel_free(&cm);
    return FLOCK_OK;
}

/* ---- the bundle ------------------------------------------------------------------ */

static flock_status fill_manifest(flock_manifest *m, const cmodel *cm, const flock_source *s,
                                  const flock_compile_opts *o, const flock_tokenizer_data *tok, flock_error *err)
{
    const flock_model_config *c = &cm->p->cfg;
    uint64_t hash = 0;
    TRY(flock_source_hash(s, &hash, err));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, hash);
    const char *targets[FLOCK_MAX_TARGETS];
    for (size_t i = 0; i < o->n_targets; i++)
        targets[i] = o->targets[i];
    flock_status st = FLOCK_OK;
#define SET(call) if (!st) st = (call)
    SET(flock_manifest_set_str(m, "arch", c->arch));
    SET(flock_manifest_set_str(m, "model_name", cm->model_name));
    SET(flock_manifest_set_int(m, "n_layer", c->n_layer));
    SET(flock_manifest_set_int(m, "d_model", c->d_model));
    SET(flock_manifest_set_int(m, "n_vocab", c->n_vocab));
    SET(flock_manifest_set_int(m, "n_ctx", c->n_ctx));
    SET(flock_manifest_set_int(m, "d_ff", c->d_ff));
    SET(flock_manifest_set_int(m, "n_head", cm->n_head));
    SET(flock_manifest_set_int(m, "n_kv_head", cm->n_kv_head));
    SET(flock_manifest_set_int(m, "head_dim", cm->head_dim));
    SET(flock_manifest_set_float(m, "norm_eps", cm->norm_eps));
    SET(flock_manifest_set_float(m, "rope_theta", cm->rope_theta));
    SET(flock_manifest_set_float_arr(m, "keep_ratios", o->keep, o->n_keep));
    SET(flock_manifest_set_str(m, "storage_dtype", o->source_dtype ? "source" : flock_dtype_name(o->dtype)));
    SET(flock_manifest_set_str(m, "compiler_version", FLOCK_COMPILER_VERSION));
    SET(flock_manifest_set_str(m, "source_kind", flock_source_kind_of(s) == FLOCK_SOURCE_GGUF ? "gguf" : "hf"));
    SET(flock_manifest_set_str(m, "source_hash", hex));
    SET(flock_manifest_set_str_arr(m, "targets", targets, o->n_targets));
    SET(flock_manifest_set_int(m, "bos_id", tok->bos_id));
    SET(flock_manifest_set_int(m, "eos_id", tok->eos_id));
    SET(flock_manifest_set_int(m, "eot_id", tok->eot_id));
    SET(flock_manifest_set_int(m, "pad_id", tok->pad_id));
    SET(flock_manifest_set_int(m, "unk_id", tok->unk_id));
    SET(flock_manifest_set_int(m, "add_bos", tok->add_bos));
#undef SET
    if (st)
        return flock_error_set(err, st, "manifest: cannot set a key (%s)", flock_status_str(st));
    return FLOCK_OK;
}

static flock_status load_tokenizer(const flock_source *s, flock_tokenizer_data **tok, flock_error *err)
{
    flock_status st = flock_source_kind_of(s) == FLOCK_SOURCE_GGUF
                          ? flock_tokdata_from_gguf(flock_source_gguf(s), tok, err)
                          : flock_tokdata_from_hf(flock_source_hf(s), tok, err);
    return st ? flock_error_prefix(err, st, "tokenizer") : FLOCK_OK;
}

static flock_status write_tensors(flock_bundle_writer *w, const cmodel *cm, const flock_source *s,
                                  const flock_compile_opts *o, flock_compile_stats *stats, flock_error *err)
{
    const flock_program *p = cm->p;
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        const flock_tensor_ref *t = &p->tensors[i];
        if (o->progress)
            o->progress(o->progress_user, t->name, i, p->n_tensors, 0, 0);
        void *bytes = NULL;
        size_t size = 0;
        TRY(cmodel_tensor_bytes(cm, s, i, &bytes, &size, err));
        flock_status st = flock_bundle_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape, bytes, size, err);
        free(bytes);
        if (st)
            return st;
        stats->tensor_bytes += size;
        stats->n_tensors++;
        if (o->progress)
            o->progress(o->progress_user, t->name, i, p->n_tensors, size, 1);
    }
    return FLOCK_OK;
}

flock_status flock_compile_bundle(const flock_source *s, const flock_compile_opts *o, const char *out_path,
                                  flock_compile_stats *stats, flock_error *err)
{
    if (!s || !out_path)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_compile_bundle: NULL argument");
    flock_compile_opts def = flock_compile_default_opts();
    const flock_compile_opts r = flock_compile_resolve_opts(s, o ? o : &def);
    o = &r;
    if (o->n_keep == 0 || o->n_targets == 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "compile: at least one keep ratio and one target");
    flock_compile_stats local = {0};
    cmodel cm;
    TRY(build(s, o, &cm, err));
    local.n_dtype_fallback = cm.n_dtype_fallback;
    snprintf(local.dtype_fallback, sizeof local.dtype_fallback, "%s", cm.n_dtype_fallback ? cm.fallback_note : "");
    flock_tokenizer_data *tok = NULL;
    flock_manifest *man = NULL;
    flock_bundle_writer *w = NULL;
    uint8_t *tok_bytes = NULL, *prog_bytes = NULL;
    size_t tok_size = 0, prog_size = 0;
    flock_bundle_writer_opts wo = flock_bundle_writer_default_opts();
    wo.zstd_level = o->level;
    wo.threads = o->threads;
    cuda_sections cuda;
    flock_status st = flock_cuda_sections_build(cm.p, o, &cuda, err);
    if (!st)
        st = load_tokenizer(s, &tok, err);
    if (!st && tok->n_vocab > (uint32_t)cm.p->cfg.n_vocab)
        st = flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer has %u tokens but the embedding only %d rows",
                             tok->n_vocab, cm.p->cfg.n_vocab);
    if (!st && flock_manifest_create(&man))
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    if (!st)
        st = fill_manifest(man, &cm, s, o, tok, err);
    if (!st)
        st = flock_tokdata_serialize(tok, &tok_bytes, &tok_size, err);
    if (!st)
        st = flock_program_serialize(cm.p, &prog_bytes, &prog_size, err);
    if (!st)
        st = flock_bundle_writer_create(out_path, &wo, &w, err);
    if (!st)
        st = flock_bundle_writer_set_manifest(w, man, err);
    if (!st)
        st = write_tensors(w, &cm, s, o, &local, err);
    if (!st)
        st = flock_bundle_writer_add_section(w, FLOCK_SECTION_TOKENIZER, "", tok_bytes, tok_size, o->level > 0, err);
    if (!st)
        st = flock_bundle_writer_add_section(w, FLOCK_SECTION_PROGRAM, "", prog_bytes, prog_size, o->level > 0, err);
    for (size_t i = 0; !st && i < cuda.n; i++)
        st = flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, cuda.s[i].name, cuda.s[i].blob,
                                             cuda.s[i].size, o->level > 0, err);
    if (!st)
        st = flock_compile_cpu_kernels(&cm, o, w, &local, err);
    if (!st)
        st = flock_bundle_writer_finish(w, err);
    flock_bundle_writer_free(w);
    flock_cuda_sections_free(&cuda);
    free(tok_bytes);
    free(prog_bytes);
    flock_manifest_free(man);
    flock_tokdata_free(tok);
    cmodel_free(&cm);
    if (st)
        return st;
    struct stat sb;
    if (stat(out_path, &sb) == 0)
        local.bundle_bytes = (uint64_t)sb.st_size;
    if (stats)
        *stats = local;
    return FLOCK_OK;
}
