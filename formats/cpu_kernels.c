/* The CPU kernel container's reader (cpu_kernels_format.h,
 * docs/cpu-kernels-format.md): every byte checked, no code run. Here, in
 * formats/, next to the CUDA kernel blob's reader (cuda_blob.c), so that
 * both kernel containers are read in one place; the runtime's loader maps
 * the code and checks the CPU. */
#include "cpu_kernels_format.h"
#include "error_impl.h"
#include "reader.h"

#include <stdio.h>
#include <string.h>

static const char *const feature_names[] = {
    "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1",
    "bmi2", "lzcnt", "movbe", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "neon",
};
_Static_assert(sizeof feature_names / sizeof feature_names[0] == 19 && FLOCK_CPUF_END == 1u << 19,
               "feature_names must name every FLOCK_CPUF bit");

const char *flock_cpu_feature_list(uint64_t bits, char *buf, size_t n)
{
    if (!buf || n == 0)
        return "";
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < 64; i++) {
        if (!(bits & (1ull << i)))
            continue;
        char unk[16];
        const char *name = i < sizeof feature_names / sizeof feature_names[0] ? feature_names[i] : unk;
        if (name == unk)
            snprintf(unk, sizeof unk, "bit%u", i);
        int w = snprintf(buf + o, n - o, "%s%s", o ? "," : "", name);
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
    return buf;
}

static flock_status read_name(flock_reader *r, char *dst, const char *what, size_t i, bool ident,
                              flock_error *err)
{
    size_t at = r->off;
    uint8_t len;
    if (!flock_rd_u8(r, &len))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: %s %zu: name length at offset %zu", what, i, at);
    if (len == 0 || len > FLOCK_CPUK_MAX_NAME)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: %s %zu: name length %u at offset %zu", what, i,
                               len, at);
    const uint8_t *s = flock_rd_span(r, len);
    if (!s)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: %s %zu: name at offset %zu", what, i, at + 1);
    for (size_t c = 0; c < len; c++) {
        uint8_t ch = s[c];
        bool ok = ident ? ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                           ch == '_')
                        : (ch > 0x20 && ch < 0x7f);
        if (!ok)
            return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: %s %zu: byte 0x%02x in its name at offset %zu",
                                   what, i, ch, at + 1 + c);
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return FLOCK_OK;
}

static flock_status read_entry(flock_reader *r, size_t i, uint64_t text_size, flock_cpuk_entry *e, char *name,
                               flock_error *err)
{
    flock_status st = read_name(r, name, "kernel", i, true, err);
    if (st != FLOCK_OK)
        return st;
    size_t at = r->off;
    uint32_t kind, dtype, act, d, n, k;
    uint64_t off, size;
    if (!flock_rd_u32(r, &kind) || !flock_rd_u32(r, &dtype) || !flock_rd_u32(r, &act) || !flock_rd_u32(r, &d) ||
        !flock_rd_u32(r, &n) || !flock_rd_u32(r, &k) || !flock_rd_u64(r, &off) || !flock_rd_u64(r, &size))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: kernel '%s' entry at offset %zu", name, at);
    if (kind == 0 || kind >= FLOCK_CPUK_KIND_END)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: kernel '%s': kind %u", name, kind);
    if (dtype != FLOCK_DTYPE_F32 && dtype != FLOCK_DTYPE_F16 && dtype != FLOCK_DTYPE_BF16)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: kernel '%s': weight dtype %u", name, dtype);
    if (act >= FLOCK_CPUK_ACT_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: kernel '%s': activation %u", name, act);
    bool ff = kind != FLOCK_CPUK_MATVEC;
    int32_t sd = (int32_t)d, sn = (int32_t)n, sk = (int32_t)k;
    if (ff ? (sd <= 0 || sn <= 0 || sk <= 0 || sk > sn) : (sd != 0 || sn <= 0 || sk != 0 || act != 0))
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: kernel '%s': shape d=%d n=%d k=%d", name, sd, sn,
                               sk);
    if (size == 0 || off > text_size || size > text_size - off)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "cpu kernels: kernel '%s': code [%llu, +%llu) outside the %llu-byte blob", name,
                               (unsigned long long)off, (unsigned long long)size, (unsigned long long)text_size);
    *e = (flock_cpuk_entry){.kind = kind, .dtype = (flock_dtype)dtype, .act = act,
                               .d = sd, .n = sn, .k = sk, .offset = off, .size = size};
    return FLOCK_OK;
}

