/* Opening a bundle: the program, the weights (mapped in place when stored
 * uncompressed, else decompressed into 64-byte aligned memory), the keep
 * ratios it was compiled for, and the tokenizer. */
#include "model_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static flock_status load_program(flock_model *m, flock_error *err)
{
    int64_t si = flock_bundle_find_section(m->bundle, FLOCK_SECTION_PROGRAM, NULL);
    if (si < 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "the bundle has no program section");
    void *data = NULL;
    size_t size = 0;
    flock_status st = flock_bundle_read_section(m->bundle, (size_t)si, &data, &size, err);
    if (st != FLOCK_OK)
        return st;
    st = flock_program_deserialize(data, size, &m->prog, err);
    free(data);
    if (st == FLOCK_OK)
        st = flock_plan_program(m->prog, &m->plan, err);
    return st ? flock_error_prefix(err, st, "program section") : FLOCK_OK;
}

/* Makes program tensor i available as a flock_wmat. */
static flock_status load_tensor(flock_model *m, uint32_t i, int threads, flock_error *err)
{
    const flock_tensor_ref *r = &m->prog->tensors[i];
    int64_t bi = flock_bundle_find_tensor(m->bundle, r->name);
    if (bi < 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "tensor '%s' (used by the program) is not in the bundle",
                               r->name);
    flock_bundle_tensor info;
    flock_status st = flock_bundle_tensor_info(m->bundle, (size_t)bi, &info);
    if (st != FLOCK_OK)
        return flock_error_set(err, st, "tensor '%s': no table entry", r->name);
    /* The exact shape, once: the verifier checked the program's shapes
     * against its ops, so the executors trust them. */
    bool same = info.dtype == r->dtype && info.n_dims == r->n_dims;
    uint64_t n_info = 1;
    char want[96] = "", got[96] = "";
    for (uint32_t d = 0; d < 4; d++) {
        if (d < info.n_dims)
            n_info *= info.shape[d];
        same = same && (d >= r->n_dims || info.shape[d] == r->shape[d]);
        if (d < r->n_dims)
            snprintf(want + strlen(want), sizeof want - strlen(want), d ? ", %llu" : "%llu",
                     (unsigned long long)r->shape[d]);
        if (d < info.n_dims)
            snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %llu" : "%llu",
                     (unsigned long long)info.shape[d]);
    }
    if (!same || info.nbytes != flock_dtype_tensor_bytes(info.dtype, info.n_dims, info.shape))
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "tensor '%s': the program expects %s [%s], the bundle holds %s [%s] (%llu bytes)",
                               r->name, flock_dtype_name(r->dtype), want, flock_dtype_name(info.dtype), got,
                               (unsigned long long)info.nbytes);
    flock_wmat *w = &m->tensors[i];
    int64_t rows = info.n_dims >= 2 ? (int64_t)info.shape[0] : 1;
    flock_wmat_set_shape(w, info.dtype, rows, (int64_t)(n_info / (uint64_t)rows));
    /* A compressed tensor (FLOCK_E_UNSUPPORTED here) is decompressed below:
     * only another failure is the caller's, with its message. */
    const void *mapped = NULL;
    flock_error e2 = {0};
    st = flock_bundle_tensor_mapped(m->bundle, (size_t)bi, &mapped, &e2);
    if (st != FLOCK_OK && st != FLOCK_E_UNSUPPORTED) {
        if (err)
            *err = e2;
        return st;
    }
    /* Vectors (norm weights, biases) are used as f32 by the executor. */
    bool to_f32 = info.n_dims == 1 && (info.dtype == FLOCK_DTYPE_F16 || info.dtype == FLOCK_DTYPE_BF16);
    if (mapped && !to_f32) {
        w->data = mapped;
        m->weight_bytes += info.nbytes;
        return FLOCK_OK;
    }
    void *buf = flock_aligned_alloc((size_t)info.nbytes);
    if (!buf)
        return flock_error_set(err, FLOCK_E_NOMEM, "tensor '%s': out of memory for %llu bytes", r->name,
                               (unsigned long long)info.nbytes);
    if (mapped)
        memcpy(buf, mapped, (size_t)info.nbytes);
    else if ((st = flock_bundle_tensor_read(m->bundle, (size_t)bi, buf, (size_t)info.nbytes, threads, err)) !=
             FLOCK_OK) {
        free(buf);
        return st;
    }
    if (to_f32) {
        float *f = flock_aligned_alloc((size_t)n_info * sizeof(float));
        if (!f) {
            free(buf);
            return flock_error_set(err, FLOCK_E_NOMEM, "tensor '%s': out of memory", r->name);
        }
        flock_convert_to_f32(info.dtype, buf, f, (size_t)n_info);
        free(buf);
        buf = f;
        flock_wmat_set_shape(w, FLOCK_DTYPE_F32, w->rows, w->cols);
    }
    m->owned[i] = buf;
    w->data = buf;
    m->weight_bytes += flock_wmat_bytes(w);
    return FLOCK_OK;
}

