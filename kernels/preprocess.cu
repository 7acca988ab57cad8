// preprocess.cu - frame -> network input on the GPU, so only the frame's bytes are uploaded.
// Input: a BGR uint8 frame (fh x fw x 3, rows packed). Output: the letterboxed RGB image,
// CHW, values / 255, in the net_h x net_w input buffer: the frame resized to new_w x new_h at
// (left, top), 0.5 elsewhere (darknet's letterbox as computed by detector/preprocess).
// Resizing is bilinear with OpenCV's INTER_LINEAR sampling: source x = (dx + 0.5) * sx - 0.5,
// edges clamped, the interpolated value rounded (half up) to an integer like OpenCV's uint8 result;
// OpenCV's 11-bit fixed-point weights can differ from these fp32 weights by one level (1/255)
// on a few pixels. One thread per output pixel (all three channels); block 32 x 8; grid:
// (ceil(net_w/32), ceil(net_h/8)).
#include "fastdsc.cuh"

template <typename T>
__device__ __forceinline__ void preprocess_body(const unsigned char* __restrict__ frame, T* __restrict__ out,
                                                int fw, int fh, int net_w, int net_h, int new_w, int new_h,
                                                int left, int top, float sx, float sy) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= net_w || y >= net_h) return;
    const size_t plane = (size_t)net_w * net_h, o = (size_t)y * net_w + x;
    const int dx = x - left, dy = y - top;
    if (dx < 0 || dx >= new_w || dy < 0 || dy >= new_h) {
        const T fill = Store<T>::put(0.5f);
        out[o] = fill;
        out[plane + o] = fill;
        out[2 * plane + o] = fill;
        return;
    }
    float fx = (dx + 0.5f) * sx - 0.5f, fy = (dy + 0.5f) * sy - 0.5f;
    int x0 = (int)floorf(fx), y0 = (int)floorf(fy);
    float ax = fx - x0, ay = fy - y0;
    if (x0 < 0) { x0 = 0; ax = 0.f; }
    if (y0 < 0) { y0 = 0; ay = 0.f; }
    if (x0 >= fw - 1) { x0 = fw - 1; ax = 0.f; }
    if (y0 >= fh - 1) { y0 = fh - 1; ay = 0.f; }
    const int x1 = fdsc_min(x0 + 1, fw - 1), y1 = fdsc_min(y0 + 1, fh - 1);
    const unsigned char* r0 = frame + (size_t)y0 * fw * 3;
    const unsigned char* r1 = frame + (size_t)y1 * fw * 3;
    for (int c = 0; c < 3; ++c) {   // output channel c (RGB) reads frame channel 2 - c (BGR)
        const int b = 2 - c;
        const float top_v = r0[x0 * 3 + b] + ax * (r0[x1 * 3 + b] - r0[x0 * 3 + b]);
        const float bot_v = r1[x0 * 3 + b] + ax * (r1[x1 * 3 + b] - r1[x0 * 3 + b]);
        const float v = floorf(top_v + ay * (bot_v - top_v) + 0.5f);   // OpenCV rounds half up
        out[c * plane + o] = Store<T>::put(v * (1.f / 255.f));
    }
}

#define FDSC_PREPROCESS(name, T)                                                                \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                              \
    name(const unsigned char* __restrict__ frame, T* __restrict__ out, int fw, int fh,         \
         int net_w, int net_h, int new_w, int new_h, int left, int top, float sx, float sy) {   \
        preprocess_body<T>(frame, out, fw, fh, net_w, net_h, new_w, new_h, left, top, sx, sy); \
    }

FDSC_PREPROCESS(preprocess_f32, float)
FDSC_PREPROCESS(preprocess_f16, __half)
