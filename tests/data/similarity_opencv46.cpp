// Oracle for tests/data/similarity_opencv46.npz (see make_similarity_opencv46.py): OpenFace's own
// AlignShapesWithScale (RotationHelpers.h, compiled from OpenFace's header as its build compiles it)
// and the Matx22f::inv(DECOMP_LU) that Patch_experts::Response applies to it, over the shape pairs
// of a binary file.  Input: int32 count, then per pair int32 n, n x 2 float32 src, n x 2 float32 dst.
// Output: per pair 8 float32 (the similarity, then its inverse, row-major).
#include "RotationHelpers.h"
#include "oracle_io.h"

int main(int argc, char** argv)
{
    OracleFiles files;
    if (const int status = open_oracle_files(argc, argv, 2, "IN OUT", files)) return status;
    FILE *in = files.in, *out = files.out;
    for (int c = 0; c < files.count; ++c) {
        int n = 0;
        if (fread(&n, 4, 1, in) != 1) return 1;
        cv::Mat_<float> src(n, 2), dst(n, 2);
        if (fread(src.data, 4, n * 2, in) != (size_t)n * 2 || fread(dst.data, 4, n * 2, in) != (size_t)n * 2) return 1;
        const cv::Matx22f sim = Utilities::AlignShapesWithScale(src, dst);
        const cv::Matx22f inverse = sim.inv(cv::DECOMP_LU);
        fwrite(sim.val, 4, 4, out);
        fwrite(inverse.val, 4, 4, out);
    }
    return 0;
}
