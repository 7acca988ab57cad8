// gemm.cu - FastDSC's pointwise convolution as one GEMM, with the folded-BN bias and the
// activation fused into the epilogue:
//
//     Y[M, N] = act(W[M, K] @ X[K, N] + bias[M])      M = Cout, K = Cin, N = H*W
//
// All three matrices are row-major and dense (an NCHW activation is a [C, H*W] matrix).
// Block: FDSC_GEMM_THREADS threads computing a BM x BN tile of Y; each thread owns TM x TN
// outputs at rows ty + i*(BM/TM) and columns tx + j*(BN/TN), so a warp's stores and its
// shared-memory reads are contiguous. K is walked in BK slices staged through shared memory;
// every global load is bounds-checked (zero fill), so M, N and K need not be multiples of
// the tile sizes. Grid: (ceil(N/BN), ceil(M/BM)).
//
// fp16: W and X are __half; the inner product runs in half2 FMAs (two outputs per
// instruction, the TX2's double fp16 rate) over one BK slice, and each slice's partial sums
// are added into fp32 accumulators, so at most BK terms are ever summed in half precision.
#include "fastdsc.cuh"

#define FDSC_GEMM_RX (FDSC_GEMM_BN / FDSC_GEMM_TN)   // threads along N (16)
#define FDSC_GEMM_RY (FDSC_GEMM_BM / FDSC_GEMM_TM)   // threads along M (16)

template <typename T, typename S>
__device__ __forceinline__ void gemm_stage(const T* __restrict__ W, const T* __restrict__ X,
                                           S (*As)[FDSC_GEMM_BM + 1], S (*Bs)[FDSC_GEMM_BN],
                                           int M, int N, int K, int m0, int n0, int k0) {
    const int tid = threadIdx.x;
    // W tile, transposed into As[k][m]: consecutive threads read consecutive k of one row.
    for (int i = tid; i < FDSC_GEMM_BM * FDSC_GEMM_BK; i += FDSC_GEMM_THREADS) {
        const int m = i / FDSC_GEMM_BK, k = i % FDSC_GEMM_BK;
        const int gm = m0 + m, gk = k0 + k;
        float v = 0.f;
        if (gm < M && gk < K) v = Store<T>::load(W + (size_t)gm * K + gk);
        As[k][m] = Store<S>::put(v);
    }
    // X tile, Bs[k][n]: consecutive threads read consecutive n of one row.
    for (int i = tid; i < FDSC_GEMM_BK * FDSC_GEMM_BN; i += FDSC_GEMM_THREADS) {
        const int k = i / FDSC_GEMM_BN, n = i % FDSC_GEMM_BN;
        const int gk = k0 + k, gn = n0 + n;
        float v = 0.f;
        if (gk < K && gn < N) v = Store<T>::load(X + (size_t)gk * N + gn);
        Bs[k][n] = Store<S>::put(v);
    }
}

template <typename T>
__device__ __forceinline__ void gemm_epilogue(float (*acc)[FDSC_GEMM_TN], const T* __restrict__ bias,
                                              T* __restrict__ Y, int M, int N, int m0, int n0, int act) {
    const int tx = threadIdx.x % FDSC_GEMM_RX, ty = threadIdx.x / FDSC_GEMM_RX;
    for (int i = 0; i < FDSC_GEMM_TM; ++i) {
        const int gm = m0 + ty + i * FDSC_GEMM_RY;
        if (gm >= M) continue;
        const float b = Store<T>::load(bias + gm);
        for (int j = 0; j < FDSC_GEMM_TN; ++j) {
            const int gn = n0 + tx + j * FDSC_GEMM_RX;
            if (gn < N) Y[(size_t)gm * N + gn] = Store<T>::put(fdsc_act(acc[i][j] + b, act));
        }
    }
}

