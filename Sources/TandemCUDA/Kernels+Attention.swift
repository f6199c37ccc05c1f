extension KernelSource {
    // MARK: - Fused causal attention (16-bit activations, head size 64)

    /// `flash_attention_fwd` and `flash_attention_bwd` (`_bf16`, `_f16`): causal multi-head attention straight from
    /// the projected `qkv` rows `[B, T, 3, H, 64]`, FlashAttention-2's algorithm on mma.sync m16n8k16 with fp32
    /// accumulation. Nothing of size T × T is stored: forward keeps one fp32 log-sum-exp per query row, backward
    /// recomputes the probabilities from it, after `flash_attention_rowdot` has formed D = rowsum(dO ∘ O). A block is 4 warps over one head and one tile of 64 rows, a warp 16
    /// rows whose operand fragments stay in registers; the other side's tiles pass through shared memory
    /// (double-buffered by cp.async, padded rows read by ldmatrix without bank conflicts).
    ///
    /// On a diagonal tile a warp skips the 16-key (backward: 16-query) steps the causal mask removes whole, which
    /// adds only zeros, so the result is the same bit for bit.
    ///
    /// Rounding: probabilities and score gradients are rounded to the activation type before they enter a product
    /// and outputs once, as on the GEMM path; scores, softmax statistics and dP stay fp32 (the GEMM path stores
    /// the scores and dP in the activation type); exponentials flush subnormal results to zero.
    static let attention = #"""
constexpr int FA_HD = 64, FA_TILE = 64, FA_PITCH = FA_HD + 8, FA_THREADS = 128;
// Forward and backward blocks a multiprocessor holds at once, which bounds the registers a thread may take (128 at 4,
// 168 at 3).
#ifndef FA_FWD_BLOCKS
#define FA_FWD_BLOCKS 4
#endif
#ifndef FA_BWD_BLOCKS
#define FA_BWD_BLOCKS 3
#endif
constexpr float FA_LN2 = 0.6931471805599453f;
typedef u16 FATile[FA_TILE * FA_PITCH];

__device__ __forceinline__ unsigned fa_smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
// 16 bytes global → shared without a register round trip; `valid` false writes zeros instead (rows past T).
__device__ __forceinline__ void fa_cp16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(fa_smem(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void fa_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void fa_cp_wait() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
// Four 8×8 matrices of 16-bit values; lane l gives the address of row l % 8 of matrix l / 8, r[i] is matrix i's
// fragment (lane l: row l / 4, columns 2·(l % 4) + {0, 1}; transposed by fa_ldsm_t).
__device__ __forceinline__ void fa_ldsm(unsigned* r, const u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem(p)) : "memory");
}
__device__ __forceinline__ void fa_ldsm_t(unsigned* r, const u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem(p)) : "memory");
}
// Two floats rounded to D (nearest even), the first in the low half.
template <class D> __device__ __forceinline__ unsigned fa_pack(float lo, float hi);
template <> __device__ __forceinline__ unsigned fa_pack<BF16>(float lo, float hi) {
  unsigned r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
template <> __device__ __forceinline__ unsigned fa_pack<F16>(float lo, float hi) {
  unsigned r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
// Σ x·y over two D pairs.
template <class D> __device__ __forceinline__ float fa_dot2(unsigned x, unsigned y) {
  u16 a[2] = {(u16)(x & 0xffffu), (u16)(x >> 16)}, b[2] = {(u16)(y & 0xffffu), (u16)(y >> 16)};
  return D::ld(a, 0) * D::ld(b, 0) + D::ld(a, 1) * D::ld(b, 1);
}

// Rows [first, first + 64) of one head's 64 columns (rows `stride` values apart) into a tile, by the block's
// 128 threads, 16 bytes each; rows at or past T are zeros.
__device__ __forceinline__ void fa_stage(u16* dst, const u16* src, long stride, int first, int T) {
#pragma unroll
  for (int k = 0; k < FA_TILE * FA_HD / 8 / FA_THREADS; k++) {
    int i = threadIdx.x + k * FA_THREADS, r = i >> 3, c = (i & 7) * 8;
    bool ok = first + r < T;
    fa_cp16(dst + r * FA_PITCH + c, src + (ok ? (long)(first + r) * stride + c : 0), ok);
  }
}
// The warp's A fragments (row-major 16 × 16, [k-step][4]) of rows row … row + 15 × 64 columns, from global memory.
__device__ __forceinline__ void fa_load_a(unsigned (&a)[4][4], const u16* src, long stride, int row) {
  int grp = (threadIdx.x & 31) >> 2, tig = threadIdx.x & 3;
  const u16* r0 = src + (long)(row + grp) * stride + tig * 2;
  const u16* r8 = r0 + 8 * stride;
#pragma unroll
  for (int ks = 0; ks < 4; ks++) {
    a[ks][0] = *(const unsigned*)(r0 + ks * 16); a[ks][1] = *(const unsigned*)(r8 + ks * 16);
    a[ks][2] = *(const unsigned*)(r0 + ks * 16 + 8); a[ks][3] = *(const unsigned*)(r8 + ks * 16 + 8);
  }
}
// c[16 × 8] += A[16 × 64] · tile[n0 … n0 + 7]ᵀ: the tile's rows are the columns of the product.
template <class D> __device__ __forceinline__ void fa_mma_abt(float* c, const unsigned (&a)[4][4], const u16* tile, int n0) {
  int lane = threadIdx.x & 31;
#pragma unroll
  for (int kp = 0; kp < 2; kp++) {
    unsigned b[4];
    fa_ldsm(b, tile + (n0 + (lane & 7)) * FA_PITCH + kp * 32 + (lane >> 3) * 8);
    mma16816<D>(c, a[2 * kp], b);
    mma16816<D>(c, a[2 * kp + 1], b + 2);
  }
}
// c[n] (16 × 8, n = 0 … 7) += A[16 × 64] · tile[8n … 8n + 7]ᵀ: fa_mma_abt for all 64 rows of the tile with the eight
// products of a k-step issued together, so each waits for its own accumulator eight products back, not one.
template <class D> __device__ __forceinline__ void fa_mma_abt_all(float (&c)[8][4], const unsigned (&a)[4][4], const u16* tile) {
  int lane = threadIdx.x & 31;
#pragma unroll
  for (int kp = 0; kp < 2; kp++) {
    unsigned b[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) fa_ldsm(b[n], tile + (8 * n + (lane & 7)) * FA_PITCH + kp * 32 + (lane >> 3) * 8);
#pragma unroll
    for (int n = 0; n < 8; n++) mma16816<D>(c[n], a[2 * kp], b[n]);
#pragma unroll
    for (int n = 0; n < 8; n++) mma16816<D>(c[n], a[2 * kp + 1], b[n] + 2);
  }
}
// c[16 × 64] += A[16 × 16] · tile[k0 … k0 + 15][0 … 63].
template <class D> __device__ __forceinline__ void fa_mma_ab(float (&c)[8][4], const unsigned* a, const u16* tile, int k0) {
  int lane = threadIdx.x & 31;
#pragma unroll
  for (int dp = 0; dp < 4; dp++) {
    unsigned b[4];
    fa_ldsm_t(b, tile + (k0 + (lane & 7) + (lane & 8)) * FA_PITCH + dp * 16 + (lane >> 4) * 8);
    mma16816<D>(c[2 * dp], a, b);
    mma16816<D>(c[2 * dp + 1], a, b + 2);
  }
}
// The warp's 16 × 64 accumulator (C fragments: rows grp and grp + 8, columns 8·n + 2·tig + {0, 1}) times f0 (first
// 8 rows) or f1 (last 8), rounded to D, into rows row … row + 15 of dst.
template <class D> __device__ __forceinline__ void fa_store(u16* dst, long stride, int row, const float (&c)[8][4], float f0, float f1) {
  int grp = (threadIdx.x & 31) >> 2, tig = threadIdx.x & 3;
  u16* r0 = dst + (long)(row + grp) * stride + tig * 2;
  u16* r8 = r0 + 8 * stride;
#pragma unroll
  for (int n = 0; n < 8; n++) {
    *(unsigned*)(r0 + n * 8) = fa_pack<D>(c[n][0] * f0, c[n][1] * f0);
    *(unsigned*)(r8 + n * 8) = fa_pack<D>(c[n][2] * f1, c[n][3] * f1);
  }
}

// Where one head's slices start (in elements): q, k, v (and dq, dk, dv) at qkv + {0, C, 2C}, 64 columns of the
// [B, T, 3, H, 64] rows (stride 3C); o and dO: 64 columns of the [B, T, H·64] rows (stride C); its [T] row of the
// [B·H, T] log-sum-exps.
struct FAHead {
  long qkv, o, lse, stride;
  int C;
  __device__ FAHead(int T, int H) {
    int bh = blockIdx.x, b = bh / H, h = bh % H;
    C = H * FA_HD; stride = 3L * C;
    qkv = (long)b * T * stride + (long)h * FA_HD;
    o = (long)b * T * C + (long)h * FA_HD;
    lse = (long)bh * T;
  }
};
// The backward's operands of one head: lse and rowDot are its [T] rows of the log-sum-exps and of D.
struct FABackward {
  const u16 *q, *k, *v, *dout;
  u16 *dq, *dk, *dv;
  const float *lse, *rowDot;
  long stride;
  int C, T;
};

// Backward's first pass (FlashAttention-2's preprocessing): D = rowsum(dO ∘ O) of every query row of every head into
// rowDot [B·H, T] (the layout of the log-sum-exps), so that neither side of the backward forms it from O: 8 threads a
// row of one head, 8 columns (16 bytes) each, over the BT·H·8 threads of the grid.
template <class D> __device__ void flash_attention_rowdot_impl(const void* o, const void* dout, float* rowDot, int BT, int T, int H) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x, r = i >> 3;   // r = bt·H + h
  const bool ok = r < (long)BT * H;   // every lane takes part in the shuffles
  float d = 0.f;
  if (ok) {
    const long at = r * FA_HD + (i & 7) * 8;
    uint4 x = *(const uint4*)((const u16*)o + at), y = *(const uint4*)((const u16*)dout + at);
    d = fa_dot2<D>(x.x, y.x) + fa_dot2<D>(x.y, y.y) + fa_dot2<D>(x.z, y.z) + fa_dot2<D>(x.w, y.w);
  }
  d += __shfl_xor_sync(0xffffffffu, d, 4);
  d += __shfl_xor_sync(0xffffffffu, d, 2);
  d += __shfl_xor_sync(0xffffffffu, d, 1);
  if (ok && (i & 7) == 0) {
    const long bt = r / H, b = bt / T, t = bt % T, h = r % H;
    rowDot[(b * H + h) * T + t] = d;
  }
}

// One key tile of the forward for the warp's 16 query rows (kst, vst staged; keys key0 …): S = Q·Kᵀ, the online softmax
// in base 2 (scores times c2 = scale·log2 e), O += P·V with S's C fragments reused as P's A fragments. DIAG: the
// diagonal tile, where keys past the query are masked and the 8-key groups past every query of the warp are skipped
// (exactly: they add zeros); the other tiles take every product with no branch between them.
template <class D, bool DIAG> __device__ __forceinline__ void fa_fwd_tile(float (&o)[8][4], float (&m)[2], float (&l)[2],
                                                                          const unsigned (&qa)[4][4], const u16* kst, const u16* vst,
                                                                          int key0, int row0, float c2) {
  const int lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;
  const int live = DIAG ? (row0 + 15 - key0) / 8 + 1 : 8;
  float s[8][4] = {};
  if (DIAG) {
#pragma unroll
    for (int n = 0; n < 8; n++) if (n < live) fa_mma_abt<D>(s[n], qa, kst, n * 8);
  } else {
    fa_mma_abt_all<D>(s, qa, kst);
  }
  // Row r of the thread: query row0 + grp + 8r. Keys past the query (the diagonal tile only) are -inf;
  // every row has key 0, so the maxima are finite from the first tile on. The maximum is taken over the raw scores
  // (c2 > 0: the same as over the scaled ones, rounding included), so each exponent is one FMA.
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int n = 0; n < 8; n++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      int key = key0 + n * 8 + tig * 2 + (e & 1), query = row0 + grp + 8 * (e >> 1);
      if (DIAG && key > query) s[n][e] = -INFINITY;
      mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
    }
  }
  float alpha[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float next = fmaxf(m[r], mx[r] * c2);
    alpha[r] = exp2_ftz(m[r] - next);
    m[r] = next;
    l[r] *= alpha[r];
  }
  unsigned pa[4][4];
