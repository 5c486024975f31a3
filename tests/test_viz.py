"""Pictures: annotated video and AU plot from an OpenFace CSV (OpenFace's own reference CSV here)."""
import cv2
import numpy as np
import pytest

from gpuau.cli import main
from gpuau.viz import draw_frame, project_gaze, project_pose_axes


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
