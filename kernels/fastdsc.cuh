// fastdsc.cuh - common definitions of the FastDSC-YOLO kernels.
//
// Every kernel source includes this header. It compiles three ways:
//   * nvcc / NVRTC for a GPU (CUDA 10.2 .. 13, sm_53 and newer): C++14, cuda_fp16.h;
//   * g++ for the CPU emulator: emu.h is force-included first and defines FASTDSC_EMU.
// Rules that keep the sources portable across that range (checked by scripts/compile_check.py
// with -std=c++14): no C++17, no cooperative groups, no warp-level primitives (the emulator
// runs a block's threads one after another between barriers), no __half operators (use the
// intrinsics below), no bf16, no async copies, no atomics on half.
//
// Tile sizes are defined here once; detector/engine/launch.py reads them from this file, so
// the launch configuration (grid, block, dynamic shared memory) always matches the kernels.
#ifndef FASTDSC_CUH
#define FASTDSC_CUH

#ifndef FASTDSC_EMU
#include <cuda_fp16.h>
#endif

// ---- tile sizes (parsed by detector/engine/launch.py: keep the "#define NAME int" form) ---
#define FDSC_GEMM_BM 64        // output rows (Cout) per block
#define FDSC_GEMM_BN 64        // output columns (H*W) per block
#define FDSC_GEMM_BK 16        // reduction (Cin) slice per shared-memory stage
#define FDSC_GEMM_TM 4         // rows per thread
#define FDSC_GEMM_TN 4         // columns per thread
#define FDSC_GEMM_THREADS 256  // (BM/TM) * (BN/TN)
#define FDSC_DW_TW 32          // depthwise output tile width  (= blockDim.x)
#define FDSC_DW_TH 8           // depthwise output tile height (= blockDim.y)
#define FDSC_EW_THREADS 256    // element-wise kernels: threads per block (1-D)

// ---- activation codes (detector/engine/launch.py ACT) ------------------------------------
#define FDSC_ACT_LINEAR 0
#define FDSC_ACT_LEAKY 1
#define FDSC_ACT_RELU 2

// ---- depthwise modes -----------------------------------------------------------------------
#define FDSC_DW_MULTIPLIER 0   // groups = Cin: output o = c*T + t reads input channel c
#define FDSC_DW_GROUPED_SUM 1  // groups = Cout: output o sums inputs o*T .. o*T+T-1

#define FDSC_LEAKY_SLOPE 0.1f

#ifdef FASTDSC_EMU
#define FDSC_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::emu::dynamic_shared())
#else
// One untyped extern array, cast per use: templates with typed extern __shared__ arrays clash.
#define FDSC_DYNAMIC_SHARED(type, name) \
    extern __shared__ float4 fdsc_dynamic_smem_[]; \
    type* name = reinterpret_cast<type*>(fdsc_dynamic_smem_)
#endif

__device__ __forceinline__ float fdsc_act(float v, int act) {
    if (act == FDSC_ACT_LEAKY) return v > 0.f ? v : FDSC_LEAKY_SLOPE * v;
    if (act == FDSC_ACT_RELU) return v > 0.f ? v : 0.f;
    return v;
}

__device__ __forceinline__ int fdsc_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int fdsc_max(int a, int b) { return a > b ? a : b; }

// Storage types: activations and weights are float (fp32 engine) or __half (fp16 engine).
// Loads of read-only data go through the read-only cache (__ldg); arithmetic is float unless
// a kernel says otherwise.
template <typename T> struct Store;

template <> struct Store<float> {
    static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
    static __device__ __forceinline__ float get(float v) { return v; }
    static __device__ __forceinline__ float put(float v) { return v; }
};

template <> struct Store<__half> {
    static __device__ __forceinline__ float load(const __half* p) {
        return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
    }
    static __device__ __forceinline__ float get(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half put(float v) { return __float2half_rn(v); }
};

#endif  // FASTDSC_CUH
