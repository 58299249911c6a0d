// Fused optimizer updates on the CPU: one pass over each parameter that reads the gradient,
// the parameter and the (32-bit or blockwise 8-bit) states, and writes them back.
// The arithmetic is the one specified in bnb_kernels/backends/reference/optim.py.
// Blocks of 256 elements are spread over OpenMP threads; the inner loops are written so the
// compiler vectorizes them (AVX-512 or AVX2 clones chosen at run time).
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12 flags _mm512_undefined_* inside its own intrinsic headers
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "common.h"

namespace {

enum OptId : int32_t { OPT_ADAM = 0, OPT_ADEMAMIX = 1, OPT_MOMENTUM = 2, OPT_RMSPROP = 3, OPT_ADAGRAD = 4, OPT_LION = 5 };
enum QmapKind : int32_t { QK_GENERIC = 0, QK_SIGNED = 1, QK_UNSIGNED = 2 };
constexpr int64_t BS = 256;

}  // namespace

// Keep in sync with _Hyper in bnb_kernels/backends/cpu/optim.py
struct BnbOptimHyper {
  float b1, omb1, b2, omb2, b3, omb3, alpha, eps, wd, lr, decay, ic1, isc2, gscale, max_unorm, param_norm;
  int32_t first, skip_zeros;
};

namespace {

#define BNB_INLINE inline __attribute__((always_inline))

// Instruction set of the optimizer kernels: the best the CPU has, or BNB_CPU_ISA=scalar|avx2
// (for testing the fallbacks on an AVX-512 machine). 0 scalar, 1 AVX2, 2 AVX-512.
int isa_level() {
  static const int level = [] {
    int best = bnb::has_avx512() ? 2 : bnb::has_avx2() ? 1 : 0;
    const char* env = std::getenv("BNB_CPU_ISA");
    if (env && std::strcmp(env, "scalar") == 0) return 0;
    if (env && std::strcmp(env, "avx2") == 0) return best < 1 ? best : 1;
    return best;
  }();
  return level;
}

BNB_INLINE bool finite(float x) { return std::fabs(x) <= FLT_MAX; }

// One element: updates s1/s2/s3 (when valid), returns the update direction u (0 when skipped).
template <int OPT>
BNB_INLINE float elem(const BnbOptimHyper& h, float g0, float p, float& s1, float& s2, float& s3, bool& valid) {
  float g = g0 * h.gscale;
  float n1 = 0.f, n2 = 0.f, n3 = 0.f, u = 0.f;
  if constexpr (OPT == OPT_MOMENTUM || OPT == OPT_RMSPROP || OPT == OPT_ADAGRAD) g = g + h.wd * p;
  if constexpr (OPT == OPT_ADAM || OPT == OPT_ADEMAMIX) {
    n1 = s1 * h.b1 + h.omb1 * g;
    n2 = s2 * h.b2 + h.omb2 * (g * g);
    float num = n1 * h.ic1;
    if constexpr (OPT == OPT_ADEMAMIX) {
      n3 = s3 * h.b3 + h.omb3 * g;
      num = num + h.alpha * n3;
    }
    u = num / (std::sqrt(n2) * h.isc2 + h.eps);
  } else if constexpr (OPT == OPT_MOMENTUM) {
    n1 = h.first ? g : s1 * h.b1 + g;
    u = n1;
  } else if constexpr (OPT == OPT_RMSPROP) {
    n1 = s1 * h.b1 + h.omb1 * (g * g);
    u = g / (std::sqrt(n1) + h.eps);
  } else if constexpr (OPT == OPT_ADAGRAD) {
    n1 = s1 + g * g;
    u = g / (std::sqrt(n1) + h.eps);
  } else {  // LION
    float c = s1 * h.b1 + h.omb1 * g;
    u = static_cast<float>((c > 0.f) - (c < 0.f));
    n1 = s1 * h.b2 + h.omb2 * g;
  }
  bool ok = finite(g) && finite(n1) && finite(u);
  if constexpr (OPT == OPT_ADAM || OPT == OPT_ADEMAMIX) ok = ok && finite(n2);
  if constexpr (OPT == OPT_ADEMAMIX) ok = ok && finite(n3);
  if (h.skip_zeros) ok = ok && (g0 != 0.f);
  valid = ok;
  s1 = ok ? n1 : s1;
  if constexpr (OPT == OPT_ADAM || OPT == OPT_ADEMAMIX) s2 = ok ? n2 : s2;
  if constexpr (OPT == OPT_ADEMAMIX) s3 = ok ? n3 : s3;
  return ok ? u : 0.f;
}

template <int KIND>
BNB_INLINE int quant(float x, const float* mid_ext) {
  if constexpr (KIND == QK_GENERIC) {
    // number of midpoints m_i (mid_ext[i + 1]) strictly below x
    int lo = 0;
    for (int step = 128; step > 0; step >>= 1) lo += (mid_ext[lo + step] < x) ? step : 0;
    return lo;
  } else {
    constexpr int U = KIND == QK_UNSIGNED ? 1 : 0;
    float ax = std::fabs(x);
    int e = (ax >= 1e-6f) + (ax >= 1e-5f) + (ax >= 1e-4f) + (ax >= 1e-3f) + (ax >= 1e-2f) + (ax >= 1e-1f);
    float inv_scale = e == 6 ? 1.f : e == 5 ? 1e1f : e == 4 ? 1e2f : e == 3 ? 1e3f : e == 2 ? 1e4f : e == 1 ? 1e5f : 1e6f;
    int cnt = 1 << (e + U);
    float fc = static_cast<float>(cnt);
    // slice position shifted by half a slice: floor() lands on the lower of the two codes
    // around x (the decision is at a slice edge, far from where this estimate rounds)
    float v = (ax * inv_scale - 0.1f) * (fc * (1.0f / 0.9f)) + 0.5f;  // = position - 0.5 + 1
    v = v < 0.f ? 0.f : v;
    v = v > fc ? fc : v;
    int j = static_cast<int>(v) - 1;  // floor(position - 0.5), in [-1, cnt - 1]
    int c;
    if constexpr (U == 0) {
      c = x >= 0.f ? 127 + cnt + j : 126 - cnt - j;
    } else {
      c = x < 0.f ? 0 : cnt - 1 + j;
    }
    c = c < 0 ? 0 : (c > 254 ? 254 : c);
    return c + (x > mid_ext[c + 1]);
  }
}

BNB_INLINE uint32_t abs_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b & 0x7fffffffu;
}

