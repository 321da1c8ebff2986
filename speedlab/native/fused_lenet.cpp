// One training step of LeNet5 (conv 5x5 -> act -> max pool 2 -> conv 5x5 -> act -> max pool 2 -> Linear -> act ->
// Linear -> act -> Linear), cross-entropy and AdamW, fused: the convolutions are direct loop nests (no im2col, no
// oneDNN), each with its bias and activation in the same pass and the activation's derivative kept; the weight
// gradients are direct reductions over the output pixels; threads split the batch, each running every one of its
// samples forward and back and keeping its own gradients, summed once before one AdamW update (SimpleChains.jl's
// design). speedlab compiles it per shape (speedlab/native/build in __init__.py), so every trip count is known.
//
// Macros: SL_IC, SL_IH, SL_IW (input channels and size), SL_PAD (the first convolution's zero padding), SL_C1,
// SL_C2 (the convolutions' channels), SL_F1, SL_F2 (the hidden Linear widths), SL_K (classes), SL_ACT (activations.h).
#include <omp.h>

#include "activations.h"
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int K5 = 5;
constexpr int IC = SL_IC, C1 = SL_C1, C2 = SL_C2, F1 = SL_F1, F2 = SL_F2, K = SL_K, PAD = SL_PAD;
constexpr int H0 = SL_IH + 2 * PAD, W0 = SL_IW + 2 * PAD;  // the padded input
constexpr int H1 = H0 - K5 + 1, W1 = W0 - K5 + 1;          // conv1's output
constexpr int H2 = H1 / 2, W2 = W1 / 2;                    // after the first pool
constexpr int H3 = H2 - K5 + 1, W3 = W2 - K5 + 1;          // conv2's output
constexpr int H4 = H3 / 2, W4 = W3 / 2;                    // after the second pool
constexpr int F0 = C2 * H4 * W4;                           // flattened, channel-major as torch flattens

// Offsets of each parameter in the flat buffer: conv1 w, b, conv2 w, b, fc1 w, b, fc2 w, b, fc3 w, b.
enum { CW1, CB1, CW2, CB2, LW1, LB1, LW2, LB2, LW3, LB3 };

// conv (valid, stride 1) without bias: out[c][y][x] = sum_ci,ky,kx w[c][ci][ky][kx] in[ci][y+ky][x+kx]. R output
// rows at a time: R independent rows of accumulators per weight, so the multiply-adds do not wait on each other
// (one row of 8 outputs alone is a chain of 150 dependent multiply-adds for LeNet5's second conv).
template <int CI, int CO, int HI, int WI>
inline void conv_raw(const float* __restrict w, const float* __restrict in, float* __restrict out) {
  constexpr int HO = HI - K5 + 1, WO = WI - K5 + 1;
  constexpr int R = HO % 4 == 0 ? 4 : HO % 2 == 0 ? 2 : 1;
  for (int c = 0; c < CO; ++c)
    for (int y0 = 0; y0 < HO; y0 += R) {
      float acc[R][WO] = {};
      for (int ci = 0; ci < CI; ++ci)
        for (int ky = 0; ky < K5; ++ky) {
          const float* wk = w + ((c * CI + ci) * K5 + ky) * K5;
          for (int kx = 0; kx < K5; ++kx) {
            const float wv = wk[kx];
            for (int r = 0; r < R; ++r) {
              const float* row = in + (ci * HI + y0 + r + ky) * WI + kx;
#pragma omp simd
              for (int x = 0; x < WO; ++x) acc[r][x] += wv * row[x];
            }
          }
        }
      std::memcpy(out + (c * HO + y0) * WO, acc, sizeof acc);
    }
}

// conv, then bias and activation in place, the derivative kept in d.
template <int CI, int CO, int HI, int WI>
inline void conv_forward(const float* __restrict w, const float* __restrict b, const float* __restrict in,
                         float* __restrict out, float* __restrict d) {
  constexpr int PLANE = (HI - K5 + 1) * (WI - K5 + 1);
  conv_raw<CI, CO, HI, WI>(w, in, out);
  for (int c = 0; c < CO; ++c) {
    float* o = out + c * PLANE;
    float* dd = d + c * PLANE;
#pragma omp simd
    for (int i = 0; i < PLANE; ++i) o[i] = sl_activate(o[i] + b[c], dd[i]);
  }
}

