// The Gaussian GEMM: the one product behind every TAGI conv2d and linear kernel.
//
// For every output (m, n), m < M, n < N, summing over k < K:
//     mu[m, n]  = sum_k A_mu[m, k] * B_mu[k, n]
//     var[m, n] = sum_k A_var[m, k] * B_var[k, n]  +  A_mu[m, k]^2 * B_sq[k, n]
// This is the moment rule of docs/math.md §3.1 summed over independent products (§3.2):
//   forward (§3.2, §3.3):     A = input (mu_a, var_a),   B = (mu_w, mu_w^2 + var_w, var_w)
//   backward (§5.2, §5.3):    A = output innovations,    B = (mu_w, mu_w^2, -)
//   param deltas (§6.1):      A = (mu_a, -),             B = (delta_mu, -, delta_var)
// Either variance term may be absent (template flags VAR_TERM, SQ_TERM); with neither, only the
// mean is computed (an exact input drops VAR_TERM, a mean-only pass drops both).
//
// A Problem describes one op: sizes and index maps (gathers and scatters), nothing else:
//     int M, N, K;
//     static constexpr bool A_K_FASTEST, B_K_FASTEST;   // load order that coalesces the gathers
//     struct RowInfo, SliceInfo;  // what the loads need to know about row m / reduction index k
//     RowInfo m_info(int m) const;    // (named fields): the div/mod work, done once per block (m)
//     SliceInfo k_info(int k) const;  // and once per slice (k)
//     template <bool VAR> void load_a(int m, int k, RowInfo, SliceInfo, real& mu, real& var) const;
//     template <bool VAR, bool SQ> void load_b(int k, int n, SliceInfo, real& mu, real& var, real& sq) const;
//     template <bool VAR> void store(int m, int n, real mu, real var) const;
// Loads are called only for m < M, n < N, k < K and leave zeros where the op reads padding.
//
// Tile sizes: tagi/backends/cupy_backend.py (GEMM_TILE) passes them to NVRTC as -D defines; the
// defaults below, for nvcc builds of one file, are the same values (tests/test_kernels_package.py).
// Thread mapping, with the defaults: a block of GEMM_THREADS = 128 threads computes a
// GEMM_BM x GEMM_BN = 64 x 32 output tile; thread t owns the GEMM_TM x GEMM_TN = 4 x 4 sub-tile
// at rows 4*(t % 16) + 0..3, columns 4*(t / 16) + 0..3, for the mean and the variance (32
// accumulators). The reduction walks k in slices of GEMM_BK = 16: per slice, the k_info of the
// slice, then A and B staged in shared memory (a thread reads its 4 rows / columns as one
// vector), then the products, with a barrier after each. Grid: (ceil(M / 64), ceil(N / 32), splits).
//
// Split-K: with few output tiles (batch 16; parameter deltas summed over a long batch axis) the
// k range is cut into gridDim.z chunks of k_chunk (a multiple of GEMM_BK) so the whole GPU works.
// Every block then writes its raw sums to `partial`, shaped (splits, 2, M, N), and the host
// launches the same kernel a second time with reduce_splits = splits and a grid of
// ceil(M*N / GEMM_REDUCE_OUTPUTS) blocks, which adds the partials of each output in split order (so results do
// not depend on block timing) and stores them (gemm_reduce). With one split, `partial` is unused.
#ifndef TAGI_GEMM_CUH
#define TAGI_GEMM_CUH

#include "tagi_common.cuh"

#ifndef GEMM_BM
#define GEMM_BM 64  // block tile rows
#endif
#ifndef GEMM_BN
#define GEMM_BN 32  // block tile columns
#endif
#ifndef GEMM_BK
#define GEMM_BK 16  // reduction slice
#endif
#ifndef GEMM_TM
#define GEMM_TM 4  // per-thread sub-tile rows
#endif
#ifndef GEMM_TN
#define GEMM_TN 4  // per-thread sub-tile columns
#endif
#ifndef GEMM_REDUCE_OUTPUTS
#define GEMM_REDUCE_OUTPUTS 16  // outputs per block in the split-K second pass
#endif
constexpr int GEMM_THREADS = (GEMM_BM / GEMM_TM) * (GEMM_BN / GEMM_TN);
constexpr int GEMM_PAD = 4;  // row padding: k-fastest stores spread over banks, rows stay 16-byte aligned
static_assert(GEMM_BM % GEMM_TM == 0 && GEMM_BN % GEMM_TN == 0, "sub-tiles must tile the block tile");
static_assert(GEMM_BK <= GEMM_THREADS, "k_info takes one thread per index of a slice");
static_assert(GEMM_THREADS % GEMM_REDUCE_OUTPUTS == 0, "the second pass needs whole lanes per output");

