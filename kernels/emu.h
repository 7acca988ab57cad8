// emu.h - the CUDA device-side API the FastDSC kernels use, emulated on the CPU (g++ -std=c++17).
//
// Force-included (g++ -include emu.h) before the very same .cu sources the GPU runs; the
// runtime that launches grids is emu_runtime.h. What it provides, and how:
//   * threadIdx / blockIdx / blockDim / gridDim: per-OS-thread variables the runtime sets
//     before it runs each emulated thread;
//   * __syncthreads(): a real barrier among the threads of one block (each emulated thread is
//     a fiber; a barrier switches to the next fiber; a block whose threads do not all reach the
//     same barrier is reported as an error, as is __syncthreads in a kernel launched without
//     barrier support);
//   * __shared__: `static thread_local`: a block runs entirely on one OS thread, so each block
//     sees its own copy (bounds-checked by -fsanitize=bounds in sanitizer builds);
//   * dynamic shared memory (FDSC_DYNAMIC_SHARED): a heap block of exactly the launch's size,
//     filled with 0xff bytes (NaN) before every block, so an out-of-bounds access trips
//     AddressSanitizer and reading what no thread wrote shows up as NaN;
//   * __ldg, fmaf/expf/..., __half / __half2 with the cuda_fp16 intrinsics the kernels use
//     (round-to-nearest-even conversions, arithmetic in higher precision then rounded once).
#ifndef FASTDSC_EMU_H
#define FASTDSC_EMU_H

#define FASTDSC_EMU 1

#include <math.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Per-OS-thread emulator state. (Not initial-exec TLS: a dlopen'ed library rarely finds room
// in the static TLS block once torch or numpy are loaded.)
#define FDSC_EMU_TLS thread_local

namespace emu {
extern FDSC_EMU_TLS dim3 tl_thread_idx, tl_block_idx, tl_block_dim, tl_grid_dim;
extern FDSC_EMU_TLS unsigned char* tl_dynamic_shared;
void syncthreads();
inline void* dynamic_shared() { return tl_dynamic_shared; }
}  // namespace emu

#define threadIdx (::emu::tl_thread_idx)
#define blockIdx (::emu::tl_block_idx)
#define blockDim (::emu::tl_block_dim)
#define gridDim (::emu::tl_grid_dim)
#define __syncthreads() ::emu::syncthreads()

template <typename T>
inline T __ldg(const T* p) { return *p; }

// IEEE single-precision operations rounded once each (what the kernels use where the result
// must not depend on the compiler fusing a multiply and an add)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

// ---- half precision --------------------------------------------------------------------
struct __half {
    uint16_t bits;
};
struct __half2 {
    __half x, y;
};

namespace emu {
inline float half_bits_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                                   // subnormal: normalise
            int e = -1;
            uint32_t m = man;
            do { m <<= 1; ++e; } while (!(m & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even from double, so that float and double sources round only once.
inline uint16_t double_to_half_bits(double d) {
    const uint16_t sign = std::signbit(d) ? 0x8000u : 0u;
    if (std::isnan(d)) return (uint16_t)(sign | 0x7e00u);
    double a = std::fabs(d);
    if (a >= 65520.0) return (uint16_t)(sign | 0x7c00u);          // rounds to infinity
    if (a < 6.103515625e-05) {                                     // subnormal (2^-14)
        const double q = std::nearbyint(a * 16777216.0);           // units of 2^-24, ties even
        return (uint16_t)(sign | (uint16_t)q);
    }
    int e;
    const double m = std::frexp(a, &e);                            // a = m * 2^e, m in [0.5, 1)
    double q = std::nearbyint(m * 2048.0);                         // 11 significant bits
    if (q >= 2048.0) { q /= 2.0; ++e; }
    const int exp = e - 1 + 15;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    return (uint16_t)(sign | (uint16_t)(exp << 10) | (uint16_t)((uint32_t)q & 0x3ffu));
}
inline __half make_half(double d) { __half h; h.bits = double_to_half_bits(d); return h; }
}  // namespace emu

inline float __half2float(__half h) { return emu::half_bits_to_float(h.bits); }
inline __half __float2half_rn(float f) { return emu::make_half(f); }
inline __half __float2half(float f) { return emu::make_half(f); }
inline __half __ushort_as_half(unsigned short u) { __half h; h.bits = u; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline __half2 __halves2half2(__half a, __half b) { __half2 r; r.x = a; r.y = b; return r; }
inline __half2 __half2half2(__half a) { return __halves2half2(a, a); }
inline __half2 __float2half2_rn(float f) { return __half2half2(__float2half_rn(f)); }
inline __half2 __floats2half2_rn(float a, float b) { return __halves2half2(__float2half_rn(a), __float2half_rn(b)); }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half __hfma(__half a, __half b, __half c) {
    return emu::make_half((double)__half2float(a) * __half2float(b) + __half2float(c));
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return __halves2half2(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
inline __half __hadd(__half a, __half b) { return emu::make_half((double)__half2float(a) + __half2float(b)); }
inline __half __hmul(__half a, __half b) { return emu::make_half((double)__half2float(a) * __half2float(b)); }
inline __half2 __hadd2(__half2 a, __half2 b) { return __halves2half2(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
inline __half2 __hmul2(__half2 a, __half2 b) { return __halves2half2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }

#endif  // FASTDSC_EMU_H
