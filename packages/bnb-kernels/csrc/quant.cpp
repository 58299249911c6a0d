// Blockwise 8-bit and 4-bit (NF4/FP4) quantization on the CPU.
//
// The rules are those of bnb_kernels/backends/reference/quant.py (the specification); every
// path here (scalar, AVX2, AVX-512) gives the same bytes:
//   absmax = max |x| per block in float32 (NaN -> canonical NaN), s = x * (1.0f / absmax);
//   8-bit: G = round((s + 1) * 32767.5) computed exactly (s = +-0 -> 32768), clamped to
//          0..65535, NaN -> 65536; code = grid_lut[G] (the table comes from Python);
//   4-bit: code = order[#{j : s > mids[j]}] over 15 sorted float32 midpoints.
// Dequantizing: float32(table[code] * absmax), rounded once to the output dtype.
// Work is split over blocks with OpenMP; no function writes outside the buffers it is given,
// and bad arguments return a negative BnbError before anything is touched.

// GCC 12 reports its own AVX-512 headers' placeholder operands as uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__linux__)
#include <sys/mman.h>
#endif

// The exactness arguments below need every float operation rounded on its own.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define BNB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define BNB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

namespace {

enum SimdLevel : int32_t { SIMD_AUTO = 0, SIMD_SCALAR = 1, SIMD_AVX2 = 2, SIMD_AVX512 = 3 };

bool cpu_has(const char* what) {
#if defined(__x86_64__) || defined(__i386__)
  if (std::strcmp(what, "f16c") == 0) return __builtin_cpu_supports("f16c");
  if (std::strcmp(what, "avx512dq") == 0) return __builtin_cpu_supports("avx512dq");
#endif
  (void)what;
  return false;
}

int32_t best_simd() {
  static const int32_t best = [] {
    const bool avx2 = bnb::has_avx2() && cpu_has("f16c");
    if (avx2 && bnb::has_avx512() && cpu_has("avx512dq")) return int32_t(SIMD_AVX512);
    return avx2 ? int32_t(SIMD_AVX2) : int32_t(SIMD_SCALAR);
  }();
  return best;
}

int32_t choose_simd(int32_t requested) {
  const int32_t best = best_simd();
  return (requested <= SIMD_AUTO || requested > best) ? best : requested;
}

constexpr int64_t kMaxBlocksize = int64_t(1) << 20;
constexpr int32_t kGridNan = 65536;

inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float finish_absmax(uint32_t max_bits) { return u2f(max_bits > 0x7f800000u ? 0x7fc00000u : max_bits); }

// Ask for transparent huge pages on the 2 MiB-aligned interior of a large output before its
// first touch: a freshly allocated tensor otherwise costs one page fault per 4 KiB, which on
// a 2-core machine takes longer than the kernel itself. Advice only; errors are ignored.
void advise_huge_pages(void* p, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (p == nullptr || bytes < int64_t(4) * int64_t(kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

inline int64_t dtype_size(int32_t dtype) { return dtype == BNB_F32 ? 4 : 2; }

// Blocks are handed out in chunks of about 64K values, dynamically: when another process
// takes a core away from one thread, the others pick up its share instead of waiting.
template <class F>
void for_blocks(int64_t blocks, int64_t n, int32_t threads, F&& f) {
#ifdef _OPENMP
  // Small tensors are not worth waking the thread pool.
  if (threads > 1 && blocks > 1 && n >= (int64_t(1) << 15)) {
    const int64_t per_block = (n + blocks - 1) / blocks;
    const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 16) / per_block);
    const int64_t chunks = (blocks + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t end = std::min(blocks, (c + 1) * chunk);
      for (int64_t b = c * chunk; b < end; ++b) f(b);
    }
    return;
  }
#else
  (void)n;
  (void)threads;
#endif
  for (int64_t b = 0; b < blocks; ++b) f(b);
}

int32_t check_common(const void* a, const void* b, const void* c, int64_t n, int64_t blocksize, int32_t dtype) {
  if (n < 0) return BNB_EINVAL;
  if (blocksize < 16 || blocksize % 16 != 0 || blocksize > kMaxBlocksize) return BNB_EBLOCKSIZE;
  if (dtype != BNB_F32 && dtype != BNB_F16 && dtype != BNB_BF16) return BNB_EDTYPE;
  if (n > 0 && (a == nullptr || b == nullptr || c == nullptr)) return BNB_EINVAL;
  return BNB_OK;
}

// ---------------------------------------------------------------------------------------
// Scalar reference path (also used for the tails of the SIMD paths)
// ---------------------------------------------------------------------------------------

template <int DT>
float absmax_scalar(const void* A, int64_t i0, int64_t len) {
  uint32_t m = 0;
  for (int64_t i = 0; i < len; ++i) m = std::max(m, f2u(bnb::load<DT>(A, i0 + i)) & 0x7fffffffu);
  return finish_absmax(m);
}

// Exact G(s) = round((s + 1) * 32767.5): v approximates the product, floor(v) is within one of
// the answer, and the sign of s * 32767.5 + 32767.5 - (floor(v) + 0.5), computed by one fused
// multiply-add of an exact product and an integer, decides the rounding. It is zero only for
// s = +-0, which goes up.
inline int32_t grid_index(float s) {
  if (s != s) return kGridNan;
  const double sd = s;
  double v = std::fma(sd, 32767.5, 32767.5);
  v = std::min(std::max(v, -1.0), 65536.0);
  const double a0 = std::floor(v);
  const double e = std::fma(sd, 32767.5, 32767.0 - a0);
  int32_t g = static_cast<int32_t>(a0) + ((e > 0.0 || (e == 0.0 && s >= 0.0f)) ? 1 : 0);
  return std::min(std::max(g, 0), 65535);
}

inline uint8_t fourbit_code(float s, const float* mids, const int32_t* order) {
  int32_t k = 0;
  for (int j = 0; j < 15; ++j) k += (s > mids[j]) ? 1 : 0;  // NaN: no comparison holds
  return static_cast<uint8_t>(order[k]);
}

template <int DT>
void quant8_block_scalar(const void* A, int64_t i0, int64_t len, const uint8_t* lut, float* absmax,
                         uint8_t* out) {
  const float am = absmax_scalar<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  for (int64_t i = 0; i < len; ++i) out[i0 + i] = lut[grid_index(bnb::load<DT>(A, i0 + i) * inv)];
}

template <int DT>
void quant4_block_scalar(const void* A, int64_t i0, int64_t len, const float* mids, const int32_t* order,
                         float* absmax, uint8_t* out) {
  const float am = absmax_scalar<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  int64_t i = 0;
  for (; i + 1 < len; i += 2) {
    uint8_t hi = fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order);
    uint8_t lo = fourbit_code(bnb::load<DT>(A, i0 + i + 1) * inv, mids, order);
    out[(i0 + i) / 2] = static_cast<uint8_t>((hi << 4) | lo);
  }
  if (i < len) out[(i0 + i) / 2] = static_cast<uint8_t>(fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order) << 4);
}

