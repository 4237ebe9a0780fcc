// tiny_gap's ReLU -> BatchNorm2d -> dropout and its 3x3 convolutions, forward and backward, for training on a CPU
// (mnist_core/fused.py).
//
// Activations are channels-last float32 (N, C, H, W): a stream of N*H*W rows of C values. The block kernels walk
// the stream in periods of L = lcm(C, 16) values, in which channel = index % C repeats, so per-channel parameters
// are laid out once per period and all the work is whole 16-float vectors (GCC/Clang vector extensions: AVX-512
// where the CPU has it, narrower registers elsewhere); the convolutions, at the end, have their own note. Sums are
// float within 32 periods, then double (the convolutions' weight gradient: float within a row chunk), added over
// CHUNKS fixed chunks in order: a run gives the same bits whatever the thread count.
// at::parallel_for runs on torch's own OpenMP pool (built with -fopenmp, the library links no runtime of its own:
// its OpenMP calls go to the one libtorch_cpu loaded), so no second set of threads competes with torch's.
// The operators are registered as torch.ops.mnist_fused.*; only ATen's light headers are included, so the
// first build on a machine takes about half the time and memory of a full <torch/extension.h> one.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

typedef float v16f __attribute__((vector_size(64)));
typedef uint8_t v16u8 __attribute__((vector_size(16)));

static constexpr int64_t CHUNKS = 16;  // fixed sum chunks: the same result for any thread count

static int64_t period(int64_t C) { return std::lcm(C, (int64_t)16); }

static inline v16f load(const float* p) { v16f v; std::memcpy(&v, p, 64); return v; }
static inline void store(float* p, v16f v) { std::memcpy(p, &v, 64); }
typedef int32_t v16i32 __attribute__((vector_size(64)));
typedef int32_t v8i32 __attribute__((vector_size(32)));
// Bytes to floats through int32: GCC converts a byte vector to floats one lane at a time (16 extracts and scalar
// conversions, most of a block pass), but widens bytes to int32 and int32 to float in one instruction each.
static inline v16f bytes_to_floats(v16u8 k) {
  return __builtin_convertvector(__builtin_convertvector(k, v16i32), v16f);
}
static inline v16f load_kept(const uint8_t* p) { v16u8 k; std::memcpy(&k, p, 16); return bytes_to_floats(k); }
static inline v16f relu(v16f v) { v16f z = {}; return v > z ? v : z; }

static std::vector<float> repeat(const float* per_channel, int64_t C, int64_t L) {
  std::vector<float> r(L);
  for (int64_t i = 0; i < L; ++i) r[i] = per_channel[i % C];
  return r;
}

template <int V>
static void add_folded(double* s, const v16f* f) {  // float partials into double channel-period sums
  for (int v = 0; v < V; ++v)
    for (int l = 0; l < 16; ++l) s[v * 16 + l] += f[v][l];
}

// Two per-channel sums over the stream, (CHUNKS, 2, L) per period position: pair(offset, v, x, y) gives a vector's
// two terms. Float within 32 periods, then double, chunk by fixed chunk.
template <int V, typename Pair>
static void chunked_pair_sums(int64_t blocks, double* part, Pair pair) {
  constexpr int64_t L = V * 16;
  at::parallel_for(0, CHUNKS, 1, [=](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      double* s = part + k * 2 * L;
      double* q = s + L;
      const int64_t b0 = blocks * k / CHUNKS, b1 = blocks * (k + 1) / CHUNKS;
      for (int64_t i = b0; i < b1; i += 32) {
        v16f fs[V] = {}, fq[V] = {};
        for (int64_t j = i; j < std::min(i + 32, b1); ++j)
          for (int v = 0; v < V; ++v) pair(j * L + v * 16, v, fs[v], fq[v]);
        add_folded<V>(s, fs);
        add_folded<V>(q, fq);
      }
    }
  });
}

// relu(z) - center and its square. Centred on the mean, the squares give the variance without the cancellation
// of E[x^2] - E[x]^2 in float partial sums (a channel whose mean is 1,000 times its spread lost the variance).
template <int V>
static void relu_moments_impl(const float* z, const float* center, int64_t blocks, double* part) {
  v16f c[V];
  for (int v = 0; v < V; ++v) c[v] = load(center + v * 16);
  chunked_pair_sums<V>(blocks, part, [=](int64_t o, int v, v16f& fs, v16f& fq) {
    v16f a = relu(load(z + o)) - c[v];
    fs += a;
    fq += a * a;
  });
}

// BatchNorm's bias and weight gradients: the gradient reaching its output (through the mask) and that times x-hat
template <int V>
static void gradient_sums_impl(const float* g, const float* z, const uint8_t* kept, float rs, const float* mean,
                               const float* rstd, int64_t blocks, double* part) {
  v16f m[V], r[V];
  for (int v = 0; v < V; ++v) { m[v] = load(mean + v * 16); r[v] = load(rstd + v * 16); }
  chunked_pair_sums<V>(blocks, part, [=](int64_t o, int v, v16f& fs, v16f& fq) {
    v16f gb = load(g + o) * load_kept(kept + o) * rs;
    fs += gb;
    fq += gb * (relu(load(z + o)) - m[v]) * r[v];
  });
}

template <int V>
static void backward_impl(const float* g, const float* z, const uint8_t* kept, float rs, const float* gain,
                          const float* bm, const float* wm, const float* mean, const float* rstd, int64_t blocks,
                          float* out) {
  constexpr int64_t L = V * 16;
  at::parallel_for(0, blocks, 256, [=](int64_t b, int64_t e) {
    v16f ga[V], bmv[V], wmv[V], m[V], r[V];
    for (int v = 0; v < V; ++v) {
      ga[v] = load(gain + v * 16); bmv[v] = load(bm + v * 16); wmv[v] = load(wm + v * 16);
      m[v] = load(mean + v * 16); r[v] = load(rstd + v * 16);
    }
    const v16f zero = {};
    for (int64_t j = b; j < e; ++j)
      for (int v = 0; v < V; ++v) {
        const int64_t o = j * L + v * 16;
        v16f a = load(z + o);
        v16f gb = load(g + o) * load_kept(kept + o) * rs;
        v16f val = ga[v] * (gb - bmv[v] - (a - m[v]) * r[v] * wmv[v]);
        store(out + o, a > zero ? val : zero);
      }
  });
}

typedef int16_t v16i16 __attribute__((vector_size(32)));

// out = ((relu(z) - mean) * scale + shift) * kept, kept (0 or 1) in the stream's order. The mean is taken off first,
// as BatchNorm does: folded into the shift, it cancelled in float.
template <int V>
static void forward_impl(const float* z, const uint8_t* kept, const float* mn, const float* sc, const float* sh,
                         int64_t blocks, float* out) {
  constexpr int64_t L = V * 16;
  at::parallel_for(0, blocks, 256, [=](int64_t b, int64_t e) {
    v16f m[V], s[V], h[V];
    for (int v = 0; v < V; ++v) { m[v] = load(mn + v * 16); s[v] = load(sc + v * 16); h[v] = load(sh + v * 16); }
    for (int64_t j = b; j < e; ++j)
      for (int v = 0; v < V; ++v) {
        const int64_t o = j * L + v * 16;
        store(out + o, ((relu(load(z + o)) - m[v]) * s[v] + h[v]) * load_kept(kept + o));
      }
  });
}

// Every operator checks what it is given: a wrong call raises in Python instead of reading past a tensor's memory.
static void check(const at::Tensor& t, at::ScalarType type, int64_t numel, const char* name) {
  TORCH_CHECK(t.scalar_type() == type && t.is_contiguous() && t.device().is_cpu() && t.numel() == numel,
              "mnist_fused: ", name, " must be a contiguous CPU tensor of ", numel, " ", c10::toString(type), " values");
}

