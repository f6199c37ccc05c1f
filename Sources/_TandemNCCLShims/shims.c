#include "TandemNCCLShims.h"
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
