"""FeatureExtraction's ``.hog`` file and aligned faces (``-hogalign``, ``-simalign``: ``gpuau analyze --hog
--aligned``).

The files' layout byte by byte, their atomic replacement, resume, the batched engine writing what the single-stream
pipeline writes, and FaceLandmarkImg's per-face files for an image.  Their values against OpenFace's own files:
tests/test_end_to_end.py.
"""
import errno
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuau.cli import main
from gpuau.corpus import CorpusRun
from gpuau.engine import Engine, Job
from gpuau.io import AlignedFaces, FaceRecorder, read_hog, read_openface_csv
from gpuau.pipeline import Analyzer
from gpuau.video import array_frames
from media import read_frames, write_clip


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4464), dtype=np.float32), rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_hog_records_and_face_names_are_feature_extractions(tmp_path):
    hog, faces = _faces(3)
    with FaceRecorder(tmp_path / "clip.csv", hog=True, aligned=True) as rec:
        rec.add(hog[:2], faces[:2], [True, False])
        rec.add(hog[2:], faces[2:], [True])
        rec.commit()
    data = (tmp_path / "clip.hog").read_bytes()
    assert len(data) == 3 * (16 + 4 * 4464)
    # RecorderHOG::Write: int32 columns, rows, channels, float32 +-1, then the values
    assert struct.unpack_from("<3if", data, 0) == (12, 12, 31, 1.0)
    assert struct.unpack_from("<3if", data, 16 + 4 * 4464) == (12, 12, 31, -1.0)
    assert np.frombuffer(data, np.float32, 4464, 16).tobytes() == hog[0].tobytes()
    values, success = read_hog(tmp_path / "clip.hog")
    np.testing.assert_array_equal(values, hog)
    assert success.tolist() == [True, False, True]
    names = sorted(os.listdir(tmp_path / "clip_aligned"))
    assert names == ["frame_det_00_000001.bmp", "frame_det_00_000002.bmp", "frame_det_00_000003.bmp"]
    for name, face in zip(names, faces):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "clip_aligned" / name)), face)
    assert sorted(os.listdir(tmp_path)) == ["clip.hog", "clip_aligned"]  # no temporary file left


def test_write_aligned_takes_a_yes_a_no_or_the_faces(tmp_path):
    assert AlignedFaces.of(True) == AlignedFaces.of(np.True_) == AlignedFaces() == AlignedFaces.of(AlignedFaces())
    assert AlignedFaces.of(False) is AlignedFaces.of(np.False_) is AlignedFaces.of(None) is None
    for wrong in (1, "yes", "False"):
        with pytest.raises(TypeError, match="write_aligned=.*use True, False or gpuau.io.AlignedFaces"):
            Analyzer("cpu", write_aligned=wrong)


def test_an_images_faces_are_numbered_from_zero(tmp_path):
    hog, faces = _faces(2)
    with FaceRecorder(tmp_path / "photo.csv", aligned=True, image=True) as rec:
        rec.add(hog, faces, [True, True])
        rec.commit()
    assert sorted(os.listdir(tmp_path / "photo_aligned")) == ["face_det_000000.bmp", "face_det_000001.bmp"]
    assert not (tmp_path / "photo.hog").exists()