template <int DT>
void dequant8_range_scalar(const uint8_t* A, const float* code, float scale, int64_t i0, int64_t i1, void* out) {
  for (int64_t i = i0; i < i1; ++i) bnb::store<DT>(out, i, code[A[i]] * scale);
}

template <int DT>
void dequant4_range_scalar(const uint8_t* A, const float* table, float scale, int64_t i0, int64_t i1, void* out) {
  for (int64_t i = i0; i < i1; ++i) {
    const uint8_t byte = A[i >> 1];
    const uint8_t c = (i & 1) ? (byte & 0x0f) : (byte >> 4);
    bnb::store<DT>(out, i, table[c] * scale);
  }
}

// ---------------------------------------------------------------------------------------
// AVX2 path (8 lanes)
// ---------------------------------------------------------------------------------------

template <int DT>
BNB_AVX2 inline __m256 load8_avx2(const void* p, int64_t i) {
  if constexpr (DT == BNB_F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (DT == BNB_F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
BNB_AVX2 inline void store8_avx2(void* p, int64_t i, __m256 v) {
  if constexpr (DT == BNB_F32) {
    _mm256_storeu_ps(static_cast<float*>(p) + i, v);
  } else if constexpr (DT == BNB_F16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(p) + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan_r = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_blendv_epi8(r, nan_r, _mm256_castps_si256(is_nan));
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(p) + i), _mm256_castsi256_si128(packed));
  }
}

template <int DT>
BNB_AVX2 float absmax_avx2(const void* A, int64_t i0, int64_t len) {
  __m256i m = _mm256_setzero_si256();
  const __m256i mask = _mm256_set1_epi32(0x7fffffff);
  int64_t i = 0;
  for (; i + 8 <= len; i += 8)
    m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_castps_si256(load8_avx2<DT>(A, i0 + i)), mask));
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), m);
  uint32_t best = 0;
  for (uint32_t lane : lanes) best = std::max(best, lane);
  for (; i < len; ++i) best = std::max(best, f2u(bnb::load<DT>(A, i0 + i)) & 0x7fffffffu);
  return finish_absmax(best);
}