// 2x2 max pool, stride 2; `arg` keeps which of the four won (the first maximum in row-major order, as ATen's).
template <int C, int HI, int WI>
inline void pool_forward(const float* __restrict in, float* __restrict out, uint8_t* __restrict arg) {
  constexpr int HO = HI / 2, WO = WI / 2;
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < HO; ++y)
      for (int x = 0; x < WO; ++x) {
        const float* p = in + (c * HI + 2 * y) * WI + 2 * x;
        float best = p[0];
        uint8_t at = 0;
        if (p[1] > best) best = p[1], at = 1;
        if (p[WI] > best) best = p[WI], at = 2;
        if (p[WI + 1] > best) best = p[WI + 1], at = 3;
        out[(c * HO + y) * WO + x] = best;
        arg[(c * HO + y) * WO + x] = at;
      }
}

// The pool's gradient routed to the winners, times the activation's derivative there: the conv's output gradient.
template <int C, int HI, int WI>
inline void pool_backward(const float* __restrict dout, const uint8_t* __restrict arg, const float* __restrict d,
                          float* __restrict dz) {
  constexpr int HO = HI / 2, WO = WI / 2;
  std::memset(dz, 0, sizeof(float) * C * HI * WI);
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < HO; ++y)
      for (int x = 0; x < WO; ++x) {
        const int i = (c * HO + y) * WO + x;
        const int at = (c * HI + 2 * y + (arg[i] >> 1)) * WI + 2 * x + (arg[i] & 1);
        dz[at] = dout[i] * d[at];
      }
}

// Weight and bias gradients of a conv from its output gradient dz: direct reductions over the output pixels. For
// each (c, ci, ky) the five kx taps keep a row of partial sums each, over every output row, and are summed across
// the row once at the end (one horizontal sum per weight, not one per weight and row).
template <int CI, int CO, int HI, int WI>
inline void conv_grads(const float* __restrict dz, const float* __restrict in, float* __restrict gw,
                       float* __restrict gb) {
  constexpr int HO = HI - K5 + 1, WO = WI - K5 + 1;
  for (int c = 0; c < CO; ++c) {
    const float* dc = dz + c * HO * WO;
    float bias = 0.f;
#pragma omp simd reduction(+ : bias)
    for (int i = 0; i < HO * WO; ++i) bias += dc[i];
    gb[c] += bias;
    for (int ci = 0; ci < CI; ++ci)
      for (int ky = 0; ky < K5; ++ky) {
        float acc[K5][WO] = {};
        for (int y = 0; y < HO; ++y) {
          const float* row = in + (ci * HI + y + ky) * WI;
          const float* dr = dc + y * WO;
          for (int kx = 0; kx < K5; ++kx) {
#pragma omp simd
            for (int x = 0; x < WO; ++x) acc[kx][x] += dr[x] * row[x + kx];
          }
        }
        float* g = gw + ((c * CI + ci) * K5 + ky) * K5;
        for (int kx = 0; kx < K5; ++kx) {
          float sum = 0.f;
#pragma omp simd reduction(+ : sum)
          for (int x = 0; x < WO; ++x) sum += acc[kx][x];
          g[kx] += sum;
        }
      }
  }
}

// A conv's input gradient, din[ci][y+ky][x+kx] += w[c][ci][ky][kx] dz[c][y][x], computed as a forward conv (the
// same register-friendly loop) of dz zero-padded by 4 with the weights flipped and their channels swapped (`wt`,
// made once per step); `dzp` is the padded buffer, its border zero.
template <int CI, int CO, int HI, int WI>
inline void conv_input_grad(const float* __restrict wt, const float* __restrict dz, float* __restrict dzp,
                            float* __restrict din) {
  constexpr int HO = HI - K5 + 1, WO = WI - K5 + 1, HP = HO + 2 * (K5 - 1), WP = WO + 2 * (K5 - 1);
  for (int c = 0; c < CO; ++c)
    for (int y = 0; y < HO; ++y)
      std::memcpy(dzp + (c * HP + y + K5 - 1) * WP + K5 - 1, dz + (c * HO + y) * WO, sizeof(float) * WO);
  conv_raw<CO, CI, HP, WP>(wt, dzp, din);
}

