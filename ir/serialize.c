/* Binary form of a program (the bundle's program section).
 *
 * Layout, all little-endian (docs/bundle-format.md describes it too):
 *   "FLIR", u16 major (1), u16 minor (0)
 *   config: u8 len + arch bytes, i32 n_layer d_model n_vocab n_ctx n_kv_slots kv_width d_ff
 *   u32 n_values,  then per value:  u8 len + name, u8 dtype, i32 width
 *   u32 n_tensors, then per tensor: u8 len + name, u8 dtype, u8 n_dims, u64 shape[n_dims]
 *   u32 n_ops,     then per op a fixed OP_BYTES record (see put_op)
 * The section must end exactly after the last op for minor 0; a later minor
 * of the same major may append fields that this reader ignores. The reader
 * range-checks every enum and then runs the verifier: the bytes come from
 * untrusted bundles. */
#include "flock/ir.h"
#include "error_impl.h"
#include "reader.h"
#include "wbuf.h"

#include <stdlib.h>
#include <string.h>

#define IR_MAGIC "FLIR"
#define IR_MAJOR 1
#define IR_MINOR 0

/* kind, layer, n_in, in[3], out, w[6], eps, scale, softcap, group, unit_offset,
 * n_head, n_kv_head, head_dim, rope_dim, rope_style, rope_theta, rope_scaling,
 * rope_factor, low, high, orig_ctx, window, kv_slot, d_ff, act, gated, layout, pos_offset */
#define OP_BYTES (1 + 4 + 1 + 12 + 4 + 24 + 4 + 4 + 4 + 4 + 1 + 16 + 1 + 8 + 1 + 4 + 4 + 4 + 4 + 4 + 4 + 4 + 1 + 1 + 1 + 4)
#define VALUE_MIN_BYTES (1 + 1 + 1 + 4)
#define TENSOR_MIN_BYTES (1 + 1 + 1 + 1 + 8)

typedef flock_wbuf wbuf;

static void put_i32(wbuf *b, int32_t v) { flock_wbuf_u32(b, (uint32_t)v); }

/* Names are NUL-terminated in their fixed arrays (the verifier checked). */
static void put_name(wbuf *b, const char *s)
{
    size_t len = strlen(s);
    flock_wbuf_u8(b, (uint8_t)len);
    flock_wbuf_bytes(b, s, len);
}

static void put_op(wbuf *b, const flock_op *op)
{
    flock_wbuf_u8(b, (uint8_t)op->kind);
    put_i32(b, op->layer);
    flock_wbuf_u8(b, (uint8_t)op->n_in);
    for (int i = 0; i < FLOCK_OP_MAX_IN; i++)
        put_i32(b, op->in[i]);
    put_i32(b, op->out);
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        put_i32(b, op->w[i]);
    flock_wbuf_f32(b, op->eps);
    flock_wbuf_f32(b, op->scale);
    flock_wbuf_f32(b, op->softcap);
    put_i32(b, op->group);
    flock_wbuf_u8(b, op->unit_offset);
    put_i32(b, op->n_head);
    put_i32(b, op->n_kv_head);
    put_i32(b, op->head_dim);
    put_i32(b, op->rope_dim);
    flock_wbuf_u8(b, (uint8_t)op->rope_style);
    flock_wbuf_f64(b, op->rope_theta);
    flock_wbuf_u8(b, (uint8_t)op->rope_scaling);
    flock_wbuf_f32(b, op->rope_factor);
    flock_wbuf_f32(b, op->rope_low_freq_factor);
    flock_wbuf_f32(b, op->rope_high_freq_factor);
    put_i32(b, op->rope_orig_ctx);
    put_i32(b, op->window);
    put_i32(b, op->kv_slot);
    put_i32(b, op->d_ff);
    flock_wbuf_u8(b, (uint8_t)op->act);
    flock_wbuf_u8(b, op->gated);
    flock_wbuf_u8(b, (uint8_t)op->ffn_layout);
    put_i32(b, op->pos_offset);
}