BNB_AVX2 inline __m128i grid4_avx2(__m128 s) {
  const __m256d sd = _mm256_cvtps_pd(s);
  const __m256d c = _mm256_set1_pd(32767.5);
  const __m256d zero = _mm256_setzero_pd();
  __m256d v = _mm256_fmadd_pd(sd, c, c);
  v = _mm256_min_pd(_mm256_max_pd(v, _mm256_set1_pd(-1.0)), _mm256_set1_pd(65536.0));  // NaN -> -1
  const __m256d a0 = _mm256_round_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256d e = _mm256_fmadd_pd(sd, c, _mm256_sub_pd(_mm256_set1_pd(32767.0), a0));
  const __m256d up = _mm256_or_pd(
      _mm256_cmp_pd(e, zero, _CMP_GT_OQ),
      _mm256_and_pd(_mm256_cmp_pd(e, zero, _CMP_EQ_OQ), _mm256_cmp_pd(sd, zero, _CMP_GE_OQ)));
  __m128i g = _mm256_cvtpd_epi32(a0);
  g = _mm_sub_epi32(g, _mm256_cvtpd_epi32(_mm256_and_pd(up, _mm256_set1_pd(-1.0))));  // +1 where up
  g = _mm_min_epi32(_mm_max_epi32(g, _mm_setzero_si128()), _mm_set1_epi32(65535));
  const __m128 is_nan = _mm_cmp_ps(s, s, _CMP_UNORD_Q);
  return _mm_blendv_epi8(g, _mm_set1_epi32(kGridNan), _mm_castps_si128(is_nan));
}

// 8 lanes of G, as grid16_avx512 explains: float32 where that is exact, double elsewhere.
BNB_AVX2 inline __m256i grid8_avx2(__m256 s) {
  const __m256 c = _mm256_set1_ps(32767.5f);
  const __m256 v = _mm256_fmadd_ps(s, c, c);
  const __m256 a = _mm256_round_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256 d = _mm256_sub_ps(_mm256_sub_ps(v, a), _mm256_set1_ps(0.5f));
  const __m256 abs_d = _mm256_and_ps(d, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  const __m256 abs_s = _mm256_and_ps(s, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  // Near a half-integer, or |s| > 2 / inf / NaN (a denormal absmax makes 1 / absmax infinite).
  const __m256 unsure = _mm256_or_ps(_mm256_cmp_ps(abs_d, _mm256_set1_ps(1.0f / 256.0f), _CMP_LE_OQ),
                                     _mm256_cmp_ps(abs_s, _mm256_set1_ps(2.0f), _CMP_NLE_UQ));
  __m256i g = _mm256_cvttps_epi32(_mm256_max_ps(a, _mm256_set1_ps(-1.0f)));
  g = _mm256_sub_epi32(g, _mm256_castps_si256(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_GT_OQ)));
  g = _mm256_min_epi32(_mm256_max_epi32(g, _mm256_setzero_si256()), _mm256_set1_epi32(65535));
  if (_mm256_movemask_ps(unsure)) {
    const __m256i exact = _mm256_set_m128i(grid4_avx2(_mm256_extractf128_ps(s, 1)), grid4_avx2(_mm256_castps256_ps128(s)));
    g = _mm256_blendv_epi8(g, exact, _mm256_castps_si256(unsure));
  }
  return g;
}

template <int DT>
BNB_AVX2 void quant8_block_avx2(const void* A, int64_t i0, int64_t len, const uint8_t* lut, float* absmax,
                                uint8_t* out) {
  const float am = absmax_avx2<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  const __m256 vinv = _mm256_set1_ps(inv);
  int64_t i = 0;
  const __m256i low_bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                                             -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  for (; i + 8 <= len; i += 8) {
    const __m256i g = grid8_avx2(_mm256_mul_ps(load8_avx2<DT>(A, i0 + i), vinv));
    // 4-byte gathers at byte offsets: the low byte of each is lut[g] (the table is padded).
    const __m256i codes = _mm256_shuffle_epi8(_mm256_i32gather_epi32(reinterpret_cast<const int*>(lut), g, 1), low_bytes);
    const uint32_t lo = static_cast<uint32_t>(_mm256_extract_epi32(codes, 0));
    const uint32_t hi = static_cast<uint32_t>(_mm256_extract_epi32(codes, 4));
    const uint64_t eight = uint64_t(lo) | (uint64_t(hi) << 32);
    std::memcpy(out + i0 + i, &eight, 8);
  }
  for (; i < len; ++i) out[i0 + i] = lut[grid_index(bnb::load<DT>(A, i0 + i) * inv)];
}

BNB_AVX2 inline __m256 lookup16_ps_avx2(__m256i idx, __m256 lo, __m256 hi) {
  const __m256 a = _mm256_permutevar8x32_ps(lo, idx);
  const __m256 b = _mm256_permutevar8x32_ps(hi, idx);
  const __m256i upper = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7));
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(upper));
}

