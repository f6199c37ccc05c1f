#ifndef TANDEM_NCCL_SHIMS_H
#define TANDEM_NCCL_SHIMS_H

/// Calls `ncclCommInitRank`, looked up at run time (`function`), whose third argument is a
/// 128-byte struct passed by value: a call Swift cannot spell through a function pointer.
/// `uniqueId` points at the 128 bytes from `ncclGetUniqueId`. Returns NCCL's result code.
/// Internal to Tandem (the underscore): not an API.
int tandem_nccl_comm_init_rank(void *function, void **comm, int ranks, const void *uniqueId, int rank);

#endif
