"""Evaluation: reading sandbox-world videos back (perception) to score what they show."""

from tenku.eval.perception import (
    Detection,
    FrameView,
    Perception,
    perceive,
    perceive_frame,
)
from tenku.eval.tracking import ObjectTrack

__all__ = ["Detection", "FrameView", "ObjectTrack", "Perception", "perceive", "perceive_frame"]
