// maxpool.cu - darknet's maxpool: out[y, x] = max over the size x size window starting at
// (y*stride - pad_before, x*stride - pad_before), positions outside the input ignored (as if
// -inf), so size 2 stride 1 keeps the size and looks right/down. One thread per output
// element; grid: ceil(C*Ho*Wo / 256).
#include "fastdsc.cuh"

template <typename T>
__device__ __forceinline__ void maxpool_body(const T* __restrict__ X, T* __restrict__ Y, int C, int H,
                                             int W, int Ho, int Wo, int size, int stride, int pad) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)C * Ho * Wo) return;
    const int x = (int)(idx % Wo), y = (int)((idx / Wo) % Ho), c = (int)(idx / ((size_t)Wo * Ho));
    const T* xc = X + (size_t)c * H * W;
    const int y0 = y * stride - pad, x0 = x * stride - pad;
    const int ya = fdsc_max(y0, 0), yb = fdsc_min(y0 + size, H);
    const int xa = fdsc_max(x0, 0), xb = fdsc_min(x0 + size, W);
    float m = -3.402823466e38f;   // every window holds at least one input pixel
    for (int iy = ya; iy < yb; ++iy)
        for (int ix = xa; ix < xb; ++ix) m = fmaxf(m, Store<T>::load(xc + (size_t)iy * W + ix));
    Y[idx] = Store<T>::put(m);
}

#define FDSC_MAXPOOL(name, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                              \
    name(const T* __restrict__ X, T* __restrict__ Y, int C, int H, int W, int Ho, int Wo,      \
         int size, int stride, int pad) {                                                      \
        maxpool_body<T>(X, Y, C, H, W, Ho, Wo, size, stride, pad);                             \
    }

FDSC_MAXPOOL(maxpool_f32, float)
FDSC_MAXPOOL(maxpool_f16, __half)