// An index record for problems whose loads need none (plain row-major operands).
struct NoInfo {};

// Staged slices, stored k-major so a thread reads its 4 consecutive rows / columns as one vector.
template <class Problem>
struct alignas(16) GemmShared {
  real a_mu[GEMM_BK][GEMM_BM + GEMM_PAD];
  real a_var[GEMM_BK][GEMM_BM + GEMM_PAD];
  real b_mu[GEMM_BK][GEMM_BN + GEMM_PAD];
  real b_var[GEMM_BK][GEMM_BN + GEMM_PAD];
  real b_sq[GEMM_BK][GEMM_BN + GEMM_PAD];
  typename Problem::RowInfo m_info[GEMM_BM];    // Problem::m_info of the tile's rows
  typename Problem::SliceInfo k_info[GEMM_BK];  // Problem::k_info of the slice
  real reduce[2][GEMM_THREADS];  // split-K second pass: per-thread sums of mean and variance
};

// Stage A[m0 .. m0+63, k0 .. k0+15] and B[k0 .. k0+15, n0 .. n0+31] in shared memory, zeros
// outside the problem and past k_end.
template <bool VAR_TERM, bool SQ_TERM, class Problem>
__device__ void gemm_stage(const Problem& p, GemmShared<Problem>& s, int m0, int n0, int k0, int k_end) {
  if (threadIdx.x < GEMM_BK && k0 + threadIdx.x < k_end) s.k_info[threadIdx.x] = p.k_info(k0 + threadIdx.x);
  __syncthreads();
  for (int e = threadIdx.x; e < GEMM_BM * GEMM_BK; e += GEMM_THREADS) {
    const int m = Problem::A_K_FASTEST ? e / GEMM_BK : e % GEMM_BM;
    const int k = Problem::A_K_FASTEST ? e % GEMM_BK : e / GEMM_BM;
    real mu = 0, var = 0;
    if (m0 + m < p.M && k0 + k < k_end)
      p.template load_a<VAR_TERM>(m0 + m, k0 + k, s.m_info[m], s.k_info[k], mu, var);
    s.a_mu[k][m] = mu;
    if constexpr (VAR_TERM) s.a_var[k][m] = var;
  }
  for (int e = threadIdx.x; e < GEMM_BN * GEMM_BK; e += GEMM_THREADS) {
    const int n = Problem::B_K_FASTEST ? e / GEMM_BK : e % GEMM_BN;
    const int k = Problem::B_K_FASTEST ? e % GEMM_BK : e / GEMM_BN;
    real mu = 0, var = 0, sq = 0;
    if (n0 + n < p.N && k0 + k < k_end)
      p.template load_b<VAR_TERM, SQ_TERM>(k0 + k, n0 + n, s.k_info[k], mu, var, sq);
    s.b_mu[k][n] = mu;
    if constexpr (VAR_TERM) s.b_var[k][n] = var;
    if constexpr (SQ_TERM) s.b_sq[k][n] = sq;
  }
}

