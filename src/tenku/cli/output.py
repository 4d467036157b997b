"""Where every command's sources come from and its finished videos go.

``tenku generate`` and the task commands (image-to-video, extend, loop, ...) all pass here, so
what happens to an output on its way to disk (watermark, provenance, a clean copy in the local
library) and to a tenku output used as a source (its clean original instead) is decided in one
place (:mod:`tenku.safety.library`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tenku.cli.world import write_json

if TYPE_CHECKING:  # imported when used: building the parser imports neither torch nor PyAV
    from tenku.pipelines.pipeline import GeneratedVideo
    from tenku.pipelines.request import GenerationRequest
    from tenku.safety.visible import VisibleOptions


def output_paths(out: Path, n: int, suffixes: tuple[str, ...] = (".mp4", ".gif")) -> list[Path]:
    """``out`` for one video, ``OUT-1.ext`` ... ``OUT-n.ext`` for several."""
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"out: {out} must end in {' or '.join(suffixes)}")
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(n)]


def clean_sources(request: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """``request`` with every source file that tenku wrote (and nobody changed since) replaced
    by its clean original from the local library, and a note for each source replaced or
    found to carry tenku's marks without an original here (its marks will show)."""
    from dataclasses import replace

    from tenku.safety.library import find_original, library_dir

    cleaned: dict[str, str] = {}
    notes: list[str] = []

    def clean(path: str) -> str:
        if path not in cleaned:
            found = find_original(path)
            cleaned[path] = path if found.original is None else str(found.original)
            if found.original is not None:
                notes.append(f"{path} is a tenku output: starting from its clean original")
            elif found.marked:
                notes.append(
                    f"{path} carries tenku's marks, but its clean original is not in "
                    f"{library_dir()} (made elsewhere, or changed since): the new video will "
                    "show its marks as well as its own"
                )
        return cleaned[path]

    blend = request.blend
    if blend is not None and blend.videos:
        blend = replace(blend, videos=tuple(clean(v) for v in blend.videos))
    sourced = replace(
        request,
        keyframes=tuple(replace(k, path=clean(k.path)) for k in request.keyframes),
        remix=None
        if request.remix is None
        else replace(request.remix, path=clean(request.remix.path)),
        blend=blend,
        cards=tuple(
            c if c.image is None else replace(c, image=clean(c.image)) for c in request.cards
        ),
    )
    return sourced, notes


def save_videos(
    videos: Sequence[GeneratedVideo],
    paths: Sequence[Path],
    *,
    quiet: bool = False,
    visible: VisibleOptions | None = None,
    sources: GenerationRequest | None = None,
) -> None:
    """Write each video (atomically) and its JSON sidecar (same name, ``.json``), and keep its
    unmarked frames in the local library (:mod:`tenku.safety.library`).

    Every video is published through :func:`tenku.safety.publish.publish`: visible mark
    (``visible``, by default the standard mark), invisible watermark carrying its video id, and
    a signed C2PA manifest (mp4) whose ingredients are the files ``sources`` names (the request
    as given, when :func:`clean_sources` swapped some for their originals), else the files the
    video's own request names.
    """
    from tenku.safety.library import keep_original
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
            ingredients=request_ingredients(video.request if sources is None else sources),
            visible=visible,
        )
        keep_original(video.frames, video.fps, f"{published.payload:08x}", path)
        sidecar = {**video.sidecar(), "video": path.name, **published.sidecar()}
        write_json(path.with_suffix(".json"), sidecar)
        if not quiet:
            print(f"{path} (seed {video.request.seed})", file=sys.stderr)
