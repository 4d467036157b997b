"""The durable job store: plans, API keys and video jobs in one SQLite file (WAL mode).

Every state change is one short transaction, so any number of API processes and workers can
share the file. A worker *claims* a job atomically (``BEGIN IMMEDIATE``: at most one writer at
a time), which gives it a lease token ``WORKER:ATTEMPT`` valid until ``lease_until``; it keeps
the lease alive with :meth:`JobStore.heartbeat` and ends it with :meth:`JobStore.complete` or
:meth:`JobStore.fail`. Every one of those checks the token, so a worker that lost its lease
(it stalled, or was killed and the job was re-leased) can no longer change the job. A job whose
lease ran out is claimed again by the next free worker, up to ``max_attempts`` times.

Opening the store runs ``PRAGMA quick_check`` and refuses a damaged file
(:class:`~tenku.serve.backup.StoreDamaged`, naming it and how to restore a backup); every
connection uses ``synchronous=FULL``, so a commit that was acknowledged survives a power loss.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenku.serve.backup import StoreDamaged, quick_check

STATUSES = ("queued", "in_progress", "completed", "failed")
ACTIVE = ("queued", "in_progress")
LOCAL_KEY = "key_local"  # the key every request uses when the server runs without auth
CONCURRENCY_RETRY_S = 5  # Retry-After when every job slot is taken: a polling interval

SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    name TEXT PRIMARY KEY,
    videos_per_period INTEGER NOT NULL,  -- videos (variations count) a key may create per period
    period_s INTEGER NOT NULL,           -- the sliding window of that quota, in seconds
    max_side INTEGER NOT NULL,           -- largest width or height, in pixels
    max_seconds REAL NOT NULL,           -- longest duration
    max_concurrent INTEGER NOT NULL,     -- jobs queued or in progress at once
    watermark INTEGER NOT NULL DEFAULT 1 -- 1: outputs carry the visible mark
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    token_hash TEXT UNIQUE NOT NULL,     -- sha256 of the bearer token (the token is not kept)
    name TEXT NOT NULL,
    plan TEXT NOT NULL REFERENCES plans(name),
    webhook_url TEXT,                    -- video.completed / video.failed are posted here
    webhook_secret TEXT,                 -- signs those posts (HMAC-SHA256)
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order (the list cursor)
    id TEXT UNIQUE NOT NULL,
    key_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,               -- GenerationRequest.to_dict(), paths relative to data
    info TEXT NOT NULL,                  -- the public fields: model, seconds, size, prompt, ...
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    expires_at INTEGER,
    error TEXT,                          -- {"code", "message"} when failed
    lease TEXT,                          -- WORKER:ATTEMPT of the worker holding the job
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,                         -- {"dir", "videos"} when completed
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (key_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (key_id, updated_at);
CREATE TABLE IF NOT EXISTS usage (key_id TEXT NOT NULL, at REAL NOT NULL, videos INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS usage_by_key ON usage (key_id, at);
"""


