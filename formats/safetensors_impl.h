/* Private: lookups on a parsed safetensors file shared with hf.c. */
#ifndef FLOCK_FORMATS_SAFETENSORS_IMPL_H
#define FLOCK_FORMATS_SAFETENSORS_IMPL_H

#include "flock/formats.h"

/* Index of the tensor named `name` (tensors are sorted by name), or -1. */
int64_t flock_safetensors_find(const flock_safetensors *st, const char *name);

#endif
