/* The thread pool: workers wait for a job generation number; a job is a
 * function over an index range split into chunks taken from an atomic
 * counter. A decode step issues a few hundred short jobs per token, and a
 * sleep/wake costs tens of microseconds, so a waiting thread first spins
 * (pause, and sched_yield after YIELD_NS so that a thread it waits for on
 * the same core can run), then sleeps on a condition variable, so an idle
 * pool uses no CPU.
 *
 * How long to spin adapts per waiter, between SPIN_MIN_NS and SPIN_MAX_NS:
 * it halves when the spinner lost its core while it yielded (its thread
 * CPU time fell behind the wall clock: more runnable threads than cores),
 * and doubles otherwise. A wait longer than the budget (the caller's
 * serial work between jobs) does not shrink it: that made the short waits
 * sleep too (measured: 150 against 190 tok/s).
 * Measured on SmolLM2 Q4_1 decode, 2 threads on 2 cores (docs/runtime.md,
 * "Threads"): a fixed 256-pause spin (~5 us here) slept between most jobs,
 * 128 tok/s at keep 1.0; 50 us of spin gave 180. But a long fixed spin
 * steals the time slice of the very thread being waited for when there are
 * more threads than free cores (3 threads on 2 cores: 131 -> 72 tok/s with
 * 50 us); with the yield and the adaptive budget it ran at 140-164. Left
 * weak: 2 threads beside another process that keeps one core busy ran at
 * 52-105 tok/s from run to run, at times below the old short spin's 74-83.
 *
 * The mutex and condition variables are touched only when someone sleeps:
 * `sleepers` counts workers inside the wait and `main_waits` says the
 * caller is; a job start or finish checks the count after publishing its
 * change (both sequentially consistent, so either the sleeper sees the
 * change before it waits or the publisher sees the sleeper and wakes it
 * under the mutex). A decode step with everyone spinning then costs no
 * lock at all per job. */
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_MIN_NS 2000
#define SPIN_MAX_NS 50000
#define YIELD_NS 5000

struct flock_pool {
    int n_threads;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t gen;
    atomic_int pending; /* workers still inside the current job */
    atomic_int sleepers; /* workers waiting on `wake` */
    atomic_int main_waits; /* the caller waits on `done` */
    atomic_int stop;
    /* the current job */
    flock_task_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int_fast64_t next;
    uint64_t main_spin_ns; /* the caller's spin budget (spin_wait) */
};

typedef struct worker_arg {
    flock_pool *pool;
    int index;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *a != v (want_change) or *a <= 0 (!want_change), for at most
 * *budget ns, and adapts *budget (see the top of the file): past YIELD_NS
 * the spinner yields, and whether this thread kept its core meanwhile (its
 * CPU time against the wall clock) says whether cores are shared: lost it
 * (something else ran here), the budget halves, else it doubles. The clock
 * is read every 32 pauses; the thread CPU time (a system call) only on
 * waits longer than YIELD_NS. */
static void spin_wait(flock_pool *p, const void *a, uint64_t v, bool want_change, uint64_t *budget)
{
    uint64_t t0 = now_ns(), t = t0, ty = 0, cy = 0;
    bool done = false;
    for (int i = 1;; i++) {
        done = want_change ? atomic_load_explicit((const atomic_uint_fast64_t *)a, memory_order_acquire) != v
                           : atomic_load_explicit((const atomic_int *)a, memory_order_acquire) <= 0;
        if (done || atomic_load_explicit(&p->stop, memory_order_relaxed))
            break;
        cpu_relax();
        if (i % 32 == 0) {
            t = now_ns();
            if (t - t0 > *budget)
                break;
            if (t - t0 > YIELD_NS) {
                if (!ty)
                    ty = t, cy = thread_cpu_ns();
                sched_yield();
            }
        }
    }
    bool grow = true;
    if (ty) {
        uint64_t wall = now_ns() - ty, cpu = thread_cpu_ns() - cy;
        if (cpu * 4 < wall * 3) /* under 75% of the time on a core: shared */
            grow = false;
    }
    if (grow && *budget < SPIN_MAX_NS)
        *budget *= 2;
    else if (!grow && *budget > SPIN_MIN_NS)
        *budget /= 2;
}

static void run_chunks(flock_pool *p, int thread)
{
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (b >= p->n)
            break;
        int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
        p->fn(p->ctx, b, e, thread);
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    flock_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0, budget = SPIN_MAX_NS;
    for (;;) {
        spin_wait(p, &p->gen, seen, true, &budget);
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        run_chunks(p, index);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->main_waits)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

flock_status flock_pool_create(int n_threads, flock_pool **out)
{
    if (n_threads < 1 || n_threads > 256 || !out)
        return FLOCK_E_INVALID_ARG;
    flock_pool *p = calloc(1, sizeof *p);
    if (!p)
        return FLOCK_E_NOMEM;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->main_waits, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->next, 0);
    p->main_spin_ns = SPIN_MAX_NS;
    if (n_threads > 1) {
        p->tids = calloc((size_t)n_threads - 1, sizeof *p->tids);
        if (!p->tids) {
            flock_pool_free(p);
            return FLOCK_E_NOMEM;
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || (wa->pool = p, wa->index = i,
                        pthread_create(&p->tids[i - 1], NULL, worker_main, wa) != 0)) {
                free(wa);
                p->n_threads = i; /* only the started ones are joined */
                flock_pool_free(p);
                return FLOCK_E_NOMEM;
            }
        }
    }
    *out = p;
    return FLOCK_OK;
}

void flock_pool_free(flock_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads && p->tids; i++)
        pthread_join(p->tids[i - 1], NULL);
    free(p->tids);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int flock_pool_threads(const flock_pool *p)
{
    return p ? p->n_threads : 1;
}

void flock_pool_run(flock_pool *p, int64_t n, int64_t grain, flock_task_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (p->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunks(p, 0);
    spin_wait(p, &p->pending, 0, false, &p->main_spin_ns);
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->main_waits, 1);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->main_waits, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
