"""Frame sources on real media and on small generated bad inputs."""
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuau.video import InputError, array_frames, camera_intrinsics, open_source, queue_depth, to_bgr8
from gpuau.video import source as source_module
from media import decoding_threads


def test_video_frames_and_timestamps(media_dir, reference_dir):
    src = open_source(media_dir / "default.wmv")
    assert (src.width, src.height, src.fps) == (640, 480, 15.0)
    frames = list(src)
    assert len(frames) == 288 == src.frame_count
    assert frames[0].image.shape == (480, 640, 3) and frames[0].gray.shape == (480, 640)
    assert frames[0].gray.dtype == np.uint8
    assert np.array_equal(frames[5].gray, cv2.cvtColor(frames[5].image, cv2.COLOR_BGR2GRAY))
    # OpenFace's timestamps: index * (1.0 / fps) (SequenceCapture's arithmetic), written with 3 decimals
    assert [f.timestamp for f in frames] == [i * (1.0 / 15.0) for i in range(288)]
    assert [f.timestamp for f in frames] != [i / 15.0 for i in range(288)]  # frame 23's, 31's, ... last bit
    ref = np.genfromtxt(reference_dir / "default.csv", delimiter=",", names=True, usecols=(0, 2))
    ours = np.round([f.timestamp for f in frames], 3)
    assert np.allclose(ours, ref["timestamp"])


@pytest.mark.parametrize("width, height, depth, backlog",
                         [(640, 480, 8, 45), (1280, 720, 8, 15), (1920, 1080, 6, 6), (3840, 2160, 2, 2)])
def test_frame_queues_hold_fewer_large_frames(width, height, depth, backlog):
    """The queues between the pipeline's threads hold 8 frames up to 1280x720, fewer above (BGR frames); the AU
    thread's backlog holds more small frames, as many as the same bytes allow."""
    from gpuau.pipeline import AUThread

    assert queue_depth(width * height * 3) == depth
    assert queue_depth(width * height * 3, AUThread.BACKLOG) == backlog


