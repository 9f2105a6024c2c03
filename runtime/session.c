/* Sessions: one backend (backend.h) chosen at create, buffers sized once,
 * prefill with the full FF and the expert selection, decode with the
 * experts, logits and experts accessors. Nothing here asks which backend. */
#include "backend.h"
#include "model_impl.h"
#include "names.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const mode_names[] = {"griffin", "magnitude", "random", "griffin-adaptive", "glass"};
_Static_assert(sizeof mode_names / sizeof mode_names[0] == FLOCK_SELECT_COUNT, "a name per selection mode");

FLOCK_NAME_FUNCS(flock_select_mode, mode_names, FLOCK_SELECT_COUNT, flock_select_mode_name, flock_select_mode_parse)

static const char *const kv_names[] = {"f16", "f32"};
_Static_assert(sizeof kv_names / sizeof kv_names[0] == FLOCK_KV_TYPE_COUNT, "a name per KV type");

FLOCK_NAME_FUNCS(flock_kv_type, kv_names, FLOCK_KV_TYPE_COUNT, flock_kv_type_name, flock_kv_type_parse)

static const char *const kernel_names[] = {"auto", "generated", "portable"};
_Static_assert(sizeof kernel_names / sizeof kernel_names[0] == FLOCK_KERNELS_CHOICE_COUNT, "a name per choice");

FLOCK_NAME_FUNCS(flock_kernel_choice, kernel_names, FLOCK_KERNELS_CHOICE_COUNT, flock_kernel_choice_name,
                 flock_kernel_choice_parse)

flock_session_opts flock_session_default_opts(void)
{
    return (flock_session_opts){.keep = 1.0, .n_ctx = 0, .threads = 0, .seed = 0,
                                .select = FLOCK_SELECT_GRIFFIN, .all_logits = false,
                                .device = FLOCK_DEVICE_AUTO, .kernels = FLOCK_KERNELS_AUTO, .refresh = 0,
                                .glass_weight = FLOCK_GLASS_WEIGHT_DEFAULT, .pack_rows = true,
                                .kv_type = FLOCK_KV_F16};
}

flock_status flock_session_fail(flock_session *s, flock_status st, const flock_error *err)
{
    snprintf(s->msg, sizeof s->msg, "%s", err->msg);
    return st;
}

/* Modes that rank GRIFFIN's statistic (the prompt pass accumulates it). */
static bool uses_statistic(flock_select_mode m)
{
    return m == FLOCK_SELECT_GRIFFIN || m == FLOCK_SELECT_GRIFFIN_ADAPTIVE || m == FLOCK_SELECT_GLASS;
}

/* Modes whose selection is made on the host from ffn_at(i)->sumsq with a
 * count per layer that the CUDA kernels (compiled for one k) cannot take;
 * they need the scratch of mode_scratch. */
static bool cpu_only(flock_select_mode m)
{
    return m == FLOCK_SELECT_GRIFFIN_ADAPTIVE || m == FLOCK_SELECT_GLASS;
}

