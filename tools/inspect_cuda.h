/* `flock inspect`: the "cuda:*" kernel sections (tools/inspect_cuda.c). */
#ifndef FLOCK_TOOLS_INSPECT_CUDA_H
#define FLOCK_TOOLS_INSPECT_CUDA_H

#include "flock/formats.h"

#include <stdio.h>

/* Prints each "cuda:*" kernels section: blob header, model facts and the
 * kernel table (name, kind, spec, spec2, keep, block, grid, dynamic shared
 * memory). A section that cannot be read or parsed is reported in its
 * place ("unreadable: <why>"). Returns the number of such sections. */
int flock_inspect_cuda_text(const flock_bundle *b, FILE *f);
/* The same as a JSON array (one object per section; an unreadable one has
 * "error" instead of the table). Returns as above. */
int flock_inspect_cuda_json(const flock_bundle *b, FILE *f);

#endif
