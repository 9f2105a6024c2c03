/* Private: constants of the .flock bundle format (docs/bundle-format.md) and
 * the manifest's own serialization, shared by bundle_write.c, bundle_read.c
 * and manifest.c. */
#ifndef FLOCK_FORMATS_BUNDLE_INTERNAL_H
#define FLOCK_FORMATS_BUNDLE_INTERNAL_H

#include "flock/formats.h"

#include <stdint.h>

#define FLOCK_BUNDLE_MAGIC "\x89" "FLK\r\n\x1a\n"
#define FLOCK_BUNDLE_HEADER_SIZE 64u   /* header bytes written by 1.0 */
#define FLOCK_BUNDLE_ENTRY_SIZE 64u    /* section table entry bytes written by 1.0 */
#define FLOCK_BUNDLE_CKSUM_OFF 56u     /* header_checksum field */
#define FLOCK_BUNDLE_ALIGN 64u         /* alignment of sections and tensors */
#define FLOCK_BUNDLE_MAX_ALIGN 4096u
#define FLOCK_BUNDLE_MAX_NAME 255u     /* section names */
#define FLOCK_BUNDLE_MUST_FLAGS 0xffffu /* must-understand header flag bits */
/* A zstd block holds at most 128 KiB and takes at least 4 bytes. */
#define FLOCK_ZSTD_MAX_RATIO 32768u

#define FLOCK_TT_HEADER_SIZE 8u        /* tensor table header in 1.0 */
#define FLOCK_TT_FIXED 74u             /* record bytes besides name and chunks */
#define FLOCK_TT_CHUNK 16u             /* per chunk: stored size, xxh64 */
#define FLOCK_LAYOUT_PLAIN 0u
#define FLOCK_LAYOUT_PLANES 1u

#define FLOCK_MANIFEST_VERSION 1u

/* The bundle minor version a tensor dtype came in: 0 for the plain types,
 * 1 for the quantized ones, 2 for q5_0. The writer writes the largest over
 * its tensors; the reader refuses a dtype in a file older than that. */
static inline unsigned flock_bundle_dtype_minor(flock_dtype t)
{
    return t == FLOCK_DTYPE_Q5_0 ? 2u : flock_dtype_is_quantized(t) ? 1u : 0u;
}

/* Serializes `m` into a malloc'd buffer (caller frees). */
flock_status flock_manifest_serialize(const flock_manifest *m, uint8_t **out, size_t *out_size,
                                      flock_error *err);
/* Parses a manifest section's raw bytes; every count limited by the bytes left. */
flock_status flock_manifest_deserialize(const void *data, size_t size, flock_manifest **out,
                                        flock_error *err);
/* Deep copy. */
flock_status flock_manifest_clone(const flock_manifest *m, flock_manifest **out);

/* Splits n 16-bit values into n high bytes then n low bytes, and back. */
void flock_planes_split(const uint8_t *src, uint8_t *dst, size_t n);
void flock_planes_join(const uint8_t *src, uint8_t *dst, size_t n);

/* Number of online CPUs (at least 1). */
int flock_cpu_count(void);

#endif
