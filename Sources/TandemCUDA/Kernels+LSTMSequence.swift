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

// The cell of one (row, unit) pair, step after step: its biases, c and the next step's x·W_ihᵀ wait in registers
// (the latter loaded as soon as a step is done, so its latency hides behind the wait for the other blocks).
template <class D> struct CellForward {
  bool live; int row, unit; float bias[4], gx[4], cprev;
  // Steps t0, t0 + 1, … of a layer whose gates [T, B, 4H] hold x·W_ihᵀ on entry; c [T, B, H] is fp32.
  __device__ __forceinline__ void begin(const void* gates, const float* bih, const float* bhh, const float* c, int B, int H, int t0,
                                        int row_, int unit_) {
    row = row_; unit = unit_;
    cprev = live && t0 > 0 ? c[((t0 - 1) * B + row) * H + unit] : 0.f;
    #pragma unroll
    for (int g = 0; g < 4; g++) {
      bias[g] = live ? bih[g * H + unit] + bhh[g * H + unit] : 0.f;
      gx[g] = live ? D::ld(gates, (t0 * B + row) * 4 * H + g * H + unit) : 0.f;
    }
  }
  // Step t from the four recurrent sums h_{t-1}·W_hhᵀ: gates activated and kept in place, c and h written.
  __device__ __forceinline__ void step(const float* recurrent, void* gates, float* c, void* h, int B, int H, int t, int t1) {
    if (!live) return;
    int g0 = (t * B + row) * 4 * H + unit, at = (t * B + row) * H + unit;
    float ig = sigm(gx[0] + bias[0] + recurrent[0]), fg = sigm(gx[1] + bias[1] + recurrent[1]);
    float gg = tanhf(gx[2] + bias[2] + recurrent[2]), og = sigm(gx[3] + bias[3] + recurrent[3]);
    float cn = fg * cprev + ig * gg;
    cprev = cn;
    c[at] = cn;
    D::st(h, at, og * tanhf(cn));
    D::st(gates, g0, ig); D::st(gates, g0 + H, fg); D::st(gates, g0 + 2 * H, gg); D::st(gates, g0 + 3 * H, og);
    if (t + 1 < t1) {
      #pragma unroll
      for (int g = 0; g < 4; g++) gx[g] = D::ld(gates, g0 + B * 4 * H + g * H);
    }
  }
};
// The cell backward of one (row, unit) pair, step after step from the last: its operands for the next step are loaded
// as soon as one step is done (they come from forward, not from other blocks), so their latency hides behind the wait.
template <class D> struct CellGradient {
  bool live; int row, unit, T; float dc, ga[4], cc, cp, dsq, dl;
  __device__ __forceinline__ void load(const void* gates, const float* c, const void* dSeq, int B, int H, int t) {
    if (!live) return;
    int g0 = (t * B + row) * 4 * H + unit, at = (t * B + row) * H + unit;
    #pragma unroll
    for (int g = 0; g < 4; g++) ga[g] = D::ld(gates, g0 + g * H);
    cc = c[at];
    cp = t > 0 ? c[at - B * H] : 0.f;
    dsq = dSeq ? D::ld(dSeq, at) : 0.f;
  }
  // Steps t1 - 1 down to t0 of T: the state gradients come from dcState (and the caller's dhState) unless t1 is T.
  __device__ __forceinline__ void begin(const void* gates, const float* c, const void* dLast, const void* dSeq, const float* dcState,
                                        int B, int T_, int t1, int H, int row_, int unit_) {
    row = row_; unit = unit_; T = T_;
    dc = live && t1 < T ? dcState[row * H + unit] : 0.f;
    dl = live && dLast ? D::ld(dLast, row * H + unit) : 0.f;
    load(gates, c, dSeq, B, H, t1 - 1);
  }
  // Hands the state gradients to the launch that runs the steps before.
  __device__ __forceinline__ void save(float dh, float* dhState, float* dcState, int H) {
    if (live) { dhState[row * H + unit] = dh; dcState[row * H + unit] = dc; }
  }
  // dh: the recurrent gradient from step t + 1. Writes the gate gradients of step t and loads step t - 1's operands.
  __device__ __forceinline__ void step(float dh, void* dgates, const void* gates, const float* c, const void* dSeq,
                                                          int B, int H, int t) {
    if (!live) return;
    dh += dsq + (t == T - 1 ? dl : 0.f);
    float ig = ga[0], fg = ga[1], gg = ga[2], og = ga[3];
    float tc = tanhf(cc);
    float dcv = dc + dh * og * (1.f - tc * tc);
    int g0 = (t * B + row) * 4 * H + unit;
    D::st(dgates, g0, dcv * gg * ig * (1.f - ig));
    D::st(dgates, g0 + H, dcv * cp * fg * (1.f - fg));
    D::st(dgates, g0 + 2 * H, dcv * ig * (1.f - gg * gg));
    D::st(dgates, g0 + 3 * H, dh * tc * og * (1.f - og));
    dc = dcv * fg;
    if (t > 0) load(gates, c, dSeq, B, H, t - 1);
  }
};