static flock_status check_opts(const flock_model *m, flock_session_opts *o, flock_error *err)
{
    if (!(o->keep > 0 && o->keep <= 1))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "keep ratio %g is outside (0, 1]", o->keep);
    if (o->keep != 1.0 && m->n_keeps > 0) {
        bool found = false;
        char list[256] = "";
        size_t len = 0;
        for (size_t i = 0; i < m->n_keeps; i++) {
            found = found || fabs(m->keeps[i] - o->keep) < 1e-9;
            len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%g", i ? ", " : "",
                                    m->keeps[i]);
            if (len >= sizeof list)
                len = sizeof list - 1;
        }
        if (!found)
            return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                   "keep ratio %g was not compiled into this bundle (compiled: %s; or 1.0)", o->keep,
                                   list);
    }
    if ((unsigned)o->kernels >= FLOCK_KERNELS_CHOICE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel choice %d", (int)o->kernels);
    if ((unsigned)o->kv_type >= FLOCK_KV_TYPE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "KV cache type %d (f16 or f32)", (int)o->kv_type);
    if ((unsigned)o->select >= FLOCK_SELECT_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "selection mode %d", (int)o->select);
    int32_t trained = m->prog->cfg.n_ctx > 0 ? m->prog->cfg.n_ctx : 4096;
    if (o->n_ctx == 0)
        o->n_ctx = trained < 4096 ? trained : 4096;
    if (o->n_ctx < 1 || o->n_ctx > trained)
        return flock_error_set(err, FLOCK_E_RANGE, "context of %d tokens: the model supports 1 to %d", o->n_ctx,
                               trained);
    if (o->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n > 0 ? (int)(n < 64 ? n : 64) : 1;
    }
    if (o->threads < 1 || o->threads > 256)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "%d threads", o->threads);
    if (o->refresh < 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "refresh every %d tokens: must be 0 (never) or more",
                               o->refresh);
    if (o->refresh > 0 && !uses_statistic(o->select))
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "refresh needs a selection from the statistic (griffin, griffin-adaptive, glass), "
                               "not %s", flock_select_mode_name(o->select));
    if (!(o->glass_weight >= 0 && o->glass_weight <= 1))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "glass weight %g is outside [0, 1]", o->glass_weight);
    if (o->select == FLOCK_SELECT_MAGNITUDE || o->select == FLOCK_SELECT_GLASS)
        for (uint32_t i = 0; i < m->prog->n_ops; i++) {
            const flock_op *op = &m->prog->ops[i];
            if (op->kind != FLOCK_OP_FFN)
                continue;
            const flock_wmat *r = op->w[5] >= 0 ? &m->tensors[op->w[5]] : NULL;
            if (!r)
                return flock_error_set(err, FLOCK_E_NOT_FOUND,
                                       "layer %d has no magnitude ranking (blk.%d.ffn_magnitude_rank): "
                                       "compile the bundle with it to use --select %s",
                                       op->layer, op->layer, flock_select_mode_name(o->select));
            if (r->dtype != FLOCK_DTYPE_I32 || r->rows * r->cols != op->d_ff)
                return flock_error_set(err, FLOCK_E_CORRUPT, "layer %d: magnitude ranking must be i32 [%d]",
                                       op->layer, op->d_ff);
        }
    return FLOCK_OK;
}

/* The backends in the order --device auto tries them: the first that
 * opens wins, and the note says why each before it was passed over. */
static const struct {
    flock_device device;
    flock_backend_open_fn open;
} backends[] = {
    {FLOCK_DEVICE_CUDA, flock_backend_cuda_open},
    {FLOCK_DEVICE_CPU, flock_backend_cpu_open},
};

/* Opens the backend for o->device into s->be, with s->device_note. */
static flock_status open_backend(flock_session *s, flock_error *err)
{
    const flock_session_opts *o = &s->o;
    char passed[480] = "";
    size_t len = 0;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (o->device != FLOCK_DEVICE_AUTO && o->device != backends[i].device)
            continue;
        flock_error be = {0};
        flock_status st = backends[i].device == FLOCK_DEVICE_CUDA && cpu_only(o->select)
                              ? flock_error_set(&be, FLOCK_E_UNSUPPORTED,
                                                "selection %s runs on the CPU only (the CUDA kernels are "
                                                "compiled for one count per layer)",
                                                flock_select_mode_name(o->select))
                              : backends[i].open(s->m, o, &s->be, &be);
        const char *name = flock_device_name(backends[i].device);
        if (st == FLOCK_OK) {
            const char *what = s->be->what;
            if (o->device != FLOCK_DEVICE_AUTO)
                snprintf(s->device_note, sizeof s->device_note, "%s: asked for%s%s%s", name, *what ? " (" : "",
                         what, *what ? ")" : "");
            else if (len)
                snprintf(s->device_note, sizeof s->device_note, "auto: %s (%s)", name, passed);
            else
                snprintf(s->device_note, sizeof s->device_note, "auto: %s%s%s%s", name, *what ? " (" : "", what,
                         *what ? ")" : "");
            return FLOCK_OK;
        }
        if (o->device != FLOCK_DEVICE_AUTO)
            return o->device == FLOCK_DEVICE_CPU ? flock_error_set(err, st, "%s", be.msg)
                                                 : flock_error_set(err, st, "device %s: %s", name, be.msg);
        int w = snprintf(passed + len, sizeof passed - len, "%s%s passed over: %s", len ? "; " : "", name, be.msg);
        len = w < 0 ? len : len + (size_t)w < sizeof passed ? len + (size_t)w : sizeof passed - 1;
    }
    return flock_error_set(err, FLOCK_E_UNSUPPORTED, "no backend can run this model (%s)", passed);
}

