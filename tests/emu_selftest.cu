// Kernels that test the CPU emulator itself (tests/test_kernels_emu.py), built with the
// engine's emu runtime. Not part of the engine.
#include "fastdsc.cuh"

// Static shared memory + one barrier: each block reverses its slice.
extern "C" __global__ void st_reverse(const float* x, float* y, int n) {
    __shared__ float buf[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    if (i < n) y[i] = buf[blockDim.x - 1 - threadIdx.x];
}

// Dynamic shared memory + many barriers: inclusive prefix sum per block (Hillis-Steele).
extern "C" __global__ void st_scan(const float* x, float* y, int n) {
    FDSC_DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : 0.f;
    __syncthreads();
    for (int d = 1; d < (int)blockDim.x; d *= 2) {
        const float v = t >= d ? s[t - d] : 0.f;
        __syncthreads();
        s[t] += v;
        __syncthreads();
    }
    if (i < n) y[i] = s[t];
}

// Odd threads wait at a barrier the even ones never reach: undefined on a GPU.
extern "C" __global__ void st_divergent(float* y) {
    if (threadIdx.x % 2) __syncthreads();
    y[threadIdx.x] = 1.f;
}

// Writes s[threadIdx.x + k] into dynamic shared memory: out of bounds when k > 0.
extern "C" __global__ void st_shared_oob(float* y, int k) {
    FDSC_DYNAMIC_SHARED(float, s);
    s[threadIdx.x + k] = 1.f;
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x];
}

// Every thread of a 3-D grid of 3-D blocks writes its linear index.
extern "C" __global__ void st_index(int* out) {
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const int i = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
    out[i] = i;
}

// float -> half -> float, and one half2 FMA.
extern "C" __global__ void st_half(const float* x, float* y, float* fma, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __half h = __float2half_rn(x[i]);
    y[i] = __half2float(h);
    const __half2 a = __halves2half2(h, h);
    const __half2 r = __hfma2(a, __float2half2_rn(0.5f), __float2half2_rn(1.f));
    fma[i] = __low2float(r) + __high2float(r);
}
