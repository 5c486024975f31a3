// PNet's input mosaic: every level of MTCNN's image pyramid of a batch of frames, resized and packed
// into one canvas per frame, in one launch; twin of gpuau/cpu/pnet_pyramid.py.
// Port of the pyramid loop of FaceDetectorMTCNN::DetectFaces, FaceDetectorMTCNN.cpp: cv::resize
// (INTER_LINEAR) of the float frame to each level, then (v - 127.5) * 0.0078125, BGR -> RGB planes.
//
// cv::resize's float INTER_LINEAR as the OpenCV builds gpuau runs with compute it (4.10 and 5.0
// x86-64 wheels, checked bit for bit): for destination column d of a level dst_w wide cut from a
// frame W wide, t = (d + 0.5) * (1 / (dst_w / W)) - 0.5 in double, s = floor(t), weight
// a = (float)(t - s); s < 0 -> (s, a) = (0, 0); s >= W - 1 -> (W - 1, 0); rows likewise.  Each
// row is interpolated along x as fmaf(p1 - p0, a, p0), then the two rows along y the same way.
//
// Launch geometry: one thread per canvas pixel (all 3 channels), 32 x 8 blocks, blockIdx.z = frame.
// Writes are coalesced (a warp writes 32 consecutive floats of each RGB plane); the reads of a warp
// fall on 2 x (32 / scale + 1) source pixels of two rows, served by L1/L2.  No shared memory: each
// source pixel is read by at most ~4 threads of a level (the levels shrink the frame >= 5x at
// OpenFace's settings), too little reuse to pay for staging.
#ifdef __CUDACC_RTC__
typedef unsigned char uint8_t;
#endif

#define PYRAMID_MEAN 127.5f
#define PYRAMID_SCALE 0.0078125f

// Source index and weight of destination coordinate d along an axis of `n` source pixels.
__device__ __forceinline__ int pyramid_tap(int d, double scale, int n, float* weight) {
    const double t = __dadd_rn(__dmul_rn(__dadd_rn((double)d, 0.5), scale), -0.5);
    const double s = floor(t);
    int i = (int)s;
    float a = (float)__dadd_rn(t, -s);  // round to nearest
    if (i < 0) { i = 0; a = 0.0f; }
    if (i >= n - 1) { i = n - 1; a = 0.0f; }
    *weight = a;
    return i;
}

__device__ __forceinline__ float pyramid_lerp(float p0, float p1, float a) { return fmaf(__fsub_rn(p1, p0), a, p0); }

// frames (B, H, W, 3) BGR; levels (L, 4) int32 rows (y0, x0, h, w) in the canvas; scales (L, 2)
// float64 rows (1 / (h / H), 1 / (w / W)), cv::resize's scale_y, scale_x; out (B, 3, canvas_h,
// canvas_w) float32 RGB planes.
// Grid (ceil(canvas_w / 32), ceil(canvas_h / 8), B).
template <typename T>
__device__ __forceinline__ void pnet_pyramid_body(const T* __restrict__ frames, int height, int width,
                                                  const int* __restrict__ levels, const double* __restrict__ scales,
                                                  int n_levels, int canvas_h, int canvas_w, float* __restrict__ out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= canvas_w || y >= canvas_h) return;
    const long long plane = (long long)canvas_h * canvas_w;
    float* dst = out + (long long)blockIdx.z * 3 * plane + (long long)y * canvas_w + x;
    int l = 0;
    for (; l < n_levels; ++l) {
        const int* g = levels + 4 * l;
        if (y >= g[0] && y < g[0] + g[2] && x >= g[1] && x < g[1] + g[3]) break;
    }
    if (l == n_levels) {  // between levels: a zero pixel, normalised
        const float pad = __fmul_rn(-PYRAMID_MEAN, PYRAMID_SCALE);
        for (int c = 0; c < 3; ++c) dst[c * plane] = pad;
        return;
    }
    float ax, ay;
    const int sx = pyramid_tap(x - levels[4 * l + 1], scales[2 * l + 1], width, &ax);
    const int sy = pyramid_tap(y - levels[4 * l], scales[2 * l], height, &ay);
    const int sx1 = min(sx + 1, width - 1), sy1 = min(sy + 1, height - 1);
    const T* frame = frames + (long long)blockIdx.z * height * width * 3;
    const T* row0 = frame + (long long)sy * width * 3;
    const T* row1 = frame + (long long)sy1 * width * 3;
    for (int c = 0; c < 3; ++c) {
        const float h0 = pyramid_lerp((float)row0[sx * 3 + c], (float)row0[sx1 * 3 + c], ax);
        const float h1 = pyramid_lerp((float)row1[sx * 3 + c], (float)row1[sx1 * 3 + c], ax);
        const float v = pyramid_lerp(h0, h1, ay);
        dst[(2 - c) * plane] = __fmul_rn(__fsub_rn(v, PYRAMID_MEAN), PYRAMID_SCALE);  // BGR -> RGB
    }
}

extern "C" __global__ void pnet_pyramid_u8(const uint8_t* frames, int height, int width, const int* levels,
                                           const double* scales, int n_levels, int canvas_h, int canvas_w,
                                           float* out) {
    pnet_pyramid_body<uint8_t>(frames, height, width, levels, scales, n_levels, canvas_h, canvas_w, out);
}

extern "C" __global__ void pnet_pyramid_f32(const float* frames, int height, int width, const int* levels,
                                            const double* scales, int n_levels, int canvas_h, int canvas_w,
                                            float* out) {
    pnet_pyramid_body<float>(frames, height, width, levels, scales, n_levels, canvas_h, canvas_w, out);
}