static flock_status finish_create(flock_session *s, flock_session **out, flock_error *err);

flock_status flock_session_create(flock_model *m, const flock_session_opts *opts, flock_session **out,
                                  flock_error *err)
{
    if (!m || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_session_create: NULL argument");
    flock_session_opts o = opts ? *opts : flock_session_default_opts();
    flock_status st = check_opts(m, &o, err);
    if (st != FLOCK_OK)
        return st;
    if ((unsigned)o.device >= FLOCK_DEVICE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "device %d out of range", (int)o.device);
    flock_session *s = calloc(1, sizeof *s);
    if (!s)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    s->m = m;
    s->o = o;
    s->rng = flock_rng_seed(o.seed);
    if ((st = open_backend(s, err)) != FLOCK_OK) {
        free(s);
        return st;
    }
    return finish_create(s, out, err);
}

/* The session's FF layers. */
static size_t n_ffn(const flock_session *s)
{
    return s->be->iface->n_ffn(s->be);
}

static flock_exec_ffn *ffn_at(const flock_session *s, size_t i)
{
    return s->be->iface->ffn_at(s->be, i);
}

/* griffin-adaptive's and glass's buffers, sized once; glass's global
 * positions from the static ranking, checked to be a permutation. */
static flock_status mode_scratch(flock_session *s, size_t max_dff, flock_error *err)
{
    flock_select_mode m = s->o.select;
    if (!cpu_only(m))
        return FLOCK_OK;
    size_t n = n_ffn(s), sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (size_t)ffn_at(s, i)->d_ff;
    if (m == FLOCK_SELECT_GRIFFIN_ADAPTIVE) {
        s->share = malloc(sum * sizeof *s->share);
        s->share_at = malloc(n * sizeof *s->share_at);
        s->cands = malloc(sum * sizeof *s->cands);
        s->sorted = malloc(max_dff * sizeof *s->sorted);
        s->ffn_d = malloc(n * sizeof *s->ffn_d);
        s->ffn_lo = malloc(n * sizeof *s->ffn_lo);
        s->ffn_k = malloc(n * sizeof *s->ffn_k);
        if (!s->share || !s->share_at || !s->cands || !s->sorted || !s->ffn_d || !s->ffn_lo || !s->ffn_k)
            return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        return FLOCK_OK;
    }
    s->pos_global = malloc(sum * sizeof *s->pos_global);
    s->blend = malloc(max_dff * sizeof *s->blend);
    if (!s->pos_global || !s->blend)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const flock_exec_ffn *f = ffn_at(s, i);
        const int32_t *rank = s->m->tensors[s->m->prog->ops[f->op].w[5]].data;
        /* flock_select_from_rank checks the permutation; its k = 0 output is unused. */
        flock_status st = flock_select_from_rank(rank, f->d_ff, 0, s->perm, s->seen, err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "layer %d", f->layer);
        flock_rank_positions(rank, f->d_ff, s->pos_global + off);
        off += (size_t)f->d_ff;
    }
    return FLOCK_OK;
}

