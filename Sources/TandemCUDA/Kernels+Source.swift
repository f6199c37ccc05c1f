/// The CUDA C++ source of every kernel, compiled once per architecture with NVRTC.
///
/// Element types: each typed kernel exists as `NAME_f32`, `NAME_bf16` and `NAME_f16` (the
/// storage type of activations and GEMM operands); fp32 master weights, gradients, optimizer
/// state and every accumulation stay in `float`. No CUDA header is needed: bf16 and fp16 are
/// carried as 16-bit integers and converted with integer arithmetic (bf16, round to nearest
/// even) or one PTX instruction (fp16).
public enum KernelSource {
    public static let all = prelude + elementwise + losses + optimizers + transformer + convolution + recurrent + recurrentSequence + attention

    // MARK: - Types

    static let prelude = #"""
typedef unsigned short u16;
// The first statement of every kernel. Launched with programmatic stream serialization (CUDAContext's
// launchesProgrammatically), a kernel may be started before the kernel ahead of it in the stream has finished;
// griddepcontrol.wait holds it until that kernel has completed and its writes are visible, so nothing is read or
// written early and only the launch's latency leaves the gap between the two. Launched plainly, it does nothing.
#if __CUDA_ARCH__ >= 900
#define PDL_ENTRY() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define PDL_ENTRY() do {} while (0)
#endif
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
__device__ __forceinline__ float bf2f(u16 v) { return __uint_as_float(((unsigned)v) << 16); }
__device__ __forceinline__ u16 f2bf(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (u16)(u >> 16);
}
__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

struct F32 { typedef float T;
  static __device__ __forceinline__ float ld(const void* p, long i) { return ((const float*)p)[i]; }
  static __device__ __forceinline__ void st(void* p, long i, float v) { ((float*)p)[i] = v; } };
struct BF16 { typedef u16 T;
  static __device__ __forceinline__ float ld(const void* p, long i) { return bf2f(((const u16*)p)[i]); }
  static __device__ __forceinline__ void st(void* p, long i, float v) { ((u16*)p)[i] = f2bf(v); } };
struct F16 { typedef u16 T;
  static __device__ __forceinline__ float ld(const void* p, long i) { return h2f(((const u16*)p)[i]); }
  static __device__ __forceinline__ void st(void* p, long i, float v) { ((u16*)p)[i] = f2h(v); } };

#define INSTANTIATE(name, sig, args) \
  extern "C" __global__ void name##_f32 sig { PDL_ENTRY(); name##_impl<F32> args; } \
  extern "C" __global__ void name##_bf16 sig { PDL_ENTRY(); name##_impl<BF16> args; } \
  extern "C" __global__ void name##_f16 sig { PDL_ENTRY(); name##_impl<F16> args; }
// The same with __launch_bounds__ (bounds: (max threads) or (max threads, min blocks a multiprocessor)).
#define INSTANTIATE_BOUNDED(name, bounds, sig, args) \
  extern "C" __global__ void __launch_bounds__ bounds name##_f32 sig { PDL_ENTRY(); name##_impl<F32> args; } \
  extern "C" __global__ void __launch_bounds__ bounds name##_bf16 sig { PDL_ENTRY(); name##_impl<BF16> args; } \
  extern "C" __global__ void __launch_bounds__ bounds name##_f16 sig { PDL_ENTRY(); name##_impl<F16> args; }

// 16-byte vectors: ld8/st8 move eight consecutive elements (p + i 16-byte aligned) as floats, one 16-byte access
// in 16-bit types, two in float. Two 16-bit values share a word, the lower address in the low half; one cvt
// (sm_80, as the attention kernels need) rounds two floats to nearest even, as f2bf and f2h do (a NaN comes out
// as the canonical NaN).
template <class D> __device__ __forceinline__ void unpack2(unsigned u, float& a, float& b);
template <> __device__ __forceinline__ void unpack2<BF16>(unsigned u, float& a, float& b) {
  a = __uint_as_float(u << 16); b = __uint_as_float(u & 0xffff0000u);
}
template <> __device__ __forceinline__ void unpack2<F16>(unsigned u, float& a, float& b) { a = h2f((u16)(u & 0xffffu)); b = h2f((u16)(u >> 16)); }
template <class D> __device__ __forceinline__ unsigned pack2(float a, float b);
template <> __device__ __forceinline__ unsigned pack2<BF16>(float a, float b) {
  unsigned u; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(u) : "f"(b), "f"(a)); return u;
}
template <> __device__ __forceinline__ unsigned pack2<F16>(float a, float b) {
  unsigned u; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(u) : "f"(b), "f"(a)); return u;
}
template <class D> __device__ __forceinline__ void ld8(const void* p, long i, float* v) {
  uint4 u = *(const uint4*)((const u16*)p + i);
  unpack2<D>(u.x, v[0], v[1]); unpack2<D>(u.y, v[2], v[3]); unpack2<D>(u.z, v[4], v[5]); unpack2<D>(u.w, v[6], v[7]);
}
template <> __device__ __forceinline__ void ld8<F32>(const void* p, long i, float* v) {
  float4 a = *(const float4*)((const float*)p + i), b = *(const float4*)((const float*)p + i + 4);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
template <class D> __device__ __forceinline__ void st8(void* p, long i, const float* v) {
  *(uint4*)((u16*)p + i) = make_uint4(pack2<D>(v[0], v[1]), pack2<D>(v[2], v[3]), pack2<D>(v[4], v[5]), pack2<D>(v[6], v[7]));
}
template <> __device__ __forceinline__ void st8<F32>(void* p, long i, const float* v) {
  *(float4*)((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
  *(float4*)((float*)p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15u) == 0; }

// 32-bit indices (every tensor here has fewer than 2^31 elements; the launcher checks): 64-bit
// division and modulo cost many times more on the GPU.
#define GRID_STRIDE(i, n) for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (int)(n); i += blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Each of N values (N a multiple of 32) summed over a warp's 32 lanes by halving exchanges: at each of five steps a
// lane keeps half of its values, gets its partner's copy of that half and sends the other; N − N/32 shuffles instead
// of 5N. After it lane L holds the totals of values L·N/32 + j in v[j], j < N/32. A fixed order: deterministic.
template <int N, int O> __device__ __forceinline__ void warp_sum_halve(float* v) {
  bool hi = threadIdx.x & O;
#pragma unroll
  for (int i = 0; i < N / 2; i++) {
    float send = hi ? v[i] : v[i + N / 2], keep = hi ? v[i + N / 2] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
  }
}
template <int N> __device__ __forceinline__ void warp_sum_spread(float* v) {
  warp_sum_halve<N, 16>(v); warp_sum_halve<N / 2, 8>(v); warp_sum_halve<N / 4, 4>(v); warp_sum_halve<N / 8, 2>(v);
  warp_sum_halve<N / 16, 1>(v);
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? part[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}
__device__ float block_max(float v) {
  __shared__ float part[32];
  __shared__ float total;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? part[lane] : -INFINITY;
    s = warp_max(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// Reductions finished in the launch that made the pieces, without atomics on floats. A ticket is a counter in
// device memory, zero before the launch: last_ticket tells the block that takes the last of `count` tickets (every
// thread gets the answer; its writes before the call are visible to that block) and puts the counter back to zero
// for the next launch or graph replay.
__device__ bool last_ticket(unsigned* ticket, unsigned count) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    last = atomicAdd(ticket, 1u) == count - 1;
    if (last) { *ticket = 0; __threadfence(); }
  }
  __syncthreads();
  return last;
}
// Rows of a narrow head's W (head_cross_entropy, act_backward_product) loaded at once: a loop over a run-time number
// of rows would wait on each load in turn. ld_head_rows: eight values from each of rows c0 … c0 + HEAD_LOADS − 1 of
// w (row length ld) at column i, zeros past `classes`.
#define HEAD_LOADS 4
template <class D> __device__ __forceinline__ void ld_head_rows(const void* w, long ld, int i, int c0, int classes, float v[HEAD_LOADS][8]) {
#pragma unroll
  for (int q = 0; q < HEAD_LOADS; q++) {
    if (c0 + q < classes) ld8<D>(w, (c0 + q) * ld + i, v[q]);
    else for (int j = 0; j < 8; j++) v[q][j] = 0.f;
  }
}
// Rows of partial sums are split into groups of partial_group(parts) rows: all of them up to 32 (one block adds them,
// 16 loads in flight), else ≈ √parts (as GPUTrainer.ticketsNeeded counts).
__device__ __forceinline__ int partial_group(int parts) { int g = 1; if (parts <= 32) return parts; while (g * g < parts) g++; return g; }
// p[0] + p[step] + … (n terms, in that order), read past L1 (other blocks wrote them), 16 loads in flight.
__device__ __forceinline__ float sum_rows(const float* p, long step, int n) {
  float s = 0.f;
  for (int k0 = 0; k0 < n; k0 += 16) {
    float v[16];
#pragma unroll
    for (int j = 0; j < 16; j++) v[j] = k0 + j < n ? __ldcg(p + (k0 + j) * step) : 0.f;
#pragma unroll
    for (int j = 0; j < 16; j++) if (k0 + j < n) s += v[j];
  }
  return s;
}
// Column sums from partial rows: each of `parts` blocks has written its row of `width` partial sums at
// rows + part·stride, then calls this (all its threads). The last block of each group to finish adds the group's
// rows into the group's first row; the last group to finish adds those and hands each column's total to
// store(column, total). The order of the additions is fixed, whichever block comes last: deterministic. Uses
// tickets[0 … groups] (groups + 1 counters; one when there is a single group).
template <class Store> __device__ void finish_partials(float* rows, long stride, int width, int parts, int part, unsigned* tickets,
                                                       Store store) {
  int g = partial_group(parts), groups = (parts + g - 1) / g, first = part / g * g, members = min(g, parts - first);
  int tid = threadIdx.y * blockDim.x + threadIdx.x, threads = blockDim.x * blockDim.y;
  if (!last_ticket(tickets + part / g, members)) return;
  for (int c = tid; c < width; c += threads) {
    float s = sum_rows(rows + (long)first * stride + c, stride, members);
    if (groups == 1) store(c, s); else rows[(long)first * stride + c] = s;
  }
  if (groups == 1 || !last_ticket(tickets + groups, groups)) return;
  for (int c = tid; c < width; c += threads) store(c, sum_rows(rows + c, (long)g * stride, groups));
}

constexpr float LOG2E = 1.4426950408889634f;
// 2^x by the MUFU instruction alone: results below 2^-126 are flushed to zero (no rescaling around it, as exp2f has): a
// probability under 2^-126 is zero next to the largest, which is 1.
__device__ __forceinline__ float exp2_ftz(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
// The standard normal's distribution Φ(x) and density φ(x), for GELU(x) = x·Φ(x) and GELU'(x) = Φ(x) + x·φ(x). Φ comes
// from erfc(|x|/√2) = t·exp(−z² + P(t)), t = 1 / (1 + z/2), with P the degree-9 Chebyshev fit of Numerical Recipes'
// erfcc (relative error below 1.2e-7 for every z): no branch and no cancellation in the negative tail, where
// (1 + erf(x/√2)) / 2 loses its digits, and about half the instructions of erff (its two polynomials and their
// select), which made GELU's forward instruction-bound. Three MUFU operations: the reciprocal and two exponentials.
// SHORT, for results rounded to 16 bits (relative rounding error up to 2^-9 in bf16, 2^-11 in fp16): P of degree 5,
// evaluated in base 2 on h = t/2 with its constants folded in (scripts/fit_erfc.py: Φ's relative error about 1e-5 for
// |x| ≤ 9, 2.7e-5 to |x| = 13; beyond, Φ(−|x|) and φ flush to zero), and the exponentials by MUFU alone: fewer
// instructions in bias_gelu, which is bound by them (gpt bf16 −0.4% for the degree, −0.4% for the exponentials,
// −0.2% for the folding).
template <bool SHORT = false> __device__ __forceinline__ void gaussian_cdf_pdf(float x, float& cdf, float& pdf) {
  if (SHORT) {
    const float w = x * x * 0.72134752044448170f;   // x²·log2(e)/2
    const float h = __fdividef(1.f, fmaf(fabsf(x), 0.70710678118654752f, 2.f));
    float q = fmaf(h, 10.4654932f, -16.2372227f); q = fmaf(h, q, 5.40883446f); q = fmaf(h, q, 1.48386919f);
    q = fmaf(h, q, 2.93578315f); q = fmaf(h, q, -1.82717729f);
    const float halfErfc = h * exp2_ftz(q - w);
    cdf = x >= 0.f ? 1.f - halfErfc : halfErfc;
    pdf = 0.39894228040143268f * exp2_ftz(-w);
    return;
  }
  const float z = fabsf(x) * 0.70710678118654752f, z2 = z * z;
  const float t = __fdividef(1.f, fmaf(0.5f, z, 1.f));
  float q = fmaf(t, 0.17087277f, -0.82215223f);
  q = fmaf(t, q, 1.48851587f); q = fmaf(t, q, -1.13520398f); q = fmaf(t, q, 0.27886807f); q = fmaf(t, q, -0.18628806f);
  q = fmaf(t, q, 0.09678418f); q = fmaf(t, q, 0.37409196f); q = fmaf(t, q, 1.00002368f); q = fmaf(t, q, -1.26551223f);
  const float halfErfc = 0.5f * t * exp2f((q - z2) * LOG2E);
  cdf = x >= 0.f ? 1.f - halfErfc : halfErfc;
  pdf = 0.39894228040143268f * exp2f(-z2 * LOG2E);
}
__device__ __forceinline__ float gelu_grad(float x) { float c, d; gaussian_cdf_pdf(x, c, d); return fmaf(x, d, c); }
"""#

    // MARK: - Element-wise, bias, activations, column sums

    static let elementwise = #"""
template <class D> __device__ void cast_from_f32_impl(const float* x, void* y, long n) { GRID_STRIDE(i, n) D::st(y, i, x[i]); }
INSTANTIATE(cast_from_f32, (const float* x, void* y, long n), (x, y, n))
template <class D> __device__ void cast_to_f32_impl(const void* x, float* y, long n) { GRID_STRIDE(i, n) y[i] = D::ld(x, i); }
INSTANTIATE(cast_to_f32, (const void* x, float* y, long n), (x, y, n))

// y = act(y + b) in place over [rows, cols]; act 0: none, 1: ReLU. b may be null.
template <class D> __device__ void bias_act_impl(void* y, const float* b, int rows, int cols, int act) {
  long n = (long)rows * cols;
  GRID_STRIDE(i, n) {
    float v = D::ld(y, i) + (b ? b[i % cols] : 0.f);
    if (act == 1) v = fmaxf(v, 0.f);
    D::st(y, i, v);
  }
}
INSTANTIATE(bias_act, (void* y, const float* b, int rows, int cols, int act), (y, b, rows, cols, act))

// y = gelu(z + b), and z is overwritten by gelu'(z + b), the factor backward multiplies by (act 3 of
// act_backward_colsum: no transcendental function there; one gaussian_cdf_pdf here serves both). Rows of whole 16-byte vectors
// (cols a multiple of 8, aligned pointers): eight columns a thread, two vectors in flight (launch n / 8 threads'
// worth); else one element.
template <class D> __device__ __forceinline__ void gelu_and_grad(float& x, float& y) {
  float c, d;
  gaussian_cdf_pdf<sizeof(typename D::T) == 2>(x, c, d);
  y = x * c;
  x = fmaf(x, d, c);
}
template <class D> __device__ void bias_gelu_impl(void* z, const float* b, void* y, int rows, int cols) {
  long n = (long)rows * cols;
  if (cols % 8 == 0 && aligned16(z) && aligned16(y) && aligned16(b)) {
    int nv = (int)(n / 8), stride = gridDim.x * blockDim.x;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nv; v += 2 * stride) {
      float a[2][8];
#pragma unroll
      for (int u = 0; u < 2; u++) if (v + u * stride < nv) ld8<D>(z, 8L * (v + u * stride), a[u]);
#pragma unroll
      for (int u = 0; u < 2; u++) {
        int e = v + u * stride;
        if (e >= nv) break;
        if (b) {
          float bb[8];
          ld8<F32>(b, (8 * e) % cols, bb);
#pragma unroll
          for (int j = 0; j < 8; j++) a[u][j] += bb[j];
        }
        float out[8];
#pragma unroll
        for (int j = 0; j < 8; j++) gelu_and_grad<D>(a[u][j], out[j]);
        st8<D>(z, 8L * e, a[u]);
        st8<D>(y, 8L * e, out);
      }
    }
    return;
  }
  GRID_STRIDE(i, n) {
    float v = D::ld(z, i) + (b ? b[i % cols] : 0.f), out;
    gelu_and_grad<D>(v, out);
    D::st(z, i, v);
    D::st(y, i, out);
  }
}
INSTANTIATE(bias_gelu, (void* z, const float* b, void* y, int rows, int cols), (z, b, y, rows, cols))

// In place: dy *= act'(ref) (act 0: none, 1: ReLU with ref = output, 2: GELU with ref = input, 3: ref = the
// derivative itself, as bias_gelu leaves it); when `out` is not null, out (+)= the column sums of dy (accumulate
// adds). act_backward_product does not read dy but forms it as dl·W (dl fp32 [rows, classes], W [classes, cols] in D:
// the input gradient of head_cross_entropy's layer) and writes it. Block (32, 8): 32 column lanes by 8 row lanes over
// a strip of columns and a chunk of the rows, grid (strips, chunks). With `vec` (cols a multiple of 8, aligned pointers) a lane takes eight adjacent columns
// (16-byte accesses in 16-bit types; strips of 256 columns), else one (strips of 32). Each lane sums its rows r,
// r + 8, … in registers, two rows in flight; the row lanes are added in shared memory in a fixed order, each block
// writes one row of partial sums (partial[chunk, col]) and finish_partials adds the chunks (tickets: groups + 1 per
// strip).
template <class D, bool P> __device__ void act_backward_body(void* dy, const void* ref, float* partial, unsigned* tickets, float* out,
                                                             int rows, int cols, int act, int vec, int accumulate, const float* dl,
                                                             const void* w, int classes) {
  __shared__ float acc[8][257];
  int chunk = (rows + gridDim.y - 1) / gridDim.y;
  int r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
  int strip = vec ? 256 : 32, c0 = blockIdx.x * strip;
  if (vec) {
    int col = c0 + 8 * threadIdx.x;
    float s[8];
#pragma unroll
    for (int j = 0; j < 8; j++) s[j] = 0.f;
    if (col < cols) {
      for (int r = r0 + threadIdx.y; r < r1; r += 16) {
        bool two = r + 8 < r1;
        float g[2][8], z[2][8];
#pragma unroll
        for (int u = 0; u < 2; u++) {
          if (u == 1 && !two) break;
          long i = (long)(r + 8 * u) * cols + col;
          if (!P) ld8<D>(dy, i, g[u]);
          if (act) ld8<D>(ref, i, z[u]);
        }
        if (P) {
#pragma unroll
          for (int u = 0; u < 2; u++)
#pragma unroll
            for (int j = 0; j < 8; j++) g[u][j] = 0.f;
          for (int k0 = 0; k0 < classes; k0 += HEAD_LOADS) {
            float v[HEAD_LOADS][8], d[HEAD_LOADS][2];
            ld_head_rows<D>(w, cols, col, k0, classes, v);
#pragma unroll
            for (int q = 0; q < HEAD_LOADS; q++) {
              bool in = k0 + q < classes;
              d[q][0] = in ? dl[(long)r * classes + k0 + q] : 0.f;
              d[q][1] = in && two ? dl[(long)(r + 8) * classes + k0 + q] : 0.f;
            }
#pragma unroll
            for (int q = 0; q < HEAD_LOADS; q++)
#pragma unroll
              for (int j = 0; j < 8; j++) { g[0][j] += d[q][0] * v[q][j]; g[1][j] += d[q][1] * v[q][j]; }
          }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
          if (u == 1 && !two) break;
          if (act || P) {
#pragma unroll
            for (int j = 0; j < 8; j++)
              if (act) g[u][j] = act == 1 ? (z[u][j] > 0.f ? g[u][j] : 0.f) : g[u][j] * (act == 3 ? z[u][j] : gelu_grad(z[u][j]));
            st8<D>(dy, (long)(r + 8 * u) * cols + col, g[u]);
          }
#pragma unroll
          for (int j = 0; j < 8; j++) s[j] += g[u][j];
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) acc[threadIdx.y][8 * threadIdx.x + j] = s[j];
  } else {
    int col = c0 + threadIdx.x;
    float s = 0.f;
    if (col < cols) {
      for (int r = r0 + threadIdx.y; r < r1; r += 8) {
        long i = (long)r * cols + col;
        float g = 0.f;
        if (P) for (int c = 0; c < classes; c++) g += dl[(long)r * classes + c] * D::ld(w, (long)c * cols + col);
        else g = D::ld(dy, i);
        if (act == 1) g = D::ld(ref, i) > 0.f ? g : 0.f;
        else if (act >= 2) { float z = D::ld(ref, i); g *= act == 3 ? z : gelu_grad(z); }
        if (act || P) D::st(dy, i, g);
        s += g;
      }
    }
    acc[threadIdx.y][threadIdx.x] = s;
  }
  if (!out) return;
  __syncthreads();
  int width = min(strip, cols - c0);
  for (int c = threadIdx.y * 32 + threadIdx.x; c < width; c += 256) {
    float t = 0.f;
    for (int k = 0; k < 8; k++) t += acc[k][c];
    partial[(long)blockIdx.y * cols + c0 + c] = t;
  }
  int g = partial_group(gridDim.y);
  finish_partials(partial + c0, cols, width, gridDim.y, blockIdx.y, tickets + blockIdx.x * ((gridDim.y + g - 1) / g + 1),
                  [&](int c, float t) { out[c0 + c] = accumulate ? out[c0 + c] + t : t; });
}
template <class D> __device__ void act_backward_colsum_impl(void* dy, const void* ref, float* partial, unsigned* tickets, float* out,
                                                            int rows, int cols, int act, int vec, int accumulate) {
  act_backward_body<D, false>(dy, ref, partial, tickets, out, rows, cols, act, vec, accumulate, nullptr, nullptr, 0);
}
INSTANTIATE_BOUNDED(act_backward_colsum, (256, 3), (void* dy, const void* ref, float* partial, unsigned* tickets, float* out, int rows, int cols, int act, int vec, int accumulate),
                    (dy, ref, partial, tickets, out, rows, cols, act, vec, accumulate))
template <class D> __device__ void act_backward_product_impl(void* dy, const void* ref, float* partial, unsigned* tickets, float* out, int rows,
                                                             int cols, int act, int vec, int accumulate, const float* dl, const void* w, int classes) {
  act_backward_body<D, true>(dy, ref, partial, tickets, out, rows, cols, act, vec, accumulate, dl, w, classes);
}
INSTANTIATE_BOUNDED(act_backward_product, (256, 2), (void* dy, const void* ref, float* partial, unsigned* tickets, float* out, int rows, int cols, int act, int vec, int accumulate,
                                                     const float* dl, const void* w, int classes),
                    (dy, ref, partial, tickets, out, rows, cols, act, vec, accumulate, dl, w, classes))

// Column c's total over `chunks` rows of `width` partial sums, in a block (32, R ≤ 32) that takes a column a lane: the
// R row lanes add rows k, k + R, … in turn, then the lanes' sums are added in a fixed order (deterministic for a given
// R). Every thread of the block calls it; the total is returned to the threads of row lane 0.
__device__ __forceinline__ float column_total(const float* partial, int chunks, int width, int c) {
  __shared__ float acc[32][33];
  const int lanes = blockDim.y;
  float s = 0.f;
  if (c < width) {
#pragma unroll 4
    for (int k = threadIdx.y; k < chunks; k += lanes) s += partial[(long)k * width + c];
  }
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  float t = 0.f;
  if (threadIdx.y == 0) for (int k = 0; k < lanes; k++) t += acc[k][threadIdx.x];
  return t;
}
// out[col] (+)= sum over chunks of partial[chunk, col]; accumulate adds to out. Block (32, R), a column a lane.
extern "C" __global__ void sum_partials(const float* partial, int chunks, int cols, float* out, int accumulate) { PDL_ENTRY();
  int col = blockIdx.x * 32 + threadIdx.x;
  float t = column_total(partial, chunks, cols, col);
  if (threadIdx.y == 0 && col < cols) out[col] = accumulate ? out[col] + t : t;
}

// out = x + y (+ b) with x, out float (the residual stream; out may be x) and y in D, over [rows, cols]. Rows of
// whole 16-byte vectors: eight columns a thread (launch n / 8 threads' worth); else one element.
template <class D> __device__ void residual_add_impl(const float* x, const void* y, const float* b, float* out, int rows, int cols) {
  long n = (long)rows * cols;
  if (cols % 8 == 0 && aligned16(x) && aligned16(y) && aligned16(b) && aligned16(out)) {
    GRID_STRIDE(v, n / 8) {
      float a[8], c[8], bb[8];
      ld8<F32>(x, 8L * v, a);
      ld8<D>(y, 8L * v, c);
      if (b) ld8<F32>(b, (8 * v) % cols, bb);
#pragma unroll
      for (int j = 0; j < 8; j++) a[j] = a[j] + c[j] + (b ? bb[j] : 0.f);
      st8<F32>(out, 8L * v, a);
    }
    return;
  }
  GRID_STRIDE(i, n) out[i] = x[i] + D::ld(y, i) + (b ? b[i % cols] : 0.f);
}
INSTANTIATE(residual_add, (const float* x, const void* y, const float* b, float* out, int rows, int cols), (x, y, b, out, rows, cols))

// Partial row sums of x [rows, cols]: grid (rows, chunks); partial[chunk, row] (reduced by sum_partials).
template <class D> __device__ void row_sums_partial_impl(const void* x, float* partial, int rows, int cols) {
  int row = blockIdx.x;
  int chunk = (cols + gridDim.y - 1) / gridDim.y;
  int c0 = blockIdx.y * chunk, c1 = min(cols, c0 + chunk);
  float s = 0.f;
  for (int c = c0 + threadIdx.x; c < c1; c += blockDim.x) s += D::ld(x, (long)row * cols + c);
  s = block_sum(s);
  if (threadIdx.x == 0) partial[(long)blockIdx.y * rows + row] = s;
}
INSTANTIATE(row_sums_partial, (const void* x, float* partial, int rows, int cols), (x, partial, rows, cols))

// y[t, b, :] = x[b, t, :] (x float, y in D).
template <class D> __device__ void batch_to_time_impl(const float* x, void* y, int B, int T, int F) {
  long n = (long)B * T * F;
  GRID_STRIDE(i, n) {
    int f = i % F; int r = i / F; int t = r % T; int b = r / T;
    D::st(y, ((long)t * B + b) * F + f, x[i]);
  }
}
INSTANTIATE(batch_to_time, (const float* x, void* y, int B, int T, int F), (x, y, B, T, F))

extern "C" __global__ void fill_f32(float* x, long n, float v) { PDL_ENTRY(); GRID_STRIDE(i, n) x[i] = v; }
extern "C" __global__ void axpy_f32(float* y, const float* x, long n, float a) { PDL_ENTRY(); GRID_STRIDE(i, n) y[i] += a * x[i]; }
"""#

    // MARK: - Losses

    static let losses = #"""
// The block that takes the last of `blocks` tickets (one a block that wrote losses) writes the mean of `rows` losses
// (the others' writes visible to it).
__device__ void mean_loss(const float* losses, int rows, unsigned* ticket, unsigned blocks, float* mean) {
  if (!last_ticket(ticket, blocks)) return;
  float t = 0.f;
  for (int i = threadIdx.x; i < rows; i += blockDim.x) t += __ldcg(losses + i);
  t = block_sum(t);
  if (threadIdx.x == 0) *mean = t * (1.f / rows);
}

// Eight elements of D as loaded (one 16-byte vector in 16-bit types, two in float), unpacked where they are used, so
// a load whose values are needed only later stays in flight until then.
template <class D> struct Raw8 {
  static constexpr int N = sizeof(typename D::T) / 2;
  uint4 u[N];
  __device__ __forceinline__ void load(const void* p, long i) {
#pragma unroll
    for (int n = 0; n < N; n++) u[n] = ((const uint4*)((const typename D::T*)p + i))[n];
  }
  __device__ __forceinline__ void unpack(float* v) const {
    unpack2<D>(u[0].x, v[0], v[1]); unpack2<D>(u[0].y, v[2], v[3]); unpack2<D>(u[0].z, v[4], v[5]); unpack2<D>(u[0].w, v[6], v[7]);
  }
};
template <> __device__ __forceinline__ void Raw8<F32>::unpack(float* v) const {
#pragma unroll
  for (int n = 0; n < 2; n++) {
    v[4 * n] = __uint_as_float(u[n].x); v[4 * n + 1] = __uint_as_float(u[n].y);
    v[4 * n + 2] = __uint_as_float(u[n].z); v[4 * n + 3] = __uint_as_float(u[n].w);
  }
}

// Rows row = block, block + grid, …: x = logits + bias (bias may be null); loss[row] = logsumexp(x) - x[label];
// dx = (softmax(x) - onehot) * scale, scale = gradScale * (state ? state[2] : 1) (the loss scale).
// A row of whole 16-byte vectors (cols a multiple of 8, aligned pointers) of at most CE_VECTORS · 8 values a
// thread is read once, 16 bytes a load, kept in registers (as exp(x − max) after the maximum) and written once; the
// block's next row is loaded while this one's maximum and sum are formed. Else three passes over the row (maximum,
// normaliser, gradient; the row stays in L1/L2). dlogits may be logits (in place): a row is read before the barrier
// of its maximum and written after that of its sum, and the row loaded ahead is another. Labels out of range give a
// NaN loss. When `mean` is not null, the block that finishes last (a ticket, taken once a block: launch about as many
// blocks as the GPU holds at once) writes the mean loss there, summed in a fixed order. When `columnSums` is not null,
// block b writes the column sums of the dx of its rows into row b of it (`[grid, cols]` floats, for sum_partials: the
// gradient of the bias, formed from dx before it is rounded to D).
// CE_VECTORS 16-byte vectors a thread (the launch takes cols / (8 · CE_VECTORS) threads, GPUTrainer.crossEntropyGrid),
// CE_MIN_BLOCKS blocks a multiprocessor at least (the registers a thread may take).
#ifndef CE_VECTORS
#define CE_VECTORS 2
#endif
#ifndef CE_MIN_BLOCKS
#define CE_MIN_BLOCKS 2
#endif
template <class D> __device__ void cross_entropy_impl(const void* logits, const float* bias, const int* labels, void* dlogits,
                                                      float* losses, int rows, int cols, float gradScale, const float* state,
                                                      unsigned* ticket, float* mean, float* columnSums) {
  float scale = gradScale * (state ? state[2] : 1.f);
  bool vec = cols % 8 == 0 && cols <= 8 * CE_VECTORS * (int)blockDim.x && aligned16(logits) && aligned16(dlogits) && aligned16(bias);
  float* sumsRow = columnSums ? columnSums + (long)blockIdx.x * cols : nullptr;
  if (vec) {
    Raw8<D> ahead[CE_VECTORS];
    float sums[CE_VECTORS][8] = {};
    auto fetch = [&](int row) {
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) {
        int i = 8 * (threadIdx.x + k * blockDim.x);
        if (i < cols) ahead[k].load(logits, (long)row * cols + i);
      }
    };
    if (blockIdx.x < rows) fetch(blockIdx.x);
    for (int row = blockIdx.x; row < rows; row += gridDim.x) {
      const long base = (long)row * cols;
      float v[CE_VECTORS][8];
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) if (8 * (threadIdx.x + k * blockDim.x) < cols) ahead[k].unpack(v[k]);
      if (row + gridDim.x < rows) fetch(row + gridDim.x);
      int label = labels[row];
      bool valid = label >= 0 && label < cols;
      float xl = threadIdx.x == 0 && valid ? D::ld(logits, base + label) + (bias ? bias[label] : 0.f) : 0.f;
      float m = -INFINITY, s = 0.f;
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) {
        int i = 8 * (threadIdx.x + k * blockDim.x);
        if (i >= cols) break;
        if (bias) {
          float b[8];
          ld8<F32>(bias, i, b);
#pragma unroll
          for (int j = 0; j < 8; j++) v[k][j] += b[j];
        }
#pragma unroll
        for (int j = 0; j < 8; j++) m = fmaxf(m, v[k][j]);
      }
      m = block_max(m);
      const float mLog2 = -m * LOG2E;   // exp(x − m) = 2^(x·log2 e − m·log2 e): one FMA and the MUFU (−0.6% on gpt bf16)
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) {
        if (8 * (threadIdx.x + k * blockDim.x) >= cols) break;
#pragma unroll
        for (int j = 0; j < 8; j++) {
          v[k][j] = exp2_ftz(fmaf(v[k][j], LOG2E, mLog2));
          s += v[k][j];
        }
      }
      s = block_sum(s);
      float inv = 1.f / s;
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) {
        int i = 8 * (threadIdx.x + k * blockDim.x);
        if (i >= cols) break;
#pragma unroll
        for (int j = 0; j < 8; j++) {
          v[k][j] = (v[k][j] * inv - (i + j == label ? 1.f : 0.f)) * scale;
          sums[k][j] += v[k][j];
        }
        st8<D>(dlogits, base + i, v[k]);
      }
      if (threadIdx.x == 0) losses[row] = valid ? logf(s) + m - xl : NAN;
    }
    if (sumsRow) {
#pragma unroll
      for (int k = 0; k < CE_VECTORS; k++) {
        int i = 8 * (threadIdx.x + k * blockDim.x);
        if (i < cols) st8<F32>(sumsRow, i, sums[k]);
      }
    }
  } else {
    if (sumsRow) for (int i = threadIdx.x; i < cols; i += blockDim.x) sumsRow[i] = 0.f;
    for (int row = blockIdx.x; row < rows; row += gridDim.x) {
      const long base = (long)row * cols;
      int label = labels[row];
      bool valid = label >= 0 && label < cols;
      float xl = threadIdx.x == 0 && valid ? D::ld(logits, base + label) + (bias ? bias[label] : 0.f) : 0.f;
      float m = -INFINITY, s = 0.f;
      for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, D::ld(logits, base + i) + (bias ? bias[i] : 0.f));
      m = block_max(m);
      for (int i = threadIdx.x; i < cols; i += blockDim.x) s += expf(D::ld(logits, base + i) + (bias ? bias[i] : 0.f) - m);
      s = block_sum(s);
      float inv = 1.f / s;
      for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float g = (expf(D::ld(logits, base + i) + (bias ? bias[i] : 0.f) - m) * inv - (i == label ? 1.f : 0.f)) * scale;
        D::st(dlogits, base + i, g);
        if (sumsRow) sumsRow[i] += g;
      }
      if (threadIdx.x == 0) losses[row] = valid ? logf(s) + m - xl : NAN;
    }
  }
  if (mean) mean_loss(losses, rows, ticket, gridDim.x, mean);
}
INSTANTIATE_BOUNDED(cross_entropy, (1024 / CE_VECTORS, CE_MIN_BLOCKS), (const void* logits, const float* bias, const int* labels, void* dlogits, float* losses, int rows, int cols, float gradScale, const float* state, unsigned* ticket, float* mean, float* columnSums),
                    (logits, bias, labels, dlogits, losses, rows, cols, gradScale, state, ticket, mean, columnSums))