// The weights of a CO x CI conv flipped in both axes, channels swapped: the input gradient's conv weights.
template <int CI, int CO>
inline void flip_weights(const float* __restrict w, float* __restrict wt) {
  for (int c = 0; c < CO; ++c)
    for (int ci = 0; ci < CI; ++ci)
      for (int ky = 0; ky < K5; ++ky)
        for (int kx = 0; kx < K5; ++kx)
          wt[((ci * CO + c) * K5 + K5 - 1 - ky) * K5 + K5 - 1 - kx] = w[((c * CI + ci) * K5 + ky) * K5 + kx];
}

// Linear: out[j] = b[j] + w[j] . in (then the activation, with its derivative, unless `d` is null).
template <int IN, int OUT>
inline void dense_forward(const float* __restrict w, const float* __restrict b, const float* __restrict in,
                          float* __restrict out, float* __restrict d) {
  for (int j = 0; j < OUT; ++j) {
    const float* wj = w + j * IN;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < IN; ++i) sum += wj[i] * in[i];
    out[j] = d ? sl_activate(sum + b[j], d[j]) : sum + b[j];
  }
}

// Linear's gradients: gw[j] += dz[j] in, gb += dz; and, when `din` is given, din = (w^T dz) * d_in.
template <int IN, int OUT>
inline void dense_backward(const float* __restrict w, const float* __restrict dz, const float* __restrict in,
                           float* __restrict gw, float* __restrict gb, float* __restrict din,
                           const float* __restrict d_in) {
  for (int j = 0; j < OUT; ++j) {
    gb[j] += dz[j];
    float* g = gw + j * IN;
    const float dj = dz[j];
#pragma omp simd
    for (int i = 0; i < IN; ++i) g[i] += dj * in[i];
  }
  if (!din) return;
#pragma omp simd
  for (int i = 0; i < IN; ++i) din[i] = 0.f;
  for (int j = 0; j < OUT; ++j) {
    const float* wj = w + j * IN;
    const float dj = dz[j];
#pragma omp simd
    for (int i = 0; i < IN; ++i) din[i] += dj * wj[i];
  }
  if (d_in) {
#pragma omp simd
    for (int i = 0; i < IN; ++i) din[i] *= d_in[i];
  }
}

// One sample's buffers, and the thread's own gradients.
struct Scratch {
  std::vector<float> in, a1, d1, p1, a2, d2, p2, h1, e1, h2, e2, out, dz1, dp1, dz2, dp2, g1, g2, g3, grad, wt2, dzp;
  std::vector<uint8_t> arg1, arg2;
  explicit Scratch(int64_t params)
      : in(IC * H0 * W0, 0.f), a1(C1 * H1 * W1), d1(C1 * H1 * W1), p1(C1 * H2 * W2), a2(C2 * H3 * W3),
        d2(C2 * H3 * W3), p2(F0), h1(F1), e1(F1), h2(F2), e2(F2), out(K), dz1(C1 * H1 * W1), dp1(C1 * H2 * W2),
        dz2(C2 * H3 * W3), dp2(F0), g1(F1), g2(F2), g3(K), grad(params), wt2(C2 * C1 * K5 * K5),
        dzp(C2 * (H3 + 2 * (K5 - 1)) * (W3 + 2 * (K5 - 1)), 0.f), arg1(C1 * H2 * W2), arg2(F0) {}
};

std::vector<Scratch>& scratch(int threads, int64_t params) {
  static std::vector<Scratch> kept;
  if (int(kept.size()) != threads || (threads && int64_t(kept[0].grad.size()) != params)) {
    kept.clear();
    for (int t = 0; t < threads; ++t) kept.emplace_back(params);
  }
  return kept;
}

