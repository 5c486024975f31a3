// PDM fitting for a batch of faces, one block per face: CLNF's NU-RLMS at one patch scale
// (nu_rlms) and PDM::CalcParams, landmarks -> PDM parameters (calc_params_batch).  Twins:
// gpuau/cpu/nu_rlms.py (nu_rlms) and gpuau/cpu/pdm_fit.py (calc_params_batch).
// Port of CLNF::NU_RLMS, CLNF::NonVectorisedMeanShift_precalc_kde (LandmarkDetectorModel.cpp) and
// PDM::CalcParams, CalcShape3D, ComputeJacobian / ComputeRigidJacobian, UpdateModelParameters,
// Clamp (PDM.cpp), with Euler2RotationMatrix / RotationMatrix2Euler (RotationHelpers.h) and
// cv::Rodrigues / cv::solve(DECOMP_CHOLESKY).
//
// nu_rlms: mean-shift on the patch experts' response maps alternating with regularised Gauss-Newton
// updates of the PDM parameters, a rigid then a non-rigid pass, then the landmark likelihoods of the
// faces whose fit ends at this scale.  calc_params_batch: Gauss-Newton fit of all parameters to the
// given landmarks (x == 0: missing), regularised by the PDM's eigenvalues, until the error stops falling.
//
// A face's state (parameters, shapes, Jacobian, normal equations) stays in shared memory for its
// whole fit, so a converged face simply leaves its loop (no other face waits on it and nothing
// returns to the host between iterations).  Work is spread over the threads where each output keeps
// the twin's order of operations:
//   * the 3D shape: one thread per row, mean + pc . p summed over the modes in order;
//   * offsets, mean-shifts (each landmark walks its R x R map in raster order), residuals and
//     Jacobian rows: one thread per landmark;
//   * J^T W J (lower triangle) and J^T W r: one thread per entry, summed over the rows in order;
//   * Cholesky (double): one barrier per column, each entry's dot product in order;
//   * the substitutions, the rotation update (Rodrigues and polar factor in double), the clamp and
//     the error sums: thread 0.
// So the results are the twins' bit for bit where the math library rounds as the host's libm does
// (the emulator; CUDA's sinf/atan2f/acos/exp are within an ulp or two of it).  No fused multiply-add
// (--fmad=false) but the fmaf calls of the 3D shape, rotation and projection, where OpenFace's build fuses.
//
// spills: 64 bytes (ptxas saves a few registers of thread 0's serial update around the calls into
// CUDA's slow argument reduction of sinf/cosf/cos/sin: 4-40 bytes, once per iteration, off the
// parallel loops)
// defines: N_POINTS=68 N_MODES=34
// defines: N_POINTS=51 N_MODES=32
// defines: N_POINTS=28 N_MODES=10

#include "sgemm_order.cuh"
#include "similarity.cuh"

#define N N_POINTS
#define M N_MODES
#define K (6 + M)
#define THREADS 128
#define KDE_STEP 0.1f

// ---- rotations (float32, as PDM.cpp; Rodrigues and the polar factor in double, as OpenCV) ----

__device__ void euler_to_rotation(const float* e, float* r) {
    const float s1 = sinf(e[0]), s2 = sinf(e[1]), s3 = sinf(e[2]);
    const float c1 = cosf(e[0]), c2 = cosf(e[1]), c3 = cosf(e[2]);
    r[0] = c2 * c3;
    r[1] = -c2 * s3;
    r[2] = s2;
    r[3] = fmaf(c1, s3, (c3 * s1) * s2);  // fused as OpenFace's build fuses Euler2RotationMatrix
    r[4] = fmaf(-(s1 * s2), s3, c1 * c3);
    r[5] = -c2 * s1;
    r[6] = fmaf(s1, s3, -((c1 * c3) * s2));
    r[7] = fmaf(c1 * s2, s3, c3 * s1);
    r[8] = c1 * c2;
}

__device__ void rotation_to_euler(const float* r, float* out) {
    const float q0 = sqrtf(1.0f + r[0] + r[4] + r[8]) / 2.0f;
    const float q1 = (r[7] - r[5]) / (4.0f * q0);
    const float q2 = (r[2] - r[6]) / (4.0f * q0);
    const float q3 = (r[3] - r[1]) / (4.0f * q0);
    float t1 = 2.0f * (q0 * q2 + q1 * q3);
    if (t1 > 1.0f) t1 = 1.0f;
    if (t1 < -1.0f) t1 = -1.0f;
    out[1] = asinf(t1);
    out[0] = atan2f(2.0f * (q0 * q1 - q2 * q3), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3);
    out[2] = atan2f(2.0f * (q0 * q3 - q1 * q2), q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3);
}

