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

// Darknet's letterbox_image, bit for bit (detector/preprocess.darknet_resize): pixels are
// (float)(v / 255.) and the frame is resized by darknet's resize_image, columns first, then
// rows, each sampled at i * scale with scale = (src - 1) / (dst - 1) (w_scale, h_scale, float32
// from the host; 0 for a 1-pixel side), (1 - d) * a + d * b; the last column takes the last
// source column, the last row only its first term (darknet skips the second there). Every
// operation is rounded on its own (no fused multiply-add), as darknet's C computes it. One
// thread per output pixel: it computes the two horizontally resized source rows it needs.
__device__ __forceinline__ float darknet_value(const unsigned char* frame, int fw, int x, int y, int b) {
    // (float)(v / 255.) in double equals the correctly rounded float quotient for all 256 v
    return __fdiv_rn((float)frame[((size_t)y * fw + x) * 3 + b], 255.f);
}

__device__ __forceinline__ float darknet_across(const unsigned char* frame, int fw, int y, int b,
                                                int c, int new_w, float w_scale) {
    if (c == new_w - 1 || fw == 1) return darknet_value(frame, fw, fw - 1, y, b);
    const float sx = __fmul_rn((float)c, w_scale);
    const int ix = (int)sx;
    const float d = __fsub_rn(sx, (float)ix);
    return __fadd_rn(__fmul_rn(__fsub_rn(1.f, d), darknet_value(frame, fw, ix, y, b)),
                     __fmul_rn(d, darknet_value(frame, fw, fdsc_min(ix + 1, fw - 1), y, b)));
}

template <typename T>
__device__ __forceinline__ void preprocess_darknet_body(const unsigned char* __restrict__ frame,
                                                        T* __restrict__ out, int fw, int fh, int net_w,
                                                        int net_h, int new_w, int new_h, int left,
                                                        int top, float w_scale, float h_scale) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= net_w || y >= net_h) return;
    const size_t plane = (size_t)net_w * net_h, o = (size_t)y * net_w + x;
    const int c = x - left, r = y - top;
    if (c < 0 || c >= new_w || r < 0 || r >= new_h) {
        const T fill = Store<T>::put(0.5f);
        out[o] = fill;
        out[plane + o] = fill;
        out[2 * plane + o] = fill;
        return;
    }
    const float sy = __fmul_rn((float)r, h_scale);
    const int iy = (int)sy;
    const float d = __fsub_rn(sy, (float)iy);
    const bool second = !(r == new_h - 1 || fh == 1);
    for (int ch = 0; ch < 3; ++ch) {   // output channel ch (RGB) reads frame channel 2 - ch (BGR)
        const int b = 2 - ch;
        float v = __fmul_rn(__fsub_rn(1.f, d), darknet_across(frame, fw, iy, b, c, new_w, w_scale));
        if (second)
            v = __fadd_rn(v, __fmul_rn(d, darknet_across(frame, fw, fdsc_min(iy + 1, fh - 1), b, c,
                                                         new_w, w_scale)));
        out[ch * plane + o] = Store<T>::put(v);
    }
}

#define FDSC_PREPROCESS_DARKNET(name, T)                                                         \
    extern "C" __global__ void __launch_bounds__(FDSC_EW_THREADS)                               \
    name(const unsigned char* __restrict__ frame, T* __restrict__ out, int fw, int fh,          \
         int net_w, int net_h, int new_w, int new_h, int left, int top, float w_scale,          \
         float h_scale) {                                                                        \
        preprocess_darknet_body<T>(frame, out, fw, fh, net_w, net_h, new_w, new_h, left, top,   \
                                   w_scale, h_scale);                                            \
    }

FDSC_PREPROCESS_DARKNET(preprocess_darknet_f32, float)
FDSC_PREPROCESS_DARKNET(preprocess_darknet_f16, __half)
