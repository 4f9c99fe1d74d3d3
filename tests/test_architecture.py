"""Boundaries import-linter cannot express: where SQL/Redis and the environment may be touched."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "signaling", "media", "loadtest")
_ENV_NAMES = {"environ", "getenv", "environb", "putenv", "unsetenv"}


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_sql_and_redis_only_in_storage_backends() -> None:
    storage = ROOT / "server" / "storage"
    offenders = [
        str(path.relative_to(ROOT))
        for path, tree in _modules()
        if _imports(tree) & {"sqlite3", "redis"} and not path.is_relative_to(storage)
    ]
    assert offenders == []


def test_only_settings_reads_the_environment() -> None:
    allowed = ROOT / "server" / "settings.py"
    offenders = []
    for path, tree in _modules():
        if path == allowed:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(alias.name in _ENV_NAMES for alias in node.names)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path, tree in _modules()
        if ast.get_docstring(tree) is None and path.name != "__main__.py"
    ]
    assert missing == []
