/* A tiny static linker for the object file LLVM emits for the CPU kernels,
 * and the writer of the kernel container (docs/cpu-kernels-format.md).
 *
 * The object is a little-endian ELF64 relocatable (x86-64 or AArch64). Its
 * read-only allocated sections (.text, .rodata constant pools) are laid out
 * into one blob with their alignments, every relocation is resolved
 * PC-relative inside the blob, and the blob goes into the container with a
 * table of the exported kernels. Anything the blob could not hold on its own
 * (an undefined symbol such as a libm call, a writable section, an absolute
 * or GOT relocation) is an error here, at compile time, never a crash at run
 * time. The object is our own output, but it is still parsed with the
 * bounds-checked reader. */
#include "llvm_cpu.h"

#include "cpu_kernels_format.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

enum {
    EM_X86_64 = 62,
    EM_AARCH64 = 183,
    SHT_PROGBITS = 1,
    SHT_SYMTAB = 2,
    SHT_RELA = 4,
    SHT_NOBITS = 8,
    SHT_REL = 9,
    SHF_WRITE = 1,
    SHF_ALLOC = 2,
    SHN_UNDEF = 0,
    SHN_LORESERVE = 0xff00,
    STT_FUNC = 2,
};

typedef struct elf_shdr {
    uint32_t name, type;
    uint64_t flags, addr, offset, size;
    uint32_t link, info;
    uint64_t addralign, entsize;
} elf_shdr;

typedef struct elf_obj {
    const uint8_t *p;
    size_t size;
    uint16_t machine;
    uint16_t shnum;
    elf_shdr *sh;
    const char *shstr;  /* section name table */
    size_t shstr_size;
    int64_t *place;     /* blob offset of each section, -1 if not in the blob */
} elf_obj;

static flock_status bad(flock_error *err, const char *what)
{
    return flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: LLVM's object file: %s", what);
}

static const char *sec_name(const elf_obj *o, uint32_t off)
{
    if (off >= o->shstr_size || !memchr(o->shstr + off, 0, o->shstr_size - off))
        return "";
    return o->shstr + off;
}

static flock_status parse_elf(elf_obj *o, flock_error *err)
{
    flock_reader r = flock_reader_init(o->p, o->size);
    const uint8_t *id = flock_rd_span(&r, 16);
    if (!id || memcmp(id, "\177ELF", 4) != 0 || id[4] != 2 || id[5] != 1)
        return bad(err, "not a little-endian ELF64 file");
    uint16_t type, shentsize, shstrndx;
    uint32_t u32;
    uint64_t u64, shoff;
    if (!flock_rd_u16(&r, &type) || !flock_rd_u16(&r, &o->machine) || !flock_rd_u32(&r, &u32) ||
        !flock_rd_u64(&r, &u64) || !flock_rd_u64(&r, &u64) || !flock_rd_u64(&r, &shoff) ||
        !flock_rd_u32(&r, &u32) || !flock_rd_u16(&r, &type) || !flock_rd_u16(&r, &type) ||
        !flock_rd_u16(&r, &type) || !flock_rd_u16(&r, &shentsize) || !flock_rd_u16(&r, &o->shnum) ||
        !flock_rd_u16(&r, &shstrndx))
        return bad(err, "truncated header");
    if (shentsize != 64 || o->shnum == 0 || shstrndx >= o->shnum || shoff > o->size ||
        (uint64_t)o->shnum * 64 > o->size - shoff)
        return bad(err, "bad section header table");
    o->sh = calloc(o->shnum, sizeof *o->sh);
    o->place = malloc(o->shnum * sizeof *o->place);
    if (!o->sh || !o->place)
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    for (uint16_t i = 0; i < o->shnum; i++) {
        elf_shdr *s = &o->sh[i];
        r.off = (size_t)shoff + (size_t)i * 64;
        if (!flock_rd_u32(&r, &s->name) || !flock_rd_u32(&r, &s->type) || !flock_rd_u64(&r, &s->flags) ||
            !flock_rd_u64(&r, &s->addr) || !flock_rd_u64(&r, &s->offset) || !flock_rd_u64(&r, &s->size) ||
            !flock_rd_u32(&r, &s->link) || !flock_rd_u32(&r, &s->info) || !flock_rd_u64(&r, &s->addralign) ||
            !flock_rd_u64(&r, &s->entsize))
            return bad(err, "truncated section header");
        if (s->type != SHT_NOBITS && (s->offset > o->size || s->size > o->size - s->offset))
            return bad(err, "section outside the file");
        o->place[i] = -1;
    }
    o->shstr = (const char *)o->p + o->sh[shstrndx].offset;
    o->shstr_size = (size_t)o->sh[shstrndx].size;
    return FLOCK_OK;
}

