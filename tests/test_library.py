"""The Python API as scripts and notebooks call it: frames handed over in one reused buffer, a fresh Analyzer shared
by threads, and arguments checked whatever the input holds."""
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import gpuau
from media import read_frames


@pytest.fixture(scope="module")
def analyzer():
    return gpuau.Analyzer("cpu", quality="fast")


@pytest.fixture(scope="module")
def clip(media_dir):
    return read_frames(media_dir / "changeLighting.wmv", 40)


def test_frames_decoded_into_one_buffer_give_the_table_of_their_copies(analyzer, clip):
    """OpenCV's `ok, buf = cap.read(buf)` hands every frame over in the same array, which the next frame overwrites
    while the AU stage, on a thread of its own, has still to read the one before."""

    def one_buffer():
        buf = np.empty_like(clip[0])
        for frame in clip:
            buf[...] = frame
            yield buf

    want = analyzer.analyze_frames([f.copy() for f in clip], fps=15).columns
    got = analyzer.analyze_frames(one_buffer(), fps=15).columns
    assert list(got) == list(want)
    for c in want:
        np.testing.assert_array_equal(got[c], want[c], err_msg=c)


def test_an_output_named_as_its_input_is_refused(analyzer, media_dir, tmp_path):
    image = shutil.copy(media_dir / "sample1.jpg", tmp_path / "face.jpg")
    with pytest.raises(ValueError, match="it is the input itself"):
        analyzer.write_video(image, tmp_path / "." / "face.jpg")
    (tmp_path / "linked.jpg").hardlink_to(image)
    with pytest.raises(ValueError, match="it is the input itself"):
        analyzer.write_video(image, tmp_path / "linked.jpg")
    assert (tmp_path / "face.jpg").read_bytes() == (media_dir / "sample1.jpg").read_bytes()


def test_threads_sharing_a_fresh_analyzer_load_its_models_once(media_dir, monkeypatch, clip):
    """Threads may share an Analyzer (its docstring says so): the models load once, and each image's or video's table
    is the one it gets alone (each call keeps its own tracking and running medians)."""
    from gpuau.landmarks import quality

    loads = []
    load_clnf = quality.load_clnf
    monkeypatch.setattr(quality, "load_clnf", lambda *a: loads.append(a) or load_clnf(*a))
    shared = gpuau.Analyzer("cpu", quality="fast")
    images = [media_dir / f"sample{i}.jpg" for i in (1, 2, 3, 4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(shared.analyze_image, images))
    assert len(loads) == 1
    alone = gpuau.Analyzer("cpu", quality="fast")
    for image, res in zip(images, together):
        assert res.to_pandas().equals(alone.analyze_image(image).to_pandas()), image
    clips = [clip, clip[::-1]]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda frames: shared.analyze_frames(frames, fps=15), clips))
    for frames, res in zip(clips, together):
        assert res.to_pandas().equals(alone.analyze_frames(frames, fps=15).to_pandas())


def test_per_call_options_and_intrinsics_are_checked_whatever_the_input_holds(analyzer, clip, media_dir, tmp_path):
    grey = np.full((120, 160, 3), 90, np.uint8)
    with pytest.raises(TypeError, match="multi_face='no': use True or False"):
        analyzer.analyze_frames([grey], multi_face="no")
    for call in (lambda: analyzer.analyze_video(media_dir / "sample1.jpg", multi_face="no"),  # an image took it
                 lambda: analyzer.write_video(media_dir / "sample1.jpg", tmp_path / "s.csv", multi_face="no")):
        with pytest.raises(TypeError, match="multi_face='no': use True or False"):
            call()
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(ValueError, match=r"intrinsics=\(500, 500\): give \(fx, fy, cx, cy\)"):
        analyzer.analyze_image(grey, intrinsics=(500, 500))  # no face to fit: checked all the same
    with pytest.raises(ValueError, match="camera=500: give"):
        gpuau.Analyzer("cpu", camera=500)


def test_a_model_load_that_failed_fails_alike_on_the_next_call(clip, monkeypatch):
    """The CLNF counted as loaded before the detector and validator were: after their load failed, the next call
    stopped on an AttributeError of None instead of trying again."""
    from gpuau.landmarks.validator import DetectionValidator

    def unreadable(*args, **kwargs):
        raise OSError("validator_cnn.txt: unreadable")

    monkeypatch.setattr(DetectionValidator, "load", unreadable)
    an = gpuau.Analyzer("cpu", quality="fast")
    for _ in range(2):
        with pytest.raises(OSError, match="validator_cnn.txt: unreadable"):
            an.analyze_frames(clip[:1], fps=15)
    monkeypatch.undo()
    assert an.analyze_frames(clip[:1], fps=15).faces_found == 1


