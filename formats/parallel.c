/* A minimal parallel-for over pthreads, shared by the bundle writer
 * (chunk compression) and reader (chunk verification and decompression),
 * plus the byte-plane transform both sides use. */
#include "parallel.h"
#include "bundle_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

int flock_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

typedef struct pf_state {
    flock_pfor_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
} pf_state;

typedef struct pf_arg {
    pf_state *s;
    int tid;
} pf_arg;

static void *pf_worker(void *p)
{
    pf_arg *a = p;
    for (;;) {
        size_t i = atomic_fetch_add(&a->s->next, 1);
        if (i >= a->s->n)
            break;
        a->s->fn(a->s->ctx, i, a->tid);
    }
    return NULL;
}

void flock_parallel_for(int threads, size_t n, flock_pfor_fn fn, void *ctx)
{
    if (threads < 1)
        threads = 1;
    if ((size_t)threads > n)
        threads = n ? (int)n : 1;
    pf_state s = {fn, ctx, n, 0};
    pf_arg args[FLOCK_MAX_THREADS];
    pthread_t tids[FLOCK_MAX_THREADS];
    if (threads > FLOCK_MAX_THREADS)
        threads = FLOCK_MAX_THREADS;
    int started = 0;
    /* Threads 1.. are helpers; the caller is thread 0. If a thread cannot be
     * created the remaining work simply runs on the threads that exist. */
    for (int t = 1; t < threads; t++) {
        args[t] = (pf_arg){&s, t};
        if (pthread_create(&tids[t], NULL, pf_worker, &args[t]) != 0)
            break;
        started = t;
    }
    args[0] = (pf_arg){&s, 0};
    pf_worker(&args[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(tids[t], NULL);
}

/* Chunk layout: element k's high byte goes to dst[k], its low byte to dst[n + k]. */
void flock_planes_split(const uint8_t *src, uint8_t *dst, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        dst[k] = src[2 * k + 1];
        dst[n + k] = src[2 * k];
    }
}

void flock_planes_join(const uint8_t *src, uint8_t *dst, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        dst[2 * k + 1] = src[k];
        dst[2 * k] = src[n + k];
    }
}
