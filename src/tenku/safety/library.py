"""The local library of clean originals, so that work on a tenku output starts from the
picture the model made, never from one that already carries tenku's marks.

Every output is published marked (a visible mark, an invisible watermark) and, for mp4, through
H.264's losses. Chaining such a file (image-to-video from a tenku still, extend, fill, remix a
tenku clip) would stamp a second mark over the first ("tetenku", a ghost mark at the seam) and
"keep exactly" frames that are the marked, re-encoded ones. So ``tenku`` keeps each output's
unmarked frames here, losslessly, and a source that is byte for byte a file tenku wrote is
swapped for its original before any work starts: the new video carries one mark, and the frames
a task keeps are the model's own.

Layout, in ``$TENKU_HOME/library``:

* ``<payload>.png`` (a still) or ``<payload>.mkv`` (a clip: FFV1, lossless RGB, at the clip's
  frame rate), named by the output's invisible watermark payload (8 hex digits, from its video
  id): what the model made, before any mark;
* ``<sha256>.json``, one per published file (SHA-256 of its bytes, manifest included): which
  original it was made from. A file edited or re-encoded since tenku wrote it no longer
  matches, and is used as it is.

A source that carries tenku's marks but is not in the library (made on another machine, or
changed since) is reported by :func:`find_original` (``marked``), so the caller can say that
its marks will show. Deleting the folder loses nothing but this.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from tenku.io import atomic_path, read_video, write_image
from tenku.io.files import file_sha256
from tenku.safety.keys import tenku_home

INDEX_SUFFIX = ".json"


def library_dir() -> Path:
    """``$TENKU_HOME/library``."""
    return tenku_home() / "library"


@dataclass(frozen=True)
class Lookup:
    """What the library knows of a source file."""

    path: Path  # the file looked up
    original: Path | None  # its clean original, when the file is one tenku wrote, unchanged
    marked: bool  # whether it carries tenku's marks (a C2PA manifest or the watermark)


def keep_original(
    frames: np.ndarray, fps: float, payload: str, published: Path, directory: Path | None = None
) -> Path:
    """Keep the unmarked uint8 ``frames`` ``(T, H, W, 3)`` of the output published at
    ``published`` (its watermark ``payload``, 8 hex digits); returns the original's path."""
    directory = library_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    if len(frames) == 1 and published.suffix.lower() == ".png":
        original = write_image(directory / f"{payload}.png", frames[0])
    else:
        original = write_lossless(directory / f"{payload}.mkv", frames, fps)
    index = directory / f"{file_sha256(published)}{INDEX_SUFFIX}"
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps({"original": original.name, "published": published.name}))
    return original


def find_original(path: str | os.PathLike[str], directory: Path | None = None) -> Lookup:
    """Look ``path`` up: its clean original if tenku wrote this very file, else whether it
    carries tenku's marks at all (a C2PA manifest or the invisible watermark)."""
    path = Path(path)
    if not path.is_file():  # a folder of PNG frames: never a file tenku wrote
        return Lookup(path, None, False)
    directory = library_dir() if directory is None else directory
    index = directory / f"{file_sha256(path)}{INDEX_SUFFIX}"
    if index.is_file():
        original = directory / json.loads(index.read_text())["original"]
        if original.is_file():
            return Lookup(path, original, True)
    return Lookup(path, None, _is_marked(path))


def _is_marked(path: Path) -> bool:
    """A C2PA manifest, or tenku's watermark at the size it was made (a re-encoded copy; the
    full search over rescaled sizes takes seconds, more than a source check should)."""
    from tenku.safety.invisible import detect
    from tenku.safety.provenance import verify_file

    if verify_file(path).present:
        return True
    try:
        return detect(read_video(path).frames, scales=(1.0,)).found
    except ValueError:  # not decodable: not one of ours either
        return False


def write_lossless(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 ``frames`` ``(T, H, W, 3)`` to ``path`` (atomically) as FFV1 in Matroska,
    RGB kept exactly (read back by :func:`tenku.io.read_video`); also the clean originals
    `tenku serve` keeps beside each job's outputs."""
    import av

    rate = Fraction(float(fps)).limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="bgr0")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
