"""A damaged job database stops the server and workers with a message naming the file and
what to do; `tenku backup` / `tenku restore` bring every job back."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pytest

from tenku.cli import main
from tenku.serve import JobStore, Plan
from tenku.serve.backup import backup, restore
from tenku.serve.store import StoreDamaged

PLAN = Plan("store", 10**6, 3600, 512, 120.0, 10**6)
PAGE = 4096


def fill(path: Path, jobs: int = 60) -> list[str]:
    """A closed database of ``jobs`` jobs (WAL checkpointed into the file); their ids."""
    store = JobStore(path)
    store.put_plan(PLAN)
    key, _ = store.create_key(PLAN.name)
    ids = [submit(store, key, i) for i in range(jobs)]
    store.close()
    assert not Path(f"{path}-wal").exists()  # the last connection checkpointed it
    return ids


def submit(store: JobStore, key, i: int) -> str:
    info = {"prompt": f"job {i} " + "x" * 1500, "variations": 1}  # ~1 job a page
    return store.submit(
        key,
        f"video_{i:04d}",
        {"prompt": info["prompt"]},
        info,
        videos=1,
        width=64,
        height=64,
        seconds=1,
    )["id"]


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def damage_header(path: Path, rng: random.Random) -> None:
    overwrite(path, 0, rng.randbytes(100))


def damage_blocks(path: Path, rng: random.Random) -> None:
    pages = path.stat().st_size // PAGE
    for page in rng.sample(range(1, pages), 4):  # page 0 is the header: blocks elsewhere
        overwrite(path, page * PAGE, rng.randbytes(PAGE))


def damage_truncate(path: Path, rng: random.Random) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


DAMAGE = {"header": damage_header, "blocks": damage_blocks, "truncated": damage_truncate}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_database_refuses_to_open(tmp_path, damage, seed):
    path = tmp_path / "tenku.db"
    fill(path)
    DAMAGE[damage](path, random.Random(seed))
    with pytest.raises(StoreDamaged) as error:
        JobStore(path)
    message = str(error.value)
    assert str(path) in message and "damaged" in message and "tenku restore" in message


def test_serve_and_worker_refuse_to_start_on_it(tmp_path, capsys):
    path = tmp_path / "tenku.db"
    fill(path, jobs=10)
    damage_header(path, random.Random(0))
    for argv in (
        ["serve", "--data", str(tmp_path), "--workers", "0", "--port", "1"],
        ["worker", "--db", str(path)],
        ["keys", "list", "--db", str(path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"tenku: error: {path}: the job database is damaged"), err
        assert "restore a backup" in err and "Traceback" not in err


def test_backup_while_writing_then_restore_brings_back_every_job(tmp_path, capsys):
    path, copy = tmp_path / "data" / "tenku.db", tmp_path / "backups" / "tenku.db"
    ids = fill(path, jobs=40)
    store = JobStore(path)
    key = store.list_keys()[0]
    more, stop = [], threading.Event()

    def write() -> None:  # a server still taking jobs while the backup runs
        i = 1000
        while not stop.is_set():
            more.append(submit(store, key, i))
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert main(["backup", str(copy), "--db", str(path)]) == 0
    finally:
        stop.set()
        writer.join()
    backed = int(capsys.readouterr().out.split(": ")[-1].split()[0])
    assert backed >= len(ids)
    expected = set(ids) | set(more[: backed - len(ids)])  # the snapshot: a prefix of the writes
    store.close()
    damage_blocks(path, random.Random(3))
    with pytest.raises(StoreDamaged):
        JobStore(path)
    assert main(["restore", str(copy), "--db", str(path)]) == 0
    assert "kept as" in capsys.readouterr().out
    assert list(tmp_path.glob("data/tenku.db.replaced-*"))  # the damaged file is kept
    restored = JobStore(path)
    jobs, _ = restored.list(key.id, limit=10**6, order="asc")
    assert {j["id"] for j in jobs} == expected
    assert restored.key_for_token("nope") is None and restored.plans() == [PLAN]


def test_backup_refuses_a_damaged_source_and_restore_a_damaged_backup(tmp_path):
    path, copy = tmp_path / "tenku.db", tmp_path / "copy.db"
    fill(path, jobs=20)
    assert backup(path, copy) == 20
    good = copy.read_bytes()
    damage_truncate(path, random.Random(0))
    with pytest.raises(StoreDamaged):
        backup(path, copy)
    assert copy.read_bytes() == good  # the good backup is left as it was
    broken = tmp_path / "broken.db"
    broken.write_bytes(good[: len(good) // 2])
    with pytest.raises(StoreDamaged, match="use another"):
        restore(broken, path)
    assert restore(copy, path)[0] == 20


def test_synchronous_full_and_wal(tmp_path):
    store = JobStore(tmp_path / "tenku.db")
    with store._connect() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(tmp_path / "tenku.db") as other:  # a second process sees the tables
        assert other.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