// A narrow classifier head: logits = a·Wᵀ + b over at most HEAD_CLASSES classes and the softmax cross-entropy of
// cross_entropy (losses, the mean through a ticket, dlogits in D for the weight gradient and in fp32 for the input's
// gradient, which act_backward_product forms as dlogits·W with the mask of the layer below): where the GEMM path takes a
// GEMM too small to fill the GPU and the loss kernel. Grid (splits, row groups): a block takes HEAD_ROWS rows and
// 8·blockDim.x of the k inputs, eight a thread (k a multiple of 8, rows of a and W 16-byte aligned), so W is read once
// a row group, each slice of it by one block. With one split the block finishes its rows; else it leaves its partial
// logits in partial[split, row, class] and the last block of the row group (a ticket) adds them in split order. fp32
// sums; the logits are not rounded to D.
#define HEAD_CLASSES 16   // GPUTrainer.headClasses and headRows
#define HEAD_ROWS 4
template <class D> __device__ void head_cross_entropy_impl(const void* a, const void* w, const float* bias, const int* labels, void* dlogits,
                                                           float* dlogits32, float* losses, float* partial, int rows, int classes, int k,
                                                           float gradScale, const float* state, unsigned* tickets, float* mean) {
  __shared__ float part[8][HEAD_ROWS * HEAD_CLASSES];   // one row of sums a warp
  __shared__ float z[HEAD_ROWS][HEAD_CLASSES];          // logits
  float scale = gradScale * (state ? state[2] : 1.f);
  int r0 = blockIdx.y * HEAD_ROWS, nr = min(HEAD_ROWS, rows - r0), i = 8 * (blockIdx.x * blockDim.x + threadIdx.x);
  float s[HEAD_ROWS * HEAD_CLASSES];   // [row][class]
#pragma unroll
  for (int q = 0; q < HEAD_ROWS * HEAD_CLASSES; q++) s[q] = 0.f;
  if (i < k) {
    float x[HEAD_ROWS][8];
#pragma unroll
    for (int r = 0; r < HEAD_ROWS; r++) {
      if (r < nr) ld8<D>(a, (long)(r0 + r) * k + i, x[r]);
      else for (int j = 0; j < 8; j++) x[r][j] = 0.f;
    }
    // W's rows HEAD_LOADS at a time, their loads issued together.
#pragma unroll
    for (int c0 = 0; c0 < HEAD_CLASSES; c0 += HEAD_LOADS) {
      if (c0 >= classes) break;
      float v[HEAD_LOADS][8];
      ld_head_rows<D>(w, k, i, c0, classes, v);
#pragma unroll
      for (int q = 0; q < HEAD_LOADS; q++)
#pragma unroll
        for (int r = 0; r < HEAD_ROWS; r++)
#pragma unroll
          for (int j = 0; j < 8; j++) s[r * HEAD_CLASSES + c0 + q] += x[r][j] * v[q][j];
    }
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  constexpr int spread = HEAD_ROWS * HEAD_CLASSES / 32;
  warp_sum_spread<HEAD_ROWS * HEAD_CLASSES>(s);
#pragma unroll
  for (int j = 0; j < spread; j++) part[warp][lane * spread + j] = s[j];
  __syncthreads();
  int splits = gridDim.x, t = threadIdx.x, tr = t / HEAD_CLASSES, tc = t % HEAD_CLASSES;
  float sum = 0.f;
  if (t < HEAD_ROWS * HEAD_CLASSES) for (int q = 0; q < warps; q++) sum += part[q][t];   // warps in order: deterministic
  if (splits > 1) {
    if (t < HEAD_ROWS * HEAD_CLASSES && tr < nr) partial[((long)blockIdx.x * rows + r0 + tr) * HEAD_CLASSES + tc] = sum;
    if (!last_ticket(tickets + blockIdx.y, splits)) return;
    if (t < HEAD_ROWS * HEAD_CLASSES && tr < nr) {
      sum = 0.f;
      for (int q = 0; q < splits; q++) sum += __ldcg(partial + ((long)q * rows + r0 + tr) * HEAD_CLASSES + tc);
    }
  }
  if (t < HEAD_ROWS * HEAD_CLASSES) z[tr][tc] = tc < classes ? sum + (bias ? bias[tc] : 0.f) : 0.f;
  __syncthreads();
  if (t < nr) {
    int row = r0 + t, label = labels[row];
    bool valid = label >= 0 && label < classes;
    float m = -INFINITY, e = 0.f;
    for (int c = 0; c < classes; c++) m = fmaxf(m, z[t][c]);
    for (int c = 0; c < classes; c++) e += expf(z[t][c] - m);
    losses[row] = valid ? logf(e) + m - z[t][label] : NAN;
    float inv = 1.f / e;
    for (int c = 0; c < classes; c++) {
      float g = (expf(z[t][c] - m) * inv - (c == label ? 1.f : 0.f)) * scale;
      D::st(dlogits, (long)row * classes + c, g);
      dlogits32[(long)row * classes + c] = g;
    }
  }
  if (mean) mean_loss(losses, rows, tickets + gridDim.y, gridDim.y, mean);
}
INSTANTIATE_BOUNDED(head_cross_entropy, (256), (const void* a, const void* w, const float* bias, const int* labels, void* dlogits, float* dlogits32,
                                                float* losses, float* partial, int rows, int classes, int k, float gradScale, const float* state,
                                                unsigned* tickets, float* mean),
                    (a, w, bias, labels, dlogits, dlogits32, losses, partial, rows, classes, k, gradScale, state, tickets, mean))

// Mean squared error terms: loss[i] = (p - t)^2; dp = 2 (p - t) * scale.
template <class D> __device__ void mse_impl(const void* pred, const float* target, void* dpred, float* losses, long n,
                                            float gradScale, const float* state) {
  float scale = gradScale * (state ? state[2] : 1.f);
  GRID_STRIDE(i, n) {
    float d = D::ld(pred, i) - target[i];
    losses[i] = d * d;
    D::st(dpred, i, 2.f * d * scale);
  }
}
INSTANTIATE(mse, (const void* pred, const float* target, void* dpred, float* losses, long n, float gradScale, const float* state),
            (pred, target, dpred, losses, n, gradScale, state))

// out[0] = sum(x) * scale, one block (deterministic order).
extern "C" __global__ void sum_scaled(const float* x, long n, float scale, float* out) { PDL_ENTRY();
  float s = 0.f;
  for (long i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = s * scale;
}
"""#

    // MARK: - Optimizers, clipping, loss scaling

    static let optimizers = #"""
// Holds the stream for `ns` nanoseconds (one thread): work queued behind it starts together once it ends, so the
// host's time to queue that work is not timed with it (GEMM algorithms timed back to back).
extern "C" __global__ void spin_wait(long long ns) { PDL_ENTRY();
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while ((long long)(now - start) < ns);
}
// Step state (floats): [0] gradient multiplier (1 / loss scale × clip coefficient), [1] non-finite
// gradients found, [2] loss scale, [3] global gradient norm (unscaled), [4] clean steps since the
// last change of scale, [5] optimizer steps taken (AdamW's t).

// PyTorch SGD: g' = g·mult + wd·p; buf = momentum·buf + (1 - dampening)·g' (buf starts at 0, so
// dampening must be 0 for the first step to match); g'' = nesterov ? g' + momentum·buf : buf;
// p -= lr·g''. Writes the low-precision copy of p when `shadow` is not null.
// How an element keeps its momentum (SGD_*):
// - PLAIN: as above.
// - FOLDED: the weight-gradient GEMM folded its momentum in (buf = momentum·buf + g, cuBLAS's beta; only with mult 1,
//   dampening 0, no Nesterov): it reads no gradient, and buf += wd·p finishes its buf (written back only when wd ≠ 0).
// - SCALED: its slot holds momentum·buf, not buf (momentum ≠ 0; 0 before the first step, as buf), so that a gradient
//   formed by scattered additions (the token embedding's) can be added into the slot itself: no zeroed gradient to write
//   and read back. The gradient is in g; SCALED_IN_SLOT: added into the slot already (a folding step: mult 1, dampening 0,
//   no Nesterov).
enum SGDKind { SGD_PLAIN, SGD_FOLDED, SGD_SCALED, SGD_SCALED_IN_SLOT };
__device__ __forceinline__ float sgd_one(float w, float g, float* m, int kind, float mult, float lr, float momentum,
                                         float dampening, float wd, int nesterov) {
  if (kind == SGD_FOLDED) {
    *m += wd * w;
    return w - lr * *m;
  }
  if (kind == SGD_SCALED_IN_SLOT) {
    float b = *m + wd * w;
    *m = momentum * b;
    return w - lr * b;
  }
  float d = g * mult + wd * w;
  if (momentum != 0.f) {
    float b = (kind == SGD_SCALED ? *m : momentum * *m) + (1.f - dampening) * d;
    *m = kind == SGD_SCALED ? momentum * b : b;
    d = nesterov ? d + momentum * b : b;
  }
  return w - lr * d;
}
// The kind of element i: FOLDED from `folded` on, SCALED (or SCALED_IN_SLOT, with `inSlot`) in [scaledFrom, scaledTo).
__device__ __forceinline__ int sgd_kind(long i, long folded, long scaledFrom, long scaledTo, int inSlot) {
  return i >= folded ? SGD_FOLDED : i >= scaledFrom && i < scaledTo ? (inSlot ? SGD_SCALED_IN_SLOT : SGD_SCALED) : SGD_PLAIN;
}
__device__ __forceinline__ bool sgd_reads_gradient(int kind) { return kind == SGD_PLAIN || kind == SGD_SCALED; }
__device__ __forceinline__ bool sgd_writes_slot(int kind, float momentum, float wd) {
  return momentum != 0.f && (kind != SGD_FOLDED || wd != 0.f);
}
template <class D> __device__ void sgd_impl(float* p, const float* g, float* m, void* shadow, long n, long folded, long scaledFrom,
                                            long scaledTo, int inSlot, float lr, float momentum, float dampening, float wd,
                                            int nesterov, const float* state) {
  if (state && state[1] != 0.f) return;
  float mult = state ? state[0] : 1.f;
  GRID_STRIDE(i, n) {
    int kind = sgd_kind(i, folded, scaledFrom, scaledTo, inSlot);
    float mm = momentum != 0.f ? m[i] : 0.f;
    float w = sgd_one(p[i], sgd_reads_gradient(kind) ? g[i] : 0.f, &mm, kind, mult, lr, momentum, dampening, wd, nesterov);
    if (sgd_writes_slot(kind, momentum, wd)) m[i] = mm;
    p[i] = w;
    if (shadow) D::st(shadow, i, w);
  }
}
INSTANTIATE(sgd, (float* p, const float* g, float* m, void* shadow, long n, long folded, long scaledFrom, long scaledTo, int inSlot,
                  float lr, float momentum, float dampening, float wd, int nesterov, const float* state),
            (p, g, m, shadow, n, folded, scaledFrom, scaledTo, inSlot, lr, momentum, dampening, wd, nesterov, state))

// The same SGD, four parameters a thread with 16-byte loads and stores (n and the bounds multiples of 4, the
// pointers 16-byte aligned, a 16-bit shadow's four values one 8-byte store): the optimizer is memory-bound, so wide
// accesses are its speed.
template <class D> __device__ void sgd4_impl(float* p, const float* g, float* m, void* shadow, long n, long folded, long scaledFrom,
                                             long scaledTo, int inSlot, float lr, float momentum, float dampening, float wd,
                                             int nesterov, const float* state) {
  if (state && state[1] != 0.f) return;
  float mult = state ? state[0] : 1.f;
  GRID_STRIDE(j, n / 4) {
    int kind = sgd_kind(4 * j, folded, scaledFrom, scaledTo, inSlot);
    float4 w = ((const float4*)p)[j];
    float4 gg = sgd_reads_gradient(kind) ? ((const float4*)g)[j] : make_float4(0.f, 0.f, 0.f, 0.f);
    float4 mm = momentum != 0.f ? ((const float4*)m)[j] : make_float4(0.f, 0.f, 0.f, 0.f);
    w.x = sgd_one(w.x, gg.x, &mm.x, kind, mult, lr, momentum, dampening, wd, nesterov);
    w.y = sgd_one(w.y, gg.y, &mm.y, kind, mult, lr, momentum, dampening, wd, nesterov);
    w.z = sgd_one(w.z, gg.z, &mm.z, kind, mult, lr, momentum, dampening, wd, nesterov);
    w.w = sgd_one(w.w, gg.w, &mm.w, kind, mult, lr, momentum, dampening, wd, nesterov);
    ((float4*)p)[j] = w;
    if (sgd_writes_slot(kind, momentum, wd)) ((float4*)m)[j] = mm;
    if constexpr (sizeof(typename D::T) == 2) {
      if (shadow) *(uint2*)((u16*)shadow + 4L * j) = make_uint2(pack2<D>(w.x, w.y), pack2<D>(w.z, w.w));
    } else if (shadow) {
      *(float4*)((float*)shadow + 4L * j) = w;
    }
  }
}
INSTANTIATE(sgd4, (float* p, const float* g, float* m, void* shadow, long n, long folded, long scaledFrom, long scaledTo, int inSlot,
                   float lr, float momentum, float dampening, float wd, int nesterov, const float* state),
            (p, g, m, shadow, n, folded, scaledFrom, scaledTo, inSlot, lr, momentum, dampening, wd, nesterov, state))

// AdamW (Loshchilov & Hutter, 2019), PyTorch's form: p -= lr·wd·p; m = β1 m + (1-β1) g;
// v = β2 v + (1-β2) g²; p -= lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + eps). t = state[5] + 1.
template <class D> __device__ void adamw_impl(float* p, const float* g, float* m, float* v, void* shadow, long n, float lr,
                                              float beta1, float beta2, float eps, float wd, float t0, const float* state) {
  if (state && state[1] != 0.f) return;
  float mult = state ? state[0] : 1.f;
  float t = (state ? state[5] : t0) + 1.f;
  float c1 = 1.f - powf(beta1, t), c2 = 1.f - powf(beta2, t);
  GRID_STRIDE(i, n) {
    float w = p[i] * (1.f - lr * wd);
    float gi = g[i] * mult;
    float mi = beta1 * m[i] + (1.f - beta1) * gi;
    float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi; v[i] = vi;
    w -= lr * (mi / c1) / (sqrtf(vi / c2) + eps);
    p[i] = w;
    if (shadow) D::st(shadow, i, w);
  }
}
INSTANTIATE(adamw, (float* p, const float* g, float* m, float* v, void* shadow, long n, float lr, float beta1, float beta2, float eps, float wd, float t0, const float* state),
            (p, g, m, v, shadow, n, lr, beta1, beta2, eps, wd, t0, state))

// Sum of squares of g (times state[0]² when given) into partial[blockIdx.x]; flags non-finite values in state[1].
extern "C" __global__ void sum_squares(const float* g, long n, float* partial, float* state) { PDL_ENTRY();
  float s = 0.f;
  int bad = 0;
  GRID_STRIDE(i, n) { float v = g[i]; if (!isfinite(v)) bad = 1; s += v * v; }
  s = block_sum(s);
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) { partial[blockIdx.x] = s; if (bad && state) state[1] = 1.f; }
}

// From the partial sums: the global norm of the unscaled gradient, and the multiplier that
// unscales (1 / loss scale) and clips to maxNorm (maxNorm <= 0: no clipping). One block.
extern "C" __global__ void finish_norm(const float* partial, int count, float maxNorm, float* state) { PDL_ENTRY();
  float s = 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) {
    float inv = 1.f / state[2];
    float norm = sqrtf(s) * inv;
    state[3] = norm;
    float coef = (maxNorm > 0.f && norm > maxNorm) ? maxNorm / (norm + 1e-6f) : 1.f;
    state[0] = inv * coef;
  }
}

