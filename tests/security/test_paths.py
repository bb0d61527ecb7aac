"""Nothing a client sends can make the server read or write outside its data directory: file
names of uploads, ids in URLs, names stored in the database, the static files route. Checked on
``TenantFiles`` with traversal attempts and a planted symlink, and over HTTP against the server."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from inference.piper import PiperEngine
from realtime.appkeys import CATALOG, STORES
from session.files import TenantFiles, UnsafePath, check_job_id, check_tenant, check_voice_id
from session.ids import JobId, TenantId, VoiceId
from tests.realtime.test_rest import CONSENT
from tests.security.conftest import on_server
from tests.server import RunningServer
from tests.session.test_voice_service import SENTENCES

TRAVERSALS = [
    "..", "../..", "../../etc/passwd", "..\\..\\windows", "/etc/passwd", "./..", "a/../../b",
    "%2e%2e%2f", "..%2f..%2fetc", "....//....//", "v_0123456789abcdef/../../x", "\x00",
    "v_0123456789abcdef\x00", "~root", "C:\\x", "a" * 5000, "",
]
TENANT = TenantId("t_tenant")
VOICE = VoiceId("v_0123456789abcdef")
JOB = JobId("job_0123456789abcdef")


@pytest.mark.parametrize("value", TRAVERSALS)
def test_ids_from_clients_never_become_path_components(value: str) -> None:
    for check in (check_tenant, check_voice_id, check_job_id):
        with pytest.raises(UnsafePath):
            check(value)


@pytest.mark.parametrize("value", TRAVERSALS)
def test_every_path_helper_refuses_traversal(tmp_path: Path, value: str) -> None:
    files = TenantFiles(tmp_path)
    attempts = [
        lambda: files.tenant_dir(TenantId(value)),
        lambda: files.voice_dir(TENANT, VoiceId(value)),
        lambda: files.reference_path(TENANT, VOICE, 0, value),
        lambda: files.job_path(TENANT, JobId(value), "wav"),
        lambda: files.job_path(TENANT, JOB, value),
    ]
    for attempt in attempts:
        with pytest.raises(UnsafePath):
            attempt()


@pytest.mark.parametrize("stored", [
    "../outside", "/etc/passwd", "tenants/../../outside", "tenants/t/../../../outside",
    "tenants\\..\\..\\outside", "tenants/t/voices/v/\x00", "",
])
def test_a_stored_relative_name_cannot_lead_out(tmp_path: Path, stored: str) -> None:
    """Names read back from the database are checked again (a tampered record cannot escape)."""
    with pytest.raises(UnsafePath):
        TenantFiles(tmp_path / "data").resolve(stored)


def test_a_planted_symlink_cannot_lead_out(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    files = TenantFiles(data)
    files.tenant_dir(TENANT).mkdir(parents=True)
    (files.tenant_dir(TENANT) / "voices").symlink_to(outside)
    with pytest.raises(UnsafePath):
        files.voice_dir(TENANT, VOICE)
    with pytest.raises(UnsafePath):
        files.write_atomic(files.root / "tenants" / TENANT / "voices" / "x.wav", b"data")
    assert list(outside.iterdir()) == []
    loop = files.tenant_dir(TENANT) / "jobs"
    loop.symlink_to(loop)  # a symlink loop is refused, not a crash
    with pytest.raises(UnsafePath):
        files.job_path(TENANT, JOB, "wav")


def test_paths_inside_resolve_normally(tmp_path: Path) -> None:
    """The control: the generated ids lead where the layout says."""
    files = TenantFiles(tmp_path)
    assert files.reference_path(TENANT, VOICE, 3) == (
        tmp_path.resolve() / "tenants" / TENANT / "voices" / VOICE / "reference-3.wav")
    assert files.resolve(files.relative(files.job_path(TENANT, JOB, "mp3"))).name == f"{JOB}.mp3"


# -- over HTTP -------------------------------------------------------------------------------------


URL_TRAVERSALS = [
    "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fpyproject.toml", "..%5c..%5cpyproject.toml",
    "v_0123456789abcdef%00", "%252e%252e%252fpyproject.toml", "....%2F%2F....%2F%2Fetc",
]


@pytest.mark.parametrize("value", URL_TRAVERSALS)
async def test_ids_in_urls_answer_not_found(server: RunningServer, value: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as http:
        for method, path in (("GET", f"/v1/voices/{value}"), ("DELETE", f"/v1/voices/{value}"),
                             ("GET", f"/v1/jobs/{value}"), ("GET", f"/v1/jobs/{value}/audio")):
            async with http.request(method, server.url + path) as resp:
                body = await resp.read()
                assert resp.status in (400, 404), (method, path, resp.status)
                assert b"[project]" not in body and b"root:" not in body


@pytest.mark.parametrize("path", [
    "/web/../pyproject.toml", "/web/%2e%2e/pyproject.toml", "/web/..%2fpyproject.toml",
    "/web/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/web/....//pyproject.toml", "/web//etc/passwd",
    "/web/%252e%252e/pyproject.toml", "/web/..\\pyproject.toml",
    "/web/" + "x" * 300, "/web/a%00b", "/web/" + "x/" * 3000,  # once a 500: the OS refused them
])
async def test_the_static_route_serves_only_the_web_folder(server: RunningServer,
                                                            path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as resp:
        body = await resp.read()
    assert resp.status in (400, 403, 404), resp.status
    assert b"[project]" not in body and b"root:" not in body


@pytest.fixture
async def speech(server: RunningServer) -> bytes:
    """About 17 s of the stock voice as WAV, from the server's loaded engine (one pass, outside
    its scheduler: neither a second engine to load nor an admission check under load)."""
    engine = next(s.engine for s in server.app[CATALOG].schedulers()
                  if isinstance(s.engine, PiperEngine))

    def render() -> bytes:
        audio = np.concatenate([engine.synthesize_one_pass(s) for s in SENTENCES])
        buffer = io.BytesIO()
        soundfile.write(buffer, (0.9 * audio / np.abs(audio).max()).astype(np.float32),
                        engine.sample_rate_hz, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    return await asyncio.to_thread(render)


async def test_an_upload_named_like_a_traversal_is_stored_under_its_generated_name(
        server: RunningServer, speech: bytes, tmp_path: Path) -> None:
    """The multipart file name is a label at most: the bytes land in
    ``tenants/<tenant>/voices/<generated id>/reference-0.wav`` and nowhere else."""
    target = tmp_path / "escaped.wav"
    names = [f"../../../../../..{target}", "..\\..\\%00evil.wav"]
    before = set(_all_files(server.data_dir))
    form = aiohttp.FormData()
    form.add_field("name", "../../traversal")
    for key, value in CONSENT.items():
        form.add_field(key, value)
    for name in names:
        form.add_field("file", speech, filename=name, content_type="audio/wav")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as http, \
            http.post(server.url + "/v1/voices", data=form) as resp:
        body = await resp.json()
    assert resp.status == 202, body
    voice_id = body["voice"]["voice_id"]
    assert not target.exists()
    new = set(_all_files(server.data_dir)) - before
    folder = Path("tenants") / "demo" / "voices" / voice_id
    references = {folder / f"reference-{i}.wav" for i in range(len(names))}
    assert references <= new
    assert all(p == folder or folder in p.parents or p.parts[0] in ("mongo", "cache")
               for p in new), sorted(map(str, new))
    profile = on_server(server, server.app[STORES].voices.get("demo", voice_id))
    assert profile is not None
    assert all(name.startswith(f"tenants/demo/voices/{voice_id}/reference-")
               for name in profile.reference_files)


def _all_files(root: Path) -> list[Path]:
    out = []
    for folder, _, names in os.walk(root):
        out.extend(Path(folder, n).relative_to(root) for n in names)
    return out
