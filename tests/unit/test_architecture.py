"""The shape of the code, as rules that fail when broken: data flows one way (the engine never imports
the HTTP layer), voices are built in one place, and the service has one set of request defaults."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine.jobs import PARAMETER_BOUNDS, job_defaults
from app.schemas.enums import cut_method_code, language_code
from app.schemas.inference import InferenceParams

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "app" / "engine"
HTTP_LAYER = (
    *("app.routers", "app.schemas", "app.errors", "app.main", "app.deps", "app.settings", "app.demo"),
    # the surfaces and operations around the engine, and the libraries only they may use
    *("app.compat", "app.metrics", "app.serve_ray", "fastapi", "starlette", "prometheus_client", "gradio", "ray"),
)
MAX_MODULE_LINES = 450
LONG_MODULE_REASON = "Why this module is long:"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _python_files("app/engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_the_http_layer(path):
    bad = sorted(m for m in _imported_modules(path) if m.startswith(HTTP_LAYER))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the engine raises its own errors and reads no settings"


def test_importing_the_engine_loads_no_http_module():
    code = (
        "import sys, app.engine.engine, app.engine.model_manager, app.engine.planning;"
        f"print([m for m in sys.modules if m.startswith({HTTP_LAYER!r})])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _constructions_of(name: str, path: Path) -> list[int]:
    """Lines where ``path`` calls ``name(...)`` or ``<x>.name(...)`` or uses ``name.load``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == name) or (
                isinstance(func, ast.Attribute) and func.attr == name
            ):
                lines.append(node.lineno)
        if isinstance(node, ast.Attribute) and node.attr == "load" and getattr(node.value, "id", None) == name:
            lines.append(node.lineno)
    return lines


def test_voices_are_built_in_one_place_only():
    """The service, the tests and the benchmarks all get their voices from ModelManager.voice."""
    builders = {
        str(path.relative_to(ROOT)): lines
        for path in _python_files("app", "tests", "benchmarks")
        if (lines := _constructions_of("Voice", path))
    }
    assert builders == {"app/engine/model_manager.py": builders.get("app/engine/model_manager.py", [])}
    assert len(builders["app/engine/model_manager.py"]) == 1


def test_the_http_schema_takes_its_defaults_and_ranges_from_the_job():
    defaults = job_defaults()
    fields = InferenceParams.model_fields
    shared = [name for name in fields if name in defaults]
    assert set(shared) == set(defaults) - {"batch_threshold"}  # every UI parameter of the form
    convert = {"text_lang": language_code, "prompt_lang": language_code, "text_split_method": cut_method_code}
    for name in shared:
        default = fields[name].default
        assert convert.get(name, lambda v: v)(default) == defaults[name], name
    schema = InferenceParams.model_json_schema()["properties"]
    for name, bounds in PARAMETER_BOUNDS.items():
        if name not in schema:
            continue
        low_key = "exclusiveMinimum" if bounds.low_exclusive else "minimum"
        assert (schema[name][low_key], schema[name]["maximum"]) == (bounds.low, bounds.high), name


def test_the_job_defaults_are_upstreams_web_ui_defaults():
    """inference_webui_fast.py's values (top_k slider 5, 凑四句一切 = cut1, batch 20 ...)."""
    expected = dict(
        text_lang="all_zh", prompt_lang="all_zh", prompt_text="", top_k=5, top_p=1.0, temperature=1.0,
        text_split_method="cut1", batch_size=20, speed_factor=1.0, ref_text_free=False, split_bucket=True,
        fragment_interval=0.3, seed=-1, keep_random=True, parallel_infer=True, repetition_penalty=1.35,
        sample_steps=32, super_sampling=False,
    )  # fmt: skip
    assert {k: job_defaults()[k] for k in expected} == expected


@pytest.mark.parametrize("path", _python_files("app/engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_engine_module_says_what_it_is_for_and_stays_readable(path):
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text))
    if path.name != "__init__.py" or text.strip():
        assert docstring, f"{path.relative_to(ROOT)} has no module docstring"
    if len(text.splitlines()) > MAX_MODULE_LINES:
        assert LONG_MODULE_REASON in (docstring or ""), (
            f"{path.relative_to(ROOT)} has {len(text.splitlines())} lines; split it or say why at its top "
            f"({LONG_MODULE_REASON!r})"
        )
