"""gsv-fetch-weights and the empty-root start path, against a local stand-in for the Hugging Face hub.

The stand-in (a thread on 127.0.0.1) answers what ``huggingface_hub`` asks: HEAD and GET on
``/{repo_id}/resolve/{revision}/{filename}`` with X-Repo-Commit, ETag and Content-Length, and Range
requests (206) for resumed downloads; upstream's raw git files are served under ``/raw/{commit}/``.
The real files are GBs, so small stand-in bytes are served and the identities they are checked
against (md5 of the first 8 KiB, git blob ids) are the stand-ins' own, or deliberately wrong ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.engine import registry
from app.fetch_weights import FetchError, fetch_weights, git_blob_sha1, hub_reachable, main, md5_first_8k
from app.settings import Settings
from app.startup_weights import prepare_empty_weights_root
from app.weights_manifest import (
    DEFAULT_VERSIONS,
    G2PW_REQUIRED,
    PRETRAINED_MD5_8K,
    UPSTREAM_COMMIT,
    GitFile,
    hub_files,
    plan_for,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def stand_in(name: str, size: int = 20_000) -> bytes:
    """Distinct bytes per file, larger than 8 KiB so the md5 covers only their head."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}  # "/{repo_id}/{filename}" or "/raw/{commit}/{path}"
        self.cut_once: set[str] = set()  # GETs that send half the body, then drop the connection
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self, filename: str) -> list[str | None]:
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + filename)]


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):  # keep the test output clean
        pass

    def _lookup(self) -> tuple[str, bytes | None]:
        path = self.path.split("?")[0]
        if path.startswith("/raw/"):
            return path, self.server.files.get(path)
        owner, name, resolve, _revision, filename = path.lstrip("/").split("/", 4)
        return filename, self.server.files.get(f"/{owner}/{name}/{filename}") if resolve == "resolve" else None

    def _answer(self, with_body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        key, data = self._lookup()
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not with_body:
            return
        if key in self.server.cut_once and not start:
            self.server.cut_once.discard(key)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the transfer breaks off mid-file
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)


@pytest.fixture(scope="module")
def hub():
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def hub_env(monkeypatch, tmp_path, hub):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # huggingface_hub read HF_HOME when it was imported: point its cache and token file here too, so
    # no test touches the user's cache or sends their token to the stand-in.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    hub.requests.clear()
    hub.cut_once.clear()


def serve_plan(hub: FakeHub, versions=DEFAULT_VERSIONS, **extras):
    """Serve stand-ins for every file of the plan; the plan checks them against their own identities."""
    plan = plan_for(versions, **extras)
    md5 = {}
    for item in plan.hub:
        data = stand_in(item.filename)
        if item.is_json:
            data = b'{"stand_in": "' + item.filename.encode() + b'"}'
        hub.files[f"/{item.repo_id}/{item.filename}"] = data
        if item.local_path in plan.md5_8k:
            md5[item.local_path] = hashlib.md5(data[:8192]).hexdigest()
    git = []
    for item in plan.git:
        data = stand_in(item.path, 3000)
        hub.files[f"/raw/{UPSTREAM_COMMIT}/{item.path}"] = data
        git.append(GitFile(item.path, len(data), git_blob_sha1(data)))
    return dataclasses.replace(plan, md5_8k=md5, git=tuple(git))


def fetch(hub, root, plan, tmp_path, **kw):
    return fetch_weights(
        root, plan, endpoint=hub.url, cache_dir=tmp_path / "hf-cache", raw_base_url=f"{hub.url}/raw", **kw
    )


def test_manifest_paths_are_where_the_service_loads_them_and_identities_are_the_registrys():
    local = {f.local_path for f in hub_files(["v2ProPlus", "v4", "v3", "v2", "v1", "v2Pro"])}
    assert set(registry.PRETRAINED_SOVITS.values()) | set(registry.PRETRAINED_GPT.values()) <= local
    assert {registry.SV_CHECKPOINT, registry.VOCODER_V4} <= local
    assert f"{registry.BIGVGAN_V3_DIR}/bigvgan_generator.pt" in local
    assert f"{registry.HUBERT_DIR}/pytorch_model.bin" in local and f"{registry.BERT_DIR}/tokenizer.json" in local
    # Every identity we check is one the registry recognises, for the version at that path.
    for path, md5 in PRETRAINED_MD5_8K.items():
        assert md5 in registry._BY_PRETRAINED_MD5, path
    assert DEFAULT_VERSIONS == ("v2ProPlus",)


