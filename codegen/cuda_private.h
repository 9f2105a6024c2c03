/* Private to codegen's CUDA part. */
#ifndef FLOCK_CODEGEN_CUDA_PRIVATE_H
#define FLOCK_CODEGEN_CUDA_PRIVATE_H

#include "flock/codegen.h"

#include <stddef.h>

/* The kernel library texts (codegen/cuda_*.cu), embedded at build time by
 * codegen/embed.cmake; NUL-terminated. */
extern const char flock_cuda_src_kernels[];
extern const char flock_cuda_src_attention[];
extern const char flock_cuda_src_gemm[];
extern const char flock_cuda_src_quant[];

#define FLOCK_CUDA_NAME_MAX 64

/* One generated entry point: its table row, its C++ parameter list and the
 * body call that instantiates the templates. */
typedef struct flock_cuda_kernel_def {
    flock_cuda_kernel_info info; /* info.name points at name[] */
    char name[FLOCK_CUDA_NAME_MAX];
    char params[256];
    char call[192];
    int max_threads;             /* __launch_bounds__ */
} flock_cuda_kernel_def;

typedef struct flock_cuda_kernel_list {
    flock_cuda_kernel_def *defs;
    size_t n, cap;
} flock_cuda_kernel_list;

/* Every kernel the model needs, in a fixed order. Caller frees list->defs. */
flock_status flock_cuda_kernel_list_build(const flock_codegen_model *m, flock_cuda_kernel_list *list,
                                          flock_error *err);

/* The source text for a list built from m (malloc'd, NUL-terminated). */
flock_status flock_cuda_source_emit(const flock_codegen_model *m, const flock_cuda_kernel_list *list,
                                    char **src, size_t *len, flock_error *err);

/* Packs a blob from the list and an image. */
flock_status flock_cuda_blob_pack(const flock_codegen_model *m, const flock_cuda_kernel_list *list,
                                  uint32_t arch, uint32_t image_kind, const void *image, size_t image_size,
                                  uint8_t **blob, size_t *size, flock_error *err);

#endif
