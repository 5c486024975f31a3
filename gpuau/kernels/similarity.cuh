// Similarity (scale x rotation) between two shapes and its inverse, computed by one thread.  Twin:
// gpuau/cpu/similarity.py, whose docstring lists the arithmetic.  Port of AlignShapesWithScale /
// AlignShapesKabsch2D (OpenFace's RotationHelpers.h) with the arithmetic of the OpenCV 4.x calls
// they make (cv::mean, cv::sum's AVX2 order, small-matrix gemm, JacobiSVDImpl_<float>) and the
// Matx22f::inv(DECOMP_LU) of Patch_experts::Response, its determinant fused as OpenFace's build
// fuses it.  Only + - * / and sqrt, in the twin's order, no contraction (--fmad=false) but the one
// fmaf: bit for bit the twin's on the GPU and in the emulator.

typedef unsigned long long u64;

// OpenCV's hypot template (lapack.cpp), double.
__device__ double cv_hypot(double a, double b)
{
    a = fabs(a);
    b = fabs(b);
    if (a > b) {
        b /= a;
        return a * sqrt(1.0 + b * b);
    }
    if (b > 0) {
        a /= b;
        return b * sqrt(1.0 + a * a);
    }
    return 0.0;
}

__device__ float sq(const float* v, int i) { return v[i] * v[i]; }

// cv::sum of the float squares of v[0 .. count-1] (AVX2 Sum_SIMD<float, double> lanes, then groups of 4 in float).
__device__ double cv_sum_squares(const float* v, int count)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int x = 0;
    for (; x <= count - 16; x += 16) {
        for (int j = 0; j < 4; ++j) {
            acc[j] += (double)sq(v, x + j) + (double)sq(v, x + 8 + j);
            acc[4 + j] += (double)sq(v, x + 4 + j) + (double)sq(v, x + 12 + j);
        }
    }
    double s = 0.0;
    for (int j = 0; j < 8; ++j) s += acc[j];
    for (; x <= count - 4; x += 4) s += (double)(((sq(v, x) + sq(v, x + 1)) + sq(v, x + 2)) + sq(v, x + 3));
    for (; x < count; ++x) s += (double)sq(v, x);
    return s;
}

// shape (n x 2, row-major) minus its column means into buf, divided by its RMS scale (returned).
__device__ float centred_scaled(const float* shape, int n, float* buf)
{
    for (int c = 0; c < 2; ++c) {
        double s = 0.0;
        for (int i = 0; i < n; ++i) s += (double)shape[2 * i + c];
        const float mean = (float)(s * (1.0 / n));
        for (int i = 0; i < n; ++i) buf[2 * i + c] = shape[2 * i + c] - mean;
    }
    const float scale = (float)sqrt(cv_sum_squares(buf, 2 * n) / n);
    const float inv = (float)(1.0 / (double)scale);
    for (int k = 0; k < 2 * n; ++k) buf[k] = buf[k] * inv;
    return scale;
}