def test_outputs_appear_only_when_committed_and_replace_older_ones(tmp_path):
    old = tmp_path / "clip_aligned"
    old.mkdir()
    (old / "frame_det_00_000009.bmp").write_bytes(b"stale")
    (tmp_path / "clip.hog").write_bytes(b"old")
    hog, faces = _faces(1)
    with pytest.raises(RuntimeError):
        with FaceRecorder(tmp_path / "clip.csv", hog=True, aligned=True) as rec:
            rec.add(hog, faces, [True])
            raise RuntimeError("the video failed")
    assert sorted(os.listdir(tmp_path)) == ["clip.hog", "clip_aligned"]  # the old outputs, untouched
    assert (tmp_path / "clip.hog").read_bytes() == b"old" and os.listdir(old) == ["frame_det_00_000009.bmp"]
    with FaceRecorder(tmp_path / "clip.csv", hog=True, aligned=True) as rec:
        rec.add(hog, faces, [True])
        rec.commit()
    assert sorted(os.listdir(tmp_path)) == ["clip.hog", "clip_aligned"]
    assert os.listdir(old) == ["frame_det_00_000001.bmp"]
    assert oct(old.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # a plain mkdir's permissions


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_read_hog_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "cut.hog"
    hog, faces = _faces(2)
    with FaceRecorder(tmp_path / "cut.csv", hog=True) as rec:
        rec.add(hog, faces, [True, True])
        rec.commit()
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="cut.hog"):
        read_hog(path)


def test_read_hog_names_the_file_a_cut_or_a_mismatched_header_spoils(sequence_outputs, tmp_path):
    """A real .hog file (the image sequence's 30 records) cut inside its first header or inside a record, a record whose
    header gives other sizes than the first one's, and a first header that does not divide the file into records:
    each the ValueError that read_hog documents, naming the file.  A failure means a spoilt file read as descriptors
    (shifted or mixed records), or an error that does not say which file."""
    data = (sequence_outputs / "image_sequence.hog").read_bytes()
    record = 16 + 4 * 4464
    assert len(data) == 30 * record and read_hog(sequence_outputs / "image_sequence.hog")[0].shape == (30, 4464)
    path = tmp_path / "spoilt.hog"

    def spoilt(content, message):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}"):
            read_hog(path)

    spoilt(data[:10], r"truncated \.hog file \(10 bytes\)")
    spoilt(data[:-2000], rf"not a \.hog file of 12x12x31 records \({len(data) - 2000} bytes\)")
    spoilt(data[:record + 16], rf"not a \.hog file of 12x12x31 records \({record + 16} bytes\)")
    header = bytearray(data)
    struct.pack_into("<3i", header, 17 * record, 12, 12, 30)  # record 18 claims 30 channels
    spoilt(bytes(header), "records of different sizes")
    struct.pack_into("<3i", header, 17 * record, 31, 12, 12)  # the same record size, the fields in another order
    spoilt(bytes(header), "records of different sizes")
    header = bytearray(data)
    struct.pack_into("<3i", header, 0, 12, 12, 30)  # the first record claims 30 channels
    spoilt(bytes(header), rf"not a \.hog file of 12x12x30 records \({len(data)} bytes\)")
    struct.pack_into("<3i", header, 0, 0, 12, 31)
    spoilt(bytes(header), rf"not a \.hog file of 0x12x31 records \({len(data)} bytes\)")
    struct.pack_into("<3i", header, 0, -12, -12, 31)  # sizes whose product is a record's
    spoilt(bytes(header), rf"not a \.hog file of -12x-12x31 records \({len(data)} bytes\)")


def test_resume_redoes_a_table_without_the_faces_asked_for(media_dir, tmp_path):
    (tmp_path / "default.csv").write_text("done before\n")
    run = CorpusRun([media_dir / "default.wmv"], tmp_path, progress=False, write_hog=True)
    assert len(run.todo) == 1
    (tmp_path / "default.hog").write_bytes(b"")
    run = CorpusRun([media_dir / "default.wmv"], tmp_path, progress=False, write_hog=True)
    assert run.todo == [] and run.report.outcomes[0].status == "skipped"
    run = CorpusRun([media_dir / "default.wmv"], tmp_path, progress=False, write_hog=True, write_aligned=True)
    assert len(run.todo) == 1


@pytest.fixture(scope="module")
def sequence_outputs(media_dir, tmp_path_factory):
    """The 30-image sequence through the single-stream pipeline (``--quality fast``)."""
    out = tmp_path_factory.mktemp("sequence")
    an = Analyzer("cpu", quality="fast", write_hog=True, write_aligned=True)
    an.write_video(media_dir / "image_sequence", out / "image_sequence.csv")
    return out


