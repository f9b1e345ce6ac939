"""Both languages carry the same texts with the same placeholders."""

from __future__ import annotations

import string

from views.i18n import catalogs, text, translator


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_key_exists_in_both_languages_with_the_same_placeholders() -> None:
    zh, en = catalogs()["zh-hans"], catalogs()["en"]
    assert zh.keys() == en.keys(), zh.keys() ^ en.keys()
    for key in zh:
        assert _fields(zh[key]) == _fields(en[key]), key


def test_translation_and_fallbacks() -> None:
    assert text("en", "invite.unknown").startswith("This invitation code is not valid")
    assert translator("zh-hans")("role.grid_leader") == "网格长"
    assert text("en", "unit.unknown", code="X9") == "There is no unit with code X9."
    assert text("fr", "role.admin") == "管理员"  # unknown language: the default
    assert text("en", "no.such.key") == "no.such.key"
