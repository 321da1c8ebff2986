// One training step of a multilayer perceptron (Linear -> activation ... -> Linear), loss and AdamW, fused.
//
// speedlab compiles this file once per network shape (speedlab/native/build.py): the widths, the activation and the
// loss arrive as -D macros, so every loop below has a trip count the compiler knows. The design is SimpleChains.jl's:
// - no BLAS: each layer is a loop nest over a tile of TILE samples held feature-major (one row of TILE floats per
//   unit), small enough that a tile's activations stay in L1/L2 while it goes forward and back;
// - the activation and its derivative are written in the forward pass (tanh: t and 1 - t^2);
// - threads split the batch, not the layers: each thread runs forward and backward on its own tiles and keeps its
//   own weight gradients; the gradients are summed once and one AdamW update runs over the flat buffers;
// - every buffer is allocated once per shape and thread count, reused by every step (no allocation per step).
//
// Macros: SL_LAYERS (Linear layers), SL_WIDTHS (SL_LAYERS + 1 widths: inputs, hidden..., outputs), SL_ACT
// (0 tanh, 1 relu, 2 gelu with erf), SL_LOSS (0 mean squared error over every output, 1 cross-entropy mean).
#include <omp.h>

#include "activations.h"
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int NL = SL_LAYERS;
constexpr int WIDTH[NL + 1] = {SL_WIDTHS};
constexpr int TILE = 64;   // samples per tile: 8 AVX2 vectors, or 4 AVX-512 ones
constexpr int LANES = 16;  // partial sums kept per weight gradient: one AVX-512 vector, two AVX2 ones

constexpr int max_width() {
  int m = 0;
  for (int w : WIDTH) m = w > m ? w : m;
  return m;
}
constexpr int MAXW = max_width();

constexpr int64_t act_floats() {  // activations of every layer for one tile
  int64_t n = 0;
  for (int w : WIDTH) n += int64_t(w) * TILE;
  return n;
}

// The activation of a row of TILE pre-activations, in place, and its derivative beside it.
inline void activate(float* __restrict z, float* __restrict d) {
#pragma omp simd
  for (int b = 0; b < TILE; ++b) z[b] = sl_activate(z[b], d[b]);
}

// out[j][:] = bias[j] + sum_i w[j][i] * in[i][:]  (w row-major out x in, as torch's Linear keeps it)
template <int IN, int OUT>
inline void dense_forward(const float* __restrict w, const float* __restrict bias, const float* __restrict in,
                          float* __restrict out) {
  for (int j = 0; j < OUT; ++j) {
    float acc[TILE];
#pragma omp simd
    for (int b = 0; b < TILE; ++b) acc[b] = bias[j];
    const float* wj = w + int64_t(j) * IN;
    for (int i = 0; i < IN; ++i) {
      const float wji = wj[i];
      const float* a = in + int64_t(i) * TILE;
#pragma omp simd
      for (int b = 0; b < TILE; ++b) acc[b] += wji * a[b];
    }
    std::memcpy(out + int64_t(j) * TILE, acc, sizeof acc);
  }
}

// Weight and bias gradients of one layer from one tile: gw[j][i] += sum_b delta[j][b] in[i][b]. Each is kept as
// LANES partial sums (`gw_lanes`, summed across lanes once per step), so the tile's products reduce in registers.
template <int IN, int OUT>
inline void dense_grads(const float* __restrict delta, const float* __restrict in, float* __restrict gw_lanes,
                        float* __restrict gb_lanes) {
  for (int j = 0; j < OUT; ++j) {
    const float* dj = delta + int64_t(j) * TILE;
    float bias[LANES] = {};
    for (int c = 0; c < TILE; c += LANES)
#pragma omp simd
      for (int k = 0; k < LANES; ++k) bias[k] += dj[c + k];
    float* gb = gb_lanes + int64_t(j) * LANES;
#pragma omp simd
    for (int k = 0; k < LANES; ++k) gb[k] += bias[k];
    for (int i = 0; i < IN; ++i) {
      const float* a = in + int64_t(i) * TILE;
      float acc[LANES] = {};
      for (int c = 0; c < TILE; c += LANES)
#pragma omp simd
        for (int k = 0; k < LANES; ++k) acc[k] += dj[c + k] * a[c + k];
      float* g = gw_lanes + (int64_t(j) * IN + i) * LANES;
#pragma omp simd
      for (int k = 0; k < LANES; ++k) g[k] += acc[k];
    }
  }
}