def test_sequence_outputs_follow_the_table(sequence_outputs):
    table = read_openface_csv(sequence_outputs / "image_sequence.csv")
    hog, success = read_hog(sequence_outputs / "image_sequence.hog")
    assert len(hog) == len(table["frame"]) == 30 and (success == (table["success"] == 1)).all()
    assert len(os.listdir(sequence_outputs / "image_sequence_aligned")) == 30


@pytest.mark.parametrize("device", ["cpu", "emulated"])
def test_engine_writes_the_pipelines_files(sequence_outputs, media_dir, tmp_path, device):
    """On the CPU, and with the device arrays of the CUDA kernels' emulator (what a GPU reads back)."""
    engine = Engine(device, quality="fast", streams=2, write_hog=True, write_aligned=True)
    outcomes = list(engine.run([Job(media_dir / "image_sequence", tmp_path / "image_sequence.csv"),
                                Job(media_dir / "image_sequence", tmp_path / "again.csv")]))
    assert [o.status for o in outcomes] == ["done", "done"]
    expected = (sequence_outputs / "image_sequence.hog").read_bytes()
    assert (tmp_path / "image_sequence.hog").read_bytes() == expected == (tmp_path / "again.hog").read_bytes()
    for name in sorted(os.listdir(sequence_outputs / "image_sequence_aligned")):
        expected = (sequence_outputs / "image_sequence_aligned" / name).read_bytes()
        assert (tmp_path / "image_sequence_aligned" / name).read_bytes() == expected
        assert (tmp_path / "again_aligned" / name).read_bytes() == expected


