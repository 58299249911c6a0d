// 4-bit (NF4/FP4) matmul on the CPU: out[m, n] = sum_k A[m, k] * W[n, k] (+ bias[n]),
// where W[n, k] = lut[code(n*K + k)] * scale(block of n*K + k) is never materialized as a
// whole: each thread decodes a few rows at a time into a small scratch buffer (or straight
// into registers for one or two rows of A) and multiplies them while they sit in L1/L2.
//
// Weight layout (the reference release's): codes packed two per byte, the element with the
// even flat index in the high nibble. Scales: float32 absmax per block of `blocksize`, or
// nested: code2[absmax8[b]] * absmax[b / nested_bs] + offset.
//
// Work is handed out dynamically (a thread preempted on a busy machine does not hold the
// others at the barrier).
//
// Paths, chosen at run time:
//   - AVX-512 GEMV (M <= 2, any activation dtype): nibbles -> vpermps on the 16-entry table,
//     FMA against the even/odd input features in fp32; the block scale is applied once per
//     block.
//   - AVX-512 BF16 tiles (bf16 activations, M > 2, CPU with avx512_bf16): rows decoded to
//     bf16 (value * absmax rounded once, as the reference dequantizes) and multiplied with
//     vdpbf16ps in 4x4 register tiles.
//   - AVX-512 fp32 tiles (other dtypes, M > 2): rows decoded to fp32 (rounded through the
//     activation dtype), 4x4 FMA tiles.
//   - AVX2/baseline: the same tiled structure written as plain loops the compiler
//     vectorizes for AVX2+FMA.
//   - Scalar: any K (odd K), the specification-level loop.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BNB_X86 1
#endif

#include "common.h"

// GCC's own AVX-512 reduce intrinsics trip this warning inside its headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

struct Scales {
  const float* absmax;
  const uint8_t* absmax8;  // null unless nested
  const float* code2;
  float offset;
  int64_t nested_bs;
  int nested_shift;  // log2(nested_bs), or -1 when it is not a power of two

  inline float operator()(int64_t b) const {
    if (absmax8) {
      const int64_t g = nested_shift >= 0 ? (b >> nested_shift) : b / nested_bs;
      return code2[absmax8[b]] * absmax[g] + offset;
    }
    return absmax[b];
  }
};

// The block segments of row n, in bytes of the row (K even): for (BlockWalk w(n, K, bs);
// w.next();) uses [w.j, w.je) with block w.b. Rows that start on a block boundary need no
// division per block. (A struct, not a lambda: lambdas do not inherit target attributes.)
struct BlockWalk {
  int64_t n, K, bs, H, j, je, b;
  bool aligned;
  BlockWalk(int64_t n_, int64_t K_, int64_t bs_)
      : n(n_), K(K_), bs(bs_), H(K_ / 2), j(0), je(0), b(0), aligned(K_ % bs_ == 0) {
    if (aligned) b = n * (K / bs) - 1;
  }
  inline bool next() {
    j = je;
    if (j >= H) return false;
    if (aligned) {
      b++;
      je = std::min(H, j + bs / 2);
    } else {
      b = (n * K + 2 * j) / bs;
      je = std::min(H, ((b + 1) * bs - n * K) / 2);
    }
    return true;
  }
};

struct Problem {
  const void* A;
  int32_t dtype;
  int64_t M, K, lda;
  const uint8_t* W;
  int64_t N;
  Scales scale;
  const float* lut;
  int64_t blocksize;
  const void* bias;
  void* out;
  int64_t ldo;
  int32_t threads;
};

template <int DT>
inline float round_to(float v) {
  if constexpr (DT == BNB_F32) return v;
  else if constexpr (DT == BNB_F16) return bnb::f16_to_f32(bnb::f32_to_f16(v));
  else return bnb::bf16_to_f32(bnb::f32_to_bf16(v));
}

inline float load_any(const void* p, int32_t dt, int64_t i) {
  if (dt == BNB_F32) return bnb::load<BNB_F32>(p, i);
  if (dt == BNB_F16) return bnb::load<BNB_F16>(p, i);
  return bnb::load<BNB_BF16>(p, i);
}

