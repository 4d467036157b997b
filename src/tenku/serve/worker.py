"""Workers: claim a job, generate it, write its files atomically, mark it done.

A worker holds one generator (loaded once by :func:`load_generator`) and loops over
:meth:`JobStore.claim`. While a job runs, a heartbeat thread extends its lease and records
progress; if the lease is lost (the job was deleted, or the worker stalled past its lease and
another worker took the job), generation stops at the next step and nothing is written. Outputs
go to ``videos/JOB/ATTEMPT/`` through one function, :func:`write_outputs`, each file written to
a hidden temporary name and renamed into place (beside them the model's unmarked frames, kept
losslessly and never served: later work on the video by its id starts from them); the job is
marked completed only after every file is in place, and only by the lease holder, so no
half-written file is ever served and a job is never completed twice.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tenku.io import atomic_path, read_video
from tenku.pipelines.pipeline import GeneratedVideo
from tenku.pipelines.request import GenerationRequest
from tenku.safety.publish import publish_video, request_ingredients
from tenku.safety.visible import VisibleOptions
from tenku.serve.convert import ORIGINAL, PUBLISHED, published_request, resolve_request
from tenku.serve.notify import notify_finished
from tenku.serve.store import JobStore, Lease

log = logging.getLogger("tenku.serve.worker")
SPRITES = 10  # frames in a spritesheet (5 per row)
PROGRESS_EVERY_S = 1.0  # heartbeats (lease and progress) at least this often
PURGE_EVERY_S = 300.0  # an idle worker deletes expired videos' files this often


class Generator(Protocol):
    """What a worker runs: a pipeline or backend (``name`` is reported as the video's model)."""

    name: str

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> list[GeneratedVideo]: ...


class JobQueue(Protocol):
    """Where a worker gets jobs: a :class:`JobStore` on a shared disk, or a remote server
    (:class:`tenku.serve.remote.RemoteQueue`)."""

    def claim(self, worker: str, *, lease_s: float, max_attempts: int = 3) -> Lease | None: ...

    def heartbeat(
        self, job_id: str, token: str, *, lease_s: float, progress: int | None = None
    ) -> bool: ...

    def complete(self, job_id: str, token: str, result: dict[str, Any]) -> bool: ...

    def fail(self, job_id: str, token: str, code: str, message: str) -> bool: ...

    def expire(self) -> list[str]: ...


class LeaseLost(Exception):
    """The job's lease was taken away while it ran; its results must not be written."""


def load_generator(model: str | None, *, device: str = "cpu") -> Generator:
    """The worker's generator: a native or diffusers model folder or installed name (None:
    the shipped default), through :func:`tenku.pipelines.registry.load_backend`.

    This is the one place the serving stack loads a model.
    """
    from tenku.pipelines.registry import load_backend

    return load_backend(model, device=device)


def publish(
    video: GeneratedVideo,
    path: Path,
    *,
    video_id: str,
    watermark: bool = True,
    sources: GenerationRequest | None = None,
) -> None:
    """Write one finished video to ``path``: the one exit of every served video.

    :func:`tenku.safety.publish.publish_video` marks it (the visible mark unless the plan
    turned it off with ``watermark=False``, and always the invisible one carrying ``video_id``),
    writes it atomically and signs its C2PA manifest, naming as ingredients the source files
    of ``sources`` (the request as the caller named them), else of the video's own request.
    """
    publish_video(
        video.frames,
        video.fps,
        path,
        video_id=video_id,
        model=video.model,
        prompt=video.request.prompt,
        ingredients=request_ingredients(video.request if sources is None else sources),
        visible=VisibleOptions(enabled=watermark),
    )


def write_outputs(
    videos: Sequence[GeneratedVideo],
    out: Path,
    *,
    video_id: str,
    watermark: bool = True,
    sources: GenerationRequest | None = None,
) -> None:
    """Each video as ``video-I.mp4`` with ``thumbnail-I.webp`` and ``spritesheet-I.jpg``, and
    its unmarked frames as ``original-I.mkv`` (FFV1, lossless; never served).

    The thumbnail and spritesheet are cut from the published file, so they show what it shows.
    The original is what a later remix, extension or edit of this video by its id starts from
    (:meth:`tenku.serve.service.VideoService._source`), so the new video carries one mark and
    the frames it keeps are the model's own. ``sources``: see :func:`publish`.
    """
    from PIL import Image

    from tenku.safety.library import write_lossless

    for i, video in enumerate(videos):
        write_lossless(out / ORIGINAL.format(i), video.frames, video.fps)
        path = out / PUBLISHED.format(i)
        publish(
            video,
            path,
            video_id=video_id if i == 0 else f"{video_id}_{i}",
            watermark=watermark,
            sources=sources,
        )
        frames = read_video(path).frames  # (T, H, W, 3) uint8
        with atomic_path(out / f"thumbnail-{i}.webp") as tmp:
            Image.fromarray(frames[len(frames) // 2]).save(tmp, format="WEBP", quality=85)
        picks = np.linspace(0, len(frames) - 1, min(SPRITES, len(frames))).round().astype(int)
        cols = min(5, len(picks))
        rows = math.ceil(len(picks) / cols)
        _, h, w, _ = frames.shape
        sheet = np.zeros((rows * h, cols * w, 3), np.uint8)  # (rows*H, cols*W, 3)
        for k, t in enumerate(picks):
            r, c = divmod(k, cols)
            sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frames[t]
        with atomic_path(out / f"spritesheet-{i}.jpg") as tmp:
            Image.fromarray(sheet).save(tmp, format="JPEG", quality=85)


class Worker:
    """One generator working through a queue; ``data_dir`` holds sources and outputs."""

    def __init__(
        self,
        store: JobQueue,
        data_dir: str | Path,
        generator: Generator,
        *,
        name: str | None = None,
        lease_s: float = 30.0,
        poll_s: float = 0.5,
        max_attempts: int = 3,
    ) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.generator = generator
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        self.lease_s = lease_s  # a job whose heartbeat stops this long is given to another
        self.poll_s = poll_s  # wait between claims when the queue is empty
        self.max_attempts = max_attempts  # claims of one job before it is failed
        self.jobs_done = 0
        # webhooks: sent here for a local store; a remote queue's server sends its own
        self.notify = partial(notify_finished, store) if isinstance(store, JobStore) else None
        self._next_purge = 0.0  # monotonic time of the next purge of expired files

    def run(self, stop: threading.Event | None = None, *, max_jobs: int | None = None) -> int:
        """Work until ``stop`` is set (or ``max_jobs`` are done); returns the jobs finished."""
        stop = stop or threading.Event()
        while not stop.is_set() and (max_jobs is None or self.jobs_done < max_jobs):
            try:
                worked = self.run_once()
            except Exception:  # the store is unreachable for a moment: retry, never die
                log.exception("worker %s: claim failed", self.name)
                worked = False
            if not worked:
                if time.monotonic() > self._next_purge:
                    self.purge_expired()
                stop.wait(self.poll_s)
        return self.jobs_done

    def purge_expired(self) -> int:
        """Delete the files of videos past their ``expires_at``; returns how many."""
        self._next_purge = time.monotonic() + PURGE_EVERY_S
        folders = self.store.expire()
        for folder in folders:
            shutil.rmtree(self.data_dir / folder, ignore_errors=True)
        return len(folders)

    def run_once(self) -> bool:
        """Claim and run one job; False if the queue was empty."""
        lease = self.store.claim(self.name, lease_s=self.lease_s, max_attempts=self.max_attempts)
        if lease is None:
            return False
        self._run(lease)
        self.jobs_done += 1
        return True

    def _run(self, lease: Lease) -> None:
        rel = f"videos/{lease.job_id}/{lease.attempt}"
        out = self.data_dir / rel
        lost = threading.Event()
        done = threading.Event()
        state = {"progress": 0}

        def beat() -> None:
            while not done.wait(min(self.lease_s / 4, PROGRESS_EVERY_S)):
                try:
                    held = self.store.heartbeat(
                        lease.job_id, lease.token, lease_s=self.lease_s, progress=state["progress"]
                    )
                except Exception:  # the store is busy or unreachable: try again next beat
                    log.exception("worker %s: heartbeat failed", self.name)
                    continue
                if not held:
                    lost.set()
                    return

        def on_step(step: int, total: int) -> None:
            if lost.is_set():
                raise LeaseLost(lease.job_id)
            state["progress"] = int(99 * step / max(total, 1))

        heart = threading.Thread(target=beat, name=f"heartbeat-{lease.job_id}", daemon=True)
        heart.start()
        try:
            request = resolve_request(lease.request, self.data_dir)
            videos = self.generator.generate(request, callback=on_step)
            if lost.is_set():
                raise LeaseLost(lease.job_id)
            write_outputs(
                videos,
                out,
                video_id=lease.job_id,
                watermark=lease.watermark,
                sources=published_request(lease.request, self.data_dir),
            )
            finished = self.store.complete(
                lease.job_id, lease.token, {"dir": rel, "videos": len(videos)}
            )
        except LeaseLost:
            finished = False
        except Exception as error:  # a bad source file, a model failure: the job fails
            log.exception("worker %s: job %s failed", self.name, lease.job_id)
            code = "invalid_source" if isinstance(error, ValueError) else "generation_failed"
            shutil.rmtree(out, ignore_errors=True)
            finished = self.store.fail(lease.job_id, lease.token, code, str(error)[:500])
        finally:
            done.set()
            heart.join()
        if not finished:  # the lease went to another worker or the job was deleted
            log.warning("worker %s: lost the lease of %s", self.name, lease.job_id)
            shutil.rmtree(out, ignore_errors=True)
            return
        if self.notify is not None:
            self.notify(lease.job_id)


def run_workers(workers: Sequence[Worker], stop: threading.Event) -> list[threading.Thread]:
    """Start each worker in a daemon thread; they stop when ``stop`` is set."""
    threads = [
        threading.Thread(target=w.run, args=(stop,), name=f"worker-{w.name}", daemon=True)
        for w in workers
    ]
    for t in threads:
        t.start()
    return threads


__all__ = ["Generator", "Worker", "load_generator", "publish", "run_workers", "write_outputs"]