#define DISPATCH(V, F, ...)                \
  switch (V) {                             \
    case 1: F<1>(__VA_ARGS__); break;      \
    case 2: F<2>(__VA_ARGS__); break;      \
    case 3: F<3>(__VA_ARGS__); break;      \
    case 4: F<4>(__VA_ARGS__); break;      \
    case 5: F<5>(__VA_ARGS__); break;      \
    case 6: F<6>(__VA_ARGS__); break;      \
    case 7: F<7>(__VA_ARGS__); break;      \
    case 8: F<8>(__VA_ARGS__); break;      \
    default: TORCH_CHECK(false, "unsupported channel count"); \
  }

// Per-channel sums (2 * C) in double of the stream's whole periods: each period position summed over the chunks
// in a fixed order, then folded into its channel. The callers add the tail past the last whole period.
static std::vector<double> fold_channels(const std::vector<double>& part, int64_t C) {
  const int64_t L = period(C);
  std::vector<double> sums(2 * C, 0.0);
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t l = 0; l < L; ++l) {
      double position = 0.0;
      for (int64_t k = 0; k < CHUNKS; ++k) position += part[(k * 2 + s) * L + l];
      sums[s * C + l % C] += position;
    }
  return sums;
}

static std::vector<double> relu_moments(const float* z, int64_t n, int64_t C, const float* center) {
  const int64_t L = period(C), blocks = n / L;
  std::vector<double> part(CHUNKS * 2 * L, 0.0);
  auto c = repeat(center, C, L);
  DISPATCH(L / 16, relu_moments_impl, z, c.data(), blocks, part.data());
  auto sums = fold_channels(part, C);
  for (int64_t o = blocks * L; o < n; ++o) {
    double a = std::max(z[o], 0.f) - c[o % C];
    sums[o % C] += a;
    sums[C + o % C] += a * a;
  }
  return sums;
}

static std::vector<double> gradient_sums(const float* g, const float* z, const uint8_t* kept, float rescale,
                                         const float* mean, const float* rstd, int64_t n, int64_t C) {
  const int64_t L = period(C), blocks = n / L;
  std::vector<double> part(CHUNKS * 2 * L, 0.0);
  auto m = repeat(mean, C, L), r = repeat(rstd, C, L);
  DISPATCH(L / 16, gradient_sums_impl, g, z, kept, rescale, m.data(), r.data(), blocks, part.data());
  auto sums = fold_channels(part, C);
  for (int64_t o = blocks * L; o < n; ++o) {
    const int64_t c = o % C;
    double gb = kept[o] ? g[o] * (double)rescale : 0.0;
    sums[c] += gb;
    sums[C + c] += gb * (std::max(z[o], 0.f) - m[c]) * r[c];
  }
  return sums;
}

static void forward_out(const float* z, const uint8_t* kept, const float* mean, const float* scale,
                        const float* shift, int64_t n, int64_t C, float* out) {
  const int64_t L = period(C), blocks = n / L;
  auto mn = repeat(mean, C, L), sc = repeat(scale, C, L), sh = repeat(shift, C, L);
  DISPATCH(L / 16, forward_impl, z, kept, mn.data(), sc.data(), sh.data(), blocks, out);
  for (int64_t o = blocks * L; o < n; ++o)
    out[o] = ((std::max(z[o], 0.f) - mn[o % C]) * sc[o % C] + sh[o % C]) * kept[o];
}

static void backward_out(const float* g, const float* z, const uint8_t* kept, float rescale, const float* gain,
                         const float* bias_mean, const float* weight_mean, const float* mean, const float* rstd,
                         int64_t n, int64_t C, float* out) {
  const int64_t L = period(C), blocks = n / L;
  auto ga = repeat(gain, C, L), bm = repeat(bias_mean, C, L), wm = repeat(weight_mean, C, L),
       m = repeat(mean, C, L), r = repeat(rstd, C, L);
  DISPATCH(L / 16, backward_impl, g, z, kept, rescale, ga.data(), bm.data(), wm.data(), m.data(), r.data(), blocks,
           out);
  for (int64_t o = blocks * L; o < n; ++o) {
    const int64_t c = o % C;
    float gb = kept[o] ? g[o] * rescale : 0.f;
    float v = ga[c] * (gb - bm[c] - (z[o] - m[c]) * r[c] * wm[c]);
    out[o] = z[o] > 0.f ? v : 0.f;
  }
}

// torch.empty(count, dtype=int64).random_(-2**63, None) on the default CPU generator, to the bit, and the generator
// left where that call leaves it: the same Mersenne Twister (at::mt19937) run in whole state blocks, which the
// compiler vectorizes; torch draws one number at a time (about 3 ms of tiny_gap's step for its dropout masks).
static inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

static inline uint32_t twist(uint32_t u, uint32_t v) {
  return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void next_state(uint32_t* p) {  // at::mt19937_engine::next_state
  constexpr int N = at::MERSENNE_STATE_N, M = at::MERSENNE_STATE_M;
  for (int i = 0; i < N - M; ++i) p[i] = p[i + M] ^ twist(p[i], p[i + 1]);
  for (int i = N - M; i < N - 1; ++i) p[i] = p[i + M - N] ^ twist(p[i], p[i + 1]);
  p[N - 1] = p[M - 1] ^ twist(p[N - 1], p[0]);
}

static void tempered(const uint32_t* __restrict__ st, int64_t n, uint32_t* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = temper(st[i]);
}

at::Tensor random_words(int64_t count) {
  TORCH_CHECK(count >= 0, "mnist_fused: a negative count of random words");
  auto words = at::empty({count}, at::kLong);
  uint32_t* out = static_cast<uint32_t*>(words.data_ptr());  // the draws in order, then paired into words below
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(gen);
  at::mt19937 engine = impl->engine();
  at::mt19937_data_pod d = engine.data();
  uint32_t st[at::MERSENNE_STATE_N];
  std::memcpy(st, d.state_.data(), sizeof(st));
  int64_t left = d.left_, next = d.next_, made = 0;
  while (made < 2 * count) {
    // a draw first counts left down, and at 0 makes the next state block and returns its first value
    const int64_t take = std::min<int64_t>(left - 1, 2 * count - made);
    tempered(st + next, take, out + made);
    next += take;
    left -= take;
    made += take;
    if (made < 2 * count) {
      next_state(st);
      left = at::MERSENNE_STATE_N;
      out[made++] = temper(st[0]);
      next = 1;
    }
  }
  std::memcpy(d.state_.data(), st, sizeof(st));
  d.left_ = (int)left;
  d.next_ = (uint32_t)next;
  engine.set_data(d);
  impl->set_engine(engine);
  char* w = static_cast<char*>(words.data_ptr());
  for (int64_t k = 0; k < count; ++k) {  // random64(): the first draw of a pair is the high half
    uint64_t v;
    std::memcpy(&v, w + 8 * k, 8);
    v = (v << 32) | (v >> 32);
    std::memcpy(w + 8 * k, &v, 8);
  }
  return words;
}

// BitMaskDropout's keep decisions for an (N, C, H, W) batch: its random words' int16 draws in the values' logical
// order, at or above keep_from, laid out as the channels-last stream the kernels walk: a seed drops the same values
// fused or layer by layer.
//
// A transposition: value by value it took about 3 cycles a value, as long as the rest of the block's forward pass.
// Where C is a multiple of 4 it goes by tiles of 16 pixels: each channel's 16 draws compared in one vector, four
// channels' decisions packed into a 32-bit word per pixel, and the words written pixel by pixel (a quarter of the
// moves).
typedef uint32_t v16u32 __attribute__((vector_size(64)));

// pixels [from, HW) value by value
static void kept_bytes(const int16_t* __restrict__ s, int64_t HW, int64_t C, int16_t keep_from,
                       uint8_t* __restrict__ d, int64_t from = 0) {
  for (int64_t p = from; p < HW; ++p)
    for (int64_t c = 0; c < C; ++c) d[p * C + c] = s[c * HW + p] >= keep_from;
}

template <int G>  // C = 4 * G channels
static void kept_words(const int16_t* __restrict__ s, int64_t HW, int16_t keep_from, uint8_t* __restrict__ d) {
  const int64_t C = 4 * G, tiles = HW / 16;
  for (int64_t t = 0; t < tiles; ++t) {
    uint32_t words[G][16];
    for (int g = 0; g < G; ++g) {
      v16u32 w = {};
      for (int k = 0; k < 4; ++k) {
        v16i16 draws;
        std::memcpy(&draws, s + (4 * g + k) * HW + 16 * t, 32);
        w |= (__builtin_convertvector(draws >= keep_from, v16u32) & 1) << (8 * k);  // channel 4g + k in byte k
      }
      std::memcpy(words[g], &w, 64);
    }
    for (int q = 0; q < 16; ++q)
      for (int g = 0; g < G; ++g) std::memcpy(d + (16 * t + q) * C + 4 * g, &words[g][q], 4);
  }
  kept_bytes(s, HW, C, keep_from, d, tiles * 16);
}

static at::Tensor channels_last_kept(int64_t N, int64_t C, int64_t HW, int16_t keep_from) {
  const int64_t count = N * C * HW;
  auto words = random_words((count + 3) / 4);
  const int16_t* logical = static_cast<const int16_t*>(words.data_ptr());
  auto kept = at::empty({count}, at::kByte);
  uint8_t* stream = kept.data_ptr<uint8_t>();
  at::parallel_for(0, N, 1, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int16_t* s = logical + i * C * HW;
      uint8_t* d = stream + i * C * HW;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__  // byte k of a word is channel 4g + k
      switch (C % 4 == 0 ? C / 4 : 0) {
        case 1: kept_words<1>(s, HW, keep_from, d); continue;
        case 2: kept_words<2>(s, HW, keep_from, d); continue;
        case 3: kept_words<3>(s, HW, keep_from, d); continue;
        case 4: kept_words<4>(s, HW, keep_from, d); continue;
        case 5: kept_words<5>(s, HW, keep_from, d); continue;
        case 6: kept_words<6>(s, HW, keep_from, d); continue;
        case 7: kept_words<7>(s, HW, keep_from, d); continue;
        case 8: kept_words<8>(s, HW, keep_from, d); continue;
      }
#endif
      kept_bytes(s, HW, C, keep_from, d);
    }
  });
  return kept;
}

