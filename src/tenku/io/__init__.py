"""Video and image I/O: uint8 RGB arrays ``(T, H, W, 3)`` to and from files.

See :mod:`tenku.io.video` for the formats and guarantees (H.264 BT.709 MP4, GIF, PNG; atomic
writes; typed errors that name the offending path or argument).
"""

from tenku.io.video import (
    Video,
    VideoReadError,
    VideoWriteError,
    atomic_path,
    probe,
    read_image,
    read_video,
    write_frames,
    write_image,
    write_video,
)

__all__ = [
    "Video",
    "VideoReadError",
    "VideoWriteError",
    "atomic_path",
    "probe",
    "read_image",
    "read_video",
    "write_frames",
    "write_image",
    "write_video",
]