// Split-K, second pass: the block owns 16 consecutive outputs o = m*N + n; thread t adds the
// partials of output o = 16*blockIdx.x + t % 16 from splits t / 16, t / 16 + 8, ... in order,
// then threads 0..15 add the 8 sums of their output in order and store it.
template <bool VAR, class Problem>
__device__ void gemm_reduce(const Problem& p, GemmShared<Problem>& s, const real* partial, int splits) {
  constexpr int OUTPUTS = GEMM_REDUCE_OUTPUTS, LANES = GEMM_THREADS / OUTPUTS;
  const int plane = p.M * p.N, output = blockIdx.x * OUTPUTS + threadIdx.x % OUTPUTS;
  real mu = 0, var = 0;
  if (output < plane)
    for (int z = threadIdx.x / OUTPUTS; z < splits; z += LANES) {
      mu += partial[2 * z * plane + output];
      if constexpr (VAR) var += partial[(2 * z + 1) * plane + output];
    }
  s.reduce[0][threadIdx.x] = mu;
  s.reduce[1][threadIdx.x] = var;
  __syncthreads();
  if (threadIdx.x >= OUTPUTS || output >= plane) return;
  for (int lane = 1; lane < LANES; ++lane) {
    mu += s.reduce[0][threadIdx.x + lane * OUTPUTS];
    var += s.reduce[1][threadIdx.x + lane * OUTPUTS];
  }
  p.template store<VAR>(output / p.N, output % p.N, mu, var);
}

// The kernel body: with reduce_splits = 0, the (blockIdx.x, blockIdx.y) tile over the k range
// of split blockIdx.z; with reduce_splits > 0, the split-K second pass.
template <bool VAR_TERM, bool SQ_TERM, class Problem>
__device__ void gemm(const Problem& p, GemmShared<Problem>& s, int k_chunk, real* partial, int reduce_splits) {
  constexpr bool VAR = VAR_TERM || SQ_TERM;
  if (reduce_splits) {
    gemm_reduce<VAR>(p, s, partial, reduce_splits);
    return;
  }
  const int row = (threadIdx.x % (GEMM_BM / GEMM_TM)) * GEMM_TM;
  const int col = (threadIdx.x / (GEMM_BM / GEMM_TM)) * GEMM_TN;
  const int m0 = blockIdx.x * GEMM_BM, n0 = blockIdx.y * GEMM_BN;
  const int k_begin = blockIdx.z * k_chunk, k_end = min(p.K, k_begin + k_chunk);

  for (int i = threadIdx.x; i < GEMM_BM; i += GEMM_THREADS)
    if (m0 + i < p.M) s.m_info[i] = p.m_info(m0 + i);  // read after the first barrier of gemm_stage
  real acc_mu[GEMM_TM][GEMM_TN] = {}, acc_var[GEMM_TM][GEMM_TN] = {};
  for (int k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
    gemm_stage<VAR_TERM, SQ_TERM>(p, s, m0, n0, k0, k_end);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < GEMM_BK; ++k) {
      real a[GEMM_TM], b[GEMM_TN];
#pragma unroll
      for (int i = 0; i < GEMM_TM; ++i) a[i] = s.a_mu[k][row + i];
#pragma unroll
      for (int j = 0; j < GEMM_TN; ++j) b[j] = s.b_mu[k][col + j];
#pragma unroll
      for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) acc_mu[i][j] += a[i] * b[j];
      if constexpr (VAR_TERM) {
        real a_var[GEMM_TM], b_var[GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) a_var[i] = s.a_var[k][row + i];
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) b_var[j] = s.b_var[k][col + j];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
          for (int j = 0; j < GEMM_TN; ++j) acc_var[i][j] += a_var[i] * b_var[j];
      }
      if constexpr (SQ_TERM) {
        real b_sq[GEMM_TN];
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) b_sq[j] = s.b_sq[k][col + j];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
          const real a_sq = a[i] * a[i];
#pragma unroll
          for (int j = 0; j < GEMM_TN; ++j) acc_var[i][j] += a_sq * b_sq[j];
        }
      }
    }
    __syncthreads();
  }

  const int plane = p.M * p.N;
  for (int i = 0; i < GEMM_TM; ++i)
    for (int j = 0; j < GEMM_TN; ++j) {
      const int m = m0 + row + i, n = n0 + col + j;
      if (m >= p.M || n >= p.N) continue;
      if (gridDim.z == 1) {
        p.template store<VAR>(m, n, acc_mu[i][j], acc_var[i][j]);
      } else {  // this split's raw sums, for the second pass
        partial[2 * blockIdx.z * plane + m * p.N + n] = acc_mu[i][j];
        if constexpr (VAR) partial[(2 * blockIdx.z + 1) * plane + m * p.N + n] = acc_var[i][j];
      }
    }
}

#endif  // TAGI_GEMM_CUH