// After the optimizer: dynamic loss scaling (halve and skip on overflow; double after `interval`
// clean steps), count optimizer steps, clear the overflow flag. One thread.
extern "C" __global__ void finish_step(float* state, int dynamic, float interval) { PDL_ENTRY();
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (state[1] != 0.f) {
    if (dynamic) { state[2] *= 0.5f; state[4] = 0.f; }
  } else {
    state[5] += 1.f;
    if (dynamic) { state[4] += 1.f; if (state[4] >= interval) { state[2] *= 2.f; state[4] = 0.f; } }
  }
  state[1] = 0.f;
  state[0] = 1.f / state[2];
}
"""#

    // MARK: - Transformer pieces

    static let transformer = #"""
// LayerNorm pieces: a row of cols ≤ 512 (a multiple of 4) is one warp; lane l holds the column groups
// l, l + 32, l + 64, l + 96 of four adjacent columns each (16 values in registers), so x and dx move 16 bytes
// and 16-bit values 8 bytes a load.
template <class D> struct Quad;
template <> struct Quad<F32> {
  static __device__ __forceinline__ float4 ld(const void* p, long i) { return *(const float4*)((const float*)p + i); }
  static __device__ __forceinline__ void st(void* p, long i, float4 v) { *(float4*)((float*)p + i) = v; }
};
template <class D> struct Quad16 {
  static __device__ __forceinline__ float4 ld(const void* p, long i) {
    uint2 u = *(const uint2*)((const u16*)p + i);
    typename D::T q[4] = {(u16)(u.x & 0xffff), (u16)(u.x >> 16), (u16)(u.y & 0xffff), (u16)(u.y >> 16)};
    return make_float4(D::ld(q, 0), D::ld(q, 1), D::ld(q, 2), D::ld(q, 3));
  }
  static __device__ __forceinline__ void st(void* p, long i, float4 v) {
    u16 q[4]; D::st(q, 0, v.x); D::st(q, 1, v.y); D::st(q, 2, v.z); D::st(q, 3, v.w);
    *(uint2*)((u16*)p + i) = make_uint2((unsigned)q[0] | ((unsigned)q[1] << 16), (unsigned)q[2] | ((unsigned)q[3] << 16));
  }
};
template <> struct Quad<BF16> : Quad16<BF16> {};
template <> struct Quad<F16> : Quad16<F16> {};
__device__ __forceinline__ float q_at(float4 v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// The LayerNorm of one row held by a warp (v: the lane's column groups, as loaded below; zeros past cols) into y
// (weight w, bias b) with the row's mean and rstd kept for backward.
template <class D> __device__ __forceinline__ void layernorm_row(const float4* v, const float* w, const float* b, void* y,
                                                                 float* mean, float* rstd, int row, int lane, int cols) {
  long base = (long)row * cols;
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < 4; k++) s += v[k].x + v[k].y + v[k].z + v[k].w;
  float mu = warp_sum(s) / cols;
  float q = 0.f;
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    if (i < cols) for (int j = 0; j < 4; j++) { float d = q_at(v[k], j) - mu; q += d * d; }
  }
  float r = rsqrtf(warp_sum(q) / cols + 1e-5f);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    if (i >= cols) continue;
    float4 wv = Quad<F32>::ld(w, i), bv = Quad<F32>::ld(b, i);
    Quad<D>::st(y, base + i, make_float4((v[k].x - mu) * r * wv.x + bv.x, (v[k].y - mu) * r * wv.y + bv.y,
                                         (v[k].z - mu) * r * wv.z + bv.z, (v[k].w - mu) * r * wv.w + bv.w));
  }
  if (lane == 0) { mean[row] = mu; rstd[row] = r; }
}