#pragma unroll
  for (int n = 0; n < 8; n++) {
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
      p[e] = n < live ? exp2_ftz(fmaf(s[n][e], c2, -m[e >> 1])) : 0.f;
      l[e >> 1] += p[e];
      o[n][e] *= alpha[e >> 1];
    }
    pa[n >> 1][(n & 1) * 2] = fa_pack<D>(p[0], p[1]);
    pa[n >> 1][(n & 1) * 2 + 1] = fa_pack<D>(p[2], p[3]);
  }
#pragma unroll
  for (int kk = 0; kk < 4; kk++) if (!DIAG || 2 * kk < live) fa_mma_ab<D>(o, pa[kk], vst, kk * 16);
}

// Forward: grid (B·H, ⌈T/64⌉), the last query tiles (most keys) first. Each warp keeps its 16 query rows' Q
// fragments, running maxima m, sums l and output in registers over the key tiles (fa_fwd_tile), K and V
// double-buffered by cp.async.
template <class D> __device__ void flash_attention_fwd_impl(const void* qkv, void* out, float* lse, int T, int H, float scale) {
  __shared__ __align__(16) FATile ks[2], vs[2];
  const FAHead at(T, H);
  const long stride = at.stride;
  const u16* q = (const u16*)qkv + at.qkv;
  const u16 *k = q + at.C, *v = q + 2 * at.C;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane >> 2, tig = lane & 3;
  const int qt = gridDim.y - 1 - blockIdx.y, row0 = qt * FA_TILE + warp * 16;
  const bool active = row0 < T;   // T is a multiple of 16: a warp's rows are all in or all out
  const float c2 = scale * LOG2E;
  unsigned qa[4][4];
  if (active) fa_load_a(qa, q, stride, row0);
  float o[8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  fa_stage(ks[0], k, stride, 0, T);
  fa_stage(vs[0], v, stride, 0, T);
  fa_cp_commit();
  for (int kt = 0; kt <= qt; kt++) {
    const int cur = kt & 1;
    fa_cp_wait();
    __syncthreads();
    if (kt < qt) {
      fa_stage(ks[cur ^ 1], k, stride, (kt + 1) * FA_TILE, T);
      fa_stage(vs[cur ^ 1], v, stride, (kt + 1) * FA_TILE, T);
      fa_cp_commit();
    }
    if (!active) continue;
    if (kt < qt) fa_fwd_tile<D, false>(o, m, l, qa, ks[cur], vs[cur], kt * FA_TILE, row0, c2);
    else fa_fwd_tile<D, true>(o, m, l, qa, ks[cur], vs[cur], kt * FA_TILE, row0, c2);
  }
  if (!active) return;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  fa_store<D>((u16*)out + at.o, at.C, row0, o, 1.f / l[0], 1.f / l[1]);
  if (tig == 0) {
    lse[at.lse + row0 + grp] = (m[0] + log2f(l[0])) * FA_LN2;
    lse[at.lse + row0 + grp + 8] = (m[1] + log2f(l[1])) * FA_LN2;
  }
}

// Backward, dQ side, one key tile (kst, vst staged) for the warp's 16 query rows: S = Q·Kᵀ → P from the saved
// log-sum-exp, dP = dO·Vᵀ, dS = P ∘ (dP − D), dQ += dS·K. MASK: the diagonal tile, where keys past the query count not.
template <class D, bool MASK> __device__ __forceinline__ void fa_dq_tile(float (&dq)[8][4], const unsigned (&qa)[4][4], const unsigned (&ga)[4][4],
                                                                         const u16* kst, const u16* vst, const float (&lse2)[2],
                                                                         const float (&dsum)[2], int key0, int row0, float c2) {
  const int lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    if (MASK && key0 + 16 * kk > row0 + 15) break;   // keys past every query of the warp: dS is 0
    unsigned sa[4];   // dS over keys 16·kk … 16·kk + 15 as an A fragment
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int n = 2 * kk + half;
      float s[4] = {}, dp[4] = {}, g[4];
      fa_mma_abt<D>(s, qa, kst, n * 8);
      fa_mma_abt<D>(dp, ga, vst, n * 8);
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float p = exp2_ftz(s[e] * c2 - lse2[e >> 1]);
        if (MASK && key0 + n * 8 + tig * 2 + (e & 1) > row0 + grp + 8 * (e >> 1)) p = 0.f;
        g[e] = p * (dp[e] - dsum[e >> 1]);
      }
      sa[2 * half] = fa_pack<D>(g[0], g[1]);
      sa[2 * half + 1] = fa_pack<D>(g[2], g[3]);
    }
    fa_mma_ab<D>(dq, sa, kst, kk * 16);
  }
}