template <int KIND>
BNB_INLINE void quant_block(const float* s, int64_t len, const float* mid_ext, uint8_t* codes, float* absmax) {
  uint32_t mb = 0;
  for (int64_t i = 0; i < len; i++) {
    uint32_t b = abs_bits(s[i]);
    mb = b > mb ? b : mb;
  }
  float am;
  std::memcpy(&am, &mb, 4);
  *absmax = am;
  float inv = am > 0.f ? 1.0f / am : 0.f;
  for (int64_t i = 0; i < len; i++) codes[i] = static_cast<uint8_t>(quant<KIND>(s[i] * inv, mid_ext));
}

BNB_INLINE void quant_block_any(int kind, const float* s, int64_t len, const float* mid_ext, uint8_t* codes,
                                float* absmax) {
  if (kind == QK_SIGNED) quant_block<QK_SIGNED>(s, len, mid_ext, codes, absmax);
  else if (kind == QK_UNSIGNED) quant_block<QK_UNSIGNED>(s, len, mid_ext, codes, absmax);
  else quant_block<QK_GENERIC>(s, len, mid_ext, codes, absmax);
}

struct Args8 {
  const void* g;
  void* p;
  uint8_t *c1, *c2, *c3;
  const float *q1, *q2, *m1, *m2;
  int32_t k1, k2;
  float *a1, *a2, *a3;
  int64_t n;
};