flock_status flock_program_serialize(const flock_program *p, uint8_t **out, size_t *size, flock_error *err)
{
    if (!p || !out || !size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "program serialize: NULL argument");
    FORWARD_IF_ERROR(flock_program_verify(p, err), err, "program serialize");
    wbuf b = {0};
    uint8_t *m = flock_wbuf_take(&b, 4);
    if (m)
        memcpy(m, IR_MAGIC, 4);
    flock_wbuf_u16(&b, IR_MAJOR);
    flock_wbuf_u16(&b, IR_MINOR);
    const flock_model_config *c = &p->cfg;
    put_name(&b, c->arch);
    put_i32(&b, c->n_layer);
    put_i32(&b, c->d_model);
    put_i32(&b, c->n_vocab);
    put_i32(&b, c->n_ctx);
    put_i32(&b, c->n_kv_slots);
    put_i32(&b, c->kv_width);
    put_i32(&b, c->d_ff);
    flock_wbuf_u32(&b, p->n_values);
    for (uint32_t i = 0; i < p->n_values; i++) {
        put_name(&b, p->values[i].name);
        flock_wbuf_u8(&b, (uint8_t)p->values[i].dtype);
        put_i32(&b, p->values[i].width);
    }
    flock_wbuf_u32(&b, p->n_tensors);
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        const flock_tensor_ref *t = &p->tensors[i];
        put_name(&b, t->name);
        flock_wbuf_u8(&b, (uint8_t)t->dtype);
        flock_wbuf_u8(&b, (uint8_t)t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            flock_wbuf_u64(&b, t->shape[d]);
    }
    flock_wbuf_u32(&b, p->n_ops);
    for (uint32_t i = 0; i < p->n_ops; i++) {
        size_t before = b.len;
        put_op(&b, &p->ops[i]);
        if (!b.oom && b.len - before != OP_BYTES) {
            free(b.p);
            return flock_error_set(err, FLOCK_E_INTERNAL, "program serialize: op record is %zu bytes, expected %d",
                                   b.len - before, OP_BYTES);
        }
    }
    if (b.oom) {
        free(b.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "program serialize: out of memory");
    }
    *out = b.p;
    *size = b.len;
    return FLOCK_OK;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct rctx {
    flock_reader r;
    flock_error *err;
} rctx;

static flock_status truncated(rctx *c, const char *what)
{
    return flock_error_set(c->err, FLOCK_E_TRUNCATED, "program section: truncated at offset %zu reading %s (%zu bytes)",
                           c->r.off, what, c->r.size);
}

static flock_status get_i32(rctx *c, int32_t *v, const char *what)
{
    uint32_t u;
    if (!flock_rd_u32(&c->r, &u))
        return truncated(c, what);
    *v = (int32_t)u;
    return FLOCK_OK;
}

static flock_status get_u8(rctx *c, uint8_t *v, const char *what)
{
    return flock_rd_u8(&c->r, v) ? FLOCK_OK : truncated(c, what);
}

static flock_status get_f32(rctx *c, float *v, const char *what)
{
    return flock_rd_f32(&c->r, v) ? FLOCK_OK : truncated(c, what);
}

/* An enum stored as u8, checked against its count. */
static flock_status get_enum(rctx *c, int *v, int count, const char *what)
{
    size_t at = c->r.off;
    uint8_t u;
    if (!flock_rd_u8(&c->r, &u))
        return truncated(c, what);
    if (u >= count)
        return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: %s = %u at offset %zu out of range (< %d)",
                               what, u, at, count);
    *v = u;
    return FLOCK_OK;
}

/* A length-prefixed name into a fixed array of `cap` bytes (NUL included). */
static flock_status get_name(rctx *c, char *dst, size_t cap, const char *what)
{
    size_t at = c->r.off;
    uint8_t len;
    if (!flock_rd_u8(&c->r, &len))
        return truncated(c, what);
    if (len == 0 || len >= cap)
        return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: %s length %u at offset %zu, expected 1..%zu",
                               what, len, at, cap - 1);
    if (!flock_rd_bytes(&c->r, dst, len))
        return truncated(c, what);
    dst[len] = '\0';
    if (memchr(dst, '\0', len))
        return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: %s at offset %zu contains a NUL byte",
                               what, at);
    return FLOCK_OK;
}

