// Conv2d TAGI kernels (docs/math.md §3.3, §5.3, §6.1): forward moments, input innovations and
// parameter deltas, each one fused Gaussian GEMM (tagi_gemm.cuh) whose operands are gathered
// straight from the NCHW maps (implicit im2col: no patch matrix is written). The conv is a
// cross-correlation: output (co, oy, ox) reads input (ci, oy*S + ky - pad, ox*S + kx - pad).
//
// Shapes: mu_a, var_a (B, C, H, W); mu_w, var_w (C_out, C, K, K); mu_b, var_b (C_out,);
// outputs and output innovations (B, C_out, Ho, Wo). P = C*K*K patch cells, L = Ho*Wo positions.
// A null variance pointer is the Python None of the op contract (numpy_backend.py).
//
// im2col / col2im at the end serve the cuBLAS path of the backend (cupy.matmul on patch matrices).
#include "tagi_gemm.cuh"

// Forward (§3.3): m = (b, l) output position, n = co, k = patch cell (ci, ky, kx).
//   mu_z  = sum_k mu_w * mu_a + mu_b
//   var_z = sum_k (mu_w^2 + var_w) * var_a + var_w * mu_a^2 + var_b      (padding contributes 0)
struct Conv2dForward {
  const real *mu_a, *var_a, *mu_w, *var_w, *mu_b, *var_b;
  real *mu_z, *var_z;
  Window g;
  int M, N, K;  // B*L, C_out, P
  static constexpr bool A_K_FASTEST = false, B_K_FASTEST = true;

  using RowInfo = WindowOrigin;  // the window of output position m
  using SliceInfo = PatchCell;   // patch cell k
  __device__ WindowOrigin m_info(int m) const { return g.window_origin(m / g.out_size(), m % g.out_size()); }
  __device__ PatchCell k_info(int k) const { return g.patch_cell(k); }

  template <bool VAR>
  __device__ void load_a(int m, int k, WindowOrigin window, PatchCell cell, real& mu, real& var) const {
    const int index = g.input_index(window, cell);
    if (index < 0) return;
    mu = __ldg(mu_a + index);
    if constexpr (VAR) var = __ldg(var_a + index);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, PatchCell, real& mu, real& var, real& sq) const {
    mu = __ldg(mu_w + n * K + k);
    if constexpr (VAR) var = mu * mu + __ldg(var_w + n * K + k);
    if constexpr (SQ) sq = __ldg(var_w + n * K + k);
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    const int L = g.out_size(), index = ((m / L) * N + n) * L + m % L;
    mu_z[index] = mu + mu_b[n];
    if constexpr (VAR) var_z[index] = var + var_b[n];
  }
};

// Backward (§5.3, transposed correlation): m = (b, p) input cell p = iy*W + ix, n = ci,
// k = (co, r) with kernel cell r = ky*K + kx.
//   delta_mu_a[b, ci, p]  = sum_{co, r} mu_w[co, ci, r]   * delta_mu_z[b, co, l(p, r)]
//   delta_var_a[b, ci, p] = sum_{co, r} mu_w[co, ci, r]^2 * delta_var_z[b, co, l(p, r)]
// over the (co, r) whose window l(p, r) exists. The Jacobian of the producing activation is
// applied by that activation's backward (scale_by_jacobian), not here.
struct Conv2dBackward {
  const real *delta_mu_z, *delta_var_z, *mu_w;
  real *delta_mu_a, *delta_var_a;
  Window g;
  int c_out;
  int M, N, K;  // B*H*W, C, C_out*K*K
  static constexpr bool A_K_FASTEST = false, B_K_FASTEST = true;

  struct InputCell {   // row m: input cell p of sample b
    int sample;        // offset of sample b in delta_*_z
    int ty, tx;        // iy + pad, ix + pad
  };
  struct KernelTap {   // reduction index k: kernel cell r of output channel co
    int channel;       // offset of channel co in a sample of delta_*_z
    int ky, kx;        // r = ky*K + kx
    int weight;        // index of mu_w[co, 0, ky, kx]
  };
  using RowInfo = InputCell;
  using SliceInfo = KernelTap;

  __device__ InputCell m_info(int m) const {
    const int p = m % g.in_size();
    return {m / g.in_size() * c_out * g.out_size(), p / g.width + g.pad, p % g.width + g.pad};
  }
  __device__ KernelTap k_info(int k) const {
    const int kk = g.kernel * g.kernel, co = k / kk, r = k % kk;
    return {co * g.out_size(), r / g.kernel, r % g.kernel, co * N * kk + r};
  }

