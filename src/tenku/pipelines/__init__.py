"""Pipelines: requests in, videos out. :class:`TenkuPipeline` runs the native model.

The names load on first use, so that reading a request (``tenku.pipelines.request``) or
building the ``tenku`` command's parser does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenku.pipelines.pipeline import (
        GeneratedVideo,
        TenkuPipeline,
        default_model_path,
        export_model,
    )
    from tenku.pipelines.request import GenerationRequest, frames_for, size_for

_HOMES = {
    "GeneratedVideo": "tenku.pipelines.pipeline",
    "TenkuPipeline": "tenku.pipelines.pipeline",
    "default_model_path": "tenku.pipelines.pipeline",
    "export_model": "tenku.pipelines.pipeline",
    "GenerationRequest": "tenku.pipelines.request",
    "frames_for": "tenku.pipelines.request",
    "size_for": "tenku.pipelines.request",
}

__all__ = [
    "GeneratedVideo",
    "GenerationRequest",
    "TenkuPipeline",
    "default_model_path",
    "export_model",
    "frames_for",
    "size_for",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
