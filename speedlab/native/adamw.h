// AdamW as speedlab's FlatAdamW writes it (speedlab/train/steps/functional.py): decoupled weight decay, then the
// bias-corrected moments. The fused kernels advance the step count once per step (`AdamW::next`) and update each
// parameter number with its summed gradient (`update`).
#pragma once

#include <cmath>

struct AdamW {
  float step_size, root_bias2, b1, b2, eps, lr;

  // The constants of the next step; advances the stored step count (a float, as FlatAdamW keeps it).
  static AdamW next(float* step_count, double lr, double beta1, double beta2, double eps) {
    const float t = *step_count + 1.f;
    *step_count = t;
    const double bias1 = 1.0 - std::pow(beta1, double(t)), bias2 = 1.0 - std::pow(beta2, double(t));
    return {float(lr / bias1), float(std::sqrt(bias2)), float(beta1), float(beta2), float(eps), float(lr)};
  }

  void update(float& param, float& exp_avg, float& exp_avg_sq, float grad, float decay) const {
    param *= 1.f - lr * decay;
    exp_avg += (1.f - b1) * (grad - exp_avg);
    exp_avg_sq = b2 * exp_avg_sq + (1.f - b2) * grad * grad;
    param -= step_size * exp_avg / (std::sqrt(exp_avg_sq) / root_bias2 + eps);
  }
};