// Forward of one layer over all T steps. Block (rb, ub), H threads, owns batch rows [rb·RB, +RB) and hidden units
// [ub·16, +16), i.e. 64 gate columns (4 gates × 16 units, PyTorch's order i, f, g, o). Thread (col, q) keeps
// W_hh[col's row, q·64 + 0..63] in registers. Each step: stage h_{t-1} for the block's rows, 64-long partial dot
// products, then the cell for the block's (row, unit) pairs — biases added, gates activated and kept in place, c and
// h written — and the counter of the rows' blocks. A pair's biases, c and next x·W_ihᵀ wait in registers, loaded
// while the block waits. gates [T, B, 4H] (D) holds x·W_ihᵀ on entry; whh [4H, H] (D); c [T, B, H] fp32;
// h [T, B, H] (D); sync[rb] zero on entry.
template <class D, int H, int RB> __device__ void lstm_seq_fwd_impl(void* gates, const void* whh, const float* bih, const float* bhh,
                                                                    float* c, void* h, int B, int T, int t0, int t1, unsigned* sync) {
  constexpr int KQ = H / 64, CELLS = (RB * 16 + H - 1) / H;
  __shared__ __align__(16) float hs[RB][H + 4];
  __shared__ float part[KQ][RB][65];
  const int tid = threadIdx.x, col = tid & 63, q = tid >> 6;
  const int rb = blockIdx.x, ub = blockIdx.y, row0 = rb * RB;
  const int wrow = (col >> 4) * H + ub * 16 + (col & 15);
  float w[64];
  #pragma unroll
  for (int i = 0; i < 64; i++) w[i] = D::ld(whh, wrow * H + q * 64 + i);
  CellForward<D> cf[CELLS];
  #pragma unroll
  for (int k = 0; k < CELLS; k++) {
    int cell = tid + k * H, row = row0 + (cell >> 4);
    cf[k].live = cell < RB * 16 && row < B;
    cf[k].begin(gates, bih, bhh, c, B, H, t0, row, ub * 16 + (cell & 15));
  }
  for (int t = t0; t < t1; t++) {
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
    #pragma unroll
    for (int k = 0; k < CELLS; k++) {
      int cell = tid + k * H, r = cell >> 4, j = cell & 15;
      if (cell >= RB * 16) continue;
      float rec[4] = {0.f, 0.f, 0.f, 0.f};
      #pragma unroll
      for (int g = 0; g < 4; g++) {
        #pragma unroll
        for (int kq = 0; kq < KQ; kq++) rec[g] += t > 0 ? part[kq][r][g * 16 + j] : 0.f;
      }
      cf[k].step(rec, gates, c, h, B, H, t, t1);
    }
    if (t + 1 < t1) group_barrier(&sync[rb], (unsigned)(t + 1 - t0) * gridDim.y);
  }
}

