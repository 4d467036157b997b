"""What the API does, without HTTP: turn bodies into validated requests, queue them, answer.

Every create (text, image, remix, extension, storyboard, ...) ends in one
:class:`~tenku.pipelines.request.GenerationRequest`; its ValueErrors (which start with the
field name) become 400s naming the field. Sources are never server paths from the caller: an
image arrives as an upload or a data URL (saved under ``uploads/``), a clip is one of the
caller's completed videos (under ``videos/``), read from the unmarked original its worker kept
beside the published file, so the new video carries one mark and keeps the model's own frames
(a video finished before workers kept originals is read from its published file). Paths in a
stored request are relative to the data folder, so every worker sharing the folder resolves
them with :func:`~tenku.serve.convert.resolve_request`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenku.pipelines.request import Blend, Card, GenerationRequest, Keyframe, Remix, size_for
from tenku.safety.moderation import ModerationError, ensure_allowed
from tenku.serve.convert import (
    ORIGINAL,
    PUBLISHED,
    decode_image,
    image_bytes,
    plain_basics,
    request_error,
    validation_error,
    video_object,
)
from tenku.serve.schemas import (
    ApiError,
    CreateVideoBody,
    EditBody,
    ExtendBody,
    RemixBody,
    TenkuExtras,
)
from tenku.serve.store import LOCAL_KEY, ApiKey, JobStore, Plan, QuotaExceeded, new_id

DEFAULT_SECONDS = 4.0
OPENAI_MODEL_ALIASES = ("sora-",)  # OpenAI model names are served by this server's model
VARIANTS = {
    "video": (PUBLISHED, "video/mp4"),
    "thumbnail": ("thumbnail-{}.webp", "image/webp"),
    "spritesheet": ("spritesheet-{}.jpg", "image/jpeg"),
}
LOCAL_PLAN = Plan("local", 10**9, 3600, 1280, 120.0, 10**6)  # --no-auth: the model's limits only


class VideoService:
    """The API's one object: the job store, the data folder and the served model's name."""

    def __init__(
        self, store: JobStore, data_dir: str | Path, *, model: str, open_access: bool = False
    ) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.model = model  # the name every video object reports
        self.open_access = open_access  # True: no API keys, every caller is the local key
        if open_access:
            self.store.put_plan(LOCAL_PLAN)
            if not any(k.id == LOCAL_KEY for k in store.list_keys()):
                store.create_key(LOCAL_PLAN.name, name="local", key_id=LOCAL_KEY)

    # ------------------------------------------------------------------ callers

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key of an ``Authorization: Bearer TOKEN`` header (401 if missing or unknown)."""
        if self.open_access:
            return self.store.key(LOCAL_KEY)
        scheme, _, token = (authorization or "").partition(" ")
        key = self.store.key_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise ApiError(
                401,
                "Incorrect or missing API key: send `Authorization: Bearer YOUR_KEY` "
                "(create keys with `tenku keys create`)",
                code="invalid_api_key",
            )
        return key

    # ------------------------------------------------------------------ creating videos

    def create(self, key: ApiKey, body: dict[str, Any], upload: bytes | None) -> dict[str, Any]:
        """``POST /v1/videos``: ``body`` from JSON or a form, ``upload`` the input_reference."""
        try:
            parsed = CreateVideoBody.model_validate(body)
        except ValidationError as error:
            raise validation_error(error) from error
        self._check_model(parsed.model)
        job_id = new_id("video")
        images: dict[str, bytes] = {}  # relative path -> PNG bytes, written before queueing

        def image(data: bytes, param: str) -> str:
            path = f"uploads/{job_id}/{len(images)}.png"
            images[path] = decode_image(data, param)
            return path

        rename = {"width": "size", "height": "size"}
        if parsed.aspect is not None or parsed.resolution is not None:
            if parsed.size is not None:
                raise ApiError(400, "size: give size or aspect + resolution", param="size")
            try:
                width, height = size_for(parsed.aspect or "1:1", parsed.resolution or 128)
            except ValueError as error:
                raise request_error(error, {}) from error
            rename = {"width": "resolution", "height": "resolution"}
        else:
            width, height = self._parse_size(parsed.size)
        keyframes = [
            self._keyframe(key, k, f"keyframes[{i}]", image) for i, k in enumerate(parsed.keyframes)
        ]
        if upload is not None and parsed.input_reference is not None:
            raise ApiError(400, "input_reference: given twice", param="input_reference")
        if upload is not None or parsed.input_reference is not None:
            data = upload or image_bytes(
                parsed.input_reference.image_url,  # type: ignore[union-attr]
                "input_reference",
            )
            path = image(data, "input_reference")
            keyframes.append(Keyframe(path=path, at=parsed.input_reference_at))
            rename[f"keyframes[{len(keyframes) - 1}]"] = "input_reference"
        cards = [
            Card(
                at=c.at,
                prompt=c.prompt,
                image=image(
                    image_bytes(c.image_url, f"cards[{i}].image_url"), f"cards[{i}].image_url"
                )
                if c.image_url
                else None,
            )
            for i, c in enumerate(parsed.cards)
        ]
        blend = None
        if parsed.blend is not None:
            b = parsed.blend
            videos = tuple(
                self._source(key, v, f"blend.video_ids[{i}]")[0] for i, v in enumerate(b.video_ids)
            )
            blend = Blend(prompt=b.prompt, curve=tuple(b.curve), videos=videos, strength=b.strength)
        seconds = DEFAULT_SECONDS if parsed.seconds is None else parsed.seconds
        fields = self._extras(parsed)
        request = self._request(
            rename,
            prompt=parsed.prompt,
            seconds=seconds,
            width=width,
            height=height,
            keyframes=tuple(keyframes),
            cards=tuple(cards),
            blend=blend,
            **fields,
        )
        return self._submit(key, job_id, request, images=images)

    def remix(
        self,
        key: ApiKey,
        video_id: str | None,
        body: dict[str, Any],
        upload: bytes | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/videos/{id}/remix`` (``video_id``) or ``/v1/videos/edits`` (the body's
        ``video``: an id, or an uploaded file)."""
        try:
            model = RemixBody if video_id is not None else EditBody
            parsed = model.model_validate(body)
        except ValidationError as error:
            raise validation_error(error) from error
        job_id = new_id("video")
        if video_id is not None:
            path, source = self._source(key, video_id, "video_id", status=404)
        else:
            assert isinstance(parsed, EditBody)
            path, source, video_id = self._given_video(key, parsed.video, upload, job_id)
        request = self._request(
            {"remix": "strength"},
            **{
                **source,
                "prompt": parsed.prompt,
                "seed": parsed.seed,
                "remix": Remix(path=path, strength=parsed.strength),
            },
        )
        return self._submit(key, job_id, request, remixed_from=video_id)

    def extend(
        self, key: ApiKey, body: dict[str, Any], upload: bytes | None = None
    ) -> dict[str, Any]:
        """``POST /v1/videos/extensions``: the source clip kept, ``seconds`` more generated."""
        try:
            parsed = ExtendBody.model_validate(body)
        except ValidationError as error:
            raise validation_error(error) from error
        job_id = new_id("video")
        path, source, video_id = self._given_video(key, parsed.video, upload, job_id)
        at = 0.0 if parsed.direction == "forward" else parsed.seconds
        request = self._request(
            {"keyframes": "video"},
            **{
                **source,
                "prompt": parsed.prompt,
                "seed": parsed.seed,
                "seconds": source["seconds"] + parsed.seconds,
                "keyframes": (Keyframe(path=path, at=at),),
            },
        )
        return self._submit(key, job_id, request, remixed_from=video_id)

    def _given_video(
        self, key: ApiKey, ref: Any, upload: bytes | None, job_id: str
    ) -> tuple[str, dict[str, Any], str | None]:
        """The body's ``video``: one of the caller's (by id) or an uploaded file (saved).

        Returns its path, the basics of a request like it, and its id (None for a file).
        """
        if (ref is None) == (upload is None):
            raise ApiError(400, "video: give {id: VIDEO_ID} or upload a video file", param="video")
        if ref is not None:
            path, source = self._source(key, ref.id, "video.id")
            return path, source, ref.id
        from tenku.io import read_video

        path = f"uploads/{job_id}/source.mp4"
        target = self.data_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(upload or b"")
        try:
            clip = read_video(target)
        except ValueError as error:
            shutil.rmtree(target.parent, ignore_errors=True)
            message = str(error).replace(str(target), "the upload")
            raise ApiError(400, f"video: {message}", param="video", code="invalid_video") from error
        seconds = max(0.5, min(round(clip.seconds * 2) / 2, 8.0))
        return path, {"seconds": seconds}, None

    # ------------------------------------------------------------------ helpers

    def _check_model(self, model: str | None) -> None:
        if model is None or model == self.model or model.startswith(OPENAI_MODEL_ALIASES):
            return
        raise ApiError(
            400,
            f"model: {model!r} is not served here; this server runs {self.model!r} "
            f"(OpenAI names such as 'sora-2' are accepted as aliases)",
            param="model",
            code="model_not_found",
        )

    @staticmethod
    def _parse_size(size: str | None) -> tuple[int, int]:
        if size is None:
            return 128, 128
        width, sep, height = size.lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit() or len(size) > 12:
            raise ApiError(
                400, f"size: {size[:40]!r} is not WIDTHxHEIGHT (e.g. 128x128)", param="size"
            )
        return int(width), int(height)

    @staticmethod
    def _extras(parsed: TenkuExtras) -> dict[str, Any]:
        fields = ("fps", "seed", "steps", "guidance", "sampler")
        out = {f: getattr(parsed, f) for f in fields if getattr(parsed, f) is not None}
        return {**out, "variations": parsed.variations, "loop": parsed.loop}

    def _keyframe(self, key: ApiKey, k: Any, param: str, image: Any) -> Keyframe:
        if (k.video_id is None) == (k.image_url is None):
            raise ApiError(400, f"{param}: give video_id or image_url", param=param)
        if k.video_id is not None:
            path = self._source(key, k.video_id, f"{param}.video_id")[0]
        else:
            path = image(image_bytes(k.image_url, f"{param}.image_url"), f"{param}.image_url")
        return Keyframe(path=path, at=k.at, start=k.start, end=k.end)

    def _source(
        self, key: ApiKey, video_id: str, param: str, *, status: int = 400
    ) -> tuple[str, dict[str, Any]]:
        """A completed video of ``key``: its first video's unmarked original (the published
        file for a video finished before workers kept originals), as a relative path, and the
        basics of its request."""
        job = self.store.get(key.id, video_id)
        if job is None or job["status"] != "completed" or job["result"] is None:
            state = "no such video" if job is None else f"it is {job['status']}"
            state = "its files have expired" if job and job["status"] == "completed" else state
            raise ApiError(
                status,
                f"{param}: {video_id[:64]!r} is not a completed video of yours ({state})",
                param=param,
                code="video_not_found" if job is None else "video_not_ready",
            )
        folder = job["result"]["dir"]
        original = f"{folder}/{ORIGINAL.format(0)}"
        if not (self.data_dir / original).is_file():
            return f"{folder}/{PUBLISHED.format(0)}", plain_basics(job["request"])
        return original, plain_basics(job["request"])

    def _request(self, rename: dict[str, str], **fields: Any) -> GenerationRequest:
        try:
            request = GenerationRequest(**fields)
        except ValueError as error:
            raise request_error(error, rename) from error
        for field, text in request.prompts():
            try:
                ensure_allowed(text, field=field)
            except ModerationError as error:
                raise ApiError(400, str(error), param=field, code="moderation_blocked") from error
        return request

    def _submit(
        self,
        key: ApiKey,
        job_id: str,
        request: GenerationRequest,
        *,
        images: dict[str, bytes] | None = None,
        remixed_from: str | None = None,
    ) -> dict[str, Any]:
        for rel, data in (images or {}).items():
            path = self.data_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        info = {
            "model": self.model,
            "seconds": f"{request.seconds:g}",
            "size": request.size,
            "prompt": request.prompt,
            "variations": request.variations,
            "task": request.task,
            "remixed_from_video_id": remixed_from,
        }
        try:
            job = self.store.submit(
                key,
                job_id,
                request.to_dict(),
                info,
                videos=request.variations,
                width=request.width,
                height=request.height,
                seconds=request.seconds,
            )
        except QuotaExceeded as error:
            shutil.rmtree(self.data_dir / "uploads" / job_id, ignore_errors=True)
            wait = error.retry_after
            raise ApiError(
                429,
                error.message,
                param=error.param,
                code=error.code,
                type="rate_limit_error",
                headers={} if wait is None else {"Retry-After": str(wait)},
            ) from error
        return video_object(job)

    # ------------------------------------------------------------------ reading

    def get(self, key: ApiKey, video_id: str) -> dict[str, Any]:
        job = self.store.get(key.id, video_id)
        if job is None:
            raise ApiError(
                404, f"video_id: no video {video_id[:64]!r}", param="video_id", code="not_found"
            )
        return job

    def list(self, key: ApiKey, *, after: str | None, limit: int, order: str) -> dict[str, Any]:
        try:
            jobs, more = self.store.list(key.id, after=after, limit=limit, order=order)
        except ValueError as error:
            raise ApiError(400, str(error)[:200], param="after", code="invalid_cursor") from error
        data = [video_object(j) for j in jobs]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    def delete(self, key: ApiKey, video_id: str) -> dict[str, Any]:
        job = self.store.delete(key.id, video_id)
        if job is None:
            self.get(key, video_id)  # raises the 404
        for sub in ("videos", "uploads"):
            shutil.rmtree(self.data_dir / sub / video_id, ignore_errors=True)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    def content(self, key: ApiKey, video_id: str, variant: str, index: int) -> tuple[Path, str]:
        """The file of a completed video and its media type."""
        job = self.get(key, video_id)
        if job["status"] != "completed":
            raise ApiError(
                400,
                f"video_id: {video_id!r} is {job['status']}; content exists once completed",
                param="video_id",
                code="video_not_ready",
            )
        if job["result"] is None or job["expires_at"] < time.time():
            raise ApiError(404, f"video_id: {video_id!r} has expired", param="video_id")
        count = job["result"]["videos"]
        if not 0 <= index < count:
            raise ApiError(
                400, f"index: {index} is outside [0, {count - 1}]", param="index", code="invalid"
            )
        name, media = VARIANTS[variant]
        return self.data_dir / job["result"]["dir"] / name.format(index), media
