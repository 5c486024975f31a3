// Batched bilinear affine warps, bit-exact with OpenCV's cv::warpAffine(src, dst, M, size,
// INTER_LINEAR | WARP_INVERSE_MAP, BORDER_CONSTANT, border) as OpenCV 2.4-4.10 computes it (the
// OpenCV that OpenFace 2.2 was built with; see gpuau/cpu/warp_affine.py for the arithmetic).
// Port of cv::warpAffine -> WarpAffineInvoker -> remapBilinear, imgwarp.cpp (OpenCV 4.x).
//
// One thread per output pixel (all channels); blockIdx.z walks the N outputs.
#ifdef __CUDACC_RTC__
typedef unsigned char uint8_t;
#endif

// OpenCV: INTER_BITS = 5 (source positions on a 1/32 pixel grid), AB_BITS = 10 (fixed-point scale
// of the mapped coordinates), INTER_REMAP_COEF_BITS = 15 (8-bit interpolation weights).
#define WARP_INTER_BITS 5
#define WARP_INTER_TAB_SIZE 32
#define WARP_AB_SCALE 1024.0
#define WARP_ROUND_DELTA 16
#define WARP_COEF_BITS 15

struct WarpTap {
    int sx, sy;  // top-left source pixel (saturated to short, as OpenCV stores it)
    int ax, ay;  // sub-pixel position in 1/32 pixel, 0..31
};

// Fixed-point source position of destination pixel (x, y) under the dst->src matrix m (row-major 2x3).
__device__ __forceinline__ WarpTap warp_tap(const double* m, int x, int y) {
    const double xd = (double)x, yd = (double)y;
    const int adelta = __double2int_rn(__dmul_rn(__dmul_rn(m[0], xd), WARP_AB_SCALE));
    const int bdelta = __double2int_rn(__dmul_rn(__dmul_rn(m[3], xd), WARP_AB_SCALE));
    const int x0 = __double2int_rn(__dmul_rn(__dadd_rn(__dmul_rn(m[1], yd), m[2]), WARP_AB_SCALE)) + WARP_ROUND_DELTA;
    const int y0 = __double2int_rn(__dmul_rn(__dadd_rn(__dmul_rn(m[4], yd), m[5]), WARP_AB_SCALE)) + WARP_ROUND_DELTA;
    const int fx = (x0 + adelta) >> (10 - WARP_INTER_BITS);
    const int fy = (y0 + bdelta) >> (10 - WARP_INTER_BITS);
    WarpTap t;
    t.sx = max(-32768, min(32767, fx >> WARP_INTER_BITS));
    t.sy = max(-32768, min(32767, fy >> WARP_INTER_BITS));
    t.ax = fx & (WARP_INTER_TAB_SIZE - 1);
    t.ay = fy & (WARP_INTER_TAB_SIZE - 1);
    return t;
}

// 8-bit: integer weights (32-ay)(32-ax)*32 ... summing to 2^15, rounded shift.
__device__ __forceinline__ uint8_t warp_blend(uint8_t p00, uint8_t p01, uint8_t p10, uint8_t p11, int ax, int ay) {
    const int w00 = (WARP_INTER_TAB_SIZE - ay) * (WARP_INTER_TAB_SIZE - ax) * WARP_INTER_TAB_SIZE;
    const int w01 = (WARP_INTER_TAB_SIZE - ay) * ax * WARP_INTER_TAB_SIZE;
    const int w10 = ay * (WARP_INTER_TAB_SIZE - ax) * WARP_INTER_TAB_SIZE;
    const int w11 = ay * ax * WARP_INTER_TAB_SIZE;
    const int v = p00 * w00 + p01 * w01 + p10 * w10 + p11 * w11;
    return (uint8_t)min(255, (v + (1 << (WARP_COEF_BITS - 1))) >> WARP_COEF_BITS);
}

// float: weights (1-fy)(1-fx) ... (exact in float), summed left to right without FMA.
__device__ __forceinline__ float warp_blend(float p00, float p01, float p10, float p11, int ax, int ay) {
    const float scale = 1.0f / (WARP_INTER_TAB_SIZE * WARP_INTER_TAB_SIZE);
    const float w00 = __fmul_rn((float)((WARP_INTER_TAB_SIZE - ay) * (WARP_INTER_TAB_SIZE - ax)), scale);
    const float w01 = __fmul_rn((float)((WARP_INTER_TAB_SIZE - ay) * ax), scale);
    const float w10 = __fmul_rn((float)(ay * (WARP_INTER_TAB_SIZE - ax)), scale);
    const float w11 = __fmul_rn((float)(ay * ax), scale);
    float v = __fadd_rn(__fmul_rn(p00, w00), __fmul_rn(p01, w01));
    v = __fadd_rn(v, __fmul_rn(p10, w10));
    return __fadd_rn(v, __fmul_rn(p11, w11));
}