// Orthogonal polar factor U V^T of a 3 x 3 matrix (row-major, in place, double): Newton's
// iteration Q <- (Q + Q^-T) / 2.
__device__ void polar_rotation(double* q) {
    for (int it = 0; it < 50; ++it) {
        const double d = q[0] * (q[4] * q[8] - q[5] * q[7]) - q[1] * (q[3] * q[8] - q[5] * q[6]) +
                         q[2] * (q[3] * q[7] - q[4] * q[6]);
        double c[9];
        c[0] = q[4] * q[8] - q[5] * q[7];
        c[1] = q[5] * q[6] - q[3] * q[8];
        c[2] = q[3] * q[7] - q[4] * q[6];
        c[3] = q[2] * q[7] - q[1] * q[8];
        c[4] = q[0] * q[8] - q[2] * q[6];
        c[5] = q[1] * q[6] - q[0] * q[7];
        c[6] = q[1] * q[5] - q[2] * q[4];
        c[7] = q[2] * q[3] - q[0] * q[5];
        c[8] = q[0] * q[4] - q[1] * q[3];
        double change = 0.0;
        for (int i = 0; i < 9; ++i) {
            const double v = 0.5 * (q[i] + c[i] / d);
            const double step = fabs(v - q[i]);
            if (step > change) change = step;
            q[i] = v;
        }
        if (change < 1e-15) break;
    }
}

// cv::Rodrigues, matrix -> axis-angle (computed in double, returned as float).
__device__ void rodrigues_to_vector(const float* r32, float* out) {
    double r[9];
    for (int i = 0; i < 9; ++i) r[i] = (double)r32[i];
    polar_rotation(r);
    double rx = r[7] - r[5], ry = r[2] - r[6], rz = r[3] - r[1];
    const double s = sqrt((rx * rx + ry * ry + rz * rz) * 0.25);
    double c = (r[0] + r[4] + r[8] - 1.0) * 0.5;
    c = c < -1.0 ? -1.0 : (c > 1.0 ? 1.0 : c);
    double theta = acos(c);
    if (s < 1e-5) {
        if (c > 0) {
            rx = 0.0;
            ry = 0.0;
            rz = 0.0;
        } else {
            rx = sqrt(fmax((r[0] + 1.0) * 0.5, 0.0));
            ry = sqrt(fmax((r[4] + 1.0) * 0.5, 0.0)) * (r[1] < 0 ? -1.0 : 1.0);
            rz = sqrt(fmax((r[8] + 1.0) * 0.5, 0.0)) * (r[2] < 0 ? -1.0 : 1.0);
            if (fabs(rx) < fabs(ry) && fabs(rx) < fabs(rz) && (r[5] > 0) != (ry * rz > 0)) rz = -rz;
            theta /= sqrt(rx * rx + ry * ry + rz * rz);
            rx *= theta;
            ry *= theta;
            rz *= theta;
        }
    } else {
        const double vth = 1.0 / (2.0 * s) * theta;
        rx *= vth;
        ry *= vth;
        rz *= vth;
    }
    out[0] = (float)rx;
    out[1] = (float)ry;
    out[2] = (float)rz;
}

// cv::Rodrigues, axis-angle -> matrix (computed in double, returned as float).
__device__ void rodrigues_to_matrix(const float* v, float* out) {
    double rx = v[0], ry = v[1], rz = v[2];
    const double theta = sqrt(rx * rx + ry * ry + rz * rz);
    if (theta < 2.220446049250313e-16) {
        for (int i = 0; i < 9; ++i) out[i] = (i % 4 == 0) ? 1.0f : 0.0f;
        return;
    }
    const double c = cos(theta), s = sin(theta), c1 = 1.0 - c, it = 1.0 / theta;
    rx *= it;
    ry *= it;
    rz *= it;
    out[0] = (float)(c + c1 * rx * rx);
    out[1] = (float)(c1 * rx * ry - s * rz);
    out[2] = (float)(c1 * rx * rz + s * ry);
    out[3] = (float)(c1 * rx * ry + s * rz);
    out[4] = (float)(c + c1 * ry * ry);
    out[5] = (float)(c1 * ry * rz - s * rx);
    out[6] = (float)(c1 * rx * rz - s * ry);
    out[7] = (float)(c1 * ry * rz + s * rx);
    out[8] = (float)(c + c1 * rz * rz);
}

