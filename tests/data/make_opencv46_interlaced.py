"""Write ``interlaced.mp4``, ``make_bt709_clip.py``'s pattern as interlaced H.264 (untagged: BT.601's matrix, as DV,
MPEG-2 and interlaced camcorder footage is), which FFmpeg 8's swscale (opencv-python 5's) converts otherwise than FFmpeg
5's (OpenCV 4.6's, under the OpenFace build of the reference CSVs), and ``interlaced_opencv46.png``, its first frame as
OpenCV 4.6 decodes it, for ``tests/test_video.py``.  Encoded with PyAV's libx264 (4:2:0, qp 0, ``interlaced=1:tff=1``);
the PNG needs OpenCV 4.6's C++ headers and libraries (``pkg-config opencv4``):

    python tests/data/make_opencv46_interlaced.py
"""
import av
import numpy as np

from make_bt709_clip import HERE, pattern, write_first_frames


def main() -> None:
    clip = HERE / "interlaced.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qp": "0", "x264-params": "interlaced=1:tff=1"}
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pattern()), "bgr24")))
        out.mux(stream.encode())
    write_first_frames([clip])


if __name__ == "__main__":
    main()