def test_image_sequence_is_the_images_openface_reads_in_its_order(media_dir, tmp_path):
    """SequenceCapture sorts a folder's paths (byte order: img10 before img2) and reads only the files ending in
    .jpg, .jpeg, .png or .bmp as written; a folder with none of those is analysed as its other images, noted."""
    src = open_source(media_dir / "image_sequence")
    frames = list(src)
    assert len(frames) == 30 and all(f.timestamp == 0.0 for f in frames)
    assert frames[0].file.endswith("001.jpg") and frames[-1].file.endswith("030.jpg")
    assert src.decoding_notes(30) == []
    for name in ("img10.png", "img9.png", "img1.png", "img2.JPG", "img3.tif", "Img4.bmp"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    src = open_source(tmp_path)
    assert [f.name for f in src.files] == ["Img4.bmp", "img1.png", "img10.png", "img9.png"]
    assert src.decoding_notes(4) == ["skipped 2 image(s) FeatureExtraction skips (not ending in .jpg, .jpeg, .png, "
                                     ".bmp, as written), as OpenFace does: img2.JPG, img3.tif"]
    for f in tmp_path.glob("*.[pb]*"):
        f.unlink()
    src = open_source(tmp_path)
    assert [f.name for f in src.files] == ["img2.JPG", "img3.tif"]
    assert src.decoding_notes(2) == ["OpenFace's FeatureExtraction reads none of its images (it takes files ending in "
                                     ".jpg, .jpeg, .png, .bmp, as written): analysed its 2 images of other endings"]


def test_an_image_folder_leaves_macos_metadata_files_out(media_dir, tmp_path):
    """A frames folder copied from a Mac to another disk has a ._NNN.jpg beside each image, which is no image: the
    folder failed on the first of them."""
    import shutil

    for name in ("001.jpg", "002.jpg"):
        shutil.copy(media_dir / "image_sequence" / name, tmp_path / name)
        (tmp_path / f"._{name}").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    src = open_source(tmp_path)
    assert [f.name for f in src.files] == ["001.jpg", "002.jpg"] and len(list(src)) == 2
    assert src.decoding_notes(2) == ["left out 2 hidden image file(s) (names starting with '.', as macOS's ._ files): "
                                     "._001.jpg, ._002.jpg"]


def test_timestamps_are_sequence_captures_arithmetic():
    """OpenFace times frame i as i * (1.0 / fps), which differs from i / fps in the last bit (printed to 3 decimals:
    1.502 against 1.501 for frame 36 at 23.976 frames/s)."""
    fps = 24000 / 1001
    times = [f.timestamp for f in array_frames([np.zeros((8, 8, 3), np.uint8)] * 40, fps)]
    assert times == [i * (1.0 / fps) for i in range(40)]
    assert f"{times[36]:.3f}" != f"{36 / fps:.3f}"


def test_default_intrinsics_match_openface():
    assert camera_intrinsics(640, 480) == (500.0, 500.0, 320.0, 240.0)
    fx, fy, cx, cy = camera_intrinsics(1280, 720)
    assert fx == fy == pytest.approx(500 * (2 + 1.5) / 2) and (cx, cy) == (640.0, 360.0)


def test_given_intrinsics_replace_the_guess_pair_by_pair():
    """FeatureExtraction's -fx -fy and -cx -cy: a given pair is used, the other guessed from the frame size; half a
    pair is refused (OpenFace would take -1 for the missing value)."""
    assert camera_intrinsics(640, 480, (600, 620, 300, 250)) == (600.0, 620.0, 300.0, 250.0)
    assert camera_intrinsics(640, 480, (600, 620, None, None)) == (600.0, 620.0, 320.0, 240.0)
    assert camera_intrinsics(1280, 720, (None, None, 600, 350))[2:] == (600.0, 350.0)
    assert camera_intrinsics(640, 480, (None,) * 4) == camera_intrinsics(640, 480)
    for bad in ((600, None, None, None), (None, None, None, 250), (0, 600, None, None), (600, float("nan"), 1, 1),
                (600, 600, 300)):
        with pytest.raises(ValueError):
            camera_intrinsics(640, 480, bad)


def test_sixteen_bit_and_gray_images(tmp_path):
    gray16 = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    p = tmp_path / "g16.png"
    cv2.imwrite(str(p), gray16)
    (frame,) = list(open_source(p))
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    expect = (gray16 >> 8).astype(np.uint8)  # cv::imread(IMREAD_COLOR), OpenFace's read, keeps the high byte
    assert np.array_equal(frame.gray, expect)
    assert np.array_equal(to_bgr8(gray16), frame.image)  # an array converts as the same image read from a file


def test_image_files_read_as_openface_reads_them(tmp_path):
    """EXIF orientation is applied, as cv::imread(IMREAD_COLOR) does for OpenFace's image inputs."""
    img = np.zeros((40, 60, 3), np.uint8)
    img[:10, :20] = 255  # a white block top left
    ok, jpg = cv2.imencode(".jpg", img)
    data = jpg.tobytes()
    # APP1 Exif segment, little-endian TIFF, one IFD entry: Orientation (0x0112) = 6 (rotate 90 degrees clockwise)
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00" + b"\x00\x00\x00\x00"
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    p = tmp_path / "rotated.jpg"
    p.write_bytes(data[:2] + app1 + data[2:])
    (frame,) = list(open_source(p))
    assert frame.image.shape == (60, 40, 3)
    assert frame.image[:20, -10:].mean() > 200 and frame.image[-20:, :10].mean() < 50
    bgra = np.dstack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30, 255)])
    assert to_bgr8(bgra).shape == (4, 4, 3)


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 100])
def test_not_a_video(tmp_path, content):
    p = tmp_path / "bad.avi"
    p.write_bytes(content)
    with pytest.raises(InputError, match="bad.avi"):
        list(open_source(p))


def test_a_sound_file_is_named_as_such(tmp_path):
    """A container with an audio stream and no video (an .mp4 sound track) gets its own reason, not "not a video"."""
    av = pytest.importorskip("av")
    p = tmp_path / "voice.mp4"
    with av.open(str(p), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(InputError, match="voice.mp4: holds sound but no video stream") as raised:
        open_source(p)
    assert "the video file this audio came from" in str(raised.value)


def test_metadata_that_is_not_utf8_is_no_reason_to_refuse_a_file(tmp_path):
    """Latin-1 tags (older AVI and MOV files, e.g. some of HMDB51's) made PyAV's open raise UnicodeDecodeError, which
    failed the video PyAV decodes (a BT.709 one) and named a sound file's fault wrongly: both as with UTF-8 tags."""
    import av

    def written(name, title, video):
        path = tmp_path / name
        with av.open(str(path), "w") as out:
            out.metadata["title"] = title
            if video:
                stream = out.add_stream("libx264", rate=10, options={"qp": "0"})
                stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
                stream.codec_context.colorspace = 1  # BT.709: PyAV's FFmpeg decodes it (gpuau.video.source)
                for i in range(3):
                    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="bgr24")
                    out.mux(stream.encode(frame.reformat(format="yuv420p")))
            else:
                stream = out.add_stream("aac", rate=16000)
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                frame.sample_rate = 16000
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        data = path.read_bytes()
        latin1 = path.with_name("latin1_" + name)
        latin1.write_bytes(data.replace("caf\u00e9".encode(), b"caf\xe9 "))  # the same length: UTF-8's 2 bytes -> 2
        return path, latin1

    utf8, latin1 = written("clip.mkv", "caf\u00e9", video=True)
    with pytest.raises(UnicodeDecodeError):
        av.open(str(latin1))
    frames = {}
    for path in (utf8, latin1):
        with open_source(path) as src:
            frames[path] = [f.image for f in src]
            assert src.decoding_notes(len(frames[path])) == []
    assert len(frames[utf8]) == 3 and all(np.array_equal(a, b) for a, b in zip(frames[utf8], frames[latin1]))
    _, sound = written("voice.mka", "caf\u00e9", video=False)
    with pytest.raises(InputError, match="holds sound but no video stream"):
        open_source(sound)


