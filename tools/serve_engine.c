/* The scheduler of `flock serve` (serve_engine.h). One mutex guards the
 * queue, the jobs' output and the counters; the engine thread holds it only
 * to move jobs and text, never while the model runs. */
#include "serve_engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serve_job {
    serve_engine *e;
    int refs;            /* the submitter's and the engine's */
    serve_req req;
    bool cancelled;
    bool started, started_told, done, failed;
    char *text;          /* generated, not yet taken */
    size_t n, cap;
    serve_err err;
    serve_result res;
    char id[40];
    serve_job *next;     /* in the queue */
    pthread_cond_t cv;
};

typedef struct slot {
    flock_session *s;
    double keep;         /* the session's */
    flock_select_mode select;
    serve_job *job;      /* NULL: free */
    bool fresh;          /* assigned, not yet prefilled */
    flock_sampler *smp;
    flock_gen *g;
    int32_t *ids;
    size_t ids_cap;
    int32_t tok;         /* to decode this round, or -1 */
} slot;

struct serve_engine {
    flock_model *m;
    serve_engine_opts o;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* the engine waits for work */
    serve_job *head, *tail;
    int queued, busy;
    bool stopping;
    double deadline;     /* stopping: running jobs are cancelled after it */
    unsigned long long next_id;
    serve_metrics met;
    pthread_t thread;
    bool thread_started;
    /* the batched step's lists, [parallel] each */
    flock_session **step_s;
    int32_t *step_tok;
    slot **step_slot;
    size_t *step_past; /* each one's n_past before the step */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void job_unref_locked(serve_job *j)
{
    if (--j->refs > 0)
        return;
    serve_req_free(&j->req);
    free(j->text);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void serve_job_release(serve_job *j)
{
    if (!j)
        return;
    serve_engine *e = j->e;
    pthread_mutex_lock(&e->mu);
    job_unref_locked(j);
    pthread_mutex_unlock(&e->mu);
}

void serve_job_cancel(serve_job *j)
{
    pthread_mutex_lock(&j->e->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->e->mu);
}

bool serve_job_stream(const serve_job *j, bool *include_usage)
{
    *include_usage = j->req.include_usage;
    return j->req.stream;
}

serve_kind serve_job_kind(const serve_job *j)
{
    return j->req.kind;
}

serve_job_event serve_job_wait(serve_job *j, int timeout_ms, char **text, size_t *n, serve_result *res,
                               serve_err *err)
{
    serve_engine *e = j->e;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    serve_job_event ev = SERVE_JOB_WAIT;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (j->failed) {
            *err = j->err;
            ev = SERVE_JOB_FAILED;
        } else if (j->started && !j->started_told) {
            j->started_told = true;
            *res = j->res;
            ev = SERVE_JOB_STARTED;
        } else if (j->n > 0) {
            *text = j->text;
            *n = j->n;
            j->text = NULL;
            j->n = j->cap = 0;
            ev = SERVE_JOB_TEXT;
        } else if (j->done) {
            *res = j->res;
            ev = SERVE_JOB_DONE;
        }
        if (ev != SERVE_JOB_WAIT || pthread_cond_timedwait(&j->cv, &e->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&e->mu);
    return ev;
}

/* ---- the engine thread ----------------------------------------------------- */

static void job_fail_locked(serve_job *j, const serve_err *err)
{
    j->failed = true;
    j->err = *err;
    pthread_cond_broadcast(&j->cv);
}

/* Ends the slot's job (done, failed or cancelled) and frees the slot. */
static void slot_end(serve_engine *e, slot *sl)
{
    flock_gen_free(sl->g);
    sl->g = NULL;
    flock_sampler_free(sl->smp);
    sl->smp = NULL;
    sl->tok = -1;
    pthread_mutex_lock(&e->mu);
    job_unref_locked(sl->job);
    sl->job = NULL;
    sl->fresh = false;
    e->busy--;
    pthread_mutex_unlock(&e->mu);
}

static void slot_fail(serve_engine *e, slot *sl, const serve_err *err)
{
    pthread_mutex_lock(&e->mu);
    job_fail_locked(sl->job, err);
    e->met.failed++;
    pthread_mutex_unlock(&e->mu);
    slot_end(e, sl);
}

static int status_http(flock_status st)
{
    return st == FLOCK_E_RANGE || st == FLOCK_E_INVALID_ARG ? 400 : 500;
}

/* The prompt's token ids in sl->ids; false with *err set. */
static bool prompt_ids(serve_engine *e, slot *sl, const serve_req *r, size_t *n, serve_err *err)
{
    char *text = NULL;
    flock_error fe = {0};
    if (r->kind == SERVE_CHAT) {
        flock_chat_message *msgs = malloc(r->n_msgs * sizeof *msgs);
        if (!msgs)
            return serve_err_set(err, 500, "server_error", NULL, NULL, "out of memory");
        for (size_t i = 0; i < r->n_msgs; i++) {
            msgs[i] = r->msgs[i];
            if (strcmp(msgs[i].role, "developer") == 0)
                msgs[i].role = "system"; /* OpenAI's newer name for it */
        }
        flock_status st = flock_chat_format(e->m, msgs, r->n_msgs, true, &text, &fe);
        free(msgs);
        if (st != FLOCK_OK)
            return serve_err_set(err, 400, "invalid_request_error", "messages", NULL, "chat template: %s", fe.msg);
    }
    const char *t = text ? text : r->prompt;
    size_t len = strlen(t), need = 0;
    flock_status st = flock_tokenize(e->m, t, len, true, sl->ids, sl->ids_cap, &need, &fe);
    if (st == FLOCK_E_RANGE && need > sl->ids_cap) {
        int32_t *b = realloc(sl->ids, need * sizeof *b);
        if (!b) {
            free(text);
            return serve_err_set(err, 500, "server_error", NULL, NULL, "out of memory");
        }
        sl->ids = b;
        sl->ids_cap = need;
        st = flock_tokenize(e->m, t, len, true, sl->ids, sl->ids_cap, &need, &fe);
    }
    free(text);
    if (st != FLOCK_OK)
        return serve_err_set(err, 400, "invalid_request_error", r->kind == SERVE_CHAT ? "messages" : "prompt", NULL,
                             "tokenizing the prompt: %s", fe.msg);
    *n = need;
    return true;
}

/* Opens the session a request asks for (keep, select), or resets the slot's. */
static bool slot_session(serve_engine *e, slot *sl, const serve_req *r, serve_err *err)
{
    double keep = r->has_keep ? r->keep : e->o.so.keep;
    flock_select_mode sel = r->has_select ? r->select : e->o.so.select;
    if (sl->s && fabs(sl->keep - keep) < 1e-9 && sl->select == sel) {
        flock_session_reset(sl->s);
        return true;
    }
    flock_session_free(sl->s);
    sl->s = NULL;
    flock_session_opts so = e->o.so;
    so.keep = keep;
    so.select = sel;
    flock_error fe = {0};
    flock_status st = flock_session_create(e->m, &so, &sl->s, &fe);
    if (st != FLOCK_OK)
        return serve_err_set(err, status_http(st), status_http(st) == 400 ? "invalid_request_error" : "server_error",
                             r->has_keep ? "keep" : NULL, NULL, "%s", fe.msg);
    sl->keep = keep;
    sl->select = sel;
    return true;
}

/* Formats, tokenizes and prefills the slot's new job. */
static void slot_start(serve_engine *e, slot *sl)
{
    serve_job *j = sl->job;
    const serve_req *r = &j->req;
    serve_err err;
    size_t n = 0;
    if (!slot_session(e, sl, r, &err) || !prompt_ids(e, sl, r, &n, &err)) {
        slot_fail(e, sl, &err);
        return;
    }
    size_t ctx = flock_session_n_ctx(sl->s);
    const char *param = r->kind == SERVE_CHAT ? "messages" : "prompt";
    if (n >= ctx) {
        serve_err_set(&err, 400, "invalid_request_error", param, "context_length_exceeded",
                      "the prompt is %zu tokens; the context holds %zu (a reply needs at least one more)", n, ctx);
        slot_fail(e, sl, &err);
        return;
    }
    size_t max = (size_t)e->o.max_tokens;
    if (r->max_tokens >= 0) {
        if ((size_t)r->max_tokens + n > ctx) {
            serve_err_set(&err, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                          "the prompt (%zu tokens) plus max_tokens (%lld) is %zu tokens: beyond the context of %zu",
                          n, r->max_tokens, n + (size_t)r->max_tokens, ctx);
            slot_fail(e, sl, &err);
            return;
        }
        max = (size_t)r->max_tokens;
    }
    if (max > ctx - n)
        max = ctx - n;
    flock_sampler_opts sp = flock_sampler_default_opts();
    sp.temperature = (float)r->temperature;
    sp.top_p = (float)r->top_p;
    sp.top_k = 0;
    sp.min_p = 0;
    sp.repeat_penalty = 1;
    pthread_mutex_lock(&e->mu);
    sp.seed = r->has_seed ? r->seed : (uint64_t)time(NULL) * 1000003u + e->next_id;
    pthread_mutex_unlock(&e->mu);
    flock_error fe = {0};
    flock_status st = flock_sampler_create(&sp, flock_model_n_vocab(e->m), &sl->smp, &fe);
    if (st == FLOCK_OK)
        st = flock_gen_start(sl->s, sl->smp, sl->ids, n, max, (const char *const *)r->stops, r->n_stops, &sl->g);
    if (st != FLOCK_OK) {
        serve_err_set(&err, status_http(st), status_http(st) == 400 ? "invalid_request_error" : "server_error", NULL,
                      NULL, "%s", fe.msg[0] ? fe.msg : flock_session_error(sl->s));
        slot_fail(e, sl, &err);
        return;
    }
    const flock_gen_stats *gs = flock_gen_get_stats(sl->g);
    pthread_mutex_lock(&e->mu);
    sl->fresh = false;
    j->res.prompt_tokens = n;
    j->res.prefill_tok_s = gs->prefill_s > 0 ? (double)n / gs->prefill_s : 0;
    j->res.keep = sl->keep;
    j->res.select = flock_select_mode_name(sl->select);
    j->started = true;
    e->met.prompt_tokens += n;
    e->met.prefill_s += gs->prefill_s;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Samples the slot's next token and hands its text to the job. */
static void slot_step(serve_engine *e, slot *sl)
{
    serve_job *j = sl->job;
    pthread_mutex_lock(&e->mu);
    bool cancelled = j->cancelled;
    if (cancelled)
        e->met.cancelled++;
    pthread_mutex_unlock(&e->mu);
    if (cancelled) {
        /* The client left (nobody waits), or the server stops past its grace:
         * the waiter learns so. */
        serve_err err;
        serve_err_set(&err, 503, "server_error", NULL, "cancelled", "the request was cancelled");
        pthread_mutex_lock(&e->mu);
        job_fail_locked(j, &err);
        pthread_mutex_unlock(&e->mu);
        slot_end(e, sl);
        return;
    }
    const char *text;
    size_t len;
    flock_status st = flock_gen_next(sl->g, &sl->tok, &text, &len);
    if (st != FLOCK_OK) {
        serve_err err;
        serve_err_set(&err, 500, "server_error", NULL, NULL, "%s", flock_session_error(sl->s));
        slot_fail(e, sl, &err);
        return;
    }
    bool done = flock_gen_done(sl->g);
    const flock_gen_stats *gs = flock_gen_get_stats(sl->g);
    pthread_mutex_lock(&e->mu);
    bool oom = false;
    if (len > 0) {
        if (j->n + len > j->cap) {
            size_t cap = (j->n + len) * 2 + 64;
            char *b = realloc(j->text, cap);
            if (b) {
                j->text = b;
                j->cap = cap;
            }
            oom = !b;
        }
        if (!oom) {
            memcpy(j->text + j->n, text, len);
            j->n += len;
        }
    }
    if (done && !oom) {
        j->res.completion_tokens = gs->generated_tokens;
        j->res.decode_tok_s = gs->decode_s > 0 ? (double)gs->generated_tokens / gs->decode_s : 0;
        j->res.finish = gs->stopped_eos || gs->stopped_string ? "stop" : "length";
        j->done = true;
        e->met.generated_tokens += gs->generated_tokens;
        e->met.decode_s += gs->decode_s;
    }
    if (len > 0 || done)
        pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&e->mu);
    if (oom) {
        serve_err err;
        serve_err_set(&err, 500, "server_error", NULL, NULL, "out of memory (reply text)");
        slot_fail(e, sl, &err);
    } else if (done) {
        slot_end(e, sl);
    }
}

/* The busy slots' sampled tokens, as one batched decode step (each
 * sequence's logits bit for bit what it gets alone): each weight is read
 * once for all of them. */
static void decode_busy(serve_engine *e)
{
    flock_session **ss = e->step_s;
    int32_t *toks = e->step_tok;
    slot **who = e->step_slot;
    size_t m = 0;
    for (int i = 0; i < e->o.parallel; i++) {
        slot *sl = &e->slots[i];
        if (!sl->job || sl->tok < 0)
            continue;
        ss[m] = sl->s;
        toks[m] = sl->tok;
        who[m++] = sl;
        sl->tok = -1;
    }
    if (m == 0)
        return;
    if (!e->o.no_batch) {
        for (size_t q = 0; q < m; q++)
            e->step_past[q] = flock_session_n_past(ss[q]);
        if (flock_session_decode_batch(ss, toks, m) == FLOCK_OK)
            return;
    }
    /* No batching, or the batch was refused: each slot that has not yet
     * advanced steps on its own, so that only the slots at fault fail. */
    for (size_t q = 0; q < m; q++) {
        if (!e->o.no_batch && flock_session_n_past(ss[q]) > e->step_past[q])
            continue;
        if (flock_session_decode(ss[q], &toks[q], 1) != FLOCK_OK) {
            serve_err err;
            serve_err_set(&err, 500, "server_error", NULL, NULL, "%s", flock_session_error(ss[q]));
            slot_fail(e, who[q], &err);
        }
    }
}

static void *engine_main(void *arg)
{
    serve_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        for (int i = 0; i < e->o.parallel && e->head; i++) {
            slot *sl = &e->slots[i];
            if (sl->job)
                continue;
            serve_job *j = e->head;
            e->head = j->next;
            if (!e->head)
                e->tail = NULL;
            j->next = NULL;
            e->queued--;
            sl->job = j;
            sl->fresh = true;
            e->busy++;
        }
        if (e->stopping && e->busy > 0 && now_s() > e->deadline)
            for (int i = 0; i < e->o.parallel; i++)
                if (e->slots[i].job)
                    e->slots[i].job->cancelled = true;
        if (e->busy == 0) {
            if (e->stopping)
                break;
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        /* One prefill per round, so that a long prompt delays the others'
         * next tokens by one prefill, not by many. */
        for (int i = 0; i < e->o.parallel; i++)
            if (e->slots[i].job && e->slots[i].fresh) {
                slot_start(e, &e->slots[i]);
                break;
            }
        for (int i = 0; i < e->o.parallel; i++) {
            slot *sl = &e->slots[i];
            if (sl->job && !sl->fresh && sl->g && sl->tok < 0)
                slot_step(e, sl);
        }
        decode_busy(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- create, submit, free ---------------------------------------------------- */

serve_engine *serve_engine_create(flock_model *m, const serve_engine_opts *o, char *err, size_t err_n)
{
    serve_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->slots = calloc((size_t)o->parallel, sizeof *e->slots)) ||
        !(e->step_s = calloc((size_t)o->parallel, sizeof *e->step_s)) ||
        !(e->step_tok = calloc((size_t)o->parallel, sizeof *e->step_tok)) ||
        !(e->step_slot = calloc((size_t)o->parallel, sizeof *e->step_slot)) ||
        !(e->step_past = calloc((size_t)o->parallel, sizeof *e->step_past))) {
        snprintf(err, err_n, "out of memory");
        if (e) {
            free(e->slots);
            free(e->step_s);
            free(e->step_tok);
            free(e->step_slot);
        }
        free(e);
        return NULL;
    }
    e->m = m;
    e->o = *o;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->met.slots = o->parallel;
    for (int i = 0; i < o->parallel; i++) {
        slot *sl = &e->slots[i];
        sl->tok = -1;
        flock_error fe = {0};
        if (flock_session_create(m, &o->so, &sl->s, &fe) != FLOCK_OK) {
            snprintf(err, err_n, "slot %d: %s", i, fe.msg);
            serve_engine_free(e);
            return NULL;
        }
        sl->keep = o->so.keep;
        sl->select = o->so.select;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        snprintf(err, err_n, "cannot start the engine thread");
        serve_engine_free(e);
        return NULL;
    }
    e->thread_started = true;
    return e;
}

void serve_engine_stop(serve_engine *e, double grace_s)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->stopping = true;
    e->deadline = now_s() + grace_s;
    serve_err err;
    serve_err_set(&err, 503, "server_error", NULL, "server_stopping", "the server is stopping");
    while (e->head) {
        serve_job *j = e->head;
        e->head = j->next;
        e->queued--;
        job_fail_locked(j, &err);
        job_unref_locked(j);
    }
    e->tail = NULL;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    e->thread_started = false;
}

void serve_engine_free(serve_engine *e)
{
    if (!e)
        return;
    serve_engine_stop(e, 0);
    for (int i = 0; i < e->o.parallel; i++) {
        flock_session_free(e->slots[i].s);
        free(e->slots[i].ids);
    }
    free(e->slots);
    free(e->step_s);
    free(e->step_tok);
    free(e->step_slot);
    free(e->step_past);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* The keep ratios a request may name: those compiled in, and 1. */
static bool keep_known(const flock_model *m, double k, char *list, size_t n)
{
    size_t nk = 0, len = 0;
    const double *ks = flock_model_keep_ratios(m, &nk);
    bool found = fabs(k - 1.0) < 1e-9;
    list[0] = 0;
    for (size_t i = 0; i < nk; i++) {
        found = found || fabs(ks[i] - k) < 1e-9;
        len += (size_t)snprintf(list + len, len < n ? n - len : 0, "%g, ", ks[i]);
        if (len >= n)
            len = n - 1;
    }
    snprintf(list + len, len < n ? n - len : 0, "1");
    return found;
}

serve_job *serve_engine_submit(serve_engine *e, serve_req *r, serve_err *err)
{
    if (r->model && strcmp(r->model, e->o.model_name) != 0) {
        serve_err_set(err, 404, "invalid_request_error", "model", "model_not_found",
                      "the model '%s' does not exist: this server runs '%s'", r->model, e->o.model_name);
        return NULL;
    }
    char list[256];
    if (r->has_keep && !keep_known(e->m, r->keep, list, sizeof list)) {
        serve_err_set(err, 400, "invalid_request_error", "keep", NULL,
                      "keep %g was not compiled into this bundle (compiled: %s)", r->keep, list);
        return NULL;
    }
    if (r->max_tokens > e->o.max_tokens) {
        serve_err_set(err, 400, "invalid_request_error", "max_tokens", NULL,
                      "max_tokens is %lld: this server allows at most %lld (flock serve --max-tokens)", r->max_tokens,
                      e->o.max_tokens);
        return NULL;
    }
    serve_job *j = calloc(1, sizeof *j);
    if (!j) {
        serve_err_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    pthread_cond_init(&j->cv, NULL);
    j->e = e;
    j->refs = 2;
    pthread_mutex_lock(&e->mu);
    /* Capacity is every slot plus the queue: a job counts as waiting from
     * here until the engine thread moves it into a free slot, so comparing
     * e->queued alone with the queue's length would turn away a burst's
     * second request while a slot is still free. */
    if (e->stopping || e->busy + e->queued >= e->o.parallel + e->o.queue) {
        bool stopping = e->stopping;
        e->met.rejected++;
        pthread_mutex_unlock(&e->mu);
        pthread_cond_destroy(&j->cv);
        free(j);
        if (stopping)
            serve_err_set(err, 503, "server_error", NULL, "server_stopping", "the server is stopping");
        else
            serve_err_set(err, 503, "server_error", NULL, "queue_full",
                          "all %d slots are busy and %d requests wait: try again shortly", e->o.parallel,
                          e->o.queue);
        return NULL;
    }
    j->req = *r;
    memset(r, 0, sizeof *r);
    unsigned long long id = ++e->next_id;
    snprintf(j->id, sizeof j->id, "%s-flock-%llu", j->req.kind == SERVE_CHAT ? "chatcmpl" : "cmpl", id);
    j->res.id = j->id;
    j->res.model = e->o.model_name;
    j->res.created = (long long)time(NULL);
    j->res.finish = "stop";
    if (e->tail)
        e->tail->next = j;
    else
        e->head = j;
    e->tail = j;
    e->queued++;
    e->met.requests++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return j;
}

void serve_engine_metrics(serve_engine *e, serve_metrics *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->met;
    out->queued = e->queued;
    out->busy = e->busy;
    pthread_mutex_unlock(&e->mu);
}
