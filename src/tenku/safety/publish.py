"""The publish hook: every finished video passes here on its way to disk.

visible mark -> invisible payload (from the video id) -> atomic write through :mod:`tenku.io`
-> C2PA manifest (mp4/mov only; GIFs get both marks but no manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tenku.io import write_video
from tenku.safety.invisible import DEFAULT_KEY, DEFAULT_STRENGTH, embed, payload_from_id
from tenku.safety.keys import SigningIdentity
from tenku.safety.provenance import SIGNABLE, Ingredient, Provenance, prompt_sha256, sign_file
from tenku.safety.visible import VisibleOptions, apply_visible

DEFAULT_VISIBLE = VisibleOptions()  # frozen: safe as a shared default
NO_C2PA_REASON = "{suffix} output: tenku signs only mp4/mov; both watermarks still apply"


@dataclass(frozen=True)
class Published:
    """A written video and what was done to it; :meth:`sidecar` goes into its JSON sidecar."""

    path: Path
    video_id: str
    payload: int  # the invisible watermark's 32-bit payload
    visible: VisibleOptions
    signed: bool
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def sidecar(self) -> dict[str, Any]:
        """``video_id`` and a ``provenance`` block: marks and C2PA state."""
        return {
            "video_id": self.video_id,
            "provenance": {
                "visible_watermark": self.visible.to_dict(),
                "invisible_watermark": self.provenance.watermark,
                "c2pa": {
                    "signed": self.signed,
                    "claim_generator": "tenku",
                    "prompt_sha256": self.provenance.prompt_sha256,
                    "created": self.provenance.created,
                    "ingredients": [i["file"] for i in self.provenance.assertion()["ingredients"]],
                    **({"reason": self.notes[0]} if not self.signed and self.notes else {}),
                },
            },
        }


def new_video_id() -> str:
    """A fresh, unique video id: ``video_`` and 32 hex digits."""
    return f"video_{uuid.uuid4().hex}"


def request_video_id(request: dict[str, Any], model: str) -> str:
    """A video id that the request makes: ``video_`` and 32 hex digits of a SHA-256.

    The same resolved request (seed included) on the same model gives the same id, so the same
    watermark, so a video made again from its sidecar has the same frames.
    """
    text = json.dumps({"request": request, "model": model}, sort_keys=True, default=str)
    return f"video_{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def publish(
    frames: np.ndarray,
    fps: float,
    path: str | os.PathLike[str],
    *,
    video_id: str,
    model: str,
    prompt: str,
    ingredients: Sequence[Ingredient | str | os.PathLike[str]] = (),
    visible: VisibleOptions = DEFAULT_VISIBLE,
    watermark_key: str | bytes = DEFAULT_KEY,
    watermark_strength: float = DEFAULT_STRENGTH,
    identity: SigningIdentity | None = None,
    crf: int = 18,
) -> Published:
    """Mark, write and sign uint8 RGB ``frames`` ``(T, H, W, 3)`` at ``path`` (.mp4/.mov/.gif).

    ``ingredients`` are the source files (remix/extend sources, conditioning images): paths or
    :class:`Ingredient`. ``identity`` overrides the signing certificate (default: the
    operator's configured one, else the local CA's leaf, created on first use).
    """
    path = Path(path)
    if not isinstance(model, str) or not model:
        raise ValueError("model: must be a non-empty string")
    if not isinstance(prompt, str):
        raise ValueError("prompt: must be a string")
    items = tuple(i if isinstance(i, Ingredient) else Ingredient(Path(i)) for i in ingredients)
    payload = payload_from_id(video_id)
    marked = embed(
        apply_visible(frames, fps, visible), payload, key=watermark_key, strength=watermark_strength
    )
    info = Provenance(
        video_id=video_id,
        model=model,
        prompt_sha256=prompt_sha256(prompt),
        watermark={
            "payload": f"{payload:08x}",
            "scheme": "tenku-spread-spectrum-v1",
            "custom_key": watermark_key != DEFAULT_KEY,
        },
        ingredients=items,
    )
    signable = path.suffix.lower() in SIGNABLE
    notes = [] if signable else [NO_C2PA_REASON.format(suffix=path.suffix.lower())]
    if not signable:
        write_video(path, marked, fps, crf=crf)
        return Published(path, video_id, payload, visible, False, info, notes)
    # Write and sign in a hidden sibling, then rename: the target is never unsigned or partial.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.unsigned{path.suffix}")
    try:
        write_video(tmp, marked, fps, crf=crf)
        sign_file(tmp, info, identity)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return Published(path, video_id, payload, visible, True, info, notes)


def publish_video(
    frames: np.ndarray, fps: float, path: str | os.PathLike[str], **options: Any
) -> Path:
    """:func:`publish` returning only the path written (keyword ``options`` as :func:`publish`:
    ``video_id``, ``model`` and ``prompt`` are required)."""
    return publish(frames, fps, path, **options).path


def request_ingredients(request: Any) -> tuple[Ingredient, ...]:
    """The source files a generation request names, as ingredients (first mention wins).

    Reads ``keyframes[].path`` (``image``, or ``clip`` for a video span: extend, connect),
    ``remix.path`` (``remix``), ``blend.videos`` (``blend``) and ``cards[].image``
    (``storyboard``) of a
    :class:`tenku.pipelines.request.GenerationRequest`; fields it lacks are skipped.
    """
    found: list[tuple[str, str]] = []
    for keyframe in getattr(request, "keyframes", ()) or ():
        found.append((keyframe.path, "image" if getattr(keyframe, "is_image", False) else "clip"))
    remix = getattr(request, "remix", None)
    if remix is not None:
        found.append((remix.path, "remix"))
    blend = getattr(request, "blend", None)
    for video in getattr(blend, "videos", ()) or ():
        found.append((video, "blend"))
    for card in getattr(request, "cards", ()) or ():
        if getattr(card, "image", None):
            found.append((card.image, "storyboard"))
    seen: set[Path] = set()
    items = []
    for path, role in found:
        resolved = Path(path).resolve()
        if resolved not in seen:
            seen.add(resolved)
            items.append(Ingredient(Path(path), role=role))
    return tuple(items)