static flock_status load_keeps(flock_model *m, flock_error *err)
{
    const flock_manifest *man = flock_bundle_manifest(m->bundle);
    const double *v = NULL;
    size_t n = 0;
    if (!man || flock_manifest_get_float_arr(man, "keep_ratios", &v, &n, NULL) != FLOCK_OK || n == 0)
        return FLOCK_OK; /* none named: any keep in (0, 1] */
    m->keeps = malloc(n * sizeof *m->keeps);
    if (!m->keeps)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    memcpy(m->keeps, v, n * sizeof *v);
    m->n_keeps = n;
    return FLOCK_OK;
}

static void why_append(flock_model *m, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(m->jit_why);
    if (len + 3 >= sizeof m->jit_why)
        return;
    if (len)
        len += (size_t)snprintf(m->jit_why + len, sizeof m->jit_why - len, "; ");
    snprintf(m->jit_why + len, sizeof m->jit_why - len, fmt, a, b);
}

/* Tries each "cpu:*" kernel section in bundle order; keeps the first that
 * this CPU can run. Never fails the open: whatever is refused (another
 * architecture, a missing feature, a corrupt section) is recorded in
 * jit_why and the portable kernels run instead. */
static void load_cpu_kernels(flock_model *m)
{
    size_t n = flock_bundle_section_count(m->bundle);
    bool any = false;
    for (size_t i = 0; i < n && !m->jit; i++) {
        flock_section_info info;
        if (flock_bundle_section_info(m->bundle, i, &info) != FLOCK_OK || info.kind != FLOCK_SECTION_KERNELS ||
            strncmp(info.name, "cpu:", 4) != 0)
            continue;
        any = true;
        void *data = NULL;
        size_t size = 0;
        flock_error e = {0};
        flock_status st = flock_bundle_read_section(m->bundle, i, &data, &size, &e);
        if (st == FLOCK_OK)
            st = flock_cpu_jit_load(data, size, &m->jit, &e);
        free(data);
        if (st != FLOCK_OK)
            why_append(m, "%s: %.200s", info.name, e.msg[0] ? e.msg : flock_status_str(st));
    }
    if (m->jit)
        m->jit_why[0] = '\0';
    else if (!any)
        snprintf(m->jit_why, sizeof m->jit_why, "the bundle has no cpu:* kernel section");
}

const char *flock_model_cpu_kernels(const flock_model *m, const char **why)
{
    if (why)
        *why = m->jit_why;
    return m->jit ? flock_cpu_jit_target(m->jit) : NULL;
}

flock_status flock_model_open(const char *path, const flock_model_opts *opts, flock_model **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_model_open: NULL argument");
    flock_model *m = calloc(1, sizeof *m);
    if (!m)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    flock_status st = flock_bundle_open(path, &m->bundle, err);
    if (st == FLOCK_OK)
        st = load_program(m, err);
    if (st == FLOCK_OK) {
        m->tensors = calloc(m->prog->n_tensors ? m->prog->n_tensors : 1, sizeof *m->tensors);
        m->owned = calloc(m->prog->n_tensors ? m->prog->n_tensors : 1, sizeof *m->owned);
        if (!m->tensors || !m->owned)
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    int threads = opts ? opts->load_threads : 0;
    for (uint32_t i = 0; st == FLOCK_OK && i < m->prog->n_tensors; i++)
        st = load_tensor(m, i, threads, err);
    if (st == FLOCK_OK)
        st = load_keeps(m, err);
    if (st == FLOCK_OK)
        st = flock_model_tok_load(m, err);
    if (st == FLOCK_OK)
        load_cpu_kernels(m);
    if (st != FLOCK_OK) {
        if (err && strncmp(err->msg, path, strlen(path)) != 0) /* the bundle reader names it already */
            flock_error_prefix(err, st, "%s", path);
        flock_model_free(m);
        return st;
    }
    *out = m;
    return FLOCK_OK;
}

void flock_model_free(flock_model *m)
{
    if (!m)
        return;
    if (m->owned && m->prog)
        for (uint32_t i = 0; i < m->prog->n_tensors; i++)
            free(m->owned[i]);
    free(m->owned);
    free(m->tensors);
    free(m->keeps);
    flock_model_tok_free(m->tok);
    flock_cpu_jit_free(m->jit);
    flock_plan_free(&m->plan);
    flock_program_free(m->prog);
    flock_bundle_close(m->bundle);
    free(m);
}

int32_t flock_model_n_vocab(const flock_model *m)
{
    return m->prog->cfg.n_vocab;
}

int32_t flock_model_n_layer(const flock_model *m)
{
    return m->prog->cfg.n_layer;
}

int32_t flock_model_n_ctx(const flock_model *m)
{
    return m->prog->cfg.n_ctx;
}

const char *flock_model_storage(const flock_model *m)
{
    const char *dt = NULL;
    const flock_manifest *man = flock_bundle_manifest(m->bundle);
    return man && flock_manifest_get_str(man, "storage_dtype", &dt, NULL) == FLOCK_OK ? dt : "?";
}

const char *flock_model_arch(const flock_model *m)
{
    return m->prog->cfg.arch;
}

uint64_t flock_model_weight_bytes(const flock_model *m)
{
    return m->weight_bytes;
}

const double *flock_model_keep_ratios(const flock_model *m, size_t *n)
{
    *n = m->n_keeps;
    return m->keeps;
}