// PDM::UpdateModelParameters: g (6) and p (M) in place; r1 is the rotation of g's Euler angles;
// delta has k entries (6: rigid).  Rotation composed on the right.
__device__ void update_parameters(const float* delta, int k, const float* r1, float* g, float* p) {
    float r2[9], r3[9], v[3], rr[9], euler[3];
    double q[9] = {1.0, -(double)delta[3], (double)delta[2], (double)delta[3], 1.0, -(double)delta[1],
                   -(double)delta[2], (double)delta[1], 1.0};
    polar_rotation(q);  // PDM::Orthonormalise (the matrices it gets have a positive determinant)
    for (int i = 0; i < 9; ++i) r2[i] = (float)q[i];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            r3[3 * i + j] = r1[3 * i] * r2[j] + r1[3 * i + 1] * r2[3 + j] + r1[3 * i + 2] * r2[6 + j];
    rodrigues_to_vector(r3, v);
    rodrigues_to_matrix(v, rr);
    rotation_to_euler(rr, euler);
    if (euler[0] != euler[0] || euler[1] != euler[1] || euler[2] != euler[2]) euler[0] = euler[1] = euler[2] = 0.0f;  // NaN
    g[0] += delta[0];
    g[4] += delta[4];
    g[5] += delta[5];
    g[1] = euler[0];
    g[2] = euler[1];
    g[3] = euler[2];
    if (k > 6)
        for (int j = 0; j < M; ++j) p[j] = p[j] + delta[6 + j];
}

// PDM::Clamp: local params limited to +-3 standard deviations.
__device__ void clamp(const float* eig, float* p) {
    for (int j = 0; j < M; ++j) {
        const float limit = 3.0f * sqrtf(eig[j]);
        if (fabsf(p[j]) > limit) p[j] = p[j] > 0 ? limit : -limit;
    }
}

// pc_row . p rounded as CalcShape3D's OpenBLAS sgemm (one row of p, M modes): with 32 modes or more, LANES
// fused multiply-add chains over the modes k = l, l + 16, ..., added by lane_sum in adjacent pairs for the
// rows taken four at a time (by_four) and in halves for the rest; with fewer, one chain in order.
// Twin: pdm_fit.shape_3d.
__device__ float sgemm_row(const float* pc_row, const float* p, bool by_four) {
    if (DOT_FROM(1, M) != 0) {
        float acc = 0.0f;
#pragma unroll 1
        for (int k = 0; k < M; ++k) acc = fmaf(p[k], pc_row[k], acc);
        return acc;
    }
    float lanes[LANES];
#pragma unroll
    for (int l = 0; l < LANES; ++l) lanes[l] = 0.0f;
#pragma unroll 1
    for (int k0 = 0; k0 < M; k0 += LANES)
#pragma unroll
        for (int l = 0; l < LANES; ++l)
            if (k0 + l < M) lanes[l] = fmaf(p[k0 + l], pc_row[k0 + l], lanes[l]);
    return lane_sum(lanes, by_four);
}

// ---- block-cooperative steps: every thread of the block calls them ----

// 3D shape of p at nv points (point i of the fit is PDM point idx[i]; idx null: point i): s3 (nv, 3).
// Ends with a barrier.
__device__ void shape_3d(const float* mean, const float* pc, const float* p, const int* idx, int nv, float* s3) {
    for (int q = threadIdx.x; q < 3 * nv; q += THREADS) {
        const int d = q / nv, i = q % nv;
        const int row = d * N + (idx ? idx[i] : i);
        s3[3 * i + d] = sgemm_row(pc + row * M, p, d * nv + i < ((3 * nv) & ~3)) + mean[row];
    }
    __syncthreads();
}

// Weak-perspective projection of one point by g with rotation rot.
__device__ void project(const float* s3i, const float* g, const float* rot, float* x, float* y) {
    // fused as PDM::CalcShape2D is in OpenFace's build
    *x = fmaf(g[0], fmaf(rot[2], s3i[2], fmaf(rot[0], s3i[0], rot[1] * s3i[1])), g[4]);
    *y = fmaf(g[0], fmaf(rot[5], s3i[2], fmaf(rot[3], s3i[0], rot[4] * s3i[1])), g[5]);
}

// Jacobian rows of one point (PDM point src, 3D shape s3i) w.r.t. the first k params: jx (x row), jy (y row).
__device__ void jacobian_rows(const float* s3i, const float* pc, int src, const float* rot, float s, int k, float* jx,
                              float* jy) {
    const float x = s3i[0], y = s3i[1], z = s3i[2];
    jx[0] = x * rot[0] + y * rot[1] + z * rot[2];
    jy[0] = x * rot[3] + y * rot[4] + z * rot[5];
    jx[1] = s * (y * rot[2] - z * rot[1]);
    jy[1] = s * (y * rot[5] - z * rot[4]);
    jx[2] = -s * (x * rot[2] - z * rot[0]);
    jy[2] = -s * (x * rot[5] - z * rot[3]);
    jx[3] = s * (x * rot[1] - y * rot[0]);
    jy[3] = s * (x * rot[4] - y * rot[3]);
    jx[4] = 1.0f;
    jy[4] = 0.0f;
    jx[5] = 0.0f;
    jy[5] = 1.0f;
    for (int j = 0; j < k - 6; ++j) {
        const float vx = pc[src * M + j], vy = pc[(N + src) * M + j], vz = pc[(2 * N + src) * M + j];
        jx[6 + j] = s * (rot[0] * vx + rot[1] * vy + rot[2] * vz);
        jy[6 + j] = s * (rot[3] * vx + rot[4] * vy + rot[5] * vz);
    }
}

