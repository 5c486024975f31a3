"""Parser of OpenFace's MTCNN CNN files (PNet.dat, RNet.dat, ONet.dat)."""
import struct

import numpy as np
import pytest

from gpuau.models.mtcnn_file import MTCNN_DIR, load_mtcnn, parse_mtcnn_cnn
from gpuau.models.store import model_file

EXPECTED = {
    # (kind, shape of the main array) per layer
    "PNet": [("conv", (10, 3, 3, 3)), ("prelu", (10,)), ("max_pool", (2, 2, 2, 2)), ("conv", (16, 10, 3, 3)),
             ("prelu", (16,)), ("conv", (32, 16, 3, 3)), ("prelu", (32,)), ("fc", (6, 32))],
    "RNet": [("conv", (28, 3, 3, 3)), ("prelu", (28,)), ("max_pool", (3, 3, 2, 2)), ("conv", (48, 28, 3, 3)),
             ("prelu", (48,)), ("max_pool", (3, 3, 2, 2)), ("conv", (64, 48, 2, 2)), ("prelu", (64,)),
             ("fc", (128, 576)), ("prelu", (128,)), ("fc", (6, 128))],
    "ONet": [("conv", (32, 3, 3, 3)), ("prelu", (32,)), ("max_pool", (3, 3, 2, 2)), ("conv", (64, 32, 3, 3)),
             ("prelu", (64,)), ("max_pool", (3, 3, 2, 2)), ("conv", (64, 64, 3, 3)), ("prelu", (64,)),
             ("max_pool", (2, 2, 2, 2)), ("conv", (128, 64, 2, 2)), ("prelu", (128,)), ("fc", (256, 1152)),
             ("prelu", (256,)), ("fc", (16, 256))],
}


@pytest.fixture(scope="module")
def mtcnn(models_dir):
    return load_mtcnn(models_dir)


@pytest.mark.parametrize("name", ["PNet", "RNet", "ONet"])
def test_layer_sequence_and_shapes(mtcnn, name):
    net = getattr(mtcnn, name.lower())
    assert [l.kind for l in net.layers] == [k for k, _ in EXPECTED[name]]
    for layer, (kind, shape) in zip(net.layers, EXPECTED[name]):
        if kind == "max_pool":
            assert tuple(net[f"{layer.key}/pool"]) == shape  # kernel x, y, stride x, y
        elif kind == "prelu":
            assert net[f"{layer.key}/slope"].shape == shape
        else:
            assert net[f"{layer.key}/weight"].shape == shape
            assert net[f"{layer.key}/bias"].shape == (shape[0],)
            assert net[f"{layer.key}/weight"].dtype == np.float32
    assert len(net.sha256) == 64


def test_values_match_the_bytes(models_dir):
    """A few values located by hand in the byte layout of PNet.dat and ONet.dat."""
    path = model_file(f"{MTCNN_DIR}/PNet.dat", models_dir)
    raw = path.read_bytes()
    f32 = lambda off: struct.unpack_from("<f", raw, off)[0]  # noqa: E731
    a = parse_mtcnn_cnn(path)
    # header: depth, type=0, n_in=3, n_out=10, then 10 biases at byte 16
    assert struct.unpack_from("<4i", raw, 0) == (8, 0, 3, 10)
    assert a["00/bias"][0] == f32(16) and a["00/bias"][9] == f32(16 + 36)
    # first kernel record (input map 0, kernel 0) at byte 56: rows, cols, CV_32F, then row-major values
    assert struct.unpack_from("<3i", raw, 56) == (3, 3, 5)
    assert a["00/weight"][0, 0, 0, 0] == f32(68) and a["00/weight"][0, 0, 0, 1] == f32(72)
    assert a["00/weight"][0, 0, 1, 0] == f32(68 + 12)
    # second record is (input map 0, kernel 1): input-major order in the file
    assert a["00/weight"][1, 0, 0, 0] == f32(68 + 36 + 12)
    # ONet: the file ends with the last fc's weight matrix stored (n_in, n_out) = (256, 16)
    onet_raw = model_file(f"{MTCNN_DIR}/ONet.dat", models_dir).read_bytes()
    onet = parse_mtcnn_cnn(model_file(f"{MTCNN_DIR}/ONet.dat", models_dir))
    last = struct.unpack_from("<f", onet_raw, len(onet_raw) - 4)[0]
    first_of_row1 = struct.unpack_from("<f", onet_raw, len(onet_raw) - 4 * 256 * 16 + 4 * 16)[0]
    assert onet["13/weight"][15, 255] == last
    assert onet["13/weight"][0, 1] == first_of_row1


def test_truncated_file_is_rejected(tmp_path, models_dir):
    src = model_file(f"{MTCNN_DIR}/RNet.dat", models_dir).read_bytes()
    bad = tmp_path / "RNet.dat"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(ValueError, match="truncated"):
        parse_mtcnn_cnn(bad)
