// depthwise.cu - FastDSC's depthwise 3x3 convolution (padding 1, stride 1 or 2) with the
// folded-BN bias and the activation fused.
//
// Two channel mappings (FDSC_DW_* in fastdsc.cuh), T = channel multiplier:
//   multiplier  (groups = Cin, Cout = Cin*T):  Y[c*T+t] = act(X[c] (*) W[c*T+t] + b[c*T+t])
//               one block per input channel c: its tile is loaded once and used T times;
//   grouped_sum (groups = Cout, Cin = Cout*T): Y[o] = act(sum_t X[o*T+t] (*) W[o][t] + b[o])
//               one block per output channel o (Network Decoupling's PW->DW order).
// Block: FDSC_DW_TW x FDSC_DW_TH threads, one output pixel each; the input tile with its halo,
// ((TH-1)*S+3) x ((TW-1)*S+3) floats, is staged in dynamic shared memory (size computed by
// detector/engine/launch.py) with zeros for the padding. Grid: (ceil(Wo/TW), ceil(Ho/TH),
// channels). Arithmetic is fp32 for both storage types: the kernel is bandwidth-bound, and
// fp16 storage already halves its bytes.
#include "fastdsc.cuh"

template <typename T, int S>
__device__ __forceinline__ void dw3x3_load_tile(const T* __restrict__ Xc, float* tile, int H, int W,
                                                int y0, int x0) {
    const int th = (FDSC_DW_TH - 1) * S + 3, tw = (FDSC_DW_TW - 1) * S + 3;
    const int tid = threadIdx.y * FDSC_DW_TW + threadIdx.x;
    for (int i = tid; i < th * tw; i += FDSC_DW_TW * FDSC_DW_TH) {
        const int r = i / tw, c = i % tw;
        const int y = y0 + r, x = x0 + c;
        tile[i] = (y >= 0 && y < H && x >= 0 && x < W) ? Store<T>::load(Xc + (size_t)y * W + x) : 0.f;
    }
}

template <int S>
__device__ __forceinline__ float dw3x3_dot(const float* tile, const float* w) {
    const int tw = (FDSC_DW_TW - 1) * S + 3;
    const float* p = tile + (threadIdx.y * S) * tw + threadIdx.x * S;
    float s = 0.f;
#pragma unroll
    for (int ky = 0; ky < 3; ++ky)
#pragma unroll
        for (int kx = 0; kx < 3; ++kx) s = fmaf(p[ky * tw + kx], w[ky * 3 + kx], s);
    return s;
}

template <typename T, int S>
__device__ __forceinline__ void dw3x3_body(const T* __restrict__ X, const T* __restrict__ Wt,
                                           const T* __restrict__ bias, T* __restrict__ Y,
                                           int H, int W, int Ho, int Wo, int mult, int mode, int act) {
    FDSC_DYNAMIC_SHARED(float, tile);
    const int ox = blockIdx.x * FDSC_DW_TW + threadIdx.x;
    const int oy = blockIdx.y * FDSC_DW_TH + threadIdx.y;
    const bool inside = ox < Wo && oy < Ho;
    const int y0 = blockIdx.y * FDSC_DW_TH * S - 1, x0 = blockIdx.x * FDSC_DW_TW * S - 1;
    const size_t plane_in = (size_t)H * W, plane_out = (size_t)Ho * Wo;
    float w[9];
    if (mode == FDSC_DW_MULTIPLIER) {
        const int c = blockIdx.z;
        dw3x3_load_tile<T, S>(X + c * plane_in, tile, H, W, y0, x0);
        __syncthreads();
        for (int t = 0; t < mult; ++t) {
            const int o = c * mult + t;
            for (int k = 0; k < 9; ++k) w[k] = Store<T>::load(Wt + (size_t)o * 9 + k);
            if (inside) {
                const float v = dw3x3_dot<S>(tile, w) + Store<T>::load(bias + o);
                Y[o * plane_out + (size_t)oy * Wo + ox] = Store<T>::put(fdsc_act(v, act));
            }
        }
    } else {
        const int o = blockIdx.z;
        float s = 0.f;
        for (int t = 0; t < mult; ++t) {
            const int c = o * mult + t;
            if (t) __syncthreads();   // everyone is done with the previous channel's tile
            dw3x3_load_tile<T, S>(X + c * plane_in, tile, H, W, y0, x0);
            __syncthreads();
            for (int k = 0; k < 9; ++k) w[k] = Store<T>::load(Wt + (size_t)c * 9 + k);
            s += dw3x3_dot<S>(tile, w);
        }
        if (inside) {
            const float v = s + Store<T>::load(bias + o);
            Y[o * plane_out + (size_t)oy * Wo + ox] = Store<T>::put(fdsc_act(v, act));
        }
    }
}

#define FDSC_DW3X3(name, T, S)                                                                  \
    extern "C" __global__ void __launch_bounds__(FDSC_DW_TW * FDSC_DW_TH)                      \
    name(const T* __restrict__ X, const T* __restrict__ Wt, const T* __restrict__ bias,        \
         T* __restrict__ Y, int H, int W, int Ho, int Wo, int mult, int mode, int act) {       \
        dw3x3_body<T, S>(X, Wt, bias, Y, H, W, Ho, Wo, mult, mode, act);                       \
    }

FDSC_DW3X3(dw3x3_s1_f32, float, 1)
FDSC_DW3X3(dw3x3_s2_f32, float, 2)
FDSC_DW3X3(dw3x3_s1_f16, __half, 1)
FDSC_DW3X3(dw3x3_s2_f16, __half, 2)
