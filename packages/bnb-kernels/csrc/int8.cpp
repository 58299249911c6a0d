// LLM.int8() CPU kernels: row-wise int8 quantization with outlier columns, and the
// dequantization of an int32 matmul result (row scale x column scale x 1/127^2, + bias).
//
// Arithmetic matches the pure-torch reference bit for bit: scale = 127.0f * (1.0f / absmax)
// (two IEEE roundings), code = rint(x * scale) with ties to even, 0 for NaN, outliers (|x| >= threshold)
// and rows whose absmax is 0; dequantization computes float(acc) * (row * col) * C + bias in
// float32 as separate roundings (no fused multiply-add), then rounds once to the output dtype.
#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"

namespace {

constexpr float kMmDequant = 6.200124e-05f;

template <int DT>
float row_absmax_scalar(const void* A, int64_t off, int64_t cols, float threshold) {
  float m = 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    float a = std::fabs(bnb::load<DT>(A, off + j));
    if (a != a) continue;  // NaN never counts
    if (threshold > 0.0f && a >= threshold) continue;
    m = a > m ? a : m;
  }
  return m;
}

template <int DT>
void row_quant_scalar(const void* A, int64_t off, int64_t cols, float threshold, float scale, int8_t* out,
                      uint8_t* flags) {
  for (int64_t j = 0; j < cols; ++j) {
    float x = bnb::load<DT>(A, off + j);
    float a = std::fabs(x);
    bool outlier = threshold > 0.0f && a >= threshold;
    if (outlier && flags) flags[j] = 1;
    float q = x * scale;
    bool keep = (a == a) && !outlier && std::fabs(q) < 1.0e30f;
    out[j] = keep ? static_cast<int8_t>(std::nearbyint(q)) : 0;
  }
}

#if defined(__x86_64__)
template <int DT>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16_avx512(const void* A, int64_t i,
                                                                                   __mmask16 m) {
  if constexpr (DT == BNB_F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(A) + i);
  } else if constexpr (DT == BNB_F16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(A) + i);
    return _mm512_cvtph_ps(h);
  } else {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(A) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
__attribute__((target("avx512f,avx512bw,avx512vl"))) float row_absmax_avx512(const void* A, int64_t off,
                                                                              int64_t cols, float threshold) {
  __m512 vmax = _mm512_setzero_ps();
  const __m512 vt = _mm512_set1_ps(threshold);
  const bool has_t = threshold > 0.0f;
  for (int64_t j = 0; j < cols; j += 16) {
    int64_t n = cols - j < 16 ? cols - j : 16;
    __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    __m512 a = _mm512_abs_ps(load16_avx512<DT>(A, off + j, m));
    __mmask16 ok = _mm512_mask_cmp_ps_mask(m, a, a, _CMP_ORD_Q);
    if (has_t) ok = _mm512_mask_cmp_ps_mask(ok, a, vt, _CMP_LT_OQ);
    vmax = _mm512_mask_max_ps(vmax, ok, vmax, a);
  }
  return _mm512_reduce_max_ps(vmax);
}

template <int DT>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void row_quant_avx512(const void* A, int64_t off,
                                                                            int64_t cols, float threshold,
                                                                            float scale, int8_t* out,
                                                                            uint8_t* flags) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512 vt = _mm512_set1_ps(threshold);
  const __m512 big = _mm512_set1_ps(1.0e30f);
  const bool has_t = threshold > 0.0f;
  for (int64_t j = 0; j < cols; j += 16) {
    int64_t n = cols - j < 16 ? cols - j : 16;
    __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    __m512 x = load16_avx512<DT>(A, off + j, m);
    __m512 a = _mm512_abs_ps(x);
    __mmask16 keep = _mm512_mask_cmp_ps_mask(m, a, a, _CMP_ORD_Q);
    if (has_t) {
      __mmask16 outl = _mm512_mask_cmp_ps_mask(m, a, vt, _CMP_GE_OQ);
      if (outl && flags) {
        for (int k = 0; k < 16; ++k)
          if (outl & (1u << k)) flags[j + k] = 1;
      }
      keep &= static_cast<__mmask16>(~outl);
    }
    __m512 q = _mm512_mul_ps(x, vs);
    keep = _mm512_mask_cmp_ps_mask(keep, _mm512_abs_ps(q), big, _CMP_LT_OQ);
    __m512 r = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i qi = _mm512_maskz_cvtps_epi32(keep, r);
    _mm_mask_storeu_epi8(out + j, m, _mm512_cvtepi32_epi8(qi));
  }
}