/* The buffers every backend needs (selection scratch, history, text). */
static flock_status finish_create(flock_session *s, flock_session **out, flock_error *err)
{
    const flock_session_opts o = s->o;
    const flock_model *m = s->m;
    size_t dff = 1;
    for (size_t i = 0; i < n_ffn(s); i++)
        if ((size_t)ffn_at(s, i)->d_ff > dff)
            dff = (size_t)ffn_at(s, i)->d_ff;
    s->pairs = malloc(dff * sizeof *s->pairs);
    s->perm = malloc(dff * sizeof *s->perm);
    s->seen = malloc(dff);
    s->history = malloc((size_t)o.n_ctx * sizeof *s->history);
    s->generated = malloc((size_t)o.n_ctx * sizeof *s->generated);
    s->dec_cap = 3 * flock_model_max_piece_bytes(m) + 16;
    s->dec = malloc(s->dec_cap);
    s->pend_cap = 4096 + s->dec_cap;
    s->pend = malloc(s->pend_cap);
    if (!s->pairs || !s->perm || !s->seen || !s->history || !s->generated || !s->pend || !s->dec) {
        flock_session_free(s);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    flock_status st = mode_scratch(s, dff, err);
    if (st != FLOCK_OK) {
        flock_session_free(s);
        return st;
    }
    *out = s;
    return FLOCK_OK;
}

void flock_session_free(flock_session *s)
{
    if (!s)
        return;
    flock_backend_free(s->be);
    free(s->pairs);
    free(s->perm);
    free(s->seen);
    free(s->history);
    free(s->generated);
    free(s->pend);
    free(s->dec);
    free(s->share);
    free(s->share_at);
    free(s->cands);
    free(s->sorted);
    free(s->ffn_d);
    free(s->ffn_lo);
    free(s->ffn_k);
    free(s->pos_global);
    free(s->blend);
    free(s);
}

const char *flock_session_error(const flock_session *s)
{
    return s ? s->msg : "";
}

/* griffin-adaptive: each layer's count, the uniform counts' total split by
 * the layers' shares of their statistic (flock_allocate_budget), each at
 * least FLOCK_ADAPTIVE_FLOOR of its uniform count. */
static void allocate_counts(flock_session *s)
{
    size_t n = n_ffn(s), off = 0;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const flock_exec_ffn *f = ffn_at(s, i);
        int64_t k = flock_keep_count(s->o.keep, f->d_ff);
        total += k;
        s->ffn_d[i] = f->d_ff;
        s->ffn_lo[i] = (int64_t)floor(FLOCK_ADAPTIVE_FLOOR * (double)k);
        flock_share_normalize(f->sumsq, f->d_ff, s->share + off);
        s->share_at[i] = s->share + off;
        off += (size_t)f->d_ff;
    }
    flock_allocate_budget(s->share_at, s->ffn_d, n, s->ffn_lo, total, s->ffn_k, s->cands, s->sorted);
}

/* Chooses each FF layer's experts from the statistic / ranking / rng. */
static flock_status select_experts(flock_session *s, flock_error *err)
{
    const flock_backend_iface *be = s->be->iface;
    s->since_select = 0;
    if (s->o.select == FLOCK_SELECT_GRIFFIN && be->select_griffin) { /* top-k on the backend's device */
        flock_status st = be->select_griffin(s->be, err);
        if (st != FLOCK_OK)
            return st;
        s->selected = true;
        return FLOCK_OK;
    }
    if (s->o.select == FLOCK_SELECT_GRIFFIN_ADAPTIVE)
        allocate_counts(s);
    size_t off = 0;
    for (size_t i = 0; i < n_ffn(s); i++) {
        flock_exec_ffn *f = ffn_at(s, i);
        int64_t k = s->o.select == FLOCK_SELECT_GRIFFIN_ADAPTIVE ? s->ffn_k[i] : flock_keep_count(s->o.keep, f->d_ff);
        switch (s->o.select) {
        case FLOCK_SELECT_GRIFFIN:
        case FLOCK_SELECT_GRIFFIN_ADAPTIVE:
            flock_select_topk(f->sumsq, f->d_ff, k, f->idx, s->pairs);
            break;
        case FLOCK_SELECT_GLASS:
            flock_select_blend(f->sumsq, s->pos_global + off, f->d_ff, k, s->o.glass_weight, f->idx, s->pairs,
                               s->blend);
            break;
        case FLOCK_SELECT_MAGNITUDE: {
            const flock_op *op = &s->m->prog->ops[f->op];
            flock_status st = flock_select_from_rank(s->m->tensors[op->w[5]].data, f->d_ff, k, f->idx, s->seen, err);
            if (st != FLOCK_OK)
                return flock_error_prefix(err, st, "layer %d", f->layer);
            break;
        }
        default:
            flock_select_random(&s->rng, f->d_ff, k, f->idx, s->perm);
        }
        f->k = k;
        off += (size_t)f->d_ff;
    }
    if (be->commit_selection) {
        flock_status st = be->commit_selection(s->be, err);
        if (st != FLOCK_OK)
            return st;
    }
    s->selected = true;
    return FLOCK_OK;
}

