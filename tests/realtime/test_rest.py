"""The REST API end to end over HTTP, against a real server (embedded SecantusDB, auth, Piper):
voice profiles from upload to ``ready``, long-text synthesis to a downloadable file, usage,
scopes, refusals that leave nothing behind, tenant isolation on every endpoint, and the OpenAPI
document and its page."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile

from realtime import rest, voice_form
from realtime.appkeys import VOICE_SERVICE
from realtime.client import StreamClient
from realtime.openapi import openapi_document
from session.db import Stores, open_database
from session.files import TenantFiles
from session.ids import TenantId
from session.synthesis import PlannedUnit, plan_units
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread
from tests.session.test_voice_service import reference_speech

CONSENT = {
    "consent_owner_name": "Ada Lovelace",
    "consent_statement": "I, Ada Lovelace, agree that my voice is cloned for this product.",
    "consent_accepted": "true",
    "consent_purpose": "audiobook narration",
    "consent_expires_at": "2099-12-31",
}
STORY = (
    "Chapter one. The lighthouse keeper climbed the stairs every evening at seven. "
    "He counted the steps, one hundred and twelve of them, and lit the lamp. "
    "Ships passed in the dark, and none of them ever knew his name. "
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("rest"))
    yield thread.start()
    thread.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return reference_speech(tmp_path_factory.mktemp("piper"))


@pytest.fixture
async def stores(server: RunningServer) -> AsyncIterator[Stores]:
    db = open_database(server.mongo_url)
    yield Stores.over(db)
    db.client.close()


class Api:
    """One tenant's HTTP client."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession, key: str,
                 tenant: TenantId) -> None:
        self.server, self.http, self.key, self.tenant = server, http, key, tenant

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.server.url + path,
                                     headers={**self._headers(), **(headers or {})},
                                     **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def create_voice(self, files: list[tuple[str, bytes]], name: str = "Narrator",
                           **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("name", name)
        for key, value in {**CONSENT, **fields}.items():
            form.add_field(key, value)
        for filename, data in files:
            form.add_field("file", data, filename=filename, content_type="application/octet-stream")
        return await self.call("POST", "/v1/voices", data=form)

    async def wait_job(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            status, job = await self.call("GET", f"/v1/jobs/{job_id}")
            assert status == 200, job
            if job["status"] in ("succeeded", "failed"):
                return dict(job)
            assert loop.time() < deadline, f"job {job_id} still {job['status']}"
            await asyncio.sleep(0.1)

    async def ready_voice(self, speech: bytes, name: str = "Narrator") -> str:
        status, body = await self.create_voice([("take.wav", speech)], name=name)
        assert status == 202, body
        job = await self.wait_job(body["job"]["job_id"])
        assert job["status"] == "succeeded", job
        return str(body["voice"]["voice_id"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def new_api(server: RunningServer, stores: Stores, http: aiohttp.ClientSession) -> Any:
    async def make(name: str, tier: str = "pro", scopes: tuple[str, ...] | None = None) -> Api:
        tenant = await stores.tenants.create(name, tier)
        key, _ = await (stores.api_keys.create(tenant.tenant_id) if scopes is None else
                        stores.api_keys.create(tenant.tenant_id, scopes=list(scopes)))
        return Api(server, http, key, tenant.tenant_id)

    return make


async def nothing_stored_for(stores: Stores, server: RunningServer, tenant: TenantId) -> None:
    assert await stores.voices.list(tenant) == []
    assert await stores.jobs.list(tenant) == []
    db = stores.consents._c.database
    assert await db["consents"].count_documents({"tenant": tenant}) == 0
    assert not (server.data_dir / "tenants" / tenant).exists()


# -- voices -----------------------------------------------------------------------------------------


async def test_a_voice_goes_from_upload_to_ready_and_speaks(
        new_api: Any, speech: bytes, server: RunningServer) -> None:
    api: Api = await new_api("acme")
    audio, rate = soundfile.read(io.BytesIO(speech), dtype="float32")
    flac = io.BytesIO()  # the same speech as a 44.1 kHz stereo FLAC: any format, any rate
    stereo = np.stack([audio, audio], axis=1)
    soundfile.write(flac, np.repeat(stereo, 2, axis=0), rate * 2, format="FLAC")
    status, body = await api.create_voice([("one.wav", speech), ("two.flac", flac.getvalue())],
                                          transcript="the quick brown fox")
    assert status == 202, body
    voice, job = body["voice"], body["job"]
    assert (voice["status"], voice["kind"], voice["reference_files"]) == ("pending", "profile", 2)
    assert (job["kind"], job["status"], job["subject"]) == ("clone", "queued", voice["voice_id"])

    done = await api.wait_job(job["job_id"])
    assert (done["status"], done["progress"], done["error"]) == ("succeeded", 1.0, None)
    assert done["result"]["base_voice"] == "piper:joe"
    status, detail = await api.call("GET", f"/v1/voices/{voice['voice_id']}")
    assert status == 200
    assert (detail["status"], detail["base_voice"]) == ("ready", "piper:joe")
    assert detail["consent"]["owner_name"] == "Ada Lovelace"
    assert detail["consent"]["expires_at"] == "2100-01-01T00:00:00Z"  # through 2099-12-31
    assert detail["job"]["job_id"] == job["job_id"]
    folder = server.data_dir / "tenants" / api.tenant / "voices" / voice["voice_id"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "reference-0.txt", "reference-0.wav", "reference-1.wav"]

    status, listing = await api.call("GET", "/v1/voices")
    assert status == 200
    kinds = {(v["voice_id"], v["kind"]) for v in listing["voices"]}
    assert ("piper:joe", "stock") in kinds and (voice["voice_id"], "profile") in kinds

    text = "Hello from my own voice profile."
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": text, "voice": voice["voice_id"]})
    assert status == 202, body
    result = (await api.wait_job(body["job"]["job_id"]))["result"]
    assert result["voice"] == voice["voice_id"]


async def test_upload_refusals_name_the_problem_and_store_nothing(
        new_api: Any, speech: bytes, stores: Stores, server: RunningServer) -> None:
    api: Api = await new_api("picky")
    audio, rate = soundfile.read(io.BytesIO(speech), dtype="float32")
    short = io.BytesIO()
    soundfile.write(short, audio[: 3 * rate], rate, format="WAV")
    cases = [
        ({"files": [("a.wav", speech)], "consent_accepted": "false"}, 422, "consent_required"),
        ({"files": [("a.wav", speech)], "consent_owner_name": ""}, 422, "consent_required"),
        ({"files": [("a.wav", speech)], "consent_expires_at": "next year"}, 422,
         "consent_required"),
        ({"files": []}, 400, "bad_request"),
        ({"files": [("a.wav", speech)], "colour": "blue"}, 400, "bad_request"),
        ({"files": [("a.wav", short.getvalue())]}, 422, "too_short"),
        ({"files": [("a.wav", speech), ("b.mp3", b"ID3 but not really audio")]}, 422,
         "undecodable_audio"),
    ]
    for spec, expected_status, code in cases:
        files = spec.pop("files")
        status, body = await api.create_voice(files, **spec)  # type: ignore[arg-type]
        assert (status, body["error"]["code"]) == (expected_status, code), (spec, body)
        assert body["error"]["message"]
    for content_type, data in (("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
                               ("application/json", b"{}")):
        status, body = await api.call("POST", "/v1/voices", data=data,
                                      headers={"Content-Type": content_type})
        assert (status, body["error"]["code"]) == (400, "bad_request"), body
    await nothing_stored_for(stores, server, api.tenant)


async def test_an_upload_over_the_size_limit_is_refused_while_it_streams(
        new_api: Any, stores: Stores, server: RunningServer) -> None:
    api: Api = await new_api("bulky")
    limit = server.app[VOICE_SERVICE].checks.max_upload_bytes
    big = b"RIFF" + bytes(limit + voice_form.FORM_OVERHEAD_BYTES)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only streaming can tell
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for start in range(0, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]
        yield b"\r\n--xyz--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    try:
        status, body = await api.call("POST", "/v1/voices", data=chunks(), headers=headers)
        assert (status, body["error"]["code"]) == (413, "file_too_large")
    except aiohttp.ClientError:
        pass  # the server may close the connection before the client has sent everything
    status, body = await api.create_voice([("a.wav", big)])  # Content-Length: refused at once
    assert (status, body["error"]["code"]) == (413, "file_too_large")
    await nothing_stored_for(stores, server, api.tenant)


async def test_the_tier_profile_limit_answers_402(new_api: Any, speech: bytes) -> None:
    api: Api = await new_api("smallco", tier="free")
    status, _ = await api.create_voice([("a.wav", speech)])
    assert status == 202
    status, body = await api.create_voice([("a.wav", speech)], name="Second")
    assert (status, body["error"]["code"]) == (402, "profile_limit")


async def test_revoke_then_delete(new_api: Any, speech: bytes, server: RunningServer) -> None:
    api: Api = await new_api("revoker")
    voice_id = await api.ready_voice(speech)
    status, revoked = await api.call("POST", f"/v1/voices/{voice_id}/revoke")
    assert (status, revoked["status"]) == (200, "revoked")
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": "Still there?", "voice": voice_id})
    assert (status, body["error"]["code"]) == (409, "voice_unavailable")
    status, detail = await api.call("GET", f"/v1/voices/{voice_id}")
    assert detail["consent"]["revoked_at"] is not None
    status, _ = await api.call("DELETE", f"/v1/voices/{voice_id}")
    assert status == 204
    status, body = await api.call("GET", f"/v1/voices/{voice_id}")
    assert (status, body["error"]["code"]) == (404, "unknown_voice")
    assert not (server.data_dir / "tenants" / api.tenant / "voices" / voice_id).exists()
    status, body = await api.call("DELETE", f"/v1/voices/{voice_id}")
    assert status == 404


async def test_revoking_a_voice_ends_the_live_streams_using_it(
        new_api: Any, speech: bytes, server: RunningServer, stores: Stores) -> None:
    api: Api = await new_api("live-revoker")
    voice_id = await api.ready_voice(speech)
    text = " ".join(["This long passage is still being spoken when consent is revoked."] * 8)
    async with await StreamClient.connect(server.ws_url, api.key, voice=voice_id) as client:
        await client.send_text("live", text)
        await client.close_context("live")
        assert (await client.wait_audio("live", timeout_s=30)).frames
        status, _ = await api.call("POST", f"/v1/voices/{voice_id}/revoke")
        assert status == 200
        record = await client.wait_done("live", timeout_s=10)
        assert record.done is not None and record.done.reason == "cancelled"
        assert [e.code for e in record.errors] == ["voice_unavailable"]
        await client.send_text("again", "Once more.", voice=voice_id)  # no new context either
        for _ in range(500):
            if client.context("again").errors:
                break
            await asyncio.sleep(0.01)
        assert client.context("again").errors[0].code == "voice_unavailable"
    actions = {e.action.value for e in await stores.audit.list(api.tenant, subject=voice_id)}
    assert {"voice.create", "voice.use", "voice.revoke"} <= actions


# -- synthesis ---------------------------------------------------------------------------------------


async def test_long_text_becomes_a_downloadable_file_and_is_metered(new_api: Any) -> None:
    api: Api = await new_api("author")
    text = STORY * 4
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": text, "voice": "piper:joe"})
    assert status == 202, body
    job = await api.wait_job(body["job"]["job_id"])
    assert (job["status"], job["kind"], job["progress"]) == ("succeeded", "synthesize", 1.0)
    result = job["result"]
    assert result["audio_url"] == f"/v1/jobs/{job['job_id']}/audio"
    assert (result["format"], result["characters"], result["skipped_units"]) == ("wav", len(text),
                                                                                  0)
    async with api.http.get(api.server.url + result["audio_url"],
                            headers=api._headers()) as response:
        assert response.status == 200
        assert response.content_type == "audio/wav"
        assert "attachment" in response.headers["Content-Disposition"]
        data = await response.read()
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert rate == result["sample_rate_hz"]
    assert len(audio) / rate == pytest.approx(result["duration_s"], abs=0.01)
    assert result["duration_s"] > 30
    hypothesis = recognize(audio[: 12 * rate], rate)
    assert word_overlap("chapter one the lighthouse keeper climbed the stairs every evening",
                        hypothesis) >= 0.5, hypothesis
    status, usage = await api.call("GET", "/v1/usage")
    assert status == 200
    assert usage["month"]["characters"] == len(text)
    assert usage["month"]["audio_s"] == pytest.approx(result["duration_s"], abs=0.01)
    assert usage["remaining"]["characters"] == 500_000 - len(text)


@pytest.mark.parametrize("audio_format", ["flac", "mp3", "ogg"])
async def test_other_formats(new_api: Any, audio_format: str) -> None:
    api: Api = await new_api(f"fmt-{audio_format}")
    status, body = await api.call("POST", "/v1/synthesize", json={
        "text": "One more sentence, in another format.", "voice": "joe",
        "format": audio_format, "speed": 1.2})
    assert status == 202, body
    result = (await api.wait_job(body["job"]["job_id"]))["result"]
    status, data = await api.call("GET", result["audio_url"])
    assert status == 200
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert len(audio) / rate == pytest.approx(result["duration_s"], abs=0.1)


async def test_synthesis_refusals(new_api: Any) -> None:
    api: Api = await new_api("refused", tier="free")  # 10,000 characters a month
    cases = [
        ({"text": "", "voice": "piper:joe"}, 400, "bad_request"),
        ({"text": "Hi.", "voice": "piper:nobody"}, 404, "unknown_voice"),
        ({"text": "Hi.", "voice": "v_0123456789abcdef"}, 404, "unknown_voice"),
        ({"text": "Hi.", "voice": "piper:joe", "format": "aiff"}, 400, "bad_format"),
        ({"text": "Hi.", "voice": "piper:joe", "speed": 9}, 400, "bad_request"),
        ({"text": "Hi.", "voice": "piper:joe", "volume": 11}, 400, "bad_request"),
        ({"text": "x" * 10_001, "voice": "piper:joe"}, 402, "quota_exceeded"),
        ({"text": "x" * 200_001, "voice": "piper:joe"}, 413, "text_too_long"),
    ]
    for request, expected_status, code in cases:
        status, body = await api.call("POST", "/v1/synthesize", json=request)
        assert (status, body["error"]["code"]) == (expected_status, code), (request, body)
    status, body = await api.call("POST", "/v1/synthesize", data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert await api.call("GET", "/v1/jobs") == (200, {"jobs": []})


async def test_a_running_jobs_audio_is_not_there_yet(new_api: Any) -> None:
    api: Api = await new_api("impatient")
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": STORY * 3, "voice": "piper:joe"})
    job_id = body["job"]["job_id"]
    status, early = await api.call("GET", f"/v1/jobs/{job_id}/audio")
    assert (status, early["error"]["code"]) == (409, "no_audio")
    await api.wait_job(job_id)
    status, _ = await api.call("GET", f"/v1/jobs/{job_id}/audio")
    assert status == 200


# -- usage, auth and scopes --------------------------------------------------------------------------


async def test_usage_reports_the_tier_and_what_remains(new_api: Any) -> None:
    api: Api = await new_api("counter", tier="free")
    status, usage = await api.call("GET", "/v1/usage")
    assert status == 200
    assert usage["tenant"] == api.tenant
    assert usage["tier"] == {"name": "free", "characters_per_month": 10_000, "max_profiles": 1,
                             "max_concurrent_streams": 1, "output_formats": None}
    assert re.fullmatch(r"\d{4}-\d{2}", usage["month"]["month"])
    assert (usage["month"]["characters"], usage["profiles"], usage["streams"]) == (0, 0, 0)
    assert usage["remaining"] == {"characters": 10_000, "profiles": 1, "streams": 1}
    assert usage["history"] == []


async def test_credentials_and_scopes(new_api: Any, server: RunningServer,
                                      http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/v1/voices") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
    speaker: Api = await new_api("speaker-only", scopes=("tts",))
    for method, path in (("GET", "/v1/voices"), ("POST", "/v1/voices"), ("GET", "/v1/jobs"),
                         ("DELETE", "/v1/voices/v_0123456789abcdef")):
        status, body = await speaker.call(method, path)
        assert (status, body["error"]["code"]) == (403, "forbidden"), (method, path)
    assert (await speaker.call("GET", "/v1/usage"))[0] == 200
    reader: Api = await new_api("reader-only", scopes=("voices:read",))
    status, body = await reader.call("POST", "/v1/synthesize",
                                     json={"text": "Hi.", "voice": "piper:joe"})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (await reader.call("GET", "/v1/voices"))[0] == 200


# -- isolation ------------------------------------------------------------------------------------


async def test_another_tenant_sees_none_of_it(new_api: Any, speech: bytes,
                                              server: RunningServer) -> None:
    owner: Api = await new_api("owner")
    intruder: Api = await new_api("intruder")
    voice_id = await owner.ready_voice(speech)
    status, body = await owner.call("POST", "/v1/synthesize",
                                    json={"text": "Private words.", "voice": voice_id})
    job_id = body["job"]["job_id"]
    assert (await owner.wait_job(job_id))["status"] == "succeeded"
    _, jobs = await owner.call("GET", "/v1/jobs")
    clone_job = next(j["job_id"] for j in jobs["jobs"] if j["kind"] == "clone")

    _, listing = await intruder.call("GET", "/v1/voices")
    assert all(v["kind"] == "stock" for v in listing["voices"])
    assert await intruder.call("GET", "/v1/jobs") == (200, {"jobs": []})
    attempts = [
        ("GET", f"/v1/voices/{voice_id}", None, "unknown_voice"),
        ("DELETE", f"/v1/voices/{voice_id}", None, "unknown_voice"),
        ("POST", f"/v1/voices/{voice_id}/revoke", None, "unknown_voice"),
        ("GET", f"/v1/jobs/{job_id}", None, "unknown_job"),
        ("GET", f"/v1/jobs/{clone_job}", None, "unknown_job"),
        ("GET", f"/v1/jobs/{job_id}/audio", None, "unknown_job"),
        ("POST", "/v1/synthesize", {"text": "Mine now.", "voice": voice_id}, "unknown_voice"),
    ]
    for method, path, payload, code in attempts:
        status, body = await intruder.call(method, path, json=payload)
        assert (status, body["error"]["code"]) == (404, code), (method, path, body)
    _, usage = await intruder.call("GET", "/v1/usage")
    assert (usage["tenant"], usage["month"]["characters"], usage["profiles"]) == (
        intruder.tenant, 0, 0)

    # the owner's things are untouched
    status, detail = await owner.call("GET", f"/v1/voices/{voice_id}")
    assert (status, detail["status"]) == (200, "ready")
    assert (await owner.call("GET", f"/v1/jobs/{job_id}/audio"))[0] == 200
    _, usage = await owner.call("GET", "/v1/usage")
    assert usage["month"]["characters"] == len("Private words.") and usage["profiles"] == 1
    assert (server.data_dir / "tenants" / owner.tenant / "voices" / voice_id).is_dir()


async def test_malformed_ids_are_unknown(new_api: Any) -> None:
    api: Api = await new_api("prober")
    for path in ("/v1/voices/..%2F..%2Fetc", "/v1/voices/v_XYZ", "/v1/jobs/job_../audio",
                 "/v1/jobs/nothing"):
        status, body = await api.call("GET", path)
        assert status == 404, path
        assert isinstance(body, dict) and body["error"]["code"] in ("unknown_voice",
                                                                    "unknown_job")


# -- the API description -------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


async def test_the_openapi_document_describes_every_route(server: RunningServer,
                                                          http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/openapi.json") as response:  # no credentials needed
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert {"title", "version"} <= set(document["info"])
    paths = document["paths"]
    registered = {(r.method.lower(), r.resource.canonical) for r in server.app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
    for method, path in registered:
        if path.startswith("/v1/") or path in ("/openapi.json", "/docs", "/healthz", "/readyz"):
            assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
    operation_ids = []
    for path, item in paths.items():
        templated = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert method in ("get", "post", "delete", "put", "patch"), (path, method)
            assert operation["responses"] and operation["summary"], (path, method)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (path, method)
            operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


async def test_the_docs_page_needs_no_network(server: RunningServer,
                                              http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/docs") as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == ["/web/docs.js"]
    async with http.get(server.url + scripts[0]) as response:
        assert response.status == 200
        script = await response.text()
    for text in (page, script):
        assert not re.search(r"(src|href)=\"https?://", text)
        assert "cdn" not in text.lower()
    assert 'fetch("/openapi.json")' in script


def test_web_files_exist() -> None:
    web_dir = Path(rest.__file__).resolve().parent.parent / "web"
    assert (web_dir / "docs.html").is_file() and (web_dir / "docs.js").is_file()


DOM_HARNESS = r"""
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(0, "utf8"));
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.attrs = {}; this.dataset = {};
                     this.own = ""; this.className = ""; }
  setAttribute(k, v) { this.attrs[k] = v; }
  append(...nodes) { this.children.push(...nodes); }
  get textContent() { return this.own + this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this.own = String(v); this.children = []; }
}
const ids = {};
for (const id of ["title", "description", "toc", "operations", "error"]) ids[id] = new El("div");
global.document = { createElement: (t) => new El(t), getElementById: (id) => ids[id], title: "",
                    createTextNode: (t) => ({ textContent: String(t) }) };
global.window = { location: { origin: "http://127.0.0.1:8080" } };
global.fetch = async () => ({ ok: true, json: async () => spec });
eval(fs.readFileSync(process.argv[1], "utf8"));
setTimeout(() => {
  const ops = [];
  const walk = (n) => { if (n.tag === "details") ops.push({ id: n.attrs.id, text: n.textContent,
      code: n.children[1].children.at(-1).textContent });
    (n.children || []).forEach(walk); };
  walk(ids.operations);
  console.log(JSON.stringify({ error: ids.error.textContent, title: ids.title.textContent, ops }));
}, 100);
"""


def test_the_docs_script_renders_every_operation_with_an_example() -> None:
    """web/docs.js run under Node with a minimal DOM: every operation of the document is rendered,
    with an example request."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(rest.__file__).resolve().parent.parent / "web" / "docs.js"
    document = openapi_document()
    run = subprocess.run([node, "-e", DOM_HARNESS, str(script)], input=json.dumps(document),
                         capture_output=True, text=True, timeout=30, check=True)
    page = json.loads(run.stdout)
    assert page["error"] == "" and "Timbre API" in page["title"]
    rendered = {op["id"]: op for op in page["ops"]}
    expected = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert set(rendered) == expected
    create = rendered["create_voice"]["code"]
    assert "-X POST 'http://127.0.0.1:8080/v1/voices'" in create
    assert "-F 'file=@reference.wav'" in create and "-F 'consent_accepted=true'" in create
    assert 'Authorization: Bearer $TIMBRE_KEY' in create
    synth = rendered["synthesize"]["code"]
    assert "-d '{\"text\":" in synth and "application/json" in synth
    assert "v_0123456789abcdef" in rendered["get_voice"]["code"]
    assert "Authorization" not in rendered["health"]["code"]
    assert "websocat" in rendered["open_stream"]["code"]
    assert "consent_statement" in rendered["create_voice"]["text"]  # the request schema


# -- synthesis pieces without the server -----------------------------------------------------------


def test_units_account_for_every_character_of_the_text() -> None:
    text = "Chapter 1.\n\n  It cost $5 -- no more.  ... !!! The end.  "
    units = plan_units(text)
    assert sum(u.characters for u in units) == len(text)
    assert any("five dollars" in u.text for u in units)  # normalised
    assert plan_units("... !!!") == [PlannedUnit("", 7)]  # nothing to pronounce: never sent
    assert plan_units("") == []


async def test_the_sweep_removes_results_whose_job_expired(server: RunningServer,
                                                           new_api: Any) -> None:
    api: Api = await new_api("sweeper")
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": "Short lived.", "voice": "piper:joe"})
    assert status == 202
    job = await api.wait_job(body["job"]["job_id"])
    files = TenantFiles(server.data_dir)
    path = files.job_path(api.tenant, job["job_id"], "wav")
    assert path.is_file()
    service = server.app[rest.SYNTHESIS]
    sweep = asyncio.run_coroutine_threadsafe(service.sweep(), server.loop)
    assert await asyncio.wrap_future(sweep) == 0  # the job still exists: its audio stays
    db = open_database(server.mongo_url)
    await db["jobs"].delete_one({"_id": job["job_id"]})  # what the TTL index does
    db.client.close()
    sweep = asyncio.run_coroutine_threadsafe(service.sweep(), server.loop)
    assert await asyncio.wrap_future(sweep) == 1
    assert not path.exists()


async def test_text_with_nothing_to_say_fails_its_job_and_costs_nothing(new_api: Any) -> None:
    api: Api = await new_api("mute")
    status, body = await api.call("POST", "/v1/synthesize",
                                  json={"text": "... !!!", "voice": "piper:joe"})
    assert status == 202
    job = await api.wait_job(body["job"]["job_id"])
    assert (job["status"], job["error"]["code"]) == ("failed", "synthesis_failed")
    status, audio = await api.call("GET", f"/v1/jobs/{job['job_id']}/audio")
    assert (status, audio["error"]["code"]) == (409, "no_audio")
    _, usage = await api.call("GET", "/v1/usage")
    assert usage["month"]["characters"] == 0