// Forward and backward of one sample (image `x`, class `label`), its gradients added to s.grad; returns its loss.
double sample(const float* p, const int64_t* at, const float* x, int64_t label, float scale, Scratch& s) {
  float* g = s.grad.data();
  for (int c = 0; c < IC; ++c)  // the image into the zero-padded input (its border stays zero)
    for (int y = 0; y < SL_IH; ++y)
      std::memcpy(&s.in[(c * H0 + y + PAD) * W0 + PAD], x + (c * SL_IH + y) * SL_IW, sizeof(float) * SL_IW);
  conv_forward<IC, C1, H0, W0>(p + at[CW1], p + at[CB1], s.in.data(), s.a1.data(), s.d1.data());
  pool_forward<C1, H1, W1>(s.a1.data(), s.p1.data(), s.arg1.data());
  conv_forward<C1, C2, H2, W2>(p + at[CW2], p + at[CB2], s.p1.data(), s.a2.data(), s.d2.data());
  pool_forward<C2, H3, W3>(s.a2.data(), s.p2.data(), s.arg2.data());
  dense_forward<F0, F1>(p + at[LW1], p + at[LB1], s.p2.data(), s.h1.data(), s.e1.data());
  dense_forward<F1, F2>(p + at[LW2], p + at[LB2], s.h1.data(), s.h2.data(), s.e2.data());
  dense_forward<F2, K>(p + at[LW3], p + at[LB3], s.h2.data(), s.out.data(), nullptr);
  // Cross-entropy (mean over the batch: `scale` = 1 / batch) and its gradient at the logits.
  float top = s.out[0];
  for (int k = 1; k < K; ++k) top = std::max(top, s.out[k]);
  float sum = 0.f;
  for (int k = 0; k < K; ++k) sum += std::exp(s.out[k] - top);
  for (int k = 0; k < K; ++k) s.g3[k] = scale * std::exp(s.out[k] - top) / sum;
  s.g3[label] -= scale;
  const double loss = double(std::log(sum) + top - s.out[label]);
  dense_backward<F2, K>(p + at[LW3], s.g3.data(), s.h2.data(), g + at[LW3], g + at[LB3], s.g2.data(), s.e2.data());
  dense_backward<F1, F2>(p + at[LW2], s.g2.data(), s.h1.data(), g + at[LW2], g + at[LB2], s.g1.data(), s.e1.data());
  dense_backward<F0, F1>(p + at[LW1], s.g1.data(), s.p2.data(), g + at[LW1], g + at[LB1], s.dp2.data(), nullptr);
  pool_backward<C2, H3, W3>(s.dp2.data(), s.arg2.data(), s.d2.data(), s.dz2.data());
  conv_grads<C1, C2, H2, W2>(s.dz2.data(), s.p1.data(), g + at[CW2], g + at[CB2]);
  conv_input_grad<C1, C2, H2, W2>(s.wt2.data(), s.dz2.data(), s.dzp.data(), s.dp1.data());
  pool_backward<C1, H1, W1>(s.dp1.data(), s.arg1.data(), s.d1.data(), s.dz1.data());
  conv_grads<IC, C1, H0, W0>(s.dz1.data(), s.in.data(), g + at[CW1], g + at[CB1]);
  return loss;
}

}  // namespace

// One step over `batch` images (batch x IC x IH x IW, float) and their classes (int64): forward, cross-entropy,
// backward with threads splitting the batch, then AdamW over the flat buffers as speedlab's FlatAdamW writes it.
// `offsets` holds the ten parameters' offsets in the flat buffer (conv1 w, b, conv2 w, b, fc1-3 w, b). Returns the
// mean loss.
extern "C" double sl_lenet_step(float* params, float* exp_avg, float* exp_avg_sq, const float* decay,
                                float* step_count, const int64_t* offsets, int64_t n_params, const float* x,
                                const int64_t* labels, int64_t batch, double lr, double beta1, double beta2,
                                double eps, int threads) {
  threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, batch)));
  std::vector<Scratch>& work = scratch(threads, n_params);
  std::vector<double> losses(threads, 0.0);
  const float scale = 1.f / float(batch);
  constexpr int64_t image = int64_t(IC) * SL_IH * SL_IW;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    Scratch& s = work[t];
    std::fill(s.grad.begin(), s.grad.end(), 0.f);
    flip_weights<C1, C2>(params + offsets[CW2], s.wt2.data());
    double loss = 0.0;
    for (int64_t i = batch * t / threads; i < batch * (t + 1) / threads; ++i)
      loss += sample(params, offsets, x + i * image, labels[i], scale, s);
    losses[t] = loss;
  }
  const AdamW adam = AdamW::next(step_count, lr, beta1, beta2, eps);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t q = 0; q < n_params; ++q) {
    float g = 0.f;
    for (int th = 0; th < threads; ++th) g += work[th].grad[q];
    adam.update(params[q], exp_avg[q], exp_avg_sq[q], g, decay[q]);
  }
  double loss = 0.0;
  for (double l : losses) loss += l;
  return loss / double(batch);
}
