"""Hostile input: lone surrogates, deep nesting, crashes mid-request. Each gets a 4xx naming
the field (or a 500 in OpenAI's shape), stores and charges nothing, and never breaks the
client's keep-alive connection."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from tenku.serve import JobStore, Plan, VideoService, create_app
from tenku.serve.schemas import MAX_DEPTH
from tenku.serve.server import ServerThread
from test_serve_errors import Direct

PLAN = Plan("hostile", 10**6, 3600, 512, 120.0, 10**6)
BAD = "\ud800"  # what JSON's "\ud800" escape decodes to


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    store = JobStore(data / "tenku.db")
    store.put_plan(PLAN)
    key, token = store.create_key(PLAN.name)
    service = VideoService(store, data, model="tiny-random")
    direct = Direct(create_app(service), {"Authorization": f"Bearer {token}"})
    yield store, key, direct
    direct.close()


def usage_rows(store: JobStore) -> int:
    with store._connect() as db:
        return db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]


def raw_json(direct: Direct, url: str, body: dict | str) -> httpx.Response:
    """POST ``body`` as JSON text with every non-ASCII character escaped (``"\\ud800"``)."""
    text = body if isinstance(body, str) else json.dumps(body)  # ensure_ascii: escapes BAD
    return direct.post(url, content=text, headers={"content-type": "application/json"})


def assert_error(response: httpx.Response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return error


@pytest.mark.parametrize(
    ("url", "body", "param"),
    [
        ("/v1/videos", {"prompt": BAD}, "prompt"),
        ("/v1/videos", {"prompt": f"a red ball{BAD}"}, "prompt"),
        ("/v1/videos", {"prompt": "a", "size": BAD}, "size"),
        ("/v1/videos", {"prompt": "a", "model": BAD}, "model"),
        ("/v1/videos", {"prompt": "a", "sampler": BAD}, "sampler"),
        ("/v1/videos", {"prompt": "a", "aspect": BAD}, "aspect"),
        ("/v1/videos", {"prompt": "a", "blend": {"prompt": BAD}}, "blend.prompt"),
        ("/v1/videos", {"prompt": "a", "cards": [{"at": 0, "prompt": BAD}]}, "cards[0].prompt"),
        ("/v1/videos", {"prompt": "a", "keyframes": [{"video_id": BAD}]}, "keyframes[0].video_id"),
        (
            "/v1/videos",
            {"prompt": "a", "blend": {"prompt": "b", "video_ids": ["v", "\udfff"]}},
            "blend.video_ids[1]",
        ),
        (
            "/v1/videos",
            {"prompt": "a", "input_reference": {"image_url": f"data:image/png;base64,{BAD}"}},
            "input_reference.image_url",
        ),
        ("/v1/videos", {"prompt": "a", BAD: 1}, "body"),
        ("/v1/videos/edits", {"prompt": BAD, "video": {"id": "v"}}, "prompt"),
        ("/v1/videos/edits", {"prompt": "a", "video": {"id": BAD}}, "video.id"),
        ("/v1/videos/extensions", {"prompt": BAD, "seconds": 1, "video": {"id": "v"}}, "prompt"),
        ("/v1/videos/video_x/remix", {"prompt": BAD}, "prompt"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(setup, url, body, param):
    store, _, direct = setup
    before = usage_rows(store)
    error = assert_error(raw_json(direct, url, body), 400, param)
    assert "surrogate" in error["message"] or param == "body", error
    assert store.counts() == dict.fromkeys(store.counts(), 0)  # nothing stored...
    assert usage_rows(store) == before  # ...nor charged


def test_lone_surrogates_in_multipart_json_fields(setup):
    store, _, direct = setup
    keyframes = json.dumps([{"at": 0, "video_id": BAD}])  # ensure_ascii: the escape travels
    response = direct.post("/v1/videos", data={"prompt": "a ball", "keyframes": keyframes})
    assert_error(response, 400, "keyframes[0].video_id")
    assert sum(store.counts().values()) == 0


def test_a_stored_poisoned_job_still_lists_retrieves_and_streams(setup, tmp_path):
    """A job stored before the check existed must not break its owner's list."""
    store, key, direct = setup
    info = {"model": "m", "seconds": "1", "size": "64x64", "prompt": f"x{BAD}y"}
    info |= {"variations": 1, "task": "text-to-video", "remixed_from_video_id": None}
    job = store.submit(
        key,
        "video_poisoned",
        {"prompt": f"x{BAD}y"},
        info,
        videos=1,
        width=64,
        height=64,
        seconds=1,
    )
    lease = store.claim("w", lease_s=30)
    assert lease is not None and lease.job_id == job["id"]
    store.fail(job["id"], lease.token, "error", f"UnicodeEncodeError on {BAD}")
    try:
        listed = direct.get("/v1/videos")
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"][0]["prompt"] == "x\ufffdy"
        one = direct.get(f"/v1/videos/{job['id']}")
        assert one.status_code == 200 and one.json()["error"]["message"].endswith("\ufffd")
    finally:
        assert direct.request("DELETE", f"/v1/videos/{job['id']}").status_code == 200


