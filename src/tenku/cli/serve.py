"""``tenku serve`` (API + studio + a worker), ``tenku worker`` (more workers), and the admin
commands ``tenku keys`` and ``tenku plans``."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: `tenku --help` stays fast
    from tenku.serve.store import JobStore, Plan
    from tenku.serve.worker import Generator

SERVE_EPILOG = """\
Examples:
  tenku plans create free --videos-per-period 20 --period 86400 --max-side 256 --max-seconds 8
  tenku keys create --plan free --name alice          # prints the key once
  tenku serve --port 8000                             # studio at http://127.0.0.1:8000/
  tenku worker --data tenku-data                      # one more worker on the same jobs

Then, with the official `openai` package:
  client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="tk-...")
  video = client.videos.create_and_poll(prompt="a red ball bounces", seconds="2")
  client.videos.download_content(video.id).write_to_file("ball.mp4")

The API docs are served at /docs (OpenAPI at /openapi.json); docs/api.md lists tenku's extra
fields. All state lives in the data folder: the job database (SQLite, WAL), uploads and
videos. Every worker on the machine points at the same folder."""


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default="tenku-data", help="data folder: job database, uploads and videos"
    )
    parser.add_argument("--db", default=None, help="job database file; None: DATA/tenku.db")


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="model folder or installed name; None: the shipped weights or $TENKU_MODEL",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="seconds without a heartbeat before a job is handed to another worker",
    )
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between queue checks when idle"
    )


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db) if args.db else Path(args.data) / "tenku.db"


def _open_store(args: argparse.Namespace) -> JobStore:
    """The job store, checked (``quick_check``): a damaged file stops the command."""
    from tenku.serve.store import JobStore

    return JobStore(_db_path(args))


def _data_dir(args: argparse.Namespace) -> Path:
    """The data folder: ``--data``, or the folder of ``--db`` when only that is given."""
    if args.db and args.data == "tenku-data":
        return Path(args.db).resolve().parent
    return Path(args.data)


def _load(args: argparse.Namespace) -> Generator:
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(args.threads, 1))
    from tenku.serve.worker import load_generator

    return load_generator(args.model, device=args.device)


def add_serve_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve OpenAI's Videos API and the web studio, with one worker",
        description="Serve the OpenAI-compatible Videos API (/v1/videos), the studio (/) and "
        "API docs (/docs), and run worker threads on the same job database.",
        epilog=SERVE_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    _store_args(parser)
    _worker_args(parser)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker threads in this process (0: API only)"
    )
    parser.add_argument(
        "--worker-token",
        default=None,
        help="let `tenku worker --server` workers holding this secret claim jobs "
        "($TENKU_WORKER_TOKEN; unset: only workers sharing the data folder)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="no API keys: every caller shares one local account (for a single user)",
    )
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from tenku.serve import VideoService, Worker, create_app
    from tenku.serve.worker import run_workers

    if args.workers < 0:
        raise ValueError(f"workers: must be 0 or more, got {args.workers}")
    store = _open_store(args)
    data = _data_dir(args)
    generators = [_load(args) for _ in range(args.workers)]
    if generators:
        model = generators[0].name
    else:  # API only: the name the workers will report, from the model folder
        import json

        from tenku.pipelines.pipeline import default_model_path

        folder = Path(args.model) if args.model else default_model_path()
        spec = folder / "pipeline.json"
        model = json.loads(spec.read_text())["name"] if spec.is_file() else folder.name
    service = VideoService(store, data, model=model, open_access=args.no_auth)
    if not args.no_auth and not store.list_keys():
        print(
            "tenku serve: no API keys yet; create one with "
            f"`tenku keys create --plan NAME --data {args.data}` (or run with --no-auth)",
            file=sys.stderr,
        )
    stop = threading.Event()
    workers = [Worker(store, data, g, lease_s=args.lease, poll_s=args.poll) for g in generators]
    run_workers(workers, stop)
    print(
        f"tenku serve: studio http://{args.host}:{args.port}/  API /v1  docs /docs  "
        f"model {model}  workers {len(workers)}",
        file=sys.stderr,
    )
    try:
        token = args.worker_token or os.environ.get("TENKU_WORKER_TOKEN")
        app = create_app(service, worker_token=token)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()


def add_worker_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "worker",
        help="run a worker on a serve data folder",
        description="Claim jobs from the job database that `tenku serve` uses (--data/--db, "
        "same machine) or from the server itself (--server, any machine), generate them and "
        "store their videos. Run as many as the machines hold; a job whose worker dies is "
        "finished by another once its lease runs out.",
        formatter_class=formatter,
    )
    _store_args(parser)
    _worker_args(parser)
    parser.add_argument(
        "--server",
        default=None,
        help="claim jobs from this `tenku serve` over HTTP (another machine) instead of "
        "from --data/--db; needs --token",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the server's --worker-token ($TENKU_WORKER_TOKEN)",
    )
    parser.add_argument(
        "--cache",
        default="tenku-worker-cache",
        help="with --server: folder for downloaded sources and outputs before upload",
    )
    parser.add_argument("--name", default=None, help="worker name in leases; None: HOST-PID-N")
    parser.add_argument(
        "--max-jobs", type=int, default=None, help="exit after this many jobs; None: never"
    )
    parser.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> None:
    from tenku.serve import Worker

    if args.server:
        from tenku.serve.remote import RemoteQueue

        token = args.token or os.environ.get("TENKU_WORKER_TOKEN")
        if not token:
            raise ValueError("token: --server needs --token (the server's --worker-token)")
        queue, data = RemoteQueue(args.server, token, args.cache), Path(args.cache)
    else:
        queue, data = _open_store(args), _data_dir(args)
    worker = Worker(queue, data, _load(args), name=args.name, lease_s=args.lease, poll_s=args.poll)
    print(f"tenku worker {worker.name}: ready", file=sys.stderr, flush=True)
    done = worker.run(max_jobs=args.max_jobs)
    print(f"tenku worker {worker.name}: {done} jobs", file=sys.stderr)


def add_keys_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "keys",
        help="create, list and delete API keys",
        description="Manage the API keys of a serve data folder. A key's token is printed "
        "once, at creation; only its hash is stored.",
        formatter_class=formatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key", formatter_class=formatter)
    create.add_argument("--plan", required=True, help="plan name (see `tenku plans list`)")
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument(
        "--webhook-url", default=None, help="POST video.completed / video.failed events here"
    )
    _store_args(create)
    create.set_defaults(func=cmd_keys_create)
    listing = actions.add_parser("list", help="list keys", formatter_class=formatter)
    _store_args(listing)
    listing.set_defaults(func=cmd_keys_list)
    delete = actions.add_parser("delete", help="delete a key", formatter_class=formatter)
    delete.add_argument("id", help="the key id (key_...)")
    _store_args(delete)
    delete.set_defaults(func=cmd_keys_delete)


def cmd_keys_create(args: argparse.Namespace) -> None:
    key, token = _open_store(args).create_key(
        args.plan, name=args.name, webhook_url=args.webhook_url
    )
    print(f"id      {key.id}\nplan    {key.plan.name}\ntoken   {token}")
    if key.webhook_secret:
        print(f"webhook {key.webhook_url}\nsecret  {key.webhook_secret}")


def cmd_keys_list(args: argparse.Namespace) -> None:
    for key in _open_store(args).list_keys():
        print(f"{key.id}  plan={key.plan.name}  name={key.name!r}  webhook={key.webhook_url}")


def cmd_keys_delete(args: argparse.Namespace) -> None:
    if not _open_store(args).delete_key(args.id):
        raise ValueError(f"id: no key {args.id!r}")
    print(f"deleted {args.id}")


def add_plans_parser(commands: argparse._SubParsersAction, formatter: type) -> None:
    parser = commands.add_parser(
        "plans",
        help="create and list plans (quotas for API keys)",
        description="Manage the plans of a serve data folder: what a key may create, how "
        "large and how long, and how many jobs at once. Over a limit, the API answers 429.",
        formatter_class=formatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create or replace a plan", formatter_class=formatter
    )
    create.add_argument("name", help="plan name")
    create.add_argument(
        "--videos-per-period", type=int, default=100, help="videos per period (variations count)"
    )
    create.add_argument("--period", type=int, default=86400, help="quota period in seconds")
    create.add_argument("--max-side", type=int, default=512, help="largest width or height")
    create.add_argument("--max-seconds", type=float, default=8.0, help="longest video")
    create.add_argument(
        "--max-concurrent", type=int, default=4, help="jobs queued or in progress at once"
    )
    create.add_argument(
        "--no-watermark",
        action="store_true",
        help="no visible mark on this plan's videos (the invisible mark and C2PA stay)",
    )
    _store_args(create)
    create.set_defaults(func=cmd_plans_create)
    listing = actions.add_parser("list", help="list plans", formatter_class=formatter)
    _store_args(listing)
    listing.set_defaults(func=cmd_plans_list)
    add_backup_parsers(commands, formatter)  # the last admin commands, listed after plans


def add_backup_parsers(commands: argparse._SubParsersAction, formatter: type) -> None:
    backup = commands.add_parser(
        "backup",
        help="copy the job database to one file (safe while serving)",
        description="Copy the job database (plans, keys, jobs, usage) to one file with "
        "SQLite's online backup API: a consistent snapshot, taken while servers and workers "
        "run. A damaged database is refused, so a good backup is never overwritten by a bad "
        "one. Videos and uploads are files in the data folder: copy those with any tool.",
        epilog="Example: tenku backup backups/tenku-$(date +%F).db --data tenku-data",
        formatter_class=formatter,
    )
    backup.add_argument("target", help="the backup file to write (replaced if it exists)")
    _store_args(backup)
    backup.set_defaults(func=cmd_backup)
    restore = commands.add_parser(
        "restore",
        help="put a backup in place of the job database (stop servers first)",
        description="Check a backup and put it in place of the job database. Stop every "
        "server and worker using the database first. The old database and its WAL are kept "
        "beside it as DATABASE.replaced-TIME.",
        formatter_class=formatter,
    )
    restore.add_argument("backup", help="a file written by `tenku backup`")
    _store_args(restore)
    restore.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> None:
    from tenku.serve.backup import backup

    jobs = backup(_db_path(args), args.target)
    print(f"backed up {_db_path(args)} to {args.target}: {jobs} jobs")


def cmd_restore(args: argparse.Namespace) -> None:
    from tenku.serve.backup import restore

    jobs, kept = restore(args.backup, _db_path(args))
    print(f"restored {args.backup} to {_db_path(args)}: {jobs} jobs")
    if kept is not None:
        print(f"the previous database is kept as {kept}")


def cmd_plans_create(args: argparse.Namespace) -> None:
    from tenku.serve.store import Plan

    plan = Plan(
        args.name,
        args.videos_per_period,
        args.period,
        args.max_side,
        args.max_seconds,
        args.max_concurrent,
        watermark=not args.no_watermark,
    )
    _open_store(args).put_plan(plan)
    print(_plan_line(plan))


def cmd_plans_list(args: argparse.Namespace) -> None:
    for plan in _open_store(args).plans():
        print(_plan_line(plan))


def _plan_line(plan: Plan) -> str:
    return (
        f"{plan.name}: {plan.videos_per_period} videos / {plan.period_s} s, "
        f"at most {plan.max_side} px a side and {plan.max_seconds:g} s, "
        f"{plan.max_concurrent} jobs at once, "
        f"{'visible mark' if plan.watermark else 'no visible mark'}"
    )