template <int DT>
BNB_AVX2 void quant4_block_avx2(const void* A, int64_t i0, int64_t len, const float* mids16, const int32_t* order,
                                float* absmax, uint8_t* out) {
  const float am = absmax_avx2<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256 mlo = _mm256_loadu_ps(mids16), mhi = _mm256_loadu_ps(mids16 + 8);
  const __m256 olo = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(order)));
  const __m256 ohi = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(order + 8)));
  alignas(32) int32_t c[8];
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 s = _mm256_mul_ps(load8_avx2<DT>(A, i0 + i), vinv);
    __m256i idx = _mm256_setzero_si256();
    for (int step = 8; step > 0; step >>= 1) {
      const __m256 t = lookup16_ps_avx2(_mm256_add_epi32(idx, _mm256_set1_epi32(step - 1)), mlo, mhi);
      const __m256i gt = _mm256_castps_si256(_mm256_cmp_ps(s, t, _CMP_GT_OQ));
      idx = _mm256_add_epi32(idx, _mm256_and_si256(gt, _mm256_set1_epi32(step)));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(c), _mm256_castps_si256(lookup16_ps_avx2(idx, olo, ohi)));
    uint8_t* o = out + (i0 + i) / 2;
    for (int k = 0; k < 4; ++k) o[k] = static_cast<uint8_t>((c[2 * k] << 4) | c[2 * k + 1]);
  }
  const float* mids = mids16;
  for (; i + 1 < len; i += 2) {
    uint8_t hi = fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order);
    uint8_t lo = fourbit_code(bnb::load<DT>(A, i0 + i + 1) * inv, mids, order);
    out[(i0 + i) / 2] = static_cast<uint8_t>((hi << 4) | lo);
  }
  if (i < len) out[(i0 + i) / 2] = static_cast<uint8_t>(fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order) << 4);
}

template <int DT>
BNB_AVX2 void dequant8_range_avx2(const uint8_t* A, const float* code, float scale, int64_t i0, int64_t i1,
                                  void* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(A + i)));
    store8_avx2<DT>(out, i, _mm256_mul_ps(_mm256_i32gather_ps(code, idx, 4), vs));
  }
  dequant8_range_scalar<DT>(A, code, scale, i, i1, out);
}

template <int DT>
BNB_AVX2 void dequant4_range_avx2(const uint8_t* A, const float* table, float scale, int64_t i0, int64_t i1,
                                  void* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 tlo = _mm256_loadu_ps(table), thi = _mm256_loadu_ps(table + 8);
  const __m256i shifts = _mm256_set_epi32(0, 4, 0, 4, 0, 4, 0, 4);
  int64_t i = i0;  // i0 is even: blocks start at multiples of 16
  for (; i + 8 <= i1; i += 8) {
    int32_t four;
    std::memcpy(&four, A + (i >> 1), 4);
    const __m128i b = _mm_cvtsi32_si128(four);
    const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shifts),
                                       _mm256_set1_epi32(15));
    store8_avx2<DT>(out, i, _mm256_mul_ps(lookup16_ps_avx2(c, tlo, thi), vs));
  }
  dequant4_range_scalar<DT>(A, table, scale, i, i1, out);
}

// ---------------------------------------------------------------------------------------
// 16-bit search table for the AVX-512 8-bit path
// ---------------------------------------------------------------------------------------

// When the grid table is non-decreasing (a sorted codebook, as every map of the release is),
// code(G) = base + #{j : G > P_j} over at most 255 sorted grid positions P_j (a threshold of
// multiplicity k appears k times). Padded to 256 with 65535 (never exceeded), the positions
// are split into 32 groups of 8: a 5-step binary search over the groups' last positions
// (one 32-entry word permute per step), then 7 compares against the group's other positions.
struct Search16 {
  bool usable = false;
  uint8_t base = 0;
  uint8_t nan_code = 0;
  alignas(64) uint16_t coarse[32];
  alignas(64) uint16_t fine[7][32];
};

Search16 build_search16(const uint8_t* lut) {
  Search16 t;
  for (int32_t g = 1; g < 65536; ++g)
    if (lut[g] < lut[g - 1]) return t;  // not monotone: use the table lookups
  uint16_t pos[256];
  int32_t m = 0;
  for (int32_t g = 1; g < 65536; ++g)
    for (int32_t k = lut[g - 1]; k < lut[g]; ++k) pos[m++] = static_cast<uint16_t>(g - 1);  // G > g - 1
  for (; m < 256; ++m) pos[m] = 65535;
  for (int h = 0; h < 32; ++h) {
    t.coarse[h] = pos[8 * h + 7];
    for (int k = 0; k < 7; ++k) t.fine[k][h] = pos[8 * h + k];
  }
  t.base = lut[0];
  t.nan_code = lut[kGridNan];
  t.usable = true;
  return t;
}

// ---------------------------------------------------------------------------------------
// AVX-512 path (16 lanes)
// ---------------------------------------------------------------------------------------

template <int DT>
BNB_AVX512 inline __m512 load16_avx512(const void* p, int64_t i) {
  if constexpr (DT == BNB_F32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (DT == BNB_F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
BNB_AVX512 inline void store16_avx512(void* p, int64_t i, __m512 v) {
  if constexpr (DT == BNB_F32) {
    _mm512_storeu_ps(static_cast<float*>(p) + i, v);
  } else if constexpr (DT == BNB_F16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i nan_r = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), nan_r);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i), _mm512_cvtepi32_epi16(r));
  }
}

