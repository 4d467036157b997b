"""``tenku serve``: OpenAI's Videos API over a durable job queue, workers and the web studio.

- :mod:`tenku.serve.store`: plans, API keys and jobs in SQLite (WAL), leases and heartbeats;
- :mod:`tenku.serve.backup`: the store's integrity check, online backup and restore;
- :mod:`tenku.serve.service`: bodies -> validated requests -> queued jobs, video objects;
- :mod:`tenku.serve.app`: the FastAPI routes, the event stream and the studio page;
- :mod:`tenku.serve.worker`: claim, generate, write atomically, complete (or be re-leased);
- :mod:`tenku.serve.notify`: signed webhooks.

The names load on first use, so that ``tenku keys`` and ``tenku plans`` (the store only) do
not import the web stack or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenku.serve.app import create_app
    from tenku.serve.backup import StoreDamaged, backup, restore
    from tenku.serve.server import ServerThread, free_port
    from tenku.serve.service import VideoService
    from tenku.serve.store import ApiKey, JobStore, Plan
    from tenku.serve.worker import Worker, load_generator

_HOMES = {
    "create_app": "tenku.serve.app",
    "StoreDamaged": "tenku.serve.backup",
    "backup": "tenku.serve.backup",
    "restore": "tenku.serve.backup",
    "ServerThread": "tenku.serve.server",
    "free_port": "tenku.serve.server",
    "VideoService": "tenku.serve.service",
    "ApiKey": "tenku.serve.store",
    "JobStore": "tenku.serve.store",
    "Plan": "tenku.serve.store",
    "Worker": "tenku.serve.worker",
    "load_generator": "tenku.serve.worker",
}

__all__ = [
    "ApiKey",
    "JobStore",
    "Plan",
    "ServerThread",
    "StoreDamaged",
    "VideoService",
    "Worker",
    "backup",
    "create_app",
    "free_port",
    "load_generator",
    "restore",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
