/* Private: the CUDA executor. Runs a flock_program (the same op walk as
 * the CPU executor, exec.c) through the kernels of one "cuda:<target>"
 * kernel section that flockc generated for the model, on a device layer
 * (cuda_driver.h). See docs/runtime.md, "CUDA backend".
 *
 * At create: the tensors are checked as the kernels read them
 * (flock_program_check_runnable; the program's shapes are the verifier's and its
 * buffer plan is flock_plan_program's) and every op against the model
 * facts the kernels were specialized on; every kernel an op needs is resolved by name (a missing one fails with its name); the
 * weights are uploaded once; every buffer (value slots, KV caches, attention
 * and FF scratch, GRIFFIN's statistic and selection, logits) is allocated.
 * Running allocates nothing. */
#ifndef FLOCK_RUNTIME_CUDA_EXEC_H
#define FLOCK_RUNTIME_CUDA_EXEC_H

#include "cuda_driver.h"
#include "exec.h"

typedef struct flock_cuda_exec flock_cuda_exec;

/* `blob` (the kernels section named `section`, e.g. "cuda:sm_90") is
 * borrowed and must outlive the executor, as must `drv`, `p`, `plan` (p's
 * flock_plan_program) and `tensors`.
 * `keep` picks the decode kernels (flock_keep_count(keep, d_ff) neurons). */
flock_status flock_cuda_exec_create(flock_cuda_driver *drv, const char *section, const void *blob, size_t blob_size,
                                    const flock_program *p, const flock_plan *plan, const flock_wmat *tensors,
                                    double keep, int32_t n_ctx, bool all_logits, flock_cuda_exec **out,
                                    flock_error *err);
void flock_cuda_exec_free(flock_cuda_exec *c);

/* Empties the KV cache (positions), statistic and selection. */
void flock_cuda_exec_reset(flock_cuda_exec *c);
/* Appends n tokens, as flock_exec_run: FULL runs the prompt in chunks with
 * the dense FF (accumulating GRIFFIN's statistic on the device when
 * `stats`), SPARSE one token at a time through the selected neurons. The
 * logits come back to the host after each call. */
flock_status flock_cuda_exec_run(flock_cuda_exec *c, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                                 flock_error *err);
/* GRIFFIN's top-k on the device from the prompt's statistic (rank +
 * compact per FF layer); the indices come back to ffn_at(i)->idx. */
flock_status flock_cuda_exec_select_griffin(flock_cuda_exec *c, flock_error *err);
/* Uploads the selection the host wrote into ffn_at(i)->idx / ->k (magnitude
 * and random modes); k must be the executor's kept count. */
flock_status flock_cuda_exec_upload_selection(flock_cuda_exec *c, flock_error *err);

size_t flock_cuda_exec_n_past(const flock_cuda_exec *c);
int32_t flock_cuda_exec_n_vocab(const flock_cuda_exec *c);
/* Host copy: [n_past, vocab] with all_logits, else [1, vocab]. */
const float *flock_cuda_exec_logits(const flock_cuda_exec *c);
size_t flock_cuda_exec_n_ffn(const flock_cuda_exec *c);
/* Host view of FF layer i's selection (sumsq is NULL: the statistic stays on the device). */
flock_exec_ffn *flock_cuda_exec_ffn_at(flock_cuda_exec *c, size_t i);
/* The kept count the decode kernels were resolved for. */
int64_t flock_cuda_exec_keep_count(const flock_cuda_exec *c);
uint64_t flock_cuda_exec_decode_bytes(const flock_cuda_exec *c);

#endif
