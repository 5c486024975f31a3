"""Write three clips of ``make_bt709_clip.py``'s pattern (untagged: BT.601's matrix) that swscale converts on its
general path, where FFmpeg 8 (opencv-python 5's, PyAV's) places the chroma where the stream says it sits and FFmpeg 5
(OpenCV 4.6's, under the OpenFace build of the reference CSVs) did not, or that carry a full-range flag OpenCV 4.6
ignored, and each one's first frame as OpenCV 4.6 decodes it (``*_opencv46.png``), for ``tests/test_video.py``:
``chroma_10bit.mp4`` (H.264 4:2:0, 10 bits), ``chroma_odd.avi`` (MPEG-4 4:2:0, 63x47), ``full_range.webm`` (VP9
flagged full range).  Needs the ``ffmpeg`` command and OpenCV 4.6's C++ headers and libraries (``pkg-config
opencv4``):

    python tests/data/make_opencv46_chroma.py
"""
import subprocess

from make_bt709_clip import HERE, pattern, write_first_frames

CLIPS = {
    "chroma_10bit.mp4": ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p10le"],
    "chroma_odd.avi": ["-vf", "crop=63:47:0:0", "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"],
    "full_range.webm": ["-c:v", "libvpx-vp9", "-lossless", "1", "-pix_fmt", "yuv420p", "-color_range", "pc"],
}


def main() -> None:
    for name, options in CLIPS.items():
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "64x48",
                        "-r", "10", "-i", "-", *options, str(HERE / name)], input=pattern().tobytes() * 3, check=True)
    write_first_frames([HERE / name for name in CLIPS])


if __name__ == "__main__":
    main()
