/* libFuzzer target: the CUDA kernel blob reader (formats/cuda_blob.c) on
 * arbitrary bytes. Every entry of a blob that parses must read back. Seeds:
 * test_codegen writes a packed blob to $FLOCK_BUILD_DIR/seeds/cuda_blob/. */
#include "flock/formats.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_cuda_blob b;
    if (flock_cuda_blob_parse(data, size, &b, NULL) != FLOCK_OK)
        return 0;
    for (size_t i = 0; i < b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        if (flock_cuda_blob_kernel(&b, i, &k, NULL) != FLOCK_OK || strlen(k.name) == 0)
            __builtin_trap();
    }
    (void)flock_cuda_blob_find(&b, "flock_embed");
    return 0;
}
