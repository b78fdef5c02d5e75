"""The web UI's gradio API, driven by the real ``gradio_client`` against a live server on demo weights:
upstream's six calls, unchanged, and the REST routes still answering beside the mounted gradio app."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server
from tests.api.test_inference import REF, sovits_name

# upstream's inference_webui_fast.py: the parameters of its ``inference``, in order
INFERENCE_PARAMETERS = [
    "text", "text_lang", "ref_audio_path", "aux_ref_audio_paths", "prompt_text", "prompt_lang", "top_k",
    "top_p", "temperature", "text_split_method", "batch_size", "speed_factor", "ref_text_free",
    "split_bucket", "fragment_interval", "seed", "keep_random", "parallel_infer", "repetition_penalty",
    "sample_steps", "super_sampling",
]  # fmt: skip
TEXT, PROMPT = "今天天气很好。", "这是参考音频。"


@pytest.fixture(scope="module")
def app(demo_root, tmp_path_factory):
    return create_app(Settings(weights_root=demo_root, data_dir=tmp_path_factory.mktemp("web-ui-data")))


@pytest.fixture(scope="module")
def url(app):
    with live_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def ref_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("web-ui-ref") / "ref.wav"
    path.write_bytes(REF)
    return path


@pytest.fixture(scope="module")
def client(url):
    return Client(f"{url}/", verbose=False)


@pytest.fixture(scope="module")
def v2_models(client, names):
    """The v2ProPlus models made current through the gradio API (32 kHz output)."""
    sovits = sovits_name(names, "v2ProPlus")
    gpt = next(n for n in names["gpt"] if "v2ProPlus" in n)
    updates = client.predict(
        sovits_path=sovits, prompt_language="中文", text_language="英文", api_name="/change_sovits_weights"
    )
    assert client.predict(weights_path=gpt, api_name="/init_t2s_weights") == ()
    return sovits, gpt, updates


def issue_args(ref_wav, **overrides) -> dict:
    """/inference's arguments exactly as the issue (and upstream's users) pass them."""
    args = dict(
        text=TEXT, text_lang="中文", ref_audio_path=handle_file(str(ref_wav)), aux_ref_audio_paths=[],
        prompt_text=PROMPT, prompt_lang="中文", top_k=5, top_p=1, temperature=1,
        text_split_method="凑四句一切", batch_size=20, speed_factor=1, ref_text_free=False,
        split_bucket=True, fragment_interval=0.3, seed=-1, keep_random=True, parallel_infer=True,
        repetition_penalty=1.35, sample_steps="32", super_sampling=False,
    )  # fmt: skip
    return args | overrides | {"api_name": "/inference"}


def issue_call(client, ref_wav, **overrides):
    return client.predict(**issue_args(ref_wav, **overrides))


def test_the_api_is_upstreams_six_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    endpoints = api["named_endpoints"]
    assert set(endpoints) == {
        "/change_choices", "/to_cut", "/inference", "/change_sovits_weights", "/init_t2s_weights", "/stop"
    }  # fmt: skip
    assert api["unnamed_endpoints"] == {}
    inference = endpoints["/inference"]
    assert [p["parameter_name"] for p in inference["parameters"]] == INFERENCE_PARAMETERS
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in inference["parameters"]}
    assert defaults | {"ref_audio_path": None} == {
        "text": "", "text_lang": "中文", "ref_audio_path": None, "aux_ref_audio_paths": None, "prompt_text": "",
        "prompt_lang": "中文", "top_k": 5, "top_p": 1, "temperature": 1, "text_split_method": "凑四句一切",
        "batch_size": 20, "speed_factor": 1, "ref_text_free": False, "split_bucket": True,
        "fragment_interval": 0.3, "seed": -1, "keep_random": True, "parallel_infer": True,
        "repetition_penalty": 1.35, "sample_steps": "32", "super_sampling": False,
    }  # fmt: skip
    assert [r["component"] for r in inference["returns"]] == ["Audio", "Number"]
    assert [p["parameter_name"] for p in endpoints["/to_cut"]["parameters"]] == ["text_inp", "how_to_cut"]
    weights = endpoints["/change_sovits_weights"]
    assert [p["parameter_name"] for p in weights["parameters"]] == ["sovits_path", "prompt_language", "text_language"]
    assert len(weights["returns"]) == 9
    assert [p["parameter_name"] for p in endpoints["/init_t2s_weights"]["parameters"]] == ["weights_path"]
    assert endpoints["/stop"]["parameters"] == endpoints["/change_choices"]["parameters"] == []
    assert len(endpoints["/change_choices"]["returns"]) == 2


def test_change_choices_lists_the_weights_like_rest(client, url):
    sovits, gpt = client.predict(api_name="/change_choices")
    rest = httpx.post(f"{url}/change_choices").json()
    assert [value for _, value in sovits["choices"]] == rest["sovits"]
    assert [value for _, value in gpt["choices"]] == rest["gpt"]
    assert len(rest["sovits"]) > 1


def test_to_cut_answers_the_cut_text(client, url):
    text = "第一句。第二句。第三句。"
    cut = client.predict(text_inp=text, how_to_cut="按中文句号。切", api_name="/to_cut")
    assert cut == "第一句\n第二句\n第三句"  # upstream's cut3 drops the full stops
    assert cut == httpx.post(f"{url}/to_cut", json={"text_inp": text, "how_to_cut": "cut3"}).json()["text"]
    assert client.predict(text_inp="   ", how_to_cut="凑四句一切", api_name="/to_cut") == ""


def test_change_sovits_weights_answers_upstreams_nine_updates(v2_models):
    _, _, updates = v2_models
    assert len(updates) == 9
    languages = [value for _, value in updates[0]["choices"]]
    assert languages[:3] == ["中文", "英文", "日文"] and len(languages) == 11  # a v2 model: all of them
    assert updates[1]["choices"] == updates[0]["choices"]
    assert updates[3]["value"] == "中文" and updates[5]["value"] == "英文"  # both kept
    assert updates[6] == {"__type__": "update", "interactive": False, "value": "32"}  # no sample steps on v2
    assert updates[7]["visible"] is True and updates[8]["interactive"] is True  # aux refs, prompt-free


def test_inference_answers_a_wav_and_the_seed_same_audio_as_rest(client, url, ref_wav, v2_models):
    sovits, gpt, _ = v2_models
    path, seed = issue_call(client, ref_wav, seed=1234, keep_random=False)
    assert seed == 1234
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 32000, 1)
    form = {"text": TEXT, "text_lang": "中文", "prompt_text": PROMPT, "prompt_lang": "中文", "seed": "1234",
            "keep_random": "false", "gpt_weights": gpt, "sovits_weights": sovits}  # fmt: skip
    rest = httpx.post(f"{url}/inference", data=form, files={"ref_audio_path": ("ref.wav", REF)}, timeout=120)
    assert rest.status_code == 200 and rest.headers["content-type"] == "audio/wav"
    assert np.array_equal(sf.read(path, dtype="int16")[0], sf.read(io.BytesIO(rest.content), dtype="int16")[0])


def test_keep_random_draws_and_reports_a_seed(client, ref_wav, v2_models):
    path, seed = issue_call(client, ref_wav)  # the issue's call verbatim: seed -1, keep_random
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert sf.info(path).duration > 0.2


def test_a_refusal_is_a_gradio_error_with_the_services_message(client, ref_wav, v2_models):
    with pytest.raises(AppError, match="ref_audio_path: upload the reference clip"):
        issue_call(client, ref_wav, ref_audio_path=None)
    with pytest.raises(AppError, match="temperature"):
        issue_call(client, ref_wav, temperature=0)
    with pytest.raises(AppError, match="no GPT|not found|No such|unknown"):
        client.predict(weights_path="GPT_weights_v2/missing.ckpt", api_name="/init_t2s_weights")


def test_stop_cancels_only_the_calling_sessions_work(url, ref_wav, v2_models):
    mine, other = Client(f"{url}/", verbose=False), Client(f"{url}/", verbose=False)
    args = issue_args(ref_wav, text="今天天气很好，我们一起去公园散步吧。" * 6)
    stopped, kept = mine.submit(**args), other.submit(**args)
    deadline = time.monotonic() + 120
    while not stopped.done():  # a stop before the job reached the engine cancels nothing: again
        assert time.monotonic() < deadline
        assert mine.predict(api_name="/stop") == ()
        time.sleep(0.2)
    audio, _ = stopped.result()
    assert audio is None  # stopped: no audio, as the UI shows
    path, _ = kept.result(timeout=120)
    assert sf.info(path).duration > 0.2


def test_rest_routes_and_gradio_routes_do_not_shadow_each_other(url):
    config = httpx.get(f"{url}/config").json()
    assert config["api_prefix"] == "/gradio_api" and config["title"] == "GPT-SoVITS WebUI"
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{url}/nope")  # neither serves it: the service's 404
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{url}/inference")  # a REST path with the wrong method: the service's 405
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"
    assert "/config" not in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_web_ui_false_serves_the_api_only(demo_root, tmp_path):
    settings = Settings(weights_root=demo_root, data_dir=tmp_path, web_ui=False)
    with TestClient(create_app(settings)) as client:
        for path in ("/config", "/", "/gradio_api/info"):
            r = client.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
        assert client.post("/change_choices").json()["sovits"]


def test_a_path_the_client_names_outside_gradios_uploads_is_never_read(url, tmp_path, v2_models):
    """A raw API call can name any server path as the reference "file": gradio must refuse paths
    outside its upload cache, so a client cannot make the service read (or probe) its files."""
    secret = tmp_path / "secret.wav"
    secret.write_bytes(REF)  # a valid clip: read, it would synthesise

    def raw_inference(ref: dict) -> str:
        data = list(issue_args(secret).values())[:-1]  # the arguments in order, without api_name
        data[2] = ref | {"meta": {"_type": "gradio.FileData"}}
        started = httpx.post(f"{url}/gradio_api/call/inference", json={"data": [*data, None]}, timeout=30)
        assert started.status_code == 200, started.text
        return httpx.get(f"{url}/gradio_api/call/inference/{started.json()['event_id']}", timeout=120).text

    with secret.open("rb") as f:  # the control: the same clip, uploaded, is accepted
        uploaded = httpx.post(f"{url}/gradio_api/upload", files={"files": f}, timeout=30).json()[0]
    assert "event: complete" in raw_inference({"path": uploaded})
    events = raw_inference({"path": str(secret)})
    assert "event: error" in events and "event: complete" not in events, events
    assert str(secret) not in events  # nor is the path echoed (unexpected errors show no text)
    # nor does gradio's file route serve what it did not make: a temp file, the project's own files
    for path in (secret, Path("pyproject.toml").resolve()):
        r = httpx.get(f"{url}/gradio_api/file={path}", timeout=30)
        assert r.status_code in (403, 404), (path, r.status_code)


def test_methods_gradio_does_not_serve_answer_the_services_405(url):
    for path in ("/", "/config"):
        r = httpx.request("TRACE", f"{url}{path}", timeout=30)
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", r.text