// LayerNorm forward: x float, y in D; mean and rstd kept for backward. 8 rows (warps) a block.
template <class D> __device__ void layernorm_fwd_impl(const float* x, const float* w, const float* b, void* y, float* mean,
                                                      float* rstd, int rows, int cols) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  long base = (long)row * cols;
  float4 v[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    v[k] = i < cols ? Quad<F32>::ld(x, base + i) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  layernorm_row<D>(v, w, b, y, mean, rstd, row, lane, cols);
}
INSTANTIATE(layernorm_fwd, (const float* x, const float* w, const float* b, void* y, float* mean, float* rstd, int rows, int cols),
            (x, w, b, y, mean, rstd, rows, cols))

// residual_add then layernorm_fwd in one pass: out = x + y (+ b) (float, the residual stream kept for backward;
// out may be x; y in D; b may be null), and the LayerNorm of out (weight lw, bias lb) into ln in D with mean and
// rstd. The row stays in registers (the layout and order of additions of layernorm_fwd: the same bits as the two
// kernels). 8 rows (warps) a block.
template <class D> __device__ void residual_layernorm_fwd_impl(const float* x, const void* y, const float* b, float* out,
                                                               const float* lw, const float* lb, void* ln, float* mean,
                                                               float* rstd, int rows, int cols) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  long base = (long)row * cols;
  // Every load before the first store: out may be x, so the compiler may not move a load above a store, and loads
  // interleaved with stores would wait for memory four times instead of once.
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  float4 v[4], c[4], bb[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    v[k] = c[k] = bb[k] = zero;
    if (i >= cols) continue;
    v[k] = Quad<F32>::ld(x, base + i); c[k] = Quad<D>::ld(y, base + i);
    if (b) bb[k] = Quad<F32>::ld(b, i);
  }
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    if (i >= cols) continue;
    v[k] = make_float4(v[k].x + c[k].x + bb[k].x, v[k].y + c[k].y + bb[k].y, v[k].z + c[k].z + bb[k].z, v[k].w + c[k].w + bb[k].w);
    Quad<F32>::st(out, base + i, v[k]);
  }
  layernorm_row<D>(v, lw, lb, ln, mean, rstd, row, lane, cols);
}
INSTANTIATE(residual_layernorm_fwd, (const float* x, const void* y, const float* b, float* out, const float* lw, const float* lb,
                                     void* ln, float* mean, float* rstd, int rows, int cols),
            (x, y, b, out, lw, lb, ln, mean, rstd, rows, cols))