inline void store_any(void* p, int32_t dt, int64_t i, float v) {
  if (dt == BNB_F32) bnb::store<BNB_F32>(p, i, v);
  else if (dt == BNB_F16) bnb::store<BNB_F16>(p, i, v);
  else bnb::store<BNB_BF16>(p, i, v);
}

inline float round_any(int32_t dt, float v) {
  if (dt == BNB_F32) return round_to<BNB_F32>(v);
  if (dt == BNB_F16) return round_to<BNB_F16>(v);
  return round_to<BNB_BF16>(v);
}

inline void finish(const Problem& p, int64_t m, int64_t n, float acc) {
  if (p.bias) acc += load_any(p.bias, p.dtype, n);
  store_any(p.out, p.dtype, m * p.ldo + n, acc);
}

// ---------------------------------------------------------------------------------------
// Scalar reference loop (any K, including odd): the weight is rounded to the activation
// dtype, products and sums in fp32.
void gemm_scalar(const Problem& p) {
  const int64_t N = p.N, K = p.K, M = p.M;
#pragma omp parallel for schedule(static) num_threads(p.threads)
  for (int64_t n = 0; n < N; n++) {
    std::vector<float> w(K);
    for (int64_t k = 0; k < K; k++) {
      int64_t idx = n * K + k;
      uint8_t byte = p.W[idx >> 1];
      int code = (idx & 1) ? (byte & 15) : (byte >> 4);
      w[k] = round_any(p.dtype, p.lut[code] * p.scale(idx / p.blocksize));
    }
    for (int64_t m = 0; m < M; m++) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; k++) acc += load_any(p.A, p.dtype, m * p.lda + k) * w[k];
      finish(p, m, n, acc);
    }
  }
}

// Decode row n (K even) into fp32, rounded through DT. Portable; vectorizes for AVX2.
template <int DT>
inline void decode_row_f32(const Problem& p, int64_t n, float* dst) {
  const int64_t K = p.K, bs = p.blocksize;
  const uint8_t* row = p.W + n * (K / 2);
  int64_t k = 0;
  while (k < K) {
    int64_t flat = n * K + k;
    int64_t b = flat / bs;
    int64_t end = std::min(K, (b + 1) * bs - n * K);
    float s = p.scale(b);
    float tab[16];
    for (int c = 0; c < 16; c++) tab[c] = round_to<DT>(p.lut[c] * s);
    // k and end are even: blocks are at least 32 long and rows start on a byte.
    for (int64_t j = k / 2; j < end / 2; j++) {
      uint8_t byte = row[j];
      dst[2 * j] = tab[byte >> 4];
      dst[2 * j + 1] = tab[byte & 15];
    }
    k = end;
  }
}

template <int DT>
__attribute__((target("avx2,fma"))) void gemm_avx2_impl(const Problem& p) {
  const int64_t N = p.N, K = p.K, M = p.M;
  std::vector<float> xf(M * K);
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) xf[m * K + k] = bnb::load<DT>(p.A, m * p.lda + k);
  const float* x = xf.data();
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<float> w(K);
#pragma omp for schedule(dynamic, 8)
    for (int64_t n = 0; n < N; n++) {
      decode_row_f32<DT>(p, n, w.data());
      const float* wr = w.data();
      for (int64_t m = 0; m < M; m++) {
        const float* xr = x + m * K;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; k++) acc += xr[k] * wr[k];
        finish(p, m, n, acc);
      }
    }
  }
}

void gemm_avx2(const Problem& p) {
  if (p.dtype == BNB_F32) gemm_avx2_impl<BNB_F32>(p);
  else if (p.dtype == BNB_F16) gemm_avx2_impl<BNB_F16>(p);
  else gemm_avx2_impl<BNB_BF16>(p);
}

#ifdef BNB_X86
// ---------------------------------------------------------------------------------------
// AVX-512 GEMV for M <= 2: x split into even/odd features (fp32), codes looked up with
// vpermps, block scale applied once per block segment.
#define BNB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

