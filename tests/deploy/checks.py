"""What the deploy files must say beyond their schemas, as functions returning problems.

Each check takes rendered objects (or the compose document) and returns a list
of human-readable problems, empty when all is well; the tests assert on both
the real files (no problems) and deliberately broken copies (some problems).
"""

from __future__ import annotations

import re
from typing import Any

from ragstream import topology
from ragstream.settings import Settings

Obj = dict[str, Any]

APP = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
SECRET_NAME = "ragstream-secrets"
CONFIG_NAME = "ragstream-config"


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj | None:
    return next((o for o in by_kind(objects, kind) if o["metadata"]["name"] == name), None)


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def main_container(obj: Obj) -> Obj:
    containers = pod_spec(obj)["containers"]
    return next((c for c in containers if c["name"] == "ragstream"), containers[0])


def is_ragstream(obj: Obj) -> bool:
    return bool((obj["metadata"].get("labels") or {}).get(APP) == "ragstream")


def stage_deployments(objects: list[Obj]) -> dict[str, Obj]:
    """Deployments whose container runs ``worker STAGE``, by stage."""
    found: dict[str, Obj] = {}
    for deployment in by_kind(objects, "Deployment"):
        args = main_container(deployment).get("args") or []
        if args[:1] == ["worker"]:
            found[args[1] if len(args) > 1 else ""] = deployment
    return found


def config_value(objects: list[Obj], key: str) -> str | None:
    config = named(objects, "ConfigMap", CONFIG_NAME)
    return None if config is None else (config.get("data") or {}).get(key)


