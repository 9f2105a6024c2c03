/* Tests: copies of a bundle with its sections edited, dropped or added (a
 * damaged kernel container, a CUDA section for another device). */
#ifndef FLOCK_TESTS_BUNDLE_COPY_H
#define FLOCK_TESTS_BUNDLE_COPY_H

#include "flock/bundle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called for each tokenizer, program and kernels section of the source with
 * its bytes (malloc'd; the callback may shrink *size or change the bytes);
 * returns false to leave the section out of the copy. */
typedef bool (*flock_test_section_edit)(const flock_section_info *si, uint8_t *data, size_t *size, void *user);

/* Writes `to`: `from`'s manifest, every tensor and every tokenizer, program
 * and kernels section (through `edit` when non-NULL), uncompressed, then,
 * when add_name is non-NULL, one more kernels section (zstd-compressed).
 * Fails the running test on any error. */
void flock_test_bundle_copy(const char *from, const char *to, flock_test_section_edit edit, void *user,
                            const char *add_name, const void *add_data, size_t add_size);

#endif