static bool in_blob(const elf_obj *o, const elf_shdr *s, int pass)
{
    const char *name = sec_name(o, s->name);
    if (!(s->flags & SHF_ALLOC) || s->size == 0 || s->type != SHT_PROGBITS || (s->flags & SHF_WRITE) ||
        strcmp(name, ".eh_frame") == 0)
        return false;
    return (strncmp(name, ".text", 5) == 0) == (pass == 0);
}

/* Chooses the sections of the blob and their offsets: code first, then
 * read-only data (.eh_frame is left out: the kernels never unwind). Each
 * group starts at its largest alignment and each section at its own, in
 * file order: the layout a system linker gives with .text and .rodata
 * output sections, which the tests compare against byte for byte. */
static flock_status layout(elf_obj *o, size_t *blob_size, flock_error *err)
{
    for (uint16_t i = 0; i < o->shnum; i++) {
        const elf_shdr *s = &o->sh[i];
        if ((s->flags & SHF_ALLOC) && s->size > 0 && ((s->flags & SHF_WRITE) || s->type == SHT_NOBITS))
            return flock_error_set(err, FLOCK_E_INTERNAL,
                                   "cpu kernels: the code needs writable data (section '%s')", sec_name(o, s->name));
        uint64_t al = s->addralign ? s->addralign : 1;
        if ((in_blob(o, s, 0) || in_blob(o, s, 1)) && (al > 4096 || (al & (al - 1))))
            return bad(err, "section alignment");
    }
    uint64_t off = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t group_al = 1;
        for (uint16_t i = 0; i < o->shnum; i++)
            if (in_blob(o, &o->sh[i], pass) && o->sh[i].addralign > group_al)
                group_al = o->sh[i].addralign;
        off = (off + group_al - 1) & ~(group_al - 1);
        for (uint16_t i = 0; i < o->shnum; i++) {
            const elf_shdr *s = &o->sh[i];
            if (!in_blob(o, s, pass))
                continue;
            uint64_t al = s->addralign ? s->addralign : 1;
            off = (off + al - 1) & ~(al - 1);
            o->place[i] = (int64_t)off;
            off += s->size;
            if (off > (1u << 30))
                return bad(err, "code larger than 1 GiB");
        }
    }
    *blob_size = (size_t)off;
    return FLOCK_OK;
}

typedef struct elf_sym {
    uint32_t name;
    uint8_t info, other;
    uint16_t shndx;
    uint64_t value, size;
} elf_sym;

static bool read_sym(const elf_obj *o, const elf_shdr *symtab, uint64_t i, elf_sym *s)
{
    if (i >= symtab->size / 24)
        return false;
    flock_reader r = flock_reader_init(o->p + symtab->offset, (size_t)symtab->size);
    r.off = (size_t)i * 24;
    return flock_rd_u32(&r, &s->name) && flock_rd_u8(&r, &s->info) && flock_rd_u8(&r, &s->other) &&
           flock_rd_u16(&r, &s->shndx) && flock_rd_u64(&r, &s->value) && flock_rd_u64(&r, &s->size);
}

static const char *str_at(const elf_obj *o, const elf_shdr *strtab, uint32_t off)
{
    const char *base = (const char *)o->p + strtab->offset;
    if (off >= strtab->size || !memchr(base + off, 0, (size_t)strtab->size - off))
        return "";
    return base + off;
}

