"""Bad and unusual inputs through the command line: one clear message, no crash, the corpus goes on."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuau.cli import main
from media import read_frames, write_clip


def read_csv(path):
    return np.genfromtxt(path, delimiter=",", names=True, ndmin=1)


def test_video_without_a_face_gives_rows_with_success_0(tmp_path, capsys):
    clip = write_clip(tmp_path / "noface.avi", [np.full((120, 160, 3), 90 + 10 * i, np.uint8) for i in range(6)])
    assert main(["analyze", str(clip), "-o", str(tmp_path / "out")]) == 0
    rows = read_csv(tmp_path / "out" / "noface.csv")
    assert len(rows) == 6 and not rows["success"].any()
    assert "no face found in any of its 6 frames" in capsys.readouterr().err
    import gpuau

    assert gpuau.Analyzer("cpu", quality="fast").analyze_video(clip).warnings == [
        f"{clip}: no face found in any of its 6 frames"]


def test_zero_frame_video_is_reported(tmp_path, capsys):
    clip = tmp_path / "empty.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    vw.release()
    assert main(["analyze", str(clip), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "empty.avi" in err
    assert not (tmp_path / "out" / "empty.csv").exists()


def test_empty_and_damaged_files_are_reported_with_the_fix_and_the_corpus_goes_on(media_dir, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.avi").write_text("not a video")
    write_clip(folder / "good.avi", [np.full((48, 64, 3), 90, np.uint8)] * 3)
    # a recording stopped before its index (moov) was written: the frames (mdat) and no moov
    whole = write_clip(tmp_path / "whole.mp4", read_frames(media_dir / "default.wmv", 10), 15.0, "mp4v").read_bytes()
    assert whole.index(b"mdat") < whole.index(b"moov")
    (folder / "unfinished.mp4").write_bytes(whole[:whole.index(b"moov") - 4])
    assert main(["analyze", str(folder), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "empty.mp4: file is empty (0 bytes) (its copy or download did not finish: fetch it again)" in err
    assert "text.avi: not a readable video (check it is a complete video file in a format FFmpeg decodes)" in err
    assert ("unfinished.mp4: an MP4/MOV recording that was never finished: its frames are there, but not the index "
            "(moov) a recorder writes when it stops") in err
    assert (tmp_path / "out" / "good.csv").exists()


def test_a_video_named_in_another_encoding_is_reported_and_the_corpus_goes_on(tmp_path):
    """A Latin-1 file name (Python keeps its byte as a surrogate) crashed the process inside OpenCV's reader; it is
    one input failing with the fix now. A fresh process: the message goes to a real stderr, which escapes the byte."""
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "good.avi", [np.full((48, 64, 3), 90, np.uint8)] * 3)
    try:
        (folder / os.fsdecode(b"caf\xe9.avi")).write_bytes((folder / "good.avi").read_bytes())
    except OSError:
        pytest.skip("this file system takes UTF-8 names only")
    run = subprocess.run([sys.executable, "-m", "gpuau", "analyze", str(folder), "-o", str(tmp_path / "out"), "-q"],
                         capture_output=True, timeout=300)
    assert run.returncode == 1, run.stderr.decode(errors="replace")
    assert (rb"caf\udce9.avi: its name is not valid UTF-8, which OpenCV's video reader cannot open (rename it in "
            b"UTF-8, e.g. convmv -f latin1 -t utf8 --notest FILE)") in run.stderr
    assert (tmp_path / "out" / "good.csv").exists()


def test_an_unwritable_cache_folder_costs_only_speed(media_dir, tmp_path):
    """$GPUAU_CACHE where nothing can be written (a read-only home or container image; here a path under a file):
    the detector's graphs are built in memory, the parsed models read from their text, and the table is the one of
    a run with a cache (Numba's kernels from this session's cache, as a cache Numba falls back to would hold them)."""
    import gpuau.cpu  # noqa: F401 - sets NUMBA_CACHE_DIR to this session's kernels, which the child keeps

    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**os.environ, "GPUAU_CACHE": str(blocker / "cache")}
    run = subprocess.run([sys.executable, "-m", "gpuau", "analyze", str(media_dir / "sample1.jpg"), "-o",
                          str(tmp_path / "out"), "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path / "cached"), "-q"]) == 0
    assert (tmp_path / "out" / "sample1.csv").read_bytes() == (tmp_path / "cached" / "sample1.csv").read_bytes()


def test_an_unreadable_image_in_a_folder_is_named(media_dir, tmp_path, capsys):
    folder = tmp_path / "sequence"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((media_dir / "sample1.jpg").read_bytes())
    (folder / "b.jpg").write_text("not an image")
    assert main(["analyze", str(folder), "-o", str(tmp_path / "out"), "--quality", "fast", "--workers", "1"]) == 1
    assert (f"FAILED {folder}: {folder / 'b.jpg'}: not a readable image (check the file is a complete "
            "JPEG/PNG/BMP/TIFF)") in capsys.readouterr().err


def test_a_jpeg_cut_short_and_a_jfif_are_read_as_openface_reads_them(media_dir, tmp_path):
    """cv::imread decodes what a JPEG cut short holds (OpenFace analyses it; cv2.imdecode refused it, and the image or
    its folder failed); a .jfif (a JPEG, as browsers save photos) is one image, as FaceLandmarkImg takes it, not a
    1-frame video of FFmpeg's pixels."""
    import cv2

    from gpuau.video.source import _read_image

    cut = tmp_path / "cut.jpg"
    cut.write_bytes((media_dir / "sample1.jpg").read_bytes()[:20000])
    assert np.array_equal(_read_image(cut), cv2.imread(str(cut))) and _read_image(cut).shape == (400, 640, 3)
    (tmp_path / "photo.jfif").write_bytes((media_dir / "sample1.jpg").read_bytes())
    assert main(["analyze", str(tmp_path / "photo.jfif"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path / "jpg"), "-q"]) == 0
    assert (tmp_path / "out" / "photo.csv").read_bytes() == (tmp_path / "jpg" / "sample1.csv").read_bytes()


