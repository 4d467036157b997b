"""``tenku serve``: OpenAI's Videos API over a durable job queue, workers and the web studio.

- :mod:`tenku.serve.store`: plans, API keys and jobs in SQLite (WAL), leases and heartbeats;
- :mod:`tenku.serve.backup`: the store's integrity check, online backup and restore;
- :mod:`tenku.serve.service`: bodies -> validated requests -> queued jobs, video objects;
- :mod:`tenku.serve.app`: the FastAPI routes, the event stream and the studio page;
- :mod:`tenku.serve.worker`: claim, generate, write atomically, complete (or be re-leased);
- :mod:`tenku.serve.notify`: signed webhooks.
"""

from tenku.serve.app import create_app
from tenku.serve.backup import StoreDamaged, backup, restore
from tenku.serve.server import ServerThread, free_port
from tenku.serve.service import VideoService
from tenku.serve.store import ApiKey, JobStore, Plan
from tenku.serve.worker import Worker, load_generator

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
