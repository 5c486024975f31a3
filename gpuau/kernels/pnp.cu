// Head-pose refinement by perspective-n-point for a batch of faces, one thread per face.  Twin:
// gpuau/cpu/pnp.py.  Port of cv::solvePnP(SOLVEPNP_ITERATIVE, useExtrinsicGuess) as OpenCV 4.x runs
// it: cvFindExtrinsicCameraParams2 from the guess, CvLevMarq (at most 20 accepted steps, stop on a
// relative change under FLT_EPSILON, JtJ's diagonal damped by 1 + 10^k), cvProjectPoints2 without
// distortion and cvRodrigues2 (calibration.cpp, compat_ptsetreg.cpp); the 6 x 6 step is solved by
// Cholesky where OpenCV uses SVD.
//
// Everything is double, in the twin's order of operations and without fused multiply-adds
// (--fmad=false), so a face's result equals the twin's bit for bit where cos, sin, exp and log round
// as the host's libm does (the emulator; CUDA's double versions are within an ulp of it).  A face is
// a few Levenberg-Marquardt steps over its 68 points (16 us on one CPU core): a batch of faces is one
// launch instead of a cv::solvePnP call per face on the host.

#define MAX_ITERATIONS 20
#define EPSILON 1.1920928955078125e-07
#define DBL_EPS 2.220446049250313e-16

// R (9) of the rotation vector r (3) and dRdr (27): dRdr[9 i + k] = d R[k] / d r[i]  (cvRodrigues2).
__device__ void rodrigues(const double* r, double* R, double* dRdr)
{
    const double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const double d_r_x[27] = {0, 0, 0, 0, 0, -1, 0, 1, 0,
                              0, 0, 1, 0, 0, 0, -1, 0, 0,
                              0, -1, 0, 1, 0, 0, 0, 0, 0};
    const double theta = sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
    if (theta < DBL_EPS) {
        for (int k = 0; k < 9; ++k) R[k] = I[k];
        for (int k = 0; k < 27; ++k) dRdr[k] = 0.0;
        dRdr[5] = dRdr[15] = dRdr[19] = -1.0;
        dRdr[7] = dRdr[11] = dRdr[21] = 1.0;
        return;
    }
    const double c = cos(theta), s = sin(theta);
    const double c1 = 1.0 - c;
    const double itheta = 1.0 / theta;
    const double rx = r[0] * itheta, ry = r[1] * itheta, rz = r[2] * itheta;
    const double rrt[9] = {rx * rx, rx * ry, rx * rz, rx * ry, ry * ry, ry * rz, rx * rz, ry * rz, rz * rz};
    const double r_x[9] = {0.0, -rz, ry, rz, 0.0, -rx, -ry, rx, 0.0};
    const double drrt[27] = {rx + rx, ry, rz, ry, 0.0, 0.0, rz, 0.0, 0.0,
                             0.0, rx, 0.0, rx, ry + ry, rz, 0.0, rz, 0.0,
                             0.0, 0.0, rx, 0.0, 0.0, ry, rx, ry, rz + rz};
    for (int k = 0; k < 9; ++k) R[k] = c * I[k] + c1 * rrt[k] + s * r_x[k];
    for (int i = 0; i < 3; ++i) {
        const double ri = i == 0 ? rx : (i == 1 ? ry : rz);
        const double a0 = -s * ri;
        const double a1 = (s - 2.0 * c1 * itheta) * ri;
        const double a2 = c1 * itheta;
        const double a3 = (c - s * itheta) * ri;
        const double a4 = s * itheta;
        for (int k = 0; k < 9; ++k)
            dRdr[9 * i + k] = a0 * I[k] + a1 * rrt[k] + a2 * drrt[9 * i + k] + a3 * r_x[k] + a4 * d_r_x[9 * i + k];
    }
}

// Reprojection error norm at pose p (rvec, tvec) of the n points M against m, and with `jacobian`
// the normal equations JtJ (6 x 6, row-major) and JtErr (6) of the errors projection - m.
__device__ double project(const float* M, const float* m, int n, const double* camera, const double* p,
                          bool jacobian, double* JtJ, double* JtErr)
{
    const double fx = camera[0], fy = camera[1], cx = camera[2], cy = camera[3];
    double R[9], dRdr[27];
    rodrigues(p, R, dRdr);
    if (jacobian) {
        for (int k = 0; k < 36; ++k) JtJ[k] = 0.0;
        for (int k = 0; k < 6; ++k) JtErr[k] = 0.0;
    }
    double sq = 0.0;
    for (int i = 0; i < n; ++i) {
        const double X = (double)M[3 * i], Y = (double)M[3 * i + 1], Z = (double)M[3 * i + 2];
        double x = R[0] * X + R[1] * Y + R[2] * Z + p[3];
        double y = R[3] * X + R[4] * Y + R[5] * Z + p[4];
        double z = R[6] * X + R[7] * Y + R[8] * Z + p[5];
        z = z != 0.0 ? 1.0 / z : 1.0;
        x *= z;
        y *= z;
        const double ex = (x * fx + cx) - (double)m[2 * i];
        const double ey = (y * fy + cy) - (double)m[2 * i + 1];
        sq += ex * ex;
        sq += ey * ey;
        if (!jacobian) continue;
        for (int axis = 0; axis < 2; ++axis) {  // the rows of the point's x and y errors
            const double e = axis == 0 ? ex : ey;
            const double f = axis == 0 ? fx : fy;
            const double v = axis == 0 ? x : y;
            double row[6];
            for (int j = 0; j < 3; ++j) {
                const int d = 9 * j;
                const double dz0 = X * dRdr[d + 6] + Y * dRdr[d + 7] + Z * dRdr[d + 8];
                const double d0 = axis == 0 ? X * dRdr[d] + Y * dRdr[d + 1] + Z * dRdr[d + 2]
                                            : X * dRdr[d + 3] + Y * dRdr[d + 4] + Z * dRdr[d + 5];
                row[j] = f * (z * (d0 - v * dz0));
            }
            row[3] = axis == 0 ? f * z : 0.0;
            row[4] = axis == 0 ? 0.0 : f * z;
            row[5] = f * (-v * z);
            for (int a = 0; a < 6; ++a) {
                for (int b = a; b < 6; ++b) JtJ[6 * a + b] += row[a] * row[b];
                JtErr[a] += row[a] * e;
            }
        }
    }
    if (jacobian)
        for (int a = 0; a < 6; ++a)
            for (int b = 0; b < a; ++b) JtJ[6 * a + b] = JtJ[6 * b + a];
    return sqrt(sq);
}

