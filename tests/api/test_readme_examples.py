"""The README's examples run as written against the service `make run` starts (demo weights).

Each ``bash`` block of the README's Endpoints section runs with curl against a live server on demo
weights; only the port differs (a free one instead of 9872) and ``.venv/bin/python`` is this
interpreter. Every call must succeed: exit code 0, a 2xx status, and no error body.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server

README = Path(__file__).resolve().parents[2] / "README.md"


def endpoint_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Endpoints", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 8, "the Endpoints section lost its examples"
    return blocks


@pytest.fixture(scope="module")
def base_url(demo_root):
    with live_server(create_app(Settings(weights_root=demo_root))) as url:  # the examples only read it
        yield url


def test_every_endpoint_example_runs_as_written(base_url, tmp_path):
    for block in endpoint_examples():
        script = block.replace("localhost:9872", base_url).replace(".venv/bin/python", sys.executable)
        # Each curl call also prints its status on a line of its own, to check it succeeded.
        script = re.sub(r"^curl ", "curl -w '\\n@status %{http_code}\\n' ", script, flags=re.M)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (block, done.stderr)
        statuses = re.findall(r"^@status (\d+)$", done.stdout, flags=re.M)
        assert statuses and all(s.startswith("2") for s in statuses), (block, done.stdout[-2000:])
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                assert "error" not in json.loads(line), (block, line)
    audio = (tmp_path / "out.wav").read_bytes()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    streamed = tmp_path / "stream.ogg"
    with av.open(str(streamed)) as container:  # the streaming example's answer: one Ogg/Opus file
        assert container.streams.audio[0].codec_context.name == "opus"
        assert sum(frame.samples for frame in container.decode(audio=0)) > 48000
    with av.open(str(tmp_path / "speech.mp3")) as container:  # the OpenAI speech example's answer
        assert container.format.name == "mp3"
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0
