"""The lockstep engine gives every stream the single-stream pipeline's table.

Three clips of different lengths (the first frames of default.wmv, changeLighting.wmv and
2015-10-15-15-14.avi) go through :class:`gpuau.engine.Engine` together (B=3) on each backend and one at a
time (B=1) on the CPU: the tables must be the same (batching changes no number), and equal the
single-stream CPU pipeline's (:class:`gpuau.pipeline.Analyzer`): landmarks within 1e-3 px, AUs within
1e-4 (on the GPU backends a known gap, tests/backend_gaps.toml: CLNF runs on the device there).
Streams join and leave as clips end; a corrupt input, a stream whose frames fail mid-way and a face the
step's batched head pose cannot pose end alone.
The Analyzer's settings (``quality``, ``detect_every``, ``timestamps``) give its tables in the engine
too, re-detections after failed fits and scheduled ones are batched, and frames reach the "device"
through the double-buffered staging in the order a CUDA copy stream needs (a recording double), where
the CLNF fits, MTCNN and the AU stage read them.  Failed streams release their video at once;
``--streams`` sizes each video's progress bar; ``--decode nvdec`` falls back to OpenCV on the CPU.
"""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuau.cli import main
from gpuau.au.analyzer import STATE_BYTES
from gpuau.device import resolve_device
from gpuau.engine import (CPU_STREAMS, Engine, FrameStaging, HostTransfers, Job, auto_streams,
                          stream_device_bytes, transfers_for)
from gpuau.kernels import emulated_arrays
from gpuau.landmarks.tracker import FaceTracker
from gpuau.pipeline import Analyzer
from gpuau.video import Frame, array_frames, open_source
from media import decoding_threads, read_frames, write_clip

CLIPS = {"default.wmv": 40, "changeLighting.wmv": 25, "2015-10-15-15-14.avi": 33}


def _decode(path, n):
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return read_frames(path, n), fps


def _frames(images, fps):
    return list(array_frames(images, fps))


@pytest.fixture(scope="module")
def clips(media_dir):
    return {name: _decode(media_dir / name, n) for name, n in CLIPS.items()}


@pytest.fixture(scope="module")
def cpu_analyzer():
    return Analyzer("cpu")


@pytest.fixture(scope="module")
def references(clips, cpu_analyzer):
    """The single-stream CPU pipeline's table of each clip."""
    return {name: cpu_analyzer.analyze_frames(images, fps=fps) for name, (images, fps) in clips.items()}


def _jobs(clips, names, output=None, suffix="csv"):
    return [Job(_frames(*clips[n]), None if output is None else output / f"{n}.{suffix}", name=n) for n in names]


def assert_same_table(actual: dict, expected: dict, exact: bool = False):
    """The same columns; the same numbers when ``exact``, else within 1e-3 px, 1e-4 of an AU, 1e-5 elsewhere."""
    assert list(actual) == list(expected)
    for c, want in expected.items():
        got = np.asarray(actual[c], np.float64)
        assert got.shape == np.shape(want), c
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=c)
            continue
        if c.startswith(("x_", "y_")):
            tol = 1e-3
        elif c.startswith("AU"):
            tol = 1e-4
        else:
            tol = 1e-5
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=c)


@pytest.fixture(scope="module")
def engine_runs(clips):
    """Per backend name: (outcomes of the 3 clips in lockstep, B=3; on the CPU of each clip alone, B=1, else None;
    stats of B=3)."""
    cache = {}

    def run(backend):
        if backend.name not in cache:
            from unittest import mock

            import gpuau.au.analyzer

            engine = Engine(backend, streams=3)
            transfers = RecordingTransfers(backend.xp)
            engine.staging = FrameStaging(transfers)  # checks the copy/compute ordering
            detect, features = engine.mtcnn.detect_batch, gpuau.au.analyzer.face_features
            reads = {"detect": [], "features": []}  # per call: whether the stage read the staged device frames

            def recording_detect(images, staged=None):
                reads["detect"].append(all(transfers.staged(stack) for stack, _ in staged))
                return detect(images, staged=staged)

            def recording_features(images, *args, **kwargs):
                reads["features"].append(transfers.staged(images))
                return features(images, *args, **kwargs)

            with mock.patch.object(engine.mtcnn, "detect_batch", recording_detect), \
                    mock.patch.object(gpuau.au.analyzer, "face_features", recording_features):
                together = {o.input: o for o in engine.run(_jobs(clips, CLIPS))}
            stats = dict(engine.stats, staged=reads)
            alone = None
            if backend.name == "cpu":
                engine.streams = 1
                alone = {o.input: o for o in engine.run(_jobs(clips, CLIPS))}
            cache[backend.name] = together, alone, stats
        return cache[backend.name]

    return run


