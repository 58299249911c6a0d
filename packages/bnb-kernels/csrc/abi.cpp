#include "common.h"

// Bump together with ABI_VERSION in bnb_kernels/_native.py whenever a signature changes.
BNB_API int32_t bnb_abi_version() { return 1; }

namespace bnb {
bool has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
#else
  return false;
#endif
}
bool has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
  return v;
#else
  return false;
#endif
}
bool has_avx512bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool v = has_avx512() && __builtin_cpu_supports("avx512bf16");
  return v;
#else
  return false;
#endif
}
}  // namespace bnb

// Bit 0: AVX2+FMA, 1: AVX-512F, 2: AVX-512BW/VL, 3: AVX-512 BF16.
BNB_API int32_t bnb_cpu_features() {
  int32_t bits = 0;
  if (bnb::has_avx2()) bits |= 1;
  if (bnb::has_avx512()) bits |= 2 | 4;
  if (bnb::has_avx512bf16()) bits |= 8;
  return bits;
}
