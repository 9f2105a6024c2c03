/* Private: a parallel-for over pthreads (formats/parallel.c). */
#ifndef FLOCK_FORMATS_PARALLEL_H
#define FLOCK_FORMATS_PARALLEL_H

#include <stddef.h>

#define FLOCK_MAX_THREADS 64

/* Work item `i` on thread `tid` (0 <= tid < threads). */
typedef void (*flock_pfor_fn)(void *ctx, size_t i, int tid);

/* Runs fn(ctx, i, tid) for i in [0, n) on up to `threads` threads (the caller
 * is one of them; capped at FLOCK_MAX_THREADS). Items are claimed in order
 * from a shared counter, so results must not depend on which thread ran what. */
void flock_parallel_for(int threads, size_t n, flock_pfor_fn fn, void *ctx);

#endif
