// Output-layer update (docs/math.md §4): innovations of observed outputs y = z + v,
// v ~ N(0, sigma_v^2). One thread per element of the (B, N) output; n = B*N.
#include "tagi_common.cuh"

//   S = var_z + sigma_v^2,  delta_mu = (y - mu_z) / S,  delta_var = -1 / S;
// both are 0 where y is NaN (an unobserved output, e.g. the 7 of 11 hierarchical-softmax
// outputs a label does not reach) or S is not finite.
extern "C" __global__ void TAGI_NAME(gaussian_innovations)(
    int n, const real* mu_z, const real* var_z, const real* y, real sigma_v, real* delta_mu,
    real* delta_var) {
  const int i = element_index();
  if (i >= n) return;
  const real s = var_z[i] + sigma_v * sigma_v;
  const bool observed = isfinite(s) && !isnan(y[i]);
  delta_mu[i] = observed ? (y[i] - mu_z[i]) / s : real(0);
  delta_var[i] = observed ? real(-1) / s : real(0);
}