def test_a_dropped_analyzer_leaves_no_model_behind(clip):
    """A service building an Analyzer per job: each one's models (and what the stages derive from them: device
    copies, per-scale weights, the validator's index maps) go with it. Caches keyed by the models kept them, ~80 MB a
    job. On the CPU and on the emulated device, whose copies the CPU does not make."""
    import gc
    import weakref

    for device in ("cpu", "emulated"):
        an = gpuau.Analyzer(device, quality="fast")
        an.analyze_frames(clip[:2] if device == "cpu" else clip[:1], fps=15)
        clnf, _, validator = an.loaded_models()
        models = [clnf.model, clnf.model.pdm, *clnf.model.scales, *validator.model.views,
                  *validator.model.views[0].layers]
        assert len(models) > 10
        alive = [weakref.ref(m) for m in models]
        del an, clnf, validator, models
        gc.collect()
        assert [r for r in alive if r() is not None] == [], device


def test_frames_handed_over_wrongly_are_refused_naming_the_frame_and_the_fix(analyzer, clip):
    with pytest.raises(gpuau.video.InputError, match="<frames>: no frames given"):
        analyzer.analyze_frames([], fps=15)
    with pytest.raises(ValueError, match=r"frame 1: an image of shape \(\): expected \(height, width\)"):
        analyzer.analyze_frames([clip[0], None], fps=15)
    with pytest.raises(ValueError, match=r"frame 0: unsupported image dtype float32: expected uint8 or uint16 \(floats "
                                         r"from 0 to 1: \(img \* 255\).round\(\).astype\(np.uint8\)\)"):
        analyzer.analyze_frames([clip[0].astype(np.float32) / 255], fps=15)
    with pytest.raises(TypeError, match="not list; frames in memory go to analyze_frames"):
        analyzer.analyze_video(clip[:2])


def test_frames_without_a_face_warn_as_a_video_does(analyzer):
    res = analyzer.analyze_frames([np.full((120, 160, 3), 90, np.uint8)] * 3, fps=10)
    assert res.warnings == ["<frames>: no face found in any of its 3 frames"]


def test_an_image_given_to_analyze_video_reports_its_progress(analyzer, media_dir):
    done = []
    analyzer.analyze_video(media_dir / "sample1.jpg", progress=done.append)
    assert done == [1]


def test_an_image_without_an_image_name_is_refused_saying_how_images_are_known(analyzer, media_dir, tmp_path):
    photo = shutil.copy(media_dir / "sample1.jpg", tmp_path / "photo")
    with pytest.raises(gpuau.InputError, match=r"not a single image \(use analyze_video .* known by its name's ending, "
                                               r"one of \.jpg, \.jpeg"):
        analyzer.analyze_image(photo)


def test_a_result_prints_short_and_its_dataframe_types_are_the_parquet_files(analyzer, clip, tmp_path):
    """In a notebook `res` shows a summary, not 714 columns of values; `to_pandas` and the Parquet file agree on
    which columns are integers, so tables merge whichever way they were made."""
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    res = analyzer.analyze_frames(clip[:5], fps=15)
    assert repr(res) == ("Result(source='<frames>', rows=5, columns=426, faces_found=5, frames_decoded=5, "
                         "warnings=0)")
    frame = res.to_pandas()
    parquet = pd.read_parquet(res.write(tmp_path / "t.parquet", "parquet"))
    assert frame.dtypes.equals(parquet.dtypes) and frame.equals(parquet)
    assert frame["frame"].tolist() == [1, 2, 3, 4, 5] and frame["success"].dtype == np.int32
    with pytest.raises(ValueError, match="format 'xlsx': use one of csv, parquet"):
        res.write(tmp_path / "t.xlsx", "xlsx")
    assert res.write(tmp_path / "by_name.parquet").read_bytes() == (tmp_path / "t.parquet").read_bytes()


