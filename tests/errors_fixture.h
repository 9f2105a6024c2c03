/* Test helper for test_errors: the inputs its cases read, made once by the
 * group setup in a temporary folder. Files that are bad on purpose have
 * fixed names there (ERRORS_FILE_*); the handles are valid, for the cases
 * that call a getter with a bad key or an index past the end. */
#ifndef FLOCK_TEST_ERRORS_FIXTURE_H
#define FLOCK_TEST_ERRORS_FIXTURE_H

#include "flock/codegen.h"
#include "flock/compiler.h"
#include "flock/flock.h"

#include <stddef.h>
#include <stdint.h>

#define ERRORS_FILE_GARBAGE "garbage.bin"       /* 4096 random bytes */
#define ERRORS_FILE_EMPTY "empty.bin"           /* 0 bytes */
#define ERRORS_FILE_MISSING "no-such-file"      /* never created */
#define ERRORS_FILE_TRUNCATED "truncated.flock" /* the first half of the compiled bundle */
#define ERRORS_FILE_NO_PROGRAM "no-program.flock" /* a valid bundle with a manifest and nothing else */
#define ERRORS_DIR_EMPTY "empty-dir"            /* a folder without config.json */
#define ERRORS_DIR_BAD_CONFIG "bad-config"      /* config.json cut short */

/* The llama folder's shapes: d 16, 4 heads of 4, 2 KV heads, d_ff 24, 2 layers, 32 tokens. */
enum { E_D = 16, E_H = 4, E_HD = 4, E_KV = 2, E_FF = 24, E_L = 2, E_V = 32 };

typedef struct errors_fixture {
    uint8_t *bundle_bytes;   /* the compiled llama bundle (zstd level 3), read back */
    size_t bundle_size;
    uint8_t *gguf;           /* a valid GGUF image: general.architecture (string), test.int (u32),
                                test.float (f32), test.strs (2 strings), one f32 tensor t0 [4] */
    size_t gguf_size;
    flock_gguf *g;           /* over `gguf` */
    flock_hf_model *hf;      /* the llama folder (config.json has layer_types = ["full_attention"]) */
    flock_source *src;       /* the llama folder */
    flock_source *mamba;     /* the same tensors under model_type "mamba", without tokenizer.json */
    flock_program *prog;     /* the llama folder's program */
    flock_bundle *b;         /* the compiled bundle */
    flock_model *model;      /* the same, opened by the runtime; its tokenizer spells "a".."z" */
    flock_manifest *man;     /* {"i": 7, "s": "x"} */
    flock_compile_opts opts; /* keep 0.5, f16, target cpu */
    uint8_t *blob;           /* a CUDA kernel blob for the program around a fake image, and its parse */
    size_t blob_size;
    flock_cuda_blob parsed;
} errors_fixture;

extern errors_fixture fx;

/* cmocka group setup and teardown. */
int errors_fixture_make(void **state);
int errors_fixture_free(void **state);

/* `name` inside the temporary folder (a ring of 8 buffers, as flock_test_tmp). */
const char *errors_path(const char *name);

#endif
