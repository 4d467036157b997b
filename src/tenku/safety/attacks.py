"""Transformations a watermark must survive, shared by the tests and ``bench/watermark.py``.

Each takes uint8 RGB frames ``(T, H, W, 3)`` and returns new ones; none changes its input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tenku.io import read_video, write_video


def h264(frames: np.ndarray, fps: float, *, crf: int = 28) -> np.ndarray:
    """Encode to H.264 yuv420p at ``crf`` through :func:`tenku.io.write_video`, decode back.

    Odd sizes are cropped by one pixel (yuv420p needs even sizes).
    """
    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "clip.mp4", np.ascontiguousarray(frames), fps, crf=crf)
        return read_video(path).frames


def rescale(frames: np.ndarray, factor: float) -> np.ndarray:
    """Resize every frame by ``factor`` (bicubic, antialiased when shrinking)."""
    if not 0.05 <= factor <= 8:
        raise ValueError(f"factor: {factor} must lie in [0.05, 8]")
    h, w = frames.shape[1:3]
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in frames]
    )


def crop(frames: np.ndarray, fraction: float = 0.1, *, anchor: str = "center") -> np.ndarray:
    """Cut ``fraction`` of the width and of the height away.

    ``anchor`` is ``center`` (equal margins) or ``corner`` (all from the top and left).
    """
    if not 0 <= fraction < 0.9:
        raise ValueError(f"fraction: {fraction} must lie in [0, 0.9)")
    if anchor not in ("center", "corner"):
        raise ValueError(f"anchor: {anchor!r} is not 'center' or 'corner'")
    h, w = frames.shape[1:3]
    ch, cw = round(h * fraction), round(w * fraction)
    top, left = (ch // 2, cw // 2) if anchor == "center" else (ch, cw)
    return frames[:, top : top + h - ch, left : left + w - cw].copy()


def change_fps(frames: np.ndarray, fps: float, new_fps: float) -> np.ndarray:
    """Resample in time by duplicating or dropping frames (nearest earlier frame)."""
    if not fps > 0 or not new_fps > 0:
        raise ValueError(f"fps and new_fps must be > 0, got {fps} and {new_fps}")
    n = max(1, round(len(frames) * new_fps / fps))
    index = np.minimum(np.floor(np.arange(n) * fps / new_fps + 1e-9).astype(int), len(frames) - 1)
    return frames[index]