/* A count, limited by the bytes left (each item takes at least `min_bytes`). */
static flock_status get_count(rctx *c, uint32_t *n, size_t min_bytes, const char *what)
{
    size_t at = c->r.off;
    if (!flock_rd_u32(&c->r, n))
        return truncated(c, what);
    if (*n > flock_rd_left(&c->r) / min_bytes || *n > (uint32_t)INT32_MAX)
        return flock_error_set(c->err, FLOCK_E_CORRUPT,
                               "program section: %s = %u at offset %zu exceeds what %zu bytes can hold", what, *n,
                               at, flock_rd_left(&c->r));
    return FLOCK_OK;
}

static flock_status get_op(rctx *c, flock_op *op)
{
    int e = 0;
    uint8_t u8 = 0;
    TRY(get_enum(c, &e, FLOCK_OP_COUNT, "op kind"));
    op->kind = (flock_op_kind)e;
    TRY(get_i32(c, &op->layer, "op layer"));
    TRY(get_u8(c, &u8, "op n_in"));
    op->n_in = u8;
    for (int i = 0; i < FLOCK_OP_MAX_IN; i++)
        TRY(get_i32(c, &op->in[i], "op input"));
    TRY(get_i32(c, &op->out, "op output"));
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        TRY(get_i32(c, &op->w[i], "op weight"));
    TRY(get_f32(c, &op->eps, "eps"));
    TRY(get_f32(c, &op->scale, "scale"));
    TRY(get_f32(c, &op->softcap, "softcap"));
    TRY(get_i32(c, &op->group, "group"));
    TRY(get_u8(c, &op->unit_offset, "unit_offset"));
    TRY(get_i32(c, &op->n_head, "n_head"));
    TRY(get_i32(c, &op->n_kv_head, "n_kv_head"));
    TRY(get_i32(c, &op->head_dim, "head_dim"));
    TRY(get_i32(c, &op->rope_dim, "rope_dim"));
    TRY(get_enum(c, &e, FLOCK_ROPE_STYLE_COUNT, "rope_style"));
    op->rope_style = (flock_rope_style)e;
    if (!flock_rd_f64(&c->r, &op->rope_theta))
        return truncated(c, "rope_theta");
    TRY(get_enum(c, &e, FLOCK_ROPE_SCALING_COUNT, "rope_scaling"));
    op->rope_scaling = (flock_rope_scaling)e;
    TRY(get_f32(c, &op->rope_factor, "rope_factor"));
    TRY(get_f32(c, &op->rope_low_freq_factor, "rope_low_freq_factor"));
    TRY(get_f32(c, &op->rope_high_freq_factor, "rope_high_freq_factor"));
    TRY(get_i32(c, &op->rope_orig_ctx, "rope_orig_ctx"));
    TRY(get_i32(c, &op->window, "window"));
    TRY(get_i32(c, &op->kv_slot, "kv_slot"));
    TRY(get_i32(c, &op->d_ff, "d_ff"));
    TRY(get_enum(c, &e, FLOCK_ACT_COUNT, "act"));
    op->act = (flock_act)e;
    TRY(get_u8(c, &op->gated, "gated"));
    TRY(get_enum(c, &e, FLOCK_FFN_LAYOUT_COUNT, "ffn_layout"));
    op->ffn_layout = (flock_ffn_layout)e;
    TRY(get_i32(c, &op->pos_offset, "pos_offset"));
    return FLOCK_OK;
}

