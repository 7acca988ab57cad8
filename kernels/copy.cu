// copy.cu - element copies: concat (a source copied into its channel slice of the destination;
// the engine passes the offset destination pointer), gather (destination channel j is source
// channel channels[j]: a variable channel multiplier in front of a depthwise conv) and the
// fp32 <-> fp16 conversions at the edges of an fp16 engine. One thread per destination
// element; grid: ceil(n / 256).
#include "fastdsc.cuh"

template <typename A, typename B>
__device__ __forceinline__ void convert_body(const A* __restrict__ src, B* __restrict__ dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = Store<B>::put(Store<A>::load(src + i));
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
copy_f32(const float* __restrict__ src, float* __restrict__ dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = src[i];
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
copy_f16(const __half* __restrict__ src, __half* __restrict__ dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = src[i];
}

// dst[i] = src[channels[i / hw] * hw + i % hw], n = len(channels) * hw; every index is in
// [0, source channels), checked by the engine (kernel_engine._check_plan_ops).
template <typename T>
__device__ __forceinline__ void gather_body(const T* __restrict__ src, T* __restrict__ dst,
                                            const int* __restrict__ channels, int hw, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int j = i / hw;
    dst[i] = src[(size_t)__ldg(channels + j) * hw + (i - j * hw)];
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
gather_f32(const float* __restrict__ src, float* __restrict__ dst, const int* __restrict__ channels,
           int hw, int n) {
    gather_body<float>(src, dst, channels, hw, n);
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
gather_f16(const __half* __restrict__ src, __half* __restrict__ dst,
           const int* __restrict__ channels, int hw, int n) {
    gather_body<__half>(src, dst, channels, hw, n);
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
f32_to_f16(const float* __restrict__ src, __half* __restrict__ dst, int n) {
    convert_body<float, __half>(src, dst, n);
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
f16_to_f32(const __half* __restrict__ src, float* __restrict__ dst, int n) {
    convert_body<__half, float>(src, dst, n);
}
