"""Checking, backing up and restoring the job database (SQLite's online backup API).

:func:`quick_check` is what :class:`~tenku.serve.store.JobStore` runs on opening the file;
:func:`backup` copies a live database (servers and workers may keep writing: the copy is one
consistent snapshot) into a single file; :func:`restore` puts such a copy in place of a
damaged or lost database, keeping the old file and its WAL beside it. Both check the copy
with ``PRAGMA quick_check`` and write it under a temporary name first, so a crash midway
leaves the previous file whole.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

SIDECARS = ("-wal", "-shm")  # SQLite's WAL and shared-memory index beside the database


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's ``quick_check`` of ``db``: None if it passes, else its first problems."""
    rows = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    return None if rows == ["ok"] else "; ".join("; ".join(rows).splitlines())[:300]


class StoreDamaged(ValueError):
    """The job database fails SQLite's ``quick_check``: refuse to run on it."""

    def __init__(self, path: Path, detail: str, advice: str | None = None) -> None:
        advice = advice or (
            f"Stop every server and worker using it and restore a backup: `tenku restore "
            f"BACKUP --db {path}` (the damaged file is kept beside it). Without a backup, "
            f"`sqlite3 {path} .recover` may save part of it."
        )
        super().__init__(f"{path}: the job database is damaged ({detail}). {advice}")
        self.path = path


def _check(db: sqlite3.Connection, path: Path, advice: str | None = None) -> int:
    """``quick_check`` the open database ``path``; returns its job count."""
    try:
        problems = quick_check(db)
        if problems:
            raise StoreDamaged(path, problems, advice)
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    except sqlite3.DatabaseError as error:  # not a database, or no jobs table
        raise StoreDamaged(path, str(error), advice) from error


def _sync(path: Path) -> None:
    """fsync ``path`` (a file or a folder), so a rename is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: sqlite3.Connection, target: Path, journal: str) -> int:
    """Copy ``source`` into a fresh file ``target`` (journal mode ``journal``); its job count."""
    target.unlink(missing_ok=True)
    out = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(out, pages=1024)  # in steps: writers are not held off for long
        out.execute(f"PRAGMA journal_mode={journal}")
        jobs = _check(out, target, "The copy failed; check the disk and try again.")
    finally:
        out.close()
    _sync(target)
    return jobs


def backup(database: str | Path, target: str | Path) -> int:
    """Copy the job database into the single file ``target``; returns the jobs it holds.

    Safe while servers and workers run. Refuses (:class:`StoreDamaged`) to copy a damaged
    database, so a good backup is never replaced by a bad one.
    """
    database, target = Path(database), Path(target)
    if not database.is_file():
        raise FileNotFoundError(f"database: no job database at {database}")
    if target.resolve() == database.resolve():
        raise ValueError(f"target: {target} is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    source = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        _check(source, database)
        jobs = _copy(source, partial, "DELETE")
    finally:
        source.close()
    partial.replace(target)
    _sync(target.parent)
    return jobs


def restore(backup_file: str | Path, database: str | Path) -> tuple[int, Path | None]:
    """Put the backup ``backup_file`` in place of ``database``; stop its servers first.

    The old database and its WAL, if any, are moved to ``DATABASE.replaced-TIME`` (with their
    suffixes) rather than deleted. Returns the jobs restored and where the old file went.
    """
    backup_file, database = Path(backup_file), Path(database)
    if not backup_file.is_file():
        raise FileNotFoundError(f"backup: no file at {backup_file}")
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(f".{database.name}.restoring")
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True, isolation_level=None)
    try:
        _check(source, backup_file, "This backup cannot be restored; use another.")
        jobs = _copy(source, partial, "WAL")
    finally:
        source.close()
    kept = None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", *SIDECARS):  # a stale WAL must not be replayed onto the restored file
        old = database.with_name(database.name + suffix)
        if old.exists():
            moved = database.with_name(f"{database.name}.replaced-{stamp}{suffix}")
            shutil.move(old, moved)
            kept = kept or moved
    for suffix in SIDECARS:
        database.with_name(partial.name + suffix).unlink(missing_ok=True)
    partial.replace(database)
    _sync(database.parent)
    return jobs, kept