static void check_batch(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.dim() == 4 && t.sizes() == like.sizes() &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mnist_fused: ", name, " must be a channels-last float32 CPU batch of shape ", like.sizes());
}

static int64_t batch_channels(const at::Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) > 0 && period(z.size(1)) <= 8 * 16,
              "mnist_fused: expected an (N, C, H, W) batch with lcm(C, 16) <= 128, got ", z.sizes());
  check_batch(z, z, "z");
  return z.size(1);
}

// float lerp as torch's lerp_ computes it for a float tensor and a scalar weight
static float lerp(float self, float end, float weight) {
  return std::abs(weight) < 0.5f ? self + weight * (end - self) : end - (end - self) * (1.0f - weight);
}

// dropout(batchnorm(relu(z)), p) in training into out: the batch statistics (two passes, the second centred on the
// first's mean), the running statistics updated as nn.BatchNorm2d does, then the output and its kept mask in one
// pass. Returns (kept, mean, rstd) for the backward pass.
std::tuple<at::Tensor, at::Tensor, at::Tensor> block_forward(at::Tensor z, at::Tensor weight, at::Tensor bias,
                                                             at::Tensor running_mean, at::Tensor running_var,
                                                             at::Tensor batches_tracked, double momentum,
                                                             double eps, double p, at::Tensor out,
                                                             c10::optional<at::Tensor> moments) {
  const int64_t C = batch_channels(z), n = z.numel(), count = n / C;
  for (const at::Tensor* t : {&weight, &bias, &running_mean, &running_var}) check(*t, at::kFloat, C, "a channel vector");
  check(batches_tracked, at::kLong, 1, "num_batches_tracked");
  check_batch(out, z, "out");
  // Within 1/131,072 of 1 the threshold would not fit an int16 draw (BitMaskDropout keeps nothing there).
  TORCH_CHECK(count > 1 && p >= 0 && std::nearbyint(p * 65536) < 65536,
              "mnist_fused: needs more than one value per channel and 0 <= p < 1 - 1/131072");
  const int16_t keep_from = (int16_t)(std::nearbyint(p * 65536) - 32768);
  at::Tensor kept = p == 0 ? at::empty({n}, at::kByte) : channels_last_kept(z.size(0), C, count / z.size(0), keep_from);
  if (p == 0) std::memset(kept.data_ptr<uint8_t>(), 1, n);
  const float* zp = z.data_ptr<float>();

  // The moments about a first estimate of the mean: the batch's own (a first pass), or those the convolution
  // before it summed as it wrote z (about the running mean).
  std::vector<float> mean_f(C), rstd_f(C), scale(C), shift(C);
  std::vector<double> centred(2 * C);
  bool summed = moments.has_value();
  if (summed) {
    check(*moments, at::kDouble, 3 * C, "moments");
    const double* given = moments->data_ptr<double>();
    for (int64_t c = 0; c < C; ++c) {
      mean_f[c] = (float)given[c];
      centred[c] = given[C + c];
      centred[C + c] = given[2 * C + c];
      // The sums' float rounding grows with ((mean - center) / spread)^2: a center more than about 3 spreads from
      // the mean (a running mean not yet caught up, a channel far from zero) takes the two passes instead.
      const double offset = centred[c] / count, var = centred[C + c] / count - offset * offset;
      if (!(offset * offset <= 10 * (var + eps))) summed = false;
    }
  }
  if (!summed) {
    std::vector<float> zero(C, 0.f);
    auto first = relu_moments(zp, n, C, zero.data());
    for (int64_t c = 0; c < C; ++c) mean_f[c] = (float)(first[c] / count);
    centred = relu_moments(zp, n, C, mean_f.data());
  }
  auto mean = at::empty({C}, at::kFloat), rstd = at::empty({C}, at::kFloat);
  float *rm = running_mean.data_ptr<float>(), *rv = running_var.data_ptr<float>();
  const float *w = weight.data_ptr<float>(), *b = bias.data_ptr<float>();
  const double rescale = 1.0 / (1.0 - p);
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean_f[c] + centred[c] / count;
    const double var = std::max(centred[C + c] / count - (centred[c] / count) * (centred[c] / count), 0.0);
    const double r = 1.0 / std::sqrt(var + eps);
    rm[c] = lerp(rm[c], (float)m, (float)momentum);
    rv[c] = lerp(rv[c], (float)(var * count / (count - 1)), (float)momentum);
    mean.data_ptr<float>()[c] = mean_f[c] = (float)m;
    rstd.data_ptr<float>()[c] = (float)r;
    scale[c] = (float)(w[c] * r * rescale);
    shift[c] = (float)(b[c] * rescale);
  }
  batches_tracked.data_ptr<int64_t>()[0] += 1;
  forward_out(zp, kept.data_ptr<uint8_t>(), mean_f.data(), scale.data(), shift.data(), n, C, out.data_ptr<float>());
  return {kept, mean, rstd};
}

