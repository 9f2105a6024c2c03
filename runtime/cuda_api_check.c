/* Build-time check, where the CUDA toolkit is installed: each function type
 * in cuda_api.h is the type of the real driver function in cuda.h (the
 * exported _v2 symbol the backend loads), and the enum values match. Never
 * linked into anything; the runtime itself does not include cuda.h. */
#include "cuda_api.h"

#include <cuda.h>

#define SAME(ours, theirs) \
    _Static_assert(__builtin_types_compatible_p(ours, __typeof__(&theirs)), #theirs " differs from cuda_api.h")

SAME(cu_init_t, cuInit);
SAME(cu_device_get_t, cuDeviceGet);
SAME(cu_device_get_attribute_t, cuDeviceGetAttribute);
SAME(cu_device_get_name_t, cuDeviceGetName);
SAME(cu_device_total_mem_t, cuDeviceTotalMem_v2);
SAME(cu_primary_ctx_retain_t, cuDevicePrimaryCtxRetain);
SAME(cu_primary_ctx_release_t, cuDevicePrimaryCtxRelease_v2);
SAME(cu_ctx_set_current_t, cuCtxSetCurrent);
SAME(cu_ctx_synchronize_t, cuCtxSynchronize);
SAME(cu_module_load_data_ex_t, cuModuleLoadDataEx);
SAME(cu_module_unload_t, cuModuleUnload);
SAME(cu_module_get_function_t, cuModuleGetFunction);
SAME(cu_mem_alloc_t, cuMemAlloc_v2);
SAME(cu_mem_free_t, cuMemFree_v2);
SAME(cu_memset_d8_t, cuMemsetD8_v2);
SAME(cu_memcpy_htod_t, cuMemcpyHtoD_v2);
SAME(cu_memcpy_dtoh_t, cuMemcpyDtoH_v2);
SAME(cu_memcpy_dtod_async_t, cuMemcpyDtoDAsync_v2);
SAME(cu_stream_create_t, cuStreamCreate);
SAME(cu_stream_destroy_t, cuStreamDestroy_v2);
SAME(cu_stream_synchronize_t, cuStreamSynchronize);
SAME(cu_launch_kernel_t, cuLaunchKernel);
SAME(cu_occupancy_t, cuOccupancyMaxActiveBlocksPerMultiprocessor);
SAME(cu_get_error_t, cuGetErrorName);
SAME(cu_get_error_t, cuGetErrorString);
_Static_assert(sizeof(cu_deviceptr) == sizeof(CUdeviceptr), "CUdeviceptr");
_Static_assert((int)CU_ATTR_MULTIPROCESSOR_COUNT == (int)CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "attribute");
_Static_assert((int)CU_ATTR_CC_MAJOR == (int)CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "attribute");
_Static_assert((int)CU_ATTR_CC_MINOR == (int)CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "attribute");
_Static_assert((int)CU_JIT_INFO_LOG_BUF == (int)CU_JIT_INFO_LOG_BUFFER, "jit option");
_Static_assert((int)CU_JIT_INFO_LOG_BUF_BYTES == (int)CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, "jit option");
_Static_assert((int)CU_JIT_ERROR_LOG_BUF == (int)CU_JIT_ERROR_LOG_BUFFER, "jit option");
_Static_assert((int)CU_JIT_ERROR_LOG_BUF_BYTES == (int)CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, "jit option");
_Static_assert((int)CU_STREAM_FLAGS_DEFAULT == (int)CU_STREAM_DEFAULT, "stream flag");
_Static_assert(CUDA_SUCCESS == 0 && CUDA_ERROR_OUT_OF_MEMORY == 2, "CUresult values cuda_driver.c relies on");
