"""Durable jobs: atomic claims, leases that run out, and a worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import httpx
import numpy as np
import openai
import pytest

from tenku.io import read_video
from tenku.pipelines import TenkuPipeline
from tenku.pipelines.pipeline import GeneratedVideo
from tenku.pipelines.request import GenerationRequest
from tenku.safety.invisible import detect, payload_from_id
from tenku.safety.verify import verify_video
from tenku.serve import (
    JobStore,
    Plan,
    ServerThread,
    VideoService,
    Worker,
    create_app,
    free_port,
)
from tenku.serve.remote import RemoteQueue
from tenku.serve.schemas import ApiError
from tenku.serve.worker import load_generator, write_outputs
from test_serve_support import PLAN, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
ROOMY = Plan("roomy", 10**6, 3600, 256, 8.0, 10**6)  # no quota in the way of 200 creates
REQUEST = {"prompt": "a ball", "seconds": 0.5, "width": 64, "height": 64, "steps": 2}
INFO = {
    "model": "m",
    "seconds": "0.5",
    "size": "64x64",
    "prompt": "a ball",
    "variations": 1,
    "task": "text-to-video",
}


def queue(store: JobStore, n: int) -> list[str]:
    store.put_plan(PLAN)
    key, _ = store.create_key(PLAN.name)
    ids = [f"video_{i:04d}" for i in range(n)]
    for job_id in ids:
        store.submit(key, job_id, REQUEST, INFO, videos=1, width=64, height=64, seconds=0.5)
    return ids


def test_concurrent_claims_take_each_job_exactly_once(tmp_path):
    ids = queue(JobStore(tmp_path / "jobs.db"), 40)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(name: str) -> None:
        store = JobStore(tmp_path / "jobs.db")  # its own connections, as another process has
        while (lease := store.claim(name, lease_s=60)) is not None:
            with lock:
                claimed.append(lease.job_id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids


def test_a_lost_lease_is_taken_over_and_the_old_holder_locked_out(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    (job_id,) = queue(store, 1)
    first = store.claim("a", lease_s=0.2)
    assert first is not None and store.claim("b", lease_s=0.2) is None  # still leased
    assert store.heartbeat(job_id, first.token, lease_s=0.2, progress=40)
    assert store.get(None, job_id)["progress"] == 40
    time.sleep(0.3)
    second = store.claim("b", lease_s=30)
    assert second is not None and second.job_id == job_id and second.attempt == 2
    assert not store.heartbeat(job_id, first.token, lease_s=30)
    assert not store.complete(job_id, first.token, {"dir": "x", "videos": 1})
    assert store.complete(job_id, second.token, {"dir": "y", "videos": 1})
    assert not store.complete(job_id, second.token, {"dir": "z", "videos": 1})  # only once
    job = store.get(None, job_id)
    assert job["status"] == "completed" and job["result"]["dir"] == "y"


def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    (job_id,) = queue(store, 1)
    for _ in range(2):
        assert store.claim("dies", lease_s=0.01, max_attempts=2) is not None
        time.sleep(0.02)
    assert store.claim("next", lease_s=1, max_attempts=2) is None
    job = store.get(None, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"


def test_a_deleted_job_stops_its_worker_and_leaves_no_files(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    (job_id,) = queue(store, 1)
    key = store.list_keys()[0]

    class Deleting:
        name = "deleting"

        def generate(self, request, *, progress=False, callback=None):
            store.delete(key.id, job_id)  # the user deletes the job while it runs
            time.sleep(0.1)
            return TenkuPipeline.generate(pipe, request, callback=callback)

    pipe = TenkuPipeline.from_pretrained(tiny_model(tmp_path / "model"))
    assert Worker(store, tmp_path, Deleting(), lease_s=0.2).run_once()
    assert store.get(None, job_id) is None and not (tmp_path / "videos" / job_id).exists()


def test_sigkill_mid_job_loses_nothing(tmp_path):
    """`tenku serve --workers 0` and `tenku worker` as processes; the worker is SIGKILLed."""
    model = tiny_model(tmp_path / "model")
    data = tmp_path / "data"
    store = JobStore(data / "tenku.db")
    store.put_plan(PLAN)
    _, token = store.create_key(PLAN.name)
    port = free_port()
    tenku = [sys.executable, "-m", "tenku"]
    common = ["--data", str(data), "--model", str(model)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    api = subprocess.Popen(
        [*tenku, "serve", "--workers", "0", "--port", str(port), *common],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = subprocess.Popen(
        [*tenku, "worker", *common, "--lease", "1.5", "--poll", "0.05", "--name", "victim"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=8)
        video = c.videos.create(
            prompt="a ball", seconds="4", size="64x64", extra_body={"steps": 100}
        )  # the client retries until the API process is up
        deadline = time.monotonic() + 60
        while (job := store.get(None, video.id))["progress"] == 0:
            assert victim.poll() is None, victim.stderr.read()
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
        assert job["status"] == "in_progress" and job["lease"] == "victim:1"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        assert c.videos.retrieve(video.id).status == "in_progress"  # nothing finished it
        rescuer = Worker(store, data, load_generator(str(model)), name="rescuer", poll_s=0.05)
        thread = threading.Thread(target=rescuer.run, kwargs={"max_jobs": 1})
        thread.start()
        done = c.videos.poll(video.id, poll_interval_ms=100)
        thread.join(timeout=60)
        job = store.get(None, video.id)
        assert done.status == "completed" and done.progress == 100
        assert job["lease"] == "rescuer:2" and job["attempts"] == 2
        assert job["result"]["dir"] == f"videos/{video.id}/2"
        path = tmp_path / "out.mp4"
        c.videos.download_content(video.id).write_to_file(path)
        assert read_video(path).frames.shape == (33, 64, 64, 3)
        served = sorted(p.name for p in (data / job["result"]["dir"]).iterdir())
        assert served == ["original-0.mkv", "spritesheet-0.jpg", "thumbnail-0.webp", "video-0.mp4"]
        assert [v.id for v in c.videos.list()] == [video.id]  # one job, not two
    finally:
        for process in (victim, api):
            process.kill()
            process.wait()


def all_jobs(store: JobStore, key_id: str) -> list[dict]:
    """Every job of a key, oldest first (the API's own list, page by page)."""
    jobs, after, more = [], None, True
    while more:
        page, more = store.list(key_id, after=after, limit=100, order="asc")
        jobs += page
        after = page[-1]["id"] if page else None
    return jobs


@pytest.mark.slow
def test_sigkill_of_the_server_during_200_creates_loses_no_acknowledged_job(tmp_path):
    """`tenku serve --workers 0` is SIGKILLed at 4 random moments while two clients send 200
    creates, and restarted on the same database each time; then a `tenku worker` drains the
    queue. Every create that got a 200 is stored and completed exactly once (one attempt, one
    folder of files); a create cut off by the kill may or may not be there, never twice."""
    model = tiny_model(tmp_path / "model")
    data = tmp_path / "data"
    store = JobStore(data / "tenku.db")
    store.put_plan(ROOMY)
    key, token = store.create_key(ROOMY.name)
    port = free_port()
    tenku = [sys.executable, "-m", "tenku"]
    common = ["--data", str(data), "--model", str(model)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []  # ids answered 200
    cut = [0]  # creates that got no answer (the server died under them)
    refused: list[str] = []  # any other answer (there must be none)
    lock = threading.Lock()

    def start() -> subprocess.Popen:
        server = subprocess.Popen(
            [*tenku, "serve", "--workers", "0", "--port", str(port), *common],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "no restart"
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.05)

    def creates(n: int, first_seed: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as h:
            for i in range(n):
                body = {
                    "prompt": "a red ball",
                    "seconds": 0,
                    "size": "64x64",
                    "steps": 2,
                    "seed": first_seed + i,
                }
                while True:
                    try:
                        response = h.post("/v1/videos", json=body, timeout=30)
                    except httpx.TransportError:  # died mid-request, or not back yet
                        if time.monotonic() > deadline:
                            return
                        with lock:
                            cut[0] += 1
                        time.sleep(0.05)
                        continue  # the next create goes on once the server is back
                    with lock:
                        if response.status_code == 200:
                            acked.append(response.json()["id"])
                        else:
                            refused.append(f"{response.status_code} {response.text}")
                    break

    rng = np.random.default_rng(16)
    kills = sorted(rng.choice(np.arange(10, 190), 4, replace=False))  # after this many 200s
    server = start()
    deadline = time.monotonic() + 120
    clients = [threading.Thread(target=creates, args=(100, s), daemon=True) for s in (0, 100)]
    try:
        for t in clients:
            t.start()
        for at in kills:
            while len(acked) < at and not refused:
                assert any(t.is_alive() for t in clients) and time.monotonic() < deadline
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.05))  # a random moment, most often mid-request
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
            server = start()  # the same --data: the same database
        for t in clients:
            t.join(timeout=120)
        assert not refused and len(acked) == 200 and cut[0] >= 1, (refused[:3], len(acked))
        worker = subprocess.Popen(
            [*tenku, "worker", *common, "--poll", "0.05", "--name", "drain"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 240
            while any(j["status"] != "completed" for j in all_jobs(store, key.id)):
                assert worker.poll() is None and time.monotonic() < deadline, "not drained"
                time.sleep(0.2)
        finally:
            worker.kill()
            worker.wait()
    finally:
        server.kill()
        server.wait()
    jobs = {j["id"]: j for j in all_jobs(store, key.id)}
    assert set(acked) <= set(jobs) and len(jobs) <= len(acked) + 2 * len(kills)
    for job in jobs.values():  # completed once: one claim, one attempt's folder, one set of files
        assert job["attempts"] == 1 and job["lease"] == "drain:1", job
        assert job["result"] == {"dir": f"videos/{job['id']}/1", "videos": 1}
        assert [p.name for p in (data / "videos" / job["id"]).iterdir()] == ["1"]
        files = sorted(p.name for p in (data / job["result"]["dir"]).iterdir())
        assert files == ["original-0.mkv", "spritesheet-0.jpg", "thumbnail-0.webp", "video-0.mp4"]


def test_expired_videos_lose_their_files(tmp_path):
    store = JobStore(tmp_path / "jobs.db", retention_s=0)
    (job_id,) = queue(store, 1)
    worker = Worker(store, tmp_path, load_generator(str(tiny_model(tmp_path / "model"))))
    assert worker.run_once()
    folder = tmp_path / store.get(None, job_id)["result"]["dir"]
    assert (folder / "video-0.mp4").is_file()
    time.sleep(1.1)  # expires_at is in whole seconds
    assert worker.purge_expired() == 1 and not folder.exists()
    service = VideoService(store, tmp_path, model="m")
    key = store.list_keys()[0]
    with pytest.raises(ApiError) as error:
        service.content(key, job_id, "video", 0)
    assert error.value.status == 404 and "expired" in error.value.message
    with pytest.raises(ApiError) as error:
        service.remix(key, job_id, {"prompt": "again"})
    assert "expired" in error.value.message


def test_a_remote_worker_claims_and_uploads_over_http(tmp_path):
    """`tenku worker --server`: sources downloaded, results uploaded, the server completes."""
    import io

    import httpx
    from PIL import Image

    data, cache = tmp_path / "data", tmp_path / "cache"
    store = JobStore(data / "tenku.db")
    store.put_plan(PLAN)
    _, token = store.create_key(PLAN.name)
    service = VideoService(store, data, model="tiny-random")
    with ServerThread(create_app(service, worker_token="s3cret")) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        image = io.BytesIO()
        Image.new("RGB", (64, 64), (0, 90, 200)).save(image, format="PNG")
        video = c.videos.create(
            prompt="a blue square",
            seconds="0.5",
            size="64x64",
            input_reference=("first.png", image.getvalue(), "image/png"),
            extra_body={"steps": 2},
        )
        with pytest.raises(RuntimeError, match="401"):
            RemoteQueue(url, "wrong", cache).claim("intruder", lease_s=5)
        escape = httpx.get(
            f"{url}/internal/v1/files",
            params={"path": "uploads/../tenku.db"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert escape.status_code == 400 and escape.json()["error"]["param"] == "path"
        generator = load_generator(str(tiny_model(tmp_path / "model")))
        worker = Worker(RemoteQueue(url, "s3cret", cache), cache, generator, name="remote")
        assert worker.run_once() and not worker.run_once()  # one job, then an empty queue
        job = store.get(None, video.id)
        assert c.videos.retrieve(video.id).status == "completed" and job["lease"] == "remote:1"
        assert (cache / f"uploads/{video.id}/0.png").is_file()  # the source came over HTTP
        assert not (cache / job["result"]["dir"]).exists()  # uploaded, then dropped here
        assert (data / job["result"]["dir"] / "original-0.mkv").is_file()  # the clean original
        c.videos.download_content(video.id).write_to_file(tmp_path / "v.mp4")
        assert read_video(tmp_path / "v.mp4").frames.shape == (5, 64, 64, 3)


def test_a_plan_without_watermark_gets_no_visible_mark_and_keeps_provenance(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    bare = replace(PLAN, name="bare", watermark=False)
    for plan in (PLAN, bare):
        store.put_plan(plan)
        key, _ = store.create_key(plan.name)
        store.submit(
            key, f"video_{plan.name}", REQUEST, INFO, videos=1, width=64, height=64, seconds=0.5
        )
    leases = {lease.job_id: lease for lease in iter(lambda: store.claim("w", lease_s=60), None)}
    assert leases[f"video_{PLAN.name}"].watermark and not leases["video_bare"].watermark
    assert not store.plan("bare").watermark and store.plan(PLAN.name).watermark

    frames = np.full((17, 128, 128, 3), 128, np.uint8)
    request = GenerationRequest("a grey room", seconds=2)
    video = GeneratedVideo(frames, 8.0, request, "m")
    outputs = {}
    for mark in (True, False):
        out = tmp_path / f"mark-{mark}"
        write_outputs([video], out, video_id="video_x", watermark=mark)
        written = read_video(out / "video-0.mp4").frames
        assert detect(written).payload == payload_from_id("video_x")  # the invisible mark stays
        outputs[mark] = written.astype(int)
        assert verify_video(out / "video-0.mp4").manifest.valid  # C2PA stays
    assert np.abs(outputs[False] - 128).max() < 12  # only the faint invisible mark
    assert np.abs(outputs[True] - 128).max() > 40  # the visible mark's letters