def test_the_one_call_takes_the_analyzers_options_and_progress(corpus, analyzer):
    """`gpuau.analyze_video` offered only device and models: quality, multi-face, -au_static and progress needed an
    Analyzer of one's own. Each option reaches the analysis: the tables are those of an Analyzer so built, and
    -au_static's differ from the dynamic models' (a single image would not show it: it always takes the static)."""
    clip = corpus[2]  # 30 frames of default.wmv
    done = []
    res = gpuau.analyze_video(clip, device="cpu", quality="fast", au_static=True, progress=done.append)
    assert res.faces_found == 30 and done[-1] == 30 and "gaze_0_x" not in res.columns  # fast: no eye models
    static = gpuau.Analyzer("cpu", quality="fast", au_static=True).analyze_video(clip).columns
    dynamic = analyzer.analyze_video(clip).columns
    assert all(np.array_equal(res.columns[c], static[c]) for c in static)
    assert any(not np.array_equal(res.columns[c], dynamic[c]) for c in dynamic if c.endswith("_r"))
    multi = gpuau.analyze_video(clip, device="cpu", quality="fast", multi_face=True)
    one_call = gpuau.Analyzer("cpu", quality="fast", multi_face=True).analyze_video(clip).columns
    assert all(np.array_equal(multi.columns[c], one_call[c]) for c in one_call)
    assert repr(gpuau.Analyzer("cpu", quality="fast")) == ("Analyzer(device='cpu', quality='fast', multi_face=False, "
                                                           "au_static=False)")
    for name in ("write_hog", "write_aligned"):  # were taken and ignored: only write_video writes those files
        with pytest.raises(ValueError, match=f"{name}: analyze_video returns the table .* use Analyzer"):
            gpuau.analyze_video(clip, device="cpu", output=clip.with_suffix(".csv"), **{name: True})


def test_device_none_is_auto_and_no_gpu_says_why(monkeypatch):
    """device=None was 'unknown device 'none''; 'cuda' without a GPU said "CuPy missing, or it finds no device"
    whichever it was."""
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    with pytest.raises(gpuau.DeviceError, match=r"device 'cuda:0': no usable CUDA GPU \(CuPy is not installed\)\. "):
        gpuau.Analyzer("cuda")
    assert gpuau.Analyzer(None).backend.name == "cpu"


def test_no_gpu_says_the_runtimes_reason_and_refuses_two_cupy_builds(monkeypatch, caplog):
    """A driver older than the CuPy build's CUDA was "no NVIDIA driver or GPU visible" (cupy.cuda.is_available()
    swallows the runtime's error); cupy-cuda12x beside cupy-cuda13x (one `cupy` folder) is refused by name."""
    import logging
    import sys
    import types

    from gpuau import _deps
    from gpuau.device import cuda_unavailable_reason

    class CUDARuntimeError(RuntimeError):
        pass

    def device_count():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime "
                               "version")

    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count)))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert cuda_unavailable_reason() == ("CUDA's runtime finds no device (CUDARuntimeError: cudaErrorInsufficientDriver: "
                                         "CUDA driver version is insufficient for CUDA runtime version)")
    cupy.cuda.runtime.getDeviceCount = lambda: 0
    assert cuda_unavailable_reason() == "CUDA's runtime finds no device (no GPU visible)"
    versions = {"cupy-cuda12x": "14.2.0", "cupy-cuda13x": "14.2.0"}
    monkeypatch.setattr(_deps, "installed_version", versions.get)
    with pytest.raises(gpuau.DeviceError) as e:
        gpuau.Analyzer("cuda")
    assert ("no usable CUDA GPU (several CuPy builds are installed (cupy-cuda12x 14.2.0, cupy-cuda13x 14.2.0), which "
            "overwrite each other's files in the same `cupy` folder. Fix: pip uninstall -y cupy-cuda12x cupy-cuda13x, "
            "then install gpuau's extra of your driver's CUDA major") in str(e.value)
    with caplog.at_level(logging.WARNING, logger="gpuau.device"):  # auto: the CPU, said
        assert gpuau.Analyzer("auto").backend.name == "cpu"
    assert "device auto: the CPU, since no CUDA device is usable (several CuPy builds" in caplog.text


def test_columns_keep_feature_extractions_flag_groups_in_memory_too(analyzer, clip, media_dir):
    """Analyzer(columns=...) gives the table of those groups (gpuau.io.COLUMN_GROUPS, FeatureExtraction's output
    flags), in a video's, an image's and a multi-face video's table; gaze needs the eye models."""
    from gpuau.io import column_groups, kept_columns, openface_columns

    assert column_groups("AUS, pose") == ("pose", "aus") and column_groups(None) is None
    for bad in ("", "aus,lips", ["aus", 3]):
        with pytest.raises(ValueError, match="name some of gaze, pose, 2Dfp, 3Dfp, pdmparams, aus"):
            column_groups(bad)
    assert kept_columns(openface_columns(["AU01"], ["AU01"], gaze=True), ("2Dfp",)) == [
        "frame", "face_id", "timestamp", "confidence", "success", *[f"{a}_{i}" for a in "xy" for i in range(68)]]
    with pytest.raises(ValueError, match="quality='fast' fits no eye models, so there is no gaze to write"):
        gpuau.Analyzer("cpu", quality="fast", columns=["gaze", "aus"])
    # every group the tables have is the default's table, recorded as it (a rerun over the default's outputs resumes)
    assert gpuau.Analyzer("cpu", columns="aus,gaze,pose,2dfp,3dfp,pdmparams").columns is None
    assert gpuau.Analyzer("cpu", quality="fast", columns="aus,pose,2dfp,3dfp,pdmparams").columns is None
    narrow = gpuau.Analyzer("cpu", quality="fast", columns=["pdmparams"])  # the module analyzer's, narrowed
    whole = analyzer.analyze_frames(clip[:3], fps=15.0)
    part = narrow.analyze_frames(clip[:3], fps=15.0)
    assert list(part.columns) == kept_columns(whole.columns, ("pdmparams",))
    assert all(np.array_equal(part.columns[c], whole.columns[c]) for c in part.columns)
    assert list(narrow.analyze_image(media_dir / "sample1.jpg").columns)[:3] == ["face", "confidence", "p_scale"]
    multi = narrow.analyze_frames(clip[:2], fps=15.0, multi_face=True).columns
    assert list(multi)[5] == "p_scale" and not any(c.startswith("AU") for c in multi)