// Output pixel (x, y) of warp n, all channels, written to dst.
template <typename T>
__device__ __forceinline__ void warp_pixel(const T* __restrict__ images, int n_images, int height, int width,
                                           int channels, const int* __restrict__ image_index,
                                           const double* __restrict__ matrices, int n, int x, int y, T border,
                                           T* __restrict__ dst) {
    const int b = image_index[n];
    const WarpTap t = warp_tap(matrices + 6 * n, x, y);
    if (b < 0 || b >= n_images || t.sx >= width || t.sx + 1 < 0 || t.sy >= height || t.sy + 1 < 0) {
        for (int c = 0; c < channels; ++c) dst[c] = border;
        return;
    }
    const T* src = images + (long long)b * height * width * channels;
    const bool x0_in = t.sx >= 0, x1_in = t.sx + 1 < width, y0_in = t.sy >= 0, y1_in = t.sy + 1 < height;
    const long long row0 = (long long)t.sy * width, row1 = row0 + width;
    for (int c = 0; c < channels; ++c) {
        const T p00 = (y0_in && x0_in) ? src[(row0 + t.sx) * channels + c] : border;
        const T p01 = (y0_in && x1_in) ? src[(row0 + t.sx + 1) * channels + c] : border;
        const T p10 = (y1_in && x0_in) ? src[(row1 + t.sx) * channels + c] : border;
        const T p11 = (y1_in && x1_in) ? src[(row1 + t.sx + 1) * channels + c] : border;
        dst[c] = warp_blend(p00, p01, p10, p11, t.ax, t.ay);
    }
}

template <typename T>
__device__ __forceinline__ void warp_affine_body(const T* __restrict__ images, int n_images, int height, int width,
                                                 int channels, const int* __restrict__ image_index,
                                                 const double* __restrict__ matrices, int n_out, int out_h,
                                                 int out_w, T border, T* __restrict__ out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    for (int n = blockIdx.z; n < n_out; n += gridDim.z) {
        warp_pixel(images, n_images, height, width, channels, image_index, matrices, n, x, y, border,
                   out + (((long long)n * out_h + y) * out_w + x) * channels);
    }
}

// images (B, H, W, C) uint8; image_index (N,) int32; matrices (N, 2, 3) float64 dst->src;
// out (N, out_h, out_w, C) uint8.  Grid (ceil(out_w/bx), ceil(out_h/by), min(N, 65535)).
extern "C" __global__ void warp_affine_u8(const uint8_t* images, int n_images, int height, int width, int channels,
                                          const int* image_index, const double* matrices, int n_out, int out_h,
                                          int out_w, int border, uint8_t* out) {
    warp_affine_body<uint8_t>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h, out_w,
                              (uint8_t)border, out);
}

// Same for float32 images and output.
extern "C" __global__ void warp_affine_f32(const float* images, int n_images, int height, int width, int channels,
                                           const int* image_index, const double* matrices, int n_out, int out_h,
                                           int out_w, float border, float* out) {
    warp_affine_body<float>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h, out_w,
                            border, out);
}

// ---- Warp + face mask (OpenFace's AlignFaceMask) -------------------------------------------------
// Pixels of the warped face outside a triangulated shape are set to 0: PAW's pixel mask (the raster
// scan of PAW::PAW with PAW::findTriangle / pointInTriangle / sameSide, PAW.cpp), float32 in
// OpenFace's order, bit for bit the Numba twin's (gpuau.cpu.paw.triangle_map != -1).
//
// The scan keeps the previous pixel's triangle while the point-in-triangle test holds for it, else
// takes the first triangle (index order) whose bounding box and test hold.  A pixel is therefore
// covered when some triangle's box and test hold (computed per pixel, in parallel), except where the
// carried triangle's test holds outside its box (degenerate, e.g. collinear, triangles): a pixel no
// box-and-test covers but some test alone does marks its face "ambiguous", and
// warp_mask_chain_* replays the serial scan for those faces only.

