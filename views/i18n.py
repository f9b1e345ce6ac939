"""Bot texts in Simplified Chinese (default) and English, read from views/locales/<lang>/*.yaml.

A template is a `str.format` text. Where a number decides the words next to it ("1 member",
"2 members"), its field lists the words for each plural category of the language instead of a
format spec, `#` standing for the number as given:

    attendance.cancelled: "Call cancelled; {count:one=# member|other=# members} told."

The categories are CLDR's: English has `one` (exactly 1, without decimals) and `other`; Chinese
words do not change with the number, so it has only `other` and its templates write `{count}`.
`other` is always required: it is also what a number that fits no other category gets.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import yaml

from domain.languages import LANGUAGES

LOCALES_DIR = Path(__file__).parent / "locales"
# libyaml's safe loader where PyYAML was built with it: the catalogs are read at every start,
# in 0.12-0.14 s by the pure-Python loader and 0.014 s by libyaml's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Translate = Callable[..., str]


class PluralRule(NamedTuple):
    """A language's plural categories, and how a number's integer part and the count of decimals
    it shows (the CLDR operands i and v) choose one of them."""

    forms: frozenset[str]
    choose: Callable[[int, int], str]


def _english(integer: int, fraction_digits: int) -> str:
    # "1 point", but "1.5 points" and "0 points"
    return "one" if integer == 1 and fraction_digits == 0 else "other"


def _chinese(integer: int, fraction_digits: int) -> str:
    return "other"


PLURAL_RULES: dict[str, PluralRule] = {
    "zh-hans": PluralRule(frozenset({"other"}), _chinese),
    "en": PluralRule(frozenset({"one", "other"}), _english),
}

_PLURAL_SPEC = re.compile(r"[a-z]+[=|]")  # a field spec starting like "one=" lists plural forms
_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?")


class CatalogError(ValueError):
    """A locale file that cannot be used as it is written."""


def plural_category(language: str, value: object) -> str:
    """The plural category `value` falls in for `language`.

    Hours and points reach the texts already written as text ("1.5", "2"), so a number written
    as text counts like the number it shows; anything that is not a number is `other`.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return PLURAL_RULES[language].choose(abs(value), 0)
    match = _NUMBER.fullmatch(str(value).strip())
    if match is None:
        return "other"
    return PLURAL_RULES[language].choose(int(match[1]), len(match[2] or ""))


@cache
def _plural_forms(spec: str) -> dict[str, str] | None:
    """The words per category that a field spec lists ("one=# member|other=# members"), or None
    when the spec is an ordinary format spec. Raises ValueError when the list is malformed."""
    if not _PLURAL_SPEC.match(spec):
        return None
    forms: dict[str, str] = {}
    for part in spec.split("|"):
        name, equals, words = part.partition("=")
        if not equals or not name:
            raise ValueError(f"plural form {part!r} is not written name=words")
        if name in forms:
            raise ValueError(f"plural form {name!r} is given twice")
        forms[name] = words
    if "other" not in forms:
        raise ValueError("plural forms lack 'other'")
    return forms


def _check_template(language: str, template: object) -> None:
    """Raises ValueError saying what is wrong with one template of `language`."""
    if not isinstance(template, str):
        raise ValueError(f"a template must be text, not {type(template).__name__}")
    for _, field, spec, _ in string.Formatter().parse(template):
        forms = _plural_forms(spec or "")
        if forms is None:
            continue
        unknown = forms.keys() - PLURAL_RULES[language].forms
        if unknown:
            known = ", ".join(sorted(PLURAL_RULES[language].forms))
            raise ValueError(
                f"{{{field}}} has unknown plural form(s) {', '.join(sorted(unknown))}"
                f" ({language} has {known})"
            )


def load_catalog(directory: Path, language: str) -> dict[str, str]:
    """One language's flat key -> template table from the *.yaml files of `directory`.

    A key defined twice (in one file or in two), or a template that could not be rendered (not
    text, broken braces, malformed plural forms) is a CatalogError naming the file and the key.
    """
    if language not in PLURAL_RULES:
        raise CatalogError(f"{directory}: no plural rule for language {language!r}")
    table: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        source = path.read_text(encoding="utf-8")
        _refuse_repeated_keys(path, source)
        part = yaml.load(source, Loader=_LOADER) or {}
        clash = table.keys() & part.keys()
        if clash:
            raise CatalogError(f"{path}: keys defined twice: {', '.join(sorted(clash))}")
        for key, template in part.items():
            try:
                _check_template(language, template)
            except ValueError as exc:
                raise CatalogError(f"{path}: {key}: {exc}") from None
        table.update(part)
    return table


def _refuse_repeated_keys(path: Path, source: str) -> None:
    """YAML keeps the last of two equal keys without a word, so one text would silently stand
    in for another: refused, with both lines."""
    root = yaml.compose(source, Loader=_LOADER)
    if not isinstance(root, yaml.MappingNode):
        return
    first_line: dict[object, int] = {}
    for key, _ in root.value:
        line = key.start_mark.line + 1
        if key.value in first_line:
            raise CatalogError(
                f"{path}:{line}: {key.value} is defined twice in this file "
                f"(first at line {first_line[key.value]})"
            )
        first_line[key.value] = line


@cache
def catalogs() -> dict[str, dict[str, str]]:
    """Every language's flat key -> template table, loaded once."""
    return {language: load_catalog(LOCALES_DIR / language, language) for language in LANGUAGES}


class _CountingFormatter(string.Formatter):
    """str.format, plus fields that choose their words by the number they are given."""

    def __init__(self, language: str) -> None:
        self.language = language

    def format_field(self, value: object, format_spec: str) -> str:
        forms = _plural_forms(format_spec)
        if forms is None:
            return super().format_field(value, format_spec)
        words = forms.get(plural_category(self.language, value), forms["other"])
        return words.replace("#", format(value, ""))


@cache
def _counts(template: str) -> bool:
    """Whether some field of `template` chooses its words by a number."""
    return any(_plural_forms(spec or "") for _, _, spec, _ in string.Formatter().parse(template))


@cache
def _as_other(template: str) -> str:
    """`template` for plain str.format, every number taking its `other` words."""
    pieces = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        pieces.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        name = f"{field}!{conversion}" if conversion else field
        forms = _plural_forms(spec or "")
        if forms is None:
            pieces.append(f"{{{name}:{spec}}}" if spec else f"{{{name}}}")
        else:
            words = forms["other"].replace("{", "{{").replace("}", "}}")
            pieces.append(words.replace("#", f"{{{name}}}"))
    return "".join(pieces)


def text(language: str, key: str, /, **params: object) -> str:
    """The text for `key` in `language`, formatted; falls back to Chinese, then to the key.

    Without parameters the template comes back unformatted, for a caller that formats it
    itself; numbers there can only take their `other` words, so pass them here instead.
    """
    tables = catalogs()
    template = tables.get(language, {}).get(key)
    if not template:
        language, template = "zh-hans", tables["zh-hans"].get(key)
    if template is None:
        return key
    if not _counts(template):
        return template.format(**params) if params else template
    if not params:
        return _as_other(template)
    return _CountingFormatter(language).vformat(template, (), params)


@cache
def translator(language: str) -> Translate:
    """A `t(key, **params)` bound to one language, handed to handlers by the middleware.

    One function per language, so keyboards that depend only on it can be memoised by it.
    """

    def t(key: str, /, **params: object) -> str:
        return text(language, key, **params)

    return t