template <int OPT, int DT>
BNB_INLINE void blocks8(const BnbOptimHyper& h, const Args8& a, int64_t b0, int64_t b1) {
  constexpr bool TWO = OPT == OPT_ADAM || OPT == OPT_ADEMAMIX;
  constexpr bool THREE = OPT == OPT_ADEMAMIX;
  alignas(64) float S1[BS], S2[BS], S3[BS];
  for (int64_t b = b0; b < b1; b++) {
    const int64_t base = b * BS;
    const int64_t len = a.n - base < BS ? a.n - base : BS;
    const float am1 = a.a1[b];
    const float am2 = TWO ? a.a2[b] : 0.f;
    const float am3 = THREE ? a.a3[b] : 0.f;
    const uint8_t* c1 = a.c1 + base;
    const uint8_t* c2 = TWO ? a.c2 + base : nullptr;
    const uint8_t* c3 = THREE ? a.c3 + base : nullptr;
    for (int64_t i = 0; i < len; i++) {
      float s1 = a.q1[c1[i]] * am1;
      float s2 = 0.f, s3 = 0.f;
      if constexpr (TWO) s2 = a.q2[c2[i]] * am2;
      if constexpr (THREE) s3 = a.q1[c3[i]] * am3;
      const float g = bnb::load<DT>(a.g, base + i);
      const float p = bnb::load<DT>(a.p, base + i);
      bool valid;
      float u = elem<OPT>(h, g, p, s1, s2, s3, valid);
      float np = p * h.decay - h.lr * u;
      bnb::store<DT>(a.p, base + i, valid ? np : p);
      S1[i] = s1;
      if constexpr (TWO) S2[i] = s2;
      if constexpr (THREE) S3[i] = s3;
    }
    quant_block_any(a.k1, S1, len, a.m1, a.c1 + base, a.a1 + b);
    if constexpr (TWO) quant_block_any(a.k2, S2, len, a.m2, a.c2 + base, a.a2 + b);
    if constexpr (THREE) quant_block_any(a.k1, S3, len, a.m1, a.c3 + base, a.a3 + b);
  }
}

template <int OPT, int DT>
__attribute__((target("avx2,fma"))) void blocks8_avx2(const BnbOptimHyper& h, const Args8& a, int64_t b0, int64_t b1) {
  blocks8<OPT, DT>(h, a, b0, b1);
}

template <int OPT, int DT>
void blocks8_base(const BnbOptimHyper& h, const Args8& a, int64_t b0, int64_t b1) {
  blocks8<OPT, DT>(h, a, b0, b1);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 path of the 8-bit blockwise update: 16 lanes, gathers for the codebook reads, masked
// tails. Same arithmetic (separate multiply and add, IEEE sqrt/div) as the scalar code.
#if defined(__x86_64__)
#define BNB_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"), always_inline)) inline

template <int DT>
BNB_T512 __m512 v_load(const void* base, int64_t i, __mmask16 m) {
  if constexpr (DT == BNB_F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
  } else if constexpr (DT == BNB_BF16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i);
    return _mm512_cvtph_ps(h);
  }
}

template <int DT>
BNB_T512 void v_store(void* base, int64_t i, __mmask16 m, __m512 v) {
  if constexpr (DT == BNB_F32) {
    _mm512_mask_storeu_ps(static_cast<float*>(base) + i, m, v);
  } else if constexpr (DT == BNB_BF16) {
    __m512i bits = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512i out = _mm512_mask_blend_epi32(nan, rounded, quiet);
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + i, m, _mm512_cvtepi32_epi16(out));
  } else {
    __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + i, m, h);
  }
}

BNB_T512 __mmask16 v_finite(__m512 x) {
  return _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
}

BNB_T512 __m512 v_deq(const uint8_t* codes, int64_t i, __mmask16 m, const float* q, __m512 am) {
  __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, codes + i));
  return _mm512_mul_ps(_mm512_i32gather_ps(idx, q, 4), am);
}

