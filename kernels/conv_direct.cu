// conv_direct.cu - direct convolution for any kernel size, stride, padding and groups, with
// bias and activation fused. The engine uses it where no specialised kernel applies: grouped
// convolutions other than depthwise/grouped-sum, and depthwise layers that are not 3x3 with
// stride 1 or 2. One thread per output element (co, y, x); grid: ceil(Cout*Ho*Wo / 256).
#include "fastdsc.cuh"

template <typename T>
__device__ __forceinline__ void conv_direct_body(const T* __restrict__ X, const T* __restrict__ Wt,
                                                 const T* __restrict__ bias, T* __restrict__ Y,
                                                 int Cin, int H, int W, int Cout, int Ho, int Wo,
                                                 int k, int stride, int pad, int groups, int act) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t total = (size_t)Cout * Ho * Wo;
    if (idx >= total) return;
    const int x = (int)(idx % Wo), y = (int)((idx / Wo) % Ho), co = (int)(idx / ((size_t)Wo * Ho));
    const int cin_g = Cin / groups, cout_g = Cout / groups;
    const int ci0 = (co / cout_g) * cin_g;
    const T* w = Wt + (size_t)co * cin_g * k * k;
    float s = Store<T>::load(bias + co);
    for (int ci = 0; ci < cin_g; ++ci) {
        const T* xc = X + (size_t)(ci0 + ci) * H * W;
        for (int ky = 0; ky < k; ++ky) {
            const int iy = y * stride - pad + ky;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < k; ++kx) {
                const int ix = x * stride - pad + kx;
                if (ix < 0 || ix >= W) continue;
                s = fmaf(Store<T>::load(xc + (size_t)iy * W + ix), Store<T>::load(w + (ci * k + ky) * k + kx), s);
            }
        }
    }
    Y[idx] = Store<T>::put(fdsc_act(s, act));
}

#define FDSC_CONV_DIRECT(name, T)                                                               \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                              \
    name(const T* __restrict__ X, const T* __restrict__ Wt, const T* __restrict__ bias,        \
         T* __restrict__ Y, int Cin, int H, int W, int Cout, int Ho, int Wo, int k,            \
         int stride, int pad, int groups, int act) {                                           \
        conv_direct_body<T>(X, Wt, bias, Y, Cin, H, W, Cout, Ho, Wo, k, stride, pad, groups, act); \
    }

FDSC_CONV_DIRECT(conv_direct_f32, float)
FDSC_CONV_DIRECT(conv_direct_f16, __half)
