"""The Kubernetes manifests: every overlay renders, validates and says what it must.

No cluster is needed: overlays are rendered with kustomize (or the subset
renderer of ``kustomize.py`` where no kustomize is installed) and validated
offline against the Kubernetes and KEDA schemas.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ragstream import topology
from tests.deploy import checks, kustomize, validate

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
SECRET_TEMPLATE = K8S / "base" / "secret.example.yaml"


def _objects_key(obj: checks.Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[checks.Obj]]:
    return {name: kustomize.render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def external_secrets() -> set[str]:
    (template,) = kustomize.load_yaml_objects(SECRET_TEMPLATE)
    return {template["metadata"]["name"]}


def test_the_overlays_are_there() -> None:
    assert {"dev", "prod", "prod-hpa"} <= set(OVERLAYS)


def test_every_yaml_file_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) > 10
    for path in files:
        docs = kustomize.load_yaml(path.read_text())
        assert docs, path
        assert all(isinstance(doc, dict) for doc in docs if doc is not None), path


def test_a_duplicate_key_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'replicas'"):
        kustomize.load_yaml("spec:\n  replicas: 1\n  replicas: 2\n")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_schemas(
    rendered: dict[str, list[checks.Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert objects
    errors = [
        e for v in validate.k8s_versions() for o in objects for e in validate.k8s_errors(o, v)
    ]
    assert errors == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_says_what_it_must(
    rendered: dict[str, list[checks.Obj]], overlay: str, external_secrets: set[str]
) -> None:
    assert checks.check_kubernetes(rendered[overlay], external_secrets=external_secrets) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lands_in_one_namespace(
    rendered: dict[str, list[checks.Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    namespaces = {o["metadata"]["name"] for o in checks.by_kind(objects, "Namespace")}
    used = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert len(namespaces) == 1
    assert used == namespaces


def test_production_overlays_pin_their_images(rendered: dict[str, list[checks.Obj]]) -> None:
    for overlay in ("prod", "prod-hpa"):
        assert checks.check_images_pinned(rendered[overlay]) == [], overlay


def test_each_production_overlay_has_one_kind_of_autoscaler(
    rendered: dict[str, list[checks.Obj]],
) -> None:
    assert len(checks.by_kind(rendered["prod"], "ScaledObject")) == len(topology.STAGE_NAMES)
    assert checks.by_kind(rendered["prod"], "HorizontalPodAutoscaler") == []
    assert len(checks.by_kind(rendered["prod-hpa"], "HorizontalPodAutoscaler")) == len(
        topology.STAGE_NAMES
    )
    assert checks.by_kind(rendered["prod-hpa"], "ScaledObject") == []
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        assert checks.by_kind(rendered["dev"], kind) == []


def test_partitions_are_documented(rendered: dict[str, list[checks.Obj]]) -> None:
    readme = " ".join((K8S / "README.md").read_text().split())
    assert "RAGSTREAM_PARTITIONS" in readme
    for overlay in ("prod", "prod-hpa"):
        assert f"{checks.partitions(rendered[overlay])} partitions" in readme


def test_the_secret_template_holds_no_secret() -> None:
    (template,) = kustomize.load_yaml_objects(SECRET_TEMPLATE)
    for version in validate.k8s_versions():
        assert validate.k8s_errors(template, version) == []
    assert all("CHANGE-ME" in value for value in template["stringData"].values())
    included = [
        path
        for path in K8S.rglob("kustomization.yaml")
        if SECRET_TEMPLATE.name in (yaml.safe_load(path.read_text()) or {}).get("resources", [])
    ]
    assert included == []


def test_the_production_secret_comes_from_outside(
    rendered: dict[str, list[checks.Obj]], external_secrets: set[str]
) -> None:
    for overlay in ("prod", "prod-hpa"):
        assert checks.by_kind(rendered[overlay], "Secret") == []
    assert checks.SECRET_NAME in external_secrets


@pytest.mark.skipif(kustomize.kustomize_command() is None, reason="no kustomize or kubectl")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_subset_renderer_matches_kustomize(
    rendered: dict[str, list[checks.Obj]], overlay: str
) -> None:
    command = kustomize.kustomize_command()
    assert command is not None
    real = {_objects_key(o): o for o in kustomize.render_with(command, K8S / "overlays" / overlay)}
    subset = {_objects_key(o): o for o in kustomize.render_subset(K8S / "overlays" / overlay)}
    assert sorted(subset) == sorted(real)
    for key, obj in real.items():
        assert subset[key] == obj, key


# --- broken copies must fail ---------------------------------------------------


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    return copy


def _break(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _schema_errors(objects: list[checks.Obj]) -> list[str]:
    return [e for v in validate.k8s_versions() for o in objects for e in validate.k8s_errors(o, v)]


def test_a_misspelt_field_fails_validation(k8s_copy: Path) -> None:
    _break(k8s_copy / "base" / "stage-embed.yaml", "containerPort: 8081", "containerport: 8081")
    errors = _schema_errors(kustomize.render(k8s_copy / "overlays" / "prod"))
    assert any("containerport" in e for e in errors), errors


def test_a_wrong_type_fails_validation(k8s_copy: Path) -> None:
    _break(k8s_copy / "components" / "production" / "api.yaml", "replicas: 2", "replicas: two")
    errors = _schema_errors(kustomize.render(k8s_copy / "overlays" / "prod"))
    assert any("spec.replicas" in e for e in errors), errors


def test_a_broken_scaled_object_fails_validation(k8s_copy: Path) -> None:
    _break(
        k8s_copy / "components" / "keda" / "scaledobjects.yaml",
        "        consumerGroup: ragstream-embed\n",
        "",
    )
    errors = _schema_errors(kustomize.render(k8s_copy / "overlays" / "prod"))
    assert any("consumerGroup" in e for e in errors), errors


def test_partitions_out_of_step_with_autoscaling_are_caught(k8s_copy: Path) -> None:
    _break(k8s_copy / "base" / "job-topics.yaml", 'value: "12"', 'value: "6"')
    for overlay in ("prod", "prod-hpa"):
        problems = checks.check_autoscalers(kustomize.render(k8s_copy / "overlays" / overlay))
        assert any("!= partitions per topic 6" in p for p in problems), problems


def test_a_short_grace_period_is_caught(k8s_copy: Path) -> None:
    _break(
        k8s_copy / "base" / "stage-parse.yaml",
        "terminationGracePeriodSeconds: 360",
        "terminationGracePeriodSeconds: 30",
    )
    problems = checks.check_stage_deployments(kustomize.render(k8s_copy / "overlays" / "dev"))
    assert any("ragstream-parse" in p and "terminationGracePeriodSeconds" in p for p in problems)


def test_a_missing_stage_is_caught(k8s_copy: Path) -> None:
    _break(k8s_copy / "base" / "kustomization.yaml", "  - stage-chunk.yaml\n", "")
    objects = kustomize.render(k8s_copy / "overlays" / "prod")
    problems = checks.check_stage_deployments(objects) + checks.check_autoscalers(objects)
    assert any("stage Deployments" in p for p in problems), problems
    assert any("scales ragstream-chunk, which is no stage Deployment" in p for p in problems)


def test_invalid_yaml_does_not_render(k8s_copy: Path) -> None:
    _break(k8s_copy / "base" / "configmap.yaml", "data:\n", "data: [\n")
    with pytest.raises((kustomize.KustomizeError, yaml.YAMLError)):
        kustomize.render(k8s_copy / "overlays" / "dev")
    with pytest.raises(yaml.YAMLError):
        kustomize.render_subset(k8s_copy / "overlays" / "dev")
