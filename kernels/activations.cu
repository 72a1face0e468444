// Activation kernels (docs/math.md §3.5) and the Jacobian step of the backward pass (§5.1).
// One thread per element; all arrays have n elements. A null variance pointer is the Python
// None of the op contract (numpy_backend.py).
#include "tagi_common.cuh"

// Locally linearised ReLU: J = 1 where mu_z > 0, else 0; mu_a = J*mu_z, var_a = J*var_z.
extern "C" __global__ void TAGI_NAME(relu_forward)(
    int n, const real* mu_z, const real* var_z, real* mu_a, real* var_a, real* jac) {
  const int i = element_index();
  if (i >= n) return;
  const real j = mu_z[i] > 0 ? real(1) : real(0);
  mu_a[i] = mu_z[i] * j;
  if (var_z) var_a[i] = var_z[i] * j;
  jac[i] = j;
}

// The exact, unfloored moments of R = max(0, Z), Z ~ N(mu, var), with s = sqrt(var), alpha = mu / s:
//   mean = mu*Phi(alpha) + s*phi(alpha)
//   var  = -mean^2 + 2*mean*mu - mu*s*phi(alpha) + (var - mu^2)*Phi(alpha)
//   cdf  = Phi(alpha) = Cov(R, Z) / var
struct ReluMoments {
  real mean, var, cdf;
};

__device__ __forceinline__ ReluMoments relu_moments(real mu, real var) {
  const real sd = sqrt(var), alpha = mu / sd;
  const real cdf = normal_cdf(alpha);
  const real pdf = exp(real(-0.5) * alpha * alpha) * real(0.3989422804014327);  // 1/sqrt(2 pi)
  const real m = mu * cdf + sd * pdf;
  return {m, -m * m + 2 * m * mu - mu * sd * pdf + (var - mu * mu) * cdf, cdf};
}

// Exact moments of A = max(0, Z), floored: mu_a = max(m, 1e-6), var_a = max(v, 1e-6),
// J = Phi(alpha) = Cov(A, Z) / var_z (m, v, Phi: relu_moments).
extern "C" __global__ void TAGI_NAME(mixture_relu_forward)(
    int n, const real* mu_z, const real* var_z, real* mu_a, real* var_a, real* jac) {
  const int i = element_index();
  if (i >= n) return;
  const ReluMoments r = relu_moments(mu_z[i], var_z[i]);
  mu_a[i] = fmax(r.mean, real(1e-6));
  var_a[i] = fmax(r.var, real(1e-6));
  jac[i] = r.cdf;
}

// Locally linearised leaky ReLU: J = 1 where mu_z > 0, else negative_slope; mu_a = J*mu_z,
// var_a = J^2*var_z.
extern "C" __global__ void TAGI_NAME(leaky_relu_forward)(
    int n, const real* mu_z, const real* var_z, real negative_slope, real* mu_a, real* var_a,
    real* jac) {
  const int i = element_index();
  if (i >= n) return;
  const real j = mu_z[i] > 0 ? real(1) : negative_slope;
  mu_a[i] = mu_z[i] * j;
  if (var_z) var_a[i] = var_z[i] * (j * j);
  jac[i] = j;
}

// Exact moments of A = max(Z, 0) + s*min(Z, 0) = (1 - s)*R + s*Z, R = max(0, Z), s = negative_slope,
// with m, v, Phi of R from relu_moments and Cov(R, Z) = Phi*var_z:
//   mu_a  = (1 - s)*m + s*mu_z
//   var_a = max((1 - s)^2*v + (s^2 + 2*s*(1 - s)*Phi)*var_z, 1e-6)
//   J     = s + (1 - s)*Phi = Cov(A, Z) / var_z
extern "C" __global__ void TAGI_NAME(mixture_leaky_relu_forward)(
    int n, const real* mu_z, const real* var_z, real negative_slope, real* mu_a, real* var_a,
    real* jac) {
  const int i = element_index();
  if (i >= n) return;
  const real s = negative_slope, var = var_z[i];
  const ReluMoments r = relu_moments(mu_z[i], var);
  mu_a[i] = (1 - s) * r.mean + s * mu_z[i];
  var_a[i] = fmax((1 - s) * (1 - s) * r.var + (s * s + 2 * s * (1 - s) * r.cdf) * var, real(1e-6));
  jac[i] = s + (1 - s) * r.cdf;
}

// Innovations of an activation's output -> of its input (§5.1):
//   delta_mu_z = J * delta_mu_a,  delta_var_z = J^2 * delta_var_a.
extern "C" __global__ void TAGI_NAME(scale_by_jacobian)(
    int n, const real* delta_mu, const real* delta_var, const real* jac, real* out_mu, real* out_var) {
  const int i = element_index();
  if (i >= n) return;
  out_mu[i] = delta_mu[i] * jac[i];
  if (delta_var) out_var[i] = delta_var[i] * jac[i] * jac[i];
}

// Standard normal CDF, elementwise (class probabilities of the hierarchical softmax, §7.3).
extern "C" __global__ void TAGI_NAME(normal_cdf)(int n, const real* x, real* out) {
  const int i = element_index();
  if (i >= n) return;
  out[i] = normal_cdf(x[i]);
}
