extension KernelSource {
    // MARK: - LSTM: the whole recurrence of a layer in one launch

    /// `lstm_seq_fwd_HxRB` and `lstm_seq_bwd_HxRB` (hidden size H, RB batch rows per block): one launch
    /// runs every step of one layer in one direction. Step by step, a step is a `[B, H] × [H, 4H]`
    /// GEMM and a cell — two launches of a few dozen blocks each, and the GPU waits on the launch
    /// more than it computes. Here each block keeps its slice of `W_hh` in registers for the whole
    /// sequence, and the blocks that share batch rows meet at a counter in global memory after every
    /// step instead of at a kernel boundary. The launcher (``LSTMNetwork``) checks that every block
    /// can be resident at once; a block that still never arrives ends the kernel with a trap after
    /// two seconds, so a mistake is a launch error, never a hang.
    static let recurrentSequence = #"""
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v; asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t;
}
// Every thread of the block: arrive at counter *p and wait until it reaches `target` (members × rounds).
__device__ void group_barrier(unsigned* p, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(p, 1u);
    unsigned long long start = global_ns();
    while (ld_acquire(p) < target) {
      if (global_ns() - start > 2000000000ull) __trap();
    }
    __threadfence();
  }
  __syncthreads();
}
// Loads through L2 (written by other blocks of this launch; L1 is not coherent).
template <class D> __device__ __forceinline__ float ld_l2(const void* p, int i);
template <> __device__ __forceinline__ float ld_l2<F32>(const void* p, int i) {
  float v; asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"((const float*)p + i)); return v;
}
template <> __device__ __forceinline__ float ld_l2<BF16>(const void* p, int i) {
  u16 v; asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(v) : "l"((const u16*)p + i)); return bf2f(v);
}
template <> __device__ __forceinline__ float ld_l2<F16>(const void* p, int i) {
  u16 v; asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(v) : "l"((const u16*)p + i)); return h2f(v);
}

// Forward of one layer over all T steps. Block (rb, ub), H threads, owns batch rows [rb·RB, +RB) and hidden units
// [ub·16, +16), i.e. 64 gate columns (4 gates × 16 units, PyTorch's order i, f, g, o). Thread (col, q) keeps
// W_hh[col's row, q·64 + 0..63] in registers. Each step: stage h_{t-1} for the block's rows, 64-long partial dot
// products, then the cell for the block's (row, unit) pairs — biases added, gates activated and kept in place, c and
// h written — and the counter of the rows' blocks. gates [T, B, 4H] (D) holds x·W_ihᵀ on entry; whh [4H, H] (D);
// c [T, B, H] fp32; h [T, B, H] (D); sync[rb] zero on entry.
template <class D, int H, int RB> __device__ void lstm_seq_fwd_impl(void* gates, const void* whh, const float* bih, const float* bhh,
                                                                    float* c, void* h, int B, int T, unsigned* sync) {
  constexpr int G = 4 * H, KQ = H / 64;
  __shared__ __align__(16) float hs[RB][H + 4];
  __shared__ float part[KQ][RB][65];
  const int tid = threadIdx.x, col = tid & 63, q = tid >> 6;
  const int rb = blockIdx.x, ub = blockIdx.y, row0 = rb * RB;
  const int wrow = (col >> 4) * H + ub * 16 + (col & 15);
  float w[64];
  #pragma unroll
  for (int i = 0; i < 64; i++) w[i] = D::ld(whh, wrow * H + q * 64 + i);
  for (int t = 0; t < T; t++) {
    if (t > 0) {
      #pragma unroll
      for (int r = 0; r < RB; r++) hs[r][tid] = row0 + r < B ? ld_l2<D>(h, ((t - 1) * B + row0 + r) * H + tid) : 0.f;
      __syncthreads();
      #pragma unroll
      for (int r = 0; r < RB; r++) {
        const float4* hp = (const float4*)&hs[r][q * 64];
        float s = 0.f;
        #pragma unroll
        for (int i = 0; i < 16; i++) {
          float4 v = hp[i];
          s = fmaf(v.x, w[4 * i], s); s = fmaf(v.y, w[4 * i + 1], s); s = fmaf(v.z, w[4 * i + 2], s); s = fmaf(v.w, w[4 * i + 3], s);
        }
        part[q][r][col] = s;
      }
      __syncthreads();
    }
    for (int cell = tid; cell < RB * 16; cell += H) {
      int r = cell >> 4, j = cell & 15, row = row0 + r, unit = ub * 16 + j;
      if (row >= B) continue;
      int g0 = (t * B + row) * G, at = (t * B + row) * H + unit;
      float pre[4];
      #pragma unroll
      for (int g = 0; g < 4; g++) {
        float s = D::ld(gates, g0 + g * H + unit) + bih[g * H + unit] + bhh[g * H + unit];
        if (t > 0) {
          #pragma unroll
          for (int k = 0; k < KQ; k++) s += part[k][r][g * 16 + j];
        }
        pre[g] = s;
      }
      float ig = sigm(pre[0]), fg = sigm(pre[1]), gg = tanhf(pre[2]), og = sigm(pre[3]);
      float cn = fg * (t > 0 ? c[at - B * H] : 0.f) + ig * gg;
      c[at] = cn;
      D::st(h, at, og * tanhf(cn));
      D::st(gates, g0 + unit, ig); D::st(gates, g0 + H + unit, fg); D::st(gates, g0 + 2 * H + unit, gg); D::st(gates, g0 + 3 * H + unit, og);
    }
    if (t + 1 < T) group_barrier(&sync[rb], (unsigned)(t + 1) * gridDim.y);
  }
}

