"""Frame sources: video files, single images and image folders, decoded in a background thread.

Port of OpenFace's ``Utilities::SequenceCapture`` / ``ImageCapture`` conventions: image files are read as
``cv::imread(IMREAD_COLOR)`` reads them (EXIF orientation applied, 16-bit to its high byte), frames are 8-bit BGR,
the grayscale frame is ``ConvertToGrayscale_8bit``'s, timestamps are ``index * (1 / fps)`` (0 for image folders), the
default camera intrinsics are ``SetCameraIntrinsics``'s, and a video whose container asks for a rotation is turned as
the OpenFace build of the reference CSVs turns it (:data:`ORIENTATIONS`), and one tagged with BT.709's colour
matrix converted with BT.601's, as that build's OpenCV 4.6 converts every video.
"""
from gpuau.video.source import (
    IMAGE_EXTENSIONS,
    IN_MEMORY,
    ORIENTATIONS,
    QUEUE_BYTES,
    TIMESTAMPS,
    VIDEO_EXTENSIONS,
    Frame,
    InputError,
    VideoSource,
    array_frames,
    camera_intrinsics,
    check_camera,
    check_video_options,
    decoder_threads,
    decoding_notes,
    no_face_notes,
    open_source,
    queue_depth,
    sequence_files,
    serial_opencv,
    to_bgr8,
    to_gray8,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "IN_MEMORY",
    "ORIENTATIONS",
    "QUEUE_BYTES",
    "TIMESTAMPS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "InputError",
    "VideoSource",
    "array_frames",
    "camera_intrinsics",
    "check_camera",
    "check_video_options",
    "decoder_threads",
    "decoding_notes",
    "no_face_notes",
    "open_source",
    "queue_depth",
    "sequence_files",
    "serial_opencv",
    "to_bgr8",
    "to_gray8",
]