def test_lockstep_equals_one_stream_at_a_time(backend, engine_runs, references):
    """Batching streams changes no number: 3 clips together give each clip's table alone, bit for bit on the CPU.
    Elsewhere the AU predictions' matrix product of a batch of faces sums in another order than one face's (by up to
    1e-14 on the emulator's NumPy; cuBLAS may choose another algorithm): there the batch is held to the tolerance of
    test_engine_equals_cpu_pipeline, against the CPU pipeline's tables, which the batch of one would be held to too."""
    together, alone, stats = engine_runs(backend)
    assert sorted(together) == sorted(CLIPS)
    for name, o in together.items():
        assert o.status == "done" and o.frames == CLIPS[name]
        if alone is not None:
            assert_same_table(o.result.columns, alone[name].result.columns, exact=True)
    # each clip's first frame was detected in the step's batch, together
    assert stats["detect_batches"] >= 1 and stats["detections_batched"] >= 3
    assert stats["steps"] == max(CLIPS.values())
    # all three streams start together and none joins later: every step after the first was staged during the
    # step before (while its AU stage ran), through the double buffer in the order a CUDA copy stream needs
    assert stats["steps_staged_ahead"] == stats["steps"] - 1
    # MTCNN's pyramid and the AU stage's alignment read the staged device frames (no second upload)
    assert stats["staged"]["detect"] and all(stats["staged"]["detect"])
    assert len(stats["staged"]["features"]) >= stats["steps"] and all(stats["staged"]["features"])


def test_engine_equals_cpu_pipeline(backend, engine_runs, references):
    """The engine's tables equal the single-stream CPU pipeline's (Analyzer, one clip at a time)."""
    together, _, _ = engine_runs(backend)
    for name, o in together.items():
        assert o.faces == references[name].faces_found
        assert_same_table(o.result.columns, references[name].columns)


def test_the_emulated_kernels_give_the_same_tables_with_each_blocks_threads_reversed(clips, monkeypatch):
    """The emulator runs a block's threads in index order, which hides a missing ``__syncthreads`` where a thread
    reads what a lower-numbered one wrote: with ``GPUAU_EMU_ORDER=reverse`` (threads, between barriers, and blocks
    from the last) every kernel of the pipeline gives the same tables bit for bit."""
    def tables():
        jobs = [Job(_frames(images[:8], fps), name=name) for name, (images, fps) in clips.items()]
        return {o.input: o.result.columns for o in Engine("emulated", streams=3, quality="exact").run(jobs)}

    forward = tables()
    monkeypatch.setenv("GPUAU_EMU_ORDER", "reverse")
    reverse = tables()
    assert sorted(forward) == sorted(reverse) == sorted(CLIPS)
    for name, columns in forward.items():
        assert all(np.array_equal(columns[c], reverse[name][c]) for c in columns), name


def test_analyzer_on_a_device_equals_cpu_pipeline(clips, references):
    """The library's single-video path on a GPU backend (``Analyzer(device=...)``: the tracker and the AU
    thread on the device, no engine) gives the CPU's table; here on the emulated backend."""
    name = "changeLighting.wmv"
    images, fps = clips[name]
    got = Analyzer("emulated").analyze_frames(images, fps=fps)
    assert got.faces_found == references[name].faces_found
    assert_same_table(got.columns, references[name].columns)


def test_streams_join_and_leave_with_csv_outputs(clips, references, tmp_path):
    engine = Engine("cpu", streams=2)
    names = list(CLIPS)
    outcomes = list(engine.run(_jobs(clips, names, tmp_path)))
    # default (40) and changeLighting (25) start; changeLighting ends first and the third clip takes its slot
    assert [o.input for o in outcomes] == ["changeLighting.wmv", "default.wmv", "2015-10-15-15-14.avi"]
    assert engine.stats["steps"] == max(CLIPS["default.wmv"], CLIPS["changeLighting.wmv"] + CLIPS["2015-10-15-15-14.avi"])
    for o in outcomes:
        assert o.status == "done" and o.result is None
        expected = references[o.input].to_csv(tmp_path / f"ref_{o.input}.csv")
        assert o.output.read_bytes() == expected.read_bytes(), o.input


def test_parquet_output(clips, references, tmp_path):
    pd = pytest.importorskip("pandas")
    name = "changeLighting.wmv"
    (o,) = Engine("cpu", streams=2).run(_jobs(clips, [name], tmp_path, "parquet"), format="parquet")
    assert o.status == "done" and o.result is None
    table = pd.read_parquet(tmp_path / f"{name}.parquet")
    assert_same_table({c: table[c].to_numpy() for c in table.columns}, references[name].columns)


def test_failing_streams_end_alone(clips, references, tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 50)
    images, fps = clips["default.wmv"]

    def failing():
        yield from _frames(images[:5], fps)
        raise RuntimeError("decoder lost the stream")

    good = "changeLighting.wmv"
    jobs = [Job(broken, tmp_path / "broken.csv"), Job(failing(), tmp_path / "failing.csv", name="failing"),
            Job(_frames(*clips[good]), None, name=good)]
    outcomes = {str(o.input): o for o in Engine("cpu", streams=3).run(jobs)}
    assert outcomes[str(broken)].status == "failed" and "not a readable video" in outcomes[str(broken)].reason
    assert outcomes["failing"].status == "failed" and "decoder lost the stream" in outcomes["failing"].reason
    assert not (tmp_path / "broken.csv").exists() and not (tmp_path / "failing.csv").exists()
    assert outcomes[good].status == "done"
    assert_same_table(outcomes[good].result.columns, references[good].columns)


