// region.cu - decode of darknet's region layer on the GPU, the same arithmetic as
// detector/postprocess.decode_region. For anchor a at grid cell (row, col) of a W x H grid,
// channels a*(5+C) + [tx, ty, tw, th, to, classes...] of the raw head give
//     cx = (col + sigmoid(tx)) / W        w = exp(tw) * anchor_w / W
//     cy = (row + sigmoid(ty)) / H        h = exp(th) * anchor_h / H
//     score[c] = sigmoid(to) * softmax(classes)[c]
// boxes [A*H*W, 4] (cx, cy, w, h; fractions of the network input) and scores [A*H*W, C],
// ordered anchor, row, col; both fp32 whatever the storage type. One thread per (anchor,
// cell); grid: ceil(A*H*W / 256). anchors: [A, 2] fp32 in grid units.
#include "fastdsc.cuh"

__device__ __forceinline__ float fdsc_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <typename T>
__device__ __forceinline__ void region_body(const T* __restrict__ raw, const float* __restrict__ anchors,
                                            float* __restrict__ boxes, float* __restrict__ scores,
                                            int A, int C, int H, int W) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    const int hw = H * W;
    if (idx >= A * hw) return;
    const int a = idx / hw, cell = idx % hw, row = cell / W, col = cell % W;
    const T* p = raw + (size_t)a * (5 + C) * hw + cell;
    float* box = boxes + (size_t)idx * 4;
    box[0] = (col + fdsc_sigmoid(Store<T>::load(p))) / W;
    box[1] = (row + fdsc_sigmoid(Store<T>::load(p + hw))) / H;
    box[2] = expf(Store<T>::load(p + 2 * hw)) * __ldg(anchors + 2 * a) / W;
    box[3] = expf(Store<T>::load(p + 3 * hw)) * __ldg(anchors + 2 * a + 1) / H;
    const float obj = fdsc_sigmoid(Store<T>::load(p + 4 * hw));
    const T* cls = p + 5 * hw;
    float m = Store<T>::load(cls);
    for (int c = 1; c < C; ++c) m = fmaxf(m, Store<T>::load(cls + (size_t)c * hw));
    float sum = 0.f;
    for (int c = 0; c < C; ++c) sum += expf(Store<T>::load(cls + (size_t)c * hw) - m);
    const float scale = obj / sum;
    float* out = scores + (size_t)idx * C;
    for (int c = 0; c < C; ++c) out[c] = expf(Store<T>::load(cls + (size_t)c * hw) - m) * scale;
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
region_f32(const float* __restrict__ raw, const float* __restrict__ anchors, float* __restrict__ boxes,
           float* __restrict__ scores, int A, int C, int H, int W) {
    region_body<float>(raw, anchors, boxes, scores, A, C, H, W);
}

extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)
region_f16(const __half* __restrict__ raw, const float* __restrict__ anchors, float* __restrict__ boxes,
           float* __restrict__ scores, int A, int C, int H, int W) {
    region_body<__half>(raw, anchors, boxes, scores, A, C, H, W);
}
