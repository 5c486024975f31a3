// Felzenszwalb HOG (FHOG) of a batch of aligned faces, bit-exact with dlib 19's
// impl_extract_fhog_features (dlib/image_transforms/fhog.h, float32 SIMD code, cell_size > 1) as
// OpenFace's Extract_FHOG_descriptor (Face_utils.cpp) calls it; twin of gpuau/cpu/fhog.py.
//
// Four passes, each a kernel (blockIdx.z walks the faces):
//   fhog_pixels    one thread per pixel: gradient of the strongest channel, orientation bin (0..17)
//                  and the 4 bilinear weights, rounded as dlib's 8-lane code or its scalar tail;
//   fhog_hist      one thread per (padded) cell: adds its pixels' weights in raster order, the
//                  order dlib's serial loop adds them, so the float32 sums are identical;
//   fhog_norm      one thread per cell: block energy;
//   fhog_features  one thread per output cell: the 31 normalised values (SSE2 horizontal sums).
// Every float operation is an explicit _rn intrinsic: no fused multiply-add.
#ifdef __CUDACC_RTC__
typedef unsigned char uint8_t;
#endif

#define FHOG_BINS 18
#define FHOG_CHANNELS 31

__device__ __forceinline__ float fhog_direction(int o, int k) {
    // dlib's 9 unit vectors as float literals (matrix<float,2,1> directions[9])
    const float d[18] = {1.0000f, 0.0000f, 0.9397f, 0.3420f, 0.7660f, 0.6428f, 0.500f, 0.8660f, 0.1736f, 0.9848f,
                         -0.1736f, 0.9848f, -0.5000f, 0.8660f, -0.7660f, 0.6428f, -0.9397f, 0.3420f};
    return d[2 * o + k];
}

// images (N, H, W, C) uint8 (C = 1 or 3, BGR); orient (N, H, W) int32; weights (N, H, W, 4) float32
// (w11, w01, w10, w00 of dlib); col0 (N, H, W) int32: padded histogram column of the left taps.
// Pixels 1 <= y < vis_nr, 1 <= x < vis_nc; x < simd_end went through dlib's 8-lane code.
extern "C" __global__ void fhog_pixels(const uint8_t* images, int n, int height, int width, int channels,
                                       int cell_size, int vis_nr, int vis_nc, int simd_end, int* orient,
                                       float* weights, int* col0) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x + 1;
    const int y = blockIdx.y * blockDim.y + threadIdx.y + 1;
    const int f = blockIdx.z;
    if (x >= vis_nc || y >= vis_nr || f >= n) return;
    const uint8_t* img = images + (long long)f * height * width * channels;
    const bool simd = x < simd_end;
    int gx = 0, gy = 0, best_len = -1;
    for (int k = 0; k < channels; ++k) {
        const int ch = channels - 1 - k;  // red, green, blue in BGR storage
        const int dx = (int)img[(y * width + x + 1) * channels + ch] - (int)img[(y * width + x - 1) * channels + ch];
        const int dy = (int)img[((y + 1) * width + x) * channels + ch] - (int)img[((y - 1) * width + x) * channels + ch];
        const int len = dx * dx + dy * dy;
        // 8-lane code keeps the later channel on ties, the scalar tail the earlier one
        if (len > best_len || (simd && len == best_len)) {
            best_len = len;
            gx = dx;
            gy = dy;
        }
    }
    const float fgx = (float)gx, fgy = (float)gy;
    const float v = sqrtf((float)best_len);
    float best_dot = 0.0f;
    int best_o = 0;
    for (int o = 0; o < 9; ++o) {
        const float dot = __fadd_rn(__fmul_rn(fgx, fhog_direction(o, 0)), __fmul_rn(fgy, fhog_direction(o, 1)));
        if (dot > best_dot) {
            best_dot = dot;
            best_o = o;
        } else if (-dot > best_dot) {
            best_dot = -dot;
            best_o = o + 9;
        }
    }
    const float cs = (float)cell_size;
    const float yp = (float)(((double)(float)y + 0.5) / (double)cs - 0.5);
    const int iyp = (int)floorf(yp);
    const float vy0 = __fsub_rn(yp, (float)iyp);
    const float vy1 = (float)(1.0 - (double)vy0);
    float w11, w01, w10, w00;
    int c0;
    if (simd) {
        const float xp = __fadd_rn(__fdiv_rn(__fadd_rn((float)x, 0.5f), cs), 0.5f);
        const int ixp = (int)xp;  // truncation, xp > 0
        float vx0 = __fsub_rn(xp, (float)ixp);
        float vx1 = __fsub_rn(1.0f, vx0);
        vx1 = __fmul_rn(vx1, v);
        vx0 = __fmul_rn(vx0, v);
        w11 = __fmul_rn(vy1, vx1);
        w01 = __fmul_rn(vy0, vx1);
        w10 = __fmul_rn(vy1, vx0);
        w00 = __fmul_rn(vy0, vx0);
        c0 = ixp;
    } else {
        const float xp = (float)(((double)x + 0.5) / (double)cell_size - 0.5);
        const int ixp = (int)floorf(xp);
        const float vx0 = __fsub_rn(xp, (float)ixp);
        const float vx1 = (float)(1.0 - (double)vx0);
        w11 = __fmul_rn(__fmul_rn(vy1, vx1), v);
        w01 = __fmul_rn(__fmul_rn(vy0, vx1), v);
        w10 = __fmul_rn(__fmul_rn(vy1, vx0), v);
        w00 = __fmul_rn(__fmul_rn(vy0, vx0), v);
        c0 = ixp + 1;
    }
    const long long p = ((long long)f * height + y) * width + x;
    orient[p] = best_o;
    col0[p] = c0;
    weights[4 * p + 0] = w11;
    weights[4 * p + 1] = w01;
    weights[4 * p + 2] = w10;
    weights[4 * p + 3] = w00;
}