// LayerNorm backward, one warp a row (warp w of the grid's W takes rows w, w + W, …): with g = dy·w,
// dx (+)= rstd·(g − mean(g) − x̂·mean(g·x̂)), also written in D to `dxCast` when not null (the operand the next
// GEMMs read: one pass fewer over the residual gradient). Beside it, the column sums of dy·x̂ (the weight's
// gradient), of dy (the bias's) and, with `sums`, of the new dx (the gradient of a bias added to the residual
// stream just before): each warp adds its rows into its own rows of shared memory, then the block adds its warps'
// rows in a fixed order and writes them as its row of partial sums, partial[block, (2 + sums)·cols].
// layernorm_bwd_finish adds the blocks' rows in a separate launch, which need not hold up the next GEMM.
// Deterministic, no atomics. LNB_WARPS warps a block, cols ≤ 512 (a multiple of 4).
constexpr int LNB_WARPS = 8;
template <class D> __device__ void layernorm_bwd_impl(const void* dy, const float* x, const float* w, const float* mean,
                                                      const float* rstd, float* dx, void* dxCast, float* partial, int rows,
                                                      int cols, int accumulate, int sums) {
  __shared__ __align__(16) float acc[LNB_WARPS][3][512];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  float (*mine)[512] = acc[warp];
  float4 wv[4];
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    wv[k] = i < cols ? Quad<F32>::ld(w, i) : zero;
#pragma unroll
    for (int part = 0; part < 3; part++) *(float4*)&mine[part][i] = zero;
  }
  // The row's loads first (dx is written in place, so the compiler may not move a load above a store), its mean and
  // rstd after them.
  for (int row = blockIdx.x * LNB_WARPS + warp; row < rows; row += gridDim.x * LNB_WARPS) {
    const long base = (long)row * cols;
    float4 dv[4], xv[4], ov[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
      int i = 4 * (lane + 32 * k);
      dv[k] = xv[k] = ov[k] = zero;
      if (i < cols) {
        dv[k] = Quad<D>::ld(dy, base + i); xv[k] = Quad<F32>::ld(x, base + i);
        if (accumulate) ov[k] = Quad<F32>::ld(dx, base + i);
      }
    }
    const float mu = mean[row], r = rstd[row];
    float s1 = 0.f, s2 = 0.f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
#pragma unroll
      for (int j = 0; j < 4; j++) {
        float g = q_at(dv[k], j) * q_at(wv[k], j);
        s1 += g; s2 += g * ((q_at(xv[k], j) - mu) * r);
      }
    }
    s1 = warp_sum(s1) / cols;
    s2 = warp_sum(s2) / cols;