// Backward, dQ side: one tile of 64 query rows over key tiles 0 … qt, K and V double-buffered by cp.async.
template <class D> __device__ void fa_bwd_dq(const FABackward& op, FATile (*buf)[2], int qt, float scale) {
  const int T = op.T, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane >> 2;
  const int row0 = qt * FA_TILE + warp * 16;
  const bool active = row0 < T;
  const float c2 = scale * LOG2E;
  unsigned qa[4][4], ga[4][4];
  float dsum[2] = {0.f, 0.f}, lse2[2] = {0.f, 0.f};
  if (active) {
    fa_load_a(qa, op.q, op.stride, row0);
    fa_load_a(ga, op.dout, op.C, row0);
#pragma unroll
    for (int r = 0; r < 2; r++) {
      dsum[r] = op.rowDot[row0 + grp + 8 * r];
      lse2[r] = op.lse[row0 + grp + 8 * r] * LOG2E;
    }
  }
  float dq[8][4] = {};
  fa_stage(buf[0][0], op.k, op.stride, 0, T);
  fa_stage(buf[0][1], op.v, op.stride, 0, T);
  fa_cp_commit();
  for (int kt = 0; kt <= qt; kt++) {
    const int cur = kt & 1;
    fa_cp_wait();
    __syncthreads();
    if (kt < qt) {
      fa_stage(buf[cur ^ 1][0], op.k, op.stride, (kt + 1) * FA_TILE, T);
      fa_stage(buf[cur ^ 1][1], op.v, op.stride, (kt + 1) * FA_TILE, T);
      fa_cp_commit();
    }
    if (!active) continue;
    if (kt == qt) fa_dq_tile<D, true>(dq, qa, ga, buf[cur][0], buf[cur][1], lse2, dsum, kt * FA_TILE, row0, c2);
    else fa_dq_tile<D, false>(dq, qa, ga, buf[cur][0], buf[cur][1], lse2, dsum, kt * FA_TILE, row0, c2);
  }
  if (active) fa_store<D>(op.dq, op.stride, row0, dq, scale, scale);
}

