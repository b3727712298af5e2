"""Offline schema validation of Kubernetes objects and the compose file.

Kubernetes objects are checked against the strict JSON schemas (no unknown
fields) that the ``kubernetes-validate`` package ships, for each version in
``K8S_VERSIONS``. KEDA ScaledObjects, a custom resource, are checked against
``schemas/keda-scaledobject-v1alpha1.json``; the compose file against
``schemas/compose-spec.json``. Unknown kinds are errors, never skipped.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

SCHEMAS = Path(__file__).parent / "schemas"

# The oldest Kubernetes release the manifests target, and the newest one that
# kubernetes-validate ships schemas for.
MIN_K8S_VERSION = "1.30"


def k8s_versions() -> tuple[str, ...]:
    import kubernetes_validate.utils

    latest = kubernetes_validate.utils.latest_version()
    return (MIN_K8S_VERSION, ".".join(latest.split(".")[:2]))


def _schema_dir(version: str) -> Any:
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    directory = root.joinpath(f"v{version}.0-local-strict")
    if not directory.is_dir():
        raise LookupError(f"kubernetes-validate ships no schemas for Kubernetes {version}")
    return directory


@cache
def _k8s_registry(version: str) -> referencing.Registry:
    definitions = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    resource = referencing.Resource.from_contents(
        definitions, default_specification=referencing.jsonschema.DRAFT202012
    )
    return resource @ referencing.Registry()


@cache
def _k8s_validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"{kind.lower()}-{group_version}.json"
    path = _schema_dir(version).joinpath(name)
    if not path.is_file():
        raise LookupError(f"no Kubernetes {version} schema for {api_version} {kind}")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry(version))


@cache
def _file_validator(name: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    # Older schemas name their draft as http://...#; jsonschema knows https://... only.
    draft = re.sub(r"^http://(.*?)#?$", r"https://\1", schema.get("$schema", ""))
    cls = jsonschema.validators.validator_for({"$schema": draft})
    cls.check_schema(schema)
    return cls(schema)


CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json"}


def _describe(errors: list[jsonschema.ValidationError], where: str) -> list[str]:
    return [
        f"{where}: {'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    ]


def k8s_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Every schema violation of one object; [] when it is valid."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = f"{kind}/{name} (Kubernetes {version})"
    custom = CUSTOM_RESOURCES.get((api_version, kind))
    try:
        validator = (
            _file_validator(custom) if custom else _k8s_validator(version, kind, api_version)
        )
    except LookupError as exc:
        return [f"{where}: {exc}"]
    return _describe(list(validator.iter_errors(obj)), where)


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = _file_validator("compose-spec.json")
    return _describe(list(validator.iter_errors(document)), "compose")
