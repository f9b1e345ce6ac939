"""Who may do what is one table (domain.roles): one row per role, the same powers as the
constants it replaced, texts in every language, and no other module naming a role."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from domain import roles
from domain.roles import (
    ROLES,
    approving_roles,
    calling_roles,
    department_roles,
    digest_roles,
    held_levels,
    inviting_roles,
    ladder_levels,
    ladder_roles,
    level_roles,
    member_hearing_roles,
    organising_roles,
    powers,
    primary_role,
    returns_roles,
    viewing_roles,
)
from domain.tickets import LEVEL_KIND
from storage.enums import Level, Role, UnitKind

ROOT = Path(__file__).resolve().parents[1]
GL, CS, SO, DL, ADMIN = (
    Role.GRID_LEADER,
    Role.COMMUNITY_SECRETARY,
    Role.STREET_OFFICER,
    Role.DEPARTMENT_LIAISON,
    Role.ADMIN,
)


def test_every_role_has_exactly_one_row() -> None:
    assert Counter(row.role for row in ROLES) == {role: 1 for role in Role}
    assert [row.role for row in ROLES] == list(Role)
    for role in Role:
        assert powers(role).role is role
    with pytest.raises(dataclasses.FrozenInstanceError):
        ROLES[0].invites = True  # type: ignore[misc]


# -- the same powers as the constants the table replaced (written out, so a wrong row fails) --


def test_unit_kinds() -> None:
    # Was ROLE_UNIT_KIND (domain/invitations.py); a liaison is held in a department instead.
    assert {role: powers(role).unit_kind for role in Role} == {
        GL: UnitKind.GRID,
        CS: UnitKind.COMMUNITY,
        SO: UnitKind.STREET,
        DL: None,
        ADMIN: None,
    }
    assert department_roles() == (DL,)


def test_ladder() -> None:
    # Was LEVEL_ROLES (domain/tickets.py): the first role at each rung gets the card.
    assert {level: level_roles(level) for level in ladder_levels()} == {
        Level.GRID: (GL, ADMIN),
        Level.COMMUNITY: (CS, ADMIN),
        Level.STREET: (SO, ADMIN),
        Level.DISTRICT: (ADMIN,),
    }
    assert ladder_levels() == (Level.GRID, Level.COMMUNITY, Level.STREET, Level.DISTRICT)
    assert {level: primary_role(level) for level in ladder_levels()} == {
        Level.GRID: GL,
        Level.COMMUNITY: CS,
        Level.STREET: SO,
        Level.DISTRICT: ADMIN,
    }
    with pytest.raises(LookupError):
        primary_role(Level.DEPARTMENT)  # departments stand beside the ladder
    assert {role: held_levels(role) for role in Role} == {
        GL: (Level.GRID,),
        CS: (Level.COMMUNITY,),
        SO: (Level.STREET,),
        DL: (),
        ADMIN: (Level.GRID, Level.COMMUNITY, Level.STREET, Level.DISTRICT),
    }
    # Was LADDER_ROLES (domain/tickets.py).
    assert ladder_roles() == (GL, CS, SO, ADMIN)
    # Was (COMMUNITY_SECRETARY, ADMIN) inline in domain/tickets.py: who takes a returned ticket.
    assert returns_roles() == (CS, ADMIN)


def test_what_each_role_sees_and_receives() -> None:
    # Was VIEW_ROLES (domain/queues.py).
    assert viewing_roles() == (GL, CS, SO, ADMIN)
    # Was DIGEST_ROLES (domain/digests.py).
    assert {role: powers(role).digest for role in digest_roles()} == {
        GL: Level.GRID,
        CS: Level.COMMUNITY,
        SO: Level.STREET,
    }
    # Was Role.COMMUNITY_SECRETARY inline in domain/members.py and domain/attendance.py.
    assert member_hearing_roles() == (CS,)


def test_party_members_and_calls() -> None:
    # Was SECRETARY_ROLES (domain/members.py).
    assert approving_roles() == (CS, ADMIN)
    # Was ORGANISER_ROLES (domain/members.py), (CS, GL, ADMIN): only ever used as a set (an
    # IN list, and sorted in the audit entry), so the table's order serves.
    assert set(organising_roles()) == {CS, GL, ADMIN}
    # Was (COMMUNITY_SECRETARY, GRID_LEADER) inline in domain/calls.py, used as a set too.
    assert set(calling_roles()) == {CS, GL}
    assert {role: powers(role).call_scope for role in calling_roles()} == {
        CS: UnitKind.COMMUNITY,
        GL: UnitKind.GRID,
    }
    # Was [Role.ADMIN] inline in domain/invitations.py.
    assert inviting_roles() == (ADMIN,)


# -- rows that agree with themselves -----------------------------------------------------------


def test_rows_are_consistent() -> None:
    for row in ROLES:
        if row.department:
            assert row.unit_kind is None and row.level is None, row.role
        if row.primary:
            assert row.level is not None, row.role
        if row.level is not None and row.unit_kind is not None:
            # A rung's tickets are held by units of that rung's kind.
            assert LEVEL_KIND[row.level] == row.unit_kind, row.role
        if row.digest is not None:
            assert LEVEL_KIND[row.digest] == row.unit_kind, row.role
        if row.call_scope is not None:
            assert row.organises_calls and row.call_scope == row.unit_kind, row.role
        if row.hears_members:
            assert row.unit_kind is UnitKind.COMMUNITY, row.role
    for level in ladder_levels():
        primary_role(level)  # exactly one at every rung


def test_the_functions_read_the_table(monkeypatch) -> None:
    """A second role at a rung comes after the rung's own role, before the administrators."""
    changed = tuple(
        dataclasses.replace(row, level=Level.GRID, primary=False, approves_members=True)
        if row.role is SO
        else row
        for row in ROLES
    )
    monkeypatch.setattr(roles, "ROLES", changed)
    assert level_roles(Level.GRID) == (GL, SO, ADMIN)
    assert primary_role(Level.GRID) == GL
    assert Level.STREET not in ladder_levels()
    assert approving_roles() == (CS, SO, ADMIN)


