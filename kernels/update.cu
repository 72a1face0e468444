// Parameter step (docs/math.md §6.2): the capped update, in place, one thread per parameter,
// mean and variance together; n elements in each array.
#include "tagi_common.cuh"

// Each delta is clipped to bound = sqrt(prior var) / cap_factor, keeping its sign:
//   mu  += sign(delta_mu)  * min(|delta_mu|,  bound)
//   var += sign(delta_var) * min(|delta_var|, bound);   var <= 0 is floored to 1e-5.
extern "C" __global__ void TAGI_NAME(capped_update)(
    int n, real* mu, real* var, const real* delta_mu, const real* delta_var, real cap_factor) {
  const int i = element_index();
  if (i >= n) return;
  const real bound = sqrt(var[i]) / cap_factor;
  const real d_mu = delta_mu[i], d_var = delta_var[i];  // a NaN delta passes through, as in numpy
  mu[i] += d_mu > bound ? bound : (d_mu < -bound ? -bound : d_mu);
  const real v = var[i] + (d_var > bound ? bound : (d_var < -bound ? -bound : d_var));
  var[i] = v <= 0 ? real(1e-5) : v;
}
