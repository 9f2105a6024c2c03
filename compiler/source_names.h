/* Private: canonical (GGUF) tensor names -> Hugging Face names per architecture. */
#ifndef FLOCK_COMPILER_SOURCE_NAMES_H
#define FLOCK_COMPILER_SOURCE_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FLOCK_TMAP_TRANSPOSE = 1, /* GPT-2 Conv1D stores [in, out] */
    FLOCK_TMAP_SPLIT3 = 2,    /* GPT-2 fused c_attn: take third `part` of dim 0 (after transposing) */
};

/* Writes the HF name of canonical tensor `canon` ("blk.3.attn_q.weight") for
 * canonical architecture `arch` into buf. False when there is no mapping. */
bool flock_hf_name_for(const char *arch, const char *canon, char *buf, size_t n, uint8_t *flags, uint8_t *part);

#endif
