/* Private: a small persistent thread pool. The calling thread takes part in
 * every job, so a pool of 1 thread starts no threads at all. */
#ifndef FLOCK_RUNTIME_THREADS_H
#define FLOCK_RUNTIME_THREADS_H

#include "flock/formats.h"

#include <stdint.h>

typedef struct flock_pool flock_pool;

/* Called with a half-open range [begin, end) of task indices; `thread` is
 * 0..n_threads-1 (stable for the duration of one job: index per-thread
 * scratch with it). */
typedef void (*flock_task_fn)(void *ctx, int64_t begin, int64_t end, int thread);

flock_status flock_pool_create(int n_threads, flock_pool **out);
void flock_pool_free(flock_pool *p);
int flock_pool_threads(const flock_pool *p);
/* Runs fn over [0, n) in chunks of `grain` indices handed out dynamically,
 * and returns when all are done. No allocation. */
void flock_pool_run(flock_pool *p, int64_t n, int64_t grain, flock_task_fn fn, void *ctx);

#endif
