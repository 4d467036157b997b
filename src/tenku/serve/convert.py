"""Conversions between the HTTP shapes and the library's objects.

Pydantic and ``GenerationRequest`` errors become :class:`ApiError` 400s naming the field; jobs
become OpenAI video objects; stored requests (paths relative to the data folder) become
``GenerationRequest`` objects again; uploads and data URLs become checked PNG bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenku.pipelines.request import GenerationRequest
from tenku.serve.schemas import ApiError, printable

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # an image upload, or a whole request body
MAX_IMAGE_PIXELS = 4096 * 4096
# a finished job's files in videos/JOB/ATTEMPT/: each published (marked) video, and the
# model's unmarked frames kept losslessly beside it, the source of any later work by its id
PUBLISHED = "video-{}.mp4"
ORIGINAL = "original-{}.mkv"
ORIGINAL_PATH = re.compile(r"^(videos/[^/]+/\d+/)original-(\d+)\.mkv$")


def validation_error(error: ValidationError) -> ApiError:
    """A pydantic error as a 400 naming the field (``keyframes[0].at``)."""
    first = error.errors()[0]
    param = ""
    for part in first["loc"]:
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else str(part)
    param = param or "body"  # a field name that is itself bad (a lone surrogate) has no loc
    return ApiError(400, f"{param}: {first['msg']}", param=param, code="invalid_value")


def request_error(error: ValueError, rename: dict[str, str]) -> ApiError:
    """A GenerationRequest ValueError (``"width: 1024 is outside ..."``) as a 400."""
    message = str(error)
    field, _, rest = message.partition(":")
    base = field.split(".", 1)[0].split("[", 1)[0]
    param = rename.get(field, rename.get(base, field))
    if param != field:  # "size: width 1024 is outside [64, 512]"
        message = f"{param}: {field}{rest}"
    return ApiError(400, message, param=param, code="invalid_value")


def video_object(job: dict[str, Any]) -> dict[str, Any]:
    """A job as OpenAI's video object (plus tenku's ``variations`` and ``task``).

    Its texts are made printable: a job stored before bodies were checked for lone
    surrogates must still list, retrieve and stream.
    """
    info = {k: printable(v) if isinstance(v, str) else v for k, v in job["info"].items()}
    error = job["error"]
    if error is not None:
        error = {
            **{k: printable(v) if isinstance(v, str) else v for k, v in error.items()},
            "param": None,
            "type": "generation_error",
        }
    return {
        "id": job["id"],
        "object": "video",
        "model": info["model"],
        "status": job["status"],
        "progress": job["progress"],
        "seconds": info["seconds"],
        "size": info["size"],
        "prompt": info["prompt"],
        "created_at": job["created_at"],
        "completed_at": job["completed_at"],
        "expires_at": job["expires_at"],
        "remixed_from_video_id": info.get("remixed_from_video_id"),
        "error": error,
        "variations": info["variations"],
        "task": info["task"],
    }


def resolve_request(request: dict[str, Any], root: Path) -> GenerationRequest:
    """A stored request (paths relative to the data folder ``root``) with absolute paths."""
    return GenerationRequest(**_map_paths(request, lambda path: str(root / path)))


def published_request(request: dict[str, Any], root: Path) -> GenerationRequest:
    """:func:`resolve_request`, each clean original swapped back for the published file it
    was marked into (:func:`published_path`): the sources as the caller named them, which a
    new video's C2PA manifest lists as its ingredients."""
    return GenerationRequest(**_map_paths(request, lambda path: str(root / published_path(path))))


def published_path(path: str) -> str:
    """``videos/JOB/ATTEMPT/video-I.mp4`` for that folder's ``original-I.mkv`` (the unmarked
    frames a worker keeps beside the published file); any other path unchanged."""
    found = ORIGINAL_PATH.match(path)
    return path if found is None else f"{found[1]}{PUBLISHED.format(found[2])}"


def _map_paths(request: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A stored request with ``change`` applied to every source path it names."""
    data = dict(request)
    data["keyframes"] = [{**k, "path": change(k["path"])} for k in data.get("keyframes", ())]
    data["cards"] = [
        {**c, "image": change(c["image"]) if c.get("image") else None}
        for c in data.get("cards", ())
    ]
    if data.get("remix"):
        data["remix"] = {**data["remix"], "path": change(data["remix"]["path"])}
    if data.get("blend"):
        videos = [change(v) for v in data["blend"].get("videos", ())]
        data["blend"] = {**data["blend"], "videos": videos}
    return data


def source_paths(request: dict[str, Any]) -> list[str]:
    """The files a stored request names (relative to the data folder), and for each clean
    original the published file it stands for (a new video's C2PA ingredient)."""
    paths = [k["path"] for k in request.get("keyframes", ())]
    paths += [c["image"] for c in request.get("cards", ()) if c.get("image")]
    if request.get("remix"):
        paths.append(request["remix"]["path"])
    if request.get("blend"):
        paths += list(request["blend"].get("videos", ()))
    return paths + [published_path(p) for p in paths if published_path(p) != p]


def image_bytes(data_url: str, param: str) -> bytes:
    head, sep, payload = data_url.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ApiError(
            400,
            f"{param}: must be a data:image/...;base64,... URL (server paths and web URLs "
            "are not fetched)",
            param=param,
            code="invalid_image",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, f"{param}: bad base64 ({error})", param=param) from error


def decode_image(data: bytes, param: str) -> bytes:
    """The upload as PNG bytes, or a 400 if it is not an image Pillow can decode."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(
            413,
            f"{param}: {len(data)} bytes is over the {MAX_UPLOAD_BYTES // 2**20} MB limit",
            param=param,
            code="file_too_large",
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ApiError(400, f"{param}: image over 4096x4096 pixels", param=param)
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ApiError(
            400,
            f"{param}: not an image (PNG, JPEG, WebP, BMP or GIF): {e}",
            param=param,
            code="invalid_image",
        ) from e
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def plain_basics(request: dict[str, Any]) -> dict[str, Any]:
    """A stored request's basics (size, duration, rate, sampling), without its conditioning."""
    keep = ("seconds", "width", "height", "fps", "steps", "guidance", "sampler")
    return {k: request[k] for k in keep}
