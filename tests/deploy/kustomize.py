"""Rendering kustomizations: the real kustomize when one is installed, else a subset.

``render`` runs ``kustomize build`` (or ``kubectl kustomize``, which embeds
kustomize) when either is on the PATH. Otherwise ``render_subset`` builds the
overlay itself, implementing only what k8s/ uses:

- ``resources`` (files and directories) and ``components``;
- ``namespace`` (namespaced objects get it, Namespace objects are renamed);
- ``images`` (``newName``, ``newTag``, ``digest``);
- ``patches`` with a ``path`` to a strategic-merge patch, matched by the
  patch's kind and name or by a ``target`` (kind, name, labelSelector).

Anything else in a kustomization is an error, so the subset cannot silently
render something different; ``test_subset_renderer_matches_kustomize`` checks
it against the real kustomize wherever one is installed.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "images",
    "patches",
}

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
}

# Strategic-merge keys of the lists that k8s/ patches; other lists are replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(Exception):
    """The kustomization cannot be rendered."""


def kustomize_command() -> list[str] | None:
    """The real kustomize: a standalone binary, or kubectl's embedded one."""
    if binary := shutil.which("kustomize"):
        return [binary, "build"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    return None


def render(path: Path) -> list[Obj]:
    command = kustomize_command()
    if command is None:
        return render_subset(path)
    return render_with(command, path)


def render_with(command: list[str], path: Path) -> list[Obj]:
    result = subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise KustomizeError(f"{' '.join(command)} {path}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_subset(path: Path) -> list[Obj]:
    return _build(path.resolve(), component=False)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, as compose and kubectl do."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> list[Any]:
    """Every document of a YAML text, duplicate keys refused."""
    return list(yaml.load_all(text, Loader=_StrictLoader))


def load_yaml_objects(path: Path) -> list[Obj]:
    docs = [doc for doc in load_yaml(path.read_text()) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise KustomizeError(f"{path}: not a Kubernetes object: {doc!r:.80}")
    return docs


def _kustomization(directory: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            docs = load_yaml((directory / name).read_text())
            loaded = (docs[0] if docs else None) or {}
            unknown = set(loaded) - SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(
                    f"{directory}: fields outside the supported subset: {sorted(unknown)}"
                )
            return dict(loaded)
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _build(directory: Path, *, component: bool, base: list[Obj] | None = None) -> list[Obj]:
    spec = _kustomization(directory)
    kind = spec.get("kind", "Kustomization")
    if component != (kind == "Component"):
        raise KustomizeError(
            f"{directory}: kind {kind} used as a {'component' if component else 'kustomization'}"
        )
    objects: list[Obj] = list(base or [])
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(_build(target, component=False))
        else:
            _inside(directory, target)
            objects.extend(load_yaml_objects(target))
    for entry in spec.get("components", []):
        objects = _build((directory / entry).resolve(), component=True, base=objects)
    _check_unique(directory, objects)
    for patch in spec.get("patches", []):
        _apply_patch(directory, objects, patch)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if namespace := spec.get("namespace"):
        _set_namespace(objects, namespace)
    return objects


def _inside(directory: Path, target: Path) -> None:
    if directory not in target.parents:
        raise KustomizeError(f"{target} is outside {directory} (kustomize refuses such files)")


def _key(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _check_unique(directory: Path, objects: list[Obj]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        if _key(obj) in seen:
            raise KustomizeError(f"{directory}: {_key(obj)} is declared twice")
        seen.add(_key(obj))


def _apply_patch(directory: Path, objects: list[Obj], entry: Obj) -> None:
    unknown = set(entry) - {"path", "target"}
    if unknown:
        raise KustomizeError(f"{directory}: patch fields outside the subset: {sorted(unknown)}")
    path = (directory / entry["path"]).resolve()
    _inside(directory, path)
    (patch,) = load_yaml_objects(path)
    target = entry.get("target")
    if target is None:
        target = {"kind": patch["kind"], "name": patch["metadata"]["name"]}
    matched = [obj for obj in objects if _matches(obj, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch {entry['path']} matches no object")
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = {k: v for k, v in patch.get("metadata", {}).items() if k not in ("name", "namespace")}
    for obj in matched:
        merged = _merge(obj, body)
        if meta:
            merged["metadata"] = _merge(merged["metadata"], meta)
        obj.clear()
        obj.update(merged)


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name", "labelSelector"}
    if unknown:
        raise KustomizeError(f"patch target fields outside the subset: {sorted(unknown)}")
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], obj["metadata"]["name"]):
        return False
    if selector := target.get("labelSelector"):
        labels = obj["metadata"].get("labels") or {}
        for term in selector.split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = _merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next(
                (i for i, old in enumerate(merged_list) if old.get(key) == item[key]), None
            )
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = _merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _set_image(objects: list[Obj], image: Obj) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images fields outside the subset: {sorted(unknown)}")
    for container in _containers(objects):
        name, tag, digest = _split_image(container.get("image", ""))
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )


def _split_image(reference: str) -> tuple[str, str, str]:
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def _containers(node: Any) -> list[Obj]:
    found: list[Obj] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict))
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