// (x0, y0) on the same side of the line (x2, y2)-(x3, y3) as (x1, y1), on the line included.
__device__ __forceinline__ bool mask_same_side(float x0, float y0, float x1, float y1, float x2, float y2, float x3,
                                               float y3) {
    const float a = __fsub_rn(__fmul_rn(__fsub_rn(x3, x2), __fsub_rn(y0, y2)), __fmul_rn(__fsub_rn(x0, x2), __fsub_rn(y3, y2)));
    const float b = __fsub_rn(__fmul_rn(__fsub_rn(x3, x2), __fsub_rn(y1, y2)), __fmul_rn(__fsub_rn(x1, x2), __fsub_rn(y3, y2)));
    return __fmul_rn(a, b) >= 0.0f;
}

// PAW::pointInTriangle; v = x1, y1, x2, y2, x3, y3.  A NaN vertex fails every test.
__device__ __forceinline__ bool mask_in_triangle(float x0, float y0, const float* v) {
    return mask_same_side(x0, y0, v[0], v[1], v[2], v[3], v[4], v[5]) &&
           mask_same_side(x0, y0, v[2], v[3], v[0], v[1], v[4], v[5]) &&
           mask_same_side(x0, y0, v[4], v[5], v[0], v[1], v[2], v[3]);
}

// First triangle whose bounding box and point-in-triangle test hold at (x0, y0), or -1
// (PAW::findTriangle without a guess).  vertices: (n_tris, 6) of one face.
__device__ __forceinline__ int mask_first_triangle(const float* vertices, int n_tris, float x0, float y0) {
    for (int t = 0; t < n_tris; ++t) {
        const float* v = vertices + 6 * t;
        if (fmaxf(fmaxf(v[1], v[3]), v[5]) < y0 || fminf(fminf(v[1], v[3]), v[5]) > y0 ||
            fmaxf(fmaxf(v[0], v[2]), v[4]) < x0 || fminf(fminf(v[0], v[2]), v[4]) > x0)
            continue;
        if (mask_in_triangle(x0, y0, v)) return t;
    }
    return -1;
}

__device__ __forceinline__ bool mask_any_triangle(const float* vertices, int n_tris, float x0, float y0) {
    for (int t = 0; t < n_tris; ++t)
        if (mask_in_triangle(x0, y0, vertices + 6 * t)) return true;
    return false;
}

// Launch geometry as warp_affine_*: one thread per output pixel (all channels), 16 x 16 blocks,
// blockIdx.z walks the faces; the face's triangles (n_tris x 24 bytes, ~2.7 KB for OpenFace's 111)
// are read by every thread of the block and stay in L1.
template <typename T>
__device__ __forceinline__ void warp_affine_masked_body(const T* __restrict__ images, int n_images, int height,
                                                        int width, int channels, const int* __restrict__ image_index,
                                                        const double* __restrict__ matrices, int n_out, int out_h,
                                                        int out_w, const float* __restrict__ vertices, int n_tris,
                                                        int* __restrict__ ambiguous, T* __restrict__ out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    for (int n = blockIdx.z; n < n_out; n += gridDim.z) {
        T* dst = out + (((long long)n * out_h + y) * out_w + x) * channels;
        const float* v = vertices + (long long)n * n_tris * 6;
        if (mask_first_triangle(v, n_tris, (float)x, (float)y) >= 0) {
            warp_pixel(images, n_images, height, width, channels, image_index, matrices, n, x, y, (T)0, dst);
            continue;
        }
        for (int c = 0; c < channels; ++c) dst[c] = (T)0;
        if (mask_any_triangle(v, n_tris, (float)x, (float)y)) ambiguous[n] = 1;  // same value from any thread
    }
}

// The serial scan for the faces marked ambiguous: one thread per face walks its pixels in raster
// order and warps the pixels the carried triangle covers but no box-and-test does.
template <typename T>
__device__ __forceinline__ void warp_mask_chain_body(const T* __restrict__ images, int n_images, int height,
                                                     int width, int channels, const int* __restrict__ image_index,
                                                     const double* __restrict__ matrices, int n_out, int out_h,
                                                     int out_w, const float* __restrict__ vertices, int n_tris,
                                                     const int* __restrict__ ambiguous, T* __restrict__ out) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_out || !ambiguous[n]) return;
    const float* v = vertices + (long long)n * n_tris * 6;
    int guess = -1;
    for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
            const int first = mask_first_triangle(v, n_tris, (float)x, (float)y);
            const bool carried = guess >= 0 && mask_in_triangle((float)x, (float)y, v + 6 * guess);
            if (carried && first < 0)
                warp_pixel(images, n_images, height, width, channels, image_index, matrices, n, x, y, (T)0,
                           out + (((long long)n * out_h + y) * out_w + x) * channels);
            if (!carried) guess = first;
        }
    }
}