template <int KIND>
BNB_T512 __m512i v_quant(__m512 x, const float* mid_ext) {
  const __m512i one = _mm512_set1_epi32(1);
  if constexpr (KIND == QK_GENERIC) {
    __m512i lo = _mm512_setzero_si512();
    for (int step = 128; step > 0; step >>= 1) {
      __m512i st = _mm512_set1_epi32(step);
      __m512 m = _mm512_i32gather_ps(_mm512_add_epi32(lo, st), mid_ext, 4);
      lo = _mm512_mask_add_epi32(lo, _mm512_cmp_ps_mask(m, x, _CMP_LT_OQ), lo, st);
    }
    return lo;
  } else {
    __m512 ax = _mm512_abs_ps(x);
    __m512i e = _mm512_setzero_si512();
    const float th[6] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f};
    for (int k = 0; k < 6; k++)
      e = _mm512_mask_add_epi32(e, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(th[k]), _CMP_GE_OQ), e, one);
    const __m512 scales = _mm512_setr_ps(1e6f, 1e5f, 1e4f, 1e3f, 1e2f, 1e1f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f,
                                         1.f, 1.f);
    __m512 inv_scale = _mm512_permutexvar_ps(e, scales);
    __m512i cnt = _mm512_sllv_epi32(_mm512_set1_epi32(KIND == QK_UNSIGNED ? 2 : 1), e);
    __m512 fc = _mm512_cvtepi32_ps(cnt);
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(ax, inv_scale), _mm512_set1_ps(0.1f)),
                                           _mm512_mul_ps(fc, _mm512_set1_ps(1.0f / 0.9f))),
                             _mm512_set1_ps(0.5f));
    v = _mm512_max_ps(v, _mm512_setzero_ps());
    v = _mm512_min_ps(v, fc);
    __m512i j = _mm512_sub_epi32(_mm512_cvttps_epi32(v), one);
    __m512i c;
    const __m512i zero = _mm512_setzero_si512();
    if constexpr (KIND == QK_UNSIGNED) {
      __m512i pos = _mm512_add_epi32(_mm512_sub_epi32(cnt, one), j);
      c = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), pos, zero);
    } else {
      __m512i pos = _mm512_add_epi32(_mm512_add_epi32(_mm512_set1_epi32(127), cnt), j);
      __m512i neg = _mm512_sub_epi32(_mm512_sub_epi32(_mm512_set1_epi32(126), cnt), j);
      c = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), neg, pos);
    }
    c = _mm512_max_epi32(_mm512_min_epi32(c, _mm512_set1_epi32(254)), zero);
    __m512 m = _mm512_i32gather_ps(c, mid_ext + 1, 4);
    return _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(x, m, _CMP_GT_OQ), c, one);
  }
}

template <int KIND>
BNB_T512 void v_quant_block(const float* s, int64_t len, float am, const float* mid_ext, uint8_t* codes) {
  const float inv = am > 0.f ? 1.0f / am : 0.f;
  const __m512 vinv = _mm512_set1_ps(inv);
  for (int64_t i = 0; i < len; i += 16) {
    __mmask16 m = len - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (len - i)) - 1u);
    __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s + i), vinv);
    _mm_mask_storeu_epi8(codes + i, m, _mm512_cvtepi32_epi8(v_quant<KIND>(x, mid_ext)));
  }
}

BNB_T512 void v_quant_any(int kind, const float* s, int64_t len, float am, const float* mid_ext, uint8_t* codes) {
  if (kind == QK_SIGNED) v_quant_block<QK_SIGNED>(s, len, am, mid_ext, codes);
  else if (kind == QK_UNSIGNED) v_quant_block<QK_UNSIGNED>(s, len, am, mid_ext, codes);
  else v_quant_block<QK_GENERIC>(s, len, am, mid_ext, codes);
}