// hist (N, cells_nr + 2, cells_nc + 2, 18) float32: padded orientation histograms.
extern "C" __global__ void fhog_hist(const int* orient, const float* weights, const int* col0, int n, int height,
                                     int width, int cell_size, int vis_nr, int vis_nc, int cells_nr, int cells_nc,
                                     float* hist) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y * blockDim.y + threadIdx.y;
    const int f = blockIdx.z;
    const int hr = cells_nr + 2, hc = cells_nc + 2;
    if (c >= hc || r >= hr || f >= n) return;
    float h[FHOG_BINS];
    for (int o = 0; o < FHOG_BINS; ++o) h[o] = 0.0f;
    // rows whose taps reach padded row r: iyp + 1 == r or iyp + 2 == r; x likewise through col0
    const int y_lo = max(1, (r - 2) * cell_size), y_hi = min(vis_nr - 1, (r + 1) * cell_size);
    const int x_lo = max(1, (c - 2) * cell_size), x_hi = min(vis_nc - 1, (c + 1) * cell_size);
    const float cs = (float)cell_size;
    for (int y = y_lo; y <= y_hi; ++y) {
        const float yp = (float)(((double)(float)y + 0.5) / (double)cs - 0.5);
        const int r0 = (int)floorf(yp) + 1;
        const int dr = r - r0;
        if (dr != 0 && dr != 1) continue;
        for (int x = x_lo; x <= x_hi; ++x) {
            const long long p = ((long long)f * height + y) * width + x;
            const int dc = c - col0[p];
            if (dc != 0 && dc != 1) continue;
            // dlib adds w11 to (r0, c0), w01 to (r0 + 1, c0), w10 to (r0, c0 + 1), w00 to (r0 + 1, c0 + 1)
            const float w = weights[4 * p + (dc == 0 ? (dr == 0 ? 0 : 1) : (dr == 0 ? 2 : 3))];
            const int o = orient[p];
            h[o] = __fadd_rn(h[o], w);
        }
    }
    float* out = hist + (((long long)f * hr + r) * hc + c) * FHOG_BINS;
    for (int o = 0; o < FHOG_BINS; ++o) out[o] = h[o];
}