def test_a_table_without_aus_runs_no_au_stage(analyzer, clip, media_dir):
    """Without the AU columns (and no .hog file or aligned faces to write) no AU model loads and no face is aligned,
    as FeatureExtraction runs its face analyser only for -aus, -hogalign or -simalign: the other columns are the whole
    table's, for a video, an image, a multi-face video and the batched engine's streams."""
    from unittest import mock

    from gpuau.au import AUAnalyzer
    from gpuau.engine import Engine, Job
    from gpuau.io import kept_columns
    from gpuau.video import array_frames

    whole = analyzer.analyze_frames(clip[:6], fps=15.0)
    narrow = gpuau.Analyzer("cpu", quality="fast", columns=["pose", "2Dfp"])
    assert not narrow.writes_aus and not narrow.au_stage() and analyzer.au_stage()
    with mock.patch.object(AUAnalyzer, "__init__", side_effect=AssertionError("an AU model loaded")):
        part = narrow.analyze_frames(clip[:6], fps=15.0)
        [streamed] = Engine.from_analyzer(narrow, streams=2).run([Job(list(array_frames(clip[:6], 15.0)))])
        image = narrow.analyze_image(media_dir / "sample1.jpg")
        multi = narrow.analyze_frames(clip[:2], fps=15.0, multi_face=True)
    assert list(part.columns) == kept_columns(whole.columns, ("pose", "2Dfp"))
    for table in (part.columns, streamed.result.columns):
        assert all(np.array_equal(table[c], whole.columns[c]) for c in part.columns)
    assert list(image.columns)[:3] == ["face", "confidence", "pose_Tx"] and image.faces_found == 1
    assert multi.faces_found == 2 and not any(c.startswith(("AU", "p_")) for c in multi.columns)


def test_intrinsics_given_to_a_call_replace_the_analyzers_camera(analyzer, clip, media_dir):
    """analyze_frames and analyze_image (an array or a path) take their own intrinsics: the table is that of an
    Analyzer built with that camera, not the default camera's (the pose's depth follows fx)."""
    camera = (900.0, 880.0, 300.0, 250.0)
    fixed = gpuau.Analyzer("cpu", quality="fast", camera=camera)
    got = analyzer.analyze_frames(clip[:2], fps=15, intrinsics=camera)
    assert got.to_pandas().equals(fixed.analyze_frames(clip[:2], fps=15).to_pandas())
    assert not np.array_equal(got.columns["pose_Tz"], analyzer.analyze_frames(clip[:2], fps=15).columns["pose_Tz"])
    import cv2

    path = media_dir / "sample1.jpg"
    for image in (path, cv2.imread(str(path))):
        got = analyzer.analyze_image(image, intrinsics=camera)
        assert got.to_pandas().equals(fixed.analyze_image(image).to_pandas()), type(image)
        assert not np.array_equal(got.columns["pose_Tz"], analyzer.analyze_image(image).columns["pose_Tz"])


def test_yes_no_settings_take_no_other_number():
    """_flag takes True/False (NumPy's too) and 0/1: a 2 or a -1 (a count given to the wrong keyword) is refused,
    not read as True."""
    for flag in ("multi_face", "au_static", "write_hog"):
        for wrong in (2, -1):
            with pytest.raises(TypeError, match=f"{flag}={wrong}: use True or False"):
                gpuau.Analyzer("cpu", **{flag: wrong})
        assert getattr(gpuau.Analyzer("cpu", **{flag: 1}), flag) is True
        assert getattr(gpuau.Analyzer("cpu", **{flag: 0}), flag) is False