// The gradients of block_forward: z's into z_grad, and (weight's, bias's) returned.
std::tuple<at::Tensor, at::Tensor> block_backward(at::Tensor grad, at::Tensor z, at::Tensor kept, at::Tensor weight,
                                                  at::Tensor mean, at::Tensor rstd, double rescale, at::Tensor z_grad) {
  const int64_t C = batch_channels(z), n = z.numel(), count = n / C;
  check_batch(grad, z, "grad");
  check_batch(z_grad, z, "z_grad");
  check(kept, at::kByte, n, "kept");
  for (const at::Tensor* t : {&weight, &mean, &rstd}) check(*t, at::kFloat, C, "a channel vector");
  const float *gp = grad.data_ptr<float>(), *zp = z.data_ptr<float>(), *m = mean.data_ptr<float>(),
              *r = rstd.data_ptr<float>(), *w = weight.data_ptr<float>();
  const uint8_t* kp = kept.data_ptr<uint8_t>();
  auto sums = gradient_sums(gp, zp, kp, (float)rescale, m, r, n, C);
  auto weight_grad = at::empty({C}, at::kFloat), bias_grad = at::empty({C}, at::kFloat);
  std::vector<float> gain(C), bias_mean(C), weight_mean(C);
  for (int64_t c = 0; c < C; ++c) {
    bias_grad.data_ptr<float>()[c] = (float)sums[c];
    weight_grad.data_ptr<float>()[c] = (float)sums[C + c];
    gain[c] = w[c] * r[c];
    bias_mean[c] = (float)(sums[c] / count);
    weight_mean[c] = (float)(sums[C + c] / count);
  }
  backward_out(gp, zp, kp, (float)rescale, gain.data(), bias_mean.data(), weight_mean.data(), m, r, n, C,
               z_grad.data_ptr<float>());
  return {weight_grad, bias_grad};
}

// ---- tiny_gap's 3x3 convolutions: stride 1, no padding, no bias, channels-last float32, 1-32 channels each side ----
//
// oneDNN's AVX-512 convolutions work in blocks of 16 channels, so tiny_gap's 8-, 12- and 20-channel layers ran at
// 35-50% of the arithmetic's speed (conv 2's input gradient at a third). These work in 8-float vectors of output
// channels, each input value broadcast into a block of J output pixels' accumulators held in registers. The input's
// gradient is the full correlation of the output's gradient with the flipped, transposed weights; the weights'
// gradient sums over fixed row chunks, then adds the chunks in order: the same bits for any thread count.
typedef float v8f __attribute__((vector_size(32)));
static inline v8f load8(const float* p) { v8f v; std::memcpy(&v, p, 32); return v; }

static constexpr int CONV_MAX_VECTORS = 4;                             // 32 channels at most, 8 per vector
static constexpr int64_t ROW_BLOCK[CONV_MAX_VECTORS] = {12, 11, 7, 5};  // output pixels per block: <= 24 accumulators
static constexpr int64_t PATCH_TILE[CONV_MAX_VECTORS] = {24, 12, 8, 6};  // weight-gradient entries per tile, likewise

// J consecutive output pixels of one row, every output channel: x points at the block's first input pixel, wt is
// (3, 3, C_in, K * 8), zero beyond C_out. Only kernel rows [kh0, kh1) and columns [kw0, kw1) are summed: the
// others would read only the zero border of a padded input.
// ONE: one input channel and all nine taps (tiny_gap's first layer): the taps unrolled, where the loops around
// them cost more than the one multiply a tap and pixel (the layer ran at a quarter of the others' speed).
template <int K, int J, bool ONE = false>
static void conv_row_block(const float* x, int64_t W, int64_t C_in, const float* wt, float* out, int64_t C_out,
                           int kh0, int kh1, int kw0, int kw1, const float* center, v8f* moments) {
  v8f acc[J][K] = {};
  if constexpr (ONE) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) {
      v8f w[K];
      for (int k = 0; k < K; ++k) w[k] = load8(wt + (t * K + k) * 8);
      const float* xr = x + t / 3 * W + t % 3;
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j)
        for (int k = 0; k < K; ++k) acc[j][k] += xr[j] * w[k];
    }
  } else {
    for (int kh = kh0; kh < kh1; ++kh)
      for (int kw = kw0; kw < kw1; ++kw) {
        const float* xr = x + (kh * W + kw) * C_in;
        const float* wr = wt + (kh * 3 + kw) * C_in * K * 8;
        for (int64_t ci = 0; ci < C_in; ++ci) {
          v8f w[K];
          for (int k = 0; k < K; ++k) w[k] = load8(wr + (ci * K + k) * 8);
#pragma GCC unroll 16
          for (int j = 0; j < J; ++j) {
            const float s = xr[j * C_in + ci];
            for (int k = 0; k < K; ++k) acc[j][k] += s * w[k];
          }
        }
      }
  }
  if (moments)  // sums of relu(out) - center and its squares (zero in the lanes beyond C_out: their weights are)
    for (int k = 0; k < K; ++k) {
      const v8f c = load8(center + 8 * k), zero = {};
      v8f sum = moments[k], squares = moments[K + k];
      for (int j = 0; j < J; ++j) {
        const v8f d = (acc[j][k] > zero ? acc[j][k] : zero) - c;
        sum += d;
        squares += d * d;
      }
      moments[k] = sum;
      moments[K + k] = squares;
    }
  const int64_t tail = C_out - 8 * (K - 1);
  for (int j = 0; j < J; ++j) {
    float* o = out + j * C_out;
    for (int k = 0; k < K - 1; ++k) std::memcpy(o + 8 * k, &acc[j][k], 32);
    if (tail == 8)
      std::memcpy(o + 8 * (K - 1), &acc[j][K - 1], 32);
    else
      for (int64_t l = 0; l < tail; ++l) o[8 * (K - 1) + l] = acc[j][K - 1][l];
  }
}

using RowBlockFn = void (*)(const float*, int64_t, int64_t, const float*, float*, int64_t, int, int, int, int,
                            const float*, v8f*);
template <int K, bool ONE, std::size_t... J>
static std::vector<RowBlockFn> row_blocks(std::index_sequence<J...>) {
  return {&conv_row_block<K, J + 1, ONE>...};
}
template <bool ONE>
static std::vector<std::vector<RowBlockFn>> row_block_table() {
  return {row_blocks<1, ONE>(std::make_index_sequence<ROW_BLOCK[0]>()),
          row_blocks<2, ONE>(std::make_index_sequence<ROW_BLOCK[1]>()),
          row_blocks<3, ONE>(std::make_index_sequence<ROW_BLOCK[2]>()),
          row_blocks<4, ONE>(std::make_index_sequence<ROW_BLOCK[3]>())};
}
static const std::vector<std::vector<RowBlockFn>> ROW_BLOCKS = row_block_table<false>(),
                                                  ONE_CHANNEL_ROW_BLOCKS = row_block_table<true>();

// A thread's copy of the rows of one image of a source that builds its input rows (the input's gradient, padded),
// each row built once: image is the image they belong to, ready the end of the rows built so far.
struct Staging {
  std::vector<float> rows;
  int64_t image = -1, ready = 0;
};

