"""The OpenAPI document: FastAPI's, plus what FastAPI cannot see.

The POST routes read their bodies by hand (JSON or multipart), so their schemas are added
here: the JSON form as the model's schema, the multipart form with files as binary fields and
no nulls (a form field cannot carry one). Each route declares the error statuses it answers
(400/401/404/413/429, from its shape) with :class:`~tenku.serve.schemas.ErrorBody`, instead of
FastAPI's 422, which this API never sends.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tenku.serve.schemas import CreateVideoBody, EditBody, ErrorBody, ExtendBody, RemixBody
from tenku.serve.store import STATUSES

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    400: "bad input: a parameter or body field, named in `param`",
    401: "missing or unknown API key",
    404: "no such video of yours",
    413: "the request body is over the size limit",
    429: "a plan limit: size, seconds, videos per period or jobs at once (`param`)",
}
# (path, method) -> (body model, its file field in multipart, whether a source is required)
BODIES: dict[tuple[str, str], tuple[type[BaseModel], str | None, bool]] = {
    ("/v1/videos", "post"): (CreateVideoBody, "input_reference", False),
    ("/v1/videos/{video_id}/remix", "post"): (RemixBody, None, False),
    ("/v1/videos/edits", "post"): (EditBody, "video", True),
    ("/v1/videos/extensions", "post"): (ExtendBody, "video", True),
}
FILES = {
    "input_reference": "the first frame: a PNG, JPEG or WebP image",
    "video": "a video file (MP4) to re-make or continue",
}
CONTENT = {  # successful responses that are not JSON
    ("/v1/events", "get"): {
        "text/event-stream": {
            "schema": {  # one event
                "type": "object",
                "properties": {
                    "event": {
                        "type": "string",
                        "enum": [f"video.{s}" for s in STATUSES],
                    },
                    "data": {"type": "string", "description": "the video object, as JSON"},
                },
            }
        }
    },
    ("/v1/videos/{video_id}/content", "get"): {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("video/mp4", "image/webp", "image/jpeg")
    },
}


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses a public route answers, from its shape."""
    statuses = [401]  # every /v1 route authenticates
    queries = [p for p in operation.get("parameters", ()) if p["in"] == "query"]
    if queries or method == "post":
        statuses.append(400)
    if "{video_id}" in path:
        statuses.append(404)
    if method == "post":
        statuses += [413, 429]
    return sorted(statuses)


def _not_null(spec: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without its ``null`` option."""
    options = [o for o in spec.get("anyOf", ()) if o != {"type": "null"}]
    if "anyOf" not in spec or len(options) != 1:
        return spec
    out = {k: v for k, v in spec.items() if k != "anyOf"} | options[0]
    if out.get("default", 0) is None:
        del out["default"]
    return out


def _bodies(spec: dict[str, Any], file: str | None, required: bool) -> tuple[dict, dict]:
    """The JSON and multipart schemas of one body model's schema ``spec``."""
    as_json, form = copy.deepcopy(spec), copy.deepcopy(spec)
    form.pop("not", None)  # with a binary field, "not" breaks schemathesis' generator
    form["properties"] = {k: _not_null(v) for k, v in form["properties"].items()}
    if file is not None:
        form["properties"][file] = {
            "type": "string",
            "format": "binary",
            "description": FILES[file],
        }
    if required and file is not None:
        as_json["properties"][file] = _not_null(as_json["properties"][file])
        for body in (as_json, form):
            body["required"] = [*body.get("required", ()), file]
    form["title"] = f"{spec['title']}Form"
    return as_json, form


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once, then kept on ``app.openapi_schema``)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), (model, file, required) in BODIES.items():
        spec = model.model_json_schema(ref_template=REF)
        components.update(spec.pop("$defs", {}))
        as_json, form = _bodies(spec, file, required)
        components[model.__name__], components[form["title"]] = as_json, form
        schema["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}},
                "multipart/form-data": {"schema": {"$ref": REF.format(model=form["title"])}},
            },
        }
    served = getattr(app.state, "service", None)
    if served is not None:  # model: the served name or an OpenAI alias
        pattern = f"^(?:{re.escape(served.model)}|sora-.*)$"
        for name in ("CreateVideoBody", "CreateVideoBodyForm"):
            field = components[name]["properties"]["model"]
            for option in field.get("anyOf", [field]):
                if option.get("type") == "string":
                    option["pattern"] = pattern
    error = ErrorBody.model_json_schema(ref_template=REF)
    components.update(error.pop("$defs", {}))
    components["ErrorBody"] = error
    components.pop("HTTPValidationError", None)  # FastAPI's 422: answered as 400 here
    components.pop("ValidationError", None)
    error_ref = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            responses.pop("422", None)
            if (path, method) in CONTENT:
                responses["200"]["content"] = CONTENT[path, method]
            for status in error_statuses(path, method, operation):
                responses[str(status)] = {
                    "description": ERROR_STATUSES[status],
                    "content": error_ref,
                }
            if "429" in responses:
                responses["429"]["headers"] = {
                    "Retry-After": {
                        "description": "seconds until the quota or a job slot frees up",
                        "schema": {"type": "integer"},
                    }
                }
    app.openapi_schema = schema
    return schema
