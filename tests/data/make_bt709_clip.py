"""Write ``bt709.mp4``, a synthetic 3-frame clip tagged with BT.709's colour matrix (as HD footage is), and
``bt709_opencv46.png``, its first frame as OpenCV 4.6 with FFmpeg 5.1 (Debian 12, under the OpenFace build of the
reference CSVs) decodes it, for ``tests/test_video.py``.

Each frame is 64 x 48: hue and saturation ramps (every colour matrix gives other pixels for them), H.264
lossless (qp 0, 4:2:0).  Needs the ``ffmpeg`` command, and for the PNG OpenCV 4.6's C++ headers and libraries
(``pkg-config opencv4``), which read the clip with ``cv::VideoCapture`` and write its first frame:

    python tests/data/make_bt709_clip.py
"""
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

READER = """#include <opencv2/opencv.hpp>
int main(int, char** argv) { cv::VideoCapture c(argv[1]); cv::Mat f; c.read(f); return cv::imwrite(argv[2], f) ? 0 : 1; }
"""


def pattern() -> np.ndarray:
    """(48, 64, 3) uint8 BGR: blue rising left to right, red top to bottom, green a diagonal."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, (x + y) * 2, y * 5], axis=-1).astype(np.uint8)


def main() -> None:
    clip = HERE / "bt709.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "64x48",
                    "-r", "10", "-i", "-", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", "-colorspace", "bt709",
                    "-color_primaries", "bt709", "-color_trc", "bt709", str(clip)],
                   input=pattern().tobytes() * 3, check=True)
    write_first_frames([clip])


def write_first_frames(clips) -> None:
    """``<clip stem>_opencv46.png`` beside each clip: its first frame as OpenCV 4.6's ``cv::VideoCapture`` reads it."""
    with tempfile.TemporaryDirectory() as tmp:
        source, exe = Path(tmp) / "reader.cpp", Path(tmp) / "reader"
        source.write_text(READER)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "opencv4"], capture_output=True, text=True,
                               check=True).stdout.split()
        subprocess.run(["g++", "-O1", str(source), "-o", str(exe), *flags], check=True)
        for clip in clips:
            subprocess.run([str(exe), str(clip), str(clip.with_name(f"{clip.stem}_opencv46.png"))], check=True)


if __name__ == "__main__":
    main()
