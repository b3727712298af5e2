"""The image: its Dockerfile, and the entrypoint that turns a role into a command.

With ``RAGSTREAM_TEST_IMAGE`` set to an image (`make compose-test` sets it to
the image `make images` built), the roles run inside that image, which must
exist. Otherwise the same ``docker/entrypoint.sh`` runs directly, with this
virtualenv's ``ragstream`` on the PATH: no fakes either way.
"""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dockerfile
import pytest

from ragstream import topology

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = os.environ.get("RAGSTREAM_TEST_IMAGE", "")
BIN = Path(sys.executable).parent
ROLES = {"api", "worker", "migrate", "topics", "monitor"}
REQUIRED_COMMANDS = {"worker", "migrate", "topics"}

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.timeout(600)


def _tool(name: str) -> str:
    """A tool of the dev extra, from this virtualenv or the PATH; missing fails the test."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _script_env(run_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAGSTREAM_RUN_DIR": str(run_dir),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
        **extra,
    }


def _run_script(run_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env=_script_env(run_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def run_role(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run the entrypoint with a role: in the image when one is named, else the script."""
    if IMAGE:
        if not _docker_answers():
            pytest.fail(f"RAGSTREAM_TEST_IMAGE={IMAGE} but no Docker engine answers")
        present = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
        if present.returncode != 0:
            pytest.fail(f"RAGSTREAM_TEST_IMAGE={IMAGE} does not exist: make images")

        def in_image(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["docker", "run", "--rm", "-e", "COLUMNS=200", "-e", "NO_COLOR=1", IMAGE, *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        return in_image
    run_dir = tmp_path_factory.mktemp("run")
    return lambda *args: _run_script(run_dir, *args)


def _run_all(run: Run, calls: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run(*args), calls))


def _cli_commands(help_text: str) -> set[str]:
    """Command names listed by ``ragstream --help`` (rich panels or plain click)."""
    names = set(re.findall(r"^│ ([a-z][a-z0-9_-]*)\s", help_text, flags=re.MULTILINE))
    if not names and "Commands:" in help_text:
        section = help_text.split("Commands:", 1)[1]
        names = set(re.findall(r"^  ([a-z][a-z0-9_-]*)\s", section, flags=re.MULTILINE))
    return names


# --- the entrypoint --------------------------------------------------------------


def test_entrypoint_passes_shellcheck() -> None:
    result = subprocess.run(
        [_tool("shellcheck"), "--shell=sh", "--severity=style", str(ENTRYPOINT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_image_and_ci_scripts_pass_shellcheck() -> None:
    scripts = [ROOT / ".ci" / "run", *sorted((ROOT / "docker").rglob("*.sh"))]
    assert len(scripts) >= 6
    result = subprocess.run(
        [_tool("shellcheck"), "--severity=info", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_help_and_version_exit_zero(run_role: Run) -> None:
    shown, version, roles = _run_all(run_role, [["help"], ["version"], ["roles"]])
    assert shown.returncode == 0, shown.stderr
    for role in ROLES:
        assert f"\n  {role}" in shown.stdout
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"ragstream \d+\.\d+\.\d+\S*\n", version.stdout)
    assert roles.returncode == 0, roles.stderr


def test_a_bogus_stage_fails_clearly(run_role: Run) -> None:
    result = run_role("worker", "bogus")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "bogus" in message
    assert ", ".join(topology.STAGE_NAMES) in message


def test_a_worker_without_a_stage_or_an_unknown_role_fails_clearly(
    run_role: Run, tmp_path: Path
) -> None:
    no_stage, unknown = _run_all(run_role, [["worker"], ["shovel"]])
    nothing = _run_script(tmp_path)  # the image's CMD is `help`: only the script runs bare
    assert no_stage.returncode == 64
    assert "needs a stage" in no_stage.stderr
    assert unknown.returncode == 64
    assert "unknown role 'shovel'" in unknown.stderr
    assert nothing.returncode == 64
    assert "usage:" in nothing.stderr


def test_every_role_maps_to_a_ragstream_command(run_role: Run) -> None:
    listed = run_role("roles")
    roles = dict(line.split("\t") for line in listed.stdout.splitlines())
    assert set(roles) == ROLES
    commands = _cli_commands(run_role("ragstream", "--help").stdout)
    assert commands >= REQUIRED_COMMANDS, commands
    present = {role: cmd.split()[1:] for role, cmd in roles.items() if cmd.split()[1] in commands}
    missing = sorted(ROLES - set(present))
    assert set(present) >= REQUIRED_COMMANDS
    results = _run_all(run_role, [["ragstream", *cmd, "--help"] for cmd in present.values()])
    for (role, cmd), result in zip(present.items(), results, strict=True):
        assert result.returncode == 0, f"role {role}: ragstream {' '.join(cmd)} --help: {result}"
    if missing:
        warnings.warn(f"roles without a ragstream command yet: {missing}", stacklevel=1)


def test_the_first_role_is_the_one_remembered(tmp_path: Path) -> None:
    assert _run_script(tmp_path, "worker", "bogus").returncode != 0
    assert (tmp_path / "ragstream-role").read_text() == "worker\n"
    assert _run_script(tmp_path, "migrate", "--help").returncode == 0
    assert (tmp_path / "ragstream-role").read_text() == "worker\n"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path in ("/livez", "/healthz") else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_healthcheck_asks_the_running_role(tmp_path: Path, health_server: int) -> None:
    free = str(health_server)
    assert _run_script(tmp_path, "healthcheck").returncode == 1  # no role started yet
    role_file = tmp_path / "ragstream-role"
    role_file.write_text("worker\n")
    assert _run_script(tmp_path, "healthcheck", RAGSTREAM_HEALTH_PORT=free).returncode == 0
    assert _run_script(tmp_path, "healthcheck", RAGSTREAM_HEALTH_PORT="0").returncode == 1
    role_file.write_text("api\n")
    assert _run_script(tmp_path, "healthcheck", RAGSTREAM_API_PORT=free).returncode == 0
    role_file.write_text("migrate\n")
    assert _run_script(tmp_path, "healthcheck").returncode == 0


def test_healthcheck_fails_when_nothing_answers(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = str(server.server_address[1])
    server.server_close()
    (tmp_path / "ragstream-role").write_text("worker\n")
    result = _run_script(tmp_path, "healthcheck", RAGSTREAM_HEALTH_PORT=port)
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


# --- the Dockerfile ----------------------------------------------------------------


@pytest.fixture(scope="module")
def instructions() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DOCKERFILE))


def _stages(instructions: tuple[dockerfile.Command, ...]) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in instructions:
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_slim_python(
    instructions: tuple[dockerfile.Command, ...],
) -> None:
    args = {c.value[0].split("=", 1)[0]: c.value[0] for c in instructions if c.cmd == "ARG"}
    assert re.fullmatch(r"BASE_IMAGE=python:3\.11-slim\S*", args["BASE_IMAGE"])
    assert args["TORCH_INDEX_URL"] == "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"
    stages = _stages(instructions)
    assert len(stages) >= 2
    assert all(stage[0].value[0] == "${BASE_IMAGE}" for stage in stages)


def test_runtime_stage_runs_the_entrypoint_as_a_user(
    instructions: tuple[dockerfile.Command, ...],
) -> None:
    runtime = _stages(instructions)[-1]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (entrypoint,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == ("tini", "--", "ragstream-entrypoint")
    copies = [c.value for c in runtime if c.cmd == "COPY"]
    assert ("docker/entrypoint.sh", "/usr/local/bin/ragstream-entrypoint") in copies
    (healthcheck,) = [c for c in runtime if c.cmd == "HEALTHCHECK"]
    assert "ragstream-entrypoint" in healthcheck.original
    assert "healthcheck" in healthcheck.original
    exposed = {p for c in runtime if c.cmd == "EXPOSE" for p in c.value}
    assert {"8000", "8081"} <= exposed


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (last match wins)."""
    ignored = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if glob.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], glob[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, glob) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_copies(
    instructions: tuple[dockerfile.Command, ...],
) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [
        source
        for c in instructions
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for source in c.value[:-1]
    ]
    assert sources
    for source in sources:
        assert not _ignored(source, patterns), source
        assert (ROOT / source).exists(), source
    for heavy in (".venv", ".git", "tests", "ragstream/__pycache__"):
        assert _ignored(heavy, patterns), heavy