def test_a_frame_size_the_staging_cannot_hold_fails_its_streams_alone(clips, references, tmp_path, monkeypatch):
    """Buffers for a large video's frames cannot be allocated (device memory): that ended every stream of the engine,
    and the videos not started yet, where only the large video's stream should fail."""
    slot = FrameStaging._slot

    def no_memory_for_large_frames(self, n, shape):
        if shape[0] > 480:
            raise MemoryError(f"staging {n} frames of {shape[1]}x{shape[0]}")
        return slot(self, n, shape)

    monkeypatch.setattr(FrameStaging, "_slot", no_memory_for_large_frames)
    images, fps = clips["default.wmv"]
    large = [cv2.resize(image, (1280, 960)) for image in images[:3]]
    good = "changeLighting.wmv"
    jobs = [Job(_frames(large, fps), tmp_path / "large.csv", name="large"), Job(_frames(*clips[good]), None, name=good)]
    outcomes = {str(o.input): o for o in Engine("cpu", streams=2).run(jobs)}
    assert outcomes["large"].status == "failed" and "staging 1 frames of 1280x960" in outcomes["large"].reason
    assert not (tmp_path / "large.csv").exists()
    assert outcomes[good].status == "done"
    assert_same_table(outcomes[good].result.columns, references[good].columns)


@pytest.mark.parametrize("streams", [2, 1])
def test_a_failing_batched_stage_is_said_once_and_done_alone(clips, references, monkeypatch, caplog, streams):
    """A batched stage that raises (a bug, a device error) leaves its streams to do it alone, which gives the same
    tables, and says so once per engine, however often it fails (on two streams both videos detect in one batch; on
    one, each in its own): on every step it would otherwise make the engine unbatched in silence."""
    from gpuau.detect import MTCNN

    detect_batch = MTCNN.detect_batch
    failures = []

    def failing_batch(self, images, staged=None):  # the engine's batch; a stream alone detects one frame
        if staged is not None:
            failures.append(len(images))
            raise RuntimeError("no kernel image is available for execution on the device")
        return detect_batch(self, images)

    monkeypatch.setattr(MTCNN, "detect_batch", failing_batch)
    names = list(CLIPS)[:2]
    engine = Engine("cpu", streams=streams)
    with caplog.at_level("WARNING", logger="gpuau.engine"):
        outcomes = list(engine.run([Job(_frames(*clips[n]), None, name=n) for n in names]))
    for o in outcomes:
        assert_same_table(o.result.columns, references[str(o.input)].columns)
    assert engine.stats["detect_batches"] == 0 and engine.stats["detections_alone"] > 0
    assert len(failures) >= 3 - streams
    assert [r.getMessage() for r in caplog.records if r.name == "gpuau.engine"] == [
        "the batched face detection failed (RuntimeError: no kernel image is available for execution on the device); "
        "its streams do it alone"]


def test_ended_streams_go_without_a_garbage_collection(clips, tmp_path):
    """A stream's tracker calls back into the stream (its detector and validator): the engine breaks that cycle when
    the stream ends, so its AU state (~27 MB, GPU memory on CUDA) goes with its outcome; the command collects cyclic
    garbage rarely (gpuau._gc), and 30 short videos on 2 streams held 16 of them at once."""
    import gc

    from gpuau.engine import _Stream

    images, fps = clips["changeLighting.wmv"]
    jobs = [Job(_frames(images[:2], fps), tmp_path / f"{k}.csv") for k in range(5)]
    gc.collect()
    gc.disable()
    try:
        outcomes = list(Engine("cpu", streams=2).run(jobs))
        alive = [o for o in gc.get_objects() if isinstance(o, _Stream)]  # unreachable cycles are listed too
    finally:
        gc.enable()
    assert [o.status for o in outcomes] == ["done"] * 5 and alive == []


def test_an_interrupt_while_a_stream_starts_leaves_no_temporary_output(clips, tmp_path):
    images, fps = clips["changeLighting.wmv"]

    def interrupted():  # Ctrl-C while the new stream waits for its first frame
        raise KeyboardInterrupt
        yield

    jobs = [Job(_frames(images[:3], fps), tmp_path / "first.csv"), Job(interrupted(), tmp_path / "second.csv")]
    engine = Engine("cpu", streams=2, write_hog=True, write_aligned=True)
    with pytest.raises(KeyboardInterrupt):
        list(engine.run(jobs))
    assert os.listdir(tmp_path) == []


def test_a_failing_head_pose_fails_only_its_stream(reference_dir):
    """The engine computes a step's poses and 3D landmarks at once; a face it cannot pose (here:
    intrinsics of the wrong length) fails its own stream, and the others get what they get alone."""
    from types import SimpleNamespace

    from gpuau.landmarks.pose import head_pose, landmarks_3d
    from gpuau.landmarks.tracker import LandmarkResult, camera_space_outputs, initial_parts
    from reference import global_params, landmarks_2d, local_params, read_reference

    df = read_reference(reference_dir / "default.csv")
    engine = Engine("cpu", streams=2)
    pdm = engine.clnf.model.pdm
    camera = (500.0, 500.0, 320.0, 240.0)
    items = []
    for frame, intrinsics in ((10, camera), (11, camera[:3]), (12, camera)):
        g, p, lm = global_params(df)[frame], local_params(df)[frame], np.ascontiguousarray(landmarks_2d(df)[frame])
        result = LandmarkResult(True, True, 1.0, lm, g, p, None, None, *initial_parts(engine.clnf))
        tracker = SimpleNamespace(intrinsics=intrinsics)
        items.append(SimpleNamespace(result=result, stream=SimpleNamespace(tracker=tracker)))
    failed = engine.camera_space(items)
    assert [it for it, _ in failed] == [items[1]]
    for it in (items[0], items[2]):
        r = it.result
        shape_3d = pdm.calc_shape_3d(r.params_local)
        np.testing.assert_array_equal(r.pose, head_pose(r.landmarks, shape_3d, r.params_global, *camera))
        np.testing.assert_array_equal(r.landmarks_3d, landmarks_3d(r.landmarks, shape_3d, r.params_global, *camera))
        alone = LandmarkResult(True, True, 1.0, r.landmarks, r.params_global, r.params_local, None, None,
                               r.part_landmarks, r.part_params)
        camera_space_outputs(engine.clnf, [alone], [camera])
        np.testing.assert_array_equal(r.gaze, alone.gaze)
        np.testing.assert_array_equal(r.eye_landmarks_3d, alone.eye_landmarks_3d)


