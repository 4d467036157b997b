"""Where every command's finished videos go: one function that writes a video and its sidecar.

``tenku generate`` and the task commands (image-to-video, extend, loop, ...) all end here, so
what happens to an output on its way to disk (watermark, provenance) is decided in one place.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tenku.cli.world import write_json

if TYPE_CHECKING:  # imported when used: building the parser imports neither torch nor PyAV
    from tenku.pipelines.pipeline import GeneratedVideo
    from tenku.safety.visible import VisibleOptions


def output_paths(out: Path, n: int, suffixes: tuple[str, ...] = (".mp4", ".gif")) -> list[Path]:
    """``out`` for one video, ``OUT-1.ext`` ... ``OUT-n.ext`` for several."""
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"out: {out} must end in {' or '.join(suffixes)}")
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(n)]


def save_videos(
    videos: Sequence[GeneratedVideo],
    paths: Sequence[Path],
    *,
    quiet: bool = False,
    visible: VisibleOptions | None = None,
) -> None:
    """Write each video (atomically) and its JSON sidecar (same name, ``.json``).

    Every video is published through :func:`tenku.safety.publish.publish`: visible mark
    (``visible``, by default the standard mark), invisible watermark carrying its video id, and
    a signed C2PA manifest (mp4).
    """
    from tenku.safety.publish import DEFAULT_VISIBLE, publish, request_ingredients, request_video_id

    visible = DEFAULT_VISIBLE if visible is None else visible
    for video, path in zip(videos, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        published = publish(
            video.frames,
            video.fps,
            path,
            video_id=request_video_id(video.request.to_dict(), video.model),
            model=video.model,
            prompt=video.request.prompt,
            ingredients=request_ingredients(video.request),
            visible=visible,
        )
        sidecar = {**video.sidecar(), "video": path.name, **published.sidecar()}
        write_json(path.with_suffix(".json"), sidecar)
        if not quiet:
            print(f"{path} (seed {video.request.seed})", file=sys.stderr)