template <int DT>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8_avx2(const void* A, int64_t i) {
  if constexpr (DT == BNB_F32) {
    return _mm256_loadu_ps(static_cast<const float*>(A) + i);
  } else if constexpr (DT == BNB_F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(A) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(A) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
__attribute__((target("avx2,fma,f16c"))) float row_absmax_avx2(const void* A, int64_t off, int64_t cols,
                                                                float threshold) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 vt = _mm256_set1_ps(threshold);
  const bool has_t = threshold > 0.0f;
  __m256 vmax = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    __m256 a = _mm256_andnot_ps(sign, load8_avx2<DT>(A, off + j));
    __m256 ok = _mm256_cmp_ps(a, a, _CMP_ORD_Q);
    if (has_t) ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, vt, _CMP_LT_OQ));
    vmax = _mm256_max_ps(vmax, _mm256_and_ps(ok, a));
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, vmax);
  float m = 0.0f;
  for (float v : tmp) m = v > m ? v : m;
  float tail = row_absmax_scalar<DT>(A, off + j, cols - j, threshold);
  return tail > m ? tail : m;
}

template <int DT>
__attribute__((target("avx2,fma,f16c"))) void row_quant_avx2(const void* A, int64_t off, int64_t cols,
                                                              float threshold, float scale, int8_t* out,
                                                              uint8_t* flags) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 vt = _mm256_set1_ps(threshold);
  const __m256 big = _mm256_set1_ps(1.0e30f);
  const bool has_t = threshold > 0.0f;
  int64_t j = 0;
  alignas(32) int32_t tmp[8];
  for (; j + 8 <= cols; j += 8) {
    __m256 x = load8_avx2<DT>(A, off + j);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 keep = _mm256_cmp_ps(a, a, _CMP_ORD_Q);
    if (has_t) {
      __m256 outl = _mm256_cmp_ps(a, vt, _CMP_GE_OQ);
      int bits = _mm256_movemask_ps(outl);
      if (bits && flags) {
        for (int k = 0; k < 8; ++k)
          if (bits & (1 << k)) flags[j + k] = 1;
      }
      keep = _mm256_andnot_ps(outl, keep);
    }
    __m256 q = _mm256_mul_ps(x, vs);
    keep = _mm256_and_ps(keep, _mm256_cmp_ps(_mm256_andnot_ps(sign, q), big, _CMP_LT_OQ));
    __m256 r = _mm256_and_ps(keep, _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), _mm256_cvtps_epi32(r));
    for (int k = 0; k < 8; ++k) out[j + k] = static_cast<int8_t>(tmp[k]);
  }
  row_quant_scalar<DT>(A, off + j, cols - j, threshold, scale, out + j, flags ? flags + j : nullptr);
}
#endif

enum class Isa { scalar, avx2, avx512 };

Isa pick_isa() {
#if defined(__x86_64__)
  if (bnb::has_avx512()) return Isa::avx512;
  if (bnb::has_avx2() && __builtin_cpu_supports("f16c")) return Isa::avx2;
#endif
  return Isa::scalar;
}

template <int DT>
int32_t row_quant_impl(const void* A, int64_t rows, int64_t cols, int64_t lda, float threshold, int8_t* codes,
                       float* row_stats, uint8_t* col_flags, int32_t num_threads) {
  const Isa isa = pick_isa();
  const bool has_t = threshold > 0.0f && col_flags != nullptr;
  int nt = num_threads > 0 ? num_threads : 1;
  if (rows < nt) nt = static_cast<int>(rows > 0 ? rows : 1);
  std::vector<uint8_t> local(has_t ? static_cast<size_t>(nt) * cols : 0, 0);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int t = 0; t < nt; ++t) {
    uint8_t* flags = has_t ? local.data() + static_cast<size_t>(t) * cols : nullptr;
    int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off = r * lda;
      int8_t* out = codes + r * cols;
      float m;
#if defined(__x86_64__)
      if (isa == Isa::avx512)
        m = row_absmax_avx512<DT>(A, off, cols, threshold);
      else if (isa == Isa::avx2)
        m = row_absmax_avx2<DT>(A, off, cols, threshold);
      else
#endif
        m = row_absmax_scalar<DT>(A, off, cols, threshold);
      row_stats[r] = m;
      float inv = 1.0f / m;  // 127 * (1 / absmax): two roundings, as the release computes it
      float scale = inv * 127.0f;
#if defined(__x86_64__)
      if (isa == Isa::avx512)
        row_quant_avx512<DT>(A, off, cols, threshold, scale, out, flags);
      else if (isa == Isa::avx2)
        row_quant_avx2<DT>(A, off, cols, threshold, scale, out, flags);
      else
#endif
        row_quant_scalar<DT>(A, off, cols, threshold, scale, out, flags);
    }
  }
  if (has_t) {
    for (int64_t j = 0; j < cols; ++j) {
      uint8_t f = 0;
      for (int t = 0; t < nt; ++t) f |= local[static_cast<size_t>(t) * cols + j];
      col_flags[j] = f;
    }
  }
  return BNB_OK;
}