// Backward, dK and dV side, one query tile (qst: Q, gst: dO, L and Dq: its rows' log-sum-exps and D) for the warp's
// 16 keys, in the transposed view (rows = keys): Sᵀ = K·Qᵀ → Pᵀ, dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ − D),
// dK += dSᵀ·Q. MASK: the diagonal tile or the last, partial one, where queries before a key or past T count not.
template <class D, bool MASK> __device__ __forceinline__ void fa_dkdv_tile(float (&dk)[8][4], float (&dv)[8][4], const unsigned (&ka)[4][4],
                                                                           const unsigned (&va)[4][4], const u16* qst, const u16* gst,
                                                                           const float* L, const float* Dq, int key0, int q0, int T, float c2) {
  const int lane = threadIdx.x & 31, grp = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    if (MASK && q0 + 16 * kk + 15 < key0) continue;   // queries before every key of the warp: P is 0
    unsigned pa[4], sa[4];   // Pᵀ and dSᵀ over queries 16·kk … 16·kk + 15 as A fragments
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int n = 2 * kk + half, col = n * 8 + tig * 2;
      float s[4] = {}, dp[4] = {}, p[4], g[4];
      fa_mma_abt<D>(s, ka, qst, n * 8);
      fa_mma_abt<D>(dp, va, gst, n * 8);
      const float2 l2 = *(const float2*)&L[col], d2 = *(const float2*)&Dq[col];
      const float lx = l2.x * LOG2E, ly = l2.y * LOG2E;
#pragma unroll
      for (int e = 0; e < 4; e++) {
        p[e] = exp2_ftz(s[e] * c2 - ((e & 1) ? ly : lx));
        if (MASK) {
          const int key = key0 + grp + 8 * (e >> 1), query = q0 + col + (e & 1);
          if (query < key || query >= T) p[e] = 0.f;
        }
        g[e] = p[e] * (dp[e] - ((e & 1) ? d2.y : d2.x));
      }
      pa[2 * half] = fa_pack<D>(p[0], p[1]);
      pa[2 * half + 1] = fa_pack<D>(p[2], p[3]);
      sa[2 * half] = fa_pack<D>(g[0], g[1]);
      sa[2 * half + 1] = fa_pack<D>(g[2], g[3]);
    }
    fa_mma_ab<D>(dv, pa, gst, kk * 16);
    fa_mma_ab<D>(dk, sa, qst, kk * 16);
  }
}