def test_the_videos_decoded_at_once_share_the_decoding_threads(cpu_analyzer, media_dir, tmp_path, monkeypatch):
    """Each video gets its share of the cores beyond the analysis among the videos decoded at once: the streams,
    or fewer jobs when a list tells how many; a single video decodes as open_source chooses for its size."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    engine = Engine.from_analyzer(cpu_analyzer, streams=4)
    jobs = [Job(media_dir / "changeLighting.wmv", tmp_path / f"{k}.csv") for k in range(2)]
    for given, threads in ((jobs[:1], 6), (jobs, 3), (iter(jobs), 1)):  # 8 cores - 2; shared by 2; by 4 streams
        seen = []
        outcomes = list(engine.run(given, on_open=lambda job, source: seen.append(source.threads)))
        assert [o.status for o in outcomes] == ["done"] * len(seen) and seen == [threads] * len(seen)


def test_failed_streams_release_their_video_at_once(media_dir, tmp_path, monkeypatch):
    """A stream whose output cannot be created (before its first frame) and one whose rows fail to write
    mid-way release their VideoSource when their outcome comes: capture closed, decoding thread ended."""
    import errno

    import gpuau.video

    sources = {}
    real_open = gpuau.video.open_source

    def recording_open(path, **kwargs):
        sources[path.name] = real_open(path, **kwargs)
        sources[path.name]._threads = kwargs.get("threads")
        return sources[path.name]

    monkeypatch.setattr(gpuau.video, "open_source", recording_open)
    monkeypatch.setattr(gpuau.video, "decoder_threads", lambda videos=1: videos)  # the streams share the cores
    (tmp_path / "a file").write_text("")
    unwritable, failing = tmp_path / "a file" / "default.csv", tmp_path / "failing.csv"
    engine = Engine("cpu", streams=2)
    real_stream = engine._open

    def open_with_failing_writes(job, fmt, on_open=None):
        s = real_stream(job, fmt, on_open)
        if job.output == failing:
            add = s.output.add

            def add_until_disk_error(row):
                if s.output.rows == 3:
                    raise OSError(errno.EIO, "input/output error", str(failing))
                add(row)

            s.output.add = add_until_disk_error
        return s

    engine._open = open_with_failing_writes
    jobs = [Job(media_dir / "default.wmv", unwritable), Job(media_dir / "changeLighting.wmv", failing)]
    seen = []
    for o in engine.run(jobs):
        assert o.status == "failed", o
        source = sources[o.input.name]
        assert not source._capture.isOpened() and not decoding_threads(o.input)
        assert source._threads == 2  # decoder_threads(streams) given to open_source
        seen.append(o.input.name)
    assert seen == ["default.wmv", "changeLighting.wmv"] and not failing.exists()


def test_detects_before_fit_follows_the_tracker():
    """The prediction of a detection the engine asks for agrees with what the tracker then does on a faceless video."""
    calls = []
    tracker = FaceTracker(detect=lambda image: calls.append(1))  # never finds a face
    black = np.zeros((120, 160, 3), np.uint8)
    predicted = []
    for _ in range(30):
        predicted.append(tracker.detects_before_fit())
        n = len(calls)
        tracker.track(black)
        assert (len(calls) > n) == predicted[-1]
    assert predicted.count(True) == 3  # frames 1, 13, 25: every 6 * reinit_video_every frames


def test_cli_streams(tmp_path, media_dir, clips, cpu_analyzer, capsys):
    seq = tmp_path / "clip"
    seq.mkdir()
    for i, img in enumerate(clips["changeLighting.wmv"][0][:10]):
        cv2.imwrite(str(seq / f"frame_{i:03d}.png"), img)
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 50)
    out = tmp_path / "out"
    argv = ["analyze", str(seq), str(broken), str(media_dir / "sample1.jpg"), "-o", str(out), "--device", "cpu",
            "--quiet", "--streams", "2"]
    assert main(argv) == 1  # broken.avi failed, the rest is done
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "gpuau-settings.jsonl", "sample1.csv"]
    cpu_analyzer.write_video(seq, tmp_path / "ref.csv")
    assert (out / "clip.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    with pytest.raises(SystemExit):
        main(["analyze", str(seq), "-o", str(out), "--streams", "0"])
    assert "'0': expected a positive number of streams or 'auto'" in capsys.readouterr().err


def test_cli_streams_progress_bars_know_each_videos_length(tmp_path, clips, monkeypatch):
    """--streams 2 with progress bars: each video's bar is sized from its frame count (so tqdm shows frames/s and
    the time left, as with --streams 1) through Engine.run's on_open, and ends at that count."""
    import tqdm.auto

    import gpuau.corpus

    bars = []

    class RecordingBar(tqdm.auto.tqdm):
        def close(self):
            if not self.disable and self not in [b for b, _ in bars]:
                bars.append((self, (self.desc, self.total, self.n)))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    monkeypatch.setattr(gpuau.corpus, "on_terminal", lambda: True)  # bars only on a terminal: as if stderr were one
    images, fps = clips["changeLighting.wmv"]
    seq, video = tmp_path / "clip", tmp_path / "short.avi"
    seq.mkdir()
    for i, img in enumerate(images[:10]):
        cv2.imwrite(str(seq / f"frame_{i:03d}.png"), img)
    write_clip(video, images[:7], fps)
    out = tmp_path / "out"
    assert main(["analyze", str(seq), str(video), "-o", str(out), "--device", "cpu", "--streams", "2"]) == 0
    closed = sorted(record for _, record in bars)
    assert closed == [("2 streams", None, 17), ("clip", 10, 10), ("corpus", 2, 2), ("short.avi", 7, 7)]

    opened = []
    engine = Engine("cpu", streams=1)
    (o,) = engine.run([Job(_frames(images[:2], fps), name="frames")],
                      on_open=lambda job, source: opened.append((job.name, source)) or opened.append)
    assert o.status == "done" and opened == [("frames", None), 1, 2]  # no source for frames; then frames done