static flock_status run(flock_session *s, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                        flock_error *err)
{
    return s->be->iface->run(s->be, ids, n, mode, stats, err);
}

flock_status flock_session_prefill(flock_session *s, const int32_t *ids, size_t n)
{
    flock_error err = {0};
    if (!s)
        return FLOCK_E_INVALID_ARG;
    if (!ids || n == 0)
        return flock_session_fail(s, flock_error_set(&err, FLOCK_E_INVALID_ARG, "empty prompt"), &err);
    flock_status st;
    if (flock_session_n_past(s) != 0) {
        st = flock_error_set(&err, FLOCK_E_INVALID_ARG, "prefill needs a fresh session: call flock_session_reset");
        return flock_session_fail(s, st, &err);
    }
    if (n > (size_t)s->o.n_ctx) {
        st = flock_error_set(&err, FLOCK_E_RANGE, "the prompt has %zu tokens, longer than the context of %d tokens", n,
                             s->o.n_ctx);
        return flock_session_fail(s, st, &err);
    }
    st = run(s, ids, n, FLOCK_FF_FULL, uses_statistic(s->o.select), &err);
    if (st == FLOCK_OK)
        st = select_experts(s, &err);
    if (st != FLOCK_OK)
        return flock_session_fail(s, st, &err);
    memcpy(s->history, ids, n * sizeof *ids);
    s->n_history = n;
    return FLOCK_OK;
}

/* A refresh: the token with the full FF, its activations added to the
 * statistic, then the experts selected again (since_select back to 0). */
static flock_status refresh_step(flock_session *s, int32_t id, flock_error *err)
{
    flock_status st = run(s, &id, 1, FLOCK_FF_FULL, true, err);
    return st == FLOCK_OK ? select_experts(s, err) : st;
}

/* What the executor checks per run, checked for all n tokens at once when
 * a refresh splits them into several runs. */
static flock_status check_tokens(const flock_session *s, const int32_t *ids, size_t n, flock_error *err)
{
    size_t past = flock_session_n_past(s);
    if (n > (size_t)s->o.n_ctx - past)
        return flock_error_set(err, FLOCK_E_RANGE,
                               "%zu tokens do not fit in the context: %zu already used of %d (needs %zu)", n, past,
                               s->o.n_ctx, past + n);
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= flock_model_n_vocab(s->m))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "token %zu is id %d, outside the vocabulary [0, %d)",
                                   t, ids[t], flock_model_n_vocab(s->m));
    return FLOCK_OK;
}

/* Whether the next decoded token is a refresh. */
static bool refresh_due(const flock_session *s)
{
    return s->o.refresh > 0 && s->since_select + 1 >= (size_t)s->o.refresh;
}

/* Decode runs through the selected experts: there must be some. */
static flock_status check_selected(const flock_session *s, flock_error *err)
{
    return s->selected ? FLOCK_OK
                       : flock_error_set(err, FLOCK_E_INVALID_ARG, "no experts are selected yet: prefill a prompt first");
}

