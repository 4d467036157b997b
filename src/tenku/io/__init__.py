"""Video and image I/O: uint8 RGB arrays ``(T, H, W, 3)`` to and from files.

See :mod:`tenku.io.video` for the formats and guarantees (H.264 BT.709 MP4, GIF, PNG; atomic
writes; typed errors that name the offending path or argument). :func:`atomic_path` lives in
:mod:`tenku.io.files` and imports no video library, so training code runs where PyAV is absent
(the device machine); the video names load PyAV on first use.
"""

from typing import Any

from tenku.io.files import atomic_path

_VIDEO_NAMES = (
    "Video",
    "VideoReadError",
    "VideoWriteError",
    "probe",
    "read_image",
    "read_video",
    "write_frames",
    "write_image",
    "write_video",
)

__all__ = ["atomic_path", *_VIDEO_NAMES]


def __getattr__(name: str) -> Any:
    if name in _VIDEO_NAMES:
        from tenku.io import video

        return getattr(video, name)
    raise AttributeError(f"module 'tenku.io' has no attribute {name!r}")
