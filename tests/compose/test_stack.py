"""docker-compose.kafka.yml, run for real: the images CI built, every service, faults from outside.

One stack for the module (`make compose-test` builds the images first). The
tests run in file order, each with its own slice of one workload, and each ends
with the chaos suite's exact accounting over everything submitted so far: every
document complete with exactly the chunker's chunks and one vector per chunk,
no duplicate row, nothing in a DLQ, every stage's lag back to 0.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from ragstream import topology
from ragstream.db.engine import make_engine
from ragstream.progress import documents_progress, stage_lag
from ragstream.settings import Settings
from tests import corpus
from tests.chaos.harness import Workload, account, report
from tests.compose.stack import ONE_SHOT, RAGSTREAM_SERVICES, Compose, new_env_file, wait_until

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
SLICE = 16
SETTLE_S = 420


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    if not _docker_answers():
        pytest.fail("the compose tests need a running Docker engine (make compose-test starts one)")
    env_file, keys = new_env_file(tmp_path_factory.mktemp("compose"))
    compose = Compose(env_file, keys)
    compose.run("down", "-v", "--remove-orphans", timeout_s=600)
    try:
        compose.up()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{compose.logs()}") from None
    yield compose
    compose.run("down", "-v", "--remove-orphans", timeout_s=900, check=False)


@pytest.fixture(scope="module")
def settings(stack: Compose) -> Settings:
    """What the stack runs with, seen from the host through the published ports."""
    return Settings(
        kafka_bootstrap=stack.kafka,
        database_url=stack.database_url,
        partitions=6,
        embedder="minilm",
    )


@pytest.fixture(scope="module")
def workload(settings: Settings) -> Workload:
    real = sorted((ROOT / "examples" / "documents").iterdir())
    files = [(p.name, p.read_bytes()) for p in real] + corpus.mixed(7 * SLICE, seed=13)
    return Workload(settings, files)


class Slices:
    """Hands out the workload in order: each test submits the next files."""

    def __init__(self, workload: Workload) -> None:
        self.files = [(name, data) for name, data, _ in workload.items]
        self.next = 0

    def take(self, n: int) -> list[tuple[str, bytes]]:
        taken = self.files[self.next : self.next + n]
        self.next += len(taken)
        assert len(taken) == n, "the workload is too small for the tests"
        return taken


@pytest.fixture(scope="module")
def slices(workload: Workload) -> Slices:
    return Slices(workload)


def _submit(stack: Compose, workload: Workload, files: list[tuple[str, bytes]]) -> None:
    expected = {e.name: e for _, _, e in workload.items if e is not None}
    for (name, _), document_id in zip(files, stack.upload(files), strict=True):
        workload.submitted[document_id] = expected[name]


def _settle(settings: Settings, workload: Workload) -> float:
    engine = make_engine(settings)

    def quiet() -> bool:
        states = documents_progress(engine, workload.submitted)
        done = len(states) == len(workload.submitted) and all(s.terminal for s in states.values())
        return done and not any(stage_lag(settings).values())

    try:
        return wait_until(quiet, timeout_s=SETTLE_S, what="every document terminal and lag 0")
    finally:
        engine.dispose()


def _account(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    *,
    name: str,
    faults: int,
    healed_at: float,
    extra: str = "",
) -> None:
    try:
        _settle(settings, workload)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
    outcome = account(
        settings, workload, name=name, faults=faults, recovery_s=time.monotonic() - healed_at
    )
    outcome.extra = extra
    outcome.documents = outcome.good = len(workload.submitted)  # so far, of the whole workload
    report(request, outcome.line().replace("chaos ", "compose ", 1))
    assert outcome.lost == 0 and outcome.duplicates == 0 and not outcome.problems, "\n".join(
        outcome.problems
    )


def _group_members(settings: Settings, stage: str) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    group = settings.topic_prefix + topology.STAGES[stage].group_id
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return len(described.members)


def _sibling(stack: Compose, image: str, command: str) -> subprocess.CompletedProcess[str]:
    """A command in a new container on the stack's network: a client's view of a service."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", stack.network(), "--entrypoint", "sh",
         image, "-c", command],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


KAFKA_CHECK = "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server kafka:9092"
POSTGRES_CHECK = "pg_isready -h postgres -U ragstream -d ragstream"


# --- the tests, in the order they run --------------------------------------------------