# -- texts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_every_role_has_its_texts(language: str) -> None:
    catalog: dict = {}
    for path in sorted((ROOT / "views" / "locales" / language).glob("*.yaml")):
        catalog.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    missing = [role.value for role in Role if f"role.{role.value}" not in catalog]
    assert missing == []
    for role in Role:
        text = catalog[f"role.{role.value}"]
        assert isinstance(text, str) and text.strip(), role


# -- nobody else names a role ------------------------------------------------------------------

TABLE_MODULE = ROOT / "domain" / "roles.py"
_MEMBERS = set(Role.__members__)
_VALUES = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(r.value) for r in Role) + r")(?![A-Za-z0-9_])"
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ) and (doc := node.body[:1]):
            first = doc[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def role_mentions(path: Path) -> list[str]:
    """Where a module names a role itself (`Role.X`, `Role["X"]`, or a role's stored value in
    a string) rather than asking the table; the Role enumeration's own body excepted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {"Role"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            aliases |= {a.asname or a.name for a in node.names if a.name == "Role"}
    skipped: set[int] = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Role":
            skipped |= {id(inner) for inner in ast.walk(node)}

    def is_role(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id in aliases) or (
            isinstance(node, ast.Attribute) and node.attr == "Role"
        )

    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Attribute) and node.attr in _MEMBERS and is_role(node.value):
            found.append((node.lineno, node.col_offset, f"Role.{node.attr}"))
        elif isinstance(node, ast.Subscript) and is_role(node.value):
            found.append((node.lineno, node.col_offset, "Role[...]"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (match := _VALUES.search(node.value))
        ):
            found.append((node.lineno, node.col_offset, repr(match.group(1))))
    return [f"{line}: {what}" for line, _, what in sorted(found)]


def test_only_the_table_names_roles() -> None:
    modules = sorted([*(ROOT / "domain").glob("*.py"), *(ROOT / "storage").glob("*.py")])
    assert TABLE_MODULE in modules
    mentions = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if path != TABLE_MODULE and (found := role_mentions(path))
    }
    assert mentions == {}


def test_the_checker_sees_a_new_set_of_roles(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""An admin may see it (a docstring, not a rule)."""\n'
        "from storage.enums import Role\n"
        "from storage.enums import Role as R\n"
        "import storage.enums\n"
        "HOLDERS = (Role.GRID_LEADER, Role.ADMIN)\n"
        "VIEWERS = {R.STREET_OFFICER}\n"
        "LIAISON = storage.enums.Role.DEPARTMENT_LIAISON\n"
        "SECRETARY = Role['COMMUNITY_SECRETARY']\n"
        "SQL = \"SELECT person_id FROM role_assignment WHERE role = 'grid_leader'\"\n"
        "def f(role):\n"
        '    """For an admin."""\n'
        "    return Role(role), role == 'admin'\n"
    )
    assert role_mentions(module) == [
        "5: Role.GRID_LEADER",
        "5: Role.ADMIN",
        "6: Role.STREET_OFFICER",
        "7: Role.DEPARTMENT_LIAISON",
        "8: Role[...]",
        "9: 'grid_leader'",
        "12: 'admin'",
    ]
