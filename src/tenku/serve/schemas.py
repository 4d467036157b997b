"""The HTTP request bodies (OpenAI's Videos API fields plus tenku's extras) and the error type.

Bodies arrive as JSON or as multipart forms (the ``openai`` package sends every create as
multipart, nested extras flattened as ``blend[prompt]``, ``keyframes[0][at]``): both are read
into one dict and checked by these models, which also document the API in ``/docs``.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

MAX_DEPTH = 32  # nesting of objects and lists in a body (the deepest real one is 4)
SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, always unpaired: not encodable as UTF-8


def printable(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD, so it can be written as UTF-8."""
    return SURROGATE.sub("\ufffd", text)


def _unicode(text: str) -> str:
    found = SURROGATE.search(text)
    if found:
        raise PydanticCustomError(
            "unicode",
            "contains a lone surrogate (U+{code}), which is not valid Unicode text",
            {"code": f"{ord(found.group()):04X}"},
        )
    return text


# Every string field of a body: JSON's "\ud800" escape decodes to a lone surrogate, which
# nothing downstream can encode (the response, the text encoder), so it is refused here.
Text = Annotated[str, AfterValidator(_unicode)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "must be a number, not true or false")
    return value


# Every number field of a body: pydantic's lax mode would read JSON's true / false as 1 / 0
# (schemathesis sent `"seconds": false` and got a video); strings stay accepted, as forms and
# the `openai` client send numbers ("seconds": "4").
Number = Annotated[float, BeforeValidator(_not_bool)]
Integer = Annotated[int, BeforeValidator(_not_bool)]


def _not_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be true or false, not a number")
    return value


# Every on/off field: JSON's 0 / 1 is not read as false / true (schemathesis sent `"loop": 0`);
# forms' "true" / "false" stay accepted.
Flag = Annotated[bool, BeforeValidator(_not_number)]


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        message = printable(message)  # it may quote the caller's input
        param = None if param is None else printable(param)
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type,
        )
        self.headers = headers or {}  # e.g. Retry-After on a 429

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ErrorDetail(BaseModel):
    """What went wrong; ``param`` names the request field (or the plan limit) concerned."""

    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error")
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error response: OpenAI's shape (the schema of each 4xx in ``/openapi.json``)."""

    error: ErrorDetail


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_Body):
    """An image given inline: a ``data:image/...;base64,...`` URL (OpenAI's ``image_url``)."""

    image_url: Text = Field(description="data URL of a PNG, JPEG or WebP image")


class VideoRef(_Body):
    """One of the caller's completed videos."""

    id: Text = Field(description="a completed video's id")


class KeyframeIn(_Body):
    """Given pixels on the timeline: an image, or a span of one of your videos."""

    video_id: Text | None = Field(None, description="a completed video of yours (a clip span)")
    image_url: Text | None = Field(None, description="an image as a data URL")
    at: Number = Field(0.0, description="seconds from the output's start to the first frame")
    start: Number = Field(0.0, description="clips: seconds into the source where the span starts")
    end: Number | None = Field(None, description="clips: where it ends (null: the clip's end)")


class CardIn(_Body):
    """A storyboard card: from ``at`` seconds on, the video follows ``prompt``."""

    at: Number
    prompt: Text
    image_url: Text | None = Field(None, description="optional image placed at ``at``")


class BlendIn(_Body):
    """Mix the prompt with a second one (and optionally two of your videos) along a curve."""

    prompt: Text
    curve: list[Number] = Field([0.0, 1.0], description="weight of the second prompt over time")
    video_ids: list[Text] = Field([], description="none, or two completed videos of yours")
    strength: Number = Field(0.7, description="how far the mixed videos are re-noised (0-1)")


class TenkuExtras(_Body):
    """tenku's fields beyond OpenAI's; each maps onto a ``GenerationRequest`` field."""

    fps: Number | None = Field(None, description="frames per second (default 8)")
    seed: Integer | None = Field(None, description="random seed (default: random, recorded)")
    steps: Integer | None = Field(None, description="sampler steps (default: the model's)")
    guidance: Number | None = Field(None, description="guidance scale (default: the model's)")
    sampler: Text | None = Field(None, description="ODE sampler (default: the model's)")
    variations: Integer = Field(
        1, description="videos from seeds seed, seed+1, ... (content ?index=)"
    )
    aspect: Text | None = Field(None, description="1:1, 16:9 or 9:16 with ``resolution``")
    resolution: Integer | None = Field(None, description="short side in pixels, with ``aspect``")
    loop: Flag = Field(False, description="the last frame flows into the first")
    input_reference_at: Number = Field(0.0, description="seconds where input_reference goes")
    keyframes: list[KeyframeIn] = Field([], description="images / clip spans on the timeline")
    cards: list[CardIn] = Field([], description="a storyboard: prompts placed at times")
    blend: BlendIn | None = Field(None, description="a second prompt mixed along a curve")


