"""Write ``rotated_270.mp4``: a synthetic 6-frame clip whose container asks players to turn it (FFmpeg's
``rotate=90`` tag, a display matrix that OpenCV reports as a 270 degree clockwise turn), for
``tests/test_video.py``'s orientation tests.

Upright, each frame is 48 pixels wide and 64 high, dark, with a bright square near the top-left corner and a grey
bar along the bottom; it is stored turned a quarter clockwise (64 x 48), lossless (H.264, qp 0, 4:4:4).  Needs the
``ffmpeg`` command (Debian's 5.1 made the committed file):

    python tests/data/make_rotated_clip.py
"""
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def upright() -> np.ndarray:
    """The frame as it is meant to be seen: (64, 48, 3) uint8 BGR."""
    frame = np.full((64, 48, 3), 30, np.uint8)
    frame[4:20, 4:20] = 230
    frame[-8:, :] = 128
    return frame


def main() -> None:
    stored = np.ascontiguousarray(np.rot90(upright(), -1))  # turned a quarter clockwise
    h, w = stored.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.mp4"
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
                        "-r", "10", "-i", "-", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(plain)],
                       input=stored.tobytes() * 6, check=True)
        # the tag is kept only when muxed from an encoded stream
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(plain), "-c", "copy", "-metadata:s:v:0",
                        "rotate=90", str(HERE / "rotated_270.mp4")], check=True)


if __name__ == "__main__":
    main()
