// Shared helpers for the native CPU kernels: dtype codes, half/bfloat16 conversion,
// run-time CPU feature checks. Every exported function has C linkage, returns 0 on
// success and a negative BNB_E* code for invalid arguments, and never throws.
#pragma once

#include <cstdint>
#include <cstring>

#define BNB_API extern "C" __attribute__((visibility("default")))

// Keep in sync with bnb_kernels/_native.py
enum BnbDtype : int32_t { BNB_F32 = 0, BNB_F16 = 1, BNB_BF16 = 2 };
enum BnbError : int32_t { BNB_OK = 0, BNB_EINVAL = -1, BNB_EDTYPE = -2, BNB_EBLOCKSIZE = -3 };

namespace bnb {

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (as torch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even with overflow to inf, as a float -> half cast does.
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {  // subnormal or zero in half
    float a;
    std::memcpy(&a, &absx, 4);
    // 2^-24 is the smallest half subnormal; adding a magic number rounds to it.
    float r = a + 0.5f;  // 0.5 = 2^-1 -> ulp 2^-24
    uint32_t rb;
    std::memcpy(&rb, &r, 4);
    return static_cast<uint16_t>(sign | (rb - 0x3f000000u));
  }
  uint32_t mant_odd = (absx >> 13) & 1u;
  absx += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round
  return static_cast<uint16_t>(sign | (absx >> 13));
}

template <int DT>
inline float load(const void* p, int64_t i) {
  if constexpr (DT == BNB_F32) return static_cast<const float*>(p)[i];
  else if constexpr (DT == BNB_F16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

template <int DT>
inline void store(void* p, int64_t i, float v) {
  if constexpr (DT == BNB_F32) static_cast<float*>(p)[i] = v;
  else if constexpr (DT == BNB_F16) static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
  else static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
}

bool has_avx2();
bool has_avx512();    // avx512f + avx512bw + avx512vl
bool has_avx512bf16();

}  // namespace bnb