#pragma unroll
    for (int k = 0; k < 4; k++) {
      int i = 4 * (lane + 32 * k);
      if (i >= cols) continue;
      float out[4], gw[4], gb[4];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        float gy = q_at(dv[k], j), xh = (q_at(xv[k], j) - mu) * r;
        out[j] = r * (gy * q_at(wv[k], j) - s1 - xh * s2);
        if (accumulate) out[j] = q_at(ov[k], j) + out[j];
        gw[j] = gy * xh; gb[j] = gy;
      }
      float4 o = make_float4(out[0], out[1], out[2], out[3]);
      Quad<F32>::st(dx, base + i, o);
      if (dxCast) Quad<D>::st(dxCast, base + i, o);
      float4* aw = (float4*)&mine[0][i], * ab = (float4*)&mine[1][i];
      *aw = make_float4(aw->x + gw[0], aw->y + gw[1], aw->z + gw[2], aw->w + gw[3]);
      *ab = make_float4(ab->x + gb[0], ab->y + gb[1], ab->z + gb[2], ab->w + gb[3]);
      if (sums) {
        float4* as = (float4*)&mine[2][i];
        *as = make_float4(as->x + o.x, as->y + o.y, as->z + o.z, as->w + o.w);
      }
    }
  }
  __syncthreads();
  const int width = (sums ? 3 : 2) * cols;
  float* mineRow = partial + (long)blockIdx.x * width;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    int part = c / cols, col = c - part * cols;
    float t = 0.f;
#pragma unroll
    for (int k = 0; k < LNB_WARPS; k++) t += acc[k][part][col];
    mineRow[c] = t;
  }
}
INSTANTIATE_BOUNDED(layernorm_bwd, (32 * LNB_WARPS, 3), (const void* dy, const float* x, const float* w, const float* mean, const float* rstd, float* dx, void* dxCast, float* partial, int rows, int cols, int accumulate, int sums),
                    (dy, x, w, mean, rstd, dx, dxCast, partial, rows, cols, accumulate, sums))

// The column sums layernorm_bwd left as `chunks` rows of partial sums [dw | db | ds] (ds when not null), written over
// dw, db and ds (column_total: deterministic). Block (32, R), a column a lane.
extern "C" __global__ void layernorm_bwd_finish(const float* partial, int chunks, int cols, float* dw, float* db, float* ds) { PDL_ENTRY();
  const int width = (ds ? 3 : 2) * cols, c = blockIdx.x * 32 + threadIdx.x;
  float t = column_total(partial, chunks, width, c);
  if (threadIdx.y != 0 || c >= width) return;
  int part = c / cols;
  (part == 0 ? dw : part == 1 ? db : ds)[c - part * cols] = t;
}

// The embedding, x[b, t] = wte[token] + wpe[t] (fp32: the residual stream's first rows), and its LayerNorm (the first
// block's ln1) into ln in D with mean and rstd, in one pass as residual_layernorm_fwd: one warp a row, 8 rows a block;
// the rows are whole sequences (t = row mod T), so a launch may start at any sequence. The same bits as the
// embedding's sum followed by layernorm_fwd. C ≤ 512, a multiple of 4.
template <class D> __device__ void embedding_layernorm_fwd_impl(const int* tokens, const float* wte, const float* wpe, float* x,
                                                                const float* lw, const float* lb, void* ln, float* mean,
                                                                float* rstd, int rows, int T, int cols) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (row >= rows) return;
  const long base = (long)row * cols, token = (long)tokens[row] * cols, position = (long)(row % T) * cols;
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  float4 v[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int i = 4 * (lane + 32 * k);
    v[k] = zero;
    if (i >= cols) continue;
    float4 e = Quad<F32>::ld(wte, token + i), p = Quad<F32>::ld(wpe, position + i);
    v[k] = make_float4(e.x + p.x, e.y + p.y, e.z + p.z, e.w + p.w);
    Quad<F32>::st(x, base + i, v[k]);
  }
  layernorm_row<D>(v, lw, lb, ln, mean, rstd, row, lane, cols);
}
INSTANTIATE(embedding_layernorm_fwd, (const int* tokens, const float* wte, const float* wpe, float* x, const float* lw, const float* lb,
                                      void* ln, float* mean, float* rstd, int rows, int T, int cols),
            (tokens, wte, wpe, x, lw, lb, ln, mean, rstd, rows, T, cols))