// J^T W J (its lower triangle, row stride k: the Cholesky reads no other entry) and J^T W r over the
// jac rows 0..rows-1 (w null: ones; rows with zero weight or zero weighted entry skipped, as the twin
// does), then the regularisation of the modes when k > 6: reg_j = reg_num / eig[j] added to
// h[6+j][6+j] and reg_j * p[j] subtracted from rhs[6+j].  Ends with a barrier.
__device__ void normal_equations(const float* jac, const float* w, const float* resid, int rows, int k, float reg_num,
                                 const float* eig, const float* p, float* h, float* rhs) {
    for (int e = threadIdx.x; e < k * k + k; e += THREADS) {
        const int a = e < k * k ? e / k : e - k * k;
        const int b = e < k * k ? e % k : -1;
        if (b > a) continue;
        float acc = 0.0f;
        for (int row = 0; row < rows; ++row) {
            const float wr = w ? w[row] : 1.0f;
            if (wr == 0.0f) continue;
            const float ja = jac[row * k + a] * wr;
            if (ja == 0.0f) continue;
            acc += ja * (b >= 0 ? jac[row * k + b] : resid[row]);
        }
        if (k > 6 && a >= 6 && (b < 0 || b == a)) {
            const float reg = reg_num / eig[a - 6];
            if (b < 0) acc -= reg * p[a - 6];
            else acc += reg;
        }
        if (b >= 0) h[e] = acc;
        else rhs[a] = acc;
    }
    __syncthreads();
}

// Cholesky factor (double, row stride k) of h's lower triangle, as cv::solve(DECOMP_CHOLESKY) computes
// it: column by column, one barrier each; the thread that finishes row j + 1's last off-diagonal
// entry also takes its diagonal.  Ends with a barrier.
__device__ void cholesky(const float* h, int k, double* lo) {
    if (threadIdx.x == 0) lo[0] = sqrt(fmax((double)h[0], 1e-30));
    __syncthreads();
    for (int j = 0; j < k - 1; ++j) {
        for (int i = j + 1 + threadIdx.x; i < k; i += THREADS) {
            double acc = (double)h[i * k + j];
            for (int q = 0; q < j; ++q) acc -= lo[i * k + q] * lo[j * k + q];
            lo[i * k + j] = acc / lo[j * k + j];
            if (i == j + 1) {
                double d = (double)h[i * k + i];
                for (int q = 0; q < i; ++q) d -= lo[i * k + q] * lo[i * k + q];
                lo[i * k + i] = sqrt(fmax(d, 1e-30));
            }
        }
        __syncthreads();
    }
}

// L L^T x = rhs by forward and back substitution in double; x rounded to float32 into upd.  One thread.
__device__ void substitute(const double* lo, const float* rhs, int k, double* y, double* x, float* upd) {
    for (int i = 0; i < k; ++i) {
        double acc = (double)rhs[i];
        for (int q = 0; q < i; ++q) acc -= lo[i * k + q] * y[q];
        y[i] = acc / lo[i * k + i];
    }
    for (int i = k - 1; i >= 0; --i) {
        double acc = y[i];
        for (int q = i + 1; q < k; ++q) acc -= lo[q * k + i] * x[q];
        x[i] = acc / lo[i * k + i];
        upd[i] = (float)x[i];
    }
}

// A face's working memory (shared): parameters, shapes, Jacobian, normal equations, Cholesky factor.
struct Fit {
    float g[6], p[M], rot[9];
    float s3[3 * N], cur[2 * N], resid[2 * N], w[2 * N];
    float h[K * K], rhs[K], upd[K];
    double y[K], x[K];
    union {
        float jac[2 * N * K];  // Jacobian rows (all x, then all y), row stride k
        double lo[K * K];      // Cholesky factor of J^T W J (after the normal equations are formed)
    } work;
};

