"""One list of stages: ragstream.topology.STAGE_NAMES.

The compose services, the Kubernetes Deployments, the KEDA ScaledObjects, the
HPAs and the CLI's worker command all name exactly those stages, so that a
stage added or renamed in the topology cannot be forgotten in a deploy file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from ragstream import topology
from tests.deploy import checks, kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
STAGES = sorted(topology.STAGE_NAMES)


def _autoscaled(objects: list[checks.Obj], kind: str) -> list[str]:
    by_deployment = {d["metadata"]["name"]: s for s, d in checks.stage_deployments(objects).items()}
    return sorted(
        by_deployment[o["spec"]["scaleTargetRef"]["name"]] for o in checks.by_kind(objects, kind)
    )


def test_compose_has_one_service_per_stage() -> None:
    document = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    stages = checks.compose_stage_services(document)
    assert sorted(stages) == STAGES
    assert all(name == stage for name, stage in stages.items())


def test_kubernetes_has_one_deployment_and_autoscaler_per_stage() -> None:
    for overlay in sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir()):
        objects = kustomize.render(overlay)
        deployments = checks.stage_deployments(objects)
        assert sorted(deployments) == STAGES, overlay.name
        assert all(d["metadata"]["name"] == f"ragstream-{s}" for s, d in deployments.items())
        for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            scaled = _autoscaled(objects, kind)
            assert scaled in ([], STAGES), (overlay.name, kind, scaled)
    base = kustomize.render(K8S / "base")
    for component, kind in (("keda", "ScaledObject"), ("hpa", "HorizontalPodAutoscaler")):
        directory = K8S / "components" / component
        listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
        autoscalers = [o for r in listed for o in kustomize.load_yaml_objects(directory / r)]
        assert _autoscaled(base + autoscalers, kind) == STAGES, component


def test_the_cli_worker_accepts_exactly_the_stages() -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    ragstream = str(Path(sys.executable).parent / "ragstream")
    shown = subprocess.run(
        [ragstream, "worker", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert shown.returncode == 0
    assert all(stage in shown.stdout for stage in STAGES)
    refused = subprocess.run(
        [ragstream, "worker", "bogus"], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode != 0
    listed = refused.stderr.split("one of", 1)[1].strip().rstrip(".").split(", ")
    assert sorted(listed) == STAGES