// Both embeddings' gradients from the residual stream's first gradient dx [B, T, C], reading it once: the position
// table's, dwpe[t] = Σ_b dx[b, t] (written over, added in b order: deterministic), and the token table's,
// dwte[token] += dx[b, t] (atomics: dwte zeroed first; 16-byte ones on sm_90 where the compiler has them, CUDA 12.8 on
// here, else four 4-byte ones). A thread a 4-column group of one position, EMB_BWD_ROWS of its B rows loaded before
// their atomics. C a multiple of 4.
#ifndef EMB_BWD_ROWS
#define EMB_BWD_ROWS 8
#endif
extern "C" __global__ void embedding_bwd(const int* tokens, const float* dx, float* dwpe, float* dwte, int B, int T, int C) { PDL_ENTRY();
  long n = (long)T * C / 4;
  GRID_STRIDE(i, n) {
    const long t = 4 * (long)i / C, c = 4 * (long)i % C;
    float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int b0 = 0; b0 < B; b0 += EMB_BWD_ROWS) {
      float4 d[EMB_BWD_ROWS];
      long at[EMB_BWD_ROWS];
#pragma unroll
      for (int j = 0; j < EMB_BWD_ROWS; j++) {
        if (b0 + j >= B) continue;
        const long bt = (long)(b0 + j) * T + t;
        d[j] = *(const float4*)(dx + bt * C + c);
        at[j] = (long)tokens[bt] * C + c;
      }
#pragma unroll
      for (int j = 0; j < EMB_BWD_ROWS; j++) {
        if (b0 + j >= B) continue;
        s = make_float4(s.x + d[j].x, s.y + d[j].y, s.z + d[j].z, s.w + d[j].w);
#if __CUDA_ARCH__ >= 900 && (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 8))
        atomicAdd((float4*)(dwte + at[j]), d[j]);
#else
        atomicAdd(dwte + at[j], d[j].x); atomicAdd(dwte + at[j] + 1, d[j].y);
        atomicAdd(dwte + at[j] + 2, d[j].z); atomicAdd(dwte + at[j] + 3, d[j].w);
#endif
      }
    }
    *(float4*)(dwpe + 4 * (long)i) = s;
  }
}

// qkv [B, T, 3, H, hd] → q, k, v each [B, H, T, hd]; inverse when `backward` (q, k, v → qkv).
template <class D> __device__ void split_heads_impl(void* qkv, void* q, void* k, void* v, int B, int T, int H, int hd, int backward) {
  long C = (long)H * hd, n = (long)B * T * C;
  GRID_STRIDE(i, n) {
    int d = i % hd; int r = i / hd; int h = r % H; r /= H; int t = r % T; int b = r / T;
    long src = ((long)b * T + t) * 3 * C + (long)h * hd + d;
    long dst = (((long)b * H + h) * T + t) * hd + d;
    if (backward) {
      D::st(qkv, src, D::ld(q, dst)); D::st(qkv, src + C, D::ld(k, dst)); D::st(qkv, src + 2 * C, D::ld(v, dst));
    } else {
      D::st(q, dst, D::ld(qkv, src)); D::st(k, dst, D::ld(qkv, src + C)); D::st(v, dst, D::ld(qkv, src + 2 * C));
    }
  }
}
INSTANTIATE(split_heads, (void* qkv, void* q, void* k, void* v, int B, int T, int H, int hd, int backward),
            (qkv, q, k, v, B, T, H, hd, backward))

// The same two permutations moved 16 bytes at a time (hdv = hd · element bytes / 16 chunks per
// head row): a pure copy, so one kernel serves every element type.
extern "C" __global__ void split_heads_vec(uint4* qkv, uint4* q, uint4* k, uint4* v, int B, int T, int H, int hdv, int backward) { PDL_ENTRY();
  long Cv = (long)H * hdv;
  GRID_STRIDE(i, (long)B * T * H * hdv) {
    int d = i % hdv; int r = i / hdv; int h = r % H; r /= H; int t = r % T; int b = r / T;
    long src = ((long)(b * T + t) * 3 * H + h) * hdv + d;
    long dst = ((long)(b * H + h) * T + t) * hdv + d;
    if (backward) { qkv[src] = q[dst]; qkv[src + Cv] = k[dst]; qkv[src + 2 * Cv] = v[dst]; }
    else { q[dst] = qkv[src]; k[dst] = qkv[src + Cv]; v[dst] = qkv[src + 2 * Cv]; }
  }
}
extern "C" __global__ void merge_heads_vec(uint4* o, uint4* y, int B, int T, int H, int hdv, int backward) { PDL_ENTRY();
  GRID_STRIDE(i, (long)B * T * H * hdv) {
    int d = i % hdv; int r = i / hdv; int h = r % H; r /= H; int t = r % T; int b = r / T;
    long yi = ((long)(b * T + t) * H + h) * hdv + d;
    long oi = ((long)(b * H + h) * T + t) * hdv + d;
    if (backward) o[oi] = y[yi]; else y[yi] = o[oi];
  }
}

// o [B, H, T, hd] ↔ y [B, T, H·hd]; `backward` copies y's layout into o's.
template <class D> __device__ void merge_heads_impl(void* o, void* y, int B, int T, int H, int hd, int backward) {
  long C = (long)H * hd, n = (long)B * T * C;
  GRID_STRIDE(i, n) {
    int d = i % hd; int r = i / hd; int h = r % H; r /= H; int t = r % T; int b = r / T;
    long yi = ((long)b * T + t) * C + (long)h * hd + d;
    long oi = (((long)b * H + h) * T + t) * hd + d;
    if (backward) D::st(o, oi, D::ld(y, yi)); else D::st(y, yi, D::ld(o, oi));
  }
}
INSTANTIATE(merge_heads, (void* o, void* y, int B, int T, int H, int hd, int backward), (o, y, B, T, H, hd, backward))

// Causal softmax in place over rows of length T (row index % T = query position t: keys 0..t).
// One warp per row.
template <class D> __device__ void causal_softmax_impl(void* s, long rows, int T) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int t = row % T;
  long base = (long)row * T;
  float m = -INFINITY;
  for (int j = lane; j <= t; j += 32) m = fmaxf(m, D::ld(s, base + j));
  m = warp_max(m);
  float sum = 0.f;
  for (int j = lane; j <= t; j += 32) sum += expf(D::ld(s, base + j) - m);
  sum = warp_sum(sum);
  float inv = 1.f / sum;
  for (int j = lane; j < T; j += 32) D::st(s, base + j, j <= t ? expf(D::ld(s, base + j) - m) * inv : 0.f);
}
INSTANTIATE(causal_softmax, (void* s, long rows, int T), (s, rows, T))

// dS = P ⊙ (dP − Σ P·dP), written over dP.
template <class D> __device__ void causal_softmax_bwd_impl(const void* p, void* dp, long rows, int T) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int t = row % T;
  long base = (long)row * T;
  float s = 0.f;
  for (int j = lane; j <= t; j += 32) s += D::ld(p, base + j) * D::ld(dp, base + j);
  s = warp_sum(s);
  for (int j = lane; j < T; j += 32) {
    float pj = D::ld(p, base + j);
    D::st(dp, base + j, j <= t ? pj * (D::ld(dp, base + j) - s) : 0.f);
  }
}
INSTANTIATE(causal_softmax_bwd, (const void* p, void* dp, long rows, int T), (p, dp, rows, T))
"""#

    // MARK: - Convolution and pooling (NCHW)

    static let convolution = #"""
// The convolution kernels run on a grid (pixels of one plane / blockDim.x, rows, images):
// everything but the pixel index is uniform in a block, so a thread does one division.
//
// im2col: col[(c·K + ky)·K + kx, (n·H + oy)·W + ox] = x[n, c, oy + ky − pad, ox + kx − pad]
// (0 outside). Grid (⌈H·W / blockDim.x⌉, C·K·K, N).
template <class D> __device__ void im2col_impl(const void* x, void* col, int N, int C, int H, int W, int K, int pad) {
  int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  int r = blockIdx.y, b = blockIdx.z;
  int kx = r % K, ky = (r / K) % K, c = r / (K * K);
  int oy = p / W, ox = p - oy * W;
  int iy = oy + ky - pad, ix = ox + kx - pad;
  float v = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? D::ld(x, ((long)(b * C + c) * H + iy) * W + ix) : 0.f;
  D::st(col, (long)r * N * H * W + (long)b * H * W + p, v);
}
INSTANTIATE(im2col, (const void* x, void* col, int N, int C, int H, int W, int K, int pad), (x, col, N, C, H, W, K, pad))

// The adjoint of im2col: dx[n, c, y, x] = Σ over (ky, kx) of dcol at the output that read it.
// Grid (⌈H·W / blockDim.x⌉, C, N).
template <class D> __device__ void col2im_impl(const void* dcol, void* dx, int N, int C, int H, int W, int K, int pad) {
  int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  int c = blockIdx.y, b = blockIdx.z;
  int iy = p / W, ix = p - iy * W;
  long cols = (long)N * H * W;
  float s = 0.f;
  for (int ky = 0; ky < K; ky++) for (int kx = 0; kx < K; kx++) {
    int oy = iy - ky + pad, ox = ix - kx + pad;
    if (oy >= 0 && oy < H && ox >= 0 && ox < W)
      s += D::ld(dcol, (long)((c * K + ky) * K + kx) * cols + ((long)b * H + oy) * W + ox);
  }
  D::st(dx, (long)(b * C + c) * H * W + p, s);
}
INSTANTIATE(col2im, (const void* dcol, void* dx, int N, int C, int H, int W, int K, int pad), (dcol, dx, N, C, H, W, K, pad))

// y[c, n·HW] (GEMM output) + bias, ReLU → out[n, c, hw] (NCHW). Grid (⌈HW / blockDim.x⌉, C, N).
template <class D> __device__ void conv_out_impl(const void* y, const float* b, void* out, int N, int C, int HW) {
  int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= HW) return;
  int c = blockIdx.y, n = blockIdx.z;
  D::st(out, (long)(n * C + c) * HW + p, fmaxf(D::ld(y, (long)c * N * HW + (long)n * HW + p) + b[c], 0.f));
}
INSTANTIATE(conv_out, (const void* y, const float* b, void* out, int N, int C, int HW), (y, b, out, N, C, HW))

// d(NCHW) masked by ReLU of out → dy[c, n·HW] (GEMM layout). Grid (⌈HW / blockDim.x⌉, C, N).
template <class D> __device__ void conv_out_bwd_impl(const void* dout, const void* out, void* dy, int N, int C, int HW) {
  int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= HW) return;
  int c = blockIdx.y, n = blockIdx.z;
  long i = (long)(n * C + c) * HW + p;
  D::st(dy, (long)c * N * HW + (long)n * HW + p, D::ld(out, i) > 0.f ? D::ld(dout, i) : 0.f);
}
INSTANTIATE(conv_out_bwd, (const void* dout, const void* out, void* dy, int N, int C, int HW), (dout, out, dy, N, C, HW))

// The cuDNN path's epilogue, in place on cuDNN's NCHW output: y = max(y + b[c], 0). Grid (⌈HW / blockDim.x⌉, C, N).
template <class D> __device__ void bias_relu_nchw_impl(void* y, const float* b, int C, int HW) {
  int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= HW) return;
  int c = blockIdx.y, n = blockIdx.z;
  long i = (long)(n * C + c) * HW + p;
  D::st(y, i, fmaxf(D::ld(y, i) + b[c], 0.f));
}
INSTANTIATE(bias_relu_nchw, (void* y, const float* b, int C, int HW), (y, b, C, HW))