# Documented in the schema, checked by GenerationRequest (with its own message): a prompt has
# a character other than whitespace.
PROMPT = {"pattern": "\\S"}


class CreateVideoBody(TenkuExtras):
    """``POST /v1/videos``: OpenAI's fields, then tenku's extras."""

    model_config = ConfigDict(  # size, or aspect + resolution: not both (checked in service)
        extra="forbid",
        json_schema_extra={
            "not": {
                "anyOf": [{"required": ["size", "aspect"]}, {"required": ["size", "resolution"]}]
            }
        },
    )

    prompt: Text = Field(description="what the video shows", json_schema_extra=PROMPT)
    model: Text | None = Field(None, description="this server's model name, or any sora-* alias")
    seconds: Number | None = Field(None, description="duration in seconds (a number or string)")
    size: Text | None = Field(None, description="WIDTHxHEIGHT in pixels, multiples of 16")
    input_reference: ImageRef | None = Field(
        None, description="the first frame: a file (multipart) or {image_url: data URL} (JSON)"
    )


class RemixBody(_Body):
    """``POST /v1/videos/{id}/remix``: re-make the video in the path under a new prompt."""

    prompt: Text = Field(description="what the new video shows", json_schema_extra=PROMPT)
    strength: Number = Field(0.6, description="how far the source is re-noised (0 keeps it)")
    seed: Integer | None = None


class EditBody(RemixBody):
    """``POST /v1/videos/edits``: re-make ``video`` (one of yours, or a file) under a new prompt."""

    video: VideoRef | None = Field(
        None, description="your video ({id}), or a video file (multipart): one is required"
    )


class ExtendBody(_Body):
    """``POST /v1/videos/extensions``: continue a video (or lead into it)."""

    prompt: Text = Field(description="what the new part shows", json_schema_extra=PROMPT)
    seconds: Number = Field(gt=0, description="length of the new part in seconds")
    video: VideoRef | None = Field(
        None, description="your video ({id}), or a video file (multipart): one is required"
    )
    direction: Literal["forward", "backward"] = Field(
        "forward", description="forward: continue after the end; backward: lead into the start"
    )
    seed: Integer | None = None


def loads(text: str | bytes, param: str) -> Any:
    """JSON text as Python values (a ValueError if it is not JSON); a 400 naming ``param`` if
    it nests objects and lists deeper than ``MAX_DEPTH``, rather than a RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise _too_deep(param) from error
    stack = [(value, 1)]  # iterative: the check itself must not recurse
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise _too_deep(param)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return value


def _too_deep(param: str) -> ApiError:
    message = f"{param}: objects and lists nested deeper than {MAX_DEPTH} levels"
    return ApiError(400, message, param=param, code="too_deep")


def unflatten(form: dict[str, Any]) -> dict[str, Any]:
    """``{"a[b]": 1, "c[0][d]": 2}`` -> ``{"a": {"b": 1}, "c": [{"d": 2}]}`` (form fields).

    A field whose value is JSON text of an object or list (``keyframes='[...]'``) is parsed.
    """
    root: dict[str, Any] = {}
    for name, value in form.items():
        parts = re.findall(r"[^\[\]]+|\[\]", name)
        if not parts:
            raise ApiError(400, f"{name!r}: not a field name", param=name)
        if len(parts) > MAX_DEPTH:
            raise _too_deep(parts[0])
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = loads(value, parts[0])
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError(400, f"{name}: conflicts with another field", param=parts[0])
                node = child
    return _lists(root)


def _lists(node: Any) -> Any:
    """Dicts keyed ``0..n-1`` (from ``x[0][...]`` fields) become lists."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        indices = sorted(int(k) for k in node)
        if indices == list(range(len(indices))):
            return [node[str(i)] for i in indices]
    return node