static void put32(uint8_t *p, uint32_t v) { flock_wr_u32(p, v); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Applies one relocation at blob[P] (S = target address, A = addend). */
static flock_status apply_reloc(uint16_t machine, uint32_t type, uint8_t *blob, size_t blob_size, uint64_t P,
                                int64_t S, int64_t A, const char *sym, flock_error *err)
{
    if (P > blob_size || blob_size - P < 4)
        return bad(err, "relocation outside its section");
    uint8_t *at = blob + P;
    int64_t v = S + A - (int64_t)P;
    if (machine == EM_X86_64) {
        if (type == 2 /* R_X86_64_PC32 */ || type == 4 /* R_X86_64_PLT32 */) {
            if (v < INT32_MIN || v > INT32_MAX)
                return bad(err, "PC32 relocation out of range");
            put32(at, (uint32_t)(int32_t)v);
            return FLOCK_OK;
        }
    } else {
        uint32_t ins = get32(at);
        uint64_t sa = (uint64_t)(S + A);
        switch (type) {
        case 261: /* R_AARCH64_PREL32 */
            if (v < INT32_MIN || v > INT32_MAX)
                return bad(err, "PREL32 relocation out of range");
            put32(at, (uint32_t)(int32_t)v);
            return FLOCK_OK;
        case 275: { /* R_AARCH64_ADR_PREL_PG_HI21 (ADRP): page delta; the blob sits at a page boundary */
            int64_t pages = ((int64_t)(sa & ~(uint64_t)0xfff) - (int64_t)(P & ~(uint64_t)0xfff)) >> 12;
            if (pages < -(1 << 20) || pages >= (1 << 20))
                return bad(err, "ADRP relocation out of range");
            uint32_t imm = (uint32_t)pages & 0x1fffff;
            ins = (ins & ~((3u << 29) | (0x7ffffu << 5))) | ((imm & 3u) << 29) | ((imm >> 2) << 5);
            put32(at, ins);
            return FLOCK_OK;
        }
        case 277: /* R_AARCH64_ADD_ABS_LO12_NC */
        case 278: /* LDST8 */
        case 284: /* LDST16 */
        case 285: /* LDST32 */
        case 286: /* LDST64 */
        case 299: { /* LDST128 */
            unsigned shift = type == 284 ? 1 : type == 285 ? 2 : type == 286 ? 3 : type == 299 ? 4 : 0;
            uint32_t lo = (uint32_t)(sa & 0xfff);
            if (lo & ((1u << shift) - 1))
                return bad(err, "misaligned LO12 relocation");
            ins = (ins & ~(0xfffu << 10)) | ((lo >> shift) << 10);
            put32(at, ins);
            return FLOCK_OK;
        }
        case 282: /* R_AARCH64_JUMP26 */
        case 283: /* R_AARCH64_CALL26 */
            if ((v & 3) || v < -(1 << 27) || v >= (1 << 27))
                return bad(err, "branch relocation out of range");
            put32(at, (ins & 0xfc000000u) | ((uint32_t)(v >> 2) & 0x3ffffffu));
            return FLOCK_OK;
        default:
            break;
        }
    }
    return flock_error_set(err, FLOCK_E_INTERNAL,
                           "cpu kernels: relocation type %u against '%s' cannot be resolved inside the blob",
                           type, sym);
}

static flock_status resolve_relocs(const elf_obj *o, uint8_t *blob, size_t blob_size, flock_error *err)
{
    for (uint16_t i = 0; i < o->shnum; i++) {
        const elf_shdr *rs = &o->sh[i];
        if (rs->type == SHT_REL)
            return bad(err, "REL relocations (expected RELA)");
        if (rs->type != SHT_RELA || rs->info >= o->shnum || o->place[rs->info] < 0)
            continue; /* relocations of sections left out (.eh_frame) */
        if (rs->link >= o->shnum || o->sh[rs->link].type != SHT_SYMTAB || o->sh[rs->link].link >= o->shnum)
            return bad(err, "relocation section without a symbol table");
        const elf_shdr *symtab = &o->sh[rs->link], *strtab = &o->sh[symtab->link];
        const elf_shdr *target = &o->sh[rs->info];
        flock_reader r = flock_reader_init(o->p + rs->offset, (size_t)rs->size);
        for (uint64_t n = rs->size / 24, e = 0; e < n; e++) {
            uint64_t off, info, addend;
            if (!flock_rd_u64(&r, &off) || !flock_rd_u64(&r, &info) || !flock_rd_u64(&r, &addend))
                return bad(err, "truncated relocation");
            elf_sym sym;
            if (!read_sym(o, symtab, info >> 32, &sym))
                return bad(err, "relocation symbol index");
            const char *sname = str_at(o, strtab, sym.name);
            if (sym.shndx == SHN_UNDEF)
                return flock_error_set(err, FLOCK_E_INTERNAL,
                                       "cpu kernels: the code calls '%s', which is outside the kernels", sname);
            if (sym.shndx >= SHN_LORESERVE || sym.shndx >= o->shnum || o->place[sym.shndx] < 0)
                return flock_error_set(err, FLOCK_E_INTERNAL,
                                       "cpu kernels: the code refers to '%s' in a section left out of the blob",
                                       sname);
            if (off > target->size || target->size - off < 4)
                return bad(err, "relocation offset outside its section");
            int64_t S = o->place[sym.shndx] + (int64_t)sym.value;
            flock_status st = apply_reloc(o->machine, (uint32_t)info, blob, blob_size,
                                          (uint64_t)o->place[rs->info] + off, S, (int64_t)addend, sname, err);
            if (st != FLOCK_OK)
                return st;
        }
    }
    return FLOCK_OK;
}

/* Finds each kernel's symbol: a function defined in the blob. */
static flock_status find_kernels(const elf_obj *o, const lcpu_kernel *ks, size_t nk, uint64_t *offs,
                                 uint64_t *sizes, flock_error *err)
{
    const elf_shdr *symtab = NULL;
    for (uint16_t i = 0; i < o->shnum; i++)
        if (o->sh[i].type == SHT_SYMTAB && o->sh[i].link < o->shnum)
            symtab = &o->sh[i];
    if (!symtab)
        return bad(err, "no symbol table");
    const elf_shdr *strtab = &o->sh[symtab->link];
    for (size_t k = 0; k < nk; k++)
        offs[k] = UINT64_MAX;
    elf_sym s;
    for (uint64_t i = 0; read_sym(o, symtab, i, &s); i++) {
        if ((s.info & 0xf) != STT_FUNC || s.shndx == SHN_UNDEF || s.shndx >= o->shnum || o->place[s.shndx] < 0)
            continue;
        const char *name = str_at(o, strtab, s.name);
        for (size_t k = 0; k < nk; k++) {
            if (strcmp(name, ks[k].name) == 0) {
                if (s.value > o->sh[s.shndx].size || s.size > o->sh[s.shndx].size - s.value)
                    return bad(err, "symbol outside its section");
                offs[k] = (uint64_t)o->place[s.shndx] + s.value;
                sizes[k] = s.size;
            }
        }
    }
    for (size_t k = 0; k < nk; k++)
        if (offs[k] == UINT64_MAX)
            return flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: kernel '%s' missing from the object",
                                   ks[k].name);
    return FLOCK_OK;
}