template <int OPT, int DT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void blocks8_v512(const BnbOptimHyper& h,
                                                                                 const Args8& a, int64_t b0,
                                                                                 int64_t b1) {
  constexpr bool TWO = OPT == OPT_ADAM || OPT == OPT_ADEMAMIX;
  constexpr bool THREE = OPT == OPT_ADEMAMIX;
  alignas(64) float S1[BS], S2[BS], S3[BS];
  const __m512 b1v = _mm512_set1_ps(h.b1), omb1 = _mm512_set1_ps(h.omb1), b2v = _mm512_set1_ps(h.b2),
               omb2 = _mm512_set1_ps(h.omb2), b3v = _mm512_set1_ps(h.b3), omb3 = _mm512_set1_ps(h.omb3),
               alpha = _mm512_set1_ps(h.alpha), eps = _mm512_set1_ps(h.eps), wd = _mm512_set1_ps(h.wd),
               lr = _mm512_set1_ps(h.lr), decay = _mm512_set1_ps(h.decay), ic1 = _mm512_set1_ps(h.ic1),
               isc2 = _mm512_set1_ps(h.isc2), gs = _mm512_set1_ps(h.gscale), zero = _mm512_setzero_ps();
  for (int64_t b = b0; b < b1; b++) {
    const int64_t base = b * BS;
    const int64_t len = a.n - base < BS ? a.n - base : BS;
    const __m512 am1 = _mm512_set1_ps(a.a1[b]);
    const __m512 am2 = _mm512_set1_ps(TWO ? a.a2[b] : 0.f);
    const __m512 am3 = _mm512_set1_ps(THREE ? a.a3[b] : 0.f);
    __m512 mx1 = zero, mx2 = zero, mx3 = zero;
    for (int64_t i = 0; i < len; i += 16) {
      const __mmask16 m = len - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (len - i)) - 1u);
      __m512 s1 = v_deq(a.c1 + base, i, m, a.q1, am1);
      __m512 s2 = zero, s3 = zero;
      if constexpr (TWO) s2 = v_deq(a.c2 + base, i, m, a.q2, am2);
      if constexpr (THREE) s3 = v_deq(a.c3 + base, i, m, a.q1, am3);
      const __m512 g0 = v_load<DT>(a.g, base + i, m);
      const __m512 p = v_load<DT>(a.p, base + i, m);
      __m512 g = _mm512_mul_ps(g0, gs);
      if constexpr (OPT == OPT_MOMENTUM || OPT == OPT_RMSPROP || OPT == OPT_ADAGRAD)
        g = _mm512_add_ps(g, _mm512_mul_ps(wd, p));
      __m512 n1, n2 = s2, n3 = s3, u;
      if constexpr (OPT == OPT_ADAM || OPT == OPT_ADEMAMIX) {
        n1 = _mm512_add_ps(_mm512_mul_ps(s1, b1v), _mm512_mul_ps(omb1, g));
        n2 = _mm512_add_ps(_mm512_mul_ps(s2, b2v), _mm512_mul_ps(omb2, _mm512_mul_ps(g, g)));
        __m512 num = _mm512_mul_ps(n1, ic1);
        if constexpr (OPT == OPT_ADEMAMIX) {
          n3 = _mm512_add_ps(_mm512_mul_ps(s3, b3v), _mm512_mul_ps(omb3, g));
          num = _mm512_add_ps(num, _mm512_mul_ps(alpha, n3));
        }
        u = _mm512_div_ps(num, _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(n2), isc2), eps));
      } else if constexpr (OPT == OPT_MOMENTUM) {
        n1 = h.first ? g : _mm512_add_ps(_mm512_mul_ps(s1, b1v), g);
        u = n1;
      } else if constexpr (OPT == OPT_RMSPROP) {
        n1 = _mm512_add_ps(_mm512_mul_ps(s1, b1v), _mm512_mul_ps(omb1, _mm512_mul_ps(g, g)));
        u = _mm512_div_ps(g, _mm512_add_ps(_mm512_sqrt_ps(n1), eps));
      } else if constexpr (OPT == OPT_ADAGRAD) {
        n1 = _mm512_add_ps(s1, _mm512_mul_ps(g, g));
        u = _mm512_div_ps(g, _mm512_add_ps(_mm512_sqrt_ps(n1), eps));
      } else {
        __m512 c = _mm512_add_ps(_mm512_mul_ps(s1, b1v), _mm512_mul_ps(omb1, g));
        u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, zero, _CMP_GT_OQ),
                                 _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, zero, _CMP_LT_OQ), zero,
                                                      _mm512_set1_ps(-1.f)),
                                 _mm512_set1_ps(1.f));
        n1 = _mm512_add_ps(_mm512_mul_ps(s1, b2v), _mm512_mul_ps(omb2, g));
      }
      __mmask16 ok = v_finite(g) & v_finite(n1) & v_finite(u);
      if constexpr (TWO) ok &= v_finite(n2);
      if constexpr (THREE) ok &= v_finite(n3);
      if (h.skip_zeros) ok &= _mm512_cmp_ps_mask(g0, zero, _CMP_NEQ_OQ);
      ok &= m;
      n1 = _mm512_mask_blend_ps(ok, s1, n1);
      __m512 np = _mm512_sub_ps(_mm512_mul_ps(p, decay), _mm512_mul_ps(lr, _mm512_mask_blend_ps(ok, zero, u)));
      v_store<DT>(a.p, base + i, m, _mm512_mask_blend_ps(ok, p, np));
      n1 = _mm512_maskz_mov_ps(m, n1);
      _mm512_store_ps(S1 + i, n1);
      mx1 = _mm512_max_ps(mx1, _mm512_abs_ps(n1));
      if constexpr (TWO) {
        n2 = _mm512_maskz_mov_ps(m, _mm512_mask_blend_ps(ok, s2, n2));
        _mm512_store_ps(S2 + i, n2);
        mx2 = _mm512_max_ps(mx2, _mm512_abs_ps(n2));
      }
      if constexpr (THREE) {
        n3 = _mm512_maskz_mov_ps(m, _mm512_mask_blend_ps(ok, s3, n3));
        _mm512_store_ps(S3 + i, n3);
        mx3 = _mm512_max_ps(mx3, _mm512_abs_ps(n3));
      }
    }
    float am = _mm512_reduce_max_ps(mx1);
    a.a1[b] = am;
    v_quant_any(a.k1, S1, len, am, a.m1, a.c1 + base);
    if constexpr (TWO) {
      am = _mm512_reduce_max_ps(mx2);
      a.a2[b] = am;
      v_quant_any(a.k2, S2, len, am, a.m2, a.c2 + base);
    }
    if constexpr (THREE) {
      am = _mm512_reduce_max_ps(mx3);
      a.a3[b] = am;
      v_quant_any(a.k1, S3, len, am, a.m1, a.c3 + base);
    }
  }
}
#endif

