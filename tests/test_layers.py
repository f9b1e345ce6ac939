"""Imports point one way (ARCHITECTURE.md): bot -> handlers -> views, scheduler -> domain ->
storage. Read from the source, imports inside functions included, so a shortcut taken for
convenience shows up here rather than as a cycle later."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer must never import (top-level package names).
FORBIDDEN = {
    "views": {"bot", "handlers", "scheduler"},
    "handlers": {"bot", "scheduler"},
    "scheduler": {"bot", "handlers", "views", "aiogram"},
    "domain": {"bot", "handlers", "views", "scheduler", "aiogram", "apscheduler"},
    "storage": {"bot", "handlers", "views", "scheduler", "domain", "aiogram", "apscheduler"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_one_way(layer: str) -> None:
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert modules, f"no modules under {layer}/"
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[layer])
        for path in modules
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from handlers.common import x\n    import bot.app\n")
    assert imported_packages(module) == {"handlers", "bot"}


def _calls_named(path: Path, name: str) -> list[int]:
    """Lines where a method of this name is called (`x.name(...)`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


def test_handlers_never_commit_nor_touch_sql() -> None:
    """The update's middleware owns the transaction (it commits before every call to Telegram
    and when the update ends); handlers only read the update and call use cases."""
    ends = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "handlers").rglob("*.py"))
        if (lines := _calls_named(path, "commit") + _calls_named(path, "rollback"))
    }
    assert ends == {}
    sql = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & {"sqlalchemy"})
        for path in sorted((ROOT / "handlers").rglob("*.py"))
    }
    assert {path: names for path, names in sql.items() if names} == {}


# Every domain module reaches the database only through storage's query modules: no
# statement built, no driver, no question of which database it is.
THROUGH_STORAGE = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "domain").glob("*.py"))
SQL_MODULES = {"sqlalchemy", "sqlmodel", "storage.bulk", "storage.dialect"}


def imported_modules(path: Path) -> set[str]:
    """The modules a module imports from, dotted, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _attributes_named(path: Path, names: set[str]) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in names
    ]


def test_every_domain_module_is_checked_for_sql() -> None:
    assert "domain/tickets.py" in THROUGH_STORAGE and len(THROUGH_STORAGE) > 20


@pytest.mark.parametrize("module", THROUGH_STORAGE)
def test_domain_modules_leave_sql_and_database_kinds_to_storage(module: str) -> None:
    path = ROOT / module
    sql = {
        name
        for name in imported_modules(path)
        # The session's type is all a use case needs to know of SQLModel.
        if name != "sqlmodel.ext.asyncio.session"
        and any(name == m or name.startswith(m + ".") for m in SQL_MODULES)
    }
    assert sql == set()
    assert _attributes_named(path, {"dialect", "bind", "get_bind", "connection"}) == []


def test_use_cases_never_end_a_transaction() -> None:
    """A use case stages its changes; its caller owns the transaction and commits or rolls
    back: the update's middleware, a scheduler job, a command."""
    ends = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "domain").rglob("*.py"))
        if (lines := _calls_named(path, "commit") + _calls_named(path, "rollback"))
    }
    assert ends == {}