template <int MT>
BNB_AVX512 void gemv_avx512(const Problem& p) {
  const int64_t N = p.N, K = p.K, H = K / 2, bs = p.blocksize;
  std::vector<float> xs(2 * MT * (H + 16), 0.f);
  float* xe[MT];
  float* xo[MT];
  for (int m = 0; m < MT; m++) {
    xe[m] = xs.data() + (2 * m) * (H + 16);
    xo[m] = xs.data() + (2 * m + 1) * (H + 16);
    for (int64_t j = 0; j < H; j++) {
      xe[m][j] = load_any(p.A, p.dtype, m * p.lda + 2 * j);
      xo[m][j] = load_any(p.A, p.dtype, m * p.lda + 2 * j + 1);
    }
  }
  const __m512 lutv = _mm512_loadu_ps(p.lut);
  const __m512i low4 = _mm512_set1_epi32(15);
#pragma omp parallel for schedule(dynamic, 32) num_threads(p.threads)
  for (int64_t n = 0; n < N; n++) {
    const uint8_t* row = p.W + n * H;
    // Four independent accumulation chains per row of A; the block scale is folded into
    // the 16-entry table (one multiply per block) so segments need no reduction.
    __m512 a0[MT], a1[MT], a2[MT], a3[MT];
    for (int m = 0; m < MT; m++) a0[m] = a1[m] = a2[m] = a3[m] = _mm512_setzero_ps();
    for (BlockWalk blk(n, K, bs); blk.next();) {
      const int64_t j = blk.j, je = blk.je;
      const __m512 tab = _mm512_mul_ps(lutv, _mm512_set1_ps(p.scale(blk.b)));
      int64_t i = j;
      for (; i + 32 <= je; i += 32) {
        __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i)));
        __m512i v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i + 16)));
        __m512 wh0 = _mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab);
        __m512 wl0 = _mm512_permutexvar_ps(_mm512_and_si512(v0, low4), tab);
        __m512 wh1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), tab);
        __m512 wl1 = _mm512_permutexvar_ps(_mm512_and_si512(v1, low4), tab);
        for (int m = 0; m < MT; m++) {
          a0[m] = _mm512_fmadd_ps(wh0, _mm512_loadu_ps(xe[m] + i), a0[m]);
          a1[m] = _mm512_fmadd_ps(wl0, _mm512_loadu_ps(xo[m] + i), a1[m]);
          a2[m] = _mm512_fmadd_ps(wh1, _mm512_loadu_ps(xe[m] + i + 16), a2[m]);
          a3[m] = _mm512_fmadd_ps(wl1, _mm512_loadu_ps(xo[m] + i + 16), a3[m]);
        }
      }
      for (; i < je; i += 16) {
        const __mmask16 mk = (je - i >= 16) ? static_cast<__mmask16>(0xffff)
                                             : static_cast<__mmask16>((1u << (je - i)) - 1u);
        __m512i v0 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, row + i));
        __m512 wh0 = _mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab);
        __m512 wl0 = _mm512_permutexvar_ps(_mm512_and_si512(v0, low4), tab);
        for (int m = 0; m < MT; m++) {
          a0[m] = _mm512_fmadd_ps(wh0, _mm512_maskz_loadu_ps(mk, xe[m] + i), a0[m]);
          a1[m] = _mm512_fmadd_ps(wl0, _mm512_maskz_loadu_ps(mk, xo[m] + i), a1[m]);
        }
      }
    }
    for (int m = 0; m < MT; m++) {
      __m512 t = _mm512_add_ps(_mm512_add_ps(a0[m], a1[m]), _mm512_add_ps(a2[m], a3[m]));
      finish(p, m, n, _mm512_reduce_add_ps(t));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Tiled kernels for M > 2: NT rows decoded into scratch, MT x NT register tiles.
constexpr int NT = 4;

// Decode row n into bf16 (value * absmax rounded once, round-to-nearest-even), natural order.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) inline void decode_row_bf16(
    const Problem& p, int64_t n, uint16_t* dst) {
  const int64_t K = p.K, H = K / 2, bs = p.blocksize;
  const uint8_t* row = p.W + n * H;
  const __m512 lutv = _mm512_loadu_ps(p.lut);
  const __m512i low4 = _mm512_set1_epi32(15);
  for (BlockWalk blk(n, K, bs); blk.next();) {
    const int64_t j = blk.j, je = blk.je;
    __m512 scaled = _mm512_mul_ps(lutv, _mm512_set1_ps(p.scale(blk.b)));
    __m512i tab = _mm512_cvtepu16_epi32((__m256i)(_mm512_cvtneps_pbh(scaled)));
    for (int64_t i = j; i < je; i += 16) {
      const __mmask16 mk = (je - i >= 16) ? static_cast<__mmask16>(0xffff)
                                           : static_cast<__mmask16>((1u << (je - i)) - 1u);
      __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, row + i));
      __m512i h = _mm512_permutexvar_epi32(_mm512_srli_epi32(v, 4), tab);
      __m512i l = _mm512_permutexvar_epi32(_mm512_and_si512(v, low4), tab);
      __m512i pairs = _mm512_or_si512(h, _mm512_slli_epi32(l, 16));
      _mm512_mask_storeu_epi32(dst + 2 * i, mk, pairs);
    }
  }
}