template <int OPT, int DT>
void run8(const BnbOptimHyper& h, const Args8& a) {
  const int64_t nb = (a.n + BS - 1) / BS;
  constexpr int64_t CHUNK = 16;  // blocks per task
  const int64_t tasks = (nb + CHUNK - 1) / CHUNK;
  void (*fn)(const BnbOptimHyper&, const Args8&, int64_t, int64_t) =
#if defined(__x86_64__)
      isa_level() == 2 ? blocks8_v512<OPT, DT> :
#endif
      isa_level() >= 1 ? blocks8_avx2<OPT, DT> : blocks8_base<OPT, DT>;
#pragma omp parallel for schedule(static) if (tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t b0 = t * CHUNK;
    int64_t b1 = b0 + CHUNK < nb ? b0 + CHUNK : nb;
    fn(h, a, b0, b1);
  }
}

struct Args32 {
  const void* g;
  void* p;
  float *s1, *s2, *s3;
  int64_t n;
};

// MODE 0: update with lr_eff; MODE 1: return sum of u*u (no writes)
template <int OPT, int DT, int MODE>
BNB_INLINE double range32(const BnbOptimHyper& h, const Args32& a, int64_t i0, int64_t i1, float lr_eff) {
  constexpr bool TWO = OPT == OPT_ADAM || OPT == OPT_ADEMAMIX;
  constexpr bool THREE = OPT == OPT_ADEMAMIX;
  float acc = 0.f;
  for (int64_t i = i0; i < i1; i++) {
    float s1 = a.s1[i];
    float s2 = TWO ? a.s2[i] : 0.f;
    float s3 = THREE ? a.s3[i] : 0.f;
    const float g = bnb::load<DT>(a.g, i);
    const float p = bnb::load<DT>(a.p, i);
    bool valid;
    float u = elem<OPT>(h, g, p, s1, s2, s3, valid);
    if constexpr (MODE == 1) {
      acc += u * u;
    } else {
      float np = p * h.decay - lr_eff * u;
      bnb::store<DT>(a.p, i, valid ? np : p);
      a.s1[i] = s1;
      if constexpr (TWO) a.s2[i] = s2;
      if constexpr (THREE) a.s3[i] = s3;
    }
  }
  return acc;
}

template <int OPT, int DT, int MODE>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) double range32_avx512(const BnbOptimHyper& h,
                                                                                     const Args32& a, int64_t i0,
                                                                                     int64_t i1, float lr) {
  return range32<OPT, DT, MODE>(h, a, i0, i1, lr);
}
template <int OPT, int DT, int MODE>
__attribute__((target("avx2,fma"))) double range32_avx2(const BnbOptimHyper& h, const Args32& a, int64_t i0,
                                                         int64_t i1, float lr) {
  return range32<OPT, DT, MODE>(h, a, i0, i1, lr);
}
template <int OPT, int DT, int MODE>
double range32_base(const BnbOptimHyper& h, const Args32& a, int64_t i0, int64_t i1, float lr) {
  return range32<OPT, DT, MODE>(h, a, i0, i1, lr);
}

template <int OPT, int DT, int MODE>
double par32(const BnbOptimHyper& h, const Args32& a, float lr) {
  constexpr int64_t CHUNK = 4096;
  const int64_t tasks = (a.n + CHUNK - 1) / CHUNK;
  double (*fn)(const BnbOptimHyper&, const Args32&, int64_t, int64_t, float) =
      isa_level() == 2   ? range32_avx512<OPT, DT, MODE>
      : isa_level() >= 1 ? range32_avx2<OPT, DT, MODE>
                         : range32_base<OPT, DT, MODE>;
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t i0 = t * CHUNK;
    int64_t i1 = i0 + CHUNK < a.n ? i0 + CHUNK : a.n;
    total += fn(h, a, i0, i1, lr);
  }
  return total;
}