// Backward of one layer over all T steps, from the last. Block (rb, ub) as forward; thread (u, q) keeps
// W_hh[ch·H + q·16 + 0..15, ub·16 + u] for the four H-column chunks ch in registers. Each step: the cell backward
// for the block's pairs (dh = the recurrent gradient the block made itself + dLast [B, H] at the last step +
// dSeq [T, B, H]; either may be 0), writing dgates [T, B, 4H] (D) and keeping dc; the next step's operands loaded;
// the counter; then the rows' dgates_t from L2, chunk by chunk, and dh_{t-1} = dgates_t · W_hh for the block's rows
// and units.
template <class D, int H, int RB> __device__ void lstm_seq_bwd_impl(const void* gates, const float* c, const void* whh, const void* dLast,
                                                                    const void* dSeq, void* dgates, float* dhState, float* dcState,
                                                                    int B, int T, int t0, int t1, unsigned* sync) {
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
  CellGradient<D> cg[CELLS];
  float dhr[CELLS];
  #pragma unroll
  for (int k = 0; k < CELLS; k++) {
    int cell = tid + k * H, row = row0 + (cell >> 4);
    cg[k].live = cell < RB * 16 && row < B;
    cg[k].begin(gates, c, dLast, dSeq, dcState, B, T, t1, H, row, ub * 16 + (cell & 15));
    dhr[k] = cg[k].live && t1 < T ? dhState[row * H + cg[k].unit] : 0.f;
  }
  for (int t = t1 - 1; t >= t0; t--) {
    #pragma unroll
    for (int k = 0; k < CELLS; k++) cg[k].step(dhr[k], dgates, gates, c, dSeq, B, H, t);
    if (t == 0) break;
    group_barrier(&sync[rb], (unsigned)(t1 - t) * gridDim.y);
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
  if (t0 > 0) {
    #pragma unroll
    for (int k = 0; k < CELLS; k++) cg[k].save(dhr[k], dhState, dcState, H);
  }
}

// The same two on tensor cores (16-bit D only): blocks of 16 batch rows, each step's block GEMM as mma.sync
// m16n8k16 with fp32 accumulation, W_hh's fragments in registers. Forward: warp w makes column tiles w, w + H/32, …
// of the block's 64 columns over all H inputs. Backward: the block's 16 rows × 16 units of dh_{t-1} over all 4H
// gate columns, split into eight k-ranges, one per warp, summed in shared memory.
template <class D> __device__ __forceinline__ void mma16816(float* d, const unsigned* a, const unsigned* b);
template <> __device__ __forceinline__ void mma16816<BF16>(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma16816<F16>(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ unsigned pack16(u16 lo, u16 hi) { return (unsigned)lo | ((unsigned)hi << 16); }
// `rows` rows of `width` 16-bit values (width a multiple of 8) from global row `first` of a [*, width] matrix into
// smem rows of `pitch` values, 16 bytes a load through L2; rows at or past `last` are zeros.
__device__ __forceinline__ void stage16(u16* dst, int pitch, const void* src, int first, int last, int rows, int width) {
  int per = width / 8;
  for (int i = threadIdx.x; i < rows * per; i += blockDim.x) {
    int r = i / per, k = (i % per) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (first + r < last) {
      const u16* p = (const u16*)src + (long)(first + r) * width + k;
      asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    }
    *(uint4*)(dst + r * pitch + k) = v;
  }
}

template <class D, int H> __device__ void lstm_seqtc_fwd_impl(void* gates, const void* whh, const float* bih, const float* bhh,
                                                             float* c, void* h, int B, int T, int t0, int t1, unsigned* sync) {
  constexpr int RB = 16, WARPS = H / 32, TILES = 8 / WARPS, KS = H / 16, CELLS = (RB * 16) / H, PITCH = H + 8;
  __shared__ __align__(16) u16 hs[RB * PITCH];
  __shared__ float part[RB][65];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, grp = lane >> 2, tig = lane & 3;
  const int rb = blockIdx.x, ub = blockIdx.y, row0 = rb * RB;
  const u16* W = (const u16*)whh;
  unsigned wb[TILES][KS][2];
  #pragma unroll
  for (int tt = 0; tt < TILES; tt++) {
    int n = (warp + tt * WARPS) * 8 + grp, wrow = (n >> 4) * H + ub * 16 + (n & 15);
    #pragma unroll
    for (int ks = 0; ks < KS; ks++) {
      int k0 = ks * 16 + tig * 2;
      wb[tt][ks][0] = *(const unsigned*)(W + wrow * H + k0);
      wb[tt][ks][1] = *(const unsigned*)(W + wrow * H + k0 + 8);
    }
  }
  CellForward<D> cf[CELLS];
  #pragma unroll
  for (int k = 0; k < CELLS; k++) {
    int cell = tid + k * H, row = row0 + (cell >> 4);
    cf[k].live = row < B;
    cf[k].begin(gates, bih, bhh, c, B, H, t0, row, ub * 16 + (cell & 15));
  }
  for (int t = t0; t < t1; t++) {
    if (t > 0) {
      stage16(hs, PITCH, h, (t - 1) * B + row0, (t - 1) * B + B, RB, H);
      __syncthreads();
      #pragma unroll
      for (int tt = 0; tt < TILES; tt++) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        #pragma unroll
        for (int ks = 0; ks < KS; ks++) {
          int k0 = ks * 16 + tig * 2;
          unsigned a[4] = {*(const unsigned*)&hs[grp * PITCH + k0], *(const unsigned*)&hs[(grp + 8) * PITCH + k0],
                           *(const unsigned*)&hs[grp * PITCH + k0 + 8], *(const unsigned*)&hs[(grp + 8) * PITCH + k0 + 8]};
          mma16816<D>(acc, a, wb[tt][ks]);
        }
        int n = (warp + tt * WARPS) * 8 + tig * 2;
        part[grp][n] = acc[0]; part[grp][n + 1] = acc[1]; part[grp + 8][n] = acc[2]; part[grp + 8][n + 1] = acc[3];
      }
      __syncthreads();
    }
    #pragma unroll
    for (int k = 0; k < CELLS; k++) {
      int cell = tid + k * H, r = cell >> 4, j = cell & 15;
      float rec[4];
      #pragma unroll
      for (int g = 0; g < 4; g++) rec[g] = t > 0 ? part[r][g * 16 + j] : 0.f;
      cf[k].step(rec, gates, c, h, B, H, t, t1);
    }
    if (t + 1 < t1) group_barrier(&sync[rb], (unsigned)(t + 1 - t0) * gridDim.y);
  }
}

template <class D, int H> __device__ void lstm_seqtc_bwd_impl(const void* gates, const float* c, const void* whh, const void* dLast,
                                                             const void* dSeq, void* dgates, float* dhState, float* dcState,
                                                                    int B, int T, int t0, int t1, unsigned* sync) {
  constexpr int RB = 16, G = 4 * H, WARPS = H / 32, KSW = G / 16 / WARPS, CELLS = (RB * 16) / H, PITCH = G + 8;
  __shared__ __align__(16) u16 ds[RB * PITCH];
  __shared__ float part[WARPS][RB][17];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, grp = lane >> 2, tig = lane & 3;
  const int rb = blockIdx.x, ub = blockIdx.y, row0 = rb * RB;
  const u16* W = (const u16*)whh;
  unsigned wb[2][KSW][2];
  #pragma unroll
  for (int nt = 0; nt < 2; nt++) {
    int unit = ub * 16 + nt * 8 + grp;
    #pragma unroll
    for (int ks = 0; ks < KSW; ks++) {
      int k0 = (warp * KSW + ks) * 16 + tig * 2;
      wb[nt][ks][0] = pack16(W[k0 * H + unit], W[(k0 + 1) * H + unit]);
      wb[nt][ks][1] = pack16(W[(k0 + 8) * H + unit], W[(k0 + 9) * H + unit]);
    }
  }
  CellGradient<D> cg[CELLS];
  float dhr[CELLS];
  #pragma unroll
  for (int k = 0; k < CELLS; k++) {
    int cell = tid + k * H, row = row0 + (cell >> 4);
    cg[k].live = row < B;
    cg[k].begin(gates, c, dLast, dSeq, dcState, B, T, t1, H, row, ub * 16 + (cell & 15));
    dhr[k] = cg[k].live && t1 < T ? dhState[row * H + cg[k].unit] : 0.f;
  }
  for (int t = t1 - 1; t >= t0; t--) {
    #pragma unroll
    for (int k = 0; k < CELLS; k++) cg[k].step(dhr[k], dgates, gates, c, dSeq, B, H, t);
    if (t == 0) break;
    group_barrier(&sync[rb], (unsigned)(t1 - t) * gridDim.y);
    stage16(ds, PITCH, dgates, t * B + row0, t * B + B, RB, G);
    __syncthreads();
    #pragma unroll
    for (int nt = 0; nt < 2; nt++) {
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      #pragma unroll
      for (int ks = 0; ks < KSW; ks++) {
        int k0 = (warp * KSW + ks) * 16 + tig * 2;
        unsigned a[4] = {*(const unsigned*)&ds[grp * PITCH + k0], *(const unsigned*)&ds[(grp + 8) * PITCH + k0],
                         *(const unsigned*)&ds[grp * PITCH + k0 + 8], *(const unsigned*)&ds[(grp + 8) * PITCH + k0 + 8]};
        mma16816<D>(acc, a, wb[nt][ks]);
      }
      int n = nt * 8 + tig * 2;
      part[warp][grp][n] = acc[0]; part[warp][grp][n + 1] = acc[1]; part[warp][grp + 8][n] = acc[2]; part[warp][grp + 8][n + 1] = acc[3];
    }
    __syncthreads();
    #pragma unroll
    for (int k = 0; k < CELLS; k++) {
      int cell = tid + k * H;
      float s = 0.f;
      #pragma unroll
      for (int wq = 0; wq < WARPS; wq++) s += part[wq][cell >> 4][cell & 15];
      dhr[k] = s;
    }
  }
  if (t0 > 0) {
    #pragma unroll
    for (int k = 0; k < CELLS; k++) cg[k].save(dhr[k], dhState, dcState, H);
  }
}

#define LSTM_SEQ(H, RB, D, sfx) \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seq_fwd_##H##x##RB##_##sfx(void* gates, const void* whh, const float* bih, \
      const float* bhh, float* c, void* h, int B, int T, int t0, int t1, unsigned* sync) { PDL_ENTRY(); \
    lstm_seq_fwd_impl<D, H, RB>(gates, whh, bih, bhh, c, h, B, T, t0, t1, sync); } \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seq_bwd_##H##x##RB##_##sfx(const void* gates, const float* c, const void* whh, \
      const void* dLast, const void* dSeq, void* dgates, float* dhState, float* dcState, int B, int T, int t0, int t1, unsigned* sync) { PDL_ENTRY(); \
    lstm_seq_bwd_impl<D, H, RB>(gates, c, whh, dLast, dSeq, dgates, dhState, dcState, B, T, t0, t1, sync); }