  template <bool VAR>
  __device__ void load_a(int m, int k, InputCell cell, KernelTap tap, real& mu, real& var) const {
    const int l = g.output_position(cell.ty - tap.ky, cell.tx - tap.kx);
    if (l < 0) return;
    mu = __ldg(delta_mu_z + cell.sample + tap.channel + l);
    if constexpr (VAR) var = __ldg(delta_var_z + cell.sample + tap.channel + l);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, KernelTap tap, real& mu, real& var, real& sq) const {
    mu = __ldg(mu_w + tap.weight + n * g.kernel * g.kernel);
    if constexpr (VAR) var = mu * mu;
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    const int index = ((m / g.in_size()) * N + n) * g.in_size() + m % g.in_size();
    delta_mu_a[index] = mu;
    if constexpr (VAR) delta_var_a[index] = var;
  }
};

// Parameter deltas (§6.1), summed over the batch and the output positions: m = patch cell
// (ci, ky, kx), or m = P for the bias (whose input is 1, §6.3); n = co; k = (b, l).
//   delta_mu_w[co, m]  = var_w   * sum_{b,l} mu_a[b, cell m of window l]   * delta_mu_z[b, co, l]
//   delta_var_w[co, m] = var_w^2 * sum_{b,l} mu_a[b, cell m of window l]^2 * delta_var_z[b, co, l]
// With var_w null the raw sums are stored (the backprop gradients of the op contract).
struct Conv2dParamDeltas {
  const real *mu_a, *delta_mu_z, *delta_var_z, *var_w, *var_b;
  real *delta_mu_w, *delta_var_w, *delta_mu_b, *delta_var_b;
  Window g;
  int M, N, K;  // P + 1, C_out, B*L
  static constexpr bool A_K_FASTEST = true, B_K_FASTEST = true;

  struct WeightRow {    // row m: a patch cell, or the bias
    PatchCell cell;
    bool bias;
  };
  struct Position {     // reduction index k: window l of sample b
    WindowOrigin window;
    int delta;          // index of delta_*_z[b, 0, l]
  };
  using RowInfo = WeightRow;
  using SliceInfo = Position;

  __device__ WeightRow m_info(int m) const {
    return m == g.patch_size() ? WeightRow{{}, true} : WeightRow{g.patch_cell(m), false};
  }
  __device__ Position k_info(int k) const {
    const int b = k / g.out_size(), l = k % g.out_size();
    return {g.window_origin(b, l), b * N * g.out_size() + l};
  }

