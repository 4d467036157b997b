"""Shared pieces of the `tenku serve` tests: a tiny random model and a live server stack.

(Named test_serve_*.py so it sits with the serve tests; it holds no tests itself.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tenku.pipelines.tiny import save_tiny_native
from tenku.serve import JobStore, Plan, ServerThread, VideoService, Worker, create_app
from tenku.serve.worker import load_generator, run_workers

SMALL = {"seconds": "0.5", "size": "64x64"}  # a 5-frame 64x64 clip
FAST = {"steps": 2}  # tenku's extra field: 2 sampler steps
PLAN = Plan("test", 1000, 3600, 256, 8.0, 50)


def tiny_model(root: Path) -> Path:
    """A model folder with tiny random weights, as `tenku export` writes it."""
    return save_tiny_native(root / "tiny")


@dataclass
class Stack:
    """A running `tenku serve`: API on 127.0.0.1 plus in-process worker threads."""

    url: str
    store: JobStore
    data: Path
    service: VideoService

    def key(self, plan: Plan = PLAN, **kwargs: object) -> str:
        """A new API key on ``plan`` (created if missing); returns its token."""
        self.store.put_plan(plan)
        return self.store.create_key(plan.name, **kwargs)[1]  # type: ignore[arg-type]


@contextmanager
def serve(
    data: Path,
    model: Path | None,
    *,
    workers: int = 1,
    lease_s: float = 30.0,
    open_access: bool = False,
) -> Iterator[Stack]:
    """Run the API (uvicorn in a thread) and ``workers`` worker threads on ``data``, with the
    model folder ``model`` (None: the shipped default)."""
    store = JobStore(data / "tenku.db")
    generators = [load_generator(model and str(model)) for _ in range(workers)]
    service = VideoService(store, data, model=generators[0].name, open_access=open_access)
    stop = threading.Event()
    threads = run_workers(
        [Worker(store, data, g, lease_s=lease_s, poll_s=0.05) for g in generators], stop
    )
    try:
        with ServerThread(create_app(service)) as url:
            yield Stack(url, store, data, service)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
