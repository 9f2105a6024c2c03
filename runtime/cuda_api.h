/* Private: the CUDA driver API entry points the backend calls, declared
 * here with cuda.h's types (so the runtime builds without a CUDA install;
 * libcuda is loaded with dlopen). The struct tags are cuda.h's own, and
 * cuda.h's enums (CUresult, CUdevice_attribute, CUjit_option; no negative
 * values) have unsigned int as their compatible type, so
 * runtime/cuda_api_check.c can assert, where the toolkit is installed,
 * that each typedef here is the type of the real function. The names are
 * the exported symbols (the _v2 ones cuda.h's macros select). */
#ifndef FLOCK_RUNTIME_CUDA_API_H
#define FLOCK_RUNTIME_CUDA_API_H

#include <stddef.h>

typedef unsigned int cu_result;          /* CUresult; 0 = CUDA_SUCCESS */
typedef int cu_device;                   /* CUdevice */
typedef unsigned long long cu_deviceptr; /* CUdeviceptr (64-bit on 64-bit hosts) */
typedef struct CUctx_st *cu_context;
typedef struct CUmod_st *cu_module;
typedef struct CUfunc_st *cu_function;
typedef struct CUstream_st *cu_stream;

typedef cu_result (*cu_init_t)(unsigned int flags);                                      /* cuInit */
typedef cu_result (*cu_device_get_t)(cu_device *device, int ordinal);                    /* cuDeviceGet */
typedef cu_result (*cu_device_get_attribute_t)(int *pi, unsigned int attrib, cu_device dev);
typedef cu_result (*cu_device_get_name_t)(char *name, int len, cu_device dev);
typedef cu_result (*cu_device_total_mem_t)(size_t *bytes, cu_device dev);               /* cuDeviceTotalMem_v2 */
typedef cu_result (*cu_primary_ctx_retain_t)(cu_context *pctx, cu_device dev);         /* cuDevicePrimaryCtxRetain */
typedef cu_result (*cu_primary_ctx_release_t)(cu_device dev);                         /* cuDevicePrimaryCtxRelease_v2 */
typedef cu_result (*cu_ctx_set_current_t)(cu_context ctx);
typedef cu_result (*cu_ctx_synchronize_t)(void);
typedef cu_result (*cu_module_load_data_ex_t)(cu_module *module, const void *image, unsigned int num_options,
                                              unsigned int *options, void **option_values);
typedef cu_result (*cu_module_unload_t)(cu_module hmod);
typedef cu_result (*cu_module_get_function_t)(cu_function *hfunc, cu_module hmod, const char *name);
typedef cu_result (*cu_mem_alloc_t)(cu_deviceptr *dptr, size_t bytesize);               /* cuMemAlloc_v2 */
typedef cu_result (*cu_mem_free_t)(cu_deviceptr dptr);                                  /* cuMemFree_v2 */
typedef cu_result (*cu_memset_d8_t)(cu_deviceptr dst, unsigned char uc, size_t n);      /* cuMemsetD8_v2 */
typedef cu_result (*cu_memcpy_htod_t)(cu_deviceptr dst, const void *src, size_t bytes); /* cuMemcpyHtoD_v2 */
typedef cu_result (*cu_memcpy_dtoh_t)(void *dst, cu_deviceptr src, size_t bytes);       /* cuMemcpyDtoH_v2 */
typedef cu_result (*cu_memcpy_dtod_async_t)(cu_deviceptr dst, cu_deviceptr src, size_t bytes,
                                            cu_stream stream);                         /* cuMemcpyDtoDAsync_v2 */
typedef cu_result (*cu_stream_create_t)(cu_stream *stream, unsigned int flags);
typedef cu_result (*cu_stream_destroy_t)(cu_stream stream);                             /* cuStreamDestroy_v2 */
typedef cu_result (*cu_stream_synchronize_t)(cu_stream stream);
typedef cu_result (*cu_launch_kernel_t)(cu_function f, unsigned int gx, unsigned int gy, unsigned int gz,
                                        unsigned int bx, unsigned int by, unsigned int bz,
                                        unsigned int shared_mem_bytes, cu_stream stream, void **kernel_params,
                                        void **extra);
typedef cu_result (*cu_occupancy_t)(int *num_blocks, cu_function f, int block_size, size_t dyn_smem);
typedef cu_result (*cu_get_error_t)(cu_result error, const char **str); /* cuGetErrorName / cuGetErrorString */

/* Enum values used (cuda.h). */
enum {
    CU_ATTR_MULTIPROCESSOR_COUNT = 16,      /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
    CU_ATTR_CC_MAJOR = 75,                  /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
    CU_ATTR_CC_MINOR = 76,                  /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
    CU_JIT_INFO_LOG_BUF = 3,                /* CU_JIT_INFO_LOG_BUFFER */
    CU_JIT_INFO_LOG_BUF_BYTES = 4,          /* CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES */
    CU_JIT_ERROR_LOG_BUF = 5,               /* CU_JIT_ERROR_LOG_BUFFER */
    CU_JIT_ERROR_LOG_BUF_BYTES = 6,         /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
    CU_STREAM_FLAGS_DEFAULT = 0,            /* CU_STREAM_DEFAULT: ordered with the legacy NULL stream */
};

#endif
