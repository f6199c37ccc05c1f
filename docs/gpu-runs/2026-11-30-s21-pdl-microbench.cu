// Programmatic dependent launch measured on the H200 (2026-11-30, session 21): a chain of 100 dependent copies in one
// CUDA graph, each kernel's griddepcontrol.wait + launch_dependents at its top, launched with and without the
// programmatic-serialization attribute. Built there with nvcc -O3 -arch=sm_90. Output of that run:
//
// bytes  2097152 blocks   132: plain 1.47 us/kernel, pdl 1.13 us/kernel, saved 0.35 us
// bytes  2097152 blocks   528: plain 1.43 us/kernel, pdl 1.06 us/kernel, saved 0.37 us
// bytes  2097152 blocks  2112: plain 1.86 us/kernel, pdl 3.03 us/kernel, saved -1.17 us
// bytes 33554432 blocks   132: plain 5.80 us/kernel, pdl 5.40 us/kernel, saved 0.40 us
// bytes 33554432 blocks   528: plain 5.56 us/kernel, pdl 5.16 us/kernel, saved 0.40 us
// bytes 33554432 blocks  2112: plain 6.91 us/kernel, pdl 6.54 us/kernel, saved 0.37 us
// bytes 134217728 blocks   132: plain 39.72 us/kernel, pdl 39.38 us/kernel, saved 0.34 us
// bytes 134217728 blocks   528: plain 35.06 us/kernel, pdl 34.75 us/kernel, saved 0.32 us
// bytes 134217728 blocks  2112: plain 34.64 us/kernel, pdl 34.31 us/kernel, saved 0.33 us
// Chain of dependent kernels in a CUDA graph, with and without programmatic dependent launch.
#include <cstdio>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)
__global__ void step(const float4* __restrict__ x, float4* __restrict__ y, long n, int pdl) {
  if (pdl) { asm volatile("griddepcontrol.wait;" ::: "memory"); asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    float4 v = x[i]; v.x = v.x * 0.999f + 1.f; y[i] = v;
  }
}
int run(long n, int blocks, int chain, int pdl, float* ms) {
  float4 *a, *b; CK(cudaMalloc(&a, n * 16)); CK(cudaMalloc(&b, n * 16));
  CK(cudaMemset(a, 0, n * 16)); CK(cudaMemset(b, 0, n * 16));
  cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {}; cfg.gridDim = dim3(blocks); cfg.blockDim = dim3(256); cfg.stream = s; cfg.attrs = at; cfg.numAttrs = pdl ? 1 : 0;
  cudaGraph_t g; CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < chain; i++) CK(cudaLaunchKernelEx(&cfg, step, (const float4*)(i & 1 ? b : a), (i & 1 ? a : b), n, pdl));
  CK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ge; CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 5; i++) CK(cudaGraphLaunch(ge, s));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const int reps = 50;
  CK(cudaEventRecord(e0, s)); for (int i = 0; i < reps; i++) CK(cudaGraphLaunch(ge, s)); CK(cudaEventRecord(e1, s));
  CK(cudaEventSynchronize(e1)); cudaEventElapsedTime(ms, e0, e1); *ms = *ms * 1000 / reps / chain;
  cudaFree(a); cudaFree(b); return 0;
}
int main() {
  long sizes[] = {1 << 16, 1 << 20, 1 << 22};   // float4s: 1 MB, 16 MB, 64 MB read + write
  for (long n : sizes) for (int blocks : {132, 528, 2112}) {
    float t0, t1; if (run(n, blocks, 100, 0, &t0) || run(n, blocks, 100, 1, &t1)) return 1;
    printf("bytes %8ld blocks %5d: plain %.2f us/kernel, pdl %.2f us/kernel, saved %.2f us\n", n * 32, blocks, t0, t1, t0 - t1);
  }
}
