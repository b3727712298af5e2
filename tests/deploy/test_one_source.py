"""Kubernetes runs what the compose tests run: the same image, roles, ports, probes and keys.

No cluster can be had here, so the manifests are compared with the files the
compose tests exercise for real (docker-compose.kafka.yml, the Dockerfile and
docker/entrypoint.sh): a probe, port or environment that differs between them
fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

from ragstream import topology
from tests.deploy import checks, kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "ENV":
            values = list(command.value)
            env.update(zip(values[::2], values[1::2], strict=True))
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[checks.Obj]]:
    return {name: kustomize.render(K8S / "overlays" / name) for name in OVERLAYS}


def _entrypoint_probe_paths() -> dict[str, str]:
    """Role -> the HTTP path the image's healthcheck asks (docker/entrypoint.sh)."""
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    return {
        role: path
        for role, path in re.findall(
            r"^\s+(\w+)\)\n(?:.*\n){0,8}?\s+http_ok \S+ (/\w+)", script, re.M
        )
    }


def _env(objects: list[checks.Obj], deployment: checks.Obj, image_env: dict[str, str]) -> dict:
    return {**image_env, **checks.container_env(objects, checks.main_container(deployment))}


def test_the_healthcheck_paths_are_the_probe_paths(rendered: dict[str, list[checks.Obj]]) -> None:
    paths = _entrypoint_probe_paths()
    assert paths["api"] == "/healthz" and paths["worker"] == "/livez", paths
    for objects in rendered.values():
        api = checks.named(objects, "Deployment", "ragstream-api")
        assert api is not None
        container = checks.main_container(api)
        assert container["livenessProbe"]["httpGet"]["path"] == paths["api"]
        for deployment in checks.stage_deployments(objects).values():
            probe = checks.main_container(deployment)["livenessProbe"]["httpGet"]
            assert probe["path"] == paths["worker"]


def test_the_api_listens_where_its_service_and_probes_reach_it(
    rendered: dict[str, list[checks.Obj]], image_env: dict[str, str], compose: dict[str, Any]
) -> None:
    assert image_env["RAGSTREAM_API_HOST"] == "0.0.0.0"
    published = compose["services"]["api"]["ports"][0].rsplit(":", 1)[1]
    for objects in rendered.values():
        api = checks.named(objects, "Deployment", "ragstream-api")
        assert api is not None
        env = _env(objects, api, image_env)
        assert env["RAGSTREAM_API_HOST"] not in ("127.0.0.1", "localhost", "::1")
        (port,) = checks.main_container(api)["ports"]
        assert str(port["containerPort"]) == env["RAGSTREAM_API_PORT"] == published
        service = checks.named(objects, "Service", "ragstream-api")
        assert service is not None
        assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_the_worker_health_port_is_the_image_one(
    rendered: dict[str, list[checks.Obj]], image_env: dict[str, str]
) -> None:
    for objects in rendered.values():
        for stage, deployment in checks.stage_deployments(objects).items():
            env = _env(objects, deployment, image_env)
            ports = {
                p["name"]: p["containerPort"] for p in checks.main_container(deployment)["ports"]
            }
            assert str(ports["health"]) == env["RAGSTREAM_HEALTH_PORT"], stage


def test_the_roles_are_the_compose_commands(
    rendered: dict[str, list[checks.Obj]], compose: dict[str, Any]
) -> None:
    commands = {tuple(s["command"]) for s in compose["services"].values() if "command" in s}
    for objects in rendered.values():
        for kind in ("Deployment", "Job"):
            for obj in checks.by_kind(objects, kind):
                if not checks.is_ragstream(obj):
                    continue
                args = tuple(checks.main_container(obj).get("args") or ())
                assert args in commands, f"{kind} {obj['metadata']['name']} runs {args}"
    stages = {args[1] for args in commands if args[0] == "worker"}
    assert stages == set(topology.STAGE_NAMES)


def test_every_secret_the_pods_need_is_in_the_template() -> None:
    (template,) = kustomize.load_yaml_objects(K8S / "base" / "secret.example.yaml")
    assert {"RAGSTREAM_DATABASE_URL", "RAGSTREAM_API_KEYS"} <= set(template["stringData"])
    keys = template["stringData"]["RAGSTREAM_API_KEYS"]
    tenants = [pair.rsplit(":", 1)[1] for pair in keys.split(",")]
    assert "*" in tenants and any(t != "*" for t in tenants), keys


def test_the_dev_overlay_runs_the_image_ci_builds(
    rendered: dict[str, list[checks.Obj]], compose: dict[str, Any]
) -> None:
    makefile = (ROOT / "Makefile").read_text()
    (image,) = re.findall(r"^IMAGE\s+\?= (\S+)$", makefile, re.M)
    assert compose["services"]["migrate"]["image"] == f"${{RAGSTREAM_IMAGE:-{image}}}"
    for obj in rendered["dev"]:
        if obj["kind"] in ("Deployment", "Job") and checks.is_ragstream(obj):
            assert checks.main_container(obj)["image"] == image, obj["metadata"]["name"]