__device__ __forceinline__ void gemm_f32_body(const float* __restrict__ W, const float* __restrict__ X,
                                              const float* __restrict__ bias, float* __restrict__ Y,
                                              int M, int N, int K, int act) {
    __shared__ float As[FDSC_GEMM_BK][FDSC_GEMM_BM + 1];
    __shared__ float Bs[FDSC_GEMM_BK][FDSC_GEMM_BN];
    const int tx = threadIdx.x % FDSC_GEMM_RX, ty = threadIdx.x / FDSC_GEMM_RX;
    const int m0 = blockIdx.y * FDSC_GEMM_BM, n0 = blockIdx.x * FDSC_GEMM_BN;
    float acc[FDSC_GEMM_TM][FDSC_GEMM_TN];
    for (int i = 0; i < FDSC_GEMM_TM; ++i)
        for (int j = 0; j < FDSC_GEMM_TN; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += FDSC_GEMM_BK) {
        gemm_stage<float, float>(W, X, As, Bs, M, N, K, m0, n0, k0);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < FDSC_GEMM_BK; ++k) {
            float a[FDSC_GEMM_TM], b[FDSC_GEMM_TN];
            for (int i = 0; i < FDSC_GEMM_TM; ++i) a[i] = As[k][ty + i * FDSC_GEMM_RY];
            for (int j = 0; j < FDSC_GEMM_TN; ++j) b[j] = Bs[k][tx + j * FDSC_GEMM_RX];
            for (int i = 0; i < FDSC_GEMM_TM; ++i)
                for (int j = 0; j < FDSC_GEMM_TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    gemm_epilogue<float>(acc, bias, Y, M, N, m0, n0, act);
}

__device__ __forceinline__ void gemm_f16_body(const __half* __restrict__ W, const __half* __restrict__ X,
                                              const __half* __restrict__ bias, __half* __restrict__ Y,
                                              int M, int N, int K, int act) {
    __shared__ __half As[FDSC_GEMM_BK][FDSC_GEMM_BM + 1];
    __shared__ __half Bs[FDSC_GEMM_BK][FDSC_GEMM_BN];
    const int tx = threadIdx.x % FDSC_GEMM_RX, ty = threadIdx.x / FDSC_GEMM_RX;
    const int m0 = blockIdx.y * FDSC_GEMM_BM, n0 = blockIdx.x * FDSC_GEMM_BN;
    float acc[FDSC_GEMM_TM][FDSC_GEMM_TN];
    for (int i = 0; i < FDSC_GEMM_TM; ++i)
        for (int j = 0; j < FDSC_GEMM_TN; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += FDSC_GEMM_BK) {
        gemm_stage<__half, __half>(W, X, As, Bs, M, N, K, m0, n0, k0);
        __syncthreads();
        __half2 part[FDSC_GEMM_TM][FDSC_GEMM_TN / 2];
        for (int i = 0; i < FDSC_GEMM_TM; ++i)
            for (int j = 0; j < FDSC_GEMM_TN / 2; ++j) part[i][j] = __float2half2_rn(0.f);
#pragma unroll
        for (int k = 0; k < FDSC_GEMM_BK; ++k) {
            __half2 b[FDSC_GEMM_TN / 2];
            for (int j = 0; j < FDSC_GEMM_TN / 2; ++j)
                b[j] = __halves2half2(Bs[k][tx + (2 * j) * FDSC_GEMM_RX], Bs[k][tx + (2 * j + 1) * FDSC_GEMM_RX]);
            for (int i = 0; i < FDSC_GEMM_TM; ++i) {
                const __half2 a = __half2half2(As[k][ty + i * FDSC_GEMM_RY]);
                for (int j = 0; j < FDSC_GEMM_TN / 2; ++j) part[i][j] = __hfma2(a, b[j], part[i][j]);
            }
        }
        for (int i = 0; i < FDSC_GEMM_TM; ++i)
            for (int j = 0; j < FDSC_GEMM_TN / 2; ++j) {
                acc[i][2 * j] += __low2float(part[i][j]);
                acc[i][2 * j + 1] += __high2float(part[i][j]);
            }
        __syncthreads();
    }
    gemm_epilogue<__half>(acc, bias, Y, M, N, m0, n0, act);
}

extern "C" __global__ void __launch_bounds__(FDSC_GEMM_THREADS)
gemm_f32(const float* __restrict__ W, const float* __restrict__ X, const float* __restrict__ bias,
         float* __restrict__ Y, int M, int N, int K, int act) {
    gemm_f32_body(W, X, bias, Y, M, N, K, act);
}

// minBlocks 2: without it ptxas (12.x, sm_72) picks 48 registers and spills 24 bytes.
extern "C" __global__ void __launch_bounds__(FDSC_GEMM_THREADS, 2)
gemm_f16(const __half* __restrict__ W, const __half* __restrict__ X, const __half* __restrict__ bias,
         __half* __restrict__ Y, int M, int N, int K, int act) {
    gemm_f16_body(W, X, bias, Y, M, N, K, act);
}