// Backward, dK and dV side: one tile of 64 keys (a warp's 16 keys' K and V fragments in registers) over query
// tiles kt … last, whose Q, dO, log-sum-exps and D pass through shared memory, double-buffered by cp.async.
template <class D> __device__ void fa_bwd_dkdv(const FABackward& op, FATile (*buf)[2], float (*rowLse)[FA_TILE], float (*rowD)[FA_TILE],
                                               int kt, float scale) {
  const int T = op.T, tiles = (T + FA_TILE - 1) / FA_TILE;
  const int warp = threadIdx.x >> 5;
  const int key0 = kt * FA_TILE + warp * 16;
  const bool active = key0 < T;
  const float c2 = scale * LOG2E;
  unsigned ka[4][4], va[4][4];
  if (active) { fa_load_a(ka, op.k, op.stride, key0); fa_load_a(va, op.v, op.stride, key0); }
  float dk[8][4] = {}, dv[8][4] = {};
  // Query tile qt's Q and dO into buffer st, its log-sum-exps and D into rowLse[st] and rowD[st] (16 bytes a thread).
  auto stage = [&](int qt, int st) {
    const int first = qt * FA_TILE;
    fa_stage(buf[st][0], op.q, op.stride, first, T);
    fa_stage(buf[st][1], op.dout, op.C, first, T);
    if (threadIdx.x < FA_TILE / 2) {
      const int j = threadIdx.x & (FA_TILE / 4 - 1), r = first + j * 4;
      const float* src = threadIdx.x < FA_TILE / 4 ? op.lse : op.rowDot;
      float* dst = threadIdx.x < FA_TILE / 4 ? rowLse[st] : rowD[st];
      fa_cp16(dst + j * 4, src + (r < T ? r : 0), r < T);
    }
    fa_cp_commit();
  };
  stage(kt, 0);
  for (int qt = kt; qt < tiles; qt++) {
    const int cur = (qt - kt) & 1;
    fa_cp_wait();
    __syncthreads();
    if (qt + 1 < tiles) stage(qt + 1, cur ^ 1);
    if (!active) continue;
    const int q0 = qt * FA_TILE;
    if (qt == kt || q0 + FA_TILE > T) fa_dkdv_tile<D, true>(dk, dv, ka, va, buf[cur][0], buf[cur][1], rowLse[cur], rowD[cur], key0, q0, T, c2);
    else fa_dkdv_tile<D, false>(dk, dv, ka, va, buf[cur][0], buf[cur][1], rowLse[cur], rowD[cur], key0, q0, T, c2);
  }
  if (!active) return;
  fa_store<D>(op.dk, op.stride, key0, dk, scale, scale);
  fa_store<D>(op.dv, op.stride, key0, dv, 1.f, 1.f);
}