static flock_status write_container(uint32_t arch, uint64_t features, const char *target, const lcpu_kernel *ks,
                                    size_t nk, const uint64_t *offs, const uint64_t *sizes, const uint8_t *blob,
                                    size_t blob_size, uint8_t **out, size_t *out_size, flock_error *err)
{
    size_t tlen = strlen(target);
    if (tlen == 0 || tlen > FLOCK_CPUK_MAX_NAME || nk == 0 || nk > FLOCK_CPUK_MAX_KERNELS)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: target name or kernel count out of range");
    size_t size = FLOCK_CPUK_HEADER_SIZE + 1 + tlen;
    for (size_t k = 0; k < nk; k++)
        size += 1 + strlen(ks[k].name) + FLOCK_CPUK_ENTRY_FIXED;
    size += blob_size;
    uint8_t *b = calloc(1, size);
    if (!b)
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    memcpy(b, FLOCK_CPUK_MAGIC, 8);
    flock_wr_u16(b + 8, FLOCK_CPUK_MAJOR);
    flock_wr_u16(b + 10, FLOCK_CPUK_MINOR);
    flock_wr_u32(b + 12, arch);
    flock_wr_u64(b + 16, features);
    flock_wr_u32(b + 32, (uint32_t)nk);
    flock_wr_u32(b + 36, 0);
    flock_wr_u64(b + 40, blob_size);
    size_t o = FLOCK_CPUK_HEADER_SIZE;
    b[o++] = (uint8_t)tlen;
    memcpy(b + o, target, tlen);
    o += tlen;
    for (size_t k = 0; k < nk; k++) {
        size_t nl = strlen(ks[k].name);
        b[o++] = (uint8_t)nl;
        memcpy(b + o, ks[k].name, nl);
        o += nl;
        flock_wr_u32(b + o, ks[k].kind);
        flock_wr_u32(b + o + 4, (uint32_t)ks[k].dtype);
        flock_wr_u32(b + o + 8, (uint32_t)ks[k].act);
        flock_wr_u32(b + o + 12, (uint32_t)ks[k].d);
        flock_wr_u32(b + o + 16, (uint32_t)ks[k].n);
        flock_wr_u32(b + o + 20, (uint32_t)ks[k].k);
        flock_wr_u64(b + o + 24, offs[k]);
        flock_wr_u64(b + o + 32, sizes[k]);
        o += FLOCK_CPUK_ENTRY_FIXED;
    }
    memcpy(b + o, blob, blob_size);
    flock_wr_u64(b + FLOCK_CPUK_CHECKSUM_AT, flock_cpuk_checksum(b, size));
    *out = b;
    *out_size = size;
    return FLOCK_OK;
}