def test_every_service_goes_healthy_and_the_jobs_complete(stack: Compose) -> None:
    for service in (*RAGSTREAM_SERVICES, "kafka", "postgres"):
        (container,) = stack.containers(service)
        assert container["State"] == "running", container
        assert stack.health(container["Name"]) == "healthy", service
    for service in ONE_SHOT:
        (container,) = stack.containers(service)
        assert (container["State"], container["ExitCode"]) == ("exited", 0), container
    with httpx.Client(base_url=stack.api, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/documents").status_code == 401  # no key, no documents


def test_uploads_complete_and_search_finds_them(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    slices: Slices,
) -> None:
    files = slices.take(6 + SLICE)  # the six real sample documents first
    _submit(stack, workload, files)
    _account(request, stack, settings, workload, name="upload", faults=0,
             healed_at=time.monotonic())  # fmt: skip
    with stack.client() as client:
        found = 0
        for name, data in files[:6]:
            if not name.endswith((".md", ".txt")):
                continue
            sentence = max(data.decode().split(". "), key=len)[:300]
            hits = client.post("/v1/search", json={"query": sentence, "k": 3}).json()["hits"]
            documents = client.get("/v1/documents").json()["items"]
            by_id = {d["document_id"]: d["filename"] for d in documents}
            assert name in [by_id.get(h["document_id"]) for h in hits], (name, hits)
            found += 1
        assert found >= 2


def test_scale_embed_to_three_and_back(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    slices: Slices,
) -> None:
    _submit(stack, workload, slices.take(SLICE))
    stack.up("--scale", "embed=3", "--no-recreate")
    wait_until(lambda: _group_members(settings, "embed") == 3, timeout_s=180,
               what="three members in the embed group")  # fmt: skip
    _submit(stack, workload, slices.take(SLICE // 2))
    assert len(stack.container_ids("embed")) == 3
    stack.up("--scale", "embed=1", "--no-recreate")
    healed = time.monotonic()
    wait_until(lambda: _group_members(settings, "embed") == 1, timeout_s=180,
               what="one member left in the embed group")  # fmt: skip
    _submit(stack, workload, slices.take(SLICE // 2))
    _account(request, stack, settings, workload, name="scale-embed-3-then-1", faults=2,
             healed_at=healed, extra="members=3->1 partitions=6")  # fmt: skip


def test_crashed_embed_and_parse_containers_lose_nothing(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    slices: Slices,
) -> None:
    _submit(stack, workload, slices.take(SLICE))
    (embed,) = stack.container_ids("embed")
    (parse,) = stack.container_ids("parse")
    stack.kill_main_process(embed)
    stack.kill_main_process(parse)
    _submit(stack, workload, slices.take(SLICE // 2))
    wait_until(
        lambda: stack.health(embed) == "healthy" and stack.health(parse) == "healthy",
        timeout_s=300,
        what="the crashed containers restarted and healthy",
    )
    healed = time.monotonic()
    restarts = [
        int(
            subprocess.run(
                ["docker", "inspect", "--format", "{{.RestartCount}}", c],
                capture_output=True, text=True, check=True,
            ).stdout
        )
        for c in (embed, parse)
    ]  # fmt: skip
    assert all(r >= 1 for r in restarts), restarts
    _account(request, stack, settings, workload, name="sigkill-embed-and-parse", faults=2,
             healed_at=healed, extra=f"restarts={restarts}")  # fmt: skip


def test_broker_stopped_and_started_mid_run(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    slices: Slices,
) -> None:
    _submit(stack, workload, slices.take(SLICE // 2))
    (kafka,) = stack.containers("kafka")
    stack.run("stop", "kafka", timeout_s=300)
    down = _sibling(stack, kafka["Image"], KAFKA_CHECK)
    assert down.returncode != 0, "the broker's healthcheck passes while it is stopped"
    with stack.client() as client:
        refused = client.post("/v1/documents", files={"file": ("late.txt", b"no broker " * 50)})
    assert refused.status_code == 503, refused.text
    assert refused.headers.get("Retry-After")
    stack.run("start", "kafka", timeout_s=300)
    wait_until(lambda: stack.health(kafka["Name"]) == "healthy", timeout_s=300,
               what="the broker healthy again")  # fmt: skip
    healed = time.monotonic()
    assert _sibling(stack, kafka["Image"], KAFKA_CHECK).returncode == 0
    _submit(stack, workload, slices.take(SLICE // 2))
    _account(request, stack, settings, workload, name="broker-stop-start", faults=1,
             healed_at=healed, extra="upload-while-down=503")  # fmt: skip


def test_postgres_stopped_then_started(
    request: pytest.FixtureRequest,
    stack: Compose,
    settings: Settings,
    workload: Workload,
    slices: Slices,
) -> None:
    (postgres,) = stack.containers("postgres")
    stack.run("stop", "postgres", timeout_s=300)
    assert _sibling(stack, postgres["Image"], POSTGRES_CHECK).returncode != 0
    with httpx.Client(base_url=stack.api, timeout=60) as plain:
        ready = plain.get("/readyz")
    assert ready.status_code == 503, ready.text
    with stack.client() as client:
        refused = client.post("/v1/documents", files={"file": ("nodb.txt", b"no database " * 50)})
    assert refused.status_code == 503, refused.text
    assert refused.headers.get("Retry-After")
    stack.run("start", "postgres", timeout_s=300)
    wait_until(lambda: stack.health(postgres["Name"]) == "healthy", timeout_s=300,
               what="PostgreSQL healthy again")  # fmt: skip
    healed = time.monotonic()
    assert _sibling(stack, postgres["Image"], POSTGRES_CHECK).returncode == 0
    with httpx.Client(base_url=stack.api, timeout=60) as plain:
        wait_until(lambda: plain.get("/readyz").status_code == 200, timeout_s=120,
                   what="/readyz 200 again")  # fmt: skip
    _submit(stack, workload, slices.take(SLICE))
    _account(request, stack, settings, workload, name="postgres-stop-start", faults=1,
             healed_at=healed, extra="readyz-while-down=503 upload-while-down=503")  # fmt: skip


def _fingerprint(settings: Settings) -> tuple[int, int, str]:
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            chunks, vectors, newest = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM document_chunk_buffer),"
                    " (SELECT count(*) FROM document_vector_buffer),"
                    " (SELECT coalesce(max(updated_at)::text, '') FROM document_vector_buffer)"
                )
            ).one()
    finally:
        engine.dispose()
    return int(chunks), int(vectors), str(newest)


def test_down_then_up_keeps_documents_and_vectors(
    request: pytest.FixtureRequest, stack: Compose, settings: Settings, workload: Workload
) -> None:
    before = _fingerprint(settings)
    assert before[1] > 0
    stack.run("down", timeout_s=900)
    assert stack.container_ids("api") == []
    stack.up()
    healed = time.monotonic()
    _settle(settings, workload)
    after = _fingerprint(settings)
    assert after == before, f"{before} -> {after}: something was re-embedded or lost"
    _account(request, stack, settings, workload, name="down-up", faults=1, healed_at=healed,
             extra=f"vectors={after[1]} unchanged")  # fmt: skip


def test_healthchecks_fail_when_clients_cannot_reach_the_service(stack: Compose) -> None:
    for service in (*RAGSTREAM_SERVICES, "kafka", "postgres"):
        (container,) = stack.containers(service)
        result = stack.healthcheck(container["Name"])
        assert result.returncode == 0, (service, result.stdout, result.stderr)

    # An API that listens only on the container's loopback answers there, yet no client
    # can reach it: its healthcheck must fail.
    name = "ragstream-ci-loopback-api"
    stack.run("run", "-d", "--no-deps", "--name", name, "-e", "RAGSTREAM_API_HOST=127.0.0.1",
              "api")  # fmt: skip
    try:
        probe = (
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', "
            "timeout=5)"
        )
        wait_until(
            lambda: subprocess.run(["docker", "exec", name, "python3", "-c", probe],
                                   capture_output=True).returncode == 0,
            timeout_s=240, what="the loopback-only API answering on its loopback",
        )  # fmt: skip
        assert stack.healthcheck(name).returncode != 0
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    # A worker or monitor whose process no longer answers fails its check.
    for service in ("chunk", "monitor"):
        (container,) = stack.containers(service)
        role = "$(cat /proc/1/task/1/children)"
        subprocess.run(["docker", "exec", container["Name"], "sh", "-c", f"kill -STOP {role}"],
                       check=True)  # fmt: skip
        try:
            assert stack.healthcheck(container["Name"]).returncode != 0, service
        finally:
            subprocess.run(["docker", "exec", container["Name"], "sh", "-c",
                            f"kill -CONT {role}"], check=True)  # fmt: skip
        assert stack.healthcheck(container["Name"]).returncode == 0, service