// out (N, OH, OW, C_out) = the valid 3x3 correlation of the three input rows rows(n, oh, staging) gives for each
// output row (W = OW + 2 pixels of C_in values each, consecutive) with wt (3, 3, C_in, K * 8). staging is a
// thread's buffer of H = OH + 2 rows for a source that builds its rows. An input padded with `pad` zero rows and
// columns each side (the input's gradient pads by 2) has its border pixels in blocks of their own, and no block
// sums the kernel rows or columns that would read only zeros.
template <typename Rows>
static void correlate3x3(Rows rows, int64_t N, int64_t OH, int64_t OW, int64_t C_in, const float* wt, int64_t C_out,
                         float* out, int64_t pad, const float* center = nullptr, double* chunk_moments = nullptr) {
  const int K = (C_out + 7) / 8;
  const int64_t W = OW + 2, H = OH + 2;
  std::vector<int64_t> starts;  // the blocks' first pixels, then OW
  auto split = [&](int64_t from, int64_t to) {
    if (to <= from) return;
    const int64_t n = (to - from + ROW_BLOCK[K - 1] - 1) / ROW_BLOCK[K - 1];
    for (int64_t i = 0; i < n; ++i) starts.push_back(from + (to - from) * i / n);
  };
  // Border blocks pay where the row is about one block wide (tiny_gap's 7-11 pixel rows); in wide rows the narrow
  // blocks they take cost more than the zeros they skip (measured: 8 channels, 26 pixels, 1.0 against 0.65 ms).
  const int64_t edge = OW <= ROW_BLOCK[K - 1] + 2 * pad ? std::min(pad, OW / 2) : 0;
  split(0, edge);
  split(edge, OW - edge);
  split(OW - edge, OW);
  starts.push_back(OW);
  const int64_t* first = starts.data();
  const int64_t blocks = (int64_t)starts.size() - 1;
  // the kernel taps [lo, hi) that read a real pixel for some output in [a, b): input index a + k .. b - 1 + k
  // within [pad, size - pad)
  auto taps = [=](int64_t a, int64_t b, int64_t size, int* lo, int* hi) {
    *lo = (int)std::max<int64_t>(0, pad - (b - 1));
    *hi = (int)std::min<int64_t>(3, size - pad - a);
  };
  auto output_rows = [=](int64_t b, int64_t e, double* moments) {
    Staging staging;
    v8f row_moments[2 * CONV_MAX_VECTORS];
    for (int64_t r = b; r < e; ++r) {
      const int64_t oh = r % OH;
      const float* xr = rows(r / OH, oh, staging);
      float* o = out + r * OW * C_out;
      int kh0, kh1;
      taps(oh, oh + 1, H, &kh0, &kh1);
      for (int k = 0; k < 2 * K; ++k) row_moments[k] = (v8f){};
      for (int64_t i = 0; i < blocks; ++i) {
        const int64_t ow = first[i], J = first[i + 1] - ow;
        int kw0, kw1;
        taps(ow, ow + J, W, &kw0, &kw1);
        const bool one = C_in == 1 && kh0 == 0 && kh1 == 3 && kw0 == 0 && kw1 == 3;
        const RowBlockFn block = (one ? ONE_CHANNEL_ROW_BLOCKS : ROW_BLOCKS)[K - 1][J - 1];
        block(xr + ow * C_in, W, C_in, wt, o + ow * C_out, C_out, kh0, kh1, kw0, kw1, center,
              moments ? row_moments : nullptr);
      }
      if (moments)  // float within a row, double across rows
        for (int k = 0; k < 2 * K; ++k)
          for (int l = 0; l < 8; ++l) moments[k * 8 + l] += row_moments[k][l];
    }
  };
  if (!chunk_moments) {
    at::parallel_for(0, N * OH, 8, [=](int64_t b, int64_t e) { output_rows(b, e, nullptr); });
    return;
  }
  // fixed row chunks, each its own sums (2 * K vectors of doubles): the same bits for any thread count
  const int64_t rows_total = N * OH;
  at::parallel_for(0, CHUNKS, 1, [=](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c)
      output_rows(rows_total * c / CHUNKS, rows_total * (c + 1) / CHUNKS, chunk_moments + c * 2 * K * 8);
  });
}

// A buffer of this thread's, kept between calls: a fresh megabyte-sized one each call costs its page faults.
static float* scratch(int64_t count) {
  static thread_local std::vector<float> buffer;
  if ((int64_t)buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

static void check_conv(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.dim() == 4 && t.size(1) >= 1 &&
                  t.size(1) <= 8 * CONV_MAX_VECTORS && t.size(2) >= 1 && t.size(3) >= 1 &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mnist_fused: ", name, " must be a channels-last float32 CPU batch with 1 to 32 channels, got ",
              t.sizes());
}

static const at::Tensor& checked_weight(const at::Tensor& weight, int64_t C_out, int64_t C_in) {
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.device().is_cpu() && weight.dim() == 4 &&
                  weight.size(0) == C_out && weight.size(1) == C_in && weight.size(2) == 3 && weight.size(3) == 3,
              "mnist_fused: the weight must be a float32 CPU tensor of shape (", C_out, ", ", C_in,
              ", 3, 3), got ", weight.sizes());
  return weight;
}

// the weights as (3, 3, C_in, K * 8) vectors of output channels, flipped and transposed for the input's gradient
static std::vector<float> vector_weights(const at::Tensor& weight, bool transposed) {
  const int64_t C_out = weight.size(0), C_in = weight.size(1);
  const int64_t from = transposed ? C_out : C_in, to = transposed ? C_in : C_out, width = (to + 7) / 8 * 8;
  std::vector<float> wt(9 * from * width, 0.f);
  const float* w = weight.data_ptr<float>();  // read by its strides: a channels-last model's weights are
  const auto st = weight.strides();
  for (int64_t co = 0; co < C_out; ++co)
    for (int64_t ci = 0; ci < C_in; ++ci)
      for (int t = 0; t < 9; ++t) {
        const float v = w[co * st[0] + ci * st[1] + t / 3 * st[2] + t % 3 * st[3]];
        if (transposed)
          wt[((8 - t) * C_out + co) * width + ci] = v;
        else
          wt[(t * C_in + ci) * width + co] = v;
      }
  return wt;
}

// The convolution's output and, given a center (one value per output channel), the moments a BatchNorm after a
// ReLU needs, (3, C_out) doubles: the center, then the sums of relu(out) - center and of their squares.
std::tuple<at::Tensor, at::Tensor> conv3x3_forward(at::Tensor x, at::Tensor weight, c10::optional<at::Tensor> center) {
  check_conv(x, "x");
  const int64_t N = x.size(0), C_in = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H >= 3 && W >= 3, "mnist_fused: a 3x3 convolution needs at least 3x3 pixels, got ", x.sizes());
  const int64_t C_out = weight.dim() == 4 ? weight.size(0) : 0;
  TORCH_CHECK(C_out >= 1 && C_out <= 8 * CONV_MAX_VECTORS, "mnist_fused: 1 to 32 output channels, got ", C_out);
  const auto wt = vector_weights(checked_weight(weight, C_out, C_in), false);
  at::Tensor out = at::empty({N, C_out, H - 2, W - 2}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.data_ptr<float>();
  auto rows = [=](int64_t n, int64_t oh, Staging&) { return xp + (n * H + oh) * W * C_in; };
  if (!center.has_value()) {
    correlate3x3(rows, N, H - 2, W - 2, C_in, wt.data(), C_out, out.data_ptr<float>(), 0);
    return {out, at::Tensor()};
  }
  check(*center, at::kFloat, C_out, "center");
  const int64_t V = (C_out + 7) / 8 * 8;
  std::vector<float> c(V, 0.f);  // any finite center gives the same moments: a NaN or infinite one becomes 0
  for (int64_t ch = 0; ch < C_out; ++ch) {
    const float v = center->data_ptr<float>()[ch];
    c[ch] = std::isfinite(v) ? v : 0.f;
  }
  std::vector<double> part(CHUNKS * 2 * V, 0.0);
  correlate3x3(rows, N, H - 2, W - 2, C_in, wt.data(), C_out, out.data_ptr<float>(), 0, c.data(), part.data());
  at::Tensor moments = at::zeros({3, C_out}, at::kDouble);
  double* m = moments.data_ptr<double>();
  for (int64_t ch = 0; ch < C_out; ++ch) {
    m[ch] = c[ch];
    for (int64_t k = 0; k < CHUNKS; ++k) {
      m[C_out + ch] += part[k * 2 * V + ch];
      m[2 * C_out + ch] += part[k * 2 * V + V + ch];
    }
  }
  return {out, moments};
}

