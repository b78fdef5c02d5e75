"""The deployment files (deploy/ray, deploy/k8s, docker/compose*.yaml) stay true to the app: their probes
and health checks name routes that exist, their GSV_* variables are settings, their cross references
(volumes, secrets, ports, upstreams) resolve, and the Ray configs are valid for Ray Serve's own schema."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RAY_CONFIGS = sorted((ROOT / "deploy/ray").glob("*.yaml"))
COMPOSE_FILES = sorted((ROOT / "docker").glob("compose*.yaml"))
SETTINGS = {f"GSV_{name.upper()}" for name in Settings.model_fields}
DEFAULT_PORT = Settings.model_fields["port"].default


@pytest.fixture(scope="module")
def get_routes(tmp_path_factory) -> set[str]:
    """Paths the app documents a GET for (the app is built, not started: no models load)."""
    app = create_app(Settings(weights_root=tmp_path_factory.mktemp("w"), data_dir=tmp_path_factory.mktemp("d")))
    return {path for path, operations in app.openapi()["paths"].items() if "get" in operations}


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def assert_settings(names, where: str) -> None:
    unknown = {n for n in names if n.startswith("GSV_")} - SETTINGS
    assert not unknown, f"{where}: {sorted(unknown)} are not settings (app/settings.py)"


# --- Ray Serve ------------------------------------------------------------------------------------------


def test_there_are_a_gpu_and_a_cpu_ray_config():
    assert {p.name for p in RAY_CONFIGS} >= {"serve.yaml", "serve-cpu.yaml"}


@pytest.mark.parametrize("path", RAY_CONFIGS, ids=lambda p: p.name)
def test_ray_config_is_valid_and_its_numbers_match_the_engine(path):
    config = ServeDeploySchema(**yaml.safe_load(path.read_text()))
    (app,) = config.applications
    module, _, attribute = app.import_path.partition(":")
    assert isinstance(getattr(importlib.import_module(module), attribute), Application)
    env = app.runtime_env["env_vars"]
    assert_settings(env, path.name)
    (deployment,) = app.deployments
    assert deployment.name == "GsvServer" and deployment.num_replicas == "auto"
    slots, queue = int(env["GSV_GPT_SLOTS"]), int(env["GSV_MAX_QUEUE"])
    # A full replica is one whose GPT slots are all busy; more than slots + queue would be 429s.
    assert deployment.autoscaling_config["target_ongoing_requests"] == slots
    assert deployment.max_ongoing_requests == slots + queue
    assert deployment.graceful_shutdown_timeout_s >= 60  # long answers drain before a replica goes
    gpus = deployment.ray_actor_options.num_gpus
    assert gpus == (1 if env["GSV_DEVICE"] == "cuda" else None), "one replica per GPU; none on CPU"


# --- Kubernetes -----------------------------------------------------------------------------------------


def test_k8s_probes_name_real_routes_and_references_resolve(get_routes):
    docs = load_all(ROOT / "deploy/k8s/gsv-server.yaml")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(container["args"][container["args"].index("--port") + 1])

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] in get_routes and check["port"] in ports, probe

    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert_settings([e["name"] for e in container["env"]], "deploy/k8s")
    assert any(e["name"] == "GSV_DATABASE_URL" for e in container["env"])
    for e in container["env"]:
        if "valueFrom" in e:
            assert ("Secret", e["valueFrom"]["secretKeyRef"]["name"]) in kinds
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["spec"]["volumes"]:
        assert volume["name"] in mounts
        assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in kinds
    assert mounts["weights"] == container["args"][container["args"].index("--weights-root") + 1]

    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])


# --- Docker Compose ---------------------------------------------------------------------------------


def test_the_compose_files_include_a_replicas_variant():
    assert {p.name for p in COMPOSE_FILES} >= {"compose.yaml", "compose.replicas.yaml"}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_settings_and_health_checks_are_real(path, get_routes):
    services = yaml.safe_load(path.read_text())["services"]
    for name, service in services.items():
        assert_settings(service.get("environment") or {}, f"{path.name}: {name}")
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        for url in re.findall(r"https?://[^'\" ]+", test):
            assert urlsplit(url).path in get_routes, f"{name}'s health check {url}"


def test_the_replicas_variant_shares_one_database_behind_one_endpoint():
    services = yaml.safe_load((ROOT / "docker/compose.replicas.yaml").read_text())["services"]
    replicas = {name: s for name, s in services.items() if s.get("image") == "gsv-server:latest"}
    assert len(replicas) >= 2
    postgres = services["postgres"]["environment"]
    for name, service in replicas.items():
        url = urlsplit(service["environment"]["GSV_DATABASE_URL"])
        assert url.scheme.startswith("postgres") and url.hostname in services, name
        assert (url.username, url.password, url.path) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])  # fmt: skip
        assert any(v.endswith(":/app/weights:ro") for v in service["volumes"]), "weights: one shared folder"
        assert service["healthcheck"]["test"][-1].count("/readyz") == 1

    mount = next(v for v in services["nginx"]["volumes"] if "nginx" in v).split(":")[0]
    conf = (ROOT / "docker" / mount).read_text()
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.M))
    assert upstream == {(name, str(DEFAULT_PORT)) for name in replicas}
    assert "proxy_buffering off" in conf  # streamed audio
