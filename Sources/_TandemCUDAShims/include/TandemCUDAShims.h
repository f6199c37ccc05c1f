#ifndef TANDEM_CUDA_SHIMS_H
#define TANDEM_CUDA_SHIMS_H

/// Calls `ncclCommInitRank`, looked up at run time (`function`), whose third argument is a
/// 128-byte struct passed by value: a call Swift cannot spell through a function pointer.
/// `uniqueId` points at the 128 bytes from `ncclGetUniqueId`. Returns NCCL's result code.
/// Internal to Tandem (the underscore): not an API.
int tandem_nccl_comm_init_rank(void *function, void **comm, int ranks, const void *uniqueId, int rank);

/// Calls `cuLaunchKernelEx`, looked up at run time (`function`), for kernel `kernel` on a grid of
/// `gridX` × `gridY` × `gridZ` blocks of `blockX` × `blockY` × `blockZ` threads, `sharedBytes` of dynamic
/// shared memory on `stream`, with the attribute that lets the launch overlap the kernel ahead of it in
/// the stream (programmatic stream serialization). `params` as `cuLaunchKernel` takes them. Returns the
/// driver's result code. Internal to Tandem (the underscore): not an API.
int tandem_cu_launch_programmatic(void *function, void *kernel, unsigned gridX, unsigned gridY, unsigned gridZ,
                                  unsigned blockX, unsigned blockY, unsigned blockZ, unsigned sharedBytes, void *stream,
                                  void **params);

/// Points the copy node `node` of executable graph `exec` (a one-dimensional device-to-device copy, as stream capture
/// records `cuMemcpyDtoDAsync`) at `source` and `destination` for the graph's later launches: its parameters read from
/// the node of the graph `exec` was made from (`cuGraphMemcpyNodeGetParams`, looked up at run time: `getParams`), the
/// two addresses changed, and set with `cuGraphExecMemcpyNodeSetParams` (`setParams`) in `context`. Returns the
/// driver's result code. Internal to Tandem (the underscore): not an API.
int tandem_cu_graph_exec_retarget_copy(void *getParams, void *setParams, void *exec, void *node, unsigned long long source,
                                       unsigned long long destination, void *context);

#endif
