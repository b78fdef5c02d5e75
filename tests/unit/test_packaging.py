"""Docker files, Makefile, CI entry and README agree on the command, port, volume and settings."""

from __future__ import annotations

import re
import tomllib

import yaml

from app.cli import build_settings
from app.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_the_console_command_as_non_root_with_weights_volume_and_healthcheck():
    instructions = dockerfile_instructions()
    kinds = [k for k, _ in instructions]
    assert kinds[0] == "FROM" and "cuda" in instructions[0][1]
    user = [v for k, v in instructions if k == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert any(k == "VOLUME" and "/app/weights" in v for k, v in instructions)
    assert any(k == "EXPOSE" and v == "9872" for k, v in instructions)
    assert any(k == "HEALTHCHECK" and "/healthz" in v for k, v in instructions)
    cmd = [v for k, v in instructions if k == "CMD"][-1]
    assert cmd.startswith('["gsv-server"')


def test_compose_exposes_the_port_mounts_weights_and_reserves_a_gpu():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    service = compose["services"]["gsv-server"]
    assert "9872:9872" in service["ports"]
    assert any(v.endswith(":/app/weights") for v in service["volumes"])
    assert service["command"][0] == "gsv-server"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)


def test_readme_names_the_two_commands_and_the_docker_facts():
    assert "make run" in README and "make test" in README
    assert "9872" in README and "/app/weights" in README and "docker/compose.yaml" in README


def test_readme_documents_every_setting():
    for name in Settings.model_fields:
        assert f"GSV_{name.upper()}" in README, name


def test_console_command_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["gsv-server"] == "app.cli:main"
    assert "torch==2.11.0" in project["dependencies"] and "torchaudio==2.11.0" in project["dependencies"]


def test_makefile_targets_and_ci_entry():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "set -e" in ci


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("GSV_PORT", "1234")
    monkeypatch.setenv("GSV_DEVICE", "cpu")
    assert build_settings([]).port == 1234
    settings = build_settings(["--port", "5555", "--weights-root", "/data/w", "--half", "--log-level", "debug"])
    assert settings.port == 5555 and str(settings.weights_root) == "/data/w"
    assert settings.half is True and settings.log_level == "debug" and settings.device == "cpu"