// bf16 tiles are 4 x 6: 24 accumulators + 6 weight vectors + 1 activation vector of the 32
// zmm registers, 10 loads per 24 vdpbf16ps (4 x 4: 8 per 16). On the 2-core EPYC (Zen 4),
// 4096x4096 at 32 tokens: 3.57-3.71 ms against 3.86-3.97 ms with 4 x 4.
constexpr int NT_BF16 = 6;

template <int MT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) inline void tile_bf16(
    const Problem& p, int64_t m0, int64_t n0, int nt, const uint16_t* w, int64_t Kp) {
  const int64_t K = p.K;
  const uint16_t* A = static_cast<const uint16_t*>(p.A);
  __m512 acc[MT][NT_BF16];
  for (int i = 0; i < MT; i++)
    for (int q = 0; q < NT_BF16; q++) acc[i][q] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i wv[NT_BF16];
    for (int q = 0; q < NT_BF16; q++) wv[q] = _mm512_loadu_si512(w + q * Kp + k);
    for (int i = 0; i < MT; i++) {
      __m512i xv = _mm512_loadu_si512(A + (m0 + i) * p.lda + k);
      for (int q = 0; q < NT_BF16; q++)
        acc[i][q] = _mm512_dpbf16_ps(acc[i][q], (__m512bh)(xv), (__m512bh)(wv[q]));
    }
  }
  if (k < K) {
    const __mmask32 mk = static_cast<__mmask32>((1ull << (K - k)) - 1ull);
    __m512i wv[NT_BF16];
    for (int q = 0; q < NT_BF16; q++) wv[q] = _mm512_maskz_loadu_epi16(mk, w + q * Kp + k);
    for (int i = 0; i < MT; i++) {
      __m512i xv = _mm512_maskz_loadu_epi16(mk, A + (m0 + i) * p.lda + k);
      for (int q = 0; q < NT_BF16; q++)
        acc[i][q] = _mm512_dpbf16_ps(acc[i][q], (__m512bh)(xv), (__m512bh)(wv[q]));
    }
  }
  for (int i = 0; i < MT; i++)
    for (int q = 0; q < nt; q++) finish(p, m0 + i, n0 + q, _mm512_reduce_add_ps(acc[i][q]));
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) void gemm_bf16_avx512(const Problem& p) {
  const int64_t N = p.N, K = p.K, M = p.M;
  const int64_t Kp = (K + 31) / 32 * 32;
  const int64_t tiles = (N + NT_BF16 - 1) / NT_BF16;
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<uint16_t> w(NT_BF16 * Kp, 0);
#pragma omp for schedule(dynamic, 2)
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t n0 = t * NT_BF16;
      const int nt = static_cast<int>(std::min<int64_t>(NT_BF16, N - n0));
      for (int q = 0; q < nt; q++) decode_row_bf16(p, n0 + q, w.data() + q * Kp);
      for (int q = nt; q < NT_BF16; q++) std::memset(w.data() + q * Kp, 0, Kp * sizeof(uint16_t));
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) tile_bf16<4>(p, m, n0, nt, w.data(), Kp);
      for (; m < M; m++) tile_bf16<1>(p, m, n0, nt, w.data(), Kp);
    }
  }
}