// One Gauss-Newton step of the first k params from the Jacobian and residuals in fit (rows rows):
// normal equations with weights w (null: ones) and the modes regularised by reg_num / eig, Cholesky,
// the update (scaled by step unless 1) applied to g and p, which are then clamped if asked.
__device__ void gauss_newton_step(Fit& fit, const float* w, int rows, int k, float reg_num, const float* eig,
                                  float step, bool clamped) {
    normal_equations(fit.work.jac, w, fit.resid, rows, k, reg_num, eig, fit.p, fit.h, fit.rhs);
    cholesky(fit.h, k, fit.work.lo);
    if (threadIdx.x == 0) {
        substitute(fit.work.lo, fit.rhs, k, fit.y, fit.x, fit.upd);
        if (step != 1.0f)
            for (int j = 0; j < k; ++j) fit.upd[j] = step * fit.upd[j];
        update_parameters(fit.upd, k, fit.rot, fit.g, fit.p);
        if (clamped) clamp(eig, fit.p);
    }
    __syncthreads();
}

// ---- response maps (twins of gpuau/cpu/mean_shift.py) ----

// KDE mean-shift of one landmark's R x R map at offset (dx, dy): float32 running sums in raster
// order (CLNF::NonVectorisedMeanShift_precalc_kde).
__device__ void mean_shift(const float* resp, const float* kde, int r, float dx, float dy, float* msx, float* msy) {
    const int stride = (int)((double)((float)r / KDE_STEP) + 0.5);
    const float hi = (float)r - KDE_STEP;
    if (!(dx >= 0.0f)) dx = 0.0f;  // a NaN too: the KDE table's first kernel, not a read outside it
    if (!(dy >= 0.0f)) dy = 0.0f;
    if (dx > hi) dx = hi;
    if (dy > hi) dy = hi;
    const int closest_col = (int)((double)(dy / KDE_STEP) + 0.5);
    const int closest_row = (int)((double)(dx / KDE_STEP) + 0.5);
    const int rr = r * r;
    const float* kernel = kde + (long long)(closest_row * stride + closest_col) * rr;
    float mx = 0.0f, my = 0.0f, s = 0.0f;
    for (int ii = 0, k = 0; ii < r; ++ii)
        for (int jj = 0; jj < r; ++jj, ++k) {
            const float v = resp[k] * kernel[k];
            s += v;
            mx += v * (float)jj;
            my += v * (float)ii;
        }
    *msx = mx / s - dx;
    *msy = my / s - dy;
}

// The map weighted by exp(-0.5 d^2 / sigma^2) around (dx, dy): double exponential, float32 sum.
__device__ float landmark_likelihood(const float* resp, int r, float dx, float dy, double s2) {
    float s = 0.0f;
    for (int ii = 0; ii < r; ++ii) {
        const float vx = (dy - (float)ii) * (dy - (float)ii);
        for (int jj = 0; jj < r; ++jj) {
            const float vy = (dx - (float)jj) * (dx - (float)jj);
            s += (float)((double)resp[ii * r + jj] * exp(-0.5 * (double)(vx + vy) / s2));
        }
    }
    return s;
}

// L2 distance of the projected shape (fit.s3 by fit.g, fit.rot) from the n target landmarks (all x,
// then all y): float32 squares summed in double, as PDM::CalcParams measures it.  One thread.
__device__ float landmark_error(const Fit& fit, const float* target, int n) {
    double err = 0.0;
    for (int d = 0; d < 2; ++d)
        for (int i = 0; i < n; ++i) {
            float x, y;
            project(fit.s3 + 3 * i, fit.g, fit.rot, &x, &y);
            const float e = (d == 0 ? x : y) - target[d * n + i];
            err += e * e;
        }
    return (float)sqrt(err);
}

// Block f's face: its parameters from g_in (F, 6) and p_in (F, M) into g and p, its rotation into rot and its 3D
// shape into s3 (N, 3).  Every thread of the block calls it; it ends with a barrier.
__device__ void face_shape_3d(const float* mean, const float* pc, const float* g_in, const float* p_in, float* g,
                              float* p, float* rot, float* s3) {
    const int f = blockIdx.x, tid = threadIdx.x;
    if (tid < 6) g[tid] = g_in[f * 6 + tid];
    for (int j = tid; j < M; j += THREADS) p[j] = p_in[f * M + j];
    __syncthreads();
    if (tid == 0) euler_to_rotation(g + 1, rot);
    shape_3d(mean, pc, p, nullptr, N, s3);  // ends with a barrier
}

// ---- kernels ----

