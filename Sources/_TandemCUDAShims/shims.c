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
