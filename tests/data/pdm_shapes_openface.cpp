// Oracle for tests/data/pdm_shapes_openface.npz (see make_pdm_shapes_openface.py): OpenFace's own
// PDM::CalcShape3D (OpenBLAS sgemm) and PDM::CalcShape2D (its fused rotation and projection), linked from
// OpenFace's compiled objects.  Arguments: PDM file, input, output.  Input: int32 count, int32 modes, then per
// case 6 global and `modes` local float32 parameters.  Output: per case the 2D shape (2n float32: all x, then
// all y) and the 3D shape (3n float32).
#include "PDM.h"
#include "oracle_io.h"

int main(int argc, char** argv)
{
    OracleFiles files;
    if (const int status = open_oracle_files(argc, argv, 3, "PDM IN OUT", files)) return status;
    FILE *in = files.in, *out = files.out;
    int modes = 0;
    if (fread(&modes, 4, 1, in) != 1) return 1;
    LandmarkDetector::PDM pdm;
    pdm.Read(argv[1]);
    for (int c = 0; c < files.count; ++c) {
        float g[6];
        cv::Mat_<float> local(modes, 1);
        if (fread(g, 4, 6, in) != 6 || fread(local.data, 4, modes, in) != (size_t)modes) return 1;
        cv::Mat_<float> shape_2d, shape_3d;
        pdm.CalcShape2D(shape_2d, local, cv::Vec6f(g[0], g[1], g[2], g[3], g[4], g[5]));
        pdm.CalcShape3D(shape_3d, local);
        fwrite(shape_2d.data, 4, shape_2d.total(), out);
        fwrite(shape_3d.data, 4, shape_3d.total(), out);
    }
    return 0;
}
