// Pooling TAGI kernels: average (docs/math.md §3.4, §5.4) and max (§3.4.1, §5.4.1). The average's
// divisor is always K^2 for means and K^4 for variances, padding cells included (they contribute
// 0). Each (b, c) plane is pooled on its own, so a plane is handled as a one-channel image
// numbered bc = b*C + c.
//
// Shapes: inputs (B, C, H, W), outputs and output innovations (B, C, Ho, Wo); the window
// arguments are the fields of tagi.geometry.Window2d (pad = pad_begin).
// A null variance pointer is the Python None of the op contract (numpy_backend.py).
#include "tagi_common.cuh"

// Average forward, one thread per output cell (bc, l), l = oy*Wo + ox:
//   mu[bc, l]  = (1/K^2) * sum_{window cells} mu_a[bc, iy, ix]
//   var[bc, l] = (1/K^4) * sum_{window cells} var_a[bc, iy, ix]
extern "C" __global__ void TAGI_NAME(avgpool2d_forward)(
    const real* mu_a, const real* var_a, real* mu, real* var, int batch, int channels, int height,
    int width, int kernel, int stride, int pad, int out_height, int out_width) {
  const Window g{1, height, width, kernel, stride, pad, out_height, out_width};
  const int e = element_index();
  if (e >= batch * channels * g.out_size()) return;
  const int bc = e / g.out_size(), l = e % g.out_size(), kk = kernel * kernel;
  real sum_mu = 0, sum_var = 0;
  for (int r = 0; r < kk; ++r) {
    const int index = g.input_index(g.window_origin(bc, l), g.patch_cell(r));
    if (index < 0) continue;
    sum_mu += mu_a[index];
    if (var_a) sum_var += var_a[index];
  }
  mu[e] = sum_mu / kk;
  if (var_a) var[e] = sum_var / (kk * kk);
}

// Backward of both pools, one thread per input cell (bc, p), p = iy*W + ix, summing over the
// windows l that read it (1, 2 or 4 of them for K = 3, S = 2), each at its kernel cell r:
//   average (index null): delta_mu_a[bc, p]  = (1/K^2) * sum_{windows l} delta_mu[bc, l]
//                         delta_var_a[bc, p] = (1/K^4) * sum_{windows l} delta_var[bc, l]
//   max (index given):    the same sums over the windows whose winner it is (index[bc, l] == r),
//                         unscaled (Jacobian 1 at the winner, 0 at the other cells)
// (the Jacobian of the producing activation is applied by that activation's backward).
extern "C" __global__ void TAGI_NAME(pool2d_backward)(
    const real* delta_mu, const real* delta_var, const int* index, real* delta_mu_a,
    real* delta_var_a, int batch, int channels, int height, int width, int kernel, int stride,
    int pad, int out_height, int out_width) {
  const Window g{1, height, width, kernel, stride, pad, out_height, out_width};
  const int e = element_index();
  if (e >= batch * channels * g.in_size()) return;
  const int bc = e / g.in_size(), p = e % g.in_size(), kk = kernel * kernel;
  real sum_mu = 0, sum_var = 0;
  for (int r = 0; r < kk; ++r) {
    const int l = g.output_position(p / width + pad - r / kernel, p % width + pad - r % kernel);
    if (l < 0 || (index && index[bc * g.out_size() + l] != r)) continue;
    sum_mu += delta_mu[bc * g.out_size() + l];
    if (delta_var) sum_var += delta_var[bc * g.out_size() + l];
  }
  delta_mu_a[e] = index ? sum_mu : sum_mu / kk;
  if (delta_var) delta_var_a[e] = index ? sum_var : sum_var / (kk * kk);
}

// Max pooling forward (docs/math.md §3.4.1; its backward is pool2d_backward): the moments of each
// window's input cell of largest mean. `index` (B, C, Ho, Wo) holds that cell's place r = ky*K + kx in its window: the first in
// this row-major order on ties; padding cells are skipped, so they never win (the layer keeps
// every window on at least one input cell).
//
// Forward, one thread per output cell (bc, l):
//   r* = first argmax_r mu_a[cell r],  mu[bc, l] = mu_a[cell r*],  var[bc, l] = var_a[cell r*]
extern "C" __global__ void TAGI_NAME(maxpool2d_forward)(
    const real* mu_a, const real* var_a, real* mu, real* var, int* index, int batch, int channels,
    int height, int width, int kernel, int stride, int pad, int out_height, int out_width) {
  const Window g{1, height, width, kernel, stride, pad, out_height, out_width};
  const int e = element_index();
  if (e >= batch * channels * g.out_size()) return;
  const int bc = e / g.out_size(), l = e % g.out_size(), kk = kernel * kernel;
  const WindowOrigin origin = g.window_origin(bc, l);
  int best = -1, best_r = 0;
  for (int r = 0; r < kk; ++r) {
    const int i = g.input_index(origin, g.patch_cell(r));
    if (i >= 0 && (best < 0 || mu_a[i] > mu_a[best])) {
      best = i;
      best_r = r;
    }
  }
  mu[e] = mu_a[best];
  if (var_a) var[e] = var_a[best];
  index[e] = best_r;
}
