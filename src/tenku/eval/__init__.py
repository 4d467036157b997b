"""Evaluation: reading sandbox-world videos back (perception) to score what they show.

The names below load on first use (PEP 562), so importing a light submodule such as
``tenku.eval.corruptions`` does not pull in scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detection": "tenku.eval.perception",
    "FrameView": "tenku.eval.perception",
    "Perception": "tenku.eval.perception",
    "perceive": "tenku.eval.perception",
    "perceive_frame": "tenku.eval.perception",
    "ObjectTrack": "tenku.eval.tracking",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tenku.eval' has no attribute {name!r}")
