"""Workers on other machines: the job queue over HTTP (`tenku worker --server URL`).

The server side (:func:`worker_router`, enabled by ``tenku serve --worker-token``) exposes the
store's claim / heartbeat / complete / fail under ``/internal/v1``, plus the source files a job
names; the worker side (:class:`RemoteQueue`) implements the worker's queue over those calls.
A remote worker keeps its own cache folder: a claim downloads the job's source files into it,
and a completion uploads the finished files, which the server writes atomically into its data
folder before it marks the job completed (only if the lease is still held). The server sends
the webhooks.
"""

from __future__ import annotations

import hmac
import re
import shutil
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from tenku.io import atomic_path
from tenku.serve.convert import source_paths
from tenku.serve.notify import notify_finished
from tenku.serve.schemas import ApiError
from tenku.serve.service import VideoService
from tenku.serve.store import Lease

PREFIX = "/internal/v1"
OUTPUT_NAME = re.compile(
    r"^(video-\d+\.mp4|original-\d+\.mkv|thumbnail-\d+\.webp|spritesheet-\d+\.jpg)$"
)
SOURCE_DIRS = ("uploads", "videos")


class ClaimBody(BaseModel):
    worker: str
    lease_s: float
    max_attempts: int = 3


class HeartbeatBody(BaseModel):
    token: str
    lease_s: float
    progress: int | None = None


class FailBody(BaseModel):
    token: str
    code: str
    message: str


def _inside(root: Path, rel: str) -> Path:
    """``root / rel`` if it resolves inside ``root/uploads`` or ``root/videos``, else a 400."""
    path = (root / rel).resolve()
    if not any(path.is_relative_to((root / d).resolve()) for d in SOURCE_DIRS):
        raise ApiError(400, f"path: {rel[:80]!r} is not a job file", param="path")
    return path


def worker_router(service: VideoService, token: str) -> APIRouter:
    """The internal routes remote workers use, for bearers of ``token``."""
    store, root = service.store, service.data_dir

    def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise ApiError(401, "worker token: missing or wrong", code="invalid_worker_token")

    def finished(job_id: str) -> None:
        threading.Thread(target=notify_finished, args=(store, job_id), daemon=True).start()

    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.post("/jobs/claim")
    def claim(body: ClaimBody, request: Request) -> Any:
        check(request)
        lease = store.claim(body.worker, lease_s=body.lease_s, max_attempts=body.max_attempts)
        return Response(status_code=204) if lease is None else asdict(lease)

    @router.post("/jobs/{job_id}/heartbeat")
    def heartbeat(job_id: str, body: HeartbeatBody, request: Request) -> dict[str, bool]:
        check(request)
        held = store.heartbeat(job_id, body.token, lease_s=body.lease_s, progress=body.progress)
        return {"held": held}

    @router.post("/jobs/{job_id}/fail")
    def fail(job_id: str, body: FailBody, request: Request) -> dict[str, bool]:
        check(request)
        held = store.fail(job_id, body.token, body.code, body.message)
        if held:
            finished(job_id)
        return {"held": held}

    @router.post("/jobs/{job_id}/complete")
    async def complete(job_id: str, request: Request) -> dict[str, bool]:
        check(request)
        form = await request.form(max_files=64, max_part_size=2**20)
        lease_token, videos = str(form.get("token", "")), str(form.get("videos", ""))
        attempt = lease_token.rpartition(":")[2]
        count = int(videos) if videos.isdigit() else 0
        if not attempt.isdigit() or count < 1:
            raise ApiError(400, "token: not a lease token", param="token")
        job = store.get(None, job_id)  # ids come from the store: safe in a path
        if job is None or job["lease"] != lease_token or job["status"] != "in_progress":
            return {"held": False}
        rel = f"videos/{job_id}/{attempt}"
        for name, upload in form.multi_items():
            if isinstance(upload, UploadFile):
                if not OUTPUT_NAME.match(name):
                    raise ApiError(400, f"{name}: not an output file name", param=name)
                with atomic_path(root / rel / name) as tmp, tmp.open("wb") as out:
                    shutil.copyfileobj(upload.file, out)
        if not (root / rel / f"video-{count - 1}.mp4").is_file():
            raise ApiError(400, f"videos: {count} announced, files missing", param="videos")
        held = store.complete(job_id, lease_token, {"dir": rel, "videos": count})
        if held:
            finished(job_id)
        else:
            shutil.rmtree(root / rel, ignore_errors=True)
        return {"held": held}

    @router.get("/files")
    def files(path: str, request: Request) -> FileResponse:
        check(request)
        target = _inside(root, path)
        if not target.is_file():
            raise ApiError(404, f"path: no file {path[:80]!r}", param="path")
        return FileResponse(target)

    @router.post("/expire")
    def expire(request: Request) -> dict[str, int]:
        check(request)
        folders = store.expire()
        for folder in folders:
            shutil.rmtree(root / folder, ignore_errors=True)
        return {"purged": len(folders)}

    return router


class RemoteQueue:
    """A `tenku serve`'s job queue over HTTP; ``cache`` is this worker's data folder."""

    def __init__(self, url: str, token: str, cache: str | Path, *, timeout: float = 120) -> None:
        self.cache = Path(cache)
        self.http = httpx.Client(
            base_url=url.rstrip("/") + PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.post(path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"server: {path} answered {response.status_code}: {response.text}")
        return response

    def claim(self, worker: str, *, lease_s: float, max_attempts: int = 3) -> Lease | None:
        """Claim a job and download the source files it names into the cache."""
        body = {"worker": worker, "lease_s": lease_s, "max_attempts": max_attempts}
        response = self._post("/jobs/claim", json=body)
        if response.status_code == 204:
            return None
        lease = Lease(**response.json())
        for rel in source_paths(lease.request):
            target = self.cache / rel
            if target.is_file():
                continue
            with self.http.stream("GET", "/files", params={"path": rel}) as download:
                if download.status_code != 200:
                    download.read()
                    self.fail(lease.job_id, lease.token, "invalid_source", f"{rel}: missing")
                    return None
                with atomic_path(target) as tmp, tmp.open("wb") as out:
                    for chunk in download.iter_bytes():
                        out.write(chunk)
        return lease

    def heartbeat(
        self, job_id: str, token: str, *, lease_s: float, progress: int | None = None
    ) -> bool:
        body = {"token": token, "lease_s": lease_s, "progress": progress}
        return bool(self._post(f"/jobs/{job_id}/heartbeat", json=body).json()["held"])

    def complete(self, job_id: str, token: str, result: dict[str, Any]) -> bool:
        """Upload the files in ``cache / result["dir"]``; the server completes the job."""
        folder = self.cache / result["dir"]
        handles = [path.open("rb") for path in sorted(folder.iterdir()) if path.is_file()]
        try:
            files = [(h.name.rpartition("/")[2], (Path(h.name).name, h)) for h in handles]
            data = {"token": token, "videos": str(result["videos"])}
            held = self._post(f"/jobs/{job_id}/complete", data=data, files=files).json()["held"]
        finally:
            for h in handles:
                h.close()
        shutil.rmtree(folder, ignore_errors=True)  # the server has them now
        return bool(held)

    def fail(self, job_id: str, token: str, code: str, message: str) -> bool:
        body = {"token": token, "code": code, "message": message}
        return bool(self._post(f"/jobs/{job_id}/fail", json=body).json()["held"])

    def expire(self) -> list[str]:
        """Ask the server to delete expired files (it holds them); nothing to do here."""
        self._post("/expire")
        return []
