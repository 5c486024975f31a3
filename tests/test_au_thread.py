"""The pipeline's AU thread (:class:`gpuau.pipeline.AUThread`) gives exactly the single-threaded results."""
from __future__ import annotations

import numpy as np
import pytest

from au_harness import VIDEOS, reference_landmarks
from media import read_frames
from reference import read_reference


@pytest.fixture(scope="module")
def clip(media_dir, reference_dir):
    df = read_reference(reference_dir / "default.csv")
    n = 12
    frames = read_frames(media_dir / VIDEOS["default"], n)
    success = np.ones(n, bool)
    success[[3, 7]] = False  # failed frames: zero features, medians not updated
    return frames, reference_landmarks(df.iloc[:n]), success


@pytest.mark.parametrize("batch", [1, 5, 8])
def test_au_thread_equals_frame_by_frame(clip, batch):
    """In batches of 5, the 12 frames go as 5 + 5 + 2; in batches of 8 as 8 + 4: the last batch is cut by the end."""
    from gpuau.au import AUAnalyzer
    from gpuau.pipeline import AUThread

    frames, lm, success = clip
    one = AUAnalyzer()
    for i, (f, l, s) in enumerate(zip(frames, lm, success)):
        one.add_frame(f, l, s, i / 30)
    worker = AUThread(AUAnalyzer(), depth=2, batch=batch)
    for i, (f, l, s) in enumerate(zip(frames, lm, success)):
        worker.submit(f, l, s, i / 30)
    worker.close()
    a, b = one.finish(), worker.aus.finish()
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(worker.aus.timestamps, np.arange(len(frames)) / 30)


def test_au_thread_batches_frames_of_one_size(clip, monkeypatch):
    """A batch ends where the frame size changes (an image folder) or its pixels would pass BATCH_BYTES, and each
    frame still gets the values it gets alone."""
    from gpuau.au import AUAnalyzer
    from gpuau.pipeline import AUThread

    frames, lm, success = clip
    # frames 4-7 padded to 500 rows (the face keeps its pixel coordinates)
    sized = [np.pad(f, ((0, 20), (0, 0), (0, 0))) if 4 <= i < 8 else f for i, f in enumerate(frames)]
    one = AUAnalyzer()
    for i, (f, l, s) in enumerate(zip(sized, lm, success)):
        one.add_frame(f, l, s, i / 30)
    sizes = []
    add_frames = AUAnalyzer.add_frames
    monkeypatch.setattr(AUAnalyzer, "add_frames",
                        lambda self, images, *a, **kw: sizes.append(len(images)) or add_frames(self, images, *a, **kw))
    monkeypatch.setattr(AUThread, "BATCH_BYTES", 3 * frames[0].nbytes)
    worker = AUThread(AUAnalyzer(), depth=12, batch=8)
    for i, (f, l, s) in enumerate(zip(sized, lm, success)):
        worker.submit(f, l, s, i / 30)
    worker.close()
    assert sizes == [3, 1, 2, 2, 3, 1]  # 480 rows: 3 + 1; 500 rows (larger): 2 + 2; 480 rows: 3 + 1
    a, b = one.finish(), worker.aus.finish()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_au_thread_hands_errors_to_the_caller(clip):
    from gpuau.au import AUAnalyzer
    from gpuau.pipeline import AUThread

    frames, lm, _ = clip
    worker = AUThread(AUAnalyzer())
    worker.submit(frames[0], lm[0][:10], True, 0.0)  # 10 landmarks: the AU PDM refit fails
    with pytest.raises(ValueError, match="reshape"):  # the AU thread's own error, raised where the caller waits
        worker.close()
    assert worker._finished.is_set()


class _Interrupt(BaseException):
    pass


def test_an_interrupt_while_the_video_waits_for_its_au_backlog_cancels_it(media_dir, tmp_path, monkeypatch):
    """Ctrl-C while the end of a video waits for the AU thread's backlog: the thread went on through up to 64 frames,
    writing the FHOG and aligned faces the interrupted run was removing."""
    import signal
    import threading
    import time

    from gpuau.au import AUAnalyzer
    from gpuau.pipeline import Analyzer, AUThread

    add_frames, close, start = AUAnalyzer.add_frames, AUThread.close, AUThread.__init__
    closing = threading.Event()

    def started(worker, *args, **kwargs):
        start(worker, *args, **kwargs)
        workers.append(worker)

    def slow_add_frames(self, *args, **kwargs):  # an AU stage behind the tracker (a busy core): a full queue
        while not (closing.is_set() or workers[0]._queue.full()):
            time.sleep(0.001)
        if closing.is_set() and not interrupted:  # the end of the video waits for the backlog: Ctrl-C
            interrupted.append(True)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        return add_frames(self, *args, **kwargs)

    def interrupted_close(worker, cancel=False):
        if not cancel:
            backlog.append(worker._queue.qsize())
            closing.set()
        return close(worker, cancel)

    def interrupt(signum, frame):
        raise _Interrupt

    backlog, workers, interrupted = [], [], []
    monkeypatch.setattr(AUAnalyzer, "add_frames", slow_add_frames)
    monkeypatch.setattr(AUThread, "close", interrupted_close)
    monkeypatch.setattr(AUThread, "__init__", started)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        analyzer = Analyzer("cpu", quality="fast", write_hog=True, write_aligned=True)
        with pytest.raises(_Interrupt):
            analyzer.write_video(media_dir / "changeLighting.wmv", tmp_path / "out" / "x.csv")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert backlog[0] > 30 and interrupted and workers[0]._finished.is_set()  # its work was over when it raised
    assert not list((tmp_path / "out").iterdir())  # no CSV, FHOG, aligned faces nor their temporary files