class QuotaExceeded(Exception):
    """A plan limit stops a request; ``param`` names the request field or the plan limit.

    ``retry_after``: seconds until the request could pass (None: waiting will not help).
    """

    def __init__(self, message: str, param: str, code: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        self.retry_after = retry_after


@dataclass(frozen=True)
class Plan:
    """What a key may do."""

    name: str
    videos_per_period: int  # videos (each variation counts) per period
    period_s: int  # the quota's sliding window in seconds
    max_side: int  # largest width or height in pixels
    max_seconds: float  # longest video
    max_concurrent: int  # jobs queued or in progress at once
    watermark: bool = True  # the visible mark (the invisible mark and C2PA always stay)

    def __post_init__(self) -> None:
        object.__setattr__(self, "watermark", bool(self.watermark))  # SQLite gives 0/1


@dataclass(frozen=True)
class ApiKey:
    """A caller: its id, plan and webhook."""

    id: str
    name: str
    plan: Plan
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True)
class Lease:
    """A claimed job: what to generate and the token that proves the claim."""

    job_id: str
    token: str
    attempt: int
    request: dict[str, Any]
    key_id: str
    watermark: bool = True  # the key's plan wants the visible mark


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class JobStore:
    """Plans, keys and jobs in the SQLite file ``path`` (created with its tables if missing)."""

    def __init__(self, path: str | Path, *, retention_s: int = 7 * 24 * 3600) -> None:
        self.path = Path(path)
        self.retention_s = retention_s  # a finished video's files are kept this long
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per thread, reused
        try:
            with self._connect() as db:
                problems = quick_check(db)
                if problems:
                    raise StoreDamaged(self.path, problems)
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:  # not a database, malformed, unreadable
            self.close()
            raise StoreDamaged(self.path, str(error)) from error
        except StoreDamaged:
            self.close()
            raise

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (opened on first use, kept for the thread's life)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            # FULL: each commit syncs the WAL, so an acknowledged job survives a power loss
            # (NORMAL in WAL mode may lose the last commits before a checkpoint)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        yield db

    def close(self) -> None:
        """Close this thread's connection (the next use opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its start."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ plans and keys

    def put_plan(self, plan: Plan) -> Plan:
        """Create or replace a plan."""
        for field in ("videos_per_period", "period_s", "max_side", "max_concurrent"):
            if getattr(plan, field) < 1:
                raise ValueError(f"{field}: must be at least 1, got {getattr(plan, field)}")
        if not plan.max_seconds > 0:
            raise ValueError(f"max_seconds: must be positive, got {plan.max_seconds}")
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    plan.name,
                    plan.videos_per_period,
                    plan.period_s,
                    plan.max_side,
                    plan.max_seconds,
                    plan.max_concurrent,
                    int(plan.watermark),
                ),
            )
        return plan

    def plans(self) -> list[Plan]:
        with self._connect() as db:
            return [Plan(**dict(r)) for r in db.execute("SELECT * FROM plans ORDER BY name")]

    def plan(self, name: str) -> Plan:
        for plan in self.plans():
            if plan.name == name:
                return plan
        raise ValueError(f"plan: no plan named {name!r} (create it with `tenku plans create`)")

    def create_key(
        self, plan: str, *, name: str = "", webhook_url: str | None = None, key_id: str = ""
    ) -> tuple[ApiKey, str]:
        """A new key on ``plan``; returns it and its bearer token (shown once, stored hashed)."""
        self.plan(plan)
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url: must be an http(s) URL, got {webhook_url!r}")
        token = f"tk-{secrets.token_urlsafe(24)}"
        key_id = key_id or new_id("key")
        secret = f"whsec_{secrets.token_urlsafe(24)}" if webhook_url else None
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, hash_token(token), name, plan, webhook_url, secret, int(time.time())),
            )
        return self.key(key_id), token

    def _key_from_row(self, db: sqlite3.Connection, row: sqlite3.Row) -> ApiKey:
        plan = db.execute("SELECT * FROM plans WHERE name = ?", (row["plan"],)).fetchone()
        return ApiKey(
            id=row["id"],
            name=row["name"],
            plan=Plan(**dict(plan)),
            webhook_url=row["webhook_url"],
            webhook_secret=row["webhook_secret"],
        )

    def key(self, key_id: str) -> ApiKey:
        with self._connect() as db:
            row = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise KeyError(key_id)
            return self._key_from_row(db, row)

    def key_for_token(self, token: str) -> ApiKey | None:
        """The key a bearer token belongs to, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM keys WHERE token_hash = ?", (hash_token(token),)
            ).fetchone()
            return None if row is None else self._key_from_row(db, row)

    def list_keys(self) -> list[ApiKey]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM keys ORDER BY created_at").fetchall()
            return [self._key_from_row(db, r) for r in rows]

    def delete_key(self, key_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM keys WHERE id = ?", (key_id,)).rowcount == 1

    # ------------------------------------------------------------------ jobs: the API side

    def submit(
        self,
        key: ApiKey,
        job_id: str,
        request: dict[str, Any],
        info: dict[str, Any],
        *,
        videos: int,
        width: int,
        height: int,
        seconds: float,
    ) -> dict[str, Any]:
        """Queue a job after checking ``key``'s plan in the same transaction.

        Raises :class:`QuotaExceeded` (naming the field) when a limit stops it.
        """
        plan, now = key.plan, time.time()
        if max(width, height) > plan.max_side:
            raise QuotaExceeded(
                f"size: {width}x{height} is larger than plan {plan.name!r} allows "
                f"(at most {plan.max_side} pixels a side)",
                "size",
                "plan_limit_exceeded",
            )
        if seconds > plan.max_seconds:
            raise QuotaExceeded(
                f"seconds: {seconds:g} is longer than plan {plan.name!r} allows "
                f"(at most {plan.max_seconds:g})",
                "seconds",
                "plan_limit_exceeded",
            )
        with self._write() as db:
            (used,) = db.execute(
                "SELECT COALESCE(SUM(videos), 0) FROM usage WHERE key_id = ? AND at > ?",
                (key.id, now - plan.period_s),
            ).fetchone()
            if used + videos > plan.videos_per_period:
                wait = self._quota_wait(db, key, used + videos - plan.videos_per_period, now)
                raise QuotaExceeded(
                    f"videos_per_period: plan {plan.name!r} allows {plan.videos_per_period} "
                    f"videos per {plan.period_s} s; {used} used, this request asks for "
                    f"{videos}" + (f"; retry in {wait} s" if wait else ""),
                    "videos_per_period",
                    "quota_exceeded",
                    wait,
                )
            (active,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE key_id = ? AND status IN (?, ?)",
                (key.id, *ACTIVE),
            ).fetchone()
            if active >= plan.max_concurrent:
                raise QuotaExceeded(
                    f"max_concurrent: plan {plan.name!r} allows {plan.max_concurrent} jobs "
                    f"queued or in progress at once; wait for one to finish",
                    "max_concurrent",
                    "concurrency_limit_exceeded",
                    CONCURRENCY_RETRY_S,
                )
            db.execute("INSERT INTO usage VALUES (?, ?, ?)", (key.id, now, videos))
            db.execute(
                "INSERT INTO jobs (id, key_id, status, request, info, created_at, updated_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, key.id, json.dumps(request), json.dumps(info), int(now), now),
            )
        job = self.get(key.id, job_id)
        assert job is not None
        return job

    @staticmethod
    def _quota_wait(db: sqlite3.Connection, key: ApiKey, excess: int, now: float) -> int | None:
        """Seconds until ``excess`` of the key's counted videos leave the quota's window
        (None if they never can: the request alone asks for more than the plan allows)."""
        period, freed = key.plan.period_s, 0
        rows = db.execute(
            "SELECT at, videos FROM usage WHERE key_id = ? AND at > ? ORDER BY at",
            (key.id, now - period),
        )
        for at, videos in rows:
            freed += videos
            if freed >= excess:
                return max(1, math.ceil(at + period - now))
        return None

    @staticmethod
    def _job(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        for field in ("request", "info", "error", "result"):
            job[field] = json.loads(job[field]) if job[field] else None
        return job

    def get(self, key_id: str | None, job_id: str) -> dict[str, Any] | None:
        """A job (``key_id`` None: whoever owns it), or None if missing or someone else's."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or (key_id is not None and row["key_id"] != key_id):
            return None
        return self._job(row)

    def list(
        self, key_id: str, *, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the key's jobs after the job ``after`` (a ValueError if that is unknown)."""
        cmp, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        with self._connect() as db:
            bound = ""
            args: list[Any] = [key_id]
            if after is not None:
                row = db.execute(
                    "SELECT seq FROM jobs WHERE id = ? AND key_id = ?", (after, key_id)
                ).fetchone()
                if row is None:
                    raise ValueError(f"after: no video {after!r} to continue the list from")
                bound, args = f" AND seq {cmp} ?", [key_id, row["seq"]]
            rows = db.execute(
                f"SELECT * FROM jobs WHERE key_id = ?{bound} ORDER BY seq {direction} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        return [self._job(r) for r in rows[:limit]], len(rows) > limit

    def changed_since(self, key_id: str, since: float) -> list[dict[str, Any]]:
        """The key's jobs updated after ``since`` (for the event stream), oldest change first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE key_id = ? AND updated_at > ? ORDER BY updated_at",
                (key_id, since),
            ).fetchall()
        return [self._job(r) for r in rows]

    def delete(self, key_id: str, job_id: str) -> dict[str, Any] | None:
        """Remove a job (its worker loses the lease); returns what it was, or None."""
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE id = ? AND key_id = ?", (job_id, key_id)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return self._job(row)

    def counts(self) -> dict[str, int]:
        """Jobs per status, over all keys."""
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict.fromkeys(STATUSES, 0) | {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------------ jobs: the worker side

    def claim(self, worker: str, *, lease_s: float, max_attempts: int = 3) -> Lease | None:
        """Atomically take the oldest queued job, or one whose lease ran out; None if none.

        A job whose lease has run out ``max_attempts`` times is failed instead of retried.
        """
        now = time.time()
        with self._write() as db:
            while True:
                row = db.execute(
                    "SELECT * FROM jobs WHERE status = 'queued' "
                    "OR (status = 'in_progress' AND lease_until < ?) ORDER BY seq LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                if row["attempts"] >= max_attempts:
                    error = {
                        "code": "worker_lost",
                        "message": f"the job's worker stopped {row['attempts']} times",
                    }
                    self._finish(db, row["id"], row["lease"], "failed", error=error)
                    continue
                attempt = row["attempts"] + 1
                token = f"{worker}:{attempt}"
                db.execute(
                    "UPDATE jobs SET status = 'in_progress', lease = ?, lease_until = ?, "
                    "attempts = ?, updated_at = ? WHERE id = ?",
                    (token, now + lease_s, attempt, now, row["id"]),
                )
                mark = db.execute(
                    "SELECT plans.watermark FROM keys JOIN plans ON keys.plan = plans.name "
                    "WHERE keys.id = ?",
                    (row["key_id"],),
                ).fetchone()
                watermark = True if mark is None else bool(mark[0])  # a deleted key: mark it
                request = json.loads(row["request"])
                return Lease(row["id"], token, attempt, request, row["key_id"], watermark)

    def heartbeat(
        self, job_id: str, token: str, *, lease_s: float, progress: int | None = None
    ) -> bool:
        """Extend the lease (and set progress, 0-99); False if the lease is no longer held."""
        now = time.time()
        with self._write() as db:
            if progress is None:
                cur = db.execute(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease = ? "
                    "AND status = 'in_progress'",
                    (now + lease_s, job_id, token),
                )
            else:
                cur = db.execute(
                    "UPDATE jobs SET lease_until = ?, progress = ?, updated_at = ? "
                    "WHERE id = ? AND lease = ? AND status = 'in_progress'",
                    (now + lease_s, max(0, min(progress, 99)), now, job_id, token),
                )
            return cur.rowcount == 1

    def _finish(
        self,
        db: sqlite3.Connection,
        job_id: str,
        token: str | None,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        now = time.time()
        cur = db.execute(
            "UPDATE jobs SET status = ?, progress = ?, completed_at = ?, expires_at = ?, "
            "result = ?, error = ?, lease_until = NULL, updated_at = ? "
            "WHERE id = ? AND lease IS ? AND status = 'in_progress'",
            (
                status,
                100 if status == "completed" else 0,
                int(now),
                int(now + self.retention_s) if status == "completed" else None,
                json.dumps(result) if result is not None else None,
                json.dumps(error) if error is not None else None,
                now,
                job_id,
                token,
            ),
        )
        return cur.rowcount == 1

    def complete(self, job_id: str, token: str, result: dict[str, Any]) -> bool:
        """Mark the job completed with its ``result``; False if the lease was lost."""
        with self._write() as db:
            return self._finish(db, job_id, token, "completed", result=result)

    def fail(self, job_id: str, token: str, code: str, message: str) -> bool:
        """Mark the job failed; False if the lease was lost."""
        with self._write() as db:
            error = {"code": code, "message": message}
            return self._finish(db, job_id, token, "failed", error=error)

    def expire(self, now: float | None = None) -> list[str]:
        """Forget the files of completed jobs past ``expires_at``; returns their folders."""
        now = time.time() if now is None else now
        with self._write() as db:
            rows = db.execute(
                "SELECT id, result FROM jobs WHERE status = 'completed' AND expires_at < ? "
                "AND result IS NOT NULL",
                (now,),
            ).fetchall()
            db.executemany("UPDATE jobs SET result = NULL WHERE id = ?", [(r["id"],) for r in rows])
        return [json.loads(r["result"])["dir"] for r in rows]
