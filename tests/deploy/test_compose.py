"""docker-compose.kafka.yml: valid Compose, wired as the pipeline needs, no engine needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from ragstream import topology
from ragstream.settings import Settings
from tests.deploy import checks, kustomize, validate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"


def _load(text: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    (raw,) = kustomize.load_yaml(text)
    document = checks.interpolate(raw, env or {})
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE.read_text())


def _published(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> "host_ip:host_port" of each published port."""
    found = {}
    for port in service.get("ports", []):
        *host, container = str(port).split(":")
        found[int(container)] = ":".join(host)
    return found


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    assert validate.compose_errors(compose) == []


def test_matches_with_other_ports_too() -> None:
    env = {"API_PORT": "18000", "KAFKA_EXTERNAL_PORT": "19094", "POSTGRES_PORT": "15432"}
    document = _load(COMPOSE.read_text(), env)
    assert validate.compose_errors(document) == []
    kafka = document["services"]["kafka"]
    assert _published(kafka) == {9094: "127.0.0.1:19094"}
    assert "EXTERNAL://127.0.0.1:19094" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_is_wired_as_the_pipeline_needs(compose: dict[str, Any]) -> None:
    assert checks.check_compose(compose) == []


def test_publishes_only_what_a_user_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name: _published(s) for name, s in services.items() if s.get("ports")}
    assert published == {
        "api": {8000: "127.0.0.1:8000"},
        "kafka": {9094: "127.0.0.1:9094"},
        "postgres": {5432: "127.0.0.1:5432"},
    }
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://127.0.0.1:9094" in advertised
    assert "INTERNAL://kafka:9092" in advertised


def test_services_use_the_images_of_the_architecture(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    ragstream = {s["image"] for s in services.values() if "build" in s}
    assert len(ragstream) == 1


def test_the_database_url_matches_the_postgres_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    for name, service in services.items():
        url = (service.get("environment") or {}).get("RAGSTREAM_DATABASE_URL")
        if url is None:
            continue
        parsed = make_url(url)
        assert (parsed.username, parsed.password, parsed.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        ), name
        assert (parsed.host, parsed.port) == ("postgres", 5432), name
        assert service["environment"]["RAGSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092", name


def test_the_monitor_runs_with_the_stack_and_is_checked(compose: dict[str, Any]) -> None:
    monitor = compose["services"]["monitor"]
    assert monitor["command"] == ["monitor"]
    assert "profiles" not in monitor
    assert "healthcheck" in monitor


# Settings the image fixes for every container (paths and ports inside it), or that only
# the native devstack uses: the compose file does not pass them through.
FIXED_BY_THE_IMAGE = {"data_dir", "cache_dir", "api_host", "api_port", "health_port",
                      "monitor_metrics_port", "devstack_brokers", "devstack_s3"}  # fmt: skip


def test_every_setting_reaches_every_ragstream_service(compose: dict[str, Any]) -> None:
    wanted = {f"RAGSTREAM_{name.upper()}" for name in Settings.model_fields}
    wanted -= {f"RAGSTREAM_{name.upper()}" for name in FIXED_BY_THE_IMAGE}
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        if service.get("image", "").startswith(("apache/", "pgvector/")):
            continue
        missing = wanted - set(service["environment"])
        assert not missing, f"{name} does not pass through {sorted(missing)}"


def test_api_keys_are_required_and_come_from_the_environment() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    keys = raw["services"]["api"]["environment"]["RAGSTREAM_API_KEYS"]
    assert keys.startswith("${RAGSTREAM_API_KEYS:?"), keys


def test_the_project_image_is_built_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    built = [name for name, s in services.items() if "build" in s]
    assert built == ["migrate"]
    image = services["migrate"]["image"]
    users = [name for name, s in services.items() if s.get("image") == image]
    assert sorted(users) == sorted(["migrate", "topics", "api", "monitor", *topology.STAGE_NAMES])
    assert all(services[n]["pull_policy"] == "never" for n in users if n != "migrate")


def test_a_broken_copy_fails() -> None:
    text = COMPOSE.read_text()
    assert "condition: service_healthy" in text
    wrong_condition = _load(text.replace("condition: service_healthy", "condition: healthy", 1))
    assert validate.compose_errors(wrong_condition) != []
    misspelt = _load(text.replace("stop_grace_period:", "stop_grace_periode:", 1))
    assert any("stop_grace_periode" in e for e in validate.compose_errors(misspelt))
    scaled_with_port = _load(
        text.replace(
            'command: ["worker", "embed"]', 'command: ["worker", "embed"]\n    ports: ["8081"]'
        )
    )
    assert any("--scale" in p for p in checks.check_compose(scaled_with_port))
    with pytest.raises(yaml.YAMLError, match="duplicate key 'image'"):
        _load(
            text.replace(
                "    image: pgvector/pgvector:pg17\n", "    image: pgvector/pgvector:pg17\n" * 2
            )
        )
    renamed = _load(text.replace("  finalize:\n", "  final:\n"))
    assert any("name it finalize" in p for p in checks.check_compose(renamed))
