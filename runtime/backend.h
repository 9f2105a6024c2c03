/* Private: the interface a session runs its program through. The CPU
 * executor (exec.h, backend_cpu.c) and the CUDA executor (cuda_exec.h,
 * backend_cuda.c) both implement it; a session holds one flock_backend and
 * never asks which (session.c). A new executor (a batched decode, another
 * device) is one more table and one more entry in session.c's list.
 *
 * Contract, for every backend:
 * - open() sizes everything once (weights, KV caches, scratch); run()
 *   allocates nothing.
 * - run() appends n tokens: FULL runs them with the dense FF and, with
 *   `stats`, accumulates GRIFFIN's statistic; SPARSE runs them through the
 *   selected neurons. Afterwards logits() holds [n_past, vocab] floats with
 *   all_logits, else [1, vocab] (the last token), on the host.
 * - ffn_at(i) is FF layer i's selection state on the host: d_ff, k and idx
 *   (and sumsq where the statistic lives on the host).
 * - run_batch (may be NULL) is one decode step of several sequences at once
 *   (the session loops over run() without it).
 * - select_griffin (may be NULL) ranks the statistic on the backend itself
 *   and fills every ffn_at(i)->idx / ->k; NULL means the session ranks
 *   ffn_at(i)->sumsq on the host.
 * - commit_selection (may be NULL) makes a selection the host wrote into
 *   ffn_at(i) current (magnitude and random modes on a device).
 */
#ifndef FLOCK_RUNTIME_BACKEND_H
#define FLOCK_RUNTIME_BACKEND_H

#include "exec.h"
#include "flock/flock.h"

typedef struct flock_backend flock_backend;

typedef struct flock_backend_iface {
    void (*free)(flock_backend *b);
    void (*reset)(flock_backend *b);
    flock_status (*run)(flock_backend *b, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                        flock_error *err);
    /* May be NULL: one SPARSE token for each of n backends of this table
     * (n <= FLOCK_EXEC_MAX_BATCH, same model and thread count), bitwise as
     * run() on each; checks all before running any. */
    flock_status (*run_batch)(flock_backend *const *bs, size_t n, const int32_t *ids, flock_error *err);
    flock_status (*select_griffin)(flock_backend *b, flock_error *err);
    flock_status (*commit_selection)(flock_backend *b, flock_error *err);
    size_t (*n_past)(const flock_backend *b);
    int32_t (*n_vocab)(const flock_backend *b);
    const float *(*logits)(const flock_backend *b);
    size_t (*n_ffn)(const flock_backend *b);
    flock_exec_ffn *(*ffn_at)(const flock_backend *b, size_t i);
    uint64_t (*decode_bytes)(const flock_backend *b);
    /* host bytes of packed kept FF rows (flock_session_packed_bytes); NULL: none */
    uint64_t (*packed_bytes)(const flock_backend *b);
} flock_backend_iface;

/* Each backend's own struct starts with this one (backend_cpu.c, backend_cuda.c). */
struct flock_backend {
    const flock_backend_iface *iface;
    flock_device device;
    char kernels[160];         /* flock_session_kernels: "avx2", "llvm:x86-64-v3", "cuda:sm_90" */
    char what[384];            /* what it runs on, for the session's device note ("" for the CPU) */
    uint32_t kv_elem_bytes;    /* bytes of one cached K or V element: 4 (CPU f32, the default), 2 (f16: CUDA, CPU kv_type F16) */
};

/* Opens a backend for model m with the checked options o (o->keep,
 * o->n_ctx, o->threads, o->all_logits, o->kernels). On failure nothing is
 * kept, and err says why this backend cannot run the model. */
typedef flock_status (*flock_backend_open_fn)(flock_model *m, const flock_session_opts *o, flock_backend **out,
                                              flock_error *err);

flock_status flock_backend_cpu_open(flock_model *m, const flock_session_opts *o, flock_backend **out,
                                    flock_error *err);
flock_status flock_backend_cuda_open(flock_model *m, const flock_session_opts *o, flock_backend **out,
                                     flock_error *err);

static inline void flock_backend_free(flock_backend *b)
{
    if (b)
        b->iface->free(b);
}

#endif