template <int DT>
BNB_AVX512 float absmax_avx512(const void* A, int64_t i0, int64_t len) {
  __m512i m = _mm512_setzero_si512();
  const __m512i mask = _mm512_set1_epi32(0x7fffffff);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_castps_si512(load16_avx512<DT>(A, i0 + i)), mask));
  uint32_t best = _mm512_reduce_max_epu32(m);
  for (; i < len; ++i) best = std::max(best, f2u(bnb::load<DT>(A, i0 + i)) & 0x7fffffffu);
  return finish_absmax(best);
}

BNB_AVX512 inline __m256i grid8_avx512(__m256 s) {
  const __m512d sd = _mm512_cvtps_pd(s);
  const __m512d c = _mm512_set1_pd(32767.5);
  const __m512d zero = _mm512_setzero_pd();
  __m512d v = _mm512_fmadd_pd(sd, c, c);
  v = _mm512_min_pd(_mm512_max_pd(v, _mm512_set1_pd(-1.0)), _mm512_set1_pd(65536.0));  // NaN -> -1
  const __m512d a0 = _mm512_roundscale_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512d e = _mm512_fmadd_pd(sd, c, _mm512_sub_pd(_mm512_set1_pd(32767.0), a0));
  const __mmask8 up = _mm512_cmp_pd_mask(e, zero, _CMP_GT_OQ) |
                      (_mm512_cmp_pd_mask(e, zero, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(sd, zero, _CMP_GE_OQ));
  __m256i g = _mm512_cvtpd_epi32(a0);
  g = _mm256_mask_add_epi32(g, up, g, _mm256_set1_epi32(1));
  g = _mm256_min_epi32(_mm256_max_epi32(g, _mm256_setzero_si256()), _mm256_set1_epi32(65535));
  return _mm256_mask_mov_epi32(g, _mm256_cmp_ps_mask(s, s, _CMP_UNORD_Q), _mm256_set1_epi32(kGridNan));
}

// G for 16 lanes. In float32, v = fma(s, 32767.5, 32767.5) is within 2^-9 of the exact
// value, so wherever v is more than 2^-8 away from a half-integer, its nearest integer is
// exact. Since |s| <= 1 + 2^-23 for finite blocks, G needs no clamping there. Lanes near a
// half-integer (under 1% of them) or with |s| > 1.5 (inf or NaN: a denormal or NaN absmax)
// take the exact double computation; ``rare`` reports whether any did.
BNB_AVX512 inline __m512i grid16_avx512(__m512 s, bool& rare) {
  const __m512 c = _mm512_set1_ps(32767.5f);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512 v = _mm512_fmadd_ps(s, c, c);
  const __m512 r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 e = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(v, r)), abs_mask));
  const __m512 abs_s = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(s), abs_mask));
  const __mmask16 unsure = _mm512_cmp_ps_mask(e, _mm512_set1_ps(0.5f - 1.0f / 256.0f), _CMP_GE_OQ) |
                           _mm512_cmp_ps_mask(abs_s, _mm512_set1_ps(1.5f), _CMP_NLE_UQ);
  __m512i g = _mm512_cvttps_epi32(r);
  if (unsure) {
    rare = true;
    const __m512i lo = _mm512_castsi256_si512(grid8_avx512(_mm512_castps512_ps256(s)));
    const __m512i exact = _mm512_inserti64x4(lo, grid8_avx512(_mm512_extractf32x8_ps(s, 1)), 1);
    g = _mm512_mask_mov_epi32(g, unsure, exact);
  }
  return g;
}

template <int DT>
BNB_AVX512 void quant8_block_avx512(const void* A, int64_t i0, int64_t len, const uint8_t* lut, float* absmax,
                                    uint8_t* out) {
  const float am = absmax_avx512<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  const __m512 vinv = _mm512_set1_ps(inv);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    bool rare = false;
    const __m512i g = grid16_avx512(_mm512_mul_ps(load16_avx512<DT>(A, i0 + i), vinv), rare);
    // 4-byte gathers at byte offsets: the low byte of each is lut[g] (the table is padded).
    const __m512i codes = _mm512_i32gather_epi32(g, lut, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i0 + i), _mm512_cvtepi32_epi8(codes));
  }
  for (; i < len; ++i) out[i0 + i] = lut[grid_index(bnb::load<DT>(A, i0 + i) * inv)];
}