def deep(levels: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deep_json_is_a_400_not_a_recursion_error(setup, levels, kind):
    store, _, direct = setup
    body = '{"prompt": "a", "keyframes": ' + deep(levels - 1, kind) + "}"
    error = assert_error(raw_json(direct, "/v1/videos", body), 400, "body")
    assert error["code"] == "too_deep"
    assert_error(raw_json(direct, "/v1/videos", deep(levels, kind)), 400, "body")
    form = direct.post("/v1/videos", data={"prompt": "a", "keyframes": deep(levels, kind)})
    assert_error(form, 400, "keyframes")
    name = "keyframes" + "[0]" * levels
    assert_error(direct.post("/v1/videos", data={"prompt": "a", name: "1"}), 400, "keyframes")
    assert sum(store.counts().values()) == 0


def test_a_thousand_hostile_requests_no_5xx_nothing_stored(setup):
    """Surrogates, deep JSON and broken multipart, mixed: every one a 4xx, no job, no charge."""
    store, _, direct = setup
    rng = random.Random(16)
    before = usage_rows(store)
    fields = ["prompt", "size", "model", "sampler", "aspect"]
    statuses: dict[int, int] = {}
    for i in range(1_000):
        kind = i % 3
        if kind == 0:  # a surrogate somewhere
            body = {"prompt": "a red ball"}
            body[rng.choice(fields)] = "".join(
                rng.choice(["a", chr(rng.randint(0xD800, 0xDFFF)), "\u00e9"]) for _ in range(5)
            )
            if all(not 0xD800 <= ord(c) <= 0xDFFF for c in "".join(body.values())):
                body["prompt"] += BAD
            response = raw_json(direct, "/v1/videos", body)
        elif kind == 1:  # deep JSON, in the body or in a form field
            text = deep(rng.randint(MAX_DEPTH + 1, 3_000), rng.choice(["list", "object"]))
            if rng.random() < 0.5:
                response = raw_json(direct, "/v1/videos", '{"prompt":"a","cards":' + text + "}")
            else:
                response = direct.post("/v1/videos", data={"prompt": "a", "cards": text})
        else:  # multipart: truncated, no boundary, or a field name of surrogate bytes
            boundary = "x" * rng.randint(1, 70)
            name = rng.choice([b"prompt", BAD.encode("utf-8", "surrogatepass")])
            part = b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\na' % (
                boundary.encode(),
                name,
            )
            whole = part + b"\r\n--%s--\r\n" % boundary.encode()
            content = rng.choice([part[: rng.randint(0, len(part))], b""])
            header = f"multipart/form-data; boundary={boundary}"
            if name != b"prompt":
                content = whole
            elif rng.random() < 0.3:
                content, header = whole, rng.choice(["multipart/form-data", "multipart"])
            response = direct.post("/v1/videos", content=content, headers={"content-type": header})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert 400 <= response.status_code < 500, (i, response.status_code, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert sum(store.counts().values()) == 0 and usage_rows(store) == before, statuses


def test_a_500_answers_in_shape_and_keeps_the_connection(tmp_path, caplog):
    """An unexpected error: a 500 in OpenAI's shape, and the next request on the same
    keep-alive connection still works (uvicorn closed it when the exception reached it)."""
    store = JobStore(tmp_path / "tenku.db")
    store.put_plan(PLAN)
    _, token = store.create_key(PLAN.name)
    service = VideoService(store, tmp_path, model="tiny-random")
    crashing = service.list

    def list_or_crash(key, **kwargs):
        if kwargs["limit"] == 13:
            raise RuntimeError("a bug")
        return crashing(key, **kwargs)

    service.list = list_or_crash  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {token}"}
    with ServerThread(create_app(service)) as url, httpx.Client(base_url=url, headers=headers) as c:
        for _ in range(4):
            bad = c.get("/v1/videos", params={"limit": 13})
            assert bad.status_code == 500
            assert bad.json()["error"] == {
                "message": "internal error",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            port = bad.extensions["network_stream"].get_extra_info("client_addr")
            good = c.get("/v1/videos")
            assert good.status_code == 200, good.text
            assert good.extensions["network_stream"].get_extra_info("client_addr") == port
    assert "a bug" in caplog.text  # logged with its traceback, not swallowed


def test_the_schema_declares_every_status_answered_with_the_error_body(setup):
    """Provoke each error status on each route: the OpenAPI document declares it, with the
    error body's schema; a 405 names the allowed methods."""
    from tenku.serve.schemas import ErrorBody

    store, _, direct = setup
    store.put_plan(Plan("tiny", 10**6, 3600, 64, 1.0, 10))
    _, tight = store.create_key("tiny")
    spec = direct.get("/openapi.json").json()
    assert "422" not in json.dumps(spec["paths"])
    nobody = {"Authorization": "Bearer wrong"}
    tight_auth = {"Authorization": f"Bearer {tight}"}
    big = {"content-length": str(10**9), "content-type": "application/json"}
    cases = [
        ("post", "/v1/videos", {"json": {"prompt": "a", "seconds": -1}}, 400),
        ("post", "/v1/videos", {"json": {"prompt": "a"}, "headers": nobody}, 401),
        ("post", "/v1/videos", {"content": b"{}", "headers": big}, 413),
        ("post", "/v1/videos", {"json": {"prompt": "a"}, "headers": tight_auth}, 429),
        ("get", "/v1/videos", {"params": {"limit": 0}}, 400),
        ("get", "/v1/videos", {"headers": nobody}, 401),
        ("get", "/v1/videos/{video_id}", {}, 404),
        ("delete", "/v1/videos/{video_id}", {}, 404),
        ("get", "/v1/videos/{video_id}/content", {"params": {"index": 99}}, 400),
        ("get", "/v1/videos/{video_id}/content", {}, 404),
        ("post", "/v1/videos/{video_id}/remix", {"json": {"prompt": "a"}}, 404),
        ("post", "/v1/videos/{video_id}/remix", {"json": {}}, 400),
        ("post", "/v1/videos/edits", {"json": {"prompt": "a"}}, 400),
        ("post", "/v1/videos/extensions", {"json": {"prompt": "a"}}, 400),
        ("get", "/v1/events", {"params": {"since": "x"}}, 400),
        ("get", "/v1/me", {"headers": nobody}, 401),
    ]
    for method, path, kwargs, status in cases:
        response = direct.request(method, path.replace("{video_id}", "video_nope"), **kwargs)
        assert response.status_code == status, (method, path, response.text)
        declared = spec["paths"][path][method]["responses"]
        assert str(status) in declared, (method, path, status)
        ref = declared[str(status)]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorBody"
        ErrorBody.model_validate(response.json())
    assert "Retry-After" in spec["paths"]["/v1/videos"]["post"]["responses"]["429"]["headers"]
    wrong = direct.put("/v1/videos")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"
    assert direct.request("PATCH", "/v1/videos/v").headers["allow"] == "DELETE, GET"


def test_429s_name_the_limit_and_say_when_to_retry(setup):
    store, _, direct = setup
    store.put_plan(Plan("two", 2, 3600, 512, 120.0, 10))
    store.put_plan(Plan("one-at-once", 100, 3600, 512, 120.0, 1))
    _, two = store.create_key("two")
    _, once = store.create_key("one-at-once")
    small = {"prompt": "a ball", "size": "64x64", "seconds": 1}
    made = []
    try:
        for _ in range(2):
            made.append(
                direct.post("/v1/videos", json=small, headers={"Authorization": f"Bearer {two}"})
            )
        over = direct.post("/v1/videos", json=small, headers={"Authorization": f"Bearer {two}"})
        error = assert_error(over, 429, "videos_per_period")
        assert error["code"] == "quota_exceeded" and error["message"].startswith(
            "videos_per_period"
        )
        assert 3590 <= int(over.headers["retry-after"]) <= 3600
        never = direct.post(
            "/v1/videos", json=small | {"variations": 3}, headers={"Authorization": f"Bearer {two}"}
        )
        assert_error(never, 429, "videos_per_period")
        assert "retry-after" not in never.headers  # 3 videos never fit a plan of 2
        made.append(
            direct.post("/v1/videos", json=small, headers={"Authorization": f"Bearer {once}"})
        )
        busy = direct.post("/v1/videos", json=small, headers={"Authorization": f"Bearer {once}"})
        error = assert_error(busy, 429, "max_concurrent")
        assert error["code"] == "concurrency_limit_exceeded" and busy.headers["retry-after"] == "5"
        big = direct.post(
            "/v1/videos",
            json=small | {"size": "1024x1024"},
            headers={"Authorization": f"Bearer {once}"},
        )
        assert_error(big, 429, "size")
    finally:
        for response in made:
            store.delete(store.get(None, response.json()["id"])["key_id"], response.json()["id"])


def test_the_documented_body_limit_is_the_enforced_one(setup):
    from pathlib import Path

    from tenku.serve.app import MAX_BODY_BYTES

    _, _, direct = setup
    docs = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    assert f"413 a request body over {MAX_BODY_BYTES:,} bytes" in docs
    headers = {"content-type": "application/json"}
    at = direct.post("/v1/videos", content=b" " * MAX_BODY_BYTES, headers=headers)
    assert at.status_code == 400  # at the limit: read (and not JSON)
    over = direct.post("/v1/videos", content=b" " * (MAX_BODY_BYTES + 1), headers=headers)
    assert_error(over, 413, "input_reference")
    assert f"{MAX_BODY_BYTES:,} bytes" in over.json()["error"]["message"]


def test_the_schema_separates_json_and_form_bodies(setup):
    """Multipart bodies carry files and no nulls; edits and extensions need their source;
    non-JSON responses declare their media types; Allow names the literal path's methods."""
    _, _, direct = setup
    spec = direct.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    form = schemas["CreateVideoBodyForm"]["properties"]
    assert form["input_reference"]["format"] == "binary"
    assert all("anyOf" not in p or {"type": "null"} not in p["anyOf"] for p in form.values())
    for name in ("EditBody", "ExtendBody", "EditBodyForm", "ExtendBodyForm"):
        assert "video" in schemas[name]["required"], name
    assert "video" not in schemas["RemixBody"]["properties"]
    assert schemas["ExtendBody"]["properties"]["seconds"]["exclusiveMinimum"] == 0
    events = spec["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    content = spec["paths"]["/v1/videos/{video_id}/content"]["get"]["responses"]["200"]
    assert set(content["content"]) == {"video/mp4", "image/webp", "image/jpeg"}
    assert direct.request("OPTIONS", "/v1/videos/edits").headers["allow"] == "POST"
    remix = direct.post("/v1/videos/video_x/remix", json={"prompt": "a", "video": {"id": "v"}})
    assert_error(remix, 400, "video")  # the source is in the path: no body field for it
    extend = direct.post("/v1/videos/extensions", json={"prompt": "a", "seconds": 0})
    assert_error(extend, 400, "seconds")
