// Fully connected TAGI kernels (docs/math.md §3.2, §5.2, §6.1): forward moments, input innovations
// and parameter deltas, each one fused Gaussian GEMM (tagi_gemm.cuh).
//
// Shapes: mu_a, var_a (B, N_in); mu_w, var_w (N_out, N_in); mu_b, var_b (N_out,);
// outputs and output innovations (B, N_out). A null variance pointer is the Python None of the
// op contract (numpy_backend.py). The operands are plain row-major matrices, so the problems need
// no index decomposition (their index records are NoInfo).
#include "tagi_gemm.cuh"

// Forward (§3.2): m = b, n = i (output unit), k = j (input unit).
//   mu_z[b, i]  = sum_j mu_w[i, j] * mu_a[b, j] + mu_b[i]
//   var_z[b, i] = sum_j (mu_w[i, j]^2 + var_w[i, j]) * var_a[b, j] + var_w[i, j] * mu_a[b, j]^2 + var_b[i]
struct LinearForward {
  const real *mu_a, *var_a, *mu_w, *var_w, *mu_b, *var_b;
  real *mu_z, *var_z;
  int M, N, K;  // B, N_out, N_in
  static constexpr bool A_K_FASTEST = true, B_K_FASTEST = true;

  using RowInfo = NoInfo;
  using SliceInfo = NoInfo;
  __device__ NoInfo m_info(int m) const { return {}; }
  __device__ NoInfo k_info(int k) const { return {}; }

  template <bool VAR>
  __device__ void load_a(int m, int k, NoInfo, NoInfo, real& mu, real& var) const {
    mu = __ldg(mu_a + m * K + k);
    if constexpr (VAR) var = __ldg(var_a + m * K + k);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, NoInfo, real& mu, real& var, real& sq) const {
    mu = __ldg(mu_w + n * K + k);
    if constexpr (VAR) var = mu * mu + __ldg(var_w + n * K + k);
    if constexpr (SQ) sq = __ldg(var_w + n * K + k);
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    mu_z[m * N + n] = mu + mu_b[n];
    if constexpr (VAR) var_z[m * N + n] = var + var_b[n];
  }
};

// Backward (§5.2): m = b, n = j (input unit), k = i (output unit).
//   delta_mu_a[b, j]  = sum_i mu_w[i, j]   * delta_mu_z[b, i]
//   delta_var_a[b, j] = sum_i mu_w[i, j]^2 * delta_var_z[b, i]
// (the Jacobian of the producing activation is applied by that activation's backward).
struct LinearBackward {
  const real *delta_mu_z, *delta_var_z, *mu_w;
  real *delta_mu_a, *delta_var_a;
  int M, N, K;  // B, N_in, N_out
  static constexpr bool A_K_FASTEST = true, B_K_FASTEST = false;

  using RowInfo = NoInfo;
  using SliceInfo = NoInfo;
  __device__ NoInfo m_info(int m) const { return {}; }
  __device__ NoInfo k_info(int k) const { return {}; }

  template <bool VAR>
  __device__ void load_a(int m, int k, NoInfo, NoInfo, real& mu, real& var) const {
    mu = __ldg(delta_mu_z + m * K + k);
    if constexpr (VAR) var = __ldg(delta_var_z + m * K + k);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, NoInfo, real& mu, real& var, real& sq) const {
    mu = __ldg(mu_w + k * N + n);
    if constexpr (VAR) var = mu * mu;
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    delta_mu_a[m * N + n] = mu;
    if constexpr (VAR) delta_var_a[m * N + n] = var;
  }
};

// Parameter deltas (§6.1), summed over the batch: m = j (input unit), or m = N_in for the bias
// (input 1, §6.3); n = i (output unit); k = b.
//   delta_mu_w[i, j]  = var_w[i, j]   * sum_b mu_a[b, j]   * delta_mu_z[b, i]
//   delta_var_w[i, j] = var_w[i, j]^2 * sum_b mu_a[b, j]^2 * delta_var_z[b, i]
// With var_w null the raw sums are stored (the backprop gradients of the op contract).
struct LinearParamDeltas {
  const real *mu_a, *delta_mu_z, *delta_var_z, *var_w, *var_b;
  real *delta_mu_w, *delta_var_w, *delta_mu_b, *delta_var_b;
  int n_in;
  int M, N, K;  // N_in + 1, N_out, B
  static constexpr bool A_K_FASTEST = false, B_K_FASTEST = false;

  using RowInfo = NoInfo;
  using SliceInfo = NoInfo;
  __device__ NoInfo m_info(int m) const { return {}; }
  __device__ NoInfo k_info(int k) const { return {}; }

  template <bool VAR>
  __device__ void load_a(int m, int k, NoInfo, NoInfo, real& mu, real& var) const {
    mu = m == n_in ? real(1) : __ldg(mu_a + k * n_in + m);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, NoInfo, real& mu, real& var, real& sq) const {
    mu = __ldg(delta_mu_z + k * N + n);
    if constexpr (SQ) sq = __ldg(delta_var_z + k * N + n);
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    const bool bias = m == n_in;
    const int index = bias ? n : n * n_in + m;
    const real* prior_var = bias ? var_b : var_w;
    const real scale = prior_var ? prior_var[index] : real(1);
    (bias ? delta_mu_b : delta_mu_w)[index] = scale * mu;
    if constexpr (VAR) (bias ? delta_var_b : delta_var_w)[index] = scale * scale * var;
  }
};

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(linear_forward)(
    const real* mu_a, const real* var_a, const real* mu_w, const real* var_w, const real* mu_b,
    const real* var_b, real* mu_z, real* var_z, int batch, int n_in, int n_out, int k_chunk,
    real* partial, int reduce_splits) {
  __shared__ GemmShared<LinearForward> s;
  const LinearForward p{mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, batch, n_out, n_in};
  if (!var_w) gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
  else if (!var_a) gemm<false, true>(p, s, k_chunk, partial, reduce_splits);
  else gemm<true, true>(p, s, k_chunk, partial, reduce_splits);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(linear_backward)(
    const real* delta_mu_z, const real* delta_var_z, const real* mu_w, real* delta_mu_a,
    real* delta_var_a, int batch, int n_in, int n_out, int k_chunk, real* partial,
    int reduce_splits) {
  __shared__ GemmShared<LinearBackward> s;
  const LinearBackward p{delta_mu_z, delta_var_z, mu_w, delta_mu_a, delta_var_a, batch, n_in, n_out};
  if (delta_var_z) gemm<true, false>(p, s, k_chunk, partial, reduce_splits);
  else gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(linear_param_deltas)(
    const real* mu_a, const real* delta_mu_z, const real* delta_var_z, const real* var_w,
    const real* var_b, real* delta_mu_w, real* delta_var_w, real* delta_mu_b, real* delta_var_b,
    int batch, int n_in, int n_out, int k_chunk, real* partial, int reduce_splits) {
  __shared__ GemmShared<LinearParamDeltas> s;
  const LinearParamDeltas p{mu_a, delta_mu_z, delta_var_z, var_w, var_b, delta_mu_w, delta_var_w,
                            delta_mu_b, delta_var_b, n_in, n_in + 1, n_out, batch};
  if (delta_var_z) gemm<false, true>(p, s, k_chunk, partial, reduce_splits);
  else gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
}