// nu_rlms: mean (3N) and pc (3N, M) in the PDM's x-block, y-block, z-block layout; eig (M).
// responses (F, N, r, r); g (F, 6) and p (F, M): initial params; base (F, N, 2): shapes the maps are
// centred on; img_to_ref, ref_to_img (F, 2, 2); visible (F, N) int32; weights (F, 2N) NU-RLMS
// weights; kde (S*S, r*r) of this window and sigma; half = (r - 1) / 2; last (F) int32: faces that
// skip the next scale.  Out: g_out (F, 6), p_out (F, M); ends (F) int32: last, or the scale after
// the rigid pass below 0.30; ll (F): model log-likelihood of the faces that end here (else 0);
// lhoods (F, N): their landmark likelihoods (-1e8 for invisible landmarks and the other faces).
extern "C" __global__ void __launch_bounds__(THREADS)
    nu_rlms(const float* mean, const float* pc, const float* eig, const float* responses, int r,
            const float* g_in, const float* p_in, const float* base, const float* img_to_ref,
            const float* ref_to_img, const int* visible, const float* weights, float reg_factor, int n_iter,
            const float* kde, float half, float sigma, const int* last, float* g_out, float* p_out, int* ends,
            float* ll, float* lhoods) {
    __shared__ Fit fit;
    __shared__ float i2r[4], r2i[4], prev[2 * N], dxs[N], dys[N];
    __shared__ int stop, end;

    const int f = blockIdx.x, tid = threadIdx.x;
    const int rr = r * r;
    const float* maps = responses + (long long)f * N * rr;
    const int* vis = visible + f * N;
    if (tid < 6) fit.g[tid] = g_in[f * 6 + tid];
    for (int j = tid; j < M; j += THREADS) fit.p[j] = p_in[f * M + j];
    if (tid < 4) {
        i2r[tid] = img_to_ref[f * 4 + tid];
        r2i[tid] = ref_to_img[f * 4 + tid];
    }
    for (int i = tid; i < N; i += THREADS) {
        dxs[i] = 0.0f;
        dys[i] = 0.0f;
        const bool v = vis[i] != 0;
        fit.w[i] = v ? weights[f * 2 * N + i] : 0.0f;
        fit.w[N + i] = v ? weights[f * 2 * N + N + i] : 0.0f;
    }
    if (tid == 0) end = last[f];
    __syncthreads();

    for (int rigid = 1; rigid >= 0; --rigid) {
        const int k = rigid ? 6 : K;
        for (int it = 0; it < n_iter; ++it) {
            if (tid == 0) euler_to_rotation(fit.g + 1, fit.rot);
            shape_3d(mean, pc, fit.p, nullptr, N, fit.s3);
            for (int i = tid; i < N; i += THREADS) project(fit.s3 + 3 * i, fit.g, fit.rot, &fit.cur[2 * i], &fit.cur[2 * i + 1]);
            __syncthreads();
            if (tid == 0) {  // converged: the shape moved less than 0.01 px
                stop = 0;
                if (it > 0) {
                    double d = 0.0;
                    for (int i = 0; i < N; ++i) {
                        const double ex = (double)fit.cur[2 * i] - prev[2 * i];
                        const double ey = (double)fit.cur[2 * i + 1] - prev[2 * i + 1];
                        d += ex * ex + ey * ey;
                    }
                    stop = sqrt(d) < 0.01;
                }
            }
            __syncthreads();
            if (stop) break;
            for (int i = tid; i < N; i += THREADS) {
                const float cx = fit.cur[2 * i], cy = fit.cur[2 * i + 1];
                prev[2 * i] = cx;
                prev[2 * i + 1] = cy;
                const float ox = cx - base[(f * N + i) * 2], oy = cy - base[(f * N + i) * 2 + 1];
                dxs[i] = (ox * i2r[0] + oy * i2r[1]) + half;
                dys[i] = (ox * i2r[2] + oy * i2r[3]) + half;
                float sx = 0.0f, sy = 0.0f;
                if (vis[i] != 0) mean_shift(maps + (long long)i * rr, kde, r, dxs[i], dys[i], &sx, &sy);
                fit.resid[i] = sx * r2i[0] + sy * r2i[1];  // the mean-shift in the image
                fit.resid[N + i] = sx * r2i[2] + sy * r2i[3];
                jacobian_rows(fit.s3 + 3 * i, pc, i, fit.rot, fit.g[0], k, fit.work.jac + i * k,
                              fit.work.jac + (N + i) * k);
            }
            __syncthreads();
            gauss_newton_step(fit, fit.w, 2 * N, k, reg_factor, eig, 1.0f, true);
        }
        if (rigid && tid == 0 && fit.g[0] < 0.30f) end = 1;
        __syncthreads();
    }

    if (tid < 6) g_out[f * 6 + tid] = fit.g[tid];
    for (int j = tid; j < M; j += THREADS) p_out[f * M + j] = fit.p[j];
    if (tid == 0) ends[f] = end;
    const double s2 = (double)(sigma * sigma);
    for (int i = tid; i < N; i += THREADS)
        lhoods[f * N + i] = (end && vis[i] != 0) ? landmark_likelihood(maps + (long long)i * rr, r, dxs[i], dys[i], s2)
                                                 : -1e8f;
    __syncthreads();
    if (tid == 0) {  // mean of log(likelihood + 1e-8) over the visible landmarks, accumulated in float32
        float acc = 0.0f;
        int count = 0;
        for (int i = 0; i < N; ++i)
            if (vis[i] != 0) {
                acc = (float)((double)acc + log((double)lhoods[f * N + i] + 1e-8));
                ++count;
            }
        ll[f] = end ? acc / (float)count : 0.0f;
    }
}

