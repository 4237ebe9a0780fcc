// tiny_gap's ReLU -> BatchNorm2d -> dropout, forward and backward, for training on a CPU (mnist_core/fused.py).
//
// Activations are channels-last float32 (N, C, H, W): a stream of N*H*W rows of C values. Every kernel walks
// the stream in periods of L = lcm(C, 16) values, in which channel = index % C repeats, so per-channel
// parameters are laid out once per period and all the work is whole 16-float vectors (GCC/Clang vector
// extensions: AVX-512 where the CPU has it, narrower registers elsewhere). Sums are float within 32 periods,
// then double, over CHUNKS fixed chunks: a run gives the same bits whatever the thread count.
// at::parallel_for runs on torch's own OpenMP pool (built with -fopenmp, the library links no runtime of its own:
// its OpenMP calls go to the one libtorch_cpu loaded), so no second set of threads competes with torch's.
// The operators are registered as torch.ops.mnist_fused.*; only ATen's light headers are included, so the
// first build on a machine takes about half the time and memory of a full <torch/extension.h> one.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

typedef float v16f __attribute__((vector_size(64)));
typedef uint8_t v16u8 __attribute__((vector_size(16)));

static constexpr int64_t CHUNKS = 16;  // fixed sum chunks: the same result for any thread count

static int64_t period(int64_t C) { return std::lcm(C, (int64_t)16); }

static inline v16f load(const float* p) { v16f v; std::memcpy(&v, p, 64); return v; }
static inline void store(float* p, v16f v) { std::memcpy(p, &v, 64); }
static inline v16f load_kept(const uint8_t* p) { v16u8 k; std::memcpy(&k, p, 16); return __builtin_convertvector(k, v16f); }
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

// out = ((relu(z) - mean) * scale + shift) * kept, and kept (uint8) for the backward pass; draws in the stream's
// order. The mean is taken off first, as BatchNorm does: folded into the shift, it cancelled in float.
template <int V>
static void forward_impl(const float* z, const int16_t* draws, int16_t kf, const float* mn, const float* sc,
                         const float* sh, int64_t blocks, float* out, uint8_t* kept) {
  constexpr int64_t L = V * 16;
  at::parallel_for(0, blocks, 256, [=](int64_t b, int64_t e) {
    v16f m[V], s[V], h[V];
    for (int v = 0; v < V; ++v) { m[v] = load(mn + v * 16); s[v] = load(sc + v * 16); h[v] = load(sh + v * 16); }
    for (int64_t j = b; j < e; ++j)
      for (int v = 0; v < V; ++v) {
        const int64_t o = j * L + v * 16;
        v16i16 d;
        std::memcpy(&d, draws + o, 32);
        v16u8 k = __builtin_convertvector(d >= kf, v16u8) & 1;
        std::memcpy(kept + o, &k, 16);
        store(out + o, ((relu(load(z + o)) - m[v]) * s[v] + h[v]) * __builtin_convertvector(k, v16f));
      }
  });
}

// Every operator checks what it is given: a wrong call raises in Python instead of reading past a tensor's memory.
static void check(const at::Tensor& t, at::ScalarType type, int64_t numel, const char* name) {
  TORCH_CHECK(t.scalar_type() == type && t.is_contiguous() && t.device().is_cpu() && t.numel() == numel,
              "mnist_fused: ", name, " must be a contiguous CPU tensor of ", numel, " ", c10::toString(type), " values");
}