def test_full_fetch_places_every_file_and_a_rerun_downloads_nothing(hub, tmp_path, capsys):
    plan = serve_plan(hub, english_dicts=True)
    root = tmp_path / "weights"
    report = fetch(hub, root, plan, tmp_path)
    assert sorted(report.placed) == sorted(plan.local_paths) and not report.kept
    for item in plan.hub:
        assert (root / item.local_path).read_bytes() == hub.files[f"/{item.repo_id}/{item.filename}"]
    for item in plan.git:
        assert (root / item.path).read_bytes() == hub.files[f"/raw/{UPSTREAM_COMMIT}/{item.path}"]
    assert not list(root.rglob("*.fetching"))  # no temporary names left behind
    # The service finds the models at its own paths.
    names = registry.WeightRegistry(root)
    assert names.sovits_names() == [registry.PRETRAINED_SOVITS["v2ProPlus"]]
    assert names.gpt_names() == [registry.PRETRAINED_GPT["v2ProPlus"]]

    hub.requests.clear()
    again = fetch(hub, root, plan, tmp_path)
    assert again.placed == [] and sorted(again.kept) == sorted(plan.local_paths)
    assert hub.requests == []


def test_an_interrupted_download_resumes_where_it_stopped(hub, tmp_path, monkeypatch):
    # The real files are GBs, written to the cache in 10 MB chunks; the stand-ins are smaller.
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1024)
    plan = serve_plan(hub)
    sovits = next(f for f in plan.hub if f.local_path == registry.PRETRAINED_SOVITS["v2ProPlus"])
    size = len(hub.files[f"/{sovits.repo_id}/{sovits.filename}"])
    hub.cut_once.add(sovits.filename)
    root = tmp_path / "weights"
    with pytest.raises(FetchError, match="s2Gv2ProPlus.pth"):
        fetch(hub, root, plan, tmp_path)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))  # nothing placed
    partial = list((tmp_path / "hf-cache").rglob("*.incomplete"))
    assert len(partial) == 1
    got = partial[0].stat().st_size
    assert 0 < got <= size // 2

    report = fetch(hub, root, plan, tmp_path)
    assert sovits.local_path in report.placed
    assert hub.gets(sovits.filename) == [None, f"bytes={got}-"]  # the second GET continued from there
    assert (root / sovits.local_path).read_bytes() == hub.files[f"/{sovits.repo_id}/{sovits.filename}"]
    assert md5_first_8k(root / sovits.local_path) == plan.md5_8k[sovits.local_path]


def test_a_file_that_is_not_upstreams_fails_loudly_and_nothing_is_placed(hub, tmp_path):
    plan = serve_plan(hub)
    sovits = registry.PRETRAINED_SOVITS["v2ProPlus"]
    wrong = dataclasses.replace(plan, md5_8k={sovits: "0" * 32})
    root = tmp_path / "weights"
    with pytest.raises(FetchError, match=r"s2Gv2ProPlus.pth .* is not upstream's file: the md5 of its first 8 KiB"):
        fetch(hub, root, wrong, tmp_path)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))
    # The bad copy left the cache too, so the next run downloads it again.
    assert not any(p.name == hashlib.sha256(stand_in("v2Pro/s2Gv2ProPlus.pth")).hexdigest()
                   for p in (tmp_path / "hf-cache").rglob("*"))

    hub.files[f"/raw/{UPSTREAM_COMMIT}/GPT_SoVITS/text/cmudict.rep"] = b"tampered"
    dicts = dataclasses.replace(plan_for(english_dicts=True), hub=())  # the real blob ids
    with pytest.raises(FetchError, match=r"cmudict.rep is not upstream's file .* 8 bytes"):
        fetch(hub, root, dicts, tmp_path)
    assert not (root / "GPT_SoVITS/text").exists()


def test_a_users_existing_file_is_kept_and_the_rest_is_fetched(hub, tmp_path):
    plan = serve_plan(hub)
    root = tmp_path / "weights"
    mine = root / registry.PRETRAINED_GPT["v2ProPlus"]
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own fine-tuned GPT")
    report = fetch(hub, root, plan, tmp_path)
    assert report.kept == [registry.PRETRAINED_GPT["v2ProPlus"]]
    assert mine.read_bytes() == b"my own fine-tuned GPT"
    assert not hub.gets("s1v3.ckpt")  # not even downloaded
    assert (root / registry.PRETRAINED_SOVITS["v2ProPlus"]).is_file()