at::Tensor conv3x3_input_grad(at::Tensor grad, at::Tensor weight) {
  check_conv(grad, "grad");
  const int64_t N = grad.size(0), C_out = grad.size(1), OH = grad.size(2), OW = grad.size(3);
  const int64_t C_in = weight.dim() == 4 ? weight.size(1) : 0;
  TORCH_CHECK(C_in >= 1 && C_in <= 8 * CONV_MAX_VECTORS, "mnist_fused: 1 to 32 input channels, got ", C_in);
  const auto wt = vector_weights(checked_weight(weight, C_out, C_in), true);
  const float* g = grad.data_ptr<float>();
  const int64_t PW = OW + 4, row = OW * C_out;
  // Image n's gradient with two zero pixels each side and two zero rows above and below, built row by row as the
  // thread's output rows come to need them (input row oh reads padded rows oh .. oh + 2): each row copied once. A
  // padded copy of the whole gradient would cost a pass through memory; three rows copied for each output row cost
  // about a tenth of this pass.
  auto rows = [=](int64_t n, int64_t oh, Staging& staging) {
    if (staging.image != n) {
      staging.image = n;
      staging.ready = oh;
      staging.rows.resize((OH + 4) * PW * C_out);
    }
    for (int64_t p = staging.ready; p < oh + 3; ++p) {
      float* s = staging.rows.data() + p * PW * C_out;
      const int64_t source = p - 2;
      if (source < 0 || source >= OH) {
        std::memset(s, 0, PW * C_out * 4);
        continue;
      }
      std::memset(s, 0, 2 * C_out * 4);
      std::memcpy(s + 2 * C_out, g + (n * OH + source) * row, row * 4);
      std::memset(s + (OW + 2) * C_out, 0, 2 * C_out * 4);
    }
    staging.ready = std::max(staging.ready, oh + 3);
    return (const float*)staging.rows.data() + oh * PW * C_out;
  };
  at::Tensor out = at::empty({N, C_in, OH + 2, OW + 2}, grad.options().memory_format(at::MemoryFormat::ChannelsLast));
  correlate3x3(rows, N, OH + 2, OW + 2, C_out, wt.data(), C_in, out.data_ptr<float>(), 2);
  return out;
}

// T consecutive (kw, c_in) entries of kernel row kh, every output channel, summed over output rows [r0, r1); the
// gradient g has GS floats per pixel (C_out rounded up to whole vectors)
template <int K, int T>
static void weight_grad_tile(const float* g, const float* x, int64_t r0, int64_t r1, int64_t OH, int64_t OW,
                             int64_t H, int64_t W, int64_t C_in, int64_t GS, int kh, int64_t e0, float* dst) {
  v8f acc[T][K] = {};
  for (int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * OW * GS;
    const float* xr = x + (r / OH * H + r % OH + kh) * W * C_in + e0;
    for (int64_t ow = 0; ow < OW; ++ow) {
      v8f gv[K];
      for (int k = 0; k < K; ++k) gv[k] = load8(gr + ow * GS + 8 * k);
#pragma GCC unroll 24
      for (int t = 0; t < T; ++t) {
        const float s = xr[ow * C_in + t];
        for (int k = 0; k < K; ++k) acc[t][k] += s * gv[k];
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) std::memcpy(dst + (t * K + k) * 8, &acc[t][k], 32);
}

// One input channel (tiny_gap's first layer): all nine taps in one tile. Kernel row by kernel row each tile held
// three sums, and waited on each one's latency at every pixel.
template <int K>
static void weight_grad_one_channel(const float* g, const float* x, int64_t r0, int64_t r1, int64_t OH, int64_t OW,
                                    int64_t H, int64_t W, int64_t GS, float* dst) {
  v8f acc[9][K] = {};
  for (int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * OW * GS;
    const float* xr = x + (r / OH * H + r % OH) * W;
    for (int64_t ow = 0; ow < OW; ++ow) {
      v8f gv[K];
      for (int k = 0; k < K; ++k) gv[k] = load8(gr + ow * GS + 8 * k);
#pragma GCC unroll 9
      for (int t = 0; t < 9; ++t) {
        const float s = xr[t / 3 * W + ow + t % 3];
        for (int k = 0; k < K; ++k) acc[t][k] += s * gv[k];
      }
    }
  }
  for (int t = 0; t < 9; ++t)
    for (int k = 0; k < K; ++k) std::memcpy(dst + (t * K + k) * 8, &acc[t][k], 32);
}

using OneChannelFn = void (*)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                              int64_t, float*);
static const OneChannelFn ONE_CHANNEL_TILES[CONV_MAX_VECTORS] = {
    weight_grad_one_channel<1>, weight_grad_one_channel<2>, weight_grad_one_channel<3>, weight_grad_one_channel<4>};

using TileFn = void (*)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                        int64_t, int, int64_t, float*);
template <int K, std::size_t... T>
static std::vector<TileFn> tiles(std::index_sequence<T...>) {
  return {&weight_grad_tile<K, T + 1>...};
}
static const std::vector<TileFn> TILES[CONV_MAX_VECTORS] = {
    tiles<1>(std::make_index_sequence<PATCH_TILE[0]>()), tiles<2>(std::make_index_sequence<PATCH_TILE[1]>()),
    tiles<3>(std::make_index_sequence<PATCH_TILE[2]>()), tiles<4>(std::make_index_sequence<PATCH_TILE[3]>())};

at::Tensor conv3x3_weight_grad(at::Tensor grad, at::Tensor x) {
  check_conv(grad, "grad");
  check_conv(x, "x");
  const int64_t N = grad.size(0), C_out = grad.size(1), OH = grad.size(2), OW = grad.size(3);
  const int64_t C_in = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(x.size(0) == N && H == OH + 2 && W == OW + 2, "mnist_fused: grad ", grad.sizes(),
              " is not a 3x3 convolution's output for x ", x.sizes());
  const int K = (C_out + 7) / 8;
  const int64_t GS = K * 8, E = 3 * C_in, TS = PATCH_TILE[K - 1];
  const float* g = grad.data_ptr<float>();
  if (GS != C_out) {  // the gradient in whole vectors
    float* p = scratch(N * OH * OW * GS);
    at::parallel_for(0, N * OH * OW, 1024, [=](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        std::memcpy(p + i * GS, g + i * C_out, C_out * 4);
        std::memset(p + i * GS + C_out, 0, (GS - C_out) * 4);
      }
    });
    g = p;
  }
  const int64_t size = 3 * E * GS;  // one chunk's sums, every entry written by its tile
  std::unique_ptr<float[]> part(new float[CHUNKS * size]);
  const float* xp = x.data_ptr<float>();
  float* pp = part.get();
  const int64_t rows = N * OH;
  at::parallel_for(0, CHUNKS, 1, [=](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t r0 = rows * c / CHUNKS, r1 = rows * (c + 1) / CHUNKS;
      if (C_in == 1) {  // entries (kh, kw): the chunk's nine, in the order the kernel rows' tiles write them
        ONE_CHANNEL_TILES[K - 1](g, xp, r0, r1, OH, OW, H, W, GS, pp + c * 9 * GS);
        continue;
      }
      for (int kh = 0; kh < 3; ++kh)
        for (int64_t e0 = 0; e0 < E; e0 += TS)
          TILES[K - 1][std::min(TS, E - e0) - 1](g, xp, r0, r1, OH, OW, H, W, C_in, GS, kh, e0,
                                                 pp + ((c * 3 + kh) * E + e0) * GS);
    }
  });
  for (int64_t c = 1; c < CHUNKS; ++c)  // the chunks in order, into the first
    for (int64_t i = 0; i < size; ++i) pp[i] += pp[c * size + i];
  at::Tensor weight_grad = at::empty({C_out, C_in, 3, 3}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* d = weight_grad.data_ptr<float>();
  for (int64_t co = 0; co < C_out; ++co)
    for (int64_t ci = 0; ci < C_in; ++ci)
      for (int t = 0; t < 9; ++t) d[(co * C_in + ci) * 9 + t] = pp[(t / 3 * E + t % 3 * C_in + ci) * GS + co];
  return weight_grad;
}

