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

// Exact moments of A = max(0, Z), Z ~ N(mu_z, var_z), with s = sqrt(var_z), alpha = mu_z / s:
//   m     = mu_z*Phi(alpha) + s*phi(alpha)
//   mu_a  = max(m, 1e-6)
//   var_a = max(-m^2 + 2*m*mu_z - mu_z*s*phi(alpha) + (var_z - mu_z^2)*Phi(alpha), 1e-6)
//   J     = Phi(alpha) = Cov(A, Z) / var_z
extern "C" __global__ void TAGI_NAME(mixture_relu_forward)(
    int n, const real* mu_z, const real* var_z, real* mu_a, real* var_a, real* jac) {
  const int i = element_index();
  if (i >= n) return;
  const real mu = mu_z[i], var = var_z[i], sd = sqrt(var), alpha = mu / sd;
  const real cdf = normal_cdf(alpha);
  const real pdf = exp(real(-0.5) * alpha * alpha) * real(0.3989422804014327);  // 1/sqrt(2 pi)
  const real m = mu * cdf + sd * pdf;
  const real v = -m * m + 2 * m * mu - mu * sd * pdf + (var - mu * mu) * cdf;
  mu_a[i] = fmax(m, real(1e-6));
  var_a[i] = fmax(v, real(1e-6));
  jac[i] = cdf;
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