flock_status lcpu_link_container(const uint8_t *obj, size_t obj_size, uint32_t arch, uint64_t features,
                                 const char *target_name, const lcpu_kernel *kernels, size_t n_kernels,
                                 uint8_t **out, size_t *out_size, flock_error *err)
{
    elf_obj o = {.p = obj, .size = obj_size};
    uint8_t *blob = NULL;
    uint64_t *offs = calloc(n_kernels ? n_kernels : 1, 2 * sizeof *offs);
    flock_status st = offs ? parse_elf(&o, err) : flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    if (st == FLOCK_OK) {
        uint16_t want = arch == FLOCK_CPUK_ARCH_X86_64 ? EM_X86_64 : EM_AARCH64;
        if (o.machine != want)
            st = bad(err, "machine type differs from the target");
    }
    size_t blob_size = 0;
    if (st == FLOCK_OK)
        st = layout(&o, &blob_size, err);
    if (st == FLOCK_OK && !(blob = calloc(1, blob_size ? blob_size : 1)))
        st = flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    if (st == FLOCK_OK) {
        for (uint16_t i = 0; i < o.shnum; i++)
            if (o.place[i] >= 0)
                memcpy(blob + o.place[i], o.p + o.sh[i].offset, (size_t)o.sh[i].size);
        st = resolve_relocs(&o, blob, blob_size, err);
    }
    if (st == FLOCK_OK)
        st = find_kernels(&o, kernels, n_kernels, offs, offs + n_kernels, err);
    if (st == FLOCK_OK)
        st = write_container(arch, features, target_name, kernels, n_kernels, offs, offs + n_kernels, blob,
                             blob_size, out, out_size, err);
    free(blob);
    free(offs);
    free(o.sh);
    free(o.place);
    return st;
}