template <int OPT, int DT>
void run32(const BnbOptimHyper& h, const Args32& a, float* unorm_out) {
  float lr = h.lr;
  if (h.max_unorm > 0.f) {
    float unorm = static_cast<float>(par32<OPT, DT, 1>(h, a, 0.f));
    if (unorm_out) unorm_out[0] = unorm;
    float limit = h.max_unorm * h.param_norm;
    float norm = std::sqrt(unorm);
    if (norm > limit) lr = lr * (limit / norm);
  }
  par32<OPT, DT, 0>(h, a, lr);
}

template <template <int, int> class F, typename... A>
int dispatch(int32_t opt, int32_t dtype, A&&... args) {
#define BNB_CASE_DT(O)                                                  \
  switch (dtype) {                                                      \
    case BNB_F32: F<O, BNB_F32>::run(std::forward<A>(args)...); return 0;  \
    case BNB_F16: F<O, BNB_F16>::run(std::forward<A>(args)...); return 0;  \
    case BNB_BF16: F<O, BNB_BF16>::run(std::forward<A>(args)...); return 0; \
    default: return BNB_EDTYPE;                                         \
  }
  switch (opt) {
    case OPT_ADAM: BNB_CASE_DT(OPT_ADAM)
    case OPT_ADEMAMIX: BNB_CASE_DT(OPT_ADEMAMIX)
    case OPT_MOMENTUM: BNB_CASE_DT(OPT_MOMENTUM)
    case OPT_RMSPROP: BNB_CASE_DT(OPT_RMSPROP)
    case OPT_ADAGRAD: BNB_CASE_DT(OPT_ADAGRAD)
    case OPT_LION: BNB_CASE_DT(OPT_LION)
    default: return BNB_EINVAL;
  }
#undef BNB_CASE_DT
}

template <int OPT, int DT>
struct Run8 {
  static void run(const BnbOptimHyper& h, const Args8& a) { run8<OPT, DT>(h, a); }
};
template <int OPT, int DT>
struct Run32 {
  static void run(const BnbOptimHyper& h, const Args32& a, float* unorm) { run32<OPT, DT>(h, a, unorm); }
};

}  // namespace

BNB_API int32_t bnb_optimizer_update_8bit_blockwise(int32_t opt, int32_t dtype, const void* g, void* p, uint8_t* c1,
                                                    uint8_t* c2, uint8_t* c3, const float* qmap1, const float* qmap2,
                                                    const float* mid1, const float* mid2, int32_t kind1, int32_t kind2,
                                                    float* absmax1, float* absmax2, float* absmax3, int64_t n,
                                                    const BnbOptimHyper* h) {
  if (!g || !p || !c1 || !qmap1 || !mid1 || !absmax1 || !h || n < 0) return BNB_EINVAL;
  const bool two = opt == OPT_ADAM || opt == OPT_ADEMAMIX;
  if (two && (!c2 || !qmap2 || !mid2 || !absmax2)) return BNB_EINVAL;
  if (opt == OPT_ADEMAMIX && (!c3 || !absmax3)) return BNB_EINVAL;
  if (n == 0) return BNB_OK;
  Args8 a{g, p, c1, c2, c3, qmap1, qmap2, mid1, mid2, kind1, kind2, absmax1, absmax2, absmax3, n};
  return dispatch<Run8>(opt, dtype, *h, a);
}

BNB_API int32_t bnb_optimizer_update_32bit(int32_t opt, int32_t dtype, const void* g, void* p, float* s1, float* s2,
                                           float* s3, float* unorm_out, int64_t n, const BnbOptimHyper* h) {
  if (!g || !p || !s1 || !h || n < 0) return BNB_EINVAL;
  const bool two = opt == OPT_ADAM || opt == OPT_ADEMAMIX;
  if (two && !s2) return BNB_EINVAL;
  if (opt == OPT_ADEMAMIX && !s3) return BNB_EINVAL;
  if (n == 0) return BNB_OK;
  Args32 a{g, p, s1, s2, s3, n};
  return dispatch<Run32>(opt, dtype, *h, a, unorm_out);
}
