"""The HTTP layer: OpenAI's Videos API routes, the event stream and the studio page.

:func:`create_app` wraps one :class:`~tenku.serve.service.VideoService` (kept on
``app.state``; no module globals). Every error, including unknown routes and bad query
parameters, is answered in OpenAI's shape ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenku import __version__
from tenku.serve.convert import MAX_UPLOAD_BYTES, video_object
from tenku.serve.openapi import openapi_schema
from tenku.serve.schemas import ApiError, loads, unflatten
from tenku.serve.service import VideoService
from tenku.serve.store import ApiKey

log = logging.getLogger("tenku.serve")
MAX_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024  # a base64 image plus the other fields
POLL_AFTER_MS = 500  # the `openai-poll-after-ms` hint for create_and_poll
EVENT_POLL_S = 0.25
INTERNAL = "/internal/"  # remote workers' routes: authenticated, no body limit

DESCRIPTION = """\
OpenAI's Videos API, served by tenku: point the `openai` package's `base_url` at
`http://HOST:PORT/v1` and `client.videos.create / retrieve / list / delete / download_content /
remix / extend / create_and_poll` work unchanged. tenku's extra fields (`fps`, `seed`, `steps`,
`variations`, `loop`, `keyframes`, `cards`, `blend`, ...) are documented on `POST /v1/videos`;
see docs/api.md for examples."""


class CatchAll:
    """Answer any exception the app lets out with a 500 in OpenAI's error shape.

    Outermost of the app's middleware, so no exception reaches Starlette's
    ``ServerErrorMiddleware`` or uvicorn: both re-raise or close the connection, which would
    break the client's next request on the same keep-alive connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:  # a streamed response broke off: nothing more can be said on it
                return
            crash = ApiError(500, "internal error", type="server_error")
            await _error_response(crash)(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413) before or while they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(INTERNAL):  # workers' uploads
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        too_big = ApiError(
            413,
            f"input_reference: the request body is over the limit of {self.limit:,} bytes "
            f"({self.limit / 2**20:.1f} MiB)",
            param="input_reference",
            code="file_too_large",
        )
        if not length.isdigit() or int(length) > self.limit:
            response = JSONResponse(too_big.body(), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise too_big
            return message

        await self.app(scope, limited, send)


async def read_body(
    request: Request, file_field: str = "input_reference"
) -> tuple[dict[str, Any], bytes | None]:
    """The fields of a JSON or form body, and the upload in ``file_field`` (if any)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = loads(await request.body(), "body")
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"body: not valid JSON ({error})"[:200]) from error
        if not isinstance(body, dict):
            raise ApiError(400, "body: must be a JSON object")
        return body, None
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            400, "body: send application/json or multipart/form-data", code="invalid_content_type"
        )
    try:
        form = await request.form(max_files=1, max_fields=256, max_part_size=MAX_BODY_BYTES)
    except ApiError:
        raise
    except Exception as error:  # python-multipart's parse errors
        raise ApiError(400, f"body: malformed form ({error})"[:200]) from error
    fields: dict[str, Any] = {}
    upload = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != file_field:
                raise ApiError(400, f"{name}: only {file_field} may be a file", param=name)
            upload = await value.read()
            if not upload:
                raise ApiError(400, "input_reference: the file is empty", param=name)
        elif name in fields and not name.endswith("[]"):  # one value per field, never a pick
            raise ApiError(400, f"{name}: given more than once", param=name)
        else:
            fields[name] = value
    return unflatten(fields), upload


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """The methods of the resource at the request's path: those of every route whose path
    matches it, the most literal ones only (``/v1/videos/edits`` is not a ``{video_id}``)."""
    routes = [r for r in app.routes if isinstance(r, Route) and r.matches(scope)[0] != Match.NONE]
    fewest = min((r.path.count("{") for r in routes), default=0)
    return sorted({m for r in routes if r.path.count("{") == fewest for m in r.methods or ()})


def create_app(service: VideoService, *, worker_token: str | None = None) -> FastAPI:
    """The FastAPI app serving ``service``: the API under ``/v1``, the studio at ``/``.

    With ``worker_token``, remote workers holding it claim jobs under ``/internal/v1``.
    """
    # FastAPIOffline: Swagger UI (/docs) and ReDoc (/redoc) from package files, not a CDN
    app = FastAPIOffline(title="tenku", version=__version__, description=DESCRIPTION)
    app.state.service = service
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(CatchAll)  # added last: the outermost
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def bad_params(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = str(first["loc"][-1]) if first["loc"] else None
        return _error_response(ApiError(400, f"{param}: {first['msg']}", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else None
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(app, request.scope))
        shaped = ApiError(error.status_code, str(error.detail), code=code, headers=headers)
        return _error_response(shaped)

    def caller(request: Request) -> ApiKey:
        return service.authenticate(request.headers.get("authorization"))

    def answer(video: dict[str, Any]) -> JSONResponse:
        return JSONResponse(video, headers={"openai-poll-after-ms": str(POLL_AFTER_MS)})

    @app.post("/v1/videos", tags=["videos"], summary="Create a video")
    async def create_video(request: Request) -> JSONResponse:
        """Queue a video: text, image (``input_reference``) or any tenku task via extras."""
        key = await anyio.to_thread.run_sync(caller, request)  # SQLite: off the loop
        body, upload = await read_body(request)
        video = await anyio.to_thread.run_sync(service.create, key, body, upload)
        return answer(video)

    @app.post("/v1/videos/extensions", tags=["videos"], summary="Extend a video")
    async def extend_video(request: Request) -> JSONResponse:
        """Continue a completed video by ``seconds`` (or lead into it: ``direction``)."""
        key = await anyio.to_thread.run_sync(caller, request)  # SQLite: off the loop
        body, upload = await read_body(request, "video")
        return answer(await anyio.to_thread.run_sync(service.extend, key, body, upload))

    @app.post("/v1/videos/edits", tags=["videos"], summary="Edit a video")
    async def edit_video(request: Request) -> JSONResponse:
        """Re-make the completed ``video`` under a new prompt (a remix)."""
        key = await anyio.to_thread.run_sync(caller, request)  # SQLite: off the loop
        body, upload = await read_body(request, "video")
        return answer(await anyio.to_thread.run_sync(service.remix, key, None, body, upload))

    @app.post("/v1/videos/{video_id}/remix", tags=["videos"], summary="Remix a video")
    async def remix_video(video_id: str, request: Request) -> JSONResponse:
        """Re-make a completed video under a new prompt (SDEdit at ``strength``)."""
        key = await anyio.to_thread.run_sync(caller, request)  # SQLite: off the loop
        body, _ = await read_body(request, "")
        return answer(await anyio.to_thread.run_sync(service.remix, key, video_id, body))

    @app.get("/v1/videos", tags=["videos"], summary="List videos")
    def list_videos(
        request: Request,
        after: str | None = Query(None, max_length=128, description="the last id seen"),
        limit: int = Query(20, ge=1, le=100, description="videos per page"),
        order: Literal["asc", "desc"] = Query("desc", description="by creation time"),
    ) -> dict[str, Any]:
        """Your videos, newest first (``order=asc``: oldest), ``limit`` at a time."""
        return service.list(caller(request), after=after, limit=limit, order=order)

    @app.get("/v1/videos/{video_id}", tags=["videos"], summary="Retrieve a video")
    def retrieve_video(video_id: str, request: Request) -> JSONResponse:
        """The video object: ``status`` and ``progress`` while it is made."""
        return answer(video_object(service.get(caller(request), video_id)))

    @app.delete("/v1/videos/{video_id}", tags=["videos"], summary="Delete a video")
    def delete_video(video_id: str, request: Request) -> dict[str, Any]:
        """Delete a video and its files (a queued or running job is cancelled)."""
        return service.delete(caller(request), video_id)

    @app.get("/v1/videos/{video_id}/content", tags=["videos"], summary="Download content")
    def video_content(
        video_id: str,
        request: Request,
        variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
        index: int = Query(0, ge=0, le=7, description="which variation"),
    ) -> FileResponse:
        """The MP4 (``video``), a WebP ``thumbnail`` or a JPEG ``spritesheet``."""
        path, media = service.content(caller(request), video_id, variant, index)
        name = f"{video_id}-{index}.{path.suffix.lstrip('.')}"
        return FileResponse(
            path, media_type=media, filename=name, content_disposition_type="inline"
        )

    @app.get("/v1/events", tags=["events"], summary="Stream your videos' changes")
    async def events(
        request: Request,
        since: float | None = Query(None, description="unix time to replay changes from"),
    ) -> StreamingResponse:
        """Server-Sent Events: ``video.queued|in_progress|completed|failed`` with the object."""
        key = await anyio.to_thread.run_sync(caller, request)  # SQLite: off the loop
        start = time.time() if since is None else since

        async def stream() -> AsyncIterator[str]:
            seen: set[tuple[str, float]] = set()
            cursor, last_ping = start, time.monotonic()
            yield ": connected\n\n"
            while not await request.is_disconnected():
                jobs = await anyio.to_thread.run_sync(service.store.changed_since, key.id, cursor)
                for job in jobs:
                    if (job["id"], job["updated_at"]) in seen:
                        continue
                    seen.add((job["id"], job["updated_at"]))
                    data = json.dumps(video_object(job))
                    yield f"event: video.{job['status']}\ndata: {data}\n\n"
                if jobs:  # re-read the last instant: a change there may land after this read
                    cursor = max(j["updated_at"] for j in jobs) - 1e-3
                    seen = {s for s in seen if s[1] >= cursor}
                if time.monotonic() - last_ping > 15:
                    yield ": ping\n\n"
                    last_ping = time.monotonic()
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    @app.get("/v1/me", tags=["account"], summary="Your key and plan")
    def me(request: Request) -> dict[str, Any]:
        """The calling key's id, plan limits and whether auth is needed at all."""
        key = caller(request)
        return {
            "id": key.id,
            "name": key.name,
            "plan": vars(key.plan),
            "model": service.model,
            "open_access": service.open_access,
        }

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"ok": True, "jobs": service.store.counts()}

    if worker_token:
        from tenku.serve.remote import worker_router

        app.include_router(worker_router(service, worker_token))

    studio = resources.files("tenku.serve") / "studio"

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((studio / "index.html").read_text())

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # browsers ask for it on any page, the studio links its own
        return FileResponse(str(studio / "favicon.svg"), media_type="image/svg+xml")

    app.mount("/studio", StaticFiles(directory=str(studio)), name="studio")
    return app
