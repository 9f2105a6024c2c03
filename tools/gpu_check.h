/* Private to tools/gpu_check*.c: the CUDA driver API, loaded with
 * dlopen("libcuda.so.1") (flock never links libcuda), and small helpers. */
#ifndef FLOCK_GPU_CHECK_H
#define FLOCK_GPU_CHECK_H

#include "flock/codegen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The few driver types used, declared here so that no CUDA header is needed. */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

typedef struct cu_api {
    CUresult (*init)(unsigned);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*device_get_attribute)(int *, int, CUdevice);
    CUresult (*device_get_name)(char *, int, CUdevice);
    CUresult (*primary_ctx_retain)(CUcontext *, CUdevice);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*ctx_synchronize)(void);
    CUresult (*mem_get_info)(size_t *, size_t *);
    CUresult (*module_load_data)(CUmodule *, const void *);
    CUresult (*module_unload)(CUmodule);
    CUresult (*module_get_function)(CUfunction *, CUmodule, const char *);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*memcpy_htod)(CUdeviceptr, const void *, size_t);
    CUresult (*memcpy_dtoh)(void *, CUdeviceptr, size_t);
    CUresult (*memcpy_dtod_async)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
    CUresult (*memset_d8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*launch_kernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                              CUstream, void **, void **);
    CUresult (*stream_create)(CUstream *, unsigned);
    CUresult (*stream_synchronize)(CUstream);
    CUresult (*event_create)(CUevent *, unsigned);
    CUresult (*event_record)(CUevent, CUstream);
    CUresult (*event_synchronize)(CUevent);
    CUresult (*event_elapsed_time)(float *, CUevent, CUevent);
    CUresult (*get_error_string)(CUresult, const char **);
    CUresult (*occupancy_max_blocks)(int *, CUfunction, int, size_t);
    /* Optional (graph capture): NULL when the driver lacks them. */
    CUresult (*stream_begin_capture)(CUstream, int);
    CUresult (*stream_end_capture)(CUstream, CUgraph *);
    CUresult (*graph_instantiate)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*graph_launch)(CUgraphExec, CUstream);
    CUresult (*graph_exec_destroy)(CUgraphExec);
    CUresult (*graph_destroy)(CUgraph);
} cu_api;

extern cu_api CU;
extern CUstream g_stream;

/* Prints the failing call and exits (a tool, not a library). */
void cu_check(CUresult r, const char *what, const char *file, int line);
#define CK(call) cu_check((call), #call, __FILE__, __LINE__)

/* A compiled kernel blob loaded as a module. */
typedef struct gpu_module {
    uint8_t *blob;
    flock_cuda_blob b;
    CUmodule mod;
    CUfunction *fns; /* per table entry */
} gpu_module;

/* Generates, compiles (sm_XY of the device, else compute_80 PTX) and loads. */
void gpu_module_load(gpu_module *gm, const flock_codegen_model *m, int cc);
void gpu_module_free(gpu_module *gm);
/* Launches kernel `name` of the module on g_stream with its table's block shape. */
void gpu_launch(const gpu_module *gm, const char *name, unsigned gx, unsigned gy, unsigned gz, void **args);

/* Blocks of kernel `name` that fill the GPU once (SMs x resident blocks). */
unsigned gpu_wave(const gpu_module *gm, const char *name);
extern int g_sms;

/* Device buffers. */
CUdeviceptr dalloc(size_t bytes);          /* filled with 0xff bytes: NaN as f32 */
CUdeviceptr dput(const void *h, size_t bytes);
void dget(void *h, CUdeviceptr d, size_t bytes);
void dfree(CUdeviceptr d);

/* Host data and checks (tools/gpu_check_util.c). */
extern int gpu_check_failed, gpu_check_passed;
uint64_t rnd_u64(void);
float rnd_f(void);                          /* uniform in [-1, 1) */
float *hrand(size_t n, float scale);        /* malloc'd */
/* Random 16-bit weights: returns the rounded values as floats (malloc'd)
 * and puts the 16-bit copy on the device. */
float *wrand(flock_dtype t, size_t n, float scale, CUdeviceptr *dev);
int *rand_subset(int n, int k);             /* sorted random k of [0, n), malloc'd */
/* Compares a device result (n floats) with the reference by normalized
 * error; NaN anywhere fails. Counts and prints the result. */
void expect(const char *cfg, const char *what, CUdeviceptr d, const float *ref, size_t n, double tol);
/* Counts a check decided by the caller. */
void expect_true(const char *cfg, const char *what, bool ok);

/* Kernel checks (tools/gpu_check_kernels.c): one model shape (M prompt
 * rows for the GEMMs), or all of gpu_check_configs(). */
void check_config(const char *cfg, const flock_codegen_model *m, int cc, int M);
/* The quantized-weight kernels of m->qtypes (tools/gpu_check_quant.c). */
void check_quant(const char *cfg, const gpu_module *gm, const flock_codegen_model *m, int M);
void check_all_configs(int cc);

/* Timing (tools/gpu_check_bench.c): the Llama-shaped decode stack. */
void bench_run(int cc);

#endif
