"""Visible watermark: a small, semi-transparent "tenku" mark that drifts from corner to corner.

The mark is white text with a thin dark outline (readable on light and dark pictures), drawn
with Pillow's bundled font. It starts in the top-left corner and glides along the edges,
clockwise, reaching the next corner every ``seconds_per_corner`` seconds, so it never sits still
long enough to be cropped away from one spot and never covers the middle of the picture.
Turning it off (``VisibleOptions(enabled=False)``) leaves the invisible watermark and the C2PA
manifest in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LIMITS = {
    "opacity": (0.05, 1.0),
    "size": (0.03, 0.5),  # text height as a fraction of the frame's short side
    "seconds_per_corner": (0.5, 600.0),
}
MAX_TEXT = 32  # characters
_MIN_FONT_PX = 7  # smaller than this Pillow's font is unreadable


@dataclass(frozen=True)
class VisibleOptions:
    """How the visible mark looks; every field is checked on creation."""

    enabled: bool = True  # False: no visible mark (provenance and invisible mark stay)
    opacity: float = 0.55  # 0.05-1: how strongly the mark covers the picture
    size: float = 0.1  # 0.03-0.5: text height as a fraction of the frame's short side
    text: str = "tenku"  # what the mark says (1-32 printable characters)
    seconds_per_corner: float = 4.0  # seconds to glide from one corner to the next

    def __post_init__(self) -> None:
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not low <= value <= high:
                raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
        if not isinstance(self.text, str) or not self.text.strip() or len(self.text) > MAX_TEXT:
            raise ValueError(f"text: must be 1-{MAX_TEXT} characters, got {self.text!r}")
        if not self.text.isprintable():
            raise ValueError(f"text: must be printable characters, got {self.text!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (for sidecars and manifests)."""
        return asdict(self)


def mark_masks(text: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage masks ``(h, w)`` float32 in [0, 1] of the text fill and of fill plus outline."""
    font = ImageFont.load_default(size=max(_MIN_FONT_PX, height))
    stroke = max(1, height // 12)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    size = (right - left + 2, bottom - top + 2)
    masks = []
    for width in (0, stroke):
        image = Image.new("L", size, 0)
        ImageDraw.Draw(image).text(
            (1 - left, 1 - top), text, fill=255, font=font, stroke_width=width, stroke_fill=255
        )
        masks.append(np.asarray(image, np.float32) / 255.0)
    return masks[0], masks[1]


def mark_positions(
    num_frames: int, fps: float, frame_hw: tuple[int, int], mark_hw: tuple[int, int], seconds: float
) -> np.ndarray:
    """(T, 2) int top-left ``(y, x)`` of the mark in each frame: clockwise from corner to corner."""
    (h, w), (mh, mw) = frame_hw, mark_hw
    margin = max(1, round(0.03 * min(h, w)))
    y0, x0 = margin, margin
    y1, x1 = max(y0, h - mh - margin), max(x0, w - mw - margin)
    corners = np.array([(y0, x0), (y0, x1), (y1, x1), (y1, x0)], np.float64)
    legs = np.arange(num_frames) / fps / seconds  # corners travelled so far
    k = np.floor(legs).astype(int)
    frac = (legs - k)[:, None]
    start, end = corners[k % 4], corners[(k + 1) % 4]
    return np.rint(start + frac * (end - start)).astype(int)


def apply_visible(frames: np.ndarray, fps: float, options: VisibleOptions) -> np.ndarray:
    """uint8 RGB ``frames`` ``(T, H, W, 3)`` with the moving mark drawn on; a copy.

    With ``options.enabled`` False the frames are returned unchanged (as a copy).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames: expected uint8 array of shape (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    if not fps > 0:
        raise ValueError(f"fps: must be > 0, got {fps}")
    out = frames.copy()
    if not options.enabled:
        return out
    t, h, w, _ = frames.shape
    fill, outline = mark_masks(options.text, round(options.size * min(h, w)))
    mh, mw = min(fill.shape[0], h), min(fill.shape[1], w)
    fill, outline = fill[:mh, :mw, None], outline[:mh, :mw, None]
    positions = mark_positions(t, fps, (h, w), (mh, mw), options.seconds_per_corner)
    for i, (y, x) in enumerate(positions):
        region = out[i, y : y + mh, x : x + mw].astype(np.float32)
        region *= 1.0 - options.opacity * outline  # dark outline and body
        region += options.opacity * fill * 255.0  # white text on top
        out[i, y : y + mh, x : x + mw] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out