def test_cli_streams_rejects_multi_face(tmp_path, media_dir, capsys):
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path), "--streams", "2", "--multi-face"]) == 2
    assert "--streams" in capsys.readouterr().err


def test_stream_count():
    assert Engine("cpu").streams == CPU_STREAMS
    with pytest.raises(ValueError, match="streams=0: need at least 1"):
        Engine("cpu", streams=0)
    # a 1080p stream (its AU state and an initialisation step) fits some 600 times in 80 GB; auto_streams caps B
    assert 50e6 < stream_device_bytes(1080, 1920) < 150e6
    assert stream_device_bytes(0, 0) > STATE_BYTES  # the running medians on the device count without any frame


@pytest.mark.parametrize("free, expected", [(80e9, 128), (8e9, int(4e9) // stream_device_bytes(1080, 1920)), (1e8, 1)])
def test_auto_streams_from_free_device_memory(monkeypatch, free, expected):
    """auto_streams on CUDA (a fake CuPy): half the free memory over a 1080p stream's bytes, between 1 and 128."""
    import contextlib
    import sys
    import types

    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda i: contextlib.nullcontext(), runtime=types.SimpleNamespace(memGetInfo=lambda: (int(free), 0))))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert auto_streams(types.SimpleNamespace(is_gpu=True, device_id=0)) == expected


def _with_gap(images, start, stop):
    """The frames with black ones in ``[start, stop)``: the tracker loses the face, fails, re-detects."""
    return [np.zeros_like(img) if start <= i < stop else img for i, img in enumerate(images)]


def test_settings_and_batched_redetection(clips):
    """quality="fast", detect_every, au_static and camera: each stream's table is the Analyzer's with the same settings,
    and every detection and validation the trackers run (after failed fits, scheduled ones) came from a batch."""
    images, fps = clips["default.wmv"]
    inputs = {"gap": (_with_gap(images, 12, 21), fps), "changeLighting.wmv": clips["changeLighting.wmv"],
              "2015-10-15-15-14.avi": clips["2015-10-15-15-14.avi"]}
    analyzer = Analyzer("cpu", quality="fast", detect_every=7, au_static=True, camera=(600, 620, None, None))
    engine = Engine.from_analyzer(analyzer, streams=3)
    assert engine.clnf is analyzer.loaded_models()[0] and engine.mtcnn is analyzer.loaded_models()[1]
    outcomes = {o.input: o for o in engine.run([Job(_frames(*v), name=n) for n, v in inputs.items()])}
    for name, (imgs, f) in inputs.items():
        expected = analyzer.analyze_frames(imgs, fps=f)
        assert outcomes[name].status == "done"
        assert_same_table(outcomes[name].result.columns, expected.columns)
    gap = outcomes["gap"].result.columns["success"]
    assert gap[12:21].sum() == 0 and gap[25:].all()  # lost in the gap, found again after it
    s = engine.stats
    assert s["detections_alone"] == 0 and s["validations_alone"] == 0
    # 3 first frames, the gap's re-detections (every reinit_video_every failures), detect_every's schedule
    assert s["detections_batched"] > 3 + 4 and s["detect_batches"] > 1
    assert s["validations_batched"] >= sum(o.frames for o in outcomes.values()) - 9


def test_container_timestamps(media_dir):
    """timestamps="container": the engine's frames carry the container's presentation times."""
    path = media_dir / "default.wmv"
    engine = Engine("cpu", timestamps="container", streams=1)
    with open_source(path, timestamps="container") as source:
        expected = [f.timestamp for _, f in zip(range(30), source)]
    stream = engine._open(Job(path), "csv")
    got = [stream.next_frame().timestamp for _ in range(30)]
    stream.abort()
    assert got == expected and got[-1] != 29 / 15  # default.wmv's container runs at ~15.6 frames/s, not 15


def test_rotated_video_turned_as_the_analyzer_turns_it():
    """orientation: the engine's frames of a rotated video are open_source's with the same setting."""
    clip = Path(__file__).parent / "data" / "rotated_270.mp4"
    for orientation in ("openface", "display"):
        engine = Engine("cpu", orientation=orientation, streams=1)
        with open_source(clip, orientation=orientation) as source:
            expected = next(iter(source)).image
        stream = engine._open(Job(clip), "csv")
        got = stream.next_frame().image
        stream.abort()
        assert engine.orientation == orientation and np.array_equal(got, expected)


def test_cli_streams_with_settings(tmp_path, clips):
    """--streams with --quality fast, --detect-every, --timestamps container and --au-static writes what --streams 1
    writes."""
    seq = tmp_path / "clip"
    seq.mkdir()
    for i, img in enumerate(clips["default.wmv"][0][:12]):
        cv2.imwrite(str(seq / f"frame_{i:03d}.png"), img)
    settings = ["--device", "cpu", "--quiet", "--quality", "fast", "--detect-every", "5", "--timestamps", "container",
                "--au-static", "--cx", "300", "--cy", "250"]
    assert main(["analyze", str(seq), "-o", str(tmp_path / "one"), "--streams", "1", *settings]) == 0
    assert main(["analyze", str(seq), "-o", str(tmp_path / "two"), "--streams", "2", *settings]) == 0
    assert (tmp_path / "two" / "clip.csv").read_bytes() == (tmp_path / "one" / "clip.csv").read_bytes()


class RecordingTransfers(HostTransfers):
    """:class:`HostTransfers` that asserts the ordering a CUDA copy stream needs: a host buffer is copied
    again only after its last copy was synchronised (it was rewritten in between), a device buffer is
    overwritten only after the copy stream waited for the compute that read it, and the compute stream
    waits for a buffer's copy before it reads it (:meth:`FrameStaging.images`)."""

    shares_memory = False  # separate device buffers, copied as on CUDA

    def __init__(self, xp=np):
        self.xp = xp  # the device buffers' array module (the emulated backend's: device arrays of their own)
        self.events = 0
        self.host_copy = {}  # host buffer -> its copy not yet synchronised
        self.device_copy = {}  # device buffer -> its latest copy
        self.waited_compute = set()  # compute events the copy stream waited for
        self.waited_copies = set()  # copy events the compute stream waited for
        self.copies = 0
        self.device_buffers = []
        self.finished_compute = set()  # compute events the host waited for

    def _event(self):
        self.events += 1
        return self.events

    def copy(self, device, host):
        assert host.base is not None and _memory(device).base is not None
        assert id(host.base) not in self.host_copy, "host buffer rewritten while its copy may run"
        super().copy(device, host)
        event = self._event()
        self.host_copy[id(host.base)] = event
        self.device_copy[id(_memory(device).base)] = event
        self.copies += 1
        return event

    def convert(self, device, source):
        assert id(_memory(source).base) in self.device_copy, "converted before its copy was enqueued"
        super().convert(device, source)
        event = self._event()
        self.device_copy[id(_memory(device).base)] = event  # on the copy stream, after the copy of its source
        return event

    def compute_event(self):
        return ("compute", self._event())

    def compute_waits(self, event):
        self.waited_copies.add(event)

    def copies_wait(self, event):
        if event is not None:
            self.waited_compute.add(event)

    def synchronize(self, event):  # the copy stream's copies end in order: every copy up to this event has ended
        if isinstance(event, tuple):
            self.finished_compute.add(event)
            return
        self.host_copy = {k: e for k, e in self.host_copy.items() if event is None or e > event}

    def device_buffer(self, shape, dtype=np.float32):
        buffer = self.xp.empty(shape, dtype)
        self.device_buffers.append(buffer)
        return buffer

    def staged(self, array) -> bool:
        """Whether ``array`` is (a view of) one of the staging's device buffers."""
        m = _memory(array)
        return any(m is _memory(b) or m.base is _memory(b) for b in self.device_buffers)


def _memory(a) -> np.ndarray:
    """The NumPy memory of a host array or an emulated device array."""
    return emulated_arrays.storage(a) if isinstance(a, emulated_arrays.ndarray) else a


def test_emulated_staging_copies_frames_into_device_arrays():
    """On the emulated backend the frames are copied into device arrays (CuPy's rules) and the grey levels
    converted there, as on CUDA."""
    staging = FrameStaging(transfers_for(resolve_device("emulated")))
    frames = [Frame(i, 0.0, np.full((4, 5, 3), i, np.uint8), np.full((4, 5), i, np.uint8)) for i in range(3)]
    staging.stage(frames)
    (images, rows), (bgr, _) = staging.images(frames[2:]), staging.bgr(frames[2:])
    assert isinstance(images, emulated_arrays.ndarray) and images.dtype == np.float32
    np.testing.assert_array_equal(images.get()[rows[0]], frames[2].gray)
    np.testing.assert_array_equal(bgr.get()[rows[0]], frames[2].image)


def test_frame_staging_orders_copies_and_compute():
    t = RecordingTransfers()
    staging = FrameStaging(t)
    frames = [Frame(i, 0.0, np.full((4, 5, 3), i, np.uint8), np.full((4, 5), i, np.uint8)) for i in range(6)]
    staging.stage(frames[:2])
    images, rows = staging.images(frames[1:2])
    # the compute waits for this copy or a later one of the copy stream (its copies end in order)
    assert max(t.waited_copies) >= t.device_copy[id(images.base)] and rows.tolist() == [1]
    np.testing.assert_array_equal(images[rows[0]], frames[1].gray)
    staging.release()
    first = staging._staged[(4, 5)].slot
    staging.stage(frames[2:4])  # the other slot: the first one may still be read by the compute
    assert staging._staged[(4, 5)].slot is not first and staging.covers(frames[2:4]) and not staging.covers(frames[:1])
    staging.stage(frames[3:6])  # back to the first slot, grown to 3 frames: the compute reading its old buffers
    assert first.used in t.finished_compute  # has ended before they are freed (CuPy may reuse their memory at once)
    images, rows = staging.images(frames[3:6])
    np.testing.assert_array_equal(images[rows], np.stack([f.gray for f in frames[3:6]]).astype(np.float32))
    bgr, rows = staging.bgr(frames[3:6])
    assert t.staged(bgr) and bgr.dtype == np.uint8
    np.testing.assert_array_equal(bgr[rows], np.stack([f.image for f in frames[3:6]]))
    staging.stage(frames[:2])  # the step after: frames 3-5 are still found, in the slot before
    np.testing.assert_array_equal(staging.bgr(frames[4:5])[0][staging.bgr(frames[4:5])[1]], frames[4].image[None])
    staging.release(frames[3:6])
    assert staging._before[(4, 5)].slot.used == ("compute", t.events)
    staging.release()
    last = staging._staged[(4, 5)].slot
    staging.stage([Frame(6, 0.0, np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3), np.uint8))])  # the size leaves
    staging.stage([Frame(7, 0.0, np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3), np.uint8))])  # its slots
    assert last.used in t.finished_compute and not staging._slots[0].get((4, 5)) and not staging._slots[1].get((4, 5))
    with pytest.raises(KeyError):
        staging.images([Frame(9, 0.0, frames[0].image, frames[0].gray)])


