"""Pictures: annotated video and AU plot from an OpenFace CSV (OpenFace's own reference CSV here)."""
import importlib.util

import cv2
import numpy as np
import pytest

from gpuau.cli import main
from gpuau.io import write_openface_csv
from gpuau.viz import _face_table, draw_frame, project_gaze, project_pose_axes


def test_render_draws_landmarks_where_the_csv_says(media_dir, reference_dir, tmp_path):
    out = tmp_path / "annotated.mp4"
    assert main(["render", str(media_dir / "changeLighting.wmv"), str(reference_dir / "changeLighting.csv"), "-o", str(out)]) == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 88
    ok, img = cap.read()
    assert ok and img.shape[1] > 640  # frame plus the AU panel
    ref = np.genfromtxt(reference_dir / "changeLighting.csv", delimiter=",", names=True, max_rows=1)
    x, y = int(round(float(ref["x_30"]))), int(round(float(ref["y_30"])))
    b, g, r = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int).mean(axis=0)
    assert g > 150 and r > 150 and b < 120  # a yellow landmark dot survives compression


def test_render_projects_with_the_analysis_camera(media_dir, reference_dir, tmp_path, monkeypatch, capsys):
    """The pose axes and gaze lines are projected with the camera the CSV was made with (--fx --fy --cx --cy)."""
    import gpuau.viz

    seen = set()
    draw = gpuau.viz.draw_frame
    monkeypatch.setattr(gpuau.viz, "draw_frame", lambda image, row, names, k: seen.add(k) or draw(image, row, names, k))
    args = ["render", str(media_dir / "changeLighting.wmv"), str(reference_dir / "changeLighting.csv"), "-o",
            str(tmp_path / "a.mp4")]
    assert main([*args, "--fx", "600", "--fy", "620"]) == 0
    assert seen == {(600.0, 620.0, 320.0, 240.0)}  # the centre guessed from the frame size, as in the analysis
    assert main([*args, "--cx", "300"]) == 2 and "give cx and cy together" in capsys.readouterr().err


def test_pose_axes_project_from_the_head_position():
    pose = np.array([0.0, 0.0, 500.0, 0.0, 0.0, 0.0])
    pts = project_pose_axes(pose, (500.0, 500.0, 320.0, 240.0), length=50.0)
    assert np.allclose(pts[0], [320, 240]) and np.allclose(pts[1], [370, 240]) and np.allclose(pts[2], [320, 290])


def test_gaze_is_drawn_from_each_pupil_along_its_gaze(reference_dir):
    from gpuau.io import read_openface_csv

    table = read_openface_csv(reference_dir / "default.csv")
    row = {k: v[0] for k, v in table.items()}
    camera = (500.0, 500.0, 320.0, 240.0)  # default.wmv's (640x480)
    pupils, tips = project_gaze(row, camera).transpose(1, 0, 2)
    # the pupils project near the iris points the CSV gives in 2D (0.1 px print, a model fit's depth)
    iris = np.array([[np.mean([row[f"eye_lmk_{a}_{28 * e + i}"] for i in range(8)]) for a in "xy"] for e in range(2)])
    np.testing.assert_allclose(pupils, iris, atol=0.5)
    assert np.all(np.linalg.norm(tips - pupils, axis=1) > 2)  # 50 mm, mostly towards the camera: a few pixels
    blank = np.zeros((480, 640, 3), np.uint8)
    drawn = draw_frame(blank, row, [], camera)
    mid = np.round((pupils + tips) / 2).astype(int)
    assert all(drawn[y - 1:y + 2, x - 1:x + 2, 1].max() > 100 for x, y in mid)  # green: the gaze lines, not the eyes
    assert not draw_frame(blank, {**row, "success": 0.0}, [], camera)[:, :640].any()