// delta_in[i][:] = deriv[i][:] * sum_j w[j][i] delta[j][:]
template <int IN, int OUT>
inline void dense_backward(const float* __restrict w, const float* __restrict delta, const float* __restrict deriv,
                           float* __restrict delta_in) {
  for (int i = 0; i < IN; ++i) {
    float acc[TILE] = {};
    for (int j = 0; j < OUT; ++j) {
      const float wji = w[int64_t(j) * IN + i];
      const float* dj = delta + int64_t(j) * TILE;
#pragma omp simd
      for (int b = 0; b < TILE; ++b) acc[b] += wji * dj[b];
    }
    const float* di = deriv + int64_t(i) * TILE;
    float* out = delta_in + int64_t(i) * TILE;
#pragma omp simd
    for (int b = 0; b < TILE; ++b) out[b] = acc[b] * di[b];
  }
}

template <int L>
struct Layers {
  // Forward through layers L.. (activation after every layer but the last).
  static void forward(const float* params, const int64_t* offsets, float* const* act, float* const* deriv) {
    constexpr int IN = WIDTH[L], OUT = WIDTH[L + 1];
    dense_forward<IN, OUT>(params + offsets[2 * L], params + offsets[2 * L + 1], act[L], act[L + 1]);
    if constexpr (L + 1 < NL) {
      for (int j = 0; j < OUT; ++j) activate(act[L + 1] + int64_t(j) * TILE, deriv[L + 1] + int64_t(j) * TILE);
      Layers<L + 1>::forward(params, offsets, act, deriv);
    }
  }
  // Backward from layer L down to 0, `delta` the loss gradient at layer L's output.
  static void backward(const float* params, const int64_t* offsets, float* const* act, float* const* deriv,
                       float* delta, float* spare, float* const* gw, float* const* gb) {
    constexpr int IN = WIDTH[L], OUT = WIDTH[L + 1];
    dense_grads<IN, OUT>(delta, act[L], gw[L], gb[L]);
    if constexpr (L > 0) {
      dense_backward<IN, OUT>(params + offsets[2 * L], delta, deriv[L], spare);
      Layers<L - 1>::backward(params, offsets, act, deriv, spare, delta, gw, gb);
    }
  }
};
template <>
struct Layers<NL> {
  static void forward(const float*, const int64_t*, float* const*, float* const*) {}
};

// The loss of one tile's outputs (n real samples, the rest padding) and its gradient, written into `delta`.
double loss_and_delta(const float* __restrict out, const void* targets, int64_t first, int n, int64_t batch,
                      float* __restrict delta) {
  constexpr int K = WIDTH[NL];
  double loss = 0.0;
  std::memset(delta, 0, sizeof(float) * K * TILE);
#if SL_LOSS == 0
  const float* y = static_cast<const float*>(targets) + first * K;
  const float scale = 2.f / float(batch * K);
  for (int b = 0; b < n; ++b)
    for (int k = 0; k < K; ++k) {
      const float e = out[k * TILE + b] - y[int64_t(b) * K + k];
      loss += double(e) * e;
      delta[k * TILE + b] = scale * e;
    }
  return loss / double(batch * K);
#else
  const int64_t* y = static_cast<const int64_t*>(targets) + first;
  const float scale = 1.f / float(batch);
  for (int b = 0; b < n; ++b) {
    float top = out[b];
    for (int k = 1; k < K; ++k) top = std::max(top, out[k * TILE + b]);
    float sum = 0.f;
    for (int k = 0; k < K; ++k) sum += std::exp(out[k * TILE + b] - top);
    const int64_t label = y[b];
    loss += double(std::log(sum) + top - out[label * TILE + b]);
    for (int k = 0; k < K; ++k) delta[k * TILE + b] = scale * std::exp(out[k * TILE + b] - top) / sum;
    delta[label * TILE + b] -= scale;
  }
  return loss / double(batch);
#endif
}