def test_decode_choices():
    """decode is "opencv" or "nvdec" (whose fallback to OpenCV on the CPU, with its log line and the same file, is
    test_cli.py's test_analyze_decode_nvdec_on_cpu_falls_back_to_opencv)."""
    assert Engine("cpu").decode == "opencv"
    with pytest.raises(ValueError, match=r"decode='ffmpeg': use one of \('opencv', 'nvdec'\)"):
        Engine("cpu", decode="ffmpeg")


class _FakeCupy:
    """The few CuPy calls :class:`gpuau.engine.CudaTransfers` makes, over NumPy: pinned memory is a bytearray,
    device arrays are NumPy arrays with ``set``, streams and events record what is asked of them."""

    class Event:
        def __init__(self, stream):
            self.stream, self.synchronized = stream, False

        def synchronize(self):
            self.synchronized = True

    class Stream:
        def __init__(self, non_blocking=False):
            self.non_blocking, self.copies, self.waits = non_blocking, 0, []

        def record(self):
            return _FakeCupy.Event(self)

        def __enter__(self):  # work in the block is enqueued on this stream
            self.entered = getattr(self, "entered", 0) + 1
            return self

        def __exit__(self, *exc):
            return False

        def wait_event(self, event):
            self.waits.append(event)

    class Array(np.ndarray):
        def set(self, host, stream=None):
            assert isinstance(stream, _FakeCupy.Stream) and stream.non_blocking
            self[...] = host
            stream.copies += 1

    def __init__(self):
        import contextlib
        import types

        self.float32 = np.float32
        self.pinned = 0
        self.compute = self.Stream()
        self.cuda = types.SimpleNamespace(
            Device=lambda i: contextlib.nullcontext(), Stream=self.Stream, get_current_stream=lambda: self.compute,
            alloc_pinned_memory=self._pinned)

    def _pinned(self, nbytes):
        self.pinned += nbytes
        return bytearray(nbytes)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype).view(self.Array)