// Codes of 32 normalized values through the 16-bit search table.
BNB_AVX512 inline __m256i search32_avx512(__m512 s_lo, __m512 s_hi, const Search16& t, const __m512i* fine) {
  bool rare = false;
  const __m512i g = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(grid16_avx512(s_lo, rare))),
                                       _mm512_cvtepi32_epi16(grid16_avx512(s_hi, rare)), 1);
  const __m512i coarse = _mm512_load_si512(t.coarse);
  __m512i h = _mm512_setzero_si512();
  for (int step = 16; step > 0; step >>= 1) {
    const __m512i probe = _mm512_permutexvar_epi16(_mm512_add_epi16(h, _mm512_set1_epi16(int16_t(step - 1))), coarse);
    h = _mm512_mask_add_epi16(h, _mm512_cmpgt_epu16_mask(g, probe), h, _mm512_set1_epi16(int16_t(step)));
  }
  __m512i rank = _mm512_add_epi16(_mm512_slli_epi16(h, 3), _mm512_set1_epi16(t.base));
  for (int k = 0; k < 7; ++k) {
    const __m512i probe = _mm512_permutexvar_epi16(h, fine[k]);
    rank = _mm512_mask_add_epi16(rank, _mm512_cmpgt_epu16_mask(g, probe), rank, _mm512_set1_epi16(1));
  }
  if (rare) {  // NaN lanes (G = 65536 does not fit 16 bits) take the NaN code
    const __mmask32 nan = (__mmask32)_mm512_cmp_ps_mask(s_lo, s_lo, _CMP_UNORD_Q) |
                          ((__mmask32)_mm512_cmp_ps_mask(s_hi, s_hi, _CMP_UNORD_Q) << 16);
    rank = _mm512_mask_mov_epi16(rank, nan, _mm512_set1_epi16(t.nan_code));
  }
  return _mm512_cvtepi16_epi8(rank);
}

template <int DT>
BNB_AVX512 void quant8_block_search_avx512(const void* A, int64_t i0, int64_t len, const uint8_t* lut,
                                           const Search16& t, float* absmax, uint8_t* out) {
  const float am = absmax_avx512<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  const __m512 vinv = _mm512_set1_ps(inv);
  __m512i fine[7];
  for (int k = 0; k < 7; ++k) fine[k] = _mm512_load_si512(t.fine[k]);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const __m512 s_lo = _mm512_mul_ps(load16_avx512<DT>(A, i0 + i), vinv);
    const __m512 s_hi = _mm512_mul_ps(load16_avx512<DT>(A, i0 + i + 16), vinv);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i0 + i), search32_avx512(s_lo, s_hi, t, fine));
  }
  for (; i < len; ++i) out[i0 + i] = lut[grid_index(bnb::load<DT>(A, i0 + i) * inv)];
}

template <int DT>
BNB_AVX512 void quant4_block_avx512(const void* A, int64_t i0, int64_t len, const float* mids16,
                                    const int32_t* order, float* absmax, uint8_t* out) {
  const float am = absmax_avx512<DT>(A, i0, len);
  *absmax = am;
  const float inv = 1.0f / am;
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512 mtab = _mm512_loadu_ps(mids16);  // 15 midpoints and +inf
  const __m512i otab = _mm512_loadu_si512(order);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m512 s = _mm512_mul_ps(load16_avx512<DT>(A, i0 + i), vinv);
    __m512i idx = _mm512_setzero_si512();
    for (int step = 8; step > 0; step >>= 1) {
      const __m512 t = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)), mtab);
      idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(s, t, _CMP_GT_OQ), idx, _mm512_set1_epi32(step));
    }
    const __m512i code = _mm512_permutexvar_epi32(idx, otab);
    // Each 64-bit lane holds (first, second) codes: its low byte becomes (first << 4) | second.
    const __m512i pairs = _mm512_or_si512(_mm512_slli_epi64(code, 4), _mm512_srli_epi64(code, 32));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (i0 + i) / 2), _mm512_cvtepi64_epi8(pairs));
  }
  const float* mids = mids16;
  for (; i + 1 < len; i += 2) {
    uint8_t hi = fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order);
    uint8_t lo = fourbit_code(bnb::load<DT>(A, i0 + i + 1) * inv, mids, order);
    out[(i0 + i) / 2] = static_cast<uint8_t>((hi << 4) | lo);
  }
  if (i < len) out[(i0 + i) / 2] = static_cast<uint8_t>(fourbit_code(bnb::load<DT>(A, i0 + i) * inv, mids, order) << 4);
}

template <int DT>
BNB_AVX512 void dequant8_range_avx512(const uint8_t* A, const float* code, float scale, int64_t i0, int64_t i1,
                                      void* out) {
  // The 256-entry code lives in 16 registers: eight two-register permutes (the low 5 index
  // bits) and a blend tree on bits 5..7 replace a gather.
  __m512 tab[16];
  for (int k = 0; k < 16; ++k) tab[k] = _mm512_loadu_ps(code + 16 * k);
  const __m512 vs = _mm512_set1_ps(scale);
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16) {
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(A + i)));
    const __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
    const __mmask16 b7 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(128));
    __m512 p[8];
    for (int k = 0; k < 8; ++k) p[k] = _mm512_permutex2var_ps(tab[2 * k], idx, tab[2 * k + 1]);
    const __m512 q0 = _mm512_mask_blend_ps(b5, p[0], p[1]), q1 = _mm512_mask_blend_ps(b5, p[2], p[3]);
    const __m512 q2 = _mm512_mask_blend_ps(b5, p[4], p[5]), q3 = _mm512_mask_blend_ps(b5, p[6], p[7]);
    const __m512 r0 = _mm512_mask_blend_ps(b6, q0, q1), r1 = _mm512_mask_blend_ps(b6, q2, q3);
    store16_avx512<DT>(out, i, _mm512_mul_ps(_mm512_mask_blend_ps(b7, r0, r1), vs));
  }
  dequant8_range_scalar<DT>(A, code, scale, i, i1, out);
}

