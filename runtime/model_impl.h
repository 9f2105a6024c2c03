/* Private: the model and session structures shared by model.c, session.c,
 * generate.c and the tokenizer glue. */
#ifndef FLOCK_RUNTIME_MODEL_IMPL_H
#define FLOCK_RUNTIME_MODEL_IMPL_H

#include "cpu_jit_loader.h"
#include "exec.h"
#include "flock/bundle.h"
#include "flock/flock.h"
#include "flock/ir.h"
#include "griffin.h"
#include "tokenizer.h"

struct flock_model {
    flock_bundle *bundle;
    flock_program *prog;
    flock_plan plan;       /* prog's analysis, shared by every session's backend */
    flock_wmat *tensors;   /* [prog->n_tensors] */
    void **owned;          /* [prog->n_tensors]: memory we allocated (decompressed / converted), or NULL */
    uint64_t weight_bytes;
    double *keeps;         /* compiled keep ratios */
    size_t n_keeps;
    struct flock_model_tok *tok; /* tokenizer (NULL when the bundle has none) */
    flock_cpu_jit *jit;    /* generated CPU kernels that loaded, or NULL */
    char jit_why[512];     /* why none loaded ("" when one did) */
};

struct flock_session {
    flock_model *m;
    flock_session_opts o;   /* checked: n_ctx and threads resolved */
    struct flock_backend *be; /* runs the program (backend.h) */
    bool selected;
    uint64_t rng;
    flock_rank_pair *pairs; /* [max d_ff] */
    int32_t *perm;          /* [max d_ff] */
    uint8_t *seen;          /* [max d_ff] */
    /* griffin-adaptive / glass scratch (NULL in the other modes) */
    double *share;          /* [sum d_ff] each layer's shares of its statistic */
    const double **share_at; /* [n_ffn] layer i's first share */
    flock_alloc_cand *cands; /* [sum d_ff] */
    double *sorted;         /* [max d_ff] */
    int64_t *ffn_d, *ffn_lo, *ffn_k; /* [n_ffn] */
    int32_t *pos_global;    /* [sum d_ff] glass: each neuron's place in the static ranking */
    double *blend;          /* [max d_ff] */
    size_t since_select;    /* tokens decoded since the experts were last selected (refresh) */
    int32_t *history;       /* [n_ctx] tokens so far (for the sampler's penalty) */
    int32_t *generated;     /* [n_ctx] ids of the last flock_generate (its stats point here) */
    size_t n_history;
    char *pend;             /* generation text not yet emitted (stop-string hold-back) */
    size_t pend_cap;
    char *dec;              /* one token's decoded text */
    size_t dec_cap;
    char msg[512];
    char device_note[512];  /* which backend, and why the ones before it were passed over */
};

/* Keeps err's message on the session and returns `st`, the status of the
 * failure it describes (never read from err: a callee may fail without
 * writing one). */
flock_status flock_session_fail(flock_session *s, flock_status st, const flock_error *err);
/* The vocabulary a sampler was made for (flock_sampler_create's n_vocab). */
int32_t flock_sampler_n_vocab(const flock_sampler *s);

/* Tokenizer glue (model_tok.c). */
flock_status flock_model_tok_load(flock_model *m, flock_error *err);
void flock_model_tok_free(struct flock_model_tok *t);
size_t flock_model_max_piece_bytes(const flock_model *m);
flock_status flock_model_decode_token(const flock_model *m, flock_tok_decoder *d, int32_t id, char *out, size_t cap,
                                      size_t *n);
size_t flock_model_decode_flush(const flock_model *m, flock_tok_decoder *d, char *out, size_t cap);

#endif
