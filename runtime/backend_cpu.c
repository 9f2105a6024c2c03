/* The CPU backend (backend.h): the executor (exec.h) on the best built-in
 * kernel table for this CPU, or on the bundle's generated (LLVM) kernels,
 * with a thread pool. GRIFFIN's top-k runs in the session, on the
 * statistic the executor keeps on the host. */
#include "backend.h"
#include "model_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_backend {
    flock_backend b;
    flock_pool *pool;
    flock_exec *e;
} cpu_backend;

static cpu_backend *CPU(const flock_backend *b)
{
    return (cpu_backend *)b;
}

/* AUTO's choice, from the decode benchmark in docs/cpu-codegen.md
 * (SmolLM2-135M, 2-core shared machine): with f32 weights the generated
 * kernels were faster in 7 of 8 paired runs (about +13%); with f16 (and
 * bf16, not measured) they won half the runs, so the built-in kernels stay
 * the default there. */
static bool generated_by_default(const flock_model *m)
{
    const char *dt = NULL;
    const flock_manifest *man = flock_bundle_manifest(m->bundle);
    return man && flock_manifest_get_str(man, "storage_dtype", &dt, NULL) == FLOCK_OK && strcmp(dt, "f32") == 0;
}

/* Whether a session with choice `k` runs the generated kernels (when the
 * model has them). AUTO follows FLOCK_KERNELS (portable/scalar: no;
 * generated: yes), else the measured default (docs/cpu-codegen.md). */
static bool want_generated(const flock_model *m, flock_kernel_choice k)
{
    if (k == FLOCK_KERNELS_GENERATED)
        return true;
    if (k == FLOCK_KERNELS_PORTABLE)
        return false;
    const char *env = getenv("FLOCK_KERNELS");
    if (env && (strcmp(env, "portable") == 0 || strcmp(env, "scalar") == 0 || strcmp(env, "avx2") == 0))
        return false;
    if (env && strcmp(env, "generated") == 0)
        return true;
    return generated_by_default(m);
}

static void cpu_free(flock_backend *b)
{
    cpu_backend *c = CPU(b);
    flock_exec_free(c->e);
    flock_pool_free(c->pool);
    free(c);
}

static void cpu_reset(flock_backend *b)
{
    flock_exec_reset(CPU(b)->e);
}

static flock_status cpu_run(flock_backend *b, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                            flock_error *err)
{
    return flock_exec_run(CPU(b)->e, ids, n, mode, stats, err);
}

static size_t cpu_n_past(const flock_backend *b)
{
    return flock_exec_n_past(CPU(b)->e);
}

static int32_t cpu_n_vocab(const flock_backend *b)
{
    return flock_exec_n_vocab(CPU(b)->e);
}

static const float *cpu_logits(const flock_backend *b)
{
    return flock_exec_logits(CPU(b)->e);
}

static size_t cpu_n_ffn(const flock_backend *b)
{
    return flock_exec_n_ffn(CPU(b)->e);
}

static flock_exec_ffn *cpu_ffn_at(const flock_backend *b, size_t i)
{
    return flock_exec_ffn_at(CPU(b)->e, i);
}

static uint64_t cpu_decode_bytes(const flock_backend *b)
{
    return flock_exec_decode_bytes(CPU(b)->e);
}

static flock_status cpu_commit_selection(flock_backend *b, flock_error *err)
{
    (void)err;
    flock_exec_pack_selection(CPU(b)->e);
    return FLOCK_OK;
}

static uint64_t cpu_packed_bytes(const flock_backend *b)
{
    return flock_exec_packed_bytes(CPU(b)->e);
}

static flock_status cpu_run_batch(flock_backend *const *bs, size_t n, const int32_t *ids, flock_error *err)
{
    flock_exec *es[FLOCK_EXEC_MAX_BATCH];
    if (n > FLOCK_EXEC_MAX_BATCH)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "%zu sequences in one step: at most %d", n,
                               FLOCK_EXEC_MAX_BATCH);
    for (size_t i = 0; i < n; i++)
        es[i] = CPU(bs[i])->e;
    return flock_exec_run_batch(es, n, ids, err);
}

static const flock_backend_iface cpu_iface = {
    .free = cpu_free,
    .reset = cpu_reset,
    .run = cpu_run,
    .run_batch = cpu_run_batch,
    .select_griffin = NULL, /* the session ranks ffn_at(i)->sumsq */
    .commit_selection = cpu_commit_selection, /* packs the kept rows; idx is read in place */
    .n_past = cpu_n_past,
    .n_vocab = cpu_n_vocab,
    .logits = cpu_logits,
    .n_ffn = cpu_n_ffn,
    .ffn_at = cpu_ffn_at,
    .decode_bytes = cpu_decode_bytes,
    .packed_bytes = cpu_packed_bytes,
};

flock_status flock_backend_cpu_open(flock_model *m, const flock_session_opts *o, flock_backend **out,
                                    flock_error *err)
{
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    c->b = (flock_backend){.iface = &cpu_iface, .device = FLOCK_DEVICE_CPU,
                           .kv_elem_bytes = o->kv_type == FLOCK_KV_F32 ? 4 : 2};
    const flock_kernel_table *k = flock_kernels_best();
    if (flock_pool_create(o->threads, &c->pool) != FLOCK_OK) {
        free(c);
        return flock_error_set(err, FLOCK_E_NOMEM, "could not start %d threads", o->threads);
    }
    flock_exec_opts eo = {.n_ctx = o->n_ctx, .all_logits = o->all_logits, .pack_rows = o->pack_rows,
                          .kv_f16 = o->kv_type != FLOCK_KV_F32};
    flock_status st = flock_exec_create(m->prog, &m->plan, m->tensors, k, c->pool, &eo, &c->e, err);
    if (st != FLOCK_OK) {
        cpu_free(&c->b);
        return st;
    }
    snprintf(c->b.kernels, sizeof c->b.kernels, "%s", k->name);
    if (m->jit && want_generated(m, o->kernels)) {
        int used = flock_exec_use_jit(c->e, m->jit, o->keep);
        if (used < 0) {
            cpu_free(&c->b);
            return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        }
        if (used > 0)
            snprintf(c->b.kernels, sizeof c->b.kernels, "llvm:%s", flock_cpu_jit_target(m->jit));
    }
    *out = &c->b;
    return FLOCK_OK;
}
