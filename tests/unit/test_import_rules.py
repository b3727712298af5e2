"""Who may import what, and what is spelled where, read from the modules' syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

from ragstream import deadletter

PACKAGE = Path(__file__).resolve().parents[2] / "ragstream"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


MODULES = _modules()


def _imports(module: str, tree: ast.Module) -> set[str]:
    """Every module ``tree`` imports, ``from a import b`` counted as ``a`` and ``a.b``."""
    found: set[str] = set()
    package = module if module in ("ragstream",) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_modules_are_found() -> None:
    assert {"ragstream.consumers.runner", "ragstream.api.lifecycle", "ragstream.deadletter"} <= set(
        MODULES
    )


def test_only_the_workers_import_the_runner() -> None:
    offenders = {
        module
        for module, tree in MODULES.items()
        if not _inside(module, "ragstream.consumers")
        and any(_inside(i, "ragstream.consumers.runner") for i in _imports(module, tree))
    }
    assert offenders == set()


def test_the_api_imports_nothing_of_the_workers() -> None:
    offenders = {
        (module, i)
        for module, tree in MODULES.items()
        if _inside(module, "ragstream.api")
        for i in _imports(module, tree)
        if _inside(i, "ragstream.consumers")
    }
    assert offenders == set()


def test_the_application_context_comes_from_its_own_module() -> None:
    for module in ("ragstream.api.services", "ragstream.llamaparse.poller"):
        assert "ragstream.context.StageContext" in _imports(module, MODULES[module]), module


def test_dead_letter_headers_are_spelled_once() -> None:
    names = {
        deadletter.ORIGIN_TOPIC,
        deadletter.ORIGIN_PARTITION,
        deadletter.ORIGIN_OFFSET,
        deadletter.STAGE,
        deadletter.ERROR_CLASS,
        deadletter.ERROR_MESSAGE,
        deadletter.DOCUMENT_ID,
        deadletter.ATTEMPT,
        deadletter.REPLAYED_FROM,
    }
    spelled: dict[str, set[str]] = {}
    for module, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in names:
                    # A name, or its tail after the prefix (``PREFIX + "error-class"``);
                    # "stage" alone is an ordinary word.
                    tail = name.removeprefix(deadletter.PREFIX)
                    if name in node.value or (tail not in (name, "stage") and node.value == tail):
                        spelled.setdefault(name, set()).add(module)
    assert {name: modules - {"ragstream.deadletter"} for name, modules in spelled.items()} == {
        name: set() for name in spelled
    }
    assert spelled[deadletter.ATTEMPT] == {"ragstream.deadletter"}


def test_events_are_put_together_next_to_their_schemas() -> None:
    """Outside the schemas, only the stage modules still make an ``Outgoing`` themselves."""
    makers = {
        module
        for module, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Outgoing"
    }
    assert {m for m in makers if not _inside(m, "ragstream.consumers")} == {
        "ragstream.schemas.outgoing"
    }