// Backward: grid (B·H, 2·⌈T/64⌉); even y: dK, dV of key tile y/2, odd y: dQ of query tile (last − y/2), so the
// longest blocks of both kinds start first. Each block owns what it writes: no atomics, no zeroing, deterministic.
// rowDot: D of every query row, from flash_attention_rowdot.
template <class D> __device__ void flash_attention_bwd_impl(const void* qkv, const void* dout, const float* lse, const float* rowDot,
                                                            void* dqkv, int T, int H, float scale) {
  __shared__ __align__(16) FATile buf[2][2];
  __shared__ __align__(16) float rowLse[2][FA_TILE], rowD[2][FA_TILE];
  const FAHead at(T, H);
  const u16* q = (const u16*)qkv + at.qkv;
  u16* dq = (u16*)dqkv + at.qkv;
  const FABackward op = {q, q + at.C, q + 2 * at.C, (const u16*)dout + at.o,
                         dq, dq + at.C, dq + 2 * at.C, lse + at.lse, rowDot + at.lse, at.stride, at.C, T};
  const int tiles = (T + FA_TILE - 1) / FA_TILE, i = blockIdx.y >> 1;
  if (blockIdx.y & 1) fa_bwd_dq<D>(op, buf, tiles - 1 - i, scale);
  else fa_bwd_dkdv<D>(op, buf, rowLse, rowD, i, scale);
}

