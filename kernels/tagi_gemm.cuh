// The Gaussian GEMM: the one product behind every TAGI conv2d and linear kernel.
//
// For every output (m, n), m < M, n < N, summing over k < K:
//     mu[m, n]  = sum_k A_mu[m, k] * B_mu[k, n]
//     var[m, n] = sum_k A_var[m, k] * B_var[k, n]  +  A_mu[m, k]^2 * B_sq[k, n]
// This is the moment rule of tagi-math §3.1 summed over independent products (§3.2):
//   forward (§3.2, §3.3):     A = input (mu_a, var_a),   B = (mu_w, mu_w^2 + var_w, var_w)
//   backward (§5.2, §5.3):    A = output innovations,    B = (mu_w, mu_w^2, -)
//   param deltas (§6.1):      A = (mu_a, -),             B = (delta_mu, -, delta_var)
// Either variance term may be absent (template flags VAR_TERM, SQ_TERM); with neither, only the
// mean is computed (an exact input drops VAR_TERM, a mean-only pass drops both).
//
// A Problem describes one op: sizes and index maps (gathers and scatters), nothing else:
//     int M, N, K;
//     static constexpr bool A_K_FASTEST, B_K_FASTEST;   // load order that coalesces the gathers
//     int4 m_info(int m) const;   // what the loads need to know about row m / reduction index k:
//     int4 k_info(int k) const;   // the div/mod work, done once per block (m) and per slice (k)
//     template <bool VAR> void load_a(int m, int k, int4 mi, int4 ki, real& mu, real& var) const;
//     template <bool VAR, bool SQ> void load_b(int k, int n, int4 ki, real& mu, real& var, real& sq) const;
//     template <bool VAR> void store(int m, int n, real mu, real var) const;
// Loads are called only for m < M, n < N, k < K and leave zeros where the op reads padding.
//
// Thread mapping: a block of GEMM_THREADS = 128 threads computes a GEMM_BM x GEMM_BN = 64 x 32
// output tile; thread t owns the 4 x 4 sub-tile at rows 4*(t % 16) + 0..3, columns
// 4*(t / 16) + 0..3, for the mean and the variance (32 accumulators). The reduction walks k in
// slices of GEMM_BK = 16: per slice, the k_info of the slice, then A and B staged in shared
// memory (a thread reads its 4 rows / columns as one vector), then the products, with a barrier
// after each. Grid: (ceil(M / 64), ceil(N / 32), splits).
//
// Split-K: with few output tiles (batch 16; parameter deltas summed over a long batch axis) the
// k range is cut into gridDim.z chunks of k_chunk (a multiple of GEMM_BK) so the whole GPU works.
// Every block writes its partial sums to `partial`, shaped (splits, 2, M, N); the last block of a
// tile to finish (counted in tile_counters, which start at 0 and are returned to 0) adds the
// partials in split order, so results do not depend on block timing, and stores them. With one
// split, `partial` and `tile_counters` are not touched (they may be null).
#ifndef TAGI_GEMM_CUH
#define TAGI_GEMM_CUH

#include "tagi_common.cuh"

constexpr int GEMM_BM = 64, GEMM_BN = 32, GEMM_BK = 16;  // block tile and reduction slice
constexpr int GEMM_TM = 4, GEMM_TN = 4;                   // per-thread sub-tile
constexpr int GEMM_THREADS = (GEMM_BM / GEMM_TM) * (GEMM_BN / GEMM_TN);
constexpr int GEMM_PAD = 4;  // row padding: k-fastest stores spread over banks, rows stay 16-byte aligned

// Staged slices, stored k-major so a thread reads its 4 consecutive rows / columns as one vector.
struct alignas(16) GemmShared {
  real a_mu[GEMM_BK][GEMM_BM + GEMM_PAD];
  real a_var[GEMM_BK][GEMM_BM + GEMM_PAD];
  real b_mu[GEMM_BK][GEMM_BN + GEMM_PAD];
  real b_var[GEMM_BK][GEMM_BN + GEMM_PAD];
  real b_sq[GEMM_BK][GEMM_BN + GEMM_PAD];
  int4 m_info[GEMM_BM];  // Problem::m_info of the tile's rows
  int4 k_info[GEMM_BK];  // Problem::k_info of the slice
  int last_block;        // split-K: this block adds up the tile
};

// Stage A[m0 .. m0+63, k0 .. k0+15] and B[k0 .. k0+15, n0 .. n0+31] in shared memory, zeros
// outside the problem and past k_end.
template <bool VAR_TERM, bool SQ_TERM, class Problem>
__device__ void gemm_stage(const Problem& p, GemmShared& s, int m0, int n0, int k0, int k_end) {
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

// One block: the (blockIdx.x, blockIdx.y) tile over the k range of split blockIdx.z.
template <bool VAR_TERM, bool SQ_TERM, class Problem>
__device__ void gemm(const Problem& p, GemmShared& s, int k_chunk, real* partial, int* tile_counters) {
  constexpr bool VAR = VAR_TERM || SQ_TERM;
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

  if (gridDim.z == 1) {
    for (int i = 0; i < GEMM_TM; ++i)
      for (int j = 0; j < GEMM_TN; ++j)
        if (m0 + row + i < p.M && n0 + col + j < p.N)
          p.template store<VAR>(m0 + row + i, n0 + col + j, acc_mu[i][j], acc_var[i][j]);
    return;
  }

  // Split-K: publish this block's partial sums, then let the tile's last block add them up.
  const int plane = p.M * p.N;
  real* mine = partial + blockIdx.z * 2 * plane;
  for (int i = 0; i < GEMM_TM; ++i)
    for (int j = 0; j < GEMM_TN; ++j)
      if (m0 + row + i < p.M && n0 + col + j < p.N) {
        const int index = (m0 + row + i) * p.N + n0 + col + j;
        mine[index] = acc_mu[i][j];
        if constexpr (VAR) mine[plane + index] = acc_var[i][j];
      }
  __threadfence();  // the partials reach global memory before the tile counter moves
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = tile_counters + blockIdx.y * gridDim.x + blockIdx.x;
    s.last_block = atomicAdd(counter, 1) == (int)gridDim.z - 1;
    if (s.last_block) *counter = 0;
  }
  __syncthreads();
  if (!s.last_block) return;
  __threadfence();
  for (int i = 0; i < GEMM_TM; ++i)
    for (int j = 0; j < GEMM_TN; ++j)
      if (m0 + row + i < p.M && n0 + col + j < p.N) {
        const int index = (m0 + row + i) * p.N + n0 + col + j;
        real mu = 0, var = 0;
        for (int z = 0; z < (int)gridDim.z; ++z) {
          mu += __ldcg(partial + z * 2 * plane + index);
          if constexpr (VAR) var += __ldcg(partial + z * 2 * plane + plane + index);
        }
        p.template store<VAR>(m0 + row + i, n0 + col + j, mu, var);
      }
}

#endif  // TAGI_GEMM_CUH