// images (B, H, W, C); image_index (N,) int32; matrices (N, 2, 3) float64 dst->src; vertices
// (N, T, 6) float32 triangle corners in output pixels; ambiguous (N,) int32 zeroed by the caller;
// out (N, out_h, out_w, C).  Grid (ceil(out_w/bx), ceil(out_h/by), min(N, 65535)).
extern "C" __global__ void warp_affine_masked_u8(const uint8_t* images, int n_images, int height, int width,
                                                 int channels, const int* image_index, const double* matrices,
                                                 int n_out, int out_h, int out_w, const float* vertices, int n_tris,
                                                 int* ambiguous, uint8_t* out) {
    warp_affine_masked_body<uint8_t>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h,
                                     out_w, vertices, n_tris, ambiguous, out);
}

extern "C" __global__ void warp_affine_masked_f32(const float* images, int n_images, int height, int width,
                                                  int channels, const int* image_index, const double* matrices,
                                                  int n_out, int out_h, int out_w, const float* vertices, int n_tris,
                                                  int* ambiguous, float* out) {
    warp_affine_masked_body<float>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h,
                                   out_w, vertices, n_tris, ambiguous, out);
}

// Same arguments after warp_affine_masked_*; grid (ceil(N/64)), block 64.
extern "C" __global__ void warp_mask_chain_u8(const uint8_t* images, int n_images, int height, int width,
                                              int channels, const int* image_index, const double* matrices,
                                              int n_out, int out_h, int out_w, const float* vertices, int n_tris,
                                              const int* ambiguous, uint8_t* out) {
    warp_mask_chain_body<uint8_t>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h,
                                  out_w, vertices, n_tris, ambiguous, out);
}

extern "C" __global__ void warp_mask_chain_f32(const float* images, int n_images, int height, int width,
                                               int channels, const int* image_index, const double* matrices,
                                               int n_out, int out_h, int out_w, const float* vertices, int n_tris,
                                               const int* ambiguous, float* out) {
    warp_mask_chain_body<float>(images, n_images, height, width, channels, image_index, matrices, n_out, out_h,
                                out_w, vertices, n_tris, ambiguous, out);
}

// ---- The detection validator's input (PAW::Warp of the face region, normalised) -------------------
// Twin of gpuau/cpu/paw.py's validator_faces: each face's region of its grey frame (taps outside the
// region read 0) sampled as cv::remap INTER_LINEAR (OpenCV <= 4.10: the source position rounded to
// 1/32 pixel, then warp_blend) at PAW::WarpRegion's positions; then the face pixels (rank >= 0, in
// column-major order) centred and scaled by their float64 mean and standard deviation (serial sums by
// thread 0 in that order), less the view's per-pixel mean and over its std; 0 elsewhere.
// One block per face; the warped face goes through out.

template <typename T>
__device__ __forceinline__ float validator_sample(const T* __restrict__ image, int stride, int left, int top,
                                                  int width, int height, float mx, float my) {
    const int fx = __float2int_rn(__fmul_rn(mx, (float)WARP_INTER_TAB_SIZE));
    const int fy = __float2int_rn(__fmul_rn(my, (float)WARP_INTER_TAB_SIZE));
    const int sx = max(-32768, min(32767, fx >> WARP_INTER_BITS));
    const int sy = max(-32768, min(32767, fy >> WARP_INTER_BITS));
    if (sx >= width || sx + 1 < 0 || sy >= height || sy + 1 < 0) return 0.0f;
    const bool x0_in = sx >= 0, x1_in = sx + 1 < width, y0_in = sy >= 0, y1_in = sy + 1 < height;
    const T* row0 = image + (long long)(top + sy) * stride + left + sx;
    const T* row1 = row0 + stride;
    const float p00 = (y0_in && x0_in) ? (float)row0[0] : 0.0f;
    const float p01 = (y0_in && x1_in) ? (float)row0[1] : 0.0f;
    const float p10 = (y1_in && x0_in) ? (float)row1[0] : 0.0f;
    const float p11 = (y1_in && x1_in) ? (float)row1[1] : 0.0f;
    return warp_blend(p00, p01, p10, p11, fx & (WARP_INTER_TAB_SIZE - 1), fy & (WARP_INTER_TAB_SIZE - 1));
}