flock_status flock_session_decode(flock_session *s, const int32_t *ids, size_t n)
{
    flock_error err = {0};
    if (!s)
        return FLOCK_E_INVALID_ARG;
    if (n == 0)
        return FLOCK_OK;
    if (!ids)
        return flock_session_fail(s, flock_error_set(&err, FLOCK_E_INVALID_ARG, "decode: NULL ids"), &err);
    flock_status st = check_selected(s, &err);
    if (st != FLOCK_OK)
        return flock_session_fail(s, st, &err);
    if (s->o.refresh > 0 && (st = check_tokens(s, ids, n, &err)) != FLOCK_OK) /* before any token runs */
        return flock_session_fail(s, st, &err);
    for (size_t t = 0; t < n;) {
        /* Without refresh one run; with it, the tokens up to the next
         * refresh sparse, then that one dense, then a new selection. */
        size_t sparse = n - t;
        if (s->o.refresh > 0) {
            size_t left = (size_t)s->o.refresh - 1 - s->since_select;
            sparse = sparse < left ? sparse : left;
        }
        if (sparse > 0 && (st = run(s, ids + t, sparse, FLOCK_FF_SPARSE, false, &err)) != FLOCK_OK)
            return flock_session_fail(s, st, &err);
        s->since_select += sparse;
        t += sparse;
        if (t < n && (st = refresh_step(s, ids[t], &err)) != FLOCK_OK)
            return flock_session_fail(s, st, &err);
        t += t < n;
    }
    memcpy(s->history + s->n_history, ids, n * sizeof *ids);
    s->n_history += n;
    return FLOCK_OK;
}

flock_status flock_session_decode_batch(flock_session *const *s, const int32_t *ids, size_t n)
{
    if (n == 0)
        return FLOCK_OK;
    if (!s || !ids)
        return FLOCK_E_INVALID_ARG;
    /* Every session first: a step either runs for all or for none. */
    flock_status bad = FLOCK_OK;
    for (size_t i = 0; i < n; i++) {
        flock_error err = {0};
        flock_status st = FLOCK_OK;
        if (!s[i])
            return FLOCK_E_INVALID_ARG;
        for (size_t j = 0; j < i && st == FLOCK_OK; j++)
            if (s[j] == s[i])
                st = flock_error_set(&err, FLOCK_E_INVALID_ARG, "the session is in the batch twice (%zu and %zu)", j, i);
        if (st == FLOCK_OK && s[i]->m != s[0]->m)
            st = flock_error_set(&err, FLOCK_E_INVALID_ARG, "the batch mixes sessions of different models");
        if (st == FLOCK_OK)
            st = check_selected(s[i], &err);
        if (st == FLOCK_OK && flock_session_n_past(s[i]) >= (size_t)s[i]->o.n_ctx)
            st = flock_error_set(&err, FLOCK_E_RANGE, "1 token does not fit in the context: %zu already used of %d",
                                 flock_session_n_past(s[i]), s[i]->o.n_ctx);
        if (st == FLOCK_OK && (ids[i] < 0 || ids[i] >= flock_model_n_vocab(s[i]->m)))
            st = flock_error_set(&err, FLOCK_E_INVALID_ARG, "token id %d is outside the vocabulary [0, %d)", ids[i],
                                 flock_model_n_vocab(s[i]->m));
        if (st != FLOCK_OK) {
            flock_session_fail(s[i], st, &err);
            if (bad == FLOCK_OK)
                bad = st;
        }
    }
    if (bad != FLOCK_OK)
        return bad;
    /* Runs of sessions the backend can step together, in list order. */
    for (size_t i = 0; i < n;) {
        const flock_backend_iface *ifc = s[i]->be->iface;
        size_t j = i + 1;
        if (ifc->run_batch && !refresh_due(s[i]))
            while (j < n && j - i < FLOCK_EXEC_MAX_BATCH && s[j]->be->iface == ifc &&
                   s[j]->o.threads == s[i]->o.threads && !refresh_due(s[j]))
                j++;
        flock_status st;
        flock_error err = {0};
        bool refreshed = false;
        if (j - i > 1) {
            flock_backend *bs[FLOCK_EXEC_MAX_BATCH];
            for (size_t q = i; q < j; q++)
                bs[q - i] = s[q]->be;
            st = ifc->run_batch(bs, j - i, ids + i, &err);
        } else if (refresh_due(s[i])) {
            st = refresh_step(s[i], ids[i], &err);
            refreshed = true;
        } else {
            st = run(s[i], ids + i, 1, FLOCK_FF_SPARSE, false, &err);
        }
        if (st != FLOCK_OK) {
            for (size_t q = i; q < j; q++)
                flock_session_fail(s[q], st, &err);
            return st;
        }
        for (size_t q = i; q < j; q++) {
            s[q]->history[s[q]->n_history++] = ids[q];
            s[q]->since_select += refreshed ? 0 : 1;
        }
        i = j;
    }
    return FLOCK_OK;
}