def test_cuda_transfers_with_a_fake_cupy(monkeypatch):
    """CudaTransfers' CuPy calls under FrameStaging: pinned host buffers, copies on the non-blocking copy
    stream, the compute stream waiting for each copy it reads, the copy stream for the compute that read a slot."""
    import sys

    from gpuau.engine import CudaTransfers

    cp = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    transfers = CudaTransfers(resolve_device("cpu"))
    staging = FrameStaging(transfers)
    frames = [Frame(i, 0.0, np.full((4, 5, 3), i, np.uint8), np.full((4, 5), i, np.uint8)) for i in range(4)]
    for step in (frames[:2], frames[2:4], frames[1:3]):
        staging.stage(step)
        images, rows = staging.images(step)
        np.testing.assert_array_equal(images[rows], np.stack([f.gray for f in step]).astype(np.float32))
        assert cp.compute.waits[-1].stream is transfers.stream  # the compute waits for this copy
        staging.release()
    assert cp.pinned == 2 * 2 * 4 * 5 * (1 + 3)  # two slots of 2 frames, uint8 grey and BGR, pinned once each
    assert transfers.stream.copies == 3 * 2
    assert transfers.stream.entered == 3  # each step's grey levels converted to float32 on the copy stream
    assert [e.stream for e in transfers.stream.waits] == [cp.compute]  # the third step reuses the first slot