// p = previous - (JtJ, diagonal times 1 + 10^damping)^-1 JtErr by Cholesky (CvLevMarq::step); a
// matrix that is not positive definite leaves p = previous.
__device__ void lm_step(const double* JtJ, const double* JtErr, int damping, const double* previous, double* p)
{
    const double scale = 1.0 + exp((double)damping * log(10.0));
    double L[36], y[6];
    for (int a = 0; a < 6; ++a) {
        for (int b = 0; b <= a; ++b) {
            double s = a == b ? JtJ[6 * a + b] * scale : JtJ[6 * a + b];
            for (int k = 0; k < b; ++k) s -= L[6 * a + k] * L[6 * b + k];
            if (a == b) {
                if (!(s > 0.0)) {
                    for (int k = 0; k < 6; ++k) p[k] = previous[k];
                    return;
                }
                L[6 * a + a] = sqrt(s);
            } else {
                L[6 * a + b] = s / L[6 * b + b];
            }
        }
    }
    for (int a = 0; a < 6; ++a) {
        double s = JtErr[a];
        for (int k = 0; k < a; ++k) s -= L[6 * a + k] * y[k];
        y[a] = s / L[6 * a + a];
    }
    for (int a = 5; a >= 0; --a) {
        double s = y[a];
        for (int k = a + 1; k < 6; ++k) s -= L[6 * k + a] * y[k];
        y[a] = s / L[6 * a + a];
    }
    for (int a = 0; a < 6; ++a) p[a] = previous[a] - y[a];
}

__device__ double relative_change(const double* p, const double* previous)
{
    double d = 0.0, n = 0.0;
    for (int a = 0; a < 6; ++a) {
        d += (p[a] - previous[a]) * (p[a] - previous[a]);
        n += previous[a] * previous[a];
    }
    return sqrt(d) / (sqrt(n) + DBL_EPS);
}

extern "C" __global__ void solve_pnp(
    const float* object_points,  // (N, n, 3) model points
    const float* image_points,   // (N, n, 2) their image positions
    const float* intrinsics,     // (N, 4) fx, fy, cx, cy
    const float* rvecs,          // (N, 3) initial rotation vectors
    const float* tvecs,          // (N, 3) initial translations
    float* out,                  // (N, 6) refined rvec, tvec
    int n_faces, int n_points)
{
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    if (f >= n_faces) return;
    const float* M = object_points + (long long)f * n_points * 3;
    const float* m = image_points + (long long)f * n_points * 2;
    double camera[4], p[6], previous[6], JtJ[36], JtErr[6];
    for (int a = 0; a < 4; ++a) camera[a] = (double)intrinsics[4 * f + a];
    for (int a = 0; a < 3; ++a) {
        p[a] = (double)rvecs[3 * f + a];
        p[3 + a] = (double)tvecs[3 * f + a];
    }
    for (int a = 0; a < 6; ++a) previous[a] = p[a];
    int damping = -3;
    double previous_error = project(M, m, n_points, camera, p, true, JtJ, JtErr);
    lm_step(JtJ, JtErr, damping, previous, p);
    int iterations = 0;
    while (true) {
        const double error = project(M, m, n_points, camera, p, false, JtJ, JtErr);
        if (error > previous_error) {
            damping += 1;
            if (damping <= 16) {
                lm_step(JtJ, JtErr, damping, previous, p);
                continue;
            }
        }
        damping = damping - 1 > -16 ? damping - 1 : -16;
        iterations += 1;
        if (iterations >= MAX_ITERATIONS || relative_change(p, previous) < EPSILON) break;
        previous_error = error;
        project(M, m, n_points, camera, p, true, JtJ, JtErr);
        for (int a = 0; a < 6; ++a) previous[a] = p[a];
        lm_step(JtJ, JtErr, damping, previous, p);
    }
    for (int a = 0; a < 6; ++a) out[6 * f + a] = (float)p[a];
}