def container_env(objects: list[Obj], container: Obj) -> dict[str, str]:
    """The environment a container sees from its ConfigMaps and its own ``env``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if ref := source.get("configMapRef"):
            config = named(objects, "ConfigMap", ref["name"])
            env.update((config or {}).get("data") or {})
    for item in container.get("env") or []:
        env[item["name"]] = str(
            item.get("value", "<from " + ",".join(item.get("valueFrom", {})) + ">")
        )
    return env


def partitions(objects: list[Obj]) -> int | None:
    """RAGSTREAM_PARTITIONS of the topics Job (the partition count of every topic)."""
    job = named(objects, "Job", "ragstream-topics")
    if job is None:
        return None
    value = container_env(objects, main_container(job)).get("RAGSTREAM_PARTITIONS")
    return int(value) if value and value.isdigit() else None


def max_poll_interval_s(objects: list[Obj]) -> int:
    value = config_value(objects, "RAGSTREAM_MAX_POLL_INTERVAL_S")
    return int(value) if value else Settings.model_fields["max_poll_interval_s"].default


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- Kubernetes --------------------------------------------------------------


def check_stage_deployments(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    stages = stage_deployments(objects)
    if sorted(stages) != sorted(topology.STAGE_NAMES):
        problems.append(f"stage Deployments {sorted(stages)} != {sorted(topology.STAGE_NAMES)}")
    grace_floor = max_poll_interval_s(objects)
    for stage, deployment in stages.items():
        where = f"Deployment/{deployment['metadata']['name']}"
        if deployment["metadata"]["name"] != f"ragstream-{stage}":
            problems.append(f"{where}: runs stage {stage} but is not named ragstream-{stage}")
        labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        if labels.get(COMPONENT) != stage:
            problems.append(f"{where}: pod label {COMPONENT} is not {stage}")
        if deployment["spec"].get("replicas") is not None:
            problems.append(f"{where}: sets replicas, which an autoscaler would fight")
        spec = pod_spec(deployment)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= grace_floor:
            problems.append(
                f"{where}: terminationGracePeriodSeconds {grace} <= max.poll {grace_floor}s"
            )
        strategy = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
        if strategy.get("maxSurge") != 0:
            problems.append(f"{where}: a surge pod can get no partition; use maxSurge 0")
        anti = spec.get("affinity", {}).get("podAntiAffinity", {})
        terms = [
            t.get("podAffinityTerm", t)
            for key in (
                "preferredDuringSchedulingIgnoredDuringExecution",
                "requiredDuringSchedulingIgnoredDuringExecution",
            )
            for t in anti.get(key, [])
        ]
        if not any(_selects(t["labelSelector"].get("matchLabels", {}), labels) for t in terms):
            problems.append(f"{where}: no pod anti-affinity against its own pods")
        container = main_container(deployment)
        env = container_env(objects, container)
        port = env.get("RAGSTREAM_HEALTH_PORT", "0")
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            get = (container.get(probe) or {}).get("httpGet") or {}
            target = ports.get(get.get("port"), get.get("port"))
            if get.get("path") != path or str(target) != port:
                problems.append(
                    f"{where}: {probe} is not GET {path} on RAGSTREAM_HEALTH_PORT {port}"
                )
    return problems


def check_pod_hygiene(objects: list[Obj]) -> list[str]:
    """Every ragstream pod: limits and requests, non-root, read-only root, /tmp writable."""
    problems: list[str] = []
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS or not is_ragstream(obj):
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = pod_spec(obj)
        if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"{where}: pod does not require runAsNonRoot")
        for container in spec["containers"]:
            resources = container.get("resources") or {}
            for side in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(side) or {}):
                        problems.append(
                            f"{where}: container {container['name']} has no {side}.{resource}"
                        )
            security = container.get("securityContext") or {}
            if not security.get("readOnlyRootFilesystem"):
                problems.append(
                    f"{where}: container {container['name']} root file system is writable"
                )
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(
                    f"{where}: container {container['name']} allows privilege escalation"
                )
            if "/tmp" not in {m["mountPath"] for m in container.get("volumeMounts", [])}:
                problems.append(f"{where}: container {container['name']} has no writable /tmp")
    return problems


def check_disruption_budgets(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    budgets = by_kind(objects, "PodDisruptionBudget")
    for deployment in by_kind(objects, "Deployment"):
        if not is_ragstream(deployment):
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], labels)]
        if len(matching) != 1:
            problems.append(
                f"Deployment/{deployment['metadata']['name']}: {len(matching)} PodDisruptionBudgets"
            )
    return problems


def check_api(objects: list[Obj]) -> list[str]:
    deployment = named(objects, "Deployment", "ragstream-api")
    service = named(objects, "Service", "ragstream-api")
    if deployment is None or service is None:
        return ["no Deployment and Service ragstream-api"]
    problems: list[str] = []
    container = main_container(deployment)
    if container.get("args") != ["api"]:
        problems.append(f"Deployment/ragstream-api runs {container.get('args')}, not ['api']")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    if not _selects(service["spec"]["selector"], labels):
        problems.append("Service/ragstream-api does not select the API pods")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    port = container_env(objects, container).get("RAGSTREAM_API_PORT", "8000")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or str(ports.get(get.get("port"), get.get("port"))) != port:
            problems.append(f"Deployment/ragstream-api: {probe} is not GET {path} on {port}")
    for service_port in service["spec"]["ports"]:
        if str(ports.get(service_port["targetPort"], service_port["targetPort"])) != port:
            problems.append("Service/ragstream-api does not target the API port")
    return problems


def check_jobs(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    for name, args in (("ragstream-migrate", ["migrate"]), ("ragstream-topics", ["topics"])):
        job = named(objects, "Job", name)
        if job is None:
            problems.append(f"no Job {name}")
        elif main_container(job).get("args") != args:
            problems.append(f"Job/{name} runs {main_container(job).get('args')}, not {args}")
    if partitions(objects) is None:
        problems.append("the topics Job sets no numeric RAGSTREAM_PARTITIONS")
    return problems


def check_references(objects: list[Obj], *, external_secrets: set[str]) -> list[str]:
    """ConfigMaps and Secrets that pods read exist (or are created out of band)."""
    problems: list[str] = []
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for container in pod_spec(obj)["containers"]:
            refs = []
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"]))
            for kind, name in refs:
                if (kind, name) not in present and not (
                    kind == "Secret" and name in external_secrets
                ):
                    problems.append(f"{where}: reads {kind} {name}, which is not there")
    return problems


def check_autoscalers(objects: list[Obj]) -> list[str]:
    """KEDA ScaledObjects or HPAs: one per stage, on its group and topic, max = partitions."""
    problems: list[str] = []
    scaled = by_kind(objects, "ScaledObject")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    if scaled and hpas:
        problems.append("both KEDA ScaledObjects and HPAs: they would fight over the replicas")
    if not scaled and not hpas:
        return problems
    count = partitions(objects)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    stages = {d["metadata"]["name"]: s for s, d in stage_deployments(objects).items()}
    seen: list[str] = []
    for obj in scaled + hpas:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj["spec"]
        target = spec["scaleTargetRef"]["name"]
        stage = stages.get(target)
        if stage is None:
            problems.append(f"{where}: scales {target}, which is no stage Deployment")
            continue
        seen.append(stage)
        spec_stage = topology.STAGES[stage]
        if obj["kind"] == "ScaledObject":
            low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
            (trigger,) = spec["triggers"]
            meta = trigger["metadata"]
            if trigger["type"] != "kafka":
                problems.append(f"{where}: trigger type {trigger['type']}, not kafka")
            if meta.get("consumerGroup") != spec_stage.group_id:
                problems.append(
                    f"{where}: consumerGroup {meta.get('consumerGroup')} != {spec_stage.group_id}"
                )
            if meta.get("topic") != spec_stage.input_topic:
                problems.append(f"{where}: topic {meta.get('topic')} != {spec_stage.input_topic}")
            env_name = meta.get("bootstrapServersFromEnv")
            env = container_env(objects, main_container(deployments[target]))
            if env_name is not None and env_name not in env:
                problems.append(f"{where}: {target} has no environment variable {env_name}")
        else:
            low, high = spec.get("minReplicas", 1), spec["maxReplicas"]
            external = [m["external"] for m in spec["metrics"] if m["type"] == "External"]
            selectors = [e["metric"].get("selector", {}).get("matchLabels", {}) for e in external]
            if not any(
                e["metric"]["name"] == "ragstream_consumer_lag" and s == {"stage": stage}
                for e, s in zip(external, selectors, strict=True)
            ):
                problems.append(
                    f"{where}: no external metric ragstream_consumer_lag{{stage={stage}}}"
                )
        if high != count:
            problems.append(f"{where}: max replicas {high} != partitions per topic {count}")
        if not 1 <= low <= high:
            problems.append(f"{where}: min replicas {low} outside 1..{high}")
    if sorted(seen) != sorted(topology.STAGE_NAMES):
        problems.append(f"autoscaled stages {sorted(seen)} != {sorted(topology.STAGE_NAMES)}")
    return problems


def check_images_pinned(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        for container in pod_spec(obj)["containers"]:
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@" not in image and (not tag or tag in ("latest", "local")):
                problems.append(
                    f"{obj['kind']}/{obj['metadata']['name']}: image {image} is not pinned"
                )
    return problems


def check_kubernetes(objects: list[Obj], *, external_secrets: set[str]) -> list[str]:
    return [
        *check_stage_deployments(objects),
        *check_pod_hygiene(objects),
        *check_disruption_budgets(objects),
        *check_api(objects),
        *check_jobs(objects),
        *check_references(objects, external_secrets=external_secrets),
        *check_autoscalers(objects),
    ]


# --- compose -----------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """``${NAME:-default}`` as compose resolves it, with ``env`` as the environment.

    ``${NAME:?message}`` (required) resolves to the message when ``NAME`` is unset.
    """
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), node)
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    return node


def _duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def compose_stage_services(document: Obj) -> dict[str, str]:
    """Services whose command is ``worker STAGE``: service name -> stage."""
    return {
        name: service["command"][1]
        for name, service in document["services"].items()
        if (service.get("command") or [None])[0] == "worker"
    }


def check_compose(document: Obj) -> list[str]:
    problems: list[str] = []
    services: dict[str, Obj] = document["services"]
    stages = compose_stage_services(document)
    if sorted(stages.values()) != sorted(topology.STAGE_NAMES):
        problems.append(
            f"stage services {sorted(stages.values())} != {sorted(topology.STAGE_NAMES)}"
        )
    for name, stage in stages.items():
        service = services[name]
        if name != stage:
            problems.append(f"service {name} runs stage {stage}: name it {stage}")
        if "container_name" in service or service.get("ports"):
            problems.append(f"service {name}: container_name or ports keep it from --scale")
        if "healthcheck" not in service:
            problems.append(f"service {name}: no healthcheck")
        poll = int(service.get("environment", {}).get("RAGSTREAM_MAX_POLL_INTERVAL_S", 300))
        if _duration_s(service.get("stop_grace_period", "10s")) <= poll:
            problems.append(
                f"service {name}: stop_grace_period is not longer than max.poll {poll}s"
            )
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            wanted = condition["condition"]
            other = services.get(target)
            if other is None:
                problems.append(f"service {name} depends on unknown service {target}")
            elif wanted == "service_healthy" and "healthcheck" not in other:
                problems.append(
                    f"service {name} waits for {target} to be healthy; it has no healthcheck"
                )
            elif wanted == "service_completed_successfully" and other.get("restart", "no") != "no":
                problems.append(f"service {name} waits for {target} to complete; it restarts")
            elif other.get("profiles") and not service.get("profiles"):
                problems.append(f"service {name} depends on {target}, which is behind a profile")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if (
                source
                and not source.startswith((".", "/"))
                and source not in (document.get("volumes") or {})
            ):
                problems.append(f"service {name}: volume {source} is not declared")
    roles = {(s.get("command") or [None])[0] for s in services.values()}
    for role in ("migrate", "topics", "api"):
        if role not in roles:
            problems.append(f"no service runs the {role} role")
    return problems