def test_pinned_memory_running_out_is_a_memory_error(monkeypatch):
    """CuPy's pinned pool raises CUDARuntimeError(cudaErrorMemoryAllocation), not MemoryError, so a size the staging
    could not hold in pinned memory ended every stream of the engine (FrameStaging fails only a MemoryError's size)."""
    import sys
    import types

    from gpuau.engine import CudaTransfers

    class CUDARuntimeError(RuntimeError):
        def __init__(self, status):
            super().__init__(f"cudaErrorMemoryAllocation: out of memory ({status})")
            self.status = status

    def no_pinned_memory(nbytes):
        raise CUDARuntimeError(2)

    cp = _FakeCupy()
    cp.cuda.runtime = types.SimpleNamespace(CUDARuntimeError=CUDARuntimeError, errorMemoryAllocation=2)
    cp.cuda.alloc_pinned_memory = no_pinned_memory
    monkeypatch.setitem(sys.modules, "cupy", cp)
    with pytest.raises(MemoryError, match=r"pinned host memory for \(2, 960, 1280\) uint8"):
        CudaTransfers(resolve_device("cpu")).host_buffer((2, 960, 1280), np.uint8)


def test_a_job_without_a_face_warns_as_the_pipeline_does():
    (o,) = Engine("cpu", streams=1).run([Job(_frames([np.full((96, 128, 3), 90, np.uint8)] * 4, 10.0),
                                             name="grey")])
    assert o.status == "done" and o.result.warnings == ["grey: no face found in any of its 4 frames"]
    assert o.warnings() == ["no face found in any of its 4 frames"]


def test_ctrl_c_taken_for_a_batchs_failure_still_stops_the_engine(clips, monkeypatch):
    """Ctrl-C landing in a compiled kernel's call reaches Python as a SystemError, which the engine's batched
    detection takes for a failure and retries per stream: the command's handler remembers it, and the engine stops
    at its next step."""
    import signal

    from gpuau import _signals
    from gpuau.detect import MTCNN

    monkeypatch.setattr(_signals, "_raised", None)

    def detect_batch(self, images, staged=None):
        try:
            _signals.handle(signal.SIGINT, None)
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(<function pnet_pyramid>) returned a result with an exception set") from e

    monkeypatch.setattr(MTCNN, "detect_batch", detect_batch)
    engine = Engine("cpu", streams=2)
    with pytest.raises(KeyboardInterrupt):
        list(engine.run(_jobs(clips, list(CLIPS)[:2])))


def test_a_library_callers_ctrl_c_in_a_batch_stops_the_engine(clips, monkeypatch):
    """A library caller keeps Python's own SIGINT handler (no ``gpuau._signals.handle``): its KeyboardInterrupt,
    wrapped in a kernel call's SystemError, stops the engine where the batch takes it, instead of the batch being
    retried stream by stream."""
    from gpuau import _signals
    from gpuau.detect import MTCNN

    monkeypatch.setattr(_signals, "_raised", None)
    calls = []

    def detect_batch(self, images, staged=None):
        calls.append(len(images))
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(<function pnet_pyramid>) returned a result with an exception set") from e

    monkeypatch.setattr(MTCNN, "detect_batch", detect_batch)
    with pytest.raises(KeyboardInterrupt):
        list(Engine("cpu", streams=2).run(_jobs(clips, list(CLIPS)[:2])))
    assert calls == [2]  # the batch's first call: nothing retried after the interrupt


def test_run_without_a_format_writes_csv(tmp_path):
    """``format=None`` (what analyze_video's and write_video's callers pass for "by the file's ending") writes CSV, as
    for a name without a Parquet ending; a format gpuau does not write is refused."""
    grey = [np.full((96, 128, 3), 90, np.uint8)] * 2
    (o,) = Engine("cpu", streams=1).run([Job(_frames(grey, 10.0), tmp_path / "grey.csv")], format=None)
    assert o.status == "done" and (tmp_path / "grey.csv").read_text().startswith("frame, face_id")
    with pytest.raises(ValueError, match="format 'xlsx'"):
        list(Engine("cpu", streams=1).run([Job(_frames(grey, 10.0), tmp_path / "grey.xlsx")], format="xlsx"))


def test_a_cut_videos_decoding_note_reaches_the_engines_outcome(tmp_path):
    """The engine's outcome (its reason and its result's warnings) keeps the note of a video that decodes fewer
    frames than its container announces, as Analyzer.analyze_video's warnings do (the frame inputs of the other engine
    tests have none)."""
    import gpuau

    noise = np.random.default_rng(0).integers(0, 256, (12, 120, 160, 3), np.uint8)  # frames much larger than headers
    clip = write_clip(tmp_path / "clip.avi", list(noise))
    cut = tmp_path / "cut.avi"  # the AVI stores 12 frames; its end cut off
    cut.write_bytes(clip.read_bytes()[:int(clip.stat().st_size * 0.6)])
    alone = gpuau.Analyzer("cpu", quality="fast").analyze_video(cut)
    (o,) = Engine("cpu", quality="fast", streams=2).run([Job(cut, None)])
    assert o.status == "done" and o.reason.endswith(" of the 12 frames the container announces")
    assert o.result.warnings == alone.warnings and len(alone.warnings) == 2
