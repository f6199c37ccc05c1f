#include "TandemCUDAShims.h"
#include <string.h>

// NCCL's handle for bootstrapping a communicator: 128 opaque bytes (NCCL_UNIQUE_ID_BYTES),
// declared here so that no NCCL header is needed to build.
typedef struct { char internal[128]; } tandem_nccl_unique_id;
typedef int (*tandem_nccl_comm_init_rank_fn)(void **comm, int ranks, tandem_nccl_unique_id id, int rank);

int tandem_nccl_comm_init_rank(void *function, void **comm, int ranks, const void *uniqueId, int rank) {
    tandem_nccl_unique_id id;
    memcpy(id.internal, uniqueId, sizeof id.internal);
    return ((tandem_nccl_comm_init_rank_fn)function)(comm, ranks, id, rank);
}

// cuLaunchKernelEx's configuration as cuda.h lays it out (CUDA 12.0 on), declared here so that no CUDA
// header is needed to build: an attribute is its 4-byte id, 4 bytes of padding and a 64-byte value.
typedef struct {
    unsigned id;
    char pad[4];
    union { int programmaticStreamSerializationAllowed; void *pointerAlignment; char bytes[64]; } value;
} tandem_cu_launch_attribute;
typedef struct {
    unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
    void *hStream;
    tandem_cu_launch_attribute *attrs;
    unsigned numAttrs;
} tandem_cu_launch_config;
typedef int (*tandem_cu_launch_kernel_ex_fn)(const tandem_cu_launch_config *config, void *f, void **params, void **extra);
enum { tandem_cu_launch_attribute_programmatic_stream_serialization = 6 };

int tandem_cu_launch_programmatic(void *function, void *kernel, unsigned gridX, unsigned gridY, unsigned gridZ,
                                  unsigned blockX, unsigned blockY, unsigned blockZ, unsigned sharedBytes, void *stream,
                                  void **params) {
    tandem_cu_launch_attribute attribute;
    memset(&attribute, 0, sizeof attribute);
    attribute.id = tandem_cu_launch_attribute_programmatic_stream_serialization;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    tandem_cu_launch_config config = {gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, stream, &attribute, 1};
    return ((tandem_cu_launch_kernel_ex_fn)function)(&config, kernel, params, 0);
}

// CUDA_MEMCPY3D as cuda.h lays it out (CUDA 10 on; an enum is 4 bytes, padded before the pointer after it),
// declared here so that no CUDA header is needed to build.
typedef struct {
    size_t srcXInBytes, srcY, srcZ, srcLOD;
    unsigned srcMemoryType;
    const void *srcHost;
    unsigned long long srcDevice;
    void *srcArray, *reserved0;
    size_t srcPitch, srcHeight;
    size_t dstXInBytes, dstY, dstZ, dstLOD;
    unsigned dstMemoryType;
    void *dstHost;
    unsigned long long dstDevice;
    void *dstArray, *reserved1;
    size_t dstPitch, dstHeight;
    size_t WidthInBytes, Height, Depth;
} tandem_cu_memcpy3d;
typedef int (*tandem_cu_memcpy_node_get_fn)(void *node, tandem_cu_memcpy3d *params);
typedef int (*tandem_cu_exec_memcpy_node_set_fn)(void *exec, void *node, const tandem_cu_memcpy3d *params, void *context);

int tandem_cu_graph_exec_retarget_copy(void *getParams, void *setParams, void *exec, void *node, unsigned long long source,
                                       unsigned long long destination, void *context) {
    tandem_cu_memcpy3d params;
    memset(&params, 0, sizeof params);
    int rc = ((tandem_cu_memcpy_node_get_fn)getParams)(node, &params);
    if (rc != 0) return rc;
    params.srcDevice = source;
    params.dstDevice = destination;
    return ((tandem_cu_exec_memcpy_node_set_fn)setParams)(exec, node, &params, context);
}