// Each thread's buffers, kept between steps.
struct Scratch {
  std::vector<float> act, deriv, delta, spare, grad_lanes;
  explicit Scratch(int64_t params)
      : act(act_floats()), deriv(act_floats()), delta(int64_t(MAXW) * TILE), spare(int64_t(MAXW) * TILE),
        grad_lanes(params * LANES) {}
};

std::vector<Scratch>& scratch(int threads, int64_t params) {
  static std::vector<Scratch> kept;
  if (int(kept.size()) != threads) {
    kept.clear();
    for (int t = 0; t < threads; ++t) kept.emplace_back(params);
  }
  return kept;
}

}  // namespace

// One step: forward, loss, backward over the batch (threads split it), then AdamW on the flat buffers exactly as
// speedlab's FlatAdamW writes it (decoupled weight decay, bias-corrected moments). `offsets` holds each layer's
// weight and bias offsets in the flat parameters (w0, b0, w1, b1, ...). Returns the mean loss.
extern "C" double sl_mlp_step(float* params, float* exp_avg, float* exp_avg_sq, const float* decay, float* step_count,
                              const int64_t* offsets, int64_t n_params, const float* x, const void* targets,
                              int64_t batch, double lr, double beta1, double beta2, double eps, int threads) {
  constexpr int F = WIDTH[0];
  const int64_t tiles = (batch + TILE - 1) / TILE;
  threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, tiles)));
  std::vector<Scratch>& work = scratch(threads, n_params);
  std::vector<double> losses(threads, 0.0);

#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    Scratch& s = work[t];
    std::fill(s.grad_lanes.begin(), s.grad_lanes.end(), 0.f);
    float* act[NL + 1];
    float* deriv[NL + 1];
    float* gw[NL];
    float* gb[NL];
    int64_t at = 0;
    for (int l = 0; l <= NL; ++l) {
      act[l] = s.act.data() + at;
      deriv[l] = s.deriv.data() + at;
      at += int64_t(WIDTH[l]) * TILE;
    }
    for (int l = 0; l < NL; ++l) {
      gw[l] = s.grad_lanes.data() + offsets[2 * l] * LANES;
      gb[l] = s.grad_lanes.data() + offsets[2 * l + 1] * LANES;
    }
    const int64_t lo = tiles * t / threads, hi = tiles * (t + 1) / threads;
    double loss = 0.0;
    for (int64_t tile = lo; tile < hi; ++tile) {
      const int64_t first = tile * TILE;
      const int n = int(std::min<int64_t>(TILE, batch - first));
      // Inputs transposed into the tile (feature-major); padding columns are zero and get zero loss gradient.
      for (int i = 0; i < F; ++i) {
        float* row = act[0] + int64_t(i) * TILE;
        for (int b = 0; b < n; ++b) row[b] = x[(first + b) * F + i];
        for (int b = n; b < TILE; ++b) row[b] = 0.f;
      }
      Layers<0>::forward(params, offsets, act, deriv);
      loss += loss_and_delta(act[NL], targets, first, n, batch, s.delta.data());
      Layers<NL - 1>::backward(params, offsets, act, deriv, s.delta.data(), s.spare.data(), gw, gb);
    }
    losses[t] = loss;
  }

  // Sum each parameter's lanes over every thread, then one AdamW update per parameter number.
  const AdamW adam = AdamW::next(step_count, lr, beta1, beta2, eps);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < n_params; ++p) {
    float g = 0.f;
    for (int th = 0; th < threads; ++th) {
      const float* lanes = work[th].grad_lanes.data() + p * LANES;
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int k = 0; k < LANES; ++k) sum += lanes[k];
      g += sum;
    }
    adam.update(params[p], exp_avg[p], exp_avg_sq[p], g, decay[p]);
  }
  double loss = 0.0;
  for (double l : losses) loss += l;
  return loss;
}
