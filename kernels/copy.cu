// copy.cu - element copies: concat (a source copied into its channel slice of the destination;
// the engine passes the offset destination pointer) and the fp32 <-> fp16 conversions at the
// edges of an fp16 engine. One thread per element; grid: ceil(n / 256).
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

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
f32_to_f16(const float* __restrict__ src, __half* __restrict__ dst, int n) {
    convert_body<float, __half>(src, dst, n);
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
f16_to_f32(const __half* __restrict__ src, float* __restrict__ dst, int n) {
    convert_body<__half, float>(src, dst, n);
}