// norm (N, cells_nr, cells_nc) float32: sum over 9 orientations of (h[o] + h[o + 9])^2.
extern "C" __global__ void fhog_norm(const float* hist, int n, int cells_nr, int cells_nc, float* norm) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y * blockDim.y + threadIdx.y;
    const int f = blockIdx.z;
    if (c >= cells_nc || r >= cells_nr || f >= n) return;
    const float* h = hist + (((long long)f * (cells_nr + 2) + r + 1) * (cells_nc + 2) + c + 1) * FHOG_BINS;
    float acc = 0.0f;
    for (int o = 0; o < 9; ++o) {
        const float s = __fadd_rn(h[o], h[o + 9]);
        acc = __fadd_rn(acc, __fmul_rn(s, s));
    }
    norm[((long long)f * cells_nr + r) * cells_nc + c] = acc;
}

__device__ __forceinline__ float fhog_sum4(const float* a) {
    // dlib's sum(simd4f) on SSE2: (a0 + a2) + (a1 + a3)
    return __fadd_rn(__fadd_rn(a[0], a[2]), __fadd_rn(a[1], a[3]));
}

// out (N, hog_nr * hog_nc * 31) float32, cells row by row, channels contiguous.
extern "C" __global__ void fhog_features(const float* hist, const float* norm, int n, int cells_nr, int cells_nc,
                                         float* out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int f = blockIdx.z;
    const int hog_nr = cells_nr - 2, hog_nc = cells_nc - 2;
    if (x >= hog_nc || y >= hog_nr || f >= n) return;
    const float* nm = norm + (long long)f * cells_nr * cells_nc;
#define NM(r, c) nm[(r) * cells_nc + (c)]
    // the 4 blocks around cell (y + 1, x + 1), lanes of dlib's z1 + z2 + z3 + z4
    float s[4];
    s[0] = __fadd_rn(__fadd_rn(__fadd_rn(NM(y + 1, x + 1), NM(y + 1, x + 2)), NM(y + 2, x + 1)), NM(y + 2, x + 2));
    s[1] = __fadd_rn(__fadd_rn(__fadd_rn(NM(y, x + 1), NM(y, x + 2)), NM(y + 1, x + 1)), NM(y + 1, x + 2));
    s[2] = __fadd_rn(__fadd_rn(__fadd_rn(NM(y + 1, x), NM(y + 1, x + 1)), NM(y + 2, x)), NM(y + 2, x + 1));
    s[3] = __fadd_rn(__fadd_rn(__fadd_rn(NM(y, x), NM(y, x + 1)), NM(y + 1, x)), NM(y + 1, x + 1));
#undef NM
    float nn[4], nv[4], t[4], lane[4];
    for (int k = 0; k < 4; ++k) {
        nn[k] = __fmul_rn(0.2f, sqrtf(__fadd_rn(s[k], 0.0001f)));
        nv[k] = __fdiv_rn(0.1f, nn[k]);
        t[k] = 0.0f;
    }
    const float* h = hist + (((long long)f * (cells_nr + 2) + y + 2) * (cells_nc + 2) + x + 2) * FHOG_BINS;
    float* o_ = out + (((long long)f * hog_nr + y) * hog_nc + x) * FHOG_CHANNELS;
    for (int o0 = 0; o0 < 18; o0 += 3) {
        for (int k = 0; k < 4; ++k) {
            const float h0 = __fmul_rn(fminf(h[o0], nn[k]), nv[k]);
            const float h1 = __fmul_rn(fminf(h[o0 + 1], nn[k]), nv[k]);
            const float h2 = __fmul_rn(fminf(h[o0 + 2], nn[k]), nv[k]);
            t[k] = __fadd_rn(t[k], __fadd_rn(__fadd_rn(h0, h1), h2));
        }
        for (int o = o0; o < o0 + 3; ++o) {
            for (int k = 0; k < 4; ++k) lane[k] = __fmul_rn(fminf(h[o], nn[k]), nv[k]);
            o_[o] = fhog_sum4(lane);
        }
    }
    for (int o = 0; o < 9; ++o) {
        const float sm = __fadd_rn(h[o], h[o + 9]);
        for (int k = 0; k < 4; ++k) lane[k] = __fmul_rn(fminf(sm, nn[k]), nv[k]);
        o_[18 + o] = fhog_sum4(lane);
    }
    const float tex = (float)(2 * 0.2357);
    for (int k = 0; k < 4; ++k) o_[27 + k] = __fmul_rn(t[k], tex);
}
