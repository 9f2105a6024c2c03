/* Status values, error messages, numeric storage types and file mapping. */
#include "flock/formats.h"
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const status_names[] = {
    [FLOCK_OK] = "ok",
    [FLOCK_E_INVALID_ARG] = "invalid argument",
    [FLOCK_E_IO] = "I/O error",
    [FLOCK_E_NOMEM] = "out of memory",
    [FLOCK_E_TRUNCATED] = "truncated input",
    [FLOCK_E_CORRUPT] = "corrupt input",
    [FLOCK_E_CHECKSUM] = "checksum mismatch",
    [FLOCK_E_VERSION] = "unsupported format version",
    [FLOCK_E_UNSUPPORTED] = "unsupported",
    [FLOCK_E_NOT_FOUND] = "not found",
    [FLOCK_E_TYPE] = "wrong type",
    [FLOCK_E_RANGE] = "out of range",
    [FLOCK_E_DEVICE] = "device error",
    [FLOCK_E_INTERNAL] = "internal error",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == FLOCK_STATUS_COUNT,
               "status_names must name every flock_status");

const char *flock_status_str(flock_status s)
{
    if ((unsigned)s >= FLOCK_STATUS_COUNT)
        return "unknown status";
    return status_names[s];
}

flock_status flock_error_set(flock_error *err, flock_status st, const char *fmt, ...)
{
    if (err) {
        err->status = st;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

flock_status flock_error_prefix(flock_error *err, flock_status st, const char *fmt, ...)
{
    if (!err)
        return st;
    err->status = st;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* msg = prefix + ": " + old msg, truncated to fit. */
    size_t plen = strlen(prefix), cap = sizeof err->msg;
    if (plen + 2 >= cap)
        plen = cap - 3;
    size_t olen = strnlen(err->msg, cap - 1);
    if (plen + 2 + olen >= cap)
        olen = cap - 1 - plen - 2;
    memmove(err->msg + plen + 2, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + olen] = '\0';
    return st;
}

/* ---- dtypes ------------------------------------------------------------ */

/* scale: byte offsets of a block's f16 scales (d; m or dmin), -1 for none */
static const struct {
    const char *name;
    uint32_t block, bytes; /* elements and bytes per block */
    uint32_t ggml;         /* flock_ggml_type */
    int16_t scale[2];
} dtype_info[] = {
    [FLOCK_DTYPE_F32] = {"f32", 1, 4, 0, {-1, -1}},
    [FLOCK_DTYPE_F16] = {"f16", 1, 2, 1, {-1, -1}},
    [FLOCK_DTYPE_BF16] = {"bf16", 1, 2, 30, {-1, -1}},
    [FLOCK_DTYPE_I32] = {"i32", 1, 4, 26, {-1, -1}},
    [FLOCK_DTYPE_U8] = {"u8", 1, 1, UINT32_MAX, {-1, -1}},
    [FLOCK_DTYPE_Q8_0] = {"q8_0", 32, 34, 8, {0, -1}},    /* f16 d, int8 q[32] */
    [FLOCK_DTYPE_Q4_0] = {"q4_0", 32, 18, 2, {0, -1}},    /* f16 d, u8 q[16] */
    [FLOCK_DTYPE_Q4_1] = {"q4_1", 32, 20, 3, {0, 2}},     /* f16 d, m, u8 q[16] */
    [FLOCK_DTYPE_Q4_K] = {"q4_k", 256, 144, 12, {0, 2}},  /* f16 d, dmin, scales[12], q[128] */
    [FLOCK_DTYPE_Q6_K] = {"q6_k", 256, 210, 14, {208, -1}}, /* ql[128], qh[64], scales[16], f16 d */
    [FLOCK_DTYPE_Q5_0] = {"q5_0", 32, 22, 6, {0, -1}},    /* f16 d, u32 qh, u8 q[16] */
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == FLOCK_DTYPE_COUNT,
               "dtype_info must describe every flock_dtype");

size_t flock_dtype_size(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT && dtype_info[t].block == 1 ? dtype_info[t].bytes : 0;
}

bool flock_dtype_is_quantized(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT && dtype_info[t].block > 1;
}

size_t flock_dtype_block(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT ? dtype_info[t].block : 0;
}

size_t flock_dtype_block_bytes(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT ? dtype_info[t].bytes : 0;
}

bool flock_dtype_find_bad_scale(flock_dtype t, const void *data, uint64_t nbytes, uint64_t *block, float *value)
{
    if (!flock_dtype_is_quantized(t) || !data)
        return false;
    const uint8_t *p = data;
    const uint64_t bb = dtype_info[t].bytes, n = nbytes / bb;
    for (uint64_t b = 0; b < n; b++)
        for (int k = 0; k < 2 && dtype_info[t].scale[k] >= 0; k++) {
            const uint8_t *q = p + b * bb + dtype_info[t].scale[k];
            const uint16_t h = (uint16_t)(q[0] | q[1] << 8);
            if ((h & 0x7c00) == 0x7c00) { /* exponent all ones: inf or nan */
                if (block)
                    *block = b;
                if (value)
                    *value = flock_f16_to_f32(h);
                return true;
            }
        }
    return false;
}

size_t flock_dtype_row_bytes(flock_dtype t, uint64_t n)
{
    if ((unsigned)t >= FLOCK_DTYPE_COUNT || n % dtype_info[t].block)
        return 0;
    uint64_t blocks = n / dtype_info[t].block;
    return blocks > SIZE_MAX / dtype_info[t].bytes ? 0 : (size_t)(blocks * dtype_info[t].bytes);
}

uint64_t flock_dtype_tensor_bytes(flock_dtype t, uint32_t n_dims, const uint64_t *shape)
{
    if ((unsigned)t >= FLOCK_DTYPE_COUNT || n_dims > 8)
        return 0;
    uint64_t rows = 1, last = n_dims ? shape[n_dims - 1] : 1;
    for (uint32_t d = 0; d + 1 < n_dims; d++) {
        if (shape[d] && rows > UINT64_MAX / shape[d])
            return 0;
        rows *= shape[d];
    }
    if (last % dtype_info[t].block)
        return 0;
    uint64_t row = last / dtype_info[t].block;
    if (row && dtype_info[t].bytes > UINT64_MAX / row)
        return 0;
    row *= dtype_info[t].bytes;
    if (row && rows > UINT64_MAX / row)
        return 0;
    return rows * row;
}

uint32_t flock_dtype_ggml(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT ? dtype_info[t].ggml : UINT32_MAX;
}

int64_t flock_keep_count(double keep, int64_t d_ff)
{
    if (!(keep > 0) || d_ff <= 0)
        return 0;
    if (keep >= 1)
        return d_ff;
    /* A ratio rounded to float is off by at most 2^-24 (6e-8) relative, so
     * keep * d_ff by at most 6e-8 * d_ff: the allowance covers it. */
    double k = floor(keep * (double)d_ff + 1e-7 * (double)d_ff);
    if (k < 1)
        k = 1;
    return k > (double)d_ff ? d_ff : (int64_t)k;
}

const char *flock_dtype_name(flock_dtype t)
{
    return (unsigned)t < FLOCK_DTYPE_COUNT ? dtype_info[t].name : "?";
}

flock_status flock_dtype_parse(const char *s, flock_dtype *out)
{
    if (!s || !out)
        return FLOCK_E_INVALID_ARG;
    for (int t = 0; t < FLOCK_DTYPE_COUNT; t++) {
        if (strcasecmp(s, dtype_info[t].name) == 0) {
            *out = (flock_dtype)t;
            return FLOCK_OK;
        }
    }
    return FLOCK_E_INVALID_ARG;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float flock_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return (h & 0x8000) ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t flock_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) /* inf or NaN (keep NaN quiet) */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent: still correct, up to inf */
    return (uint16_t)h;
}

float flock_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t flock_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* src/dst of 16-bit types may be unaligned (safetensors data need not be):
 * elements are moved with memcpy, which compilers turn into plain loads. */
flock_status flock_convert_from_f32(flock_dtype dst_type, const float *src, void *dst, size_t n)
{
    if (!src || (!dst && n))
        return FLOCK_E_INVALID_ARG;
    switch (dst_type) {
    case FLOCK_DTYPE_F32:
        memmove(dst, src, n * sizeof(float));
        return FLOCK_OK;
    case FLOCK_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = flock_f32_to_f16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return FLOCK_OK;
    case FLOCK_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = flock_f32_to_bf16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return FLOCK_OK;
    case FLOCK_DTYPE_Q8_0:
    case FLOCK_DTYPE_Q4_0:
    case FLOCK_DTYPE_Q4_1:
    case FLOCK_DTYPE_Q4_K:
    case FLOCK_DTYPE_Q6_K:
    case FLOCK_DTYPE_Q5_0:
        return flock_quantize_row(dst_type, src, dst, n);
    default:
        return FLOCK_E_UNSUPPORTED;
    }
}

flock_status flock_convert_to_f32(flock_dtype src_type, const void *src, float *dst, size_t n)
{
    if (!dst || (!src && n))
        return FLOCK_E_INVALID_ARG;
    switch (src_type) {
    case FLOCK_DTYPE_F32:
        memmove(dst, src, n * sizeof(float));
        return FLOCK_OK;
    case FLOCK_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)src + 2 * i, 2);
            dst[i] = flock_f16_to_f32(h);
        }
        return FLOCK_OK;
    case FLOCK_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)src + 2 * i, 2);
            dst[i] = flock_bf16_to_f32(h);
        }
        return FLOCK_OK;
    default:
        if (!flock_dtype_is_quantized(src_type))
            return FLOCK_E_UNSUPPORTED;
        if (n % flock_dtype_block(src_type))
            return FLOCK_E_INVALID_ARG;
        return flock_dequantize(flock_dtype_ggml(src_type), src, flock_dtype_row_bytes(src_type, n), dst, n, NULL);
    }
}

/* ---- files ------------------------------------------------------------- */

flock_status flock_map_file(const char *path, flock_file_map *out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_map_file: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return flock_error_set(err, FLOCK_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return flock_error_set(err, FLOCK_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return flock_error_set(err, FLOCK_E_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *data = NULL;
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return flock_error_set(err, FLOCK_E_IO, "%s: cannot mmap %zu bytes: %s", path, size,
                                   strerror(e));
        }
        data = p;
    }
    close(fd);
    out->data = data;
    out->size = size;
    return FLOCK_OK;
}

void flock_unmap_file(flock_file_map *m)
{
    if (m && m->data && m->size)
        munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}
