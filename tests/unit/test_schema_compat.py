"""Backward compatibility of the event schemas, checked with data through the codec.

Every version that ever wrote data must stay readable: each ``history/<Name>/vN.avsc``
and the version committed at git HEAD must decode with the current schema. A changed
schema must be recorded as the next history version before it ships.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ragstream.errors import UndecodableEvent
from ragstream.schemas.codec import (
    Codec,
    SchemaCatalog,
    SingleObjectCodec,
    default_catalog,
    fingerprint,
)
from ragstream.schemas.events import (
    EVENT_BY_SCHEMA,
    EVENT_TYPES,
    NAMESPACE,
    SCHEMA_NAMES,
    Event,
    history,
    schema_json,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
INT_SAMPLE = 2  # also the sample array length, so ChunkEmbedded.dimensions == len(vector)
STRING_OVERRIDES = {"parser": "local"}  # values the event classes validate


class SchemaHistoryWarning(UserWarning):
    """A compatibility check that could not run here, said out loud."""


# --- sample data ----------------------------------------------------------------------

PRIMITIVE_SAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "int": INT_SAMPLE,
    "long": 2**33,
    "float": 0.5,
    "double": 0.25,
    "bytes": b"\x00\xff",
}


def sample_value(t: Any, field: str, named: dict[str, Any]) -> Any:
    """A value for Avro type ``t`` with every optional part filled in."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"] or ["null"]
        return sample_value(branches[0], field, named)
    if isinstance(t, str):
        if t in named:
            return sample_value(named[t], field, named)
        if t == "string":
            return STRING_OVERRIDES.get(field, f"{field}-sample")
        return PRIMITIVE_SAMPLES[t]
    kind = t["type"]
    if t.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
        return T0
    if kind == "array":
        return [sample_value(t["items"], field, named) for _ in range(INT_SAMPLE)]
    if kind == "map":
        return {f"{field}-key": sample_value(t["values"], field, named)}
    if kind == "record":
        named[t["name"]] = t
        return {f["name"]: sample_value(f["type"], f["name"], named) for f in t["fields"]}
    if kind == "enum":
        named[t["name"]] = t
        return t["symbols"][0]
    if kind == "fixed":
        named[t["name"]] = t
        return b"\x01" * t["size"]
    return sample_value(kind, field, named)