// calc_params_batch: mean, pc, eig as above; targets (F, N, 2) landmarks (x == 0: missing); rotations (F, 3)
// initial Euler angles.  Out: g_out (F, 6), p_out (F, M) (zeros for a face without landmarks).
extern "C" __global__ void __launch_bounds__(THREADS)
    calc_params_batch(const float* mean, const float* pc, const float* eig, const float* targets,
                      const float* rotations, float* g_out, float* p_out) {
    __shared__ Fit fit;
    __shared__ int idx[N];
    __shared__ float target[2 * N];  // the present landmarks: all x, then all y
    __shared__ int nv, stop;
    __shared__ float cur_error;

    const int f = blockIdx.x, tid = threadIdx.x;
    const float* t_in = targets + (long long)f * N * 2;
    if (tid == 0) {
        nv = 0;
        for (int i = 0; i < N; ++i)
            if (t_in[2 * i] != 0.0f) idx[nv++] = i;
        for (int i = 0; i < nv; ++i) {
            target[i] = t_in[2 * idx[i]];
            target[nv + i] = t_in[2 * idx[i] + 1];
        }
        for (int i = 0; i < 6; ++i) fit.g[i] = i == 0 ? 1.0f : 0.0f;  // the mean shape, unrotated, at scale 1
        euler_to_rotation(fit.g + 1, fit.rot);
    }
    for (int j = tid; j < M; j += THREADS) fit.p[j] = 0.0f;
    __syncthreads();
    const int n = nv;
    if (n == 0) {
        if (tid < 6) g_out[f * 6 + tid] = 0.0f;
        for (int j = tid; j < M; j += THREADS) p_out[f * M + j] = 0.0f;
        return;
    }
    shape_3d(mean, pc, fit.p, idx, n, fit.s3);
    if (tid == 0) {  // scale from the extents of the landmarks and of the mean shape, translation to their centre
        float min_x = target[0], max_x = target[0], min_y = target[n], max_y = target[n];
        float mx0, mx1, my0, my1;
        project(fit.s3, fit.g, fit.rot, &mx0, &my0);
        mx1 = mx0;
        my1 = my0;
        for (int i = 0; i < n; ++i) {
            min_x = fminf(min_x, target[i]);
            max_x = fmaxf(max_x, target[i]);
            min_y = fminf(min_y, target[n + i]);
            max_y = fmaxf(max_y, target[n + i]);
            float x, y;
            project(fit.s3 + 3 * i, fit.g, fit.rot, &x, &y);
            mx0 = fminf(mx0, x);
            mx1 = fmaxf(mx1, x);
            my0 = fminf(my0, y);
            my1 = fmaxf(my1, y);
        }
        const float width = fabsf(min_x - max_x), height = fabsf(min_y - max_y);
        fit.g[0] = ((width / (mx1 - mx0)) + (height / (my1 - my0))) / 2.0f;
        for (int a = 0; a < 3; ++a) fit.g[1 + a] = rotations[f * 3 + a];
        fit.g[4] = (min_x + max_x) / 2.0f;
        fit.g[5] = (min_y + max_y) / 2.0f;
        euler_to_rotation(fit.g + 1, fit.rot);
        cur_error = landmark_error(fit, target, n);
    }
    __syncthreads();
    int not_improved = 0;
    for (int it = 0; it < 1000; ++it) {
        shape_3d(mean, pc, fit.p, idx, n, fit.s3);
        for (int i = tid; i < n; i += THREADS) {
            float x, y;
            project(fit.s3 + 3 * i, fit.g, fit.rot, &x, &y);
            fit.resid[i] = target[i] - x;
            fit.resid[n + i] = target[n + i] - y;
            jacobian_rows(fit.s3 + 3 * i, pc, idx[i], fit.rot, fit.g[0], K, fit.work.jac + i * K,
                          fit.work.jac + (n + i) * K);
        }
        __syncthreads();
        gauss_newton_step(fit, nullptr, 2 * n, K, 1.0f, eig, 0.75f, false);
        if (tid == 0) {  // the error with the new global params and the previous local ones, as OpenFace
            euler_to_rotation(fit.g + 1, fit.rot);
            const float error = landmark_error(fit, target, n);
            stop = 0;
            if (0.999f * cur_error < error) stop = ++not_improved == 3;
            cur_error = error;
        }
        __syncthreads();
        if (stop) break;
    }
    if (tid < 6) g_out[f * 6 + tid] = fit.g[tid];
    for (int j = tid; j < M; j += THREADS) p_out[f * M + j] = fit.p[j];
}