// The 16 scaled table values rounded through DT, as round_to<DT> does one at a time. fp16:
// vcvtps2ph (round to nearest even) and back, since the scalar conversions cost about 5 ms
// per 4096x4096 call. bf16 (this path runs for bf16 only on CPUs without AVX512-BF16) keeps
// the scalar loop.
template <int DT>
BNB_AVX512 inline __m512 round_table(__m512 v) {
  if constexpr (DT == BNB_F32) {
    return v;
  } else if constexpr (DT == BNB_F16) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    float tab[16];
    _mm512_storeu_ps(tab, v);
    for (int c = 0; c < 16; c++) tab[c] = round_to<DT>(tab[c]);
    return _mm512_loadu_ps(tab);
  }
}

// fp32 tiles: decode rows to fp32 (rounded through DT), x converted to fp32 once.
template <int DT>
BNB_AVX512 void decode_row_f32_avx512(const Problem& p, int64_t n, float* dst) {
  const int64_t K = p.K, H = K / 2, bs = p.blocksize;
  const uint8_t* row = p.W + n * H;
  const __m512i low4 = _mm512_set1_epi32(15);
  const __m512 lutv = _mm512_loadu_ps(p.lut);
  const __m512i evens = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i odds = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  int64_t j = 0;
  while (j < H) {
    const int64_t b = (n * K + 2 * j) / bs;
    const int64_t je = std::min(H, ((b + 1) * bs - n * K) / 2);
    const __m512 tab = round_table<DT>(_mm512_mul_ps(lutv, _mm512_set1_ps(p.scale(b))));
    for (int64_t i = j; i < je; i += 16) {
      const int64_t cnt = std::min<int64_t>(16, je - i);
      const __mmask16 mk = cnt == 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << cnt) - 1u);
      __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, row + i));
      __m512 h = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
      __m512 l = _mm512_permutexvar_ps(_mm512_and_si512(v, low4), tab);
      // interleave: h0 l0 h1 l1 ...
      __m512 lo = _mm512_permutex2var_ps(h, evens, l);
      __m512 hi = _mm512_permutex2var_ps(h, odds, l);
      const int64_t c2 = 2 * cnt;
      const __mmask16 m0 = c2 >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << c2) - 1u);
      const __mmask16 m1 = c2 >= 32 ? static_cast<__mmask16>(0xffff)
                                    : (c2 <= 16 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << (c2 - 16)) - 1u));
      _mm512_mask_storeu_ps(dst + 2 * i, m0, lo);
      _mm512_mask_storeu_ps(dst + 2 * i + 16, m1, hi);
    }
    j = je;
  }
}

template <int MT>
BNB_AVX512 inline void tile_f32(const Problem& p, const float* x, int64_t m0, int64_t n0, int nt, const float* w,
                                int64_t Kp) {
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; i++)
    for (int q = 0; q < NT; q++) acc[i][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < Kp; k += 16) {
    __m512 wv[NT];
    for (int q = 0; q < NT; q++) wv[q] = _mm512_loadu_ps(w + q * Kp + k);
    for (int i = 0; i < MT; i++) {
      __m512 xv = _mm512_loadu_ps(x + (m0 + i) * Kp + k);
      for (int q = 0; q < NT; q++) acc[i][q] = _mm512_fmadd_ps(xv, wv[q], acc[i][q]);
    }
  }
  for (int i = 0; i < MT; i++)
    for (int q = 0; q < nt; q++) finish(p, m0 + i, n0 + q, _mm512_reduce_add_ps(acc[i][q]));
}

