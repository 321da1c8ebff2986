// The activations the fused kernels compute, chosen by SL_ACT (0 tanh, 1 relu, 2 gelu with erf): each returns the
// activation of z and writes its derivative into d, the pair the forward pass keeps for the backward one.
#pragma once

#include <algorithm>
#include <cmath>

// tanh as the rational function Eigen (and so ATen's vectorised tanh) uses: |error| < 4e-7 against float64.
inline float tanh_rational(float x) {
  const float c = 7.90531110763549805f;
  const float xc = std::min(std::max(x, -c), c);
  const float z = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * z + 2.00018790482477e-13f;
  p = p * z + -8.60467152213735e-11f;
  p = p * z + 5.12229709037114e-08f;
  p = p * z + 1.48572235717979e-05f;
  p = p * z + 6.37261928875436e-04f;
  p = p * z + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * z + 1.18534705686654e-04f;
  q = q * z + 2.26843463243900e-03f;
  q = q * z + 4.89352518554385e-03f;
  const float r = xc * p / q;
  return std::fabs(x) < c ? r : (x > 0.f ? 1.f : -1.f);
}

inline float sl_activate(float z, float& d) {
#if SL_ACT == 0
  const float t = tanh_rational(z);
  d = 1.f - t * t;
  return t;
#elif SL_ACT == 1
  const bool on = z > 0.f;
  d = on ? 1.f : 0.f;
  return on ? z : 0.f;
#else
  const float cdf = 0.5f * (1.f + std::erf(z * 0.70710678118654752f));
  d = cdf + z * 0.39894228040143268f * std::exp(-0.5f * z * z);
  return z * cdf;
#endif
}