def g2pw_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_g2pw_is_unzipped_into_upstreams_folder_with_its_word_dictionary(hub, tmp_path):
    plan = serve_plan(hub, g2pw=True)
    model = {f"G2PWModel/{name}": f"stand-in {name}".encode() for name in (*G2PW_REQUIRED, "g2pW.onnx")}
    hub.files[f"/{plan.g2pw.repo_id}/{plan.g2pw.filename}"] = g2pw_zip(model)
    root = tmp_path / "weights"
    report = fetch(hub, root, plan, tmp_path)
    assert registry.G2PW_DIR in report.placed
    assert sorted(p.name for p in (root / registry.G2PW_DIR).iterdir()) == sorted((*G2PW_REQUIRED, "g2pW.onnx"))
    assert (root / "GPT_SoVITS/text/g2pw/polyphonic.rep").is_file()

    broken = bytearray(g2pw_zip(model))
    broken[broken.index(b"stand-in config.py")] ^= 0xFF  # a flipped byte: the CRC no longer matches
    hub.files[f"/{plan.g2pw.repo_id}/{plan.g2pw.filename}"] = bytes(broken)
    other = tmp_path / "other"
    with pytest.raises(FetchError, match="g2pW zip is corrupt"):
        fetch(hub, other, dataclasses.replace(plan, git=()), tmp_path / "other-cache")
    assert not (other / registry.G2PW_DIR).exists()


def test_the_command_reports_and_exits_non_zero_on_failure(hub, tmp_path, capsys):
    root = tmp_path / "weights"
    # The stand-ins are not upstream's files: the real md5 identities reject the SoVITS file.
    serve_plan(hub)
    assert main(["--weights-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "is not upstream's file" in err and "Nothing of this run was placed" in err
    assert (tmp_path / "hf-home" / "hub" / "models--lj1995--GPT-SoVITS").is_dir()  # the cache HF_HOME names
    with pytest.raises(SystemExit):
        main(["--versions", "v9"])


# ------------------------------------------------------------------------------------------ start-up
def test_hub_check_answers_within_its_timeout_when_nothing_listens_or_nothing_answers(hub):
    assert hub_reachable(hub.url, timeout=2)[0]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for sock in (closed, silent):
            started = time.monotonic()
            ok, detail = hub_reachable(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=1)
            assert not ok and detail and time.monotonic() - started < 3
    finally:
        closed.close()
        silent.close()


def test_an_empty_root_gets_upstreams_models_when_the_hub_answers(hub, tmp_path):
    plan = serve_plan(hub)
    settings = Settings(weights_root=tmp_path / "weights", demo_if_empty=True)
    fetcher = functools.partial(fetch, hub, plan=plan, tmp_path=tmp_path)
    done = prepare_empty_weights_root(settings, ([], []), fetch=lambda root: fetcher(root=root))
    assert done.action == "fetched" and hub.url in done.message and "v2ProPlus" in done.message
    assert (tmp_path / "weights" / registry.PRETRAINED_SOVITS["v2ProPlus"]).is_file()
    assert not (tmp_path / "weights" / "DEMO_WEIGHTS.txt").exists()
    # A root with models, or without --demo-if-empty, is left alone.
    assert prepare_empty_weights_root(settings, (["a.pth"], ["b.ckpt"])) is None
    assert prepare_empty_weights_root(Settings(weights_root=tmp_path / "x"), ([], [])) is None


def test_gsv_fetch_weights_false_goes_straight_to_demo_weights(monkeypatch, tmp_path):
    # The real fallback (hub unreachable -> demo weights, log and /readyz) is tested end to end in
    # tests/api/test_startup_weights.py; here only that the setting skips the hub entirely.
    written = []
    monkeypatch.setattr("app.startup_weights.prepare_demo_weights", lambda root, choices: written.append(root))
    monkeypatch.setattr("app.fetch_weights.hub_reachable", lambda *a, **k: pytest.fail("no hub check"))
    settings = Settings(weights_root=tmp_path / "weights", demo_if_empty=True, fetch_weights=False)
    done = prepare_empty_weights_root(settings, ([], []), fetch=lambda root: pytest.fail("no fetch"))
    assert done.action == "demo" and "GSV_FETCH_WEIGHTS=false" in done.message
    assert written == [tmp_path / "weights"]