  template <bool VAR>
  __device__ void load_a(int m, int k, WeightRow row, Position position, real& mu, real& var) const {
    if (row.bias) {
      mu = 1;
      return;
    }
    const int index = g.input_index(position.window, row.cell);
    if (index >= 0) mu = __ldg(mu_a + index);
  }
  template <bool VAR, bool SQ>
  __device__ void load_b(int k, int n, Position position, real& mu, real& var, real& sq) const {
    const int index = position.delta + n * g.out_size();
    mu = __ldg(delta_mu_z + index);
    if constexpr (SQ) sq = __ldg(delta_var_z + index);
  }
  template <bool VAR>
  __device__ void store(int m, int n, real mu, real var) const {
    const bool bias = m == g.patch_size();
    const int index = bias ? n : n * g.patch_size() + m;
    const real* prior_var = bias ? var_b : var_w;
    const real scale = prior_var ? prior_var[index] : real(1);
    (bias ? delta_mu_b : delta_mu_w)[index] = scale * mu;
    if constexpr (VAR) (bias ? delta_var_b : delta_var_w)[index] = scale * scale * var;
  }
};

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(conv2d_forward)(
    const real* mu_a, const real* var_a, const real* mu_w, const real* var_w, const real* mu_b,
    const real* var_b, real* mu_z, real* var_z, int batch, int channels, int height, int width,
    int kernel, int stride, int pad, int out_height, int out_width, int c_out, int k_chunk,
    real* partial, int reduce_splits) {
  __shared__ GemmShared<Conv2dForward> s;
  const Window g{channels, height, width, kernel, stride, pad, out_height, out_width};
  const Conv2dForward p{mu_a, var_a, mu_w, var_w, mu_b, var_b, mu_z, var_z, g,
                        batch * g.out_size(), c_out, g.patch_size()};
  if (!var_w) gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
  else if (!var_a) gemm<false, true>(p, s, k_chunk, partial, reduce_splits);
  else gemm<true, true>(p, s, k_chunk, partial, reduce_splits);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(conv2d_backward)(
    const real* delta_mu_z, const real* delta_var_z, const real* mu_w, real* delta_mu_a,
    real* delta_var_a, int batch, int channels, int height, int width, int kernel, int stride,
    int pad, int out_height, int out_width, int c_out, int k_chunk, real* partial, int reduce_splits) {
  __shared__ GemmShared<Conv2dBackward> s;
  const Window g{channels, height, width, kernel, stride, pad, out_height, out_width};
  const Conv2dBackward p{delta_mu_z, delta_var_z, mu_w, delta_mu_a, delta_var_a, g, c_out,
                         batch * g.in_size(), channels, c_out * kernel * kernel};
  if (delta_var_z) gemm<true, false>(p, s, k_chunk, partial, reduce_splits);
  else gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) TAGI_NAME(conv2d_param_deltas)(
    const real* mu_a, const real* delta_mu_z, const real* delta_var_z, const real* var_w,
    const real* var_b, real* delta_mu_w, real* delta_var_w, real* delta_mu_b, real* delta_var_b,
    int batch, int channels, int height, int width, int kernel, int stride, int pad,
    int out_height, int out_width, int c_out, int k_chunk, real* partial, int reduce_splits) {
  __shared__ GemmShared<Conv2dParamDeltas> s;
  const Window g{channels, height, width, kernel, stride, pad, out_height, out_width};
  const Conv2dParamDeltas p{mu_a, delta_mu_z, delta_var_z, var_w, var_b, delta_mu_w,
                            delta_var_w, delta_mu_b, delta_var_b, g,
                            g.patch_size() + 1, c_out, batch * g.out_size()};
  if (delta_var_z) gemm<false, true>(p, s, k_chunk, partial, reduce_splits);
  else gemm<false, false>(p, s, k_chunk, partial, reduce_splits);
}

// Patch matrices for the cuBLAS path, one thread per (b, k, l) with k < P, l < L:
//   cols_mu[b, k, l] = mu_a at patch cell k of window l (0 at padding);
//   cols_var (optional) stacks the variance operands of §3.3: with var_a, rows [0, P) hold var_a
//   patches and rows [P, 2P) mu_a^2 patches (so var_z = [mu_w^2 + var_w | var_w] @ cols_var);
//   without var_a, rows [0, P) hold mu_a^2 patches (var_z = var_w @ cols_var).
extern "C" __global__ void TAGI_NAME(im2col)(
    const real* mu_a, const real* var_a, real* cols_mu, real* cols_var, int batch, int channels,
    int height, int width, int kernel, int stride, int pad, int out_height, int out_width) {
  const Window g{channels, height, width, kernel, stride, pad, out_height, out_width};
  const int P = g.patch_size(), L = g.out_size(), e = element_index();
  if (e >= batch * P * L) return;
  const int b = e / (P * L), k = (e / L) % P, l = e % L;
  const int index = g.input_index(g.window_origin(b, l), g.patch_cell(k));
  const real mu = index < 0 ? real(0) : mu_a[index];
  cols_mu[e] = mu;
  if (!cols_var) return;
  if (var_a) {
    cols_var[(b * 2 * P + k) * L + l] = index < 0 ? real(0) : var_a[index];
    cols_var[(b * 2 * P + P + k) * L + l] = mu * mu;
  } else {
    cols_var[e] = mu * mu;
  }
}

// The transpose of im2col, one thread per input cell (b, c, p): adds every patch-matrix entry
// (b, (c, r), l) whose window l reads cell p through kernel cell r; padding entries are dropped.
// cols (B, P, L) -> image (B, C, H, W), for the means and (when given) the variances.
extern "C" __global__ void TAGI_NAME(col2im)(
    const real* cols_mu, const real* cols_var, real* mu, real* var, int batch, int channels,
    int height, int width, int kernel, int stride, int pad, int out_height, int out_width) {
  const Window g{channels, height, width, kernel, stride, pad, out_height, out_width};
  const int kk = kernel * kernel, L = g.out_size(), e = element_index();
  if (e >= batch * channels * g.in_size()) return;
  const int bc = e / g.in_size(), p = e % g.in_size();  // bc = b*C + c
  real sum_mu = 0, sum_var = 0;
  for (int r = 0; r < kk; ++r) {
    const int l = g.output_position(p / width + pad - r / kernel, p % width + pad - r % kernel);
    if (l < 0) continue;
    const int index = (bc * kk + r) * L + l;  // ((b*C + c)*K*K + r)*L + l = (b, (c, r), l)
    sum_mu += cols_mu[index];
    if (cols_var) sum_var += cols_var[index];
  }
  mu[e] = sum_mu;
  if (var) var[e] = sum_var;
}