template <int DT>
BNB_AVX512 void dequant4_range_avx512(const uint8_t* A, const float* table, float scale, int64_t i0, int64_t i1,
                                      void* out) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512 tab = _mm512_loadu_ps(table);
  const __m512i shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
  const __m512i nibble = _mm512_set1_epi32(15);
  int64_t i = i0;  // i0 is even: blocks start at multiples of 16
  for (; i + 16 <= i1; i += 16) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(A + (i >> 1)));
    const __m512i c = _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shifts), nibble);
    store16_avx512<DT>(out, i, _mm512_mul_ps(_mm512_permutexvar_ps(c, tab), vs));
  }
  dequant4_range_scalar<DT>(A, table, scale, i, i1, out);
}

// ---------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------

template <int DT>
void quant8_run(const void* A, int64_t n, int64_t bs, const uint8_t* lut, float* absmax, uint8_t* out,
                int32_t threads, int32_t simd) {
  const int64_t blocks = (n + bs - 1) / bs;
  Search16 search;
  if (simd == SIMD_AVX512 && n >= (int64_t(1) << 16)) search = build_search16(lut);
  for_blocks(blocks, n, threads, [&](int64_t b) {
    const int64_t i0 = b * bs, len = std::min(bs, n - i0);
    if (simd == SIMD_AVX512 && search.usable) quant8_block_search_avx512<DT>(A, i0, len, lut, search, absmax + b, out);
    else if (simd == SIMD_AVX512) quant8_block_avx512<DT>(A, i0, len, lut, absmax + b, out);
    else if (simd == SIMD_AVX2) quant8_block_avx2<DT>(A, i0, len, lut, absmax + b, out);
    else quant8_block_scalar<DT>(A, i0, len, lut, absmax + b, out);
  });
}

template <int DT>
void quant4_run(const void* A, int64_t n, int64_t bs, const float* mids16, const int32_t* order, float* absmax,
                uint8_t* out, int32_t threads, int32_t simd) {
  const int64_t blocks = (n + bs - 1) / bs;
  for_blocks(blocks, n, threads, [&](int64_t b) {
    const int64_t i0 = b * bs, len = std::min(bs, n - i0);
    if (simd == SIMD_AVX512) quant4_block_avx512<DT>(A, i0, len, mids16, order, absmax + b, out);
    else if (simd == SIMD_AVX2) quant4_block_avx2<DT>(A, i0, len, mids16, order, absmax + b, out);
    else quant4_block_scalar<DT>(A, i0, len, mids16, order, absmax + b, out);
  });
}

template <int DT, bool FOURBIT>
void dequant_run(const uint8_t* A, const float* table, const float* absmax, int64_t n, int64_t bs, void* out,
                 int32_t threads, int32_t simd) {
  const int64_t blocks = (n + bs - 1) / bs;
  for_blocks(blocks, n, threads, [&](int64_t b) {
    const int64_t i0 = b * bs, i1 = std::min(n, i0 + bs);
    const float scale = absmax[b];
    if constexpr (FOURBIT) {
      if (simd == SIMD_AVX512) dequant4_range_avx512<DT>(A, table, scale, i0, i1, out);
      else if (simd == SIMD_AVX2) dequant4_range_avx2<DT>(A, table, scale, i0, i1, out);
      else dequant4_range_scalar<DT>(A, table, scale, i0, i1, out);
    } else {
      if (simd == SIMD_AVX512) dequant8_range_avx512<DT>(A, table, scale, i0, i1, out);
      else if (simd == SIMD_AVX2) dequant8_range_avx2<DT>(A, table, scale, i0, i1, out);
      else dequant8_range_scalar<DT>(A, table, scale, i0, i1, out);
    }
  });
}

}  // namespace

// Which SIMD level a request resolves to on this CPU (0 = best available): 1 scalar, 2 AVX2,
// 3 AVX-512.
BNB_API int32_t bnb_quant_simd_level(int32_t requested) { return choose_simd(requested); }