// shape_2d_batch: mean, pc as above; g (F, 6), p (F, M).  Out: shapes (F, N, 2), PDM::CalcShape2D.  Twin:
// gpuau/cpu/pdm_fit.py's shape_2d_batch.
extern "C" __global__ void __launch_bounds__(THREADS)
    shape_2d_batch(const float* mean, const float* pc, const float* g_in, const float* p_in, float* shapes) {
    __shared__ float g[6], p[M], rot[9], s3[3 * N];
    const int f = blockIdx.x, tid = threadIdx.x;
    face_shape_3d(mean, pc, g_in, p_in, g, p, rot, s3);
    for (int i = tid; i < N; i += THREADS)
        project(s3 + 3 * i, g, rot, &shapes[(f * N + i) * 2], &shapes[(f * N + i) * 2 + 1]);
}

// response_areas: mean, pc as above; centers (n_views, 3) double: the views' head-pose centres; g (F, 6),
// p (F, M); patch_scaling: scale of the reference shape; size: side of the areas of interest.  Out: views (F)
// int: GetViewIdx; base (F, N, 2): CalcShape2D of each face; sims (F, 2, 2, 2): the similarity of the
// shape to the reference shape (CalcShape2D at patch_scaling, no rotation) and its inverse; matrices
// (F, N, 2, 3): each landmark's area of interest, destination -> image.  Twin: gpuau/cpu/response_areas.py.
extern "C" __global__ void __launch_bounds__(THREADS)
    response_areas(const float* mean, const float* pc, const double* centers, int n_views, const float* g_in,
                   const float* p_in, float patch_scaling, int size, int* views, float* base, float* sims,
                   float* matrices) {
    __shared__ float g[6], g_ref[6], p[M], rot[9], rot_ref[9], s3[3 * N], cur[2 * N], ref[2 * N], sim[8];
    __shared__ float scratch_src[2 * N], scratch_dst[2 * N];
    const int f = blockIdx.x, tid = threadIdx.x;
    if (tid < 6) g_ref[tid] = tid == 0 ? patch_scaling : 0.0f;
    if (tid == THREADS - 1) {  // the reference shape's rotation: none (read after face_shape_3d's barriers)
        const float no_rotation[3] = {0.0f, 0.0f, 0.0f};
        euler_to_rotation(no_rotation, rot_ref);
    }
    face_shape_3d(mean, pc, g_in, p_in, g, p, rot, s3);
    if (tid == 0) {
        // the nearest view centre (first of equals): float32 distance from double differences, the sum
        // fused as Patch_experts.o fuses GetViewIdx's
        int best_view = 0;
        float best = 0.0f;
        for (int v = 0; v < n_views; ++v) {
            const float d1 = (float)((double)g[1] - centers[3 * v]);
            const float d2 = (float)((double)g[2] - centers[3 * v + 1]);
            const float d3 = (float)((double)g[3] - centers[3 * v + 2]);
            const float d = fmaf(d3, d3, fmaf(d1, d1, d2 * d2));
            if (v == 0 || d < best) {
                best = d;
                best_view = v;
            }
        }
        views[f] = best_view;
    }
    for (int i = tid; i < N; i += THREADS) {
        project(s3 + 3 * i, g, rot, &cur[2 * i], &cur[2 * i + 1]);
        project(s3 + 3 * i, g_ref, rot_ref, &ref[2 * i], &ref[2 * i + 1]);
        base[(f * N + i) * 2] = cur[2 * i];
        base[(f * N + i) * 2 + 1] = cur[2 * i + 1];
    }
    __syncthreads();
    if (tid == 0) similarity_pair(cur, ref, N, scratch_src, scratch_dst, sim);
    __syncthreads();
    if (tid < 8) sims[f * 8 + tid] = sim[tid];
    const float a1 = sim[4], b1 = -sim[5], half = ((float)size - 1.0f) / 2.0f;
    for (int i = tid; i < N; i += THREADS) {
        float* out = matrices + (f * N + i) * 6;
        out[0] = a1;
        out[1] = -b1;
        out[2] = cur[2 * i] - a1 * half + b1 * half;
        out[3] = b1;
        out[4] = a1;
        out[5] = cur[2 * i + 1] - a1 * half - b1 * half;
    }
}