void flock_session_reset(flock_session *s)
{
    s->be->iface->reset(s->be);
    s->selected = false;
    s->since_select = 0;
    s->n_history = 0;
    s->msg[0] = '\0';
}

size_t flock_session_n_past(const flock_session *s)
{
    return s->be->iface->n_past(s->be);
}

size_t flock_session_n_ctx(const flock_session *s)
{
    return (size_t)s->o.n_ctx;
}

const float *flock_session_logits(const flock_session *s, size_t *n_pos)
{
    if (n_pos)
        *n_pos = s->o.all_logits ? flock_session_n_past(s) : 1;
    return s->be->iface->logits(s->be);
}

const float *flock_session_last_logits(const flock_session *s)
{
    const float *l = flock_session_logits(s, NULL);
    size_t np = flock_session_n_past(s);
    if (s->o.all_logits && np > 0)
        l += (np - 1) * (size_t)s->be->iface->n_vocab(s->be);
    return l;
}

size_t flock_session_n_ffn(const flock_session *s)
{
    return n_ffn(s);
}

flock_status flock_session_experts(const flock_session *s, size_t i, int32_t *layer, const int32_t **idx,
                                   size_t *k)
{
    flock_exec_ffn *f = ffn_at(s, i);
    if (!f || f->k < 0)
        return FLOCK_E_INVALID_ARG;
    if (layer)
        *layer = f->layer;
    *idx = f->idx;
    *k = (size_t)f->k;
    return FLOCK_OK;
}

uint64_t flock_session_decode_bytes(const flock_session *s)
{
    return s->be->iface->decode_bytes(s->be);
}

uint64_t flock_session_packed_bytes(const flock_session *s)
{
    return s && s->be->iface->packed_bytes ? s->be->iface->packed_bytes(s->be) : 0;
}

uint64_t flock_session_kv_bytes(const flock_session *s, size_t n_tokens)
{
    if (!s)
        return 0;
    const flock_plan *pl = &s->m->plan;
    uint64_t per_token = 0;
    for (int32_t i = 0; i < pl->n_kv_slots; i++)
        per_token += 2u * (uint64_t)(pl->kv_width[i] > 0 ? pl->kv_width[i] : 0) * s->be->kv_elem_bytes;
    return per_token * n_tokens;
}

flock_device flock_session_device(const flock_session *s)
{
    return s->be->device;
}

const char *flock_session_device_note(const flock_session *s)
{
    return s->device_note;
}

const char *flock_session_kernels(const flock_session *s)
{
    return s->be->kernels;
}

flock_kv_type flock_session_kv_type(const flock_session *s)
{
    return s->be->kv_elem_bytes == 4 ? FLOCK_KV_F32 : FLOCK_KV_F16;
}

int flock_session_threads(const flock_session *s)
{
    return s->o.threads;
}
