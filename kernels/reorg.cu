// reorg.cu - darknet's reorg layer, bit-exact with its memory layout (not space-to-depth).
// Darknet reads the C x H x W input as (C/s^2) x (H*s) x (W*s) and writes
//     out[((dy*s + dx)*C2 + c2)*H*W + y*W + x] = in[c2*(H*s)*(W*s) + (y*s + dy)*(W*s) + x*s + dx]
// with C2 = C/s^2, (y, x) in [0, H) x [0, W); the result is read as (C*s^2) x (H/s) x (W/s).
// One thread per element; grid: ceil(C*H*W / 256).
#include "fastdsc.cuh"

template <typename T>
__device__ __forceinline__ void reorg_body(const T* __restrict__ X, T* __restrict__ Y, int C, int H,
                                           int W, int s) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t hw = (size_t)H * W;
    if (idx >= (size_t)C * hw) return;
    const int c2n = C / (s * s);
    const int x = (int)(idx % W), y = (int)((idx / W) % H);
    const int q = (int)(idx / hw);                   // (dy*s + dx)*C2 + c2
    const int c2 = q % c2n, d = q / c2n, dx = d % s, dy = d / s;
    Y[idx] = X[(size_t)c2 * hw * s * s + (size_t)(y * s + dy) * W * s + (size_t)x * s + dx];
}

#define FDSC_REORG(name, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                              \
    name(const T* __restrict__ X, T* __restrict__ Y, int C, int H, int W, int s) {              \
        reorg_body<T>(X, Y, C, H, W, s);                                                       \
    }

FDSC_REORG(reorg_f32, float)
FDSC_REORG(reorg_f16, __half)