/* Header, checksum and target name; leaves r at the first entry. */
static flock_status parse_header(const uint8_t *p, size_t size, flock_cpuk_header *ps, flock_reader *r, flock_error *err)
{
    *r = flock_reader_init(p, size);
    const uint8_t *magic = flock_rd_span(r, 8);
    if (!magic)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: %zu bytes, no header", size);
    if (memcmp(magic, FLOCK_CPUK_MAGIC, 8) != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: bad magic (not a CPU kernel container)");
    uint16_t major, minor;
    uint32_t flags;
    uint64_t checksum;
    if (!flock_rd_u16(r, &major) || !flock_rd_u16(r, &minor) || !flock_rd_u32(r, &ps->arch) ||
        !flock_rd_u64(r, &ps->features) || !flock_rd_u64(r, &checksum) || !flock_rd_u32(r, &ps->n) ||
        !flock_rd_u32(r, &flags) || !flock_rd_u64(r, &ps->text_size))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: header needs %d bytes, have %zu",
                               FLOCK_CPUK_HEADER_SIZE, size);
    if (major != FLOCK_CPUK_MAJOR)
        return flock_error_set(err, FLOCK_E_VERSION, "cpu kernels: version %u.%u, this runtime reads %d.x", major,
                               minor, FLOCK_CPUK_MAJOR);
    if (ps->text_size > size - FLOCK_CPUK_HEADER_SIZE)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: code blob of %llu bytes, file has %zu",
                               (unsigned long long)ps->text_size, size);
    uint64_t sum = flock_cpuk_checksum(p, size);
    if (sum != checksum)
        return flock_error_set(err, FLOCK_E_CHECKSUM, "cpu kernels: checksum %016llx, expected %016llx",
                               (unsigned long long)sum, (unsigned long long)checksum);
    if (ps->arch == 0 || ps->arch >= FLOCK_CPUK_ARCH_END)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: architecture %u at offset 12", ps->arch);
    if (flags != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: flags 0x%x at offset 36", flags);
    if (ps->n == 0 || ps->n > FLOCK_CPUK_MAX_KERNELS)
        return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: %u kernels at offset 32", ps->n);
    return read_name(r, ps->target, "target", 0, false, err);
}

flock_status flock_cpuk_parse(const void *data, size_t size, flock_cpuk_header *ps, flock_cpuk_entry *entries,
                              char *names, flock_error *err)
{
    if (!data)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL data");
    flock_reader r;
    flock_status st = parse_header(data, size, ps, &r, err);
    if (st != FLOCK_OK)
        return st;
    ps->table_off = r.off;
    /* A count is limited by the bytes left: each entry takes at least 42. */
    if (ps->n > flock_rd_left(&r) / (2 + FLOCK_CPUK_ENTRY_FIXED))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "cpu kernels: %u kernels do not fit in %zu bytes", ps->n,
                               flock_rd_left(&r));
    char name[FLOCK_CPUK_MAX_NAME + 1];
    size_t name_off = 0;
    for (uint32_t i = 0; i < ps->n; i++) {
        flock_cpuk_entry e;
        st = read_entry(&r, i, ps->text_size, &e, name, err);
        if (st != FLOCK_OK)
            return st;
        if (entries) {
            size_t nl = strlen(name) + 1;
            memcpy(names + name_off, name, nl);
            entries[i] = e;
            entries[i].name = names + name_off;
            name_off += nl;
        }
    }
    if (flock_rd_left(&r) != ps->text_size)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "cpu kernels: %zu bytes after the table, the header says %llu of code",
                               flock_rd_left(&r), (unsigned long long)ps->text_size);
    ps->text = (const uint8_t *)data + r.off;
    if (ps->features & ~(uint64_t)FLOCK_CPUF_ALL) {
        char buf[64];
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "cpu kernels: the code needs CPU features this runtime does not know (%s)",
                               flock_cpu_feature_list(ps->features & ~(uint64_t)FLOCK_CPUF_ALL, buf, sizeof buf));
    }
    return FLOCK_OK;
}