template <typename T>
__device__ __forceinline__ void validator_faces_body(const T* __restrict__ images, int height, int width,
                                                     const int* __restrict__ image_index,
                                                     const int* __restrict__ regions,
                                                     const float* __restrict__ coefficients, int n_tris,
                                                     const int* __restrict__ triangle_id, int out_h, int out_w,
                                                     float min_x, float min_y, const int* __restrict__ rank,
                                                     const float* __restrict__ mean, const float* __restrict__ stdev,
                                                     int n_pixels, float* __restrict__ out) {
    __shared__ float stats[2];
    const int f = blockIdx.x;
    const T* image = images + (long long)image_index[f] * height * width;
    const int* r = regions + 4 * f;
    const float* c = coefficients + (long long)f * n_tris * 6;
    float* o = out + (long long)f * out_h * out_w;
    for (int p = threadIdx.x; p < out_h * out_w; p += blockDim.x) {
        const int t = triangle_id[p];
        float v = 0.0f;
        if (t >= 0) {
            const float xi = __fadd_rn((float)(p % out_w), min_x), yi = __fadd_rn((float)(p / out_w), min_y);
            const float* ct = c + 6 * t;
            const float mx = __fadd_rn(__fadd_rn(ct[0], __fmul_rn(ct[1], xi)), __fmul_rn(ct[2], yi));
            const float my = __fadd_rn(__fadd_rn(ct[3], __fmul_rn(ct[4], xi)), __fmul_rn(ct[5], yi));
            v = validator_sample(image, width, r[0], r[1], r[2], r[3], mx, my);
        }
        o[p] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0, s2 = 0.0;
        for (int x = 0; x < out_w; ++x)
            for (int y = 0; y < out_h; ++y)
                if (rank[y * out_w + x] >= 0) {
                    const double v = (double)o[y * out_w + x];
                    s = __dadd_rn(s, v);
                    s2 = __dadd_rn(s2, __dmul_rn(v, v));
                }
        const double m = __ddiv_rn(s, (double)n_pixels);
        const double sd = sqrt(fmax(__dsub_rn(__ddiv_rn(s2, (double)n_pixels), __dmul_rn(m, m)), 0.0));
        stats[0] = (float)m;
        stats[1] = (float)__ddiv_rn(1.0, sd != 0.0 ? sd : 1.0);
    }
    __syncthreads();
    const float centre = stats[0], scale = stats[1];
    for (int p = threadIdx.x; p < out_h * out_w; p += blockDim.x) {
        const int k = rank[p];
        o[p] = k >= 0 ? __fdiv_rn(__fsub_rn(__fmul_rn(__fsub_rn(o[p], centre), scale), mean[k]), stdev[k]) : 0.0f;
    }
}

// images (B, H, W) grey; image_index (F,) int32; regions (F, 4) int32 left, top, width, height;
// coefficients (F, T, 6) float32; triangle_id and rank (out_h, out_w) int32; mean, stdev (n_pixels,)
// float32; out (F, out_h, out_w) float32.  Grid (F), block any.
extern "C" __global__ void validator_faces_u8(const uint8_t* images, int height, int width, const int* image_index,
                                              const int* regions, const float* coefficients, int n_tris,
                                              const int* triangle_id, int out_h, int out_w, float min_x, float min_y,
                                              const int* rank, const float* mean, const float* stdev, int n_pixels,
                                              float* out) {
    validator_faces_body<uint8_t>(images, height, width, image_index, regions, coefficients, n_tris, triangle_id,
                                  out_h, out_w, min_x, min_y, rank, mean, stdev, n_pixels, out);
}

extern "C" __global__ void validator_faces_f32(const float* images, int height, int width, const int* image_index,
                                               const int* regions, const float* coefficients, int n_tris,
                                               const int* triangle_id, int out_h, int out_w, float min_x, float min_y,
                                               const int* rank, const float* mean, const float* stdev, int n_pixels,
                                               float* out) {
    validator_faces_body<float>(images, height, width, image_index, regions, coefficients, n_tris, triangle_id,
                                out_h, out_w, min_x, min_y, rank, mean, stdev, n_pixels, out);
}
