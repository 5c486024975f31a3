"""Write ``bt709_444.mp4`` and ``bt709_10bit.mp4``: ``bt709.mp4``'s pattern (``make_bt709_clip.py``) as H.264
4:4:4 and as 10-bit 4:2:0, both tagged with BT.709's colour matrix, with PyAV's encoder, and each one's first frame
as OpenCV 4.6 with FFmpeg 5.1 (Debian 12, under the OpenFace build of the reference CSVs) decodes it
(``*_opencv46.png``), for ``tests/test_video.py``.  Needs PyAV and OpenCV 4.6's C++ headers and libraries
(``pkg-config opencv4``):

    python tests/data/make_bt709_formats.py
"""
from pathlib import Path

import av

from make_bt709_clip import HERE, pattern, write_first_frames


def write(path: Path, pix_fmt: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.codec_context.colorspace = stream.codec_context.color_primaries = stream.codec_context.color_trc = 1
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(pattern(), format="bgr24").reformat(format=pix_fmt)
            frame.colorspace = 1
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main() -> None:
    clips = []
    for name, pix_fmt in (("bt709_444", "yuv444p"), ("bt709_10bit", "yuv420p10le")):
        clips.append(HERE / f"{name}.mp4")
        write(clips[-1], pix_fmt)
    write_first_frames(clips)


if __name__ == "__main__":
    main()