// A: n values of dtype; grid_lut: 65540 bytes (65537 codes, see codebooks.CodebookTable, and
// 3 bytes of padding for 4-byte gathers); absmax: one
// float per block; out: n codes.
BNB_API int32_t bnb_quantize_blockwise(const void* A, int32_t dtype, int64_t n, int64_t blocksize,
                                       const uint8_t* grid_lut, float* absmax, uint8_t* out, int32_t threads,
                                       int32_t simd) {
  int32_t rc = check_common(A, absmax, out, n, blocksize, dtype);
  if (rc != BNB_OK) return rc;
  if (n > 0 && grid_lut == nullptr) return BNB_EINVAL;
  simd = choose_simd(simd);
  advise_huge_pages(out, n);
  switch (dtype) {
    case BNB_F32: quant8_run<BNB_F32>(A, n, blocksize, grid_lut, absmax, out, threads, simd); break;
    case BNB_F16: quant8_run<BNB_F16>(A, n, blocksize, grid_lut, absmax, out, threads, simd); break;
    default: quant8_run<BNB_BF16>(A, n, blocksize, grid_lut, absmax, out, threads, simd); break;
  }
  return BNB_OK;
}

// A: n codes; code: 256 floats; absmax: one float per block; out: n values of out_dtype.
BNB_API int32_t bnb_dequantize_blockwise(const uint8_t* A, const float* code, const float* absmax, int64_t n,
                                         int64_t blocksize, void* out, int32_t out_dtype, int32_t threads,
                                         int32_t simd) {
  int32_t rc = check_common(A, absmax, out, n, blocksize, out_dtype);
  if (rc != BNB_OK) return rc;
  if (n > 0 && code == nullptr) return BNB_EINVAL;
  simd = choose_simd(simd);
  advise_huge_pages(out, n * dtype_size(out_dtype));
  switch (out_dtype) {
    case BNB_F32: dequant_run<BNB_F32, false>(A, code, absmax, n, blocksize, out, threads, simd); break;
    case BNB_F16: dequant_run<BNB_F16, false>(A, code, absmax, n, blocksize, out, threads, simd); break;
    default: dequant_run<BNB_BF16, false>(A, code, absmax, n, blocksize, out, threads, simd); break;
  }
  return BNB_OK;
}

// A: n values of dtype; mids: 15 sorted float32 thresholds; order: 16 codes (0..15) in value
// order; absmax: one float per block; out: (n + 1) / 2 bytes.
BNB_API int32_t bnb_quantize_4bit(const void* A, int32_t dtype, int64_t n, int64_t blocksize, const float* mids,
                                  const int32_t* order, float* absmax, uint8_t* out, int32_t threads,
                                  int32_t simd) {
  int32_t rc = check_common(A, absmax, out, n, blocksize, dtype);
  if (rc != BNB_OK) return rc;
  if (mids == nullptr || order == nullptr) return BNB_EINVAL;
  alignas(64) float mids16[16];
  alignas(64) int32_t order16[16];
  for (int j = 0; j < 15; ++j) {
    mids16[j] = mids[j];
    if (!(mids[j] == mids[j]) || (j > 0 && mids[j] < mids[j - 1])) return BNB_EINVAL;  // sorted, no NaN
  }
  mids16[15] = INFINITY;
  for (int j = 0; j < 16; ++j) {
    if (order[j] < 0 || order[j] > 15) return BNB_EINVAL;
    order16[j] = order[j];
  }
  simd = choose_simd(simd);
  advise_huge_pages(out, (n + 1) / 2);
  switch (dtype) {
    case BNB_F32: quant4_run<BNB_F32>(A, n, blocksize, mids16, order16, absmax, out, threads, simd); break;
    case BNB_F16: quant4_run<BNB_F16>(A, n, blocksize, mids16, order16, absmax, out, threads, simd); break;
    default: quant4_run<BNB_BF16>(A, n, blocksize, mids16, order16, absmax, out, threads, simd); break;
  }
  return BNB_OK;
}

// A: (n + 1) / 2 bytes; table: 16 floats; absmax: one float per block; out: n values.
BNB_API int32_t bnb_dequantize_4bit(const uint8_t* A, const float* table, const float* absmax, int64_t n,
                                    int64_t blocksize, void* out, int32_t out_dtype, int32_t threads,
                                    int32_t simd) {
  int32_t rc = check_common(A, absmax, out, n, blocksize, out_dtype);
  if (rc != BNB_OK) return rc;
  if (table == nullptr) return BNB_EINVAL;
  alignas(64) float table16[16];
  std::memcpy(table16, table, sizeof(table16));
  simd = choose_simd(simd);
  advise_huge_pages(out, n * dtype_size(out_dtype));
  switch (out_dtype) {
    case BNB_F32: dequant_run<BNB_F32, true>(A, table16, absmax, n, blocksize, out, threads, simd); break;
    case BNB_F16: dequant_run<BNB_F16, true>(A, table16, absmax, n, blocksize, out, threads, simd); break;
    default: dequant_run<BNB_BF16, true>(A, table16, absmax, n, blocksize, out, threads, simd); break;
  }
  return BNB_OK;
}