def test_an_unreadable_image_of_a_name_opencv_cannot_take_is_an_input_error(tmp_path):
    """The cut-JPEG fallback hands the name to cv2.imread, which crashes on a name that is not valid UTF-8: such a
    name keeps the error."""
    from gpuau.video import InputError
    from gpuau.video.source import _read_image

    bad = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    bad.write_bytes(b"<html>not an image</html>")
    with pytest.raises(InputError, match="not a readable image"):
        _read_image(bad)


def test_an_empty_file_or_a_folder_at_an_outputs_name_is_no_finished_output(media_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sample1.csv").write_bytes(b"")  # not gpuau's: redone
    (out / "sample3.csv").mkdir()  # refused, naming it
    inputs = [str(media_dir / "sample1.jpg"), str(media_dir / "sample3.jpg")]
    assert main(["analyze", *inputs, "-o", str(out), "--quality", "fast", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "skipped          0" in err and f"FAILED {media_dir / 'sample3.jpg'}: a folder has the name of the file" in err
    assert (out / "sample1.csv").read_text().startswith("face, confidence")


def test_a_failure_is_reported_when_it_happens_and_again_in_the_summary(tmp_path, capsys):
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    assert main(["analyze", str(bad), "-o", str(tmp_path / "out"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    now = err.index(f"gpuau: failed: {bad}: not a readable video")
    assert now < err.index("inputs  ") < err.index(f"FAILED {bad}: not a readable video")


def test_ffmpeg_lines_without_a_file_name_only_with_verbose(tmp_path):
    """FFmpeg's and OpenCV's own complaints about a damaged file name no file; gpuau's line names it (a fresh process:
    OpenCV reads its log levels once)."""
    clip = write_clip(tmp_path / "clip.avi", [np.full((48, 64, 3), 90, np.uint8)] * 3)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(b"\0\0\0\x18ftypmp42" + clip.read_bytes()[:400])
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")}
    run = [sys.executable, "-m", "gpuau", "analyze", str(damaged), "-o", str(tmp_path / "out")]
    quiet = subprocess.run(run + ["--quiet"], env=env, capture_output=True, text=True)
    verbose = subprocess.run(run + ["--verbose"], env=env, capture_output=True, text=True)
    assert quiet.returncode == verbose.returncode == 1
    assert quiet.stderr.strip().splitlines() == [f"gpuau: failed: {damaged}: not a readable video (check it is a "
                                                 "complete video file in a format FFmpeg decodes)"], quiet.stderr
    assert "moov atom not found" in verbose.stderr and "VIDEOIO(FFMPEG)" in verbose.stderr
    render = subprocess.run([sys.executable, "-m", "gpuau", "render", str(damaged), "-o", str(tmp_path / "r.mp4")],
                            env=env, capture_output=True, text=True)
    assert render.returncode == 2 and render.stderr.startswith(f"gpuau: error: {damaged}: ") \
        and render.stderr.count("\n") == 1, render.stderr


def test_first_run_compile_is_reported_as_setup_not_as_analysis_time(tmp_path, monkeypatch):
    """The kernels' one-time compile (stubbed: 1.5 s, over the summary's 1 s) happens before the first input, is the
    summary's setup line, and leaves the elapsed time and frames/s to the analysis."""
    import time

    import gpuau.warmup
    from gpuau.corpus import run_corpus
    from gpuau.pipeline import Analyzer

    monkeypatch.setattr(gpuau.warmup, "ensure_warm", lambda models=None: time.sleep(1.5))
    clip = write_clip(tmp_path / "clip.avi", [np.full((48, 64, 3), 90, np.uint8)] * 3)
    t = time.perf_counter()
    report = run_corpus([clip], tmp_path / "out", analyzer=Analyzer("cpu"), progress=False, workers=1)
    wall = time.perf_counter() - t
    assert report.count("done") == 1 and report.setup >= 1.5
    assert report.elapsed <= wall - report.setup
    assert "setup" in report.summary() and "not in elapsed" in report.summary()


def test_odd_frame_size(media_dir, tmp_path):
    frames = [cv2.resize(f, (333, 251)) for f in read_frames(media_dir / "default.wmv", 5)]
    clip = write_clip(tmp_path / "odd.avi", frames)
    assert main(["analyze", str(clip), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    rows = read_csv(tmp_path / "out" / "odd.csv")
    assert len(rows) == 5 and rows["success"].all()


def test_output_folder_that_is_a_file(media_dir, tmp_path, capsys):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(blocker), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: {blocker}: is a file, not a folder, so it cannot be the output "
                                       "folder (pass -o a folder's name (one that does not exist is created))\n")
    # OpenFace's -of names the table: -o names the folder, which a name ending in .csv most likely is not meant as
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path / "table.csv"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: -o {tmp_path / 'table.csv'}: -o names the output folder, where "
                                       "each input's table is named after the input (clip.mp4 -> clip.csv), not a "
                                       f"file: give a folder, e.g. -o {tmp_path / 'table'}\n")
    assert not (tmp_path / "table.csv").exists()


def test_disk_full_stops_the_corpus_and_keeps_finished_outputs(media_dir, tmp_path, monkeypatch, capsys):
    from gpuau import pipeline

    out = tmp_path / "out"
    real = pipeline.Analyzer.write_video
    calls = []

    def write_video(self, path, output, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(output))
        return real(self, path, output, **kw)

    monkeypatch.setattr(pipeline.Analyzer, "write_video", write_video)
    inputs = [str(media_dir / f"sample{i}.jpg") for i in (1, 3, 4)]
    assert main(["analyze", *inputs, "-o", str(out), "--workers", "1"]) == 1  # in this process (the patch)
    err = capsys.readouterr().err
    assert "space" in err.lower()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["gpuau-settings.jsonl",
                                                                                   "sample1.csv"]
    assert len(calls) == 2  # the third input was not attempted, and the summary counts it (it said "inputs 2")
    assert "inputs           3\n" in err and "not run          1   (the run stopped first: a rerun does them)" in err


class FillingDisk:
    """A file on a disk with ``room`` bytes free: writes past it raise ENOSPC, and so does the flush of a close
    while a write is pending, as a buffered file's on a full disk."""

    def __init__(self, f, room):
        self.f, self.room, self.pending = f, room, False

    def write(self, data):
        if len(data) > self.room:
            self.pending = True
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def close(self):
        self.f.close()
        if self.pending:
            raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_disk_filling_while_the_table_is_written_leaves_no_file(fmt, media_dir, tmp_path, monkeypatch, capsys):
    """The table's rows go to a temporary file while the video is analysed (CSV), or into the file at the end
    (Parquet): a full disk there stops the run with the disk-full message and leaves no temporary file, which
    would keep the space a rerun needs."""
    import contextlib

    from gpuau import _atomic
    from gpuau.io import openface_csv

    if fmt == "csv":
        real = openface_csv.temp_beside
        monkeypatch.setattr(openface_csv, "temp_beside",
                            lambda path, *a, **kw: (lambda f, tmp: (FillingDisk(f, 40_000), tmp))(*real(path, *a, **kw)))
    else:
        pytest.importorskip("pyarrow")

        @contextlib.contextmanager
        def atomic_write(path, mode="w", **kw):
            with _atomic.atomic_write(path, mode, **kw) as f:
                yield FillingDisk(f, 40_000)

        monkeypatch.setattr(openface_csv, "atomic_write", atomic_write)
    out = tmp_path / "out"
    assert main(["analyze", str(media_dir / "changeLighting.wmv"), "-o", str(out), "--format", fmt,
                 "--quality", "fast", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"disk full writing {out / ('changeLighting.' + fmt)}" in err and "no space left" in err
    assert os.listdir(out) == []


def test_a_rerun_removes_what_a_killed_run_was_writing(media_dir, tmp_path):
    """SIGKILL (the OOM killer, a scheduler's hard limit) leaves the temporary file an output was being written to;
    the rerun deletes those of dead processes of this machine for the outputs it will write, and no other."""
    out = tmp_path / "out"
    out.mkdir()
    make = ("import sys; from pathlib import Path; from gpuau._atomic import temp_beside, temp_dir_beside; "
            "out = Path(sys.argv[1]); temp_beside(out / 'sample1.csv')[0].close(); "
            "temp_dir_beside(out / 'sample1_aligned'); temp_beside(out / 'other.csv')[0].close()")
    subprocess.run([sys.executable, "-c", make, str(out)], check=True)  # a process that is gone
    from gpuau._atomic import temp_beside

    live, live_tmp = temp_beside(out / "sample1.csv")  # this one's, at work
    live.close()
    assert len(list(out.glob(".*.tmp"))) == 4
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--quality", "fast", "-q"]) == 0
    assert sorted(p.name for p in out.glob(".*.tmp")) == sorted([live_tmp.name] + [
        p.name for p in out.glob(".other.csv.*.tmp")])
    assert len(list(out.glob(".*.tmp"))) == 2


def test_a_rerun_removes_what_killed_workers_left_even_unreaped_and_beside_finished_outputs(media_dir, tmp_path):
    """A killed run's workers, not yet reaped (zombies, for ever in a container whose process 1 reaps none), counted as
    running, and a rerun swept only the outputs it had still to do: a finished output's temporary file stayed."""
    import time

    from gpuau._atomic import temp_beside

    out = tmp_path / "out"
    out.mkdir()
    assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--quality", "fast", "-q"]) == 0
    make = ("import sys, os; from pathlib import Path; from gpuau._atomic import temp_beside; "
            "temp_beside(Path(sys.argv[1]) / 'sample1.csv')[0].close(); os.close(1)")
    worker = subprocess.Popen([sys.executable, "-c", make, str(out)], stdout=subprocess.PIPE)
    worker.stdout.read()  # it closed its output: it has written its temporary file and ends, unreaped
    deadline = time.monotonic() + 30
    while open(f"/proc/{worker.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    live, live_tmp = temp_beside(out / "sample1.csv")  # this process's, at work
    live.close()
    try:
        assert len(list(out.glob(".*.tmp"))) == 2
        assert main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--quality", "fast", "-q"]) == 0
        assert [p.name for p in out.glob(".*.tmp")] == [live_tmp.name]
    finally:
        worker.wait()
        live_tmp.unlink()


def test_an_interrupt_inside_a_kernel_call_stops_the_run(media_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C landing while a Numba kernel returns reaches Python as a SystemError caused by the KeyboardInterrupt:
    the run stops as interrupted (status 130, no output, nothing further analysed), not with the input failed."""
    from gpuau import pipeline

    calls = []

    def write_video(self, path, output, **kw):
        calls.append(path)
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as e:
                raise SystemError("<function _numba_unpickle> returned a result with an exception set") from e
        except SystemError as e:
            raise SystemError("CPUDispatcher(<function nu_rlms>) returned a result with an exception set") from e

    monkeypatch.setattr(pipeline.Analyzer, "write_video", write_video)
    out = tmp_path / "out"
    inputs = [str(media_dir / f"sample{i}.jpg") for i in (1, 3)]
    assert main(["analyze", *inputs, "-o", str(out), "--workers", "1"]) == 130
    assert capsys.readouterr().err.endswith("gpuau: interrupted after 0 of 2 inputs (their outputs are kept; the same "
                                            "command does the rest)\n")
    assert len(calls) == 1 and not any(p.name.endswith(".csv") for p in out.iterdir())


def test_frame_count_check_against_the_container(media_dir, tmp_path, capsys):
    # changeLighting.wmv's duration at its frame rate suggests 90 frames (ASF stores no count); 88 decode (OpenFace's
    # reference has 88 rows too): within the estimate's error, no warning
    assert main(["analyze", str(media_dir / "changeLighting.wmv"), "-o", str(tmp_path), "--quiet",
                 "--timestamps", "container"]) == 0
    assert capsys.readouterr().err == ""
    rows = read_csv(tmp_path / "changeLighting.csv")
    assert len(rows) == 88 and rows["timestamp"][1] == pytest.approx(0.064)


def test_an_output_folder_inside_the_input_folder_is_no_input(media_dir, tmp_path, capsys):
    """Resuming `gpuau analyze corpus -o corpus/out --aligned` skips what is done: the aligned faces written into
    corpus/out are not an image sequence to analyse. The summary lists the inputs done with a warning."""
    import shutil

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(media_dir / "changeLighting.wmv", corpus)
    write_clip(corpus / "grey.avi", [np.full((48, 64, 3), 90, np.uint8)] * 3)
    args = ["analyze", str(corpus), "-o", str(corpus / "out"), "--aligned", "--quality", "fast"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warnings         1   (inputs done with a warning, listed below)" in err
    assert f"WARNING {corpus / 'grey.avi'}: no face found in any of its 3 frames" in err
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "inputs           2" in err and "skipped          2" in err
    assert sorted(p.name for p in (corpus / "out").iterdir()) == ["changeLighting.csv", "changeLighting_aligned",
                                                                  "gpuau-settings.jsonl", "grey.csv", "grey_aligned"]


def test_a_videos_warnings_reach_library_callers(tmp_path):
    import gpuau

    noise = np.random.default_rng(0).integers(0, 256, (12, 120, 160, 3), np.uint8)  # frames much larger than headers
    clip = write_clip(tmp_path / "clip.avi", list(noise))
    cut = tmp_path / "cut.avi"  # the AVI stores 12 frames; its end cut off
    cut.write_bytes(clip.read_bytes()[:int(clip.stat().st_size * 0.6)])
    res = gpuau.Analyzer("cpu", quality="fast").analyze_video(cut)
    assert res.warnings[0].startswith(f"{cut}: no face found in any of its ")
    assert res.warnings[1].startswith(f"{cut}: decoded ") and res.warnings[1].endswith(
        " of the 12 frames the container announces")


def test_frames_in_memory_that_cannot_be_a_video_are_refused(media_dir):
    import gpuau

    an = gpuau.Analyzer("cpu", quality="fast")
    image = cv2.imread(str(media_dir / "sample1.jpg"))
    with pytest.raises(ValueError, match="is one image, not frames: pass \\[image\\], or use analyze_image"):
        an.analyze_frames(image)
    for fps in (-1, float("nan"), None, "25"):
        with pytest.raises(ValueError, match="fps="):
            an.analyze_frames([image], fps=fps)
    h, w = image.shape[:2]
    with pytest.raises(ValueError, match=f"frame 1 is {w // 2}x{h // 2}, the first {w}x{h}"):
        an.analyze_frames([image, image[::2, ::2]])
    for bad in (np.zeros((0, 0, 3), np.uint8), image.transpose(2, 0, 1), image[None]):
        with pytest.raises(ValueError, match="an image of shape"):
            an.analyze_image(bad)
    with pytest.raises(TypeError, match="a BGR or grey NumPy array, or a path, not list"):
        an.analyze_image([image, image])
    for one in (image[:, :, :1], image[:, :, 0]):
        with pytest.raises(ValueError, match="is one image, not frames"):
            an.analyze_frames(one)
    done = []
    assert len(an.analyze_frames([image, image], progress=done.append)) == 2 and done == [1, 2]


def test_settings_are_checked_and_read_as_written(media_dir, tmp_path):
    import gpuau
    from gpuau.pipeline import Analyzer

    assert Analyzer("cpu", quality="Fast").quality is Analyzer("cpu", quality="fast").quality
    for wrong in (2.5, 0, True, np.True_, float("inf"), float("nan"), "3", [3]):
        with pytest.raises(ValueError, match="detect_every="):
            Analyzer("cpu", detect_every=wrong)
    assert Analyzer("cpu", detect_every=3.0).detect_every == 3
    with pytest.raises(ValueError, match="detect_every=3 with multi_face=True"):  # it would be recorded, unused
        Analyzer("cpu", detect_every=3, multi_face=True)
    with pytest.raises(ValueError, match="multi_face=True with this Analyzer's detect_every=3"):  # per call too
        Analyzer("cpu", detect_every=3).analyze_frames([np.zeros((48, 64, 3), np.uint8)], multi_face=True)
    for flag in ("multi_face", "au_static", "write_hog"):
        with pytest.raises(TypeError, match=f"{flag}='no': use True or False"):
            Analyzer("cpu", **{flag: "no"})
        assert getattr(Analyzer("cpu", **{flag: np.True_}), flag) is True
    Analyzer("cpu").write_video(media_dir / "sample1.jpg", tmp_path / "b.parquet")
    assert (tmp_path / "b.parquet").read_bytes()[:4] == b"PAR1"  # Parquet by its name
    res = gpuau.analyze_video(media_dir / "sample1.jpg", device="cpu", output=tmp_path / "a.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()  # Parquet by its name
    gpuau.analyze_video(media_dir / "sample1.jpg", device="cpu", output=tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == res.to_csv(tmp_path / "a.csv").read_bytes()  # else the CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.parquet", "a.txt", "b.parquet"]  # no temporaries
    with pytest.raises(gpuau.InputError, match="no such file"):  # the output checked first: no folder made for it
        gpuau.analyze_video(tmp_path / "missing.mp4", device="cpu", output=tmp_path / "new" / "folder" / "a.csv")
    assert not (tmp_path / "new").exists()


def test_huge_frame(media_dir):
    # A 4K-class frame (sample1 upscaled 6x to 3840x2400): one face, where the small image has it.
    import gpuau

    small = cv2.imread(str(media_dir / "sample1.jpg"))
    big = cv2.resize(small, (small.shape[1] * 6, small.shape[0] * 6), interpolation=cv2.INTER_LINEAR)
    an = gpuau.Analyzer("cpu")
    r_big, r_small = an.analyze_image(big), an.analyze_image(small)
    assert len(r_big) == len(r_small) == 1 and r_big.columns["confidence"][0] > 0.9
    nose_big = np.array([r_big.columns["x_30"][0], r_big.columns["y_30"][0]]) / 6
    nose_small = np.array([r_small.columns["x_30"][0], r_small.columns["y_30"][0]])
    assert np.linalg.norm(nose_big - nose_small) < 2.0


def test_output_names_are_distinct_and_stable(tmp_path):
    from gpuau.corpus import output_paths

    inputs = [tmp_path / "a" / "x" / "v.mp4", tmp_path / "b" / "x" / "v.mp4", tmp_path / "c" / "v.mp4",
              tmp_path / "x_v.mp4", tmp_path / "d" / "subj.01", tmp_path / "d" / "subj.02"]
    (tmp_path / "d" / "subj.01").mkdir(parents=True)
    (tmp_path / "d" / "subj.02").mkdir()
    names = [p.name for p in output_paths(inputs, tmp_path / "out")]
    assert len(set(names)) == len(names)
    assert names[4:] == ["subj.01.csv", "subj.02.csv"] and names[2] == "c_v.csv"
    assert names == [p.name for p in output_paths(inputs, tmp_path / "out")]
    # one file on macOS's and Windows' disks: told apart by their folders, then by a digest
    cased = [tmp_path / "a" / "Clip.mp4", tmp_path / "b" / "clip.mp4", tmp_path / "b" / "CLIP.avi"]
    names = [p.stem for p in output_paths(cased, tmp_path / "out")]
    assert names[0] == "a_Clip" and len({n.casefold() for n in names}) == 3
    kept = {str(cased[1].resolve()): "clip"}
    assert [p.stem for p in output_paths(cased[:1], tmp_path / "out", kept=kept)] == ["a_Clip"]


def test_colliding_names_of_inputs_given_from_their_folder_take_its_name(tmp_path, monkeypatch):
    from gpuau.corpus import output_paths

    (tmp_path / "session").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "session")
    names = [p.name for p in output_paths([Path("clip.avi"), Path("../other/clip.avi")], "out")]
    assert names == ["session_clip.csv", "other_clip.csv"]  # not "_clip.csv"
    (tmp_path / "raw").mkdir()
    for subject in ("subj1", "subj2"):  # links into one folder of recordings: named after the folders given
        (tmp_path / subject).mkdir()
        (tmp_path / "raw" / f"{subject}.avi").write_bytes(b"")
        (tmp_path / subject / "clip.avi").symlink_to(tmp_path / "raw" / f"{subject}.avi")
    names = [p.name for p in output_paths([tmp_path / "subj1" / "clip.avi", tmp_path / "subj2" / "clip.avi"], "out")]
    assert names == ["subj1_clip.csv", "subj2_clip.csv"]


def test_links_back_up_the_tree_are_searched_once(media_dir, tmp_path):
    from gpuau.corpus import expand_inputs

    tree = tmp_path / "tree" / "s"
    tree.mkdir(parents=True)
    (tree / "clip.avi").write_bytes(b"")
    (tree / "take1.avi").symlink_to("clip.avi")  # the same video twice: once
    (tree / "up").symlink_to("..")  # two loops: 2**40 paths before the kernel gave up
    (tree / "here").symlink_to(".")
    assert expand_inputs([tmp_path / "tree"]) == [tree / "clip.avi"]


def test_earlier_outputs_are_no_inputs_and_an_unreadable_folder_fails_alone(media_dir, tmp_path, monkeypatch, capsys):
    """`gpuau analyze videos/* -o videos/out --aligned` named its own output folder (the glob) and analysed the aligned
    faces there as an image sequence, one level deeper each run; a folder that could not be listed stopped the whole
    batch with a traceback. Named, it is an input that fails; found in a search (lost+found), it is skipped."""
    import shutil

    from gpuau.corpus import SETTINGS_LOG, expand_inputs, run_corpus
    from gpuau.pipeline import Analyzer

    videos = tmp_path / "videos"
    (videos / "out_exact" / "clip_aligned").mkdir(parents=True)
    shutil.copy(media_dir / "image_sequence" / "001.jpg", videos / "out_exact" / "clip_aligned" / "frame_det_00_1.jpg")
    (videos / "out_exact" / SETTINGS_LOG).write_text("")
    (videos / "locked").mkdir()
    shutil.copy(media_dir / "sample1.jpg", videos / "sample1.jpg")
    (videos / "rec.m2ts").write_bytes(b"")
    shutil.copy(media_dir / "sample2.jpg", videos / "out_exact" / "aus.png")  # a plot saved beside the outputs
    listdir, stat = Path.iterdir, os.stat

    def iterdir(path):  # chmod 000 as anyone but root: nothing in it can be listed, nor stat()ed
        if path.name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    def stat_(path, *args, **kwargs):
        if Path(path).parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "stat", stat_)
    assert expand_inputs([videos]) == [videos / "rec.m2ts"]  # a search takes videos and image folders
    assert capsys.readouterr().err == (
        f"warning: {videos}: 1 image(s) beside its videos not analysed (an image folder holds no videos: move them "
        "into a folder of their own to analyse them as an image sequence)\n"
        f"warning: {videos / 'locked'}: not searched (Permission denied)\n")
    assert expand_inputs(sorted(videos.iterdir())) == [videos / "locked", videos / "rec.m2ts",  # the glob videos/*
                                                       videos / "sample1.jpg"]
    (videos / SETTINGS_LOG).write_text("")  # `gpuau analyze videos -o videos --aligned`, run again
    shutil.copytree(videos / "out_exact" / "clip_aligned", videos / "rec_aligned")
    assert expand_inputs([videos], exclude=videos) == [videos / "rec.m2ts"]
    report = run_corpus([videos / "locked", videos / "sample1.jpg"], tmp_path / "out", analyzer=Analyzer("cpu"),
                        progress=False)
    assert [(o.status, o.reason) for o in report.outcomes] == [
        ("failed", "folder is not readable (Permission denied) (check its permissions)"), ("done", "")]


def test_a_search_finds_every_video_beside_images_and_leaves_hidden_files_out(tmp_path, capsys):
    """A folder holding a photo beside subject folders of videos was one image sequence, its videos never searched;
    macOS's ``._`` file beside each video on other disks failed on every run."""
    from gpuau.corpus import expand_inputs

    study = tmp_path / "study"
    for subject in ("p01", "p02"):
        (study / subject).mkdir(parents=True)
        (study / subject / "session.mp4").write_bytes(b"")
        (study / subject / "._session.mp4").write_bytes(b"\0\5\26\7")
    (study / "setup_photo.jpg").write_bytes(b"")
    (study / ".Trashes" / "501").mkdir(parents=True)
    (study / ".Trashes" / "501" / "old.mp4").write_bytes(b"")
    (study / "p01" / "frames").mkdir()
    (study / "p01" / "frames" / "0001.png").write_bytes(b"")
    assert expand_inputs([study]) == [study, study / "p01" / "frames", study / "p01" / "session.mp4",
                                      study / "p02" / "session.mp4"]
    assert capsys.readouterr().err == ""
    named = study / "p01" / "._session.mp4"
    assert expand_inputs([named]) == [named]  # named, a hidden file is an input


def test_a_text_file_of_notes_is_no_list_of_inputs(tmp_path, capsys):
    """`gpuau analyze g/*` took g/README.txt for a list: each line of prose a failed input."""
    from gpuau.corpus import expand_inputs

    (tmp_path / "s01.mp4").write_bytes(b"")
    (tmp_path / "README.txt").write_text("Recording notes for study X\nParticipant 1: camera moved at 00:12\n")
    (tmp_path / "list.txt").write_text("s01.mp4\ns02.mp4\n")  # a list naming one missing input: it fails, named
    assert expand_inputs([tmp_path / "README.txt", tmp_path / "s01.mp4", tmp_path / "list.txt"]) == [
        tmp_path / "s01.mp4", tmp_path / "s02.mp4"]
    assert capsys.readouterr().err == (
        f"warning: {tmp_path / 'README.txt'}: left out: no line of it names a file or folder that exists, nor a "
        "video, an image or a list, so it is no list of inputs (a .txt or .lst file lists one path per line)\n")
    (tmp_path / "unmounted.txt").write_text("/mnt/gone/v1.mp4\n/mnt/gone/v2.mp4\n")  # a list: each input fails
    assert expand_inputs([tmp_path / "unmounted.txt"]) == [Path("/mnt/gone/v1.mp4"), Path("/mnt/gone/v2.mp4")]


def test_list_files_from_notepad_and_in_other_encodings(tmp_path):
    from gpuau.corpus import expand_inputs
    from gpuau.video import InputError

    (tmp_path / "a b.avi").write_bytes(b"")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfa b.avi\r\n# a comment\r\n")
    assert expand_inputs([tmp_path / "bom.txt"]) == [tmp_path / "a b.avi"]
    (tmp_path / "quoted.txt").write_text('"a b.avi"\n\'a b.avi\'\n""\n')  # as a shell or a spreadsheet quotes it
    assert expand_inputs([tmp_path / "quoted.txt"]) == [tmp_path / "a b.avi"]  # "" (an empty cell) is no path
    (tmp_path / "all.lst").write_text("bom.txt\nall.lst\n")  # a list of lists, itself among them
    assert expand_inputs([tmp_path / "all.lst"]) == [tmp_path / "a b.avi"]
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9.avi\n")
    with pytest.raises(InputError, match=r"latin1.txt: a list of inputs that is not UTF-8 text .* \(save it as UTF-8"):
        expand_inputs([tmp_path / "latin1.txt"])


def test_output_names_keep_recorded_ones(tmp_path):
    """Names recorded for inputs (``kept``) stay theirs; every other input is named as without them unless that takes
    a recorded name, when its folder's name is prefixed."""
    from gpuau.corpus import output_paths

    a, b, moved = tmp_path / "d" / "a" / "v.mp4", tmp_path / "d" / "b" / "v.mp4", tmp_path / "e" / "a" / "v.mp4"

    def names(inputs, kept):
        return [p.stem for p in output_paths(inputs, tmp_path / "out", kept={str(k.resolve()): v for k, v in kept})]

    assert names([moved, b], [(b, "b_v")]) == ["a_v", "b_v"]  # half a corpus moved: the same names as before
    assert names([a, b], [(a, "v")]) == ["v", "b_v"]  # b added after a was analysed alone
    assert names([b], [(a, "v")]) == ["b_v"]  # b alone does not take a's output
    assert names([moved], [(a, "v"), (b, "b_v")]) == ["a_v"]


def test_inputs_added_later_rename_no_output(media_dir, tmp_path):
    """Outputs keep the names gpuau-settings.jsonl records for their inputs: a second input of the same name added
    to the corpus gets its folder's name prefixed (the first keeps its output, skipped), and an input analysed alone
    into that folder does not take another input's output name; an input whose recorded path is gone (a moved
    corpus) is named afresh."""
    import json
    import shutil

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(media_dir / "sample1.jpg", tmp_path / folder / "face.jpg")
    out = tmp_path / "out"

    def analyze(*inputs):
        return main(["analyze", *(str(tmp_path / i) for i in inputs), "-o", str(out), "--device", "cpu", "--quiet"])

    assert analyze("a/face.jpg") == 0
    first = (out / "face.csv").stat().st_mtime_ns
    assert analyze("a/face.jpg", "b/face.jpg") == 0  # before the log: a_face.csv and b_face.csv, face.csv left over
    assert sorted(p.name for p in out.glob("*.csv")) == ["b_face.csv", "face.csv"]
    assert (out / "face.csv").stat().st_mtime_ns == first
    (out / "b_face.csv").unlink()
    assert analyze("b/face.jpg") == 0  # alone: not face.csv, a's output, which it would have skipped as its own
    assert sorted(p.name for p in out.glob("*.csv")) == ["b_face.csv", "face.csv"]
    log = [json.loads(line) for line in (out / "gpuau-settings.jsonl").read_text().splitlines()]
    assert [(e["output"], Path(e["input"]).relative_to(tmp_path).as_posix()) for e in log] == [
        ("face.csv", "a/face.jpg"), ("b_face.csv", "b/face.jpg"), ("b_face.csv", "b/face.jpg")]

    (tmp_path / "a").rename(tmp_path / "moved")  # a corpus moved elsewhere: its recorded paths are gone
    assert analyze("moved/face.jpg") == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["b_face.csv", "face.csv"]
    assert (out / "face.csv").stat().st_mtime_ns == first  # found under its name again, skipped


def test_an_input_changed_since_its_output_is_analysed_again(media_dir, tmp_path, capsys):
    """A truncated download fetched again kept its table of the first frames: the log records each input's bytes."""
    import shutil

    photo, out = tmp_path / "face.jpg", tmp_path / "out"
    shutil.copy(media_dir / "sample1.jpg", photo)

    def analyze():
        return main(["analyze", str(photo), "-o", str(out), "--device", "cpu", "--quiet"])

    assert analyze() == 0
    first = (out / "face.csv").read_bytes()
    assert analyze() == 0 and (out / "face.csv").read_bytes() == first  # unchanged: skipped
    capsys.readouterr()
    shutil.copy(media_dir / "sample3.jpg", photo)
    assert analyze() == 0 and (out / "face.csv").read_bytes() != first
    before, now = [(media_dir / n).stat().st_size for n in ("sample1.jpg", "sample3.jpg")]
    assert f"warning: {photo}: {now} bytes where its output was made from {before}: the input changed since" in (
        capsys.readouterr().err)

    from gpuau.corpus import CorpusRun, output_settings, read_settings_log
    from gpuau.outcome import Outcome

    growing = tmp_path / "growing.jpg"  # still being copied in: its size as the run found it, which the next run's differs
    shutil.copy(media_dir / "sample1.jpg", growing)
    run = CorpusRun([growing], tmp_path / "out2", progress=False, settings=output_settings({}))
    with growing.open("ab") as f:
        f.write(b"the rest of the copy")
    run.record(Outcome(growing, tmp_path / "out2" / "growing.csv", "done"))
    run.finish()
    assert read_settings_log(tmp_path / "out2")["growing.csv"]["bytes"] == (media_dir / "sample1.jpg").stat().st_size

    frames = tmp_path / "frames"  # an image folder: by its images' bytes, whatever else is put beside them
    frames.mkdir()
    for name in ("001.jpg", "002.jpg"):
        shutil.copy(media_dir / "image_sequence" / name, frames / name)
    assert main(["analyze", str(frames), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    table = (out / "frames.csv").stat().st_mtime_ns
    (frames / "notes.txt").write_text("session 1")
    shutil.copy(media_dir / "sample3.jpg", frames / "calibration.JPG")  # an image FeatureExtraction's -fdir skips
    assert main(["analyze", str(frames), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "frames.csv").stat().st_mtime_ns == table  # skipped
    shutil.copy(media_dir / "image_sequence" / "003.jpg", frames / "002.jpg")
    assert main(["analyze", str(frames), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "frames.csv").stat().st_mtime_ns != table and "the input changed since" in capsys.readouterr().err


def test_nothing_to_analyse_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "no video, image or image folder found" in capsys.readouterr().err


def test_wait_through_raises_the_first_interrupt_after_the_wait():
    """Interrupts that land while the command waits for a thread are told of, each, and the first is raised once the
    wait is over (Ctrl-C then a SIGTERM exits 130, as Ctrl-C)."""
    from gpuau._signals import Terminated, wait_through

    steps, interrupts, pending = [], [], [KeyboardInterrupt(), Terminated()]

    def step():
        steps.append(1)
        if pending:
            raise pending.pop(0)

    with pytest.raises(KeyboardInterrupt):
        wait_through(lambda: len(steps) >= 3, step, lambda: interrupts.append(1))
    assert len(steps) == 3 and len(interrupts) == 2  # waited to the end, told of each interrupt


def test_an_interrupt_lost_in_an_unchained_error_still_stops_the_run(monkeypatch, media_dir, tmp_path):
    """An interrupt the command's handler raised inside a call that lost it (an error that does not chain it, as a
    compiled kernel's) still stops the run, instead of becoming one input's failure."""
    from gpuau import _signals
    from gpuau.corpus import analyze_input

    class KernelCallLosingTheInterrupt:
        def write_video(self, *args, **kwargs):  # as a kernel's call that swallowed it: no __cause__
            raise SystemError("CPUDispatcher(<function nu_rlms>) returned a result with an exception set")

    monkeypatch.setattr(_signals, "_raised", None)
    assert analyze_input(KernelCallLosingTheInterrupt(), media_dir / "sample1.jpg", tmp_path / "a.csv").status == "failed"
    monkeypatch.setattr(_signals, "_raised", _signals.Terminated)  # what the command's handler remembers
    with pytest.raises(_signals.Terminated):
        analyze_input(KernelCallLosingTheInterrupt(), media_dir / "sample1.jpg", tmp_path / "b.csv")



def test_outputs_are_kept_across_settings_that_do_not_change_them(media_dir, tmp_path):
    """A rerun keeps the outputs whose tables its settings do not change: a photo's with --detect-every or --au-static
    (every face, static AUs anyway), an image folder's with --timestamps / --orientation (no container)."""
    from gpuau.corpus import run_corpus
    from gpuau.pipeline import Analyzer

    photo, folder = media_dir / "sample1.jpg", media_dir / "image_sequence"
    out = tmp_path / "out"
    first = run_corpus([photo, folder], out, analyzer=Analyzer("cpu"), progress=False)
    assert [o.status for o in first.outcomes] == ["done", "done"]
    again = run_corpus([photo], out, analyzer=Analyzer("cpu", detect_every=5, au_static=True), progress=False)
    assert [o.status for o in again.outcomes] == ["skipped"]  # a photo's table: every face, static AUs anyway
    again = run_corpus([folder], out, analyzer=Analyzer("cpu", timestamps="container", orientation="display"),
                       progress=False)
    assert [o.status for o in again.outcomes] == ["skipped"]  # an image folder has no container


def test_the_one_calls_output_is_checked_before_the_analysis_and_named_in_any_case(media_dir, tmp_path, monkeypatch):
    """gpuau.analyze_video checks its output before the analysis (a file where its folder, or the folder's folder,
    would be), and takes the format from the name in any case (.PARQUET is Parquet)."""
    import gpuau
    from gpuau.pipeline import Analyzer, output_format

    assert output_format(tmp_path / "T.PARQUET") == "parquet" and output_format(tmp_path / "t.Parquet") == "parquet"
    gpuau.analyze_video(media_dir / "sample1.jpg", device="cpu", quality="fast", output=tmp_path / "UP.PARQUET")
    assert (tmp_path / "UP.PARQUET").read_bytes()[:4] == b"PAR1"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(Analyzer, "analyze_video", lambda *a, **k: pytest.fail("analysed before the output was checked"))
    for output in (blocker / "a.csv", blocker / "sub" / "a.csv"):
        with pytest.raises(OSError):
            gpuau.analyze_video(media_dir / "sample1.jpg", device="cpu", output=output)


def test_an_output_reaches_the_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    """Every output is flushed to the disk (fsync) under its temporary name before the rename: after a power cut the
    final name holds the whole file or nothing, never a cut one that a resumed run would take for finished."""
    from gpuau import _atomic

    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(_atomic.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or fsync(fd))
    monkeypatch.setattr(_atomic.os, "replace", lambda src, dst: events.append(("replace", str(src))) or replace(src, dst))
    with _atomic.atomic_write(tmp_path / "out.csv") as f:
        f.write("frame, face_id\n")
    (fsync_event, temp), (replace_event, renamed) = events
    assert (fsync_event, replace_event) == ("fsync", "replace") and temp == renamed != str(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == "frame, face_id\n"
