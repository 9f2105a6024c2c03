/* Private to tools/: the scheduler behind `flock serve`. N slots, each a
 * session (its own KV cache and its own GRIFFIN experts), fed from a
 * bounded queue by one engine thread that owns the model: it formats and
 * tokenizes prompts, prefills a new request, then steps every busy slot by
 * one token per round (docs/runtime.md, "Serving"). HTTP threads only
 * submit jobs and wait on their output. */
#ifndef FLOCK_TOOLS_SERVE_ENGINE_H
#define FLOCK_TOOLS_SERVE_ENGINE_H

#include "serve_req.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct serve_engine_opts {
    int parallel;           /* slots */
    int queue;              /* requests waiting beyond the slots; more: 503 */
    long long max_tokens;   /* a request's cap (and the default when it names none) */
    flock_session_opts so;  /* each slot's session: keep, select, threads, n_ctx, device */
    const char *model_name; /* what "model" must say when given */
    bool no_batch;          /* step the slots one after another (to measure the batched step) */
} serve_engine_opts;

typedef struct serve_engine serve_engine;
typedef struct serve_job serve_job;

/* Opens one session per slot and starts the engine thread. NULL with a
 * message in err on failure. */
serve_engine *serve_engine_create(flock_model *m, const serve_engine_opts *o, char *err, size_t err_n);
/* Refuses new requests, fails what waits in the queue (503), lets the
 * running requests finish (they are cancelled after grace_s seconds) and
 * stops the thread. Jobs stay valid: their waiters see DONE or FAILED. */
void serve_engine_stop(serve_engine *e, double grace_s);
/* Stops (no grace) and frees all; every job must have been released. */
void serve_engine_free(serve_engine *e);

/* Queues a request (the job takes *r; *r is emptied). Returns NULL with *err
 * set (503 with the queue full or the server stopping; 404 for another
 * model; 400 for an unknown keep ratio). The job is released with
 * serve_job_release once the caller is done with it. */
serve_job *serve_engine_submit(serve_engine *e, serve_req *r, serve_err *err);

typedef enum {
    SERVE_JOB_WAIT,    /* nothing new within the timeout */
    SERVE_JOB_STARTED, /* prefill done: the response can begin */
    SERVE_JOB_TEXT,    /* text was taken */
    SERVE_JOB_DONE,    /* finished; *res filled */
    SERVE_JOB_FAILED,  /* failed before or during generation; *err filled */
} serve_job_event;

/* Waits up to timeout_ms for the job's next event. With text pending, moves
 * it into *text / *n (malloc'd, caller frees) and returns TEXT; DONE comes
 * only after all text was taken. */
serve_job_event serve_job_wait(serve_job *j, int timeout_ms, char **text, size_t *n, serve_result *res,
                               serve_err *err);
/* The client went away: the engine drops the job at its next step and frees the slot. */
void serve_job_cancel(serve_job *j);
void serve_job_release(serve_job *j);
bool serve_job_stream(const serve_job *j, bool *include_usage);
serve_kind serve_job_kind(const serve_job *j);

/* Counters for /metrics. */
typedef struct serve_metrics {
    unsigned long long requests, failed, cancelled, rejected;
    unsigned long long prompt_tokens, generated_tokens;
    double prefill_s, decode_s;
    int queued, busy, slots;
} serve_metrics;
void serve_engine_metrics(serve_engine *e, serve_metrics *out);

#endif