def test_plot_aus(reference_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "aus.png"
    assert main(["plot", str(reference_dir / "default.csv"), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img.shape[0] > 500 and img.shape[1] > 1000


def test_render_and_plot_read_parquet_and_say_what_they_cannot_write(media_dir, reference_dir, tmp_path, capsys):
    """The Parquet table `gpuau analyze --format parquet` writes is read like the CSV; an image name for the video
    (OpenCV would write a numbered image series) and a missing table are one-line errors."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("pyarrow")
    from gpuau.io import read_openface_csv, write_openface_parquet

    table = tmp_path / "default.parquet"
    write_openface_parquet(table, read_openface_csv(reference_dir / "default.csv"))
    assert main(["plot", str(table), "-o", str(tmp_path / "aus.png")]) == 0
    video = media_dir / "default.wmv"
    assert main(["render", str(video), str(table), "-o", str(tmp_path / "x.gif")]) == 2
    assert capsys.readouterr().err.startswith(f"gpuau: error: {tmp_path / 'x.gif'}: write the annotated video as .mp4")
    assert main(["plot", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "b.png")]) == 2
    assert "gpuau: error:" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == [
        "aus.png", "default.parquet"]


def test_render_leaves_nothing_when_it_fails_and_no_video_a_full_disk_cut_short(media_dir, reference_dir, tmp_path,
                                                                               monkeypatch, capsys):
    """A failure mid-video left its partial video (a name no sweep of temporary files knows); and OpenCV's writer
    reports no failed write, so a full disk left an unplayable video (no index) under the output's name."""
    from collections import namedtuple

    import gpuau.viz

    args = ["render", str(media_dir / "changeLighting.wmv"), str(reference_dir / "changeLighting.csv")]
    out = tmp_path / "out"
    out.mkdir()
    draw, drawn = gpuau.viz.draw_frame, []

    def fail_at_frame_10(*a):
        drawn.append(1)
        if len(drawn) == 10:
            raise RuntimeError("a drawing failed")
        return draw(*a)

    monkeypatch.setattr(gpuau.viz, "draw_frame", fail_at_frame_10)
    with pytest.raises(RuntimeError, match="a drawing failed"):
        main([*args, "-o", str(out / "a.mp4")])
    assert not list(out.iterdir())

    monkeypatch.setattr(gpuau.viz, "draw_frame", draw)
    writer = cv2.VideoWriter

    class DiskFills:  # the disk fills after 40 frames: the writer goes on, storing nothing more
        def __init__(self, *a):
            self.writer, self.frames = writer(*a), 0

        def __getattr__(self, name):
            return getattr(self.writer, name)

        def write(self, image):
            self.frames += 1
            if self.frames <= 40:
                self.writer.write(image)

    monkeypatch.setattr(cv2, "VideoWriter", DiskFills)
    monkeypatch.setattr(gpuau.viz.shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(1, 1, 0))
    assert main([*args, "-o", str(out / "b.avi")]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: [Errno 28] {out / 'b.avi'}: the video writer stored 40 of 88 "
                                       "frames: the disk is full (free space and run again)\n")
    assert not list(out.iterdir())


def test_render_refuses_another_videos_table(media_dir, reference_dir, tmp_path, capsys):
    """default.wmv's 288 rows drawn on changeLighting.wmv's 88 frames gave a video, and no word."""
    out, csv, video = tmp_path / "mixed.mp4", reference_dir / "default.csv", media_dir / "changeLighting.wmv"
    assert main(["render", str(video), str(csv), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: {csv}: its rows run to frame 288, and {video} has 88 frames: it "
                                       "is another video's table (or the video was cut since); give the CSV of this "
                                       "video\n")
    assert not out.exists()
    aus = tmp_path / "aus.csv"  # a table of --columns aus: nothing to draw the face with
    with open(csv) as f, open(aus, "w") as g:
        rows = [line.rstrip("\n").split(", ") for line in f]
        keep = [i for i, c in enumerate(rows[0]) if c in ("frame", "face_id", "success") or c.startswith("AU")]
        g.writelines(", ".join(r[i] for i in keep) + "\n" for r in rows)
    assert main(["render", str(media_dir / "default.wmv"), str(aus), "-o", str(out)]) == 2
    assert "no 2D landmark columns to draw (a table of --columns without 2Dfp)" in capsys.readouterr().err


def test_render_without_a_csv_analyses_the_video_first(corpus, tmp_path, monkeypatch, capsys):
    """`gpuau render VIDEO -o OUT` with no CSV: the video's analysis (as `gpuau analyze` makes it) drawn on each of its
    frames.  A failure means the command without a CSV fails, drops or adds frames, draws other results than the
    analysis's, or leaves its analysis (a temporary folder) or a partial video behind."""
    import tempfile

    clip = corpus[2]  # default.wmv's first 30 frames
    scratch = tmp_path / "tmp"  # where tempfile puts the command's analysis
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["analyze", str(clip), "-o", str(tmp_path / "csv"), "--device", "cpu", "-q"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    assert main(["render", str(clip), str(tmp_path / "csv" / "clip30.csv"), "-o", str(out / "given.mp4")]) == 0
    capsys.readouterr()
    assert main(["render", str(clip), "-o", str(out / "analysed.mp4"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"{out / 'analysed.mp4'}\n"
    assert sorted(p.name for p in out.iterdir()) == ["analysed.mp4", "given.mp4"] and not list(scratch.iterdir())
    source, given, analysed = (cv2.VideoCapture(str(p)) for p in (clip, out / "given.mp4", out / "analysed.mp4"))
    assert int(analysed.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    for k in range(30):
        ok, frame = source.read()
        assert ok
        ok, drawn = analysed.read()
        assert ok and drawn.shape == (480, 640 + 190, 3), k  # the frame's size, plus the AU panel
        assert np.array_equal(drawn, given.read()[1]), k  # what the analysis's CSV draws
        assert np.abs(drawn[:, :640].astype(int) - frame).max() > 100, k  # and something was drawn on the frame
    assert not analysed.read()[0]


@pytest.fixture(scope="module")
def multi_face(media_dir, tmp_path_factory):
    """multi_face.avi's first 6 frames (lossless) and their `gpuau analyze --multi-face --quality fast` CSV: faces 0, 1
    and 2 on every frame, face 0 not tracked on frames 1 and 2."""
    from media import read_frames, write_clip

    folder = tmp_path_factory.mktemp("multi_face")
    clip = write_clip(folder / "clip.avi", read_frames(media_dir / "multi_face.avi", 6), 30.0, "FFV1")
    assert main(["analyze", str(clip), "-o", str(folder), "--multi-face", "--quality", "fast", "-q"]) == 0
    return clip, folder / "clip.csv"


def _rows(table, face_id):
    """The CSV's rows of face ``face_id``, by frame number."""
    return {int(f): i for i, (f, k) in enumerate(zip(table["frame"], table["face_id"])) if k == face_id}


def test_render_draws_the_face_asked_for(multi_face, tmp_path):
    """--face-id N draws face N's landmarks (yellow dots on its 68 points) and no other face's, and nothing on a frame
    where face N was not tracked: a failure means the wrong face, every face, or a failed fit is drawn."""
    from gpuau.io import read_openface_csv

    clip, csv = multi_face
    table = read_openface_csv(csv)
    assert set(table["face_id"]) == {0, 1, 2}
    renders = {}
    for face in (0, 1):
        assert main(["render", str(clip), str(csv), "-o", str(tmp_path / f"{face}.avi"), "--face-id", str(face)]) == 0
        capture = cv2.VideoCapture(str(tmp_path / f"{face}.avi"))
        renders[face] = [capture.read()[1] for _ in range(6)]

    def yellow(img, i):  # the share of row i's landmarks under a yellow dot
        points = np.round([[table[f"{a}_{k}"][i] for a in "xy"] for k in range(68)]).astype(int)
        b, g, r = np.array([img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(axis=0) for x, y in points]).T
        return np.mean((g > 150) & (r > 150) & (b < 120))

    for face, other in ((0, 1), (1, 0)):
        for frame, i in _rows(table, face).items():
            j = _rows(table, other)[frame]
            drawn = renders[face][frame - 1]
            if table["success"][i]:
                assert yellow(drawn, i) > 0.8, (face, frame)
            else:
                assert face == 0 and frame in (1, 2) and yellow(drawn, i) < 0.1, (face, frame)
            assert yellow(drawn, j) < 0.1, (face, frame)  # the other face, at its own points: not drawn


def test_plot_plots_the_face_asked_for(multi_face, tmp_path, monkeypatch):
    """--face-id N plots face N's AU intensities over the frames where it was tracked, and no other face's: a failure
    means the plot mixes the faces' rows, shows another face's, or keeps failed fits."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from gpuau.io import read_openface_csv

    plotted, save = [], Figure.savefig

    def savefig(fig, *a, **kw):  # what was drawn, then the picture saved as ever
        plotted.append({ax.get_title(loc="left"): ax.lines[0].get_xydata() for ax in fig.axes if ax.lines})
        return save(fig, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", savefig)
    _, csv = multi_face
    table = read_openface_csv(csv)
    for face in (0, 1):
        out = tmp_path / f"{face}.png"
        assert main(["plot", str(csv), "-o", str(out), "--face-id", str(face)]) == 0
        assert cv2.imread(str(out)).shape[1] > 1000
        rows = [i for i in _rows(table, face).values() if table["success"][i]]
        assert len(rows) == (4 if face == 0 else 6)  # face 0 not tracked on frames 1 and 2
        series = plotted.pop()
        assert sorted(series) == sorted(c[:-2] for c in table if c.startswith("AU") and c.endswith("_r"))
        for au, xy in series.items():
            np.testing.assert_array_equal(xy, np.stack([table["timestamp"][rows], table[f"{au}_r"][rows]], axis=1))


def test_render_refuses_a_face_the_csv_does_not_have(multi_face, tmp_path, capsys):
    """A mistyped --face-id rendered "no face" on every frame and exited 0, as for a face never tracked."""
    clip, csv = multi_face
    out = tmp_path / "7.mp4"
    status = main(["render", str(clip), str(csv), "-o", str(out), "--face-id", "7"])
    err = capsys.readouterr().err
    assert (status, out.exists()) == (2, False)
    assert err.startswith(f"gpuau: error: {csv}: no face 7 in it (its face ids: 0, 1, 2); choose one of them")


def test_render_without_a_csv_refuses_another_face_before_analysing(multi_face, tmp_path, capsys, monkeypatch):
    """Without a CSV, render analyses one face (face 0): --face-id 1 failed only after the whole analysis, naming a
    temporary CSV already deleted."""
    import gpuau.pipeline

    clip, _ = multi_face
    monkeypatch.setattr(gpuau.pipeline.Analyzer, "write_video", lambda *a, **kw: pytest.fail("analysed"))
    assert main(["render", str(clip), "-o", str(tmp_path / "1.mp4"), "--face-id", "1"]) == 2
    assert capsys.readouterr().err == ("gpuau: error: --face-id 1: without a CSV, render analyses the video's one face "
                                       "(face 0); give it the CSV of `gpuau analyze --multi-face`\n")
    assert not list(tmp_path.iterdir())


def test_render_and_plot_refuse_a_photos_table(corpus, tmp_path, capsys):
    """A photo's CSV (a row per face, no frame column) gave a KeyError traceback from both commands."""
    assert main(["analyze", str(corpus[1]), "-o", str(tmp_path), "-q"]) == 0
    csv = tmp_path / "sample1.csv"
    expected = (f"gpuau: error: {csv}: not the table of a video or image folder (no frame column; a photo's table has a "
                f"row per face): render and plot take the CSV of a video\n")
    assert main(["render", str(corpus[2]), str(csv), "-o", str(tmp_path / "r.mp4")]) == 2
    assert capsys.readouterr().err == expected
    if importlib.util.find_spec("matplotlib"):
        assert main(["plot", str(csv), "-o", str(tmp_path / "p.png")]) == 2
        assert capsys.readouterr().err == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuau-settings.jsonl", "sample1.csv"]


def test_plot_refuses_a_face_the_csv_does_not_have(multi_face, tmp_path, capsys):
    """A mistyped --face-id plotted empty panels and exited 0."""
    pytest.importorskip("matplotlib")
    _, csv = multi_face
    out = tmp_path / "7.png"
    status = main(["plot", str(csv), "-o", str(out), "--face-id", "7"])
    err = capsys.readouterr().err
    assert (status, out.exists()) == (2, False)
    assert err.startswith(f"gpuau: error: {csv}: no face 7 in it (its face ids: 0, 1, 2); choose one of them")


def test_a_table_without_face_ids_is_face_zeros(tmp_path):
    """OpenFace 2.0's FeatureExtraction wrote no face_id column: its rows are face 0, as render and plot read them."""
    columns = {"frame": np.arange(1.0, 4.0), "timestamp": np.arange(3) / 30.0, "confidence": np.full(3, 0.98),
               "success": np.ones(3), "AU12_r": np.array([0.5, 1.0, 1.5])}
    path = write_openface_csv(tmp_path / "old.csv", columns, order=list(columns))
    _, rows = _face_table(path, 0)
    assert rows.tolist() == [True, True, True]


def test_au_bars_are_scaled_to_intensity_five():
    """An AU's bar spans the panel's bar width (190 - 60 px) at intensity 5, half of it at 2.5, green when present."""
    blank = np.zeros((240, 320, 3), np.uint8)
    for value, present, want in ((5.0, 1.0, 130), (2.5, 0.0, 65), (7.0, 1.0, 130)):
        out = draw_frame(blank, {"success": 1.0, "AU12_r": value, "AU12_c": present}, ["AU12_r"], None)
        colour = (60, 200, 60) if present else (160, 160, 160)
        bar = np.all(out[:, 320:] == colour, axis=2)
        cols = np.flatnonzero(bar.any(axis=0))
        assert cols.min() == 52 and cols.max() - cols.min() == want, (value, cols.min(), cols.max())