template <int OUT>
void store_row(void* out, int64_t off, const float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) bnb::store<OUT>(out, off + j, v[j]);
}

template <int BIAS>
float bias_at(const void* bias, int64_t j) {
  return bnb::load<BIAS>(bias, j);
}

}  // namespace

// codes[rows, cols] = row-wise int8 codes of A (row stride lda, in elements); row_stats[rows]
// = absmax of the non-outlier values. With threshold > 0 and col_flags != NULL, col_flags[j]
// is set to 1 for each column holding an outlier (|x| >= threshold); the outlier elements get
// code 0 (clearing whole columns is left to the caller, who knows whether it wants that).
BNB_API int32_t bnb_int8_row_quant(const void* A, int32_t dtype, int64_t rows, int64_t cols, int64_t lda,
                                   float threshold, int8_t* codes, float* row_stats, uint8_t* col_flags,
                                   int32_t num_threads) {
  if (rows < 0 || cols < 0 || lda < cols || !(threshold >= 0.0f)) return BNB_EINVAL;
  if (rows == 0) return BNB_OK;
  if (A == nullptr || codes == nullptr || row_stats == nullptr) return BNB_EINVAL;
  switch (dtype) {
    case BNB_F32:
      return row_quant_impl<BNB_F32>(A, rows, cols, lda, threshold, codes, row_stats, col_flags, num_threads);
    case BNB_F16:
      return row_quant_impl<BNB_F16>(A, rows, cols, lda, threshold, codes, row_stats, col_flags, num_threads);
    case BNB_BF16:
      return row_quant_impl<BNB_BF16>(A, rows, cols, lda, threshold, codes, row_stats, col_flags, num_threads);
    default:
      return BNB_EDTYPE;
  }
}

// Set codes[:, j] = 0 for every j with col_flags[j] != 0.
BNB_API int32_t bnb_int8_clear_columns(int8_t* codes, int64_t rows, int64_t cols, const uint8_t* col_flags,
                                       int32_t num_threads) {
  if (rows < 0 || cols < 0 || (rows && cols && (codes == nullptr || col_flags == nullptr))) return BNB_EINVAL;
  std::vector<int64_t> idx;
  for (int64_t j = 0; j < cols; ++j)
    if (col_flags[j]) idx.push_back(j);
  if (idx.empty()) return BNB_OK;
  int nt = num_threads > 0 ? num_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    int8_t* row = codes + r * cols;
    for (int64_t j : idx) row[j] = 0;
  }
  return BNB_OK;
}

// out[rows, cols] (dtype out_dtype) = float(A) * (row_stats[r] * col_stats[c]) * (1/127^2)
// (+ bias[c], bias of dtype bias_dtype, or NULL).
BNB_API int32_t bnb_int8_mm_dequant(const int32_t* A, int64_t rows, int64_t cols, const float* row_stats,
                                    const float* col_stats, const void* bias, int32_t bias_dtype, void* out,
                                    int32_t out_dtype, int32_t num_threads) {
  if (rows < 0 || cols < 0) return BNB_EINVAL;
  if (rows == 0 || cols == 0) return BNB_OK;
  if (A == nullptr || row_stats == nullptr || col_stats == nullptr || out == nullptr) return BNB_EINVAL;
  if (out_dtype < BNB_F32 || out_dtype > BNB_BF16) return BNB_EDTYPE;
  if (bias != nullptr && (bias_dtype < BNB_F32 || bias_dtype > BNB_BF16)) return BNB_EDTYPE;
  int nt = num_threads > 0 ? num_threads : 1;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> bias_f(bias ? cols : 0);
    if (bias) {
      for (int64_t j = 0; j < cols; ++j) {
        bias_f[j] = bias_dtype == BNB_F32   ? bias_at<BNB_F32>(bias, j)
                    : bias_dtype == BNB_F16 ? bias_at<BNB_F16>(bias, j)
                                            : bias_at<BNB_BF16>(bias, j);
      }
    }
    std::vector<float> tmp(cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t* a = A + r * cols;
      const float rs = row_stats[r];
      for (int64_t j = 0; j < cols; ++j) {
        float rc = rs * col_stats[j];
        float v = static_cast<float>(a[j]) * rc;
        v = v * kMmDequant;
        if (bias) v = v + bias_f[j];
        tmp[j] = v;
      }
      if (out_dtype == BNB_F32)
        store_row<BNB_F32>(out, r * cols, tmp.data(), cols);
      else if (out_dtype == BNB_F16)
        store_row<BNB_F16>(out, r * cols, tmp.data(), cols);
      else
        store_row<BNB_BF16>(out, r * cols, tmp.data(), cols);
    }
  }
  return BNB_OK;
}