#define FLASH_ATTENTION(D, sfx) \
  extern "C" __global__ void __launch_bounds__(FA_THREADS, FA_FWD_BLOCKS) flash_attention_fwd_##sfx(const void* qkv, void* out, float* lse, int T, \
      int H, float scale) { PDL_ENTRY(); flash_attention_fwd_impl<D>(qkv, out, lse, T, H, scale); } \
  extern "C" __global__ void flash_attention_rowdot_##sfx(const void* o, const void* dout, float* rowDot, int BT, int T, int H) { PDL_ENTRY(); \
    flash_attention_rowdot_impl<D>(o, dout, rowDot, BT, T, H); } \
  extern "C" __global__ void __launch_bounds__(FA_THREADS, FA_BWD_BLOCKS) flash_attention_bwd_##sfx(const void* qkv, const void* dout, \
      const float* lse, const float* rowDot, void* dqkv, int T, int H, float scale) { PDL_ENTRY(); \
    flash_attention_bwd_impl<D>(qkv, dout, lse, rowDot, dqkv, T, H, scale); }
FLASH_ATTENTION(BF16, bf16) FLASH_ATTENTION(F16, f16)
"""#
}

/// Launches of the fused attention kernels (``KernelSource/attention``), with the shapes they take checked on
/// the host: a wrong shape is an error here, never an out-of-bounds access on the device.
enum FlashAttention {
    /// The head size the kernels are compiled for, and query or key rows per block (4 warps × 16).
    static let headSize = 64, tile = 64, threads = 128

    /// Whether the kernels compute attention for this precision (16-bit only), head size and sequence length.
    static func supports(_ precision: GPUPrecision, headSize: Int, context T: Int) -> Bool {
        precision.bytes == 2 && headSize == Self.headSize && T > 0 && T % 16 == 0
    }

    static func check(_ precision: GPUPrecision, B: Int, T: Int, H: Int) throws {
        guard supports(precision, headSize: headSize, context: T), B > 0, H > 0 else {
            throw CUDAError.unsupported("fused attention takes bf16 or fp16, head size \(headSize) and T a multiple of 16 (got \(precision.rawValue), B \(B), T \(T), H \(H))")
        }
        guard B * H * T < 1 << 31, (T + tile - 1) / tile * 2 <= 65535 else {
            throw CUDAError.unsupported("fused attention: B·H·T = \(B * H * T) or T = \(T) too large for the kernels' indices and grid")
        }
    }

    /// `out` `[B, T, H·64]` = causal softmax(q·kᵀ·scale)·v of `qkv` `[B, T, 3, H, 64]` (activation type, bias added),
    /// and `lse` `[B·H, T]` (fp32), the log-sum-exp of each query row's scaled scores, for ``backward``.
    static func forward(_ gpu: CUDAContext, _ precision: GPUPrecision, qkv: DevicePointer, out: DevicePointer, lse: DevicePointer,
                        B: Int, T: Int, H: Int, scale: Float) throws {
        try check(precision, B: B, T: T, H: H)
        try gpu.launch("flash_attention_fwd" + precision.suffix, grid: (B * H, (T + tile - 1) / tile, 1), block: (threads, 1, 1),
                       [.pointer(qkv), .pointer(out), .pointer(lse), .int(Int32(T)), .int(Int32(H)), .float(scale)])
    }

    /// `dqkv` `[B, T, 3, H, 64]` (dq, dk, dv, every element written) from forward's `qkv`, `out` and `lse` and the
    /// gradient `dOut` of `out`; `rowDots` is fp32 scratch of `lse`'s size (each query row's dO·O, made first).
    static func backward(_ gpu: CUDAContext, _ precision: GPUPrecision, qkv: DevicePointer, out: DevicePointer, dOut: DevicePointer,
                         lse: DevicePointer, rowDots: DevicePointer, dqkv: DevicePointer, B: Int, T: Int, H: Int, scale: Float) throws {
        try check(precision, B: B, T: T, H: H)
        let threads = B * T * H * 8
        try gpu.launch("flash_attention_rowdot" + precision.suffix, grid: ((threads + 255) / 256, 1, 1), block: (256, 1, 1),
                       [.pointer(out), .pointer(dOut), .pointer(rowDots), .int(Int32(B * T)), .int(Int32(T)), .int(Int32(H))])
        try gpu.launch("flash_attention_bwd" + precision.suffix, grid: (B * H, 2 * ((T + tile - 1) / tile), 1), block: (self.threads, 1, 1),
                       [.pointer(qkv), .pointer(dOut), .pointer(lse), .pointer(rowDots), .pointer(dqkv), .int(Int32(T)), .int(Int32(H)),
                        .float(scale)])
    }
}