// Backward of one layer over all T steps, from the last. Block (rb, ub) as forward; thread (u, q) keeps
// W_hh[ch·H + q·16 + 0..15, ub·16 + u] for the four H-column chunks ch in registers. Each step: the cell backward
// for the block's pairs (dh = the recurrent gradient the block made itself + dLast [B, H] at the last step +
// dSeq [T, B, H]; either may be 0), writing dgates [T, B, 4H] (D) and keeping dc; the counter; then the rows'
// dgates_t from L2, chunk by chunk, and dh_{t-1} = dgates_t · W_hh for the block's rows and units.
template <class D, int H, int RB> __device__ void lstm_seq_bwd_impl(const void* gates, const float* c, const void* whh, const void* dLast,
                                                                    const void* dSeq, void* dgates, int B, int T, unsigned* sync) {
  constexpr int G = 4 * H, QN = H / 16, CELLS = (RB * 16 + H - 1) / H;
  __shared__ __align__(16) float ds[RB][H + 4];
  __shared__ float part[QN][RB][17];
  const int tid = threadIdx.x, u = tid & 15, q = tid >> 4;
  const int rb = blockIdx.x, ub = blockIdx.y, row0 = rb * RB;
  float w[64];
  #pragma unroll
  for (int ch = 0; ch < 4; ch++) {
    #pragma unroll
    for (int i = 0; i < 16; i++) w[ch * 16 + i] = D::ld(whh, (ch * H + q * 16 + i) * H + ub * 16 + u);
  }
  float dc[CELLS], dhr[CELLS];
  #pragma unroll
  for (int k = 0; k < CELLS; k++) { dc[k] = 0.f; dhr[k] = 0.f; }
  for (int t = T - 1; t >= 0; t--) {
    #pragma unroll
    for (int k = 0; k < CELLS; k++) {
      int cell = tid + k * H, r = cell >> 4, j = cell & 15, row = row0 + r, unit = ub * 16 + j;
      if (cell >= RB * 16 || row >= B) continue;
      int g0 = (t * B + row) * G, at = (t * B + row) * H + unit;
      float dh = dhr[k];
      if (dSeq) dh += D::ld(dSeq, at);
      if (dLast && t == T - 1) dh += D::ld(dLast, row * H + unit);
      float ig = D::ld(gates, g0 + unit), fg = D::ld(gates, g0 + H + unit), gg = D::ld(gates, g0 + 2 * H + unit), og = D::ld(gates, g0 + 3 * H + unit);
      float tc = tanhf(c[at]);
      float dcv = dc[k] + dh * og * (1.f - tc * tc);
      float cp = t > 0 ? c[at - B * H] : 0.f;
      D::st(dgates, g0 + unit, dcv * gg * ig * (1.f - ig));
      D::st(dgates, g0 + H + unit, dcv * cp * fg * (1.f - fg));
      D::st(dgates, g0 + 2 * H + unit, dcv * ig * (1.f - gg * gg));
      D::st(dgates, g0 + 3 * H + unit, dh * tc * og * (1.f - og));
      dc[k] = dcv * fg;
    }
    if (t == 0) break;
    group_barrier(&sync[rb], (unsigned)(T - t) * gridDim.y);
    float acc[RB];
    #pragma unroll
    for (int r = 0; r < RB; r++) acc[r] = 0.f;
    #pragma unroll
    for (int ch = 0; ch < 4; ch++) {
      #pragma unroll
      for (int r = 0; r < RB; r++) ds[r][tid] = row0 + r < B ? ld_l2<D>(dgates, (t * B + row0 + r) * G + ch * H + tid) : 0.f;
      __syncthreads();
      #pragma unroll
      for (int r = 0; r < RB; r++) {
        const float4* dp = (const float4*)&ds[r][q * 16];
        float s = 0.f;
        #pragma unroll
        for (int i = 0; i < 4; i++) {
          float4 v = dp[i];
          s = fmaf(v.x, w[ch * 16 + 4 * i], s); s = fmaf(v.y, w[ch * 16 + 4 * i + 1], s);
          s = fmaf(v.z, w[ch * 16 + 4 * i + 2], s); s = fmaf(v.w, w[ch * 16 + 4 * i + 3], s);
        }
        acc[r] += s;
      }
      __syncthreads();
    }
    #pragma unroll
    for (int r = 0; r < RB; r++) part[q][r][u] = acc[r];
    __syncthreads();
    #pragma unroll
    for (int k = 0; k < CELLS; k++) {
      int cell = tid + k * H;
      if (cell >= RB * 16) continue;
      float s = 0.f;
      #pragma unroll
      for (int qq = 0; qq < QN; qq++) s += part[qq][cell >> 4][cell & 15];
      dhr[k] = s;
    }
  }
}

#define LSTM_SEQ(H, RB, D, sfx) \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seq_fwd_##H##x##RB##_##sfx(void* gates, const void* whh, const float* bih, \
      const float* bhh, float* c, void* h, int B, int T, unsigned* sync) { lstm_seq_fwd_impl<D, H, RB>(gates, whh, bih, bhh, c, h, B, T, sync); } \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seq_bwd_##H##x##RB##_##sfx(const void* gates, const float* c, const void* whh, \
      const void* dLast, const void* dSeq, void* dgates, int B, int T, unsigned* sync) { \
    lstm_seq_bwd_impl<D, H, RB>(gates, c, whh, dLast, dSeq, dgates, B, T, sync); }
#define LSTM_SEQ_ALL(H, RB) LSTM_SEQ(H, RB, F32, f32) LSTM_SEQ(H, RB, BF16, bf16) LSTM_SEQ(H, RB, F16, f16)
LSTM_SEQ_ALL(256, 16) LSTM_SEQ_ALL(256, 8) LSTM_SEQ_ALL(128, 16) LSTM_SEQ_ALL(128, 8)
"""#
}