// The cuDNN path's backward epilogue, in place on NCHW: dy *= (out > 0), and partial[chunk, c] = the sum of
// the masked dy over this chunk's images (the bias gradient, finished by sum_partials). Grid (C, chunks).
template <class D> __device__ void relu_bwd_channel_sums_impl(void* dy, const void* out, float* partial, int N, int C, int HW) {
  int c = blockIdx.x;
  int per = (N + gridDim.y - 1) / gridDim.y;
  int n0 = blockIdx.y * per, n1 = min(N, n0 + per);
  int count = max(0, n1 - n0) * HW;
  float s = 0.f;
  for (int k = threadIdx.x; k < count; k += blockDim.x) {
    int q = k / HW;
    long i = (long)((n0 + q) * C + c) * HW + (k - q * HW);
    float v = D::ld(out, i) > 0.f ? D::ld(dy, i) : 0.f;
    D::st(dy, i, v);
    s += v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[(long)blockIdx.y * C + c] = s;
}
INSTANTIATE(relu_bwd_channel_sums, (void* dy, const void* out, float* partial, int N, int C, int HW), (dy, out, partial, N, C, HW))

// The cuDNN path before a 2×2 max-pool: pooled = the window's max of relu(y + b[c]) = relu(max(y) + b[c]), with
// the argmax kept; the full-size activation is never written. One thread per pooled element; y NCHW [NC, H, W].
template <class D> __device__ void bias_relu_maxpool_impl(const void* y, const float* b, void* pooled, unsigned char* arg, int NC, int C, int H, int W) {
  int OH = H / 2, OW = W / 2;
  long n = (long)NC * OH * OW;
  GRID_STRIDE(i, n) {
    int ox = i % OW, oy = (i / OW) % OH, p = i / (OW * OH);
    long base = ((long)p * H + 2 * oy) * W + 2 * ox;
    float best = D::ld(y, base); int a = 0;
    float v1 = D::ld(y, base + 1), v2 = D::ld(y, base + W), v3 = D::ld(y, base + W + 1);
    if (v1 > best) { best = v1; a = 1; }
    if (v2 > best) { best = v2; a = 2; }
    if (v3 > best) { best = v3; a = 3; }
    D::st(pooled, i, fmaxf(best + b[p % C], 0.f)); arg[i] = (unsigned char)a;
  }
}
INSTANTIATE(bias_relu_maxpool, (const void* y, const float* b, void* pooled, unsigned char* arg, int NC, int C, int H, int W), (y, b, pooled, arg, NC, C, H, W))

// Its backward: dx (full size) = the pooled gradient masked by ReLU (pooled > 0) at each window's argmax, 0 elsewhere;
// partial[chunk, c] = the sum of the masked pooled gradient over this chunk's images (the bias gradient, finished
// by sum_partials). Grid (C, chunks).
template <class D> __device__ void maxpool_relu_bwd_sums_impl(const void* dpooled, const void* pooled, const unsigned char* arg, void* dx,
                                                               float* partial, int N, int C, int H, int W) {
  int c = blockIdx.x, OW = W / 2, OHW = (H / 2) * OW;
  int per = (N + gridDim.y - 1) / gridDim.y;
  int n0 = blockIdx.y * per, n1 = min(N, n0 + per);
  int count = max(0, n1 - n0) * OHW;
  float s = 0.f;
  for (int k = threadIdx.x; k < count; k += blockDim.x) {
    int q = k / OHW, o = k - q * OHW;
    long plane = (long)(n0 + q) * C + c, pi = plane * OHW + o;
    float g = D::ld(pooled, pi) > 0.f ? D::ld(dpooled, pi) : 0.f;
    s += g;
    int oy = o / OW, ox = o - oy * OW, a = arg[pi];
    long base = (plane * H + 2 * oy) * W + 2 * ox;
    D::st(dx, base, a == 0 ? g : 0.f); D::st(dx, base + 1, a == 1 ? g : 0.f);
    D::st(dx, base + W, a == 2 ? g : 0.f); D::st(dx, base + W + 1, a == 3 ? g : 0.f);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[(long)blockIdx.y * C + c] = s;
}
INSTANTIATE(maxpool_relu_bwd_sums, (const void* dpooled, const void* pooled, const unsigned char* arg, void* dx, float* partial, int N, int C, int H, int W),
            (dpooled, pooled, arg, dx, partial, N, C, H, W))

// C[m, n] (float) = Σ_k A[k, m] · B[k, n], for a linear layer's weight gradient with few outputs (cuBLAS spends
// ~50 µs on a 10×128×256 fp32 one): one thread per output, the K products in order. Grid (⌈N / blockDim.x⌉, M).
template <class D> __device__ void gemm_tn_small_impl(const void* A, const void* B, float* C, int M, int N, int K) {
  int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
  if (n >= N) return;
  float s = 0.f;
  #pragma unroll 8
  for (int k = 0; k < K; k++) s += D::ld(A, (long)k * M + m) * D::ld(B, (long)k * N + n);
  C[(long)m * N + n] = s;
}
INSTANTIATE(gemm_tn_small, (const void* A, const void* B, float* C, int M, int N, int K), (A, B, C, M, N, K))

// 2×2 max-pool, stride 2, NCHW; argmax (0..3) kept for backward.
template <class D> __device__ void maxpool_impl(const void* x, void* y, unsigned char* arg, int NC, int H, int W) {
  int OH = H / 2, OW = W / 2;
  long n = (long)NC * OH * OW;
  GRID_STRIDE(i, n) {
    int ox = i % OW, oy = (i / OW) % OH; long p = i / ((int)OW * OH);
    long base = (p * H + 2 * oy) * W + 2 * ox;
    float best = D::ld(x, base); int a = 0;
    float v1 = D::ld(x, base + 1), v2 = D::ld(x, base + W), v3 = D::ld(x, base + W + 1);
    if (v1 > best) { best = v1; a = 1; }
    if (v2 > best) { best = v2; a = 2; }
    if (v3 > best) { best = v3; a = 3; }
    D::st(y, i, best); arg[i] = (unsigned char)a;
  }
}
INSTANTIATE(maxpool, (const void* x, void* y, unsigned char* arg, int NC, int H, int W), (x, y, arg, NC, H, W))

template <class D> __device__ void maxpool_bwd_impl(const void* dy, const unsigned char* arg, void* dx, int NC, int H, int W) {
  long n = (long)NC * H * W;
  int OW = W / 2, OH = H / 2;
  GRID_STRIDE(i, n) {
    int ix = i % W, iy = (i / W) % H; long p = i / ((int)W * H);
    int ox = ix / 2, oy = iy / 2;
    float g = 0.f;
    if (ox < OW && oy < OH) {
      long o = (p * OH + oy) * OW + ox;
      if (arg[o] == (unsigned char)((iy & 1) * 2 + (ix & 1))) g = D::ld(dy, o);
    }
    D::st(dx, i, g);
  }
}
INSTANTIATE(maxpool_bwd, (const void* dy, const unsigned char* arg, void* dx, int NC, int H, int W), (dy, arg, dx, NC, H, W))

// Global average pool: y[p] = mean of x[p, :HW]; one warp per plane.
template <class D> __device__ void avgpool_impl(const void* x, void* y, int NC, int HW) {
  long p = blockIdx.x * (long)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (p >= NC) return;
  float s = 0.f;
  for (int j = lane; j < HW; j += 32) s += D::ld(x, p * HW + j);
  s = warp_sum(s);
  if (lane == 0) D::st(y, p, s / HW);
}
INSTANTIATE(avgpool, (const void* x, void* y, int NC, int HW), (x, y, NC, HW))

template <class D> __device__ void avgpool_bwd_impl(const void* dy, void* dx, int NC, int HW) {
  long n = (long)NC * HW;
  GRID_STRIDE(i, n) D::st(dx, i, D::ld(dy, i / HW) / HW);
}
INSTANTIATE(avgpool_bwd, (const void* dy, void* dx, int NC, int HW), (dy, dx, NC, HW))
"""#

    // MARK: - LSTM cell

    static let recurrent = #"""
__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }
// One time step. gates [B, 4H] (x·Wihᵀ + h·Whhᵀ, biases not yet added) in PyTorch's order i, f, g, o.
// c' = f·c + i·g; h' = o·tanh(c'). Keeps the activated gates (in place) and c' for backward.
template <class D> __device__ void lstm_cell_impl(void* gates, const float* bih, const float* bhh, const float* c, float* cOut,
                                                  void* h, int B, int H) {
  long n = (long)B * H;
  GRID_STRIDE(idx, n) {
    int b = idx / H, j = idx % H;
    long g0 = (long)b * 4 * H;
    float ig = sigm(D::ld(gates, g0 + j) + bih[j] + bhh[j]);
    float fg = sigm(D::ld(gates, g0 + H + j) + bih[H + j] + bhh[H + j]);
    float gg = tanhf(D::ld(gates, g0 + 2 * H + j) + bih[2 * H + j] + bhh[2 * H + j]);
    float og = sigm(D::ld(gates, g0 + 3 * H + j) + bih[3 * H + j] + bhh[3 * H + j]);
    float cn = fg * (c ? c[idx] : 0.f) + ig * gg;
    cOut[idx] = cn;
    D::st(h, idx, og * tanhf(cn));
    D::st(gates, g0 + j, ig); D::st(gates, g0 + H + j, fg); D::st(gates, g0 + 2 * H + j, gg); D::st(gates, g0 + 3 * H + j, og);
  }
}
INSTANTIATE(lstm_cell, (void* gates, const float* bih, const float* bhh, const float* c, float* cOut, void* h, int B, int H),
            (gates, bih, bhh, c, cOut, h, B, H))

// Backward of one step: from dh (D, may be null = 0) + dhNext (float) and dc (float, in/out),
// the pre-activation gate gradients dgates [B, 4H] (D) and dc for the step before.
template <class D> __device__ void lstm_cell_bwd_impl(const void* gates, const float* c, const float* cPrev, const void* dhOut,
                                                      float* dhNext, float* dc, void* dgates, int B, int H) {
  long n = (long)B * H;
  GRID_STRIDE(idx, n) {
    int b = idx / H, j = idx % H;
    long g0 = (long)b * 4 * H;
    float ig = D::ld(gates, g0 + j), fg = D::ld(gates, g0 + H + j), gg = D::ld(gates, g0 + 2 * H + j), og = D::ld(gates, g0 + 3 * H + j);
    float dh = dhNext[idx] + (dhOut ? D::ld(dhOut, idx) : 0.f);
    float tc = tanhf(c[idx]);
    float dcv = dc[idx] + dh * og * (1.f - tc * tc);
    float cp = cPrev ? cPrev[idx] : 0.f;
    D::st(dgates, g0 + j, dcv * gg * ig * (1.f - ig));
    D::st(dgates, g0 + H + j, dcv * cp * fg * (1.f - fg));
    D::st(dgates, g0 + 2 * H + j, dcv * ig * (1.f - gg * gg));
    D::st(dgates, g0 + 3 * H + j, dh * tc * og * (1.f - og));
    dc[idx] = dcv * fg;
  }
}
INSTANTIATE(lstm_cell_bwd, (const void* gates, const float* c, const float* cPrev, const void* dhOut, float* dhNext, float* dc, void* dgates, int B, int H),
            (gates, c, cPrev, dhOut, dhNext, dc, dgates, B, H))
"""#
}