static flock_status read_program(rctx *c, flock_program *p)
{
    char magic[4];
    uint16_t major, minor;
    if (!flock_rd_bytes(&c->r, magic, 4))
        return truncated(c, "magic");
    if (memcmp(magic, IR_MAGIC, 4) != 0)
        return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: bad magic (expected \"FLIR\")");
    if (!flock_rd_u16(&c->r, &major) || !flock_rd_u16(&c->r, &minor))
        return truncated(c, "version");
    if (major != IR_MAJOR)
        return flock_error_set(c->err, FLOCK_E_VERSION, "program section: version %u.%u, this reader supports %u.x",
                               major, minor, IR_MAJOR);
    flock_model_config *cfg = &p->cfg;
    TRY(get_name(c, cfg->arch, sizeof cfg->arch, "arch"));
    TRY(get_i32(c, &cfg->n_layer, "n_layer"));
    TRY(get_i32(c, &cfg->d_model, "d_model"));
    TRY(get_i32(c, &cfg->n_vocab, "n_vocab"));
    TRY(get_i32(c, &cfg->n_ctx, "n_ctx"));
    TRY(get_i32(c, &cfg->n_kv_slots, "n_kv_slots"));
    TRY(get_i32(c, &cfg->kv_width, "kv_width"));
    TRY(get_i32(c, &cfg->d_ff, "d_ff"));

    uint32_t n;
    TRY(get_count(c, &n, VALUE_MIN_BYTES, "value count"));
    p->n_values = 0; /* value 0 ("tokens") comes from the bytes like the rest */
    for (uint32_t i = 0; i < n; i++) {
        char name[sizeof p->values[0].name];
        int dt;
        int32_t width;
        TRY(get_name(c, name, sizeof name, "value name"));
        TRY(get_enum(c, &dt, FLOCK_DTYPE_COUNT, "value dtype"));
        TRY(get_i32(c, &width, "value width"));
        if (flock_program_add_value(p, name, (flock_dtype)dt, width) < 0)
            return flock_error_set(c->err, FLOCK_E_NOMEM, "program section: out of memory");
    }
    TRY(get_count(c, &n, TENSOR_MIN_BYTES, "tensor count"));
    for (uint32_t i = 0; i < n; i++) {
        char name[sizeof p->tensors[0].name];
        int dt;
        uint8_t nd;
        uint64_t shape[4];
        TRY(get_name(c, name, sizeof name, "tensor name"));
        TRY(get_enum(c, &dt, FLOCK_DTYPE_COUNT, "tensor dtype"));
        size_t at = c->r.off;
        TRY(get_u8(c, &nd, "tensor n_dims"));
        if (nd < 1 || nd > 4)
            return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: tensor '%s' n_dims %u at offset %zu",
                                   name, nd, at);
        for (uint32_t d = 0; d < nd; d++)
            if (!flock_rd_u64(&c->r, &shape[d]))
                return truncated(c, "tensor shape");
        if (flock_program_add_tensor(p, name, (flock_dtype)dt, nd, shape) < 0)
            return flock_error_set(c->err, FLOCK_E_NOMEM, "program section: out of memory");
    }
    TRY(get_count(c, &n, OP_BYTES, "op count"));
    for (uint32_t i = 0; i < n; i++) {
        flock_op *op = flock_program_add_op(p, FLOCK_OP_EMBED, -1);
        if (!op)
            return flock_error_set(c->err, FLOCK_E_NOMEM, "program section: out of memory");
        FORWARD_IF_ERROR(get_op(c, op), c->err, "op %u", i);
    }
    if (flock_rd_left(&c->r) != 0 && minor <= IR_MINOR)
        return flock_error_set(c->err, FLOCK_E_CORRUPT, "program section: %zu trailing bytes at offset %zu",
                               flock_rd_left(&c->r), c->r.off);
    return FLOCK_OK;
}

flock_status flock_program_deserialize(const void *data, size_t size, flock_program **out, flock_error *err)
{
    if (!data || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "program deserialize: NULL argument");
    flock_program *p;
    if (flock_program_create(&p))
        return flock_error_set(err, FLOCK_E_NOMEM, "program deserialize: out of memory");
    rctx c = {flock_reader_init(data, size), err};
    flock_status st = read_program(&c, p);
    if (!st) {
        st = flock_program_verify(p, err);
        if (st)
            flock_error_prefix(err, st, "program section");
    }
    if (st) {
        flock_program_free(p);
        return st;
    }
    *out = p;
    return FLOCK_OK;
}