#define LSTM_SEQ_ALL(H, RB) LSTM_SEQ(H, RB, F32, f32) LSTM_SEQ(H, RB, BF16, bf16) LSTM_SEQ(H, RB, F16, f16)
LSTM_SEQ_ALL(256, 16) LSTM_SEQ_ALL(256, 8) LSTM_SEQ_ALL(128, 16) LSTM_SEQ_ALL(128, 8)
#define LSTM_SEQTC(H, D, sfx) \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seqtc_fwd_##H##_##sfx(void* gates, const void* whh, const float* bih, \
      const float* bhh, float* c, void* h, int B, int T, int t0, int t1, unsigned* sync) { PDL_ENTRY(); \
    lstm_seqtc_fwd_impl<D, H>(gates, whh, bih, bhh, c, h, B, T, t0, t1, sync); } \
  extern "C" __global__ void __launch_bounds__(H, 2) lstm_seqtc_bwd_##H##_##sfx(const void* gates, const float* c, const void* whh, \
      const void* dLast, const void* dSeq, void* dgates, float* dhState, float* dcState, int B, int T, int t0, int t1, unsigned* sync) { PDL_ENTRY(); \
    lstm_seqtc_bwd_impl<D, H>(gates, c, whh, dLast, dSeq, dgates, dhState, dcState, B, T, t0, t1, sync); }
LSTM_SEQTC(256, BF16, bf16) LSTM_SEQTC(256, F16, f16) LSTM_SEQTC(128, BF16, bf16) LSTM_SEQTC(128, F16, f16)
"""#
}
