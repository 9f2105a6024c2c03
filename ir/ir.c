/* Program construction: create/free, the builders and the enum names. */
#include "flock/ir.h"

#include <stdlib.h>
#include <string.h>

static const char *const op_kind_names[] = {
    [FLOCK_OP_EMBED] = "embed",         [FLOCK_OP_POS_EMBED] = "pos_embed",
    [FLOCK_OP_RMSNORM] = "rmsnorm",     [FLOCK_OP_LAYERNORM] = "layernorm",
    [FLOCK_OP_LINEAR] = "linear",       [FLOCK_OP_ROPE] = "rope",
    [FLOCK_OP_ATTENTION] = "attention", [FLOCK_OP_ADD] = "add",
    [FLOCK_OP_FFN] = "ffn",             [FLOCK_OP_LM_HEAD] = "lm_head",
};
_Static_assert(sizeof op_kind_names / sizeof op_kind_names[0] == FLOCK_OP_COUNT,
               "op_kind_names must name every flock_op_kind");

static const char *const act_names[] = {
    [FLOCK_ACT_NONE] = "none", [FLOCK_ACT_SILU] = "silu", [FLOCK_ACT_GELU] = "gelu",
    [FLOCK_ACT_GELU_TANH] = "gelu_tanh", [FLOCK_ACT_RELU] = "relu",
};
_Static_assert(sizeof act_names / sizeof act_names[0] == FLOCK_ACT_COUNT,
               "act_names must name every flock_act");

const char *flock_op_kind_name(flock_op_kind k)
{
    return (unsigned)k < FLOCK_OP_COUNT ? op_kind_names[k] : "?";
}

const char *flock_act_name(flock_act a)
{
    return (unsigned)a < FLOCK_ACT_COUNT ? act_names[a] : "?";
}

flock_status flock_program_create(flock_program **out)
{
    if (!out)
        return FLOCK_E_INVALID_ARG;
    flock_program *p = calloc(1, sizeof *p);
    if (!p)
        return FLOCK_E_NOMEM;
    if (flock_program_add_value(p, "tokens", FLOCK_DTYPE_I32, 1) != 0) {
        flock_program_free(p);
        return FLOCK_E_NOMEM;
    }
    *out = p;
    return FLOCK_OK;
}

void flock_program_free(flock_program *p)
{
    if (!p)
        return;
    free(p->values);
    free(p->tensors);
    free(p->ops);
    free(p);
}

/* Grows an array of `elem` byte items so that one more fits. */
static int grow(void **arr, uint32_t n, uint32_t *cap, size_t elem)
{
    if (n < *cap)
        return 0;
    if (n >= (uint32_t)INT32_MAX)
        return -1;
    uint32_t nc = *cap ? *cap * 2 : 16;
    if (nc > (uint32_t)INT32_MAX)
        nc = (uint32_t)INT32_MAX;
    void *na = realloc(*arr, (size_t)nc * elem);
    if (!na)
        return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

int32_t flock_program_add_value(flock_program *p, const char *name, flock_dtype dtype, int32_t width)
{
    if (!p || !name || strlen(name) >= sizeof p->values[0].name)
        return -1;
    if (grow((void **)&p->values, p->n_values, &p->cap_values, sizeof *p->values))
        return -1;
    flock_value *v = &p->values[p->n_values];
    memset(v, 0, sizeof *v);
    strcpy(v->name, name);
    v->dtype = dtype;
    v->width = width;
    return (int32_t)p->n_values++;
}

int32_t flock_program_add_tensor(flock_program *p, const char *name, flock_dtype dtype, uint32_t n_dims,
                                 const uint64_t *shape)
{
    if (!p || !name || strlen(name) >= sizeof p->tensors[0].name || n_dims > 4 || (n_dims && !shape))
        return -1;
    if (grow((void **)&p->tensors, p->n_tensors, &p->cap_tensors, sizeof *p->tensors))
        return -1;
    flock_tensor_ref *t = &p->tensors[p->n_tensors];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (uint32_t i = 0; i < n_dims; i++)
        t->shape[i] = shape[i];
    return (int32_t)p->n_tensors++;
}

int32_t flock_program_find_tensor(const flock_program *p, const char *name)
{
    if (!p || !name)
        return -1;
    for (uint32_t i = 0; i < p->n_tensors; i++)
        if (strcmp(p->tensors[i].name, name) == 0)
            return (int32_t)i;
    return -1;
}

flock_op *flock_program_add_op(flock_program *p, flock_op_kind kind, int32_t layer)
{
    if (!p)
        return NULL;
    if (grow((void **)&p->ops, p->n_ops, &p->cap_ops, sizeof *p->ops))
        return NULL;
    flock_op *op = &p->ops[p->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->layer = layer;
    op->out = -1;
    for (int i = 0; i < FLOCK_OP_MAX_IN; i++)
        op->in[i] = -1;
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        op->w[i] = -1;
    return op;
}
