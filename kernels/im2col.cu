// im2col.cu - unfolds the input of a regular KxK convolution into the matrix
// col[(ci*k + ky)*k + kx, y*Wo + x] = X[ci, y*s - p + ky, x*s - p + kx] (0 outside), so the
// convolution becomes the pointwise GEMM W[Cout, Cin*k*k] @ col (gemm.cu): the first layer and
// every layer left unconverted. One thread per col element; grid: ceil(Cin*k*k*Ho*Wo / 256).
#include "fastdsc.cuh"

template <typename T>
__device__ __forceinline__ void im2col_body(const T* __restrict__ X, T* __restrict__ col, int Cin,
                                            int H, int W, int Ho, int Wo, int k, int stride, int pad) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t hw = (size_t)Ho * Wo;
    if (idx >= (size_t)Cin * k * k * hw) return;
    const int x = (int)(idx % Wo), y = (int)((idx / Wo) % Ho);
    const int row = (int)(idx / hw);                 // (ci*k + ky)*k + kx
    const int kx = row % k, ky = (row / k) % k, ci = row / (k * k);
    const int iy = y * stride - pad + ky, ix = x * stride - pad + kx;
    T v = Store<T>::put(0.f);
    if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = X[((size_t)ci * H + iy) * W + ix];
    col[idx] = v;
}

#define FDSC_IM2COL(name, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                              \
    name(const T* __restrict__ X, T* __restrict__ col, int Cin, int H, int W, int Ho, int Wo,  \
         int k, int stride, int pad) {                                                         \
        im2col_body<T>(X, col, Cin, H, W, Ho, Wo, k, stride, pad);                             \
    }

FDSC_IM2COL(im2col_f32, float)
FDSC_IM2COL(im2col_f16, __half)