static int64_t channels(const at::Tensor& z) {  // z is (rows, channels), with a period the kernels are built for
  TORCH_CHECK(z.dim() == 2 && z.size(1) > 0 && period(z.size(1)) <= 8 * 16,
              "mnist_fused: expected (rows, channels) with lcm(channels, 16) <= 128, got ", z.sizes());
  return z.size(1);
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

// Sums per channel (2, C) in double, of the stream's whole periods plus its tail.
static at::Tensor fold_channels(const at::Tensor& part, int64_t C) {
  return part.sum(0).view({2, -1, C}).sum(1);
}

at::Tensor relu_moments(at::Tensor z, at::Tensor center) {
  const int64_t C = channels(z), L = period(C), n = z.numel(), blocks = n / L;
  check(z, at::kFloat, n, "z");
  check(center, at::kFloat, C, "center");
  auto part = at::zeros({CHUNKS, 2, L}, at::kDouble);
  const float* zp = z.data_ptr<float>();
  auto c = repeat(center.data_ptr<float>(), C, L);
  DISPATCH(L / 16, relu_moments_impl, zp, c.data(), blocks, part.data_ptr<double>());
  auto sums = fold_channels(part, C);
  double* sp = sums.data_ptr<double>();
  for (int64_t o = blocks * L; o < n; ++o) {
    double a = std::max(zp[o], 0.f) - c[o % C];
    sp[o % C] += a;
    sp[C + o % C] += a * a;
  }
  return sums;
}

at::Tensor forward_out(at::Tensor z, at::Tensor draws, int64_t keep_from, at::Tensor mean, at::Tensor scale,
                       at::Tensor shift, at::Tensor out) {
  const int64_t C = channels(z), L = period(C), n = z.numel(), blocks = n / L;
  check(z, at::kFloat, n, "z");
  check(draws, at::kShort, n, "draws");
  check(mean, at::kFloat, C, "mean");
  check(scale, at::kFloat, C, "scale");
  check(shift, at::kFloat, C, "shift");
  check(out, at::kFloat, n, "out");
  auto kept = at::empty({n}, at::kByte);
  auto mn = repeat(mean.data_ptr<float>(), C, L), sc = repeat(scale.data_ptr<float>(), C, L),
       sh = repeat(shift.data_ptr<float>(), C, L);
  const float* zp = z.data_ptr<float>();
  const int16_t* dp = draws.data_ptr<int16_t>();
  float* op = out.data_ptr<float>();
  uint8_t* kp = kept.data_ptr<uint8_t>();
  DISPATCH(L / 16, forward_impl, zp, dp, (int16_t)keep_from, mn.data(), sc.data(), sh.data(), blocks, op, kp);
  for (int64_t o = blocks * L; o < n; ++o) {
    kp[o] = dp[o] >= keep_from;
    op[o] = ((std::max(zp[o], 0.f) - mn[o % C]) * sc[o % C] + sh[o % C]) * kp[o];
  }
  return kept;
}

at::Tensor gradient_sums(at::Tensor g, at::Tensor z, at::Tensor kept, double rescale, at::Tensor mean,
                         at::Tensor rstd) {
  const int64_t C = channels(z), L = period(C), n = z.numel(), blocks = n / L;
  check(g, at::kFloat, n, "g");
  check(z, at::kFloat, n, "z");
  check(kept, at::kByte, n, "kept");
  check(mean, at::kFloat, C, "mean");
  check(rstd, at::kFloat, C, "rstd");
  auto part = at::zeros({CHUNKS, 2, L}, at::kDouble);
  auto m = repeat(mean.data_ptr<float>(), C, L), r = repeat(rstd.data_ptr<float>(), C, L);
  const float *gp = g.data_ptr<float>(), *zp = z.data_ptr<float>();
  const uint8_t* kp = kept.data_ptr<uint8_t>();
  DISPATCH(L / 16, gradient_sums_impl, gp, zp, kp, (float)rescale, m.data(), r.data(), blocks,
           part.data_ptr<double>());
  auto sums = fold_channels(part, C);
  double* sp = sums.data_ptr<double>();
  for (int64_t o = blocks * L; o < n; ++o) {
    const int64_t c = o % C;
    double gb = kp[o] ? gp[o] * rescale : 0.0;
    sp[c] += gb;
    sp[C + c] += gb * (std::max(zp[o], 0.f) - m[c]) * r[c];
  }
  return sums;
}

void backward_out(at::Tensor g, at::Tensor z, at::Tensor kept, double rescale, at::Tensor gain,
                  at::Tensor bias_mean, at::Tensor weight_mean, at::Tensor mean, at::Tensor rstd,
                  at::Tensor out) {
  const int64_t C = channels(z), L = period(C), n = z.numel(), blocks = n / L;
  check(g, at::kFloat, n, "g");
  check(z, at::kFloat, n, "z");
  check(kept, at::kByte, n, "kept");
  for (const at::Tensor* t : {&gain, &bias_mean, &weight_mean, &mean, &rstd}) check(*t, at::kFloat, C, "a channel vector");
  check(out, at::kFloat, n, "out");
  auto ga = repeat(gain.data_ptr<float>(), C, L), bm = repeat(bias_mean.data_ptr<float>(), C, L),
       wm = repeat(weight_mean.data_ptr<float>(), C, L), m = repeat(mean.data_ptr<float>(), C, L),
       r = repeat(rstd.data_ptr<float>(), C, L);
  const float *gp = g.data_ptr<float>(), *zp = z.data_ptr<float>();
  const uint8_t* kp = kept.data_ptr<uint8_t>();
  float* op = out.data_ptr<float>();
  DISPATCH(L / 16, backward_impl, gp, zp, kp, (float)rescale, ga.data(), bm.data(), wm.data(), m.data(), r.data(),
           blocks, op);
  for (int64_t o = blocks * L; o < n; ++o) {
    const int64_t c = o % C;
    float gb = kp[o] ? gp[o] * (float)rescale : 0.f;
    float v = ga[c] * (gb - bm[c] - (zp[o] - m[c]) * r[c] * wm[c]);
    op[o] = zp[o] > 0.f ? v : 0.f;
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

TORCH_LIBRARY(mnist_fused, m) {
  m.def("relu_moments", &relu_moments);
  m.def("forward_out", &forward_out);
  m.def("gradient_sums", &gradient_sums);
  m.def("backward_out", &backward_out);
  m.def("random_words", &random_words);
}