// cv::SVD of the 2x2 a (row-major): u, w, vt as _SVDcompute + JacobiSVDImpl_<float> give them.
__device__ void svd2(const float* a, float* u, float* w, float* vt)
{
    float at[4] = {a[0], a[2], a[1], a[3]};
    vt[0] = 1.0f; vt[1] = 0.0f; vt[2] = 0.0f; vt[3] = 1.0f;
    double W[2];
    for (int i = 0; i < 2; ++i) W[i] = (double)at[2 * i] * at[2 * i] + (double)at[2 * i + 1] * at[2 * i + 1];
    const float eps = 2.0f * 1.1920928955078125e-07f;
    for (int it = 0; it < 30; ++it) {
        double p = (double)at[0] * at[2] + (double)at[1] * at[3];
        const double wa = W[0], wb = W[1];
        if (fabs(p) <= (double)eps * sqrt(wa * wb)) break;
        p *= 2.0;
        const double beta = wa - wb, gamma = cv_hypot(p, beta);
        double delta;
        float c, s;
        if (beta < 0) {
            delta = (gamma - beta) * 0.5;
            s = (float)sqrt(delta / gamma);
            c = (float)(p / (gamma * (double)s * 2.0));
        } else {
            c = (float)sqrt((gamma + beta) / (gamma * 2.0));
            s = (float)(p / (gamma * (double)c * 2.0));
            delta = p * p * 0.5 / (gamma + beta);
        }
        W[0] += delta;
        W[1] -= delta;
        const bool keep_norms = it % 2 != 0 && W[0] > 0 && W[1] > 0;
        double norm0 = 0.0, norm1 = 0.0;
        for (int k = 0; k < 2; ++k) {
            const float t0 = c * at[k] + s * at[2 + k];
            const float t1 = -s * at[k] + c * at[2 + k];
            at[k] = t0;
            at[2 + k] = t1;
            norm0 += (double)t0 * t0;
            norm1 += (double)t1 * t1;
        }
        if (!keep_norms) {
            W[0] = norm0;
            W[1] = norm1;
        }
        for (int k = 0; k < 2; ++k) {
            const float t0 = c * vt[k] + s * vt[2 + k];
            const float t1 = -s * vt[k] + c * vt[2 + k];
            vt[k] = t0;
            vt[2 + k] = t1;
        }
    }
    for (int i = 0; i < 2; ++i) W[i] = sqrt((double)at[2 * i] * at[2 * i] + (double)at[2 * i + 1] * at[2 * i + 1]);
    if (W[0] < W[1]) {
        double t = W[0]; W[0] = W[1]; W[1] = t;
        for (int k = 0; k < 2; ++k) {
            float ta = at[k]; at[k] = at[2 + k]; at[2 + k] = ta;
            float tv = vt[k]; vt[k] = vt[2 + k]; vt[2 + k] = tv;
        }
    }
    w[0] = (float)W[0];
    w[1] = (float)W[1];
    u64 state = 0x12345678ull;
    for (int i = 0; i < 2; ++i) {
        double sd = W[i];
        while (sd <= 1.1754943508222875e-38) {
            // a zero singular value: a random +-1/m vector, orthogonalised against the rows before
            const float val0 = 0.5f;
            for (int k = 0; k < 2; ++k) {
                state = (state & 0xFFFFFFFFull) * 4164903690ull + (state >> 32);
                at[2 * i + k] = (state & 256ull) ? val0 : -val0;
            }
            for (int rep = 0; rep < 2; ++rep) {
                for (int j = 0; j < i; ++j) {
                    sd = 0.0;
                    for (int k = 0; k < 2; ++k) sd += at[2 * i + k] * at[2 * j + k];
                    float asum = 0.0f;
                    for (int k = 0; k < 2; ++k) {
                        const float t = (float)(at[2 * i + k] - sd * at[2 * j + k]);
                        at[2 * i + k] = t;
                        asum += fabsf(t);
                    }
                    asum = asum != 0.0f ? 1.0f / asum : 0.0f;
                    for (int k = 0; k < 2; ++k) at[2 * i + k] *= asum;
                }
            }
            sd = sqrt((double)at[2 * i] * at[2 * i] + (double)at[2 * i + 1] * at[2 * i + 1]);
        }
        const float s = (float)(1.0 / sd);
        for (int k = 0; k < 2; ++k) at[2 * i + k] *= s;
    }
    u[0] = at[0]; u[1] = at[2]; u[2] = at[1]; u[3] = at[3];
}

// out = a b for row-major 2x2 floats, each entry summed in double (OpenCV's small gemm).
__device__ void gemm2(const float* a, const float* b, float* out)
{
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            out[2 * i + j] = (float)((double)a[2 * i] * b[j] + (double)a[2 * i + 1] * b[2 + j]);
}

// The similarity of the shape pair src, dst (n points, x y interleaved) and its inverse: o[0..3] and o[4..7]
// (row-major 2x2).  bs, bd: scratch of 2n floats each.  Not inlined: with n a constant of the caller, the
// unrolled loops would spill.
__device__ __noinline__ void similarity_pair(const float* src, const float* dst, int n, float* bs, float* bd, float* o)
{
    const float s_src = centred_scaled(src, n, bs);
    const float s_dst = centred_scaled(dst, n, bd);
    const float scale = s_dst / s_src;
    float m[4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
            double acc = 0.0;
            for (int k = 0; k < n; ++k) acc += (double)bs[2 * k + i] * bd[2 * k + j];
            m[2 * i + j] = (float)acc;
        }
    float u[4], w[2], vt[4];
    svd2(m, u, w, vt);
    float v[4] = {vt[0], vt[2], vt[1], vt[3]}, ut[4] = {u[0], u[2], u[1], u[3]}, p[4], r[4];
    gemm2(v, ut, p);
    const double det = (double)p[0] * p[3] - (double)p[1] * p[2];
    if (det <= 0) {  // corr = diag(1, -1): no reflection
        v[1] = -v[1];
        v[3] = -v[3];
    }
    gemm2(v, ut, r);
    const float a00 = scale * r[0], a01 = scale * r[1], a10 = scale * r[2], a11 = scale * r[3];
    o[0] = a00; o[1] = a01; o[2] = a10; o[3] = a11;
    float d = fmaf(a00, a11, -(a01 * a10));
    if (d == 0.0f) {
        o[4] = o[5] = o[6] = o[7] = 0.0f;
        return;
    }
    d = 1.0f / d;
    o[4] = a11 * d; o[5] = -a01 * d; o[6] = -a10 * d; o[7] = a00 * d;
}