def test_input_error_crosses_processes(tmp_path):
    """An InputError pickles with its fields (a process pool hands a worker's exception back this way)."""
    with pytest.raises(InputError) as raised:
        open_source(tmp_path / "nope.mp4")
    again = pickle.loads(pickle.dumps(raised.value))
    assert type(again) is InputError and str(again) == str(raised.value)
    assert (again.path, again.reason, again.fix) == (raised.value.path, "no such file or folder", "check the path")


def test_a_named_pipe_is_not_taken_for_an_empty_file(tmp_path):
    os.mkfifo(tmp_path / "camera.mp4")
    with pytest.raises(InputError, match=r"camera.mp4: not a regular file \(a pipe, a socket or a device\) \(save the "
                                         r"video to a file first\)"):
        open_source(tmp_path / "camera.mp4")


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="holds no images"):
        open_source(tmp_path)


def test_corrupt_image(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(InputError, match="broken.jpg"):
        open_source(p)


def test_truncated_video_yields_what_decodes(media_dir, tmp_path):
    data = (media_dir / "2015-10-15-15-14.avi").read_bytes()
    p = tmp_path / "truncated.avi"
    p.write_bytes(data[: len(data) // 3])
    src = open_source(p)
    frames = list(src)
    assert 0 < len(frames) < 842
    assert src.decoding_notes(len(frames)) == [f"decoded {len(frames)} of the 842 frames the container announces"]


def test_a_folder_of_videos_is_no_image_sequence(media_dir, tmp_path):
    import shutil

    shutil.copy(media_dir / "changeLighting.wmv", tmp_path)
    with pytest.raises(InputError, match=r"folder holds videos, not an image sequence \(analyse each video: gpuau "
                                         r"analyze FOLDER -o OUTDIR"):
        open_source(tmp_path)


def test_cut_wmv_is_told_from_its_header(media_dir, tmp_path):
    """ASF stores no frame count, and FFmpeg estimates a cut file's duration from its last packets (default.wmv cut to
    400 kB announces 52 frames, 59 decode): the file size its header records tells it was cut."""
    whole = media_dir / "default.wmv"
    p = tmp_path / "cut.wmv"
    p.write_bytes(whole.read_bytes()[:400_000])
    src = open_source(p)
    n = len(list(src))
    assert 0 < n < 288
    assert src.decoding_notes(n) == ["the file is 400000 bytes where its header records 2205500: it was cut short (a "
                                     "copy or download that did not finish), and the table holds the frames before "
                                     "the cut; fetch it again"]
    assert open_source(whole).decoding_notes(288) == []
    data = bytearray(whole.read_bytes()[:400_000])
    data[30 + 88] |= 1  # the broadcast flag: the header leaves the size unset
    p.write_bytes(bytes(data))
    assert open_source(p).notes == []


def test_container_timestamps(media_dir):
    # default.wmv's container times run at ~15.6 frames/s while it announces 15: OpenFace writes index / fps.
    ours = [f.timestamp for f in open_source(media_dir / "default.wmv", timestamps="container")]
    assert len(ours) == 288 and ours[0] == 0.0
    assert ours[1] == pytest.approx(0.064) and np.all(np.diff(ours) > 0)
    with pytest.raises(ValueError, match="timestamps"):
        open_source(media_dir / "default.wmv", timestamps="pts")


def test_close_releases_the_video_and_stops_decoding(media_dir):
    path = media_dir / "default.wmv"
    src = open_source(path)
    src.close()  # never iterated: the capture is released at once
    assert not src._capture.isOpened() and list(src) == []
    with open_source(path) as src:
        frames = iter(src)
        assert next(frames).index == 0 and decoding_threads(path)
    assert not decoding_threads(path) and not src._capture.isOpened() and list(frames) == []
    with pytest.raises(RuntimeError, match="iterated once"):
        iter(src)


class _SlowCapture:
    """A VideoCapture whose reads take 1 s (a large frame, a slow disk), recording a release during a read; once
    ``failed`` and then ``cleaning_up`` are set, the read going on sends the main thread SIGUSR1 (it is waiting for
    this thread)."""

    def __init__(self, capture):
        self.capture, self.reading, self.released_while_reading = capture, False, []
        self.failed, self.cleaning_up, self.interrupted = threading.Event(), threading.Event(), False

    def read(self):
        self.reading = True
        try:
            return self.capture.read()
        finally:
            for _ in range(20):
                time.sleep(0.05)
                if self.failed.is_set() and not self.interrupted:
                    assert self.cleaning_up.wait(60)  # the main thread waits in the source's clean-up
                    self.interrupted = True
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            self.reading = False

    def __getattr__(self, name):
        return getattr(self.capture, name)

    def release(self):
        self.released_while_reading.append(self.reading)
        self.capture.release()


class _SecondInterrupt(BaseException):
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the finaliser's interrupt
def test_a_second_interrupt_during_clean_up_leaves_the_video_to_its_decoding_thread(media_dir, monkeypatch):
    """A stage fails and a second Ctrl-C lands while the source waits for its decoding thread: releasing the capture
    under the thread's read was a segmentation fault (a 4K video: 5 in 5)."""
    from gpuau import _signals

    def interrupt(signum, frame):
        raise _SecondInterrupt

    def waiting_through(done, step, on_interrupt=None):  # the source's clean-up, waiting for its decoding thread
        def waiting():  # inside the loop that takes the interrupt
            capture.cleaning_up.set()
            step()

        return wait_through(done, waiting, on_interrupt)

    wait_through = _signals.wait_through
    monkeypatch.setattr(_signals, "wait_through", waiting_through)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        src = open_source(media_dir / "default.wmv")
        capture = src._capture = _SlowCapture(src._capture)
        with pytest.raises((RuntimeError, _SecondInterrupt)):  # the interrupt is lost in the frames' finaliser
            with src:
                for _ in src:
                    capture.failed.set()
                    raise RuntimeError("a stage failed")
        assert capture.interrupted and not decoding_threads(media_dir / "default.wmv")
        assert capture.released_while_reading == [False]  # by the decoding thread, once its read ended
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_first_image_is_decoded_once(media_dir, monkeypatch):
    from gpuau.video import source

    decoded = []
    real = source._read_image
    monkeypatch.setattr(source, "_read_image", lambda p: decoded.append(p.name) or real(p))
    src = open_source(media_dir / "image_sequence")
    frames = list(src)
    assert decoded == [f"{i:03d}.jpg" for i in range(1, 31)] and len(frames) == 30
    assert src.file_names == decoded and frames[0].file.endswith("001.jpg")
    decoded.clear()
    (frame,) = list(open_source(media_dir / "sample1.jpg"))
    assert decoded == ["sample1.jpg"] and open_source(media_dir / "sample1.jpg").file_names is None


def test_a_dropped_iteration_stops_its_decoder(media_dir):
    # The source must not keep its frame generator alive: dropping both ends the thread at once (no cyclic GC),
    # so no decoder is left inside FFmpeg when the interpreter exits.
    path = media_dir / "default.wmv"
    frames = iter(open_source(path))
    next(frames)
    assert decoding_threads(path)
    del frames
    assert not decoding_threads(path)


def test_one_decoder_thread_gives_ffmpegs_frames(media_dir):
    # 2015-10-15-15-14.avi is decoded by 2 FFmpeg threads by default on 2 cores: the frames of gpuau's one-thread
    # decoder are the same, bit for bit.
    path = media_dir / "2015-10-15-15-14.avi"
    src = open_source(path, threads=1)
    assert src._capture.get(cv2.CAP_PROP_N_THREADS) == 1
    threaded = cv2.VideoCapture(str(path))
    for frame in src:
        ok, image = threaded.read()
        assert ok and np.array_equal(frame.image, image), frame.index
        if frame.index == 120:
            break
    src.close()
    threaded.release()


@pytest.mark.parametrize("cores, videos, threads", [(2, 1, 1), (1, 1, 1), (16, 1, 14), (16, 4, 3), (16, 16, 1),
                                                    (64, 8, 7)])
def test_decoder_threads_use_the_cores_the_analysis_leaves(cores, videos, threads, monkeypatch, media_dir):
    import os

    from gpuau.video import decoder_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert decoder_threads(videos) == threads
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # a Ray worker of 4 CPUs
    assert decoder_threads(videos) == max(1, (min(cores, 4) - 2) // videos)
    monkeypatch.delenv("OMP_NUM_THREADS")
    if videos == 1:  # open_source's default
        with open_source(media_dir / "2015-10-15-15-14.avi") as src:  # a codec FFmpeg decodes in threads
            assert src._capture.get(cv2.CAP_PROP_N_THREADS) == src.threads == threads
    # a large frame decoded alone: at least two threads, where the cores allow them
    assert decoder_threads(videos, pixels=1280 * 720) == (max(threads, min(cores, 2)) if videos == 1 else threads)


def test_a_large_video_opens_with_two_decoding_threads(monkeypatch, tmp_path):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    path = str(tmp_path / "large.avi")
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FMP4"), 30.0, (1280, 720))  # MPEG-4: decoded in threads
    for i in range(3):
        out.write(np.full((720, 1280, 3), 40 * i, np.uint8))
    out.release()
    with open_source(path) as src:
        assert src._capture.get(cv2.CAP_PROP_N_THREADS) == src.threads == 2
        assert len(list(src)) == 3
    with open_source(path, threads=1) as src:  # as asked
        assert src._capture.get(cv2.CAP_PROP_N_THREADS) == src.threads == 1


def test_serial_opencv_sets_one_thread():
    from gpuau.video import serial_opencv

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)  # an earlier test's gpuau analyze (in process) may have left it at 1
        serial_opencv()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


ROTATED = Path(__file__).parent / "data" / "rotated_270.mp4"
"""A synthetic clip stored turned a quarter clockwise whose container asks for the turn back (``make_rotated_clip.py``)."""


def _first(orientation: str):
    src = open_source(ROTATED, orientation=orientation)
    with src:
        return src, next(iter(src)).image


def test_rotated_video_upright_as_players_show_it():
    src, frame = _first("display")
    assert (src.rotation, src.turn) == (270, 270)
    assert (src.width, src.height) == (48, 64) and frame.shape == (64, 48, 3)
    # the square near the top-left corner, the bar along the bottom, as FFmpeg shows the clip
    assert frame[4:20, 4:20].mean() > 200 and frame[-8:].mean() == pytest.approx(128, abs=2)
    assert frame[44:60, 28:44].mean() < 60


def test_rotated_video_as_openface_and_as_stored():
    _, upright = _first("display")
    stored_src, stored = _first("stored")
    assert (stored_src.width, stored_src.height, stored_src.turn) == (64, 48, 0) and stored.shape == (48, 64, 3)
    assert np.array_equal(upright, np.rot90(stored, 1))
    # OpenFace's build (OpenCV 4.6 with FFmpeg 5.1, Debian 12) turns it the other way: upside down from upright
    # (compared on this machine kind: its first frame has the square's mean, 54.5, where this one has it)
    src, frame = _first("openface")
    assert (src.turn, src.width, src.height) == (90, 48, 64)
    assert np.array_equal(frame, np.rot90(upright, 2))
    assert open_source(ROTATED).turn == 90  # the default


def test_orientation_leaves_other_videos_alone(media_dir):
    frames = []
    for orientation in ("openface", "display", "stored"):
        with open_source(media_dir / "default.wmv", orientation=orientation) as src:
            assert (src.rotation, src.turn, src.width, src.height) == (0, 0, 640, 480)
            frames.append(next(iter(src)).image)
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    with pytest.raises(ValueError, match="orientation"):
        open_source(media_dir / "default.wmv", orientation="upright")


def test_a_rotated_inputs_outcome_says_how_it_was_turned():
    from gpuau.video import decoding_notes

    assert decoding_notes(60, 60) == []
    assert decoding_notes(58, 60) == ["decoded 58 of the 60 frames the container announces"]
    assert decoding_notes(58, 60, counted=False) == [
        "decoded 58 frames where the container's duration and frame rate suggest 60 (it stores no frame count)"]
    assert decoding_notes(58, 60, counted=False, tolerance=2) == []  # within the estimate's error
    assert decoding_notes(58, 60, tolerance=2) == ["decoded 58 of the 60 frames the container announces"]
    [note] = decoding_notes(6, 6, 270, 90)
    assert "turned 90 degrees clockwise as OpenFace" in note
    assert "analysed upright" in decoding_notes(6, 6, 270, 270)[0] and "as stored" in decoding_notes(6, 6, 270, 0)[0]
    # a half turn is the same either way round: the default's, upright, without sending the user to --orientation
    assert decoding_notes(6, 6, 180, 180) == ["the container asks for a 180 degree clockwise turn: analysed upright, "
                                              "as OpenFace's build with OpenCV 4.6 turns it"]


def test_bt709_video_decodes_as_openfaces_opencv():
    """HD footage is tagged with BT.709's colour matrix: opencv-python 5 converts it with that matrix, OpenFace's
    OpenCV 4.6 (Debian 12, FFmpeg 5.1) with BT.601's; gpuau gives OpenCV 4.6's pixels (``bt709_opencv46.png``,
    written by OpenCV 4.6 itself: ``make_bt709_clip.py``)."""
    import av

    data = Path(__file__).parent / "data"
    expected = cv2.imread(str(data / "bt709_opencv46.png"))
    # the clip tells the matrices apart: its first frame converted with BT.709's matrix (limited range, chroma
    # repeated) lies far from OpenCV 4.6's pixels (computed here: OpenCV <= 4.9 converts as 4.6 does)
    with av.open(str(data / "bt709.mp4")) as container:
        yuv = next(container.decode(video=0)).to_ndarray(format="yuv420p").astype(float)
    h, w = expected.shape[:2]
    y = 1.164 * (yuv[:h] - 16)
    u, v = (np.repeat(np.repeat(c.reshape(h // 2, w // 2) - 128, 2, 0), 2, 1)
            for c in (yuv[h:h + h // 4].ravel(), yuv[h + h // 4:].ravel()))
    bt709 = np.stack([y + 2.112 * u, y - 0.213 * u - 0.533 * v, y + 1.793 * v], axis=-1).clip(0, 255)
    assert np.abs(bt709 - expected).max() > 8
    with open_source(data / "bt709.mp4") as src:
        frames = list(src)
    assert len(frames) == 3 == src.frame_count and (src.width, src.height) == (64, 48)
    assert np.array_equal(frames[0].image, expected)
    assert np.array_equal(frames[0].gray, cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY))
    with open_source(data / "bt709.mp4", timestamps="container") as src:
        assert [round(f.timestamp, 3) for f in src] == [0.0, 0.1, 0.2]


def test_bt709_video_of_other_sampling_and_depth_decodes_as_openfaces_opencv():
    """The same for 4:4:4 and 10-bit 4:2:0 footage (opencv-python's BT.709 conversion is up to 13 levels away): equal,
    each clip's first frame as OpenCV 4.6 decodes it: ``make_bt709_formats.py``."""
    data = Path(__file__).parent / "data"
    for name in ("bt709_444", "bt709_10bit"):
        expected = cv2.imread(str(data / f"{name}_opencv46.png"))
        with open_source(data / f"{name}.mp4") as src:
            np.testing.assert_array_equal(next(iter(src)).image, expected, err_msg=name)


@pytest.mark.parametrize("name", ["chroma_10bit.mp4", "chroma_odd.avi", "full_range.webm", "interlaced.mp4"])
def test_chroma_siting_and_range_flags_decode_as_openfaces_opencv(name):
    """Frames swscale converts on its general path (YUV deeper than 8 bits; 4:2:0 of an odd height), where FFmpeg 8
    (opencv-python 5.1's) places the chroma where the stream says it sits and OpenCV 4.6's FFmpeg 5 did not (3 levels
    off here, up to 23 on real footage), a VP9 stream flagged full range, which OpenCV 4.6 expanded as limited
    (19 off), and interlaced frames (7 levels off on half the pixels here, up to 75 on camcorder footage; their
    matrix is BT.601's, which opencv-python would otherwise convert): OpenCV 4.6's pixels (``make_opencv46_chroma.py``,
    ``make_opencv46_interlaced.py``), all three frames decoded.  (opencv-python 4.10, the
    oldest allowed, decodes these as OpenCV 4.6 does: the difference came with a newer FFmpeg.)"""
    data = Path(__file__).parent / "data"
    expected = cv2.imread(str(data / f"{Path(name).stem}_opencv46.png"))
    with open_source(data / name) as src:
        frames = list(src)
    assert len(frames) == 3 and frames[0].image.shape == expected.shape
    np.testing.assert_array_equal(frames[0].image, expected)


def test_a_bt709_videos_frames_keep_its_size_and_times_count_from_its_start(tmp_path):
    """Two MPEG-TS pieces of other frame sizes put together (a recording whose size changed): every frame at the
    video's size (here the second piece's, as FFmpeg's probe finds it), as opencv-python scales them (OpenCV 4.6
    reads frames of another size as garbage); the stream starts at 1.4 s: container times count from there, as
    OpenCV's."""
    import av

    def piece(width, height, start):
        path = tmp_path / f"{width}.ts"
        with av.open(str(path), "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=10, options={"qp": "0", "bf": "0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.colorspace = 1
            for i in range(start, start + 2):
                frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * i, np.uint8), format="bgr24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = 14 + i
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return path.read_bytes()

    path = tmp_path / "resized.ts"
    path.write_bytes(piece(64, 48, 0) + piece(32, 24, 2))
    with open_source(path, timestamps="container") as src:
        frames = list(src)
    assert (src.width, src.height) == (32, 24) and [f.image.shape for f in frames] == [(24, 32, 3)] * 4
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 0.1, 0.2, 0.3]
    means = [f.image.mean() for f in frames]  # the frames in order, each its own grey
    assert means == sorted(means) and len(set(np.round(means))) == 4


def test_container_times_of_an_avi_with_b_frames_and_with_dropped_frames(tmp_path):
    """AVI stores no presentation times: with B-frames FFmpeg's times (OpenCV's CAP_PROP_POS_MSEC) lag by the
    decoder's delay and the frames it flushes at the end get none (0); they are counted from the first frame and the
    flushed ones follow the one before. An AVI of a capture that dropped frames (empty chunks) keeps its gaps."""
    import av

    def clip(name, codec, pix_fmt, ticks, options=None):
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=10, options=options or {})
            stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
            texture = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for i, tick in enumerate(ticks):  # a moving texture: the encoder then makes B-frames
                frame = av.VideoFrame.from_ndarray(np.roll(texture, 2 * i, axis=1), format="bgr24")
                frame = frame.reformat(format=pix_fmt)
                frame.pts = tick
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return path

    def opencv_times(path):
        cap, times = cv2.VideoCapture(str(path)), []
        while cap.read()[0]:
            times.append(round(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, 6))
        return times

    def times(path):
        with open_source(path, timestamps="container") as src:
            return [round(f.timestamp, 6) for f in src]

    bframes = clip("bframes.avi", "libx264", "yuv420p", range(8), {"crf": "12", "bf": "2"})
    assert opencv_times(bframes)[0] > 0 and opencv_times(bframes)[-1] == 0  # what FFmpeg gives
    assert times(bframes) == [i / 10 for i in range(8)]
    dropped = clip("dropped.avi", "mjpeg", "yuvj420p", [0, 1, 2, 5, 6])
    assert times(dropped) == opencv_times(dropped) == [0.0, 0.1, 0.2, 0.5, 0.6]


def test_damaged_bt709_video_yields_the_frames_before_the_damage(monkeypatch):
    """PyAV's decoding error ends a BT.709 video where it happens, as OpenCV's reading ends the others."""
    import av

    opened = av.open

    class Damaged:  # the real container, whose packets go bad after the first frame
        def __init__(self, path, **options):
            self.container = opened(path, **options)
            self.streams = self.container.streams

        def decode(self, stream):
            for i, frame in enumerate(self.container.decode(stream)):
                if i == 1:
                    raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
                yield frame

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.container.close()

        def close(self):
            self.container.close()

    monkeypatch.setattr(av, "open", Damaged)
    with open_source(Path(__file__).parent / "data" / "bt709.mp4") as src:
        assert len(list(src)) == 1 and src.frame_count == 3


class _FakeNvDecoder:
    """PyNvVideoCodec.SimpleDecoder's part gpuau uses: RGB frames in batches (here OpenCV's frames, turned to RGB)."""

    opened: list = []

    def __init__(self, path, gpu_id, use_device_memory, output_color_type):
        assert (use_device_memory, output_color_type) == (True, "RGB")
        type(self).opened.append((path, gpu_id))
        with open_source(path) as src:
            self._rgb = [f.image[..., ::-1].copy() for f in src]

    def get_batch_frames(self, n):
        batch, self._rgb = self._rgb[:n], self._rgb[n:]
        return batch


def test_nvdec_frames_are_bgr_in_order_and_fall_back_when_nvdec_cannot(media_dir, monkeypatch):
    """The NVDEC path with stand-ins for PyNvVideoCodec and CuPy (no GPU here): RGB batches come out as the BGR frames
    OpenCV decodes, in order, timestamped index * (1 / fps); no package, no GPU or a file NVDEC cannot open give None."""
    import sys
    import types

    from gpuau import device
    from gpuau.video import nvdec

    path = media_dir / "changeLighting.wmv"
    with open_source(path) as src:
        expected, fps = [f.image for f in src], src.fps
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    assert nvdec.nvdec_frames(path, fps) is None  # not installed
    fake = types.SimpleNamespace(SimpleDecoder=_FakeNvDecoder, OutputColorType=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(asarray=np.asarray, asnumpy=np.asarray))
    monkeypatch.setattr(device, "cuda_unavailable_reason", lambda: "CuPy finds no CUDA device")
    assert nvdec.nvdec_frames(path, fps) is None  # no GPU
    monkeypatch.setattr(device, "cuda_unavailable_reason", lambda: "")
    frames = list(nvdec.nvdec_frames(path, fps, device_id=1))
    assert _FakeNvDecoder.opened[-1] == (str(path), 1)
    assert len(frames) == len(expected) > nvdec.BATCH
    for i, (f, image) in enumerate(zip(frames, expected)):
        assert f.index == i and f.timestamp == i * (1.0 / fps)
        np.testing.assert_array_equal(f.image, image)
        np.testing.assert_array_equal(f.gray, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    assert nvdec.nvdec_frames(media_dir / "missing.mp4", fps) is None  # the decoder cannot open the file


def test_a_video_without_a_frame_rate_is_timed_at_openfaces_30(media_dir, monkeypatch):
    """A container whose frame rate OpenCV reads as 0 or NaN: OpenFace's 30 frames/s (SequenceCapture), so the
    timestamps run 0, 1/30, 2/30... (a mutant taking 25 gives 0.04 steps)."""
    real = source_module._capture

    class NoRate:
        def __init__(self, cap, value):
            self._cap, self._value = cap, value

        def get(self, prop):
            return self._value if prop == cv2.CAP_PROP_FPS else self._cap.get(prop)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    for value in (0.0, float("nan")):
        monkeypatch.setattr(source_module, "_capture", lambda path, threads, v=value: NoRate(real(path, threads), v))
        with open_source(media_dir / "default.wmv") as src:
            assert src.fps == 30.0
            frames = []
            for frame in src:
                frames.append(frame)
                if len(frames) == 3:
                    break
        assert [f.timestamp for f in frames] == [0.0, 1.0 / 30.0, 2.0 * (1.0 / 30.0)]


def _webp_with_exif_orientation(path, img, orientation=6):
    """``img`` as a lossless WebP (VP8X container) holding an EXIF Orientation tag."""
    ok, data = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])
    data = data.tobytes()
    assert ok and data[:4] == b"RIFF" and data[8:12] == b"WEBP"

    def chunk(kind, payload):
        return kind + len(payload).to_bytes(4, "little") + payload + (b"\x00" if len(payload) % 2 else b"")

    tiff = (b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00"
            + orientation.to_bytes(2, "little") + b"\x00\x00" + b"\x00\x00\x00\x00")
    h, w = img.shape[:2]
    vp8x = chunk(b"VP8X", bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little"))
    body = b"WEBP" + vp8x + data[12:] + chunk(b"EXIF", tiff)
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def test_a_webps_exif_orientation_is_ignored_as_opencv_46_ignores_it(tmp_path):
    """OpenFace's cv::imread (OpenCV 4.6) applies a JPEG's EXIF orientation but not a WebP's: the WebP is analysed as
    stored (opencv-python 5 would turn it)."""
    img = np.zeros((40, 60, 3), np.uint8)
    img[:10, :20] = 255  # a white block top left
    p = _webp_with_exif_orientation(tmp_path / "rotated.webp", img)
    (frame,) = list(open_source(p))
    assert frame.image.shape == (40, 60, 3)
    assert np.array_equal(frame.image, img)  # lossless: the stored pixels, unturned


def test_bgra_and_grey_arrays_keep_their_colours():
    """A BGRA array is BGR with its alpha dropped (blue stays blue), as cv::imread drops a file's alpha; grey is
    spread to three equal channels."""
    bgra = np.dstack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30, 255)])
    assert np.array_equal(to_bgr8(bgra), bgra[:, :, :3])
    (frame,) = list(array_frames([bgra], fps=30.0))
    assert np.array_equal(frame.image, bgra[:, :, :3])
    assert np.array_equal(frame.gray, cv2.cvtColor(bgra[:, :, :3], cv2.COLOR_BGR2GRAY))