template <int DT>
BNB_AVX512 void gemm_f32_avx512(const Problem& p) {
  const int64_t N = p.N, K = p.K, M = p.M;
  const int64_t Kp = (K + 15) / 16 * 16;
  std::vector<float> xf(M * Kp, 0.f);
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) xf[m * Kp + k] = bnb::load<DT>(p.A, m * p.lda + k);
  const int64_t tiles = (N + NT - 1) / NT;
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<float> w(NT * Kp, 0.f);
#pragma omp for schedule(dynamic, 2)
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t n0 = t * NT;
      const int nt = static_cast<int>(std::min<int64_t>(NT, N - n0));
      for (int q = 0; q < nt; q++) decode_row_f32_avx512<DT>(p, n0 + q, w.data() + q * Kp);
      for (int q = nt; q < NT; q++) std::memset(w.data() + q * Kp, 0, Kp * sizeof(float));
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) tile_f32<4>(p, xf.data(), m, n0, nt, w.data(), Kp);
      for (; m < M; m++) tile_f32<1>(p, xf.data(), m, n0, nt, w.data(), Kp);
    }
  }
}
#endif  // BNB_X86

}  // namespace

// Returns 0, or BNB_EINVAL / BNB_EDTYPE / BNB_EBLOCKSIZE.
// path: 0 = automatic, 1 = scalar, 2 = AVX2/baseline, 3 = AVX-512 (GEMV when M <= 2 else
// tiles). Paths the CPU lacks fall back to the next one available.
BNB_API int32_t bnb_gemm_4bit(const void* A, int32_t dtype, int64_t M, int64_t K, int64_t lda, const uint8_t* W,
                              int64_t N, const float* absmax, const uint8_t* absmax8, const float* code2, float offset,
                              int64_t nested_bs, const float* lut, int64_t blocksize, const void* bias, void* out,
                              int64_t ldo, int32_t threads, int32_t path) {
  if (!A || !W || !absmax || !lut || !out || M < 0 || N < 0 || K <= 0 || lda < K || ldo < N) return BNB_EINVAL;
  if (dtype != BNB_F32 && dtype != BNB_F16 && dtype != BNB_BF16) return BNB_EDTYPE;
  if (blocksize < 32 || (blocksize & (blocksize - 1)) != 0) return BNB_EBLOCKSIZE;
  if (absmax8 && (!code2 || nested_bs <= 0)) return BNB_EINVAL;
  if (M == 0 || N == 0) return BNB_OK;
  int shift = -1;
  for (int s = 0; s < 62; s++)
    if ((int64_t{1} << s) == nested_bs) shift = s;
  Problem p{A,         dtype, M,   K,   lda, W, N, Scales{absmax, absmax8, code2, offset, nested_bs, shift},
            lut,       blocksize, bias, out, ldo, threads > 0 ? threads : 1};
  if (K % 2 != 0 || path == 1) {
    gemm_scalar(p);
    return BNB_OK;
  }
#ifdef BNB_X86
  if ((path == 0 || path == 3) && bnb::has_avx512()) {
    if (M == 1) {
      gemv_avx512<1>(p);
    } else if (M == 2) {
      gemv_avx512<2>(p);
    } else if (dtype == BNB_BF16 && bnb::has_avx512bf16()) {
      gemm_bf16_avx512(p);
    } else if (dtype == BNB_F32) {
      gemm_f32_avx512<BNB_F32>(p);
    } else if (dtype == BNB_F16) {
      gemm_f32_avx512<BNB_F16>(p);
    } else {
      gemm_f32_avx512<BNB_BF16>(p);
    }
    return BNB_OK;
  }
  if ((path == 0 || path == 2 || path == 3) && bnb::has_avx2()) {
    gemm_avx2(p);
    return BNB_OK;
  }
#endif
  gemm_scalar(p);
  return BNB_OK;
}