// ---- tiny_gap's 1x1 transition and the 2x2 max-pool after it, in one pass each way ----
//
// Run as two layers, the transition wrote its whole output, the pool read it back and wrote int64 indices (twice
// the output's bytes), and the backward passes did the same in reverse. Here each pooling window's four pixels are
// computed in registers and only the pooled values and a byte per value (which of the four won) are written; the
// backward pass sends each pooled gradient to its winner only. Ties go to the first of the window (row by row),
// and NaN wins, as in torch's max-pool.
static at::Tensor checked_1x1_weight(const at::Tensor& weight, int64_t C_out, int64_t C_in) {
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.device().is_cpu() && weight.dim() == 4 &&
                  weight.size(0) == C_out && weight.size(1) == C_in && weight.size(2) == 1 && weight.size(3) == 1,
              "mnist_fused: the weight must be a float32 CPU tensor of shape (", C_out, ", ", C_in, ", 1, 1), got ",
              weight.sizes());
  return weight.contiguous();
}

template <int K>
static void conv1x1_pool_window(const float* x, int64_t W, int64_t C_in, const float* wt, int64_t C_out, float* out,
                                uint8_t* which) {
  v8f acc[4][K] = {};
  const float* px[4] = {x, x + C_in, x + W * C_in, x + (W + 1) * C_in};
  for (int64_t ci = 0; ci < C_in; ++ci) {
    v8f w[K];
    for (int k = 0; k < K; ++k) w[k] = load8(wt + (ci * K + k) * 8);
    for (int q = 0; q < 4; ++q) {
      const float s = px[q][ci];
      for (int k = 0; k < K; ++k) acc[q][k] += s * w[k];
    }
  }
  for (int k = 0; k < K; ++k) {
    v8f best = acc[0][k], won = {};
    for (int q = 1; q < 4; ++q) {
      const auto wins = (acc[q][k] > best) | (acc[q][k] != acc[q][k]);
      best = wins ? acc[q][k] : best;
      won = wins ? (v8f){} + (float)q : won;
    }
    const int64_t n = std::min<int64_t>(8, C_out - 8 * k);
    for (int64_t l = 0; l < n; ++l) {
      out[8 * k + l] = best[l];
      which[8 * k + l] = (uint8_t)won[l];
    }
  }
}