def sample_record(schema: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = sample_value(dict(schema), "", {})
    return record


def full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


# --- the checks -----------------------------------------------------------------------------


def assert_decodes_with_current(
    codec: Codec, writer: Mapping[str, Any], version: int, label: str
) -> None:
    """Write a full sample with ``writer`` (version ``version`` in the codec's catalog) and
    require that the codec reads it into the current schema, and into the event class."""
    name = full_name(writer)
    record = sample_record(writer)
    data = codec.encode_record(name, record, version=version)
    assert data[2:10] == fingerprint(writer).to_bytes(8, "little")
    try:
        decoded_name, decoded = codec.decode_record(data)
    except UndecodableEvent as exc:
        raise AssertionError(
            f"data written with {label} does not decode with the current {name}: {exc}"
        ) from exc
    assert decoded_name == name
    for field in codec.catalog.current(name).schema["fields"]:
        field_name = field["name"]
        if field_name in record:
            assert plain(decoded[field_name]) == plain(record[field_name]), (
                f"{label}: {field_name} changed on the way"
            )
        else:
            assert plain(decoded[field_name]) == plain(field["default"]), (
                f"{label}: {field_name} should take its default"
            )
    event_type = EVENT_BY_SCHEMA.get(name)
    if event_type is not None:
        event = codec.decode(data, event_type)
        assert type(event) is event_type


def history_problem(
    name: str, current: Mapping[str, Any], versions: Mapping[int, Mapping[str, Any]]
) -> str | None:
    """Why the history of ``name`` does not cover its current schema, or None."""
    if not versions:
        return f"ragstream/schemas/history/{name}/ is empty: add v1.avsc, a copy of {name}.avsc"
    numbers = sorted(versions)
    if numbers != list(range(1, len(numbers) + 1)):
        return f"ragstream/schemas/history/{name}/ must hold v1..vN without gaps, has {numbers}"
    latest = numbers[-1]
    current_fp, latest_fp = fingerprint(current), fingerprint(versions[latest])
    if current_fp != latest_fp:
        return (
            f"ragstream/schemas/{name}.avsc changed (fingerprint {current_fp:#018x}) but its "
            f"history ends at v{latest} ({latest_fp:#018x}). Published versions are kept "
            f"forever: copy the new schema to ragstream/schemas/history/{name}/"
            f"v{latest + 1}.avsc and make schema_version default to {latest + 1}."
        )
    return None


def committed_schema(name: str) -> tuple[dict[str, Any] | None, str]:
    """``<name>.avsc`` as committed at git HEAD, or None and the reason it is unavailable."""
    path = f"./ragstream/schemas/{name}.avsc"
    git = shutil.which("git")
    if git is None:
        return None, "git is not installed"
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git, "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    if run("rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        return None, f"{ROOT} is not a git checkout with commits"
    if run("cat-file", "-e", f"HEAD:{path}").returncode != 0:
        return None, f"{path[2:]} has no commit yet"
    shown = run("show", f"HEAD:{path}")
    assert shown.returncode == 0, shown.stderr
    loaded: dict[str, Any] = json.loads(shown.stdout)
    return loaded, "committed at HEAD"


# --- the packaged schemas ----------------------------------------------------------------


@pytest.fixture(scope="module")
def codec() -> SingleObjectCodec:
    return SingleObjectCodec(default_catalog())


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_history_version_decodes_with_the_current_schema(
    codec: SingleObjectCodec, name: str
) -> None:
    versions = history(name)
    assert versions, f"ragstream/schemas/history/{name}/ has no versions"
    for number, schema in sorted(versions.items()):
        assert_decodes_with_current(codec, schema, number, f"history/{name}/v{number}.avsc")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_committed_version_decodes_with_the_current_schema(
    codec: SingleObjectCodec, name: str
) -> None:
    committed, why = committed_schema(name)
    if committed is None:
        # Nothing committed to compare with: the history check is what applies, and
        # it must hold here too rather than the test passing on nothing.
        warnings.warn(
            f"{name}: no git HEAD version to check ({why}); checked history only",
            SchemaHistoryWarning,
            stacklevel=1,
        )
        versions = history(name)
        assert versions, f"ragstream/schemas/history/{name}/ has no versions"
        latest = max(versions)
        assert_decodes_with_current(codec, versions[latest], latest, f"{name} v{latest}")
        return
    known = codec.catalog.by_fingerprint(fingerprint(committed))
    assert known is not None and known.version is not None, (
        f"ragstream/schemas/{name}.avsc as committed at HEAD (fingerprint "
        f"{fingerprint(committed):#018x}) is in no ragstream/schemas/history/{name}/vN.avsc, "
        "so data it wrote could not be decoded: add it to the history"
    )
    assert_decodes_with_current(codec, committed, known.version, f"{name}.avsc at git HEAD")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_is_recorded_in_history(name: str) -> None:
    problem = history_problem(name, schema_json(name), history(name))
    if problem:
        pytest.fail(problem)


@pytest.mark.parametrize("cls", EVENT_TYPES)
def test_schema_version_default_is_the_latest_version(cls: type[Event]) -> None:
    default = {f.name: f.default for f in dataclasses.fields(cls)}["schema_version"]
    assert default == max(history(cls.SCHEMA_NAME)), (
        f"{cls.__name__}.schema_version should default to the latest history version"
    )


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_follow_the_conventions(name: str) -> None:
    schema = schema_json(name)
    assert schema["namespace"] == NAMESPACE
    fields = {f["name"]: f for f in schema["fields"]}
    for common in ("event_id", "schema_version", "emitted_at"):
        assert common in fields
    assert fields["schema_version"]["default"] == 1
    for field in schema["fields"]:
        assert field.get("doc"), f"{name}.{field['name']} needs a doc"
        if field["name"].endswith("_at"):
            assert field["type"] == {"type": "long", "logicalType": "timestamp-millis"}


# --- the checker itself, on temporary schemas ---------------------------------------------

V1: dict[str, Any] = {
    "type": "record",
    "name": "Sample",
    "namespace": "test.compat",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
    ],
}


def evolved(*extra: dict[str, Any], replace: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = [replace if replace and f["name"] == replace["name"] else f for f in V1["fields"]]
    return {**V1, "fields": [*fields, *extra]}


def test_checker_accepts_compatible_changes() -> None:
    v2 = evolved(
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        replace={"name": "count", "type": "long"},  # int -> long is a promotion
    )
    codec = SingleObjectCodec(SchemaCatalog([v2], [(1, V1), (2, v2)]))
    assert_decodes_with_current(codec, V1, 1, "v1")
    assert_decodes_with_current(codec, v2, 2, "v2")
    assert history_problem("Sample", v2, {1: V1, 2: v2}) is None


def test_checker_catches_a_new_field_without_default() -> None:
    v2 = evolved({"name": "owner", "type": "string"})
    codec = SingleObjectCodec(SchemaCatalog([v2], [(1, V1), (2, v2)]))
    with pytest.raises(AssertionError, match=r"does not decode with the current.*owner"):
        assert_decodes_with_current(codec, V1, 1, "v1")


def test_checker_catches_an_incompatible_type_change() -> None:
    v2 = evolved(replace={"name": "count", "type": "string"})
    codec = SingleObjectCodec(SchemaCatalog([v2], [(1, V1), (2, v2)]))
    with pytest.raises(AssertionError, match="does not decode with the current"):
        assert_decodes_with_current(codec, V1, 1, "v1")


def test_checker_demands_a_history_entry_for_a_changed_schema() -> None:
    v2 = evolved({"name": "note", "type": ["null", "string"], "default": None})
    problem = history_problem("Sample", v2, {1: V1})
    assert problem is not None
    assert "history/Sample/v2.avsc" in problem
    assert "gaps" in (history_problem("Sample", v2, {1: V1, 3: v2}) or "")
    assert "v1.avsc" in (history_problem("Sample", V1, {}) or "")
    # a doc-only change keeps the fingerprint: nothing to record
    documented = {**V1, "doc": "now with a doc"}
    assert history_problem("Sample", documented, {1: V1}) is None


def test_committed_schema_reports_why_it_has_nothing() -> None:
    schema, why = committed_schema("NoSuchSchema")
    assert schema is None
    assert why
