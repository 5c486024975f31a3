// Mean-shift over the kernel density estimate (KDE) of patch expert response maps, and the
// landmark likelihoods of the fit; twin of gpuau/cpu/mean_shift.py.
// Port of CLNF::NonVectorisedMeanShift_precalc_kde and the landmark likelihood loop of
// CLNF::NU_RLMS, LandmarkDetectorModel.cpp.
//
// One thread per landmark walks its R x R response map in raster order with float32 running sums,
// the twin's order, so the results are bit for bit the twin's (no fused multiply-add: the build
// uses --fmad=false).  The Gaussian kernels of mean_shift come from the precomputed KDE table
// (gpuau.cpu.mean_shift.kde_table): row (closest dx step) * stride + (closest dy step).

// responses (n, r, r) float32; dxs, dys (n) float32 offsets inside the response windows;
// visible (n) int32; kde (S*S, r*r) float32; out (n, 2) float32 mean shifts (msx, msy), zero for
// invisible landmarks.
extern "C" __global__ void mean_shift(const float* responses, const float* dxs, const float* dys,
                                      const int* visible, const float* kde, int n, int r, float* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (visible[i] == 0) {
        out[2 * i] = 0.0f;
        out[2 * i + 1] = 0.0f;
        return;
    }
    const float step = 0.1f;
    const int stride = (int)((double)((float)r / step) + 0.5);
    const float hi = (float)r - step;
    float dx = dxs[i], dy = dys[i];
    if (dx < 0.0f) dx = 0.0f;
    if (dy < 0.0f) dy = 0.0f;
    if (dx > hi) dx = hi;
    if (dy > hi) dy = hi;
    const int closest_col = (int)((double)(dy / step) + 0.5);
    const int closest_row = (int)((double)(dx / step) + 0.5);
    const int rr = r * r;
    const float* kernel = kde + (long long)(closest_row * stride + closest_col) * rr;
    const float* resp = responses + (long long)i * rr;
    float mx = 0.0f, my = 0.0f, s = 0.0f;
    for (int ii = 0, k = 0; ii < r; ++ii)
        for (int jj = 0; jj < r; ++jj, ++k) {
            const float v = resp[k] * kernel[k];
            s += v;
            mx += v * (float)jj;
            my += v * (float)ii;
        }
    out[2 * i] = mx / s - dx;
    out[2 * i + 1] = my / s - dy;
}

// out (n) float32: sum of the response map weighted by exp(-0.5 d^2 / sigma^2) around (dx, dy)
// (double exponential, float32 sum); -1e8 for invisible landmarks.
extern "C" __global__ void landmark_likelihoods(const float* responses, const float* dxs, const float* dys,
                                                const int* visible, int n, int r, float sigma, float* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (visible[i] == 0) {
        out[i] = -1e8f;
        return;
    }
    const double s2 = (double)(sigma * sigma);
    const float dx = dxs[i], dy = dys[i];
    const float* resp = responses + (long long)i * r * r;
    float s = 0.0f;
    for (int ii = 0; ii < r; ++ii) {
        const float vx = (dy - (float)ii) * (dy - (float)ii);
        for (int jj = 0; jj < r; ++jj) {
            const float vy = (dx - (float)jj) * (dx - (float)jj);
            s += (float)((double)resp[ii * r + jj] * exp(-0.5 * (double)(vx + vy) / s2));
        }
    }
    out[i] = s;
}
