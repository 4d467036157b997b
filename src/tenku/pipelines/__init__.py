"""Pipelines: requests in, videos out. :class:`TenkuPipeline` runs the native model."""

from tenku.pipelines.pipeline import (
    GeneratedVideo,
    TenkuPipeline,
    default_model_path,
    export_model,
)
from tenku.pipelines.request import GenerationRequest, frames_for, size_for

__all__ = [
    "GeneratedVideo",
    "GenerationRequest",
    "TenkuPipeline",
    "default_model_path",
    "export_model",
    "frames_for",
    "size_for",
]