std::tuple<at::Tensor, at::Tensor> conv1x1_pool_forward(at::Tensor x, at::Tensor weight) {
  check_conv(x, "x");
  const int64_t N = x.size(0), C_in = x.size(1), H = x.size(2), W = x.size(3), PH = H / 2, PW = W / 2;
  TORCH_CHECK(PH >= 1 && PW >= 1, "mnist_fused: a 2x2 max-pool needs at least 2x2 pixels, got ", x.sizes());
  const int64_t C_out = weight.dim() == 4 ? weight.size(0) : 0;
  TORCH_CHECK(C_out >= 1 && C_out <= 8 * CONV_MAX_VECTORS, "mnist_fused: 1 to 32 output channels, got ", C_out);
  const at::Tensor w = checked_1x1_weight(weight, C_out, C_in);
  const int K = (C_out + 7) / 8;
  std::vector<float> wt(C_in * K * 8, 0.f);
  for (int64_t co = 0; co < C_out; ++co)
    for (int64_t ci = 0; ci < C_in; ++ci) wt[ci * K * 8 + co] = w.data_ptr<float>()[co * C_in + ci];
  at::Tensor out = at::empty({N, C_out, PH, PW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor which = at::empty({N * PH * PW * C_out}, at::kByte);
  const float* xp = x.data_ptr<float>();
  const float* wp = wt.data();
  float* op = out.data_ptr<float>();
  uint8_t* hp = which.data_ptr<uint8_t>();
  static void (*const windows[CONV_MAX_VECTORS])(const float*, int64_t, int64_t, const float*, int64_t, float*,
                                                 uint8_t*) = {conv1x1_pool_window<1>, conv1x1_pool_window<2>,
                                                              conv1x1_pool_window<3>, conv1x1_pool_window<4>};
  at::parallel_for(0, N * PH, 8, [=](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = xp + (r / PH * H + r % PH * 2) * W * C_in;
      for (int64_t pw = 0; pw < PW; ++pw)
        windows[K - 1](xr + 2 * pw * C_in, W, C_in, wp, C_out, op + (r * PW + pw) * C_out,
                       hp + (r * PW + pw) * C_out);
    }
  });
  return {out, which};
}

typedef uint8_t v8u8 __attribute__((vector_size(8)));

// A pooling window's gradient at each of its four pixels, K vectors of output channels each: the pooled gradient
// where that pixel won, zero elsewhere.
template <int K>
static inline void winner_grads(const float* g, const uint8_t* which, v8f (&gq)[4][K]) {
  for (int k = 0; k < K; ++k) {
    v8u8 h8;
    std::memcpy(&h8, which + 8 * k, 8);
    const v8f h = __builtin_convertvector(__builtin_convertvector(h8, v8i32), v8f), gv = load8(g + 8 * k);
    for (int q = 0; q < 4; ++q) gq[q][k] = h == (float)q ? gv : (v8f){};
  }
}

// One pooling window's input gradient: each pixel's winner gradient times the transposed weight (KI vectors of
// input channels per output channel).
template <int K, int KI>
static void conv1x1_pool_window_input_grad(const float* g, const uint8_t* which, const float* wt, int64_t C_out,
                                           int64_t C_in, int64_t W, float* x_grad) {
  v8f gq[4][K];
  winner_grads<K>(g, which, gq);
  float gs[4][K * 8];
  std::memcpy(gs, gq, sizeof(gs));
  v8f acc[4][KI] = {};
  for (int64_t co = 0; co < C_out; ++co) {
    v8f w[KI];
    for (int k = 0; k < KI; ++k) w[k] = load8(wt + (co * KI + k) * 8);
    for (int q = 0; q < 4; ++q) {
      const float s = gs[q][co];
      for (int k = 0; k < KI; ++k) acc[q][k] += s * w[k];
    }
  }
  for (int q = 0; q < 4; ++q) {
    float* d = x_grad + ((q / 2) * W + q % 2) * C_in;
    for (int k = 0; k < KI; ++k) {
      const int64_t n = std::min<int64_t>(8, C_in - 8 * k);
      if (n == 8)
        std::memcpy(d + 8 * k, &acc[q][k], 32);
      else
        for (int64_t l = 0; l < n; ++l) d[8 * k + l] = acc[q][k][l];
    }
  }
}

using WindowGradFn = void (*)(const float*, const uint8_t*, const float*, int64_t, int64_t, int64_t, float*);
template <int K>
static std::vector<WindowGradFn> window_grads_for() {
  return {conv1x1_pool_window_input_grad<K, 1>, conv1x1_pool_window_input_grad<K, 2>,
          conv1x1_pool_window_input_grad<K, 3>, conv1x1_pool_window_input_grad<K, 4>};
}
static const std::vector<WindowGradFn> WINDOW_GRADS[CONV_MAX_VECTORS] = {window_grads_for<1>(), window_grads_for<2>(),
                                                                         window_grads_for<3>(), window_grads_for<4>()};

// T input channels from ci0 of the weight's gradient, every output channel (K vectors), summed over pooled rows
// [r0, r1): each window's pooled gradient, kept only at its winner, times the winner's input.
template <int K, int T>
static void conv1x1_pool_weight_tile(const float* g, const uint8_t* which, const float* x, int64_t r0, int64_t r1,
                                     int64_t PH, int64_t PW, int64_t W, int64_t H, int64_t C_in, int64_t GS,
                                     int64_t ci0, float* dst) {
  v8f acc[T][K] = {};
  for (int64_t pr = r0; pr < r1; ++pr) {
    const float* xr = x + (pr / PH * H + pr % PH * 2) * W * C_in + ci0;
    for (int64_t pw = 0; pw < PW; ++pw) {
      v8f gq[4][K];
      winner_grads<K>(g + (pr * PW + pw) * GS, which + (pr * PW + pw) * GS, gq);
      const float* px[4] = {xr + 2 * pw * C_in, xr + (2 * pw + 1) * C_in, xr + (W + 2 * pw) * C_in,
                            xr + (W + 2 * pw + 1) * C_in};
#pragma GCC unroll 12
      for (int t = 0; t < T; ++t)
        for (int q = 0; q < 4; ++q) {
          const float s = px[q][t];
          for (int k = 0; k < K; ++k) acc[t][k] += s * gq[q][k];
        }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) std::memcpy(dst + (t * K + k) * 8, &acc[t][k], 32);
}

using PoolTileFn = void (*)(const float*, const uint8_t*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, float*);
template <int K, std::size_t... T>
static std::vector<PoolTileFn> pool_tiles(std::index_sequence<T...>) {
  return {&conv1x1_pool_weight_tile<K, T + 1>...};
}
static const std::vector<PoolTileFn> POOL_TILES[CONV_MAX_VECTORS] = {
    pool_tiles<1>(std::make_index_sequence<PATCH_TILE[0] / 2>()),
    pool_tiles<2>(std::make_index_sequence<PATCH_TILE[1]>()),
    pool_tiles<3>(std::make_index_sequence<PATCH_TILE[2]>()),
    pool_tiles<4>(std::make_index_sequence<PATCH_TILE[3]>())};

// The gradients of conv1x1_pool_forward: x's (undefined unless wanted) and the weight's.
std::tuple<at::Tensor, at::Tensor> conv1x1_pool_backward(at::Tensor grad, at::Tensor x, at::Tensor weight,
                                                         at::Tensor which, bool input_grad) {
  check_conv(grad, "grad");
  check_conv(x, "x");
  const int64_t N = x.size(0), C_in = x.size(1), H = x.size(2), W = x.size(3), PH = H / 2, PW = W / 2;
  const int64_t C_out = grad.size(1);
  TORCH_CHECK(grad.size(0) == N && grad.size(2) == PH && grad.size(3) == PW, "mnist_fused: grad ", grad.sizes(),
              " is not the pooled output for x ", x.sizes());
  check(which, at::kByte, N * PH * PW * C_out, "which");
  const at::Tensor w = checked_1x1_weight(weight, C_out, C_in);
  const int K = (C_out + 7) / 8, KI = (C_in + 7) / 8;
  const int64_t GS = K * 8, GI = KI * 8;
  const float* xp = x.data_ptr<float>();
  // the gradient and the winners in whole vectors of output channels (copied only when C_out is not a multiple of 8)
  const float* gp = grad.data_ptr<float>();
  const uint8_t* hp = which.data_ptr<uint8_t>();
  const int64_t windows = N * PH * PW;
  std::vector<uint8_t> which_padded;
  if (GS != C_out) {
    float* p = scratch(windows * GS);
    which_padded.assign(windows * GS, 0);
    uint8_t* h = which_padded.data();
    at::parallel_for(0, windows, 1024, [=](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        std::memcpy(p + i * GS, gp + i * C_out, C_out * 4);
        std::memset(p + i * GS + C_out, 0, (GS - C_out) * 4);
        std::memcpy(h + i * GS, hp + i * C_out, C_out);
      }
    });
    gp = p;
    hp = h;
  }
  at::Tensor x_grad;
  if (input_grad) {
    std::vector<float> wt(C_out * GI, 0.f);  // the weight transposed: a vector of input channels per output channel
    for (int64_t co = 0; co < C_out; ++co)
      for (int64_t ci = 0; ci < C_in; ++ci) wt[co * GI + ci] = w.data_ptr<float>()[co * C_in + ci];
    x_grad = at::empty({N, C_in, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    float* dp = x_grad.data_ptr<float>();
    const float* wp = wt.data();
    const WindowGradFn window_grad = WINDOW_GRADS[K - 1][KI - 1];
    at::parallel_for(0, N * PH, 8, [=](int64_t b, int64_t e) {
      for (int64_t pr = b; pr < e; ++pr) {
        float* row = dp + (pr / PH * H + pr % PH * 2) * W * C_in;
        for (int64_t pw = 0; pw < PW; ++pw)
          window_grad(gp + (pr * PW + pw) * GS, hp + (pr * PW + pw) * GS, wp, C_out, C_in, W,
                               row + 2 * pw * C_in);
        if (W % 2) {  // an odd last column: the pool never read it
          std::memset(row + (W - 1) * C_in, 0, C_in * 4);
          std::memset(row + (2 * W - 1) * C_in, 0, C_in * 4);
        }
        if (H % 2 && pr % PH == PH - 1) std::memset(row + 2 * W * C_in, 0, W * C_in * 4);  // an odd last row
      }
    });
  }
  std::vector<float> part(CHUNKS * C_in * GS);
  float* pp = part.data();
  const int64_t rows = N * PH, TS = K == 1 ? PATCH_TILE[0] / 2 : PATCH_TILE[K - 1];
  at::parallel_for(0, CHUNKS, 1, [=](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c)
      for (int64_t ci0 = 0; ci0 < C_in; ci0 += TS)
        POOL_TILES[K - 1][std::min(TS, C_in - ci0) - 1](gp, hp, xp, rows * c / CHUNKS, rows * (c + 1) / CHUNKS, PH,
                                                        PW, W, H, C_in, GS, ci0, pp + (c * C_in + ci0) * GS);
  });
  at::Tensor weight_grad = at::empty({C_out, C_in, 1, 1}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* d = weight_grad.data_ptr<float>();
  for (int64_t co = 0; co < C_out; ++co)
    for (int64_t ci = 0; ci < C_in; ++ci) {
      float sum = 0.f;
      for (int64_t c = 0; c < CHUNKS; ++c) sum += pp[(c * C_in + ci) * GS + co];
      d[co * C_in + ci] = sum;
    }
  return {x_grad, weight_grad};
}

TORCH_LIBRARY(mnist_fused, m) {
  m.def("block_forward", &block_forward);
  m.def("block_backward", &block_backward);
  m.def("random_words", &random_words);
  m.def("conv3x3_forward", &conv3x3_forward);
  m.def("conv3x3_input_grad", &conv3x3_input_grad);
  m.def("conv3x3_weight_grad", &conv3x3_weight_grad);
  m.def("conv1x1_pool_forward", &conv1x1_pool_forward);
  m.def("conv1x1_pool_backward", &conv1x1_pool_backward);
}
