"""The web UI in a real browser: headless Chromium (Debian's ``chromium`` package, which ``.ci/run``
installs) driven by Playwright loads the page, uploads a reference clip, types the texts, clicks
synthesise and waits for the output audio. A screenshot is saved under ``$GSV_TEST_ARTIFACTS`` (default:
the test's tmp_path). Without a browser this test fails: it never skips."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from playwright.sync_api import sync_playwright

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server
from tests.api.test_inference import REF

# This network is closed: nothing may try to reach out (and wait for it), and no sandbox in containers.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no Chromium: install Debian's package (apt-get install -y chromium), as .ci/run does"
    return path


@pytest.fixture(scope="module")
def url(demo_root, tmp_path_factory):
    app = create_app(Settings(weights_root=demo_root, data_dir=tmp_path_factory.mktemp("browser-data")))
    with live_server(app) as base:
        yield base


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("GSV_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)


def test_the_page_synthesises_an_uploaded_voice(url, tmp_path, artifacts):
    ref = tmp_path / "ref.wav"
    ref.write_bytes(REF)
    outside = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: r.url.startswith((url, "data:", "blob:")) or outside.append(r.url))
            page.goto(f"{url}/", timeout=60_000)
            page.wait_for_selector("#synthesise", timeout=60_000)
            page.set_input_files("#ref-audio input[type=file]", str(ref))
            page.fill("#prompt-text textarea", "这是参考音频。")
            page.fill("#text textarea", "今天天气很好。")
            page.wait_for_selector("#ref-audio audio[src]", state="attached", timeout=30_000)  # upload done
            page.click("#synthesise")
            played = page.locator("#output-audio audio[src]").first
            played.wait_for(state="attached", timeout=120_000)
            src = played.get_attribute("src")
            page.screenshot(path=str(artifacts / "web_ui.png"), full_page=True)
        finally:
            browser.close()
    assert outside == [], "the page reached outside the service"
    answer = httpx.get(src, timeout=30)
    assert answer.status_code == 200
    info = sf.info(io.BytesIO(answer.content))
    assert info.format == "WAV" and info.duration > 0.2
    assert (artifacts / "web_ui.png").stat().st_size > 10_000


def test_a_stored_voice_is_picked_instead_of_an_upload(url, artifacts):
    form = {"name": "browser-demo", "prompt_text": "这是参考音频。", "prompt_lang": "中文"}
    r = httpx.post(f"{url}/voices", data=form, files={"ref_audio": ("ref.wav", REF, "audio/wav")}, timeout=60)
    assert r.status_code == 201, r.text
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{url}/", timeout=60_000)
            page.wait_for_selector("#synthesise", timeout=60_000)
            page.click("#voice input")
            page.get_by_role("option", name="browser-demo").click()
            # picking fills in the voice's prompt
            page.wait_for_function("document.querySelector('#prompt-text textarea').value === '这是参考音频。'")
            page.fill("#text textarea", "今天天气很好。")
            page.click("#synthesise")
            page.locator("#output-audio audio[src]").first.wait_for(state="attached", timeout=120_000)
            page.screenshot(path=str(artifacts / "web_ui_voice.png"), full_page=True)
        finally:
            browser.close()