def test_a_table_without_aus_still_gets_the_faces_asked_for(sequence_outputs, media_dir, tmp_path):
    """The AU stage runs for the .hog file and aligned faces of a table without AU columns (FeatureExtraction -pose
    -hogalign -simalign), in the single-stream pipeline and the engine."""
    for engine in (False, True):
        out = tmp_path / f"engine-{engine}"
        settings = dict(quality="fast", write_hog=True, write_aligned=True, columns=["pose"])
        if engine:
            [o] = Engine("cpu", streams=2, **settings).run([Job(media_dir / "image_sequence",
                                                                out / "image_sequence.csv")])
            assert o.status == "done"
        else:
            Analyzer("cpu", **settings).write_video(media_dir / "image_sequence", out / "image_sequence.csv")
        assert (out / "image_sequence.hog").read_bytes() == (sequence_outputs / "image_sequence.hog").read_bytes()
        assert sorted(os.listdir(out / "image_sequence_aligned")) == sorted(
            os.listdir(sequence_outputs / "image_sequence_aligned"))
        assert "AU01_r" not in (out / "image_sequence.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("multi_face", [False, True])
def test_a_table_that_cannot_open_leaves_no_face_temporaries(media_dir, tmp_path, monkeypatch, multi_face):
    """The .hog file and aligned faces open first: a failure after them (here the table's opening) drops them."""
    import gpuau.io

    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(gpuau.io, "RowWriter", refuse)
    an = Analyzer("cpu", quality="fast", write_hog=True, write_aligned=True, multi_face=multi_face)
    with pytest.raises(OSError, match="Permission denied"):
        an.write_video(media_dir / "image_sequence", tmp_path / "image_sequence.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_streams_failing_recorder_fails_that_stream_only(sequence_outputs, media_dir, tmp_path, monkeypatch):
    """A write error in one stream's faces (EIO, a quota) ends that stream, as the single-stream pipeline ends that
    input; the other streams' outputs are written whole."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.parent.name.startswith(".again_aligned") and self.name == "frame_det_00_000005.bmp":
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    engine = Engine("cpu", quality="fast", streams=2, write_hog=True, write_aligned=True)
    outcomes = list(engine.run([Job(media_dir / "image_sequence", tmp_path / "image_sequence.csv"),
                                Job(media_dir / "image_sequence", tmp_path / "again.csv")]))
    assert [o.status for o in outcomes] == ["failed", "done"] and "Input/output error" in outcomes[0].reason
    assert sorted(os.listdir(tmp_path)) == ["image_sequence.csv", "image_sequence.hog", "image_sequence_aligned"]
    assert (tmp_path / "image_sequence.hog").read_bytes() == (sequence_outputs / "image_sequence.hog").read_bytes()


def test_other_faces_are_the_same_bytes_from_the_emulated_cuda_kernels(media_dir, tmp_path):
    """Faces of another size and scale (masked: warp.cu's masked warp) and unmasked (its plain warp), through the
    engine on the CPU and with the CUDA kernels' emulator."""
    frames = sorted((media_dir / "image_sequence").iterdir())[:3]
    images = [cv2.imread(str(f)) for f in frames]
    for options in (AlignedFaces(size=150, scale=0.9), AlignedFaces(size=160, masked=False)):
        written = {}
        for device in ("cpu", "emulated"):
            out = tmp_path / f"{device}{options.size}"
            engine = Engine(device, quality="fast", write_aligned=options)
            (outcome,) = engine.run([Job(list(array_frames(images, 30.0)), out / "seq.csv", name="seq")])
            assert outcome.status == "done"
            written[device] = {p.name: p.read_bytes() for p in (out / "seq_aligned").iterdir()}
        assert len(written["cpu"]) == 3 and written["cpu"] == written["emulated"]


def test_an_image_gets_a_record_and_a_face_per_face_found(media_dir, tmp_path):
    assert main(["analyze", str(media_dir / "sample2.jpg"), "-o", str(tmp_path), "--hog", "--aligned", "-q"]) == 0
    table = read_openface_csv(tmp_path / "sample2.csv")
    hog, _ = read_hog(tmp_path / "sample2.hog")
    faces = sorted(os.listdir(tmp_path / "sample2_aligned"))
    assert len(table["face"]) == len(hog) == len(faces) >= 1
    assert faces == [f"face_det_{k:06d}.bmp" for k in range(len(faces))]


@pytest.fixture(scope="module")
def gap_clip(media_dir, tmp_path_factory):
    """default.wmv's first 6 frames with frames 4 and 5 grey (no face), lossless."""
    frames = read_frames(media_dir / "default.wmv", 6)
    frames[3:5] = [np.full_like(frames[0], 90)] * 2
    return write_clip(tmp_path_factory.mktemp("gap") / "gap.avi", frames, 30.0, "FFV1")


def test_frames_without_a_face_get_a_black_face_and_zero_fhog(gap_clip, tmp_path):
    """What FeatureExtraction writes for them (checked on default.wmv's frames with grey frames between, 2026-12-06:
    the same flags, zero values and BMP bytes)."""
    assert main(["analyze", str(gap_clip), "-o", str(tmp_path), "--hog", "--aligned", "--quality", "fast", "-q"]) == 0
    hog, success = read_hog(tmp_path / "gap.hog")
    assert success.tolist() == [True, True, True, False, False, True]
    assert not hog[3:5].any() and hog[[0, 1, 2, 5]].any(axis=1).all()
    for k in (4, 5):
        assert not cv2.imread(str(tmp_path / "gap_aligned" / f"frame_det_00_{k:06d}.bmp")).any()
    assert cv2.imread(str(tmp_path / "gap_aligned" / "frame_det_00_000006.bmp")).any()


@pytest.mark.parametrize("streams", [1, 2])
def test_a_first_detection_the_validator_rejects_is_recorded_as_the_table_says(media_dir, tmp_path, streams):
    """FeatureExtraction marks the ``.hog`` record and filters the aligned faces (``-nobadaligned``) by
    ``DetectLandmarksInVideo``'s return value, the CSV's ``success``, which a first detection sets whatever the
    validator says; the features (zero FHOG, a black face) follow the model's. A face cut at the chin: frame 1 is
    ``success`` 1 at confidence 0.02, the rest 0; the record said -1 and the face was left out."""
    frames = [f[:225].copy() for f in read_frames(media_dir / "default.wmv", 4)]
    clip = write_clip(tmp_path / "chin.avi", frames, 30.0, "FFV1")
    options = AlignedFaces(failed=False)
    if streams == 1:
        Analyzer("cpu", write_hog=True, write_aligned=options).write_video(clip, tmp_path / "chin.csv")
    else:
        (outcome,) = Engine("cpu", streams=2, write_hog=True, write_aligned=options).run(
            [Job(clip, tmp_path / "chin.csv")])
        assert outcome.status == "done"
    table = read_openface_csv(tmp_path / "chin.csv")
    hog, success = read_hog(tmp_path / "chin.hog")
    assert table["success"].tolist() == [1, 0, 0, 0] and table["confidence"][0] < 0.5
    assert success.tolist() == [True, False, False, False] and not hog.any()
    assert os.listdir(tmp_path / "chin_aligned") == ["frame_det_00_000001.bmp"]
    assert not cv2.imread(str(tmp_path / "chin_aligned" / "frame_det_00_000001.bmp")).any()


def test_aligned_face_options(gap_clip, tmp_path):
    """-simsize, -nomask, -g and -nobadaligned: the unmasked face is the masked one's warp (the same pixels inside the
    mask), grey as cv::cvtColor makes it, and frames without a face get no file."""
    masked, plain = tmp_path / "masked", tmp_path / "plain"
    Analyzer("cpu", quality="fast", write_aligned=AlignedFaces(size=160)).write_video(gap_clip, masked / "gap.csv")
    options = AlignedFaces(size=160, masked=False, gray=True, failed=False)
    Analyzer("cpu", quality="fast", write_aligned=options).write_video(gap_clip, plain / "gap.csv")
    assert len(os.listdir(masked / "gap_aligned")) == 6
    assert sorted(os.listdir(plain / "gap_aligned")) == [f"frame_det_00_{k:06d}.bmp" for k in (1, 2, 3, 6)]
    for k in (1, 6):
        face = cv2.imread(str(masked / "gap_aligned" / f"frame_det_00_{k:06d}.bmp"))
        grey = cv2.imread(str(plain / "gap_aligned" / f"frame_det_00_{k:06d}.bmp"), cv2.IMREAD_UNCHANGED)
        assert face.shape == (160, 160, 3) and grey.shape == (160, 160)
        inside = face.any(axis=2)
        assert 0.3 < inside.mean() < 0.9 and grey[~inside].any()  # the mask's face, the square's background
        np.testing.assert_array_equal(grey[inside], cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)[inside])
    assert AlignedFaces(size=224).sim_scale == 224 * (0.7 / 112) and AlignedFaces().au_faces
    with pytest.raises(ValueError, match="aligned faces of size 0, scale None: need a positive size and scale"):
        AlignedFaces(size=0)


def test_cli_aligned_options_imply_aligned_and_are_checked(gap_clip, tmp_path, capsys):
    """Each --aligned-* option of `gpuau analyze` sets its own setting of the faces (README: "FHOG and aligned faces"):
    --aligned-gray grey (one channel) masked faces, --aligned-unmasked colour faces with the square's background,
    --aligned-scale the face's scale in a face of the default size, --aligned-size the face's size with the scale
    following it.  A failure means an option is ignored, swapped for another or implies more than its own setting."""
    assert main(["analyze", str(gap_clip), "-o", str(tmp_path), "--aligned-size", "0"]) == 2
    assert "--aligned-size" in capsys.readouterr().err and not (tmp_path / "gap.csv").exists()
    assert main(["analyze", str(gap_clip), "-o", str(tmp_path), "--aligned-tracked-only", "--quality", "fast",
                 "-q"]) == 0
    assert len(os.listdir(tmp_path / "gap_aligned")) == 4 and not (tmp_path / "gap.hog").exists()

    def faces(*options):  # the frames' faces as written (a grey BMP read as one channel), after `analyze OPTIONS`
        out = tmp_path / "-".join(options)
        assert main(["analyze", str(gap_clip), "-o", str(out), *options, "--quality", "fast", "-q"]) == 0
        assert len(os.listdir(out / "gap_aligned")) == 6  # no --aligned-tracked-only: the faceless frames' too
        return {k: cv2.imread(str(out / "gap_aligned" / f"frame_det_00_{k:06d}.bmp"), cv2.IMREAD_UNCHANGED)
                for k in (1, 2, 3, 6)}

    def width(face):  # the masked face's width in pixels
        columns = np.nonzero(face.reshape(*face.shape[:2], -1).any(axis=(0, 2)))[0]
        return columns[-1] - columns[0] + 1

    gray, plain = faces("--aligned-gray"), faces("--aligned-unmasked")
    smaller, larger = faces("--aligned-scale", "0.35"), faces("--aligned-size", "224")
    for k, gray_face in gray.items():
        face = cv2.imread(str(tmp_path / "gap_aligned" / f"frame_det_00_{k:06d}.bmp"), cv2.IMREAD_UNCHANGED)
        inside = face.any(axis=2)
        assert face.shape == (112, 112, 3) and 0.6 < inside.mean() < 0.9  # the default: colour, 112 x 112, masked
        np.testing.assert_array_equal(gray_face, cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))  # grey, masked, 112 x 112
        assert plain[k].shape == (112, 112, 3) and (plain[k][..., 0] != plain[k][..., 2]).mean() > 0.5  # colour
        np.testing.assert_array_equal(plain[k][inside], face[inside])  # the same warp, not masked
        assert plain[k][~inside].any(axis=1).mean() > 0.9
        assert smaller[k].shape == (112, 112, 3) and 0.45 < width(smaller[k]) / width(face) < 0.55  # scale 0.35
        assert larger[k].shape == (224, 224, 3) and 1.95 < width(larger[k]) / width(face) < 2.05  # scale 1.4


def test_multi_face_records_each_row(media_dir, tmp_path):
    """FaceLandmarkVidMulti's files: a record and a face per row of the table, named by face slot and frame."""
    clip = write_clip(tmp_path / "clip.avi", read_frames(media_dir / "multi_face.avi", 12), 30.0, "FFV1")
    assert main(["analyze", str(clip), "-o", str(tmp_path / "out"), "--multi-face", "--hog", "--aligned",
                 "--quality", "fast", "-q"]) == 0
    table = read_openface_csv(tmp_path / "out" / "clip.csv")
    hog, success = read_hog(tmp_path / "out" / "clip.hog")
    assert len(hog) == len(table["frame"]) > 12 and (success == (table["success"] == 1)).all()
    names = [f"frame_det_{int(i):02d}_{int(f):06d}.bmp" for f, i in zip(table["frame"], table["face_id"])]
    assert sorted(names) == sorted(os.listdir(tmp_path / "out" / "clip_aligned"))
    assert len(set(table["face_id"])) > 1


def test_a_full_disk_while_writing_faces_stops_the_run_and_leaves_no_partial_output(media_dir, tmp_path, monkeypatch,
                                                                                      capsys):
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name == "frame_det_00_000005.bmp":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "out"
    assert main(["analyze", str(media_dir / "image_sequence"), str(media_dir / "sample1.jpg"), "-o", str(out),
                 "--hog", "--aligned", "--quality", "fast", "--workers", "1"]) == 1
    assert "space" in capsys.readouterr().err.lower()
    assert os.listdir(out) == []  # neither the table, the .hog file, the faces, nor a temporary file; no next input
